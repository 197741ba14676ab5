#pragma once

// A strict, allocation-free JSON scanner (RFC 8259) for the small documents of a JSON Web Token:
// its header and payload, and a JWKS. Values are views into the scanned text (with their quotes,
// for strings); nothing is copied unless a string holds escapes and its decoded text is asked for.
// Pure functions, thread-safe; the text must outlive the views.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::jwt::jwt_json {

enum class Type { kInvalid, kNull, kBool, kNumber, kString, kArray, kObject };

// The type of the value `raw` (a whole value as a scanner returned it), from its first byte.
Type TypeOf(absl::string_view raw);

// Scans one value starting at text[*pos] (whitespace before it skipped); on success sets *pos past
// it and `*value` to its text. Nesting deeper than `max_depth` fails.
bool ScanValue(absl::string_view text, size_t* pos, absl::string_view* value, int max_depth = 16);

// Whether `text` is one JSON object with nothing but whitespace around it.
bool IsObject(absl::string_view text);

// Calls visit(key, value) for each member of the object `object` (raw, as ScanValue returns it),
// in order; `key` is the raw string literal with its quotes. Stops (returning true) when visit
// returns false. Returns false when `object` is not a well-formed object.
template <typename Visit>
bool ForEachMember(absl::string_view object, Visit&& visit);

// Calls visit(item) for each element of the array `array`; like ForEachMember.
template <typename Visit>
bool ForEachItem(absl::string_view array, Visit&& visit);

// Whether the raw string literal `literal` ("...") decodes to exactly `text`. No allocation.
bool StringEquals(absl::string_view literal, absl::string_view text);

// The decoded text of the raw string literal `literal`: a view inside it when it has no escapes,
// else decoded into *scratch (replacing its contents). Empty view on a malformed literal.
absl::string_view StringText(absl::string_view literal, std::string* scratch);

// The member `key` of `object`, or an empty view (also when `object` is malformed).
absl::string_view Find(absl::string_view object, absl::string_view key);

// ---- implementation of the templates ----
namespace internal {
size_t SkipSpace(absl::string_view text, size_t pos);
}  // namespace internal

template <typename Visit>
bool ForEachMember(absl::string_view object, Visit&& visit) {
  if (TypeOf(object) != Type::kObject) return false;
  size_t pos = internal::SkipSpace(object, 1);
  if (pos < object.size() && object[pos] == '}') return true;
  while (pos < object.size()) {
    absl::string_view key, value;
    if (!ScanValue(object, &pos, &key) || TypeOf(key) != Type::kString) return false;
    pos = internal::SkipSpace(object, pos);
    if (pos >= object.size() || object[pos] != ':') return false;
    ++pos;
    if (!ScanValue(object, &pos, &value)) return false;
    if (!visit(key, value)) return true;
    pos = internal::SkipSpace(object, pos);
    if (pos >= object.size()) return false;
    if (object[pos] == '}') return true;
    if (object[pos] != ',') return false;
    ++pos;
  }
  return false;
}

template <typename Visit>
bool ForEachItem(absl::string_view array, Visit&& visit) {
  if (TypeOf(array) != Type::kArray) return false;
  size_t pos = internal::SkipSpace(array, 1);
  if (pos < array.size() && array[pos] == ']') return true;
  while (pos < array.size()) {
    absl::string_view item;
    if (!ScanValue(array, &pos, &item)) return false;
    if (!visit(item)) return true;
    pos = internal::SkipSpace(array, pos);
    if (pos >= array.size()) return false;
    if (array[pos] == ']') return true;
    if (array[pos] != ',') return false;
    ++pos;
  }
  return false;
}

}  // namespace meshlet::jwt::jwt_json
