#pragma once

// MetricsReporter: sends the control plane the sidecar's golden metrics — per outbound cluster,
// the request-duration histograms by outcome, body bytes, connections opened and requests in
// flight — every interval, as meshlet.metrics.v1.MetricsService/Report calls
// (docs/golden-metrics.md, ADR 0019). Values are cumulative; the control plane turns them into
// rates and percentiles over its windows, so a lost report costs resolution, not counts.
//
// Only clusters whose values changed since the control plane last accepted them are sent, in
// parts of bounded size sent one after another (ReportBuilder, report_builder.h). A failed part
// ends the round; its clusters and those of the parts after it go in the next report. A report is
// skipped while the previous one's parts are still in flight.
//
// Threading: the main loop's thread. The reporter reads the StatsRegistry (which takes its lock
// briefly); the workers never wait for it.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/telemetry/report_builder.h"
#include "xds/metrics.pb.h"

namespace meshlet::sidecar::telemetry {

inline constexpr char kMetricsReportMethod[] = "/meshlet.metrics.v1.MetricsService/Report";

struct MetricsReporterOptions {
  // The control plane's replicas; a failed report makes the next go to the next. At least one.
  std::vector<net::Address> server_addresses;
  net::TransportFactory transport_factory;  // null: plaintext h2c
  std::string authority;
  Duration interval = std::chrono::seconds(10);
  std::string node_id;
  std::string service;
  std::string namespace_;
  // The pod's name as the node knows it (MetricsReport.workload; WorkloadOfNode()).
  std::string workload;
  // Size of each report message (metrics_report.max_clusters_per_message).
  ReportSplitOptions split;
  // What a CA rotation watches (MetricsReport.trust_bundle_roots, certificate_issuer): the
  // fingerprints of the trust bundle's roots and of the workload certificate's issuer, asked at
  // each report on the loop thread. Unset: not reported.
  std::function<void(metrics::v1::MetricsReport& report)> certificate_facts;
};

// The workload a node id names: "<pod>.<namespace>" (--node-id=auto) gives the pod; another id is
// the workload's name as it is.
std::string WorkloadOfNode(absl::string_view node_id, absl::string_view namespace_);

class MetricsReporter {
 public:
  // Construct it before traffic flows: its construction time is reported as when the counters
  // started.
  MetricsReporter(event::Loop& loop, const StatsRegistry& stats, MetricsReporterOptions options);
  ~MetricsReporter();
  MetricsReporter(const MetricsReporter&) = delete;
  MetricsReporter& operator=(const MetricsReporter&) = delete;

  // Starts the timer; the first report goes out after one interval.
  void Start();
  // Sends a report now (unless one is in flight). Also used by the timer.
  void ReportNow();

 private:
  event::Loop& loop_;
  const StatsRegistry& stats_;
  const MetricsReporterOptions options_;
  const uint64_t instance_;
  const absl::Time start_;
  ReportBuilder builder_;
  std::unique_ptr<http::grpc::Channel> channel_;
  size_t server_index_ = 0;  // channel_ goes to server_addresses[server_index_]
  void MakeChannel();
  event::Timer timer_;
  void SendNextPart();
  // The parts of the report in flight; parts_[next_part_] is being sent.
  std::vector<metrics::v1::MetricsReport> parts_;
  size_t next_part_ = 0;
  bool in_flight_ = false;
  uint64_t failures_ = 0;
  // Callbacks that outlive the reporter see it expired.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace meshlet::sidecar::telemetry
