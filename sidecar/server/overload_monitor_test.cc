#include "sidecar/server/overload_monitor.h"

#include <cstdint>

#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// A monitor with a 100 MiB limit on a fake process: `rss` is what it reads, and giving free memory
// back sets it to `rss_after_release` (when not 0).
class OverloadMonitorTest : public ::testing::Test {
 protected:
  OverloadMonitor::MemoryProbe Probe() {
    return {.read_rss = [this] { return rss_; },
            .release_free_memory =
                [this] {
                  ++releases_;
                  if (rss_after_release_ != 0) rss_ = rss_after_release_;
                }};
  }

  bool Shedding() const { return monitor_.flag()->load(); }

  int64_t Gauge(const char* name) {
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name);
    return series == nullptr ? -1 : series->gauge;
  }

  uint64_t Trims() {
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find("meshlet_overload_malloc_trims_total");
    return series == nullptr ? 0 : series->counter;
  }

  void Set(uint64_t rss_mib, uint64_t after_release_mib = 0) {
    rss_ = rss_mib * kMiB;
    rss_after_release_ = after_release_mib * kMiB;
  }

  event::Loop loop_;
  StatsRegistry registry_;
  uint64_t rss_ = 0;
  uint64_t rss_after_release_ = 0;
  int releases_ = 0;
  OverloadMonitor monitor_{loop_, registry_.shared_shard(), 100 * kMiB,
                           std::chrono::milliseconds(250), Probe()};
};

TEST_F(OverloadMonitorTest, ShedsAboveTheLimitOnlyWhenGivingFreeMemoryBackDoesNotBringItUnder) {
  Set(60);
  monitor_.Check();
  EXPECT_FALSE(Shedding());
  EXPECT_EQ(releases_, 0) << "nothing to give back under the limit";

  // Above the limit, but most of it is free memory malloc keeps: no shedding.
  Set(120, 70);
  monitor_.Check();
  EXPECT_FALSE(Shedding());
  EXPECT_EQ(releases_, 1);
  EXPECT_EQ(Gauge("meshlet_overload_rss_bytes"), static_cast<int64_t>(70 * kMiB));

  // Above the limit and in use.
  Set(120);
  monitor_.Check();
  EXPECT_TRUE(Shedding());
  EXPECT_EQ(Gauge("meshlet_overload_memory_pressure"), 1);
  EXPECT_EQ(releases_, 2);
  EXPECT_EQ(Trims(), 2u);
}

TEST_F(OverloadMonitorTest, StopsSheddingTenPercentUnderTheLimit) {
  Set(120);
  monitor_.Check();
  ASSERT_TRUE(Shedding());
  Set(95);  // under the limit, not 10% under: still shedding
  monitor_.Check();
  EXPECT_TRUE(Shedding());
  Set(89);
  monitor_.Check();
  EXPECT_FALSE(Shedding());
  EXPECT_EQ(Gauge("meshlet_overload_memory_pressure"), 0);
  Set(95);  // and starts again only past the limit
  monitor_.Check();
  EXPECT_FALSE(Shedding());
}

TEST_F(OverloadMonitorTest, FreeMemoryMallocKeepsDoesNotHoldSheddingOnOnceTheLoadIsGone) {
  Set(120);
  monitor_.Check();
  ASSERT_TRUE(Shedding());
  const int releases = releases_;
  // The load is gone: RSS fell under the limit but not 10% under, and what is left above that is
  // free memory malloc keeps. Giving it back ends the shedding.
  Set(95, 40);
  monitor_.Check();
  EXPECT_EQ(releases_, releases + 1);
  EXPECT_FALSE(Shedding());
}

TEST(OverloadMonitorNoLimitTest, HasNoFlagAndChecksNothing) {
  event::Loop loop;
  StatsRegistry registry;
  int reads = 0;
  OverloadMonitor monitor(
      loop, registry.shared_shard(), 0, std::chrono::milliseconds(250),
      {.read_rss = [&] { return ++reads, uint64_t{1} << 40; }, .release_free_memory = [] {}});
  monitor.Start();
  monitor.Check();
  EXPECT_EQ(monitor.flag(), nullptr);
  EXPECT_EQ(reads, 0);
}

}  // namespace
}  // namespace meshlet::sidecar::server
