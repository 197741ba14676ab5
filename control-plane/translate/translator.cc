#include "control-plane/translate/translator.h"

#include <openssl/sha.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/yaml_proto.h"

namespace meshlet::controlplane::translate {
namespace {

namespace pb = ::meshlet::policy;
using registry::Workload;

constexpr absl::string_view kOutboundName = "outbound";
constexpr absl::string_view kInboundName = "inbound";
constexpr absl::string_view kDependenciesLabel = "meshlet.io/dependencies";

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
  // Registered workloads of the service (by service name or selector), ordered by id.
  std::vector<const registry::Workload*> members;

  std::string Fqdn() const { return absl::StrCat(name, ".", namespace_); }
};

using ServiceKey = std::pair<std::string, std::string>;  // (namespace, name)

// `opaque`: the TCP twin of an AUTO port's cluster, for the connections that are not HTTP
// ("outbound|<port>|tcp|<svc>.<ns>"; a subset is "k=v", so the names cannot meet).
std::string ClusterName(const ServiceView& s, uint32_t port,
                        const std::map<std::string, std::string>& subset, bool opaque = false) {
  return absl::StrCat("outbound|", port, "|",
                      opaque ? "tcp" : absl::StrJoin(subset, ",", absl::PairFormatter("=")), "|",
                      s.Fqdn());
}

std::string FormatAddress(absl::string_view host, uint32_t port) {
  if (host.find(':') != absl::string_view::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

bool IsHttpProtocol(absl::string_view protocol) { return protocol != "TCP"; }
// A Kubernetes Service port that declares no protocol (no appProtocol, no known name prefix):
// HTTP when the first bytes are HTTP, else opaque TCP (ListenerProtocol AUTO), as Istio and
// Linkerd treat such ports. Everything HTTP ports get, plus a TCP twin cluster.
bool IsAutoProtocol(absl::string_view protocol) { return protocol == "AUTO"; }

// The port a workload's app listens on for the Service port `p` (one of `ports`): the target port,
// unless the workload registered other app ports (`registered`, sorted; several instances sharing
// one host cannot all listen on the target port), which then win, matched to the Service's ports in
// order.
uint32_t AppPort(const std::vector<pb::ServicePort>& ports, const pb::ServicePort& p,
                 const std::vector<uint32_t>& registered) {
  const uint32_t target = p.target_port() != 0 ? p.target_port() : p.port();
  if (registered.empty() || std::binary_search(registered.begin(), registered.end(), target)) {
    return target;
  }
  size_t index = 0;
  while (index < ports.size() && ports[index].port() != p.port()) ++index;
  return index < registered.size() ? registered[index] : registered.front();
}

std::vector<uint32_t> SortedPorts(std::vector<uint32_t> ports) {
  std::sort(ports.begin(), ports.end());
  return ports;
}

// Host names of a virtual address, as clients write them in Host / :authority.
std::string AddressHost(const std::string& address) {
  return address.find(':') != std::string::npos ? absl::StrCat("[", address, "]") : address;
}

xds::UpstreamProtocol UpstreamProtocolFor(absl::string_view protocol) {
  return protocol == "HTTP2" || protocol == "GRPC" ? xds::UPSTREAM_HTTP2 : xds::UPSTREAM_HTTP1;
}

void SetDuration(google::protobuf::Duration* out, const google::protobuf::Duration& in) {
  *out = in;
}

bool Matches(const std::map<std::string, std::string>& selector,
             const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

template <typename Map>
std::vector<std::pair<std::string, std::string>> Sorted(const Map& map) {
  std::vector<std::pair<std::string, std::string>> out(map.begin(), map.end());
  std::sort(out.begin(), out.end());
  return out;
}

// What every node's translation reads from the inputs: services with their members, the
// TrafficPolicy and HTTPRoutes of each. Built once per (policy revision, registry version); holds
// pointers into both snapshots.
struct MeshIndex {
  std::map<ServiceKey, ServiceView> services;
  std::map<ServiceKey, const pb::TrafficPolicy*> traffic_policies;
  std::map<ServiceKey, std::vector<const pb::HTTPRoute*>> routes_by_target;
  // Members standing for Kubernetes endpoints without a connected sidecar (a deque: the views
  // point at its elements).
  std::deque<Workload> kubernetes_members;
};

// Adds a Kubernetes Service to the index: its ports (unless a Service resource of the same name
// declares them), its ClusterIPs as addresses, and its ready endpoints as members. An endpoint
// whose address a registered workload of the namespace has is that workload (its sidecar, with
// its certificate and readiness); any other is a member without a sidecar, reached in plaintext
// on its port.
void AddKubernetesService(
    const registry::KubernetesService& ks,
    const std::map<std::pair<std::string, std::string>, const Workload*>& by_address,
    MeshIndex& index) {
  auto [it, inserted] = index.services.try_emplace({ks.namespace_, ks.name});
  ServiceView& view = it->second;
  view.kubernetes = &ks;
  if (inserted) {
    view.namespace_ = ks.namespace_;
    view.name = ks.name;
  }
  if (view.resource == nullptr) {
    view.ports.clear();
    for (const registry::KubernetesPort& kp : ks.ports) {
      pb::ServicePort p;
      p.set_name(kp.name);
      p.set_port(kp.port);
      p.set_target_port(kp.target_port);
      p.set_protocol(kp.protocol);
      view.ports.push_back(std::move(p));
    }
  }
  std::vector<std::string> addresses = ks.cluster_ips;
  for (std::string& address : view.addresses) {
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
      addresses.push_back(std::move(address));
    }
  }
  view.addresses = std::move(addresses);
  view.members.clear();
  std::set<const Workload*> registered;  // each once, whatever number of its addresses is listed
  for (const registry::KubernetesEndpoint& e : ks.endpoints) {
    auto found = by_address.find({ks.namespace_, e.address});
    if (found != by_address.end()) {
      const Workload* member = found->second;
      if (!registered.insert(member).second) continue;  // another address of the same pod
      // The Pod's labels count for subsets as well as those its sidecar registered (which win).
      bool more_labels = false;
      for (const auto& [key, value] : e.labels) more_labels |= !member->labels.contains(key);
      if (more_labels) {
        Workload& labelled = index.kubernetes_members.emplace_back(*member);
        labelled.labels.insert(e.labels.begin(), e.labels.end());
        member = &labelled;
      }
      view.members.push_back(member);
      continue;
    }
    Workload& w = index.kubernetes_members.emplace_back();
    w.id = absl::StrCat("kubernetes/", ks.namespace_, "/", e.pod.empty() ? e.address : e.pod);
    w.service = ks.name;
    w.namespace_ = ks.namespace_;
    w.service_account = e.service_account;
    w.labels = e.labels;
    w.addresses = {e.address};
    w.capture = true;  // reached on its app port, as a captured member is
    view.members.push_back(&w);
  }
  std::sort(view.members.begin(), view.members.end(),
            [](const Workload* a, const Workload* b) { return a->id < b->id; });
}

std::string RouteNamespace(const pb::HTTPRoute& route) {
  return route.metadata().namespace_().empty() ? "default" : route.metadata().namespace_();
}

MeshIndex BuildIndex(const PolicySnapshot& policy, const RegistrySnapshot& registry) {
  MeshIndex index;
  for (const pb::Service& s : policy.services) {
    ServiceView view;
    view.namespace_ = s.metadata().namespace_().empty() ? "default" : s.metadata().namespace_();
    view.name = s.metadata().name();
    view.resource = &s;
    view.ports.assign(s.spec().ports().begin(), s.spec().ports().end());
    view.selector.insert(s.spec().selector().begin(), s.spec().selector().end());
    view.service_accounts.insert(s.spec().service_accounts().begin(),
                                 s.spec().service_accounts().end());
    const auto& addresses =
        s.spec().addresses().empty() ? s.status().addresses() : s.spec().addresses();
    view.addresses.assign(addresses.begin(), addresses.end());
    index.services[{view.namespace_, view.name}] = std::move(view);
  }
  if (registry.kubernetes != nullptr) {
    std::map<std::pair<std::string, std::string>, const Workload*> by_address;
    for (const Workload& w : registry.workloads) {
      for (const std::string& address : w.addresses) {
        by_address.emplace(std::make_pair(w.namespace_, address), &w);
      }
    }
    for (const registry::KubernetesService& ks : registry.kubernetes->services) {
      AddKubernetesService(ks, by_address, index);
    }
  }
  for (const Workload& w : registry.workloads) {
    if (w.service.empty()) continue;
    ServiceKey key{w.namespace_, w.service};
    auto [it, inserted] = index.services.try_emplace(key);
    ServiceView& view = it->second;
    if (inserted) {
      view.namespace_ = w.namespace_;
      view.name = w.service;
    }
    if (view.resource != nullptr || view.kubernetes != nullptr) continue;
    for (uint32_t port : w.ports) {
      bool known = false;
      for (const auto& p : view.ports) known |= p.port() == port;
      if (known) continue;
      pb::ServicePort p;
      p.set_port(port);
      p.set_protocol("HTTP");
      view.ports.push_back(std::move(p));
    }
  }
  // Membership once per translation rather than a registry scan per cluster.
  for (const Workload& w : registry.workloads) {
    if (w.service.empty()) continue;
    auto it = index.services.find({w.namespace_, w.service});
    if (it != index.services.end() && it->second.kubernetes == nullptr && it->second.Admits(w)) {
      it->second.members.push_back(&w);
    }
  }
  for (auto& [key, view] : index.services) {
    if (view.selector.empty() || view.kubernetes != nullptr) continue;
    for (const Workload& w : registry.workloads) {
      if (w.namespace_ == view.namespace_ && w.service != view.name &&
          Matches(view.selector, w.labels) && view.Admits(w)) {
        view.members.push_back(&w);
      }
    }
    std::sort(view.members.begin(), view.members.end(),
              [](const Workload* a, const Workload* b) { return a->id < b->id; });
  }
  for (auto& [key, view] : index.services) {
    std::sort(
        view.ports.begin(), view.ports.end(),
        [](const pb::ServicePort& a, const pb::ServicePort& b) { return a.port() < b.port(); });
  }
  // Several TrafficPolicies for one Service: the one with the greatest name wins (documented),
  // whatever order the snapshot lists them in.
  for (const pb::TrafficPolicy& tp : policy.traffic_policies) {
    const ServiceKey key{
        tp.metadata().namespace_().empty() ? "default" : tp.metadata().namespace_(),
        tp.spec().target()};
    auto [it, inserted] = index.traffic_policies.emplace(key, &tp);
    if (!inserted && it->second->metadata().name() < tp.metadata().name()) it->second = &tp;
  }
  // HTTPRoutes by the Service they target, each list ordered by route name.
  for (const pb::HTTPRoute& route : policy.http_routes) {
    index.routes_by_target[{RouteNamespace(route), route.spec().target()}].push_back(&route);
  }
  for (auto& [key, routes] : index.routes_by_target) {
    std::sort(routes.begin(), routes.end(), [](const pb::HTTPRoute* a, const pb::HTTPRoute* b) {
      return a->metadata().name() < b->metadata().name();
    });
  }
  return index;
}

class Translator {
 public:
  Translator(const PolicySnapshot& policy, const RegistrySnapshot& registry, const MeshIndex& index,
             const xds::Node& node, const TranslateOptions& options)
      : policy_(policy), registry_(registry), options_(options), index_(index) {
    if (const Workload* registered = registry.Find(node.id())) {
      self_ = *registered;
    } else {
      self_ = registry::WorkloadFromNode(node);
    }
    if (policy.mesh_config.has_value()) mesh_ = policy.mesh_config->spec();
  }

  // Which parts to build: the outbound part (route "outbound", outbound clusters, endpoints)
  // depends on the node only through its reachable services (OutboundKey); the local part
  // (listeners, route "inbound", inbound clusters) is the node's own.
  enum class Part { kAll, kOutbound, kLocal };

  NodeResources Run(Part part, TranslationCache* cache = nullptr) {
    if (part != Part::kLocal) {
      if (cache == nullptr) {
        BuildOutbound();
      } else {
        const std::string key = CacheKey();
        std::shared_ptr<const TranslationCache::Outbound> shared = cache->Find(key);
        if (shared == nullptr) {
          BuildOutbound();
          auto fresh = std::make_shared<TranslationCache::Outbound>();
          fresh->routes = out_.routes;
          for (const auto& [name, cluster] : clusters_) fresh->clusters.push_back(cluster);
          for (const auto& [name, assignment] : endpoints_) fresh->endpoints.push_back(assignment);
          fresh->warnings = out_.warnings;
          cache->Insert(key, std::move(fresh));
        } else {
          out_.routes = shared->routes;
          for (const xds::Cluster& c : shared->clusters) clusters_.emplace(c.name(), c);
          for (const xds::ClusterLoadAssignment& a : shared->endpoints) {
            endpoints_.emplace(a.cluster_name(), a);
          }
          out_.warnings = shared->warnings;
        }
      }
    }
    if (part != Part::kOutbound) {
      BuildOutboundListener();
      BuildInbound();
    }
    Finish();
    return std::move(out_);
  }

  // What the outbound part depends on besides this node's reachable services: the inputs'
  // versions and the options it reads. Reachable services are listed when scoping applies.
  std::string CacheKey() const {
    std::string key =
        absl::StrCat(policy_.revision, "|", registry_.version, "|", options_.cluster_domain, "|",
                     MeshTlsKey(), "|", self_.capture ? "capture|" : "");
    if (!mesh_.scope_to_dependencies()) return key + "*";
    for (const auto& [service_key, service] : index_.services) {
      if (Reachable(service)) absl::StrAppend(&key, service.Fqdn(), ",");
    }
    return key;
  }

 private:
  void Warn(std::string text) { out_.warnings.push_back(std::move(text)); }

  const std::vector<const pb::HTTPRoute*>& RoutesFor(const ServiceView& s) const {
    static const std::vector<const pb::HTTPRoute*> kNone;
    auto it = index_.routes_by_target.find({s.namespace_, s.name});
    return it == index_.routes_by_target.end() ? kNone : it->second;
  }

  // Whether this node's configuration includes `service` (MeshConfig scope_to_dependencies).
  bool Reachable(const ServiceView& service) const {
    if (!mesh_.scope_to_dependencies()) return true;
    if (service.namespace_ == self_.namespace_ && service.name == self_.service) return true;
    auto it = self_.labels.find(std::string(kDependenciesLabel));
    if (it == self_.labels.end()) return false;
    for (absl::string_view dep : absl::StrSplit(it->second, ',', absl::SkipWhitespace())) {
      dep = absl::StripAsciiWhitespace(dep);
      std::vector<std::string> parts = absl::StrSplit(dep, absl::MaxSplits('.', 1));
      const std::string ns = parts.size() > 1 ? parts[1] : self_.namespace_;
      if (ns == service.namespace_ && (parts[0] == "*" || parts[0] == service.name)) return true;
    }
    return false;
  }

  const pb::TrafficPolicySpec* PolicyFor(const ServiceView& s) const {
    auto it = index_.traffic_policies.find({s.namespace_, s.name});
    return it == index_.traffic_policies.end() ? nullptr : &it->second->spec();
  }

  // Retries: the most specific non-empty setting per field (rule, then TrafficPolicy, then mesh).
  static void MergeRetries(const pb::Retries& in, pb::Retries& out) {
    if (in.has_attempts()) *out.mutable_attempts() = in.attempts();
    if (in.retry_on_size() > 0) *out.mutable_retry_on() = in.retry_on();
    if (in.retriable_status_codes_size() > 0) {
      *out.mutable_retriable_status_codes() = in.retriable_status_codes();
    }
    if (in.has_backoff_base()) *out.mutable_backoff_base() = in.backoff_base();
    if (in.has_backoff_max()) *out.mutable_backoff_max() = in.backoff_max();
    if (in.has_budget_percent()) *out.mutable_budget_percent() = in.budget_percent();
    if (in.has_budget_min_retries_per_second()) {
      *out.mutable_budget_min_retries_per_second() = in.budget_min_retries_per_second();
    }
    if (in.retry_non_idempotent()) out.set_retry_non_idempotent(true);
  }

  pb::Timeouts EffectiveTimeouts(const pb::TrafficPolicySpec* tp) const {
    pb::Timeouts t = mesh_.default_timeouts();
    if (tp != nullptr && tp->has_timeouts()) t.MergeFrom(tp->timeouts());
    return t;
  }

  pb::Retries EffectiveRetries(const pb::TrafficPolicySpec* tp, const pb::Retries* rule) const {
    pb::Retries r;
    if (mesh_.has_default_retries()) MergeRetries(mesh_.default_retries(), r);
    if (tp != nullptr && tp->has_retries()) MergeRetries(tp->retries(), r);
    if (rule != nullptr) MergeRetries(*rule, r);
    return r;
  }

  static bool HasRetries(const pb::Retries& r) { return r.ByteSizeLong() > 0; }

  static xds::RetryPolicy ToRetryPolicy(const pb::Retries& r, const pb::Timeouts& t) {
    xds::RetryPolicy out;
    if (r.has_attempts()) *out.mutable_num_retries() = r.attempts();
    std::vector<std::string> retry_on(r.retry_on().begin(), r.retry_on().end());
    if (r.retriable_status_codes_size() > 0 &&
        std::find(retry_on.begin(), retry_on.end(), "retriable-status-codes") == retry_on.end()) {
      // Listing status codes means retrying on them.
      if (retry_on.empty()) retry_on = {"connect-failure", "refused-stream", "reset"};
      retry_on.push_back("retriable-status-codes");
    }
    for (const std::string& value : retry_on) out.add_retry_on(value);
    *out.mutable_retriable_status_codes() = r.retriable_status_codes();
    if (t.has_per_try()) SetDuration(out.mutable_per_try_timeout(), t.per_try());
    if (r.has_backoff_base()) SetDuration(out.mutable_base_interval(), r.backoff_base());
    if (r.has_backoff_max()) SetDuration(out.mutable_max_interval(), r.backoff_max());
    out.set_retry_non_idempotent(r.retry_non_idempotent());
    return out;
  }

  void ApplyRouteDefaults(const ServiceView& s, xds::RouteAction& action,
                          const pb::HTTPRouteRule* rule) const {
    const pb::TrafficPolicySpec* tp = PolicyFor(s);
    const pb::Timeouts timeouts = EffectiveTimeouts(tp);
    if (rule != nullptr && rule->has_timeout()) {
      SetDuration(action.mutable_timeout(), rule->timeout());
    } else if (timeouts.has_request()) {
      SetDuration(action.mutable_timeout(), timeouts.request());
    }
    const pb::Retries retries =
        EffectiveRetries(tp, rule != nullptr && rule->has_retries() ? &rule->retries() : nullptr);
    if (HasRetries(retries) || timeouts.has_per_try()) {
      *action.mutable_retry_policy() = ToRetryPolicy(retries, timeouts);
    }
  }

  // The cluster for (service, port, subset), created on first use; `opaque`: the TCP twin of an
  // AUTO port's cluster (no subset).
  const std::string& UseCluster(const ServiceView& s, const pb::ServicePort& port,
                                const std::map<std::string, std::string>& subset,
                                bool opaque = false) {
    std::string name = ClusterName(s, port.port(), subset, opaque);
    auto it = clusters_.find(name);
    if (it != clusters_.end()) return it->first;
    xds::Cluster cluster;
    cluster.set_name(name);
    cluster.set_type(xds::Cluster::EDS);
    cluster.set_protocol(UpstreamProtocolFor(port.protocol()));
    const pb::TrafficPolicySpec* tp = PolicyFor(s);
    std::string lb =
        tp != nullptr && !tp->load_balancer().empty() ? tp->load_balancer() : mesh_.load_balancer();
    xds::LbPolicy lb_policy = xds::LEAST_REQUEST;
    if (!lb.empty()) xds::LbPolicy_Parse(lb, &lb_policy);
    cluster.set_lb_policy(lb_policy);
    const pb::Timeouts timeouts = EffectiveTimeouts(tp);
    if (timeouts.has_connect()) SetDuration(cluster.mutable_connect_timeout(), timeouts.connect());
    if (tp != nullptr) {
      if (tp->has_circuit_breaker()) {
        const pb::CircuitBreaker& cb = tp->circuit_breaker();
        xds::CircuitBreakers* out = cluster.mutable_circuit_breakers();
        if (cb.has_max_connections()) *out->mutable_max_connections() = cb.max_connections();
        if (cb.has_max_pending_requests()) {
          *out->mutable_max_pending_requests() = cb.max_pending_requests();
        }
        if (cb.has_max_requests()) *out->mutable_max_requests() = cb.max_requests();
        if (cb.has_max_retries()) *out->mutable_max_retries() = cb.max_retries();
        if (cb.consecutive_failures() > 0) {
          out->mutable_consecutive_failures()->set_failure_threshold(cb.consecutive_failures());
          if (cb.has_open_duration()) {
            SetDuration(out->mutable_consecutive_failures()->mutable_open_duration(),
                        cb.open_duration());
          }
        }
      }
      const pb::Retries retries = EffectiveRetries(tp, nullptr);
      if (retries.has_budget_percent() || retries.has_budget_min_retries_per_second()) {
        xds::RetryBudget* budget = cluster.mutable_circuit_breakers()->mutable_retry_budget();
        budget->set_budget_percent(retries.has_budget_percent() ? retries.budget_percent().value()
                                                                : 20.0);
        budget->set_min_retries_per_second(retries.has_budget_min_retries_per_second()
                                               ? retries.budget_min_retries_per_second().value()
                                               : 10);
      }
      if (tp->has_connection_pool()) {
        const pb::ConnectionPoolPolicy& in = tp->connection_pool();
        xds::ConnectionPool* out = cluster.mutable_pool();
        if (in.has_idle_timeout()) SetDuration(out->mutable_idle_timeout(), in.idle_timeout());
        if (in.has_max_requests_per_connection()) {
          out->set_max_requests_per_connection(in.max_requests_per_connection().value());
        }
        if (in.has_max_connection_duration()) {
          SetDuration(out->mutable_max_connection_duration(), in.max_connection_duration());
        }
      }
      if (tp->has_outlier_detection()) {
        const pb::OutlierDetectionPolicy& od = tp->outlier_detection();
        xds::OutlierDetection* out = cluster.mutable_outlier_detection();
        if (od.has_consecutive_5xx()) *out->mutable_consecutive_5xx() = od.consecutive_5xx();
        if (od.has_consecutive_gateway_failures()) {
          *out->mutable_consecutive_gateway_failure() = od.consecutive_gateway_failures();
        }
        if (od.has_interval()) SetDuration(out->mutable_interval(), od.interval());
        if (od.has_base_ejection_time()) {
          SetDuration(out->mutable_base_ejection_time(), od.base_ejection_time());
        }
        if (od.has_max_ejection_time()) {
          SetDuration(out->mutable_max_ejection_time(), od.max_ejection_time());
        }
        if (od.has_max_ejection_percent()) {
          *out->mutable_max_ejection_percent() = od.max_ejection_percent();
        }
      }
    }
    const std::string mode = MtlsMode(tp);
    const bool mtls = SetUpstreamMtls(s, subset, mode, cluster);
    // Sidecar to sidecar, an HTTP/1.1 service's requests travel over HTTP/2 (one multiplexed
    // connection instead of a pool of them); the members' sidecars translate back. Over mTLS
    // only, where ALPN agrees on it with each peer sidecar; plaintext members keep HTTP/1.1.
    // Opaque (TCP) ports are proxied as bytes, never as HTTP/2.
    if (mtls && cluster.protocol() == xds::UPSTREAM_HTTP1 && IsHttpProtocol(port.protocol()) &&
        !opaque) {
      cluster.set_protocol(xds::UPSTREAM_MESH_HTTP2);
    }
    // Endpoints: registered workloads of the service (matching the selector and the subset)
    // that are ready. One that is not (its sidecar drains) is left out rather than sent as
    // UNHEALTHY: a caller in panic mode balances over unhealthy hosts too, and a draining
    // sidecar refuses new connections. The cluster itself does not change.
    xds::ClusterLoadAssignment assignment;
    assignment.set_cluster_name(name);
    // Ordered by address before the messages are built: sorting built messages copies them.
    std::vector<std::pair<std::string, const Workload*>> chosen;
    for (const Workload* w : s.members) {
      if (!w->ready || !Matches(subset, w->labels)) continue;
      // A member whose traffic is captured is reached on its app port: its packet filter
      // redirects the connection to its inbound listener, which reads the port to find the app.
      const uint32_t endpoint_port = w->capture ? AppPort(s.ports, port, SortedPorts(w->ports))
                                     : w->inbound_port != 0 ? w->inbound_port
                                                            : registry::kDefaultInboundPort;
      for (const std::string& address : w->addresses) {
        chosen.emplace_back(FormatAddress(address, endpoint_port), w);
      }
    }
    std::sort(chosen.begin(), chosen.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    assignment.mutable_endpoints()->Reserve(static_cast<int>(chosen.size()));
    for (auto& [address, w] : chosen) {
      xds::Endpoint* e = assignment.add_endpoints();
      e->set_address(std::move(address));
      for (const auto& [key, value] : w->labels) {
        if (!absl::StartsWith(key, "meshlet.io/")) (*e->mutable_labels())[key] = value;
      }
      // Automatic mTLS per endpoint: in PERMISSIVE, a member without a certificate to answer
      // with is reached in plaintext while the others get mTLS; each mTLS endpoint must
      // present exactly its own identity.
      const bool has_certificate = HasCertificate(*w);
      if (mtls && !has_certificate && mode != "STRICT") {
        e->set_plaintext(true);
      } else if (!w->service_account.empty() && (has_certificate || mtls)) {
        e->set_identity(SpiffeId(*w));
      }
    }
    endpoints_[name] = std::move(assignment);
    return clusters_.emplace(name, std::move(cluster)).first->first;
  }

  // What the clusters' TLS depends on besides the inputs' versions (part of the cache key).
  std::string MeshTlsKey() const {
    if (!self_.workload_certificate) return "plaintext";
    return options_.trust_bundle_pem.empty() ? "workload" : "workload+bundle";
  }

  std::string SpiffeId(const Workload& w) const {
    return absl::StrCat("spiffe://", TrustDomain(), "/ns/", w.namespace_, "/sa/",
                        w.service_account);
  }

  // A member that can answer mTLS: it announces a workload certificate, which names its
  // service account.
  static bool HasCertificate(const Workload& w) {
    return w.workload_certificate && !w.service_account.empty();
  }

  // Mesh mTLS to a service's sidecars, with this node's workload certificate: when the service's
  // mode is not DISABLE and some member (of the subset) has a certificate to answer with, or the
  // mode is STRICT (plaintext would be refused anyway). In PERMISSIVE the members without one are
  // marked plaintext on their endpoints. The upstream must present one of the members' SPIFFE ids
  // (and each endpoint exactly its own). Returns whether the cluster uses mTLS.
  bool SetUpstreamMtls(const ServiceView& s, const std::map<std::string, std::string>& subset,
                       const std::string& mode, xds::Cluster& cluster) const {
    if (!self_.workload_certificate || mode == "DISABLE") return false;
    std::set<std::string> ids;
    bool any_has_certificate = false;
    for (const Workload* w : s.members) {
      if (!Matches(subset, w->labels)) continue;
      any_has_certificate |= HasCertificate(*w);
      if (!w->service_account.empty()) ids.insert(SpiffeId(*w));
    }
    if (!any_has_certificate && mode != "STRICT") return false;
    xds::UpstreamTls* tls = cluster.mutable_tls();
    tls->set_enabled(true);
    tls->set_workload_certificate(true);
    if (!options_.trust_bundle_pem.empty()) {
      tls->set_trust_bundle_secret(std::string(kTrustBundleSecret));
    }
    if (ids.empty()) {
      // STRICT before any member with a service account registered: any identity of the mesh's
      // trust domain (an id pattern narrower than a trust domain cannot be expressed).
      ids.insert(absl::StrCat("spiffe://", TrustDomain(), "/*"));
    }
    for (const std::string& id : ids) tls->add_expected_peer_ids(id);
    return true;
  }

  std::string TrustDomain() const {
    return mesh_.trust_domain().empty() ? "cluster.local" : mesh_.trust_domain();
  }

  std::string MtlsMode(const pb::TrafficPolicySpec* tp) const {
    if (tp != nullptr && !tp->mtls().empty()) return tp->mtls();
    return mesh_.mtls().empty() ? "PERMISSIVE" : mesh_.mtls();
  }

  // The host names of a Service port; with `addresses`, its virtual addresses too (what a
  // client that called the address sends as Host).
  std::vector<std::string> Domains(const ServiceView& s, uint32_t port, bool bare,
                                   bool addresses = false) const {
    std::vector<std::string> names = {s.name, s.Fqdn(), absl::StrCat(s.Fqdn(), ".svc"),
                                      absl::StrCat(s.Fqdn(), ".svc.", options_.cluster_domain)};
    if (addresses) {
      for (const std::string& address : s.addresses) names.push_back(AddressHost(address));
    }
    std::vector<std::string> out;
    for (const std::string& n : names) {
      if (bare) out.push_back(n);
      out.push_back(absl::StrCat(n, ":", port));
    }
    return out;
  }

  static void AddHeaderEdits(const pb::HeaderModifier& hm,
                             google::protobuf::RepeatedPtrField<xds::HeaderValueOption>* add,
                             google::protobuf::RepeatedPtrField<std::string>* remove) {
    for (const auto& [name, value] : Sorted(hm.set())) {
      xds::HeaderValueOption* h = add->Add();
      h->set_name(name);
      h->set_value(value);
      h->set_append(false);
    }
    for (const auto& [name, value] : Sorted(hm.add())) {
      xds::HeaderValueOption* h = add->Add();
      h->set_name(name);
      h->set_value(value);
      h->set_append(true);
    }
    for (const std::string& name : hm.remove()) *remove->Add() = name;
  }

  // The route action for a rule's backends, or false when none of them resolves.
  bool BackendAction(const ServiceView& target, const pb::ServicePort& target_port,
                     const pb::HTTPRouteRule& rule, const std::string& where,
                     xds::RouteAction& action) {
    struct Choice {
      std::string cluster;
      uint32_t weight;
    };
    std::vector<Choice> choices;
    bool all_unweighted = true;
    for (const pb::HTTPBackend& b : rule.backends()) all_unweighted &= b.weight() == 0;
    for (int i = 0; i < rule.backends_size(); ++i) {
      const pb::HTTPBackend& b = rule.backends(i);
      auto it = index_.services.find({target.namespace_, b.service()});
      if (it == index_.services.end()) {
        Warn(absl::StrCat(where, ".backends[", i, "]: Service \"", b.service(),
                          "\" in namespace \"", target.namespace_,
                          "\" does not exist; its share of traffic gets 503"));
        continue;
      }
      const ServiceView& backend = it->second;
      const pb::ServicePort* port = nullptr;
      const uint32_t wanted = b.port() != 0         ? b.port()
                              : &backend == &target ? target_port.port()
                                                    : 0;
      for (const pb::ServicePort& p : backend.ports) {
        if (wanted == 0 ? IsHttpProtocol(p.protocol()) : p.port() == wanted) {
          port = &p;
          break;
        }
      }
      if (port == nullptr) {
        Warn(absl::StrCat(where, ".backends[", i, "]: Service \"", b.service(),
                          "\" has no such HTTP port; its share of traffic gets 503"));
        continue;
      }
      const uint32_t weight = all_unweighted ? 1 : b.weight();
      if (weight == 0) continue;
      std::map<std::string, std::string> subset(b.subset().begin(), b.subset().end());
      choices.push_back({UseCluster(backend, *port, subset), weight});
    }
    if (choices.empty()) return false;
    if (choices.size() == 1 && static_cast<int>(choices.size()) == rule.backends_size()) {
      action.set_cluster(choices.front().cluster);
    } else {
      // A missing backend keeps the others at their share; the sidecar spreads by weight.
      for (const Choice& c : choices) {
        auto* cw = action.mutable_weighted_clusters()->add_clusters();
        cw->set_name(c.cluster);
        cw->set_weight(c.weight);
      }
    }
    return true;
  }

  void AddRuleRoutes(const ServiceView& target, const pb::ServicePort& port,
                     const pb::HTTPRoute& route, int rule_index, xds::VirtualHost& vhost) {
    const pb::HTTPRouteRule& rule = route.spec().rules(rule_index);
    const std::string where = absl::StrCat(
        "HTTPRoute ",
        route.metadata().namespace_().empty() ? "default" : route.metadata().namespace_(), "/",
        route.metadata().name(), " spec.rules[", rule_index, "]");
    xds::Route base;
    const std::string rule_name =
        rule.name().empty() ? absl::StrCat("rule-", rule_index) : rule.name();
    if (rule.has_redirect()) {
      xds::RedirectAction* r = base.mutable_redirect();
      r->set_host(rule.redirect().host());
      r->set_path(rule.redirect().path());
      r->set_scheme(rule.redirect().scheme());
      r->set_port(rule.redirect().port());
      r->set_response_code(rule.redirect().status_code());
    } else if (rule.has_direct_response()) {
      base.mutable_direct_response()->set_status(rule.direct_response().status());
      base.mutable_direct_response()->set_body(rule.direct_response().body());
    } else {
      xds::RouteAction action;
      if (BackendAction(target, port, rule, where, action)) {
        ApplyRouteDefaults(target, action, &rule);
        if (rule.has_rewrite()) {
          action.set_prefix_rewrite(rule.rewrite().path_prefix());
          action.set_host_rewrite(rule.rewrite().host());
        }
        *base.mutable_route() = std::move(action);
      } else {
        base.mutable_direct_response()->set_status(503);
        base.mutable_direct_response()->set_body("meshlet: no backend of this route exists\n");
      }
    }
    if (rule.has_request_headers()) {
      AddHeaderEdits(rule.request_headers(), base.mutable_request_headers_to_add(),
                     base.mutable_request_headers_to_remove());
    }
    if (rule.has_response_headers()) {
      AddHeaderEdits(rule.response_headers(), base.mutable_response_headers_to_add(),
                     base.mutable_response_headers_to_remove());
    }
    if (rule.has_fault()) {
      const pb::Fault& f = rule.fault();
      xds::FaultInjection* out = base.mutable_fault();
      if (f.has_delay()) {
        SetDuration(out->mutable_delay()->mutable_fixed_delay(), f.delay().fixed());
        out->mutable_delay()->set_percentage(f.delay().percent());
      }
      if (f.has_abort()) {
        out->mutable_abort()->set_http_status(f.abort().http_status());
        out->mutable_abort()->set_grpc_status(f.abort().grpc_status());
        out->mutable_abort()->set_percentage(f.abort().percent());
      }
    }
    const int match_count = std::max(1, rule.matches_size());
    for (int m = 0; m < match_count; ++m) {
      xds::Route r = base;
      r.set_name(absl::StrCat(route.metadata().name(), ".", rule_name,
                              rule.matches_size() > 1 ? absl::StrCat(".", m) : ""));
      xds::RouteMatch* match = r.mutable_match();
      if (rule.matches_size() == 0) {
        match->set_prefix("/");
      } else {
        const pb::HTTPRouteMatch& in = rule.matches(m);
        if (!in.has_path()) {
          match->set_prefix("/");
        } else if (in.path().type() == "Exact") {
          match->set_path(in.path().value());
        } else {
          match->set_prefix(in.path().value());
        }
        for (const auto& h : in.headers()) {
          xds::HeaderMatcher* hm = match->add_headers();
          hm->set_name(absl::AsciiStrToLower(h.name()));
          if (h.type() == "Present") {
            hm->set_present(true);
          } else if (h.type() == "Prefix") {
            hm->set_prefix(h.value());
          } else {
            hm->set_exact(h.value());
          }
          hm->set_invert(h.invert());
        }
        if (!in.method().empty()) match->add_methods(in.method());
      }
      *vhost.add_routes() = std::move(r);
    }
  }

  void BuildOutbound() {
    xds::RouteConfiguration routes;
    routes.set_name(std::string(kOutboundName));
    std::set<std::string> used_domains;
    for (const auto& [key, service] : index_.services) {
      if (!Reachable(service)) continue;
      bool first_http_port = true;
      for (const pb::ServicePort& port : service.ports) {
        if (!IsHttpProtocol(port.protocol())) {
          if (!self_.capture) {
            Warn(absl::StrCat("Service ", service.namespace_, "/", service.name, " port ",
                              port.port(), ": TCP ports are not routed by the outbound listener"));
          } else if (service.addresses.empty()) {
            Warn(absl::StrCat("Service ", service.namespace_, "/", service.name, " port ",
                              port.port(),
                              ": TCP, and the Service has no address to recognise it by"));
          } else {
            // Captured connections to the Service's addresses on this port (the capture
            // listener's destination).
            UseCluster(service, port, {});
          }
          continue;
        }
        if (IsAutoProtocol(port.protocol()) && self_.capture && !service.addresses.empty()) {
          // Captured connections to the address that turn out not to be HTTP.
          UseCluster(service, port, {}, /*opaque=*/true);
        }
        xds::VirtualHost vhost;
        vhost.set_name(absl::StrCat(service.Fqdn(), ":", port.port()));
        std::vector<std::string> domains =
            Domains(service, port.port(), first_http_port, self_.capture);
        if (first_http_port) {
          for (const pb::HTTPRoute* route : RoutesFor(service)) {
            for (const std::string& host : route->spec().hostnames()) domains.push_back(host);
          }
        }
        first_http_port = false;
        for (const std::string& domain : domains) {
          if (used_domains.insert(domain).second) {
            vhost.add_domains(domain);
          } else {
            Warn(absl::StrCat("host name \"", domain, "\" of ", vhost.name(),
                              " is already used by another service; ignored"));
          }
        }
        if (vhost.domains().empty()) continue;
        for (const pb::HTTPRoute* route : RoutesFor(service)) {
          for (int i = 0; i < route->spec().rules_size(); ++i) {
            AddRuleRoutes(service, port, *route, i, vhost);
          }
        }
        xds::Route fallback;
        fallback.set_name("default");
        fallback.mutable_match()->set_prefix("/");
        xds::RouteAction* action = fallback.mutable_route();
        action->set_cluster(UseCluster(service, port, {}));
        ApplyRouteDefaults(service, *action, nullptr);
        *vhost.add_routes() = std::move(fallback);
        *routes.add_virtual_hosts() = std::move(vhost);
      }
    }
    xds::VirtualHost unknown;
    unknown.set_name("unknown-host");
    unknown.add_domains("*");
    xds::Route* not_found = unknown.add_routes();
    not_found->set_name("no-service");
    not_found->mutable_match()->set_prefix("/");
    not_found->mutable_direct_response()->set_status(404);
    not_found->mutable_direct_response()->set_body(
        "meshlet: no service for this host (known to this sidecar)\n");
    *routes.add_virtual_hosts() = std::move(unknown);
    out_.routes.push_back(std::move(routes));
  }

  // Where the inbound listener binds: every address for captured traffic (the packet filter
  // redirects to the pod's own addresses), else the configured host.
  std::string ListenHost() const { return self_.capture ? "0.0.0.0" : options_.listen_host; }

  // The outbound listener authenticates nobody and its calls leave with this workload's
  // certificate, so it binds loopback only, for the app beside it: 127.0.0.1, and ::1 beside it
  // when captured (the packet filter redirects the app's connections to the loopback address of
  // their family) or when the listeners bind IPv6. Whatever the inbound capture annotations say,
  // no other host can reach it.
  void BindOutbound(xds::Listener& listener, uint32_t port) const {
    listener.set_address(FormatAddress("127.0.0.1", port));
    if (self_.capture || absl::StrContains(options_.listen_host, ':')) {
      listener.add_additional_addresses(FormatAddress("::1", port));
    }
  }

  // What every capture listener adds: for inbound, the IPv6 wildcard on the same port, for the
  // connections ip6tables redirects in a pod with IPv6 (sidecar init --ipv6; the sidecar skips
  // it on a kernel without IPv6); the mesh's connect timeout for passthroughs.
  void SetCaptureCommon(xds::Listener& listener, uint32_t port) const {
    listener.set_use_original_destination(true);
    if (listener.direction() == xds::INBOUND) {
      listener.add_additional_addresses(FormatAddress("::", port));
    }
    if (mesh_.default_timeouts().has_connect()) {
      SetDuration(listener.mutable_passthrough_connect_timeout(),
                  mesh_.default_timeouts().connect());
    }
  }

  void BuildOutboundListener() {
    xds::Listener listener;
    listener.set_name(std::string(kOutboundName));
    const uint32_t port =
        self_.outbound_port != 0 ? self_.outbound_port : registry::kDefaultOutboundPort;
    BindOutbound(listener, port);
    listener.set_direction(xds::OUTBOUND);
    listener.set_protocol(xds::PROTOCOL_HTTP);
    listener.set_route_config_name(std::string(kOutboundName));
    if (self_.capture) {
      SetCaptureCommon(listener, port);
      AddOutboundDestinations(listener);
    }
    out_.listeners.push_back(std::move(listener));
  }

  // Captured outbound connections: one destination per reachable Service port, matched by the
  // Service's addresses and the port. HTTP ports are routed by the "outbound" routes (by Host,
  // whose virtual hosts answer to the addresses too), opaque ones go to the port's cluster as
  // bytes. Anything else follows MeshConfig outboundTrafficPolicy.
  void AddOutboundDestinations(xds::Listener& listener) const {
    for (const auto& [key, service] : index_.services) {
      if (service.addresses.empty() || !Reachable(service)) continue;
      for (const pb::ServicePort& port : service.ports) {
        xds::ListenerDestination* d = listener.add_destinations();
        d->set_name(absl::StrCat(service.Fqdn(), ":", port.port()));
        for (const std::string& address : service.addresses) d->add_addresses(address);
        d->set_port(port.port());
        if (IsAutoProtocol(port.protocol())) {
          d->set_protocol(xds::PROTOCOL_AUTO);
          d->set_route_config_name(std::string(kOutboundName));
          d->set_tcp_cluster(ClusterName(service, port.port(), {}, /*opaque=*/true));
        } else if (IsHttpProtocol(port.protocol())) {
          d->set_protocol(xds::PROTOCOL_HTTP);
          d->set_route_config_name(std::string(kOutboundName));
        } else {
          d->set_protocol(xds::PROTOCOL_TCP);
          d->set_tcp_cluster(ClusterName(service, port.port(), {}));
        }
      }
    }
    listener.set_unmatched_destination(
        mesh_.outbound_traffic_policy() == "REGISTRY_ONLY" ? xds::REFUSE : xds::PASSTHROUGH);
  }

  // The inbound route to the local app's `cluster`.
  static xds::Route AppRoute(const std::string& cluster, const pb::TrafficPolicySpec* tp) {
    xds::Route route;
    route.set_name("app");
    route.mutable_match()->set_prefix("/");
    route.mutable_route()->set_cluster(cluster);
    // The caller's deadline governs; the inbound hop adds none of its own.
    route.mutable_route()->mutable_timeout()->set_seconds(0);
    // Retries belong to the caller's sidecar, where the route's policy and the cluster's budget
    // live: retrying responses or resets here as well would multiply attempts at every hop.
    // This hop retries only what provably never reached the app (no connection to it, or a
    // stream it refused), with the default attempt count; those cannot multiply.
    xds::RetryPolicy* inbound_retries = route.mutable_route()->mutable_retry_policy();
    inbound_retries->add_retry_on("connect-failure");
    inbound_retries->add_retry_on("refused-stream");
    if (tp != nullptr && tp->has_rate_limit()) {
      route.mutable_rate_limit()->set_requests_per_second(tp->rate_limit().requests_per_second());
      route.mutable_rate_limit()->set_burst(tp->rate_limit().burst());
      // A bucket per calling workload (its SPIFFE id), so one noisy caller cannot spend the
      // others' budget.
      route.mutable_rate_limit()->set_per_principal(tp->rate_limit().per_source_identity());
    }
    return route;
  }

  void BuildInbound() {
    // The app's ports: the Service's target ports, else what the workload registered.
    std::vector<pb::ServicePort> ports;
    const ServiceView* own = nullptr;
    if (auto it = index_.services.find({self_.namespace_, self_.service});
        it != index_.services.end()) {
      own = &it->second;
      ports = own->ports;
    }
    if (ports.empty()) {
      for (uint32_t p : self_.ports) {
        pb::ServicePort sp;
        sp.set_port(p);
        ports.push_back(std::move(sp));
      }
    }
    if (ports.empty()) return;  // nothing to serve: the sidecar only carries outbound calls
    const std::vector<uint32_t> registered = SortedPorts(self_.ports);
    auto app_port = [&](const pb::ServicePort& p) { return AppPort(ports, p, registered); };
    const pb::TrafficPolicySpec* tp = own != nullptr ? PolicyFor(*own) : nullptr;

    xds::RouteConfiguration routes;
    routes.set_name(std::string(kInboundName));
    std::set<uint32_t> made;
    std::string first_cluster;
    uint32_t first_app_port = 0;
    // Captured connections, by the app port they were addressed to (the first Service port with
    // that app port decides the protocol).
    std::vector<xds::ListenerDestination> destinations;
    for (size_t i = 0; i < ports.size(); ++i) {
      const pb::ServicePort& p = ports[i];
      const uint32_t target = app_port(p);
      const std::string cluster_name = absl::StrCat("inbound|", target);
      const bool first_for_target = made.insert(target).second;
      xds::ListenerDestination* destination = nullptr;
      if (self_.capture && first_for_target) {
        destination = &destinations.emplace_back();
        destination->set_name(cluster_name);
        destination->set_port(target);
        destination->set_destination_port(target);
        destination->set_protocol(xds::PROTOCOL_TCP);
        destination->set_tcp_cluster(cluster_name);
      }
      if (first_for_target) {
        xds::Cluster cluster;
        cluster.set_name(cluster_name);
        cluster.set_type(xds::Cluster::STATIC);
        cluster.set_protocol(UpstreamProtocolFor(p.protocol()));
        cluster.mutable_load_assignment()->set_cluster_name(cluster_name);
        cluster.mutable_load_assignment()->add_endpoints()->set_address(
            FormatAddress(options_.local_app_host, target));
        clusters_.emplace(cluster_name, std::move(cluster));
      }
      if (first_cluster.empty()) {
        first_cluster = cluster_name;
        first_app_port = target;
      }
      if (!IsHttpProtocol(p.protocol())) continue;
      const xds::Route app_route = AppRoute(cluster_name, tp);
      if (destination != nullptr) {
        // The port the connection was addressed to names the app port: one route table per
        // port, whatever Host the caller sent.
        xds::RouteConfiguration port_routes;
        port_routes.set_name(cluster_name);
        xds::VirtualHost* any = port_routes.add_virtual_hosts();
        any->set_name(absl::StrCat("inbound:", p.port()));
        any->add_domains("*");
        any->set_destination_port(target);
        *any->add_routes() = app_route;
        out_.routes.push_back(std::move(port_routes));
        if (IsAutoProtocol(p.protocol())) {
          // Not HTTP: bytes to the app port, as for TCP ports.
          destination->set_protocol(xds::PROTOCOL_AUTO);
        } else {
          destination->clear_tcp_cluster();
          destination->set_protocol(xds::PROTOCOL_HTTP);
        }
        destination->set_route_config_name(cluster_name);
      }
      xds::VirtualHost vhost;
      // Peers send the Host they called ("svc:port"); the first port also takes everything else.
      vhost.set_name(absl::StrCat("inbound:", p.port()));
      vhost.set_destination_port(target);
      if (own != nullptr) {
        for (const std::string& d : Domains(*own, p.port(), false)) vhost.add_domains(d);
      }
      if (i == 0 || own == nullptr) {
        vhost.clear_domains();
        vhost.add_domains("*");
      }
      if (routes.virtual_hosts_size() > 0 && vhost.domains(0) == "*") continue;
      *vhost.add_routes() = app_route;
      *routes.add_virtual_hosts() = std::move(vhost);
    }
    // The catch-all ("*") host goes last so port-specific hosts win.
    std::stable_sort(routes.mutable_virtual_hosts()->begin(), routes.mutable_virtual_hosts()->end(),
                     [](const xds::VirtualHost& a, const xds::VirtualHost& b) {
                       return (a.domains(0) != "*") > (b.domains(0) != "*");
                     });

    xds::Listener listener;
    listener.set_name(std::string(kInboundName));
    const uint32_t port =
        self_.inbound_port != 0 ? self_.inbound_port : registry::kDefaultInboundPort;
    listener.set_address(FormatAddress(ListenHost(), port));
    listener.set_direction(xds::INBOUND);
    if (self_.capture) {
      // Connections to the pod's addresses: by the port they were addressed to. Ports no
      // Service declares go to the app as bytes, on the same port (TLS and authorization still
      // apply); 127.0.0.1, since the pod's own address would be redirected again.
      SetCaptureCommon(listener, port);
      for (xds::ListenerDestination& d : destinations) *listener.add_destinations() = std::move(d);
      listener.set_unmatched_destination(xds::PASSTHROUGH);
      listener.set_passthrough_host(options_.local_app_host);
    }
    if (routes.virtual_hosts_size() > 0) {
      listener.set_protocol(xds::PROTOCOL_AUTO);
      listener.set_route_config_name(std::string(kInboundName));
      out_.routes.push_back(std::move(routes));
    } else {
      listener.set_protocol(xds::PROTOCOL_TCP);
    }
    listener.set_tcp_cluster(first_cluster);
    listener.set_destination_port(first_app_port);
    const std::string mode = MtlsMode(tp);
    if (self_.workload_certificate && mode != "DISABLE") {
      xds::DownstreamTls* tls = listener.mutable_tls();
      tls->set_mode(mode == "STRICT" ? xds::DownstreamTls::STRICT : xds::DownstreamTls::PERMISSIVE);
      tls->set_workload_certificate(true);
      tls->set_require_client_certificate(mode == "STRICT");
      if (!options_.trust_bundle_pem.empty()) {
        tls->set_trust_bundle_secret(std::string(kTrustBundleSecret));
      }
    }
    BuildAuthorization(ports, app_port, listener);
    out_.listeners.push_back(std::move(listener));
  }

  // The AuthorizationPolicies of this workload's namespace that select it (no target, or a
  // target Service it belongs to), ordered by name, as the inbound listener's authorization.
  // Each rule's from × to combinations become flat rules; ports name app ports (a Service port
  // stands for the app port it forwards to), which is what the virtual hosts' and the
  // listener's destination_port carry.
  template <typename AppPort>
  void BuildAuthorization(const std::vector<pb::ServicePort>& ports, const AppPort& app_port,
                          xds::Listener& listener) {
    std::vector<const pb::AuthorizationPolicy*> selected;
    for (const pb::AuthorizationPolicy& ap : policy_.authorization_policies) {
      const std::string ns =
          ap.metadata().namespace_().empty() ? "default" : ap.metadata().namespace_();
      if (ns != self_.namespace_ || !SelectsSelf(ap.spec().target())) continue;
      selected.push_back(&ap);
    }
    if (selected.empty()) return;
    std::sort(selected.begin(), selected.end(), [](const auto* a, const auto* b) {
      return a->metadata().name() < b->metadata().name();
    });
    xds::Authorization* authorization = listener.mutable_authorization();
    for (const pb::AuthorizationPolicy* ap : selected) {
      xds::AuthorizationPolicy* out = authorization->add_policies();
      out->set_name(absl::StrCat(self_.namespace_, "/", ap->metadata().name()));
      out->set_action(ap->spec().action() == "DENY" ? xds::AuthorizationPolicy::DENY
                                                    : xds::AuthorizationPolicy::ALLOW);
      for (const pb::AuthorizationRule& rule : ap->spec().rules()) {
        const pb::AuthorizationRule::From no_from;
        const pb::AuthorizationRule::To no_to;
        const int froms = std::max(1, rule.from_size());
        const int tos = std::max(1, rule.to_size());
        for (int f = 0; f < froms; ++f) {
          const pb::AuthorizationRule::From& from = rule.from_size() > 0 ? rule.from(f) : no_from;
          for (int t = 0; t < tos; ++t) {
            const pb::AuthorizationRule::To& to = rule.to_size() > 0 ? rule.to(t) : no_to;
            xds::AuthorizationRule* r = out->add_rules();
            *r->mutable_principals() = from.principals();
            *r->mutable_namespaces() = from.namespaces();
            std::set<uint32_t> app_ports;
            for (uint32_t port : to.ports()) {
              app_ports.insert(port);
              for (const pb::ServicePort& sp : ports) {
                if (sp.port() == port) app_ports.insert(app_port(sp));
              }
            }
            for (uint32_t port : app_ports) r->add_ports(port);
            *r->mutable_methods() = to.methods();
            *r->mutable_paths() = to.paths();
          }
        }
      }
    }
  }

  // Whether an AuthorizationPolicy target (a Service of this namespace; empty: all) selects
  // this workload.
  bool SelectsSelf(const std::string& target) const {
    if (target.empty() || target == self_.service) return true;
    auto it = index_.services.find({self_.namespace_, target});
    if (it == index_.services.end()) return false;
    const auto& members = it->second.members;
    return std::any_of(members.begin(), members.end(),
                       [this](const Workload* w) { return w->id == self_.id; });
  }

  void Finish() {
    if (self_.workload_certificate && !options_.trust_bundle_pem.empty()) {
      xds::Secret bundle;
      bundle.set_name(std::string(kTrustBundleSecret));
      bundle.set_trust_bundle_pem(options_.trust_bundle_pem);
      out_.secrets.push_back(std::move(bundle));
    }
    for (auto& [name, cluster] : clusters_) out_.clusters.push_back(std::move(cluster));
    for (auto& [name, assignment] : endpoints_) out_.endpoints.push_back(std::move(assignment));
    auto by_name = [](const auto& a, const auto& b) { return a.name() < b.name(); };
    std::sort(out_.listeners.begin(), out_.listeners.end(), by_name);
    std::sort(out_.routes.begin(), out_.routes.end(), by_name);
    // clusters_ and endpoints_ are std::maps: already ordered by name.
  }

  const PolicySnapshot& policy_;
  const RegistrySnapshot& registry_;
  const TranslateOptions& options_;
  Workload self_;
  pb::MeshConfigSpec mesh_;
  const MeshIndex& index_;
  std::map<std::string, xds::Cluster> clusters_;
  std::map<std::string, xds::ClusterLoadAssignment> endpoints_;
  NodeResources out_;
};

}  // namespace

NodeResources Translate(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                        const xds::Node& node, const TranslateOptions& options,
                        TranslationCache* cache) {
  const MeshIndex index = BuildIndex(policy, registry);
  return Translator(policy, registry, index, node, options).Run(Translator::Part::kAll, cache);
}

struct MeshTranslator::Index {
  MeshIndex index;
};

MeshTranslator::MeshTranslator(std::shared_ptr<const PolicySnapshot> policy,
                               std::shared_ptr<const RegistrySnapshot> registry,
                               TranslateOptions options)
    : policy_(std::move(policy)),
      registry_(std::move(registry)),
      options_(std::move(options)),
      index_(std::make_unique<const Index>(Index{BuildIndex(*policy_, *registry_)})) {}

MeshTranslator::~MeshTranslator() = default;

std::string MeshTranslator::OutboundKey(const xds::Node& node) const {
  return Translator(*policy_, *registry_, index_->index, node, options_).CacheKey();
}

NodeResources MeshTranslator::TranslateOutbound(const xds::Node& node) const {
  return Translator(*policy_, *registry_, index_->index, node, options_)
      .Run(Translator::Part::kOutbound);
}

NodeResources MeshTranslator::TranslateLocal(const xds::Node& node) const {
  return Translator(*policy_, *registry_, index_->index, node, options_)
      .Run(Translator::Part::kLocal);
}

std::shared_ptr<const TranslationCache::Outbound> TranslationCache::Find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  return it->second;
}

void TranslationCache::Insert(const std::string& key, std::shared_ptr<const Outbound> outbound) {
  std::lock_guard<std::mutex> lock(mu_);
  // Entries of older inputs are useless once newer ones arrive; dropping everything when full
  // keeps this simple and bounded (scoped meshes have one entry per distinct dependency set).
  if (entries_.size() >= max_entries_) entries_.clear();
  entries_[key] = std::move(outbound);
}

TranslationCache::Stats TranslationCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {hits_, misses_, entries_.size()};
}

std::string ResourceVersion(const google::protobuf::Message& resource) {
  const std::string bytes = config::DeterministicBytes(resource);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 8));
}

std::string CombineVersions(const std::vector<std::string>& versions) {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  for (const std::string& v : versions) {
    SHA256_Update(&ctx, v.data(), v.size());
    SHA256_Update(&ctx, "\n", 1);
  }
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, &ctx);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 8));
}

}  // namespace meshlet::controlplane::translate
