#pragma once

// TelemetryService: plugs the trace collector (collector.h) into the control plane: an OTLP/HTTP
// listener (default :4318), a Zipkin v2 listener (default :9411), and the query endpoints on the
// API server. docs/tracing.md describes the collector.
//
// Flags (TelemetryFlags):
//   --otlp-address HOST:PORT       OTLP/HTTP receiver; empty disables (default 0.0.0.0:4318)
//   --zipkin-address HOST:PORT     Zipkin v2 receiver; empty disables (default 0.0.0.0:9411)
//   --telemetry-max-body-bytes N   per receiver request (default 4194304)
//   --trace-store-max-spans N      (default 100000)
//   --trace-store-max-bytes N      (default 67108864)
//   --trace-store-max-spans-per-trace N  (default 10000)
//   --trace-store-dir DIR          keep spans in an on-disk ring there too (default: none)
//   --trace-store-disk-bytes N     the ring's size (default 268435456)
//   --golden-max-series N          (sidecar, cluster) pairs for golden metrics (default 10000)
//   --golden-retention DURATION    longest golden-metrics window (default 10m)
//
// A receiver whose address was given explicitly must bind or the control plane exits. With the
// default address, a port already in use only logs a warning and leaves that receiver off: the
// control plane's policy and discovery work does not depend on the collector.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flags/flags.h"
#include "common/http/grpc/server.h"
#include "common/http/server.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/telemetry/collector.h"
#include "control-plane/telemetry/golden_metrics.h"
#include "control-plane/telemetry/trace_ring.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

struct TelemetryOptions {
  std::string otlp_address = "0.0.0.0:4318";
  bool otlp_address_explicit = false;
  std::string zipkin_address = "0.0.0.0:9411";
  bool zipkin_address_explicit = false;
  size_t max_request_body_bytes = 4 << 20;
  size_t max_connections = 256;
  TraceStoreLimits store_limits;
  GoldenMetricsLimits golden_limits;
  std::string trace_store_dir;  // empty: memory only
  size_t trace_store_disk_bytes = 256 << 20;
};

// The flags above, writing into `options`, for the control plane's command line
// (control-plane/command_line.h).
std::vector<flags::Flag> TelemetryFlags(TelemetryOptions& options);

class TelemetryService {
 public:
  // `control_plane` must be Init()ed and outlive this.
  TelemetryService(ControlPlane& control_plane, TelemetryOptions options);
  ~TelemetryService();
  TelemetryService(const TelemetryService&) = delete;
  TelemetryService& operator=(const TelemetryService&) = delete;

  // `grpc_server` (the discovery server, 15012) may be null: no golden-metrics reports are then
  // received.
  absl::Status Start(http::grpc::Server* grpc_server);

  // The bound addresses (real ports when configured with port 0); null when disabled.
  const net::Address* otlp_address() const;
  const net::Address* zipkin_address() const;

 private:
  absl::StatusOr<std::unique_ptr<http::HttpServer>> Listen(const std::string& address,
                                                           bool explicit_address,
                                                           absl::string_view what,
                                                           http::RequestHandler handler);

  ControlPlane& control_plane_;
  const TelemetryOptions options_;
  Collector collector_;
  GoldenMetrics golden_;
  std::unique_ptr<TraceRing> ring_;
  std::unique_ptr<http::HttpServer> otlp_server_;
  std::unique_ptr<http::HttpServer> zipkin_server_;
};

}  // namespace meshlet::controlplane::telemetry
