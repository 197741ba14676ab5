#include "control-plane/telemetry/golden_metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/config/yaml_proto.h"
#include "common/stats/histogram_buckets.h"
#include "control-plane/telemetry/golden_common.h"

namespace meshlet::controlplane::telemetry {

using http::ServerRequest;
using http::ServerResponse;

namespace {

// Sparse fine-bucket counts, ascending by bucket index.
using Buckets = FineCounts;

constexpr size_t kMaxNodeIdBytes = 253;
constexpr size_t kMaxNameBytes = 512;
// The parts of one report round carry its time plus their index in nanoseconds: reports closer
// than this to the round's first are parts of it.
constexpr int64_t kMaxReportParts = 1000;

absl::Status CheckHistogram(const metrics::v1::Histogram& h, absl::string_view where) {
  if (h.bucket_size() != h.count_size()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": bucket and count differ in length"));
  }
  for (int i = 0; i < h.bucket_size(); ++i) {
    if (h.bucket(i) >= HistogramBuckets::kCount || (i > 0 && h.bucket(i) <= h.bucket(i - 1))) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".bucket[", i, "]: out of range or not ascending"));
    }
  }
  return absl::OkStatus();
}

Buckets ToBuckets(const metrics::v1::Histogram& h) {
  Buckets out;
  out.reserve(h.bucket_size());
  for (int i = 0; i < h.bucket_size(); ++i) {
    if (h.count(i) != 0) out.emplace_back(h.bucket(i), h.count(i));
  }
  return out;
}

uint64_t Total(const Buckets& b) {
  uint64_t n = 0;
  for (const auto& [index, count] : b) n += count;
  return n;
}

// newer − older per bucket into `out` (cleared first; a bucket that went down counts 0).
void DeltaInto(const Buckets& newer, const Buckets* older, Buckets& out) {
  out.clear();
  size_t j = 0;
  for (const auto& [index, count] : newer) {
    uint64_t before = 0;
    if (older != nullptr) {
      while (j < older->size() && (*older)[j].first < index) ++j;
      if (j < older->size() && (*older)[j].first == index) before = (*older)[j].second;
    }
    if (count > before) out.emplace_back(index, count - before);
  }
}

// Adds newer − older into `into` (per bucket; a bucket that went down counts 0).
void AddDelta(const Buckets& newer, const Buckets* older, std::map<uint32_t, uint64_t>& into) {
  Buckets delta;
  DeltaInto(newer, older, delta);
  for (const auto& [index, count] : delta) into[index] += count;
}

double FineMidpointMs(uint32_t index) { return HistogramBuckets::Midpoint(index) / 1000.0; }

double PercentileMs(const std::map<uint32_t, uint64_t>& buckets, uint64_t total, double q) {
  return NearestRankMs(buckets, total, q, FineMidpointMs);
}

ServerResponse QueryError(int status, absl::string_view message) {
  return GoldenQueryError(status, message);
}

std::string Number(double v) { return GoldenJsonNumber(v); }

}  // namespace

std::string DestinationService(absl::string_view cluster) {
  if (absl::StartsWith(cluster, "outbound|")) {
    std::vector<absl::string_view> parts = absl::StrSplit(cluster, '|');
    if (parts.size() == 4 && !parts[3].empty()) return std::string(parts[3]);
  }
  return std::string(cluster);
}

std::string SourceService(absl::string_view service, absl::string_view namespace_) {
  if (namespace_.empty()) return std::string(service);
  return absl::StrCat(service, ".", namespace_);
}

struct GoldenMetrics::Sample {
  MonotonicTime at;
  int64_t time_unix_nano = 0;  // the report's own time (the sidecar's start for the zero sample)
  Buckets success;
  Buckets failure;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  uint64_t cx_total = 0;
};

struct GoldenMetrics::Series {
  std::string destination;
  std::deque<Sample> samples;  // oldest first; the last is the latest report
  int64_t rq_active = 0;
};

struct GoldenMetrics::Node {
  uint64_t instance = 0;
  std::string source;
  MonotonicTime last_report;
  int64_t last_time_unix_nano = 0;  // the latest report's own time
  // The time of this report round and of the one before (the parts of a round carry its time
  // plus their index in nanoseconds), for the history's spreading; 0: none yet.
  int64_t round_time_unix_nano = 0;
  int64_t previous_round_unix_nano = 0;
  std::map<std::string, Series, std::less<>> series;
  // The history's workload series of this sidecar ("\x02NAMESPACE/POD", golden_history.h).
  std::string workload_source;
  // Each route rule's latest cumulative histograms, by the history's route series source and
  // destination; for the deltas the history records (route rules keep no window samples).
  struct RouteSample {
    int64_t time_unix_nano = 0;
    Buckets success, failure;
  };
  std::map<std::pair<std::string, std::string>, RouteSample> routes;
  // What the sidecar says of itself, for GET /api/v1/certificates.
  std::string service, namespace_, workload;
  int64_t certificate_not_before = 0, certificate_not_after = 0;  // Unix seconds; 0: none
  std::vector<std::string> trust_bundle_roots;
  std::string certificate_issuer;
  absl::Time reported;
};

struct GoldenMetrics::Stats {
  Counter accepted, invalid, partial, stale;
  Counter dropped_report_limit, dropped_series_limit;
  Gauge series;
};

GoldenMetrics::GoldenMetrics(const Clock& clock, GoldenMetricsLimits limits, StatsRegistry* stats)
    : clock_(clock), limits_(limits), history_(clock, limits.history, stats) {
  if (stats == nullptr) return;
  stats_ = std::make_unique<Stats>();
  StatsShard& shard = stats->shared_shard();
  auto counter = [&](absl::string_view result) {
    auto c =
        shard.RegisterCounter("meshlet_cp_golden_reports_total",
                              "Golden-metrics reports from sidecars, by result (accepted, "
                              "invalid, partial: some clusters over a limit and left out, stale: "
                              "not newer than one already recorded).",
                              {{"result", std::string(result)}});
    return c.ok() ? *c : Counter();
  };
  stats_->accepted = counter("accepted");
  stats_->invalid = counter("invalid");
  stats_->partial = counter("partial");
  stats_->stale = counter("stale");
  auto dropped = [&](absl::string_view reason) {
    auto c = shard.RegisterCounter(
        "meshlet_cp_golden_clusters_dropped_total",
        "Clusters and route rules of golden-metrics reports left out, by reason "
        "(report_limit: past --golden-max-clusters-per-report, series_limit: past "
        "--golden-max-series).",
        {{"reason", std::string(reason)}});
    return c.ok() ? *c : Counter();
  };
  stats_->dropped_report_limit = dropped("report_limit");
  stats_->dropped_series_limit = dropped("series_limit");
  auto gauge = shard.RegisterGauge("meshlet_cp_golden_series",
                                   "(sidecar, cluster) and (sidecar, route rule) pairs the golden "
                                   "metrics track.",
                                   {}, GaugeMerge::kGlobal);
  if (gauge.ok()) stats_->series = *gauge;
}

GoldenMetrics::~GoldenMetrics() = default;

void GoldenMetrics::Expire(MonotonicTime now) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (now - it->second.last_report > limits_.retention) {
      series_count_ -= it->second.series.size() + it->second.routes.size();
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::Status GoldenMetrics::Record(const metrics::v1::MetricsReport& report) {
  absl::Status valid;
  if (report.node_id().empty() || report.node_id().size() > kMaxNodeIdBytes) {
    valid = absl::InvalidArgumentError("node_id: required, at most 253 bytes");
  } else if (report.service().size() > kMaxNameBytes ||
             report.namespace_().size() > kMaxNameBytes) {
    valid = absl::InvalidArgumentError("service, namespace: at most 512 bytes");
  }
  if (report.workload().size() > kMaxNameBytes) {
    valid = absl::InvalidArgumentError("workload: at most 512 bytes");
  }
  for (int i = 0; valid.ok() && i < report.routes_size(); ++i) {
    const metrics::v1::RouteRuleStats& r = report.routes(i);
    const std::string where = absl::StrCat("routes[", i, "]");
    if (r.route().empty() || r.route().size() > kMaxNameBytes ||
        r.service().size() > kMaxNameBytes) {
      valid = absl::InvalidArgumentError(
          absl::StrCat(where, ".route: required, at most 512 bytes (and service)"));
    } else if (valid = CheckHistogram(r.success(), where + ".success"); valid.ok()) {
      valid = CheckHistogram(r.failure(), where + ".failure");
    }
  }
  for (int i = 0; valid.ok() && i < report.clusters_size(); ++i) {
    const metrics::v1::ClusterStats& c = report.clusters(i);
    const std::string where = absl::StrCat("clusters[", i, "]");
    if (c.cluster().empty() || c.cluster().size() > kMaxNameBytes) {
      valid = absl::InvalidArgumentError(absl::StrCat(where, ".cluster: required, at most 512"));
    } else if (valid = CheckHistogram(c.success(), where + ".success"); valid.ok()) {
      valid = CheckHistogram(c.failure(), where + ".failure");
    }
  }
  if (!valid.ok()) {
    if (stats_ != nullptr) stats_->invalid.Inc();
    return valid;
  }

  const MonotonicTime now = clock_.Now();
  Expire(now);
  Node& node = nodes_[report.node_id()];
  if (node.instance != report.instance()) {
    // A new sidecar process (or the first report): its counters started from zero.
    series_count_ -= node.series.size() + node.routes.size();
    node.series.clear();
    node.routes.clear();
    node.instance = report.instance();
    node.round_time_unix_nano = 0;
    node.previous_round_unix_nano = 0;
  } else if (report.time_unix_nano() > 0 && report.time_unix_nano() <= node.last_time_unix_nano) {
    // Already recorded, or overtaken: a report another replica forwarded late, after the sidecar
    // moved here. Recording it would look like counters going backwards.
    if (stats_ != nullptr) stats_->stale.Inc();
    return absl::OkStatus();
  }
  // The history's interval for this report: since the previous round of this sidecar's reports
  // (a cluster left out of that round had no change until it), when this replica saw it.
  const int64_t report_time =
      report.time_unix_nano() > 0 ? report.time_unix_nano() : absl::ToUnixNanos(clock_.WallNow());
  if (node.round_time_unix_nano == 0 ||
      report_time - node.round_time_unix_nano >= kMaxReportParts) {
    node.previous_round_unix_nano = node.round_time_unix_nano;
    node.round_time_unix_nano = report_time;
  }
  node.last_time_unix_nano = report.time_unix_nano();
  node.source = report.service().empty() ? report.node_id()
                                         : SourceService(report.service(), report.namespace_());
  node.last_report = now;
  node.service = report.service();
  node.namespace_ = report.namespace_();
  node.workload = report.workload();
  node.certificate_not_before = report.certificate_not_before_unix();
  node.certificate_not_after = report.certificate_not_after_unix();
  node.trust_bundle_roots.assign(report.trust_bundle_roots().begin(),
                                 report.trust_bundle_roots().end());
  node.certificate_issuer = report.certificate_issuer();
  node.reported = clock_.WallNow();
  node.workload_source = WorkloadSeriesSource(
      report.namespace_(), report.workload().empty() ? report.node_id() : report.workload());
  const Duration coarse = limits_.retention / kCoarseSamples;
  // Past the per-report limit, the first clusters are kept and the rest counted, rather than the
  // whole report refused: a sidecar with more clusters still gets most of its edges recorded.
  const size_t kept =
      std::min(static_cast<size_t>(report.clusters_size()), limits_.max_clusters_per_report);
  size_t over_report_limit = static_cast<size_t>(report.clusters_size()) - kept;
  size_t over_series_limit = 0;
  for (size_t i = 0; i < kept; ++i) {
    const metrics::v1::ClusterStats& c = report.clusters(static_cast<int>(i));
    auto it = node.series.find(c.cluster());
    bool created = false;
    if (it == node.series.end()) {
      if (series_count_ >= limits_.max_series) {
        ++over_series_limit;
        continue;
      }
      it = node.series.emplace(c.cluster(), Series{}).first;
      it->second.destination = DestinationService(c.cluster());
      ++series_count_;
      // Every counter was zero when the sidecar started: that is the series' first baseline, so
      // requests before the first report count in the windows that cover them.
      const int64_t age_nanos = report.time_unix_nano() - report.start_time_unix_nano();
      if (report.start_time_unix_nano() > 0 && age_nanos >= 0 &&
          Duration(age_nanos) < limits_.retention) {
        it->second.samples.push_back(Sample{.at = now - Duration(age_nanos),
                                            .time_unix_nano = report.start_time_unix_nano()});
      }
      created = true;
    }
    Series& series = it->second;
    Sample sample{.at = now,
                  .time_unix_nano = report_time,
                  .success = ToBuckets(c.success()),
                  .failure = ToBuckets(c.failure()),
                  .tx_bytes = c.tx_bytes(),
                  .rx_bytes = c.rx_bytes(),
                  .cx_total = c.cx_total()};
    series.rq_active = c.rq_active();
    if (!series.samples.empty() &&
        Total(sample.success) + Total(sample.failure) <
            Total(series.samples.back().success) + Total(series.samples.back().failure)) {
      series.samples.clear();  // counters went backwards: start over
    }
    // The history: what this report counted since the previous one. A cluster new in a sidecar
    // heard from before had nothing until that sidecar's previous round, so it counts from zero;
    // from a sidecar new to this replica, only one that started within the slots still open
    // counts from zero (else its first report is the baseline: a replica that starts next to
    // long-running sidecars must not put their whole past in one slot).
    const bool heard_before = node.previous_round_unix_nano > 0;
    const Sample* previous = series.samples.empty() ? nullptr : &series.samples.back();
    const bool counts =
        previous != nullptr
            ? heard_before || Duration(report_time - previous->time_unix_nano) <=
                                  limits_.history.open_for + limits_.history.resolution
            : created && heard_before;
    if (counts) {
      const Sample zero;
      const Sample& older = previous != nullptr ? *previous : zero;
      DeltaInto(sample.success, &older.success, success_delta_);
      DeltaInto(sample.failure, &older.failure, failure_delta_);
      auto delta = [](uint64_t newer, uint64_t old) { return newer > old ? newer - old : 0; };
      const EdgeDelta edge_delta{.success = &success_delta_,
                                 .failure = &failure_delta_,
                                 .tx_bytes = delta(sample.tx_bytes, older.tx_bytes),
                                 .rx_bytes = delta(sample.rx_bytes, older.rx_bytes)};
      const int64_t since = std::max(older.time_unix_nano, node.previous_round_unix_nano);
      history_.Add(node.source, series.destination, since, report_time, edge_delta);
      // The workload's outbound calls, per destination (the answer sums them).
      history_.Add(node.workload_source, series.destination, since, report_time, edge_delta);
    }
    // Recent samples at least kResolution apart (the newest replaces a too-recent latest);
    // older than kFineHorizon, at least retention / kCoarseSamples apart; at most one older than
    // the retention (a baseline for the longest window).
    std::deque<Sample>& samples = series.samples;
    if (samples.size() >= 2 && now - samples[samples.size() - 2].at < kResolution) {
      samples.back() = std::move(sample);
    } else {
      samples.push_back(std::move(sample));
    }
    for (size_t i = 1; i + 1 < samples.size() && samples[i + 1].at < now - kFineHorizon;) {
      if (samples[i + 1].at - samples[i - 1].at <= coarse) {
        samples.erase(samples.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    while (samples.size() > 1 && samples[1].at <= now - limits_.retention) samples.pop_front();
    while (samples.size() > kMaxSamplesPerSeries) samples.pop_front();
  }
  // Route rules: their deltas go to the history only (GET /api/v1/stat/routes and
  // /api/v1/stat/history?route= read them there). They share the series limit with clusters.
  const size_t routes_kept =
      std::min(static_cast<size_t>(report.routes_size()), limits_.max_clusters_per_report);
  over_report_limit += static_cast<size_t>(report.routes_size()) - routes_kept;
  for (size_t i = 0; i < routes_kept; ++i) {
    const metrics::v1::RouteRuleStats& r = report.routes(static_cast<int>(i));
    auto key = std::make_pair(RouteSeriesSource(r.route(), r.rule()), r.service());
    auto it = node.routes.find(key);
    const bool created = it == node.routes.end();
    if (created) {
      if (series_count_ >= limits_.max_series) {
        ++over_series_limit;
        continue;
      }
      it = node.routes.emplace(std::move(key), Node::RouteSample{}).first;
      ++series_count_;
    }
    Node::RouteSample& previous = it->second;
    Buckets success = ToBuckets(r.success());
    Buckets failure = ToBuckets(r.failure());
    // As for clusters: a rule new in a sidecar heard from before, or in one that started within
    // the slots still open, counts from zero; else its first report is only a baseline.
    const bool heard_before = node.previous_round_unix_nano > 0;
    const bool started_recently = report.start_time_unix_nano() > 0 &&
                                  Duration(report_time - report.start_time_unix_nano()) <=
                                      limits_.history.open_for + limits_.history.resolution;
    if (created && !heard_before) previous.time_unix_nano = report.start_time_unix_nano();
    if (!created || heard_before || started_recently) {
      DeltaInto(success, created ? nullptr : &previous.success, success_delta_);
      DeltaInto(failure, created ? nullptr : &previous.failure, failure_delta_);
      history_.Add(it->first.first, it->first.second,
                   std::max(previous.time_unix_nano, node.previous_round_unix_nano), report_time,
                   EdgeDelta{.success = &success_delta_, .failure = &failure_delta_});
    }
    previous.time_unix_nano = report_time;
    previous.success = std::move(success);
    previous.failure = std::move(failure);
  }
  const bool partial = over_report_limit > 0 || over_series_limit > 0;
  if (stats_ != nullptr) {
    (partial ? stats_->partial : stats_->accepted).Inc();
    stats_->series.Set(static_cast<int64_t>(series_count_));
    stats_->dropped_report_limit.Inc(over_report_limit);
    stats_->dropped_series_limit.Inc(over_series_limit);
  }
  if (over_report_limit > 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "clusters and route rules: at most ", limits_.max_clusters_per_report,
        " of each per report; the last ", over_report_limit, " of ",
        report.clusters_size() + report.routes_size(), " were left out",
        over_series_limit > 0 ? absl::StrCat(", and ", over_series_limit, " over the series limit")
                              : ""));
  }
  if (over_series_limit > 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("golden metrics track at most ", limits_.max_series,
                     " (sidecar, cluster or route rule) pairs; ", over_series_limit,
                     " clusters and route rules of this report were left out"));
  }
  return absl::OkStatus();
}

std::vector<EdgeStats> GoldenMetrics::Query(Duration window, absl::string_view service) const {
  window = std::clamp<Duration>(window, std::chrono::seconds(1), limits_.retention);
  const MonotonicTime now = clock_.Now();
  const MonotonicTime from = now - window;
  struct Accumulator {
    EdgeStats edge;
    std::map<uint32_t, uint64_t> latency;
    double tx = 0, rx = 0, cx = 0;
  };
  std::map<std::pair<std::string, std::string>, Accumulator> edges;
  for (const auto& [node_id, node] : nodes_) {
    if (node.last_report < from) continue;
    for (const auto& [cluster, series] : node.series) {
      if (series.samples.empty() || series.samples.back().at < from) continue;
      if (!service.empty() && node.source != service && series.destination != service) continue;
      const Sample& newest = series.samples.back();
      // The baseline: the latest sample at or before the window's start (the zero sample at the
      // sidecar's start counts), else the oldest one we have, else zero.
      const Sample* base = nullptr;
      for (size_t i = 0; i + 1 < series.samples.size(); ++i) {
        if (series.samples[i].at <= from) base = &series.samples[i];
      }
      if (base == nullptr && series.samples.size() >= 2) base = &series.samples.front();
      const double seconds = base != nullptr
                                 ? std::chrono::duration<double>(newest.at - base->at).count()
                                 : std::chrono::duration<double>(window).count();
      Accumulator& a = edges[{node.source, series.destination}];
      a.edge.source = node.source;
      a.edge.destination = series.destination;
      std::map<uint32_t, uint64_t> success, failure;
      AddDelta(newest.success, base != nullptr ? &base->success : nullptr, success);
      AddDelta(newest.failure, base != nullptr ? &base->failure : nullptr, failure);
      uint64_t ok = 0, failed = 0;
      for (const auto& [index, count] : success) {
        ok += count;
        a.latency[index] += count;
      }
      for (const auto& [index, count] : failure) {
        failed += count;
        a.latency[index] += count;
      }
      a.edge.requests += ok + failed;
      a.edge.failures += failed;
      auto rate = [&](uint64_t newer, uint64_t older) {
        return seconds > 0 && newer >= older ? static_cast<double>(newer - older) / seconds : 0.0;
      };
      a.edge.rps += rate(ok + failed, 0);
      a.tx += rate(newest.tx_bytes, base != nullptr ? base->tx_bytes : 0);
      a.rx += rate(newest.rx_bytes, base != nullptr ? base->rx_bytes : 0);
      a.cx += rate(newest.cx_total, base != nullptr ? base->cx_total : 0);
      auto delta = [](uint64_t newer, uint64_t older) {
        return newer >= older ? newer - older : 0;
      };
      a.edge.tx_bytes += delta(newest.tx_bytes, base != nullptr ? base->tx_bytes : 0);
      a.edge.rx_bytes += delta(newest.rx_bytes, base != nullptr ? base->rx_bytes : 0);
      a.edge.connections += delta(newest.cx_total, base != nullptr ? base->cx_total : 0);
      a.edge.active_requests += series.rq_active;
      ++a.edge.reporters;
    }
  }
  std::vector<EdgeStats> out;
  out.reserve(edges.size());
  for (auto& [key, a] : edges) {
    EdgeStats& e = a.edge;
    // A cluster a sidecar has but did not use in the window is no edge of the traffic.
    if (e.requests == 0 && e.connections == 0 && e.tx_bytes == 0 && e.rx_bytes == 0 &&
        e.active_requests == 0) {
      continue;
    }
    e.window_seconds = std::chrono::duration<double>(window).count();
    e.success_rate = e.requests == 0 ? std::numeric_limits<double>::quiet_NaN()
                                     : static_cast<double>(e.requests - e.failures) / e.requests;
    e.p50_ms = PercentileMs(a.latency, e.requests, 0.50);
    e.p95_ms = PercentileMs(a.latency, e.requests, 0.95);
    e.p99_ms = PercentileMs(a.latency, e.requests, 0.99);
    e.tx_bytes_per_second = a.tx;
    e.rx_bytes_per_second = a.rx;
    e.connections_per_second = a.cx;
    out.push_back(std::move(e));
  }
  return out;
}

ServerResponse GoldenMetrics::HandleQuery(const ServerRequest& request) {
  if (request.method() != "GET") {
    ServerResponse r = QueryError(405, "only GET is allowed here");
    r.headers.Add("allow", "GET");
    return r;
  }
  Duration window = std::chrono::minutes(1);
  std::string service;
  for (const auto& [name, value] : request.QueryParams()) {
    if (name == "window") {
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
      if (!d.ok() || *d < absl::Seconds(1) || absl::ToChronoNanoseconds(*d) > limits_.retention) {
        return QueryError(
            400,
            absl::StrCat("window: \"", value, "\" is not a duration from 1s to the retention (",
                         absl::FormatDuration(absl::FromChrono(limits_.retention)), ")"));
      }
      window = absl::ToChronoNanoseconds(*d);
    } else if (name == "service") {
      service = value;
    } else {
      return QueryError(400,
                        absl::StrCat("unknown parameter \"", name, "\"; known: window, service"));
    }
  }
  std::vector<std::string> items;
  for (const EdgeStats& e : Query(window, service)) {
    items.push_back(absl::StrCat(
        R"({"source":)", JsonQuote(e.source), R"(,"destination":)", JsonQuote(e.destination),
        R"(,"requests":)", e.requests, R"(,"failures":)", e.failures, R"(,"rps":)", Number(e.rps),
        R"(,"successRate":)", Number(e.success_rate), R"(,"latencyMs":{"p50":)", Number(e.p50_ms),
        R"(,"p95":)", Number(e.p95_ms), R"(,"p99":)", Number(e.p99_ms), R"(},"txBytesPerSecond":)",
        Number(e.tx_bytes_per_second), R"(,"rxBytesPerSecond":)", Number(e.rx_bytes_per_second),
        R"(,"connectionsPerSecond":)", Number(e.connections_per_second), R"(,"txBytes":)",
        e.tx_bytes, R"(,"rxBytes":)", e.rx_bytes, R"(,"connections":)", e.connections,
        R"(,"activeRequests":)", e.active_requests, R"(,"reporters":)", e.reporters, "}"));
  }
  return ServerResponse::Json(
      200, absl::StrCat(
               R"({"kind":"StatList","windowSeconds":)",
               Number(std::chrono::duration<double>(
                          std::clamp<Duration>(window, std::chrono::seconds(1), limits_.retention))
                          .count()),
               R"(,"items":[)", absl::StrJoin(items, ","), "]}\n"));
}

std::vector<GoldenMetrics::CertificateReport> GoldenMetrics::CertificateReports(
    absl::Time since) const {
  std::vector<CertificateReport> out;
  for (const auto& [id, node] : nodes_) {
    if (node.reported < since) continue;
    out.push_back({id, node.trust_bundle_roots, node.certificate_issuer});
  }
  return out;
}

ServerResponse GoldenMetrics::HandleCertificates(const ServerRequest& request) const {
  if (!request.QueryParams().empty()) {
    return ServerResponse::Json(400, R"({"error":"GET /api/v1/certificates takes no parameters"})"
                                     "\n");
  }
  const auto time = [](absl::Time t) {
    return JsonQuote(absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone()));
  };
  std::vector<std::string> items;
  for (const auto& [id, node] : nodes_) {
    if (node.certificate_not_after == 0) continue;
    items.push_back(absl::StrCat(
        R"({"node":)", JsonQuote(id), R"(,"namespace":)", JsonQuote(node.namespace_),
        R"(,"service":)", JsonQuote(node.service), R"(,"workload":)",
        JsonQuote(node.workload.empty() ? id : node.workload), R"(,"notBefore":)",
        node.certificate_not_before == 0 ? std::string("null")
                                         : time(absl::FromUnixSeconds(node.certificate_not_before)),
        R"(,"notAfter":)", time(absl::FromUnixSeconds(node.certificate_not_after)),
        R"(,"reported":)", time(node.reported), "}"));
  }
  return ServerResponse::Json(200,
                              absl::StrCat(R"({"items":[)", absl::StrJoin(items, ","), "]}\n"));
}

}  // namespace meshlet::controlplane::telemetry
