#pragma once

// The Kubernetes objects that run a meshlet Gateway's proxy (docs/gateway.md, "Deployment"), as
// Istio's automated gateway deployment names them: a ServiceAccount, a Deployment and a Service,
// each named `<gateway name>-<gatewayClassName>` in the Gateway's namespace. The Deployment's pod
// runs one container, `meshlet-proxy`, built like an injected sidecar's (containers.h: the same
// control plane, trust bundle, credential, resources and securityContext) but as the Gateway's
// proxy: `--gateway NS/NAME`, no service, no capture, no init container, the Pod Security
// `restricted` level, the listeners' ports as container ports (the unprivileged-port sysctl when
// one is below 1024). The pod opts out of injection. The Service selects the pod by the label
// gateway.networking.k8s.io/gateway-name and exposes each listener port; its type is the
// Gateway's annotation gateway.meshlet.io/service-type, LoadBalancer by default.
//
// Every object carries the labels app.kubernetes.io/managed-by=meshlet and
// gateway.networking.k8s.io/gateway-name, and the Gateway's spec.infrastructure labels and
// annotations (also on the pod template; a key meshlet relies on is refused, see
// CheckInfrastructureKey); the annotations kInfrastructureLabelsAnnotation and
// kInfrastructureAnnotationsAnnotation list the keys copied so that a key the Gateway drops can be
// removed. The Gateway's static addresses are the Service's spec.externalIPs (ADR 0105). The
// caller adds the owner reference (the Gateway's uid is the API server's). Plain functions; no
// state.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/inject/inject.h"

namespace meshlet::controlplane::inject {

inline constexpr char kGatewayNameLabel[] = "gateway.networking.k8s.io/gateway-name";
inline constexpr char kManagedByLabel[] = "app.kubernetes.io/managed-by";
inline constexpr char kServiceTypeAnnotation[] = "gateway.meshlet.io/service-type";
inline constexpr char kInfrastructureLabelsAnnotation[] =
    "gateway.meshlet.io/infrastructure-labels";
inline constexpr char kInfrastructureAnnotationsAnnotation[] =
    "gateway.meshlet.io/infrastructure-annotations";

struct GatewayDeploymentSpec {
  std::string namespace_;      // the Gateway's
  std::string name;            // the Gateway's
  std::string class_name;      // its gatewayClassName
  std::vector<int32_t> ports;  // its listeners' ports (repeats allowed)
  // The Gateway's annotations (kServiceTypeAnnotation).
  std::map<std::string, std::string> annotations;
  // Its spec.infrastructure labels and annotations, copied onto every object.
  std::map<std::string, std::string> infrastructure_labels;
  std::map<std::string, std::string> infrastructure_annotations;
  // Its usable static addresses (IP addresses, canonical text): the Service's externalIPs.
  std::vector<std::string> addresses;
};

// Whether a spec.infrastructure label or annotation key (`what`: "labels" or "annotations") may
// be copied: not one meshlet relies on (gateway.networking.k8s.io/..., app.kubernetes.io/
// managed-by, a key of the meshlet.io domain or a subdomain of it). The error
// (InvalidArgument) names the field and the key.
absl::Status CheckInfrastructureKey(absl::string_view what, absl::string_view key);

// "<name>-<class>": the ServiceAccount, Deployment and Service name (and the proxy's identity,
// spiffe://<domain>/ns/<namespace>/sa/<name>-<class>).
std::string GatewayDeploymentName(const GatewayDeploymentSpec& gateway);

// The ServiceAccount, Deployment and Service, in that order (JSON-compatible nodes). Errors
// (InvalidArgument, naming the Gateway and the field): a name over 63 characters, no listener
// port, a service type other than ClusterIP, NodePort and LoadBalancer, an infrastructure key
// CheckInfrastructureKey refuses. `options` as for Inject
// (the webhook's: image, control plane, identity, trust domain, revision); mode and capture are
// not read.
absl::StatusOr<std::vector<YAML::Node>> GatewayManifests(const GatewayDeploymentSpec& gateway,
                                                         const Options& options);

}  // namespace meshlet::controlplane::inject
