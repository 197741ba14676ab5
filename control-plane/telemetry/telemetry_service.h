#pragma once

// TelemetryService: plugs the trace collector (collector.h) into the control plane: an OTLP/HTTP
// listener (default :4318), a Zipkin v2 listener (default :9411), and the query endpoints on the
// API server. docs/tracing.md describes the collector.
//
// Flags (TelemetryFlags):
//   --otlp-address HOST:PORT       OTLP/HTTP receiver; empty disables (default 0.0.0.0:4318)
//   --zipkin-address HOST:PORT     Zipkin v2 receiver; empty disables (default 0.0.0.0:9411)
//   --trace-refuse-unverified      those two receivers answer 403 and store nothing, rather than
//                                  store spans marked unverified (default false; collector.h)
//   --telemetry-max-body-bytes N   per receiver request (default 4194304)
//   --trace-store-max-spans N      (default 100000)
//   --trace-store-max-bytes N      (default 67108864)
//   --trace-store-max-spans-per-trace N  (default 10000)
//   --trace-store-dir DIR          keep spans in an on-disk ring there too (default: none)
//   --trace-store-disk-bytes N     the ring's size (default 268435456)
//   --golden-max-series N          (sidecar, cluster) pairs for golden metrics (default 10000)
//   --golden-max-clusters-per-report N  clusters recorded from one report, the rest counted
//                                  (default 1000)
//   --golden-retention DURATION    longest golden-metrics window (default 10m)
//   --golden-history-resolution D  one history point per edge per D (default 10s)
//   --golden-history-retention D   how far back the history reaches (default 1h)
//   --golden-history-max-series N  edges in the history (default 10000)
//   --golden-history-max-points N  points in one history answer (default 1000)
//   --config-events-max N          configuration changes kept for the history's markers
//                                  (default 1000; config_events.h)
//   --replica-address IP[:PORT]    with etcd: where other replicas reach this one's discovery port
//                                  (an IP alone: with the discovery port's port)
//   --peer-telemetry-interval D    with etcd: how often telemetry goes to them (default 1s)
//   --peer-telemetry-max-batch-bytes N  a batch goes out early at this size (default 1048576)
//
//   --report-rate-per-identity N   golden-metrics reports per second per identity, mesh-wide (each
//                                  replica its share, below; default 100)
//   --report-burst N               above that rate (default 200)
//   --report-max-bytes N           largest report (default 262144)
//   --span-rate-per-identity N     spans per second per identity, OTLP/gRPC, mesh-wide (default
//                                  10000)
//   --span-burst N                 above that rate (default 20000)
//   --span-batch-max-bytes N       largest OTLP/gRPC export (default 4194304)
//
// Golden-metrics reports (MetricsService/Report on the discovery port) and span batches (OTLP/gRPC
// opentelemetry.proto.collector.trace.v1.TraceService/Export, the same port) each pass a
// TelemetryGate (telemetry_gate.h): on a TLS port only a sidecar's workload certificate may send
// them, for its own registered node, and they are recorded under that registration's names: the
// report's service and namespace, every span's service (and its source marks, collector.h). An
// export names its node in each resource's `service.instance.id`.
//
// With etcd the per-identity report and span limits are the mesh's: each replica admits its share,
// the configured rate and burst divided by the live replicas the forwarder knows (ADR 0087),
// exported as meshlet_cp_identity_limit_replicas.
//
// With etcd (several replicas), what the receivers and the golden-metrics method take in is also
// forwarded to every other replica (peer_forwarder.h) and what they forward is stored here, so
// each replica answers queries for the whole mesh. Forwarded batches arrive on the discovery port
// (PeerTelemetry/Forward) from a replica's own certificate (the control plane's identity,
// `peer_identity`); only a replica without a certificate of the mesh CA (a plaintext discovery
// port, or one given --xds-tls-cert) sends and takes the API token instead.
//
// A receiver whose address was given explicitly must bind or the control plane exits. With the
// default address, a port already in use only logs a warning and leaves that receiver off: the
// control plane's policy and discovery work does not depend on the collector.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flags/flags.h"
#include "common/http/grpc/server.h"
#include "common/http/server.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/telemetry/collector.h"
#include "control-plane/telemetry/config_events.h"
#include "control-plane/telemetry/golden_metrics.h"
#include "control-plane/telemetry/peer_forwarder.h"
#include "control-plane/telemetry/telemetry_gate.h"
#include "control-plane/telemetry/trace_ring.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

struct TelemetryOptions {
  std::string otlp_address = "0.0.0.0:4318";
  bool otlp_address_explicit = false;
  std::string zipkin_address = "0.0.0.0:9411";
  bool zipkin_address_explicit = false;
  // The OTLP/HTTP and Zipkin receivers refuse every export (Collector::SetRefuseUnverified).
  bool refuse_unverified_spans = false;
  size_t max_request_body_bytes = 4 << 20;
  size_t max_connections = 256;
  TraceStoreLimits store_limits;
  GoldenMetricsLimits golden_limits;
  // The configuration changes kept for the history's markers (config_events.h); its retention is
  // the history's.
  ConfigEventsLimits config_events;
  std::string trace_store_dir;  // empty: memory only
  size_t trace_store_disk_bytes = 256 << 20;
  // With etcd: sharing with the other replicas. Empty replica_address: DefaultReplicaAddress.
  std::string replica_address;
  PeerForwarderOptions peer;
  TelemetryLimits report_limits = DefaultReportLimits();
  TelemetryLimits span_limits = DefaultSpanLimits();
  // How the discovery port authenticates callers: not at all (plaintext), or by client
  // certificates of `trust_domain`. Set by the control plane from the discovery flags.
  bool discovery_plaintext = false;
  std::string trust_domain = "cluster.local";
  // The SPIFFE id replicas present to each other (their self-issued discovery certificate);
  // empty: replicas authenticate with the API token.
  std::string peer_identity;
};

// The TLS client side of calls to the other replicas' discovery ports: this replica's own
// certificate (optional: presented as a client certificate), the roots their certificates chain
// to, and the SPIFFE id they must present (empty: any under the roots).
struct PeerCredentials {
  std::string certificate_chain_pem;
  std::string private_key_pem;
  std::string trust_bundle_pem;
  std::string server_identity;
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

  // `grpc_server` (the discovery server, 15012) may be null: no golden-metrics reports or
  // OTLP/gRPC span exports are then received, and nothing is shared with other replicas.
  absl::Status Start(http::grpc::Server* grpc_server);

  // TLS for forwarding to the other replicas, before or after Start() and again at each renewal
  // of this replica's certificate. Without it (a plaintext discovery port) calls are h2c.
  absl::Status SetPeerCredentials(const PeerCredentials& credentials);
  // Null with a single replica (no etcd).
  // The sidecars' reports of their trust bundle and certificate issuer (GoldenMetrics::
  // CertificateReports), this replica's and those forwarded to it. Loop thread.
  std::vector<GoldenMetrics::CertificateReport> CertificateReports(absl::Time since) const {
    return golden_.CertificateReports(since);
  }
  const PeerForwarder* forwarder() const { return forwarder_.get(); }

  // Calls between replicas that other services make with the same peers and credentials (the
  // live tap's forwarding): `method` started on each other live replica (PeerForwarder::
  // StartCalls); empty with a single replica. On the loop thread.
  std::vector<std::pair<std::string, std::shared_ptr<http::grpc::ClientCall>>> StartPeerCalls(
      absl::string_view method);
  // Serves `method` on the discovery port to other replicas only, authenticated as Forward is
  // (a call from anyone else ends UNAUTHENTICATED or PERMISSION_DENIED, counted). Before Start().
  void AddPeerMethod(std::string method,
                     std::function<void(std::shared_ptr<http::grpc::ServerCall>)> handler) {
    peer_methods_.emplace_back(std::move(method), std::move(handler));
  }

  // The discovery server took policy revision `revision` to push to `proxies` sidecars: a marker
  // on the history's charts (config_events.h). On the loop thread.
  void RecordConfigVersion(int64_t revision, size_t proxies) {
    config_events_.AddPush(revision, proxies);
  }

  // The bound addresses (real ports when configured with port 0); null when disabled.
  const net::Address* otlp_address() const;
  const net::Address* zipkin_address() const;

 private:
  absl::StatusOr<std::unique_ptr<http::HttpServer>> Listen(const std::string& address,
                                                           bool explicit_address,
                                                           absl::string_view what,
                                                           http::RequestHandler handler);

  void ReceiveReport(std::shared_ptr<http::grpc::ServerCall> call);
  void ReceiveSpans(std::shared_ptr<http::grpc::ServerCall> call);
  // The OTLP/gRPC export `body` from `caller` (nullopt: a plaintext port) into the store; the
  // status to answer, counted when not OK.
  absl::Status ExportSpans(http::grpc::ServerCall& call, absl::string_view body,
                           const std::optional<identity::Caller>& caller);
  void ReceiveFromPeer(std::shared_ptr<http::grpc::ServerCall> call);
  // Whether a Forward call comes from another replica (see the file comment).
  absl::Status AuthenticatePeer(const http::grpc::ServerCall& call) const;
  absl::Status StartForwarder(const http::grpc::Server& grpc_server);
  // Shares the per-identity limits among `replicas` live replicas.
  void SetLimitReplicas(size_t replicas);

  ControlPlane& control_plane_;
  const TelemetryOptions options_;
  Collector collector_;
  GoldenMetrics golden_;
  TelemetryGate report_gate_;
  TelemetryGate span_gate_;
  std::unique_ptr<TraceRing> ring_;
  std::unique_ptr<http::HttpServer> otlp_server_;
  std::unique_ptr<http::HttpServer> zipkin_server_;
  net::TransportFactory peer_transport_;  // null: plaintext
  std::unique_ptr<PeerForwarder> forwarder_;
  std::vector<std::pair<std::string, std::function<void(std::shared_ptr<http::grpc::ServerCall>)>>>
      peer_methods_;
  Counter peer_accepted_, peer_unauthenticated_, peer_invalid_;
  Gauge limit_replicas_;
  ConfigEvents config_events_;
  // Set false (on the loop) when this goes: the policy watch's posts check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Last: the watch ends before what its callback uses.
  std::unique_ptr<Store::WatchHandle> policy_watch_;
};

}  // namespace meshlet::controlplane::telemetry
