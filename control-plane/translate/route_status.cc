// The status of Gateway API routes (route_status.h): the checks of gateway_routes.cc — whether a
// parentRef names an existing Service port, whether the route is supported, whether its backends
// resolve — and for a parentRef naming one of meshlet's Gateways the listener attachment of
// gateway_status.cc, as conditions.

#include "control-plane/translate/route_status.h"

#include <string>

#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

// The first reference of the route's rules that does not resolve; an empty reason when all do.
template <typename Route>
ResolvedBackend FirstUnresolved(const PolicySnapshot& policy, const MeshIndex& index,
                                absl::string_view kind, const Route& route) {
  const std::string ns = NamespaceOr(route.metadata().namespace_());
  auto check = [&](const gw::BackendObjectReference& ref, const std::string& where) {
    ResolvedBackend b = ResolveBackend(policy, index, kind, ns, route.spec().parent_refs(), ref);
    if (!b.reason.empty()) b.message = absl::StrCat(where, ": ", b.message);
    return b;
  };
  for (int i = 0; i < route.spec().rules_size(); ++i) {
    const auto& rule = route.spec().rules(i);
    const std::string where = absl::StrCat("spec.rules[", i, "]");
    for (int b = 0; b < rule.backend_refs_size(); ++b) {
      ResolvedBackend r =
          check(ToObjectRef(rule.backend_refs(b)), absl::StrCat(where, ".backendRefs[", b, "]"));
      if (!r.reason.empty()) return r;
    }
    for (int f = 0; f < rule.filters_size(); ++f) {
      if (rule.filters(f).type() != "RequestMirror") continue;
      ResolvedBackend r = check(rule.filters(f).request_mirror().backend_ref(),
                                absl::StrCat(where, ".filters[", f, "].requestMirror.backendRef"));
      if (!r.reason.empty()) return r;
    }
  }
  return {};
}

template <typename Route>
policy::RouteStatusUpdate StatusOf(const PolicySnapshot& policy, const MeshIndex& index,
                                   const GatewayEnvironment& env, absl::string_view kind,
                                   const Route& route) {
  policy::RouteStatusUpdate update;
  update.kind = std::string(kind);
  update.namespace_ = NamespaceOr(route.metadata().namespace_());
  update.name = route.metadata().name();
  update.generation = route.metadata().generation();
  const std::string unsupported = UnsupportedReason(route);
  const ResolvedBackend unresolved = FirstUnresolved(policy, index, kind, route);
  auto resolved_refs = [&](gw::RouteParentStatus* parent) {
    if (unresolved.reason.empty()) {
      *parent->add_conditions() =
          MakeCondition("ResolvedRefs", true, "ResolvedRefs", "", update.generation);
    } else {
      *parent->add_conditions() = MakeCondition("ResolvedRefs", false, unresolved.reason,
                                                unresolved.message, update.generation);
    }
  };
  for (const gw::ParentReference& ref : route.spec().parent_refs()) {
    if (const gw::Gateway* gateway = FindMeshletGateway(policy, ref, update.namespace_)) {
      gw::RouteParentStatus* parent = update.status.add_parents();
      *parent->mutable_parent_ref() = ref;
      parent->set_controller_name(std::string(kGatewayControllerName));
      const ListenerAttachment a = AttachToGateway(policy, env, *gateway, kind, update.namespace_,
                                                   route.spec().hostnames(), ref);
      if (!a.reason.empty()) {
        *parent->add_conditions() =
            MakeCondition("Accepted", false, a.reason, a.message, update.generation);
      } else if (!unsupported.empty()) {
        *parent->add_conditions() =
            MakeCondition("Accepted", false, "UnsupportedValue", unsupported, update.generation);
      } else {
        *parent->add_conditions() =
            MakeCondition("Accepted", true, "Accepted", "", update.generation);
      }
      resolved_refs(parent);
      continue;
    }
    if (!IsServiceParent(ref)) continue;
    gw::RouteParentStatus* parent = update.status.add_parents();
    *parent->mutable_parent_ref() = ref;
    parent->set_controller_name(std::string(kMeshControllerName));
    const std::string service_ns = NamespaceOr(ref.namespace_(), update.namespace_);
    auto it = index.services.find({service_ns, ref.name()});
    std::string no_parent;
    if (it == index.services.end()) {
      no_parent = absl::StrCat("Service ", service_ns, "/", ref.name(), " does not exist");
    } else if (ref.has_port()) {
      bool exists = false;
      for (const pb::ServicePort& p : it->second->ports)
        exists |= static_cast<int64_t>(p.port()) == ref.port();
      if (!exists) {
        no_parent =
            absl::StrCat("Service ", service_ns, "/", ref.name(), " has no port ", ref.port());
      }
    }
    if (!no_parent.empty()) {
      *parent->add_conditions() =
          MakeCondition("Accepted", false, "NoMatchingParent", no_parent, update.generation);
    } else if (!unsupported.empty()) {
      *parent->add_conditions() =
          MakeCondition("Accepted", false, "UnsupportedValue", unsupported, update.generation);
    } else {
      *parent->add_conditions() =
          MakeCondition("Accepted", true, "Accepted", "", update.generation);
    }
    resolved_refs(parent);
  }
  return update;
}

}  // namespace

std::vector<policy::RouteStatusUpdate> ComputeRouteStatuses(
    const policy::PolicySnapshot& policy, const registry::RegistrySnapshot& registry,
    const GatewayEnvironment& env) {
  const MeshIndex index = BuildIndex(policy, registry);
  std::vector<policy::RouteStatusUpdate> out;
  for (const gw::HTTPRoute& route : policy.gateway_http_routes) {
    out.push_back(StatusOf(policy, index, env, "HTTPRoute", route));
  }
  for (const gw::GRPCRoute& route : policy.grpc_routes) {
    out.push_back(StatusOf(policy, index, env, "GRPCRoute", route));
  }
  return out;
}

}  // namespace meshlet::controlplane::translate
