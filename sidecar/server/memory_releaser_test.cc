#include "sidecar/server/memory_releaser.h"

#include <chrono>
#include <cstdint>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// A releaser on a fake process: RSS is `rss_`, and giving free memory back takes 3 MiB off it.
class MemoryReleaserTest : public ::testing::Test {
 protected:
  OverloadMonitor::MemoryProbe Probe() {
    return {.read_rss = [this] { return rss_; },
            .release_free_memory =
                [this] {
                  ++releases_;
                  released_at_ = RealClock::Get().Now();
                  rss_ -= 3 * kMiB;
                }};
  }

  uint64_t Counter(const char* name) {
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name);
    return series == nullptr ? 0 : series->counter;
  }

  event::Loop loop_;
  StatsRegistry registry_;
  uint64_t rss_ = 30 * kMiB;
  int releases_ = 0;
  MonotonicTime released_at_{};
};

TEST_F(MemoryReleaserTest, ReleasesOnceAfterTheWorkSettlesAndCountsWhatItGaveBack) {
  MemoryReleaser releaser(loop_, registry_.shared_shard(), milliseconds(300), milliseconds(5000),
                          Probe());
  EXPECT_FALSE(releaser.pending()) << "nothing to release before any work";
  MonotonicTime last_notify{};
  // A burst of work: each Notify pushes the release on by `delay`.
  for (int i = 0; i < 5; ++i) {
    releaser.Notify();
    last_notify = RealClock::Get().Now();
    EXPECT_TRUE(releaser.pending());
    loop_.RunUntil([] { return false; }, milliseconds(15));
  }
  EXPECT_EQ(releases_, 0) << "released while the work was still going on";
  ASSERT_TRUE(loop_.RunUntil([this] { return releases_ > 0; }, milliseconds(2000)));
  // The timer counts from the loop's time of the turn, which may lag the clock a little.
  EXPECT_GE(released_at_ - last_notify, milliseconds(300 - 20))
      << "released before `delay` of quiet after the last Notify";
  EXPECT_FALSE(releaser.pending());
  // Once per burst, not once per Notify.
  loop_.RunUntil([] { return false; }, milliseconds(100));
  EXPECT_EQ(releases_, 1);
  EXPECT_EQ(Counter("meshlet_memory_releases_total"), 1u);
  EXPECT_EQ(Counter("meshlet_memory_released_bytes_total"), 3 * kMiB);
  StatsSnapshot snapshot = registry_.Snapshot();
  const SeriesSnapshot* seconds = snapshot.Find("meshlet_memory_release_seconds");
  ASSERT_NE(seconds, nullptr);
  EXPECT_EQ(seconds->histogram.count(), 1u);
}

TEST_F(MemoryReleaserTest, SteadyWorkStillReleasesAtMostMaxDelayAfterItBegan) {
  MemoryReleaser releaser(loop_, registry_.shared_shard(), milliseconds(300), milliseconds(600),
                          Probe());
  const MonotonicTime start = RealClock::Get().Now();
  // Work every 20 ms, never quiet for 300 ms.
  while (releases_ == 0 && RealClock::Get().Now() - start < milliseconds(2000)) {
    releaser.Notify();
    loop_.RunUntil([this] { return releases_ > 0; }, milliseconds(20));
  }
  ASSERT_EQ(releases_, 1) << "steady work kept the release off";
  EXPECT_LT(released_at_ - start, milliseconds(600 + 300)) << "later than max_delay";
  EXPECT_GE(released_at_ - start, milliseconds(600 - 20)) << "earlier than max_delay";
}

TEST_F(MemoryReleaserTest, ZeroDelayNeverReleases) {
  MemoryReleaser releaser(loop_, registry_.shared_shard(), Duration::zero(), milliseconds(100),
                          Probe());
  releaser.Notify();
  EXPECT_FALSE(releaser.pending());
  loop_.RunUntil([] { return false; }, milliseconds(50));
  EXPECT_EQ(releases_, 0);
  StatsSnapshot snapshot = registry_.Snapshot();
  EXPECT_EQ(snapshot.Find("meshlet_memory_releases_total"), nullptr)
      << "no series for a feature that is off";
}

}  // namespace
}  // namespace meshlet::sidecar::server
