#pragma once

// ASCII case folding for field names and tokens, several bytes at a time. Header lookups, the
// HTTP/1 parser and the codecs compare short names against lowercase ones many times per
// request; these are inline and branch little, where absl::EqualsIgnoreCase is a call that
// compares a byte at a time. Only 'A'..'Z' fold, as in absl: other bytes, those with the top bit
// set included, compare as they are. The comparisons are forced inline: called in lookup loops,
// a call costs more than they do.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

namespace meshlet::http::ascii_case {

inline char ToLower(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return static_cast<char>(static_cast<unsigned>(u - 'A') < 26u ? u + ('a' - 'A') : u);
}

inline uint64_t LoadWord(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}
inline void StoreWord(char* p, uint64_t w) { std::memcpy(p, &w, sizeof(w)); }
inline uint32_t LoadHalfWord(const char* p) {
  uint32_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}
inline void StoreHalfWord(char* p, uint32_t w) { std::memcpy(p, &w, sizeof(w)); }

// ToLower on the eight bytes of `w` at once: 0x20 added to each byte in 'A'..'Z'. Per 7-bit
// lane, adding 0x80 - c sets the lane's top bit exactly when the lane is >= c, without a carry
// into the next lane; bytes with their own top bit set are left alone.
inline uint64_t LowerWord(uint64_t w) {
  constexpr uint64_t kEveryByte = 0x0101010101010101ULL;  // times a byte: it in each lane
  const uint64_t low7 = w & (kEveryByte * 0x7f);
  const uint64_t at_least_a = low7 + kEveryByte * (0x80 - 'A');
  const uint64_t above_z = low7 + kEveryByte * (0x80 - 'Z' - 1);
  const uint64_t upper = at_least_a & ~above_z & ~w & (kEveryByte * 0x80);
  return w | (upper >> 2);
}
inline uint32_t LowerHalfWord(uint32_t w) { return static_cast<uint32_t>(LowerWord(w)); }

// Copies `n` bytes from `from` to `to` (not overlapping), lowercased. Eight bytes at a time, the
// last word overlapping its predecessor (four at a time below eight).
[[gnu::always_inline]] inline void CopyLowercase(char* to, const char* from, size_t n) {
  if (n < 8) {
    if (n >= 4) {
      StoreHalfWord(to, LowerHalfWord(LoadHalfWord(from)));
      StoreHalfWord(to + n - 4, LowerHalfWord(LoadHalfWord(from + n - 4)));
      return;
    }
    for (size_t i = 0; i < n; ++i) to[i] = ToLower(from[i]);
    return;
  }
  for (size_t i = 0; i + 8 < n; i += 8) StoreWord(to + i, LowerWord(LoadWord(from + i)));
  StoreWord(to + n - 8, LowerWord(LoadWord(from + n - 8)));
}

// The `text.size()` bytes at `lowercase` (already lowercase) equal `text` ignoring case: eight
// bytes at a time from eight on, four at a time (two overlapping) from four.
[[gnu::always_inline]] inline bool LowercaseEquals(const char* lowercase, absl::string_view text) {
  const size_t n = text.size();
  if (n < 8) {
    if (n >= 4) {
      return LoadHalfWord(lowercase) == LowerHalfWord(LoadHalfWord(text.data())) &&
             LoadHalfWord(lowercase + n - 4) == LowerHalfWord(LoadHalfWord(text.data() + n - 4));
    }
    for (size_t i = 0; i < n; ++i) {
      if (lowercase[i] != ToLower(text[i])) return false;
    }
    return true;
  }
  for (size_t i = 0; i + 8 < n; i += 8) {
    if (LoadWord(lowercase + i) != LowerWord(LoadWord(text.data() + i))) return false;
  }
  return LoadWord(lowercase + n - 8) == LowerWord(LoadWord(text.data() + n - 8));
}

// `text` equals `lowercase` (a lowercase name or token, typically a literal) ignoring case.
[[gnu::always_inline]] inline bool EqualsLowercase(absl::string_view text,
                                                   absl::string_view lowercase) {
  return text.size() == lowercase.size() && LowercaseEquals(lowercase.data(), text);
}

}  // namespace meshlet::http::ascii_case
