#include "sidecar/resilience/retry_budget.h"

#include <gtest/gtest.h>

#include "common/base/allocation_counter.h"
#include "common/base/fake_clock.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

void RecordRequests(RetryBudget& budget, int n) {
  for (int i = 0; i < n; ++i) budget.RecordRequest();
}

// Acquires until refused; returns how many were admitted.
int AcquireAll(RetryBudget& budget) {
  int n = 0;
  while (budget.TryAcquireRetry()) ++n;
  return n;
}

// Every cluster a worker uses has a budget (ADR 0091): with the default buckets it lives inside
// the cluster, no allocation of its own.
TEST(RetryBudgetTest, DefaultBucketsAllocateNothing) {
  FakeClock clock;
  AllocationScope scope;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  budget.RecordRequest();
  EXPECT_TRUE(budget.TryAcquireRetry());
  EXPECT_EQ(scope.count(), 0u);
  EXPECT_EQ(budget.requests_in_window(), 1u);
  EXPECT_EQ(budget.retries_in_window(), 1u);
}

TEST(RetryBudgetTest, FloorAllowsMinRetriesPerSecondTimesWindowWithNoTraffic) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  EXPECT_DOUBLE_EQ(budget.Allowance(), 100.0);  // 10/s x 10 s
  EXPECT_EQ(AcquireAll(budget), 100);
  EXPECT_EQ(budget.retries_in_window(), 100u);
}

TEST(RetryBudgetTest, PercentOfRequestsWhenAboveTheFloor) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  RecordRequests(budget, 1000);
  EXPECT_DOUBLE_EQ(budget.Allowance(), 200.0);
  EXPECT_EQ(AcquireAll(budget), 200);
  // Retries are not requests: they did not raise the allowance.
  EXPECT_EQ(budget.requests_in_window(), 1000u);
  budget.RecordRequest();  // 20 % of 1001 = 200.2: still no room for a 201st
  EXPECT_FALSE(budget.TryAcquireRetry());
  RecordRequests(budget, 4);  // 20 % of 1005 = 201
  EXPECT_TRUE(budget.TryAcquireRetry());
  EXPECT_FALSE(budget.TryAcquireRetry());
}

TEST(RetryBudgetTest, RequestsExpireExactlyOneWindowAfterTheirBucketStarts) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);  // 10 buckets of 1 s, aligned to now
  RecordRequests(budget, 600);                     // bucket 0, at its very start
  clock.Advance(milliseconds(5500));
  RecordRequests(budget, 400);  // bucket 5, 0.5 s into it
  EXPECT_EQ(budget.requests_in_window(), 1000u);

  clock.Advance(milliseconds(4500) - nanoseconds(1));  // 1 ns before t = 10 s
  EXPECT_EQ(budget.requests_in_window(), 1000u);
  clock.Advance(nanoseconds(1));  // t = 10 s: bucket 0 rolls out
  EXPECT_EQ(budget.requests_in_window(), 400u);
  EXPECT_DOUBLE_EQ(budget.Allowance(), 100.0);  // 20 % of 400 = 80 < floor

  // Bucket 5 started at t = 5 s, so its requests leave at t = 15 s: 9.5 s after they came.
  clock.Advance(seconds(5) - nanoseconds(1));
  EXPECT_EQ(budget.requests_in_window(), 400u);
  clock.Advance(nanoseconds(1));
  EXPECT_EQ(budget.requests_in_window(), 0u);
}

TEST(RetryBudgetTest, RetriesExpireAfterExactlyTheWindow) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  EXPECT_EQ(AcquireAll(budget), 100);
  clock.Advance(seconds(10) - nanoseconds(1));
  EXPECT_FALSE(budget.TryAcquireRetry());
  clock.Advance(nanoseconds(1));
  EXPECT_EQ(budget.retries_in_window(), 0u);
  EXPECT_EQ(AcquireAll(budget), 100);
}

TEST(RetryBudgetTest, PartiallyExpiredWindowFreesOnlyTheOldBuckets) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(budget.TryAcquireRetry());  // bucket 0
  clock.Advance(seconds(3));
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(budget.TryAcquireRetry());  // bucket 3
  clock.Advance(seconds(4));
  EXPECT_EQ(AcquireAll(budget), 20);  // bucket 7: fills the window to 100
  EXPECT_EQ(budget.retries_in_window(), 100u);

  clock.Advance(seconds(3));  // t = 10 s: bucket 0 (30) out
  EXPECT_EQ(budget.retries_in_window(), 70u);
  EXPECT_EQ(AcquireAll(budget), 30);
  clock.Advance(seconds(3));  // t = 13 s: bucket 3 (50) out
  EXPECT_EQ(budget.retries_in_window(), 50u);
  clock.Advance(seconds(4));  // t = 17 s: bucket 7 (20) out
  EXPECT_EQ(budget.retries_in_window(), 30u);
  clock.Advance(seconds(3));  // t = 20 s: bucket 10 (30) out
  EXPECT_EQ(budget.retries_in_window(), 0u);
}

TEST(RetryBudgetTest, EveryBucketRollsOutInTurn) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  for (int s = 0; s < 10; ++s) {
    RecordRequests(budget, 100 * (s + 1));
    clock.Advance(seconds(1));
  }
  // t = 10 s: bucket 0 (100) is out, buckets 1..9 hold 200 + ... + 1000 = 5400.
  EXPECT_EQ(budget.requests_in_window(), 5400u);
  for (int s = 1; s < 10; ++s) {
    clock.Advance(seconds(1));
    uint64_t expected = 0;
    for (int b = s + 1; b < 10; ++b) expected += 100 * (b + 1);
    EXPECT_EQ(budget.requests_in_window(), expected) << s;
  }
}

TEST(RetryBudgetTest, IdleGapLongerThanWindowClearsEverything) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  RecordRequests(budget, 1000);
  EXPECT_EQ(AcquireAll(budget), 200);
  clock.Advance(seconds(3600));
  EXPECT_EQ(budget.requests_in_window(), 0u);
  EXPECT_EQ(budget.retries_in_window(), 0u);
  RecordRequests(budget, 10);
  EXPECT_EQ(budget.requests_in_window(), 10u);
}

TEST(RetryBudgetTest, CoarseBucketsExpireByBucketStartNotByEventTime) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.window = seconds(10), .bucket_count = 5}, clock);  // 2 s
  clock.Advance(seconds(1));
  RecordRequests(budget, 7);  // bucket 0 = [0 s, 2 s)
  clock.Advance(seconds(9) - nanoseconds(1));
  EXPECT_EQ(budget.requests_in_window(), 7u);
  clock.Advance(nanoseconds(1));  // t = 10 s: 9 s after recording
  EXPECT_EQ(budget.requests_in_window(), 0u);
}

TEST(RetryBudgetTest, ConcurrencyCapRefusesWithoutSpendingBudget) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.max_concurrent_retries = 2}, clock);
  RetryBudget::Admission a = budget.Admit();
  RetryBudget::Admission b = budget.Admit();
  ASSERT_TRUE(a.admitted());
  ASSERT_TRUE(b.admitted());
  EXPECT_EQ(budget.active_retries(), 2u);
  RetryBudget::Admission c = budget.Admit();
  EXPECT_EQ(c.verdict, RetryBudget::Verdict::kConcurrencyExceeded);
  EXPECT_FALSE(c.guard.holds());
  EXPECT_EQ(budget.retries_in_window(), 2u);

  {
    RetryBudget::ActiveRetry moved = std::move(a.guard);
    EXPECT_FALSE(a.guard.holds());
    EXPECT_EQ(budget.active_retries(), 2u);
  }
  EXPECT_EQ(budget.active_retries(), 1u);
  b.guard.Release();
  b.guard.Release();  // idempotent
  EXPECT_EQ(budget.active_retries(), 0u);
  EXPECT_TRUE(budget.Admit().admitted());  // temporary guard released at once
  EXPECT_EQ(budget.active_retries(), 0u);
}

TEST(RetryBudgetTest, RateRefusalReportsBudgetExhausted) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.min_retries_per_second = 0}, clock);
  RecordRequests(budget, 10);  // 20 % = 2
  EXPECT_TRUE(budget.Admit().admitted());
  EXPECT_TRUE(budget.Admit().admitted());
  RetryBudget::Admission third = budget.Admit();
  EXPECT_EQ(third.verdict, RetryBudget::Verdict::kBudgetExhausted);
  EXPECT_EQ(RetryBudgetVerdictName(third.verdict), "retry_overflow");
  EXPECT_EQ(budget.active_retries(), 0u);
}

TEST(RetryBudgetTest, DisabledBudgetAlwaysAdmitsButStillCounts) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.enabled = false, .min_retries_per_second = 0}, clock);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(budget.TryAcquireRetry());
  EXPECT_EQ(budget.retries_in_window(), 1000u);
}

TEST(RetryBudgetTest, Validate) {
  EXPECT_TRUE(ValidateRetryBudgetConfig(RetryBudgetConfig{}).ok());
  EXPECT_FALSE(ValidateRetryBudgetConfig(RetryBudgetConfig{.budget_percent = -1}).ok());
  EXPECT_FALSE(ValidateRetryBudgetConfig(RetryBudgetConfig{.window = Duration::zero()}).ok());
  EXPECT_FALSE(ValidateRetryBudgetConfig(RetryBudgetConfig{.bucket_count = 0}).ok());
}

TEST(RetryBudgetTest, ReconfigureKeepsCountsUnlessTheWindowChanges) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.min_retries_per_second = 1}, clock);
  for (int i = 0; i < 100; ++i) budget.RecordRequest();
  ASSERT_TRUE(budget.Admit().admitted());
  RetryBudget::Admission held = budget.Admit();
  ASSERT_TRUE(held.admitted());
  // Same window: counts stay, the new percentage applies at once.
  budget.Reconfigure(RetryBudgetConfig{.budget_percent = 50, .min_retries_per_second = 1});
  EXPECT_EQ(budget.requests_in_window(), 100u);
  EXPECT_EQ(budget.retries_in_window(), 2u);
  EXPECT_DOUBLE_EQ(budget.Allowance(), 50.0);
  // A new window shape starts over; the retry in flight keeps its slot.
  budget.Reconfigure(RetryBudgetConfig{.min_retries_per_second = 1, .window = seconds(5)});
  EXPECT_EQ(budget.requests_in_window(), 0u);
  EXPECT_EQ(budget.retries_in_window(), 0u);
  EXPECT_DOUBLE_EQ(budget.Allowance(), 5.0);
  EXPECT_EQ(budget.active_retries(), 1u);
  held.guard.Release();
  EXPECT_EQ(budget.active_retries(), 0u);
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
