#pragma once

// KubernetesDiscovery: the cluster's Services, EndpointSlices and Pods, read through the API
// server and kept current, handed to the registry as registry::KubernetesServices (the
// translator makes them mesh destinations: docs/kubernetes.md, "Service discovery").
//
// Each of the three kinds is reflected (listed, watched, listed again on 410) by a Reflector
// (reflector.h).
// Nothing is published before all three kinds have been listed once: until then the registry
// says kubernetes_pending, and the discovery service builds no configuration (a sidecar keeps
// what it has rather than losing every Kubernetes destination). After that, a change of what
// discovery reads (not a Pod's status, say) is published on the next loop turn (changes arriving
// together make one publication), unless the result is what was published last.
//
// A publication is per Service: watch events of Services and EndpointSlices rebuild only the
// entries of the Services they touch (the slice's Service before and after), a Pod's event only
// those of the Services whose EndpointSlices name it (an endpoint's targetRef), and every other
// entry of the published KubernetesServices is the previous publication's object, so an
// endpoint change costs one Service's endpoints, not the cluster's. A list (the first, or after
// a 410) rebuilds every entry; one whose value did not change still keeps its previous object.
//
// What is published: every Service but ExternalName ones, with its TCP ports (UDP and SCTP left
// out), the protocol of each from appProtocol, else the port name's prefix, else AUTO (HTTP when
// the first bytes are, else opaque TCP);
// its ClusterIPs; and the ready addresses (conditions.ready true or absent) of the
// EndpointSlices labelled kubernetes.io/service-name with its name, with the labels of the Pod
// each targets (Pods are read as metadata only: PartialObjectMetadata) and whether it has a
// sidecar (the annotations injection writes, with its service account). A Service port's target
// port is the port of the same name in its EndpointSlices (a named targetPort resolved by
// Kubernetes), else its numeric targetPort.
//
// Endpoints carry their locality (registry::KubernetesEndpoint): the slice's zone and nodeName,
// and the region of the Node's topology.kubernetes.io/region label. Nodes are read as metadata,
// only those two labels are kept, and a Node's change rebuilds only the Services with endpoints
// on it. Nodes do not hold publication back: a control plane that may not read them (or with
// DiscoveryOptions::node_topology off) publishes the Pods' topology labels (copied from their
// Node by Kubernetes 1.35 and later) or no region.
//
// Needs RBAC list and watch on services, endpointslices (discovery.k8s.io), pods and nodes
// (k8s/base/rbac.yaml).
//
// Stats: the reflectors' (reflector.h), meshlet_cp_kubernetes_services (published),
// meshlet_cp_kubernetes_publications_total.
//
// Threading: the loop thread. The registry and stats must outlive this; destroying it stops the
// watches and drops requests in flight.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/reflector.h"
#include "control-plane/registry/registry.h"

namespace meshlet::controlplane::kubernetes {

// What injection writes on every injected pod (control-plane/inject/inject.h): the revision of
// its sidecar's control plane and the pod's service account. A pod with a sidecar that is
// connected to another control-plane revision is reached over mTLS with that identity.
inline constexpr char kSidecarRevisionAnnotation[] = "sidecar.meshlet.io/revision";
inline constexpr char kSidecarServiceAccountAnnotation[] = "sidecar.meshlet.io/serviceAccount";

struct DiscoveryOptions {
  // On whenever an API server is known (--kubernetes-api); false turns discovery off.
  bool enabled = true;
  // timeoutSeconds of each watch: the server ends it then and a new one starts.
  absl::Duration watch_timeout = absl::Minutes(5);
  // Deadline of one list page.
  absl::Duration list_timeout = absl::Seconds(60);
  int page_size = 500;
  // Bound on one list page and on one watch event.
  size_t max_response_bytes = 16 << 20;
  Duration retry_base = std::chrono::milliseconds(500);
  Duration retry_cap = std::chrono::seconds(30);
  // Read Nodes' topology labels for the endpoints' region (--kubernetes-node-topology).
  bool node_topology = true;
};

// --kubernetes-discovery, --kubernetes-node-topology, --kubernetes-watch-timeout,
// --kubernetes-list-page-size,
// --kubernetes-max-response-bytes.
std::vector<flags::Flag> DiscoveryFlags(DiscoveryOptions& options);

class KubernetesDiscovery {
 public:
  // Connects nothing yet; errors are those of KubernetesApi::Create (naming the flag).
  static absl::StatusOr<std::unique_ptr<KubernetesDiscovery>> Create(event::Loop& loop,
                                                                     KubernetesApiOptions api,
                                                                     registry::Registry& registry,
                                                                     StatsRegistry& stats,
                                                                     DiscoveryOptions options);
  ~KubernetesDiscovery();
  KubernetesDiscovery(const KubernetesDiscovery&) = delete;
  KubernetesDiscovery& operator=(const KubernetesDiscovery&) = delete;

  // Marks the registry pending and lists the three kinds.
  void Start();
  // All three kinds have been listed once (and published).
  bool synced() const;
  // Service entries built from the caches so far (each publication builds those it rebuilds):
  // what a change costs, for tests.
  uint64_t services_built() const { return services_built_; }

  // What discovery reads of each object (discovery.cc).
  struct ServicePortObject;
  struct ServiceObject;
  struct SliceObject;
  struct PodObject;
  using Object = std::variant<ServiceObject, SliceObject, PodObject>;
  // A Node's topology.kubernetes.io/region and /zone labels.
  struct NodeTopology {
    std::string region;
    std::string zone;
    bool operator==(const NodeTopology&) const = default;
  };

 private:
  KubernetesDiscovery(event::Loop& loop, std::unique_ptr<KubernetesApi> api,
                      registry::Registry& registry, StatsRegistry& stats, DiscoveryOptions options);
  // A reflector's cache changed: publish on the next loop turn.
  void Changed();
  void Publish();
  // Files the EndpointSlice `key` (if still cached) under its Service in service_slices_ and
  // under the Pods its endpoints name in pod_slices_; returns that Service's key, or empty.
  std::string IndexSlice(const std::string& key);
  // Removes what IndexSlice filed for `key`; returns the Service it was filed under, or empty.
  std::string UnindexSlice(const std::string& key);
  // The entry of the Service `key` from the caches.
  registry::KubernetesService BuildService(const std::string& key, const ServiceObject& service);
  // The endpoint's region (and zone, when its slice names none) from its Node, else its Pod.
  void SetTopology(registry::KubernetesEndpoint& endpoint, const PodObject* pod) const;

  event::Loop& loop_;
  std::unique_ptr<KubernetesApi> api_;
  registry::Registry& registry_;
  StatsRegistry& stats_;
  const DiscoveryOptions options_;
  std::unique_ptr<Reflector<Object>> services_;
  std::unique_ptr<Reflector<Object>> slices_;
  std::unique_ptr<Reflector<Object>> pods_;
  std::unique_ptr<Reflector<NodeTopology>> nodes_;  // null: node_topology off
  event::Timer publish_timer_;
  bool published_ = false;
  // What was published last, by Service key ("namespace/name").
  std::map<std::string, std::shared_ptr<const registry::KubernetesService>> entries_;
  // EndpointSlice keys by their Service's key, and the reverse, as of the last publication.
  std::map<std::string, std::set<std::string>> service_slices_;
  std::map<std::string, std::string> slice_service_;
  // EndpointSlice keys by the Pod keys ("namespace/name") their endpoints name, and the reverse.
  std::map<std::string, std::set<std::string>> pod_slices_;
  std::map<std::string, std::vector<std::string>> slice_pods_;
  uint64_t services_built_ = 0;
  Gauge published_services_;
  Counter publications_;
};

}  // namespace meshlet::controlplane::kubernetes
