#pragma once

// RateLimitFilter: a local rate limit (resilience/principal_rate_limiter.h), at one of two places
// in the chain (stream/filter.h): the listener's limit right after authorization, keyed by the
// connection's peer identity; and the route's limit after fault injection, keyed by the
// x-meshlet-peer-identity request header (which the connection manager sets from the mTLS peer
// alone, after removing any copy the client sent). A refused request gets 429 with `retry-after`
// (gRPC: RESOURCE_EXHAUSTED, trailers-only) and the flag RL. Limiters are shared by every worker.
//
// Ownership: a member of the stream; `policy` belongs to the connection manager and outlives it.
// Time comes from `clock`, so tests drive it by hand.

#include "common/base/clock.h"
#include "sidecar/filters/listener_policy.h"
#include "sidecar/route/route_config.h"
#include "sidecar/stream/filter.h"

namespace meshlet::sidecar::filters {

class RateLimitFilter final : public stream::Filter {
 public:
  enum class Scope { kListener, kRoute };

  RateLimitFilter(Scope scope, stream::FilterCallbacks& callbacks, const ListenerPolicy& policy,
                  const Clock& clock)
      : scope_(scope),
        callbacks_(callbacks),
        route_(callbacks.route()),
        policy_(policy),
        clock_(clock) {}

  stream::FilterStatus DecodeHeaders(http::HeaderMap& headers, bool) override {
    resilience::LocalRateLimiter* limiter = scope_ == Scope::kListener ? policy_.rate_limiter.get()
                                            : route_.entry != nullptr
                                                ? route_.entry->extras->rate_limiter.get()
                                                : nullptr;
    if (limiter == nullptr) return stream::FilterStatus::kContinue;
    return Take(*limiter, headers);
  }

 private:
  stream::FilterStatus Take(resilience::LocalRateLimiter& limiter, const http::HeaderMap& headers);

  const Scope scope_;
  stream::FilterCallbacks& callbacks_;
  const stream::Route& route_;  // the stream's, which outlives the filter
  const ListenerPolicy& policy_;
  const Clock& clock_;
};

}  // namespace meshlet::sidecar::filters
