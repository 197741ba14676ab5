#pragma once

// ByteReader: a bounds-checked reader of big-endian wire formats (a TLS ClientHello, a DNS
// message) over bytes it does not own. Every read either consumes what it returns or, when too
// few bytes are left, returns nullopt and consumes nothing. Not thread-safe; cheap to copy.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace meshlet {

class ByteReader {
 public:
  explicit ByteReader(absl::string_view data) : data_(data) {}
  bool empty() const { return data_.empty(); }
  size_t remaining() const { return data_.size(); }
  // An unsigned integer of `bytes` (1 to 4) bytes, most significant first.
  std::optional<uint32_t> Int(size_t bytes) {
    if (data_.size() < bytes) return std::nullopt;
    uint32_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(data_[i]);
    data_.remove_prefix(bytes);
    return v;
  }
  std::optional<absl::string_view> Bytes(size_t n) {
    if (data_.size() < n) return std::nullopt;
    absl::string_view out = data_.substr(0, n);
    data_.remove_prefix(n);
    return out;
  }
  // A vector with a `length_bytes`-byte length in front.
  std::optional<absl::string_view> Vector(size_t length_bytes) {
    ByteReader copy = *this;
    std::optional<uint32_t> n = copy.Int(length_bytes);
    if (!n.has_value() || copy.data_.size() < *n) return std::nullopt;
    *this = copy;
    return Bytes(*n);
  }

 private:
  absl::string_view data_;
};

}  // namespace meshlet
