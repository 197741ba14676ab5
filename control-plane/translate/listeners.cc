// Listeners: "outbound" (loopback, for the app beside it; on a captured node one destination per
// reachable Service port by its addresses) and "inbound" (the app's ports, each with its cluster
// and, on a captured node, its own destination and route configuration; TLS and authorization).

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/net/address.h"
#include "common/net/ip_prefix.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

// Where the inbound listener binds: every address for captured traffic (the packet filter
// redirects to the pod's own addresses), else the configured host.
std::string ListenHost(const TranslationContext& ctx) {
  return ctx.self.capture ? "0.0.0.0" : ctx.options.listen_host;
}

// The outbound listener authenticates nobody and its calls leave with this workload's
// certificate, so it binds loopback only, for the app beside it: 127.0.0.1, and ::1 beside it
// when captured (the packet filter redirects the app's connections to the loopback address of
// their family) or when the listeners bind IPv6. Whatever the inbound capture annotations say,
// no other host can reach it.
void BindOutbound(const TranslationContext& ctx, xds::Listener& listener, uint32_t port) {
  listener.set_address(FormatAddress("127.0.0.1", port));
  if (ctx.self.capture || absl::StrContains(ctx.options.listen_host, ':')) {
    listener.add_additional_addresses(FormatAddress("::1", port));
  }
}

// What every capture listener adds: for inbound, the IPv6 wildcard on the same port, for the
// connections ip6tables redirects in a pod with IPv6 (sidecar init --ipv6; the sidecar skips
// it on a kernel without IPv6); the mesh's connect timeout for passthroughs.
void SetCaptureCommon(const TranslationContext& ctx, xds::Listener& listener, uint32_t port) {
  listener.set_use_original_destination(true);
  if (listener.direction() == xds::INBOUND) {
    listener.add_additional_addresses(FormatAddress("::", port));
  }
  if (ctx.mesh.default_timeouts().has_connect()) {
    SetDuration(listener.mutable_passthrough_connect_timeout(),
                ctx.mesh.default_timeouts().connect());
  }
}

// Whether the node refuses connections to unknown destinations: its Namespace's label
// kOutboundTrafficPolicyLabel (Kubernetes) when it says ALLOW_ANY or REGISTRY_ONLY, else MeshConfig
// outboundTrafficPolicy; `source` names which. Another label value is a warning and ignored.
bool RefusesUnknownDestinations(const TranslationContext& ctx, TranslationOutput& out,
                                xds::PolicySource& source) {
  if (auto ns = ctx.options.namespace_labels.find(ctx.self.namespace_);
      ns != ctx.options.namespace_labels.end()) {
    if (auto label = ns->second.find(std::string(kOutboundTrafficPolicyLabel));
        label != ns->second.end()) {
      if (label->second == "REGISTRY_ONLY" || label->second == "ALLOW_ANY") {
        // Cluster-scoped: named "Namespace/NAME" (SetPolicySource would give it a namespace).
        source.set_kind("Namespace");
        source.clear_namespace_();
        source.set_name(ctx.self.namespace_);
        source.set_rule(-1);
        source.set_match(-1);
        return label->second == "REGISTRY_ONLY";
      }
      out.Warn(absl::StrCat("namespace ", ctx.self.namespace_, " label ",
                            kOutboundTrafficPolicyLabel, ": \"", label->second,
                            "\" is not ALLOW_ANY or REGISTRY_ONLY and is ignored; MeshConfig's "
                            "outboundTrafficPolicy applies (",
                            ctx.mesh.outbound_traffic_policy().empty()
                                ? "ALLOW_ANY"
                                : ctx.mesh.outbound_traffic_policy(),
                            ")"));
    }
  }
  SetMeshConfigSource(source);
  return ctx.mesh.outbound_traffic_policy() == "REGISTRY_ONLY";
}

// Captured outbound connections: one destination per reachable Service port, matched by the
// Service's addresses and the port (ServiceDestination), in the listener itself for a node that
// reads no ServiceRoutes (a node that does gets each in its Service port's ServiceRoute,
// routes.cc). Anything else follows the outbound traffic policy (RefusesUnknownDestinations).
void AddOutboundDestinations(const TranslationContext& ctx, TranslationOutput& out,
                             xds::Listener& listener) {
  if (!SplitsRouteTable(ctx)) {
    for (const auto& [key, view] : ctx.index.services) {
      const ServiceView& service = *view;
      if (service.addresses.empty() || !ctx.Reachable(service)) continue;
      for (const pb::ServicePort& port : service.ports) {
        *listener.add_destinations() = ServiceDestination(service, port);
      }
    }
  }
  xds::PolicySource source;
  if (RefusesUnknownDestinations(ctx, out, source)) {
    listener.set_unmatched_destination(xds::REFUSE);
    *listener.mutable_unmatched_destination_source() = std::move(source);
  } else {
    listener.set_unmatched_destination(xds::PASSTHROUGH);
  }
}

// The missing-key TTL of Listener.on_demand: how long a sidecar takes a key answered missing as
// missing before asking again.
constexpr int64_t kOnDemandMissingTtlSeconds = 30;
constexpr int64_t kOnDemandDefaultTimeoutSeconds = 1;
constexpr int64_t kOnDemandDefaultIdleSeconds = 15 * 60;

std::vector<std::string> BuildOnDemandRanges(const TranslationContext& ctx) {
  std::vector<net::IpPrefix> ranges;
  auto add = [&ranges](absl::string_view text) {
    // A stored MeshConfig was validated, and Service addresses are addresses: what does not parse
    // all the same is left out rather than sent.
    if (absl::StatusOr<net::IpPrefix> range = net::IpPrefix::Parse(text); range.ok()) {
      ranges.push_back(*range);
    }
  };
  add(ctx.mesh.service_address_range().empty() ? policy::kDefaultServiceAddressRange
                                               : ctx.mesh.service_address_range());
  if (!ctx.mesh.service_address_range_v6().empty()) add(ctx.mesh.service_address_range_v6());
  for (const auto& [key, service] : ctx.index.services) {
    for (const std::string& address : service->addresses) {
      absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(address);
      if (ip.ok()) ranges.push_back(net::IpPrefix::Of(*ip, ip->is_v4() ? 16 : 48));
    }
  }
  // By address, then the wider first: a range is left out when the last one kept holds it.
  std::sort(ranges.begin(), ranges.end(), [](const net::IpPrefix& a, const net::IpPrefix& b) {
    if (a.network() != b.network()) return a.network() < b.network();
    return a.length() < b.length();
  });
  std::vector<std::string> out;
  const net::IpPrefix* kept = nullptr;
  for (const net::IpPrefix& range : ranges) {
    if (kept != nullptr && kept->family() == range.family() && kept->length() <= range.length() &&
        kept->Contains(range.network())) {
      continue;
    }
    kept = &range;
    out.push_back(range.ToString());
  }
  return out;
}

// Listener.on_demand of an OnDemand node's outbound listener: requests for unknown hosts are
// looked up, and on a captured node connections to unknown addresses in the ranges.
void SetOnDemand(const TranslationContext& ctx, xds::Listener& listener) {
  const pb::Discovery& discovery = ctx.mesh.discovery();
  xds::OnDemand* on_demand = listener.mutable_on_demand();
  if (ctx.self.capture) {
    if (discovery.address_ranges_size() > 0) {
      *on_demand->mutable_address_ranges() = discovery.address_ranges();
    } else {
      for (const std::string& range : OnDemandAddressRanges(ctx)) {
        on_demand->add_address_ranges(range);
      }
    }
  }
  on_demand->set_hosts(true);
  if (discovery.has_timeout()) {
    SetDuration(on_demand->mutable_timeout(), discovery.timeout());
  } else {
    on_demand->mutable_timeout()->set_seconds(kOnDemandDefaultTimeoutSeconds);
  }
  if (discovery.has_idle_time()) {
    SetDuration(on_demand->mutable_idle_time(), discovery.idle_time());
  } else {
    on_demand->mutable_idle_time()->set_seconds(kOnDemandDefaultIdleSeconds);
  }
  on_demand->mutable_missing_ttl()->set_seconds(kOnDemandMissingTtlSeconds);
}

// The app's ports: its Service's ports, else those the workload registered. `own` is set to its
// Service (null: none).
std::vector<pb::ServicePort> ServedPorts(const TranslationContext& ctx, const ServiceView*& own) {
  std::vector<pb::ServicePort> ports;
  own = nullptr;
  if (auto it = ctx.index.services.find({ctx.self.namespace_, ctx.self.service});
      it != ctx.index.services.end()) {
    own = it->second.get();
    ports = own->ports;
  }
  if (ports.empty()) {
    for (uint32_t p : ctx.self.ports) {
      pb::ServicePort sp;
      sp.set_port(p);
      ports.push_back(std::move(sp));
    }
  }
  return ports;
}

// What the app's ports give the inbound listener.
struct AppPorts {
  xds::RouteConfiguration routes;  // "inbound"
  // Captured connections, by the app port they were addressed to (the first Service port with
  // that app port decides the protocol).
  std::vector<xds::ListenerDestination> destinations;
  // The first port's: where connections that are not HTTP go.
  std::string first_cluster;
  uint32_t first_app_port = 0;
};

// Per app port: its cluster "inbound|<app port>" and, on a captured node, its destination and
// route configuration (into `out`); its virtual host of the route configuration "inbound".
AppPorts AddAppPorts(const TranslationContext& ctx, TranslationOutput& out,
                     const std::vector<pb::ServicePort>& ports,
                     const std::vector<uint32_t>& registered, const ServiceView* own,
                     const pb::TrafficPolicy* tp) {
  AppPorts app;
  app.routes.set_name(std::string(kInboundName));
  std::set<uint32_t> made;
  for (size_t i = 0; i < ports.size(); ++i) {
    const pb::ServicePort& p = ports[i];
    const uint32_t target = AppPort(ports, p, registered);
    const std::string cluster_name = absl::StrCat("inbound|", target);
    const bool first_for_target = made.insert(target).second;
    xds::ListenerDestination* destination = nullptr;
    if (ctx.self.capture && first_for_target) {
      destination = &app.destinations.emplace_back();
      destination->set_name(cluster_name);
      destination->set_port(target);
      destination->set_destination_port(target);
      destination->set_protocol(xds::PROTOCOL_TCP);
      destination->set_tcp_cluster(cluster_name);
    }
    if (first_for_target) {
      out.clusters.emplace(cluster_name, InboundCluster(ctx, cluster_name, p.protocol(), target));
    }
    if (app.first_cluster.empty()) {
      app.first_cluster = cluster_name;
      app.first_app_port = target;
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
      out.resources.routes.push_back(std::move(port_routes));
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
      for (const std::string& d : Domains(ctx, *own, p.port(), false)) vhost.add_domains(d);
    }
    if (i == 0 || own == nullptr) {
      vhost.clear_domains();
      vhost.add_domains("*");
    }
    if (app.routes.virtual_hosts_size() > 0 && vhost.domains(0) == "*") continue;
    *vhost.add_routes() = app_route;
    *app.routes.add_virtual_hosts() = std::move(vhost);
  }
  // The catch-all ("*") host goes last so port-specific hosts win.
  std::stable_sort(app.routes.mutable_virtual_hosts()->begin(),
                   app.routes.mutable_virtual_hosts()->end(),
                   [](const xds::VirtualHost& a, const xds::VirtualHost& b) {
                     return (a.domains(0) != "*") > (b.domains(0) != "*");
                   });
  return app;
}

}  // namespace

const std::vector<std::string>& OnDemandAddressRanges(const TranslationContext& ctx) {
  return ctx.index.host_owners->OnDemandRanges([&ctx] { return BuildOnDemandRanges(ctx); });
}

xds::ListenerDestination ServiceDestination(const ServiceView& service,
                                            const pb::ServicePort& port) {
  xds::ListenerDestination d;
  d.set_name(absl::StrCat(service.Fqdn(), ":", port.port()));
  for (const std::string& address : service.addresses) d.add_addresses(address);
  d.set_port(port.port());
  if (IsAutoProtocol(port.protocol())) {
    d.set_protocol(xds::PROTOCOL_AUTO);
    d.set_route_config_name(std::string(kOutboundName));
    d.set_tcp_cluster(ClusterName(service, port.port(), {}, /*opaque=*/true));
  } else if (IsHttpProtocol(port.protocol())) {
    d.set_protocol(xds::PROTOCOL_HTTP);
    d.set_route_config_name(std::string(kOutboundName));
  } else {
    d.set_protocol(xds::PROTOCOL_TCP);
    d.set_tcp_cluster(ClusterName(service, port.port(), {}));
  }
  return d;
}

void BuildOutboundListener(const TranslationContext& ctx, TranslationOutput& out) {
  if (auto label = ctx.self.labels.find(std::string(kDiscoveryLabel));
      label != ctx.self.labels.end() && !DiscoveryModeOfLabel(label->second)) {
    out.Warn(absl::StrCat("label ", kDiscoveryLabel, ": \"", label->second,
                          "\" is not one of on-demand, whole-mesh, declared and is ignored; the "
                          "node's discovery mode is ",
                          DiscoveryModeName(ctx.mode), " (MeshConfig)"));
  }
  xds::Listener listener;
  listener.set_name(std::string(kOutboundName));
  const uint32_t port =
      ctx.self.outbound_port != 0 ? ctx.self.outbound_port : registry::kDefaultOutboundPort;
  BindOutbound(ctx, listener, port);
  listener.set_direction(xds::OUTBOUND);
  listener.set_protocol(xds::PROTOCOL_HTTP);
  listener.set_route_config_name(std::string(kOutboundName));
  if (ctx.self.capture) {
    SetCaptureCommon(ctx, listener, port);
    AddOutboundDestinations(ctx, out, listener);
    AddExternalDestinations(ctx, out, listener);
  }
  if (ctx.mode == DiscoveryMode::kOnDemand) SetOnDemand(ctx, listener);
  out.resources.listeners.push_back(std::move(listener));
}

void BuildInbound(const TranslationContext& ctx, TranslationOutput& out) {
  const ServiceView* own = nullptr;
  const std::vector<pb::ServicePort> ports = ServedPorts(ctx, own);
  if (ports.empty()) return;  // nothing to serve: the sidecar only carries outbound calls
  const std::vector<uint32_t> registered = SortedPorts(ctx.self.ports);
  const pb::TrafficPolicySpec* tp = own != nullptr ? ctx.PolicyFor(*own) : nullptr;
  AppPorts app = AddAppPorts(ctx, out, ports, registered, own,
                             own != nullptr ? ctx.TrafficPolicyFor(*own) : nullptr);

  xds::Listener listener;
  listener.set_name(std::string(kInboundName));
  const uint32_t port =
      ctx.self.inbound_port != 0 ? ctx.self.inbound_port : registry::kDefaultInboundPort;
  listener.set_address(FormatAddress(ListenHost(ctx), port));
  listener.set_direction(xds::INBOUND);
  if (ctx.self.capture) {
    // Connections to the pod's addresses: by the port they were addressed to. Ports no
    // Service declares go to the app as bytes, on the same port (TLS and authorization still
    // apply); 127.0.0.1, since the pod's own address would be redirected again.
    SetCaptureCommon(ctx, listener, port);
    for (xds::ListenerDestination& d : app.destinations) {
      *listener.add_destinations() = std::move(d);
    }
    listener.set_unmatched_destination(xds::PASSTHROUGH);
    listener.set_passthrough_host(ctx.options.local_app_host);
  }
  if (app.routes.virtual_hosts_size() > 0) {
    listener.set_protocol(xds::PROTOCOL_AUTO);
    listener.set_route_config_name(std::string(kInboundName));
    out.resources.routes.push_back(std::move(app.routes));
  } else {
    listener.set_protocol(xds::PROTOCOL_TCP);
  }
  listener.set_tcp_cluster(app.first_cluster);
  listener.set_destination_port(app.first_app_port);
  SetDownstreamTls(ctx, ctx.MtlsMode(tp), listener);
  BuildAuthorization(ctx, ports, registered, listener);
  BuildJwt(ctx, listener, out);
  out.resources.listeners.push_back(std::move(listener));
}

}  // namespace meshlet::controlplane::translate
