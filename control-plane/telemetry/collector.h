#pragma once

// Collector: the control plane's trace collector as pure request → response functions (tests
// call them without sockets). TelemetryService mounts the receivers on their own listeners and
// the query API on the API server (15014, behind its bearer token). docs/tracing.md is the
// reference:
//
//   POST /v1/traces       OTLP/HTTP, application/x-protobuf or application/json   (4318)
//   POST /api/v2/spans    Zipkin v2 JSON                                          (9411)
//   GET  /api/v1/traces?service=&operation=&minDuration=&maxDuration=&status=error|ok
//                        &start=&end=&limit=                                      (15014)
//   GET  /api/v1/traces/{id}
//   GET  /api/v1/dependencies?start=&end=
//
// Threading: the control plane's loop thread only.

#include <functional>
#include <memory>
#include <vector>

#include "common/base/clock.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/telemetry/trace_ring.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

class Collector {
 public:
  // `stats` may be null (no metrics); not owned. `clock` (for `window` queries) must outlive it.
  Collector(TraceStoreLimits limits, StatsRegistry* stats, const Clock& clock = RealClock::Get());
  ~Collector();

  http::ServerResponse HandleOtlp(const http::ServerRequest& request);
  http::ServerResponse HandleZipkin(const http::ServerRequest& request);
  // /api/v1/traces, /api/v1/traces/{id}, /api/v1/dependencies (the caller authenticated it).
  http::ServerResponse HandleQuery(const http::ServerRequest& request);

  const TraceStore& store() const { return store_; }

  // Accepted spans are also appended to `ring` (not owned; null: none). Spans read back from a
  // ring at start go in with Restore().
  void SetRing(TraceRing* ring) { ring_ = ring; }
  void Restore(std::vector<SpanRecord> spans);

  // Control-plane replicas share their spans (peer_forwarder.h): `forward` (null: none) sees the
  // spans of every receiver request that parsed, before they are stored, on the loop thread; spans
  // another replica forwarded come in through AddFromPeer (stored and counted under receiver
  // "peer", never forwarded again).
  void SetForward(std::function<void(const std::vector<SpanRecord>&)> forward) {
    forward_ = std::move(forward);
  }
  void AddFromPeer(std::vector<SpanRecord> spans);

 private:
  struct Stats;
  enum class Receiver { kOtlp, kZipkin };
  http::ServerResponse Ingest(Receiver receiver, const http::ServerRequest& request);
  http::ServerResponse Reject(Receiver receiver, int status, absl::string_view reason,
                              absl::string_view message);
  http::ServerResponse ListTraces(const http::ServerRequest& request);
  http::ServerResponse GetTrace(absl::string_view id);
  http::ServerResponse ListDependencies(const http::ServerRequest& request);

  // Into the ring and the store, counted under `receiver`.
  AddResult Store(absl::string_view receiver, std::vector<SpanRecord> spans);
  void UpdateStoreGauges();

  const Clock& clock_;
  TraceStore store_;
  std::unique_ptr<Stats> stats_;
  TraceRing* ring_ = nullptr;
  std::function<void(const std::vector<SpanRecord>&)> forward_;
};

}  // namespace meshlet::controlplane::telemetry
