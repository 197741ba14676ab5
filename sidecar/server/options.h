#pragma once

// ServerOptions: the sidecar's command line, parsed without global flag state so it can be
// tested and so every flag accepts the dashed spelling operators type (`--admin-address`) as well
// as the underscored one. Value type; no threads involved.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/base/logging.h"
#include "common/net/address.h"
#include "sidecar/config/bootstrap.h"
#include "sidecar/route/route_stats.h"
#include "sidecar/router/mirror.h"

namespace meshlet::sidecar::server {

struct ServerOptions {
  std::string config_path;  // --config: the bootstrap file (YAML or JSON)
  int concurrency = 2;      // --concurrency: worker threads
  net::Address admin_address;
  // --admin-host NAME (repeatable): names the admin port answers to besides IP addresses and
  // localhost (requests for any other Host get 403, against DNS rebinding).
  std::vector<std::string> admin_hosts;
  // --prometheus-address: a read-only listener for scrapers (GET /stats/prometheus and /ready
  // only); unset: none.
  std::optional<net::Address> prometheus_address;
  // --capture-check: the pod's own address and a captured port. While the configuration has a
  // capture listener, /ready is 503 until a capture listener has seen a redirected connection;
  // the sidecar dials this address every second until one has (docs/operations.md). Unset: no
  // such condition.
  std::optional<net::Address> capture_check;
  // DNS clusters' lookups ask only this server (IPv4); unset: /etc/resolv.conf's.
  std::optional<net::Address> dns_server;
  // --capture-check=auto:PORT: the address is the pod's own, found at start (ResolveAutoValues).
  std::optional<uint16_t> capture_check_auto_port;
  // --app-probe PATH=PORT/TARGET (repeatable): the prometheus listener answers GET PATH by
  // asking the app GET TARGET on 127.0.0.1:PORT and passing its status on, so that the
  // kubelet's HTTP probes, which injection points at that listener, keep working under STRICT
  // mTLS (docs/kubernetes.md). Only the listed paths are served.
  struct AppProbe {
    std::string path;    // "/app-health/web/readyz"
    uint16_t port = 0;   // the app's
    std::string target;  // "/ready?full=1"
  };
  std::vector<AppProbe> app_probes;
  LogLevel log_level = LogLevel::kInfo;
  Duration drain_time = std::chrono::seconds(30);
  // --drain-listen-time: how long inbound listeners keep accepting once a drain starts (each
  // connection told to close after its request), while callers learn the workload is going.
  Duration drain_listen_time = std::chrono::seconds(1);
  // --hand-over: the unix socket through which a new process takes this one's place (its
  // listening sockets, configuration and workload certificate; hand_over.h); empty: none.
  std::string hand_over_path;
  // --hand-over-timeout: how long a process taking over waits to be ready before it gives up.
  Duration hand_over_timeout = std::chrono::seconds(60);
  // --hand-over-confirm-timeout: how long a process taking over, once ready, waits for the
  // running one to confirm that it stopped accepting before it carries on without.
  Duration hand_over_confirm_timeout = std::chrono::seconds(10);
  // --malloc-trim-threshold: free memory a malloc arena keeps before giving it back to the kernel
  // (common/base/malloc_tuning.h); 0: glibc's default.
  size_t malloc_trim_threshold = size_t{4} << 20;
  // --memory-release-delay: free malloc memory is given back once configuration work has been
  // quiet this long (server/memory_releaser.h); zero: never.
  Duration memory_release_delay = std::chrono::milliseconds(500);
  // Load shedding (docs/operations.md "Overload"): while RSS is above --overload-max-rss-mb, or a
  // worker has more than its share of --overload-max-active-requests in flight, new requests get
  // a local 503 (OL). 0: no such limit.
  uint64_t overload_max_rss_mb = 0;
  uint64_t overload_max_active_requests = 0;
  // Destinations discovered on first use (ADR 0086, config/on_demand.h): --on-demand-max-keys,
  // the lookup keys the sidecar holds (past it a new key is answered `limit`), and
  // --on-demand-missing-ttl, how long a key answered not found stays so before it is asked again,
  // and --on-demand-idle-time, how long a found key's ServiceRoute may go unused before it is
  // unsubscribed. The outbound listener's on_demand.missing_ttl and idle_time (the control
  // plane's) take precedence over the two times while a listener has on_demand.
  uint64_t on_demand_max_keys = 4096;
  // --on-demand-max-waiting: connections and requests one worker lets wait for lookups at once.
  uint64_t on_demand_max_waiting = 4096;
  Duration on_demand_missing_ttl = std::chrono::seconds(30);
  Duration on_demand_idle_time = std::chrono::minutes(15);
  // Handshake caches of each TLS context (one client context serves every cluster on the same
  // certificate and trust bundle, ADR 0092): --upstream-tls-session-cache, upstream addresses
  // whose session tickets a client context keeps (0: no upstream resumption), and
  // --tls-verified-chain-cache, peer chains a context remembers as verified (0: none).
  uint64_t upstream_tls_session_cache = 4096;
  uint64_t tls_verified_chain_cache = 4096;
  // --mirror-max-in-flight: request mirror copies each worker may have in flight
  // (router/mirror.h); beyond it a copy is skipped and counted.
  uint64_t mirror_max_in_flight = router::Mirrors::kDefaultMaxInFlight;
  // --stats-max-series / --stats-max-cluster-series: the stats registry's two budgets
  // (StatsRegistry::Options max_series and max_scoped_series, docs/stats.md "Series budgets").
  uint64_t stats_max_series = 100000;
  uint64_t stats_max_cluster_series = 100000;
  // --listener-bind-retry / --listener-bind-retry-max: a listener that could not bind is tried
  // again after the first, then at doubling intervals up to the second (0: not retried).
  Duration listener_bind_retry = std::chrono::seconds(1);
  Duration listener_bind_retry_max = std::chrono::seconds(30);
  // --decision-ring-size: decision records each worker keeps of failed and sampled requests
  // (stream/decision_ring.h), for GET /debug/decisions; 0: none.
  uint64_t decision_ring_size = 256;
  // Live tap (docs/xds.md "Live tap"): --tap-max-active taps at once (0: none), each at most
  // --tap-max-rate events/s and --tap-max-duration long, its events sent every
  // --tap-flush-interval in batches of at most --tap-max-batch-bytes per worker.
  uint64_t tap_max_active = 4;
  uint64_t tap_max_rate = 100;
  Duration tap_max_duration = std::chrono::minutes(10);
  uint64_t tap_max_batch_bytes = 256 * 1024;
  Duration tap_flush_interval = std::chrono::milliseconds(250);
  // --max-route-stats: route rules (a policy object's rule, "HTTPRoute/default/reviews" rule 1)
  // with series of their own (route/route_stats.h); the rest count in one overflow set.
  uint64_t max_route_stats = route::RouteStatsLimit::kDefaultMaxRules;
  // --error-header: the field naming this proxy, the response flags and the reason on every
  // response it makes itself (stream/local_reply.h ErrorAttribution); empty: none.
  std::string error_header = "x-meshlet-error";
  std::string access_log_path;  // empty: no global access log
  // --trace-collector / --trace-sampling: tracing on, spans to this OTLP/HTTP collector, and the
  // sampling rate of requests whose caller did not decide; they replace the bootstrap's
  // tracing.collector_address / sampling_percent.
  std::string trace_collector;
  std::optional<double> trace_sampling;

  // Discovery (docs/xds.md). Each flag overrides the bootstrap file's xds / node / data_dir before
  // the defaults that depend on them are derived (bootstrap_flags(), config::LoadBootstrap).
  std::string xds_address;          // --xds HOST:PORT; empty: the bootstrap's xds.address, if any
  std::string xds_ca_file;          // --xds-ca: verifies the control plane's certificate
  std::string xds_server_name;      // --xds-server-name: :authority / SNI
  std::string xds_server_identity;  // --xds-server-identity: the control plane's SPIFFE id
  bool xds_plaintext = false;       // --xds-plaintext: h2c, for local tests and demos
  bool xds_delta = true;            // --xds-delta: incremental stream (false: state of the world)
  std::string xds_cache_dir;        // --xds-cache-dir: last good configuration
  // --xds-cache-write-interval: once a complete configuration is saved, the least time between
  // two saves of it (config::XdsClientOptions::cache_write_interval).
  Duration xds_cache_write_interval = std::chrono::seconds(1);
  // --node-*: this sidecar's identity, sent on the stream.
  std::string node_id;
  std::string node_service;
  std::string node_namespace;
  std::string node_service_account;
  std::vector<std::string> node_locality;  // --node-locality: region, zone[, node]
  std::vector<std::pair<std::string, std::string>> node_labels;  // --node-label k=v, repeatable
  std::string gateway;  // --gateway NAMESPACE/NAME: a gateway proxy (adds label meshlet.io/gateway)
  std::vector<std::string> node_addresses;  // --node-address IP, repeatable
  std::vector<uint32_t> node_ports;         // --node-port N, repeatable
  // "auto" values, for pod engines without the downward API (podman 4.3): --node-id=auto and
  // --node-address=auto, filled in by ResolveAutoValues before the server starts.
  bool node_id_auto = false;
  bool node_address_auto = false;

  // Workload certificate from the control plane's CA (docs/security.md). Enabled by a
  // credential: --join-token-file (read once at start) or --kubernetes-token-file (re-read for
  // every request). The identity is spiffe://<trust_domain>/ns/<node namespace>/sa/<node
  // service account>.
  std::string ca_address;                      // --ca-address HOST:PORT; empty: the xDS address
  std::string join_token_file;                 // --join-token-file
  std::string kubernetes_token_file;           // --kubernetes-token-file
  bool ca_plaintext = false;                   // --ca-plaintext: h2c; only beside --xds-plaintext
  std::string trust_domain = "cluster.local";  // --trust-domain
  Duration cert_ttl{0};  // --cert-ttl: lifetime asked for; zero: the CA's default
  // --ca-startup-timeout: how long start-up waits for the first certificate.
  Duration ca_startup_timeout = std::chrono::seconds(30);

  bool workload_identity() const {
    return !join_token_file.empty() || !kubernetes_token_file.empty();
  }

  // What these flags say about the bootstrap's settings (config::LoadBootstrap applies them to
  // the file before deriving its defaults).
  config::BootstrapFlags bootstrap_flags() const;
};

// What the command line asked for: run, or print help/version and exit 0.
struct ParsedCommandLine {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  ServerOptions options;
};

// Parses argv[1..]. `--flag=value` and `--flag value` are both accepted. Errors
// (InvalidArgument) name the flag and what was wrong with its value.
absl::StatusOr<ParsedCommandLine> ParseCommandLine(const std::vector<std::string>& args);

// What the pod's engine did not say, found by the sidecar itself: a pod's host name is the pod's
// name (Kubernetes and podman set it so) and its network interfaces hold the pod's address.
struct PodEnvironment {
  std::string host_name;
  // net::InterfaceAddresses(): neither loopback nor link-local, IPv4 first.
  std::vector<net::Address> addresses;
};

// Fills in the "auto" values of `options` from `pod`: --node-id=auto becomes
// "<host name>.<node namespace>" (the host name alone without a namespace), --node-address=auto
// every address of `pod`, and --capture-check=auto:PORT the first address with PORT. An error
// when an address is asked for and `pod` has none, or the node id and there is no host name.
absl::Status ResolveAutoValues(ServerOptions& options, const PodEnvironment& pod);
// Whether `options` has "auto" values to fill in.
bool HasAutoValues(const ServerOptions& options);
// This process's PodEnvironment (gethostname, net::InterfaceAddresses).
absl::StatusOr<PodEnvironment> ReadPodEnvironment();

// The text `sidecar --help` prints.
std::string UsageText();

}  // namespace meshlet::sidecar::server
