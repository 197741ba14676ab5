#pragma once

// GoldenHistory: golden metrics over time, one point per edge (source service → destination
// service) every `resolution` (10 s) for `retention` (1 h), read per edge or per service (inbound:
// the sum of the edges into it). GoldenMetrics (golden_metrics.h) feeds it what each sidecar
// report added to each of its clusters since that sidecar's previous report; docs/golden-metrics.md
// ("History") and ADR 0095 describe the design.
//
//   GET /api/v1/stat/history?service=S|edge=A,B&from=&to=&window=&step=   (15014, API token)
//
// Time is the reports' own (the sidecar's clock), not the arrival's, so every replica that records
// the same reports (its own and those peer_forwarder.h brings) holds the same points. A delta is
// spread over the slots between the sidecar's previous report round and this one, in proportion to
// time, so a report interval equal to the resolution does not alias into empty and doubled slots.
//
// Memory: the slots still open (the last `open_for`, which late or forwarded reports may still
// add to) are kept as sparse counts; older ones are sealed into one varint-encoded byte vector
// per edge (failures, bytes and the non-empty latency buckets: HistogramBuckets' fine buckets
// merged four to one, 12.5 % relative precision). At most `max_series` edges; the deltas of
// edges past it are dropped and counted, never stored elsewhere. An edge without data in the
// retention is forgotten.
//
// Threading: the control plane's loop thread only. Add() and Query() do not block.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/http/server.h"
#include "common/stats/stats.h"

namespace meshlet::controlplane::telemetry {

struct GoldenHistoryLimits {
  Duration resolution = std::chrono::seconds(10);  // one point per edge per this
  Duration retention = std::chrono::hours(1);      // how far back history reaches
  size_t max_series = 10000;                       // edges kept; more are dropped and counted
  // A slot takes data this long after it ends (reports forwarded by another replica, a report
  // that was slow to arrive); data for an older slot goes into the oldest slot still open and is
  // counted `late`.
  Duration open_for = std::chrono::seconds(30);
  // A report whose own time is further than this from this control plane's clock is placed at
  // the control plane's time instead (counted `clock_skew`).
  Duration max_clock_skew = std::chrono::minutes(5);
  size_t max_points = 1000;  // points in one answer; a smaller step is refused with 400
};

// Fine-bucket counts (HistogramBuckets indices, ascending) that one report added.
using FineCounts = std::vector<std::pair<uint32_t, uint64_t>>;

// One report's addition to one edge, between the sidecar's previous report round and this one.
struct EdgeDelta {
  const FineCounts* success = nullptr;  // not owned; null: none
  const FineCounts* failure = nullptr;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
};

// One point of a series: what was reported in [start, start + step).
struct HistoryPoint {
  absl::Time start;
  uint64_t requests = 0;
  uint64_t failures = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  double rps = 0;
  double success_rate = 0;                    // NaN without requests
  double p50_ms = 0, p95_ms = 0, p99_ms = 0;  // NaN without requests
};

// Series besides edges (ADR 0095 amended): the history keys them as edges whose source carries
// a kind byte no service name has, so they share the edges' storage and limit (max_series) but no
// service's or edge's answer.
//   route rule: RouteSeriesSource("HTTPRoute/default/reviews", 1) -> destination service
//   workload:   WorkloadSeriesSource("default", "reviews-v1-7c9d") -> destination service
std::string RouteSeriesSource(absl::string_view route, int32_t rule);
std::string WorkloadSeriesSource(absl::string_view namespace_, absl::string_view workload);

// What to read: one edge (source and destination), one service's inbound (service), one route
// rule's requests (route, rule) or one workload's outbound calls (workload), each summed over
// the destinations.
struct HistoryQuery {
  std::string service;
  std::string source, destination;
  // "NAMESPACE/NAME" of an HTTPRoute or GRPCRoute, and its rule (-1: every rule).
  std::string route;
  int32_t rule = -1;
  std::string workload;  // "NAMESPACE/POD"
  // Points start at `from` (a multiple of the resolution) rather than at multiples of the step.
  bool align_to_from = false;
  // From the point holding `from` to the one holding the last instant before `to`; points start
  // at multiples of the step (Unix time).
  absl::Time from, to;
  Duration step{};  // a multiple of the resolution
};

class GoldenHistory {
 public:
  // `stats` may be null; not owned. `clock` must outlive this. Limits are not validated here
  // (the flags are): resolution > 0, retention and open_for multiples of it.
  GoldenHistory(const Clock& clock, GoldenHistoryLimits limits, StatsRegistry* stats);
  ~GoldenHistory();
  GoldenHistory(const GoldenHistory&) = delete;
  GoldenHistory& operator=(const GoldenHistory&) = delete;

  // Adds `delta` to edge source → destination, spread over (since_unix_nano, at_unix_nano] (the
  // previous report round's time and this report's, the sidecar's clock; since 0: all at `at`).
  void Add(absl::string_view source, absl::string_view destination, int64_t since_unix_nano,
           int64_t at_unix_nano, const EdgeDelta& delta);

  // The points of `query` from..to, every step (empty ones included), oldest first.
  // InvalidArgument (with what is wrong) for a bad range or step.
  absl::StatusOr<std::vector<HistoryPoint>> Query(const HistoryQuery& query) const;

  // GET /api/v1/stat/history (the caller authenticated it).
  http::ServerResponse HandleQuery(const http::ServerRequest& request) const;
  // GET /api/v1/stat/routes?service=S&window=1m: each route rule that sent requests to S, with its
  // figures over the window (the caller authenticated it).
  http::ServerResponse HandleRoutes(const http::ServerRequest& request) const;

  // What an answer's `events` holds: the configuration changes in [from, to) that concern any
  // of `services` (the service asked for, or the edge's two; empty, every change, for a route
  // rule's or a workload's answer), as a JSON array
  // (ConfigEvents::EventsJson, config_events.h). Unset: always "[]". Called on the loop thread.
  using EventsSource = std::function<std::string(absl::Time from, absl::Time to,
                                                 const std::vector<std::string>& services)>;
  void SetEventsSource(EventsSource source) { events_source_ = std::move(source); }

  // Seals the slots no longer open, drops slots past the retention and edges left without any.
  // Add() calls it at most once per resolution; tests call it to settle.
  void Sweep();

  size_t series_count() const { return edges_.size(); }
  // Heap held by the history (edges, keys, open and sealed slots), in bytes.
  size_t memory_bytes() const;
  const GoldenHistoryLimits& limits() const { return limits_; }

  // Latency buckets kept: HistogramBuckets' fine buckets merged kMergedBuckets to one.
  static constexpr uint32_t kMergedBuckets = 4;

 private:
  struct OpenSlot;
  struct Edge;
  struct Stats;
  int64_t SlotOf(int64_t unix_nano) const;
  int64_t NowSlot() const;
  void SealAndTrim(Edge& edge, int64_t now_slot) const;
  size_t EdgeBytes(const Edge& edge) const;

  const Clock& clock_;
  const GoldenHistoryLimits limits_;
  const int64_t resolution_nanos_;
  const int64_t retention_slots_;
  const int64_t open_slots_;
  // (source, destination) in order, found by string_views too.
  struct KeyLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<absl::string_view, absl::string_view>(a.first, a.second) <
             std::pair<absl::string_view, absl::string_view>(b.first, b.second);
    }
  };
  std::map<std::pair<std::string, std::string>, Edge, KeyLess> edges_;
  int64_t last_sweep_slot_ = 0;
  std::unique_ptr<Stats> stats_;
  EventsSource events_source_;
};

}  // namespace meshlet::controlplane::telemetry
