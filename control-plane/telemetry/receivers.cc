#include "control-plane/telemetry/receivers.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "control-plane/telemetry/otlp_trace.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::telemetry {
namespace {

namespace otlp = ::meshlet::telemetry::otlp;

constexpr int32_t kStatusCodeError = 2;

bool IsAllZero(absl::string_view hex) {
  return std::all_of(hex.begin(), hex.end(), [](char c) { return c == '0'; });
}

// Lowercase hex of `digits` digits, not all zero; Zipkin allows 16-digit trace ids, which are
// left-padded to 32 so both formats index the same way.
absl::StatusOr<std::string> NormalizeHexId(absl::string_view text, size_t digits,
                                           size_t short_digits, absl::string_view field) {
  const bool length_ok =
      text.size() == digits || (short_digits != 0 && text.size() == short_digits);
  const bool hex_ok =
      std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isxdigit(c); });
  if (!length_ok || !hex_ok || IsAllZero(text)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be ", digits, short_digits != 0 ? absl::StrCat(" or ", short_digits) : "",
        " hex digits, not all zero (got \"", absl::CEscape(text.substr(0, 40)), "\")"));
  }
  std::string out(digits - text.size(), '0');
  out += absl::AsciiStrToLower(text);
  return out;
}

absl::StatusOr<std::string> BinaryId(absl::string_view bytes, size_t size,
                                     absl::string_view field) {
  if (bytes.size() != size || IsAllZero(absl::BytesToHexString(bytes))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be ", size, " bytes, not all zero (got ", bytes.size(), " bytes)"));
  }
  return absl::BytesToHexString(bytes);
}

std::string AnyValueText(const otlp::AnyValue& value) {
  switch (value.value_case()) {
    case otlp::AnyValue::kStringValue:
      return value.string_value();
    case otlp::AnyValue::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case otlp::AnyValue::kIntValue:
      return absl::StrCat(value.int_value());
    case otlp::AnyValue::kDoubleValue:
      return absl::StrCat(value.double_value());
    case otlp::AnyValue::kBytesValue:
      return absl::BytesToHexString(value.bytes_value());
    case otlp::AnyValue::VALUE_NOT_SET:
      break;
  }
  return "";
}

// The resource attribute `key` as text; "" when the resource has none.
std::string ResourceAttribute(const otlp::Resource& resource, absl::string_view key) {
  for (const otlp::KeyValue& kv : resource.attributes()) {
    if (kv.key() == key) return AnyValueText(kv.value());
  }
  return "";
}

std::string ServiceName(const otlp::Resource& resource) {
  std::string name = ResourceAttribute(resource, "service.name");
  return name.empty() ? "unknown_service" : name;
}

// The fields both OTLP encodings share, once the ids are text.
absl::Status FillCommon(const std::string& path, int32_t kind, uint64_t start, uint64_t end,
                        const std::string& trace_state, uint32_t flags, const std::string& name,
                        const google::protobuf::RepeatedPtrField<otlp::KeyValue>& attributes,
                        const otlp::Status& status, SpanRecord& span) {
  if (start == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".startTimeUnixNano: missing"));
  }
  if (end < start) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".endTimeUnixNano: ", end, " is before startTimeUnixNano ", start));
  }
  if (start > static_cast<uint64_t>(INT64_MAX) || end > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".endTimeUnixNano: out of range"));
  }
  span.trace_state = trace_state;
  span.flags = flags;
  span.name = name;
  span.kind = kind >= 0 && kind <= 5 ? static_cast<SpanKind>(kind) : SpanKind::kUnspecified;
  span.start_unix_nanos = static_cast<int64_t>(start);
  span.end_unix_nanos = static_cast<int64_t>(end);
  span.error = status.code() == kStatusCodeError;
  span.status_message = status.message();
  span.attributes.reserve(attributes.size());
  for (const otlp::KeyValue& kv : attributes) {
    span.attributes.emplace_back(kv.key(), AnyValueText(kv.value()));
  }
  return absl::OkStatus();
}

template <typename Message>
absl::Status ParseJson(absl::string_view body, Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ", std::string(status.message())));
  }
  return absl::OkStatus();
}

// The spans of an OTLP export request, resource by resource. Both encodings have the same shape
// (resourceSpans → scopeSpans → spans) and differ only in how ids are written: `parse_id(id,
// bytes, field)` turns one into lowercase hex (bytes in protobuf, hex text in JSON).
template <typename Request, typename IdParser>
absl::StatusOr<std::vector<OtlpResourceSpans>> OtlpSpans(const Request& request,
                                                         const IdParser& parse_id) {
  std::vector<OtlpResourceSpans> out;
  out.reserve(request.resource_spans_size());
  for (int r = 0; r < request.resource_spans_size(); ++r) {
    const auto& resource_spans = request.resource_spans(r);
    const std::string service = ServiceName(resource_spans.resource());
    OtlpResourceSpans& resource = out.emplace_back();
    resource.service_instance_id =
        ResourceAttribute(resource_spans.resource(), "service.instance.id");
    for (int s = 0; s < resource_spans.scope_spans_size(); ++s) {
      const auto& scope = resource_spans.scope_spans(s);
      for (int i = 0; i < scope.spans_size(); ++i) {
        const auto& in = scope.spans(i);
        const std::string path =
            absl::StrCat("resourceSpans[", r, "].scopeSpans[", s, "].spans[", i, "]");
        SpanRecord span;
        span.service = service;
        absl::StatusOr<std::string> id = parse_id(in.trace_id(), 16, path + ".traceId");
        if (!id.ok()) return id.status();
        span.trace_id = *std::move(id);
        id = parse_id(in.span_id(), 8, path + ".spanId");
        if (!id.ok()) return id.status();
        span.span_id = *std::move(id);
        if (!in.parent_span_id().empty()) {
          id = parse_id(in.parent_span_id(), 8, path + ".parentSpanId");
          if (!id.ok()) return id.status();
          span.parent_span_id = *std::move(id);
        }
        if (absl::Status status = FillCommon(path, in.kind(), in.start_time_unix_nano(),
                                             in.end_time_unix_nano(), in.trace_state(), in.flags(),
                                             in.name(), in.attributes(), in.status(), span);
            !status.ok()) {
          return status;
        }
        resource.spans.push_back(std::move(span));
      }
    }
  }
  return out;
}

// Every resource's spans in one list, in order.
std::vector<SpanRecord> AllSpans(std::vector<OtlpResourceSpans> resources) {
  if (resources.size() == 1) return std::move(resources.front().spans);
  std::vector<SpanRecord> out;
  for (OtlpResourceSpans& resource : resources) {
    for (SpanRecord& span : resource.spans) out.push_back(std::move(span));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<OtlpResourceSpans>> ParseOtlpProtobufResources(absl::string_view body) {
  otlp::ExportTraceServiceRequest request;
  // A sender's bad string field (not UTF-8) is its error, answered below; protobuf would also log
  // it, one line per request, to the control plane's stderr.
  google::protobuf::LogSilencer quiet;
  if (!request.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return absl::InvalidArgumentError(
        "invalid protobuf: the body is not an OTLP ExportTraceServiceRequest");
  }
  return OtlpSpans(request, BinaryId);
}

absl::StatusOr<std::vector<SpanRecord>> ParseOtlpProtobuf(absl::string_view body) {
  absl::StatusOr<std::vector<OtlpResourceSpans>> resources = ParseOtlpProtobufResources(body);
  if (!resources.ok()) return resources.status();
  return AllSpans(*std::move(resources));
}

absl::StatusOr<std::vector<SpanRecord>> ParseOtlpJson(absl::string_view body) {
  otlp::JsonExportTraceServiceRequest request;
  if (absl::Status status = ParseJson(body, &request); !status.ok()) return status;
  absl::StatusOr<std::vector<OtlpResourceSpans>> resources =
      OtlpSpans(request, [](absl::string_view hex, size_t bytes, absl::string_view field) {
        return NormalizeHexId(hex, 2 * bytes, 0, field);
      });
  if (!resources.ok()) return resources.status();
  return AllSpans(*std::move(resources));
}

absl::StatusOr<std::vector<SpanRecord>> ParseZipkinJson(absl::string_view body) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(body);
  if (trimmed.empty() || trimmed.front() != '[') {
    return absl::InvalidArgumentError("invalid JSON: a Zipkin v2 body is a JSON array of spans");
  }
  otlp::ZipkinSpanList list;
  if (absl::Status status = ParseJson(absl::StrCat(R"({"spans":)", trimmed, "}"), &list);
      !status.ok()) {
    return status;
  }
  std::vector<SpanRecord> out;
  out.reserve(list.spans_size());
  for (int i = 0; i < list.spans_size(); ++i) {
    const otlp::ZipkinSpan& in = list.spans(i);
    const std::string path = absl::StrCat("[", i, "]");
    SpanRecord span;
    absl::StatusOr<std::string> id = NormalizeHexId(in.trace_id(), 32, 16, path + ".traceId");
    if (!id.ok()) return id.status();
    span.trace_id = *std::move(id);
    id = NormalizeHexId(in.id(), 16, 0, path + ".id");
    if (!id.ok()) return id.status();
    span.span_id = *std::move(id);
    if (!in.parent_id().empty()) {
      id = NormalizeHexId(in.parent_id(), 16, 0, path + ".parentId");
      if (!id.ok()) return id.status();
      span.parent_span_id = *std::move(id);
    }
    if (in.timestamp() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".timestamp: missing"));
    }
    constexpr uint64_t kMaxMicros = static_cast<uint64_t>(INT64_MAX) / 1000 / 2;
    if (in.timestamp() > kMaxMicros || in.duration() > kMaxMicros) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".timestamp: out of range"));
    }
    span.name = in.name();
    span.service = in.local_endpoint().service_name().empty() ? "unknown_service"
                                                              : in.local_endpoint().service_name();
    const std::string kind = absl::AsciiStrToUpper(in.kind());
    span.kind = kind == "SERVER"     ? SpanKind::kServer
                : kind == "CLIENT"   ? SpanKind::kClient
                : kind == "PRODUCER" ? SpanKind::kProducer
                : kind == "CONSUMER" ? SpanKind::kConsumer
                                     : SpanKind::kUnspecified;
    span.start_unix_nanos = static_cast<int64_t>(in.timestamp()) * 1000;
    span.end_unix_nanos = span.start_unix_nanos + static_cast<int64_t>(in.duration()) * 1000;
    // Map iteration order is unspecified: sort tags for stable output.
    std::vector<std::pair<std::string, std::string>> tags(in.tags().begin(), in.tags().end());
    std::sort(tags.begin(), tags.end());
    for (auto& [key, value] : tags) {
      // Zipkin marks failure with an "error" tag; keep it as the status message.
      if (key == "error") {
        span.error = true;
        span.status_message = value;
        continue;
      }
      span.attributes.emplace_back(std::move(key), std::move(value));
    }
    out.push_back(std::move(span));
  }
  return out;
}

}  // namespace meshlet::controlplane::telemetry
