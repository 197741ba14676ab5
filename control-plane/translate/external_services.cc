// External services (ExternalService, docs/egress.md, ADRs 0107 and 0108): the destinations of a
// captured node's outbound listener that match them, their clusters and route configurations,
// and the routes of the egress gateways their calls leave through.

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/net/address.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

std::string ObjectName(const pb::ExternalService& es) {
  return absl::StrCat("ExternalService ", NamespaceOr(es.metadata().namespace_()), "/",
                      es.metadata().name());
}

// The TrafficPolicy whose targetRefs name `es` (of its namespace; several: the greatest name, as
// for a Service), or null.
const pb::TrafficPolicySpec* TrafficPolicyOf(const TranslationContext& ctx,
                                             const pb::ExternalService& es) {
  const pb::TrafficPolicy* found = nullptr;
  const std::string ns = NamespaceOr(es.metadata().namespace_());
  for (const pb::TrafficPolicy& tp : ctx.policy.traffic_policies) {
    if (tp.spec().target_refs_size() == 0 || NamespaceOr(tp.metadata().namespace_()) != ns) {
      continue;
    }
    for (const pb::PolicyTargetReference& ref : tp.spec().target_refs()) {
      if (ref.kind() == "ExternalService" && ref.name() == es.metadata().name() &&
          (found == nullptr || found->metadata().name() < tp.metadata().name())) {
        found = &tp;
      }
    }
  }
  return found != nullptr ? &found->spec() : nullptr;
}

// An external service's cluster "external|<port>||<host or name.namespace>": type DNS resolving
// `host` (non-empty) on `target`, else STATIC with the spec's endpoints on `target`; the
// MeshConfig's cluster defaults.
xds::Cluster ExternalCluster(const TranslationContext& ctx, const std::string& name,
                             const std::string& host, uint32_t target,
                             const pb::ExternalService& es) {
  const pb::ExternalServiceSpec& spec = es.spec();
  xds::Cluster cluster;
  cluster.set_name(name);
  ApplyTrafficPolicy(ctx, TrafficPolicyOf(ctx, es), cluster);
  if (!host.empty()) {
    cluster.set_type(xds::Cluster::DNS);
    cluster.mutable_dns()->set_hostname(host);
    cluster.mutable_dns()->set_port(target);
    return cluster;
  }
  cluster.set_type(xds::Cluster::STATIC);
  for (const std::string& ip : spec.endpoints()) {
    absl::StatusOr<net::Address> address = net::Address::FromIp(ip, target);
    if (address.ok()) {
      cluster.mutable_load_assignment()->add_endpoints()->set_address(address->ToString());
    }
  }
  return cluster;
}

// The Secret of the TLS an ExternalService port originates ("external-tls/<ns>/<name>:<port>"):
// its CA certificates (inline, from ConfigMaps, or the system's) and its client certificate,
// added to `out` once. Returns why there is none it can be verified with (then nothing is added),
// else "".
std::string AddOriginationSecret(const TranslationContext& ctx, TranslationOutput& out,
                                 const pb::ExternalService& es, const pb::ExternalServicePort& port,
                                 const std::string& secret_name) {
  if (absl::c_any_of(out.resources.secrets,
                     [&](const xds::Secret& s) { return s.name() == secret_name; })) {
    return "";
  }
  const pb::ExternalServiceTls& tls = port.tls();
  const std::string ns = NamespaceOr(es.metadata().namespace_());
  const auto& bundles = ctx.options.backend_ca_bundles;
  std::string ca = tls.ca_certificates();
  for (const std::string& ref : tls.ca_certificate_refs()) {
    const std::string what = absl::StrCat("caCertificateRefs: ConfigMap ", ns, "/", ref);
    if (!bundles.has_value()) {
      return absl::StrCat(what, ": the control plane does not read ConfigMaps (no Kubernetes API)");
    }
    const auto it = bundles->find({ns, ref});
    if (it == bundles->end()) return absl::StrCat(what, " not found");
    if (!it->second.error.empty()) return absl::StrCat(what, ": ", it->second.error);
    if (!ca.empty() && ca.back() != '\n') ca.push_back('\n');
    ca += it->second.pem;
  }
  if (tls.ca_certificates().empty() && tls.ca_certificate_refs_size() == 0) {
    const auto it =
        bundles.has_value() ? bundles->find(kSystemCaBundle) : BackendCaBundles::const_iterator();
    if (!bundles.has_value() || it == bundles->end()) {
      return "no CA certificates given, and the control plane read no system CA certificates "
             "(--system-ca-file)";
    }
    if (!it->second.error.empty()) return it->second.error;
    ca = it->second.pem;
  }
  xds::Secret secret;
  secret.set_name(secret_name);
  secret.set_trust_bundle_pem(std::move(ca));
  if (const std::string& ref = tls.client_certificate_ref(); !ref.empty()) {
    const std::string what = absl::StrCat("clientCertificateRef: Secret ", ns, "/", ref);
    const auto& certificates = ctx.options.gateway_certificates;
    if (!certificates.has_value()) {
      return absl::StrCat(what, ": the control plane does not read Secrets (no Kubernetes API)");
    }
    const auto it = certificates->find({ns, ref});
    if (it == certificates->end()) return absl::StrCat(what, " not found");
    if (!it->second.error.empty()) return absl::StrCat(what, ": ", it->second.error);
    secret.set_certificate_chain_pem(it->second.chain_pem);
    secret.set_private_key_pem(it->second.key_pem);
  }
  out.resources.secrets.push_back(std::move(secret));
  return "";
}

// A virtual host for `host` on `port` in `routes`: the host, and the host with the port (with
// `bare`, the host alone too: what a client sends for its scheme's default port).
xds::VirtualHost& AddHost(xds::RouteConfiguration& routes, const std::string& host, uint32_t port,
                          bool bare) {
  xds::VirtualHost* vhost = routes.add_virtual_hosts();
  vhost->set_name(absl::StrCat(host, ":", port));
  if (bare) vhost->add_domains(host);
  vhost->add_domains(absl::StrCat(host, ":", port));
  return *vhost;
}

// `vhost` routes everything to `cluster` with the timeouts and retries of `es`'s TrafficPolicy
// (else the MeshConfig's defaults), its decision records naming `es`.
void RouteTo(const TranslationContext& ctx, const pb::ExternalService& es,
             const std::string& cluster, xds::VirtualHost& vhost) {
  xds::Route* route = vhost.add_routes();
  route->set_name("external");
  route->mutable_match()->set_prefix("/");
  route->mutable_route()->set_cluster(cluster);
  const pb::TrafficPolicySpec* tp = TrafficPolicyOf(ctx, es);
  const pb::Timeouts timeouts = ctx.EffectiveTimeouts(tp);
  if (timeouts.has_request()) {
    SetDuration(route->mutable_route()->mutable_timeout(), timeouts.request());
  }
  const pb::Retries retries = ctx.EffectiveRetries(tp, nullptr);
  if (retries.ByteSizeLong() > 0 || timeouts.has_per_try()) {
    *route->mutable_route()->mutable_retry_policy() = ToRetryPolicy(retries, timeouts);
  }
  SetPolicySource("ExternalService", NamespaceOr(es.metadata().namespace_()), es.metadata().name(),
                  -1, -1, *route->mutable_source());
}

// Calls to `host` on HTTP `port` of `es` made by this node itself (a sidecar without egress
// gateway, or the egress gateway): `vhost` routes them to the cluster "external|<port>||<host>"
// (added to `out`: resolved by DNS or STATIC, TLS originated when the port asks), or answers 503
// when that TLS cannot be originated (and warns once per port, `warned`).
void RouteToService(const TranslationContext& ctx, TranslationOutput& out,
                    const pb::ExternalService& es, const pb::ExternalServicePort& port,
                    const std::string& host, std::set<std::string>& warned,
                    xds::VirtualHost& vhost) {
  const pb::ExternalServiceSpec& spec = es.spec();
  const std::string ns = NamespaceOr(es.metadata().namespace_());
  const std::string name = absl::StrCat("external|", port.number(), "||", host);
  std::string secret_name;
  if (port.has_tls()) {
    secret_name = absl::StrCat("external-tls/", ns, "/", es.metadata().name(), ":", port.number());
    if (std::string no_tls = AddOriginationSecret(ctx, out, es, port, secret_name);
        !no_tls.empty()) {
      if (warned.insert(secret_name).second) {
        out.Warn(absl::StrCat(ObjectName(es), ": port ", port.number(),
                              ": TLS cannot be originated: ", no_tls,
                              "; its requests are answered 503"));
      }
      AnswerEverything(
          vhost, "external", 503,
          absl::StrCat(ObjectName(es), ": TLS to ", host, " cannot be originated: ", no_tls));
      return;
    }
  }
  RouteTo(ctx, es, name, vhost);
  const uint32_t target = port.target_port() != 0 ? port.target_port() : port.number();
  const std::string resolved = spec.resolution().empty() || spec.resolution() == "DNS" ? host : "";
  xds::Cluster cluster = ExternalCluster(ctx, name, resolved, target, es);
  if (!secret_name.empty()) {
    xds::UpstreamTls* tls = cluster.mutable_tls();
    tls->set_enabled(true);
    tls->set_secret_name(secret_name);
    tls->set_sni(host);
    tls->add_alpn("http/1.1");
  }
  out.clusters.emplace(name, std::move(cluster));
}

// The Gateway `ref` ("NAMESPACE/NAME") names when it is one of meshlet's, and the port of its
// first listener of protocol kEgressProtocol (0: none).
std::pair<const gw::Gateway*, uint32_t> EgressGatewayOf(const TranslationContext& ctx,
                                                        const std::string& ref) {
  const std::vector<std::string> parts = absl::StrSplit(ref, absl::MaxSplits('/', 1));
  if (parts.size() != 2) return {nullptr, 0};
  gw::ParentReference parent;
  parent.set_namespace_(parts[0]);
  parent.set_name(parts[1]);
  const gw::Gateway* gateway = FindMeshletGateway(ctx.policy, parent, parts[0]);
  if (gateway == nullptr) return {nullptr, 0};
  for (const gw::Listener& l : gateway->spec().listeners()) {
    if (l.protocol() == kEgressProtocol) return {gateway, l.port()};
  }
  return {gateway, 0};
}

// A sidecar's cluster to the egress gateway `ref` names, "egress|<namespace>/<name>": its ready
// proxies on its egress listener's port, over mesh mTLS expecting the gateway's identity, HTTP/2.
// Returns its name, or "" with why it cannot be used in `why`.
std::string UseEgressCluster(const TranslationContext& ctx, TranslationOutput& out,
                             const std::string& ref, std::string& why) {
  const std::string name = absl::StrCat("egress|", ref);
  if (out.clusters.contains(name)) return name;
  if (!ctx.self.workload_certificate) {
    why = "this sidecar has no workload certificate to call the egress gateway with";
    return "";
  }
  const auto [gateway, port] = EgressGatewayOf(ctx, ref);
  if (gateway == nullptr) {
    why = absl::StrCat("egress gateway ", ref, " is not a Gateway of a meshlet GatewayClass");
    return "";
  }
  if (port == 0) {
    why = absl::StrCat("Gateway ", ref, " has no listener of protocol ", kEgressProtocol);
    return "";
  }
  xds::Cluster cluster;
  cluster.set_name(name);
  ApplyTrafficPolicy(ctx, nullptr, cluster);
  cluster.set_type(xds::Cluster::STATIC);
  cluster.set_protocol(xds::UPSTREAM_MESH_HTTP2);
  const std::string gateway_ns = NamespaceOr(gateway->metadata().namespace_());
  for (const Workload& w : ctx.registry.workloads) {
    if (!w.ready || GatewayOfNode(ctx.policy, w) != gateway) continue;
    for (const std::string& ip : w.addresses) {
      absl::StatusOr<net::Address> address = net::Address::FromIp(ip, port);
      if (address.ok()) {
        cluster.mutable_load_assignment()->add_endpoints()->set_address(address->ToString());
      }
    }
  }
  xds::UpstreamTls* tls = cluster.mutable_tls();
  tls->set_enabled(true);
  tls->set_workload_certificate(true);
  if (!ctx.options.trust_bundle_pem.empty()) {
    tls->set_trust_bundle_secret(std::string(kTrustBundleSecret));
  }
  tls->add_expected_peer_ids(absl::StrCat("spiffe://", ctx.TrustDomain(), "/ns/", gateway_ns,
                                          "/sa/", GatewayServiceAccount(*gateway)));
  out.clusters.emplace(name, std::move(cluster));
  return name;
}

// The last virtual host of an external port's route configuration: another host on a connection
// an earlier request's Host matched.
void AddOtherHosts(xds::RouteConfiguration& routes, uint32_t port) {
  xds::VirtualHost* other = routes.add_virtual_hosts();
  other->set_name(absl::StrCat("external:", port, ":other"));
  other->add_domains("*");
  AnswerEverything(*other, "not-registered", 502,
                   absl::StrCat("no external service on port ", port,
                                " has this host (this connection was matched by the Host of its "
                                "first request)"));
}

}  // namespace

void AddExternalDestinations(const TranslationContext& ctx, TranslationOutput& out,
                             xds::Listener& listener) {
  std::set<std::string> names, warned;
  std::map<uint32_t, xds::RouteConfiguration> http_routes;  // by port
  // Destinations naming exact hosts go before those naming wildcards, so a wildcard does not
  // shadow a host another ExternalService registers exactly.
  std::vector<xds::ListenerDestination> exact, wildcard;
  for (const pb::ExternalService& es : ctx.policy.external_services) {
    const pb::ExternalServiceSpec& spec = es.spec();
    const std::string resolution = spec.resolution().empty() ? "DNS" : spec.resolution();
    const std::string ns = NamespaceOr(es.metadata().namespace_());
    for (const pb::ExternalServicePort& port : spec.ports()) {
      const bool tcp = port.protocol() == "TCP";
      const bool http = port.protocol() == "HTTP";
      const uint32_t target = port.target_port() != 0 ? port.target_port() : port.number();
      // Who serves a connection: (cluster name, host it serves; empty: every host).
      std::vector<std::pair<std::string, std::string>> targets;
      if (resolution == "DNS" || (http && resolution == "STATIC")) {
        for (const std::string& host : spec.hosts()) {
          targets.emplace_back(absl::StrCat("external|", port.number(), "||", host), host);
          if (tcp) break;  // one host with a TCP port (validated)
        }
      } else {
        targets.emplace_back(
            absl::StrCat("external|", port.number(), "||", es.metadata().name(), ".", ns), "");
      }
      for (const auto& [name, host] : targets) {
        if (!names.insert(name).second) {
          out.Warn(absl::StrCat(ObjectName(es), ": port ", port.number(), " of ",
                                host.empty() ? name : host,
                                " is claimed by an earlier ExternalService; left out"));
          continue;
        }
        const bool wide = host.empty() && absl::c_any_of(spec.hosts(), [](const std::string& h) {
                            return absl::StartsWith(h, "*.");
                          });
        xds::ListenerDestination& d = (wide ? wildcard : exact).emplace_back();
        d.set_name(name);
        d.set_port(port.number());
        d.set_protocol(xds::PROTOCOL_TCP);
        if (tcp) {
          *d.mutable_addresses() = spec.addresses();
        } else if (http && !host.empty()) {
          d.add_http_hosts(host);
        } else if (http) {
          *d.mutable_http_hosts() = spec.hosts();
        } else if (!host.empty()) {
          d.add_server_names(host);
        } else {
          *d.mutable_server_names() = spec.hosts();
        }
        if (resolution == "NONE") {
          d.set_passthrough(true);
          continue;
        }
        if (!http) {
          d.set_tcp_cluster(name);
          out.clusters.emplace(
              name, ExternalCluster(ctx, name, resolution == "DNS" ? host : "", target, es));
          continue;
        }
        // Plain HTTP: routed by the request's Host, to the service or its egress gateway.
        const std::string route_config = absl::StrCat("external|", port.number());
        d.set_protocol(xds::PROTOCOL_HTTP1);
        d.set_route_config_name(route_config);
        xds::RouteConfiguration& routes = http_routes[port.number()];
        routes.set_name(route_config);
        xds::VirtualHost& vhost = AddHost(routes, host, port.number(), /*bare=*/true);
        if (spec.egress_gateway().empty()) {
          RouteToService(ctx, out, es, port, host, warned, vhost);
          continue;
        }
        std::string why;
        const std::string egress = UseEgressCluster(ctx, out, spec.egress_gateway(), why);
        if (egress.empty()) {
          if (warned.insert(spec.egress_gateway()).second) {
            out.Warn(absl::StrCat(ObjectName(es), ": ", why, "; its requests are answered 503"));
          }
          AnswerEverything(vhost, "external", 503, absl::StrCat(ObjectName(es), ": ", why));
          continue;
        }
        RouteTo(ctx, es, egress, vhost);
      }
    }
  }
  for (std::vector<xds::ListenerDestination>* list : {&exact, &wildcard}) {
    for (xds::ListenerDestination& d : *list) *listener.add_destinations() = std::move(d);
  }
  for (auto& [port, routes] : http_routes) {
    AddOtherHosts(routes, port);
    out.resources.routes.push_back(std::move(routes));
  }
}

xds::RouteConfiguration EgressGatewayRoutes(const TranslationContext& ctx, TranslationOutput& out,
                                            const gw::Gateway& gateway, const std::string& name) {
  const std::string ref =
      absl::StrCat(NamespaceOr(gateway.metadata().namespace_()), "/", gateway.metadata().name());
  xds::RouteConfiguration routes;
  routes.set_name(name);
  std::set<std::string> claimed, warned;
  for (const pb::ExternalService& es : ctx.policy.external_services) {
    if (es.spec().egress_gateway() != ref) continue;
    for (const pb::ExternalServicePort& port : es.spec().ports()) {
      if (port.protocol() != "HTTP") continue;
      for (const std::string& host : es.spec().hosts()) {
        if (!claimed.insert(absl::StrCat(host, ":", port.number())).second) {
          out.Warn(absl::StrCat(ObjectName(es), ": port ", port.number(), " of ", host,
                                " is claimed by an earlier ExternalService; left out"));
          continue;
        }
        // One table for every port: the bare host is port 80's, as a client sends it.
        xds::VirtualHost& vhost = AddHost(routes, host, port.number(), port.number() == 80);
        RouteToService(ctx, out, es, port, host, warned, vhost);
      }
    }
  }
  xds::VirtualHost* other = routes.add_virtual_hosts();
  other->set_name("egress:other");
  other->add_domains("*");
  AnswerEverything(*other, "not-registered", 404,
                   absl::StrCat("no ExternalService sends this host through egress gateway ", ref));
  return routes;
}

}  // namespace meshlet::controlplane::translate
