#pragma once

// Wall-clock instants as text for status pages and saved state.

#include <string>

#include "absl/time/time.h"

namespace meshlet {

// `t` as RFC 3339 in UTC with as many fraction digits as it has ("2026-11-26T10:13:20.25+00:00");
// "" for absl::InfinitePast(), which stands for never.
std::string Rfc3339Text(absl::Time t);

}  // namespace meshlet
