#pragma once

// What the files of the translation share; translator.h is its interface. One node's
// translation reads a TranslationContext (the inputs, the mesh index built from them, the node as
// registered) and writes a TranslationOutput; translator.cc is the driver that runs the steps of
// the part it is asked for, each step in the file of its concern:
//
//   mesh_index.cc     the mesh index: services (Service resources, registrations, Kubernetes
//                     Services), their ports, addresses and members; cluster names and addresses
//   translation.cc    the context: the node's workload, the services it reaches, the
//                     TrafficPolicy and MeshConfig settings that apply to a service
//   clusters.cc       outbound clusters (TrafficPolicy settings) with their endpoints; the
//                     inbound clusters to the local app
//   tls.cc            mesh mTLS: upstream TLS of clusters and endpoints, the inbound listener's
//                     TLS, the trust bundle Secret
//   backend_tls.cc    BackendTLSPolicy: the TLS of the clusters it targets, their CA Secrets
//   routes.cc         the route configuration "outbound" (virtual hosts, HTTPRoute rules,
//                     backends, retries and timeouts) and the inbound route to the app
//   gateway_routes.cc Gateway API HTTPRoutes and GRPCRoutes attached to a Service (GAMMA): which
//                     apply to a caller, their precedence, as the routes of a virtual host; the
//                     checks their status reports (route_status.cc)
//   lookup.cc         discovery modes; lookup keys resolved to the Service port answering them
//   listeners.cc      the outbound and inbound listeners, capture destinations, the inbound
//                     route configurations and clusters of the app's ports
//   external_services.cc  ExternalServices: their capture destinations, clusters and route
//                     configurations, and the routes of the egress gateways they leave through
//   authorization.cc  the AuthorizationPolicies that select the workload, as the inbound
//                     listener's authorization
//
// Pure functions of their inputs: nothing here keeps state between translations, and a
// TranslationContext may be read from any number of threads (a TranslationOutput is one
// translation's own). Private to control-plane/translate.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/lookup.h"
#include "control-plane/translate/resources.h"
#include "google/protobuf/duration.pb.h"
#include "xds/capabilities.h"
#include "xds/gateway.pb.h"
#include "xds/node.pb.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::translate {

namespace pb = ::meshlet::policy;
namespace gw = ::meshlet::gateway;
using registry::Workload;

inline constexpr absl::string_view kOutboundName = "outbound";
inline constexpr absl::string_view kInboundName = "inbound";
inline constexpr absl::string_view kDependenciesLabel = "meshlet.io/dependencies";

// ---------------------------------------------------------------------------------------------
// The mesh index (mesh_index.cc)

// A Service as the translator sees it: a policy Service, or one implied by registrations (a
// workload registered with a service name no Service resource describes gets HTTP ports equal
// to its app ports, so plain registration is enough for discovery).
struct ServiceView {
  std::string namespace_;
  std::string name;
  const pb::Service* resource = nullptr;  // null: implied by the registry or Kubernetes
  // The Kubernetes Service of that name, when discovery saw one: its EndpointSlices' ready
  // addresses are the members (registered workloads are not joined by name or selector).
  const registry::KubernetesService* kubernetes = nullptr;
  std::vector<pb::ServicePort> ports;  // sorted by port
  std::map<std::string, std::string> selector;
  // Service accounts whose workloads may be members (spec.serviceAccounts); empty: any.
  std::set<std::string> service_accounts;
  bool Admits(const Workload& w) const {
    return service_accounts.empty() || service_accounts.contains(w.service_account);
  }
  // Virtual addresses: spec.addresses, else those the control plane allocated (none for
  // services only the registry knows).
  std::vector<std::string> addresses;
  // Registered workloads of the service (by service name or selector), ordered by id; for a
  // Kubernetes Service its endpoints, which point into `owned_members`.
  std::vector<const registry::Workload*> members;
  // A Kubernetes Service's members as this view holds them: endpoints without a connected
  // sidecar, and copies of the registered workloads at its endpoints' addresses (with the Pod's
  // labels). Owned, so the view does not point into the registry snapshot and a later index can
  // share it (BuildIndex). A deque: `members` point at its elements.
  std::deque<Workload> owned_members;

  ServiceView() = default;
  // `members` may point into `owned_members`: a copy would point into the original, so there is
  // none. A move keeps them valid (a deque's elements stay where they are).
  ServiceView(const ServiceView&) = delete;
  ServiceView& operator=(const ServiceView&) = delete;
  ServiceView(ServiceView&&) = default;
  ServiceView& operator=(ServiceView&&) = default;

  std::string Fqdn() const { return absl::StrCat(name, ".", namespace_); }
};

using ServiceKey = std::pair<std::string, std::string>;  // (namespace, name)

struct MeshIndex;
struct PreviousIndex;

// A Gateway API route attached to a Service by one of its parentRefs (gateway_routes.cc): exactly
// one of `http` and `grpc` is set; `port` 0: every port of the Service.
struct GatewayAttachment {
  const gw::HTTPRoute* http = nullptr;
  const gw::GRPCRoute* grpc = nullptr;
  std::string namespace_;  // the route's
  uint32_t port = 0;
  // A consumer route: in another namespace than the Service's; it applies to callers of its own
  // namespace only.
  bool consumer = false;
};

// The TrafficPolicy and HTTPRoutes of each Service: a function of the policy snapshot alone, so
// indexes of one policy snapshot share it.
struct PolicyTargets {
  std::map<ServiceKey, const pb::TrafficPolicy*> traffic_policies;
  std::map<ServiceKey, std::vector<const pb::HTTPRoute*>> routes;  // each ordered by name
};

// A port of a Service of an index, the Service by its position in the index's key order
// (MeshIndex::ordered). Indexes of the same services in the same shapes number them alike, so a
// table of these is valid for each of them (MeshTranslator::KeepLookupTables).
struct ServicePortRef {
  uint32_t service = 0;
  uint32_t port = 0;
};

// Lower-cased host name → the Service port that owns it (OwnHostNames).
using HostOwners = absl::flat_hash_map<std::string, ServicePortRef>;
// Lookup key "addr:<ip>:<port>" (as xds::LookupKeyForAddress writes it) → the Service port
// whose capture destination matches that address and port (OwnAddresses).
using AddressOwners = absl::flat_hash_map<std::string, ServicePortRef>;

// The host-name owners of one index, built on first use per variant (captured or not, cluster
// domain), and its address owners, built on the first lookup: kept with the index, so every
// node's outbound part and every lookup read the same table instead of walking the mesh again.
// The tables read only what MeshTranslator::MemberChangesSince calls a service's shape and the
// policy, so an index differing from another in members only shares the other's cache.
// Any thread (a mutex guards the tables; a table never changes once built).
class HostOwnersCache {
 public:
  // Tables built into this cache so far (owners per variant, addresses, ranges).
  size_t tables_built() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tables_built_;
  }
  const HostOwners& Get(bool capture, const std::string& cluster_domain,
                        const std::function<HostOwners()>& build);
  const AddressOwners& Addresses(const std::function<AddressOwners()>& build);
  // The address ranges OnDemand capture listeners look up (OnDemandAddressRanges), built on
  // first use.
  const std::vector<std::string>& OnDemandRanges(
      const std::function<std::vector<std::string>()>& build);

 private:
  mutable std::mutex mu_;
  size_t tables_built_ = 0;
  std::map<std::pair<bool, std::string>, std::unique_ptr<const HostOwners>> owners_;
  std::unique_ptr<const AddressOwners> addresses_;
  std::unique_ptr<const std::vector<std::string>> on_demand_ranges_;
};

// An index's services by key, in key order: a sorted vector rather than a tree, so an index built
// from a previous one takes the views it shares by walking that one's entries in order (no tree
// look-up, node allocation or key copy to the heap per service: BuildIndex) and frees no node per
// service when it goes. The interface is the part of std::map the translator reads; iterators
// stay valid as long as the table is not rebuilt. Immutable once BuildIndex returns it; any
// thread.
class ServiceTable {
 public:
  using value_type = std::pair<ServiceKey, std::shared_ptr<const ServiceView>>;
  using const_iterator = std::vector<value_type>::const_iterator;

  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // The first entry whose key is not less than `key`.
  const_iterator lower_bound(const ServiceKey& key) const {
    return std::lower_bound(
        entries_.begin(), entries_.end(), key,
        [](const value_type& entry, const ServiceKey& k) { return entry.first < k; });
  }
  const_iterator find(const ServiceKey& key) const {
    auto it = lower_bound(key);
    return it != entries_.end() && it->first == key ? it : entries_.end();
  }
  bool contains(const ServiceKey& key) const { return find(key) != entries_.end(); }
  // The view of `key`; aborts when there is none (as std::map::at throws).
  const std::shared_ptr<const ServiceView>& at(const ServiceKey& key) const {
    auto it = find(key);
    if (it == entries_.end()) std::abort();
    return it->second;
  }

 private:
  friend MeshIndex BuildIndex(const PolicySnapshot&, const RegistrySnapshot&, const PreviousIndex&);
  std::vector<value_type> entries_;  // sorted by key, keys unique
};

// What every node's translation reads from the inputs: services with their members, the
// TrafficPolicy and HTTPRoutes of each. Built once per (policy revision, registry version); holds
// pointers into both snapshots, which must outlive it. Every view is immutable and may be shared
// with the index of newer inputs (BuildIndex).
struct MeshIndex {
  ServiceTable services;
  // The views of `services` in key order (ServicePortRef::service indexes it).
  std::vector<const ServiceView*> ordered;
  const ServiceView& service(ServicePortRef ref) const { return *ordered[ref.service]; }
  // "<service>.<namespace>:<port>": the port's virtual host's and ServiceRoute's name.
  std::string Name(ServicePortRef ref) const {
    return absl::StrCat(service(ref).Fqdn(), ":", ref.port);
  }
  std::shared_ptr<const PolicyTargets> by_target;
  // Accepted Gateway API routes by the Service a parentRef names, in snapshot order (HTTPRoutes,
  // then GRPCRoutes); and the namespaces holding a consumer route (their callers' outbound part
  // differs from everybody else's).
  std::map<ServiceKey, std::vector<GatewayAttachment>> gateway_routes;
  std::set<std::string> consumer_namespaces;
  // Host-name and address owners, filled in as translations and lookups ask (OwnHostNames,
  // OwnAddresses); shared with the index a member-only change came from
  // (MeshTranslator::KeepLookupTables).
  std::shared_ptr<HostOwnersCache> host_owners = std::make_shared<HostOwnersCache>();

  // How it was built. `serial` is unique per index; `built_from` is the serial of the previous
  // index BuildIndex was given (0: none), and `built` the keys of the views built here (in key
  // order): every other view is the very object of that index.
  uint64_t serial = 0;
  uint64_t built_from = 0;
  std::vector<ServiceKey> built;
  size_t members_built = 0;  // Workloads made for Kubernetes endpoints (owned_members)
  // Kubernetes Services the previous index's table was searched for, not found in order
  // (Kubernetes discovery lists them in about key order, so an index costs a key comparison per
  // shared view).
  size_t shared_searched = 0;
};

// Inputs a newer index may share views with: an index and the snapshots it was built from
// (alive while BuildIndex runs).
struct PreviousIndex {
  const MeshIndex* index = nullptr;
  const PolicySnapshot* policy = nullptr;
  const RegistrySnapshot* registry = nullptr;
};

// The index of `policy` and `registry`. With a `previous` index of the same policy snapshot
// object, a Kubernetes Service whose entry is the very KubernetesService object that index saw
// (Kubernetes discovery keeps an unchanged Service's object, registry.h) and none of whose
// endpoints' addresses belongs to a registered workload that changed (added, removed, or changed
// in what translation reads) shares that index's view instead of being built again, and the
// policy's targets are shared; so an EndpointSlice change builds one view. Views of Service
// resources and registered workloads read the registry snapshot and are built each time.
// Whatever is shared, the result equals BuildIndex without `previous`.
MeshIndex BuildIndex(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                     const PreviousIndex& previous = {});

// Whether two members are the same in everything translation reads of a member (the
// registration's times and stream counts are left out).
bool SameMember(const Workload& a, const Workload& b);

// "outbound|<port>|<subset>|<svc>.<ns>"; `opaque`: the TCP twin of an AUTO port's cluster, for
// the connections that are not HTTP ("outbound|<port>|tcp|<svc>.<ns>"; a subset is "k=v", so the
// names cannot meet).
std::string ClusterName(const ServiceView& s, uint32_t port,
                        const std::map<std::string, std::string>& subset, bool opaque = false);

// "host:port", with brackets around an IPv6 host.
std::string FormatAddress(absl::string_view host, uint32_t port);
// A virtual address as clients write it in Host / :authority (IPv6 in brackets).
std::string AddressHost(const std::string& address);

// Protocols of Service ports: everything but TCP is routed as HTTP. AUTO (a Kubernetes Service
// port that declares no protocol: no appProtocol, no known name prefix) is HTTP when the first
// bytes are HTTP, else opaque TCP (ListenerProtocol AUTO), as Istio and Linkerd treat such ports:
// everything HTTP ports get, plus a TCP twin cluster.
inline bool IsHttpProtocol(absl::string_view protocol) { return protocol != "TCP"; }
inline bool IsAutoProtocol(absl::string_view protocol) { return protocol == "AUTO"; }

// The port a workload's app listens on for the Service port `p` (one of `ports`): the target port,
// unless the workload registered other app ports (`registered`, sorted; several instances sharing
// one host cannot all listen on the target port), which then win, matched to the Service's ports in
// order.
uint32_t AppPort(const std::vector<pb::ServicePort>& ports, const pb::ServicePort& p,
                 const std::vector<uint32_t>& registered);
std::vector<uint32_t> SortedPorts(std::vector<uint32_t> ports);

// Whether `labels` has every key of `selector` with the same value (an empty selector: yes).
bool Matches(const std::map<std::string, std::string>& selector,
             const std::map<std::string, std::string>& labels);

inline void SetDuration(google::protobuf::Duration* out, const google::protobuf::Duration& in) {
  *out = in;
}

// ---------------------------------------------------------------------------------------------
// The context of one node's translation (translation.cc)

// What one node's translation reads: the policy snapshot, the registry, the index built from
// both, the options, and the node as registered (its registration, else what its Node says).
// Holds references to the inputs, which must outlive it.
struct TranslationContext {
  TranslationContext(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                     const MeshIndex& index, const NodeInput& node,
                     const TranslateOptions& options);
  // Held by reference: the options must outlive the context.
  TranslationContext(const PolicySnapshot&, const RegistrySnapshot&, const MeshIndex&,
                     const NodeInput&, TranslateOptions&&) = delete;

  // Whether this node is pushed `service`: every service in mode WholeMesh, else its own
  // service and those its label meshlet.io/dependencies lists, and in mode OnDemand those its
  // lookup keys discovered (NodeInput::discovered).
  bool Reachable(const ServiceView& service) const;
  // Whether a lookup key of this node may resolve to `service`: any service in mode OnDemand,
  // else those it is pushed (a Declared node discovers nothing it did not declare).
  bool MayDiscover(const ServiceView& service) const;
  // The keys of the services Reachable() admits, in key order (every service in mode
  // WholeMesh); a lookup per dependency rather than a pass over the mesh.
  std::vector<ServiceKey> ReachableKeys() const;
  // The TrafficPolicy of a service (null: none), and its HTTPRoutes ordered by name.
  const pb::TrafficPolicySpec* PolicyFor(const ServiceView& s) const;
  // The same TrafficPolicy as an object (its name, for decision records); null: none.
  const pb::TrafficPolicy* TrafficPolicyFor(const ServiceView& s) const;
  const std::vector<const pb::HTTPRoute*>& RoutesFor(const ServiceView& s) const;
  // Timeouts: the TrafficPolicy's over MeshConfig's defaults, field by field.
  pb::Timeouts EffectiveTimeouts(const pb::TrafficPolicySpec* tp) const;
  // Retries: the most specific non-empty setting per field (`rule`, then the TrafficPolicy, then
  // MeshConfig); `tp` and `rule` may be null.
  pb::Retries EffectiveRetries(const pb::TrafficPolicySpec* tp, const pb::Retries* rule) const;
  // The mTLS mode: the TrafficPolicy's, else MeshConfig's, else PERMISSIVE.
  std::string MtlsMode(const pb::TrafficPolicySpec* tp) const;
  // MeshConfig's trust domain, else the CA's (TranslateOptions::trust_domain), else cluster.local.
  std::string TrustDomain() const;

  const PolicySnapshot& policy;
  const RegistrySnapshot& registry;
  const MeshIndex& index;
  const TranslateOptions& options;
  Workload self;
  pb::MeshConfigSpec mesh;
  // What the node's sidecar reads (from its Node on this stream, not the registration: a
  // sidecar handing over to its successor shares its node id); translator.cc gates the rest.
  xds::CapabilitySet capabilities;
  // Whether the node may look Services up: it reads capabilities on-demand and service-routes
  // (lookups are subscriptions to ServiceRoutes) over a delta stream (NodeInput::delta).
  bool looks_up = false;
  // The node's discovery mode (EffectiveMode with looks_up); Declared for a gateway proxy, whose
  // clusters are its routes' backends only (built with its listeners).
  DiscoveryMode mode = DiscoveryMode::kWholeMesh;
  // A gateway proxy (label kGatewayLabel) rather than a sidecar, and the Gateway it serves (null:
  // none found).
  bool gateway_proxy = false;
  const gw::Gateway* gateway = nullptr;

 private:
  // NodeInput::discovered (not owned; null: none).
  const std::set<ServiceKey>* discovered_ = nullptr;
  // meshlet.io/dependencies, parsed once: services by key, and the namespaces listed as "*.ns".
  std::set<ServiceKey> dependencies_;
  std::set<std::string> dependency_namespaces_;
};

// What one node's translation builds: clusters and their endpoints by name (each created once,
// whatever number of routes name it), the rest straight into `resources`.
struct TranslationOutput {
  void Warn(std::string text) { resources.warnings.push_back(std::move(text)); }

  std::map<std::string, xds::Cluster> clusters;
  std::map<std::string, xds::ClusterLoadAssignment> endpoints;
  NodeResources resources;
  // When set, UseCluster records where each outbound cluster comes from (MeshTranslator callers
  // that re-translate single clusters later).
  std::map<std::string, ClusterOrigin>* origins = nullptr;
};

// The Namespace label (Kubernetes) that sets the outbound traffic policy of the sidecars in it,
// ALLOW_ANY or REGISTRY_ONLY, over MeshConfig's outboundTrafficPolicy (docs/configuration.md).
inline constexpr absl::string_view kOutboundTrafficPolicyLabel =
    "meshlet.io/outbound-traffic-policy";

// Where a resource came from, for decision records (xds PolicySource): the policy object's kind,
// namespace and name, and for routes the rule and match indexes in it (-1: none).
void SetPolicySource(absl::string_view kind, absl::string_view ns, absl::string_view name, int rule,
                     int match, xds::PolicySource& source);
// The MeshConfig as a PolicySource (kind "MeshConfig", no namespace).
void SetMeshConfigSource(xds::PolicySource& source);
// Decision records: which policy objects set a route's timeout and its per-try timeout, in the
// action's timeout_source and per_try_timeout_source (each only when the action has a positive
// one): `route` (the route's own object; null for a Service's default route) when its rule set
// it (`rule_timeout`, `rule_per_try`), else the TrafficPolicy of `s` when it sets it, else the
// MeshConfig's defaults.
void SetTimeoutSources(const TranslationContext& ctx, const ServiceView& s,
                       const xds::PolicySource* route, bool rule_timeout, bool rule_per_try,
                       xds::RouteAction& action);

// ---------------------------------------------------------------------------------------------
// Clusters (clusters.cc)

// The cluster for (service, port, subset) with its endpoints, created in `out` on first use;
// `opaque`: the TCP twin of an AUTO port's cluster (no subset). Returns its name.
const std::string& UseCluster(const TranslationContext& ctx, TranslationOutput& out,
                              const ServiceView& s, const pb::ServicePort& port,
                              const std::map<std::string, std::string>& subset,
                              bool opaque = false);
// Multicluster (ADR 0106). The server name a caller's mesh mTLS names a Service port by at a
// linked cluster's east-west gateway: "<port>.<service>.<namespace>.meshlet.internal".
inline constexpr absl::string_view kEastWestServerNameSuffix = ".meshlet.internal";
std::string EastWestServerName(absl::string_view namespace_, absl::string_view service,
                               uint32_t port);
// The label that exports a Service to linked clusters (value "true"): on a Service resource, or
// on a Kubernetes Service (KubernetesService::exported).
inline constexpr absl::string_view kExportLabel = "meshlet.io/export";
bool Exported(const ServiceView& s);
// An east-west gateway's cluster of an exported Service port, "eastwest|<port>||<svc>.<ns>": the
// ready members here that answer mesh mTLS (not a linked cluster's), reached as the Service's
// callers reach them, over TCP: the caller's TLS passes through.
const std::string& UseEastWestCluster(const TranslationContext& ctx, TranslationOutput& out,
                                      const ServiceView& s, const pb::ServicePort& port);
// The TrafficPolicy's (and MeshConfig's) settings of an outbound cluster: load balancer, connect
// timeout, circuit breakers, retry budget, connection pool, outlier detection.
void ApplyTrafficPolicy(const TranslationContext& ctx, const pb::TrafficPolicySpec* tp,
                        xds::Cluster& cluster);
// The STATIC cluster "inbound|<app port>" to the local app.
xds::Cluster InboundCluster(const TranslationContext& ctx, const std::string& name,
                            absl::string_view protocol, uint32_t app_port);

// ---------------------------------------------------------------------------------------------
// Mesh mTLS (tls.cc)

// A member that can answer mTLS: it announces a workload certificate, which names its service
// account.
bool HasCertificate(const Workload& w);
std::string SpiffeId(const TranslationContext& ctx, const Workload& w);
// The same in `trust_domain`.
std::string SpiffeId(absl::string_view trust_domain, const Workload& w);
// Mesh mTLS to a service's sidecars, with this node's workload certificate: when the `mode` is
// not DISABLE and some member (of the subset) has a certificate to answer with, or the mode is
// STRICT (plaintext would be refused anyway). The upstream must present one of the members'
// SPIFFE ids. Returns whether the cluster uses mTLS.
bool SetUpstreamMtls(const TranslationContext& ctx, const ServiceView& s,
                     const std::map<std::string, std::string>& subset, const std::string& mode,
                     xds::Cluster& cluster);
// Automatic mTLS per endpoint of a cluster (`mtls`: whether it uses mTLS): in PERMISSIVE, a
// member without a certificate to answer with is reached in plaintext while the others get mTLS;
// each mTLS endpoint must present exactly its own identity.
void SetEndpointTls(const TranslationContext& ctx, const Workload& w, bool mtls,
                    const std::string& mode, xds::Endpoint& endpoint);
// The inbound listener's TLS in `mode`, when the node has a workload certificate.
void SetDownstreamTls(const TranslationContext& ctx, const std::string& mode,
                      xds::Listener& listener);
// The trust bundle Secret, to nodes with a workload certificate when the options carry one.
void AddTrustBundle(const TranslationContext& ctx, NodeResources& resources);
// BackendTLSPolicy (backend_tls.cc): `cluster`'s TLS as `policy` says (SNI its hostname, its
// subjectAltNames, verified against its CA certificates, in the Secret BackendTlsSecretName);
// false, and nothing set, when none of its CA certificates resolves.
bool SetBackendTls(const TranslationContext& ctx, const gw::BackendTLSPolicy& policy,
                   xds::Cluster& cluster);
// The Secrets of the BackendTLSPolicies `resources.clusters` name, added to `resources.secrets`.
void AddBackendTlsSecrets(const TranslationContext& ctx, NodeResources& resources);
// What the clusters' TLS depends on besides the inputs' versions (part of the cache key).
std::string MeshTlsKey(const TranslationContext& ctx);

// ---------------------------------------------------------------------------------------------
// External services (external_services.cc; docs/egress.md)

// The destinations of the ExternalServices on a captured node's outbound `listener`, after the
// Services' (those of exact hosts before those of wildcards): a TLS port by the ClientHello's
// server name, an HTTP port by the Host of the first request, a TCP port by the addresses. Each
// goes to a cluster of the node's own ("external|<port>||<host>", resolved by the sidecar for
// resolution DNS, and for every host of an HTTP port; "external|<port>||<name>.<namespace>" with
// the endpoints for STATIC), or for NONE on to the address the app connected to. An HTTP port's
// hosts are virtual hosts of the route configuration "external|<port>", to the service's cluster
// (TLS originated when the port asks) or, with an egress gateway, to "egress|<ns>/<name>". A host
// and port two ExternalServices both claim goes to the first in (namespace, name) order, with a
// warning.
void AddExternalDestinations(const TranslationContext& ctx, TranslationOutput& out,
                             xds::Listener& listener);
// The route configuration `name` of an egress gateway's listener: a virtual host per host and
// HTTP port of the ExternalServices whose egressGateway is `gateway`, to the service's cluster
// (added to `out`, TLS originated when the port asks); other hosts are answered 404.
xds::RouteConfiguration EgressGatewayRoutes(const TranslationContext& ctx, TranslationOutput& out,
                                            const gw::Gateway& gateway, const std::string& name);

// ---------------------------------------------------------------------------------------------
// Routes (routes.cc)

// Whether the node gets its outbound route table split into ServiceRoutes (capability
// service-routes): one per Service port, each with its virtual host and capture destination. A
// node without it gets them inline, in the route configuration and the capture listener.
inline bool SplitsRouteTable(const TranslationContext& ctx) {
  return ctx.capabilities.Has(xds::Capability::kServiceRoutes);
}

// The route configuration "outbound", with the clusters its routes name: one virtual host per
// reachable Service port, HTTPRoute rules first, then a default route; a last "*" host answers
// 404. Also the clusters captured connections to Services' addresses need. For a node that
// SplitsRouteTable, the Service ports' virtual hosts and destinations are ServiceRoutes instead
// (the table keeps the "*" host). Without `services`, only the table and its "*" host (what a node
// that SplitsRouteTable gets beside the Services' parts).
void BuildOutboundRoutes(const TranslationContext& ctx, TranslationOutput& out,
                         bool services = true);
// The ServiceRoutes of `service`'s ports (for a node that SplitsRouteTable), with the clusters
// they name added to `out`.
void BuildServiceRoutes(const TranslationContext& ctx, const ServiceView& service,
                        TranslationOutput& out);

// Lower-cased host name → the Service port ("<service>.<namespace>:<port>") that owns it (host
// names match whatever their case, as the sidecar compares them): the first that
// claims it, in (namespace, name, port) order over the whole mesh, so that every node, whichever
// services it reaches and whichever form its table takes, sends a host name to the same Service
// and no two Service ports' virtual hosts share a domain (the sidecar refuses that across
// ServiceRoutes). Depends on whether the node is captured (its hosts include Service addresses).
// Built once per index and variant (MeshIndex::host_owners).
const HostOwners& OwnHostNames(const TranslationContext& ctx);

// What one Service port gives a node's outbound routing: its virtual host (HTTP and AUTO ports
// that own some host name) and, on a captured node, the capture destination of its addresses.
struct ServicePortRoute {
  std::string name;  // "<service>.<namespace>:<port>"
  std::optional<xds::VirtualHost> virtual_host;
  std::optional<xds::ListenerDestination> destination;
};
// The Service ports of `service` that route anything for this node, in port order, with the
// clusters they name added to `out` (and the warnings of what is left out).
std::vector<ServicePortRoute> RouteServicePorts(const TranslationContext& ctx,
                                                const HostOwners& owners,
                                                const ServiceView& service, TranslationOutput& out);
// `route` as the ServiceRoute joining "outbound". One above TranslateOptions::max_resource_bytes
// is replaced by one whose virtual host answers 503 "route table of S:P too large" (a warning,
// counted in NodeResources::oversized_service_routes).
xds::ServiceRoute ToServiceRoute(const TranslationContext& ctx, ServicePortRoute route,
                                 TranslationOutput& out);
// The host names of a Service port, bare too with `bare`; with `addresses`, its virtual
// addresses too (what a client that called the address sends as Host).
std::vector<std::string> Domains(const TranslationContext& ctx, const ServiceView& s, uint32_t port,
                                 bool bare, bool addresses = false);
// Timeouts and retries of a route to `s` (`rule`: the HTTPRoute rule, null for the default
// route).
void ApplyRouteDefaults(const TranslationContext& ctx, const ServiceView& s,
                        xds::RouteAction& action, const pb::HTTPRouteRule* rule);
// Makes `vhost` answer everything with `status` and `body` (one route, a direct response).
void AnswerEverything(xds::VirtualHost& vhost, absl::string_view route_name, uint32_t status,
                      absl::string_view body);
// Merged retries and timeouts as the sidecar's retry policy.
xds::RetryPolicy ToRetryPolicy(const pb::Retries& r, const pb::Timeouts& t);
// The inbound route to the local app's `cluster`.
xds::Route AppRoute(const std::string& cluster, const pb::TrafficPolicy* policy);

// ---------------------------------------------------------------------------------------------
// Gateway API routes (gateway_routes.cc)

inline constexpr absl::string_view kMeshControllerName = "meshlet.io/mesh-controller";
// The share of a weighted split whose backendRefs do not resolve goes to this cluster, which no
// configuration defines: the sidecar answers it locally with 500 (xds/resources.proto,
// WeightedClusters).
inline constexpr absl::string_view kMissingBackendCluster = "meshlet:missing-backend";

// Adds the accepted Gateway API routes of `policy` to `index.gateway_routes` (after the services
// are indexed): each parentRef naming an existing Service (and port, when it names one).
void IndexGatewayRoutes(const PolicySnapshot& policy, MeshIndex& index);
// Whether a parentRef names a Service (group "" or "core", kind Service): the mesh's, and so
// ours; other parents (Gateways) belong to other controllers.
bool IsServiceParent(const gw::ParentReference& ref);
// The namespace of a route or parentRef, "default" when empty.
std::string NamespaceOr(const std::string& ns, absl::string_view fallback = "default");
// Why a route cannot be accepted (an unsupported field, filter or value, an invalid duration or
// regular expression), naming where; empty when it can. Such a route is not programmed.
std::string UnsupportedReason(const gw::HTTPRoute& route);
std::string UnsupportedReason(const gw::GRPCRoute& route);
// A backendRef (or a mirror's) of a route of kind `route_kind` in `route_ns`, resolved: the
// Service and port, or the Gateway API reason it cannot be (BackendNotFound, RefNotPermitted,
// InvalidKind) with a message. `default_port`: the port when the reference names none and it is
// the parent Service (0: the Service's first HTTP port).
// A backendRef of either kind as the reference it holds.
template <typename BackendRef>
gw::BackendObjectReference ToObjectRef(const BackendRef& b) {
  gw::BackendObjectReference ref;
  ref.set_group(b.group());
  ref.set_kind(b.kind());
  ref.set_name(b.name());
  ref.set_namespace_(b.namespace_());
  if (b.has_port()) ref.set_port(b.port());
  return ref;
}
struct ResolvedBackend {
  const ServiceView* service = nullptr;
  const pb::ServicePort* port = nullptr;
  std::string reason;  // empty: resolved
  std::string message;
};
// A backend of a route of `route_kind` in `route_ns` whose parentRefs are `parent_refs`. A
// Service of another namespace needs a ReferenceGrant unless it is one of the route's Service
// parentRefs (GEP-1294: a consumer route may send to the Service it routes for).
using ParentRefs = google::protobuf::RepeatedPtrField<gw::ParentReference>;
ResolvedBackend ResolveBackend(const PolicySnapshot& policy, const MeshIndex& index,
                               absl::string_view route_kind, const std::string& route_ns,
                               const ParentRefs& parent_refs, const gw::BackendObjectReference& ref,
                               const ServiceView* parent = nullptr, uint32_t parent_port = 0);
// The Gateway API routes that apply to this node's calls to `service` on `port`, as routes of
// `vhost` in precedence order ending with a 404 for requests none matches. False (and nothing
// added) when none applies: the Service's own routing then stands.
bool AddGatewayRoutes(const TranslationContext& ctx, TranslationOutput& out,
                      const ServiceView& service, const pb::ServicePort& port,
                      xds::VirtualHost& vhost);
// A route attached to a listener of the Gateway a gateway proxy serves: exactly one of `http`
// and `grpc`; `hostname` the route's hostname at that listener ("" any, "*.x" a suffix): the
// more specific of an intersecting route and listener hostname, or the one that is set;
// `listener_hostname` that listener's.
struct GatewayListenerRoute {
  const gw::HTTPRoute* http = nullptr;
  const gw::GRPCRoute* grpc = nullptr;
  std::string hostname;
  std::string listener_hostname;
};
// A served listener of a Gateway port: its hostname ("" for any) and name (sectionName).
struct GatewayPortListener {
  std::string hostname;
  std::string name;
};
// The RouteConfiguration `name` of a Gateway port `port` whose served listeners are `listeners`:
// a virtual host per hostname of `routes` (and, when there are routes, per
// listener hostname), holding the rules of every route whose hostname covers it (its own, a
// wildcard over it, or any) and that is attached to the most specific listener covering it
// (listener isolation: a request never takes the routes of a less specific listener), ordered by
// the Gateway API's precedence (the matching hostname's characters, not a wildcard's first, then
// as in the mesh), ending with a 404. Backends need a port (there is no parent Service); their
// clusters are added to `out`, timeouts and retries are the rule's over the first backend's
// TrafficPolicy; a redirect without a port keeps `port`. Each virtual host names the listener
// that took it (gateway_listener).
xds::RouteConfiguration GatewayPortRoutes(const TranslationContext& ctx, TranslationOutput& out,
                                          const std::string& name, uint32_t port,
                                          const std::vector<GatewayListenerRoute>& routes,
                                          const std::vector<GatewayPortListener>& listeners);

// ---------------------------------------------------------------------------------------------
// Gateway proxies (gateway_proxy.cc; ADR 0099)

// The Gateway a node with kGatewayLabel serves: one of meshlet's GatewayClass in the node's own
// namespace, whose proxies' service account (GatewayServiceAccount) is the node's (proved by its
// certificate on the xDS stream: a workload cannot serve a Gateway it was not deployed for);
// null when there is none (the node then serves nothing).
const gw::Gateway* GatewayOfNode(const PolicySnapshot& policy, const Workload& self);
// The service account a Gateway's proxies must run as: "<name>-<gatewayClassName>".
std::string GatewayServiceAccount(const gw::Gateway& gateway);
// A gateway proxy's listeners: one per port of the Gateway's usable HTTP listeners,
// "gateway|<port>" on <listen host>:<port>, routed by the RouteConfiguration of the same name
// (GatewayPortRoutes), with the attached routes' backend clusters. Nothing for a Gateway that
// is not accepted (spec.addresses) or not found.
void BuildGatewayListeners(const TranslationContext& ctx, TranslationOutput& out);

// ---------------------------------------------------------------------------------------------
// Lookups (lookup.cc)

// Address and port of every Service with addresses (lookup key "addr:<ip>:<port>") → its Service
// port, the first in (namespace, name) order (validation keeps addresses unique). Built once per
// index (MeshIndex::host_owners).
const AddressOwners& OwnAddresses(const TranslationContext& ctx);

// The Service port whose ServiceRoute, as this node's translation writes it, answers `key`: a
// `host:` key's host name by OwnHostNames (exact with port, exact without, wildcards longest
// suffix first); an `addr:` key's address and port by OwnAddresses, on a captured node only
// (others have no capture destinations). The key is normalised as xds::LookupKeyFor* would
// (case, a trailing dot, an IPv4-mapped IPv6 address); what they refuse is kMalformed. A Service
// the node may not discover (MayDiscover) is kNotVisible.
LookupResult Resolve(const TranslationContext& ctx, absl::string_view key);

// ---------------------------------------------------------------------------------------------
// Listeners (listeners.cc)

// The capture destination of a Service port: its addresses and port, HTTP and AUTO ports routed
// by the route configuration "outbound", TCP ports (and AUTO ports' other bytes) to the port's
// cluster.
xds::ListenerDestination ServiceDestination(const ServiceView& service,
                                            const pb::ServicePort& port);
// Where a captured OnDemand node looks unknown original destinations up: MeshConfig
// discovery.addressRanges when set, else the Service address ranges (serviceAddressRange, its
// default, serviceAddressRangeV6) and the /16 (IPv4) or /48 (IPv6) of every Service address, a
// range inside another left out; ordered by address, then length. Built once per index
// (MeshIndex::host_owners).
const std::vector<std::string>& OnDemandAddressRanges(const TranslationContext& ctx);
// The listener "outbound" (with capture destinations for a captured node that does not get them
// in ServiceRoutes; for an OnDemand node, its Listener.on_demand).
void BuildOutboundListener(const TranslationContext& ctx, TranslationOutput& out);
// The listener "inbound" with its route configurations and clusters to the app's ports; nothing
// when the workload serves no ports.
void BuildInbound(const TranslationContext& ctx, TranslationOutput& out);

// ---------------------------------------------------------------------------------------------
// Authorization (authorization.cc)

// The AuthorizationPolicies of this node's namespace that select it (SelectsNode), as the
// inbound (or a gateway proxy's) listener's authorization. `ports` are the app's Service ports and
// `registered` its registered app ports (sorted), which say what app port a Service port stands
// for.
void BuildAuthorization(const TranslationContext& ctx, const std::vector<pb::ServicePort>& ports,
                        const std::vector<uint32_t>& registered, xds::Listener& listener);
// The RequestAuthentications of this node's namespace that select it (SelectsNode), as the
// inbound (or a gateway proxy's) listener's JWT authentication (each issuer once: the first policy
// by name that names it; a later one is left out with a warning in `out`).
void BuildJwt(const TranslationContext& ctx, xds::Listener& listener, TranslationOutput& out);
// Whether a policy of the node's namespace with `target` (a Service; empty: all) and
// `target_refs` (Services or Gateways, instead of target) selects the node: a sidecar by its
// Services (every sidecar when neither is set), a gateway proxy only by a targetRef naming its
// Gateway.
bool SelectsNode(const TranslationContext& ctx, const std::string& target,
                 const google::protobuf::RepeatedPtrField<pb::PolicyTargetReference>& target_refs);

}  // namespace meshlet::controlplane::translate
