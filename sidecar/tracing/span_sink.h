#pragma once

// SpanSink: where a worker's finished spans go — the worker's SpanExporter (exporter.h), or a
// test's recorder. Called on the worker's thread when a span ends; the sink keeps what it needs
// (the exporter encodes it there and then) and the tracer reuses the Span at once.

#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::tracing {

class SpanSink {
 public:
  virtual ~SpanSink() = default;
  // False when the sink has no room: the span is dropped, and the tracer counts it
  // (meshlet_tracing_spans_dropped_total{reason="queue_full"}).
  virtual bool Take(const Span& span) = 0;
};

}  // namespace meshlet::sidecar::tracing
