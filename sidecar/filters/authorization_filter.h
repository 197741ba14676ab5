#pragma once

// AuthorizationFilter: the first filter of the chain (stream/filter.h). Decides the request with
// the listener's authorization policies (authorization.h) from the peer's SPIFFE id, the
// destination port, :method and :path, before the rate limit so a denied request spends no token.
// Denied: 403 (gRPC: PERMISSION_DENIED, trailers-only), flag AZ, meshlet_http_rbac_denied_total;
// allowed: meshlet_http_rbac_allowed_total. A listener without policies counts neither.
//
// The destination port is the request's virtual host's destination_port (an inbound listener that
// serves several app ports), else ListenerPolicy::destination_port.
//
// Ownership: a member of the stream; `policy` belongs to the connection manager and outlives it.

#include "sidecar/filters/listener_policy.h"
#include "sidecar/stream/filter.h"

namespace meshlet::sidecar::filters {

class AuthorizationFilter final : public stream::Filter {
 public:
  AuthorizationFilter(stream::FilterCallbacks& callbacks, const ListenerPolicy& policy)
      : callbacks_(callbacks), policy_(policy) {}

  stream::FilterStatus DecodeHeaders(http::HeaderMap& headers, bool) override {
    if (policy_.authorizer == nullptr) return stream::FilterStatus::kContinue;
    return Decide(headers);
  }

 private:
  stream::FilterStatus Decide(const http::HeaderMap& headers);

  stream::FilterCallbacks& callbacks_;
  const ListenerPolicy& policy_;
};

}  // namespace meshlet::sidecar::filters
