#pragma once

// meshlet-cni, a chained CNI plugin (CNI spec 1.0.0 and 0.4.0): on ADD for a pod that injection
// marked for capture by the plugin, it programs the pod's traffic capture in the pod's network
// namespace with the same code and the same arguments as the meshlet-init container
// (common/capture builds the arguments from the pod's annotations, sidecar/capture parses and
// applies them). docs/adr/0094-cni-plugin-capture.md is the design: where pod settings come
// from, idempotency, the failure policy.
//
// RunPlugin() is one invocation: the CNI_* environment and the network configuration on stdin in,
// the result (or error) JSON and one log line out. What it touches outside (the API server, the
// network namespace, iptables) goes through Host, so every path is unit-tested with fakes.
//
// Single-threaded; RunPlugin() may enter another network namespace (Host::enter_netns) and does not
// come back: one invocation per process, as CNI runs plugins.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sidecar/capture/iptables.h"
#include "sidecar/capture/rules.h"

namespace meshlet::cni {

inline constexpr char kPluginType[] = "meshlet-cni";
// The versions this plugin speaks, oldest first; VERSION lists them.
inline constexpr const char* kSupportedVersions[] = {"0.4.0", "1.0.0"};
// The runtimeConfig key under which containerd (capability io.kubernetes.cri.pod-annotations)
// passes the pod's annotations.
inline constexpr char kPodAnnotationsCapability[] = "io.kubernetes.cri.pod-annotations";
// The most stdin the plugin reads: a network configuration with its prevResult.
inline constexpr size_t kMaxConfigBytes = 1 << 20;

// CNI error codes: 1-99 are the spec's, 100 and up this plugin's own.
enum ErrorCode : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnvironment = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kCaptureFailed = 100,          // the rules could not be installed (ADD) or are not there (CHECK)
  kPodMetadataUnreadable = 101,  // the API server refused, does not know the pod, or is not trusted
  kBadCaptureAnnotations = 102,  // an injected pod's traffic.meshlet.io/* annotations are invalid
};

struct CniError {
  int code = kInvalidConfig;
  std::string msg;      // one sentence: what failed
  std::string details;  // the underlying error, what to do
};

// The CNI_* environment variables of one invocation.
struct Invocation {
  std::string command;       // CNI_COMMAND: ADD, DEL, CHECK, VERSION
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS: a path such as /var/run/netns/NAME
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS: "K=V;K=V"
};
Invocation InvocationFromEnvironment(const std::function<const char*(const char*)>& getenv);

// How the plugin reaches the API server (the node agent writes the files): GET of the Pod with a
// bearer token, the server verified against the CA and by name.
struct KubernetesSettings {
  std::string server;  // https://HOST:PORT
  std::string ca_file;
  std::string token_file;
  absl::Duration timeout = absl::Seconds(5);
  size_t max_pod_bytes = 4 << 20;
};

enum class MetadataErrorPolicy {
  kFail,  // the pod's sandbox fails (the runtime retries): no pod runs uncaptured
  kSkip,  // the pod passes through uncaptured (its sidecar's capture check keeps it not ready)
};

// The network configuration (stdin) with meshlet-cni's own fields:
//   "excludeNamespaces": ["kube-system"]   pods of these namespaces pass through untouched
//   "logFile": "/var/log/meshlet-cni.log"  one line per invocation is appended ("" stderr only)
//   "kubernetes": {"server", "caFile", "tokenFile", "timeoutSeconds", "maxPodBytes"}
//   "onMetadataError": "fail" | "skip"
//   "defaultNamespace": "mesh"   the namespace of pods the runtime names by K8S_POD_NAME alone
//                                (podman's CNI backend passes no K8S_POD_NAMESPACE); unset, such
//                                pods pass through. The API server not knowing such a pod is
//                                not an error: it passes through (the runtime runs containers
//                                that are no Kubernetes pods).
// and the runtime's: cniVersion, name, type, prevResult, runtimeConfig (kPodAnnotationsCapability).
struct PluginConfig {
  std::string cni_version;
  std::string name;
  std::string type;
  std::vector<std::string> exclude_namespaces = {"kube-system"};
  std::string log_file;
  std::optional<KubernetesSettings> kubernetes;
  MetadataErrorPolicy on_metadata_error = MetadataErrorPolicy::kFail;
  std::string default_namespace;
  std::optional<std::map<std::string, std::string>> pod_annotations;  // from runtimeConfig
  std::optional<std::string> prev_result;                             // as it came
};
// False and `*error` (code 6, 7 or 1, naming the field) when the configuration is not usable.
bool ParseConfig(absl::string_view json, PluginConfig* config, CniError* error);

// The pod CNI_ARGS names (K8S_POD_NAMESPACE and K8S_POD_NAME), if it names one; with only
// K8S_POD_NAME, the pod of that name in `default_namespace` (when not empty).
struct PodRef {
  std::string pod_namespace;
  std::string name;
  bool namespace_defaulted = false;  // the namespace is `default_namespace`, not from CNI_ARGS
};
std::optional<PodRef> PodFromArgs(absl::string_view cni_args,
                                  absl::string_view default_namespace = "");

// What the annotations say about one pod: capture it (with these `sidecar init` arguments and
// options) or leave it alone (and why).
struct Decision {
  bool capture = false;
  std::string reason;
  std::vector<std::string> init_args;
  sidecar::capture::CaptureOptions options;
};
// False and `*error` (kBadCaptureAnnotations) when the pod is marked for capture but its capture
// annotations are invalid.
bool Decide(const std::map<std::string, std::string>& annotations, Decision* decision,
            CniError* error);

// {"cniVersion":..., "code":..., "msg":..., "details":...}
std::string ErrorJson(absl::string_view cni_version, const CniError& error);
// {"cniVersion":..., "supportedVersions":[...]}: `requested` when supported, else the newest.
std::string VersionJson(absl::string_view requested);
// ADD's result: `prev_result` as it came, with "cniVersion" added first when it has none.
std::string AddResult(absl::string_view cni_version, absl::string_view prev_result);

// What RunPlugin() does outside the process.
struct Host {
  std::function<absl::StatusOr<std::map<std::string, std::string>>(const KubernetesSettings&,
                                                                   const PodRef&)>
      pod_annotations;
  // Moves this process into the network namespace at the path; NotFound when there is none.
  std::function<absl::Status(const std::string& path)> enter_netns;
  // sidecar::capture::Execute with the system's tools.
  std::function<absl::Status(const sidecar::capture::CaptureOptions&, sidecar::capture::Action,
                             std::string* log)>
      execute;
  // The time for log lines.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

struct RunResult {
  int exit_code = 0;  // 0, or 1 with an error JSON on stdout
  std::string stdout_text;
  // One line (no newline): the time, the command, the pod, the outcome (captured, skipped,
  // checked, removed, failed) and why. The node agent counts outcomes from these lines.
  std::string log_line;
  std::string log_file;     // where the line also goes ("" stderr only)
  std::string execute_log;  // what the capture code ran, for the log file
};
RunResult RunPlugin(const Invocation& invocation, absl::string_view stdin_text, const Host& host);

}  // namespace meshlet::cni
