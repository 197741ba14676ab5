#pragma once

// Export bodies for a batch of spans from one service:
// - OTLP/HTTP JSON: an ExportTraceServiceRequest in the OTLP JSON mapping (ids as hex strings,
//   64-bit integers as decimal strings, enum values as numbers);
// - OTLP/HTTP protobuf: the same message in protobuf wire format, written directly (the subset of
//   opentelemetry/proto/trace/v1 meshlet fills; field numbers in span_encoding.cc);
// - Zipkin v2 JSON: a list of spans (microsecond timestamps, tags as strings).
// Spans are encoded on the worker that recorded them, when they end (SpanBatchEncoder).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sidecar/tracing/span.h"
#include "sidecar/tracing/tracing_config.h"

namespace meshlet::sidecar::tracing {

// The spans of a batch, as tests and benchmarks hold them.
using SpanBatch = absl::Span<const Span* const>;

// Encodes spans one at a time, as they end, into one growing buffer (the span can be reused at
// once), and frames the first N of them as one export body: a prefix, the spans' bytes as they
// are, a suffix. The exporter sends those three pieces; nothing is encoded twice or moved to
// make room for lengths (the protobuf prefix carries the lengths of the spans that follow it).
class SpanBatchEncoder {
 public:
  SpanBatchEncoder(ExportProtocol protocol, std::string service_name);

  void Add(const Span& span);
  // Spans held, and their encoded bytes.
  size_t size() const { return ends_.size(); }
  size_t bytes() const { return spans_.size(); }

  struct Body {
    absl::string_view prefix;
    absl::string_view spans;
    absl::string_view suffix;
    size_t size() const { return prefix.size() + spans.size() + suffix.size(); }
  };
  // The export body of the first `count` spans (0..size()); valid until the next call.
  Body Frame(size_t count);
  // Forgets the first `count` spans (sent, or dropped).
  void Drop(size_t count);
  absl::string_view content_type() const;
  // Releases the buffer when it grew past `keep` bytes (after a burst), else keeps it.
  void Shrink(size_t keep);

 private:
  const ExportProtocol protocol_;
  const std::string service_name_;
  std::string spans_;         // encoded spans, JSON ones each followed by a comma
  std::vector<size_t> ends_;  // where each span's bytes end in spans_ (comma included)
  std::string prefix_;
  std::string suffix_;
};

// One body for a whole batch (tests, benchmarks), appended to `out`.
void EncodeSpans(ExportProtocol protocol, SpanBatch spans, absl::string_view service_name,
                 std::string* out);
inline void EncodeOtlpJson(SpanBatch spans, absl::string_view service_name, std::string* out) {
  EncodeSpans(ExportProtocol::kOtlpJson, spans, service_name, out);
}
inline void EncodeOtlpProto(SpanBatch spans, absl::string_view service_name, std::string* out) {
  EncodeSpans(ExportProtocol::kOtlpProto, spans, service_name, out);
}
inline void EncodeZipkinJson(SpanBatch spans, absl::string_view service_name, std::string* out) {
  EncodeSpans(ExportProtocol::kZipkin, spans, service_name, out);
}

}  // namespace meshlet::sidecar::tracing
