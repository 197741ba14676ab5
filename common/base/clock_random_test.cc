#include <gtest/gtest.h>

#include <set>

#include "common/base/clock.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/base/random.h"

namespace meshlet {
namespace {

using std::chrono::milliseconds;

TEST(ClockTest, RealClockIsMonotonic) {
  MonotonicTime a = RealClock::Get().Now();
  MonotonicTime b = RealClock::Get().Now();
  EXPECT_LE(a, b);
  EXPECT_GT(RealClock::Get().WallNow(), absl::FromUnixSeconds(1700000000));
}

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  FakeClock clock;
  MonotonicTime start = clock.Now();
  absl::Time wall = clock.WallNow();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(milliseconds(250));
  EXPECT_EQ(clock.Now() - start, milliseconds(250));
  EXPECT_EQ(clock.WallNow() - wall, absl::Milliseconds(250));
}

TEST(ClockTest, FakeClockCanMoveAtEveryReading) {
  FakeClock clock;
  const MonotonicTime start = clock.Now();
  clock.AdvanceOnEveryRead(std::chrono::microseconds(3));
  EXPECT_EQ(clock.Now() - start, std::chrono::microseconds(3));
  EXPECT_EQ(clock.ExactNow() - start, std::chrono::microseconds(6));
  clock.AdvanceOnEveryRead(Duration(0));
  EXPECT_EQ(clock.Now() - start, std::chrono::microseconds(6));
}

TEST(ClockTest, MicrosRoundedUp) {
  EXPECT_EQ(MicrosRoundedUp(Duration(0)), 0u);
  EXPECT_EQ(MicrosRoundedUp(Duration(-5)), 0u);
  EXPECT_EQ(MicrosRoundedUp(Duration(1)), 1u);  // took time: not 0
  EXPECT_EQ(MicrosRoundedUp(Duration(1000)), 1u);
  EXPECT_EQ(MicrosRoundedUp(Duration(1001)), 2u);
  EXPECT_EQ(MicrosRoundedUp(milliseconds(90)), 90000u);
}

TEST(RandomTest, UniformStaysInRangeAndCoversIt) {
  RealRandom random(42);
  std::set<uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    uint64_t v = random.Uniform(10);
    ASSERT_LT(v, 10u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(random.Uniform(0), 0u);
}

TEST(RandomTest, UniformDoubleIsInUnitIntervalWithPlausibleMean) {
  RealRandom random(7);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    double d = random.UniformDouble();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    sum += d;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(RandomTest, SameSeedSameSequenceDifferentSeedDifferent) {
  RealRandom a(1), b(1), c(2);
  for (int i = 0; i < 10; ++i) {
    uint64_t va = a.Next();
    EXPECT_EQ(va, b.Next());
    EXPECT_NE(va, c.Next());
  }
}

// Called directly (inlined) or through Random&, it is the same generator.
TEST(RandomTest, DirectAndVirtualCallsAgree) {
  RealRandom direct(99), through_base(99);
  Random& base = through_base;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(direct.Next(), base.Next());
}

TEST(RandomTest, OsSeededGeneratorsDiffer) {
  RealRandom a, b;
  EXPECT_NE(a.Next(), b.Next());
}

TEST(FakeRandomTest, ReturnsScriptedValuesThenRepeatsLast) {
  FakeRandom random;
  EXPECT_EQ(random.Next(), 0u);
  random.PushDouble(0.25);
  random.PushDouble(0.75);
  EXPECT_DOUBLE_EQ(random.UniformDouble(), 0.25);
  EXPECT_EQ(random.Uniform(100), 75u);
  EXPECT_EQ(random.Uniform(100), 75u);
  random.Push(~0ULL);
  EXPECT_EQ(random.Uniform(10), 9u);
  EXPECT_TRUE(random.Bernoulli(1.0));
}

}  // namespace
}  // namespace meshlet
