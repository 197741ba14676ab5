#pragma once

// Header conversion of the HTTP/1.1 codec (internal to common/http/h1; codec.h is the interface):
// a HeaderMap written as an HTTP/1 message head. Fields that would break a line (CR, LF, NUL, a
// bad name byte) are never written, the framing and hop-by-hop fields the codec writes itself are
// skipped, and a whole head is copied into one reservation of the output buffer. The scans run
// over every field written, so they are inline here. Pure functions; no state.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/base/attributes.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::http::h1::codec_internal {

inline constexpr uint64_t kEveryByte =
    0x0101010101010101ULL;  // times a byte: that byte in each lane

// True when some byte of the 8-byte word `w` is below `n` (n <= 128). Exact, no false positives:
// a borrow crosses into the next byte only from a byte that was below `n` itself.
constexpr bool HasByteBelow(uint64_t w, uint8_t n) {
  return ((w - kEveryByte * n) & ~w & (kEveryByte * 0x80)) != 0;
}
constexpr bool HasZeroByte(uint64_t w) { return HasByteBelow(w, 1); }

inline uint64_t LoadWord(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// Whether `word_has` finds something in the `n` bytes at `p`, read as 8-byte words; the last word
// overlaps its predecessor instead of leaving a tail. Below 8 bytes, `byte_is` tests each byte.
template <typename WordHas, typename ByteIs>
inline bool AnyWordHas(const char* p, size_t n, WordHas word_has, ByteIs byte_is) {
  if (n < 8) {
    for (; n > 0; ++p, --n) {
      if (byte_is(static_cast<unsigned char>(*p))) return true;
    }
    return false;
  }
  for (; n > 8; p += 8, n -= 8) {
    if (word_has(LoadWord(p))) return true;
  }
  return word_has(LoadWord(p + n - 8));
}

inline bool IsLineBreakOrNul(unsigned char c) { return c == '\r' || c == '\n' || c == '\0'; }

// CR, LF or NUL somewhere in `s`: this runs over every field written. Sixteen bytes at a time
// where SSE2 is there (values such as traceparent, 55 bytes, take four steps), else eight.
inline bool HasLineBreakOrNul(absl::string_view s) {
  const char* p = s.data();
  size_t n = s.size();
#if defined(__SSE2__)
  if (n >= 16) {
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i nul = _mm_setzero_si128();
    auto found = [&](const char* q) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
      const __m128i hits = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                                        _mm_cmpeq_epi8(v, nul));
      return _mm_movemask_epi8(hits) != 0;
    };
    for (; n > 16; p += 16, n -= 16) {
      if (found(p)) return true;
    }
    return found(p + n - 16);  // the last 16 bytes, overlapping what was checked
  }
#endif
  return AnyWordHas(
      p, n,
      [](uint64_t w) {
        return HasZeroByte(w) || HasZeroByte(w ^ ('\r' * kEveryByte)) ||
               HasZeroByte(w ^ ('\n' * kEveryByte));
      },
      IsLineBreakOrNul);
}

// Bytes a field name never contains on the wire: CR, LF, NUL, ':', SP, HTAB.
inline bool IsBadNameByte(unsigned char c) {
  return IsLineBreakOrNul(c) || c == ':' || c == ' ' || c == '\t';
}

// Bytes that would end a line or truncate it: never written, whatever the HeaderMap holds,
// because a value that smuggles CRLF splits the message.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool SafeField(absl::string_view name,
                                                   absl::string_view value) {
  if (name.empty()) return false;
  // Every bad name byte is below '-' (0x2d) or is ':'. Names are letters, digits and '-', so one
  // test per word clears them; a name it flags is looked at byte by byte.
  const bool suspect = AnyWordHas(
      name.data(), name.size(),
      [](uint64_t w) { return HasByteBelow(w, '-') || HasZeroByte(w ^ (':' * kEveryByte)); },
      [](unsigned char c) { return c < '-' || c == ':'; });
  if (suspect && std::any_of(name.begin(), name.end(),
                             [](char c) { return IsBadNameByte(static_cast<unsigned char>(c)); })) {
    return false;
  }
  return !HasLineBreakOrNul(value);
}

// Hop-by-hop and framing fields the codec writes itself (names are lowercase in a HeaderMap).
inline bool IsManagedField(absl::string_view name) {
  if (name == "content-length") return true;
  return name != "te" && HeaderMap::IsHopByHopName(name);
}

inline bool SkipInResponse(absl::string_view name) { return IsManagedField(name) || name == "te"; }
inline bool SkipInTrailers(absl::string_view name) {
  return IsManagedField(name) || name == "te" || name == "host" || name == "trailer";
}

inline bool MethodExpectsBody(absl::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

// Decimal digits of `v` written at the end of `buf`; returns the view.
inline absl::string_view FormatDecimal(uint64_t v, char (&buf)[20]) {
  char* p = buf + sizeof(buf);
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return absl::string_view(p, buf + sizeof(buf) - p);
}

inline absl::string_view FormatHex(uint64_t v, char (&buf)[20]) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char* p = buf + sizeof(buf);
  do {
    *--p = kDigits[v & 0xf];
    v >>= 4;
  } while (v != 0);
  return absl::string_view(p, buf + sizeof(buf) - p);
}

// Strict 1*DIGIT; false if absent or malformed (the message is then framed another way).
bool ContentLengthOf(const HeaderMap& headers, uint64_t* length);

// The :status as an int in 100..999, or 0.
int StatusOf(const HeaderMap& headers);

// A Connection field lists `token` (case-insensitive).
bool HasConnectionToken(const HeaderMap& headers, absl::string_view token);

// The reason phrase written for `status`; empty for codes without one here.
absl::string_view ReasonPhrase(int status);

// A header block is copied into one reservation at the output's tail, so it costs one
// contiguous copy and no allocation per field. The reservation is sized from an estimate
// (EstimateBlock); a block that does not fit is emitted again in two passes, one that sizes it
// and one that copies it.
// Each sink also takes a whole field, "name: value\r\n", with one size check.
struct SizeSink {
  size_t size = 0;
  void operator()(absl::string_view s) { size += s.size(); }
  void Field(absl::string_view name, absl::string_view value) {
    size += name.size() + value.size() + 4;
  }
};
// Where there is room for it (`p` has name.size() + value.size() + 4 bytes).
inline char* PutField(char* p, absl::string_view name, absl::string_view value) {
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  p[0] = ':';
  p[1] = ' ';
  p += 2;
  if (!value.empty()) std::memcpy(p, value.data(), value.size());
  p += value.size();
  p[0] = '\r';
  p[1] = '\n';
  return p + 2;
}
struct CopySink {
  char* p;
  void operator()(absl::string_view s) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void Field(absl::string_view name, absl::string_view value) { p = PutField(p, name, value); }
};
// Copies while there is room; past the end it only records the overflow.
struct BoundedSink {
  char* p;
  char* end;
  bool overflow = false;
  void operator()(absl::string_view s) {
    if (overflow || s.size() > static_cast<size_t>(end - p)) {
      overflow = true;
      return;
    }
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void Field(absl::string_view name, absl::string_view value) {
    if (overflow || name.size() + value.size() + 4 > static_cast<size_t>(end - p)) {
      overflow = true;
      return;
    }
    p = PutField(p, name, value);
  }
};

// Room for the fields of `headers` written as "name: value\r\n", plus `extra` bytes for the
// start line and the fields the codec adds.
inline size_t EstimateBlock(const HeaderMap& headers, size_t extra) {
  return headers.ByteSize() + 4 * headers.size() + extra;
}
// Start line, framing and connection fields, final CRLF (besides values counted separately).
inline constexpr size_t kBlockOverhead = 192;

template <typename Emit>
void WriteBlock(net::Buffer& out, size_t estimate, Emit&& emit) {
  absl::Span<char> space = out.Reserve(estimate);
  BoundedSink fast{space.data(), space.data() + space.size()};
  emit(fast);
  if (!fast.overflow) {
    out.Commit(static_cast<size_t>(fast.p - space.data()));
    return;
  }
  out.Commit(0);
  SizeSink sizer;
  emit(sizer);
  space = out.Reserve(sizer.size);
  CopySink copier{space.data()};
  emit(copier);
  out.Commit(static_cast<size_t>(copier.p - space.data()));
}

template <typename Sink, typename Skip>
void EmitFields(const HeaderMap& headers, Skip skip, Sink& sink) {
  headers.ForEachRegularWithTrust([&](HeaderView h, bool trusted) {
    if (skip(h.name) || (!trusted && !SafeField(h.name, h.value))) return;
    sink.Field(h.name, h.value);
  });
}

template <typename Sink>
void EmitStatusLine(int status, Sink& sink) {
  char digits[3] = {static_cast<char>('0' + status / 100),
                    static_cast<char>('0' + status / 10 % 10),
                    static_cast<char>('0' + status % 10)};
  sink("HTTP/1.1 ");
  sink(absl::string_view(digits, 3));
  sink(" ");
  sink(ReasonPhrase(status));
  sink("\r\n");
}

}  // namespace meshlet::http::h1::codec_internal
