#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"

namespace meshlet {

// Well-formed UTF-8 (RFC 3629): no overlong forms, UTF-16 surrogates or code points past
// U+10FFFF.
bool IsValidUtf8(absl::string_view text);

// The length of the well-formed UTF-8 sequence that starts at `text[i]` (1 for ASCII, up to 4),
// or 0 when the bytes there are not one (by the rules of IsValidUtf8). `i` < text.size().
size_t Utf8SequenceLength(absl::string_view text, size_t i);

}  // namespace meshlet
