#pragma once

// ListenerPolicy: what the listener-level filters (authorization, the listener's rate limit) read
// of the listener and connection a request arrived on. The connection manager owns one per
// connection and refreshes the shared parts when the configuration snapshot changes, so a
// long-lived connection applies a policy change from its next request on.
//
// Threading: the worker's loop thread. The authorizer and the rate limiter are shared read-only
// (the limiter's buckets are atomic) by every worker.

#include <array>
#include <cstdint>
#include <memory>

#include "absl/strings/string_view.h"
#include "common/stats/stats.h"
#include "sidecar/filters/authorization.h"
#include "sidecar/filters/jwt_policy.h"
#include "sidecar/resilience/principal_rate_limiter.h"

namespace meshlet::sidecar::filters {

struct ListenerPolicy {
  std::shared_ptr<const Authorizer> authorizer;                // null: no policies
  std::shared_ptr<resilience::LocalRateLimiter> rate_limiter;  // null: no limit
  // ListenerConfig::destination_port, else the port the connection arrived on.
  uint32_t destination_port = 0;
  // The client's SPIFFE id from its verified certificate; empty without mTLS.
  absl::string_view peer_identity;
  // meshlet_http_rbac_allowed_total / _denied_total (listener/http_stats.h).
  Counter rbac_allowed;
  Counter rbac_denied;
  // RequestAuthentication (jwt_filter.h); null: none. Shared read-only by every worker.
  std::shared_ptr<const JwtPolicy> jwt;
  // meshlet_http_jwt_total{outcome} by jwt_filter.h's outcome index (kJwtOutcomeCount).
  std::array<Counter, kJwtOutcomeCount> jwt_outcomes;
};

}  // namespace meshlet::sidecar::filters
