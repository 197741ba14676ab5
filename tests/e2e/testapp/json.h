#pragma once

// The little JSON the test app writes and checks: string literals, and whether a downstream
// service's body is one JSON value that can be nested as it is in an answer.

#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::testapp {

// Appends `text` as a JSON string literal, quotes included: `"` and `\` escaped, control
// characters as \u00XX; bytes that are not valid UTF-8 become U+FFFD.
void AppendJsonString(std::string& out, absl::string_view text);
std::string JsonString(absl::string_view text);

// True when `text` is exactly one JSON value (RFC 8259; surrounding whitespace allowed), nested
// at most `max_depth` arrays/objects deep.
bool IsJsonValue(absl::string_view text, int max_depth = 64);

}  // namespace meshlet::testapp
