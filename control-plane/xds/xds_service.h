#pragma once

// XdsService: the discovery service of the control-plane binary. It plugs the ADS server into
// the ControlPlane (control-plane/server): serves gRPC on --xds-address (15012) over TLS, or h2c
// with --xds-plaintext (local tests and demos only); generates each node's resources with the
// translator from the stored policy and the registry; registers connecting sidecars in the
// registry and records their readiness reports there (ProxyObserver: a draining sidecar's
// endpoints leave every caller's configuration with the next push, debounced like any registry
// change); pushes after every store change (each applied to the policy it holds, which is read
// from the store once, on the store worker when that must be retried, so the loop never waits
// for the store: policy::LivePolicy) or registry change (debounced by the ADS server); answers the
// API's proxy status (ProxyStatusProvider); and sends GOAWAY to every sidecar when the control
// plane shuts down.
//
// The port's certificate comes from --xds-tls-cert/--xds-tls-key, or, without them (and without
// --xds-plaintext), from the control plane's own CA: the owner then hands it in with
// SetServingCertificate() before Start() and again at each renewal (control-plane/ca's
// ServingCertificate does both). Either way the port never serves configuration unauthenticated
// unless asked to.
//
// Who may open a discovery stream (docs/security.md, "The discovery port"): on a TLS port, only a
// sidecar presenting its workload certificate, and only for a Node of that certificate's identity
// (namespace and service account), a node id no other identity holds in the registry, and a
// service whose Service resource, if it lists spec.serviceAccounts, lists that one; it then gets
// exactly that node's configuration. Refusals end the stream with UNAUTHENTICATED or
// PERMISSION_DENIED and are counted in meshlet_cp_xds_stream_refusals_total{reason}. A stream ends
// when its client certificate expires (the sidecar reconnects with its renewed one). With
// --xds-plaintext nothing is authenticated: local tests only, and it says so loudly at start.
//
// Threading: the ControlPlane's loop thread.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/http/grpc/server.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "control-plane/api/api_server.h"
#include "control-plane/policy/live_policy.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/store/store.h"
#include "control-plane/translate/translator.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/node_resources.h"
#include "control-plane/xds/tap_service.h"

namespace meshlet::controlplane::ads {

struct XdsServiceOptions {
  std::string address = "0.0.0.0:15012";
  std::string tls_cert_file;
  std::string tls_key_file;
  bool plaintext = false;
  // The mesh's trust domain: client certificates must name a workload of it.
  std::string trust_domain = "cluster.local";
  AdsServerOptions ads;
  translate::TranslateOptions translate;
  // HTTP/2 PING on a connection idle this long (zero: never); no answer within the timeout
  // closes it (the sidecar's streams end, the registry's grace period starts).
  Duration keepalive_interval = std::chrono::seconds(30);
  Duration keepalive_timeout = std::chrono::seconds(10);
  // A connection must finish its TLS handshake and open its first call within this, else it is
  // closed; a connection without calls for idle_timeout is told to go away (sidecars hold their
  // ADS stream open, so only clients that connect and leave it idle meet it). Zero: no limit.
  Duration handshake_timeout = std::chrono::seconds(10);
  Duration idle_timeout = std::chrono::seconds(300);
  // On shutdown, how long open streams get after GOAWAY.
  Duration shutdown_grace = std::chrono::seconds(2);
  // The live tap's limits (GET /api/v1/tap; --tap-*).
  TapOptions tap;

  // TLS with the certificate the control plane's CA issues to itself (SetServingCertificate).
  bool self_issued() const { return !plaintext && tls_cert_file.empty(); }
};

// The discovery flags, writing into `options`, for the control plane's command line
// (control-plane/command_line.h): --xds-address, --xds-tls-cert, --xds-tls-key, --xds-plaintext,
// --xds-max-concurrent-pushes, --xds-debounce, --xds-listen-host, --xds-keepalive-interval,
// --xds-keepalive-timeout, --xds-handshake-timeout, --xds-idle-timeout, and the live tap's
// --tap-max-rate, --tap-max-duration, --tap-max-concurrent, --tap-max-events-per-second.
std::vector<flags::Flag> XdsFlags(XdsServiceOptions& options);
// What the flags cannot check one at a time: the TLS files go together and exclude
// --xds-plaintext.
absl::Status CheckXdsFlags(const XdsServiceOptions& options);

class XdsService final : public api::ProxyStatusProvider, public ProxyObserver {
 public:
  XdsService(ControlPlane& control_plane, XdsServiceOptions options);
  ~XdsService() override;

  // After ControlPlane::Init() (and, for a self-issued certificate, the first
  // SetServingCertificate()): binds the discovery port and starts watching. Errors name the
  // address or file.
  absl::Status Start();

  // The discovery port's certificate chain (leaf first) and key, PEM, when options.self_issued():
  // the first before Start(), then each renewal. New connections get it; connections already
  // open keep the certificate they were made with. Errors (a chain or key that does not load,
  // or another certificate source) leave the port's certificate as it was.
  absl::Status SetServingCertificate(std::string certificate_chain_pem,
                                     std::string private_key_pem);

  // The mesh trust bundle (the CA's roots): pushed to sidecars with a workload certificate (the
  // translator's trust-bundle Secret), and, on a TLS discovery port, the roots client
  // certificates are verified against, which the port then requests (not requires), so the CA
  // can renew a workload certificate over mTLS. Call after Start(); errors leave the port as it
  // was.
  absl::Status SetTrustBundle(std::string trust_bundle_pem);
  // A CA rotation's renewal round, carried in the trust-bundle Secret (empty signer: none;
  // control-plane/ca/rotation.h). Loop thread; an unchanged round changes nothing.
  void SetCertificateRenewal(std::string signer, uint32_t round, uint32_t window_seconds);
  // SPIFFE federation: the foreign trust domains' roots (domain -> PEM), carried in the
  // trust-bundle Secret. Loop thread.
  void SetFederatedBundles(std::map<std::string, std::string> bundles);
  // RequestAuthentication jwksUris' key sets (URI -> JWKS), sent inline in the listeners' JWT
  // authentication. Loop thread.
  void SetJwks(std::map<std::string, std::string> jwks);
  // The Secrets Gateways' certificateRefs name (server/gateway_secrets.h): served to gateway
  // proxies as their HTTPS certificates, and judged by the policy API's Gateway status. nullopt:
  // not read (no HTTPS listener is served). Loop thread.
  void SetGatewayCertificates(std::optional<translate::GatewayCertificates> certificates);
  // The certificates will come (main.cc reads Secrets): until the first SetGatewayCertificates,
  // gateway proxies are answered Unavailable and keep what they serve, rather than lose their
  // HTTPS listeners while the Secrets are read. Before Start().
  void ExpectGatewayCertificates() { gateway_certificates_expected_ = true; }
  // The ConfigMaps BackendTLSPolicies' caCertificateRefs name (server/backend_ca_configmaps.h):
  // the CA certificates proxies verify those backends with. nullopt: not read (such backends are
  // not reached). Loop thread.
  void SetBackendCaBundles(std::optional<translate::BackendCaBundles> bundles);
  // Each namespace's labels (Kubernetes), for Gateways' allowedRoutes from: Selector, in the
  // gateway proxies' routes and the policy API's status. Loop thread.
  void SetNamespaceLabels(std::map<std::string, std::map<std::string, std::string>> labels);

  // `listener` gets every policy snapshot the service loads (the current one at once, if any),
  // on the loop thread. Call on the loop thread.
  using PolicyListener = std::function<void(std::shared_ptr<const policy::PolicySnapshot>)>;
  void AddPolicyListener(PolicyListener listener);

  const net::Address& address() const { return grpc_server_->address(); }
  // The gRPC server on the discovery port, for other services (the CA) to register on; null
  // before Start().
  http::grpc::Server* grpc_server() { return grpc_server_.get(); }
  AdsServer* ads() { return ads_.get(); }
  // The live tap (GET /api/v1/tap); null before Start().
  TapService* tap() { return tap_.get(); }

  // api::ProxyStatusProvider
  std::string ProxiesJson() override;
  absl::StatusOr<std::string> ProxyConfigJson(absl::string_view node_id,
                                              absl::Span<const std::string> lookups) override;
  absl::StatusOr<std::string> RequestSidecarConfig(absl::string_view node_id) override;

  // ProxyObserver
  void OnProxyConnected(const xds::Node& node) override;
  void OnProxyDisconnected(const std::string& node_id) override;
  void OnProxyActivity(const std::string& node_id) override;
  // Logs each change at INFO ("workload X not ready: draining").
  void OnProxyReadiness(const std::string& node_id, bool ready, const std::string& reason) override;

  // The AdsServer's generator: a node's resources, or Unavailable while what they depend on is
  // not read yet (the policy, Kubernetes discovery's first list, a gateway's Secrets). Loop
  // thread; public for tests.
  absl::StatusOr<NodeResourceSet> Generate(const GenerateRequest& request);

 private:
  // The AdsServer's StreamAuthorizer (see the file comment).
  absl::StatusOr<StreamGrant> AuthorizeStream(const http::grpc::ServerCall& call,
                                              const xds::Node& node);
  // Counts one refusal by `reason`, logs it, and returns `status`.
  absl::Status RefuseStream(const http::grpc::ServerCall& call, const xds::Node& node,
                            absl::string_view reason, absl::Status status);
  // Loads the whole policy on the store worker (after a failed load at start).
  void ReloadPolicy();
  void OnPolicyLoaded(absl::Status loaded);
  // Loop thread: takes the live policy's current snapshot and pushes it, if it is new.
  void OnPolicyChanged();
  // A server context for `certificate` (ServerTlsConfig) that, once there is a trust bundle,
  // requests client certificates and verifies them against it.
  static absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ServerContext(
      tls::TlsContextConfig certificate, const std::string& trust_bundle_pem);
  // Publishes `context` for new connections.
  void Publish(std::shared_ptr<const tls::TlsContext> context);

  ControlPlane& control_plane_;
  XdsServiceOptions options_;
  // The discovery port's TLS (null: plaintext, or no certificate yet) and the certificate it
  // was built from, without the trust bundle.
  std::shared_ptr<tls::TlsContextProvider> tls_provider_;
  tls::TlsContextConfig tls_config_;
  std::unique_ptr<http::grpc::Server> grpc_server_;
  std::unique_ptr<AdsServer> ads_;
  // GET /api/v1/tap over ads_ (destroyed first).
  std::unique_ptr<TapService> tap_;
  std::unique_ptr<registry::Registry::WatchHandle> registry_watch_;
  bool gateway_certificates_expected_ = false;
  // The stored policy, kept current by the store's watch (each change applied on its own); the
  // whole store is read once, and again only when that fails (on the store worker, with backoff,
  // while sidecars keep what they have).
  // Shared with the API (route status), which may still hold it while a request finishes.
  std::shared_ptr<policy::LivePolicy> live_policy_;
  // The snapshot translation uses (loop thread): the live policy's, taken after each change.
  std::shared_ptr<const policy::PolicySnapshot> policy_;
  std::vector<PolicyListener> policy_listeners_;
  // Set by a change until the loop takes it: changes that come faster than the loop turns cost
  // one push.
  std::shared_ptr<std::atomic<bool>> change_posted_ = std::make_shared<std::atomic<bool>>(false);
  bool reload_running_ = false;
  Duration reload_backoff_{0};
  std::unique_ptr<event::Timer> reload_retry_timer_;
  Counter policy_reloads_ok_;
  Counter policy_reloads_failed_;
  // Checked by tasks posted to the loop: gone once this is destroyed.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Translates each distinct input once per change and shares it between nodes.
  NodeResourceGenerator resources_;
  // Readiness reports for ids the registry does not hold (it refused their registration).
  Counter readiness_unregistered_;
  // Streams of nodes that say nothing about their release (xds::CapabilitiesAssumed).
  Counter nodes_unversioned_;
  // meshlet_xds_oversized_resources_total{type="service_routes"}.
  Counter oversized_service_routes_;
  // meshlet_cp_xds_stream_refusals_total by reason.
  absl::flat_hash_map<std::string, Counter> stream_refusals_;
};

}  // namespace meshlet::controlplane::ads
