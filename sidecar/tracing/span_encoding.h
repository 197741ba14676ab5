#pragma once

// Export bodies for a batch of spans from one service:
// - OTLP/HTTP JSON: an ExportTraceServiceRequest in the OTLP JSON mapping (ids as hex strings,
//   64-bit integers as decimal strings, enum values as numbers);
// - OTLP/HTTP protobuf: the same message in protobuf wire format, written directly (the subset of
//   opentelemetry/proto/trace/v1 meshlet fills; field numbers in span_encoding.cc);
// - Zipkin v2 JSON: a list of spans (microsecond timestamps, tags as strings).

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::tracing {

void EncodeOtlpJson(const std::vector<Span>& spans, absl::string_view service_name,
                    std::string* out);
void EncodeOtlpProto(const std::vector<Span>& spans, absl::string_view service_name,
                     std::string* out);
void EncodeZipkinJson(const std::vector<Span>& spans, absl::string_view service_name,
                      std::string* out);

}  // namespace meshlet::sidecar::tracing
