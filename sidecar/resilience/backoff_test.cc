#include "sidecar/resilience/backoff.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "common/base/fake_random.h"
#include "common/base/random.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMaxDraw = ~uint64_t{0};

TEST(BackoffTest, UpperBoundDoublesFromBaseThenStaysAtCap) {
  FakeRandom random;
  Backoff backoff(BackoffConfig{}, random);
  EXPECT_EQ(backoff.UpperBound(0), milliseconds(25));
  EXPECT_EQ(backoff.UpperBound(1), milliseconds(50));
  EXPECT_EQ(backoff.UpperBound(2), milliseconds(100));
  EXPECT_EQ(backoff.UpperBound(3), milliseconds(200));
  EXPECT_EQ(backoff.UpperBound(4), milliseconds(250));
  EXPECT_EQ(backoff.UpperBound(5), milliseconds(250));
}

TEST(BackoffTest, UpperBoundIsOverflowSafeForHugeAttempts) {
  FakeRandom random;
  Backoff backoff(BackoffConfig{}, random);
  for (uint32_t attempt :
       {30u, 61u, 62u, 63u, 64u, 65u, 1000u, std::numeric_limits<uint32_t>::max()}) {
    EXPECT_EQ(backoff.UpperBound(attempt), milliseconds(250)) << attempt;
  }
  // A base and cap near the top of the range: no shift or product may overflow.
  BackoffConfig big{.base = Duration::max() / 2, .cap = Duration::max()};
  Backoff wide(big, random);
  EXPECT_EQ(wide.UpperBound(0), Duration::max() / 2);
  EXPECT_EQ(wide.UpperBound(1), Duration((Duration::max().count() / 2) * 2));
  EXPECT_EQ(wide.UpperBound(2), Duration::max());
  EXPECT_EQ(wide.UpperBound(100), Duration::max());
  random.Push(kMaxDraw);
  EXPECT_EQ(wide.Delay(100), Duration::max());
}

TEST(BackoffTest, MaxDrawGivesExactlyTheBoundOfEveryAttempt) {
  FakeRandom random;
  random.Push(kMaxDraw);  // repeats
  Backoff backoff(BackoffConfig{}, random);
  EXPECT_EQ(backoff.Delay(0), milliseconds(25));
  EXPECT_EQ(backoff.Delay(1), milliseconds(50));
  EXPECT_EQ(backoff.Delay(2), milliseconds(100));
  EXPECT_EQ(backoff.Delay(3), milliseconds(200));
  EXPECT_EQ(backoff.Delay(4), milliseconds(250));
  EXPECT_EQ(backoff.Delay(40), milliseconds(250));
}

TEST(BackoffTest, ZeroDrawGivesZero) {
  FakeRandom random;
  random.Push(0);
  Backoff backoff(BackoffConfig{}, random);
  for (uint32_t attempt = 0; attempt < 10; ++attempt) {
    EXPECT_EQ(backoff.Delay(attempt), Duration::zero()) << attempt;
  }
}

TEST(BackoffTest, MidDrawIsProportional) {
  FakeRandom random;
  random.PushDouble(0.5);
  Backoff backoff(BackoffConfig{}, random);
  // floor(0.5 * (25 ms + 1 ns)) = 12.5 ms.
  EXPECT_EQ(backoff.Delay(0), Duration(12'500'000));
}

TEST(BackoffTest, RealRandomStaysWithinEachAttemptsBounds) {
  RealRandom random(1234);
  Backoff backoff(BackoffConfig{}, random);
  for (uint32_t attempt = 0; attempt < 8; ++attempt) {
    Duration lo = Duration::max(), hi = Duration::zero();
    for (int i = 0; i < 2000; ++i) {
      const Duration d = backoff.Delay(attempt);
      ASSERT_GE(d, Duration::zero());
      ASSERT_LE(d, backoff.UpperBound(attempt));
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // Full jitter really uses the whole range.
    EXPECT_LT(lo, backoff.UpperBound(attempt) / 10) << attempt;
    EXPECT_GT(hi, backoff.UpperBound(attempt) * 9 / 10) << attempt;
  }
}

TEST(BackoffTest, RetryAfterIsUsedAsIsAndDrawsNothing) {
  FakeRandom random;
  random.Push(7);
  random.Push(kMaxDraw);
  Backoff backoff(BackoffConfig{}, random);
  EXPECT_EQ(backoff.DelayWithRetryAfter(0, milliseconds(100)), milliseconds(100));
  EXPECT_EQ(backoff.DelayWithRetryAfter(3, Duration::zero()), Duration::zero());
  EXPECT_EQ(backoff.DelayWithRetryAfter(0, milliseconds(-5)), Duration::zero());
  // The scripted draws are still there: Retry-After consumed none.
  EXPECT_EQ(random.Next(), 7u);
}

TEST(BackoffTest, RetryAfterIsCappedUnlessAllowedToExceed) {
  FakeRandom random;
  Backoff capped(BackoffConfig{}, random);
  EXPECT_EQ(capped.DelayWithRetryAfter(0, seconds(10)), milliseconds(250));
  Backoff uncapped(BackoffConfig{.retry_after_may_exceed_cap = true}, random);
  EXPECT_EQ(uncapped.DelayWithRetryAfter(0, seconds(10)), seconds(10));
}

TEST(BackoffTest, NoRetryAfterFallsBackToJitter) {
  FakeRandom random;
  random.Push(kMaxDraw);
  Backoff backoff(BackoffConfig{}, random);
  EXPECT_EQ(backoff.DelayWithRetryAfter(1, std::nullopt), milliseconds(50));
}

TEST(BackoffTest, Validate) {
  EXPECT_TRUE(ValidateBackoffConfig(BackoffConfig{}).ok());
  EXPECT_FALSE(ValidateBackoffConfig(BackoffConfig{.base = Duration::zero()}).ok());
  EXPECT_FALSE(
      ValidateBackoffConfig(BackoffConfig{.base = seconds(1), .cap = milliseconds(10)}).ok());
  EXPECT_TRUE(ValidateBackoffConfig(BackoffConfig{.base = hours(1), .cap = hours(2)}).ok());
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
