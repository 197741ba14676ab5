#include "sidecar/resilience/retry_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::resilience {
namespace {

// gRPC status codes the retry_on names refer to.
constexpr uint32_t kGrpcCancelled = 1;
constexpr uint32_t kGrpcDeadlineExceeded = 4;
constexpr uint32_t kGrpcResourceExhausted = 8;
constexpr uint32_t kGrpcInternal = 13;
constexpr uint32_t kGrpcUnavailable = 14;

bool Has(uint32_t mask, uint32_t bits) { return (mask & bits) != 0; }

bool GrpcStatusRetriable(uint32_t on, uint32_t grpc_status) {
  switch (grpc_status) {
    case kGrpcCancelled:
      return Has(on, RetryOn::kGrpcCancelled);
    case kGrpcDeadlineExceeded:
      return Has(on, RetryOn::kGrpcDeadlineExceeded);
    case kGrpcResourceExhausted:
      return Has(on, RetryOn::kGrpcResourceExhausted);
    case kGrpcInternal:
      return Has(on, RetryOn::kGrpcInternal);
    case kGrpcUnavailable:
      return Has(on, RetryOn::kGrpcUnavailable);
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<uint32_t> ParseRetryOn(absl::string_view name) {
  static constexpr struct {
    absl::string_view name;
    uint32_t bit;
  } kNames[] = {
      {"connect-failure", RetryOn::kConnectFailure},
      {"refused-stream", RetryOn::kRefusedStream},
      {"reset", RetryOn::kReset},
      {"5xx", RetryOn::k5xx},
      {"gateway-error", RetryOn::kGatewayError},
      {"retriable-status-codes", RetryOn::kRetriableStatusCodes},
      {"cancelled", RetryOn::kGrpcCancelled},
      {"deadline-exceeded", RetryOn::kGrpcDeadlineExceeded},
      {"internal", RetryOn::kGrpcInternal},
      {"resource-exhausted", RetryOn::kGrpcResourceExhausted},
      {"unavailable", RetryOn::kGrpcUnavailable},
  };
  for (const auto& n : kNames) {
    if (n.name == name) return n.bit;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown retry_on value \"", name, "\""));
}

bool IsIdempotentMethod(absl::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

absl::string_view NoRetryReasonName(NoRetryReason reason) {
  switch (reason) {
    case NoRetryReason::kNone:
      return "none";
    case NoRetryReason::kPolicyNoMatch:
      return "policy_no_match";
    case NoRetryReason::kResponseStarted:
      return "response_started";
    case NoRetryReason::kAttemptsExhausted:
      return "attempts_exhausted";
    case NoRetryReason::kNonIdempotent:
      return "non_idempotent";
    case NoRetryReason::kBodyTooLarge:
      return "body_too_large";
    case NoRetryReason::kLocalConnectRefused:
      return "local_connect_refused";
    case NoRetryReason::kDeadlineTooClose:
      return "deadline_too_close";
    case NoRetryReason::kConcurrentRetriesExceeded:
      return "retry_overflow_concurrent";
    case NoRetryReason::kBudgetExhausted:
      return "retry_overflow";
  }
  return "unknown";
}

RetryState::RetryState(const RetryPolicyConfig& policy, bool idempotent, Random& random,
                       const Deadline* deadline, RetryBudget* budget,
                       CircuitBreakerThresholds* thresholds)
    : policy_(policy),
      idempotent_(idempotent),
      backoff_(policy.backoff, random),
      deadline_(deadline),
      budget_(budget),
      thresholds_(thresholds),
      max_buffered_body_bytes_(policy.max_buffered_body_bytes) {}

void RetryState::OnAttemptStarted(uint64_t endpoint_id) {
  ++attempts_;
  if (!WasTried(endpoint_id)) tried_.push_back(endpoint_id);
}

bool RetryState::WasTried(uint64_t endpoint_id) const {
  return std::find(tried_.begin(), tried_.end(), endpoint_id) != tried_.end();
}

bool RetryState::OnRequestBodyBytes(uint64_t bytes) {
  if (body_overflowed_) return false;
  body_bytes_ += bytes;
  if (body_bytes_ > max_buffered_body_bytes_) body_overflowed_ = true;
  return !body_overflowed_;
}

void RetryState::ReleaseSlot() {
  budget_slot_.Release();
  breaker_slot_.reset();
}

void RetryState::OnSucceeded() { ReleaseSlot(); }

std::optional<Duration> RetryState::NextAttemptTimeout() const {
  const std::optional<Duration> per_try = policy_.per_try_timeout > Duration::zero()
                                              ? std::optional<Duration>(policy_.per_try_timeout)
                                              : std::nullopt;
  if (deadline_ == nullptr) return per_try;
  return deadline_->PerTryTimeout(per_try);
}

bool RetryState::PolicyMatches(const AttemptResult& result) const {
  const uint32_t on = policy_.retry_on;
  using Kind = AttemptResult::Kind;
  switch (result.kind) {
    // No response at all counts as a server error for 5xx; the router would answer 503/504.
    case Kind::kConnectFailure:
      return Has(on, RetryOn::kConnectFailure | RetryOn::k5xx | RetryOn::kGatewayError);
    case Kind::kRefusedStream:
      return Has(on, RetryOn::kRefusedStream | RetryOn::k5xx);
    case Kind::kResetBeforeHeaders:
      return Has(on, RetryOn::kReset | RetryOn::k5xx);
    case Kind::kPerTryTimeout:
      return Has(on, RetryOn::kReset | RetryOn::k5xx | RetryOn::kGatewayError);
    case Kind::kResetAfterHeaders:
      return false;
    case Kind::kResponse:
      break;
  }
  const uint32_t status = result.http_status;
  if (Has(on, RetryOn::k5xx) && status >= 500 && status <= 599) return true;
  if (Has(on, RetryOn::kGatewayError) && status >= 502 && status <= 504) return true;
  if (Has(on, RetryOn::kRetriableStatusCodes) &&
      std::find(policy_.retriable_status_codes.begin(), policy_.retriable_status_codes.end(),
                status) != policy_.retriable_status_codes.end()) {
    return true;
  }
  return result.grpc_status.has_value() && GrpcStatusRetriable(on, *result.grpc_status);
}

RetryDecision RetryState::OnAttemptFailed(const AttemptResult& result) {
  // The attempt that held a concurrency slot (if it was a retry) is over.
  ReleaseSlot();

  if (result.kind == AttemptResult::Kind::kResetAfterHeaders) {
    return RetryDecision::NoRetry(NoRetryReason::kResponseStarted);
  }
  if (!PolicyMatches(result)) return RetryDecision::NoRetry(NoRetryReason::kPolicyNoMatch);
  if (attempts_ >= 1 + policy_.num_retries) {
    return RetryDecision::NoRetry(NoRetryReason::kAttemptsExhausted);
  }
  if (result.kind == AttemptResult::Kind::kConnectFailure && result.refused_by_only_local_host) {
    return RetryDecision::NoRetry(NoRetryReason::kLocalConnectRefused);
  }
  const bool never_reached_upstream = result.kind == AttemptResult::Kind::kConnectFailure ||
                                      result.kind == AttemptResult::Kind::kRefusedStream;
  // A gRPC status named in retry_on is the service's own statement that the call may be retried
  // (as in gRPC's retry policy), although every gRPC call is a POST.
  const bool grpc_status_retry = result.kind == AttemptResult::Kind::kResponse &&
                                 result.grpc_status.has_value() &&
                                 GrpcStatusRetriable(policy_.retry_on, *result.grpc_status);
  if (!idempotent_ && !never_reached_upstream && !grpc_status_retry &&
      !policy_.retry_non_idempotent) {
    return RetryDecision::NoRetry(NoRetryReason::kNonIdempotent);
  }
  if (body_overflowed_) return RetryDecision::NoRetry(NoRetryReason::kBodyTooLarge);

  CHECK(attempts_ > 0) << "OnAttemptFailed before OnAttemptStarted";
  // The first retry uses backoff attempt 0.
  const Duration delay = backoff_.DelayWithRetryAfter(attempts_ - 1, result.retry_after);
  if (deadline_ != nullptr && !deadline_->infinite() && !policy_.retry_until_deadline) {
    const Duration remaining = deadline_->Remaining();
    // remaining < delay + min_attempt_time, written so it cannot overflow.
    if (remaining < delay || remaining - delay < policy_.min_attempt_time) {
      return RetryDecision::NoRetry(NoRetryReason::kDeadlineTooClose);
    }
  }

  // Concurrency: the cluster-wide circuit_breakers.max_retries first, then the budget (its own
  // per-worker cap, if any, and the rate). A refusal gives back what was taken.
  if (thresholds_ != nullptr) {
    breaker_slot_ = thresholds_->TryAcquire(ResourceKind::kRetry);
    if (!breaker_slot_.has_value()) {
      return RetryDecision::NoRetry(NoRetryReason::kConcurrentRetriesExceeded);
    }
  }
  if (budget_ != nullptr && budget_->config().enabled) {
    RetryBudget::Admission admission = budget_->Admit();
    if (!admission.admitted()) {
      breaker_slot_.reset();
      return RetryDecision::NoRetry(admission.verdict == RetryBudget::Verdict::kConcurrencyExceeded
                                        ? NoRetryReason::kConcurrentRetriesExceeded
                                        : NoRetryReason::kBudgetExhausted);
    }
    budget_slot_ = std::move(admission.guard);
  }
  return RetryDecision::Retry(delay);
}

}  // namespace meshlet::sidecar::resilience
