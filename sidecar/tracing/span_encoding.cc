#include "sidecar/tracing/span_encoding.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/varint.h"

namespace meshlet::sidecar::tracing {
namespace {

void AppendHex64(std::string* out, uint64_t value) {
  char hex[16];
  FormatHex64(value, hex);
  out->append(hex, sizeof(hex));
}

void AppendTraceIdHex(std::string* out, const TraceId& id) {
  AppendHex64(out, id.high);
  AppendHex64(out, id.low);
}

int64_t FloorDiv(int64_t value, int64_t divisor) {
  const int64_t quotient = value / divisor;
  return (value % divisor != 0 && value < 0) ? quotient - 1 : quotient;
}

// --- protobuf wire format ---------------------------------------------------------------------
//
// A message is sized exactly first (each *Size function below mirrors what its Put* writes), then
// written once, front to back, through a cursor into memory of that size: no bounds to trim, no
// lengths to move into place, no zero-fill. Every field number here is below 16 (one-byte tags)
// except Span.flags (16), whose two tag bytes are written by PutFixed32Field16.

constexpr char Tag(uint32_t field, uint32_t wire_type) {
  return static_cast<char>((field << 3) | wire_type);
}
constexpr uint32_t kVarint = 0, kFixed64 = 1, kDelimited = 2, kFixed32 = 5;

// The helpers are always inlined: an attribute's key is a literal, so its length and bytes become
// constants and the key costs a few stores instead of a memcpy call and size arithmetic.

// A length-delimited field: tag, length, payload.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t DelimitedSize(size_t payload) {
  return 1 + VarintSize(payload) + payload;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutRaw(char* p, absl::string_view bytes) {
  std::memcpy(p, bytes.data(), bytes.size());
  return p + bytes.size();
}
// Tag and length of a length-delimited field whose payload follows.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutDelimitedHead(char* p, uint32_t field,
                                                           size_t payload) {
  *p++ = Tag(field, kDelimited);
  return PutVarint(p, payload);
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutBytes(char* p, uint32_t field,
                                                   absl::string_view bytes) {
  return PutRaw(PutDelimitedHead(p, field, bytes.size()), bytes);
}
char* PutFixed64(char* p, uint32_t field, uint64_t value) {
  *p++ = Tag(field, kFixed64);
  if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap64(value);
  std::memcpy(p, &value, sizeof(value));  // little-endian on the wire
  return p + sizeof(value);
}
// Field 16, fixed32: the tag (16 << 3 | 5 = 0x85) as a two-byte varint, then the value.
constexpr size_t kFixed32Field16Size = 2 + 4;
char* PutFixed32Field16(char* p, uint32_t value) {
  *p++ = static_cast<char>(0x80 | ((16 << 3 | kFixed32) & 0x7f));
  *p++ = static_cast<char>((16 << 3 | kFixed32) >> 7);
  if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap32(value);
  std::memcpy(p, &value, sizeof(value));  // little-endian on the wire
  return p + sizeof(value);
}
// Ids are bytes, most significant first.
char* PutBigEndian64(char* p, uint64_t value) {
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap64(value);
  std::memcpy(p, &value, sizeof(value));
  return p + sizeof(value);
}

// KeyValue { string key = 1; AnyValue value = 2; }
// AnyValue { string string_value = 1; int64 int_value = 3; }
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t StringAnySize(absl::string_view value) {
  return DelimitedSize(value.size());
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t IntAnySize(int64_t value) {
  return 1 + VarintSize(static_cast<uint64_t>(value));
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t KeyValueSize(absl::string_view key, size_t any) {
  return DelimitedSize(key.size()) + DelimitedSize(any);
}
// KeyValue's head (as field `field` of its parent) and its key, up to the AnyValue's payload.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutKeyValueHead(char* p, uint32_t field,
                                                          absl::string_view key, size_t any) {
  p = PutDelimitedHead(p, field, KeyValueSize(key, any));
  p = PutBytes(p, 1, key);
  return PutDelimitedHead(p, 2, any);
}
// Copies `n` (< 64) bytes without a call: overlapping 8- or 16-byte moves. Attribute values are
// mostly this short, and memcpy's call and size dispatch cost more than the copy itself.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutShortRaw(char* p, absl::string_view bytes) {
  const char* const from = bytes.data();
  const size_t n = bytes.size();
  auto move = [&](size_t at, auto word) {
    std::memcpy(&word, from + at, sizeof(word));
    std::memcpy(p + at, &word, sizeof(word));
  };
  struct Block16 {
    uint64_t a, b;
  };
  if (n >= 16) {
    for (size_t i = 0; i + 16 < n; i += 16) move(i, Block16{});
    move(n - 16, Block16{});
  } else if (n >= 8) {
    move(0, uint64_t{});
    move(n - 8, uint64_t{});
  } else if (n >= 4) {
    move(0, uint32_t{});
    move(n - 4, uint32_t{});
  } else {
    for (size_t i = 0; i < n; ++i) p[i] = from[i];
  }
  return p + n;
}

// Attribute keys are literals shorter than this: with a value shorter than kShortValue too, every
// length in the attribute is below 128 and takes one byte, so the common attribute is written
// with plain stores (no varint loops).
constexpr size_t kMaxKey = 32;
constexpr size_t kShortValue = 64;
static_assert(2 + kMaxKey + 2 + 2 + kShortValue < 128);

// A short KeyValue's head (as field `field` of its parent), its key and its AnyValue's head, for
// an AnyValue payload of `any` bytes (< 128 - 4 - kMaxKey); returns where the payload goes.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutShortKeyValueHead(char* p, uint32_t field,
                                                               absl::string_view key, size_t any) {
  DCHECK(key.size() < kMaxKey);
  p[0] = Tag(field, kDelimited);
  p[1] = static_cast<char>(2 + key.size() + 2 + any);
  p[2] = Tag(1, kDelimited);
  p[3] = static_cast<char>(key.size());
  p = PutRaw(p + 4, key);
  p[0] = Tag(2, kDelimited);
  p[1] = static_cast<char>(any);
  return p + 2;
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutStringAttribute(char* p, uint32_t field,
                                                             absl::string_view key,
                                                             absl::string_view value) {
  if (ABSL_PREDICT_FALSE(value.size() >= kShortValue)) {
    return PutBytes(PutKeyValueHead(p, field, key, StringAnySize(value)), 1, value);
  }
  p = PutShortKeyValueHead(p, field, key, 2 + value.size());
  p[0] = Tag(1, kDelimited);
  p[1] = static_cast<char>(value.size());
  return PutShortRaw(p + 2, value);
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutIntAttribute(char* p, uint32_t field,
                                                          absl::string_view key, int64_t value) {
  // At most 2 + kMaxKey + 2 + 11 bytes: every length takes one byte. The value goes first, so
  // its varint is walked once, and the heads in front of it are filled in after.
  char* const any = p + 2 + 2 + key.size() + 2;
  any[0] = Tag(3, kVarint);
  char* const end = PutVarint(any + 1, static_cast<uint64_t>(value));
  PutShortKeyValueHead(p, field, key, static_cast<size_t>(end - any));
  return end;
}

// The span's name without composing it: `name` when set, else the pieces of "METHOD path"
// (a request's span, of either kind) or "METHOD cluster" (an attempt's).
struct NameParts {
  absl::string_view whole;  // `name` when set; else method, ' ', target
  absl::string_view method;
  absl::string_view target;
  size_t size() const { return whole.empty() ? method.size() + 1 + target.size() : whole.size(); }
};
NameParts NameOf(const Span& span) {
  if (!span.name.empty()) return {span.name, {}, {}};
  return {{}, span.method, span.IsAttempt() ? span.cluster : span.path};
}

// Span { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
//        string name = 5; SpanKind kind = 6; fixed64 start_time_unix_nano = 7;
//        fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9; Status status = 15;
//        fixed32 flags = 16; }
// Status { string message = 2; StatusCode code = 3; }
size_t StatusSize(const Span& span) { return DelimitedSize(span.status_message.size()) + 2; }

size_t SpanSize(const Span& span) {
  size_t size = DelimitedSize(16) + DelimitedSize(8) + DelimitedSize(NameOf(span).size()) +
                2 /* kind */ + 2 * 9 /* times */ + kFixed32Field16Size /* flags */;
  if (!span.trace_state.empty()) size += DelimitedSize(span.trace_state.size());
  if (span.parent_span_id != 0) size += DelimitedSize(8);
  ForEachAttribute(
      span,
      [&](absl::string_view key, absl::string_view value) ABSL_ATTRIBUTE_ALWAYS_INLINE {
        size += DelimitedSize(KeyValueSize(key, StringAnySize(value)));
      },
      [&](absl::string_view key, int64_t value) ABSL_ATTRIBUTE_ALWAYS_INLINE {
        size += DelimitedSize(KeyValueSize(key, IntAnySize(value)));
      });
  if (span.error) size += DelimitedSize(StatusSize(span));
  return size;
}

char* PutSpan(char* p, const Span& span) {
  p = PutDelimitedHead(p, 1, 16);
  p = PutBigEndian64(p, span.trace_id.high);
  p = PutBigEndian64(p, span.trace_id.low);
  p = PutDelimitedHead(p, 2, 8);
  p = PutBigEndian64(p, span.span_id);
  if (!span.trace_state.empty()) p = PutBytes(p, 3, span.trace_state);
  if (span.parent_span_id != 0) {
    p = PutDelimitedHead(p, 4, 8);
    p = PutBigEndian64(p, span.parent_span_id);
  }
  const NameParts name = NameOf(span);
  p = PutDelimitedHead(p, 5, name.size());
  if (!name.whole.empty()) {
    p = PutRaw(p, name.whole);
  } else {
    p = PutRaw(p, name.method);
    *p++ = ' ';
    p = PutRaw(p, name.target);
  }
  // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3.
  *p++ = Tag(6, kVarint);
  *p++ = span.kind == SpanKind::kServer ? 2 : 3;
  p = PutFixed64(p, 7, static_cast<uint64_t>(span.start_ns));
  p = PutFixed64(p, 8, static_cast<uint64_t>(span.end_ns));
  ForEachAttribute(
      span,
      [&](absl::string_view key, absl::string_view value)
          ABSL_ATTRIBUTE_ALWAYS_INLINE { p = PutStringAttribute(p, 9, key, value); },
      [&](absl::string_view key, int64_t value)
          ABSL_ATTRIBUTE_ALWAYS_INLINE { p = PutIntAttribute(p, 9, key, value); });
  if (span.error) {
    // STATUS_CODE_ERROR = 2.
    p = PutDelimitedHead(p, 15, StatusSize(span));
    p = PutBytes(p, 2, span.status_message);
    *p++ = Tag(3, kVarint);
    *p++ = 2;
  }
  return PutFixed32Field16(p, OtlpSpanFlags(span));
}

// ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
// ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
// Resource { repeated KeyValue attributes = 1; }
// ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
// InstrumentationScope { string name = 1; }
constexpr absl::string_view kServiceNameKey = "service.name";
constexpr absl::string_view kServiceInstanceKey = "service.instance.id";
constexpr absl::string_view kScopeName = "meshlet";

// The span's name as a JSON string, from its pieces (nothing composed).
void AppendJsonName(std::string* out, const Span& span) {
  const NameParts name = NameOf(span);
  out->push_back('"');
  if (!name.whole.empty()) {
    AppendJsonEscaped(out, name.whole);
  } else {
    AppendJsonEscaped(out, name.method);
    out->push_back(' ');
    AppendJsonEscaped(out, name.target);
  }
  out->push_back('"');
}

// A span object's opening: `{"traceId":"…` then its id, its parent's (when it has one) and its
// name, the ids' keys as the format names them (each written with its surrounding punctuation).
void AppendJsonSpanHead(std::string* out, const Span& span, absl::string_view id_key,
                        absl::string_view parent_key) {
  out->append(R"({"traceId":")");
  AppendTraceIdHex(out, span.trace_id);
  out->append(id_key.data(), id_key.size());
  AppendHex64(out, span.span_id);
  out->push_back('"');
  if (span.parent_span_id != 0) {
    out->append(parent_key.data(), parent_key.size());
    AppendHex64(out, span.parent_span_id);
    out->push_back('"');
  }
  out->append(R"(,"name":)");
  AppendJsonName(out, span);
}

// One span of OTLP JSON's "spans" list.
void AppendOtlpJsonSpan(std::string* out, const Span& span) {
  AppendJsonSpanHead(out, span, R"(","spanId":")", R"(,"parentSpanId":")");
  if (!span.trace_state.empty()) {
    out->append(R"(,"traceState":)");
    AppendJsonString(out, span.trace_state);
  }
  // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3; flags is a fixed32, a JSON number.
  absl::StrAppend(out, R"(,"flags":)", OtlpSpanFlags(span), R"(,"kind":)",
                  span.kind == SpanKind::kServer ? 2 : 3, R"(,"startTimeUnixNano":")",
                  span.start_ns, R"(","endTimeUnixNano":")", span.end_ns, R"(","attributes":[)");
  bool first_attr = true;
  auto comma = [&] {
    if (!first_attr) out->push_back(',');
    first_attr = false;
  };
  ForEachAttribute(
      span,
      [&](absl::string_view key, absl::string_view value) {
        comma();
        out->append(R"({"key":)");
        AppendJsonString(out, key);
        out->append(R"(,"value":{"stringValue":)");
        AppendJsonString(out, value);
        out->append("}}");
      },
      [&](absl::string_view key, int64_t value) {
        comma();
        out->append(R"({"key":)");
        AppendJsonString(out, key);
        absl::StrAppend(out, R"(,"value":{"intValue":")", value, "\"}}");
      });
  out->append("]");
  // STATUS_CODE_ERROR = 2; unset otherwise (OpenTelemetry leaves OK to applications).
  if (span.error) {
    out->append(R"(,"status":{"code":2,"message":)");
    AppendJsonString(out, span.status_message);
    out->append("}");
  }
  out->append("}");
}

// One span of a Zipkin v2 list. Zipkin's model has no tracestate and no trace flags (a span is
// exported only when sampled), so neither is sent.
void AppendZipkinSpan(std::string* out, const Span& span, absl::string_view service_name) {
  AppendJsonSpanHead(out, span, R"(","id":")", R"(,"parentId":")");
  // Zipkin counts microseconds (rounded down, as absl::ToUnixMicros does).
  constexpr int64_t kNanosPerMicro = 1000;
  const int64_t start_us = FloorDiv(span.start_ns, kNanosPerMicro);
  const int64_t duration_us =
      std::max<int64_t>(FloorDiv(span.end_ns, kNanosPerMicro) - start_us, 1);
  absl::StrAppend(out, R"(,"kind":")", span.kind == SpanKind::kServer ? "SERVER" : "CLIENT",
                  R"(","timestamp":)", start_us, R"(,"duration":)", duration_us,
                  R"(,"localEndpoint":{"serviceName":)");
  AppendJsonString(out, service_name);
  out->push_back('}');
  // The service called, as Zipkin's dependency linker and servicegraph tools read a CLIENT span.
  if (!span.peer_service.empty()) {
    out->append(R"(,"remoteEndpoint":{"serviceName":)");
    AppendJsonString(out, span.peer_service);
    out->push_back('}');
  }
  out->append(R"(,"tags":{)");
  bool first_tag = true;
  auto tag = [&](absl::string_view key, absl::string_view value) {
    if (!first_tag) out->push_back(',');
    first_tag = false;
    AppendJsonString(out, key);
    out->push_back(':');
    AppendJsonString(out, value);
  };
  ForEachAttribute(span, tag, [&](absl::string_view key, int64_t value) {
    char digits[32];
    const char* end = absl::numbers_internal::FastIntToBuffer(value, digits);
    tag(key, absl::string_view(digits, static_cast<size_t>(end - digits)));
  });
  if (span.error) tag("error", span.status_message.empty() ? "true" : span.status_message);
  out->append("}}");
}

// At least SpanSize(span), from the strings' lengths alone (no pass over the attributes): every
// head at its widest (tag and a 10-byte varint), every attribute key at its longest.
size_t MaxSpanSize(const Span& span) {
  constexpr size_t kHead = 11;
  constexpr size_t kAttributes = 41;                  // ForEachAttribute's
  constexpr size_t kAttribute = 4 * kHead + kMaxKey;  // KeyValue, key, AnyValue, value
  return 5 * kHead + 16 + 8 + 8 + 2 + 2 * 9 + kFixed32Field16Size + span.trace_state.size() +
         NameOf(span).size() + 3 * kHead + span.status_message.size() + kAttributes * kAttribute +
         span.method.size() + span.path.size() + span.protocol.size() + span.peer_identity.size() +
         span.direction.size() + span.shed_reason.size() + span.discovery.size() +
         span.route.size() + span.cluster.size() + span.endpoint.size() + span.server_host.size() +
         span.peer_service.size() + span.response_flags.size() + span.request_id.size() +
         span.error_reason.size() + span.policy_route.size() + span.gateway_listener.size() +
         span.subset.size() + span.policy_traffic.size() + span.authz.size() +
         span.policy_authz.size() + span.attempts.size() + span.timeout_origin.size() +
         span.policy_timeout.size() + span.policy_per_try.size() + span.policy_destination.size() +
         span.policy_rate_limit.size();
}

// One span as a ScopeSpans.spans field (tag, length, Span), written in one pass: the Span goes
// after room for the usual head (a tag and a two-byte length: sizes of 128 B to 16 KiB) and
// moves only when its length needs another number of bytes.
void AppendOtlpProtoSpan(SpanBytes* out, const Span& span) {
  constexpr size_t kRoom = 3;
  const size_t used = out->size();
  char* const start = out->Extend(kRoom + MaxSpanSize(span) + 8);
  char* const body = start + kRoom;
  const size_t size = static_cast<size_t>(PutSpan(body, span) - body);
  DCHECK(size == SpanSize(span) && size <= MaxSpanSize(span));
  const size_t head = 1 + VarintSize(size);
  if (head != kRoom) std::memmove(start + head, body, size);  // 1 byte either way, rarely
  PutDelimitedHead(start, 2, size);
  out->Resize(used + head + size);
}

}  // namespace

SpanBatchEncoder::SpanBatchEncoder(ExportProtocol protocol, std::string service_name,
                                   std::string service_instance_id)
    : protocol_(protocol),
      service_name_(std::move(service_name)),
      service_instance_id_(std::move(service_instance_id)) {
  switch (protocol_) {
    case ExportProtocol::kOtlpJson:
      prefix_ =
          R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":)";
      AppendJsonString(&prefix_, service_name_);
      if (!service_instance_id_.empty()) {
        prefix_.append(R"(}},{"key":"service.instance.id","value":{"stringValue":)");
        AppendJsonString(&prefix_, service_instance_id_);
      }
      prefix_.append(R"(}}]},"scopeSpans":[{"scope":{"name":"meshlet"},"spans":[)");
      suffix_ = "]}]}]}";
      break;
    case ExportProtocol::kZipkin:
      prefix_ = "[";
      suffix_ = "]";
      break;
    case ExportProtocol::kOtlpProto:
    case ExportProtocol::kOtlpGrpc:
      break;  // the prefix depends on the spans' size: Frame()
  }
}

void SpanBatchEncoder::Add(const Span& span) {
  switch (protocol_) {
    case ExportProtocol::kOtlpJson:
      json_.clear();
      AppendOtlpJsonSpan(&json_, span);
      json_.push_back(',');
      spans_.Append(json_);
      break;
    case ExportProtocol::kZipkin:
      json_.clear();
      AppendZipkinSpan(&json_, span, service_name_);
      json_.push_back(',');
      spans_.Append(json_);
      break;
    case ExportProtocol::kOtlpProto:
    case ExportProtocol::kOtlpGrpc:
      AppendOtlpProtoSpan(&spans_, span);
      break;
  }
  ends_.push_back(spans_.size());
}

void SpanBatchEncoder::Detach(size_t count, Batch* batch) {
  count = std::min(count, ends_.size());
  batch->spans = count;
  batch->bytes.Clear();
  if (count == ends_.size()) {
    // The common case: everything goes. The batch's old buffer becomes the encoder's.
    batch->bytes.Swap(spans_);
    ends_.clear();
    return;
  }
  if (count == 0) return;
  const size_t moved = ends_[count - 1];
  batch->bytes.Append(spans_.view(moved));
  spans_.EraseFront(moved);
  ends_.erase(ends_.begin(), ends_.begin() + static_cast<ptrdiff_t>(count));
  for (size_t& end : ends_) end -= moved;
}

SpanBatchEncoder::Body SpanBatchEncoder::Frame(Batch& batch) const {
  const size_t span_bytes = batch.bytes.size();
  if (!IsProtobuf()) {
    // Without the last span's comma.
    return Body{prefix_, batch.bytes.view(span_bytes == 0 ? 0 : span_bytes - 1), suffix_};
  }
  // ExportTraceServiceRequest { ResourceSpans { Resource, ScopeSpans { scope, spans... } } }.
  const bool instance = !service_instance_id_.empty();
  const size_t resource =
      DelimitedSize(KeyValueSize(kServiceNameKey, StringAnySize(service_name_))) +
      (instance
           ? DelimitedSize(KeyValueSize(kServiceInstanceKey, StringAnySize(service_instance_id_)))
           : 0);
  const size_t scope_spans = DelimitedSize(DelimitedSize(kScopeName.size())) + span_bytes;
  const size_t resource_spans = DelimitedSize(resource) + DelimitedSize(scope_spans);
  std::string& prefix = batch.prefix;
  // Heads (varints of at most 10 bytes), the resource's attributes, the scope.
  prefix.resize(96 + service_name_.size() + service_instance_id_.size());
  char* p = prefix.data();
  p = PutDelimitedHead(p, 1, resource_spans);
  p = PutDelimitedHead(p, 1, resource);
  p = PutStringAttribute(p, 1, kServiceNameKey, service_name_);
  if (instance) p = PutStringAttribute(p, 1, kServiceInstanceKey, service_instance_id_);
  p = PutDelimitedHead(p, 2, scope_spans);
  p = PutDelimitedHead(p, 1, DelimitedSize(kScopeName.size()));
  p = PutBytes(p, 1, kScopeName);
  prefix.resize(static_cast<size_t>(p - prefix.data()));
  return Body{prefix, batch.bytes.view(span_bytes), {}};
}

absl::string_view SpanBatchEncoder::content_type() const {
  switch (protocol_) {
    case ExportProtocol::kOtlpProto:
      return "application/x-protobuf";
    case ExportProtocol::kOtlpGrpc:
      return "application/grpc";
    case ExportProtocol::kOtlpJson:
    case ExportProtocol::kZipkin:
      break;
  }
  return "application/json";
}

void SpanBatchEncoder::Shrink(size_t keep, Batch* batch) {
  if (ends_.empty() && spans_.capacity() > keep) {
    spans_.Release();
    std::vector<size_t>().swap(ends_);
  }
  if (batch->bytes.size() == 0 && batch->bytes.capacity() > keep) batch->bytes.Release();
}

void SpanBytes::Append(absl::string_view bytes) {
  if (bytes.empty()) return;
  std::memcpy(Extend(bytes.size()), bytes.data(), bytes.size());
}

void SpanBytes::Resize(size_t n) {
  DCHECK(n <= size_);
  size_ = std::min(n, size_);
}

void SpanBytes::EraseFront(size_t n) {
  n = std::min(n, size_);
  std::memmove(data_.get(), data_.get() + n, size_ - n);
  size_ -= n;
}

void SpanBytes::Release() {
  data_.reset();
  size_ = 0;
  capacity_ = 0;
}

void SpanBytes::Swap(SpanBytes& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  std::swap(capacity_, other.capacity_);
}

void SpanBytes::Grow(size_t needed) {
  const size_t capacity = std::max({needed, 2 * capacity_, size_t{4096}});
  std::unique_ptr<char[]> grown(new char[capacity]);  // uninitialised: written before read
  if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
  data_ = std::move(grown);
  capacity_ = capacity;
}

void EncodeSpans(ExportProtocol protocol, SpanBatch spans, absl::string_view service_name,
                 std::string* out, absl::string_view service_instance_id) {
  SpanBatchEncoder encoder(protocol, std::string(service_name), std::string(service_instance_id));
  for (const Span* span : spans) encoder.Add(*span);
  SpanBatchEncoder::Batch batch;
  encoder.Detach(encoder.size(), &batch);
  const SpanBatchEncoder::Body body = encoder.Frame(batch);
  out->append(body.prefix.data(), body.prefix.size());
  out->append(body.spans.data(), body.spans.size());
  out->append(body.suffix.data(), body.suffix.size());
}

}  // namespace meshlet::sidecar::tracing
