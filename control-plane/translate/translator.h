#pragma once

// Translator: policy (PolicySnapshot) + registry (RegistrySnapshot) → the resources one sidecar
// runs on. Pure and deterministic: the same inputs give byte-identical resources in the same
// order, so content hashes make stable versions and an unchanged node gets no push.
//
// What a node receives (names are stable and part of the contract, docs/control-plane.md):
//
//   Listener "outbound"   <listen host>:<outbound port>, OUTBOUND, HTTP, routes "outbound"
//   Listener "inbound"    <listen host>:<inbound port>, INBOUND, AUTO, routes "inbound", TCP to
//                         the first app port; only when the workload serves ports; TLS in the
//                         TrafficPolicy/MeshConfig mode with the workload certificate when the
//                         node has one (label meshlet.io/workload-certificate); the
//                         AuthorizationPolicies that select the workload, with each virtual
//                         host's destination_port the app port it routes to
//   RouteConfiguration "outbound"  one virtual host per reachable Service (host names
//                         "<svc>", "<svc>.<ns>", "<svc>.<ns>.svc", "<svc>.<ns>.svc.<domain>", each
//                         also with ":<port>"), HTTPRoute rules first, then a default route
//   RouteConfiguration "inbound"   everything to the local app
//   Cluster "outbound|<port>|<subset>|<svc>.<ns>"  EDS; TrafficPolicy settings; <subset> is
//                         "k=v,k2=v2" (sorted) for HTTPRoute backends with a subset, else empty
//   Cluster "inbound|<port>"       STATIC, 127.0.0.1:<app port>
//   ClusterLoadAssignment per outbound cluster: the ready members' endpoints (a workload that is
//                         not ready, e.g. draining, is left out; its cluster stays the same)
//   Secret "mesh-trust-bundle"     the CA's roots, to nodes with a workload certificate
//
// Mesh mTLS (docs/security.md): a node with a workload certificate serves its inbound listener
// with it (PERMISSIVE or STRICT; DISABLE: plaintext) and originates mTLS to a service when the
// service's mode is not DISABLE and every member of the cluster has a workload certificate (or
// the mode is STRICT), expecting exactly the members' SPIFFE ids. Authorization is emitted as
// Listener.authorization only; the control plane never emits DownstreamTls.allowed_peer_ids
// (ADR 0022).
//
// Services: every Service resource, plus services only the registry knows (a workload registered
// with a service name and app ports is discoverable without a Service resource; its ports count
// as HTTP). Reachable: all of them, or, in discovery mode Declared (MeshConfig
// spec.discovery.mode, or spec.scopeToDependencies; the node label meshlet.io/discovery
// overrides it, lookup.h), the node's own service and those its registration label
// meshlet.io/dependencies lists ("svc", "svc.ns", "*.ns", comma-separated).
//
// Kubernetes Services (RegistrySnapshot::kubernetes, discovery in a cluster) are services too:
// their ports (protocol from appProtocol or the port name; a port declaring none is AUTO: routed
// as HTTP, and for captured connections detected, those that are not HTTP proxied as bytes to its
// TCP twin cluster "outbound|<port>|tcp|<svc>.<ns>", and on the inbound side to the app port),
// their ClusterIPs as addresses, and as members exactly their EndpointSlices' ready addresses. An
// address a registered workload of the namespace has is that workload (its sidecar: mTLS, identity,
// readiness; the Pod's labels added to those it registered); any other is a member without a
// sidecar, reached in plaintext on its target port. A Service resource of the same name keeps its
// own ports and addresses (the ClusterIPs come first), so it can declare protocols the Kubernetes
// Service does not.
//
// Endpoints point at the peer sidecars' inbound listeners (<workload address>:<inbound port>),
// which forward to their local app; the peer picks the app port from the Host the caller used.
//
// Traffic capture (node label meshlet.io/capture: iptables, Workload::capture): the pod's packet
// filter redirects the app's TCP to the outbound listener and TCP to the pod to the inbound
// listener, and both read each connection's original destination (docs/xds.md, "Capture
// listeners"). Such a node gets, on top of the above, with the listeners on 0.0.0.0:
//   Listener "outbound"   use_original_destination; one destination per reachable Service port
//                         with addresses (spec.addresses, else status.addresses): HTTP ports
//                         routed by "outbound" (whose virtual hosts then also answer to each
//                         address, and address:port), TCP ports to the port's cluster; others
//                         PASSTHROUGH (MeshConfig outboundTrafficPolicy ALLOW_ANY) or REFUSE
//                         (REGISTRY_ONLY)
//   Listener "inbound"    use_original_destination; one destination per app port: HTTP ports
//                         routed by "inbound|<app port>", TCP ports to "inbound|<app port>";
//                         other ports PASSTHROUGH to the app on 127.0.0.1
//   RouteConfiguration "inbound|<app port>"  everything to that app port
// Endpoints of captured members are <workload address>:<app port>: their packet filter
// redirects the connection and the port says which app port it is for.
//
// Clusters always come with every route that names them in the same NodeResources; the ADS
// server sends clusters (and their endpoints) before routes (design.md §5).
//
// Skew (docs/upgrades.md): everything above is the newest form. A node whose Node lacks
// capabilities (xds/capabilities.h: a sidecar of an older release) gets, as the last step, the
// older form of what it cannot read, or nothing in its place (capability_gates.h).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/translate/lookup.h"
#include "control-plane/translate/resources.h"
#include "xds/node.pb.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::translate {

// Shares the node-independent part of translations — the outbound RouteConfiguration, outbound
// clusters and their endpoints — between nodes that reach the same services, so a push to N
// sidecars builds it once instead of N times. Entries are keyed by PolicySnapshot::revision,
// RegistrySnapshot::version, the options and (when MeshConfig scopes configuration) the node's
// reachable services: use it only with snapshots whose revision/version identify their content
// (LoadPolicySnapshot, Registry::Snapshot). Thread-safe.
class TranslationCache {
 public:
  struct Outbound {
    std::vector<xds::RouteConfiguration> routes;
    std::vector<xds::ServiceRoute> service_routes;
    std::vector<xds::Cluster> clusters;
    std::vector<xds::ClusterLoadAssignment> endpoints;
    std::vector<std::string> warnings;
  };
  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    size_t entries = 0;
  };

  explicit TranslationCache(size_t max_entries = 256) : max_entries_(max_entries) {}

  std::shared_ptr<const Outbound> Find(const std::string& key);
  void Insert(const std::string& key, std::shared_ptr<const Outbound> outbound);
  Stats stats() const;

 private:
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Outbound>> entries_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

// Translates for `node` (its registration in `registry` if present, else the Node itself).
// `cache` (optional, not owned) reuses the node-independent part across nodes.
NodeResources Translate(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                        const NodeInput& node, const TranslateOptions& options = {},
                        TranslationCache* cache = nullptr);

// Translation of many nodes against one set of inputs (a push round). The service index is built
// once; a node's translation then splits into
//   - the outbound part (route "outbound", outbound clusters, their endpoints): the large part,
//     identical for every node with the same OutboundKey — the whole mesh when MeshConfig does
//     not scope configuration, else the nodes that reach the same services (and, during an
//     upgrade, read the same capabilities);
//   - the local part (listeners, route "inbound", inbound clusters): the node's own, small.
// Callers translate the outbound part once per distinct key and share it between nodes;
// TranslateOutbound(node) + TranslateLocal(node) is exactly Translate(policy, registry, node).
//
// Across inputs: when a newer MeshTranslator differs from an older one only in the members
// (endpoints) of some services (MemberChangesSince), a node's outbound part differs from the
// one the older translator built for the same OutboundKey only in those services' clusters and
// their assignments, which TranslateClusters builds alone: an endpoint change costs the
// translation of what it changes, not of the mesh (ADR 0088).
// Immutable after construction; const methods may run on any thread.
class MeshTranslator {
 public:
  using ServiceName = std::pair<std::string, std::string>;  // (namespace, name)

  // `previous` (optional, only read during construction): the translator of the inputs before
  // these, whose service index this one shares what did not change with (BuildIndex in
  // translation.h: with the same policy snapshot object, every Kubernetes Service whose entry
  // is the object that index saw), so an EndpointSlice change builds one service's view.
  MeshTranslator(std::shared_ptr<const PolicySnapshot> policy,
                 std::shared_ptr<const RegistrySnapshot> registry, TranslateOptions options,
                 const MeshTranslator* previous = nullptr);
  ~MeshTranslator();
  MeshTranslator(const MeshTranslator&) = delete;
  MeshTranslator& operator=(const MeshTranslator&) = delete;

  // Equal keys (within one MeshTranslator) give identical outbound parts. The key does not name
  // the inputs' versions: between translators, equal keys mean the same node-dependent choices.
  // The node's discovery mode among those the part depends on: nodes of different modes never
  // share a key.
  std::string OutboundKey(const NodeInput& node) const;
  // `origins` (optional): filled with where each outbound cluster comes from, by cluster name.
  NodeResources TranslateOutbound(const NodeInput& node,
                                  std::map<std::string, ClusterOrigin>* origins = nullptr) const;
  // The node's listeners (for an OnDemand node with Listener.on_demand), inbound route and
  // clusters.
  NodeResources TranslateLocal(const NodeInput& node) const;
  // Per-Service parts (ADR 0086): for a node that reads ServiceRoutes (SplitsOutbound), its
  // outbound part is TranslateCommonPart + TranslateServicePart of every Service of BaseSet,
  // merged by name (a cluster two parts name is the same in both). Equal PartVariants (within one
  // MeshTranslator) give identical parts of every Service, whatever else the nodes reach.
  bool SplitsOutbound(const NodeInput& node) const;
  std::string PartVariant(const NodeInput& node) const;
  // `service`'s ServiceRoutes, the clusters they name and their assignments, and the warnings of
  // its translation; nothing for a Service these inputs do not have. `origins` as for
  // TranslateOutbound.
  NodeResources TranslateServicePart(const NodeInput& node, const ServiceName& service,
                                     std::map<std::string, ClusterOrigin>* origins = nullptr) const;
  // The route configuration "outbound" (its "*" host) and the trust bundle Secret.
  NodeResources TranslateCommonPart(const NodeInput& node) const;
  // The discovery mode the node is served (EffectiveMode; OnDemand only for a node that may
  // look Services up).
  DiscoveryMode Mode(const NodeInput& node) const;
  // The Services the node is pushed (every one for WholeMesh; its own and its declared
  // dependencies otherwise, and in mode OnDemand NodeInput::discovered), in key order.
  std::vector<ServiceName> BaseSet(const NodeInput& node) const;
  // The outbound clusters `origins` name with their assignments (only those: no routes, no
  // secret), as TranslateOutbound(node) builds them; nullopt when an origin names a service or
  // port these inputs do not have.
  std::optional<NodeResources> TranslateClusters(const NodeInput& node,
                                                 const std::vector<ClusterOrigin>& origins) const;
  // The services whose members differ from those `previous` indexed, when that is all that
  // differs in what outbound parts read: the same policy revision and options, the same
  // services with the same ports, addresses, selectors and accounts. nullopt otherwise (the
  // caller translates everything). A service whose view this translator shares with `previous`
  // is not looked at: when this one was constructed from `previous`, only the views it built are
  // compared. `compared` (optional): set to how many services were compared, also when the
  // answer is nullopt.
  std::optional<std::set<ServiceName>> MemberChangesSince(const MeshTranslator& previous,
                                                          size_t* compared = nullptr) const;
  // Shares `previous`'s lookup tables (the host-name and address owners, the OnDemand address
  // ranges: HostOwnersCache) instead of building them again on first use: they read only
  // services' shapes and the policy. Only when MemberChangesSince(previous) had a value; call it
  // before this translator is shared with other threads. Both translators then fill and read
  // the same tables.
  void KeepLookupTables(const MeshTranslator& previous);
  // Lookup tables built into this translator's HostOwnersCache (shared ones count wherever
  // they were built).
  size_t lookup_tables_built() const;

  // What lookup key `key` resolves to for `node` (lookup.h): the Service port whose ServiceRoute
  // in this node's translation answers it. The host-name and address owner tables it reads are
  // built on first use and kept with the index.
  LookupResult Resolve(const NodeInput& node, absl::string_view key) const;

  // How the service index was built: services whose view was built for these inputs, services
  // whose view is the previous translator's, and Workloads made for Kubernetes endpoints.
  struct IndexStats {
    size_t services_built = 0;
    size_t services_shared = 0;
    size_t members_built = 0;
  };
  IndexStats index_stats() const;

  const PolicySnapshot& policy() const { return *policy_; }
  const RegistrySnapshot& registry() const { return *registry_; }

 private:
  struct Index;
  // MemberChangesSince's work; `count` counts the services compared.
  std::optional<std::set<ServiceName>> MemberChanges(const MeshTranslator& previous,
                                                     size_t& count) const;

  const std::shared_ptr<const PolicySnapshot> policy_;
  const std::shared_ptr<const RegistrySnapshot> registry_;
  const TranslateOptions options_;
  // Mutable only in KeepLookupTables.
  std::unique_ptr<Index> index_;
};

}  // namespace meshlet::controlplane::translate
