#pragma once

// GoldenMetrics: per source → destination service request rate, success rate, latency
// percentiles, bytes and connections, from the sidecars' own counters (not from sampled spans).
// Sidecars push a compact cumulative report every interval (xds/metrics.proto,
// meshlet.metrics.v1.MetricsService/Report on the discovery port); this keeps a few recent
// reports per sidecar and cluster and answers queries over a window by differencing them.
// docs/golden-metrics.md and ADR 0019 describe the design.
//
//   GET /api/v1/stat?window=1m&service=S   (15014, behind the API token)
//
// Bounded: at most `max_series` (sidecar, cluster) pairs are tracked and at most
// `max_clusters_per_report` clusters of one report recorded (the clusters past either limit are
// left out and counted, the rest of the report is kept); each keeps at most kMaxSamplesPerSeries
// samples (every 5 s for the last 70 s, then retention / 10 apart); a sidecar silent for
// `retention` is forgotten. Labels are services, never pods or paths.
//
// Every recorded report (a sidecar's own or one another replica forwarded) also adds what it
// counted since the sidecar's previous report to the history (golden_history.h), which answers
// GET /api/v1/stat/history.
//
// Threading: the control plane's loop thread only.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/telemetry/golden_history.h"
#include "xds/metrics.pb.h"

namespace meshlet::controlplane::telemetry {

inline constexpr char kMetricsReportMethod[] = "/meshlet.metrics.v1.MetricsService/Report";

struct GoldenMetricsLimits {
  size_t max_series = 10000;                      // (sidecar, cluster) pairs
  Duration retention = std::chrono::minutes(10);  // longest query window
  // Clusters recorded from one report, the first ones; the rest are left out and counted.
  // Sidecars send only clusters with traffic, split into parts of at most 500.
  size_t max_clusters_per_report = 1000;
  // The history (golden_history.h) every recorded report also feeds.
  GoldenHistoryLimits history;
};

// "outbound|8080||backend.default" → "backend.default"; other names are returned unchanged.
std::string DestinationService(absl::string_view cluster);
// "frontend" in namespace "default" → "frontend.default" (the form cluster names use).
std::string SourceService(absl::string_view service, absl::string_view namespace_);

struct EdgeStats {
  std::string source;
  std::string destination;
  uint64_t requests = 0;  // in the window
  uint64_t failures = 0;
  double window_seconds = 0;
  double rps = 0;
  double success_rate = 0;                    // NaN when no requests
  double p50_ms = 0, p95_ms = 0, p99_ms = 0;  // NaN when no requests
  double tx_bytes_per_second = 0;
  double rx_bytes_per_second = 0;
  double connections_per_second = 0;  // upstream connections opened
  // The same in the window, as counts (TCP proxy traffic has bytes and connections, no requests).
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  uint64_t connections = 0;
  int64_t active_requests = 0;  // as last reported
  size_t reporters = 0;         // sidecars contributing
};

class GoldenMetrics {
 public:
  // `stats` may be null; not owned. `clock` must outlive this.
  GoldenMetrics(const Clock& clock, GoldenMetricsLimits limits, StatsRegistry* stats);
  ~GoldenMetrics();

  // Stores one report. InvalidArgument for a malformed one (nothing stored);
  // ResourceExhausted when some clusters were left out at the per-report or the series limit
  // (the rest is stored).
  absl::Status Record(const metrics::v1::MetricsReport& report);

  // Edges with traffic in the last `window` (clamped to the retention), sorted by source then
  // destination. `service` (optional) keeps edges whose source or destination it is.
  std::vector<EdgeStats> Query(Duration window, absl::string_view service = "") const;

  // GET /api/v1/stat (the caller authenticated it).
  http::ServerResponse HandleQuery(const http::ServerRequest& request);

  // GET /api/v1/certificates (the caller authenticated it): the workload certificate each
  // sidecar reported last (MetricsReport.certificate_not_*), for `meshctl check`'s renewal
  // warning: {"items":[{"node","namespace","service","workload","notBefore","notAfter",
  // "reported"}]}, sorted by node; sidecars without a certificate are left out.
  http::ServerResponse HandleCertificates(const http::ServerRequest& request) const;

  const GoldenHistory& history() const { return history_; }
  GoldenHistory& history() { return history_; }

  // What each sidecar said last of its mesh TLS (MetricsReport.trust_bundle_roots,
  // certificate_issuer): a CA rotation's observations (control-plane/ca/rotation.h). The
  // sidecars whose last report is not older than `since`, sorted by node.
  struct CertificateReport {
    std::string node;
    std::vector<std::string> trust_bundle_roots;
    std::string issuer;
  };
  std::vector<CertificateReport> CertificateReports(absl::Time since) const;

  size_t series_count() const { return series_count_; }
  const GoldenMetricsLimits& limits() const { return limits_; }

  // Samples kept per series: every kResolution for the last kFineHorizon, then
  // retention / kCoarseSamples apart.
  static constexpr Duration kResolution = std::chrono::seconds(5);
  static constexpr Duration kFineHorizon = std::chrono::seconds(70);
  static constexpr size_t kCoarseSamples = 10;
  static constexpr size_t kMaxSamplesPerSeries = 32;

 private:
  struct Sample;
  struct Series;
  struct Node;
  struct Stats;
  void Expire(MonotonicTime now);

  const Clock& clock_;
  const GoldenMetricsLimits limits_;
  std::map<std::string, Node, std::less<>> nodes_;
  size_t series_count_ = 0;
  std::unique_ptr<Stats> stats_;
  GoldenHistory history_;
  FineCounts success_delta_, failure_delta_;  // scratch for Record, kept for their capacity
};

}  // namespace meshlet::controlplane::telemetry
