#pragma once

// JSON string literals (RFC 8259) for the JSON meshlet writes by hand: admin pages, API
// envelopes, span batches, status dumps.
//
// `"` and `\` are escaped, newline, carriage return and tab take their short forms (\n \r \t),
// the other control characters U+0000..U+001F become \u00XX (lower-case hex). Bytes that are not
// well-formed UTF-8 (common/base/utf8.h) become U+FFFD, written \ufffd, one per byte, so the
// output is valid JSON whatever the input. Text with nothing to escape is appended in one copy.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshlet {

// Appends `text` escaped, without quotes (for a string assembled from several pieces).
void AppendJsonEscaped(std::string* out, absl::string_view text);
// Appends `text` as a JSON string literal, quotes included.
void AppendJsonString(std::string* out, absl::string_view text);
// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);
// Appends `items` as a JSON array of string literals.
void AppendJsonStringArray(std::string* out, const std::vector<std::string>& items);

}  // namespace meshlet
