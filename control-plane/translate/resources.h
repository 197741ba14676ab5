#pragma once

// What a translation takes and gives (translator.h translates): the options, one node's
// resources, the names of their types on the wire and of the trust bundle Secret. Plain data, no
// behaviour; shared by the translator's interface and the files of its steps (translation.h).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/net/ip_prefix.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "xds/node.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::translate {

using policy::PolicySnapshot;
using registry::RegistrySnapshot;

// Type URLs for google.protobuf.Any, as the ADS server and sidecar use them.
inline constexpr absl::string_view kListenerType = "type.googleapis.com/meshlet.xds.Listener";
inline constexpr absl::string_view kRouteType =
    "type.googleapis.com/meshlet.xds.RouteConfiguration";
inline constexpr absl::string_view kClusterType = "type.googleapis.com/meshlet.xds.Cluster";
inline constexpr absl::string_view kEndpointType =
    "type.googleapis.com/meshlet.xds.ClusterLoadAssignment";
inline constexpr absl::string_view kSecretType = "type.googleapis.com/meshlet.xds.Secret";

// One node's resources, each list ordered by name.
struct NodeResources {
  std::vector<xds::Listener> listeners;
  std::vector<xds::RouteConfiguration> routes;
  // For a node that reads them (capability service-routes): one per Service port, joining the
  // route configuration "outbound" and its capture listener (docs/xds.md, "Service routes").
  std::vector<xds::ServiceRoute> service_routes;
  std::vector<xds::Cluster> clusters;
  std::vector<xds::ClusterLoadAssignment> endpoints;
  std::vector<xds::Secret> secrets;
  // Warnings that did not stop translation (e.g. an HTTPRoute backend naming a missing Service:
  // that rule answers 503 until the Service exists). Ordered, for logs and proxy-config.
  std::vector<std::string> warnings;
  // ServiceRoutes above TranslateOptions::max_resource_bytes, replaced by one answering 503.
  uint64_t oversized_service_routes = 0;
};

// Where an outbound cluster "outbound|<port>|<subset>|<svc>.<ns>" comes from: what
// MeshTranslator::TranslateClusters needs to build it again.
struct ClusterOrigin {
  std::pair<std::string, std::string> service;  // (namespace, name)
  uint32_t port = 0;
  std::map<std::string, std::string> subset;
  bool opaque = false;  // the TCP twin of an AUTO port
};

// One node as a translation serves it: its Node and what its stream allows (ADR 0086). Views the
// caller's objects, which must outlive the call it is passed to.
struct NodeInput {
  // A node on a state-of-the-world stream, holding no lookups. Implicit, so a Node stands for it.
  NodeInput(const xds::Node& node) : node(node) {}  // NOLINT(google-explicit-constructor)
  NodeInput(const xds::Node& node, bool delta,
            const std::set<std::pair<std::string, std::string>>* discovered = nullptr)
      : node(node), delta(delta), discovered(discovered) {}

  const xds::Node& node;
  // The stream is delta: a node reading capabilities on-demand and service-routes may then look
  // Services up over it, and is served the OnDemand mode when configured so (EffectiveMode).
  bool delta = false;
  // The Services (namespace, name) the node's lookup keys discovered: an OnDemand node is pushed
  // them beside its declared ones. Ignored in other modes. Null: none.
  const std::set<std::pair<std::string, std::string>>* discovered = nullptr;
};

inline constexpr size_t kDefaultMaxResourceBytes = 1 << 20;
inline constexpr size_t kDefaultMaxOnDemandServices = 1024;

// A Secret a Gateway listener's tls.certificateRefs may name, as the control plane read it.
struct GatewayCertificate {
  std::string type;       // the Secret's type ("kubernetes.io/tls")
  std::string chain_pem;  // tls.crt
  std::string key_pem;    // tls.key
  // Why it cannot be served (a key that does not match, a CA leaf, no PEM); empty: it can.
  std::string error;
  bool operator==(const GatewayCertificate&) const = default;
};
using GatewayCertificates =
    std::map<std::pair<std::string, std::string>, GatewayCertificate>;  // (namespace, name)

// A ConfigMap a BackendTLSPolicy's caCertificateRefs may name, as the control plane read it.
struct BackendCaBundle {
  std::string pem;  // data["ca.crt"]: PEM certificates
  // Why it cannot be used (no ca.crt, not PEM certificates); empty: it can.
  std::string error;
  bool operator==(const BackendCaBundle&) const = default;
};
using BackendCaBundles =
    std::map<std::pair<std::string, std::string>, BackendCaBundle>;  // (namespace, name)
// The key of BackendCaBundles holding the system's CA certificates (the control plane's
// --system-ca-file), which a BackendTLSPolicy's wellKnownCACertificates: System names; no
// ConfigMap has an empty namespace.
inline const std::pair<std::string, std::string> kSystemCaBundle{"", "System"};

struct TranslateOptions {
  std::string cluster_domain = "cluster.local";
  // Host the inbound listener forwards to (the local app).
  std::string local_app_host = "127.0.0.1";
  // Address the inbound listener binds without capture ("0.0.0.0"; loopback tests use
  // "127.0.0.1"). The outbound listener binds loopback whatever this says.
  std::string listen_host = "0.0.0.0";
  // The mesh trust bundle (the CA's roots, PEM). Set: nodes with a workload certificate receive
  // it as the Secret kTrustBundleSecret and verify peers against it, so a root rotation reaches
  // them over xDS. Empty: they verify against the bundle that came with their certificate.
  std::string trust_bundle_pem;
  // The CA's trust domain (--trust-domain): the mesh's workload ids are in it unless MeshConfig
  // names another (spec.trustDomain). Empty: cluster.local.
  std::string trust_domain;
  // Step 4 of a CA rotation (control-plane/ca/rotation.h): the trust-bundle Secret's renewal
  // round (xds::CertificateRenewal). Empty signer: none.
  std::string renewal_signer;
  uint32_t renewal_round = 0;
  uint32_t renewal_window_seconds = 0;
  // SPIFFE federation: foreign trust domain -> its roots (PEM), on the trust-bundle Secret.
  std::map<std::string, std::string> federated_bundles;
  // Trust domains whose ids are this mesh's own (a move from one trust domain to another): on
  // the trust-bundle Secret, and AuthorizationPolicy principals match across them.
  std::vector<std::string> trust_domain_aliases;
  // RequestAuthentication jwksUris: URI -> the last good JWKS the control plane fetched (ADR
  // 0098). An issuer whose URI has none yet is sent with keys_unavailable (its tokens are
  // refused, its output headers still stripped).
  std::map<std::string, std::string> jwks;
  // The Secrets Gateways' certificateRefs name (only those), read by the control plane; nullopt:
  // Secrets are not read, so no HTTPS listener of a gateway proxy is served.
  std::optional<GatewayCertificates> gateway_certificates;
  // The ConfigMaps BackendTLSPolicies' caCertificateRefs name (only those), read by the control
  // plane; nullopt: ConfigMaps are not read, so no BackendTLSPolicy has a CA (connections to the
  // Service ports it targets fail).
  std::optional<BackendCaBundles> backend_ca_bundles;
  // Each namespace's labels (Kubernetes), for Gateways' allowedRoutes `from: Selector`; a
  // namespace not listed has none.
  std::map<std::string, std::map<std::string, std::string>> namespace_labels;
  // The addresses Gateways' spec.addresses may request (--gateway-addresses; gateway_status.h).
  std::vector<net::IpPrefix> gateway_address_ranges;
  // The largest ServiceRoute sent (serialized bytes); a larger one (thousands of routes for one
  // Service port) is replaced by one answering 503. 0: no limit.
  size_t max_resource_bytes = kDefaultMaxResourceBytes;
  // The most Services an OnDemand node's lookup keys add to what it is pushed; a key of one more
  // is answered missing (KeyResult::kOverLimit) until the node unsubscribes others.
  size_t max_on_demand_services = kDefaultMaxOnDemandServices;

  bool operator==(const TranslateOptions&) const = default;
};

// The Secret carrying TranslateOptions::trust_bundle_pem.
// (pointer and length: the pointer-only constructor's null test is not a constant expression
// under -fsanitize=undefined)
inline constexpr absl::string_view kTrustBundleSecret{xds::kMeshTrustBundleSecret,
                                                      sizeof(xds::kMeshTrustBundleSecret) - 1};

}  // namespace meshlet::controlplane::translate
