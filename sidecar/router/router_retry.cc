// The router's retry decisions (router.h): whether a failed attempt or a response is retried,
// the failed attempt let go and the next one scheduled after its backoff with the kept body, and
// why a retry did not happen counted. Router's other members are in router.cc.

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "sidecar/router/router.h"
#include "sidecar/router/upstream_request.h"

namespace meshlet::sidecar::router {
namespace {

using resilience::AttemptResult;
using resilience::NoRetryReason;

std::optional<uint32_t> GrpcStatusOf(const http::HeaderMap& headers) {
  uint32_t status = 0;
  std::optional<absl::string_view> value = headers.Get("grpc-status");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &status)) return std::nullopt;
  return status;
}

// Retry-After in delay-seconds (RFC 9110 §10.2.3); an HTTP-date is ignored.
std::optional<Duration> RetryAfterOf(const http::HeaderMap& headers) {
  uint32_t seconds = 0;
  std::optional<absl::string_view> value = headers.Get("retry-after");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &seconds)) return std::nullopt;
  return std::chrono::seconds(seconds);
}

size_t RetryReasonIndex(AttemptResult::Kind kind) {
  switch (kind) {
    case AttemptResult::Kind::kConnectFailure:
      return 0;
    case AttemptResult::Kind::kRefusedStream:
      return 1;
    case AttemptResult::Kind::kResetBeforeHeaders:
    case AttemptResult::Kind::kResetAfterHeaders:
      return 2;
    case AttemptResult::Kind::kPerTryTimeout:
      return 3;
    case AttemptResult::Kind::kResponse:
      return 4;
  }
  return 4;
}

stream::AttemptOutcome OutcomeOf(AttemptResult::Kind kind) {
  switch (kind) {
    case AttemptResult::Kind::kConnectFailure:
      return stream::AttemptOutcome::kConnectFailure;
    case AttemptResult::Kind::kRefusedStream:
      return stream::AttemptOutcome::kRefusedStream;
    case AttemptResult::Kind::kResetBeforeHeaders:
    case AttemptResult::Kind::kResetAfterHeaders:
      return stream::AttemptOutcome::kReset;
    case AttemptResult::Kind::kPerTryTimeout:
      return stream::AttemptOutcome::kTimeout;
    case AttemptResult::Kind::kResponse:
      return stream::AttemptOutcome::kResponse;
  }
  return stream::AttemptOutcome::kResponse;
}

// A response's cause is the retry_on condition that admitted it: `5xx`, else `gateway-error`
// (502, 503, 504), else the status retriable_status_codes lists (`status`, the default policy's
// 503 among them).
stream::RetryCause RetryCauseOf(const AttemptResult& result, uint32_t retry_on) {
  switch (result.kind) {
    case AttemptResult::Kind::kConnectFailure:
      return stream::RetryCause::kConnectFailure;
    case AttemptResult::Kind::kRefusedStream:
      return stream::RetryCause::kRefusedStream;
    case AttemptResult::Kind::kResetBeforeHeaders:
    case AttemptResult::Kind::kResetAfterHeaders:
      return stream::RetryCause::kReset;
    case AttemptResult::Kind::kPerTryTimeout:
      return stream::RetryCause::kTimeout;
    case AttemptResult::Kind::kResponse:
      break;
  }
  if (result.grpc_status.value_or(0) != 0) return stream::RetryCause::kGrpc;
  const uint32_t status = result.http_status;
  if ((retry_on & resilience::RetryOn::k5xx) != 0 && status >= 500) return stream::RetryCause::k5xx;
  if ((retry_on & resilience::RetryOn::kGatewayError) != 0 &&
      (status == 502 || status == 503 || status == 504)) {
    return stream::RetryCause::kGatewayError;
  }
  return stream::RetryCause::kStatus;
}

stream::NoRetryCause NoRetryCauseOf(NoRetryReason reason) {
  switch (reason) {
    case NoRetryReason::kNone:
    case NoRetryReason::kPolicyNoMatch:
      return stream::NoRetryCause::kNotRetriable;
    case NoRetryReason::kResponseStarted:
      return stream::NoRetryCause::kResponseStarted;
    case NoRetryReason::kAttemptsExhausted:
      return stream::NoRetryCause::kAttemptsExhausted;
    case NoRetryReason::kNonIdempotent:
      return stream::NoRetryCause::kNonIdempotent;
    case NoRetryReason::kBodyTooLarge:
      return stream::NoRetryCause::kBodyTooLarge;
    case NoRetryReason::kDeadlineTooClose:
      return stream::NoRetryCause::kDeadline;
    case NoRetryReason::kLocalConnectRefused:
      return stream::NoRetryCause::kLocalAppRefused;
    case NoRetryReason::kBudgetExhausted:
      return stream::NoRetryCause::kBudget;
    case NoRetryReason::kConcurrentRetriesExceeded:
      return stream::NoRetryCause::kBreaker;
  }
  return stream::NoRetryCause::kNotRetriable;
}

}  // namespace

bool Router::MaybeRetryResponse(const http::HeaderMap& headers, bool end_stream, int status) {
  const resilience::RetryPolicyConfig& policy = route_->route_action()->retry_policy;
  // Only a trailers-only gRPC response carries its status in the headers.
  const std::optional<uint32_t> grpc_status =
      grpc_ && end_stream ? GrpcStatusOf(headers) : std::nullopt;
  const bool listed =
      std::find(policy.retriable_status_codes.begin(), policy.retriable_status_codes.end(),
                static_cast<uint32_t>(status)) != policy.retriable_status_codes.end();
  if (status < 500 && !listed && grpc_status.value_or(0) == 0) {
    // Final: the request succeeded as far as retries go.
    if (retry_state_->attempts() > 1) stats_->rq_retry_success.Inc();
    retry_state_->OnSucceeded();
    return false;
  }
  AttemptResult result;
  result.kind = AttemptResult::Kind::kResponse;
  result.http_status = static_cast<uint32_t>(status);
  result.grpc_status = grpc_status;
  result.retry_after = RetryAfterOf(headers);
  return MaybeRetry(result);
}

bool Router::MaybeRetry(const AttemptResult& result) {
  if (response_started_ || done_) return false;
  EndAttempt(OutcomeOf(result.kind), static_cast<int>(result.http_status));
  if (!retry_state_.has_value()) {
    info_.decision.SetNext(stream::AttemptNext::kNoRetry,
                           static_cast<uint8_t>(stream::NoRetryCause::kAttemptsExhausted));
    return false;
  }
  resilience::RetryDecision decision = retry_state_->OnAttemptFailed(result);
  if (decision.retry && body_sent_ && !replay_buffering_) {
    // The body that reached this attempt was not kept (a non-idempotent request, or one too long
    // to replay): it cannot be sent again.
    retry_state_->OnSucceeded();  // gives back the slot the decision took
    decision = resilience::RetryDecision::NoRetry(retry_state_->body_replayable()
                                                      ? NoRetryReason::kNonIdempotent
                                                      : NoRetryReason::kBodyTooLarge);
  }
  if (!decision.retry) {
    info_.decision.SetNext(stream::AttemptNext::kNoRetry,
                           static_cast<uint8_t>(NoRetryCauseOf(decision.reason)));
    CountNoRetry(decision.reason);
    return false;
  }
  info_.decision.SetNext(
      stream::AttemptNext::kRetry,
      static_cast<uint8_t>(RetryCauseOf(result, route_->route_action()->retry_policy.retry_on)));
  stats_->rq_retry[RetryReasonIndex(result.kind)].Inc();
  LOG(DEBUG) << "retrying after " << absl::FormatDuration(absl::FromChrono(decision.delay))
             << " (attempt " << retry_state_->attempts() << " failed)";
  // The failed attempt goes (its callbacks may be on the stack: destroyed after this turn).
  if (upstream_ != nullptr) {
    upstream_->Reset();
    context_.loop.DeferDelete(std::move(upstream_));
  }
  if (upstream_above_high_watermark_) {
    upstream_above_high_watermark_ = false;
    DisableDownstreamReads(false);
  }
  // The next attempt resends the kept body, then what arrived since.
  if (!replay_body_.empty()) {
    net::Buffer body;
    body.Move(replay_body_);
    body.Move(pending_body_);
    pending_body_ = std::move(body);
  }
  body_sent_ = false;
  if (!backoff_timer_.has_value()) {
    backoff_timer_.emplace(context_.loop, [this] {
      if (!done_) StartAttempt();
    });
  }
  backoff_timer_->Enable(decision.delay);
  return true;
}

void Router::CountNoRetry(NoRetryReason reason) {
  switch (reason) {
    case NoRetryReason::kNone:
    case NoRetryReason::kPolicyNoMatch:
    case NoRetryReason::kResponseStarted:
      return;
    case NoRetryReason::kAttemptsExhausted:
      stats_->rq_retry_skipped[0].Inc();
      break;
    case NoRetryReason::kNonIdempotent:
      stats_->rq_retry_skipped[1].Inc();
      break;
    case NoRetryReason::kBodyTooLarge:
      stats_->rq_retry_skipped[2].Inc();
      break;
    case NoRetryReason::kDeadlineTooClose:
      stats_->rq_retry_skipped[3].Inc();
      break;
    case NoRetryReason::kLocalConnectRefused:
      stats_->rq_retry_skipped[4].Inc();
      break;
    case NoRetryReason::kBudgetExhausted:
      stats_->rq_retry_overflow[0].Inc();
      break;
    case NoRetryReason::kConcurrentRetriesExceeded:
      stats_->rq_retry_overflow[1].Inc();
      break;
  }
  info_.SetFlag(stream::ResponseFlag::kRetryLimitExceeded);
}

}  // namespace meshlet::sidecar::router
