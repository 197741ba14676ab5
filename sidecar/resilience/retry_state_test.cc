#include "sidecar/resilience/retry_state.h"

#include <gtest/gtest.h>

#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Kind = AttemptResult::Kind;

constexpr uint64_t kMaxDraw = ~uint64_t{0};

AttemptResult Failure(Kind kind) { return AttemptResult{.kind = kind}; }
AttemptResult Response(uint32_t status, std::optional<uint32_t> grpc = std::nullopt) {
  return AttemptResult{.kind = Kind::kResponse, .http_status = status, .grpc_status = grpc};
}

class RetryStateTest : public ::testing::Test {
 protected:
  RetryStateTest() { random_.Push(kMaxDraw); }  // every backoff at its upper bound

  // A RetryState for `policy_` after one attempt to endpoint 1.
  std::unique_ptr<RetryState> Start(bool idempotent = true, const Deadline* deadline = nullptr,
                                    RetryBudget* budget = nullptr,
                                    CircuitBreakerThresholds* thresholds = nullptr) {
    auto state =
        std::make_unique<RetryState>(policy_, idempotent, random_, deadline, budget, thresholds);
    state->OnAttemptStarted(1);
    return state;
  }

  NoRetryReason ReasonFor(const AttemptResult& result, bool idempotent = true) {
    RetryDecision d = Start(idempotent)->OnAttemptFailed(result);
    return d.retry ? NoRetryReason::kNone : d.reason;
  }

  FakeClock clock_;
  FakeRandom random_;
  RetryPolicyConfig policy_;
};

TEST_F(RetryStateTest, DefaultPolicyRetriesTwiceWithGrowingBackoff) {
  std::unique_ptr<RetryState> state = Start();
  RetryDecision first = state->OnAttemptFailed(Failure(Kind::kConnectFailure));
  EXPECT_TRUE(first.retry);
  EXPECT_EQ(first.delay, milliseconds(25));
  state->OnAttemptStarted(2);
  RetryDecision second = state->OnAttemptFailed(Response(503));
  EXPECT_TRUE(second.retry);
  EXPECT_EQ(second.delay, milliseconds(50));
  state->OnAttemptStarted(3);
  RetryDecision third = state->OnAttemptFailed(Response(503));
  EXPECT_FALSE(third.retry);
  EXPECT_EQ(third.reason, NoRetryReason::kAttemptsExhausted);
  EXPECT_EQ(state->attempts(), 3u);
}

TEST_F(RetryStateTest, DefaultRetryOnClasses) {
  EXPECT_EQ(ReasonFor(Failure(Kind::kConnectFailure)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Failure(Kind::kRefusedStream)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Failure(Kind::kResetBeforeHeaders)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Failure(Kind::kPerTryTimeout)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(503)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(200, 14)), NoRetryReason::kNone);  // gRPC UNAVAILABLE
  EXPECT_EQ(ReasonFor(Response(500)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(502)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(404)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(200)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(200, 13)), NoRetryReason::kPolicyNoMatch);  // INTERNAL
  EXPECT_EQ(ReasonFor(Failure(Kind::kResetAfterHeaders)), NoRetryReason::kResponseStarted);
}

TEST_F(RetryStateTest, ConnectRefusedByTheOnlyLocalHostIsNotRetried) {
  AttemptResult refused = Failure(Kind::kConnectFailure);
  refused.refused_by_only_local_host = true;
  std::unique_ptr<RetryState> state = Start(/*idempotent=*/false);
  RetryDecision decision = state->OnAttemptFailed(refused);
  EXPECT_FALSE(decision.retry);
  EXPECT_EQ(decision.reason, NoRetryReason::kLocalConnectRefused);
  EXPECT_EQ(NoRetryReasonName(decision.reason), "local_connect_refused");
  // Only a failure the policy retries on counts as one not retried.
  policy_.retry_on = RetryOn::kRefusedStream;
  EXPECT_EQ(ReasonFor(refused), NoRetryReason::kPolicyNoMatch);
  // Any other connect failure is retried as before.
  policy_.retry_on = RetryOn::kDefault;
  EXPECT_EQ(ReasonFor(Failure(Kind::kConnectFailure), /*idempotent=*/false), NoRetryReason::kNone);
}

TEST_F(RetryStateTest, FiveXxAndGatewayErrorClasses) {
  policy_.retry_on = RetryOn::k5xx;
  EXPECT_EQ(ReasonFor(Response(500)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(599)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(499)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Failure(Kind::kResetBeforeHeaders)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Failure(Kind::kConnectFailure)), NoRetryReason::kNone);

  policy_.retry_on = RetryOn::kGatewayError;
  EXPECT_EQ(ReasonFor(Response(502)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(503)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(504)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(500)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Failure(Kind::kResetBeforeHeaders)), NoRetryReason::kPolicyNoMatch);

  policy_.retry_on = RetryOn::kRetriableStatusCodes;
  policy_.retriable_status_codes = {409, 429};
  EXPECT_EQ(ReasonFor(Response(429)), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Response(503)), NoRetryReason::kPolicyNoMatch);
}

TEST_F(RetryStateTest, GrpcStatusClasses) {
  policy_.retry_on = RetryOn::kGrpcCancelled | RetryOn::kGrpcDeadlineExceeded |
                     RetryOn::kGrpcInternal | RetryOn::kGrpcResourceExhausted;
  for (uint32_t code : {1u, 4u, 8u, 13u}) {
    EXPECT_EQ(ReasonFor(Response(200, code)), NoRetryReason::kNone) << code;
  }
  EXPECT_EQ(ReasonFor(Response(200, 14)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(200, 2)), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(200, 0)), NoRetryReason::kPolicyNoMatch);
}

TEST_F(RetryStateTest, NonIdempotentOnlyWhenTheUpstreamNeverSawTheRequest) {
  EXPECT_EQ(ReasonFor(Failure(Kind::kConnectFailure), false), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Failure(Kind::kRefusedStream), false), NoRetryReason::kNone);
  EXPECT_EQ(ReasonFor(Failure(Kind::kResetBeforeHeaders), false), NoRetryReason::kNonIdempotent);
  EXPECT_EQ(ReasonFor(Failure(Kind::kPerTryTimeout), false), NoRetryReason::kNonIdempotent);
  EXPECT_EQ(ReasonFor(Response(503), false), NoRetryReason::kNonIdempotent);
  policy_.retry_non_idempotent = true;
  EXPECT_EQ(ReasonFor(Response(503), false), NoRetryReason::kNone);
}

TEST_F(RetryStateTest, BodyLargerThanTheReplayBufferIsNotRetried) {
  std::unique_ptr<RetryState> state = Start();
  EXPECT_TRUE(state->OnRequestBodyBytes(60 * 1024));
  EXPECT_TRUE(state->OnRequestBodyBytes(4 * 1024));  // exactly 64 KiB still fits
  EXPECT_TRUE(state->body_replayable());
  EXPECT_FALSE(state->OnRequestBodyBytes(1));
  EXPECT_FALSE(state->OnRequestBodyBytes(1));
  EXPECT_EQ(state->OnAttemptFailed(Failure(Kind::kConnectFailure)).reason,
            NoRetryReason::kBodyTooLarge);
}

TEST_F(RetryStateTest, DeadlineTooCloseForBackoffPlusMinimumAttempt) {
  Deadline deadline(clock_, milliseconds(100), std::nullopt);
  clock_.Advance(milliseconds(70));  // 30 ms left
  {
    // Backoff 25 ms + 10 ms minimum attempt = 35 ms > 30 ms.
    std::unique_ptr<RetryState> state = Start(true, &deadline);
    EXPECT_EQ(state->OnAttemptFailed(Response(503)).reason, NoRetryReason::kDeadlineTooClose);
  }
  random_.Push(0);  // from now on a zero backoff
  {
    std::unique_ptr<RetryState> state = Start(true, &deadline);
    RetryDecision d = state->OnAttemptFailed(Response(503));
    EXPECT_TRUE(d.retry);
    EXPECT_EQ(d.delay, Duration::zero());
  }
  clock_.Advance(milliseconds(20));  // exactly 10 ms left: just enough
  EXPECT_TRUE(Start(true, &deadline)->OnAttemptFailed(Response(503)).retry);
  clock_.Advance(std::chrono::nanoseconds(1));
  EXPECT_EQ(Start(true, &deadline)->OnAttemptFailed(Response(503)).reason,
            NoRetryReason::kDeadlineTooClose);
}

TEST_F(RetryStateTest, RetryUntilDeadlineLeavesTheEndToTheDeadline) {
  Deadline deadline(clock_, milliseconds(100), std::nullopt);
  clock_.Advance(milliseconds(70));  // 30 ms left; backoff 25 ms + 10 ms minimum attempt = 35
  policy_.retry_until_deadline = true;
  RetryDecision d = Start(true, &deadline)->OnAttemptFailed(Response(503));
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, milliseconds(25));
  clock_.Advance(milliseconds(40));  // past the deadline: still the deadline's to end
  EXPECT_TRUE(Start(true, &deadline)->OnAttemptFailed(Response(503)).retry);
  // The attempts are still bounded.
  policy_.num_retries = 0;
  EXPECT_EQ(Start(true, &deadline)->OnAttemptFailed(Response(503)).reason,
            NoRetryReason::kAttemptsExhausted);
}

TEST_F(RetryStateTest, RetryAfterIsHonouredAndCappedAndCheckedAgainstTheDeadline) {
  AttemptResult throttled = Response(503);
  throttled.retry_after = milliseconds(100);
  EXPECT_EQ(Start()->OnAttemptFailed(throttled).delay, milliseconds(100));
  throttled.retry_after = seconds(30);
  EXPECT_EQ(Start()->OnAttemptFailed(throttled).delay, milliseconds(250));
  Deadline deadline(clock_, milliseconds(200), std::nullopt);
  EXPECT_EQ(Start(true, &deadline)->OnAttemptFailed(throttled).reason,
            NoRetryReason::kDeadlineTooClose);
}

TEST_F(RetryStateTest, BudgetIsSpentOnlyByAdmittedRetries) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.min_retries_per_second = 0}, clock);
  for (int i = 0; i < 10; ++i) budget.RecordRequest();  // allowance 2
  EXPECT_EQ(Start(true, nullptr, &budget)->OnAttemptFailed(Response(500)).reason,
            NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(Start(false, nullptr, &budget)->OnAttemptFailed(Response(503)).reason,
            NoRetryReason::kNonIdempotent);
  EXPECT_EQ(budget.retries_in_window(), 0u);
  EXPECT_TRUE(Start(true, nullptr, &budget)->OnAttemptFailed(Response(503)).retry);
  EXPECT_TRUE(Start(true, nullptr, &budget)->OnAttemptFailed(Response(503)).retry);
  RetryDecision d = Start(true, nullptr, &budget)->OnAttemptFailed(Response(503));
  EXPECT_EQ(d.reason, NoRetryReason::kBudgetExhausted);
  EXPECT_EQ(NoRetryReasonName(d.reason), "retry_overflow");
}

TEST_F(RetryStateTest, BudgetConcurrencyCapHoldsTheSlotUntilTheRetryFinishes) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.max_concurrent_retries = 1}, clock);
  std::unique_ptr<RetryState> a = Start(true, nullptr, &budget);
  ASSERT_TRUE(a->OnAttemptFailed(Response(503)).retry);
  a->OnAttemptStarted(2);
  EXPECT_EQ(budget.active_retries(), 1u);
  std::unique_ptr<RetryState> b = Start(true, nullptr, &budget);
  EXPECT_EQ(b->OnAttemptFailed(Response(503)).reason, NoRetryReason::kConcurrentRetriesExceeded);
  a->OnSucceeded();
  EXPECT_EQ(budget.active_retries(), 0u);
  std::unique_ptr<RetryState> c = Start(true, nullptr, &budget);
  EXPECT_TRUE(c->OnAttemptFailed(Response(503)).retry);
  c.reset();  // destroying the state releases its slot too
  EXPECT_EQ(budget.active_retries(), 0u);
}

TEST_F(RetryStateTest, WithoutABudgetTheBreakerRetryLimitApplies) {
  FakeClock clock;
  RetryBudget disabled(RetryBudgetConfig{.enabled = false}, clock);
  CircuitBreakerThresholds thresholds(CircuitBreakerConfig{.max_retries = 1});
  std::unique_ptr<RetryState> a = Start(true, nullptr, &disabled, &thresholds);
  ASSERT_TRUE(a->OnAttemptFailed(Failure(Kind::kConnectFailure)).retry);
  EXPECT_EQ(thresholds.Active(ResourceKind::kRetry), 1u);
  std::unique_ptr<RetryState> b = Start(true, nullptr, nullptr, &thresholds);
  EXPECT_EQ(b->OnAttemptFailed(Failure(Kind::kConnectFailure)).reason,
            NoRetryReason::kConcurrentRetriesExceeded);
  // The retried attempt fails again: its slot is released before the next decision.
  a->OnAttemptStarted(2);
  EXPECT_TRUE(a->OnAttemptFailed(Failure(Kind::kConnectFailure)).retry);
  EXPECT_EQ(thresholds.Active(ResourceKind::kRetry), 1u);
  a->OnAttemptStarted(3);
  EXPECT_EQ(a->OnAttemptFailed(Failure(Kind::kConnectFailure)).reason,
            NoRetryReason::kAttemptsExhausted);
  EXPECT_EQ(thresholds.Active(ResourceKind::kRetry), 0u);
}

TEST_F(RetryStateTest, BreakerRetryLimitAppliesAlongsideAnEnabledBudget) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);  // plenty of rate: the floor is 100 retries
  CircuitBreakerThresholds thresholds(CircuitBreakerConfig{.max_retries = 1});
  std::unique_ptr<RetryState> a = Start(true, nullptr, &budget, &thresholds);
  ASSERT_TRUE(a->OnAttemptFailed(Response(503)).retry);
  EXPECT_EQ(thresholds.Active(ResourceKind::kRetry), 1u);
  EXPECT_EQ(budget.active_retries(), 1u);
  std::unique_ptr<RetryState> b = Start(true, nullptr, &budget, &thresholds);
  EXPECT_EQ(b->OnAttemptFailed(Response(503)).reason, NoRetryReason::kConcurrentRetriesExceeded);
  // The refusal spent no budget.
  EXPECT_EQ(budget.retries_in_window(), 1u);
  a->OnSucceeded();
  EXPECT_EQ(thresholds.Active(ResourceKind::kRetry), 0u);
  EXPECT_EQ(budget.active_retries(), 0u);
}

TEST_F(RetryStateTest, BudgetRefusalGivesTheBreakerSlotBack) {
  FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{.budget_percent = 0, .min_retries_per_second = 0}, clock);
  CircuitBreakerThresholds thresholds(CircuitBreakerConfig{.max_retries = 5});
  std::unique_ptr<RetryState> a = Start(true, nullptr, &budget, &thresholds);
  EXPECT_EQ(a->OnAttemptFailed(Response(503)).reason, NoRetryReason::kBudgetExhausted);
  EXPECT_EQ(thresholds.Active(ResourceKind::kRetry), 0u);
}

TEST_F(RetryStateTest, GrpcStatusInRetryOnRetriesANonIdempotentCall) {
  // gRPC calls are POSTs; the unavailable class (on by default) says the call may be retried.
  EXPECT_EQ(ReasonFor(Response(200, 14), /*idempotent=*/false), NoRetryReason::kNone);
  // A status retry_on does not name stays final, and plain HTTP statuses keep the method rule.
  EXPECT_EQ(ReasonFor(Response(200, 13), false), NoRetryReason::kPolicyNoMatch);
  EXPECT_EQ(ReasonFor(Response(503), false), NoRetryReason::kNonIdempotent);
  EXPECT_EQ(ReasonFor(Failure(Kind::kResetBeforeHeaders), false), NoRetryReason::kNonIdempotent);
}

TEST_F(RetryStateTest, ReplayLimitCanBeLoweredPerRequest) {
  std::unique_ptr<RetryState> state = Start();
  state->SetMaxBufferedBodyBytes(1000);
  EXPECT_TRUE(state->OnRequestBodyBytes(1000));
  EXPECT_FALSE(state->OnRequestBodyBytes(1));
  EXPECT_FALSE(state->body_replayable());
  EXPECT_EQ(state->OnAttemptFailed(Response(503)).reason, NoRetryReason::kBodyTooLarge);
}

TEST_F(RetryStateTest, TriedEndpointsForTheLoadBalancer) {
  std::unique_ptr<RetryState> state = Start();  // endpoint 1
  policy_.num_retries = 5;
  state->OnAttemptStarted(9);
  state->OnAttemptStarted(1);  // the LB had no alternative
  EXPECT_EQ(state->attempts(), 3u);
  ASSERT_EQ(state->tried_endpoints().size(), 2u);
  EXPECT_EQ(state->tried_endpoints()[0], 1u);
  EXPECT_EQ(state->tried_endpoints()[1], 9u);
  EXPECT_TRUE(state->WasTried(9));
  EXPECT_FALSE(state->WasTried(2));
}

TEST_F(RetryStateTest, NextAttemptTimeoutIsPerTryBoundedByTheDeadline) {
  policy_.per_try_timeout = seconds(1);
  Deadline deadline(clock_, seconds(15), std::nullopt);
  std::unique_ptr<RetryState> state = Start(true, &deadline);
  EXPECT_EQ(state->NextAttemptTimeout(), seconds(1));
  clock_.Advance(milliseconds(14600));
  EXPECT_EQ(state->NextAttemptTimeout(), milliseconds(400));
  EXPECT_EQ(Start()->NextAttemptTimeout(), seconds(1));
  policy_.per_try_timeout = Duration::zero();
  EXPECT_FALSE(Start()->NextAttemptTimeout().has_value());
}

TEST(RetryPolicyTest, ParseRetryOnNames) {
  EXPECT_EQ(*ParseRetryOn("connect-failure"), RetryOn::kConnectFailure);
  EXPECT_EQ(*ParseRetryOn("gateway-error"), RetryOn::kGatewayError);
  EXPECT_EQ(*ParseRetryOn("unavailable"), RetryOn::kGrpcUnavailable);
  EXPECT_EQ(*ParseRetryOn("resource-exhausted"), RetryOn::kGrpcResourceExhausted);
  absl::StatusOr<uint32_t> bad = ParseRetryOn("5XX");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "unknown retry_on value \"5XX\"");
}

TEST(RetryPolicyTest, IdempotentMethods) {
  for (absl::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(IsIdempotentMethod(m)) << m;
  }
  for (absl::string_view m : {"POST", "PATCH", "CONNECT", "get", ""}) {
    EXPECT_FALSE(IsIdempotentMethod(m)) << m;
  }
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
