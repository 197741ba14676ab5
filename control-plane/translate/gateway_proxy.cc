// Gateway proxies (ADR 0099): the listeners and routes of the Gateway a node serves. The routes
// attached to the Gateway's usable listeners, grouped by port; each port one listener and one
// route configuration (GatewayPortRoutes).

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

// The route's hostname at a listener whose hostname is `listener` (AttachToGateway checked that
// they intersect): the more specific, or the one that is set.
std::string Effective(const std::string& listener, const std::string& route) {
  if (listener.empty()) return route;
  if (route.empty()) return listener;
  return route.size() >= listener.size() ? route : listener;
}

// Adds each attachment of `route` (of `kind`) to the Gateway's usable HTTP listeners, by port.
template <typename Route>
void Attach(const TranslationContext& ctx, const gw::Gateway& gateway,
            const std::vector<bool>& usable, absl::string_view kind, const Route& route,
            GatewayListenerRoute base,
            std::map<uint32_t, std::vector<GatewayListenerRoute>>& by_port) {
  const std::string route_ns = NamespaceOr(route.metadata().namespace_());
  for (const gw::ParentReference& ref : route.spec().parent_refs()) {
    if (FindMeshletGateway(ctx.policy, ref, route_ns) != &gateway) continue;
    const ListenerAttachment attachment =
        AttachToGateway(ctx.policy, {}, gateway, kind, route_ns, route.spec().hostnames(), ref);
    for (int i : attachment.listeners) {
      const gw::Listener& listener = gateway.spec().listeners(i);
      if (!usable[i] || listener.protocol() != "HTTP") continue;
      std::vector<GatewayListenerRoute>& routes = by_port[listener.port()];
      auto add = [&](const std::string& hostname) {
        GatewayListenerRoute r = base;
        r.hostname = hostname;
        routes.push_back(std::move(r));
      };
      if (route.spec().hostnames().empty()) {
        add(listener.hostname());
        continue;
      }
      for (const std::string& h : route.spec().hostnames()) {
        if (HostnamesIntersect(listener.hostname(), h)) add(Effective(listener.hostname(), h));
      }
    }
  }
}

}  // namespace

const gw::Gateway* GatewayOfNode(const PolicySnapshot& policy, const Workload& self) {
  auto it = self.labels.find(std::string(kGatewayLabel));
  if (it == self.labels.end()) return nullptr;
  const std::vector<std::string> parts = absl::StrSplit(it->second, absl::MaxSplits('/', 1));
  if (parts.size() != 2 || parts[0] != self.namespace_) return nullptr;
  gw::ParentReference ref;
  ref.set_namespace_(parts[0]);
  ref.set_name(parts[1]);
  const gw::Gateway* gateway = FindMeshletGateway(policy, ref, parts[0]);
  if (gateway == nullptr || self.service_account != GatewayServiceAccount(*gateway)) {
    return nullptr;
  }
  return gateway;
}

std::string GatewayServiceAccount(const gw::Gateway& gateway) {
  return absl::StrCat(gateway.metadata().name(), "-", gateway.spec().gateway_class_name());
}

std::map<GatewayEnvironment::Key, std::vector<std::string>> GatewayProxyAddresses(
    const PolicySnapshot& policy, const registry::RegistrySnapshot& registry) {
  std::map<GatewayEnvironment::Key, std::vector<std::string>> out;
  for (const Workload& w : registry.workloads) {
    if (!w.ready) continue;
    const gw::Gateway* gateway = GatewayOfNode(policy, w);
    if (gateway == nullptr) continue;
    std::vector<std::string>& addresses =
        out[{NamespaceOr(gateway->metadata().namespace_()), gateway->metadata().name()}];
    addresses.insert(addresses.end(), w.addresses.begin(), w.addresses.end());
  }
  for (auto& [key, addresses] : out) {
    std::sort(addresses.begin(), addresses.end());
    addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  }
  return out;
}

void BuildGatewayListeners(const TranslationContext& ctx, TranslationOutput& out) {
  if (ctx.gateway == nullptr) {
    out.Warn(absl::StrCat(
        "label ", kGatewayLabel, ": \"", ctx.self.labels.at(std::string(kGatewayLabel)),
        "\" names no Gateway of a meshlet GatewayClass in namespace ", ctx.self.namespace_,
        " whose proxies run as service account \"", ctx.self.service_account,
        "\" (<name>-<gatewayClassName>); ", "nothing is served"));
    return;
  }
  const gw::Gateway& gateway = *ctx.gateway;
  if (gateway.spec().addresses_size() > 0) return;  // not accepted (UnsupportedAddress)
  const std::vector<bool> usable = UsableListeners(ctx.policy, {}, gateway);
  std::map<uint32_t, std::vector<GatewayListenerRoute>> by_port;
  for (int i = 0; i < gateway.spec().listeners_size(); ++i) {
    const gw::Listener& listener = gateway.spec().listeners(i);
    if (!usable[i]) continue;
    if (listener.protocol() != "HTTP") {
      out.Warn(absl::StrCat("Gateway ", ctx.self.namespace_, "/", gateway.metadata().name(),
                            " listener \"", listener.name(), "\": ", listener.protocol(),
                            " is not served by this proxy yet"));
      continue;
    }
    by_port[listener.port()];  // a listener without routes answers 404
  }
  for (const gw::HTTPRoute& route : ctx.policy.gateway_http_routes) {
    if (UnsupportedReason(route).empty()) {
      Attach(ctx, gateway, usable, "HTTPRoute", route, {.http = &route}, by_port);
    }
  }
  for (const gw::GRPCRoute& route : ctx.policy.grpc_routes) {
    if (UnsupportedReason(route).empty()) {
      Attach(ctx, gateway, usable, "GRPCRoute", route, {.grpc = &route}, by_port);
    }
  }
  for (const auto& [port, routes] : by_port) {
    const std::string name = absl::StrCat("gateway|", port);
    xds::Listener listener;
    listener.set_name(name);
    listener.set_address(FormatAddress(ctx.options.listen_host, port));
    listener.set_direction(xds::OUTBOUND);
    listener.set_protocol(xds::PROTOCOL_HTTP);
    listener.set_route_config_name(name);
    out.resources.listeners.push_back(std::move(listener));
    out.resources.routes.push_back(GatewayPortRoutes(ctx, out, name, port, routes));
  }
}

}  // namespace meshlet::controlplane::translate
