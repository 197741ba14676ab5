#include "control-plane/telemetry/golden_history.h"

#include <malloc.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/histogram_buckets.h"
#include "control-plane/telemetry/golden_metrics.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

using std::chrono::seconds;

constexpr char kBackend[] = "outbound|8080||backend.default";

int64_t Nanos(const Clock& clock) { return absl::ToUnixNanos(clock.WallNow()); }

// `n` requests of `micros` each, as fine buckets.
FineCounts At(uint64_t micros, uint64_t n) { return {{HistogramBuckets::Index(micros), n}}; }

http::ServerRequest Get(absl::string_view path) {
  http::ServerRequest request;
  request.headers.Add(":method", "GET");
  request.headers.Add(":path", path);
  return request;
}

uint64_t CounterValue(const StatsRegistry& stats, absl::string_view name, const LabelSet& labels) {
  StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* series = snapshot.Find(name, labels);
  return series != nullptr ? series->counter : 0;
}

uint64_t Requests(const std::vector<HistoryPoint>& points) {
  uint64_t n = 0;
  for (const HistoryPoint& p : points) n += p.requests;
  return n;
}

HistoryQuery Edge(const Clock& clock, Duration back, Duration step) {
  return {.source = "frontend.default",
          .destination = "backend.default",
          .from = clock.WallNow() - absl::FromChrono(back),
          .to = clock.WallNow(),
          .step = step};
}

TEST(GoldenHistoryTest, PointsAtTheResolutionSpreadOverTheReportInterval) {
  FakeClock clock;  // its wall time starts on a 10 s boundary
  GoldenHistory history(clock, {}, nullptr);
  const int64_t t0 = Nanos(clock);
  clock.Advance(seconds(25));
  FineCounts ok = At(2000, 80), failed = At(100000, 20);
  // One report at t0+25s covering (t0+5s, t0+25s]: a quarter in slot 0, half in 1, a quarter in 2.
  history.Add("frontend.default", "backend.default", t0 + 5'000'000'000, t0 + 25'000'000'000,
              {.success = &ok, .failure = &failed, .tx_bytes = 400, .rx_bytes = 800});
  absl::StatusOr<std::vector<HistoryPoint>> points =
      history.Query({.source = "frontend.default",
                     .destination = "backend.default",
                     .from = absl::FromUnixNanos(t0),
                     .to = absl::FromUnixNanos(t0 + 30'000'000'000),
                     .step = seconds(10)});
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 3u);
  EXPECT_EQ((*points)[0].start, absl::FromUnixNanos(t0));
  EXPECT_EQ((*points)[0].requests, 25u);
  EXPECT_EQ((*points)[1].requests, 50u);
  EXPECT_EQ((*points)[2].requests, 25u);
  EXPECT_EQ((*points)[0].failures + (*points)[1].failures + (*points)[2].failures, 20u);
  EXPECT_EQ((*points)[1].failures, 10u);
  EXPECT_EQ((*points)[1].tx_bytes, 200u);
  EXPECT_EQ((*points)[1].rx_bytes, 400u);
  EXPECT_DOUBLE_EQ((*points)[1].rps, 5.0);
  EXPECT_DOUBLE_EQ((*points)[1].success_rate, 0.8);

  // A 30 s step holds the three slots.
  points = history.Query({.source = "frontend.default",
                          .destination = "backend.default",
                          .from = absl::FromUnixNanos(t0),
                          .to = absl::FromUnixNanos(t0 + 30'000'000'000),
                          .step = seconds(30)});
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 2u);  // 30 s steps start at multiples of 30 s
  EXPECT_EQ((*points)[0].requests + (*points)[1].requests, 100u);
  EXPECT_EQ((*points)[0].failures + (*points)[1].failures, 20u);
  EXPECT_EQ((*points)[0].tx_bytes + (*points)[1].tx_bytes, 400u);
}

TEST(GoldenHistoryTest, PercentilesFromMergedBucketsOfEveryCaller) {
  FakeClock clock;
  GoldenHistory history(clock, {}, nullptr);
  clock.Advance(seconds(5));
  const int64_t at = Nanos(clock);
  // Two callers of backend: together 90 at 1 ms, 9 at 40 ms, 1 at 900 ms.
  FineCounts a = At(1000, 60), b = {{HistogramBuckets::Index(1000), 30},
                                    {HistogramBuckets::Index(40000), 9},
                                    {HistogramBuckets::Index(900000), 1}};
  history.Add("frontend.default", "backend.default", 0, at, {.success = &a});
  history.Add("admin.default", "backend.default", 0, at, {.success = &b});
  history.Add("backend.default", "db.default", 0, at, {.success = &a});  // not into backend
  absl::StatusOr<std::vector<HistoryPoint>> points =
      history.Query({.service = "backend.default",
                     .from = clock.WallNow() - absl::Seconds(10),
                     .to = clock.WallNow(),
                     .step = seconds(10)});
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 2u);  // [now - 15 s, now + 5 s) at 10 s
  const HistoryPoint& p = points->back();
  EXPECT_EQ(p.requests, 100u);
  // Within the merged buckets' precision (12.5 %) of the true values.
  EXPECT_NEAR(p.p50_ms, 1.0, 0.125);
  EXPECT_NEAR(p.p95_ms, 40.0, 40 * 0.125);
  EXPECT_NEAR(p.p99_ms, 40.0, 40 * 0.125);
  // The edge alone: frontend's 60 at 1 ms.
  points = history.Query(Edge(clock, seconds(10), seconds(10)));
  ASSERT_TRUE(points.ok());
  EXPECT_EQ(points->back().requests, 60u);
  EXPECT_NEAR(points->back().p99_ms, 1.0, 0.125);
}

TEST(GoldenHistoryTest, KeepsTheRetentionThenForgets) {
  FakeClock clock;
  StatsRegistry stats;
  GoldenHistory history(clock, {}, &stats);
  FineCounts ok = At(1000, 10);
  // A report every 10 s for 70 minutes.
  for (int i = 1; i <= 420; ++i) {
    clock.Advance(seconds(10));
    const int64_t now = Nanos(clock);
    history.Add("frontend.default", "backend.default", now - 10'000'000'000, now, {.success = &ok});
  }
  history.Sweep();
  absl::StatusOr<std::vector<HistoryPoint>> points =
      history.Query(Edge(clock, std::chrono::minutes(70), seconds(10)));
  ASSERT_TRUE(points.ok()) << points.status();
  uint64_t total = 0;
  size_t with_data = 0;
  for (const HistoryPoint& p : *points) {
    total += p.requests;
    if (p.requests > 0) ++with_data;
  }
  // An hour of 10 s slots (the newest one still filling), no more.
  EXPECT_EQ(with_data, 360u);
  EXPECT_EQ(total, 3600u);
  EXPECT_GT(history.memory_bytes(), 0u);
  {
    StatsSnapshot snapshot = stats.Snapshot();
    const SeriesSnapshot* bytes = snapshot.Find("meshlet_cp_golden_history_bytes", {});
    const SeriesSnapshot* series = snapshot.Find("meshlet_cp_golden_history_series", {});
    ASSERT_NE(bytes, nullptr);
    ASSERT_NE(series, nullptr);
    EXPECT_EQ(bytes->gauge, static_cast<int64_t>(history.memory_bytes()));
    EXPECT_EQ(series->gauge, 1);
  }
  // Nothing more for an hour: the edge is forgotten.
  clock.Advance(std::chrono::minutes(61));
  history.Sweep();
  EXPECT_EQ(history.series_count(), 0u);
  EXPECT_EQ(history.memory_bytes(), 0u);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_golden_history_deltas_total", {{"result", "recorded"}}),
            420u);
}

TEST(GoldenHistoryTest, EdgesPastTheLimitAreDroppedAndCounted) {
  FakeClock clock;
  StatsRegistry stats;
  GoldenHistory history(clock, {.max_series = 2}, &stats);
  FineCounts ok = At(1000, 1);
  for (const char* destination : {"a.default", "b.default", "c.default", "c.default"}) {
    history.Add("frontend.default", destination, 0, Nanos(clock), {.success = &ok});
  }
  EXPECT_EQ(history.series_count(), 2u);
  // A delta with nothing in it takes no edge.
  FineCounts none;
  history.Add("frontend.default", "d.default", 0, Nanos(clock), {.success = &none});
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_golden_history_deltas_total", {{"result", "series_limit"}}),
      2u);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_golden_history_deltas_total", {{"result", "recorded"}}),
            2u);
}

TEST(GoldenHistoryTest, LateAndSkewedReportsAreKeptAndCounted) {
  FakeClock clock;
  StatsRegistry stats;
  GoldenHistory history(clock, {}, &stats);
  clock.Advance(std::chrono::minutes(2));
  history.Sweep();
  FineCounts ok = At(1000, 7);
  // 60 s old: its slot is sealed; it goes into the oldest open one (30 s back).
  history.Add("frontend.default", "backend.default", 0, Nanos(clock) - 60'000'000'000,
              {.success = &ok});
  // A sidecar clock an hour ahead: placed now.
  history.Add("frontend.default", "backend.default", 0, Nanos(clock) + 3'600'000'000'000,
              {.success = &ok});
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_golden_history_deltas_total", {{"result", "late"}}),
            1u);
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_golden_history_deltas_total", {{"result", "clock_skew"}}),
      1u);
  absl::StatusOr<std::vector<HistoryPoint>> points =
      history.Query(Edge(clock, seconds(60), seconds(10)));
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 6u);         // [now - 60 s, now): the slot from now on is not in it
  EXPECT_EQ((*points)[3].requests, 7u);  // 30 s back: the oldest slot still open
  HistoryQuery to_now = Edge(clock, seconds(10), seconds(10));
  to_now.to += absl::Seconds(1);
  points = history.Query(to_now);
  ASSERT_TRUE(points.ok());
  EXPECT_EQ(points->back().requests, 7u);
}

TEST(GoldenHistoryTest, ApiAnswersJsonAndExplainsBadParameters) {
  FakeClock clock;
  GoldenHistory history(clock, {}, nullptr);
  FineCounts ok = At(3000, 20), failed = At(3000, 5);
  clock.Advance(seconds(15));
  history.Add("frontend.default", "backend.default", 0, Nanos(clock),
              {.success = &ok, .failure = &failed, .tx_bytes = 100, .rx_bytes = 1000});
  const int64_t now = absl::ToUnixSeconds(clock.WallNow());

  http::ServerResponse r = history.HandleQuery(
      Get(absl::StrCat("/api/v1/stat/history?edge=frontend.default,backend.default&from=", now - 20,
                       "&to=", now, "&step=10s")));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StartsWith(
      r.body, absl::StrCat(R"({"kind":"StatHistory","source":"frontend.default",)",
                           R"("destination":"backend.default","from":)", now - 25, R"(,"to":)",
                           now + 5, R"(,"stepSeconds":10,"resolutionSeconds":10,)",
                           R"("retentionSeconds":3600,"points":[{"time":)", now - 25,
                           R"(,"requests":0,"failures":0,"rps":0,"successRate":null,)")))
      << r.body;
  EXPECT_TRUE(absl::StrContains(
      r.body, absl::StrCat(R"({"time":)", now - 5,
                           R"(,"requests":25,"failures":5,"rps":2.5,"successRate":0.8,)",
                           R"("latencyMs":{"p50":2.816,"p95":2.816,"p99":2.816})")))
      << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("txBytes":100,"rxBytes":1000,"txBytesPerSecond":10,)"))
      << r.body;
  EXPECT_TRUE(absl::EndsWith(r.body, "],\"events\":[]}\n")) << r.body;

  // By service, the last hour by default: 360 (or 361, unaligned) points at 10 s.
  r = history.HandleQuery(Get("/api/v1/stat/history?service=backend.default"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("service":"backend.default")"));
  EXPECT_TRUE(absl::StrContains(r.body, R"("stepSeconds":10,)"));
  // RFC 3339 times and a window.
  r = history.HandleQuery(Get(
      "/api/v1/stat/history?service=backend.default&to=2026-01-01T00:20:00Z&window=5m&step=1m"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("from":1767226500,"to":1767226800,"stepSeconds":60)"))
      << r.body;
  // A long range without a step: the smallest step within the points limit.
  r = history.HandleQuery(Get("/api/v1/stat/history?service=backend.default&window=168h"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("stepSeconds":610,)")) << r.body;

  for (const auto& [query, message] : std::vector<std::pair<std::string, std::string>>{
           {"", "give exactly one of service=S"},
           {"service=a&edge=a,b", "give exactly one of service=S"},
           {"edge=a", "edge: \\\"a\\\" is not SOURCE,DESTINATION"},
           {"edge=a,", "is not SOURCE,DESTINATION"},
           {"service=", "service: empty"},
           {"service=a&from=yesterday", "from: \\\"yesterday\\\" is neither Unix seconds nor"},
           {"service=a&to=-5", "to: \\\"-5\\\" is not between 1970 and 2100"},
           {"service=a&step=7s", "step: must be a multiple of the resolution (10s)"},
           {"service=a&step=0s", "step: \\\"0s\\\" is not a duration above 0 and at most 87840h"},
           {"service=a&window=100000h", "window: \\\"100000h\\\" is not a duration above 0"},
           {"service=a&to=99999999999", "to: \\\"99999999999\\\" is not between 1970 and 2100"},
           {"service=a&from=1e300", "from: \\\"1e300\\\" is not between 1970 and 2100"},
           {"service=a&from=1900-01-01T00:00:00Z", "is not between 1970 and 2100"},
           {"service=a&step=10s&window=24h",
            "step: 8641 points from..to at this step; at most "
            "1000 (a step of at least 1m30s)"},
           {"service=a&window=5m&from=1767226500", "give from or window, not both"},
           {"service=a&from=1767226500&to=1767226400", "from: must be before to"},
           {"service=a&colour=red", "unknown parameter \\\"colour\\\""}}) {
    r = history.HandleQuery(Get(absl::StrCat("/api/v1/stat/history?", query)));
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_TRUE(absl::StrContains(r.body, message)) << query << ": " << r.body;
  }
  http::ServerRequest post = Get("/api/v1/stat/history?service=a");
  post.headers.Set(":method", "POST");
  EXPECT_EQ(history.HandleQuery(post).status, 405);
}

TEST(GoldenHistoryTest, EventsOfTheRangeAndServicesAsked) {
  FakeClock clock;
  GoldenHistory history(clock, {}, nullptr);
  std::vector<std::string> asked;
  absl::Time asked_from, asked_to;
  history.SetEventsSource(
      [&](absl::Time from, absl::Time to, const std::vector<std::string>& services) {
        asked_from = from;
        asked_to = to;
        asked = services;
        return std::string(R"([{"type":"push","revision":3}])");
      });
  http::ServerResponse r =
      history.HandleQuery(Get("/api/v1/stat/history?service=backend.default&window=5m"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::EndsWith(r.body, R"(],"events":[{"type":"push","revision":3}]})"
                                     "\n"))
      << r.body;
  EXPECT_EQ(asked, std::vector<std::string>{"backend.default"});
  EXPECT_EQ(asked_to, clock.WallNow());
  EXPECT_EQ(asked_to - asked_from, absl::Minutes(5));
  r = history.HandleQuery(Get("/api/v1/stat/history?edge=a.x,b.x"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(asked, (std::vector<std::string>{"a.x", "b.x"}));
}

// The reports of two sidecars, recorded as GoldenMetrics records them.
struct Sidecar {
  std::string node, service;
  uint64_t instance;
  int64_t start;
  std::map<uint32_t, uint64_t> success, failure;
  uint64_t tx = 0;
  // >= 0: the report also carries the cluster's requests as this rule of HTTPRoute
  // default/backend, and the workload "<node>".
  int32_t route_rule = -1;

  metrics::v1::MetricsReport Report(int64_t time) const {
    metrics::v1::MetricsReport r;
    r.set_node_id(node);
    r.set_service(service);
    r.set_namespace_("default");
    r.set_instance(instance);
    r.set_time_unix_nano(time);
    r.set_start_time_unix_nano(start);
    auto* c = r.add_clusters();
    c->set_cluster(kBackend);
    for (const auto& [index, count] : success) {
      c->mutable_success()->add_bucket(index);
      c->mutable_success()->add_count(count);
    }
    for (const auto& [index, count] : failure) {
      c->mutable_failure()->add_bucket(index);
      c->mutable_failure()->add_count(count);
    }
    c->set_tx_bytes(tx);
    if (route_rule >= 0) {
      r.set_workload(node);
      metrics::v1::RouteRuleStats* route = r.add_routes();
      route->set_route("HTTPRoute/default/backend");
      route->set_rule(route_rule);
      route->set_service("backend.default");
      *route->mutable_success() = c->success();
      *route->mutable_failure() = c->failure();
    }
    return r;
  }
};

std::string HistoryJson(const GoldenMetrics& golden, int64_t from, int64_t to,
                        absl::string_view selector) {
  return golden.history()
      .HandleQuery(Get(
          absl::StrCat("/api/v1/stat/history?", selector, "&from=", from, "&to=", to, "&step=10s")))
      .body;
}

TEST(GoldenHistoryTest, ReplicasRecordingTheSameReportsAnswerTheSame) {
  // Replica B gets every report forwarded 1.2 s after A, its clock 0.4 s off A's.
  FakeClock a_clock, b_clock;
  b_clock.Advance(std::chrono::milliseconds(400));
  GoldenMetrics a(a_clock, {}, nullptr), b(b_clock, {}, nullptr);
  const int64_t start = Nanos(a_clock);
  std::vector<Sidecar> sidecars = {{"fe-1", "frontend", 1, start}, {"fe-2", "frontend", 2, start}};
  sidecars[0].route_rule = 0;
  sidecars[1].route_rule = 1;
  for (int round = 1; round <= 30; ++round) {
    a_clock.Advance(seconds(10));
    b_clock.Advance(seconds(10));
    for (size_t s = 0; s < sidecars.size(); ++s) {
      Sidecar& sidecar = sidecars[s];
      sidecar.success[HistogramBuckets::Index(1000 + 500 * round)] += 10 + s;
      if (round % 3 == 0) sidecar.failure[HistogramBuckets::Index(80000)] += 1;
      sidecar.tx += 1000;
      // Every 9.63 s: they drift against the slots, two fall into one (rounds 26 and 27).
      const int64_t time = Nanos(a_clock) - 300'000'000 - round * int64_t{370'000'000};
      ASSERT_TRUE(a.Record(sidecar.Report(time)).ok());
    }
    b_clock.Advance(std::chrono::milliseconds(1200));
    for (const Sidecar& sidecar : sidecars) {
      const int64_t time = Nanos(a_clock) - 300'000'000 - round * int64_t{370'000'000};
      ASSERT_TRUE(b.Record(sidecar.Report(time)).ok());
    }
    b_clock.Advance(std::chrono::milliseconds(-1200));
  }
  const int64_t to = absl::ToUnixSeconds(a_clock.WallNow());
  const std::string a_json = HistoryJson(a, to - 300, to, "service=backend.default");
  EXPECT_EQ(a_json, HistoryJson(b, to - 300, to, "service=backend.default"));
  EXPECT_EQ(HistoryJson(a, to - 300, to, "edge=frontend.default,backend.default"),
            HistoryJson(b, to - 300, to, "edge=frontend.default,backend.default"));
  // And so do route rules and workloads, from the same reports' new fields: the rule of fe-1
  // counted 30 rounds of 10 and 10 failures, the workload fe-2 its cluster's 30 of 11 and 10.
  for (const char* selector :
       {"route=default/backend&rule=0", "route=default/backend", "workload=default/fe-2"}) {
    EXPECT_EQ(HistoryJson(a, to - 300, to, selector), HistoryJson(b, to - 300, to, selector))
        << selector;
  }
  auto total = [&](HistoryQuery query) {
    query.from = absl::FromUnixSeconds(to - 400);
    query.to = absl::FromUnixSeconds(to + 10);
    query.step = seconds(10);
    absl::StatusOr<std::vector<HistoryPoint>> points = a.history().Query(query);
    return points.ok() ? Requests(*points) : 0;
  };
  EXPECT_EQ(total({.route = "default/backend", .rule = 0}), 30u * 10 + 10);
  EXPECT_EQ(total({.route = "default/backend"}), 30u * 21 + 20);
  EXPECT_EQ(total({.workload = "default/fe-2"}), 30u * 11 + 10);
  // And every request is in it: 30 rounds of 10 + 11, 10 failures from each.
  absl::StatusOr<std::vector<HistoryPoint>> points =
      a.history().Query({.service = "backend.default",
                         .from = absl::FromUnixSeconds(to - 400),
                         .to = absl::FromUnixSeconds(to + 10),
                         .step = seconds(10)});
  ASSERT_TRUE(points.ok());
  uint64_t requests = 0, failures = 0, busiest = 0;
  for (const HistoryPoint& p : *points) {
    requests += p.requests;
    failures += p.failures;
    busiest = std::max(busiest, p.requests);
  }
  EXPECT_EQ(requests, 30u * 21 + 20);
  EXPECT_EQ(failures, 20u);
  // Spread over the slots: ~21.8 each (23 with failures), not two rounds' worth in slot 25.
  EXPECT_LE(busiest, 25u);
}

// Requests of `query`'s series in the minute before `to` (Unix seconds).
uint64_t LastMinuteRequests(const GoldenMetrics& golden, int64_t to, HistoryQuery query) {
  query.from = absl::FromUnixSeconds(to - 60);
  query.to = absl::FromUnixSeconds(to);
  query.step = std::chrono::seconds(60);
  absl::StatusOr<std::vector<HistoryPoint>> points = golden.history().Query(query);
  EXPECT_TRUE(points.ok()) << points.status();
  return points.ok() ? Requests(*points) : 0;
}

// A sidecar's route rules and its workload: their own series, read by route (and rule) and by
// workload, in no service's or edge's answer; /api/v1/stat/routes gives each rule's window.
TEST(GoldenHistoryTest, RouteRulesAndWorkloadsHaveHistories) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  Sidecar sidecar{"fe-1-7c9d.default", "frontend", 1, Nanos(clock)};
  uint64_t rule0 = 0, rule1 = 0, rule1_failed = 0;
  auto report = [&](int64_t time, bool with_workload) {
    metrics::v1::MetricsReport r = sidecar.Report(time);
    if (with_workload) r.set_workload("fe-1-7c9d");
    auto add = [&](int32_t rule, uint64_t ok, uint64_t failed) {
      metrics::v1::RouteRuleStats* route = r.add_routes();
      route->set_route("HTTPRoute/default/reviews");
      route->set_rule(rule);
      route->set_service("backend.default");
      route->mutable_success()->add_bucket(HistogramBuckets::Index(2000));
      route->mutable_success()->add_count(ok);
      if (failed > 0) {
        route->mutable_failure()->add_bucket(HistogramBuckets::Index(90000));
        route->mutable_failure()->add_count(failed);
      }
    };
    add(0, rule0, 0);
    add(1, rule1, rule1_failed);
    return r;
  };
  for (int round = 1; round <= 3; ++round) {
    clock.Advance(seconds(10));
    sidecar.success[HistogramBuckets::Index(2000)] += 10;
    rule0 += 7;
    rule1 += 2;
    rule1_failed += 1;
    ASSERT_TRUE(golden.Record(report(Nanos(clock), true)).ok());
  }
  const int64_t to = absl::ToUnixSeconds(clock.WallNow()) + 10;
  auto requests = [&](HistoryQuery query) { return LastMinuteRequests(golden, to, query); };
  // The sidecar started with the first round: every request counts.
  EXPECT_EQ(requests({.route = "default/reviews", .rule = 0}), 21u);
  EXPECT_EQ(requests({.route = "default/reviews", .rule = 1}), 9u);
  EXPECT_EQ(requests({.route = "default/reviews"}), 30u);
  EXPECT_EQ(requests({.route = "default/ratings"}), 0u);
  EXPECT_EQ(requests({.workload = "default/fe-1-7c9d"}), 30u);
  // The service's inbound is its edges' alone, not the rules' or the workload's again.
  EXPECT_EQ(requests({.service = "backend.default"}), 30u);

  const std::string rule1_json = HistoryJson(golden, to - 60, to, "route=default/reviews&rule=1");
  EXPECT_TRUE(absl::StrContains(rule1_json, R"("route":"default/reviews","rule":1)")) << rule1_json;
  EXPECT_TRUE(absl::StrContains(HistoryJson(golden, to - 60, to, "workload=default/fe-1-7c9d"),
                                R"("workload":"default/fe-1-7c9d")"));

  const std::string routes =
      golden.history()
          .HandleRoutes(Get("/api/v1/stat/routes?service=backend.default&window=1m"))
          .body;
  EXPECT_TRUE(absl::StartsWith(routes, R"({"window":"1m","routes":[)")) << routes;
  EXPECT_TRUE(absl::StrContains(routes,
                                R"({"route":"default/reviews","kind":"HTTPRoute","rule":0,)"
                                R"("service":"backend.default","requests":21,"failures":0,)"))
      << routes;
  EXPECT_TRUE(absl::StrContains(routes,
                                R"({"route":"default/reviews","kind":"HTTPRoute","rule":1,)"
                                R"("service":"backend.default","requests":9,"failures":3,)"))
      << routes;
  EXPECT_EQ(golden.history().HandleRoutes(Get("/api/v1/stat/routes?service=db.default")).body,
            "{\"window\":\"1m\",\"routes\":[]}\n");

  // Bad parameters: 400 with what is wrong.
  for (const char* bad :
       {"route=reviews&rule=0", "route=default/reviews&rule=x", "route=default/reviews&rule=-1",
        "rule=1", "route=default/reviews&service=backend.default", "workload=fe-1",
        "workload=default/fe-1&edge=a,b"}) {
    EXPECT_EQ(golden.history().HandleQuery(Get(absl::StrCat("/api/v1/stat/history?", bad))).status,
              400)
        << bad;
  }
  for (const char* bad : {"", "service=backend.default&window=2h", "service=backend.default&x=1",
                          "service=backend.default&window=soon"}) {
    EXPECT_EQ(golden.history().HandleRoutes(Get(absl::StrCat("/api/v1/stat/routes?", bad))).status,
              400)
        << bad;
  }
}

// A sidecar from before route rules and workloads: its reports still count, its workload is its
// node id.
TEST(GoldenHistoryTest, OlderSidecarsWithoutRoutesOrWorkloadStillCount) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  Sidecar sidecar{"fe-1", "frontend", 1, Nanos(clock)};
  for (int round = 1; round <= 2; ++round) {
    clock.Advance(seconds(10));
    sidecar.success[HistogramBuckets::Index(2000)] += 4;
    ASSERT_TRUE(golden.Record(sidecar.Report(Nanos(clock))).ok());
  }
  const int64_t to = absl::ToUnixSeconds(clock.WallNow()) + 10;
  auto requests = [&](HistoryQuery query) { return LastMinuteRequests(golden, to, query); };
  EXPECT_EQ(requests({.service = "backend.default"}), 8u);
  EXPECT_EQ(requests({.workload = "default/fe-1"}), 8u);
}

TEST(GoldenHistoryTest, NewClustersOfKnownSidecarsCountFromZero) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  // A sidecar running for an hour before this control plane heard from it.
  Sidecar sidecar{"fe-1", "frontend", 1, Nanos(clock) - 3'600'000'000'000};
  sidecar.success[HistogramBuckets::Index(1000)] = 5000;
  ASSERT_TRUE(golden.Record(sidecar.Report(Nanos(clock))).ok());
  clock.Advance(seconds(10));
  sidecar.success[HistogramBuckets::Index(1000)] += 7;
  ASSERT_TRUE(golden.Record(sidecar.Report(Nanos(clock))).ok());
  // A cluster it calls for the first time now.
  metrics::v1::MetricsReport report = sidecar.Report(Nanos(clock) + 10'000'000'000);
  clock.Advance(seconds(10));
  report.mutable_clusters(0)->set_cluster("outbound|80||db.default");
  report.mutable_clusters(0)->mutable_success()->set_count(0, 3);
  ASSERT_TRUE(golden.Record(report).ok());
  const int64_t to = absl::ToUnixSeconds(clock.WallNow()) + 10;
  absl::StatusOr<std::vector<HistoryPoint>> points =
      golden.history().Query({.service = "backend.default",
                              .from = absl::FromUnixSeconds(to - 60),
                              .to = absl::FromUnixSeconds(to),
                              .step = seconds(60)});
  ASSERT_TRUE(points.ok());
  EXPECT_EQ(Requests(*points), 7u);  // not the 5000 from before
  points = golden.history().Query({.service = "db.default",
                                   .from = absl::FromUnixSeconds(to - 60),
                                   .to = absl::FromUnixSeconds(to),
                                   .step = seconds(60)});
  ASSERT_TRUE(points.ok());
  EXPECT_EQ(Requests(*points), 3u);
}

// Heap for an hour of history at 1 000 services, each called by three others, every edge busy
// in every slot with latencies over ~10 merged buckets. Prints the figure for
// docs/golden-metrics.md.
//
//   bazel test -c opt //control-plane/telemetry:golden_history_test --test_output=all
//     --test_filter='*Memory*' --test_env=HISTORY_SERVICES=1000
//
// (100 services unless HISTORY_SERVICES says otherwise: the thousand take a while unoptimised.)
TEST(GoldenHistoryTest, MemoryForAnHourAtAThousandServices) {
  FakeClock clock;
  const char* services = std::getenv("HISTORY_SERVICES");
  const int kServices = services != nullptr ? std::atoi(services) : 100;
  constexpr int kCallers = 3;
  // Route rules per service (HISTORY_ROUTE_RULES; 0 unless told): series as busy as an edge each.
  const char* route_rules = std::getenv("HISTORY_ROUTE_RULES");
  const int kRules = route_rules != nullptr ? std::atoi(route_rules) : 0;
  const size_t heap_before = mallinfo2().uordblks;
  auto history = std::make_unique<GoldenHistory>(clock, GoldenHistoryLimits{}, nullptr);
  std::vector<std::string> names;
  for (int i = 0; i < kServices; ++i) names.push_back(absl::StrCat("service-", i, ".default"));
  FineCounts ok, failed = At(250000, 1);
  uint64_t seed = 1;
  for (int round = 0; round < 360; ++round) {
    clock.Advance(seconds(10));
    const int64_t now = Nanos(clock);
    for (int s = 0; s < kServices; ++s) {
      for (int c = 1; c <= kCallers + kRules; ++c) {
        ok.clear();
        // ~100 requests: 2-20 ms over ten log-spaced latencies, counts varying per slot.
        for (int k = 0; k < 10; ++k) {
          seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
          const uint64_t micros = static_cast<uint64_t>(2000 * std::pow(1.29, k));
          ok.emplace_back(HistogramBuckets::Index(micros), 5 + (seed >> 60));
        }
        const std::string source =
            c <= kCallers
                ? names[(s + c) % kServices]
                : RouteSeriesSource(absl::StrCat("HTTPRoute/", names[s]), c - kCallers - 1);
        history->Add(source, names[s], now - 10'000'000'000 + 3'000'000'000,
                     now + 3'000'000'000 - 1,
                     {.success = &ok,
                      .failure = &failed,
                      .tx_bytes = 20000 + (seed >> 52),
                      .rx_bytes = 80000 + (seed >> 50)});
      }
    }
  }
  history->Sweep();
  const size_t heap = mallinfo2().uordblks - heap_before;
  const size_t counted = history->memory_bytes();
  const int kSeries = kServices * (kCallers + kRules);
  std::printf(
      "history at %d services, %d edges and %d route rules, one hour at 10 s: %zu bytes heap "
      "(%.1f MB), %zu counted by memory_bytes(), %.0f bytes per series\n",
      kServices, kServices * kCallers, kServices * kRules, heap, heap / 1e6, counted,
      static_cast<double>(heap) / kSeries);
  EXPECT_EQ(history->series_count(), static_cast<size_t>(kSeries));
  // The accounting is close to the heap, and an hour stays within ~30 KB per edge.
  EXPECT_NEAR(static_cast<double>(counted), static_cast<double>(heap), heap * 0.2);
  EXPECT_LT(heap, static_cast<size_t>(kSeries) * 30000);
  history.reset();
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry
