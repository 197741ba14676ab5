#include "sidecar/telemetry/metrics_reporter.h"

#include <map>
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

absl::string_view Label(const SeriesSnapshot& series, absl::string_view name) {
  if (series.labels == nullptr) return "";
  for (const auto& [key, value] : *series.labels) {
    if (key == name) return value;
  }
  return "";
}

void FillHistogram(const HistogramSnapshot& from, metrics::v1::Histogram* to) {
  for (const HistogramSnapshot::Bucket& bucket : from.buckets()) {
    to->add_bucket(bucket.index);
    to->add_count(bucket.count);
  }
  to->set_sum(from.sum());
}

uint64_t RandomInstance() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device() ^ 1;  // never 0
}

// The report for the stats in `snapshot`.
metrics::v1::MetricsReport BuildMetricsReport(const StatsSnapshot& snapshot) {
  metrics::v1::MetricsReport report;
  std::map<absl::string_view, metrics::v1::ClusterStats*> clusters;
  auto cluster_for = [&](const SeriesSnapshot& series) -> metrics::v1::ClusterStats* {
    absl::string_view name = Label(series, "cluster");
    if (name.empty() || absl::StartsWith(name, "inbound|")) return nullptr;
    auto [it, inserted] = clusters.try_emplace(name, nullptr);
    if (inserted) {
      it->second = report.add_clusters();
      it->second->set_cluster(std::string(name));
    }
    return it->second;
  };
  for (const SeriesSnapshot& series : snapshot.series) {
    if (!absl::StartsWith(series.name, "meshlet_upstream_")) continue;
    const absl::string_view name = series.name.substr(17);
    if (name == "rq_duration_seconds") {
      metrics::v1::ClusterStats* cluster = cluster_for(series);
      if (cluster == nullptr || series.histogram.count() == 0) continue;
      FillHistogram(series.histogram, Label(series, "outcome") == "failure"
                                          ? cluster->mutable_failure()
                                          : cluster->mutable_success());
    } else if (name == "tx_bytes_total" || name == "rx_bytes_total" || name == "cx_total") {
      metrics::v1::ClusterStats* cluster = cluster_for(series);
      if (cluster == nullptr) continue;
      if (name == "tx_bytes_total") cluster->set_tx_bytes(series.counter);
      if (name == "rx_bytes_total") cluster->set_rx_bytes(series.counter);
      if (name == "cx_total") cluster->set_cx_total(series.counter);
    } else if (name == "rq_active") {
      metrics::v1::ClusterStats* cluster = cluster_for(series);
      if (cluster != nullptr) cluster->set_rq_active(series.gauge);
    }
  }
  return report;
}

}  // namespace

MetricsReporter::MetricsReporter(event::Loop& loop, const StatsRegistry& stats,
                                 MetricsReporterOptions options)
    : loop_(loop),
      stats_(stats),
      options_(std::move(options)),
      instance_(RandomInstance()),
      start_(absl::Now()),
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
  metrics::v1::MetricsReport report = BuildMetricsReport(stats_.Snapshot());
  report.set_node_id(options_.node_id);
  report.set_service(options_.service);
  report.set_namespace_(options_.namespace_);
  report.set_instance(instance_);
  report.set_time_unix_nano(absl::ToUnixNanos(absl::Now()));
  report.set_start_time_unix_nano(absl::ToUnixNanos(start_));
  in_flight_ = true;
  http::grpc::CallOptions call_options;
  call_options.timeout = options_.interval;
  channel_->Unary(kMetricsReportMethod, report.SerializeAsString(), std::move(call_options),
                  [this, alive = std::weak_ptr<bool>(alive_)](
                      http::grpc::StatusCode code, const std::string& message, std::string) {
                    if (alive.expired()) return;
                    in_flight_ = false;
                    if (code == http::grpc::StatusCode::kOk) {
                      failures_ = 0;
                      return;
                    }
                    // The first failure of a run, then every 60th, to keep the log readable.
                    if (failures_++ % 60 == 0) {
                      LOG(WARN) << "golden metrics report to "
                                << options_.server_addresses[server_index_].ToString()
                                << " failed: " << http::grpc::StatusCodeName(code) << ": "
                                << message;
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
