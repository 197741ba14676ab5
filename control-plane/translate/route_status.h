#pragma once

// The status of Gateway API routes (HTTPRoute, GRPCRoute of xds/gateway.proto) attached to
// Services of the mesh, computed from the policy and the registry: per Service parentRef, the
// conditions Accepted and ResolvedRefs with the Gateway API's reasons. A pure function: the same
// inputs give the same updates in the same order; nothing is written anywhere. The Kubernetes
// status writer, the policy API (GET of a route) and `meshctl check` call it.

#include <vector>

#include "control-plane/policy/route_status.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/translate/gateway_status.h"

namespace meshlet::controlplane::translate {

// One update per HTTPRoute of `policy.gateway_http_routes`, then per GRPCRoute of
// `policy.grpc_routes`, in their order, each with one RouteParentStatus per parentRef that names a
// Service (group "" or "core", kind Service) or one of meshlet's Gateways (gateway_status.h), in
// parentRef order; other parentRefs (other controllers' Gateways, Gateways that do not exist) get
// none. A route with no such parentRef gets an update with no parents. For a Gateway parent:
// controllerName "meshlet.io/gateway-controller", Accepted False with the reason of
// AttachToGateway (NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname) when the
// route attaches to no listener, else as for a Service, and ResolvedRefs as for a Service. For a
// Service parent: the parentRef as written, controllerName "meshlet.io/mesh-controller", and
//   Accepted      True/Accepted; False/NoMatchingParent (the Service, or the port the parentRef
//                 names, does not exist); False/UnsupportedValue (a field, filter or value meshlet
//                 does not support, or an invalid duration or regular expression: the route is
//                 not programmed)
//   ResolvedRefs  True/ResolvedRefs; False/InvalidKind (a backend that is not a Service),
//                 RefNotPermitted (another namespace's Service without a ReferenceGrant),
//                 BackendNotFound (no such Service or port) — the first failing reference of the
//                 rules in order (mirror backends included) names the reason and message
// each with observedGeneration = metadata.generation. lastTransitionTime is left empty: the
// writer keeps a condition's previous time while its status is unchanged.
std::vector<policy::RouteStatusUpdate> ComputeRouteStatuses(
    const policy::PolicySnapshot& policy, const registry::RegistrySnapshot& registry,
    const GatewayEnvironment& env = {});

}  // namespace meshlet::controlplane::translate
