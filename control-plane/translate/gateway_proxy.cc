// Gateway proxies (ADR 0099): the listeners and routes of the Gateway a node serves. The routes
// attached to the Gateway's usable listeners, grouped by port; each port one listener and one
// route configuration (GatewayPortRoutes).

#include <algorithm>
#include <map>
#include <set>
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

// The listeners of one port of the Gateway that are served (spec.listeners indexes), their
// protocol (one per port: ports of two protocols conflict), and the routes attached to them.
struct GatewayPort {
  std::string protocol;
  std::vector<int> listeners;
  std::vector<GatewayListenerRoute> routes;
};

// The route's hostname at a listener whose hostname is `listener` (AttachToGateway checked that
// they intersect): the more specific, or the one that is set.
std::string Effective(const std::string& listener, const std::string& route) {
  if (listener.empty()) return route;
  if (route.empty()) return listener;
  return route.size() >= listener.size() ? route : listener;
}

// Adds each attachment of `route` (of `kind`) to the usable listeners of `ports`, by port.
template <typename Route>
void Attach(const TranslationContext& ctx, const gw::Gateway& gateway,
            const GatewayEnvironment& env, absl::string_view kind, const Route& route,
            GatewayListenerRoute base, std::map<uint32_t, GatewayPort>& ports) {
  const std::string route_ns = NamespaceOr(route.metadata().namespace_());
  for (const gw::ParentReference& ref : route.spec().parent_refs()) {
    if (FindMeshletGateway(ctx.policy, ref, route_ns) != &gateway) continue;
    const ListenerAttachment attachment =
        AttachToGateway(ctx.policy, env, gateway, kind, route_ns, route.spec().hostnames(), ref);
    for (int i : attachment.listeners) {
      const gw::Listener& listener = gateway.spec().listeners(i);
      auto port = ports.find(listener.port());
      if (port == ports.end() ||
          std::find(port->second.listeners.begin(), port->second.listeners.end(), i) ==
              port->second.listeners.end()) {
        continue;  // not served
      }
      auto add = [&](const std::string& hostname) {
        GatewayListenerRoute r = base;
        r.hostname = hostname;
        r.listener_hostname = listener.hostname();
        port->second.routes.push_back(std::move(r));
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

// The xDS Secret name of a Gateway certificate.
std::string CertificateSecretName(const GatewayCertificates::key_type& key) {
  return absl::StrCat("gateway-cert:", key.first, "/", key.second);
}

// An HTTPS port's TLS: the certificate of each of its listeners (its first certificateRef) by
// the listener's hostname, the default the listener without one (else the first); the Secrets
// added to `out`. False (with a warning) when no listener of the port has a certificate to serve.
bool SetGatewayTls(const TranslationContext& ctx, const gw::Gateway& gateway, GatewayPort& port,
                   xds::Listener& listener, TranslationOutput& out) {
  const std::string gateway_ns = NamespaceOr(gateway.metadata().namespace_());
  const std::string label =
      absl::StrCat("Gateway ", gateway_ns, "/", gateway.metadata().name(), " port ");
  xds::DownstreamTls* tls = listener.mutable_tls();
  tls->set_mode(xds::DownstreamTls::TLS);
  std::map<std::string, xds::ServerCertificate*> by_secret;
  std::vector<int> served;
  bool hostless_default = false;
  for (int i : port.listeners) {
    const gw::Listener& l = gateway.spec().listeners(i);
    const gw::SecretObjectReference& ref = l.tls().certificate_refs(0);
    const GatewayCertificates::key_type key(NamespaceOr(ref.namespace_(), gateway_ns), ref.name());
    const GatewayCertificate* certificate = nullptr;
    if (ctx.options.gateway_certificates.has_value()) {
      auto it = ctx.options.gateway_certificates->find(key);
      if (it != ctx.options.gateway_certificates->end()) certificate = &it->second;
    }
    if (certificate == nullptr || !certificate->error.empty()) {
      out.Warn(absl::StrCat(
          label, l.port(), " listener \"", l.name(), "\": Secret ", key.first, "/", key.second,
          certificate == nullptr ? " is not known to the control plane"
                                 : absl::StrCat(" cannot be served: ", certificate->error),
          "; the listener is not served"));
      continue;
    }
    const std::string secret = CertificateSecretName(key);
    if (std::none_of(out.resources.secrets.begin(), out.resources.secrets.end(),
                     [&](const xds::Secret& s) { return s.name() == secret; })) {
      xds::Secret& pushed = out.resources.secrets.emplace_back();
      pushed.set_name(secret);
      pushed.set_certificate_chain_pem(certificate->chain_pem);
      pushed.set_private_key_pem(certificate->key_pem);
    }
    served.push_back(i);
    // The default: the first listener without a hostname, else the first served.
    if (tls->secret_name().empty() || (l.hostname().empty() && !hostless_default)) {
      tls->set_secret_name(secret);
      hostless_default = l.hostname().empty();
    }
    if (l.hostname().empty()) continue;
    xds::ServerCertificate*& entry = by_secret[secret];
    if (entry == nullptr) {
      entry = tls->add_server_certificates();
      entry->set_secret_name(secret);
    }
    entry->add_server_names(absl::AsciiStrToLower(l.hostname()));
  }
  if (served.empty()) return false;
  port.listeners = std::move(served);
  return true;
}

}  // namespace

std::map<GatewayEnvironment::Key, GatewayEnvironment::Secret> GatewaySecretsOf(
    const GatewayCertificates& certificates) {
  std::map<GatewayEnvironment::Key, GatewayEnvironment::Secret> out;
  for (const auto& [key, certificate] : certificates) {
    out.emplace(key,
                GatewayEnvironment::Secret{.type = certificate.type, .error = certificate.error});
  }
  return out;
}

GatewayEnvironment GatewayEnvironmentOf(const TranslateOptions& options) {
  GatewayEnvironment env;
  if (options.gateway_certificates.has_value()) {
    env.secrets = GatewaySecretsOf(*options.gateway_certificates);
  }
  env.namespace_labels = options.namespace_labels;
  env.address_ranges = options.gateway_address_ranges;
  env.ca_bundles = options.backend_ca_bundles;
  return env;
}

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

// An east-west gateway's listener on `port` (ADR 0106): the mesh mTLS of each exported Service
// port, routed by its server name to the ready members here without being terminated; anything
// else is closed.
xds::Listener EastWestListener(const TranslationContext& ctx, uint32_t port,
                               TranslationOutput& out) {
  xds::Listener listener;
  listener.set_name(absl::StrCat("gateway|", port));
  listener.set_address(FormatAddress(ctx.options.listen_host, port));
  listener.set_direction(xds::INBOUND);
  listener.set_protocol(xds::PROTOCOL_TCP);
  for (const ServiceView* s : ctx.index.ordered) {
    if (!Exported(*s)) continue;
    for (const pb::ServicePort& p : s->ports) {
      xds::ListenerDestination* d = listener.add_destinations();
      d->set_name(absl::StrCat(s->Fqdn(), ":", p.port()));
      d->set_protocol(xds::PROTOCOL_TCP);
      d->set_tcp_cluster(UseEastWestCluster(ctx, out, *s, p));
      d->add_server_names(EastWestServerName(s->namespace_, s->name, p.port()));
    }
  }
  return listener;
}

// An egress gateway's listener on `port` (docs/egress.md): mesh mTLS only (the callers are
// sidecars, authorized by the policies naming the Gateway), HTTP routed by host to the
// ExternalServices whose egressGateway is this Gateway.
xds::Listener EgressListener(const TranslationContext& ctx, const gw::Gateway& gateway,
                             uint32_t port, TranslationOutput& out) {
  xds::Listener listener;
  listener.set_name(absl::StrCat("gateway|", port));
  listener.set_address(FormatAddress(ctx.options.listen_host, port));
  listener.set_direction(xds::OUTBOUND);
  listener.set_protocol(xds::PROTOCOL_HTTP);
  listener.set_route_config_name(listener.name());
  SetDownstreamTls(ctx, "STRICT", listener);
  BuildAuthorization(ctx, /*ports=*/{}, /*registered=*/{}, listener);
  out.resources.routes.push_back(EgressGatewayRoutes(ctx, out, gateway, listener.name()));
  return listener;
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
  const GatewayEnvironment env = GatewayEnvironmentOf(ctx.options);
  // Not accepted (UnsupportedAddress) or not programmed (AddressNotUsable): nothing is served.
  const GatewayAddresses addresses = JudgeGatewayAddresses(ctx.policy, gateway, env.address_ranges);
  if (!addresses.unsupported.empty() || !addresses.not_usable.empty()) return;
  const std::string gateway_name =
      absl::StrCat(NamespaceOr(gateway.metadata().namespace_()), "/", gateway.metadata().name());
  const std::vector<bool> usable = UsableListeners(ctx.policy, env, gateway);
  std::map<uint32_t, GatewayPort> ports;
  std::set<uint32_t> east_west, egress;
  for (int i = 0; i < gateway.spec().listeners_size(); ++i) {
    const gw::Listener& listener = gateway.spec().listeners(i);
    if (!usable[i]) {
      out.Warn(absl::StrCat("Gateway ", gateway_name, " listener \"", listener.name(),
                            "\" is not usable (its status in the Gateway says why); not served"));
      continue;
    }
    if (listener.protocol() == kEastWestProtocol) {
      if (!ctx.capabilities.Has(xds::Capability::kServerNames)) {
        out.Warn(absl::StrCat("Gateway ", gateway_name, " listener \"", listener.name(),
                              "\": this proxy's release cannot route TLS by server name "
                              "(capability server-names); not served"));
      } else {
        east_west.insert(listener.port());
      }
      continue;
    }
    if (listener.protocol() == kEgressProtocol) {
      if (!ctx.capabilities.Has(xds::Capability::kExternalServices)) {
        out.Warn(absl::StrCat("Gateway ", gateway_name, " listener \"", listener.name(),
                              "\": this proxy's release cannot serve an egress gateway "
                              "(capability external-services); not served"));
      } else if (!ctx.self.workload_certificate) {
        out.Warn(absl::StrCat("Gateway ", gateway_name, " listener \"", listener.name(),
                              "\": an egress gateway's proxy needs a workload certificate (its "
                              "callers are authenticated by mesh mTLS); not served"));
      } else {
        egress.insert(listener.port());
      }
      continue;
    }
    if (listener.protocol() == "HTTPS" && !ctx.capabilities.Has(xds::Capability::kGateway)) {
      out.Warn(absl::StrCat("Gateway ", gateway_name, " listener \"", listener.name(),
                            "\": this proxy's release cannot serve HTTPS listeners "
                            "(capability gateway); not served"));
      continue;
    }
    GatewayPort& port = ports[listener.port()];  // a listener without routes answers 404
    port.protocol = listener.protocol();
    port.listeners.push_back(i);
  }
  // Each port's listener; an HTTPS port serves the listeners whose certificate it has.
  std::map<uint32_t, xds::Listener> listeners;
  for (auto it = ports.begin(); it != ports.end();) {
    const std::string name = absl::StrCat("gateway|", it->first);
    xds::Listener& listener = listeners[it->first];
    listener.set_name(name);
    listener.set_address(FormatAddress(ctx.options.listen_host, it->first));
    listener.set_direction(xds::OUTBOUND);
    listener.set_protocol(xds::PROTOCOL_HTTP);
    listener.set_route_config_name(name);
    if (it->second.protocol == "HTTPS" && !SetGatewayTls(ctx, gateway, it->second, listener, out)) {
      listeners.erase(it->first);
      it = ports.erase(it);
      continue;
    }
    ++it;
  }
  for (const gw::HTTPRoute& route : ctx.policy.gateway_http_routes) {
    if (UnsupportedReason(route).empty()) {
      Attach(ctx, gateway, env, "HTTPRoute", route, {.http = &route}, ports);
    }
  }
  for (const gw::GRPCRoute& route : ctx.policy.grpc_routes) {
    if (UnsupportedReason(route).empty()) {
      Attach(ctx, gateway, env, "GRPCRoute", route, {.grpc = &route}, ports);
    }
  }
  for (auto& [number, port] : ports) {
    xds::Listener& listener = listeners[number];
    // The policies that name this Gateway in targetRefs; their ports are the Gateway's.
    BuildAuthorization(ctx, /*ports=*/{}, /*registered=*/{}, listener);
    BuildJwt(ctx, listener, out);
    std::vector<GatewayPortListener> served;
    for (int i : port.listeners) {
      const gw::Listener& l = gateway.spec().listeners(i);
      served.push_back({.hostname = l.hostname(), .name = l.name()});
    }
    out.resources.routes.push_back(
        GatewayPortRoutes(ctx, out, listener.route_config_name(), number, port.routes, served));
    out.resources.listeners.push_back(std::move(listener));
  }
  for (uint32_t port : east_west) {
    out.resources.listeners.push_back(EastWestListener(ctx, port, out));
  }
  for (uint32_t port : egress) {
    out.resources.listeners.push_back(EgressListener(ctx, gateway, port, out));
  }
}

}  // namespace meshlet::controlplane::translate
