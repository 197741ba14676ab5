#include "sidecar/resilience/token_bucket.h"

#include <gtest/gtest.h>

#include "common/base/fake_clock.h"

namespace meshlet::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

int TakeAll(TokenBucket& bucket) {
  int n = 0;
  while (bucket.TryTake()) ++n;
  return n;
}

TEST(TokenBucketTest, StartsFullWithBurst) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 10, .burst = 5}, clock);
  EXPECT_EQ(bucket.available(), 5u);
  EXPECT_EQ(TakeAll(bucket), 5);
  EXPECT_EQ(bucket.available(), 0u);
}

TEST(TokenBucketTest, AdmitsExactlyTheRateInFakeTime) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 100, .burst = 10}, clock);
  int admitted = TakeAll(bucket);
  // Ten seconds, a request attempt every millisecond: exactly burst + 10 s x 100/s.
  for (int ms = 0; ms < 10000; ++ms) {
    clock.Advance(milliseconds(1));
    if (bucket.TryTake()) ++admitted;
  }
  EXPECT_EQ(admitted, 10 + 1000);
}

TEST(TokenBucketTest, FractionalRefillAccumulates) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 3, .burst = 5}, clock);
  ASSERT_EQ(TakeAll(bucket), 5);
  // One token every 333333333.33 ns: not there after 333333333 ns, there after 333333334 ns.
  clock.Advance(nanoseconds(333333333));
  EXPECT_FALSE(bucket.TryTake());
  clock.Advance(nanoseconds(1));
  EXPECT_TRUE(bucket.TryTake());
  // Three tokens in exactly one second, in many tiny steps (the bucket never fills, so no
  // fraction is lost at the cap).
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) {
    clock.Advance(milliseconds(1));
    if (bucket.TryTake()) ++admitted;
  }
  EXPECT_EQ(admitted, 3);
}

TEST(TokenBucketTest, NeverExceedsBurstAfterLongIdle) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 4000000000u, .burst = 7}, clock);
  EXPECT_EQ(TakeAll(bucket), 7);
  clock.Advance(std::chrono::hours(24 * 365));
  EXPECT_EQ(bucket.available(), 7u);
  EXPECT_EQ(TakeAll(bucket), 7);
}

TEST(TokenBucketTest, TimeUntilNextTokenIsExact) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 4, .burst = 2}, clock);
  EXPECT_EQ(bucket.TimeUntilNextToken(), Duration::zero());
  TakeAll(bucket);
  EXPECT_EQ(bucket.TimeUntilNextToken(), milliseconds(250));
  clock.Advance(milliseconds(100));
  EXPECT_EQ(bucket.TimeUntilNextToken(), milliseconds(150));
  clock.Advance(bucket.TimeUntilNextToken());
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_FALSE(bucket.TryTake());
}

TEST(TokenBucketTest, TimeUntilNextTokenRoundsUp) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 3, .burst = 1}, clock);
  ASSERT_TRUE(bucket.TryTake());
  EXPECT_EQ(bucket.TimeUntilNextToken(), nanoseconds(333333334));
}

TEST(TokenBucketTest, ZeroRateNeverRefills) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 0, .burst = 3}, clock);
  EXPECT_EQ(TakeAll(bucket), 3);
  clock.Advance(seconds(1000));
  EXPECT_FALSE(bucket.TryTake());
  EXPECT_EQ(bucket.TimeUntilNextToken(), Duration::max());
}

TEST(TokenBucketTest, ZeroBurstMeansOneSecondOfRate) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 50}, clock);
  EXPECT_EQ(bucket.burst(), 50u);
  TokenBucket tiny(TokenBucketConfig{}, clock);
  EXPECT_EQ(tiny.burst(), 1u);
}

TEST(TokenBucketTest, TakingSeveralIsAllOrNothing) {
  FakeClock clock;
  TokenBucket bucket(TokenBucketConfig{.requests_per_second = 1, .burst = 5}, clock);
  EXPECT_TRUE(bucket.TryTake(3));
  EXPECT_FALSE(bucket.TryTake(3));
  EXPECT_EQ(bucket.available(), 2u);
}

}  // namespace
}  // namespace meshlet::resilience
