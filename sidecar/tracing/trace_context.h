#pragma once

// Trace context propagation (docs/tracing.md): parsing what a caller sent — W3C Trace Context
// (`traceparent`, `tracestate`) or B3 (the `X-B3-*` headers or the single `b3` header) — and
// formatting what this hop sends on. Pure functions over header values; nothing here allocates
// unless a `tracestate` has to be shortened.
//
// Rules (W3C Trace Context Level 1, B3):
// - traceparent version 00 must be exactly `00-<32 hex>-<16 hex>-<2 hex>`, lower-case. A higher
//   version (not ff) is parsed by its first four fields and anything after a further `-` is
//   ignored. Invalid input (bad hex, upper case, wrong lengths, all-zero ids, version ff) means the
//   caller's context is discarded and a new trace starts; its tracestate is then dropped too.
// - tracestate: at most 32 list members, keys and values per the spec's grammar, no duplicate
//   keys; anything else drops the whole header (it cannot be understood, so it is not passed on).
//   Empty members are skipped. Longer than 512 characters, members over 128 characters go first,
//   then members from the end, until it fits.
// - B3: a 64- or 128-bit trace id (16 or 32 hex), a 64-bit span id, optional parent span id,
//   sampled `1`/`0` (`true`/`false` accepted), `X-B3-Flags: 1` (debug, implies sampled); the
//   single header `{trace}-{span}[-{sampled|d}[-{parent}]]` or just `0`, `1` or `d`. A B3 context
//   continues the same trace (a 64-bit id is the low half of the W3C id).
// - A valid traceparent wins over B3; the single `b3` wins over the multi-header form.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::http {
class HeaderMap;
struct HeaderView;
}  // namespace meshlet::http

namespace meshlet::sidecar::tracing {

inline constexpr absl::string_view kTraceparentHeader = "traceparent";
inline constexpr absl::string_view kTracestateHeader = "tracestate";
inline constexpr absl::string_view kB3SingleHeader = "b3";
inline constexpr absl::string_view kB3TraceIdHeader = "x-b3-traceid";
inline constexpr absl::string_view kB3SpanIdHeader = "x-b3-spanid";
inline constexpr absl::string_view kB3ParentSpanIdHeader = "x-b3-parentspanid";
inline constexpr absl::string_view kB3SampledHeader = "x-b3-sampled";
inline constexpr absl::string_view kB3FlagsHeader = "x-b3-flags";
// Not a trace header: the connection manager generates it when absent, and the trace-header scan
// picks it up on its way for the server span.
inline constexpr absl::string_view kRequestIdHeader = "x-request-id";

inline constexpr size_t kTraceparentLength = 55;  // 00-<32>-<16>-<2>
inline constexpr size_t kMaxTracestateMembers = 32;
inline constexpr size_t kMaxTracestateLength = 512;   // when propagating
inline constexpr size_t kTracestateLongMember = 128;  // removed first when shortening

struct TraceId {
  uint64_t high = 0;
  uint64_t low = 0;
  bool valid() const { return (high | low) != 0; }
  bool operator==(const TraceId&) const = default;
};

// What the caller decided about sampling.
enum class SamplingHint : uint8_t { kNone, kSampled, kNotSampled };

// Which header form carried the caller's context.
enum class Propagation : uint8_t { kNone, kW3c, kB3Single, kB3Multi };

// The caller's context. `trace_id` invalid: no usable context (only `sampling`, from a B3
// sampling-only header, may be set).
struct ParentContext {
  TraceId trace_id;
  uint64_t span_id = 0;  // the caller's span: the parent of this hop's server span
  SamplingHint sampling = SamplingHint::kNone;
  bool debug = false;           // B3 debug: sample regardless of the rate
  bool trace_id_64bit = false;  // B3 with a 16-hex trace id
  Propagation format = Propagation::kNone;
  bool b3_present = false;  // any B3 header was seen, usable or not
};

// traceparent; nullopt when invalid.
std::optional<ParentContext> ParseTraceparent(absl::string_view value);
// Writes `00-<trace>-<span>-<flags>` (kTraceparentLength bytes) to `out`.
void FormatTraceparent(const TraceId& trace_id, uint64_t span_id, bool sampled,
                       char out[kTraceparentLength]);

enum class TracestateVerdict : uint8_t {
  kKeep,     // propagate as it is
  kRewrite,  // propagate *rewritten (shortened, or empty members removed)
  kDrop,     // invalid: do not propagate
};
TracestateVerdict CheckTracestate(absl::string_view value, std::string* rewritten);

// The single `b3` header; nullopt when invalid.
std::optional<ParentContext> ParseB3Single(absl::string_view value);
// The X-B3-* headers (absent ones as nullopt); nullopt when invalid or absent.
std::optional<ParentContext> ParseB3Multi(std::optional<absl::string_view> trace_id,
                                          std::optional<absl::string_view> span_id,
                                          std::optional<absl::string_view> parent_span_id,
                                          std::optional<absl::string_view> sampled,
                                          std::optional<absl::string_view> flags);

// The trace-related request headers (and x-request-id), found in one pass over the map (names
// are lower case in a HeaderMap). A header given more than once keeps its first value and counts
// the rest. Built for every request, traced or not: a presence mask, so making one costs a store,
// and the values of absent fields are never read.
class TraceHeaders {
 public:
  enum Field : uint8_t {
    kTraceparent,
    kTracestate,
    kB3,
    kB3TraceId,
    kB3SpanId,
    kB3ParentSpanId,
    kB3Sampled,
    kB3Flags,
    kForce,      // the force-sample header, when one was named
    kRequestId,  // x-request-id
    kFieldCount,
  };

  bool has(Field field) const { return (present_ & Bit(field)) != 0; }
  std::optional<absl::string_view> get(Field field) const {
    if (!has(field)) return std::nullopt;
    return absl::string_view(values_[field].data, values_[field].size);
  }
  // Keeps the first value of a field.
  void Keep(Field field, absl::string_view value) {
    if (has(field)) return;
    present_ |= Bit(field);
    values_[field] = {value.data(), value.size()};
  }

  bool any_b3_multi() const { return (present_ & kB3MultiBits) != 0; }
  // Any header that can carry a caller's context (most requests at an edge have none).
  bool any_context() const { return (present_ & kContextBits) != 0; }

  int traceparent_count = 0;
  int tracestate_count = 0;

 private:
  static constexpr uint16_t Bit(Field field) { return static_cast<uint16_t>(1u << field); }
  static constexpr uint16_t kB3MultiBits = (1u << kB3TraceId) | (1u << kB3SpanId) |
                                           (1u << kB3ParentSpanId) | (1u << kB3Sampled) |
                                           (1u << kB3Flags);
  static constexpr uint16_t kContextBits = kB3MultiBits | (1u << kTraceparent) | (1u << kB3);
  // Trivial, so not initialised: only fields in present_ are read.
  struct Value {
    const char* data;
    size_t size;
  };
  uint16_t present_ = 0;
  Value values_[kFieldCount];
};

// What ScanTraceHeaders looks for, prepared once (a tracer keeps one).
class TraceHeaderScan {
 public:
  // `force_header`: name of the force-sample header (lower-cased here); empty: none.
  explicit TraceHeaderScan(absl::string_view force_header = {});
  TraceHeaders Scan(const http::HeaderMap& headers) const;
  // HeaderMap::NameFilterBit of every name looked for but x-request-id: a map that
  // MayHaveAny() of none of them carries no caller context, tracestate or force-sample header.
  uint64_t caller_name_filter() const { return caller_name_filter_; }

 private:
  // Filter by the name's length and last byte: a 256-bit set of (length % 32, last byte % 8).
  // Of common request headers only grpc-timeout, keep-alive and x-client-trace-id share a slot
  // with a name looked for; user-agent and x-forwarded-proto, which share a length with one, do
  // not.
  static size_t FilterIndex(absl::string_view name) {
    return (name.size() % 32) * 8 + static_cast<unsigned char>(name.back()) % 8;
  }
  void AddCandidate(absl::string_view name);
  // A field that passed the filter: records it if it is one looked for.
  [[gnu::noinline]] void Note(const http::HeaderView& header, TraceHeaders& found) const;

  std::string force_header_;
  uint64_t candidates_[4] = {};  // bit FilterIndex(name): a name looked for may be there
  uint64_t caller_name_filter_ = 0;
  bool request_id_inline_ = true;  // x-request-id is not the force-sample header
};

// One-off scan (tests, tools); a tracer keeps a TraceHeaderScan.
TraceHeaders ScanTraceHeaders(const http::HeaderMap& headers, absl::string_view force_header);

// The caller's context, by the precedence above.
ParentContext ExtractParent(const TraceHeaders& found);
ParentContext ExtractParent(const http::HeaderMap& headers);

// 16 lower-case hex digits of `value` into `out`.
void FormatHex64(uint64_t value, char out[16]);

}  // namespace meshlet::sidecar::tracing
