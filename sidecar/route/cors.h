#pragma once

// A route's CORS policy (xds Route.cors; Gateway API HTTPRoute CORS filter) as the router runs
// it, compiled when sidecar/config builds the configuration: origin patterns parsed, the
// Access-Control-* values joined, so a request only matches and copies.
//
// What the router does with it (docs/configuration.md, "CORS"), for a request whose route has a
// policy and that carries Origin:
// - a preflight (IsPreflight: OPTIONS with Origin and Access-Control-Request-Method) is answered
//   by the sidecar without reaching the app: 200 with AddPreflightHeaders' headers when the
//   origin is allowed, 403 without any when it is not;
// - any other request goes on, and when its origin is allowed its response gets
//   AddResponseHeaders' headers (an origin that is not allowed gets none: the browser refuses
//   the response).
// A request without Origin is not a cross-origin one: the policy does nothing to it.
//
// The allowed origin is always echoed (never "*"), so answers are right for credentialed
// requests too, with `vary: origin` for caches; "*" in allow_methods and allow_headers likewise
// echoes what the preflight asked for. Pure functions over the values given; they allocate
// nothing beyond the header map's own storage. Safe from any thread (the policy is immutable).

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/http/cors_origin.h"
#include "common/http/header_map.h"

namespace meshlet::sidecar::route {

struct CorsPolicy {
  std::vector<http::OriginPattern> allow_origins;  // any of; empty: none
  // The Access-Control-Allow-Methods value, comma-joined; empty: none sent. any_method: "*",
  // the preflight's Access-Control-Request-Method is echoed instead.
  std::string allow_methods;
  bool any_method = false;
  // Access-Control-Allow-Headers, likewise (any_header: the preflight's
  // Access-Control-Request-Headers echoed).
  std::string allow_headers;
  bool any_header = false;
  // Access-Control-Expose-Headers, comma-joined ("*" kept as it is); empty: none sent.
  // expose_response_names: "*" with credentials, where browsers read "*" as a name: a response
  // lists its own header names instead (after expose_headers' other names).
  std::string expose_headers;
  bool expose_response_names = false;
  std::string max_age = "5";  // Access-Control-Max-Age, seconds
  bool allow_credentials = false;
};

// OPTIONS with Origin and Access-Control-Request-Method.
bool IsPreflight(const http::HeaderMap& request);

// Whether `origin` (the request's Origin value) is one the policy allows.
bool CorsOriginAllowed(const CorsPolicy& policy, absl::string_view origin);

// The headers of the answer to an allowed preflight from `origin`.
void AddPreflightHeaders(const CorsPolicy& policy, const http::HeaderMap& request,
                         absl::string_view origin, http::HeaderMap& response);

// The headers an allowed cross-origin request's response gets. `origin` must not view
// `response`.
void AddResponseHeaders(const CorsPolicy& policy, absl::string_view origin,
                        http::HeaderMap& response);

}  // namespace meshlet::sidecar::route
