#include "sidecar/resilience/consecutive_failure_breaker.h"

#include <gtest/gtest.h>

#include "common/base/fake_clock.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;
using State = ConsecutiveFailureBreaker::State;
using Transition = ConsecutiveFailureBreaker::Transition;
using Verdict = ConsecutiveFailureBreaker::Verdict;

constexpr ConsecutiveFailureBreakerConfig kFive{.failure_threshold = 5};

// Admits one request and records its result.
Transition RunOne(ConsecutiveFailureBreaker& breaker, bool success) {
  ConsecutiveFailureBreaker::Ticket t = breaker.TryAdmit();
  EXPECT_TRUE(t.admitted());
  return breaker.Record(t, success);
}

TEST(ConsecutiveFailureBreakerTest, OpensAfterThresholdConsecutiveFailures) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  EXPECT_EQ(breaker.state(), State::kClosed);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(RunOne(breaker, false), Transition::kNone);
  EXPECT_EQ(breaker.consecutive_failures(), 4u);
  EXPECT_EQ(RunOne(breaker, false), Transition::kOpened);
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.StateGauge(), 1);
  EXPECT_EQ(breaker.TryAdmit().verdict, Verdict::kRejectedOpen);
}

TEST(ConsecutiveFailureBreakerTest, SuccessResetsTheCount) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  for (int i = 0; i < 4; ++i) RunOne(breaker, false);
  RunOne(breaker, true);
  EXPECT_EQ(breaker.consecutive_failures(), 0u);
  for (int i = 0; i < 4; ++i) RunOne(breaker, false);
  EXPECT_EQ(breaker.state(), State::kClosed);
}

TEST(ConsecutiveFailureBreakerTest, HalfOpensExactlyAfterOpenDuration) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  for (int i = 0; i < 5; ++i) RunOne(breaker, false);
  clock.Advance(seconds(60) - nanoseconds(1));
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.TryAdmit().verdict, Verdict::kRejectedOpen);
  clock.Advance(nanoseconds(1));
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
  EXPECT_EQ(breaker.StateGauge(), 2);
}

TEST(ConsecutiveFailureBreakerTest, HalfOpenAdmitsExactlyOneProbeAndSuccessCloses) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  for (int i = 0; i < 5; ++i) RunOne(breaker, false);
  clock.Advance(seconds(60));
  ConsecutiveFailureBreaker::Ticket probe = breaker.TryAdmit();
  EXPECT_EQ(probe.verdict, Verdict::kAdmittedProbe);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(breaker.TryAdmit().verdict, Verdict::kRejectedProbeInFlight);
  }
  EXPECT_EQ(breaker.Record(probe, true), Transition::kClosed);
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_EQ(breaker.StateGauge(), 0);
  EXPECT_EQ(breaker.consecutive_failures(), 0u);
  EXPECT_EQ(breaker.TryAdmit().verdict, Verdict::kAdmitted);
}

TEST(ConsecutiveFailureBreakerTest, ProbeFailureReopensForAnotherFullDuration) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  for (int i = 0; i < 5; ++i) RunOne(breaker, false);
  clock.Advance(seconds(60));
  ConsecutiveFailureBreaker::Ticket probe = breaker.TryAdmit();
  clock.Advance(seconds(2));  // the probe took 2 s to fail
  EXPECT_EQ(breaker.Record(probe, false), Transition::kReopened);
  EXPECT_EQ(breaker.state(), State::kOpen);
  clock.Advance(seconds(60) - nanoseconds(1));
  EXPECT_EQ(breaker.state(), State::kOpen);
  clock.Advance(nanoseconds(1));
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
}

TEST(ConsecutiveFailureBreakerTest, StaleResultsDoNotDecide) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  ConsecutiveFailureBreaker::Ticket slow = breaker.TryAdmit();  // admitted while closed
  for (int i = 0; i < 5; ++i) RunOne(breaker, false);
  ASSERT_EQ(breaker.state(), State::kOpen);
  // A success from before the breaker opened neither closes it nor half-opens it.
  EXPECT_EQ(breaker.Record(slow, true), Transition::kIgnoredStale);
  EXPECT_EQ(breaker.state(), State::kOpen);
  clock.Advance(seconds(60));
  ConsecutiveFailureBreaker::Ticket probe = breaker.TryAdmit();
  EXPECT_EQ(breaker.Record(slow, false), Transition::kIgnoredStale);
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
  EXPECT_EQ(breaker.Record(probe, true), Transition::kClosed);
  // Rejected tickets carry no result.
  for (int i = 0; i < 5; ++i) RunOne(breaker, false);
  ConsecutiveFailureBreaker::Ticket rejected = breaker.TryAdmit();
  EXPECT_FALSE(rejected.admitted());
  EXPECT_EQ(breaker.Record(rejected, true), Transition::kNone);
}

TEST(ConsecutiveFailureBreakerTest, LostProbeIsReplacedAfterOpenDuration) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(kFive, clock);
  for (int i = 0; i < 5; ++i) RunOne(breaker, false);
  clock.Advance(seconds(60));
  ConsecutiveFailureBreaker::Ticket lost = breaker.TryAdmit();
  ASSERT_EQ(lost.verdict, Verdict::kAdmittedProbe);
  clock.Advance(seconds(60) - nanoseconds(1));
  EXPECT_EQ(breaker.TryAdmit().verdict, Verdict::kRejectedProbeInFlight);
  clock.Advance(nanoseconds(1));
  ConsecutiveFailureBreaker::Ticket second = breaker.TryAdmit();
  EXPECT_EQ(second.verdict, Verdict::kAdmittedProbe);
  EXPECT_EQ(breaker.Record(lost, true), Transition::kIgnoredStale);
  EXPECT_EQ(breaker.Record(second, true), Transition::kClosed);
}

TEST(ConsecutiveFailureBreakerTest, ZeroThresholdNeverOpens) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(ConsecutiveFailureBreakerConfig{}, clock);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(RunOne(breaker, false), Transition::kNone);
  EXPECT_EQ(breaker.state(), State::kClosed);
}

TEST(ConsecutiveFailureBreakerTest, StateNames) {
  EXPECT_EQ(BreakerStateName(State::kClosed), "closed");
  EXPECT_EQ(BreakerStateName(State::kOpen), "open");
  EXPECT_EQ(BreakerStateName(State::kHalfOpen), "half_open");
}

TEST(ConsecutiveFailureBreakerTest, WouldRejectPeeksWithoutTakingTheProbe) {
  FakeClock clock;
  ConsecutiveFailureBreaker breaker(
      {.failure_threshold = 1, .open_duration = std::chrono::seconds(5)}, clock);
  EXPECT_FALSE(breaker.WouldReject());
  breaker.Record(breaker.TryAdmit(), /*success=*/false);
  EXPECT_TRUE(breaker.WouldReject());
  clock.Advance(std::chrono::seconds(5));
  // Half-open: peeking twice leaves the probe for TryAdmit.
  EXPECT_FALSE(breaker.WouldReject());
  EXPECT_FALSE(breaker.WouldReject());
  const auto probe = breaker.TryAdmit();
  EXPECT_EQ(probe.verdict, ConsecutiveFailureBreaker::Verdict::kAdmittedProbe);
  EXPECT_TRUE(breaker.WouldReject());
  // An abandoned probe frees the slot for the next request at once.
  breaker.CancelProbe(probe);
  EXPECT_FALSE(breaker.WouldReject());
  const auto next = breaker.TryAdmit();
  EXPECT_EQ(next.verdict, ConsecutiveFailureBreaker::Verdict::kAdmittedProbe);
  EXPECT_EQ(breaker.Record(next, /*success=*/true), ConsecutiveFailureBreaker::Transition::kClosed);
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
