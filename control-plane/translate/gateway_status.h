#pragma once

// Gateways of meshlet's GatewayClass (xds/gateway.proto; docs/gateway.md): which listeners of a
// Gateway a route's parentRef attaches to, and the status of the GatewayClasses, Gateways and
// their listeners. Pure functions of the policy snapshot and a GatewayEnvironment: the same inputs
// give the same result, nothing is written anywhere. The route status (route_status.h) calls
// AttachToGateway for each parentRef naming one of meshlet's Gateways; the status writers, the
// policy API and `meshctl check` call ComputeGatewayStatuses.
//
// Threading: none of its own; callers may call it from any thread on inputs they own.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/net/ip_prefix.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/translate/resources.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::translate {

// The controllerName of meshlet's GatewayClasses, and of the route status entries it writes for
// parentRefs naming their Gateways.
using policy::kGatewayControllerName;

// What the status depends on that the policy snapshot does not hold. Each part is optional: an
// empty part is read as "nothing known" in the way stated.
struct GatewayEnvironment {
  using Key = std::pair<std::string, std::string>;  // (namespace, name)
  // A Secret a certificateRef names, as the control plane read it.
  struct Secret {
    std::string type;   // "kubernetes.io/tls"
    std::string error;  // why its certificate cannot be served; empty: it can
    bool operator==(const Secret&) const = default;
  };
  // The Secrets certificateRefs may name. nullopt: not known, so only the references themselves
  // (kind, ReferenceGrant) are checked.
  std::optional<std::map<Key, Secret>> secrets;
  // Each namespace's labels, for allowedRoutes.namespaces From Selector (a namespace not listed
  // has none).
  std::map<std::string, std::map<std::string, std::string>> namespace_labels;
  // The addresses of the gateway proxies serving each Gateway; a Gateway without any is not
  // Programmed (Pending).
  std::map<Key, std::vector<std::string>> proxy_addresses;
  // The addresses a Gateway's spec.addresses may request (the control plane's
  // --gateway-addresses); empty: none.
  std::vector<net::IpPrefix> address_ranges;
  // The ConfigMaps BackendTLSPolicies' caCertificateRefs name, as read; nullopt: not read (every
  // such reference is InvalidCACertificateRef).
  std::optional<BackendCaBundles> ca_bundles;
};

// A Gateway's spec.addresses judged (ADR 0105): only type IPAddress (the default) is supported;
// a value must be an IP address in one of `ranges` that no other Gateway of a meshlet class asked
// for first (the older, then the first by namespace/name, holds it; the other's is not usable,
// naming the holder); an entry without a value asks for an address meshlet picks: its proxies'
// own.
struct GatewayAddresses {
  std::string unsupported;          // why not accepted (UnsupportedAddress); empty: none
  std::string not_usable;           // why not programmed (AddressNotUsable); empty: none
  std::vector<std::string> usable;  // the static addresses usable, canonical text, in order
  bool proxies = false;             // no spec.addresses, or one without a value
};
GatewayAddresses JudgeGatewayAddresses(const policy::PolicySnapshot& policy,
                                       const meshlet::gateway::Gateway& gateway,
                                       const std::vector<net::IpPrefix>& ranges);

// The listener protocol of an east-west gateway (ADR 0106): mesh mTLS of the exported Services
// from linked clusters, routed by its server name (EastWestServerName) to their members without
// being terminated. Such a listener takes no routes.
inline constexpr absl::string_view kEastWestProtocol = "meshlet.io/east-west";
// The listener protocol of an egress gateway (docs/egress.md): the HTTP calls sidecars send over
// mesh mTLS to the ExternalServices whose egressGateway names the Gateway, routed by host to the
// services themselves. Such a listener takes no routes.
inline constexpr absl::string_view kEgressProtocol = "meshlet.io/egress";

// The node label a gateway proxy carries (`sidecar --gateway NAMESPACE/NAME`): the Gateway it
// serves. Such a node gets no sidecar listeners, only the Gateway's.
inline constexpr absl::string_view kGatewayLabel = "meshlet.io/gateway";

// What the Gateway status and a gateway proxy's translation know of the Secrets certificateRefs
// name (TranslateOptions::gateway_certificates), so both judge listeners alike (gateway_proxy.cc).
GatewayEnvironment GatewayEnvironmentOf(const TranslateOptions& options);
// GatewayEnvironment::secrets of certificates read (type and error of each).
std::map<GatewayEnvironment::Key, GatewayEnvironment::Secret> GatewaySecretsOf(
    const GatewayCertificates& certificates);

// GatewayEnvironment::proxy_addresses from the registered gateway proxies: the addresses of the
// ready ones serving each Gateway (translation.h, GatewayOfNode), sorted.
std::map<GatewayEnvironment::Key, std::vector<std::string>> GatewayProxyAddresses(
    const policy::PolicySnapshot& policy, const registry::RegistrySnapshot& registry);

// A Gateway API condition: status "True" when `ok`, else "False"; lastTransitionTime empty (the
// status writers keep a condition's previous time while its status is unchanged).
meshlet::gateway::Condition MakeCondition(absl::string_view type, bool ok, absl::string_view reason,
                                          const std::string& message, int64_t generation);

// Whether a listener's hostname and a route's hostname intersect: equal, or one a "*." wildcard
// whose suffix (one or more labels) the other ends with; an empty hostname matches every one.
// Case-insensitive, as DNS names are.
bool HostnamesIntersect(absl::string_view listener, absl::string_view route);

// Whether the GatewayClass `name` is meshlet's (its controllerName is kGatewayControllerName).
bool IsMeshletClass(const policy::PolicySnapshot& policy, const std::string& name);

// Which of two objects asking for the same thing (a Gateway's address, a BackendTLSPolicy's
// target) takes it, as the Gateway API orders conflicts: the older by creationTimestamp, then the
// first by namespace/name.
bool TakesPrecedence(const meshlet::policy::ObjectMeta& a, const meshlet::policy::ObjectMeta& b);

// The Gateway a route's parentRef names when it is one of meshlet's (group
// gateway.networking.k8s.io and kind Gateway, defaulted; its gatewayClassName a GatewayClass with
// kGatewayControllerName), else null. `route_ns` defaults the parentRef's namespace. The pointer
// is into `policy`.
const meshlet::gateway::Gateway* FindMeshletGateway(const policy::PolicySnapshot& policy,
                                                    const meshlet::gateway::ParentReference& ref,
                                                    const std::string& route_ns);

// How a route's parentRef attaches to a Gateway: the indexes of the listeners (spec.listeners
// order) it attaches to, or why none (the Gateway API's Accepted reasons, in this order of
// checks): NoMatchingParent (no listener has the parentRef's sectionName and port, or those that
// do are not usable: conflicted, unsupported or with unresolved references),
// NotAllowedByListeners (no such listener allows the route's kind and namespace),
// NoMatchingListenerHostname (none of those has a hostname intersecting the route's).
struct ListenerAttachment {
  std::vector<int> listeners;  // empty when `reason` is set
  std::string reason;
  std::string message;
};
ListenerAttachment AttachToGateway(const policy::PolicySnapshot& policy,
                                   const GatewayEnvironment& env,
                                   const meshlet::gateway::Gateway& gateway,
                                   absl::string_view route_kind, const std::string& route_ns,
                                   const google::protobuf::RepeatedPtrField<std::string>& hostnames,
                                   const meshlet::gateway::ParentReference& ref);

// Whether each listener of `gateway` (spec.listeners order) can be served: Accepted, ResolvedRefs
// and not Conflicted (what the listener status says).
std::vector<bool> UsableListeners(const policy::PolicySnapshot& policy,
                                  const GatewayEnvironment& env,
                                  const meshlet::gateway::Gateway& gateway);

// The Secrets the control plane reads for `policy`'s Gateways: each certificateRef of kind Secret
// of an HTTPS listener of one of meshlet's Gateways, in the Gateway's namespace or granted to it
// by a ReferenceGrant (a reference that could not be served is not read), as (namespace, name).
std::set<GatewayEnvironment::Key> GatewaySecretRefs(const policy::PolicySnapshot& policy);

struct GatewayClassStatusUpdate {
  std::string name;
  int64_t generation = 0;
  meshlet::gateway::GatewayClassStatus status;
};

struct GatewayStatusUpdate {
  std::string namespace_;
  std::string name;
  int64_t generation = 0;
  meshlet::gateway::GatewayStatus status;
};

struct GatewayStatuses {
  std::vector<GatewayClassStatusUpdate> classes;  // policy.gateway_classes order
  std::vector<GatewayStatusUpdate> gateways;      // policy.gateways order
};

// The status of every GatewayClass with kGatewayControllerName (Accepted True) and of every
// Gateway of those classes (others get none):
//   Gateway   Accepted      True/Accepted; True/ListenersNotValid (some listeners are not
//                           usable); False/ListenersNotValid (none is); False/UnsupportedAddress
//                           (an address of a type other than IPAddress); False/InvalidParameters
//                           (spec.infrastructure.parametersRef, or an infrastructure key
//                           meshlet's own: inject::CheckInfrastructureKey)
//             Programmed    True/Programmed (accepted, and gateway proxies serve it:
//                           status.addresses are its usable static addresses, and the proxies'
//                           own when spec.addresses is empty or has one without a value);
//                           False/Invalid (not accepted); False/AddressNotUsable (a static
//                           address is not an IP address or not in env.address_ranges);
//                           False/Pending (no gateway proxy serves it)
//   listener  Accepted      True/Accepted; False/UnsupportedProtocol (not HTTP or HTTPS, or an
//                           HTTPS tls.mode other than Terminate); False/PortUnavailable (a port
//                           out of 1..65535)
//             Programmed    True/Programmed; False/Invalid (the listener is not usable);
//                           False/Pending (usable, but no gateway proxy serves the Gateway)
//             ResolvedRefs  True/ResolvedRefs; False/InvalidRouteKinds (allowedRoutes.kinds
//                           names a kind meshlet does not route); False/InvalidCertificateRef
//                           (HTTPS without certificateRefs, a reference that is not a Secret, a
//                           Secret that does not exist or is not kubernetes.io/tls);
//                           False/RefNotPermitted (another namespace's Secret without a
//                           ReferenceGrant)
//             Conflicted    False/NoConflicts; True/ProtocolConflict (another listener on its
//                           port has another protocol); True/HostnameConflict (another on its
//                           port has the same protocol and hostname) — every listener of a
//                           conflict is marked
//   attachedRoutes: the routes (HTTPRoute and GRPCRoute) attached to the listener, supportedKinds
//   the route kinds it takes. Each condition's observedGeneration is the object's
//   metadata.generation; lastTransitionTime is left empty for the writer.
GatewayStatuses ComputeGatewayStatuses(const policy::PolicySnapshot& policy,
                                       const GatewayEnvironment& env);

}  // namespace meshlet::controlplane::translate
