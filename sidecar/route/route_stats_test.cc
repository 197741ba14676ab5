#include "sidecar/route/route_stats.h"

#include <malloc.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::route {
namespace {

RouteEntry Rule(SourceName source, int32_t rule) {
  RouteEntry route;
  route.source = std::move(source);
  route.source_rule = rule;
  return route;
}

uint64_t Requests(const StatsSnapshot& snapshot, const std::string& route, const std::string& rule,
                  const std::string& code_class, const std::string& service = "") {
  const SeriesSnapshot* series =
      snapshot.Find("meshlet_route_rq_total", {{"route", route},
                                               {"rule", rule},
                                               {"service", route == "overflow" ? "*" : service},
                                               {"code_class", code_class}});
  return series == nullptr ? 0 : series->counter;
}

const HistogramSnapshot* Duration(const StatsSnapshot& snapshot, const std::string& route,
                                  const std::string& rule, const std::string& outcome) {
  const SeriesSnapshot* series =
      snapshot.Find("meshlet_route_rq_duration_seconds",
                    {{"route", route}, {"rule", rule}, {"service", ""}, {"outcome", outcome}});
  return series == nullptr ? nullptr : &series->histogram;
}

TEST(RouteStatsTest, CountsEachRuleByClassAndOutcome) {
  StatsRegistry registry;
  RouteStatsLimit limit(registry, 10);
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  RouteStats stats(*shard, limit);
  const SourceName reviews("HTTPRoute/default/reviews");
  const RouteEntry rule0 = Rule(reviews, 0);
  const RouteEntry rule1 = Rule(reviews, 1);

  stats.Record(rule0, 200, false, 1000);
  stats.Record(rule0, 201, false, 3000);
  stats.Record(rule1, 503, true, 50000);
  stats.Record(rule1, 0, true, 70000);  // no response: a failure, in no class

  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/reviews", "0", "2xx"), 2u);
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/reviews", "1", "5xx"), 1u);
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/reviews", "1", "2xx"), 0u);
  ASSERT_NE(Duration(snapshot, "HTTPRoute/default/reviews", "0", "success"), nullptr);
  EXPECT_EQ(Duration(snapshot, "HTTPRoute/default/reviews", "0", "success")->count(), 2u);
  EXPECT_EQ(Duration(snapshot, "HTTPRoute/default/reviews", "0", "success")->sum(), 4000u);
  ASSERT_NE(Duration(snapshot, "HTTPRoute/default/reviews", "1", "failure"), nullptr);
  EXPECT_EQ(Duration(snapshot, "HTTPRoute/default/reviews", "1", "failure")->count(), 2u);
  // Lazy: series only for what was counted.
  EXPECT_EQ(Duration(snapshot, "HTTPRoute/default/reviews", "0", "failure"), nullptr);
  EXPECT_EQ(
      snapshot.Find("meshlet_route_rq_total",
                    {{"route", "HTTPRoute/default/reviews"}, {"rule", "0"}, {"code_class", "5xx"}}),
      nullptr);
  EXPECT_EQ(stats.rules(), 2u);
}

TEST(RouteStatsTest, ServiceOfHostNamesServicesAsTheApiDoes) {
  EXPECT_EQ(ServiceOfHost("reviews.default.svc.cluster.local:9080"), "reviews.default");
  EXPECT_EQ(ServiceOfHost("reviews.default.svc:9080"), "reviews.default");
  EXPECT_EQ(ServiceOfHost("reviews.default.svcx.example:80"), "reviews.default.svcx.example");
  EXPECT_EQ(ServiceOfHost("app"), "app");
  EXPECT_EQ(ServiceOfHost("[fd00::1]"), "[fd00::1]");
}

// One rule of an HTTPRoute attached to two Services: counted apart for each.
TEST(RouteStatsTest, ARuleCountsApartForEachServiceItServes) {
  StatsRegistry registry;
  RouteStatsLimit limit(registry, 10);
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  RouteStats stats(*shard, limit);
  VirtualHostConfig reviews{.name = "reviews.default.svc.cluster.local:9080"};
  VirtualHostConfig ratings{.name = "ratings.default.svc.cluster.local:9080"};
  reviews.name_hash = HashOfHostName(reviews.name);
  ratings.name_hash = HashOfHostName(ratings.name);
  const SourceName source("HTTPRoute/default/shared");
  RouteEntry to_reviews = Rule(source, 0);
  to_reviews.virtual_host = &reviews;
  RouteEntry to_ratings = Rule(source, 0);
  to_ratings.virtual_host = &ratings;

  stats.Record(to_reviews, 200, false, 10);
  stats.Record(to_reviews, 200, false, 10);
  stats.Record(to_ratings, 200, false, 10);

  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/shared", "0", "2xx", "reviews.default"), 2u);
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/shared", "0", "2xx", "ratings.default"), 1u);
  EXPECT_EQ(limit.admitted(), 2u);
}

TEST(RouteStatsTest, RoutesWithoutSourceOrRuleCountNothing) {
  StatsRegistry registry;
  RouteStatsLimit limit(registry, 10);
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  RouteStats stats(*shard, limit);
  stats.Record(RouteEntry(), 200, false, 1000);
  // A Service's default route: the cluster's series count it.
  stats.Record(Rule(SourceName("Service/default/reviews"), -1), 200, false, 1000);
  EXPECT_EQ(stats.rules(), 0u);
  EXPECT_EQ(limit.admitted(), 0u);
  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(
      snapshot.Find("meshlet_route_rq_total",
                    {{"route", "Service/default/reviews"}, {"rule", "-1"}, {"code_class", "2xx"}}),
      nullptr);
}

TEST(RouteStatsTest, RulesPastTheBoundShareTheOverflowSeries) {
  StatsRegistry registry;
  RouteStatsLimit limit(registry, 2);
  std::unique_ptr<StatsShard> worker0 = registry.CreateShard();
  std::unique_ptr<StatsShard> worker1 = registry.CreateShard();
  RouteStats stats0(*worker0, limit);
  RouteStats stats1(*worker1, limit);
  const RouteEntry a = Rule(SourceName("HTTPRoute/default/a"), 0);
  const RouteEntry b = Rule(SourceName("HTTPRoute/default/b"), 0);
  const RouteEntry c = Rule(SourceName("GRPCRoute/default/c"), 0);
  const RouteEntry d = Rule(SourceName("HTTPRoute/default/d"), 3);

  stats0.Record(a, 200, false, 10);
  stats1.Record(b, 200, false, 10);
  stats0.Record(c, 200, false, 10);  // past the bound
  stats1.Record(c, 404, false, 10);  // the same rule refused on another worker: counted once
  stats1.Record(d, 500, true, 10);
  stats1.Record(a, 200, false, 10);  // admitted on worker 0: its own series here too

  EXPECT_EQ(limit.admitted(), 2u);
  EXPECT_EQ(limit.refused(), 2u);
  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/a", "0", "2xx"), 2u);
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/b", "0", "2xx"), 1u);
  EXPECT_EQ(Requests(snapshot, "GRPCRoute/default/c", "0", "2xx"), 0u);
  EXPECT_EQ(Requests(snapshot, "overflow", "*", "2xx"), 1u);
  EXPECT_EQ(Requests(snapshot, "overflow", "*", "4xx"), 1u);
  EXPECT_EQ(Requests(snapshot, "overflow", "*", "5xx"), 1u);
  ASSERT_NE(snapshot.Find("meshlet_route_stats_overflow_total"), nullptr);
  EXPECT_EQ(snapshot.Find("meshlet_route_stats_overflow_total")->counter, 2u);
  // Worker 1's table: b, the overflow set (c and d share it), a.
  EXPECT_EQ(stats1.rules(), 3u);
}

TEST(RouteStatsTest, ZeroBoundCountsEverythingInOverflow) {
  StatsRegistry registry;
  RouteStatsLimit limit(registry, 0);
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  RouteStats stats(*shard, limit);
  stats.Record(Rule(SourceName("HTTPRoute/default/a"), 0), 200, false, 10);
  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(Requests(snapshot, "overflow", "*", "2xx"), 1u);
  EXPECT_EQ(Requests(snapshot, "HTTPRoute/default/a", "0", "2xx"), 0u);
}

TEST(RouteStatsTest, RecordingASeenRuleAllocatesNothing) {
  StatsRegistry registry;
  RouteStatsLimit limit(registry, 10);
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  RouteStats stats(*shard, limit);
  const RouteEntry rule = Rule(SourceName("HTTPRoute/default/reviews"), 0);
  // The first requests register the series and page in the histograms' buckets.
  for (int i = 0; i < 3; ++i) {
    stats.Record(rule, 200, false, 1000);
    stats.Record(rule, 503, true, 1000);
  }
  AllocationScope scope;
  for (int i = 0; i < 1000; ++i) {
    stats.Record(rule, 200, false, 1000);
    stats.Record(rule, 503, true, 1000);
  }
  EXPECT_EQ(scope.count(), 0u);
}

// What docs/stats.md gives as a rule's cost: the registry's series and label values, the worker's
// cells and histogram pages, and its table entry, for a rule that answered 2xx (two series) and
// for one that also failed (four).
TEST(RouteStatsTest, ARuleCostsLittleMemory) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  constexpr int kRules = 200;
  auto heap_in_use = [] {
    const struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
  };
  auto bytes_per_rule = [&](bool failures) {
    std::vector<RouteEntry> routes;
    for (int i = 0; i < kRules; ++i) {
      routes.push_back(
          Rule(SourceName(absl::StrCat("HTTPRoute/team-payments/checkout-", 10000 + i)), i % 4));
    }
    const size_t before = heap_in_use();
    StatsRegistry registry;
    RouteStatsLimit limit(registry, kRules);
    std::unique_ptr<StatsShard> shard = registry.CreateShard();
    RouteStats stats(*shard, limit);
    for (const RouteEntry& route : routes) {
      stats.Record(route, 200, false, 1500);
      if (failures) stats.Record(route, 503, true, 20000);
    }
    return (heap_in_use() - before) / kRules;
  };
  const size_t ok_only = bytes_per_rule(false);
  const size_t with_failures = bytes_per_rule(true);
  std::printf("bytes per route rule on one worker: %zu (2xx only), %zu (with 5xx)\n", ok_only,
              with_failures);
  EXPECT_LE(ok_only, 1500u);
  EXPECT_LE(with_failures, 3000u);
#endif
}

}  // namespace
}  // namespace meshlet::sidecar::route
