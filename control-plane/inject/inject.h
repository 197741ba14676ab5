#pragma once

// Sidecar injection (docs/kubernetes.md): adds meshlet to a Pod, to the pod template of a
// Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job or CronJob, or to
// each of those in a List. `meshctl inject` calls it on the documents of manifest files; the
// admission webhook calls it on the Pod of an AdmissionReview (its JSON parses into the same
// YAML::Node model, node.h, and ToJson writes the result back).
//
// What an injected pod gets:
//   - `meshlet-init`, the first init container: `sidecar init` with NET_ADMIN and NET_RAW, as
//     root (the only container that is), programming the pod's iptables capture; its port and
//     CIDR exclusions come from the traffic.meshlet.io/* annotations;
//   - `meshlet-proxy`, the sidecar, running as UID/GID 1337: a native sidecar (an init container
//     with restartPolicy Always, right after meshlet-init, with a startupProbe, so the app starts
//     once the proxy is ready) or, in classic mode, the first regular container; its arguments
//     name the control plane, its trust bundle and identity, and the workload (pod name,
//     namespace, IP and service account from the downward API; the service and version of
//     the workload, by its labels or its controller (workload.h); labels and the app's TCP
//     container ports from the pod; the node label meshlet.io/capture: iptables, which gives it
//     capture listeners; the trace collector, Options::trace_collector);
//   - volumes for the trust bundle (ConfigMap meshlet-trust), the workload credential (a
//     projected service-account token for the audience "meshlet", or a join token from a
//     Secret) and the proxy's xDS cache (emptyDir);
//   - the proxy's --capture-check on the pod's address and kCaptureCheckPort (or the port of the
//     sidecar.meshlet.io/captureCheckPort annotation; "off": none), so it is not ready until
//     the init container's inbound capture is in effect; a port the pod's inbound capture
//     annotations leave uncaptured is an error;
//   - the app containers' HTTP probes (liveness, readiness, startup; httpGet without a host,
//     HTTPS or headers) pointed at the proxy's kPrometheusPort, /app-health/<container>/<kind>,
//     with the original port and path given to the proxy (--app-probe), which asks the app on
//     loopback: the kubelet's plaintext probes keep working under STRICT mTLS. Re-injection
//     restores them from the proxy's arguments first; the annotation
//     sidecar.meshlet.io/rewriteAppProbes: "false" keeps the probes as written;
//   - with Options::podman, the podman init-container-type annotation;
//   - the annotation sidecar.meshlet.io/status naming what was added: a JSON object listing the
//     names, or with Options::podman a short one that implies them (podman 4.3 refuses
//     annotation values longer than 63 characters).
//
// Idempotent: what an earlier injection added (as its status annotation lists it) is taken out
// and injected again, so a document injected with the same options comes back unchanged
// (Result::changed false) and one injected by another version or with other options is updated.
// A pod opted out (sidecar.meshlet.io/inject: "false", label or annotation) or on the host's
// network is left as it is, with the reason; documents of other kinds pass through.
//
// Errors are InvalidArgument naming the source, line and column (when the node came from text),
// the object (`Deployment "reviews-v1"`) and the field path, like the policy parser's
// (common/config/yaml_proto.h). Plain functions; no state; never throws.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/capture/annotations.h"
#include "common/config/yaml_proto.h"

namespace meshlet::controlplane::inject {

inline constexpr char kInitContainerName[] = "meshlet-init";
inline constexpr char kProxyContainerName[] = "meshlet-proxy";
// Where the proxy image keeps the binary (deploy/images).
inline constexpr char kProxyCommand[] = "/usr/local/bin/sidecar";
inline constexpr int64_t kProxyUid = ::meshlet::capture::kProxyUid;
inline constexpr int kAdminPort = 15000;
inline constexpr int kOutboundPort = ::meshlet::capture::kOutboundPort;
inline constexpr int kInboundPort = ::meshlet::capture::kInboundPort;
inline constexpr int kPrometheusPort = 15020;
inline constexpr int kHealthPort = 15021;
// The port of the pod's own address the sidecar dials until it sees the connection redirected
// (its --capture-check): one nothing listens on, captured unless excluded (docs/kubernetes.md).
inline constexpr int kCaptureCheckPort = 15008;

// Pod annotations (and, for kInjectKey, labels) injection reads; docs/kubernetes.md lists them
// with their defaults. Any other key under sidecar.meshlet.io/ or traffic.meshlet.io/ is an error.
using ::meshlet::capture::kInjectKey;
using ::meshlet::capture::kStatusAnnotation;
inline constexpr char kModeAnnotation[] = "sidecar.meshlet.io/mode";
inline constexpr char kIdentityAnnotation[] = "sidecar.meshlet.io/identity";
inline constexpr char kJoinTokenSecretAnnotation[] = "sidecar.meshlet.io/joinTokenSecret";
inline constexpr char kProxyImageAnnotation[] = "sidecar.meshlet.io/proxyImage";
inline constexpr char kProxyCpuAnnotation[] = "sidecar.meshlet.io/proxyCPU";
inline constexpr char kProxyMemoryAnnotation[] = "sidecar.meshlet.io/proxyMemory";
inline constexpr char kProxyCpuLimitAnnotation[] = "sidecar.meshlet.io/proxyCPULimit";
inline constexpr char kProxyMemoryLimitAnnotation[] = "sidecar.meshlet.io/proxyMemoryLimit";
inline constexpr char kDrainTimeAnnotation[] = "sidecar.meshlet.io/drainTime";
inline constexpr char kLogLevelAnnotation[] = "sidecar.meshlet.io/logLevel";
inline constexpr char kCaptureCheckPortAnnotation[] = "sidecar.meshlet.io/captureCheckPort";
inline constexpr char kRewriteProbesAnnotation[] = "sidecar.meshlet.io/rewriteAppProbes";
// Written by injection on every injected pod (any value given is replaced): the revision whose
// control plane the sidecar talks to ("default" for the unnamed one, revision.h) and the pod's
// service account. Kubernetes discovery reads them from the Pod's metadata, so a control plane
// reaches pods whose sidecars talk to another revision over mTLS, expecting that identity.
inline constexpr char kRevisionAnnotation[] = "sidecar.meshlet.io/revision";
inline constexpr char kServiceAccountAnnotation[] = "sidecar.meshlet.io/serviceAccount";
// Where rewritten app probes point: /app-health/<container>/<livez|readyz|startupz> on
// kPrometheusPort, answered by the proxy from the app (its --app-probe).
inline constexpr char kAppHealthPrefix[] = "/app-health/";
// The capture lists (common/capture/annotations.h, shared with the CNI plugin).
using ::meshlet::capture::kExcludeInboundPortsAnnotation;
using ::meshlet::capture::kExcludeOutboundPortsAnnotation;
using ::meshlet::capture::kExcludeOutboundRangesAnnotation;
using ::meshlet::capture::kIncludeInboundPortsAnnotation;
using ::meshlet::capture::kIncludeOutboundRangesAnnotation;
// Written with Options::podman: podman 4.3 (with runc) fails removing finished init containers of
// its default type "once".
inline constexpr char kPodmanInitContainerTypeAnnotation[] =
    "io.podman.annotations.init.container.type";

enum class SidecarMode {
  kNative,   // an init container with restartPolicy Always (Kubernetes 1.29 and later)
  kClassic,  // a regular container, listed first
};
// "native" or "classic".
absl::StatusOr<SidecarMode> ParseSidecarMode(absl::string_view text);

// How the proxy proves its workload identity to the CA (docs/security.md).
enum class Identity {
  kKubernetesToken,  // a projected service-account token, reviewed with TokenReview
  kJoinToken,        // a join token (meshctl token create) from a Secret
};
// "kubernetes-token" or "join-token".
absl::StatusOr<Identity> ParseIdentity(absl::string_view text);
// The Secret a join-token pod mounts unless sidecar.meshlet.io/joinTokenSecret names another:
// "meshlet-join-token-<service account>" (what `meshctl token create -o secret` writes).
std::string DefaultJoinTokenSecret(absl::string_view service_account);

// Options::trace_collector that turns tracing off.
inline constexpr char kTraceCollectorOff[] = "off";
// Options::trace_collector (the default) and the proxy's --trace-collector value for OTLP/gRPC to
// the control plane's discovery port, authenticated by the workload certificate.
inline constexpr char kTraceCollectorControlPlane[] = "control-plane";

struct Options {
  std::string proxy_image;  // required, e.g. "meshlet-proxy:0.1.0"
  std::string control_plane_address = "meshlet-control-plane.meshlet-system.svc:15012";
  std::string trust_domain = "cluster.local";
  // The control plane's service account, for the SPIFFE id its certificate must carry.
  std::string control_plane_namespace = "meshlet-system";
  std::string control_plane_service_account = "meshlet-control-plane";
  SidecarMode mode = SidecarMode::kNative;  // unless the pod's annotation says otherwise
  // Unless the pod's sidecar.meshlet.io/identity annotation says otherwise.
  Identity identity = Identity::kKubernetesToken;
  // Where proxies send spans: empty or kTraceCollectorControlPlane for the control plane's own
  // collector over OTLP/gRPC on its discovery port (the proxy's xDS channel: TLS, the workload
  // certificate, spans recorded under the pod's registration); HOST:PORT for another collector
  // over OTLP/HTTP; kTraceCollectorOff for no tracing.
  std::string trace_collector;
  std::string version;  // recorded in the status annotation
  // Resource requests of both injected containers unless the pod's annotations say otherwise.
  std::string proxy_cpu = "100m";
  std::string proxy_memory = "64Mi";
  // The projected service-account token: the audience the control plane reviews it for
  // (its --kubernetes-audience) and its lifetime (the kubelet renews it before it expires).
  std::string token_audience = "meshlet";
  int64_t token_expiration_seconds = 3600;
  // The ConfigMap with the control plane's CA certificates under the key ca.pem.
  std::string trust_bundle_config_map = "meshlet-trust";
  // The revision this injection is for ("" the unnamed one; revision.h), whose discovery address
  // and service account are control_plane_address and control_plane_service_account. A pod's
  // revision is its own label meshlet.io/rev, else its namespace's (namespace_revisions), else
  // this one; a pod's label wins over its namespace's.
  std::string revision;
  // meshctl inject: the meshlet.io/rev label of each namespace whose Namespace object is in the
  // input ("" for a namespace without it: the unnamed revision). The webhook never sees
  // namespaces: the MutatingWebhookConfiguration's namespaceSelector does that part.
  std::map<std::string, std::string> namespace_revisions;
  // The webhook: a pod whose revision is another one is left as it is (Outcome::kSkipped, that
  // revision's webhook injects it), and so is a pod another revision injected already (its
  // status and kRevisionAnnotation say so: two webhook configurations select it, and the API
  // server called the other first), with a warning. Otherwise (meshctl inject) such a pod gets
  // a sidecar for its revision: meshlet-control-plane-<revision>.<control_plane_namespace>.svc:
  // 15012 and that service account, replacing an earlier injection.
  bool own_revision_only = false;
  // Tags (revision.h) and the revisions they point at ("" the unnamed one). A pod whose label
  // (its own, else its namespace's) names a tag gets the tag's revision; with the tag
  // "default", so does a pod that no label puts on a revision. The webhook has the one tag of
  // the configuration that sent the request (/inject/tag/<tag>), pointing at its own revision.
  std::map<std::string, std::string> tags;
  // Pods for `podman kube play`: each gets kPodmanInitContainerTypeAnnotation "always" unless
  // it sets that annotation itself.
  bool podman = false;
  // Capture by the node's meshlet-cni plugin (docs/adr/0094-cni-plugin-capture.md): no
  // meshlet-init container, the status annotation marks the pod ("capture":"cni"), and the proxy
  // runs with the securityContext of the Pod Security `restricted` level (seccomp
  // RuntimeDefault on top of non-root, no privilege escalation, ALL capabilities dropped,
  // read-only root). With `podman`, for podman's CNI backend, which names pods without
  // annotations or namespace: the plugin reads them from an API server (its defaultNamespace).
  bool cni = false;
};

// An image reference: not empty, no spaces.
absl::Status CheckImage(absl::string_view image);
// HOST:PORT with a port from 1 to 65535 (the host is resolved by the pod).
absl::Status CheckHostPort(absl::string_view address);

// Each option's own checks (an image, HOST:PORT, a valid trust domain, ...), with the option's
// field name in the error.
absl::Status ValidateOptions(const Options& options);

enum class Outcome {
  kInjected,   // the pod now has the sidecar (first injection, or an update of an earlier one)
  kUnchanged,  // injected before with the same options: left exactly as it was
  kOptedOut,   // sidecar.meshlet.io/inject: "false"
  kSkipped,    // injection does not apply (hostNetwork, another revision's pod); `reason` says why
};

struct PodResult {
  std::string field;   // where the pod is: "" (a Pod), "spec.template", "items[1].spec.template"
  std::string object;  // `Deployment "reviews-v1"`
  Outcome outcome = Outcome::kInjected;
  std::string reason;                 // for kOptedOut and kSkipped
  std::vector<std::string> warnings;  // injected, but something deserves attention
};

struct Result {
  // A new tree when `changed`; otherwise the input node itself.
  YAML::Node document;
  bool changed = false;
  std::vector<PodResult> pods;  // empty for documents of other kinds
};

// Injects `document` (one Kubernetes object). `source` names where it came from for errors:
// source_name and line_offset as for the policy parser.
absl::StatusOr<Result> Inject(const YAML::Node& document, const Options& options,
                              const config::YamlParseOptions& source = {});

}  // namespace meshlet::controlplane::inject
