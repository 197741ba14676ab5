#pragma once

// A small strict JSON reader (RFC 8259) for the CNI plugin's input: the network configuration on
// stdin and the Kubernetes API server's Pod. Each value keeps the text it was read from, so that
// the plugin hands the runtime the previous plugin's result exactly as it came (prevResult).
//
// Values only; views into the parsed text, which must outlive them. No threads, no callbacks.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::cni {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string text;  // a string's decoded text; a number as written
  std::vector<JsonValue> items;
  std::vector<std::pair<std::string, JsonValue>> members;  // in order; a repeated key is an error
  absl::string_view raw;                                   // the value as written in the input

  // The member named `key` of an object, or null (also for anything but an object).
  const JsonValue* Find(absl::string_view key) const;
  bool IsString() const { return type == Type::kString; }
  bool IsObject() const { return type == Type::kObject; }
};

// "JSON" / "a string" / ... for messages.
absl::string_view JsonTypeName(JsonValue::Type type);

// One value with nothing but whitespace around it; InvalidArgument with the byte offset of the
// first error. Nesting deeper than `max_depth` is an error.
absl::StatusOr<JsonValue> ParseJson(absl::string_view text, int max_depth = 64);

}  // namespace meshlet::cni
