// What this cluster exports to linked clusters (exports.h).

#include "control-plane/translate/exports.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {

MeshExports ComputeExports(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                           absl::string_view trust_domain) {
  MeshExports out;
  const MeshIndex index = BuildIndex(policy, registry);
  for (const ServiceView* s : index.ordered) {
    if (!Exported(*s)) continue;
    ExportedService& e = out.services.emplace_back();
    e.namespace_ = s->namespace_;
    e.name = s->name;
    for (const pb::ServicePort& p : s->ports) e.ports.push_back(p.port());
    std::set<std::string> ids;
    for (const Workload* w : s->members) {
      if (w->remote != nullptr || !w->ready || !HasCertificate(*w)) continue;
      ++e.members;
      ids.insert(SpiffeId(trust_domain, *w));
    }
    e.identities.assign(ids.begin(), ids.end());
  }
  // The east-west gateways: where their proxies run, and the addresses linked callers use.
  for (const gw::Gateway& gateway : policy.gateways) {
    if (!IsMeshletClass(policy, gateway.spec().gateway_class_name())) continue;
    const std::string name =
        absl::StrCat(NamespaceOr(gateway.metadata().namespace_()), "/", gateway.metadata().name());
    std::vector<uint32_t> ports;
    for (const gw::Listener& l : gateway.spec().listeners()) {
      if (l.protocol() == kEastWestProtocol) ports.push_back(l.port());
    }
    if (ports.empty()) continue;
    std::vector<std::string> addresses;
    for (const gw::GatewaySpecAddress& a : gateway.spec().addresses()) {
      if (!a.value().empty()) addresses.push_back(a.value());
    }
    std::string region, zone;
    for (const Workload& w : registry.workloads) {
      if (!w.ready || GatewayOfNode(policy, w) != &gateway) continue;
      if (region.empty() && zone.empty()) {
        region = w.locality.region();
        zone = w.locality.zone();
      }
      if (gateway.spec().addresses().empty()) {
        addresses.insert(addresses.end(), w.addresses.begin(), w.addresses.end());
      }
    }
    for (const std::string& address : addresses) {
      for (uint32_t port : ports) {
        out.gateways.push_back(
            {.gateway = name, .address = address, .port = port, .region = region, .zone = zone});
      }
    }
  }
  auto key = [](const ExportedGateway& g) { return std::tie(g.gateway, g.address, g.port); };
  std::sort(out.gateways.begin(), out.gateways.end(),
            [&](const auto& a, const auto& b) { return key(a) < key(b); });
  out.gateways.erase(std::unique(out.gateways.begin(), out.gateways.end(),
                                 [&](const auto& a, const auto& b) { return key(a) == key(b); }),
                     out.gateways.end());
  return out;
}

}  // namespace meshlet::controlplane::translate
