#include "sidecar/tracing/span_encoding.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace meshlet::sidecar::tracing {
namespace {

bool NeedsEscape(char c) { return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20; }

void AppendJsonString(std::string* out, absl::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  // Most values need no escaping: one append.
  if (std::none_of(text.begin(), text.end(), NeedsEscape)) {
    out->append(text.data(), text.size());
    out->push_back('"');
    return;
  }
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20) {
      out->append("\\u00");
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 0xf]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

void AppendHex64(std::string* out, uint64_t value) {
  char hex[16];
  FormatHex64(value, hex);
  out->append(hex, sizeof(hex));
}

void AppendTraceIdHex(std::string* out, const TraceId& id) {
  AppendHex64(out, id.high);
  AppendHex64(out, id.low);
}

int64_t UnixNanos(absl::Time t) { return absl::ToUnixNanos(t); }
int64_t UnixMicros(absl::Time t) { return absl::ToUnixMicros(t); }

// --- protobuf wire format ---------------------------------------------------------------------
//
// Writers store through a cursor into a buffer sized beforehand with a bound (each Put* below
// states its own), so encoding costs plain stores rather than a string append per field.

constexpr size_t kMaxVarint = 10;

void PutVarint(char*& p, uint64_t value) {
  while (value >= 0x80) {
    *p++ = static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  *p++ = static_cast<char>(value);
}
void PutTag(char*& p, uint32_t field, uint32_t wire_type) {
  PutVarint(p, (static_cast<uint64_t>(field) << 3) | wire_type);
}
// At most 2 + kMaxVarint + bytes.size() (fields here are below 16: one-byte tags).
void PutBytes(char*& p, uint32_t field, absl::string_view bytes) {
  PutTag(p, field, 2);
  PutVarint(p, bytes.size());
  std::memcpy(p, bytes.data(), bytes.size());
  p += bytes.size();
}
void PutFixed64(char*& p, uint32_t field, uint64_t value) {
  PutTag(p, field, 1);
  for (int i = 0; i < 8; ++i) *p++ = static_cast<char>((value >> (8 * i)) & 0xff);
}
void PutVarintField(char*& p, uint32_t field, uint64_t value) {
  PutTag(p, field, 0);
  PutVarint(p, value);
}
void PutBigEndian64(char* out, uint64_t value) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
}

// KeyValue { string key = 1; AnyValue value = 2; }
// AnyValue { string string_value = 1; int64 int_value = 3; }
size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}
// A length-delimited field's size: tag (one byte for the fields used here) + length + payload.
size_t DelimitedSize(size_t payload) { return 1 + VarintSize(payload) + payload; }
// Bound on what one attribute takes (tags, lengths, an int's varint), beyond key and value.
constexpr size_t kAttributeOverhead = 6 + 5 * kMaxVarint;

// Sizes are computed first so the nested messages are written in place, without temporaries.
void PutStringAttribute(char*& p, uint32_t field, absl::string_view key, absl::string_view value) {
  const size_t any = DelimitedSize(value.size());
  PutTag(p, field, 2);
  PutVarint(p, DelimitedSize(key.size()) + DelimitedSize(any));
  PutBytes(p, 1, key);
  PutTag(p, 2, 2);
  PutVarint(p, any);
  PutBytes(p, 1, value);
}
void PutIntAttribute(char*& p, uint32_t field, absl::string_view key, int64_t value) {
  const size_t any = 1 + VarintSize(static_cast<uint64_t>(value));
  PutTag(p, field, 2);
  PutVarint(p, DelimitedSize(key.size()) + DelimitedSize(any));
  PutBytes(p, 1, key);
  PutTag(p, 2, 2);
  PutVarint(p, any);
  PutVarintField(p, 3, static_cast<uint64_t>(value));
}

// Sizes `buffer` to `bound` more bytes, lets `write` fill them through a cursor, and trims it to
// what was written.
template <typename Write>
void WriteBounded(std::string* buffer, size_t bound, Write&& write) {
  const size_t used = buffer->size();
  buffer->resize(used + bound);
  char* const begin = buffer->data() + used;
  char* p = begin;
  write(p);
  buffer->resize(used + static_cast<size_t>(p - begin));
}

}  // namespace

void EncodeOtlpJson(const std::vector<Span>& spans, absl::string_view service_name,
                    std::string* out) {
  out->reserve(out->size() + 256 + spans.size() * 900);
  out->append(
      R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":)");
  AppendJsonString(out, service_name);
  out->append(R"(}}]},"scopeSpans":[{"scope":{"name":"meshlet"},"spans":[)");
  bool first = true;
  std::string name_scratch;
  for (const Span& span : spans) {
    if (!first) out->push_back(',');
    first = false;
    out->append(R"({"traceId":")");
    AppendTraceIdHex(out, span.trace_id);
    out->append(R"(","spanId":")");
    AppendHex64(out, span.span_id);
    out->push_back('"');
    if (span.parent_span_id != 0) {
      out->append(R"(,"parentSpanId":")");
      AppendHex64(out, span.parent_span_id);
      out->push_back('"');
    }
    out->append(R"(,"name":)");
    AppendJsonString(out, SpanName(span, &name_scratch));
    // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3.
    absl::StrAppend(out, R"(,"kind":)", span.kind == SpanKind::kServer ? 2 : 3,
                    R"(,"startTimeUnixNano":")", UnixNanos(span.start), R"(","endTimeUnixNano":")",
                    UnixNanos(span.end), R"(","attributes":[)");
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
  out->append("]}]}]}");
}

void EncodeOtlpProto(const std::vector<Span>& spans, absl::string_view service_name,
                     std::string* out) {
  // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
  // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
  // Resource { repeated KeyValue attributes = 1; }
  // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
  // InstrumentationScope { string name = 1; }
  // Span { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4; string name = 5;
  //        SpanKind kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  //        repeated KeyValue attributes = 9; Status status = 15; }
  // Status { string message = 2; StatusCode code = 3; }
  constexpr absl::string_view kServiceName = "service.name";
  constexpr absl::string_view kScope = "meshlet";
  std::string resource;
  WriteBounded(&resource, kServiceName.size() + service_name.size() + kAttributeOverhead,
               [&](char*& p) { PutStringAttribute(p, 1, kServiceName, service_name); });
  std::string scope;
  WriteBounded(&scope, 2 + kMaxVarint + kScope.size(), [&](char*& p) { PutBytes(p, 1, kScope); });
  // The spans are written once, through a cursor, into a buffer sized beforehand from each
  // span's bound (not zero-filled); the enclosing messages' headers, known once the spans are
  // written, go right in front of them, and the whole is appended to `out` in one copy.
  std::string name_scratch;
  auto span_bound = [&](const Span& span, absl::string_view name) {
    // Ids, kind and times take at most 3 * 18 + 2 + 2 * 9; the rest is bounded per field.
    size_t bound = 2 + kMaxVarint + 80 + 2 + kMaxVarint + name.size() + 4 + 2 * kMaxVarint +
                   span.status_message.size();
    ForEachAttribute(
        span,
        [&](absl::string_view key, absl::string_view value) {
          bound += key.size() + value.size() + kAttributeOverhead;
        },
        [&](absl::string_view key, int64_t) { bound += key.size() + kAttributeOverhead; });
    return bound;
  };
  size_t spans_bound = 0;
  for (const Span& span : spans) spans_bound += span_bound(span, SpanName(span, &name_scratch));
  const size_t head_room = 5 + 5 * kMaxVarint + resource.size() + scope.size();
  std::unique_ptr<char[]> buffer(new char[head_room + spans_bound]);
  char* const spans_begin = buffer.get() + head_room;
  char* p = spans_begin;
  for (const Span& span : spans) {
    const absl::string_view name = SpanName(span, &name_scratch);
    // The span's own length goes in front; it is known once the span is written, so the span is
    // written after room for the longest length and moved back over the gap.
    PutTag(p, 2, 2);
    char* const length_at = p;
    p += kMaxVarint;
    char* const body = p;
    char id[16];
    PutBigEndian64(id, span.trace_id.high);
    PutBigEndian64(id + 8, span.trace_id.low);
    PutBytes(p, 1, absl::string_view(id, 16));
    PutBigEndian64(id, span.span_id);
    PutBytes(p, 2, absl::string_view(id, 8));
    if (span.parent_span_id != 0) {
      PutBigEndian64(id, span.parent_span_id);
      PutBytes(p, 4, absl::string_view(id, 8));
    }
    PutBytes(p, 5, name);
    PutVarintField(p, 6, span.kind == SpanKind::kServer ? 2 : 3);
    PutFixed64(p, 7, static_cast<uint64_t>(UnixNanos(span.start)));
    PutFixed64(p, 8, static_cast<uint64_t>(UnixNanos(span.end)));
    ForEachAttribute(
        span,
        [&](absl::string_view key, absl::string_view value) {
          PutStringAttribute(p, 9, key, value);
        },
        [&](absl::string_view key, int64_t value) { PutIntAttribute(p, 9, key, value); });
    if (span.error) {
      PutTag(p, 15, 2);
      PutVarint(p, DelimitedSize(span.status_message.size()) + 2);
      PutBytes(p, 2, span.status_message);
      PutVarintField(p, 3, 2);
    }
    const size_t body_size = static_cast<size_t>(p - body);
    char* q = length_at;
    PutVarint(q, body_size);
    std::memmove(q, body, body_size);
    p = q + body_size;
  }
  const size_t spans_size = static_cast<size_t>(p - spans_begin);
  const size_t scope_spans_size = DelimitedSize(scope.size()) + spans_size;
  const size_t resource_spans_size =
      DelimitedSize(resource.size()) + (1 + VarintSize(scope_spans_size)) + scope_spans_size;
  std::string head;
  WriteBounded(&head, head_room, [&](char*& h) {
    PutTag(h, 1, 2);
    PutVarint(h, resource_spans_size);
    PutBytes(h, 1, resource);
    PutTag(h, 2, 2);
    PutVarint(h, scope_spans_size);
    PutBytes(h, 1, scope);
  });
  char* const message = spans_begin - head.size();
  std::memcpy(message, head.data(), head.size());
  out->append(message, head.size() + spans_size);
}

void EncodeZipkinJson(const std::vector<Span>& spans, absl::string_view service_name,
                      std::string* out) {
  out->reserve(out->size() + 2 + spans.size() * 700);
  out->push_back('[');
  bool first = true;
  std::string name_scratch;
  for (const Span& span : spans) {
    if (!first) out->push_back(',');
    first = false;
    out->append(R"({"traceId":")");
    AppendTraceIdHex(out, span.trace_id);
    out->append(R"(","id":")");
    AppendHex64(out, span.span_id);
    out->push_back('"');
    if (span.parent_span_id != 0) {
      out->append(R"(,"parentId":")");
      AppendHex64(out, span.parent_span_id);
      out->push_back('"');
    }
    out->append(R"(,"name":)");
    AppendJsonString(out, SpanName(span, &name_scratch));
    const int64_t start_us = UnixMicros(span.start);
    const int64_t duration_us = std::max<int64_t>(UnixMicros(span.end) - start_us, 1);
    absl::StrAppend(out, R"(,"kind":")", span.kind == SpanKind::kServer ? "SERVER" : "CLIENT",
                    R"(","timestamp":)", start_us, R"(,"duration":)", duration_us,
                    R"(,"localEndpoint":{"serviceName":)");
    AppendJsonString(out, service_name);
    out->append(R"(},"tags":{)");
    bool first_tag = true;
    auto tag = [&](absl::string_view key, absl::string_view value) {
      if (!first_tag) out->push_back(',');
      first_tag = false;
      AppendJsonString(out, key);
      out->push_back(':');
      AppendJsonString(out, value);
    };
    ForEachAttribute(span, tag,
                     [&](absl::string_view key, int64_t value) { tag(key, absl::StrCat(value)); });
    if (span.error) tag("error", span.status_message.empty() ? "true" : span.status_message);
    out->append("}}");
  }
  out->push_back(']');
}

}  // namespace meshlet::sidecar::tracing
