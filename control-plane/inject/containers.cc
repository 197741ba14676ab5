#include "control-plane/inject/containers.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/capture/annotations.h"
#include "control-plane/inject/probes.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr char kTrustDir[] = "/var/run/meshlet/trust";
constexpr char kTokenDir[] = "/var/run/meshlet/token";
constexpr char kJoinTokenDir[] = "/var/run/meshlet/join-token";
constexpr char kDataDir[] = "/var/lib/meshlet";
constexpr char kTrustBundleKey[] = "ca.pem";
constexpr char kJoinTokenKey[] = "token";
constexpr char kMetricsPortName[] = "meshlet-metrics";

YAML::Node Resources(const Plan& plan) {
  YAML::Node resources = MapNode();
  resources["requests"]["cpu"] = StringNode(plan.cpu);
  resources["requests"]["memory"] = StringNode(plan.memory);
  if (!plan.cpu_limit.empty()) resources["limits"]["cpu"] = StringNode(plan.cpu_limit);
  if (!plan.memory_limit.empty()) resources["limits"]["memory"] = StringNode(plan.memory_limit);
  return resources;
}

YAML::Node Mount(absl::string_view volume, absl::string_view path, bool read_only) {
  YAML::Node mount = MapNode();
  mount["name"] = StringNode(volume);
  mount["mountPath"] = StringNode(path);
  if (read_only) mount["readOnly"] = BoolNode(true);
  return mount;
}

YAML::Node FieldEnv(absl::string_view name, absl::string_view field_path) {
  YAML::Node env = MapNode();
  env["name"] = StringNode(name);
  env["valueFrom"]["fieldRef"]["fieldPath"] = StringNode(field_path);
  return env;
}

YAML::Node ValueEnv(absl::string_view name, absl::string_view value) {
  YAML::Node env = MapNode();
  env["name"] = StringNode(name);
  env["value"] = StringNode(value);
  return env;
}

// The proxy's --trace-collector: the option's, else the control plane over its discovery port;
// "" for none.
std::string TraceCollector(const Options& options) {
  if (options.trace_collector == kTraceCollectorOff) return "";
  if (!options.trace_collector.empty()) return options.trace_collector;
  return kTraceCollectorControlPlane;
}

// The plan's control plane (a Plan made by hand has none: the options').
const std::string& ControlPlaneAddress(const Plan& plan, const Options& options) {
  return plan.control_plane_address.empty() ? options.control_plane_address
                                            : plan.control_plane_address;
}

}  // namespace

YAML::Node InitContainer(const Plan& plan) {
  // The arguments the CNI plugin builds from the same annotations (common/capture).
  std::vector<std::string> args = {"init"};
  for (std::string& arg : capture::BaseInitArgs()) args.push_back(std::move(arg));
  for (const auto& [flag, value] : plan.capture_flags)
    args.push_back(absl::StrCat(flag, "=", value));
  YAML::Node c = MapNode();
  c["name"] = StringNode(kInitContainerName);
  c["image"] = StringNode(plan.image);
  c["command"] = StringListNode({kProxyCommand});
  c["args"] = StringListNode(args);
  c["resources"] = Resources(plan);
  YAML::Node security = MapNode();
  // Root with NET_ADMIN and NET_RAW to program the pod's iptables; nothing else.
  security["runAsUser"] = IntNode(0);
  security["runAsGroup"] = IntNode(0);
  security["runAsNonRoot"] = BoolNode(false);
  security["allowPrivilegeEscalation"] = BoolNode(false);
  security["privileged"] = BoolNode(false);
  security["readOnlyRootFilesystem"] = BoolNode(false);  // iptables takes a lock under /run
  security["capabilities"]["add"] = StringListNode({"NET_ADMIN", "NET_RAW"});
  security["capabilities"]["drop"] = StringListNode({"ALL"});
  c["securityContext"] = security;
  return c;
}

YAML::Node ProxyContainer(const Plan& plan, const Options& options) {
  // The kubelet expands $(VAR) in arguments from the downward-API environment below; podman 4.3
  // expands nothing and knows only metadata.name, so for it the values are written out, and the
  // pod's name and address are found by the proxy itself (its "auto" values).
  const bool podman = options.podman;
  auto escape = [podman](absl::string_view text) {
    return podman ? std::string(text) : EscapeForArgs(text);
  };
  const std::string& address = ControlPlaneAddress(plan, options);
  const std::string& control_plane_account = plan.control_plane_service_account.empty()
                                                 ? options.control_plane_service_account
                                                 : plan.control_plane_service_account;
  std::vector<std::string> args = {
      podman ? absl::StrCat("--xds=", address) : std::string("--xds=$(MESHLET_CONTROL_PLANE)"),
      absl::StrCat("--xds-ca=", kTrustDir, "/", kTrustBundleKey),
      absl::StrCat("--xds-server-identity=spiffe://", options.trust_domain, "/ns/",
                   options.control_plane_namespace, "/sa/", control_plane_account),
      absl::StrCat("--xds-cache-dir=", kDataDir),
      absl::StrCat("--trust-domain=", options.trust_domain),
      podman ? std::string("--node-id=auto") : "--node-id=$(POD_NAME).$(POD_NAMESPACE)",
      podman ? absl::StrCat("--node-namespace=", plan.pod_namespace)
             : "--node-namespace=$(POD_NAMESPACE)",
      absl::StrCat("--node-service=", escape(plan.service)),
      podman ? absl::StrCat("--node-service-account=", plan.service_account)
             : "--node-service-account=$(SERVICE_ACCOUNT)",
      podman ? std::string("--node-address=auto") : "--node-address=$(POD_IP)",
  };
  // Where the pod runs, for locality-aware balancing: its node, and the node's region and zone,
  // which Kubernetes 1.35 and later copy onto the pod's labels (empty before: the control plane
  // still gives the pod's endpoints their Node's region, but the proxy then prefers only its
  // node, for internalTrafficPolicy: Local).
  // podman has no nodes and no downward API for labels: the pod's own topology labels are
  // written out (no node).
  if (!podman) {
    args.push_back("--node-locality=$(NODE_REGION)/$(NODE_ZONE)/$(NODE_NAME)");
  } else {
    std::string region, zone;
    for (const auto& [key, value] : plan.labels) {
      if (key == "topology.kubernetes.io/region") region = value;
      if (key == "topology.kubernetes.io/zone") zone = value;
    }
    if (!region.empty() || !zone.empty()) {
      args.push_back(absl::StrCat("--node-locality=", region, "/", zone));
    }
  }
  for (int64_t port : plan.ports) args.push_back(absl::StrCat("--node-port=", port));
  bool revision_labelled = false;
  for (const auto& [key, value] : plan.labels) {
    args.push_back(absl::StrCat("--node-label=", escape(key), "=", escape(value)));
    revision_labelled |= key == kRevisionLabel;
  }
  // The revision, for meshctl proxy-status and version: a node label, which every release's
  // sidecar sends.
  if (!plan.revision.empty() && !revision_labelled) {
    args.push_back(absl::StrCat("--node-label=", kRevisionLabel, "=", plan.revision));
  }
  // The pod's traffic is captured (meshlet-init): the control plane sends capture listeners.
  args.push_back("--node-label=meshlet.io/capture=iptables");
  args.push_back(plan.join_token
                     ? absl::StrCat("--join-token-file=", kJoinTokenDir, "/", kJoinTokenKey)
                     : absl::StrCat("--kubernetes-token-file=", kTokenDir, "/token"));
  args.push_back(absl::StrCat("--admin-address=127.0.0.1:", kAdminPort));
  args.push_back(absl::StrCat("--prometheus-address=0.0.0.0:", kPrometheusPort));
  if (std::string collector = TraceCollector(options); !collector.empty()) {
    args.push_back(absl::StrCat("--trace-collector=", collector));
  }
  if (!plan.drain_time.empty()) args.push_back(absl::StrCat("--drain-time=", plan.drain_time));
  if (!plan.log_level.empty()) args.push_back(absl::StrCat("--log-level=", plan.log_level));
  if (plan.capture_check_port != 0) {
    args.push_back(absl::StrCat("--capture-check=", podman ? "auto" : "$(POD_IP)", ":",
                                plan.capture_check_port));
  }
  AppendAppProbeArgs(plan, podman, args);

  YAML::Node c = MapNode();
  c["name"] = StringNode(kProxyContainerName);
  c["image"] = StringNode(plan.image);
  c["command"] = StringListNode({kProxyCommand});
  c["args"] = StringListNode(args);
  YAML::Node env = ListNode();
  env.push_back(FieldEnv("POD_NAME", "metadata.name"));
  if (podman) {
    env.push_back(ValueEnv("POD_NAMESPACE", plan.pod_namespace));
    env.push_back(ValueEnv("SERVICE_ACCOUNT", plan.service_account));
  } else {
    env.push_back(FieldEnv("POD_NAMESPACE", "metadata.namespace"));
    env.push_back(FieldEnv("POD_IP", "status.podIP"));
    env.push_back(FieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"));
    env.push_back(FieldEnv("NODE_NAME", "spec.nodeName"));
    env.push_back(FieldEnv("NODE_REGION", "metadata.labels['topology.kubernetes.io/region']"));
    env.push_back(FieldEnv("NODE_ZONE", "metadata.labels['topology.kubernetes.io/zone']"));
  }
  env.push_back(ValueEnv("MESHLET_CONTROL_PLANE", ControlPlaneAddress(plan, options)));
  c["env"] = env;
  if (!podman) {  // podman 4.3 publishes every containerPort on the host
    YAML::Node port = MapNode();
    port["name"] = StringNode(kMetricsPortName);
    port["containerPort"] = IntNode(kPrometheusPort);
    port["protocol"] = StringNode("TCP");
    c["ports"].push_back(port);
  }
  c["readinessProbe"] = ProxyProbe(2, 3);
  // A native sidecar's startup probe holds the app's containers until the proxy is ready.
  if (plan.mode == SidecarMode::kNative) c["startupProbe"] = ProxyProbe(1, 600);
  c["resources"] = Resources(plan);
  YAML::Node security = MapNode();
  security["runAsUser"] = IntNode(kProxyUid);
  security["runAsGroup"] = IntNode(kProxyUid);
  security["runAsNonRoot"] = BoolNode(true);
  security["allowPrivilegeEscalation"] = BoolNode(false);
  security["privileged"] = BoolNode(false);
  security["readOnlyRootFilesystem"] = BoolNode(true);
  security["capabilities"]["drop"] = StringListNode({"ALL"});
  // The Pod Security `restricted` level also wants a seccomp profile; with meshlet-init (which
  // only `privileged` admits) the pod's own settings are left to decide.
  if (options.cni) security["seccompProfile"]["type"] = StringNode("RuntimeDefault");
  c["securityContext"] = security;
  YAML::Node mounts = ListNode();
  mounts.push_back(Mount(kTrustVolume, kTrustDir, true));
  mounts.push_back(plan.join_token ? Mount(kJoinTokenVolume, kJoinTokenDir, true)
                                   : Mount(kTokenVolume, kTokenDir, true));
  mounts.push_back(Mount(kDataVolume, kDataDir, false));
  c["volumeMounts"] = mounts;
  if (plan.mode == SidecarMode::kNative) c["restartPolicy"] = StringNode("Always");
  return c;
}

std::vector<YAML::Node> Volumes(const Plan& plan, const Options& options) {
  YAML::Node trust = MapNode();
  trust["name"] = StringNode(kTrustVolume);
  trust["configMap"]["name"] = StringNode(options.trust_bundle_config_map);
  YAML::Node item = MapNode();
  item["key"] = StringNode(kTrustBundleKey);
  item["path"] = StringNode(kTrustBundleKey);
  trust["configMap"]["items"].push_back(item);
  // podman 4.3 dereferences a secret volume's `optional` without checking that it is set: the
  // podman form writes it (false, Kubernetes' default) on its volumes rather than leave it out.
  if (options.podman) trust["configMap"]["optional"] = BoolNode(false);

  YAML::Node credential = MapNode();
  if (plan.join_token) {
    credential["name"] = StringNode(kJoinTokenVolume);
    YAML::Node token = MapNode();
    token["key"] = StringNode(kJoinTokenKey);
    token["path"] = StringNode(kJoinTokenKey);
    if (options.podman) {
      // podman 4.3 mounts a Secret's data still base64-encoded and its stringData not at all;
      // a ConfigMap of the same name (meshctl token create -o configmap) it mounts as it is.
      credential["configMap"]["name"] = StringNode(plan.join_token_secret);
      credential["configMap"]["items"].push_back(token);
      credential["configMap"]["optional"] = BoolNode(false);
    } else {
      credential["secret"]["secretName"] = StringNode(plan.join_token_secret);
      credential["secret"]["items"].push_back(token);
    }
  } else {
    credential["name"] = StringNode(kTokenVolume);
    YAML::Node source = MapNode();
    source["serviceAccountToken"]["audience"] = StringNode(options.token_audience);
    source["serviceAccountToken"]["expirationSeconds"] = IntNode(options.token_expiration_seconds);
    source["serviceAccountToken"]["path"] = StringNode("token");
    credential["projected"]["sources"].push_back(source);
  }
  YAML::Node data = MapNode();
  data["name"] = StringNode(kDataVolume);
  data["emptyDir"] = MapNode();
  return {trust, credential, data};
}

}  // namespace meshlet::controlplane::inject
