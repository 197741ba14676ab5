// The mesh index: every service a translation knows (Service resources, services implied by
// registrations, Kubernetes Services) with its ports, addresses and members, and the
// TrafficPolicy and HTTPRoutes of each; the names and addresses derived from them.

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

using ByAddress = std::map<std::pair<std::string, std::string>, const Workload*>;

// A Kubernetes Service's view: its ports (unless a Service resource of the same name declares
// them: `view` has it already), its ClusterIPs as addresses, and its ready endpoints as members.
// An endpoint whose address a registered workload of the namespace has is that workload (its
// sidecar, with its certificate and readiness); any other is a member without a sidecar, reached
// in plaintext on its port. Members are the view's own (owned_members). Returns how many.
size_t AddKubernetesService(const registry::KubernetesService& ks, const ByAddress& by_address,
                            ServiceView& view) {
  view.kubernetes = &ks;
  view.namespace_ = ks.namespace_;
  view.name = ks.name;
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
      if (!registered.insert(found->second).second) continue;  // another address of the same pod
      // The Pod's labels count for subsets as well as those its sidecar registered (which win).
      Workload& member = view.owned_members.emplace_back(*found->second);
      member.labels.insert(e.labels.begin(), e.labels.end());
      // What its sidecar registered wins; a part it left empty (a proxy on a cluster that does
      // not copy topology labels onto pods knows only its node) is what discovery read (the
      // EndpointSlice, the Node's or the Pod's topology labels).
      if (member.locality.region().empty()) member.locality.set_region(e.region);
      if (member.locality.zone().empty()) member.locality.set_zone(e.zone);
      if (member.locality.node().empty()) member.locality.set_node(e.node);
      view.members.push_back(&member);
      continue;
    }
    Workload& w = view.owned_members.emplace_back();
    w.id = absl::StrCat("kubernetes/", ks.namespace_, "/", e.pod.empty() ? e.address : e.pod);
    w.service = ks.name;
    w.namespace_ = ks.namespace_;
    w.service_account = e.service_account;
    w.labels = e.labels;
    // A sidecar this control plane does not hold (one of another revision's, ADR 0069): mTLS
    // with the Pod's identity, as if it were registered here.
    w.workload_certificate = e.sidecar && !e.service_account.empty();
    w.addresses = {e.address};
    w.locality.set_region(e.region);
    w.locality.set_zone(e.zone);
    w.locality.set_node(e.node);
    w.capture = true;  // reached on its app port, as a captured member is
    view.members.push_back(&w);
  }
  std::sort(view.members.begin(), view.members.end(),
            [](const Workload* a, const Workload* b) { return a->id < b->id; });
  return view.owned_members.size();
}

// Namespace -> addresses of every registered workload that differs between two snapshots:
// added, removed, or changed in what translation reads. Both are ordered by id (an unordered one
// only makes the answer larger).
using AddressesByNamespace = std::map<std::string, std::set<std::string>, std::less<>>;
AddressesByNamespace ChangedAddresses(const RegistrySnapshot& before, const RegistrySnapshot& now) {
  AddressesByNamespace changed;
  auto add = [&changed](const Workload& w) {
    if (w.addresses.empty()) return;
    std::set<std::string>& addresses = changed[w.namespace_];
    addresses.insert(w.addresses.begin(), w.addresses.end());
  };
  auto a = before.workloads.begin();
  auto b = now.workloads.begin();
  while (a != before.workloads.end() || b != now.workloads.end()) {
    if (b == now.workloads.end() || (a != before.workloads.end() && a->id < b->id)) {
      add(*a++);
    } else if (a == before.workloads.end() || b->id < a->id) {
      add(*b++);
    } else {
      if (!SameMember(*a, *b)) {
        add(*a);
        add(*b);
      }
      ++a;
      ++b;
    }
  }
  return changed;
}

// The Services whose linked clusters' endpoints differ between `before` and `now`.
std::set<ServiceKey> ChangedRemote(const RegistrySnapshot& before, const RegistrySnapshot& now) {
  std::set<ServiceKey> changed;
  if (before.remote == now.remote) return changed;
  static const registry::RemoteServices kNone;
  const auto& a = (before.remote != nullptr ? *before.remote : kNone).services;
  const auto& b = (now.remote != nullptr ? *now.remote : kNone).services;
  for (const auto& [key, endpoints] : a) {
    auto it = b.find(key);
    if (it == b.end() || !registry::SameRemote(endpoints, it->second)) changed.insert(key);
  }
  for (const auto& [key, endpoints] : b) {
    if (!a.contains(key)) changed.insert(key);
  }
  return changed;
}

// A linked cluster's endpoint as a member of `view`: its east-west gateway, standing for the
// Service's members there (ADR 0106). Owned by the view.
void AddRemoteMember(const std::shared_ptr<const registry::RemoteEndpoint>& e, ServiceView& view) {
  Workload& w = view.owned_members.emplace_back();
  w.id = absl::StrCat("remote/", e->cluster, "/", e->host, ":", e->port);
  w.service = view.name;
  w.namespace_ = view.namespace_;
  w.addresses = {e->host};
  w.inbound_port = e->port;
  w.workload_certificate = true;
  w.locality = e->locality;
  w.ready = e->members > 0;
  w.remote = e;
  view.members.push_back(&w);
}

// Whether an endpoint of `ks` is at one of `changed`'s addresses (no allocation).
bool AtAny(const registry::KubernetesService& ks, const AddressesByNamespace& changed) {
  auto in_namespace = changed.find(ks.namespace_);
  if (in_namespace == changed.end()) return false;
  for (const registry::KubernetesEndpoint& e : ks.endpoints) {
    if (in_namespace->second.contains(e.address)) return true;
  }
  return false;
}

std::shared_ptr<const PolicyTargets> IndexTargets(const PolicySnapshot& policy) {
  auto targets = std::make_shared<PolicyTargets>();
  // Several TrafficPolicies for one Service: the one with the greatest name wins (documented),
  // whatever order the snapshot lists them in.
  for (const pb::TrafficPolicy& tp : policy.traffic_policies) {
    if (tp.spec().target_refs_size() > 0) continue;  // ExternalServices' (external_services.cc)
    const ServiceKey key{
        tp.metadata().namespace_().empty() ? "default" : tp.metadata().namespace_(),
        tp.spec().target()};
    auto [it, inserted] = targets->traffic_policies.emplace(key, &tp);
    if (!inserted && it->second->metadata().name() < tp.metadata().name()) it->second = &tp;
  }
  // HTTPRoutes by the Service they target, each list ordered by route name.
  for (const pb::HTTPRoute& route : policy.http_routes) {
    const std::string& ns =
        route.metadata().namespace_().empty() ? "default" : route.metadata().namespace_();
    targets->routes[{ns, route.spec().target()}].push_back(&route);
  }
  for (auto& [key, routes] : targets->routes) {
    std::sort(routes.begin(), routes.end(), [](const pb::HTTPRoute* a, const pb::HTTPRoute* b) {
      return a->metadata().name() < b->metadata().name();
    });
  }
  return targets;
}

uint64_t NextSerial() {
  static std::atomic<uint64_t> serial{0};
  return ++serial;
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

bool SameMember(const Workload& a, const Workload& b) {
  return a.id == b.id && a.service == b.service && a.namespace_ == b.namespace_ &&
         a.service_account == b.service_account && a.labels == b.labels &&
         a.addresses == b.addresses && a.ports == b.ports && a.inbound_port == b.inbound_port &&
         a.outbound_port == b.outbound_port && a.workload_certificate == b.workload_certificate &&
         a.capture == b.capture && a.ready == b.ready &&
         a.locality.SerializeAsString() == b.locality.SerializeAsString() &&
         registry::SameRemote(a.remote, b.remote);
}

MeshIndex BuildIndex(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                     const PreviousIndex& previous) {
  MeshIndex index;
  index.serial = NextSerial();
  // By position in the previous index's table: whether this index shares that entry's view.
  std::vector<bool> shared;
  // Views point into the policy snapshot: only an index of the same snapshot object shares them.
  const MeshIndex* base =
      previous.index != nullptr && previous.policy == &policy && previous.registry != nullptr
          ? previous.index
          : nullptr;
  if (base != nullptr) index.built_from = base->serial;
  // The views built here, completed in the passes below; shared ones go straight to the index.
  std::map<ServiceKey, std::shared_ptr<ServiceView>> views;
  for (const pb::Service& s : policy.services) {
    auto view = std::make_shared<ServiceView>();
    view->namespace_ = s.metadata().namespace_().empty() ? "default" : s.metadata().namespace_();
    view->name = s.metadata().name();
    view->resource = &s;
    view->ports.assign(s.spec().ports().begin(), s.spec().ports().end());
    view->selector.insert(s.spec().selector().begin(), s.spec().selector().end());
    view->service_accounts.insert(s.spec().service_accounts().begin(),
                                  s.spec().service_accounts().end());
    const auto& addresses =
        s.spec().addresses().empty() ? s.status().addresses() : s.spec().addresses();
    view->addresses.assign(addresses.begin(), addresses.end());
    ServiceKey key{view->namespace_, view->name};
    views[std::move(key)] = std::move(view);
  }
  if (registry.kubernetes != nullptr) {
    ByAddress by_address;
    for (const Workload& w : registry.workloads) {
      for (const std::string& address : w.addresses) {
        by_address.emplace(std::make_pair(w.namespace_, address), &w);
      }
    }
    AddressesByNamespace changed;
    std::set<ServiceKey> remote_changed;
    if (base != nullptr) {
      changed = ChangedAddresses(*previous.registry, registry);
      remote_changed = ChangedRemote(*previous.registry, registry);
      shared.assign(base->services.size(), false);
    }
    // Discovery lists Services in about key order: the base's entry after the last one found is
    // looked at first, so sharing a view costs a key comparison rather than a look-up.
    size_t cursor = 0;
    for (const auto& ks : registry.kubernetes->services) {
      if (base != nullptr) {
        const std::vector<ServiceTable::value_type>& entries = base->services.entries_;
        size_t at = cursor;
        if (at >= entries.size() || entries[at].first.first != ks->namespace_ ||
            entries[at].first.second != ks->name) {
          at = base->services.find({ks->namespace_, ks->name}) - entries.begin();
          ++index.shared_searched;
        }
        // A Service resource of the same name is the same object too (same policy snapshot).
        if (at < entries.size()) {
          cursor = at + 1;
          if (entries[at].second->kubernetes == ks.get() && !AtAny(*ks, changed) &&
              !remote_changed.contains(entries[at].first)) {
            if (!views.empty()) views.erase(entries[at].first);
            shared[at] = true;
            continue;
          }
        }
      }
      std::shared_ptr<ServiceView>& view = views[ServiceKey{ks->namespace_, ks->name}];
      if (view == nullptr) view = std::make_shared<ServiceView>();
      index.members_built += AddKubernetesService(*ks, by_address, *view);
    }
  }
  for (const Workload& w : registry.workloads) {
    if (w.service.empty()) continue;
    ServiceKey key{w.namespace_, w.service};
    if (base != nullptr && !shared.empty()) {
      auto at = base->services.find(key);
      if (at != base->services.end() && shared[at - base->services.begin()]) {
        continue;  // a shared Kubernetes Service's view
      }
    }
    std::shared_ptr<ServiceView>& view = views[std::move(key)];
    if (view == nullptr) {
      view = std::make_shared<ServiceView>();
      view->namespace_ = w.namespace_;
      view->name = w.service;
    }
    if (view->resource != nullptr || view->kubernetes != nullptr) continue;
    for (uint32_t port : w.ports) {
      bool known = false;
      for (const auto& p : view->ports) known |= p.port() == port;
      if (known) continue;
      pb::ServicePort p;
      p.set_port(port);
      p.set_protocol("HTTP");
      view->ports.push_back(std::move(p));
    }
  }
  // Membership once per translation rather than a registry scan per cluster.
  for (const Workload& w : registry.workloads) {
    if (w.service.empty()) continue;
    auto it = views.find({w.namespace_, w.service});
    if (it != views.end() && it->second->kubernetes == nullptr && it->second->Admits(w)) {
      it->second->members.push_back(&w);
    }
  }
  for (auto& [key, view] : views) {
    if (view->selector.empty() || view->kubernetes != nullptr) continue;
    for (const Workload& w : registry.workloads) {
      if (w.namespace_ == view->namespace_ && w.service != view->name &&
          Matches(view->selector, w.labels) && view->Admits(w)) {
        view->members.push_back(&w);
      }
    }
    std::sort(view->members.begin(), view->members.end(),
              [](const Workload* a, const Workload* b) { return a->id < b->id; });
  }
  // The linked clusters' endpoints join the Services of the same namespace and name built here
  // (a shared view has them already: it is shared only while they are unchanged). A Service
  // that exists only in a linked cluster is not made up here.
  if (registry.remote != nullptr) {
    for (const auto& [key, endpoints] : registry.remote->services) {
      auto it = views.find(key);
      if (it == views.end()) continue;
      for (const std::shared_ptr<const registry::RemoteEndpoint>& e : endpoints) {
        AddRemoteMember(e, *it->second);
      }
    }
  }
  // The table: the shared entries (in the previous table's order, which is key order) merged
  // with the views built here.
  std::vector<ServiceTable::value_type>& entries = index.services.entries_;
  entries.reserve(std::count(shared.begin(), shared.end(), true) + views.size());
  index.built.reserve(views.size());
  auto next_built = views.begin();
  auto add_built_before = [&](const ServiceKey* key) {
    for (; next_built != views.end() && (key == nullptr || next_built->first < *key);
         ++next_built) {
      auto& [built_key, view] = *next_built;
      std::sort(
          view->ports.begin(), view->ports.end(),
          [](const pb::ServicePort& a, const pb::ServicePort& b) { return a.port() < b.port(); });
      index.built.push_back(built_key);
      entries.emplace_back(built_key, std::move(view));
    }
  };
  for (size_t at = 0; at < shared.size(); ++at) {
    if (!shared[at]) continue;
    const ServiceTable::value_type& entry = base->services.entries_[at];
    add_built_before(&entry.first);
    entries.push_back(entry);
  }
  add_built_before(nullptr);
  index.ordered.reserve(index.services.size());
  for (const auto& [key, view] : index.services) index.ordered.push_back(view.get());
  index.by_target = base != nullptr ? base->by_target : IndexTargets(policy);
  IndexGatewayRoutes(policy, index);
  return index;
}

}  // namespace meshlet::controlplane::translate
