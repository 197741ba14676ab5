#pragma once

// JwtFilter: RequestAuthentication at an inbound listener, the first filter of the chain (before
// authorization, which may then decide on the token's principal and claims). Reads the request's
// token from the configured locations (default `authorization: Bearer <token>`; other headers with
// a prefix; query parameters), verifies it (jwt_verifier.h) and:
//   - no token: passes; authorization decides (as Istio);
//   - a valid token: copies the configured claims to headers and the payload (base64url, as it
//     came) to a header, removes the token's header unless forward_original_token, passes;
//   - an invalid token: 401 with `www-authenticate: Bearer error="invalid_token"`, flag UA and a
//     reason naming why (never the token), which x-meshlet-error carries.
// Headers the configuration writes are removed from every request first, so a client cannot set
// them itself. Outcomes count in meshlet_http_jwt_total{outcome}: "ok", "missing" or a
// JwtFailureName().
//
// Allocation: none beyond verification's (a per-thread Scratch reused across requests) and the
// header values copied into the request. A listener without RequestAuthentication costs one
// pointer test. Ownership: a member of the stream; `policy` belongs to the connection manager
// and outlives it. Threading: the worker's loop thread; JwtPolicy is shared read-only.

#include <memory>
#include <string>
#include <vector>

#include "sidecar/filters/jwt_policy.h"
#include "sidecar/filters/listener_policy.h"
#include "sidecar/stream/filter.h"

namespace meshlet::sidecar::filters {

// The token at `location` in `headers`, or empty.
absl::string_view FindJwtToken(const http::HeaderMap& headers, const JwtTokenLocation& location);

class JwtFilter final : public stream::Filter {
 public:
  JwtFilter(stream::FilterCallbacks& callbacks, const ListenerPolicy& policy)
      : callbacks_(callbacks), policy_(policy) {}

  stream::FilterStatus DecodeHeaders(http::HeaderMap& headers, bool) override {
    if (policy_.jwt == nullptr) return stream::FilterStatus::kContinue;
    return Authenticate(*policy_.jwt, headers);
  }

 private:
  stream::FilterStatus Authenticate(const JwtPolicy& jwt, http::HeaderMap& headers);

  stream::FilterCallbacks& callbacks_;
  const ListenerPolicy& policy_;
};

}  // namespace meshlet::sidecar::filters
