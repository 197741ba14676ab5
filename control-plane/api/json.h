#pragma once

// Minimal JSON writing for the API's own envelopes (errors, lists, registry views). Resources
// themselves are written by protobuf's JSON printer (control-plane/policy/codec.h).

#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::controlplane::api {

// `text` as a JSON string literal, quotes included. Invalid UTF-8 bytes become U+FFFD.
std::string JsonQuote(absl::string_view text);

}  // namespace meshlet::controlplane::api
