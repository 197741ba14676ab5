#pragma once

// The syntax of the authority a request is for: the Host header field (RFC 9110 7.2, RFC 9112
// 3.2), HTTP/2's :authority pseudo-header and a Host field sent over HTTP/2 (RFC 9113 8.3.1),
// the authority of an absolute-form request-target and CONNECT's authority-form (RFC 9112 3.2.2,
// 3.2.3). The HTTP/1 parser and the HTTP/2 codec both check with ParseHostPort, so a value one
// protocol refuses the other refuses too, and what an upstream receives as Host is always a
// valid `uri-host [ ":" port ]`.
//
// Pure functions over the bytes given: no allocation, nothing kept; safe from any thread.

#include <optional>

#include "absl/strings/string_view.h"

namespace meshlet::http {

// A valid authority split into its parts; views into the value parsed.
struct HostPort {
  // A bracketed IP-literal ("[::1]"), an IPv4 address or a reg-name. May be empty: an empty Host
  // is what a client sends when the target has no authority (RFC 9112 3.2).
  absl::string_view host;
  // The digits after the ':'; empty when there is no ':' or nothing follows it ("host:").
  absl::string_view port;
  bool has_port = false;  // a ':' followed the host
};

// Parses `value` as `uri-host [ ":" port ]` (RFC 3986 3.2.2, 3.2.3); nullopt if it is not one.
// Refused, among others: userinfo ("user:pw@host"), whitespace, a path, query or fragment
// ("host/x"), a list ("a, b"), an IPv6 address without brackets, a zone identifier, a malformed
// percent-encoding, a port that is not digits. Two rules go beyond the grammar:
// - no ',' anywhere, although RFC 3986 allows it in a reg-name: several Host lines combined into
//   one look like that (RFC 9110 5.3), a recipient may read it as such, and no DNS name or IP
//   address contains one;
// - a port is at most 65535 (leading zeros allowed).
// Other sub-delims and percent-encoded bytes stay allowed in a reg-name, as RFC 3986 says.
std::optional<HostPort> ParseHostPort(absl::string_view value);

// The authority of an absolute-form request-target (RFC 9112 3.2.2) with an http or https URI
// (the scheme in any case, RFC 3986 3.1), as ParseHostPort reads it; nullopt for another scheme,
// another form, or an empty host (RFC 9110 4.2.1).
std::optional<HostPort> AbsoluteFormAuthority(absl::string_view target);

}  // namespace meshlet::http
