#pragma once

// Request-body parsers for the collector's receivers: OTLP/HTTP trace export (protobuf and
// JSON) and Zipkin v2 JSON. Each turns one request body into SpanRecords or says what was wrong,
// naming the field ("resourceSpans[0].scopeSpans[0].spans[2].traceId: must be 32 hex digits,
// not all zero"). A request with one bad span is refused whole, so a sender sees the error
// instead of a silently partial trace.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

absl::StatusOr<std::vector<SpanRecord>> ParseOtlpProtobuf(absl::string_view body);

// The spans of one resource of an OTLP protobuf export, with the resource's `service.instance.id`
// ("" when it has none): the OTLP/gRPC export on the discovery port, where that names the sender's
// node.
struct OtlpResourceSpans {
  std::string service_instance_id;
  std::vector<SpanRecord> spans;
};
absl::StatusOr<std::vector<OtlpResourceSpans>> ParseOtlpProtobufResources(absl::string_view body);
absl::StatusOr<std::vector<SpanRecord>> ParseOtlpJson(absl::string_view body);
absl::StatusOr<std::vector<SpanRecord>> ParseZipkinJson(absl::string_view body);

}  // namespace meshlet::controlplane::telemetry
