#include "sidecar/cluster/locality_priority.h"

#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

using Levels = std::array<LocalityLevelCounts, kLocalityLevels>;

TEST(LocalityPriorityTest, AllLocalHealthyKeepsEverythingInZone) {
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{4, 4}, {4, 4}, {4, 4}}}), (LocalityLoad{100, 0, 0}));
}

TEST(LocalityPriorityTest, OverprovisioningAbsorbsSmallLoss) {
  // 3 of 4 healthy: 75% * 1.4 = 105 -> capped at 100, no failover.
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{4, 3}, {4, 4}, {4, 4}}}), (LocalityLoad{100, 0, 0}));
}

TEST(LocalityPriorityTest, FailsOverToRegionThenOther) {
  // Zone 50% healthy -> 70; region 25% healthy -> 35 but only 30 remains.
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{4, 2}, {4, 1}, {4, 4}}}), (LocalityLoad{70, 30, 0}));
  // Zone dead, region 1/4 -> 35, rest to other.
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{4, 0}, {4, 1}, {4, 4}}}), (LocalityLoad{0, 35, 65}));
}

TEST(LocalityPriorityTest, EmptyLevelsAreSkipped) {
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{0, 0}, {0, 0}, {2, 2}}}), (LocalityLoad{0, 0, 100}));
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{0, 0}, {0, 0}, {0, 0}}}), (LocalityLoad{0, 0, 0}));
}

TEST(LocalityPriorityTest, DegradedEverywhereNormalisesTo100) {
  // 10% healthy each: 14 + 14 + 14 = 42 -> scaled to 100.
  LocalityLoad l = ComputeLocalityLoad(Levels{{{10, 1}, {10, 1}, {10, 1}}});
  EXPECT_EQ(l[0] + l[1] + l[2], 100u);
  EXPECT_EQ(l[1], 33u);
  EXPECT_EQ(l[2], 33u);
}

TEST(LocalityPriorityTest, PanicSpreadsByHostCount) {
  LocalityLoad l = ComputeLocalityLoad(Levels{{{1, 0}, {1, 0}, {2, 0}}});
  EXPECT_EQ(l, (LocalityLoad{25, 25, 50}));
}

TEST(LocalityPriorityTest, CustomOverprovisioningFactor) {
  // Factor 1.0: 3 of 4 healthy keeps only 75%.
  EXPECT_EQ(ComputeLocalityLoad(Levels{{{4, 3}, {4, 4}, {0, 0}}}, 100), (LocalityLoad{75, 25, 0}));
}

TEST(LocalityPriorityTest, PickFollowsLoad) {
  LocalityLoad l{70, 30, 0};
  EXPECT_EQ(PickLocalityLevel(l, 0), 0);
  EXPECT_EQ(PickLocalityLevel(l, 69), 0);
  EXPECT_EQ(PickLocalityLevel(l, 70), 1);
  EXPECT_EQ(PickLocalityLevel(l, 99), 1);
  EXPECT_EQ(PickLocalityLevel(LocalityLoad{0, 0, 100}, 0), 2);
}

TEST(LocalityPriorityTest, OverloadByInflightOrLatency) {
  LocalitySpillThresholds t{.max_inflight_per_host = 10, .max_latency_ms = 0};
  EXPECT_FALSE(LocalLevelOverloaded(20, 2, 5000, t));
  EXPECT_TRUE(LocalLevelOverloaded(21, 2, 0, t));
  t = {.max_inflight_per_host = 0, .max_latency_ms = 100};
  EXPECT_FALSE(LocalLevelOverloaded(1000, 1, 100, t));
  EXPECT_TRUE(LocalLevelOverloaded(0, 1, 101, t));
  EXPECT_FALSE(LocalLevelOverloaded(1000, 1, 1000, LocalitySpillThresholds{}));
}

TEST(LocalityPriorityTest, PickNamesLocalFailoverAndSpillover) {
  Levels levels{{{4, 4}, {4, 4}, {4, 4}}};
  LocalityLoad all_local{100, 0, 0};
  LocalityPick p = PickLocality(all_local, 50, false, levels);
  EXPECT_EQ(p.level, 0);
  EXPECT_EQ(p.decision, LocalityDecision::kLocal);

  p = PickLocality(all_local, 50, true, levels);
  EXPECT_EQ(p.level, 1);
  EXPECT_EQ(p.decision, LocalityDecision::kSpillover);

  // Spill skips a region with no healthy hosts.
  p = PickLocality(all_local, 50, true, Levels{{{4, 4}, {4, 0}, {4, 4}}});
  EXPECT_EQ(p.level, 2);
  EXPECT_EQ(p.decision, LocalityDecision::kSpillover);

  // Nowhere to spill: stays local.
  p = PickLocality(all_local, 50, true, Levels{{{4, 4}, {0, 0}, {0, 0}}});
  EXPECT_EQ(p.level, 0);
  EXPECT_EQ(p.decision, LocalityDecision::kLocal);

  p = PickLocality(LocalityLoad{70, 30, 0}, 80, false, levels);
  EXPECT_EQ(p.level, 1);
  EXPECT_EQ(p.decision, LocalityDecision::kFailover);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
