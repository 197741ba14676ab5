#include "sidecar/tracing/exporter.h"

#include <algorithm>
#include <utility>

#include "common/base/logging.h"

namespace meshlet::sidecar::tracing {
namespace {

Counter CounterOrDiscard(StatsShard& stats, absl::string_view name, absl::string_view help,
                         const LabelSet& labels = {}) {
  absl::StatusOr<Counter> counter = stats.RegisterCounter(name, help, labels);
  if (!counter.ok()) {
    LOG(ERROR) << name << ": " << counter.status();
    return Counter();
  }
  return *counter;
}

// The encoding buffer is given back after a burst left it larger than this.
constexpr size_t kKeptEncodingBytes = 1 << 20;

// The client for `config`'s protocol.
std::unique_ptr<ExportClient> MakeClient(event::Loop& loop, const TracingConfig& config,
                                         std::shared_ptr<const CollectorAddress> collector,
                                         const Clock& clock, ControlPlaneChannel control_plane) {
  if (config.protocol == ExportProtocol::kOtlpGrpc) {
    return std::make_unique<GrpcCollectorClient>(
        loop, std::move(collector),
        GrpcCollectorClient::Options{.transport = std::move(control_plane.transport),
                                     .authority = std::move(control_plane.authority),
                                     .timeout = config.export_timeout,
                                     .idle_limit = config.collector_idle_limit},
        clock);
  }
  return std::make_unique<CollectorClient>(
      loop, std::move(collector),
      CollectorClient::Options{.path = config.EffectiveCollectorPath(),
                               .timeout = config.export_timeout,
                               .idle_limit = config.collector_idle_limit},
      clock);
}

}  // namespace

SpanExporter::SpanExporter(event::Loop& loop, const TracingConfig& config, std::string service_name,
                           std::shared_ptr<const CollectorAddress> collector, StatsShard& stats,
                           const Clock& clock, ControlPlaneChannel control_plane)
    : config_(config),
      encoder_(config.protocol, std::move(service_name), config.service_instance_id),
      client_(MakeClient(loop, config, std::move(collector), clock, std::move(control_plane))),
      flush_timer_(loop,
                   [this] {
                     flush_due_ = true;
                     MaybeSend();
                   }),
      shutdown_timer_(loop, [this] { FinishShutdown(); }),
      exported_(CounterOrDiscard(stats, "meshlet_tracing_spans_exported_total",
                                 "Spans the collector accepted.")),
      export_errors_(CounterOrDiscard(stats, "meshlet_tracing_export_errors_total",
                                      "Export requests that failed (connect, send, or a non-2xx "
                                      "answer).")),
      dropped_failed_(CounterOrDiscard(stats, "meshlet_tracing_spans_dropped_total",
                                       "Recorded spans that were never exported.",
                                       {{"reason", "export_failed"}})),
      dropped_shutdown_(CounterOrDiscard(stats, "meshlet_tracing_spans_dropped_total",
                                         "Recorded spans that were never exported.",
                                         {{"reason", "shutdown"}})) {}

SpanExporter::~SpanExporter() {
  if (buffered() > 0) dropped_shutdown_.Inc(buffered());
}

bool SpanExporter::Take(const Span& span) {
  if (shutting_down_ || buffered() >= config_.queue_limit) return false;
  encoder_.Add(span);
  const size_t waiting = encoder_.size();
  if (waiting >= config_.batch_size) {
    MaybeSend();
  } else if (waiting == 1) {
    flush_timer_.Enable(config_.flush_interval);  // a new batch starts its wait
  }
  return true;
}

void SpanExporter::MaybeSend() {
  if (client_->busy()) return;
  const size_t waiting = encoder_.size();
  if (waiting == 0) {
    flush_due_ = false;
    flush_timer_.Disable();
    encoder_.Shrink(kKeptEncodingBytes, &sending_);
    if (shutting_down_) FinishShutdown();
    return;
  }
  if (waiting < config_.batch_size && !flush_due_ && !shutting_down_) return;
  in_flight_ = std::min<size_t>(waiting, config_.batch_size);
  resent_ = false;
  flush_due_ = false;
  encoder_.Detach(in_flight_, &sending_);
  if (encoder_.size() > 0) {
    // What stays behind is the next batch: its wait starts now unless it is full already (then
    // it goes when this answer arrives).
    if (encoder_.size() < config_.batch_size) flush_timer_.Enable(config_.flush_interval);
  } else {
    flush_timer_.Disable();
  }
  const SpanBatchEncoder::Body body = encoder_.Frame(sending_);
  client_->Post(encoder_.content_type(), {body.prefix, body.spans, body.suffix},
                [this](CollectorClient::Result result) { OnAnswer(std::move(result)); });
}

void SpanExporter::OnAnswer(CollectorClient::Result result) {
  if (!result.ok && result.may_resend && !resent_) {
    // The kept connection was closed by the collector as the request went out: once more, over
    // a new one (the batch still holds the spans as they were sent).
    resent_ = true;
    const SpanBatchEncoder::Body body = encoder_.Frame(sending_);
    client_->Post(encoder_.content_type(), {body.prefix, body.spans, body.suffix},
                  [this](CollectorClient::Result again) { OnAnswer(std::move(again)); });
    return;
  }
  if (result.ok) {
    exported_.Inc(in_flight_);
  } else {
    export_errors_.Inc();
    dropped_failed_.Inc(in_flight_);
    LOG_EVERY_N_SEC(WARN, 10) << "tracing export of " << in_flight_ << " spans: " << result.error;
  }
  in_flight_ = 0;
  // A full batch waiting behind this one goes now; a partial one when its flush is due.
  if (encoder_.size() >= config_.batch_size) flush_due_ = true;
  MaybeSend();
}

void SpanExporter::Shutdown(absl::AnyInvocable<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  shutdown_timer_.Enable(config_.export_timeout);
  MaybeSend();
}

void SpanExporter::FinishShutdown() {
  shutdown_timer_.Disable();
  flush_timer_.Disable();
  if (!shutdown_done_) return;
  // Spans not sent by now are dropped (counted by the destructor).
  absl::AnyInvocable<void()> done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  done();
}

}  // namespace meshlet::sidecar::tracing
