#pragma once

// SpanExporter: one per worker, on the worker's event loop. The worker's Tracer hands it each
// finished span (SpanSink::Take); it encodes the span there and then into the batch being built
// (OTLP/HTTP JSON or protobuf, or Zipkin v2 JSON; span_encoding.h) and POSTs full batches to the
// configured collector over its own non-blocking, kept-open connection (CollectorClient), or, with
// OTLP/gRPC, sends them as Export calls to the control plane over its own channel with the xDS
// channel's TLS settings and workload certificate (GrpcCollectorClient). Nothing
// crosses threads and nothing is woken: the design Envoy uses, chosen because a separate exporter
// thread cost a busy worker its core's time in context switches (docs/adr/0029).
//
// Nothing it does can slow a request beyond the encoding: a slow or absent collector makes spans
// accumulate, up to queue_limit per worker; past that new spans are dropped and counted
// (meshlet_tracing_spans_dropped_total{reason="queue_full"}, by the tracer). A batch the collector
// refuses or that cannot be sent is dropped and counted too ({reason="export_failed"}, and
// meshlet_tracing_export_errors_total per request).
//
// Batching: a batch goes as soon as it holds batch_size spans, and otherwise flush_interval after
// its first span. One export request is in flight at a time; spans that end meanwhile wait behind
// it. A request that a kept connection lost before any answer goes once more over a new one.
//
// Shutdown(): sends what is buffered (best effort, bounded by export_timeout) and then calls back;
// spans not sent by then are dropped ({reason="shutdown"}), as are spans still buffered when the
// exporter is destroyed.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/tracing/collector_client.h"
#include "sidecar/tracing/grpc_collector_client.h"
#include "sidecar/tracing/span_encoding.h"
#include "sidecar/tracing/span_sink.h"
#include "sidecar/tracing/tracing_config.h"

namespace meshlet::sidecar::tracing {

// OTLP/gRPC's channel to the control plane: the xDS channel's TLS (its provider is thread-safe;
// null: h2c) and :authority (empty: the address).
struct ControlPlaneChannel {
  net::TransportFactory transport;
  std::string authority;
};

class SpanExporter final : public SpanSink {
 public:
  // `loop`, `stats` and `clock` must outlive the exporter. `control_plane` is for
  // ExportProtocol::kOtlpGrpc only.
  SpanExporter(event::Loop& loop, const TracingConfig& config, std::string service_name,
               std::shared_ptr<const CollectorAddress> collector, StatsShard& stats,
               const Clock& clock, ControlPlaneChannel control_plane = {});
  ~SpanExporter() override;
  SpanExporter(const SpanExporter&) = delete;
  SpanExporter& operator=(const SpanExporter&) = delete;

  bool Take(const Span& span) override;

  // Sends everything buffered, then calls `done` once nothing is left or export_timeout passed.
  // No span is taken afterwards.
  void Shutdown(absl::AnyInvocable<void()> done);

  // Spans buffered (encoded, waiting or in flight).
  size_t buffered() const { return encoder_.size() + in_flight_; }
  uint64_t collector_connections() const { return client_->connections_opened(); }

 private:
  // Starts an export request when none is in flight and a full batch (or a due partial one, or
  // anything at shutdown) is waiting.
  void MaybeSend();
  void OnAnswer(CollectorClient::Result result);
  void FinishShutdown();

  const TracingConfig config_;
  SpanBatchEncoder encoder_;
  SpanBatchEncoder::Batch sending_;  // the batch in flight; written from, so left alone meanwhile
  // Declared after what it writes from: destroyed (its connection closed) first.
  std::unique_ptr<ExportClient> client_;
  event::Timer flush_timer_;
  event::Timer shutdown_timer_;
  Counter exported_;
  Counter export_errors_;
  Counter dropped_failed_;
  Counter dropped_shutdown_;

  size_t in_flight_ = 0;  // spans in `sending_` (0: no request in flight)
  bool resent_ = false;   // the request in flight is a resend
  bool flush_due_ = false;
  bool shutting_down_ = false;
  absl::AnyInvocable<void()> shutdown_done_;
};

}  // namespace meshlet::sidecar::tracing
