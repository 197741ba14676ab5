#pragma once

// Sticky-session tokens for routes with SessionPersistence (route_config.h; Gateway API
// sessionPersistence). The listener reads a request's token once its route matched
// (LookupSession) to choose the token's cluster among the route's clusters; the router then asks
// that cluster for the token's endpoint, and puts a token on the response (AddSessionToken) when
// the session is new, moved or, with an idle timeout, to renew it.
//
// A token is 33 bytes, base64url (44 characters): a version byte, the session keys of the
// cluster's name and of the endpoint's address (cluster::SessionKey(), a stable 64-bit hash), when
// the session began and when it was last renewed (Unix seconds, big-endian). It carries no address:
// a forged token can only name one of the route's current endpoints, or nothing. Expiry is enforced
// here, from those times; a time in the future (beyond a minute of clock skew) makes the token
// invalid.
//
// Pure functions; allocation only where a token is read or written (never for routes without
// sessions, which the caller skips). Any thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/http/header_map.h"
#include "sidecar/route/route_config.h"

namespace meshlet::sidecar::route {

// The cookie's or header's name when the configuration gives none.
inline constexpr absl::string_view kDefaultSessionName = "meshlet-session";
inline constexpr size_t kSessionTokenLength = 44;

struct SessionToken {
  uint64_t cluster_key = 0;
  uint64_t host_key = 0;
  int64_t created_s = 0;    // Unix seconds: when the session began
  int64_t last_used_s = 0;  // Unix seconds: when the token was last issued
};

std::string EncodeSessionToken(const SessionToken& token);
// Nullopt unless `text` is a token EncodeSessionToken() could have written.
std::optional<SessionToken> DecodeSessionToken(absl::string_view text);

// What a request's token says for the route it matched.
struct SessionLookup {
  enum class Result : uint8_t {
    kNone,     // no token
    kFound,    // a valid token naming the route's cluster `cluster_index`
    kMiss,     // a valid token naming no cluster of the route
    kExpired,  // past absolute_timeout or idle_timeout
    kInvalid,  // malformed, or stamped in the future
  };
  Result result = Result::kNone;
  size_t cluster_index = 0;
  uint64_t host_key = 0;
  int64_t created_s = 0;
};

// The action's clusters in the order SessionPersistence::cluster_keys lists them: its weighted
// clusters, or its one cluster (index 0).
const std::string& ClusterAt(const RouteAction& action, size_t index);

// Reads the token of `action.session` (which must be set) from `request` at wall time `now`.
SessionLookup LookupSession(const RouteAction& action, const http::HeaderMap& request,
                            absl::Time now);

// The token text the request carries: the value of the cookie named session.name (the first, if
// several), or of the header.
std::optional<absl::string_view> FindSessionValue(const SessionPersistence& session,
                                                  const http::HeaderMap& request);

// Adds `token` to a response: `Set-Cookie: <name>=<token>; Path=<path>; HttpOnly` (with
// `Max-Age`, what absolute_timeout leaves of the session, for a permanent cookie), or the header.
void AddSessionToken(const SessionPersistence& session, const SessionToken& token, absl::Time now,
                     http::HeaderMap& response);

// The cookie path for a route matching `match` when the configuration names none: the exact path
// or prefix it matches (a cookie's Path matches by segments, as Gateway API's PathPrefix does),
// else "/".
std::string DefaultCookiePath(const RouteMatch& match);
// Whether `path` may be a cookie's Path attribute: starts with '/', no control characters, spaces
// or ';'.
bool ValidSessionCookiePath(absl::string_view path);

}  // namespace meshlet::sidecar::route
