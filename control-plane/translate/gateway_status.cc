// Gateways of meshlet's GatewayClass (gateway_status.h): listener checks, conflicts, route
// attachment by sectionName, port, kind, namespace and hostname, and the conditions they give.

#include "control-plane/translate/gateway_status.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/inject/gateway_deployment.h"

namespace meshlet::controlplane::translate {
namespace {

namespace gw = ::meshlet::gateway;

constexpr absl::string_view kGroup = "gateway.networking.k8s.io";
constexpr absl::string_view kTlsSecretType = "kubernetes.io/tls";

std::string Or(const std::string& value, absl::string_view fallback) {
  return value.empty() ? std::string(fallback) : value;
}

// "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
bool WildcardMatches(absl::string_view wildcard, absl::string_view name) {
  const absl::string_view suffix = wildcard.substr(1);  // ".example.com"
  return name.size() > suffix.size() && absl::EndsWithIgnoreCase(name, suffix);
}

bool Selects(const gw::LabelSelector& selector, const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : selector.match_labels()) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  for (const gw::LabelSelectorRequirement& r : selector.match_expressions()) {
    auto it = labels.find(r.key());
    const bool in = it != labels.end() &&
                    std::find(r.values().begin(), r.values().end(), it->second) != r.values().end();
    if (r.operator_() == "In" && !in) return false;
    if (r.operator_() == "NotIn" && in) return false;
    if (r.operator_() == "Exists" && it == labels.end()) return false;
    if (r.operator_() == "DoesNotExist" && it != labels.end()) return false;
    if (r.operator_() != "In" && r.operator_() != "NotIn" && r.operator_() != "Exists" &&
        r.operator_() != "DoesNotExist") {
      return false;  // an operator Kubernetes does not have selects nothing
    }
  }
  return true;
}

// What one listener is, before any route: the Gateway API's listener conditions.
struct ListenerState {
  std::string accepted_reason = "Accepted";  // or UnsupportedProtocol, PortUnavailable
  std::string accepted_message;
  std::string resolved_reason = "ResolvedRefs";  // or InvalidRouteKinds, InvalidCertificateRef...
  std::string resolved_message;
  std::string conflict_reason;  // empty, ProtocolConflict, HostnameConflict
  std::string conflict_message;
  std::vector<std::string> kinds;  // supported route kinds
  bool usable() const {
    return accepted_reason == "Accepted" && resolved_reason == "ResolvedRefs" &&
           conflict_reason.empty();
  }
};

bool SecretGranted(const policy::PolicySnapshot& policy, const std::string& gateway_ns,
                   const std::string& secret_ns, const std::string& secret) {
  for (const gw::ReferenceGrant& grant : policy.reference_grants) {
    if (Or(grant.metadata().namespace_(), "default") != secret_ns) continue;
    bool from = false, to = false;
    for (const gw::ReferenceGrantFrom& f : grant.spec().from()) {
      from |= f.group() == kGroup && f.kind() == "Gateway" && f.namespace_() == gateway_ns;
    }
    for (const gw::ReferenceGrantTo& t : grant.spec().to()) {
      to |= (t.group().empty() || t.group() == "core") && t.kind() == "Secret" &&
            (t.name().empty() || t.name() == secret);
    }
    if (from && to) return true;
  }
  return false;
}

// The first certificateRef that does not resolve, as (reason, message); empty when all do.
std::pair<std::string, std::string> CheckCertificates(const policy::PolicySnapshot& policy,
                                                      const GatewayEnvironment& env,
                                                      const std::string& gateway_ns,
                                                      const gw::Listener& l) {
  if (l.tls().certificate_refs().empty()) {
    return {"InvalidCertificateRef", "an HTTPS listener needs tls.certificateRefs"};
  }
  for (int i = 0; i < l.tls().certificate_refs_size(); ++i) {
    const gw::SecretObjectReference& ref = l.tls().certificate_refs(i);
    const std::string where = absl::StrCat("tls.certificateRefs[", i, "]");
    const std::string kind = Or(ref.kind(), "Secret");
    if (kind != "Secret" || !(ref.group().empty() || ref.group() == "core")) {
      return {"InvalidCertificateRef",
              absl::StrCat(where, ": ", ref.group().empty() ? "" : ref.group() + "/", kind, " \"",
                           ref.name(), "\" is not a Secret")};
    }
    const std::string ns = Or(ref.namespace_(), gateway_ns);
    if (ns != gateway_ns && !SecretGranted(policy, gateway_ns, ns, ref.name())) {
      return {"RefNotPermitted", absl::StrCat(where, ": no ReferenceGrant in namespace \"", ns,
                                              "\" lets Gateways of namespace \"", gateway_ns,
                                              "\" refer to Secret ", ref.name())};
    }
    if (env.secrets.has_value()) {
      auto it = env.secrets->find({ns, ref.name()});
      if (it == env.secrets->end()) {
        return {"InvalidCertificateRef",
                absl::StrCat(where, ": Secret ", ns, "/", ref.name(), " does not exist")};
      }
      if (it->second.type != kTlsSecretType) {
        return {"InvalidCertificateRef",
                absl::StrCat(where, ": Secret ", ns, "/", ref.name(), " is of type \"",
                             it->second.type, "\", not ", kTlsSecretType)};
      }
      if (!it->second.error.empty()) {
        return {"InvalidCertificateRef", absl::StrCat(where, ": Secret ", ns, "/", ref.name(),
                                                      " cannot be served: ", it->second.error)};
      }
    }
  }
  return {};
}

std::vector<ListenerState> Listeners(const policy::PolicySnapshot& policy,
                                     const GatewayEnvironment& env, const gw::Gateway& gateway) {
  const std::string ns = Or(gateway.metadata().namespace_(), "default");
  const auto& listeners = gateway.spec().listeners();
  std::vector<ListenerState> out(listeners.size());
  for (int i = 0; i < listeners.size(); ++i) {
    const gw::Listener& l = listeners[i];
    ListenerState& s = out[i];
    const bool http = l.protocol() == "HTTP", https = l.protocol() == "HTTPS";
    const bool east_west = l.protocol() == kEastWestProtocol;
    const bool egress = l.protocol() == kEgressProtocol;
    if (!http && !https && !east_west && !egress) {
      s.accepted_reason = "UnsupportedProtocol";
      s.accepted_message =
          absl::StrCat("protocol \"", l.protocol(), "\" is not supported (HTTP, HTTPS, ",
                       kEastWestProtocol, ", ", kEgressProtocol, ")");
    } else if (l.port() < 1 || l.port() > 65535) {
      s.accepted_reason = "PortUnavailable";
      s.accepted_message = absl::StrCat("port ", l.port(), " is out of range");
    } else if (https && !l.tls().mode().empty() && l.tls().mode() != "Terminate") {
      s.accepted_reason = "UnsupportedProtocol";
      s.accepted_message =
          absl::StrCat("tls.mode \"", l.tls().mode(), "\" is not supported (Terminate)");
    }
    if (east_west || egress) {
      // Mesh traffic of the exported Services, routed by its server name, or of the external
      // services leaving through the gateway, routed by host: no route attaches.
      if (!l.allowed_routes().kinds().empty()) {
        s.resolved_reason = "InvalidRouteKinds";
        s.resolved_message =
            absl::StrCat("allowedRoutes.kinds: a ", l.protocol(), " listener takes no routes");
      }
    } else if (l.allowed_routes().kinds().empty()) {
      s.kinds = {"HTTPRoute", "GRPCRoute"};
    } else {
      for (const gw::RouteGroupKind& k : l.allowed_routes().kinds()) {
        if (Or(k.group(), kGroup) == kGroup &&
            (k.kind() == "HTTPRoute" || k.kind() == "GRPCRoute")) {
          if (std::find(s.kinds.begin(), s.kinds.end(), k.kind()) == s.kinds.end()) {
            s.kinds.push_back(k.kind());
          }
        } else if (s.resolved_reason == "ResolvedRefs") {
          s.resolved_reason = "InvalidRouteKinds";
          s.resolved_message = absl::StrCat("allowedRoutes.kinds: ", Or(k.group(), kGroup), "/",
                                            k.kind(), " is not a route kind meshlet takes");
        }
      }
    }
    if (https && s.resolved_reason == "ResolvedRefs") {
      auto [reason, message] = CheckCertificates(policy, env, ns, l);
      if (!reason.empty()) {
        s.resolved_reason = reason;
        s.resolved_message = message;
      }
    }
  }
  // Conflicts between the listeners of a port: every listener of a conflict is marked.
  for (int i = 0; i < listeners.size(); ++i) {
    for (int j = 0; j < listeners.size(); ++j) {
      if (i == j || listeners[i].port() != listeners[j].port()) continue;
      if (listeners[i].protocol() != listeners[j].protocol()) {
        out[i].conflict_reason = "ProtocolConflict";
        out[i].conflict_message =
            absl::StrCat("listener \"", listeners[j].name(), "\" serves port ", listeners[j].port(),
                         " with protocol ", listeners[j].protocol());
        break;
      }
      if (absl::EqualsIgnoreCase(listeners[i].hostname(), listeners[j].hostname())) {
        out[i].conflict_reason = "HostnameConflict";
        out[i].conflict_message =
            absl::StrCat("listener \"", listeners[j].name(), "\" serves port ", listeners[j].port(),
                         " and hostname \"", listeners[j].hostname(), "\" too");
      }
    }
  }
  return out;
}

ListenerAttachment Attach(const GatewayEnvironment& env, const gw::Gateway& gateway,
                          const std::vector<ListenerState>& states, absl::string_view route_kind,
                          const std::string& route_ns,
                          const google::protobuf::RepeatedPtrField<std::string>& hostnames,
                          const gw::ParentReference& ref) {
  ListenerAttachment out;
  const std::string gateway_ns = Or(gateway.metadata().namespace_(), "default");
  const std::string name = absl::StrCat("Gateway ", gateway_ns, "/", gateway.metadata().name());
  std::vector<int> candidates;
  std::string unusable;
  for (int i = 0; i < gateway.spec().listeners_size(); ++i) {
    const gw::Listener& l = gateway.spec().listeners(i);
    if (!ref.section_name().empty() && l.name() != ref.section_name()) continue;
    if (ref.has_port() && l.port() != ref.port()) continue;
    if (states[i].usable()) {
      candidates.push_back(i);
    } else if (unusable.empty()) {
      unusable = l.name();
    }
  }
  if (candidates.empty()) {
    out.reason = "NoMatchingParent";
    std::string what = "a listener";
    if (!ref.section_name().empty()) what = absl::StrCat("listener \"", ref.section_name(), "\"");
    if (ref.has_port()) absl::StrAppend(&what, " on port ", ref.port());
    out.message = unusable.empty()
                      ? absl::StrCat(name, " has no ", what)
                      : absl::StrCat(name, ": listener \"", unusable,
                                     "\" is not usable (see the Gateway's listener status)");
    return out;
  }
  std::vector<int> allowed;
  for (int i : candidates) {
    const gw::Listener& l = gateway.spec().listeners(i);
    const std::vector<std::string>& kinds = states[i].kinds;
    if (std::find(kinds.begin(), kinds.end(), route_kind) == kinds.end()) continue;
    const std::string& from = Or(l.allowed_routes().namespaces().from(), "Same");
    bool ns_ok = false;
    if (from == "All") {
      ns_ok = true;
    } else if (from == "Same") {
      ns_ok = route_ns == gateway_ns;
    } else if (from == "Selector") {
      auto it = env.namespace_labels.find(route_ns);
      static const std::map<std::string, std::string> kNone;
      ns_ok = Selects(l.allowed_routes().namespaces().selector(),
                      it == env.namespace_labels.end() ? kNone : it->second);
    }
    if (ns_ok) allowed.push_back(i);
  }
  if (allowed.empty()) {
    out.reason = "NotAllowedByListeners";
    out.message = absl::StrCat(name, ": no listener the parentRef names allows ", route_kind,
                               "s of namespace \"", route_ns, "\"");
    return out;
  }
  for (int i : allowed) {
    const std::string& listener = gateway.spec().listeners(i).hostname();
    bool any = hostnames.empty();
    for (const std::string& h : hostnames) any |= HostnamesIntersect(listener, h);
    if (any) out.listeners.push_back(i);
  }
  if (out.listeners.empty()) {
    out.reason = "NoMatchingListenerHostname";
    out.message = absl::StrCat(name, ": no listener's hostname intersects the route's (",
                               absl::StrJoin(hostnames, ", "), ")");
  }
  return out;
}

}  // namespace

bool TakesPrecedence(const ::meshlet::policy::ObjectMeta& a,
                     const ::meshlet::policy::ObjectMeta& b) {
  return std::tie(a.creation_timestamp(), a.namespace_(), a.name()) <
         std::tie(b.creation_timestamp(), b.namespace_(), b.name());
}

bool IsMeshletClass(const policy::PolicySnapshot& policy, const std::string& name) {
  for (const gw::GatewayClass& c : policy.gateway_classes) {
    if (c.metadata().name() == name) return c.spec().controller_name() == kGatewayControllerName;
  }
  return false;
}

namespace {

template <typename Route>
void CountAttached(const policy::PolicySnapshot& policy, const GatewayEnvironment& env,
                   const gw::Gateway& gateway, const std::vector<ListenerState>& states,
                   absl::string_view kind, const Route& route, std::vector<int32_t>& attached) {
  const std::string route_ns = Or(route.metadata().namespace_(), "default");
  for (const gw::ParentReference& ref : route.spec().parent_refs()) {
    if (FindMeshletGateway(policy, ref, route_ns) != &gateway) continue;
    for (int i :
         Attach(env, gateway, states, kind, route_ns, route.spec().hostnames(), ref).listeners) {
      ++attached[i];
    }
  }
}

}  // namespace

gw::Condition MakeCondition(absl::string_view type, bool ok, absl::string_view reason,
                            const std::string& message, int64_t generation) {
  gw::Condition c;
  c.set_type(std::string(type));
  c.set_status(ok ? "True" : "False");
  c.set_reason(std::string(reason));
  c.set_message(message);
  c.set_observed_generation(generation);
  return c;
}

bool HostnamesIntersect(absl::string_view listener, absl::string_view route) {
  if (listener.empty() || route.empty() || absl::EqualsIgnoreCase(listener, route)) return true;
  const bool lw = absl::StartsWith(listener, "*."), rw = absl::StartsWith(route, "*.");
  return (lw && WildcardMatches(listener, route)) || (rw && WildcardMatches(route, listener));
}

const gw::Gateway* FindMeshletGateway(const policy::PolicySnapshot& policy,
                                      const gw::ParentReference& ref, const std::string& route_ns) {
  if (Or(ref.group(), kGroup) != kGroup || Or(ref.kind(), "Gateway") != "Gateway") return nullptr;
  const gw::Gateway* gateway = policy.gateways.Find(Or(ref.namespace_(), route_ns), ref.name());
  if (gateway == nullptr || !IsMeshletClass(policy, gateway->spec().gateway_class_name())) {
    return nullptr;
  }
  return gateway;
}

ListenerAttachment AttachToGateway(const policy::PolicySnapshot& policy,
                                   const GatewayEnvironment& env, const gw::Gateway& gateway,
                                   absl::string_view route_kind, const std::string& route_ns,
                                   const google::protobuf::RepeatedPtrField<std::string>& hostnames,
                                   const gw::ParentReference& ref) {
  return Attach(env, gateway, Listeners(policy, env, gateway), route_kind, route_ns, hostnames,
                ref);
}

std::vector<bool> UsableListeners(const policy::PolicySnapshot& policy,
                                  const GatewayEnvironment& env, const gw::Gateway& gateway) {
  std::vector<bool> usable;
  for (const ListenerState& state : Listeners(policy, env, gateway)) {
    usable.push_back(state.usable());
  }
  return usable;
}

std::set<GatewayEnvironment::Key> GatewaySecretRefs(const policy::PolicySnapshot& policy) {
  std::set<GatewayEnvironment::Key> out;
  for (const gw::Gateway& gateway : policy.gateways) {
    if (!IsMeshletClass(policy, gateway.spec().gateway_class_name())) continue;
    const std::string gateway_ns = Or(gateway.metadata().namespace_(), "default");
    for (const gw::Listener& l : gateway.spec().listeners()) {
      if (l.protocol() != "HTTPS") continue;
      for (const gw::SecretObjectReference& ref : l.tls().certificate_refs()) {
        if (Or(ref.kind(), "Secret") != "Secret" ||
            !(ref.group().empty() || ref.group() == "core")) {
          continue;
        }
        const std::string ns = Or(ref.namespace_(), gateway_ns);
        if (ns != gateway_ns && !SecretGranted(policy, gateway_ns, ns, ref.name())) continue;
        out.emplace(ns, ref.name());
      }
    }
  }
  // The client certificates ExternalServices' TLS origination presents (docs/egress.md).
  for (const ::meshlet::policy::ExternalService& es : policy.external_services) {
    for (const ::meshlet::policy::ExternalServicePort& port : es.spec().ports()) {
      if (const std::string& ref = port.tls().client_certificate_ref(); !ref.empty()) {
        out.emplace(Or(es.metadata().namespace_(), "default"), ref);
      }
    }
  }
  return out;
}

namespace {

// spec.addresses judged for the Gateway alone (JudgeGatewayAddresses without other Gateways).
GatewayAddresses JudgeOwnAddresses(const gw::Gateway& gateway,
                                   const std::vector<net::IpPrefix>& ranges) {
  GatewayAddresses out;
  out.proxies = gateway.spec().addresses().empty();
  std::vector<std::string> unsupported, not_usable;
  for (const gw::GatewaySpecAddress& a : gateway.spec().addresses()) {
    const std::string type = Or(a.type(), "IPAddress");
    if (type != "IPAddress") {
      unsupported.push_back(absl::StrCat("\"", type, "\""));
      continue;
    }
    if (a.value().empty()) {
      out.proxies = true;
      continue;
    }
    absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(a.value());
    if (!ip.ok()) {
      not_usable.push_back(absl::StrCat("\"", a.value(), "\" is not an IP address"));
      continue;
    }
    const bool in_range = std::any_of(ranges.begin(), ranges.end(),
                                      [&](const net::IpPrefix& r) { return r.Contains(*ip); });
    if (!in_range) {
      std::vector<std::string> texts;
      for (const net::IpPrefix& r : ranges) texts.push_back(r.ToString());
      not_usable.push_back(
          absl::StrCat(ip->ToString(), " is not in the control plane's --gateway-addresses (",
                       texts.empty() ? "none configured" : absl::StrJoin(texts, ", "), ")"));
      continue;
    }
    const std::string text = ip->ToString();
    if (std::find(out.usable.begin(), out.usable.end(), text) == out.usable.end()) {
      out.usable.push_back(text);
    }
  }
  if (!unsupported.empty()) {
    out.unsupported = absl::StrCat("spec.addresses: type ", absl::StrJoin(unsupported, ", "),
                                   " is not supported (only IPAddress)");
  }
  if (!not_usable.empty()) {
    out.not_usable = absl::StrCat("spec.addresses: ", absl::StrJoin(not_usable, "; "));
  }
  return out;
}

}  // namespace

GatewayAddresses JudgeGatewayAddresses(const policy::PolicySnapshot& policy,
                                       const gw::Gateway& gateway,
                                       const std::vector<net::IpPrefix>& ranges) {
  GatewayAddresses out = JudgeOwnAddresses(gateway, ranges);
  if (out.usable.empty()) return out;
  // An address another meshlet Gateway asked for first is that Gateway's.
  std::vector<std::string> taken;
  for (const gw::Gateway& other : policy.gateways) {
    if (!TakesPrecedence(other.metadata(), gateway.metadata()) ||
        !IsMeshletClass(policy, other.spec().gateway_class_name())) {
      continue;
    }
    const std::vector<std::string> held = JudgeOwnAddresses(other, ranges).usable;
    for (auto it = out.usable.begin(); it != out.usable.end();) {
      if (std::find(held.begin(), held.end(), *it) == held.end()) {
        ++it;
        continue;
      }
      taken.push_back(absl::StrCat(*it, " is in use by Gateway ",
                                   Or(other.metadata().namespace_(), "default"), "/",
                                   other.metadata().name()));
      it = out.usable.erase(it);
    }
  }
  if (!taken.empty()) {
    absl::StrAppend(&out.not_usable, out.not_usable.empty() ? "spec.addresses: " : "; ",
                    absl::StrJoin(taken, "; "));
  }
  return out;
}

namespace {

// Why the Gateway's spec.infrastructure cannot be used (InvalidParameters); empty: it can.
std::string InfrastructureProblem(const gw::Gateway& gateway) {
  const gw::GatewayInfrastructure& infra = gateway.spec().infrastructure();
  if (infra.has_parameters_ref()) {
    const gw::LocalParametersReference& ref = infra.parameters_ref();
    return absl::StrCat("spec.infrastructure.parametersRef: ", ref.group(), "/", ref.kind(), " ",
                        ref.name(), ": meshlet's Gateways take no parameters object");
  }
  for (const auto* map : {&infra.labels(), &infra.annotations()}) {
    std::map<std::string, std::string> sorted(map->begin(), map->end());
    for (const auto& entry : sorted) {
      absl::Status key = inject::CheckInfrastructureKey(
          map == &infra.labels() ? "labels" : "annotations", entry.first);
      if (!key.ok()) return std::string(key.message());
    }
  }
  return "";
}

}  // namespace

GatewayStatuses ComputeGatewayStatuses(const policy::PolicySnapshot& policy,
                                       const GatewayEnvironment& env) {
  GatewayStatuses out;
  for (const gw::GatewayClass& c : policy.gateway_classes) {
    if (c.spec().controller_name() != kGatewayControllerName) continue;
    GatewayClassStatusUpdate& u = out.classes.emplace_back();
    u.name = c.metadata().name();
    u.generation = c.metadata().generation();
    *u.status.add_conditions() = MakeCondition("Accepted", true, "Accepted", "", u.generation);
  }
  for (const gw::Gateway& gateway : policy.gateways) {
    if (!IsMeshletClass(policy, gateway.spec().gateway_class_name())) continue;
    GatewayStatusUpdate& u = out.gateways.emplace_back();
    u.namespace_ = Or(gateway.metadata().namespace_(), "default");
    u.name = gateway.metadata().name();
    u.generation = gateway.metadata().generation();
    const int64_t gen = u.generation;
    const std::vector<ListenerState> states = Listeners(policy, env, gateway);
    std::vector<int32_t> attached(states.size(), 0);
    for (const gw::HTTPRoute& r : policy.gateway_http_routes) {
      CountAttached(policy, env, gateway, states, "HTTPRoute", r, attached);
    }
    for (const gw::GRPCRoute& r : policy.grpc_routes) {
      CountAttached(policy, env, gateway, states, "GRPCRoute", r, attached);
    }
    auto proxies = env.proxy_addresses.find({u.namespace_, u.name});
    const bool served = proxies != env.proxy_addresses.end() && !proxies->second.empty();
    const int usable = static_cast<int>(std::count_if(
        states.begin(), states.end(), [](const ListenerState& s) { return s.usable(); }));
    const GatewayAddresses addresses = JudgeGatewayAddresses(policy, gateway, env.address_ranges);
    const std::string infrastructure = InfrastructureProblem(gateway);
    bool accepted = true;
    if (!addresses.unsupported.empty()) {
      accepted = false;
      *u.status.add_conditions() =
          MakeCondition("Accepted", false, "UnsupportedAddress", addresses.unsupported, gen);
    } else if (!infrastructure.empty()) {
      accepted = false;
      *u.status.add_conditions() =
          MakeCondition("Accepted", false, "InvalidParameters", infrastructure, gen);
    } else if (usable == 0) {
      accepted = false;
      *u.status.add_conditions() =
          MakeCondition("Accepted", false, "ListenersNotValid", "no listener is usable", gen);
    } else if (usable < static_cast<int>(states.size())) {
      *u.status.add_conditions() = MakeCondition(
          "Accepted", true, "ListenersNotValid",
          absl::StrCat(states.size() - usable, " of ", states.size(), " listeners are not usable"),
          gen);
    } else {
      *u.status.add_conditions() = MakeCondition("Accepted", true, "Accepted", "", gen);
    }
    const std::string pending =
        absl::StrCat("no gateway proxy serves ", u.namespace_, "/", u.name, " yet");
    if (!accepted) {
      *u.status.add_conditions() =
          MakeCondition("Programmed", false, "Invalid", "the Gateway is not accepted", gen);
    } else if (!addresses.not_usable.empty()) {
      *u.status.add_conditions() =
          MakeCondition("Programmed", false, "AddressNotUsable", addresses.not_usable, gen);
    } else if (!served) {
      *u.status.add_conditions() = MakeCondition("Programmed", false, "Pending", pending, gen);
    } else {
      *u.status.add_conditions() = MakeCondition("Programmed", true, "Programmed", "", gen);
      std::vector<std::string> listed = addresses.usable;
      if (addresses.proxies) {
        for (const std::string& address : proxies->second) {
          if (std::find(listed.begin(), listed.end(), address) == listed.end()) {
            listed.push_back(address);
          }
        }
      }
      for (const std::string& address : listed) {
        gw::GatewaySpecAddress* a = u.status.add_addresses();
        a->set_type("IPAddress");
        a->set_value(address);
      }
    }
    for (size_t i = 0; i < states.size(); ++i) {
      const ListenerState& s = states[i];
      gw::ListenerStatus* l = u.status.add_listeners();
      l->set_name(gateway.spec().listeners(static_cast<int>(i)).name());
      for (const std::string& kind : s.kinds) {
        gw::RouteGroupKind* k = l->add_supported_kinds();
        k->set_group(std::string(kGroup));
        k->set_kind(kind);
      }
      l->set_attached_routes(attached[i]);
      *l->add_conditions() = MakeCondition("Accepted", s.accepted_reason == "Accepted",
                                           s.accepted_reason, s.accepted_message, gen);
      if (!s.usable() || !accepted) {
        *l->add_conditions() = MakeCondition(
            "Programmed", false, "Invalid",
            s.usable() ? "the Gateway is not accepted" : "the listener is not usable", gen);
      } else if (!addresses.not_usable.empty()) {
        *l->add_conditions() = MakeCondition("Programmed", false, "Invalid",
                                             "the Gateway's addresses are not usable", gen);
      } else if (!served) {
        *l->add_conditions() = MakeCondition("Programmed", false, "Pending", pending, gen);
      } else {
        *l->add_conditions() = MakeCondition("Programmed", true, "Programmed", "", gen);
      }
      *l->add_conditions() = MakeCondition("ResolvedRefs", s.resolved_reason == "ResolvedRefs",
                                           s.resolved_reason, s.resolved_message, gen);
      gw::Condition conflicted =
          s.conflict_reason.empty()
              ? MakeCondition("Conflicted", false, "NoConflicts", "", gen)
              : MakeCondition("Conflicted", true, s.conflict_reason, s.conflict_message, gen);
      *l->add_conditions() = std::move(conflicted);
    }
  }
  return out;
}

}  // namespace meshlet::controlplane::translate
