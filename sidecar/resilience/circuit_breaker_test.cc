#include "sidecar/resilience/circuit_breaker.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace meshlet::sidecar::resilience {
namespace {

TEST(CircuitBreakerThresholdsTest, Defaults) {
  CircuitBreakerThresholds cb;
  EXPECT_EQ(cb.Limit(ResourceKind::kConnection), 1024u);
  EXPECT_EQ(cb.Limit(ResourceKind::kPendingRequest), 1024u);
  EXPECT_EQ(cb.Limit(ResourceKind::kRequest), 1024u);
  EXPECT_EQ(cb.Limit(ResourceKind::kRetry), 3u);
  EXPECT_EQ(cb.Remaining(ResourceKind::kRetry), 3u);
}

TEST(CircuitBreakerThresholdsTest, AcquireUpToTheLimitThenOverflow) {
  CircuitBreakerThresholds cb;
  std::vector<ResourceGuard> held;
  for (int i = 0; i < 3; ++i) {
    std::optional<ResourceGuard> g = cb.TryAcquire(ResourceKind::kRetry);
    ASSERT_TRUE(g.has_value());
    held.push_back(std::move(*g));
  }
  EXPECT_EQ(cb.Active(ResourceKind::kRetry), 3u);
  EXPECT_EQ(cb.Remaining(ResourceKind::kRetry), 0u);
  EXPECT_FALSE(cb.TryAcquire(ResourceKind::kRetry).has_value());
  EXPECT_EQ(cb.Active(ResourceKind::kRetry), 3u);  // the refused attempt left no trace
  // Kinds are independent.
  EXPECT_TRUE(cb.TryAcquire(ResourceKind::kRequest).has_value());
  held.pop_back();
  EXPECT_EQ(cb.Remaining(ResourceKind::kRetry), 1u);
  EXPECT_TRUE(cb.TryAcquire(ResourceKind::kRetry).has_value());
}

TEST(CircuitBreakerThresholdsTest, GuardsReleaseExactlyOnce) {
  CircuitBreakerThresholds cb;
  std::optional<ResourceGuard> a = cb.TryAcquire(ResourceKind::kConnection);
  ASSERT_TRUE(a.has_value());
  ResourceGuard b = std::move(*a);
  EXPECT_FALSE(a->holds());
  EXPECT_TRUE(b.holds());
  EXPECT_EQ(cb.Active(ResourceKind::kConnection), 1u);
  b.Release();
  b.Release();
  a.reset();
  EXPECT_EQ(cb.Active(ResourceKind::kConnection), 0u);

  std::optional<ResourceGuard> c = cb.TryAcquire(ResourceKind::kConnection);
  std::optional<ResourceGuard> d = cb.TryAcquire(ResourceKind::kConnection);
  *c = std::move(*d);  // c's own unit is released, d's moves in
  EXPECT_EQ(cb.Active(ResourceKind::kConnection), 1u);
  c.reset();
  EXPECT_EQ(cb.Active(ResourceKind::kConnection), 0u);
}

TEST(CircuitBreakerThresholdsTest, LoweredLimitDrainsAndRaisedLimitAdmits) {
  CircuitBreakerThresholds cb(CircuitBreakerConfig{.max_requests = 4});
  std::vector<ResourceGuard> held;
  for (int i = 0; i < 4; ++i) held.push_back(*cb.TryAcquire(ResourceKind::kRequest));
  cb.SetLimits(CircuitBreakerConfig{.max_requests = 2});
  EXPECT_EQ(cb.Active(ResourceKind::kRequest), 4u);
  EXPECT_EQ(cb.Remaining(ResourceKind::kRequest), 0u);
  held.erase(held.begin() + 2, held.end());
  EXPECT_FALSE(cb.TryAcquire(ResourceKind::kRequest).has_value());
  held.pop_back();
  EXPECT_TRUE(cb.TryAcquire(ResourceKind::kRequest).has_value());
  cb.SetLimits(CircuitBreakerConfig{.max_requests = 10});
  EXPECT_EQ(cb.Remaining(ResourceKind::kRequest), 9u);
}

TEST(CircuitBreakerThresholdsTest, ZeroLimitRefusesEverything) {
  CircuitBreakerThresholds cb(CircuitBreakerConfig{.max_retries = 0});
  EXPECT_FALSE(cb.TryAcquire(ResourceKind::kRetry).has_value());
}

TEST(CircuitBreakerThresholdsTest, SharedAcrossThreadsNeverExceedsTheLimit) {
  CircuitBreakerThresholds cb(CircuitBreakerConfig{.max_requests = 8});
  std::atomic<int> holders{0};
  std::atomic<int> most_holders{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        std::optional<ResourceGuard> g = cb.TryAcquire(ResourceKind::kRequest);
        if (!g.has_value()) continue;
        const int now_holding = holders.fetch_add(1) + 1;
        int prev = most_holders.load();
        while (now_holding > prev && !most_holders.compare_exchange_weak(prev, now_holding)) {
        }
        holders.fetch_sub(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most_holders.load(), 8);
  EXPECT_EQ(cb.Active(ResourceKind::kRequest), 0u);
}

TEST(CircuitBreakerThresholdsTest, OverflowNames) {
  EXPECT_EQ(ResourceOverflowName(ResourceKind::kConnection), "cx_overflow");
  EXPECT_EQ(ResourceOverflowName(ResourceKind::kPendingRequest), "rq_pending_overflow");
  EXPECT_EQ(ResourceOverflowName(ResourceKind::kRequest), "rq_overflow");
  EXPECT_EQ(ResourceOverflowName(ResourceKind::kRetry), "rq_retry_overflow");
}

TEST(CircuitBreakerThresholdsTest, CountsOverflowsPerThreshold) {
  CircuitBreakerThresholds thresholds(
      CircuitBreakerConfig{.max_connections = 1, .max_pending_requests = 2, .max_requests = 1});
  auto request = thresholds.TryAcquire(ResourceKind::kRequest);
  ASSERT_TRUE(request.has_value());
  EXPECT_FALSE(thresholds.TryAcquire(ResourceKind::kRequest).has_value());
  EXPECT_FALSE(thresholds.TryAcquire(ResourceKind::kRequest).has_value());
  auto connection = thresholds.TryAcquire(ResourceKind::kConnection);
  EXPECT_FALSE(thresholds.TryAcquire(ResourceKind::kConnection).has_value());
  EXPECT_EQ(thresholds.Overflows(ResourceKind::kRequest), 2u);
  EXPECT_EQ(thresholds.Overflows(ResourceKind::kConnection), 1u);
  EXPECT_EQ(thresholds.Overflows(ResourceKind::kPendingRequest), 0u);
  EXPECT_EQ(thresholds.Remaining(ResourceKind::kPendingRequest), 2u);
  EXPECT_EQ(thresholds.Remaining(ResourceKind::kRequest), 0u);
  request.reset();
  EXPECT_EQ(thresholds.Remaining(ResourceKind::kRequest), 1u);
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
