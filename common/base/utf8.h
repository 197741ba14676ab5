#pragma once

#include "absl/strings/string_view.h"

namespace meshlet {

// Well-formed UTF-8 (RFC 3629): no overlong forms, UTF-16 surrogates or code points past
// U+10FFFF.
bool IsValidUtf8(absl::string_view text);

}  // namespace meshlet
