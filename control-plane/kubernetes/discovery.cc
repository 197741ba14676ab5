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
#include "common/base/logging.h"
#include "common/http/client.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {
namespace {

constexpr char kRbacHint[] =
    "the control plane needs list and watch on services, endpointslices and pods "
    "(k8s/base/rbac.yaml)";
constexpr char kServiceNameLabel[] = "kubernetes.io/service-name";
// Pods as metadata only: a tenth of a Pod's JSON, and what discovery reads of it (its labels);
// an API server that cannot answer so sends whole Pods (the second choice).
constexpr char kPodsListAccept[] =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
constexpr char kPodsWatchAccept[] =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

std::map<std::string, std::string> StringMap(const YAML::Node& map) {
  std::map<std::string, std::string> out;
  if (!map.IsMap()) return out;
  for (const auto& entry : map) {
    if (entry.first.IsScalar() && entry.second.IsScalar()) {
      out.emplace(entry.first.Scalar(), entry.second.Scalar());
    }
  }
  return out;
}

uint32_t PortNumber(const std::string& text) {
  uint32_t port = 0;
  return absl::SimpleAtoi(text, &port) && port <= 65535 ? port : 0;
}

// The parts of each kind that discovery reads.
struct ServicePortObject {
  std::string name;
  uint32_t port = 0;
  std::string protocol;  // TCP, UDP, SCTP
  std::string app_protocol;
  uint32_t target_port = 0;  // 0: named (resolved by the EndpointSlices) or absent
  bool operator==(const ServicePortObject&) const = default;
};
struct ServiceObject {
  std::vector<std::string> cluster_ips;
  std::vector<ServicePortObject> ports;
  bool operator==(const ServiceObject&) const = default;
};
struct SliceObject {
  std::string service;
  std::map<std::string, uint32_t> ports;  // by name: the endpoints' port number
  struct Endpoint {
    std::vector<std::string> addresses;
    bool ready = true;
    std::string pod;
    bool operator==(const Endpoint&) const = default;
  };
  std::vector<Endpoint> endpoints;
  bool operator==(const SliceObject&) const = default;
};
struct PodObject {
  std::map<std::string, std::string> labels;
  std::string service_account;
  bool operator==(const PodObject&) const = default;
};
using Object = std::variant<ServiceObject, SliceObject, PodObject>;

// nullopt: an object of the kind that discovery leaves out (ExternalName, FQDN slices).
using ParseFn = std::optional<Object> (*)(const YAML::Node& object);

std::optional<Object> ParseService(const YAML::Node& object) {
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

std::optional<Object> ParseSlice(const YAML::Node& object) {
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
      out.endpoints.push_back(std::move(endpoint));
    }
  }
  return out;
}

// Pods are read as metadata only (PartialObjectMetadata, kPodsListAccept): labels. A server that
// sends whole Pods gives their service account too.
std::optional<Object> ParsePod(const YAML::Node& object) {
  PodObject out;
  out.labels = StringMap(NodeAt(NodeAt(object, "metadata"), "labels"));
  out.service_account = ScalarAt(NodeAt(object, "spec"), "serviceAccountName");
  return out;
}

// The mesh protocol of a Service port: appProtocol, else the name's prefix ("http", "http-web",
// "grpc-api", "tcp-db"), as Istio reads them; a port that says neither is AUTO (HTTP when the
// first bytes are, else opaque TCP).
std::string MeshProtocol(const ServicePortObject& port) {
  auto of = [](absl::string_view text) -> std::string {
    const std::string lower = absl::AsciiStrToLower(text);
    if (lower == "http" || lower == "http1") return "HTTP";
    if (lower == "http2" || lower == "h2c" || lower == "kubernetes.io/h2c") return "HTTP2";
    if (lower == "grpc" || lower == "grpc-web") return "GRPC";
    if (lower == "tcp" || lower == "tls" || lower == "https" || lower == "kubernetes.io/ws" ||
        lower == "kubernetes.io/wss" || lower == "mongo" || lower == "mysql" || lower == "redis") {
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

// One kind: its cache (namespace/name → object), its resourceVersion, and the list/watch loop.
class KubernetesDiscovery::Reflector {
 public:
  // `list_accept`, `watch_accept`: the Accept headers of its lists and watches (empty: JSON).
  Reflector(KubernetesDiscovery& owner, std::string resource, std::string path, ParseFn parse,
            std::string list_accept = "", std::string watch_accept = "")
      : owner_(owner),
        resource_(std::move(resource)),
        path_(std::move(path)),
        parse_(parse),
        list_accept_(std::move(list_accept)),
        watch_accept_(std::move(watch_accept)),
        retry_timer_(owner.loop_, [this] { Resume(); }) {
    objects_gauge_ = Register<Gauge>(
        "meshlet_cp_kubernetes_objects",
        "Objects of each kind Kubernetes discovery holds (services, endpointslices, pods).", {});
  }
  ~Reflector() { *alive_ = false; }

  void Start() { List(); }
  bool listed() const { return listed_; }
  const std::map<std::string, Object>& objects() const { return objects_; }

 private:
  template <typename T>
  T Register(const char* name, const char* help,
             std::vector<std::pair<std::string, std::string>> labels) {
    labels.insert(labels.begin(), {"resource", resource_});
    StatsShard& shard = owner_.stats_.shared_shard();
    if constexpr (std::is_same_v<T, Gauge>) {
      absl::StatusOr<Gauge> gauge = shard.RegisterGauge(name, help, labels);
      return gauge.ok() ? *gauge : Gauge();
    } else {
      absl::StatusOr<Counter> counter = shard.RegisterCounter(name, help, labels);
      return counter.ok() ? *counter : Counter();
    }
  }
  void CountList(absl::string_view result) {
    Register<Counter>("meshlet_cp_kubernetes_lists_total",
                      "List requests of Kubernetes discovery, by kind and result (ok, or why "
                      "not: http_error, connect_failed, timeout, malformed, ...).",
                      {{"result", std::string(result)}})
        .Inc();
  }
  void CountWatch(absl::string_view result) {
    Register<Counter>("meshlet_cp_kubernetes_watches_total",
                      "Watches of Kubernetes discovery that ended, by kind and how: expired "
                      "(the server's timeout; resumed at once), gone (410: listed again), error "
                      "(an ERROR event), malformed (an event that is not one), or the request's "
                      "failure (closed, connect_failed, http_error, ...).",
                      {{"result", std::string(result)}})
        .Inc();
  }
  void CountEvent(absl::string_view type) {
    Register<Counter>("meshlet_cp_kubernetes_events_total",
                      "Watch events Kubernetes discovery received, by kind and type (added, "
                      "modified, deleted, bookmark, error).",
                      {{"type", absl::AsciiStrToLower(type)}})
        .Inc();
  }

  // "namespace/name", or empty for an object without both (left out).
  static std::string Key(const YAML::Node& object) {
    const YAML::Node metadata = NodeAt(object, "metadata");
    const std::string namespace_ = ScalarAt(metadata, "namespace");
    const std::string name = ScalarAt(metadata, "name");
    if (namespace_.empty() || name.empty()) return "";
    return absl::StrCat(namespace_, "/", name);
  }

  // Stores (or, for an object discovery leaves out, removes) `object`. True when what
  // discovery reads of it changed: most updates (a Pod's status, a Service's load balancer)
  // change nothing it reads, and publish nothing.
  bool Apply(const YAML::Node& object) {
    const std::string key = Key(object);
    if (key.empty()) return false;
    std::optional<Object> parsed = parse_(object);
    if (!parsed.has_value()) return objects_.erase(key) > 0;
    auto [it, inserted] = objects_.try_emplace(key, *parsed);
    if (inserted) return true;
    if (it->second == *parsed) return false;
    it->second = *std::move(parsed);
    return true;
  }

  void List() {
    pending_.clear();
    ListPage("");
  }

  void ListPage(const std::string& continue_token) {
    std::string path = absl::StrCat(path_, "?limit=", owner_.options_.page_size);
    if (!continue_token.empty()) {
      absl::StrAppend(&path, "&continue=", http::QueryEscape(continue_token));
    }
    owner_.api_->Call({.method = "GET",
                       .path = path,
                       .accept = list_accept_,
                       .forbidden_hint = kRbacHint,
                       .timeout = owner_.options_.list_timeout},
                      [this, alive = alive_, paged = !continue_token.empty()](ApiResult result) {
                        if (*alive) OnPage(std::move(result), paged);
                      });
  }

  void OnPage(ApiResult result, bool paged) {
    if (result.http_status == 410 && paged) {
      // The continue token expired: the list starts over, at the newest resourceVersion.
      CountList("gone");
      LOG(INFO) << "kubernetes: listing " << resource_ << " again (the page token expired)";
      List();
      return;
    }
    if (!result.body.ok()) {
      CountList(result.result);
      Retry(result.body.status().message());
      return;
    }
    YAML::Node list;
    try {
      list = YAML::Load(*result.body);
    } catch (const YAML::Exception& e) {
      CountList("malformed");
      Retry(absl::StrCat("GET ", path_, ": the answer is not JSON: ", e.what()));
      return;
    }
    const YAML::Node items = NodeAt(list, "items");
    if (!list.IsMap() || !(items.IsSequence() || items.IsNull() || !items.IsDefined())) {
      CountList("malformed");
      Retry(absl::StrCat("GET ", path_, ": the answer is not a list"));
      return;
    }
    CountList("ok");
    if (items.IsSequence()) {
      for (const YAML::Node& item : items) {
        const std::string key = Key(item);
        if (key.empty()) continue;
        std::optional<Object> parsed = parse_(item);
        if (parsed.has_value()) pending_[key] = *std::move(parsed);
      }
    }
    const YAML::Node metadata = NodeAt(list, "metadata");
    const std::string next = ScalarAt(metadata, "continue");
    if (!next.empty()) {
      ListPage(next);
      return;
    }
    resource_version_ = ScalarAt(metadata, "resourceVersion");
    objects_ = std::move(pending_);
    pending_.clear();
    objects_gauge_.Set(static_cast<int64_t>(objects_.size()));
    const bool first = !listed_;
    listed_ = true;
    failures_ = 0;
    if (first) {
      LOG(INFO) << "kubernetes: listed " << objects_.size() << " " << resource_
                << " at resourceVersion " << resource_version_;
    }
    owner_.Changed();
    Watch();
  }

  void Watch() {
    watch_outcome_.clear();
    const int64_t timeout_seconds =
        std::max<int64_t>(1, absl::ToInt64Seconds(owner_.options_.watch_timeout));
    const std::string path =
        absl::StrCat(path_, "?watch=true&allowWatchBookmarks=true&resourceVersion=",
                     http::QueryEscape(resource_version_), "&timeoutSeconds=", timeout_seconds);
    owner_.api_->Call(
        {.method = "GET",
         .path = path,
         .accept = watch_accept_,
         .forbidden_hint = kRbacHint,
         // The server ends the watch; the deadline only catches a server that went silent.
         .timeout = owner_.options_.watch_timeout + absl::Seconds(30),
         .on_line = [this,
                     alive = alive_](absl::string_view line) { return *alive && OnEvent(line); }},
        [this, alive = alive_](ApiResult result) {
          if (*alive) OnWatchEnd(std::move(result));
        });
  }

  // One watch event; false ends the watch (watch_outcome_ says why).
  bool OnEvent(absl::string_view line) {
    YAML::Node event;
    try {
      event = YAML::Load(std::string(line));
    } catch (const YAML::Exception& e) {
      watch_outcome_ = "malformed";
      watch_detail_ = absl::StrCat("a watch event is not JSON: ", e.what());
      return false;
    }
    const std::string type = ScalarAt(event, "type");
    const YAML::Node object = NodeAt(event, "object");
    if (!object.IsMap() || (type != "ADDED" && type != "MODIFIED" && type != "DELETED" &&
                            type != "BOOKMARK" && type != "ERROR")) {
      watch_outcome_ = "malformed";
      watch_detail_ = absl::StrCat("not a watch event: ", line.substr(0, 200));
      return false;
    }
    CountEvent(type);
    if (type == "ERROR") {
      // A Status: 410 Gone ("Expired", "too old resource version") means list again.
      const bool gone = ScalarAt(object, "code") == "410";
      watch_outcome_ = gone ? "gone" : "error";
      watch_detail_ = absl::StrCat("the watch failed: ", ScalarAt(object, "message"));
      return false;
    }
    const std::string version = ScalarAt(NodeAt(object, "metadata"), "resourceVersion");
    if (!version.empty()) resource_version_ = version;
    failures_ = 0;
    if (type == "BOOKMARK") return true;
    bool changed;
    if (type == "DELETED") {
      const std::string key = Key(object);
      changed = !key.empty() && objects_.erase(key) > 0;
    } else {
      changed = Apply(object);
    }
    if (changed) {
      objects_gauge_.Set(static_cast<int64_t>(objects_.size()));
      owner_.Changed();
    }
    return true;
  }

  void OnWatchEnd(ApiResult result) {
    if (watch_outcome_.empty()) {
      if (result.http_status == 410) {
        watch_outcome_ = "gone";
        watch_detail_ = "resourceVersion too old (410)";
      } else if (result.body.ok()) {
        watch_outcome_ = "expired";
      } else {
        watch_outcome_ = result.result;
        watch_detail_ = std::string(result.body.status().message());
      }
    }
    CountWatch(watch_outcome_);
    if (watch_outcome_ == "expired") {
      Watch();
    } else if (watch_outcome_ == "gone") {
      LOG(INFO) << "kubernetes: listing " << resource_ << " again: " << watch_detail_;
      List();
    } else {
      Retry(watch_detail_);
    }
  }

  // After a failure: the same step again after the backoff (a list if none completed yet, else
  // a watch from the last resourceVersion).
  void Retry(absl::string_view why) {
    const Duration delay =
        DoublingRetryDelay(++failures_, owner_.options_.retry_base, owner_.options_.retry_cap);
    LOG_EVERY_N_SEC(WARN, 10) << "kubernetes: " << resource_ << ": " << why << " (again in "
                              << absl::FormatDuration(absl::FromChrono(delay)) << ")";
    retry_timer_.Enable(delay);
  }

  void Resume() {
    if (listed_) {
      Watch();
    } else {
      List();
    }
  }

  KubernetesDiscovery& owner_;
  const std::string resource_;
  const std::string path_;
  const ParseFn parse_;
  const std::string list_accept_;
  const std::string watch_accept_;
  event::Timer retry_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Gauge objects_gauge_;
  std::map<std::string, Object> objects_;
  std::map<std::string, Object> pending_;  // pages of a list in progress
  std::string resource_version_;
  bool listed_ = false;
  int failures_ = 0;
  // Why the watch in progress ended, when it ended on its own side (an event); else empty.
  std::string watch_outcome_;
  std::string watch_detail_;
};

std::vector<flags::Flag> DiscoveryFlags(DiscoveryOptions& options) {
  return {
      flags::BoolFlag("--kubernetes-discovery", &options.enabled,
                      "make the cluster's Services mesh destinations (default true when an API "
                      "server is known; =false turns it off)"),
      {.name = "--kubernetes-watch-timeout",
       .value = "DURATION",
       .help = "how long the API server keeps each watch before it is renewed (default 5m)",
       .set =
           [&options](absl::string_view v) {
             absl::Duration d;
             if (!absl::ParseDuration(v, &d) || d < absl::Seconds(1)) {
               return absl::InvalidArgumentError("must be a duration of at least 1s");
             }
             options.watch_timeout = d;
             return absl::OkStatus();
           }},
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
  services_ = std::make_unique<Reflector>(*this, "services", "/api/v1/services", &ParseService);
  slices_ = std::make_unique<Reflector>(*this, "endpointslices",
                                        "/apis/discovery.k8s.io/v1/endpointslices", &ParseSlice);
  pods_ = std::make_unique<Reflector>(*this, "pods", "/api/v1/pods", &ParsePod, kPodsListAccept,
                                      kPodsWatchAccept);
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
  api_.reset();
}

void KubernetesDiscovery::Start() {
  registry_.ExpectKubernetesServices();
  services_->Start();
  slices_->Start();
  pods_->Start();
}

bool KubernetesDiscovery::synced() const { return published_; }

void KubernetesDiscovery::Changed() {
  if (!services_->listed() || !slices_->listed() || !pods_->listed()) return;
  publish_timer_.Enable(Duration::zero());
}

void KubernetesDiscovery::Publish() {
  auto out = std::make_shared<registry::KubernetesServices>();
  // EndpointSlices by the Service they belong to, in slice-name order.
  std::map<std::pair<std::string, std::string>, std::vector<const SliceObject*>> slices;
  for (const auto& [key, object] : slices_->objects()) {
    const SliceObject& slice = std::get<SliceObject>(object);
    const std::string namespace_ = key.substr(0, key.find('/'));
    slices[{namespace_, slice.service}].push_back(&slice);
  }
  for (const auto& [key, object] : services_->objects()) {
    const ServiceObject& service = std::get<ServiceObject>(object);
    const size_t slash = key.find('/');
    registry::KubernetesService& ks = out->services.emplace_back();
    ks.namespace_ = key.substr(0, slash);
    ks.name = key.substr(slash + 1);
    ks.cluster_ips = service.cluster_ips;
    auto found = slices.find({ks.namespace_, ks.name});
    static const std::vector<const SliceObject*> kNone;
    const std::vector<const SliceObject*>& mine = found == slices.end() ? kNone : found->second;
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
          if (pod != nullptr) {
            endpoint.service_account = pod->service_account;
            endpoint.labels = pod->labels;
          }
        }
      }
    }
    std::sort(ks.endpoints.begin(), ks.endpoints.end(),
              [](const auto& a, const auto& b) { return a.address < b.address; });
  }
  if (published_ && last_ != nullptr && *last_ == *out) return;  // nothing that matters changed
  if (!published_) {
    LOG(INFO) << "kubernetes: " << out->services.size()
              << " Service(s) are mesh destinations; configuration is served from now on";
  }
  published_ = true;
  last_ = out;
  publications_.Inc();
  published_services_.Set(static_cast<int64_t>(out->services.size()));
  registry_.SetKubernetesServices(std::move(out));
}

}  // namespace meshlet::controlplane::kubernetes
