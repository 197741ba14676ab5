#include "sidecar/tracing/trace_context.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/http/header_map.h"

namespace meshlet::sidecar::tracing {
namespace {

int HexValue(char c, bool lower_only) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (!lower_only && c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Exactly 1..16 hex digits.
bool ParseHex64(absl::string_view text, bool lower_only, uint64_t* out) {
  if (text.empty() || text.size() > 16) return false;
  uint64_t value = 0;
  for (char c : text) {
    const int digit = HexValue(c, lower_only);
    if (digit < 0) return false;
    value = (value << 4) | static_cast<uint64_t>(digit);
  }
  *out = value;
  return true;
}

// 32 hex digits (or 16 when `allow_64bit`).
bool ParseTraceIdHex(absl::string_view text, bool lower_only, bool allow_64bit, TraceId* out,
                     bool* is_64bit) {
  if (text.size() == 32) {
    *is_64bit = false;
    return ParseHex64(text.substr(0, 16), lower_only, &out->high) &&
           ParseHex64(text.substr(16), lower_only, &out->low);
  }
  if (allow_64bit && text.size() == 16) {
    *is_64bit = true;
    out->high = 0;
    return ParseHex64(text, lower_only, &out->low);
  }
  return false;
}

bool IsLowerAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsKeyChar(char c) {
  return IsLowerAlpha(c) || IsDigit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

// key = simple-key / multi-tenant-key (W3C Trace Context §3.3.1.3.1).
bool ValidTracestateKey(absl::string_view key) {
  const size_t at = key.find('@');
  if (at == absl::string_view::npos) {
    if (key.empty() || key.size() > 256 || !IsLowerAlpha(key[0])) return false;
    return std::all_of(key.begin() + 1, key.end(), IsKeyChar);
  }
  const absl::string_view tenant = key.substr(0, at);
  const absl::string_view system = key.substr(at + 1);
  if (tenant.empty() || tenant.size() > 241 || !(IsLowerAlpha(tenant[0]) || IsDigit(tenant[0]))) {
    return false;
  }
  if (system.empty() || system.size() > 14 || !IsLowerAlpha(system[0])) return false;
  return std::all_of(tenant.begin() + 1, tenant.end(), IsKeyChar) &&
         std::all_of(system.begin() + 1, system.end(), IsKeyChar);
}

// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E.
bool ValidTracestateValue(absl::string_view value) {
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  for (char c : value) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e || c == ',' || c == '=') return false;
  }
  return true;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

absl::string_view TrimOws(absl::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// B3 sampled values; nullopt when unrecognised.
std::optional<SamplingHint> ParseB3Sampled(absl::string_view value) {
  if (value == "1" || absl::EqualsIgnoreCase(value, "true")) return SamplingHint::kSampled;
  if (value == "0" || absl::EqualsIgnoreCase(value, "false")) return SamplingHint::kNotSampled;
  return std::nullopt;
}

}  // namespace

#if defined(__SSE2__)

// Sixteen nibbles spread to sixteen bytes, most significant first, each turned into '0'-'9' or
// 'a'-'f' at once.
void FormatHex64(uint64_t value, char out[16]) {
  const __m128i bytes = _mm_cvtsi64_si128(static_cast<long long>(__builtin_bswap64(value)));
  const __m128i low_nibble = _mm_set1_epi8(0x0f);
  const __m128i nibbles = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low_nibble),
                                            _mm_and_si128(bytes, low_nibble));
  const __m128i letters =
      _mm_and_si128(_mm_cmpgt_epi8(nibbles, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
  const __m128i ascii = _mm_add_epi8(_mm_add_epi8(nibbles, _mm_set1_epi8('0')), letters);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), ascii);
}

#else

void FormatHex64(uint64_t value, char out[16]) {
  for (int i = 15; i >= 0; --i) {
    out[i] = "0123456789abcdef"[value & 0xf];
    value >>= 4;
  }
}

#endif

std::optional<ParentContext> ParseTraceparent(absl::string_view value) {
  value = TrimOws(value);
  if (value.size() < kTraceparentLength) return std::nullopt;
  uint64_t version = 0;
  if (!ParseHex64(value.substr(0, 2), /*lower_only=*/true, &version) || version == 0xff) {
    return std::nullopt;
  }
  if (version == 0) {
    if (value.size() != kTraceparentLength) return std::nullopt;
  } else if (value.size() > kTraceparentLength && value[kTraceparentLength] != '-') {
    // A future version may add fields, each after a '-'.
    return std::nullopt;
  }
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;
  ParentContext context;
  bool is_64bit = false;
  uint64_t flags = 0;
  if (!ParseTraceIdHex(value.substr(3, 32), true, false, &context.trace_id, &is_64bit) ||
      !ParseHex64(value.substr(36, 16), true, &context.span_id) ||
      !ParseHex64(value.substr(53, 2), true, &flags)) {
    return std::nullopt;
  }
  if (!context.trace_id.valid() || context.span_id == 0) return std::nullopt;
  context.sampling = (flags & 0x01) != 0 ? SamplingHint::kSampled : SamplingHint::kNotSampled;
  context.format = Propagation::kW3c;
  return context;
}

void FormatTraceparent(const TraceId& trace_id, uint64_t span_id, bool sampled,
                       char out[kTraceparentLength]) {
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  FormatHex64(trace_id.high, out + 3);
  FormatHex64(trace_id.low, out + 19);
  out[35] = '-';
  FormatHex64(span_id, out + 36);
  out[52] = '-';
  out[53] = '0';
  out[54] = sampled ? '1' : '0';
}

TracestateVerdict CheckTracestate(absl::string_view value, std::string* rewritten) {
  absl::InlinedVector<absl::string_view, 8> members;
  bool had_empty = false;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == absl::string_view::npos) comma = value.size();
    const absl::string_view member = TrimOws(value.substr(start, comma - start));
    start = comma + 1;
    if (member.empty()) {
      had_empty = true;
      continue;
    }
    const size_t eq = member.find('=');
    if (eq == absl::string_view::npos || !ValidTracestateKey(member.substr(0, eq)) ||
        !ValidTracestateValue(member.substr(eq + 1))) {
      return TracestateVerdict::kDrop;
    }
    for (absl::string_view seen : members) {
      if (seen.substr(0, seen.find('=')) == member.substr(0, eq)) return TracestateVerdict::kDrop;
    }
    members.push_back(member);
    if (members.size() > kMaxTracestateMembers) return TracestateVerdict::kDrop;
  }
  if (members.empty()) return TracestateVerdict::kDrop;  // nothing worth sending
  size_t length = 0;
  for (absl::string_view m : members) length += m.size();
  length += members.size() - 1;
  if (!had_empty && length <= kMaxTracestateLength && value.size() == length) {
    return TracestateVerdict::kKeep;
  }
  // Over the limit: long members go first, then members from the end (the oldest entries).
  for (size_t i = members.size(); length > kMaxTracestateLength && i-- > 0;) {
    if (members[i].size() > kTracestateLongMember) {
      length -= members[i].size() + (members.size() > 1 ? 1 : 0);
      members.erase(members.begin() + static_cast<ptrdiff_t>(i));
    }
  }
  while (length > kMaxTracestateLength && !members.empty()) {
    length -= members.back().size() + (members.size() > 1 ? 1 : 0);
    members.pop_back();
  }
  if (members.empty()) return TracestateVerdict::kDrop;
  rewritten->clear();
  for (absl::string_view m : members) {
    if (!rewritten->empty()) rewritten->push_back(',');
    rewritten->append(m.data(), m.size());
  }
  return TracestateVerdict::kRewrite;
}

std::optional<ParentContext> ParseB3Single(absl::string_view value) {
  value = TrimOws(value);
  ParentContext context;
  context.format = Propagation::kB3Single;
  context.b3_present = true;
  if (value.size() == 1) {
    // Sampling decision only.
    if (value == "0") {
      context.sampling = SamplingHint::kNotSampled;
    } else if (value == "1") {
      context.sampling = SamplingHint::kSampled;
    } else if (value == "d") {
      context.sampling = SamplingHint::kSampled;
      context.debug = true;
    } else {
      return std::nullopt;
    }
    return context;
  }
  absl::InlinedVector<absl::string_view, 4> parts;
  size_t start = 0;
  while (true) {
    const size_t dash = value.find('-', start);
    parts.push_back(value.substr(start, dash == absl::string_view::npos ? dash : dash - start));
    if (dash == absl::string_view::npos) break;
    start = dash + 1;
    if (parts.size() == 4) return std::nullopt;
  }
  if (parts.size() < 2) return std::nullopt;
  if (!ParseTraceIdHex(parts[0], false, true, &context.trace_id, &context.trace_id_64bit) ||
      parts[1].size() != 16 || !ParseHex64(parts[1], false, &context.span_id) ||
      !context.trace_id.valid() || context.span_id == 0) {
    return std::nullopt;
  }
  if (parts.size() >= 3) {
    if (parts[2] == "d") {
      context.debug = true;
      context.sampling = SamplingHint::kSampled;
    } else if (parts[2] == "1") {
      context.sampling = SamplingHint::kSampled;
    } else if (parts[2] == "0") {
      context.sampling = SamplingHint::kNotSampled;
    } else {
      return std::nullopt;
    }
  }
  if (parts.size() == 4) {
    uint64_t parent = 0;
    if (parts[3].size() != 16 || !ParseHex64(parts[3], false, &parent)) return std::nullopt;
  }
  return context;
}

std::optional<ParentContext> ParseB3Multi(std::optional<absl::string_view> trace_id,
                                          std::optional<absl::string_view> span_id,
                                          std::optional<absl::string_view> parent_span_id,
                                          std::optional<absl::string_view> sampled,
                                          std::optional<absl::string_view> flags) {
  if (!trace_id && !span_id && !parent_span_id && !sampled && !flags) return std::nullopt;
  ParentContext context;
  context.format = Propagation::kB3Multi;
  context.b3_present = true;
  if (flags.has_value() && TrimOws(*flags) == "1") {
    context.debug = true;
    context.sampling = SamplingHint::kSampled;
  } else if (sampled.has_value()) {
    std::optional<SamplingHint> hint = ParseB3Sampled(TrimOws(*sampled));
    if (!hint.has_value()) return std::nullopt;
    context.sampling = *hint;
  }
  if (!trace_id.has_value() && !span_id.has_value()) {
    if (parent_span_id.has_value()) return std::nullopt;
    // Sampling decision only.
    return context.sampling == SamplingHint::kNone ? std::nullopt
                                                   : std::optional<ParentContext>(context);
  }
  if (!trace_id.has_value() || !span_id.has_value()) return std::nullopt;
  const absl::string_view span = TrimOws(*span_id);
  if (!ParseTraceIdHex(TrimOws(*trace_id), false, true, &context.trace_id,
                       &context.trace_id_64bit) ||
      span.size() != 16 || !ParseHex64(span, false, &context.span_id) ||
      !context.trace_id.valid() || context.span_id == 0) {
    return std::nullopt;
  }
  if (parent_span_id.has_value()) {
    const absl::string_view parent = TrimOws(*parent_span_id);
    uint64_t ignored = 0;
    if (parent.size() != 16 || !ParseHex64(parent, false, &ignored)) return std::nullopt;
  }
  return context;
}

TraceHeaderScan::TraceHeaderScan(absl::string_view force_header)
    : force_header_(absl::AsciiStrToLower(force_header)) {
  for (const absl::string_view name :
       {kTraceparentHeader, kTracestateHeader, kB3SingleHeader, kB3TraceIdHeader, kB3SpanIdHeader,
        kB3ParentSpanIdHeader, kB3SampledHeader, kB3FlagsHeader, kRequestIdHeader}) {
    AddCandidate(name);
  }
  if (!force_header_.empty()) {
    AddCandidate(force_header_);
    caller_name_filter_ |= http::HeaderMap::NameFilterBit(force_header_);  // even x-request-id
  }
  request_id_inline_ = force_header_ != kRequestIdHeader;
}

void TraceHeaderScan::AddCandidate(absl::string_view name) {
  const size_t index = FilterIndex(name);
  candidates_[index / 64] |= uint64_t{1} << (index % 64);
  if (name != kRequestIdHeader) caller_name_filter_ |= http::HeaderMap::NameFilterBit(name);
}

TraceHeaders TraceHeaderScan::Scan(const http::HeaderMap& headers) const {
  TraceHeaders found;
  // Pseudo-headers are never trace headers (nor a force-sample header: clients cannot send
  // names of their own starting with ':'). Most headers are none of these: the filter skips
  // them inline; the few left are told apart out of line.
  headers.ForEachRegular([&](const http::HeaderView header) {
    if (header.name.empty()) return;
    const size_t index = FilterIndex(header.name);
    if (((candidates_[index / 64] >> (index % 64)) & 1) == 0) return;
    // The connection manager adds x-request-id to nearly every request: recognised inline
    // (a constant-length compare), unless it is also the force-sample header.
    if (request_id_inline_ && header.name.size() == kRequestIdHeader.size() &&
        std::memcmp(header.name.data(), kRequestIdHeader.data(), kRequestIdHeader.size()) == 0) {
      found.Keep(TraceHeaders::kRequestId, header.value);
      return;
    }
    Note(header, found);
  });
  return found;
}

void TraceHeaderScan::Note(const http::HeaderView& header, TraceHeaders& found) const {
  using Field = TraceHeaders::Field;
  const absl::string_view name = header.name;
  if (!force_header_.empty() && name == force_header_) {
    found.Keep(Field::kForce, header.value);
  }
  switch (name[0]) {
    case 't':
      if (name == kTraceparentHeader) {
        found.Keep(Field::kTraceparent, header.value);
        ++found.traceparent_count;
      } else if (name == kTracestateHeader) {
        found.Keep(Field::kTracestate, header.value);
        ++found.tracestate_count;
      }
      break;
    case 'b':
      if (name == kB3SingleHeader) found.Keep(Field::kB3, header.value);
      break;
    case 'x':
      if (name == kRequestIdHeader) {
        found.Keep(Field::kRequestId, header.value);
        break;
      }
      if (name.size() < 10 || name.substr(0, 5) != "x-b3-") break;
      if (name == kB3TraceIdHeader) {
        found.Keep(Field::kB3TraceId, header.value);
      } else if (name == kB3SpanIdHeader) {
        found.Keep(Field::kB3SpanId, header.value);
      } else if (name == kB3ParentSpanIdHeader) {
        found.Keep(Field::kB3ParentSpanId, header.value);
      } else if (name == kB3SampledHeader) {
        found.Keep(Field::kB3Sampled, header.value);
      } else if (name == kB3FlagsHeader) {
        found.Keep(Field::kB3Flags, header.value);
      }
      break;
    default:
      break;
  }
}

TraceHeaders ScanTraceHeaders(const http::HeaderMap& headers, absl::string_view force_header) {
  return TraceHeaderScan(force_header).Scan(headers);
}

ParentContext ExtractParent(const http::HeaderMap& headers) {
  return ExtractParent(ScanTraceHeaders(headers, {}));
}

ParentContext ExtractParent(const TraceHeaders& found) {
  ParentContext result;
  if (!found.any_context()) return result;
  // Several traceparent fields make the context ambiguous: start over (W3C §3.2).
  if (found.has(TraceHeaders::kTraceparent) && found.traceparent_count == 1) {
    if (std::optional<ParentContext> parsed =
            ParseTraceparent(*found.get(TraceHeaders::kTraceparent))) {
      result = *parsed;
    }
  }
  std::optional<ParentContext> b3;
  if (const std::optional<absl::string_view> single = found.get(TraceHeaders::kB3)) {
    b3 = ParseB3Single(*single);
    if (!b3.has_value()) result.b3_present = true;
  }
  if (!b3.has_value()) {
    b3 = ParseB3Multi(found.get(TraceHeaders::kB3TraceId), found.get(TraceHeaders::kB3SpanId),
                      found.get(TraceHeaders::kB3ParentSpanId), found.get(TraceHeaders::kB3Sampled),
                      found.get(TraceHeaders::kB3Flags));
    if (!b3.has_value() && found.any_b3_multi()) result.b3_present = true;
  }
  if (!b3.has_value()) return result;
  if (result.trace_id.valid()) {
    // W3C wins; B3's debug flag still forces sampling.
    result.b3_present = true;
    result.debug = b3->debug;
    return result;
  }
  return *b3;
}

}  // namespace meshlet::sidecar::tracing
