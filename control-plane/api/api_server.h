#pragma once

// PolicyApi: the control plane's REST/JSON API (port 15014), as a pure request → response
// function so tests call it without sockets; ControlPlane (control-plane/server) mounts it on an
// http::HttpServer behind the access gate (control-plane/access/gate.h), which checks the caller
// against the role RequiredRole() names. docs/control-plane.md is the reference; in short (the
// role each needs in brackets):
//
//   GET  /healthz, /version, /metrics                      no token
//   GET  /, /dashboard/...                                 the dashboard's files, no token
//   GET  /apis/meshlet.io/v1                               the kinds [viewer]
//   GET  /apis/meshlet.io/v1/{plural}                      list, every namespace [viewer]
//   GET|POST /apis/meshlet.io/v1/namespaces/{ns}/{plural}  list [viewer] / create [editor]
//   GET|PUT|DELETE /apis/meshlet.io/v1/namespaces/{ns}/{plural}/{name}   [viewer | editor]
//   GET|PUT|DELETE /apis/meshlet.io/v1/meshconfigs/mesh    (cluster-wide)  [viewer | editor]
//   the same under /apis/gateway.networking.k8s.io/v1 (httproutes, grpcroutes) and
//   /apis/gateway.networking.k8s.io/v1beta1 (referencegrants)  [viewer | editor]
//   GET  /api/v1/workloads                                 the registry [viewer]
//   GET  /api/v1/proxies, /api/v1/proxies/{id}/config      from the ADS server (503 without
//                                                          one) [viewer]
//   POST /api/v1/proxies/{id}/config-dump                  asks the sidecar [viewer]
//   POST /api/v1/tokens, DELETE /api/v1/tokens/{id}        join tokens (503 unless enabled)
//                                                          [admin]
//   GET|POST /api/v1/operator-tokens, DELETE .../{name}    operator tokens [admin]
//   GET  /api/v1/whoami                                    the caller [viewer]
//   GET  /api/v1/tap?workload=|service=                    live tap, streamed NDJSON (503
//                                                          without ADS) [viewer; headers: admin]
//   GET  /api/v1/multicluster/exports                      what linked clusters read [peer]
//   GET  /api/v1/multicluster/links                        the links' state [viewer]
//   POST /api/v1/multicluster/links, DELETE .../{cluster}  link, unlink [admin]
//                                                          (control-plane/multicluster; 503
//                                                          without --cluster-name)
//   GET  /api/v1/trust-bundle                              the CA's roots, PEM (503 without a CA),
//                                                          no token
//   GET  /api/v1/ca                                        the CA's signing material in use and
//                                                          its last reload, JSON (503 without a
//                                                          CA) [viewer]
//   GET  /api/v1/traces, /api/v1/traces/{id}, /api/v1/dependencies, /api/v1/stat,
//        /api/v1/stat/history
//                                                          the trace collector and golden
//                                                          metrics (503 without them) [viewer]
//
// Writes take JSON or YAML, are validated before anything is stored (422 with field paths),
// honour `?dryRun=All`, and use metadata.resourceVersion for optimistic concurrency (409). A
// Service without spec.addresses is given virtual addresses (status.addresses) on its write;
// a MeshConfig write gives them to Services still without (control-plane/addresses).
// PUT creates or replaces; without a resourceVersion it replaces whatever it read (still atomic
// against a concurrent writer: that gives 409). Handle() does not authenticate: the gate did.
//
// Threading: Handle() for a request that CallsStore() (resources, join and operator tokens) may
// run on any one
// thread at a time (the control plane runs them on its store worker, as the store may wait: an
// fsync, or etcd without quorum) and touches only the store, the token handler and the stats;
// every other request runs on the HTTP server's loop thread, as do the providers and handlers.

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/version.h"
#include "common/http/server.h"
#include "common/stats/process_metrics.h"
#include "common/stats/stats.h"
#include "control-plane/access/operator_tokens.h"
#include "control-plane/access/roles.h"
#include "control-plane/addresses/service_addresses.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/policy/live_policy.h"
#include "control-plane/policy/managed_by.h"
#include "control-plane/policy/validate.h"
#include "control-plane/registry/registry.h"
#include "control-plane/store/store.h"
#include "control-plane/translate/gateway_status.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::api {

class StoredServices;

// The most lookup keys one GET /api/v1/proxies/{id}/config?lookup= may name.
inline constexpr size_t kMaxProxyConfigLookups = 16;

// What the ADS server reports about connected sidecars (filled in by control-plane/xds).
class ProxyStatusProvider {
 public:
  virtual ~ProxyStatusProvider() = default;
  // JSON object {"items": [{"id", "service", "namespace", "connectedSince", "types":
  // {"<type url>": {"sent": "<version>", "acked": "<version>", "nack": "<error text>"}}}]}.
  virtual std::string ProxiesJson() = 0;
  // One sidecar's resources as last sent, as a JSON object; NotFound for an unknown id. With
  // `lookups` (lookup keys, at most kMaxProxyConfigLookups): the resources it would be sent now
  // had it looked those up too, and each key's answer (AdsServer::ProxyConfigJson).
  virtual absl::StatusOr<std::string> ProxyConfigJson(absl::string_view node_id,
                                                      absl::Span<const std::string> lookups) = 0;
  // Asks the sidecar for its own view of its configuration (answered asynchronously; the answer
  // appears in ProxyConfigJson). Returns the request's nonce; NotFound for an unknown id.
  virtual absl::StatusOr<std::string> RequestSidecarConfig(absl::string_view node_id) {
    (void)node_id;
    return absl::UnimplementedError("this discovery server cannot ask sidecars");
  }
};

// Objects mirrored from Kubernetes are written only by the mirror, through HandleFromMirror
// (control-plane/policy/managed_by.h).
using policy::kManagedByAnnotation;
using policy::kManagedByKubernetes;
using policy::kMirrorHeader;

// Who HandleFromMirror's requests are made by.
inline const access::Principal kMirrorPrincipal{
    .name = "kubernetes-mirror", .credential = "in-process", .role = access::Role::kEditor};

struct ApiOptions {
  std::string server_version = kMeshletVersion;
  // The control plane's revision ("" the unnamed one), in GET /version as "revision" ("default"
  // for the unnamed one).
  std::string revision;
  policy::ValidationLimits limits;
};

class PolicyApi {
 public:
  // `registry` and `stats` may be null (no /api/v1/workloads; no metrics). Not owned; they must
  // outlive the PolicyApi.
  PolicyApi(Store& store, registry::Registry* registry, const Clock& clock, ApiOptions options,
            StatsRegistry* stats);
  ~PolicyApi();

  // Answers `request`, made by `caller` (null for a request RequiredRole() lets in without a
  // token), as one that arrived over the network: a kMirrorHeader it carries counts for nothing
  // (it is answered exactly as without it), and is counted
  // (meshlet_cp_api_forged_mirror_header_total) and logged with the caller's name.
  http::ServerResponse Handle(const http::ServerRequest& request,
                              const access::Principal* caller = nullptr);
  // Answers `request` from the Kubernetes mirror (control-plane/kubernetes/policy_mirror.h) of
  // this process, as an editor named kMirrorPrincipal: the one way in to write an object marked
  // kManagedByAnnotation: kManagedByKubernetes (to set the mark, to change or delete such an
  // object). No network request reaches it.
  // Threading as Handle().
  http::ServerResponse HandleFromMirror(const http::ServerRequest& request);

  // The role `request` needs (the table above); nullopt: none, not even a token.
  static std::optional<access::Role> RequiredRole(const http::ServerRequest& request);
  // The answer to a request the gate refused: Unauthenticated 401 (with WWW-Authenticate),
  // PermissionDenied 403, Unavailable 503, anything else 500; a Status body with the message.
  http::ServerResponse Refusal(const absl::Status& status);

  // Whether Handle() calls the store for `request`: /apis/..., /api/v1/tokens/...,
  // /api/v1/operator-tokens/... and writes under /api/v1/multicluster/links.
  static bool CallsStore(const http::ServerRequest& request);
  // What `request` does, as meshlet_cp_api_request_seconds labels it: for the policy resources
  // "get", "list", "create" (POST), "put" (PUT: create or replace, what meshctl apply sends) and
  // "delete"; "other" for everything else (health, metrics, registry, tokens, traces).
  static absl::string_view Operation(const http::ServerRequest& request);
  // `respond`, recording first how long the request took from this call to its answer in
  // meshlet_cp_api_request_seconds{operation} (the access check, the wait for the store worker,
  // the handling and any store write: the server's whole part of the request). Call it when the
  // request arrives; the responder may run on any thread.
  http::Responder Timed(const http::ServerRequest& request, http::Responder respond);

  // 503 for a request that CallsStore() when `pending` store calls are waiting already
  // (counted as a store error).
  http::ServerResponse StoreBusy(size_t pending);

  // Not owned; null clears it. Call on the loop thread (or before serving).
  void SetProxyStatusProvider(ProxyStatusProvider* provider) { proxies_ = provider; }
  // Serves /api/v1/tokens and below (join tokens: token_api.h) once set;
  // without it those paths answer 503. Call on the loop thread (or before serving).
  void SetTokenHandler(http::RequestHandler handler) { tokens_ = std::move(handler); }
  // Serves /api/v1/operator-tokens and below (operator_token_api.h) once set; without it
  // those paths answer 503. Not owned. Call before serving.
  void SetOperatorTokens(access::OperatorTokens* tokens) { operator_tokens_ = tokens; }
  // Serves `pem` (the CA's trust bundle: every root sidecars trust) at /api/v1/trust-bundle as
  // application/x-pem-file; before this, or with "", that path answers 503. Call on the loop
  // thread (or before serving).
  void SetTrustBundle(std::string pem) { trust_bundle_pem_ = std::move(pem); }
  // Serves what `status` returns (JSON) at /api/v1/ca. Call on the loop thread.
  void SetCaStatus(std::function<std::string()> status) { ca_status_ = std::move(status); }
  // Serves what `status` returns (JSON) at /api/v1/jwks (viewer; the jwksUris' fetch state:
  // control-plane/authn/jwks_fetcher.h); unset: 503. Called on the loop thread.
  void SetJwksStatus(std::function<std::string()> status) { jwks_status_ = std::move(status); }
  // Serves /api/v1/multicluster and below (control-plane/multicluster/multicluster_api.h) once
  // set, `caller` the authenticated principal; writes of links run on the store worker
  // (CallsStore), the rest on the loop thread. Unset: 503. Call before serving.
  using MulticlusterHandler =
      std::function<http::ServerResponse(const http::ServerRequest&, const access::Principal&)>;
  void SetMulticlusterHandler(MulticlusterHandler handler) { multicluster_ = std::move(handler); }
  // Serves /api/v1/ca/rotation (GET: viewer; POST starts a rotation, DELETE aborts it: admin),
  // on the store worker (CallsStore). Call on the loop thread, before serving.
  void SetCaRotationHandler(http::RequestHandler handler) { ca_rotation_ = std::move(handler); }
  // Serves /api/v1/traces and below and /api/v1/dependencies (the trace collector:
  // control-plane/telemetry) once set; without it those paths answer 503. Call on the loop
  // thread (or before serving).
  void SetTraceHandler(http::RequestHandler handler) { traces_ = std::move(handler); }
  // Serves /, /dashboard and /dashboard/... without the token (a static page that asks for the
  // token itself: control-plane/telemetry/dashboard.h). Call on the loop thread.
  void SetDashboardHandler(http::RequestHandler handler) { dashboard_ = std::move(handler); }
  // GET /api/v1/tap, answered with a streamed body (control-plane/xds/tap_service.h); unset: 503.
  using StreamedHandler = std::function<void(const http::ServerRequest&,
                                             const access::Principal* caller, http::Responder)>;
  void SetTapHandler(StreamedHandler handler) { tap_ = std::move(handler); }
  // Takes the requests answered later with a streamed body (the live tap), calling `respond`
  // then; false for any other request (for Handle). Loop thread.
  bool HandleStreamed(const http::ServerRequest& request, const access::Principal* caller,
                      http::Responder& respond);

  // The policy kept current from the store's watch (policy/live_policy.h), which GET and LIST of
  // Gateway API routes compute their status from instead of reading the whole store; null (the
  // default) reads the store. Any thread.
  void SetLivePolicy(std::shared_ptr<const policy::LivePolicy> live);
  // What the Gateway and route statuses depend on beyond the policy: the Secrets certificateRefs
  // name (a missing or unservable one is reported; nullopt, the default: only the references are
  // checked) and the namespaces' labels (allowedRoutes from: Selector). proxy_addresses is
  // ignored: they come from the registry at each GET. Any thread.
  void SetGatewayEnvironment(translate::GatewayEnvironment env);

  // The allocator of Service addresses the writes use (for the start-up backfill).
  addresses::ServiceAddresses& service_addresses() { return *addresses_; }

 private:
  struct Stats;
  // Where a request came from: only the mirror's may change a mirrored object.
  enum class Origin { kNetwork, kKubernetesMirror };
  http::ServerResponse Serve(const http::ServerRequest& request, const access::Principal* caller,
                             Origin origin);
  http::ServerResponse HandleAuthenticated(const http::ServerRequest& request,
                                           const access::Principal* caller, Origin origin);
  // `prefix`: the group and version the path names ("/apis/meshlet.io/v1"); `rest` what follows.
  http::ServerResponse HandleResources(const http::ServerRequest& request, absl::string_view prefix,
                                       absl::string_view rest, Origin origin);
  http::ServerResponse HandleRegistry(const http::ServerRequest& request, absl::string_view rest,
                                      const access::Principal* caller);
  http::ServerResponse RequestSidecarConfig(const http::ServerRequest& request,
                                            absl::string_view rest);
  // Counts a store failure; 503 when the store is unavailable (etcd without quorum), else 500.
  http::ServerResponse StoreFailure(const absl::Status& status);
  http::ServerResponse Get(const policy::KindInfo& info, const ResourceKey& key);
  http::ServerResponse List(const policy::KindInfo& info, absl::string_view namespace_);
  http::ServerResponse Write(const http::ServerRequest& request, const policy::KindInfo& info,
                             absl::string_view namespace_, absl::string_view name, bool create,
                             Origin origin);
  // Write's steps (resources.cc): each either refuses the write (its answer) or lets it on.
  struct PendingWrite;
  std::optional<http::ServerResponse> ReadDocument(const http::ServerRequest& request,
                                                   absl::string_view url_namespace,
                                                   absl::string_view url_name, PendingWrite& write);
  std::optional<http::ServerResponse> ValidateDocument(PendingWrite& write);
  std::optional<http::ServerResponse> CheckStoredState(PendingWrite& write);
  std::optional<http::ServerResponse> SetServerFields(PendingWrite& write);
  http::ServerResponse Commit(PendingWrite& write);
  http::ServerResponse Invalid(const PendingWrite& write, int status, absl::string_view message,
                               const std::vector<policy::FieldError>& causes,
                               absl::string_view name);
  http::ServerResponse Conflict(const PendingWrite& write, absl::string_view message);
  http::ServerResponse Answer(PendingWrite& write, int status, absl::string_view result,
                              int64_t revision);
  http::ServerResponse Remove(const http::ServerRequest& request, const policy::KindInfo& info,
                              const ResourceKey& key, Origin origin);
  // The computed status of the Gateway API objects (translate/route_status.h, gateway_status.h)
  // of `info`'s kind, serialized, by (kind, namespace, name; "" for a GatewayClass): what GET and
  // LIST of an HTTPRoute, GRPCRoute, Gateway or GatewayClass of gateway.networking.k8s.io show as
  // `status` (the store holds none). Empty for other kinds. Reads the live policy (SetLivePolicy;
  // without one, the whole policy store) and the registry, once per answer; `only`, when given,
  // is the one route a GET shows (the others' status is not computed; a Gateway's depends on
  // every route, so all Gateways are).
  using ObjectStatuses = std::map<std::tuple<std::string, std::string, std::string>, std::string>;
  ObjectStatuses ComputedStatuses(const policy::KindInfo& info,
                                  const ResourceKey* only = nullptr) const;
  // The stored resource as JSON, with its resourceVersion and, for a Gateway API kind, its
  // status from `statuses`.
  std::string ObjectJson(const StoredResource& stored,
                         const ObjectStatuses* statuses = nullptr) const;
  std::string WorkloadsJson() const;
  http::ServerResponse Error(int status, absl::string_view reason, absl::string_view message,
                             const std::vector<policy::FieldError>& causes = {},
                             absl::string_view kind = "", absl::string_view name = "");

  Store& store_;
  registry::Registry* registry_;
  const Clock& clock_;
  const ApiOptions options_;
  StatsRegistry* stats_registry_;
  std::unique_ptr<Stats> stats_;
  // The process_* families GET /metrics appends to the registry's (null without a registry).
  std::unique_ptr<const ProcessMetrics> process_metrics_;
  std::unique_ptr<addresses::ServiceAddresses> addresses_;
  std::unique_ptr<StoredServices> stored_services_;  // for Write's checks
  ProxyStatusProvider* proxies_ = nullptr;
  StreamedHandler tap_;
  http::RequestHandler tokens_;
  std::function<std::string()> ca_status_;
  std::function<std::string()> jwks_status_;
  http::RequestHandler ca_rotation_;
  MulticlusterHandler multicluster_;
  access::OperatorTokens* operator_tokens_ = nullptr;
  std::string trust_bundle_pem_;
  http::RequestHandler traces_;
  http::RequestHandler dashboard_;
  mutable std::mutex live_policy_mu_;
  std::shared_ptr<const policy::LivePolicy> live_policy_ ABSL_GUARDED_BY(live_policy_mu_);
  translate::GatewayEnvironment gateway_environment_ ABSL_GUARDED_BY(live_policy_mu_);
};

// Reads the API token from `path`, creating it (32 random bytes, hex; file mode 0600) if absent.
// Refuses a token file that others can read.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);
// Replaces the token file at `path` with `token` (mode 0600, atomically): several control-plane
// replicas share one token, and each data directory holds it.
absl::Status ReplaceToken(const std::string& path, absl::string_view token);

// Constant-time comparison (the time taken does not depend on where the strings differ).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace meshlet::controlplane::api
