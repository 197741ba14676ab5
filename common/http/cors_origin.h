#pragma once

// Origins for cross-origin resource sharing (CORS): the allowed-origin patterns of a route's CORS
// policy (Gateway API HTTPCORSFilter.allowOrigins, xds Route.cors) and the Origin request header
// they are matched against. The control plane checks patterns with ParseOriginPattern when a
// route is applied; the sidecar compiles them with it when it loads its configuration and
// matches each request's Origin with OriginMatches.
//
// A pattern is "*" (every origin), or "<scheme>://<host>[:<port>]" with scheme http or https and
// host DNS labels (letters, digits, '-') joined by '.'; the host may be "*" (every host of that
// scheme and port) or start with "*." (any one or more labels before the rest: "https://*.a.com"
// matches "https://x.a.com" and "https://x.y.a.com", not "https://a.com"). Without a port the
// scheme's default (80, 443) is meant. Schemes and hosts compare case-insensitively.
//
// Pure functions; OriginMatches allocates nothing. Safe from any thread.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::http {

// Longest pattern accepted (Gateway API's CORSOrigin limit).
inline constexpr size_t kMaxOriginPatternLength = 253;

struct OriginPattern {
  enum class Kind {
    kAny,      // "*": every Origin value
    kExact,    // scheme, host and port as given
    kSuffix,   // scheme and port as given, a host ending in `host` (".example.com") after at
               // least one more byte
    kAnyHost,  // scheme and port as given, any host
  };
  Kind kind = Kind::kAny;
  bool https = false;
  std::string host;  // lowercase; kExact: the host, kSuffix: the suffix with its leading '.'
  uint16_t port = 0;
};

// `text` as a pattern, or InvalidArgument saying what is wrong with it.
absl::StatusOr<OriginPattern> ParseOriginPattern(absl::string_view text);

// An Origin request header value split into its parts: views into it. nullopt for "null", and
// for anything that is not "http(s)://host[:port]" (a path, userinfo, another scheme).
struct Origin {
  bool https = false;
  absl::string_view host;
  uint16_t port = 0;  // the scheme's default when the value names none
};
std::optional<Origin> ParseOrigin(absl::string_view value);

// Whether `origin` (ParseOrigin's result; nullopt: a value that is not an origin, which only
// kAny matches) is one `pattern` allows.
bool OriginMatches(const OriginPattern& pattern, const std::optional<Origin>& origin);

}  // namespace meshlet::http
