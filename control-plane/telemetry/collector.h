#pragma once

// Collector: the control plane's trace collector as pure request → response functions (tests
// call them without sockets). TelemetryService mounts the receivers on their own listeners and
// the query API on the API server (15014, behind its bearer token). docs/tracing.md is the
// reference:
//
//   POST /v1/traces       OTLP/HTTP, application/x-protobuf or application/json   (4318)
//   POST /api/v2/spans    Zipkin v2 JSON                                          (9411)
//   opentelemetry.proto.collector.trace.v1.TraceService/Export, OTLP/gRPC on the discovery port
//                        (15012; TelemetryService authenticates the sender, then AddExport)
//   GET  /api/v1/traces?service=&operation=&minDuration=&maxDuration=&status=error|ok
//                        &start=&end=&limit=                                      (15014)
//                        &requestId=    (traces with a span whose meshlet.request_id is this)
//   GET  /api/v1/traces/{id}
//   GET  /api/v1/traces/{id}/explain   why the request ended as it did (explain.h)
//   GET  /api/v1/dependencies?start=&end=
//
// Every span stored is marked with where it came from (trace_store.h, kSource*Attribute): the
// authenticated sender of an OTLP/gRPC export (its SPIFFE id and registered node, and the
// registration's service name replacing the sender's), or the receiver that took it from a sender
// nobody authenticated. Whatever a sender wrote under those attribute names is dropped. With
// SetRefuseUnverified(true) the OTLP/HTTP and Zipkin receivers, which authenticate no one, take
// nothing: each POST is answered 403 with the reason and counted under reason "unverified".
//
// Threading: the control plane's loop thread only.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/telemetry/receivers.h"
#include "control-plane/telemetry/trace_ring.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

// The sender of an OTLP/gRPC export as the discovery port proved it.
struct VerifiedSource {
  std::string service;   // the registration's: "<service>.<namespace>", or its node id
  std::string node_id;   // the registered node
  std::string identity;  // the client certificate's SPIFFE id
};
// The span's service and source marks become `source`'s.
void StampVerified(const VerifiedSource& source, SpanRecord& span);
// The span keeps the service its sender named and is marked unverified, received by `receiver`.
void StampUnverified(absl::string_view receiver, SpanRecord& span);
// OTLP/gRPC trace export, as opentelemetry-proto names it (collector/trace/v1).
inline constexpr char kTraceExportMethod[] =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
// The receiver label of spans exported over OTLP/gRPC on the discovery port.
inline constexpr absl::string_view kOtlpGrpcReceiver = "otlp_grpc";

class Collector {
 public:
  // `stats` may be null (no metrics); not owned. `clock` (for `window` queries) must outlive it.
  Collector(TraceStoreLimits limits, StatsRegistry* stats, const Clock& clock = RealClock::Get());
  ~Collector();

  http::ServerResponse HandleOtlp(const http::ServerRequest& request);
  http::ServerResponse HandleZipkin(const http::ServerRequest& request);
  // An OTLP/gRPC export: `sources` holds one entry per resource, the source its spans are stamped
  // with; nullopt (a plaintext discovery port, which authenticates no one) marks them unverified.
  // Forwarded to the other replicas and stored like the receivers' spans, counted under receiver
  // "otlp_grpc". Returns what the store did with them.
  AddResult AddExport(std::vector<OtlpResourceSpans> resources,
                      const std::vector<std::optional<VerifiedSource>>& sources);
  // The ExportTraceServiceResponse (serialized) for `count` spans of which the store did
  // `result`: empty, or partial_success naming the rejected ones.
  std::string ExportResponse(const AddResult& result, size_t count) const;

  // /api/v1/traces, /api/v1/traces/{id}[/explain], /api/v1/dependencies (the caller
  // authenticated it).
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

  // Whether the OTLP/HTTP and Zipkin receivers refuse their requests (their senders cannot be
  // verified) instead of storing the spans marked unverified. Default false.
  void SetRefuseUnverified(bool refuse) { refuse_unverified_ = refuse; }
  bool refuses_unverified() const { return refuse_unverified_; }

 private:
  struct Stats;
  enum class Receiver { kOtlp, kZipkin };
  http::ServerResponse Ingest(Receiver receiver, const http::ServerRequest& request);
  http::ServerResponse Reject(Receiver receiver, int status, absl::string_view reason,
                              absl::string_view message);
  http::ServerResponse ListTraces(const http::ServerRequest& request);
  http::ServerResponse GetTrace(absl::string_view id);
  http::ServerResponse ExplainTrace(absl::string_view id);
  http::ServerResponse ListDependencies(const http::ServerRequest& request);

  // Into the ring and the store, counted under `receiver`.
  AddResult Store(absl::string_view receiver, std::vector<SpanRecord> spans);
  void UpdateStoreGauges();

  const Clock& clock_;
  TraceStore store_;
  std::unique_ptr<Stats> stats_;
  TraceRing* ring_ = nullptr;
  std::function<void(const std::vector<SpanRecord>&)> forward_;
  bool refuse_unverified_ = false;
};

}  // namespace meshlet::controlplane::telemetry
