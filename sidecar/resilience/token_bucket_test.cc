#include "sidecar/resilience/token_bucket.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/base/fake_clock.h"

namespace meshlet::sidecar::resilience {
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

// The shared limiter admits what TokenBucket admits, request for request, in fake time.
TEST(SharedTokenBucketTest, MatchesTokenBucketDecisionForDecision) {
  for (const TokenBucketConfig config : {TokenBucketConfig{.requests_per_second = 100, .burst = 10},
                                         TokenBucketConfig{.requests_per_second = 3, .burst = 1},
                                         TokenBucketConfig{.requests_per_second = 7}}) {
    FakeClock clock;
    TokenBucket bucket(config, clock);
    SharedTokenBucket shared(config);
    int admitted = 0;
    for (int step = 0; step < 5000; ++step) {
      // Uneven steps: 0.3 ms to 2.9 ms.
      clock.Advance(std::chrono::microseconds(300 + (step * 7919) % 2600));
      const bool expected = bucket.TryTake();
      ASSERT_EQ(shared.TryTake(clock.Now()).admitted, expected)
          << "rate " << config.requests_per_second << " step " << step;
      admitted += expected;
    }
    EXPECT_GT(admitted, 0);
  }
}

TEST(SharedTokenBucketTest, BurstThenRateAndRetryAfter) {
  FakeClock clock;
  SharedTokenBucket shared(TokenBucketConfig{.requests_per_second = 10, .burst = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(shared.TryTake(clock.Now()).admitted);
  const SharedTokenBucket::Result refused = shared.TryTake(clock.Now());
  EXPECT_FALSE(refused.admitted);
  EXPECT_EQ(refused.retry_after, milliseconds(100));
  clock.Advance(milliseconds(99));
  EXPECT_FALSE(shared.TryTake(clock.Now()).admitted);
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(shared.TryTake(clock.Now()).admitted);
  EXPECT_FALSE(shared.TryTake(clock.Now()).admitted);
  // A long idle gap refills to the burst, not beyond.
  clock.Advance(seconds(60));
  int admitted = 0;
  while (shared.TryTake(clock.Now()).admitted) ++admitted;
  EXPECT_EQ(admitted, 3);
}

TEST(SharedTokenBucketTest, ZeroRateIsBurstOnly) {
  FakeClock clock;
  SharedTokenBucket shared(TokenBucketConfig{.requests_per_second = 0, .burst = 2});
  EXPECT_TRUE(shared.TryTake(clock.Now()).admitted);
  EXPECT_TRUE(shared.TryTake(clock.Now()).admitted);
  clock.Advance(seconds(100));
  const SharedTokenBucket::Result refused = shared.TryTake(clock.Now());
  EXPECT_FALSE(refused.admitted);
  EXPECT_EQ(refused.retry_after, Duration::max());
}

TEST(SharedTokenBucketTest, ThreadsShareOneLimit) {
  FakeClock clock;
  SharedTokenBucket shared(TokenBucketConfig{.requests_per_second = 1, .burst = 1000});
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) admitted += shared.TryTake(clock.Now()).admitted;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(admitted.load(), 1000);
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
