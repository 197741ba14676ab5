// The mesh index: every service a translation knows (Service resources, services implied by
// registrations, Kubernetes Services) with its ports, addresses and members, and the
// TrafficPolicy and HTTPRoutes of each; the names and addresses derived from them.

#include <algorithm>

#include "absl/strings/str_join.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

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
    // A sidecar this control plane does not hold (one of another revision's, ADR 0069): mTLS
    // with the Pod's identity, as if it were registered here.
    w.workload_certificate = e.sidecar && !e.service_account.empty();
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

}  // namespace

std::string ClusterName(const ServiceView& s, uint32_t port,
                        const std::map<std::string, std::string>& subset, bool opaque) {
  return absl::StrCat("outbound|", port, "|",
                      opaque ? "tcp" : absl::StrJoin(subset, ",", absl::PairFormatter("=")), "|",
                      s.Fqdn());
}

std::string FormatAddress(absl::string_view host, uint32_t port) {
  if (host.find(':') != absl::string_view::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

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

std::string AddressHost(const std::string& address) {
  return address.find(':') != std::string::npos ? absl::StrCat("[", address, "]") : address;
}

bool Matches(const std::map<std::string, std::string>& selector,
             const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
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
    for (const auto& ks : registry.kubernetes->services) {
      AddKubernetesService(*ks, by_address, index);
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
  IndexGatewayRoutes(policy, index);
  return index;
}

}  // namespace meshlet::controlplane::translate
