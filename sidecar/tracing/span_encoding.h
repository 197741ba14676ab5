#pragma once

// Export bodies for a batch of spans from one service:
// - OTLP/HTTP JSON: an ExportTraceServiceRequest in the OTLP JSON mapping (ids as hex strings,
//   64-bit integers as decimal strings, enum values as numbers);
// - OTLP/HTTP protobuf, and OTLP/gRPC's request message: the same message in protobuf wire format,
//   written directly (the subset of opentelemetry/proto/trace/v1 meshlet fills; field numbers in
//   span_encoding.cc);
// - Zipkin v2 JSON: a list of spans (microsecond timestamps, tags as strings).
// Spans are encoded on the worker that recorded them, when they end (SpanBatchEncoder).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sidecar/tracing/span.h"
#include "sidecar/tracing/tracing_config.h"

namespace meshlet::sidecar::tracing {

// The spans of a batch, as tests and benchmarks hold them.
using SpanBatch = absl::Span<const Span* const>;

// Bytes that grow without being zero-filled first (encoders write every byte they add).
class SpanBytes {
 public:
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  const char* data() const { return data_.get(); }
  absl::string_view view(size_t length) const { return absl::string_view(data_.get(), length); }
  // `n` more bytes at the end, for the caller to fill.
  char* Extend(size_t n) {
    if (size_ + n > capacity_) Grow(size_ + n);
    char* const p = data_.get() + size_;
    size_ += n;
    return p;
  }
  void Append(absl::string_view bytes);
  void Clear() { size_ = 0; }
  // Keeps the first `n` bytes (n <= size()): gives back what an Extend() did not use.
  void Resize(size_t n);
  // Drops the first `n` bytes.
  void EraseFront(size_t n);
  // Gives the memory back.
  void Release();
  void Swap(SpanBytes& other) noexcept;

 private:
  void Grow(size_t needed);

  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// Encodes spans one at a time, as they end, into one growing buffer (the span can be reused at
// once), and hands the first N of them over as a batch, framed as one export body: a prefix, the
// spans' bytes as they are, a suffix. Nothing is encoded twice; handing over all spans swaps
// buffers and copies nothing (only spans left behind are copied); the protobuf prefix carries the
// lengths of the spans that follow it, so nothing moves to make room for them.
class SpanBatchEncoder {
 public:
  // The OTLP resource carries `service_name` and, when not empty, `service_instance_id`.
  SpanBatchEncoder(ExportProtocol protocol, std::string service_name,
                   std::string service_instance_id = "");

  void Add(const Span& span);
  // Spans held, and their encoded bytes.
  size_t size() const { return ends_.size(); }
  size_t bytes() const { return spans_.size(); }

  // Spans handed over for export. Its bytes stay put (nothing writes them) until the next
  // Detach() into it: an export request can be written from them and sent again.
  struct Batch {
    size_t spans = 0;
    SpanBytes bytes;  // JSON: each span followed by a comma
    std::string prefix;
  };
  // Moves the first `count` spans (at most size()) into `batch`, replacing what it held.
  void Detach(size_t count, Batch* batch);

  struct Body {
    absl::string_view prefix;
    absl::string_view spans;
    absl::string_view suffix;
    size_t size() const { return prefix.size() + spans.size() + suffix.size(); }
  };
  // The export body of `batch`: views into it and into the encoder.
  Body Frame(Batch& batch) const;
  absl::string_view content_type() const;
  // Protobuf bodies (OTLP/HTTP protobuf, OTLP/gRPC).
  bool IsProtobuf() const {
    return protocol_ == ExportProtocol::kOtlpProto || protocol_ == ExportProtocol::kOtlpGrpc;
  }
  // Releases the buffers (the encoder's, and `batch`'s) when they grew past `keep` bytes in a
  // burst and are empty now.
  void Shrink(size_t keep, Batch* batch);

 private:
  const ExportProtocol protocol_;
  const std::string service_name_;
  const std::string service_instance_id_;
  SpanBytes spans_;           // encoded spans, JSON ones each followed by a comma
  std::vector<size_t> ends_;  // where each span's bytes end in spans_ (comma included)
  std::string json_;          // one JSON span, as it is written
  std::string prefix_;        // JSON: the fixed head of every body
  std::string suffix_;
};

// One body for a whole batch (tests, benchmarks), appended to `out`.
void EncodeSpans(ExportProtocol protocol, SpanBatch spans, absl::string_view service_name,
                 std::string* out, absl::string_view service_instance_id = "");
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
