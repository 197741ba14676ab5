#pragma once

// Field paths and value checks for configuration validators: the sidecar's translation of xDS
// resources (sidecar/config) and the control plane's validation of policy documents
// (control-plane/policy) both name the field at fault and quote the value, the same way:
//
//   virtual_hosts[0].routes[2].request_headers_to_add[1].name: "x y" is not a header name
//
// Pure functions of their arguments; any thread.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::config {

// "parent.field", or "field" when `parent` is empty.
std::string Join(absl::string_view parent, absl::string_view field);
// "field[i]".
std::string Index(absl::string_view field, size_t i);
// `value` in double quotes, as it is (for messages; JSON uses common/base/json.h).
std::string Quote(absl::string_view value);

// An RFC 9110 token: a header name or a method. Not empty.
bool IsHttpToken(absl::string_view text);
// A header value that cannot end its line or the message: no CR, LF or NUL.
bool IsSafeHeaderValue(absl::string_view value);

// An RFC 1123 label as Kubernetes names use it: 1 to 63 lowercase letters, digits and '-', with
// a letter or digit at both ends.
bool IsDnsLabel(absl::string_view name);
// DNS labels joined by '.', at most 253 characters.
bool IsDnsSubdomain(absl::string_view name);
// A host name: labels of 1 to 63 letters (either case), digits and '-' joined by '.', at most 253
// characters; a leading "*." makes it a wildcard for the names under it.
bool IsHostName(absl::string_view host);

}  // namespace meshlet::config
