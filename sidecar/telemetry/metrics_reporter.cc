#include "sidecar/telemetry/metrics_reporter.h"

#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/http/grpc/status.h"
#include "xds/metrics.pb.h"

namespace meshlet::sidecar::telemetry {

namespace {

uint64_t RandomInstance() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device() ^ 1;  // never 0
}

}  // namespace

std::string WorkloadOfNode(absl::string_view node_id, absl::string_view namespace_) {
  if (!namespace_.empty() && node_id.size() > namespace_.size() + 1 &&
      absl::EndsWith(node_id, namespace_) &&
      node_id[node_id.size() - namespace_.size() - 1] == '.') {
    return std::string(node_id.substr(0, node_id.size() - namespace_.size() - 1));
  }
  return std::string(node_id);
}

MetricsReporter::MetricsReporter(event::Loop& loop, const StatsRegistry& stats,
                                 MetricsReporterOptions options)
    : loop_(loop),
      stats_(stats),
      options_(std::move(options)),
      instance_(RandomInstance()),
      start_(absl::Now()),
      builder_(options_.split),
      timer_(loop, [this] { ReportNow(); }) {
  MakeChannel();
}

void MetricsReporter::MakeChannel() {
  // A report may be finishing on the old channel: release it on a later turn.
  if (channel_ != nullptr) loop_.DeferDelete(std::move(channel_));
  channel_ = std::make_unique<http::grpc::Channel>(
      loop_, options_.server_addresses[server_index_],
      http::grpc::ChannelOptions{.transport_factory = options_.transport_factory,
                                 .authority = options_.authority});
}

MetricsReporter::~MetricsReporter() {
  *alive_ = false;
  timer_.Disable();
}

void MetricsReporter::Start() { timer_.EnableRepeating(options_.interval); }

void MetricsReporter::ReportNow() {
  if (in_flight_) return;
  // The five families the report is made of, not a copy of the whole registry: at 1 000 used
  // clusters that copy was 2.5 MB each interval.
  parts_ =
      builder_.Build(stats_.Snapshot(ReportBuilder::kFamilies), absl::ToUnixNanos(absl::Now()));
  // The workload certificate's validity (sidecar/identity/certificate_manager.h's gauges), for
  // `meshctl check`'s renewal warning: two gauges, read apart from the report's families.
  static constexpr absl::string_view kCertificate[] = {
      "meshlet_workload_certificate_not_before_timestamp_seconds",
      "meshlet_workload_certificate_not_after_timestamp_seconds"};
  const StatsSnapshot certificate = stats_.Snapshot(kCertificate);
  int64_t validity[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    if (const SeriesSnapshot* s = certificate.Find(kCertificate[i]); s != nullptr) {
      validity[i] = s->gauge;
    }
  }
  for (metrics::v1::MetricsReport& part : parts_) {
    part.set_certificate_not_before_unix(validity[0]);
    part.set_certificate_not_after_unix(validity[1]);
    part.set_node_id(options_.node_id);
    part.set_service(options_.service);
    part.set_namespace_(options_.namespace_);
    part.set_instance(instance_);
    part.set_start_time_unix_nano(absl::ToUnixNanos(start_));
    part.set_workload(options_.workload);
    if (options_.certificate_facts) options_.certificate_facts(part);
  }
  next_part_ = 0;
  in_flight_ = true;
  SendNextPart();
}

void MetricsReporter::SendNextPart() {
  http::grpc::CallOptions call_options;
  call_options.timeout = options_.interval;
  channel_->Unary(
      kMetricsReportMethod, parts_[next_part_].SerializeAsString(), std::move(call_options),
      [this, alive = std::weak_ptr<bool>(alive_)](http::grpc::StatusCode code,
                                                  const std::string& message, std::string) {
        if (alive.expired()) return;
        if (code == http::grpc::StatusCode::kOk) {
          failures_ = 0;
          builder_.Accepted(parts_[next_part_]);
          if (++next_part_ < parts_.size()) {
            SendNextPart();  // in order: each part is newer than the one before
            return;
          }
          parts_.clear();
          in_flight_ = false;
          return;
        }
        // The parts not sent yet are dropped; their clusters were not accepted, so the next
        // report includes them again.
        parts_.clear();
        in_flight_ = false;
        // The first failure of a run, then every 60th, to keep the log readable.
        if (failures_++ % 60 == 0) {
          LOG(WARN) << "golden metrics report to "
                    << options_.server_addresses[server_index_].ToString()
                    << " failed: " << http::grpc::StatusCodeName(code) << ": " << message;
        }
        if (options_.server_addresses.size() > 1) {
          server_index_ = (server_index_ + 1) % options_.server_addresses.size();
          MakeChannel();
        } else if (code == http::grpc::StatusCode::kUnauthenticated) {
          // The connection's client certificate expired: a new connection
          // presents the renewed one.
          MakeChannel();
        }
      });
}

}  // namespace meshlet::sidecar::telemetry
