#include "control-plane/inject/gateway_deployment.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/inject/containers.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_model.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::inject {
namespace {

// Ports below it need the unprivileged-port sysctl for the proxy's UID to bind them.
constexpr int32_t kFirstUnprivilegedPort = 1024;

// The infrastructure labels and annotations onto `metadata` (meshlet's own labels set after).
void AddInfrastructure(const GatewayDeploymentSpec& gateway, YAML::Node& metadata) {
  for (const auto& [key, value] : gateway.infrastructure_labels) {
    metadata["labels"][key] = StringNode(value);
  }
  for (const auto& [key, value] : gateway.infrastructure_annotations) {
    metadata["annotations"][key] = StringNode(value);
  }
}

std::string Keys(const std::map<std::string, std::string>& map) {
  std::vector<std::string> keys;
  for (const auto& entry : map) keys.push_back(entry.first);
  return absl::StrJoin(keys, ",");
}

YAML::Node Metadata(const GatewayDeploymentSpec& gateway, const std::string& name) {
  YAML::Node metadata = MapNode();
  metadata["name"] = StringNode(name);
  metadata["namespace"] = StringNode(gateway.namespace_);
  AddInfrastructure(gateway, metadata);
  metadata["labels"][kManagedByLabel] = StringNode("meshlet");
  metadata["labels"][kGatewayNameLabel] = StringNode(gateway.name);
  if (!gateway.infrastructure_labels.empty()) {
    metadata["annotations"][kInfrastructureLabelsAnnotation] =
        StringNode(Keys(gateway.infrastructure_labels));
  }
  if (!gateway.infrastructure_annotations.empty()) {
    metadata["annotations"][kInfrastructureAnnotationsAnnotation] =
        StringNode(Keys(gateway.infrastructure_annotations));
  }
  return metadata;
}

YAML::Node Object(absl::string_view api_version, absl::string_view kind,
                  const GatewayDeploymentSpec& gateway, const std::string& name) {
  YAML::Node object = MapNode();
  object["apiVersion"] = StringNode(api_version);
  object["kind"] = StringNode(kind);
  object["metadata"] = Metadata(gateway, name);
  return object;
}

absl::Status Error(const GatewayDeploymentSpec& gateway, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("Gateway ", gateway.namespace_, "/", gateway.name, ": ", what));
}

}  // namespace

absl::Status CheckInfrastructureKey(absl::string_view what, absl::string_view key) {
  const size_t slash = key.find('/');
  const absl::string_view prefix = slash == absl::string_view::npos ? "" : key.substr(0, slash);
  if (key == kManagedByLabel || prefix == "gateway.networking.k8s.io" || prefix == "meshlet.io" ||
      absl::EndsWith(prefix, ".meshlet.io")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.infrastructure.", what, "[", key,
        "]: the key is meshlet's own (gateway.networking.k8s.io/*, app.kubernetes.io/managed-by, "
        "meshlet.io and its subdomains) and cannot be set by a Gateway"));
  }
  return absl::OkStatus();
}

std::string GatewayDeploymentName(const GatewayDeploymentSpec& gateway) {
  return absl::StrCat(gateway.name, "-", gateway.class_name);
}

absl::StatusOr<std::vector<YAML::Node>> GatewayManifests(const GatewayDeploymentSpec& gateway,
                                                         const Options& options) {
  const std::string name = GatewayDeploymentName(gateway);
  // A Service's name is a DNS label.
  if (name.size() > 63) {
    return Error(gateway, absl::StrCat("the gateway's objects would be named \"", name,
                                       "\", longer than 63 characters; shorten the Gateway's "
                                       "name or its gatewayClassName"));
  }
  std::set<int32_t> ports;
  for (int32_t port : gateway.ports) {
    if (port < 1 || port > 65535) {
      return Error(gateway, absl::StrCat("spec.listeners: port ", port, " is not 1..65535"));
    }
    ports.insert(port);
  }
  if (ports.empty()) return Error(gateway, "spec.listeners: no port to serve");
  for (const auto* map : {&gateway.infrastructure_labels, &gateway.infrastructure_annotations}) {
    for (const auto& entry : *map) {
      absl::Status key = CheckInfrastructureKey(
          map == &gateway.infrastructure_labels ? "labels" : "annotations", entry.first);
      if (!key.ok()) return Error(gateway, key.message());
    }
  }
  std::string service_type = "LoadBalancer";
  if (auto it = gateway.annotations.find(kServiceTypeAnnotation); it != gateway.annotations.end()) {
    service_type = it->second;
    if (service_type != "ClusterIP" && service_type != "NodePort" &&
        service_type != "LoadBalancer") {
      return Error(gateway,
                   absl::StrCat("metadata.annotations[", kServiceTypeAnnotation, "]: \"",
                                service_type, "\" is not ClusterIP, NodePort or LoadBalancer"));
    }
  }

  // The proxy, as injection would write it for a pod of this service account, then made the
  // Gateway's: no service, no capture.
  Plan plan;
  plan.mode = SidecarMode::kClassic;
  plan.image = options.proxy_image;
  plan.join_token = options.identity == Identity::kJoinToken;
  plan.join_token_secret = DefaultJoinTokenSecret(name);
  plan.cpu = options.proxy_cpu;
  plan.memory = options.proxy_memory;
  plan.capture_check_port = 0;
  plan.revision = options.revision;
  plan.control_plane_address = options.control_plane_address;
  plan.control_plane_service_account = options.control_plane_service_account;
  plan.pod_namespace = gateway.namespace_;
  plan.service_account = name;
  Options proxy_options = options;
  proxy_options.cni = true;  // the restricted level's securityContext
  YAML::Node container = ProxyContainer(plan, proxy_options);
  std::vector<std::string> args;
  for (const YAML::Node& arg : container["args"]) {
    const std::string text = arg.as<std::string>();
    if (absl::StartsWith(text, "--node-service=") ||
        absl::StartsWith(text, "--node-label=meshlet.io/capture=")) {
      continue;
    }
    args.push_back(text);
  }
  args.push_back(absl::StrCat("--gateway=", gateway.namespace_, "/", gateway.name));
  container["args"] = StringListNode(args);
  // podman 4.3 publishes every containerPort on the host.
  for (int32_t port : options.podman ? std::set<int32_t>{} : ports) {
    YAML::Node p = MapNode();
    p["containerPort"] = IntNode(port);
    p["protocol"] = StringNode("TCP");
    container["ports"].push_back(p);
  }

  YAML::Node account = Object("v1", "ServiceAccount", gateway, name);

  YAML::Node deployment = Object("apps/v1", "Deployment", gateway, name);
  deployment["spec"]["selector"]["matchLabels"][kGatewayNameLabel] = StringNode(gateway.name);
  YAML::Node pod_metadata = MapNode();
  AddInfrastructure(gateway, pod_metadata);
  pod_metadata["labels"][kGatewayNameLabel] = StringNode(gateway.name);
  pod_metadata["labels"][kManagedByLabel] = StringNode("meshlet");
  pod_metadata["labels"][kInjectKey] = StringNode("false");  // the proxy is the pod's container
  if (!options.revision.empty()) {
    pod_metadata["labels"][kRevisionLabel] = StringNode(options.revision);
  }
  YAML::Node pod = MapNode();
  pod["serviceAccountName"] = StringNode(name);
  if (*ports.begin() < kFirstUnprivilegedPort) {
    YAML::Node sysctl = MapNode();
    sysctl["name"] = StringNode("net.ipv4.ip_unprivileged_port_start");
    sysctl["value"] = StringNode("0");
    pod["securityContext"]["sysctls"].push_back(sysctl);
  }
  pod["securityContext"]["runAsNonRoot"] = BoolNode(true);
  pod["securityContext"]["seccompProfile"]["type"] = StringNode("RuntimeDefault");
  pod["containers"].push_back(container);
  for (YAML::Node& volume : Volumes(plan, options)) pod["volumes"].push_back(volume);
  deployment["spec"]["template"]["metadata"] = pod_metadata;
  deployment["spec"]["template"]["spec"] = pod;

  YAML::Node service = Object("v1", "Service", gateway, name);
  service["spec"]["type"] = StringNode(service_type);
  service["spec"]["selector"][kGatewayNameLabel] = StringNode(gateway.name);
  if (!gateway.addresses.empty())
    service["spec"]["externalIPs"] = StringListNode(gateway.addresses);
  for (int32_t port : ports) {
    YAML::Node p = MapNode();
    p["name"] = StringNode(absl::StrCat("port-", port));
    p["port"] = IntNode(port);
    p["targetPort"] = IntNode(port);
    p["protocol"] = StringNode("TCP");
    service["spec"]["ports"].push_back(p);
  }
  return std::vector<YAML::Node>{account, deployment, service};
}

}  // namespace meshlet::controlplane::inject
