#pragma once

// ControlPlane: the control plane's composition root. It owns the main loop, the store (data
// directory), the API token, the registry, the stats registry and the HTTP API server, and runs
// until SIGTERM/SIGINT. Further servers (ADS on 15012, CA, telemetry) plug in by taking the
// accessors below during Init hooks; their flags join ControlPlaneFlags on the command line.
//
// Threading: everything runs on the one loop thread of Run(), except Stop(), which may be called
// from any thread, and store calls that may wait (API requests on resources and join tokens,
// policy reloads, join-token redemption): those run on the store worker's thread
// (control-plane/store/store_worker.h), which answers on the loop.
//
// Data directory layout:
//   <data-dir>/api-token   the API's bootstrap token (mode 0600), created on first start
//   <data-dir>/audit.log   every API write, one JSON line each (mode 0600; --api-audit-log)
//   <data-dir>/store/      the policy store (control-plane/store/file_store.h), Services'
//                          allocated addresses included (control-plane/addresses)
//   <data-dir>/registry.pb the workloads known, kept up to date within about a second and at a
//                          clean stop, restored at the next start
//                          (control-plane/registry/saved_registry.h); not with etcd, where the
//                          replicas share registrations (registry/shared_registrations.h)

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/logging.h"
#include "common/base/version.h"
#include "common/event/loop.h"
#include "common/event/signal.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context_provider.h"
#include "control-plane/access/audit_log.h"
#include "control-plane/access/gate.h"
#include "control-plane/access/operator_tokens.h"
#include "control-plane/api/api_server.h"
#include "control-plane/registry/registry.h"
#include "control-plane/registry/shared_registrations.h"
#include "control-plane/store/leased_keys.h"
#include "control-plane/store/store.h"
#include "control-plane/store/store_key_ring.h"
#include "control-plane/store/store_keys.h"
#include "control-plane/store/store_worker.h"

namespace meshlet::controlplane {

inline constexpr const char* kControlPlaneVersion = kMeshletVersion;

struct ControlPlaneOptions {
  std::string data_dir = "/var/lib/meshlet";
  // Where policy lives: empty for the file store in data_dir; "https://host:port[,...]" for etcd
  // (control-plane/store/etcd_store.h), shared by replicas; "http://..." only with
  // etcd_insecure_plaintext.
  std::string store;
  std::string etcd_prefix = "/meshlet/";
  std::string etcd_ca_file;    // TLS to etcd: the CA that signed its members' certificates
  std::string etcd_cert_file;  // and a client certificate, when etcd asks for one
  std::string etcd_key_file;
  bool etcd_insecure_plaintext = false;
  // With etcd: the key file that encrypts the secrets replicas share through the store
  // (control-plane/store/store_keys.h); required with etcd. Read again every
  // store_key_check_interval: a changed file is taken without a restart, and the records under
  // an older key are sealed again (control-plane/store/store_key_ring.h).
  std::string store_encryption_key_file;
  Duration store_key_check_interval = std::chrono::seconds(10);
  std::string etcd_username;
  std::string etcd_password_file;
  // Per etcd call and endpoint; an API request waits at most this long for each member tried.
  Duration etcd_timeout = std::chrono::seconds(5);
  // With etcd: how long this replica's published registrations outlive it when it dies.
  Duration etcd_lease_ttl = std::chrono::seconds(10);
  // The revision this control plane serves ("" the unnamed one; control-plane/inject/revision.h),
  // set by --revision (command_line.h); GET /version reports it.
  std::string revision;
  // This replica's name, shown beside the workloads connected to it (empty: the host name).
  std::string replica_name;
  // The REST API (meshctl). Loopback by default: the token guards it, but operators should
  // choose to expose it (Kubernetes: 0.0.0.0 plus a Service, or `kubectl port-forward`).
  std::string api_address = "127.0.0.1:15014";
  // Plain HTTP on the API instead of TLS (--api-plaintext): bearer tokens then cross the network
  // in clear. Only when asked for; logged as a warning at start.
  bool api_plaintext = false;
  // Where every API write is recorded (access/audit_log.h): empty for <data-dir>/audit.log,
  // "off" for nowhere.
  std::string api_audit_log;
  LogLevel log_level = LogLevel::kInfo;
  // How long a disconnected sidecar's workload stays registered.
  Duration deregister_grace = std::chrono::seconds(30);
  // Store calls that may wait for a slow store before the API refuses more (503).
  size_t max_store_pending = 256;
  size_t max_api_body_bytes = 1 << 20;
  size_t max_api_connections = 256;
  // Every HTTP server of the control plane (API, webhook, telemetry receivers): a request must
  // arrive whole within this; a connection with nothing to do is closed after the idle timeout.
  // 0: no limit (http::HttpServerOptions).
  Duration http_request_timeout = std::chrono::seconds(30);
  Duration http_idle_timeout = std::chrono::seconds(120);
};

// The control plane's own flags (--data-dir, --store, --etcd-* and
// --store-encryption-key-file, --api-address, --api-plaintext,
// --deregister-grace, --log-level), writing into `options`; the command line
// (control-plane/command_line.h) adds the services'.
std::vector<flags::Flag> ControlPlaneFlags(ControlPlaneOptions& options);

class ControlPlane {
 public:
  explicit ControlPlane(ControlPlaneOptions options, const Clock& clock = RealClock::Get());
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Opens the data directory, loads or creates the token, binds the API port. Errors say which
  // step failed and why. With TLS on the API (the default), connections are closed at once until
  // SetApiServingCertificate() gave the port a certificate.
  absl::Status Init();

  // Whether the API serves TLS (not --api-plaintext).
  bool api_tls() const { return !options_.api_plaintext; }
  // The API's certificate chain (leaf first) and key, PEM: the first before Run() (the CA issues
  // it to the control plane, as for the discovery port: ca/serving_certificate.h), then each
  // renewal. New connections get it; open ones keep theirs. Errors (a chain or key that does not
  // load, or a plaintext API) leave the port as it was. Loop thread (or before Run()).
  absl::Status SetApiServingCertificate(std::string certificate_chain_pem,
                                        std::string private_key_pem);
  // The roots client certificates presented to the API must chain to (the mesh trust bundle): a
  // client that presents one from another CA is refused at the handshake. Certificates are
  // requested, never required (operators authenticate with bearer tokens). Loop thread.
  absl::Status SetApiTrustBundle(std::string trust_bundle_pem);
  // Serves until SIGTERM/SIGINT or Stop(); returns the process exit code.
  int Run();
  // Makes Run() return after closing servers cleanly. Safe from any thread.
  void Stop();

  event::Loop& loop() { return loop_; }
  Store& store() { return *store_; }
  // Runs store calls off the loop (valid after Init()).
  StoreWorker& store_worker() { return *store_worker_; }
  registry::Registry& registry() { return *registry_; }
  api::PolicyApi& api() { return *api_; }
  // Who may call the API (valid after Init()): services plug Kubernetes users in here.
  access::AccessGate& access_gate() { return *gate_; }
  access::OperatorTokens& operator_tokens() { return *operator_tokens_; }
  StatsRegistry& stats() { return stats_; }
  const Clock& clock() const { return clock_; }
  const ControlPlaneOptions& options() const { return options_; }
  // Valid after Init(): the bound API address (the real port when configured with port 0).
  const net::Address& api_address() const { return api_server_->address(); }
  const std::string& api_token() const { return token_; }
  // Valid after Init(). With a store shared by replicas (etcd): the keys that encrypt the
  // secrets kept there (--store-encryption-key-file). Otherwise null.
  // The keys now (they change when the key file does).
  std::shared_ptr<const StoreKeys> store_keys() const {
    return store_key_ring_ == nullptr ? nullptr : store_key_ring_->keys();
  }
  // Valid after Init(). With a store shared by replicas (etcd): the store's leased keys and this
  // replica's name (--replica-name, or the host name). Otherwise null and empty.
  LeasedKeys* leased_keys() { return store_ != nullptr ? store_->leased_keys() : nullptr; }
  const std::string& replica_name() const { return replica_name_; }

  // Options for one of the control plane's HTTP servers (`server` labels its timeouts in
  // meshlet_cp_http_timeouts_total): the request and idle timeouts from the flags.
  http::HttpServerOptions HttpServerOptionsFor(absl::string_view server);

  // `listener` is told of every API write answered 2xx (after its audit record, if any), on the
  // loop thread: what the path names and who made it (null: no token needed). It must not block.
  using WriteListener =
      std::function<void(const access::AuditedObject& object, const access::Principal* caller)>;
  void AddWriteListener(WriteListener listener) { write_listeners_.push_back(std::move(listener)); }

  // Runs `hook` at the start of shutdown, before the API server closes (servers that plug in
  // register their own graceful stop here).
  void OnShutdown(std::function<void()> hook) { shutdown_hooks_.push_back(std::move(hook)); }
  // After the loop stops, Run() keeps it turning (at most 2 s, with the API's last responses)
  // until `finished` is true: for work a shutdown hook started, such as handing over a Lease.
  void AwaitOnShutdown(std::function<bool()> finished) {
    shutdown_waits_.push_back(std::move(finished));
  }

 private:
  void BeginShutdown();
  // Answers an API request the gate let in (`caller`: null for one that needs no token): on the
  // loop, or on the store worker when it calls the store.
  void Dispatch(const http::ServerRequest& request, std::optional<access::Principal> caller,
                http::Responder respond);
  // `respond`, recording the answer in the audit log first when `request` is a write.
  http::Responder Audited(const http::ServerRequest& request,
                          std::optional<access::Principal> caller, http::Responder respond);
  void RestoreRegistry();
  // Writes the registry to <data-dir>/registry.pb (removes the file when it is empty): the
  // periodic saves on the store worker (the write waits for an fsync), the one after restoring and
  // the final one at a clean stop (logged at INFO) on the loop.
  enum class SaveReason {
    kChanged,   // the periodic tick saw a new registry version
    kRestored,  // right after restoring the saved registry
    kStop,      // a clean stop (logged)
  };
  void SaveRegistry(SaveReason reason);
  // With etcd: the key file read again and the records re-sealed every
  // --store-key-check-interval, and once now; the etcd TLS files read again at the same time.
  void StartStoreKeyChecks();
  // Reads --etcd-cacert, --etcd-cert and --etcd-key again; a change that makes a valid context
  // is published to etcd_tls_ for new connections, an invalid one logged once and counted. On the
  // store worker (file reads).
  void ReloadEtcdTls();

  const ControlPlaneOptions options_;
  const Clock& clock_;
  event::Loop loop_;
  StatsRegistry stats_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<StoreKeyRing> store_key_ring_;
  // Reads the key file again and re-seals (on the store worker), one check at a time.
  std::unique_ptr<event::Timer> store_key_timer_;
  bool store_key_check_running_ = false;
  // TLS to etcd (null without it), its files' SHA-256 when last read, and the error last logged;
  // the last two touched on the store worker only.
  std::shared_ptr<tls::TlsContextProvider> etcd_tls_;
  std::string etcd_tls_digest_;
  std::string etcd_tls_error_;
  Counter etcd_tls_reloads_ok_, etcd_tls_reloads_failed_;
  // The end of the client certificate new connections to etcd present (Unix seconds).
  Gauge etcd_client_certificate_expiry_;
  std::unique_ptr<StoreWorker> store_worker_;  // after store_: stops before it goes
  // meshlet_cp_store_up, computed from store_->Up() at each read; after store_: goes before it.
  StatsRegistry::CollectorHandle store_up_;
  std::string token_;
  std::string replica_name_;
  std::unique_ptr<registry::Registry> registry_;
  // With etcd: registrations shared with the other replicas (null with the file store).
  std::unique_ptr<registry::SharedRegistrations> shared_registrations_;
  std::unique_ptr<access::OperatorTokens> operator_tokens_;
  std::unique_ptr<access::AccessGate> gate_;
  std::unique_ptr<access::AuditLog> audit_;  // null: --api-audit-log=off
  std::vector<WriteListener> write_listeners_;
  std::unique_ptr<api::PolicyApi> api_;
  std::unique_ptr<http::HttpServer> api_server_;
  // TLS on the API: null until the first certificate (connections are refused meanwhile).
  std::shared_ptr<tls::TlsContextProvider> api_tls_;
  std::string api_certificate_chain_pem_, api_private_key_pem_, api_trust_bundle_pem_;
  std::unique_ptr<event::Timer> expiry_timer_;
  std::vector<std::unique_ptr<event::Signal>> signals_;
  std::vector<std::function<void()>> shutdown_hooks_;
  std::vector<std::function<bool()>> shutdown_waits_;
  bool shutting_down_ = false;
  // Streams that close from then on close because of the shutdown (the saved registry keeps
  // those workloads as connected).
  absl::Time stopping_since_ = absl::InfiniteFuture();
  // The registry version last written to disk (saved while the control plane runs, so that a
  // crash loses at most the last moments); ticks of the expiry timer since the last save.
  uint64_t saved_registry_version_ = 0;
  std::string saved_registry_bytes_;  // what the file holds (empty: no file)
  // The same without connection state (every workload as connected), and when it was written.
  std::string saved_registrations_;
  MonotonicTime last_registry_write_{};
  int ticks_since_registry_save_ = 0;
  // A periodic save queued or running on the store worker (the next waits for it).
  bool registry_write_in_flight_ = false;
  Counter registry_save_errors_;      // meshlet_cp_registry_save_errors_total
  Counter api_cross_origin_refused_;  // meshlet_cp_api_cross_origin_refused_total
};

}  // namespace meshlet::controlplane
