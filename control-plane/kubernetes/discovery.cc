#include "control-plane/kubernetes/discovery.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/logging.h"
#include "common/http/client.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {

// The parts of each kind that discovery reads.
struct KubernetesDiscovery::ServicePortObject {
  std::string name;
  uint32_t port = 0;
  std::string protocol;  // TCP, UDP, SCTP
  std::string app_protocol;
  uint32_t target_port = 0;  // 0: named (resolved by the EndpointSlices) or absent
  bool operator==(const ServicePortObject&) const = default;
};
struct KubernetesDiscovery::ServiceObject {
  std::vector<std::string> cluster_ips;
  std::vector<ServicePortObject> ports;
  bool prefer_close = false;  // spec.trafficDistribution: PreferClose
  bool node_local = false;    // spec.internalTrafficPolicy: Local
  bool exported = false;      // label meshlet.io/export: "true"
  bool operator==(const ServiceObject&) const = default;
};
struct KubernetesDiscovery::SliceObject {
  std::string service;
  std::map<std::string, uint32_t> ports;  // by name: the endpoints' port number
  struct Endpoint {
    std::vector<std::string> addresses;
    bool ready = true;
    std::string pod;
    std::string zone;  // the endpoint's zone and nodeName
    std::string node;
    bool operator==(const Endpoint&) const = default;
  };
  std::vector<Endpoint> endpoints;
  bool operator==(const SliceObject&) const = default;
};
struct KubernetesDiscovery::PodObject {
  std::map<std::string, std::string> labels;
  std::string service_account;
  // Injected: the sidecar.meshlet.io/revision annotation injection writes.
  bool sidecar = false;
  bool operator==(const PodObject&) const = default;
};

using DiscoveryObject = KubernetesDiscovery::Object;
using ServicePortObject = KubernetesDiscovery::ServicePortObject;
using ServiceObject = KubernetesDiscovery::ServiceObject;
using SliceObject = KubernetesDiscovery::SliceObject;
using PodObject = KubernetesDiscovery::PodObject;

namespace {

constexpr char kRbacHint[] =
    "the control plane needs list and watch on services, endpointslices and pods "
    "(k8s/base/rbac.yaml)";
constexpr char kServiceNameLabel[] = "kubernetes.io/service-name";
constexpr char kRegionLabel[] = "topology.kubernetes.io/region";
constexpr char kZoneLabel[] = "topology.kubernetes.io/zone";

uint32_t PortNumber(const std::string& text) {
  uint32_t port = 0;
  return absl::SimpleAtoi(text, &port) && port <= 65535 ? port : 0;
}

// nullopt: an object of the kind that discovery leaves out (ExternalName, FQDN slices).

std::optional<DiscoveryObject> ParseService(const YAML::Node& object) {
  const YAML::Node spec = NodeAt(object, "spec");
  if (ScalarAt(spec, "type") == "ExternalName") return std::nullopt;
  ServiceObject out;
  const YAML::Node ips = NodeAt(spec, "clusterIPs");
  if (ips.IsSequence()) {
    for (const YAML::Node& ip : ips) {
      if (ip.IsScalar() && ip.Scalar() != "None" && !ip.Scalar().empty()) {
        out.cluster_ips.push_back(ip.Scalar());
      }
    }
  } else if (const std::string ip = ScalarAt(spec, "clusterIP"); !ip.empty() && ip != "None") {
    out.cluster_ips.push_back(ip);
  }
  out.prefer_close = ScalarAt(spec, "trafficDistribution") == "PreferClose";
  out.node_local = ScalarAt(spec, "internalTrafficPolicy") == "Local";
  out.exported =
      ScalarAt(NodeAt(NodeAt(object, "metadata"), "labels"), "meshlet.io/export") == "true";
  const YAML::Node ports = NodeAt(spec, "ports");
  if (ports.IsSequence()) {
    for (const YAML::Node& p : ports) {
      ServicePortObject port;
      port.name = ScalarAt(p, "name");
      port.port = PortNumber(ScalarAt(p, "port"));
      port.protocol = ScalarAt(p, "protocol");
      if (port.protocol.empty()) port.protocol = "TCP";
      port.app_protocol = ScalarAt(p, "appProtocol");
      const std::string target = ScalarAt(p, "targetPort");
      port.target_port = target.empty() ? port.port : PortNumber(target);
      if (port.port != 0) out.ports.push_back(std::move(port));
    }
  }
  return out;
}

std::optional<DiscoveryObject> ParseSlice(const YAML::Node& object) {
  const std::string address_type = ScalarAt(object, "addressType");
  if (address_type != "IPv4" && address_type != "IPv6") return std::nullopt;
  SliceObject out;
  out.service = ScalarAt(NodeAt(NodeAt(object, "metadata"), "labels"), kServiceNameLabel);
  if (out.service.empty()) return std::nullopt;  // not managed for a Service
  const YAML::Node ports = NodeAt(object, "ports");
  if (ports.IsSequence()) {
    for (const YAML::Node& p : ports) {
      const uint32_t number = PortNumber(ScalarAt(p, "port"));
      const std::string protocol = ScalarAt(p, "protocol");
      if (number != 0 && (protocol.empty() || protocol == "TCP")) {
        out.ports.emplace(ScalarAt(p, "name"), number);
      }
    }
  }
  const YAML::Node endpoints = NodeAt(object, "endpoints");
  if (endpoints.IsSequence()) {
    for (const YAML::Node& e : endpoints) {
      SliceObject::Endpoint endpoint;
      const YAML::Node addresses = NodeAt(e, "addresses");
      if (addresses.IsSequence()) {
        for (const YAML::Node& a : addresses) {
          if (a.IsScalar() && !a.Scalar().empty()) endpoint.addresses.push_back(a.Scalar());
        }
      }
      // "nil should be interpreted as ready" (discovery.k8s.io/v1 EndpointConditions).
      endpoint.ready = ScalarAt(NodeAt(e, "conditions"), "ready") != "false";
      const YAML::Node target = NodeAt(e, "targetRef");
      if (ScalarAt(target, "kind") == "Pod") endpoint.pod = ScalarAt(target, "name");
      endpoint.zone = ScalarAt(e, "zone");
      endpoint.node = ScalarAt(e, "nodeName");
      out.endpoints.push_back(std::move(endpoint));
    }
  }
  return out;
}

// Pods are read as metadata only (PartialObjectMetadata, kMetadataListAccept: a tenth of a Pod's
// JSON): labels, and the annotations injection writes (a sidecar, its service account). A server
// that sends whole Pods gives the service account of the spec, which wins.
std::optional<DiscoveryObject> ParsePod(const YAML::Node& object) {
  PodObject out;
  const YAML::Node metadata = NodeAt(object, "metadata");
  out.labels = StringMap(NodeAt(metadata, "labels"));
  const YAML::Node annotations = NodeAt(metadata, "annotations");
  out.sidecar = !ScalarAt(annotations, kSidecarRevisionAnnotation).empty();
  out.service_account = ScalarAt(NodeAt(object, "spec"), "serviceAccountName");
  if (out.service_account.empty() && out.sidecar) {
    out.service_account = ScalarAt(annotations, kSidecarServiceAccountAnnotation);
  }
  return out;
}

std::optional<KubernetesDiscovery::NodeTopology> ParseNode(const YAML::Node& object) {
  const YAML::Node labels = NodeAt(NodeAt(object, "metadata"), "labels");
  return KubernetesDiscovery::NodeTopology{.region = ScalarAt(labels, kRegionLabel),
                                           .zone = ScalarAt(labels, kZoneLabel)};
}

// The mesh protocol of a Service port: appProtocol, else the name's prefix ("http", "http-web",
// "grpc-api", "tcp-db"), as Istio reads them; a port that says neither is AUTO (HTTP when the
// first bytes are, else opaque TCP). The Kubernetes standard values (KEP-3726, honoured by the
// Gateway API's backend protocol selection): kubernetes.io/h2c is HTTP/2 with prior knowledge
// (HTTP2: every hop's upstream connection to it speaks HTTP/2 from the first byte), and
// kubernetes.io/ws is WebSocket over cleartext, an HTTP/1.1 Upgrade (HTTP: routed, its tunnel
// carried on an HTTP/1.1 connection); kubernetes.io/wss (WebSocket in the app's own TLS) is bytes.
std::string MeshProtocol(const ServicePortObject& port) {
  auto of = [](absl::string_view text) -> std::string {
    const std::string lower = absl::AsciiStrToLower(text);
    if (lower == "http" || lower == "http1" || lower == "kubernetes.io/ws") return "HTTP";
    if (lower == "http2" || lower == "h2c" || lower == "kubernetes.io/h2c") return "HTTP2";
    if (lower == "grpc" || lower == "grpc-web") return "GRPC";
    if (lower == "tcp" || lower == "tls" || lower == "https" || lower == "kubernetes.io/wss" ||
        lower == "mongo" || lower == "mysql" || lower == "redis") {
      return "TCP";
    }
    return "";
  };
  if (!port.app_protocol.empty()) {
    // A protocol meshlet does not read (an application's own) is carried as bytes.
    const std::string protocol = of(port.app_protocol);
    return protocol.empty() ? "TCP" : protocol;
  }
  const absl::string_view name = port.name;
  const std::string protocol = of(name.substr(0, name.find('-')));
  return protocol.empty() ? "AUTO" : protocol;
}

}  // namespace

std::vector<flags::Flag> DiscoveryFlags(DiscoveryOptions& options) {
  return {
      flags::BoolFlag("--kubernetes-discovery", &options.enabled,
                      "make the cluster's Services mesh destinations (default true when an API "
                      "server is known; =false turns it off)"),
      flags::DurationAtLeastFlag(
          "--kubernetes-watch-timeout", absl::Seconds(1), &options.watch_timeout,
          "how long the API server keeps each watch before it is renewed (default 5m)", "5m"),
      flags::BoolFlag("--kubernetes-node-topology", &options.node_topology,
                      "read Nodes' topology.kubernetes.io/region and /zone labels (metadata "
                      "only) for the region and zone of endpoints (default true; =false: the "
                      "EndpointSlices' zones and the Pods' topology labels only)"),
      flags::IntFlag("--kubernetes-list-page-size", "N", &options.page_size,
                     "objects per list page (default 500)", 1, 100000),
      flags::IntFlag("--kubernetes-max-response-bytes", "BYTES", &options.max_response_bytes,
                     "largest list page or watch event accepted (default 16777216)", size_t{1024}),
  };
}

absl::StatusOr<std::unique_ptr<KubernetesDiscovery>> KubernetesDiscovery::Create(
    event::Loop& loop, KubernetesApiOptions api, registry::Registry& registry, StatsRegistry& stats,
    DiscoveryOptions options) {
  api.max_response_bytes = options.max_response_bytes;
  absl::StatusOr<std::unique_ptr<KubernetesApi>> client = KubernetesApi::Create(loop, api);
  if (!client.ok()) return client.status();
  return std::unique_ptr<KubernetesDiscovery>(
      new KubernetesDiscovery(loop, *std::move(client), registry, stats, std::move(options)));
}

KubernetesDiscovery::KubernetesDiscovery(event::Loop& loop, std::unique_ptr<KubernetesApi> api,
                                         registry::Registry& registry, StatsRegistry& stats,
                                         DiscoveryOptions options)
    : loop_(loop),
      api_(std::move(api)),
      registry_(registry),
      stats_(stats),
      options_(std::move(options)),
      publish_timer_(loop, [this] { Publish(); }) {
  const ReflectorOptions reflector{.watch_timeout = options_.watch_timeout,
                                   .list_timeout = options_.list_timeout,
                                   .page_size = options_.page_size,
                                   .retry_base = options_.retry_base,
                                   .retry_cap = options_.retry_cap};
  auto changed = [this](bool) { Changed(); };
  services_ = std::make_unique<Reflector<Object>>(
      loop_, *api_, stats_, reflector,
      ReflectorConfig{
          .resource = "services", .path = "/api/v1/services", .forbidden_hint = kRbacHint},
      &ParseService, changed);
  slices_ = std::make_unique<Reflector<Object>>(
      loop_, *api_, stats_, reflector,
      ReflectorConfig{.resource = "endpointslices",
                      .path = "/apis/discovery.k8s.io/v1/endpointslices",
                      .forbidden_hint = kRbacHint},
      &ParseSlice, changed);
  pods_ = std::make_unique<Reflector<Object>>(loop_, *api_, stats_, reflector,
                                              ReflectorConfig{.resource = "pods",
                                                              .path = "/api/v1/pods",
                                                              .list_accept = kMetadataListAccept,
                                                              .watch_accept = kMetadataWatchAccept,
                                                              .forbidden_hint = kRbacHint},
                                              &ParsePod, changed);
  if (options_.node_topology) {
    nodes_ = std::make_unique<Reflector<NodeTopology>>(
        loop_, *api_, stats_, reflector,
        ReflectorConfig{.resource = "nodes",
                        .path = "/api/v1/nodes",
                        .list_accept = kMetadataListAccept,
                        .watch_accept = kMetadataWatchAccept,
                        .forbidden_hint =
                            "the control plane needs list and watch on nodes for the endpoints' "
                            "region (k8s/base/rbac.yaml), or --kubernetes-node-topology=false",
                        .namespaced = false},
        &ParseNode, changed);
  }
  absl::StatusOr<Gauge> gauge = stats_.shared_shard().RegisterGauge(
      "meshlet_cp_kubernetes_services",
      "Kubernetes Services discovery last published as mesh destinations.", {});
  if (gauge.ok()) published_services_ = *gauge;
  absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_kubernetes_publications_total",
      "Changes of the Kubernetes Services discovery hands to the registry (each one recomputes "
      "sidecars' configuration).",
      {});
  if (counter.ok()) publications_ = *counter;
}

KubernetesDiscovery::~KubernetesDiscovery() {
  // The reflectors first: their requests are the client's.
  services_.reset();
  slices_.reset();
  pods_.reset();
  nodes_.reset();
  api_.reset();
}

void KubernetesDiscovery::Start() {
  registry_.ExpectKubernetesServices();
  services_->Start();
  slices_->Start();
  pods_->Start();
  if (nodes_ != nullptr) nodes_->Start();
}

bool KubernetesDiscovery::synced() const { return published_; }

void KubernetesDiscovery::Changed() {
  if (!services_->listed() || !slices_->listed() || !pods_->listed()) return;
  publish_timer_.Enable(Duration::zero());
}

std::string KubernetesDiscovery::IndexSlice(const std::string& key) {
  auto it = slices_->objects().find(key);
  if (it == slices_->objects().end()) return "";
  const SliceObject& slice = std::get<SliceObject>(it->second);
  const absl::string_view namespace_ = absl::string_view(key).substr(0, key.find('/'));
  std::string service = absl::StrCat(namespace_, "/", slice.service);
  service_slices_[service].insert(key);
  slice_service_[key] = service;
  // BuildService looks each endpoint's Pod up in the Service's namespace.
  std::vector<std::string>& pods = slice_pods_[key];
  for (const SliceObject::Endpoint& e : slice.endpoints) {
    if (e.pod.empty()) continue;
    std::string pod = absl::StrCat(namespace_, "/", e.pod);
    if (pod_slices_[pod].insert(key).second) pods.push_back(std::move(pod));
  }
  return service;
}

std::string KubernetesDiscovery::UnindexSlice(const std::string& key) {
  if (auto pods = slice_pods_.find(key); pods != slice_pods_.end()) {
    for (const std::string& pod : pods->second) {
      auto filed = pod_slices_.find(pod);
      filed->second.erase(key);
      if (filed->second.empty()) pod_slices_.erase(filed);
    }
    slice_pods_.erase(pods);
  }
  auto old = slice_service_.find(key);
  if (old == slice_service_.end()) return "";
  std::string service = std::move(old->second);
  slice_service_.erase(old);
  auto filed = service_slices_.find(service);
  filed->second.erase(key);
  if (filed->second.empty()) service_slices_.erase(filed);
  return service;
}

registry::KubernetesService KubernetesDiscovery::BuildService(const std::string& key,
                                                              const ServiceObject& service) {
  registry::KubernetesService ks;
  const size_t slash = key.find('/');
  ks.namespace_ = key.substr(0, slash);
  ks.name = key.substr(slash + 1);
  ks.cluster_ips = service.cluster_ips;
  ks.prefer_close = service.prefer_close;
  ks.exported = service.exported;
  ks.node_local = service.node_local;
  // Its EndpointSlices in slice-name order.
  std::vector<const SliceObject*> mine;
  if (auto found = service_slices_.find(key); found != service_slices_.end()) {
    for (const std::string& slice_key : found->second) {
      mine.push_back(&std::get<SliceObject>(slices_->objects().at(slice_key)));
    }
  }
  for (const ServicePortObject& port : service.ports) {
    if (port.protocol != "TCP") continue;
    uint32_t target = port.target_port;
    for (const SliceObject* slice : mine) {
      auto p = slice->ports.find(port.name);
      if (p != slice->ports.end()) {
        target = p->second;
        break;
      }
    }
    ks.ports.push_back({.name = port.name,
                        .port = port.port,
                        .protocol = MeshProtocol(port),
                        .target_port = target});
  }
  std::sort(ks.ports.begin(), ks.ports.end(),
            [](const auto& a, const auto& b) { return a.port < b.port; });
  std::set<std::string> seen;
  for (const SliceObject* slice : mine) {
    for (const SliceObject::Endpoint& e : slice->endpoints) {
      if (!e.ready) continue;
      const PodObject* pod = nullptr;
      if (!e.pod.empty()) {
        auto p = pods_->objects().find(absl::StrCat(ks.namespace_, "/", e.pod));
        if (p != pods_->objects().end()) pod = &std::get<PodObject>(p->second);
      }
      for (const std::string& address : e.addresses) {
        if (!seen.insert(address).second) continue;
        registry::KubernetesEndpoint& endpoint = ks.endpoints.emplace_back();
        endpoint.address = address;
        endpoint.pod = e.pod;
        endpoint.zone = e.zone;
        endpoint.node = e.node;
        if (pod != nullptr) {
          endpoint.service_account = pod->service_account;
          endpoint.labels = pod->labels;
          endpoint.sidecar = pod->sidecar;
        }
        SetTopology(endpoint, pod);
      }
    }
  }
  std::sort(ks.endpoints.begin(), ks.endpoints.end(),
            [](const auto& a, const auto& b) { return a.address < b.address; });
  return ks;
}

void KubernetesDiscovery::SetTopology(registry::KubernetesEndpoint& endpoint,
                                      const PodObject* pod) const {
  const NodeTopology* node = nullptr;
  if (nodes_ != nullptr && !endpoint.node.empty()) {
    auto found = nodes_->objects().find(endpoint.node);
    if (found != nodes_->objects().end()) node = &found->second;
  }
  auto label = [&](const char* key) -> std::string {
    if (pod == nullptr) return "";
    auto found = pod->labels.find(key);
    return found == pod->labels.end() ? "" : found->second;
  };
  endpoint.region = node != nullptr && !node->region.empty() ? node->region : label(kRegionLabel);
  if (endpoint.zone.empty()) {
    endpoint.zone = node != nullptr && !node->zone.empty() ? node->zone : label(kZoneLabel);
  }
}

void KubernetesDiscovery::Publish() {
  using Changes = Reflector<Object>::Changes;
  const Changes services = services_->TakeChanges();
  const Changes slices = slices_->TakeChanges();
  const Changes pods = pods_->TakeChanges();
  Reflector<NodeTopology>::Changes nodes;
  if (nodes_ != nullptr) nodes = nodes_->TakeChanges();
  // A list of Nodes (the first one too) rebuilds every Service, as a list of the others does:
  // Nodes do not hold the first publication back, and any of their labels may have changed.
  const bool all = !published_ || services.relisted || slices.relisted || pods.relisted ||
                   (nodes.relisted && nodes_->listed());
  std::set<std::string> dirty = services.keys;
  if (all) {
    service_slices_.clear();
    slice_service_.clear();
    pod_slices_.clear();
    slice_pods_.clear();
    for (const auto& [key, object] : slices_->objects()) IndexSlice(key);
  } else {
    for (const std::string& key : slices.keys) {
      // The Service the slice belonged to, and the one it belongs to now.
      if (std::string old = UnindexSlice(key); !old.empty()) dirty.insert(std::move(old));
      if (std::string now = IndexSlice(key); !now.empty()) dirty.insert(std::move(now));
    }
    // A Pod's labels, service account and sidecar reach the Services whose slices name it (as
    // the slices are now: one that stopped naming it was rebuilt above).
    for (const std::string& pod : pods.keys) {
      auto named = pod_slices_.find(pod);
      if (named == pod_slices_.end()) continue;
      for (const std::string& slice : named->second) dirty.insert(slice_service_.at(slice));
    }
    // A Node's topology reaches the Services with endpoints on it.
    if (!nodes.keys.empty()) {
      for (const auto& [key, object] : slices_->objects()) {
        for (const SliceObject::Endpoint& e : std::get<SliceObject>(object).endpoints) {
          if (nodes.keys.count(e.node) == 0) continue;
          if (auto s = slice_service_.find(key); s != slice_service_.end()) dirty.insert(s->second);
          break;
        }
      }
    }
  }
  bool changed = false;
  auto rebuild = [&](const std::string& key) {
    auto object = services_->objects().find(key);
    auto entry = entries_.find(key);
    if (object == services_->objects().end()) {
      if (entry != entries_.end()) {
        entries_.erase(entry);
        changed = true;
      }
      return;
    }
    registry::KubernetesService built = BuildService(key, std::get<ServiceObject>(object->second));
    ++services_built_;
    if (entry != entries_.end() && *entry->second == built) return;  // keeps its object
    entries_[key] = std::make_shared<const registry::KubernetesService>(std::move(built));
    changed = true;
  };
  if (all) {
    changed |= std::erase_if(entries_, [&](const auto& entry) {
                 return services_->objects().count(entry.first) == 0;
               }) > 0;
    for (const auto& [key, object] : services_->objects()) rebuild(key);
  } else {
    for (const std::string& key : dirty) rebuild(key);
  }
  if (published_ && !changed) return;  // nothing that matters changed
  auto out = std::make_shared<registry::KubernetesServices>();
  out->services.reserve(entries_.size());
  for (const auto& [key, entry] : entries_) out->services.push_back(entry);
  if (!published_) {
    LOG(INFO) << "kubernetes: " << out->services.size()
              << " Service(s) are mesh destinations; configuration is served from now on";
  }
  published_ = true;
  publications_.Inc();
  published_services_.Set(static_cast<int64_t>(out->services.size()));
  registry_.SetKubernetesServices(std::move(out));
}

}  // namespace meshlet::controlplane::kubernetes
