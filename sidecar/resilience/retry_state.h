#pragma once

// The retry decision for one downstream request.
//
// The router creates a RetryState per request, calls OnAttemptStarted() for each attempt (with the
// endpoint the load balancer chose), feeds request body sizes through OnRequestBodyBytes(), and
// after a failed attempt asks OnAttemptFailed(), which answers Retry(after delay) or NoRetry with
// a reason that the router turns into a counter. Checks, in order (the first that fails decides):
//
//   1. the failure is one the policy retries on             else kPolicyNoMatch / kResponseStarted
//   2. attempts so far < 1 + num_retries                    else kAttemptsExhausted
//   3. not a connect refused by the cluster's only host, on
//      loopback (AttemptResult::refused_by_only_local_host) else kLocalConnectRefused
//   4. the request is idempotent, or provably never reached
//      the upstream (connect failure, refused stream), or
//      the response is a gRPC status retry_on names, or
//      the policy allows non-idempotent retries             else kNonIdempotent
//   5. the whole body is still buffered for replay          else kBodyTooLarge
//   6. the deadline leaves room for backoff + min_attempt_time  else kDeadlineTooClose
//      (not checked with retry_until_deadline)
//   7. concurrent retries below the limit                   else kConcurrentRetriesExceeded
//   8. the cluster's retry budget has room                  else kBudgetExhausted
//
// The budget is consulted last so that a retry refused for another reason does not spend it.
// Concurrency (7) is the cluster's CircuitBreakerThresholds kRetry slot (circuit_breakers.
// max_retries, shared by all workers; no limit by default while the budget is enabled) and,
// when an enabled budget sets max_concurrent_retries, that per-worker cap too: the budget bounds
// the retry rate, max_retries (when set) the retries in flight.
// The concurrency slot is held by this object from the Retry decision until the retried attempt
// finishes (the next OnAttemptFailed()/OnSucceeded()) or the RetryState is destroyed.
//
// Retries should go to a different endpoint: tried_endpoints() lists the endpoint ids already
// used so the load balancer can skip them when it has alternatives.
//
// Ownership: the policy, Random, Deadline, RetryBudget and CircuitBreakerThresholds are borrowed
// and must outlive the RetryState (the policy lives in the immutable config snapshot the request
// holds). Threading: one request, one worker thread. The hot path allocates nothing as long as
// attempts stay within the inline capacity of the tried-endpoint list (4).

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "sidecar/resilience/backoff.h"
#include "sidecar/resilience/circuit_breaker.h"
#include "sidecar/resilience/deadline.h"
#include "sidecar/resilience/retry_budget.h"

namespace meshlet::sidecar::resilience {

// Retry-on classes (RetryPolicy.retry_on), as bits.
struct RetryOn {
  static constexpr uint32_t kConnectFailure = 1u << 0;         // "connect-failure"
  static constexpr uint32_t kRefusedStream = 1u << 1;          // "refused-stream"
  static constexpr uint32_t kReset = 1u << 2;                  // "reset": before response headers
  static constexpr uint32_t k5xx = 1u << 3;                    // "5xx"
  static constexpr uint32_t kGatewayError = 1u << 4;           // "gateway-error": 502/503/504
  static constexpr uint32_t kRetriableStatusCodes = 1u << 5;   // "retriable-status-codes"
  static constexpr uint32_t kGrpcCancelled = 1u << 6;          // "cancelled"
  static constexpr uint32_t kGrpcDeadlineExceeded = 1u << 7;   // "deadline-exceeded"
  static constexpr uint32_t kGrpcInternal = 1u << 8;           // "internal"
  static constexpr uint32_t kGrpcResourceExhausted = 1u << 9;  // "resource-exhausted"
  static constexpr uint32_t kGrpcUnavailable = 1u << 10;       // "unavailable"

  // meshlet's default: connect failure, refused stream, reset before response, 503 (through
  // retriable_status_codes = {503}) and gRPC UNAVAILABLE.
  static constexpr uint32_t kDefault =
      kConnectFailure | kRefusedStream | kReset | kRetriableStatusCodes | kGrpcUnavailable;
};

// One RetryPolicy.retry_on name to its bit; InvalidArgument names the unknown value.
absl::StatusOr<uint32_t> ParseRetryOn(absl::string_view name);

// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2). Case-sensitive, as methods are.
bool IsIdempotentMethod(absl::string_view method);

struct RetryPolicyConfig {
  uint32_t num_retries = 2;  // RetryPolicy.num_retries: retries after the first attempt
  uint32_t retry_on = RetryOn::kDefault;
  std::vector<uint32_t> retriable_status_codes = {503};  // RetryPolicy.retriable_status_codes
  // RetryPolicy.per_try_timeout; zero = off (each attempt may use the whole remaining deadline).
  Duration per_try_timeout = Duration::zero();
  BackoffConfig backoff;              // base_interval 25 ms, max_interval 250 ms
  bool retry_non_idempotent = false;  // RetryPolicy.retry_non_idempotent
  // HttpOptions.max_request_body_buffer_kb (64): a body longer than this cannot be replayed.
  uint64_t max_buffered_body_bytes = 64 * 1024;
  // A retry needs at least backoff + this much deadline left to be worth sending.
  Duration min_attempt_time = std::chrono::milliseconds(10);
  // RetryPolicy.retry_until_deadline: skip check 6 below; the deadline ends the request instead.
  bool retry_until_deadline = false;
};

// What happened to one attempt.
struct AttemptResult {
  enum class Kind {
    kConnectFailure,      // the connection could not be established: never reached upstream
    kRefusedStream,       // HTTP/2 REFUSED_STREAM or GOAWAY above last-stream-id: not processed
    kResetBeforeHeaders,  // reset or disconnect before response headers
    kPerTryTimeout,       // the per-try timeout fired before response headers
    kResetAfterHeaders,   // the response had started: never retried
    kResponse,            // response headers arrived
  };
  Kind kind = Kind::kResponse;
  uint32_t http_status = 0;             // kResponse
  std::optional<uint32_t> grpc_status;  // kResponse, when known (trailers-only response)
  std::optional<Duration> retry_after;  // kResponse, parsed Retry-After
  // kConnectFailure: a loopback address refused the connection (nothing listens on the port) and
  // the cluster has no other host. A retry would ask the same port of this machine again, after
  // a backoff; the caller's own retry can pick another endpoint at once.
  bool refused_by_only_local_host = false;
};

enum class NoRetryReason {
  kNone,
  kPolicyNoMatch,
  kResponseStarted,
  kAttemptsExhausted,
  kNonIdempotent,
  kBodyTooLarge,
  kDeadlineTooClose,
  kConcurrentRetriesExceeded,
  kBudgetExhausted,      // counter: retry_overflow
  kLocalConnectRefused,  // AttemptResult::refused_by_only_local_host
};

// Stable counter-name fragment: "policy_no_match", "retry_overflow", ...
absl::string_view NoRetryReasonName(NoRetryReason reason);

struct RetryDecision {
  bool retry = false;
  Duration delay = Duration::zero();            // when retry
  NoRetryReason reason = NoRetryReason::kNone;  // when !retry

  static RetryDecision Retry(Duration delay) { return {true, delay, NoRetryReason::kNone}; }
  static RetryDecision NoRetry(NoRetryReason reason) { return {false, Duration::zero(), reason}; }
};

class RetryState {
 public:
  // deadline, budget and thresholds may be null (no deadline / no budget / no concurrency cap).
  RetryState(const RetryPolicyConfig& policy, bool idempotent, Random& random,
             const Deadline* deadline, RetryBudget* budget, CircuitBreakerThresholds* thresholds);
  RetryState(const RetryState&) = delete;
  RetryState& operator=(const RetryState&) = delete;

  // An attempt (the first or a retry) is being sent to `endpoint_id`.
  void OnAttemptStarted(uint64_t endpoint_id);
  // The replay limit for this request when it differs from the policy's (it comes from the
  // listener's HttpOptions.max_request_body_buffer_kb). Call before any OnRequestBodyBytes().
  void SetMaxBufferedBodyBytes(uint64_t bytes) { max_buffered_body_bytes_ = bytes; }
  // `bytes` more request body bytes were read. Returns whether the caller should keep buffering
  // them for replay; after the first false, retries are refused with kBodyTooLarge.
  bool OnRequestBodyBytes(uint64_t bytes);
  // The current attempt failed (or returned a response the policy might retry).
  RetryDecision OnAttemptFailed(const AttemptResult& result);
  // The current attempt produced the final response: releases the concurrency slot, if held.
  void OnSucceeded();

  // Timeout for the next attempt: min(per_try_timeout, remaining deadline); nullopt: none.
  std::optional<Duration> NextAttemptTimeout() const;

  uint32_t attempts() const { return attempts_; }
  absl::Span<const uint64_t> tried_endpoints() const { return tried_; }
  bool WasTried(uint64_t endpoint_id) const;
  bool body_replayable() const { return !body_overflowed_; }

 private:
  bool PolicyMatches(const AttemptResult& result) const;
  void ReleaseSlot();

  const RetryPolicyConfig& policy_;
  const bool idempotent_;
  Backoff backoff_;
  const Deadline* deadline_;
  RetryBudget* budget_;
  CircuitBreakerThresholds* thresholds_;

  uint32_t attempts_ = 0;
  uint64_t max_buffered_body_bytes_;
  uint64_t body_bytes_ = 0;
  bool body_overflowed_ = false;
  absl::InlinedVector<uint64_t, 4> tried_;
  RetryBudget::ActiveRetry budget_slot_;
  std::optional<ResourceGuard> breaker_slot_;
};

}  // namespace meshlet::sidecar::resilience
