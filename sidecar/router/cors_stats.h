#pragma once

// CorsStats: what the router's CORS step (route/cors.h) did, one set per worker, registered in
// the worker's StatsShard and used lock-free on its thread (the router reaches it through
// StreamContext::cors; null: nothing counted):
//
//   meshlet_http_cors_total{outcome="preflight_allowed"}  preflights answered with the policy's
//                                                         headers (200)
//   meshlet_http_cors_total{outcome="preflight_refused"}  preflights from an origin the policy
//                                                         does not allow (403)
//   meshlet_http_cors_total{outcome="allowed"}            requests whose response got the headers
//   meshlet_http_cors_total{outcome="refused"}            requests from an origin not allowed,
//                                                         forwarded without them
//
// Only requests with an Origin header to a route with a CORS policy count.

#include "absl/status/statusor.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar::router {

struct CorsStats {
  static absl::StatusOr<CorsStats> Create(StatsShard& shard);

  Counter preflight_allowed;
  Counter preflight_refused;
  Counter allowed;
  Counter refused;
};

}  // namespace meshlet::sidecar::router
