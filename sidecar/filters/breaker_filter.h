#pragma once

// BreakerFilter: the last gate before the router (stream/filter.h). While the route's cluster has
// its consecutive-failure breaker open, or half-open with its probe out (Cluster::BreakerRejects),
// the request gets 503 with `x-meshlet-overloaded: true` (gRPC: UNAVAILABLE, trailers-only), the
// flag BO, and meshlet_upstream_rq_breaker_open_total on the cluster. It does not take the
// half-open probe: the router's host choice does.
//
// Ownership: a member of the stream; the cluster is the stream's cached route's.

#include "sidecar/cluster/cluster.h"
#include "sidecar/stream/filter.h"

namespace meshlet::sidecar::filters {

class BreakerFilter final : public stream::Filter {
 public:
  explicit BreakerFilter(stream::FilterCallbacks& callbacks)
      : callbacks_(callbacks), route_(callbacks.route()) {}

  stream::FilterStatus DecodeHeaders(http::HeaderMap&, bool) override {
    if (route_.cluster == nullptr || !route_.cluster->has_breaker()) {
      return stream::FilterStatus::kContinue;
    }
    return Check();
  }

 private:
  stream::FilterStatus Check();

  stream::FilterCallbacks& callbacks_;
  const stream::Route& route_;  // the stream's, which outlives the filter
};

}  // namespace meshlet::sidecar::filters
