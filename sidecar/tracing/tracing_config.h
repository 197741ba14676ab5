#pragma once

// Tracing settings as the sidecar runs them, translated from the bootstrap's `tracing` section
// (xds/resources.proto Bootstrap.Tracing; docs/configuration.md). Plain values: sidecar/config
// fills them in, everything else reads them.

#include <cstdint>
#include <string>

#include "common/base/clock.h"

namespace meshlet::sidecar::tracing {

enum class ExportProtocol : uint8_t {
  kOtlpJson,   // OTLP/HTTP with JSON bodies (POST <collector>/v1/traces)
  kOtlpProto,  // OTLP/HTTP with protobuf bodies (POST <collector>/v1/traces)
  kZipkin,     // Zipkin v2 JSON (POST <collector>/api/v2/spans)
  // OTLP/gRPC (opentelemetry.proto.collector.trace.v1.TraceService/Export) to the control plane's
  // discovery port, over the xDS channel's TLS settings and workload certificate: the control
  // plane records the spans under the sender's authenticated registration.
  kOtlpGrpc,
};

struct TracingConfig {
  // Off: requests pass trace headers through untouched and no span is made.
  bool enabled = false;
  // Requests whose caller did not decide are sampled with this probability (0..100).
  double sampling_percent = 1.0;
  // "host:port" of the collector; the host may be a name (resolved off the workers' loops).
  // kOtlpGrpc: "host:port[,host:port...]", the control plane's replicas (resolved at start, each
  // tried in turn), by default the xDS server's.
  std::string collector_address;
  // The request path; empty: /v1/traces for OTLP, /api/v2/spans for Zipkin. Not for kOtlpGrpc.
  std::string collector_path;
  ExportProtocol protocol = ExportProtocol::kOtlpJson;
  // Spans per export request.
  uint32_t batch_size = 512;
  // How long a span may wait for a batch to fill before it is sent anyway.
  Duration flush_interval = std::chrono::seconds(1);
  // Spans waiting for export, all workers together; beyond it new spans are dropped and counted.
  uint32_t queue_limit = 2048;
  // Connect + send + answer time allowed for one export request.
  Duration export_timeout = std::chrono::seconds(2);
  // A connection to the collector idle for longer is replaced rather than reused: one dropped
  // silently on the way (a NAT or a load balancer forgetting it) would cost a batch.
  Duration collector_idle_limit = std::chrono::seconds(30);
  // A client span for every upstream attempt; false (the default, `attempt_spans: RETRIED`): only
  // when a request needed more than one, and a request's single attempt is described by its
  // server span, which takes that attempt's span id (the parent the upstream saw): one span per
  // request instead of two, as Envoy's default.
  bool span_per_attempt = false;
  // `service.name` of every span (the node's service or id when the file does not say).
  std::string service_name;
  // `service.instance.id` of every OTLP export: the node id (empty: none). Over kOtlpGrpc it
  // names the node whose registration the control plane records the spans under.
  std::string service_instance_id;
  // A request carrying this header with value `1` or `true` is sampled whatever the caller or the
  // rate decided.
  std::string force_sample_header = "x-meshlet-force-trace";
  // Server spans of unsampled requests the proxy failed (error spans: a local reply, a reset, a
  // next hop's proxy-made error passed on), exported anyway so that they can be explained, at
  // most this many per second on each worker (a token bucket with a second's worth of burst);
  // past it they are dropped and counted. 0: none.
  uint32_t error_spans_per_second = 10;

  std::string EffectiveCollectorPath() const {
    if (!collector_path.empty()) return collector_path;
    return protocol == ExportProtocol::kZipkin ? "/api/v2/spans" : "/v1/traces";
  }
};

}  // namespace meshlet::sidecar::tracing
