#pragma once

// BackendTLSPolicy (Gateway API v1, xds/gateway.proto; docs/gateway.md, "BackendTLSPolicy"):
// which policy decides the TLS a proxy originates to a Service port, what that TLS is (SNI, the
// CA certificates from ConfigMaps, the subjectAltNames), and the policy's status. Pure functions
// of the policy snapshot and the ConfigMaps the control plane read (BackendCaBundles); the same
// inputs give the same result, nothing is written anywhere. Any thread.
//
// Precedence: policies of a Service's namespace target it by name, with or without a
// sectionName (a port's name). Two policies targeting the same Service and sectionName conflict:
// the older by metadata.creationTimestamp, then the first by namespace/name, takes the target;
// the other is Accepted False, Conflicted, and applies nowhere. A port takes the policy naming
// its sectionName, else the one naming the Service without a sectionName.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "control-plane/policy/route_status.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/resources.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::translate {

// The xDS Secret carrying the CA certificates of a BackendTLSPolicy ("backend-tls/NS/NAME"):
// its trust_bundle_pem only.
std::string BackendTlsSecretName(const std::string& policy_namespace,
                                 const std::string& policy_name);
inline constexpr absl::string_view kBackendTlsSecretPrefix = "backend-tls/";
// The xDS Secret every policy with wellKnownCACertificates: System shares: the system's CA
// certificates (some 200 KiB) are sent and held once per proxy, not once per policy.
inline constexpr absl::string_view kBackendTlsSystemSecret = "backend-tls/system";

// What a BackendTLSPolicy resolves to.
struct BackendTlsState {
  // Another policy took its target (Accepted False, Conflicted): it applies nowhere.
  bool conflicted = false;
  std::string conflict_message;
  // The first caCertificateRef that does not resolve: InvalidKind (not a core ConfigMap) or
  // InvalidCACertificateRef (no such ConfigMap, no ca.crt, not PEM certificates), with why;
  // empty reason: all resolve.
  std::string refs_reason;
  std::string refs_message;
  // The PEM certificates of the refs that resolve, concatenated, or the system's for
  // wellKnownCACertificates: System (BackendCaBundles' kSystemCaBundle); empty: none (Accepted
  // False, NoValidCACertificate; connections through it fail).
  std::string ca_pem;
  // Why wellKnownCACertificates has no certificates (no system bundle read, or it failed).
  std::string well_known_message;
};
BackendTlsState EvaluateBackendTls(const policy::PolicySnapshot& policy,
                                   const std::optional<BackendCaBundles>& bundles,
                                   const meshlet::gateway::BackendTLSPolicy& tls_policy);

// The policy deciding the TLS towards port `port_name` of Service `service_namespace`/`service`
// (null: none; mesh mTLS or plaintext as before). A conflicted policy never decides.
const meshlet::gateway::BackendTLSPolicy* BackendTlsPolicyFor(const policy::PolicySnapshot& policy,
                                                              const std::string& service_namespace,
                                                              const std::string& service,
                                                              const std::string& port_name);

// The ConfigMaps caCertificateRefs name (kind ConfigMap, group ""), in the policies' namespaces,
// as (namespace, name): what the control plane reads.
std::set<std::pair<std::string, std::string>> BackendCaConfigMapRefs(
    const policy::PolicySnapshot& policy);

// One update (kind "BackendTLSPolicy") per policy of `policy.backend_tls_policies`, in their
// order, with one entry per ancestor: each of meshlet's Gateways (gateway_status.h) with a route
// (HTTPRoute or GRPCRoute) attached whose backendRefs name a Service the policy targets, ordered
// by (namespace, name); `parent_ref` is the ancestorRef (group gateway.networking.k8s.io, kind
// Gateway, namespace, name), controllerName meshlet.io/gateway-controller, and
//   Accepted      True/Accepted; False/Conflicted (another policy takes the target);
//                 False/NoValidCACertificate (no caCertificateRef resolves, or
//                 wellKnownCACertificates other than System, or System without the
//                 system's bundle)
//   ResolvedRefs  True/ResolvedRefs; False/InvalidKind or InvalidCACertificateRef (the first
//                 that does not resolve, named in the message)
// each with observedGeneration = metadata.generation. A policy no Gateway reaches gets no entry.
std::vector<policy::RouteStatusUpdate> ComputeBackendTlsStatuses(
    const policy::PolicySnapshot& policy, const GatewayEnvironment& env);

}  // namespace meshlet::controlplane::translate
