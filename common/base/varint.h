#pragma once

// Base-128 varints as protobuf's wire format writes them (7 bits a byte, low bits first, the high
// bit set on every byte but the last), and zigzag for signed values whose small negatives should
// stay short. Plain functions on caller-owned memory: nothing allocates, any thread may call them.

#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"

namespace meshlet {

// How many bytes PutVarint writes for `value` (1 to 10).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

// Writes `value` at `p` (room for VarintSize(value) bytes) and returns the end.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutVarint(char* p, uint64_t value) {
  while (value >= 0x80) {
    *p++ = static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  *p++ = static_cast<char>(value);
  return p;
}

// Reads a varint that PutVarint wrote at `*p`, moving `*p` past it. For bytes this process wrote
// itself: it does not check bounds or length.
inline uint64_t GetVarint(const char** p) {
  uint64_t value = 0;
  for (int shift = 0;; shift += 7) {
    const auto byte = static_cast<uint8_t>(*(*p)++);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return value;
  }
}

// Zigzag: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
inline uint64_t ZigZag(int64_t value) {
  return (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
}
inline int64_t UnZigZag(uint64_t value) {
  return static_cast<int64_t>((value >> 1) ^ (~(value & 1) + 1));
}

}  // namespace meshlet
