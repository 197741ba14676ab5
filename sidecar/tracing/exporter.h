#pragma once

// SpanExporter: owns the span queue the workers' Tracers push into and one exporter thread that
// drains it, encodes batches (OTLP/HTTP JSON or protobuf, or Zipkin v2 JSON; span_encoding.h) and
// POSTs them to the configured collector. Nothing it does can slow a request: workers only push
// into the bounded lock-free queue; a slow or absent collector makes the queue fill, and new spans
// are then dropped and counted (meshlet_tracing_spans_dropped_total{reason="queue_full"}).
// A batch the collector refuses or that cannot be sent is dropped and counted too
// ({reason="export_failed"}, and meshlet_tracing_export_errors_total per request).
//
// Batching: the thread sleeps until spans are queued (SpanQueue::Wait: an idle sidecar's exporter
// never wakes), sends every full batch (batch_size spans) at once and, once flush_interval has
// passed since the last send, whatever is left; while a partial batch waits it sleeps until the
// batch fills or the flush is due. Spans are encoded here, never on a worker.
//
// Export requests are plain HTTP/1.1 on the exporter thread, bounded by export_timeout (connect,
// send and answer together), over one connection kept open between them (a new one when the
// collector closed it, answered with connection: close, a body delimited by the connection's
// end or one over 64 KiB, or it has been idle for 30 s; a request that a kept connection fails
// before any answer goes once more over a new one). Answers are read with the HTTP/1 parser.
//
// Ownership: the server creates it (Start() once) before the workers and destroys it after them;
// the destructor stops the thread after one last batch is sent (best effort, bounded by
// export_timeout); spans still queued then are dropped ({reason="shutdown"}).

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "common/stats/stats.h"
#include "sidecar/tracing/span_encoding.h"
#include "sidecar/tracing/span_queue.h"
#include "sidecar/tracing/tracing_config.h"

namespace meshlet::sidecar::tracing {

class SpanExporter {
 public:
  SpanExporter(TracingConfig config, std::string service_name, StatsRegistry& stats);
  ~SpanExporter();
  SpanExporter(const SpanExporter&) = delete;
  SpanExporter& operator=(const SpanExporter&) = delete;

  void Start();
  SpanQueue& queue() { return queue_; }
  const TracingConfig& config() const { return config_; }
  const std::string& service_name() const { return service_name_; }

  // Encodes and sends one batch now (the exporter thread, or tests). True when the collector
  // answered 2xx.
  bool Export(SpanBatch batch);
  // Connections opened to the collector so far (exporter thread, or tests once it is idle).
  uint64_t collector_connections() const { return collector_connections_; }

 private:
  void Run();
  // Pops spans into batch_ until it holds batch_size of them; returns how many it holds.
  size_t Fill();
  // Exports batch_ (if any) and recycles its spans.
  void SendBatch();
  // One POST of `body` to the collector; true on a 2xx answer, else `error` says what went wrong.
  bool Post(absl::string_view content_type, absl::string_view body, std::string* error);
  void CloseCollectorConnection();

  const TracingConfig config_;
  const std::string service_name_;
  const std::string path_;
  SpanQueue queue_;
  Counter exported_;
  Counter export_errors_;
  Counter dropped_failed_;
  Counter dropped_shutdown_;

  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Exporter thread only.
  std::vector<SpanPtr> batch_;
  std::vector<const Span*> batch_view_;  // batch_ as the encoders take it
  std::string json_body_;
  OtlpProtoEncoder proto_encoder_;
  std::unique_ptr<char[]> proto_body_;
  size_t proto_capacity_ = 0;
  int collector_fd_ = -1;  // kept open between export requests; -1: none
  absl::Time collector_last_used_;
  uint64_t collector_connections_ = 0;
};

}  // namespace meshlet::sidecar::tracing
