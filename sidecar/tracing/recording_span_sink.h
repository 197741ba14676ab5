#pragma once

// Tests and benchmarks: SpanSinks without the network.

#include <cstddef>
#include <vector>

#include "sidecar/tracing/span_encoding.h"
#include "sidecar/tracing/span_sink.h"

namespace meshlet::sidecar::tracing {

// Keeps a copy of every span it takes, up to `capacity` of them.
class RecordingSpanSink final : public SpanSink {
 public:
  explicit RecordingSpanSink(size_t capacity = 1024) : capacity_(capacity) {}

  bool Take(const Span& span) override {
    if (spans.size() >= capacity_) return false;
    spans.push_back(span);
    return true;
  }

  std::vector<Span> spans;

 private:
  size_t capacity_;
};

// What a worker's exporter does with a span, without sending: encodes it into the batch.
class EncodingSpanSink final : public SpanSink {
 public:
  bool Take(const Span& span) override {
    encoder.Add(span);
    return true;
  }
  // As the exporter does when it sends them: the spans leave for a batch.
  void Detach() { encoder.Detach(encoder.size(), &batch); }

  SpanBatchEncoder encoder{ExportProtocol::kOtlpProto, "svc"};
  SpanBatchEncoder::Batch batch;
};

}  // namespace meshlet::sidecar::tracing
