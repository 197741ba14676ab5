#pragma once

// SHA-256 digests of byte strings, for secrets stored as digests (join and operator tokens),
// cache keys of credentials, and "has this file changed" checks. Pure functions, thread-safe.

#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::tls {

// The 32-byte SHA-256 digest of `data`, raw.
std::string Sha256(absl::string_view data);

// The same digest as 64 lower-case hex digits.
std::string Sha256Hex(absl::string_view data);

}  // namespace meshlet::tls
