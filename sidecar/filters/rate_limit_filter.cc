#include "sidecar/filters/rate_limit_filter.h"

namespace meshlet::sidecar::filters {

stream::FilterStatus RateLimitFilter::Take(resilience::LocalRateLimiter& limiter,
                                           const http::HeaderMap& headers) {
  const absl::string_view principal = scope_ == Scope::kListener
                                          ? policy_.peer_identity
                                          : headers.Get("x-meshlet-peer-identity").value_or("");
  const resilience::SharedTokenBucket::Result result = limiter.TryTake(principal, clock_.Now());
  if (result.admitted) return stream::FilterStatus::kContinue;
  callbacks_.stream_info().SetFlag(stream::ResponseFlag::kRateLimited);
  // The limiter outlives the request's end: the listener's policy or the stream's route holds it.
  callbacks_.stream_info().decision.policy_rate_limit = limiter.source();
  callbacks_.SendLocalReply({.http_status = 429,
                             .grpc_status = http::grpc::StatusCode::kResourceExhausted,
                             .message = "local rate limit exceeded",
                             .retry_after = result.retry_after});
  return stream::FilterStatus::kStopIteration;
}

}  // namespace meshlet::sidecar::filters
