#include "sidecar/resilience/deadline.h"

#include <gtest/gtest.h>

#include "common/base/fake_clock.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(DeadlineTest, NoLimitsMeansInfinite) {
  FakeClock clock;
  Deadline d(clock, std::nullopt, std::nullopt);
  EXPECT_TRUE(d.infinite());
  EXPECT_EQ(d.Remaining(), Duration::max());
  EXPECT_FALSE(d.Expired());
  EXPECT_EQ(d.source(), Deadline::Source::kNone);
  EXPECT_FALSE(d.PerTryTimeout(std::nullopt).has_value());
  EXPECT_EQ(d.PerTryTimeout(seconds(1)), seconds(1));
  // A zero route timeout is "none", as in RouteAction.timeout "0s".
  EXPECT_TRUE(Deadline(clock, Duration::zero(), std::nullopt).infinite());
  EXPECT_TRUE(Deadline(clock).infinite());
}

TEST(DeadlineTest, RouteTimeoutCountsDown) {
  FakeClock clock;
  Deadline d(clock, seconds(15), std::nullopt);
  EXPECT_EQ(d.source(), Deadline::Source::kRoute);
  EXPECT_EQ(d.Remaining(), seconds(15));
  clock.Advance(seconds(10));
  EXPECT_EQ(d.Remaining(), seconds(5));
  clock.Advance(seconds(5) - nanoseconds(1));
  EXPECT_FALSE(d.Expired());
  clock.Advance(nanoseconds(1));
  EXPECT_TRUE(d.Expired());
  EXPECT_EQ(d.Remaining(), Duration::zero());
  clock.Advance(seconds(1));
  EXPECT_EQ(d.Remaining(), Duration::zero());  // never negative
}

TEST(DeadlineTest, EarlierOfRouteAndCallerWins) {
  FakeClock clock;
  Deadline caller_first(clock, seconds(15), milliseconds(800));
  EXPECT_EQ(caller_first.Remaining(), milliseconds(800));
  EXPECT_EQ(caller_first.source(), Deadline::Source::kCaller);
  Deadline route_first(clock, seconds(1), seconds(30));
  EXPECT_EQ(route_first.Remaining(), seconds(1));
  EXPECT_EQ(route_first.source(), Deadline::Source::kRoute);
  Deadline caller_only(clock, std::nullopt, seconds(2));
  EXPECT_EQ(caller_only.Remaining(), seconds(2));
  EXPECT_EQ(caller_only.source(), Deadline::Source::kCaller);
}

TEST(DeadlineTest, PerTryTimeoutIsTheSmallerOfPerTryAndRemaining) {
  FakeClock clock;
  Deadline d(clock, seconds(2), std::nullopt);
  EXPECT_EQ(d.PerTryTimeout(milliseconds(500)), milliseconds(500));
  EXPECT_EQ(d.PerTryTimeout(std::nullopt), seconds(2));
  EXPECT_EQ(d.PerTryTimeout(Duration::zero()), seconds(2));  // zero: per-try unset
  clock.Advance(milliseconds(1800));
  EXPECT_EQ(d.PerTryTimeout(milliseconds(500)), milliseconds(200));
}

TEST(DeadlineTest, NextHopGetsSlightlyLessSoItTimesOutFirst) {
  EXPECT_EQ(NextHopBudget(milliseconds(300)), milliseconds(290));  // capped at 10 ms
  EXPECT_EQ(NextHopBudget(seconds(15)), seconds(15) - milliseconds(10));
  EXPECT_EQ(NextHopBudget(milliseconds(100)), milliseconds(95));  // 1/20
  EXPECT_EQ(NextHopBudget(milliseconds(20)), milliseconds(19));
  EXPECT_EQ(NextHopBudget(Duration::zero()), Duration::zero());
  EXPECT_EQ(NextHopBudget(-milliseconds(5)), Duration::zero());
}

TEST(DeadlineTest, SourceNames) {
  EXPECT_EQ(DeadlineSourceName(Deadline::Source::kRoute), "route");
  EXPECT_EQ(DeadlineSourceName(Deadline::Source::kCaller), "caller");
  EXPECT_EQ(DeadlineSourceName(Deadline::Source::kNone), "none");
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
