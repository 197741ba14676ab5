#pragma once

// Server: the sidecar's composition root. It loads the bootstrap file, builds and validates the
// configuration snapshot, starts the workers (each with its own listeners, clusters and stats
// shard), serves the admin API on the main thread, and handles signals:
//
//   SIGTERM, SIGINT  graceful drain (design.md §6): the xDS client reports "not ready:
//                    draining" to the control plane (which withdraws this workload's endpoints
//                    from callers), inbound listeners stop accepting, HTTP connections are told
//                    to finish, outbound listeners keep serving the app; the process exits 0
//                    once no downstream connection is open, or when --drain-time has passed. A
//                    second signal exits at once.
//   SIGHUP           reloads the bootstrap file: a valid file is applied to every worker (no
//                    request fails because of it), an invalid one is logged and ignored.
//
// Hand-over (--hand-over PATH, hand_over.h, ADR 0072): at start, when a sidecar serves PATH,
// Init() takes over its listening sockets, its xDS configuration and its workload certificate
// instead of binding, asking the CA and waiting for the control plane; once ready it tells the
// predecessor, which stops accepting and drains (without reporting "not ready": this process is
// the workload now). Then, and in a sidecar that took over from nobody, PATH is served for the
// next one (after a take-over, a failure to serve it is logged and counted, and the sidecar serves
// its traffic without; without one, it is an Init() error). GET /hand_over shows both sides.
//
// Destinations discovered on first use (ADR 0086): a worker that meets an unknown destination
// asks for its lookup key (WorkerShared::request_lookup, posted to the main thread's
// OnDemandDiscovery, which subscribes the keys of a loop turn on the xDS stream); answers go to
// every worker (Worker::OnLookupAnswers) after the snapshot that carries them.
//
// With xDS (--xds or the bootstrap's xds section; docs/xds.md) the configuration is the
// bootstrap's static resources plus what the control plane streams. Every update goes through
// the same path as SIGHUP (ApplyResources): build and validate a whole snapshot, then publish it
// to the workers; a refused update is NACKed and the running configuration stays. At start the
// sidecar applies its saved configuration (--xds-cache-dir), if any, before connecting. The
// stream also tells the control plane what /ready says, ready or not and why (ReportReadiness,
// ADR 0052), so callers get this workload's endpoint only while /ready is 200.
//
// Workload certificate (docs/security.md): with a CA credential (--join-token-file or
// --kubernetes-token-file) Init() first obtains the workload certificate from the control plane's
// CA, waiting up to --ca-startup-timeout, then builds the configuration; listeners and clusters
// with `tls.workload_certificate: true` use it. The CertificateManager renews it at ~50 % of its
// lifetime; each new certificate rebuilds exactly those TLS contexts and swaps them into their
// providers, so new connections use it and open ones keep theirs. GET /certs shows it.
//
// Threading: everything here runs on the main thread (the one that calls Init() and Run()),
// including the admin handlers; workers are reached through Worker's cross-thread methods.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/event/loop.h"
#include "common/event/signal.h"
#include "common/event/timer.h"
#include "common/http/client.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "sidecar/admin/admin.h"
#include "sidecar/cluster/cluster_manager.h"
#include "sidecar/cluster/health_checker.h"
#include "sidecar/config/bootstrap.h"
#include "sidecar/config/dns_clusters.h"
#include "sidecar/config/on_demand.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/identity/ca_client.h"
#include "sidecar/identity/certificate_manager.h"
#include "sidecar/listener/access_log.h"
#include "sidecar/listener/downstream_tls.h"
#include "sidecar/resilience/principal_rate_limiter.h"
#include "sidecar/route/route_stats.h"
#include "sidecar/server/hand_over.h"
#include "sidecar/server/memory_releaser.h"
#include "sidecar/server/options.h"
#include "sidecar/server/overload_monitor.h"
#include "sidecar/server/tap_manager.h"
#include "sidecar/server/tls_contexts.h"
#include "sidecar/server/worker.h"
#include "sidecar/telemetry/metrics_reporter.h"
#include "sidecar/tracing/exporter.h"

namespace meshlet::sidecar::server {

class Server final : public admin::AdminBackend {
 public:
  explicit Server(ServerOptions options);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads and validates the configuration, binds every listener on every worker and the admin
  // address. Errors name the file and field (bad configuration) or the listener and address
  // (bind failure); nothing is left running after an error.
  absl::Status Init();
  // Runs the main loop until shutdown (drain finished, POST /quitquitquit, second signal).
  // Returns the process exit code.
  int Run();

  // Re-reads the bootstrap file and applies it (SIGHUP). Errors leave the running config alone.
  absl::Status Reload();

  // Starts draining (idempotent). With `exit_when_done`, the process exits once connections are
  // gone or after the drain time.
  void Drain(bool exit_when_done);
  // Stops everything and makes Run() return 0.
  void Shutdown();

  const net::Address& admin_address() const { return admin_->address(); }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  config::XdsClient* xds_client() { return xds_client_.get(); }
  event::Loop& loop() { return loop_; }

  // AdminBackend
  // Listeners up and, with xDS, the first complete configuration applied (or the saved one) by
  // every worker, not only accepted by the main thread: the workers take a snapshot from their
  // own loops a moment later, and until then a request could still meet the old configuration.
  bool ready() const override;
  // Why ready() is false (called only then): shutting down, starting, the capture check, no
  // complete xDS configuration yet, the workers not done applying it, or a listener not bound.
  std::string NotReadyReason() const override;
  // Why a listener the configuration names is not bound (the first, with how many more); empty
  // when every one is. ready() is false while it is not empty.
  std::string UnboundListenersReason() const;
  bool draining() const override { return draining_; }
  const StatsRegistry& stats() const override { return stats_; }
  std::shared_ptr<const config::Snapshot> snapshot() const override { return snapshot_; }
  std::string ClustersJson() override;
  std::string DecisionsJson(const std::string& request_id, const std::string& trace_id) override;
  std::string ListenersJson() override;
  std::string XdsStatusJson() override;
  std::string CertsJson() override;
  std::string HandOverJson() override;
  void BeforeStatsRead() override;
  void StartDrain() override { Drain(/*exit_when_done=*/false); }
  void Quit() override;

 private:
  // Loads the bootstrap file and builds the snapshot and its TLS contexts (not yet published);
  // `resources`: what it was built from, without the DNS clusters' endpoints.
  absl::StatusOr<std::shared_ptr<const config::Snapshot>> LoadSnapshot(
      TlsContexts::Prepared& tls, config::ResourceSet& resources);
  // The bootstrap file (if any) with the command line's flags applied and the defaults that
  // depend on them derived (config::LoadBootstrap).
  absl::StatusOr<config::BootstrapConfig> LoadBootstrap() const;
  // Builds, validates and publishes a whole configuration (xDS updates; a DNS cluster's new
  // answer), with the DNS clusters' endpoints added; errors change nothing.
  absl::Status ApplyResources(const config::ResourceSet& resources);
  // After `resources` (without DNS endpoints) were published: the DNS clusters they hold (`any`:
  // some) are followed, and the resources kept to build again from when an answer changes.
  void FollowDnsClusters(const config::ResourceSet& resources, bool any);
  // A DNS cluster's addresses changed: the last resources built again with them.
  void OnDnsAnswers();
  // Starts the CertificateManager and waits for the first workload certificate.
  absl::Status InitWorkloadCertificate(const config::BootstrapConfig& bootstrap);
  // A new workload certificate: rebuild the TLS contexts that use it.
  void OnWorkloadCertificate(const identity::WorkloadCertificate& certificate);
  // Creates the xDS client and applies the saved or the static configuration.
  absl::Status InitXds(const config::BootstrapConfig& bootstrap);
  // Creates on_demand_ (after InitXds, before the workers): without xDS every key is answered
  // disconnected.
  void InitOnDemand();
  // Hands lookup answers to every worker; called after the snapshot that carries them was
  // posted (ApplyResources), so each worker applies it first.
  void DeliverLookupAnswers(std::vector<config::LookupAnswer> answers);
  // TLS to the control plane (xDS, golden-metrics reports, OTLP/gRPC spans): verifies it with the
  // bootstrap's
  // xDS CA file and --xds-server-identity, and presents the workload certificate, when there is
  // one, as its client certificate (the control plane authenticates streams and reports by it).
  // Built once; each new workload certificate updates it for the connections opened after.
  absl::StatusOr<net::TransportFactory> ControlPlaneTransport(
      const config::BootstrapConfig& bootstrap);
  // Rebuilds control_plane_tls_ with the current workload certificate.
  absl::Status UpdateControlPlaneTls();
  // Tracing's shared pieces (the workers make their tracers and exporters), from
  // bootstrap.tracing.
  absl::Status InitTracing(const config::BootstrapConfig& bootstrap);
  // Golden-metrics reports to the control plane (bootstrap.metrics_report); none without an
  // address.
  absl::Status InitMetricsReport(const config::BootstrapConfig& bootstrap);
  void OnSignal(int signum);
  // Exits once no connection is open or the drain time has passed (the drain must have started).
  void ExitWhenDrained();
  void CheckDrained();
  // The hand-over (hand_over.h). TakeOver: at start, connects to --hand-over and adopts what the
  // running sidecar hands over (nothing when none runs). FinishTakeOver: once Init bound
  // everything, waits until ready() and tells the predecessor to stop. ServeHandOver: serves
  // --hand-over for the next process.
  absl::Status TakeOver();
  absl::Status FinishTakeOver();
  // After a take-over (`took_over`) a failure to serve PATH is logged and counted, not an
  // error: the predecessor was told to stop.
  absl::Status ServeHandOver(bool took_over);
  // The running side: what to hand over (refused while draining or not ready), and the successor
  // being ready: stop accepting everywhere and drain, without a readiness report. Returns the
  // connections still open.
  absl::StatusOr<HandedOver> HandOverOffer();
  Drained HandOverDrain();
  // How long inbound listeners keep accepting once a drain starts.
  Duration DrainListenTime() const;
  // Applies the current snapshot's clusters to what the workers share about them: their
  // circuit-breaker limits (also for clusters no worker built yet) and the active health checks,
  // started, changed or stopped. `changed`, when given, names the only clusters that differ from
  // the last snapshot applied (config::ChangedClusters): those alone are looked at.
  void UpdateSharedClusters(const std::vector<std::string>* changed = nullptr);
  // Tells the control plane (over the xDS stream) what /ready says: ready, or not and why
  // ("draining" once draining). While not ready and not draining it asks again every
  // kReadinessCheckInterval: what /ready depends on changes on other threads (workers applying
  // a configuration, a capture listener seeing a redirected connection). Without xDS, nothing.
  void ReportReadiness();

  const ServerOptions options_;
  event::Loop loop_;
  StatsRegistry stats_;
  listener::AccessLogFiles access_logs_;
  std::shared_ptr<listener::AccessLogFile> global_access_log_;
  ListenerConnectionCounts connection_counts_;
  cluster::SharedClusterLimits cluster_limits_;
  route::RouteStatsLimit route_stats_limit_;  // --max-route-stats
  // Per-caller rate limiters of the current snapshot as last published (BeforeStatsRead), by
  // scope and name: how many callers each tracks and how many it evicted.
  struct PublishedRateLimiter {
    Gauge principals;
    Counter evictions;
    std::shared_ptr<resilience::LocalRateLimiter> limiter;  // whose evictions are counted
    uint64_t evictions_seen = 0;
    uint64_t pass = 0;  // the last publication that found it in the configuration
  };
  uint64_t rate_limiter_publish_pass_ = 0;
  std::map<std::pair<std::string, std::string>, PublishedRateLimiter> published_rate_limiters_;
  void PublishRateLimiterStats();
  TlsContexts tls_contexts_;
  listener::TlsRefusalLog tls_refusal_log_{RealClock::Get()};
  std::shared_ptr<const config::Snapshot> snapshot_;
  // DNS clusters (Cluster type DNS): their lookups and resolved endpoints, and the resources last
  // published when they held any (none: no DNS cluster, nothing to rebuild).
  std::unique_ptr<config::DnsClusters> dns_clusters_;
  std::optional<config::ResourceSet> dns_resources_;
  // The bootstrap's tracing section as it started (a reload keeps it) and its collector; each
  // worker exports its own spans. A collector named by host name is resolved here, on the main
  // thread, at start and every kCollectorResolveInterval (kCollectorRetryInterval until it first
  // resolves).
  std::unique_ptr<tracing::TracingConfig> tracing_;
  // The node's id as error attribution names this proxy (--error-header); fixed at start.
  std::string node_name_;
  // Where this sidecar runs (node.locality, --node-locality): endpoints' locality levels.
  xds::Locality node_locality_;
  std::shared_ptr<tracing::CollectorAddress> trace_collector_;
  tracing::ControlPlaneChannel trace_channel_;  // OTLP/gRPC: the control-plane TLS and authority
  std::unique_ptr<event::Timer> trace_collector_resolve_;
  static constexpr Duration kCollectorResolveInterval = std::chrono::seconds(30);
  static constexpr Duration kCollectorRetryInterval = std::chrono::seconds(2);
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<admin::AdminHandler> admin_handler_;
  std::unique_ptr<http::HttpServer> admin_;
  std::unique_ptr<http::HttpServer> prometheus_;  // --prometheus-address; null: none
  std::unique_ptr<config::XdsClient> xds_client_;
  // Live taps the control plane asks for (after the workers; null without xDS).
  std::unique_ptr<TapManager> tap_manager_;
  // Lookup keys the workers asked for (ADR 0086); uses xds_client_, so declared after it.
  std::unique_ptr<config::OnDemandDiscovery> on_demand_;
  // Sets on_demand_'s idle time and missing ttl from the snapshot's listeners (the first with
  // on_demand), or from the flags when none has it.
  void ApplyOnDemandTimes();
  // ControlPlaneTransport's settings (without the client certificate) and provider; null until
  // first used.
  tls::TlsContextConfig control_plane_tls_config_;
  std::shared_ptr<tls::TlsContextProvider> control_plane_tls_;
  std::unique_ptr<identity::GrpcCertificateSigner> ca_signer_;
  std::unique_ptr<telemetry::MetricsReporter> metrics_reporter_;  // golden metrics; null: off
  std::unique_ptr<identity::CertificateManager> certificate_manager_;
  // Applying a new workload certificate to the TLS contexts failed (shown by /certs).
  std::string certificate_apply_error_;
  Counter certificate_apply_failures_;
  // A CA rotation (control-plane/ca/rotation.h) watches what the golden-metrics report says of
  // the mesh trust bundle's roots and of the workload certificate's issuer (fingerprints,
  // recomputed when the bundle or certificate changes), and in step 4 asks, through the
  // trust-bundle Secret's renewal round, for a certificate from its new signer: a sidecar whose
  // certificate has another issuer renews it once per round, at a random point in the window.
  void UpdateCertificateFacts();
  std::vector<std::string> trust_bundle_roots_;
  std::string certificate_issuer_;
  std::string facts_bundle_pem_, facts_chain_pem_;  // what the two above were computed from
  std::string renewal_round_seen_;                  // "<signer> <round>" acted on
  // The mesh trust bundle last pushed over xDS, also trusted for the control plane's own
  // certificate (UpdateControlPlaneTls, the CA channel) when --xds-server-identity is set.
  std::string pushed_roots_pem_;
  // Active health checks run here, on the main thread, for every worker (docs/adr/0011).
  std::unique_ptr<cluster::HealthCheckManager> health_checks_;
  std::vector<std::unique_ptr<event::Signal>> signals_;
  std::unique_ptr<event::Timer> drain_deadline_;
  std::unique_ptr<event::Timer> drain_poll_;
  // The hand-over: the predecessor during start-up, the socket served once ready, and what each
  // side did (for GET /hand_over).
  std::unique_ptr<HandOverClient> hand_over_client_;
  std::unique_ptr<HandOverServer> hand_over_server_;
  struct TakenOver {
    int pid = 0;
    std::string release;
    size_t sockets = 0;         // listening sockets handed over
    size_t sockets_unused = 0;  // of them, those no listener took (closed)
    bool configuration = false;
    bool certificate = false;
    // Open on the predecessor when it stopped accepting, and requests in flight on them; -1: it
    // did not confirm.
    int64_t predecessor_connections = -1;
    int64_t predecessor_requests = -1;
    absl::Time at;
    Duration ready_after{0};  // from the start of Init
  };
  std::optional<TakenOver> taken_over_;
  MonotonicTime init_started_{};
  bool handed_over_ = false;  // to a successor: draining, no readiness reports
  absl::Time handed_over_at_;
  Drained handed_over_drained_;
  Counter hand_overs_taken_;    // meshlet_server_hand_overs_total{side="took_over"}
  Counter hand_overs_given_;    // {side="handed_over"}
  Counter hand_overs_refused_;  // {side="refused"}
  Counter hand_overs_failed_;   // {side="failed"}
  // Why --hand-over could not be served after a take-over (GET /hand_over); empty: no failure.
  std::string hand_over_serve_error_;
  Counter hand_over_serve_failures_;  // meshlet_server_hand_over_serve_failures_total

  Gauge draining_gauge_;
  Counter reload_success_;
  Counter reload_failure_;
  // --capture-check: the dial that shows the capture rules are in effect (CaptureSeen).
  class CaptureProbe final : public net::ConnectionCallbacks {
   public:
    void OnConnected() override { connection->Close(net::CloseMode::kNoFlush); }
    void OnData(net::Buffer& data, bool) override { data.Drain(data.length()); }
    void OnClose(net::CloseReason, const absl::Status&) override {}
    std::unique_ptr<net::Connection> connection;
  };
  // The configuration has a capture listener, --capture-check is set, and no redirected
  // connection has been seen yet.
  bool CaptureCheckPending() const;
  void DialCaptureCheck();
  CaptureProbe capture_probe_;
  // --app-probe: asks the app on loopback and answers `respond` with its status. At most
  // kMaxAppProbesInFlight at once (more get 503); cancelled at shutdown.
  void ProbeApp(const ServerOptions::AppProbe& probe, http::Responder respond);
  static constexpr size_t kMaxAppProbesInFlight = 64;
  static constexpr Duration kAppProbeTimeout = std::chrono::seconds(10);
  // An admin response at least this large asks for free memory to be given back afterwards.
  static constexpr size_t kLargeAdminResponse = size_t{256} << 10;
  std::map<http::HttpFetch*, std::unique_ptr<http::HttpFetch>> app_probes_;
  bool app_probe_stats_ = false;  // the two counters below registered
  Counter app_probes_ok_;
  Counter app_probes_failed_;
  std::unique_ptr<event::Timer> capture_check_timer_;
  static constexpr Duration kReadinessCheckInterval = std::chrono::milliseconds(100);
  std::unique_ptr<event::Timer> readiness_check_;  // ReportReadiness() while not ready
  // Load shedding: the memory flag the workers read, and each worker's share of the limit on
  // requests in flight.
  OverloadMonitor overload_{loop_, stats_.shared_shard(), options_.overload_max_rss_mb << 20};
  // Gives the free memory configuration work leaves in malloc's arenas back to the kernel.
  MemoryReleaser memory_releaser_{loop_, stats_.shared_shard(), options_.memory_release_delay,
                                  options_.memory_release_delay * 20};
  uint64_t PerWorkerActiveRequests() const {
    const uint64_t n = static_cast<uint64_t>(options_.concurrency);
    return (options_.overload_max_active_requests + n - 1) / n;
  }
  bool ready_ = false;
  // ready() has been true at least once (it is computed when asked: /ready, a drain).
  mutable bool ever_ready_ = false;
  // The drain started before the proxy was ever ready: no drain listen time.
  bool never_ready_ = false;
  // Snapshots handed to the workers so far (each worker applies them in order), and how many a
  // worker must have applied before /ready says so: the count when the configuration was first
  // complete. 0: not yet known. Main thread only (ready() records it on first success).
  uint64_t snapshots_sent_ = 0;
  mutable uint64_t snapshots_needed_for_ready_ = 0;
  bool draining_ = false;
  // SIGTERM or SIGINT arrived before the workers started (while Init waits for the workload
  // certificate): Init stops with an error instead of starting.
  bool stopped_before_start_ = false;
  MonotonicTime draining_since_{};
  bool exit_when_drained_ = false;
  bool shut_down_ = false;
};

}  // namespace meshlet::sidecar::server
