#pragma once

// Export bodies for a batch of spans from one service:
// - OTLP/HTTP JSON: an ExportTraceServiceRequest in the OTLP JSON mapping (ids as hex strings,
//   64-bit integers as decimal strings, enum values as numbers);
// - OTLP/HTTP protobuf: the same message in protobuf wire format, written directly (the subset of
//   opentelemetry/proto/trace/v1 meshlet fills; field numbers in span_encoding.cc);
// - Zipkin v2 JSON: a list of spans (microsecond timestamps, tags as strings).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::tracing {

// The spans of a batch, as the exporter holds them.
using SpanBatch = absl::Span<const Span* const>;

void EncodeOtlpJson(SpanBatch spans, absl::string_view service_name, std::string* out);
void EncodeOtlpProto(SpanBatch spans, absl::string_view service_name, std::string* out);
// OTLP protobuf into memory the caller provides (the exporter reuses one buffer, never
// zero-filled): Size() lays the message out and says how many bytes it takes; Write() then writes
// exactly those bytes at `out`, for the same spans, and returns the end.
class OtlpProtoEncoder {
 public:
  size_t Size(SpanBatch spans, absl::string_view service_name);
  char* Write(SpanBatch spans, char* out) const;

 private:
  absl::string_view service_name_;
  std::vector<uint32_t> span_sizes_;
  size_t resource_ = 0;
  size_t scope_spans_ = 0;
  size_t resource_spans_ = 0;
};
void EncodeZipkinJson(SpanBatch spans, absl::string_view service_name, std::string* out);

}  // namespace meshlet::sidecar::tracing
