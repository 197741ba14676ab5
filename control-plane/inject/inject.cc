#include "control-plane/inject/inject.h"

#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/utf8.h"
#include "common/config/field_path.h"
#include "common/tls/spiffe.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_checks.h"
#include "control-plane/inject/workload.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr char kTrustVolume[] = "meshlet-trust";
constexpr char kTokenVolume[] = "meshlet-token";
constexpr char kJoinTokenVolume[] = "meshlet-join-token";
constexpr char kDataVolume[] = "meshlet-data";
constexpr char kTrustDir[] = "/var/run/meshlet/trust";
constexpr char kTokenDir[] = "/var/run/meshlet/token";
constexpr char kJoinTokenDir[] = "/var/run/meshlet/join-token";
constexpr char kDataDir[] = "/var/lib/meshlet";
constexpr char kTrustBundleKey[] = "ca.pem";
constexpr char kJoinTokenKey[] = "token";
constexpr char kMetricsPortName[] = "meshlet-metrics";
constexpr char kDefaultContainerAnnotation[] = "kubectl.kubernetes.io/default-container";
constexpr char kKubernetesTokenIdentity[] = "kubernetes-token";
constexpr char kJoinTokenIdentity[] = "join-token";
constexpr int64_t kDefaultGracePeriodSeconds = 30;
// The sidecar's own ports: the app shares the pod's network namespace and cannot use them.
constexpr int kReservedPorts[] = {kAdminPort, kOutboundPort, kInboundPort, kPrometheusPort,
                                  kHealthPort};

constexpr const char* kKnownAnnotations[] = {
    kInjectKey,
    kStatusAnnotation,
    kModeAnnotation,
    kIdentityAnnotation,
    kJoinTokenSecretAnnotation,
    kProxyImageAnnotation,
    kProxyCpuAnnotation,
    kProxyMemoryAnnotation,
    kProxyCpuLimitAnnotation,
    kProxyMemoryLimitAnnotation,
    kDrainTimeAnnotation,
    kLogLevelAnnotation,
    kCaptureCheckPortAnnotation,
    kRewriteProbesAnnotation,
    kExcludeInboundPortsAnnotation,
    kIncludeInboundPortsAnnotation,
    kExcludeOutboundPortsAnnotation,
    kExcludeOutboundRangesAnnotation,
    kIncludeOutboundRangesAnnotation,
};

// Where a kind keeps its pod: the path from the object to the pod template (empty: the object is
// the pod), and the API groups the kind belongs to ("" is the core group, apiVersion "v1").
struct WorkloadKind {
  absl::string_view kind;
  std::vector<absl::string_view> groups;
  std::vector<absl::string_view> template_path;
};

const std::vector<WorkloadKind>& WorkloadKinds() {
  static const auto* kinds = new std::vector<WorkloadKind>{
      {"Pod", {""}, {}},
      {"Deployment", {"apps", "extensions"}, {"spec", "template"}},
      {"StatefulSet", {"apps"}, {"spec", "template"}},
      {"DaemonSet", {"apps", "extensions"}, {"spec", "template"}},
      {"ReplicaSet", {"apps", "extensions"}, {"spec", "template"}},
      {"ReplicationController", {""}, {"spec", "template"}},
      {"Job", {"batch"}, {"spec", "template"}},
      {"CronJob", {"batch"}, {"spec", "jobTemplate", "spec", "template"}},
  };
  return *kinds;
}

// "apps/v1" → "apps"; "v1" → "".
absl::string_view GroupOf(absl::string_view api_version) {
  const size_t slash = api_version.find('/');
  return slash == absl::string_view::npos ? "" : api_version.substr(0, slash);
}

// "$" doubled, so the kubelet's $(VAR) expansion of args leaves the text as it is.
std::string EscapeForArgs(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"$", "$$"}});
}

// EscapeForArgs undone.
std::string UnescapeArgs(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"$$", "$"}});
}

// One step of a path into the document: a map key or a sequence index.
using PathStep = std::variant<std::string, size_t>;

// A pod found in a document: where it is, and the input nodes.
struct PodLocation {
  std::vector<PathStep> path;  // from the document to the pod (or pod template)
  std::string field;           // the same as text: "spec.template", "items[1].spec.template"
  std::string object;          // `Deployment "reviews-v1"`
  std::string kind;
  std::string name;            // the object's name (the workload's, for a template)
  std::string object_prefix;   // the object's own fields: "" or "items[1]."
  YAML::Node object_metadata;  // the object's (the workload's, for a template)
  YAML::Node pod;              // has metadata and spec
  bool is_pod = false;         // a Pod (not a template): metadata.name is needed
};

// What one pod gets, decided from the input before anything is written.
struct Plan {
  Outcome outcome = Outcome::kInjected;
  std::string reason;
  std::vector<std::string> warnings;
  SidecarMode mode = SidecarMode::kNative;
  std::string image;
  bool join_token = false;
  std::string join_token_secret;
  std::string cpu, memory, cpu_limit, memory_limit;
  std::string drain_time, log_level;
  std::vector<std::pair<std::string, std::string>> capture_flags;  // --flag, value
  int capture_check_port = kCaptureCheckPort;                      // 0: no --capture-check
  std::string service;
  std::vector<std::pair<std::string, std::string>> labels;
  std::vector<int64_t> ports;
  std::string first_app_container;
  bool has_default_container = false;
  bool needs_metadata = false;  // a template without metadata: add it, before spec
  // The pod's namespace (its own, else its workload's, else "default") and service account
  // ("default" unless set): written as values for podman, which has no downward API for them.
  std::string pod_namespace;
  std::string service_account;
  // The pod's restartPolicy is to be OnFailure (Options::podman: podman 4.3 reruns init
  // containers under Always), or back to the default (an earlier --podman injection set it).
  bool restart_on_failure = false;
  bool restore_restart_policy = false;
  // The earlier injection was for podman (the short status): its arguments are not escaped.
  bool injected_for_podman = false;
  // What an earlier injection added (from its status annotation), taken out before injecting.
  std::set<std::string> injected_init_containers, injected_containers, injected_volumes,
      injected_annotations;
  // The app containers' HTTP probes: each as the app wrote it, and whether it goes through the
  // proxy (rewritten) or back as written (restored after an earlier rewrite).
  struct AppProbe {
    std::string container;
    std::string kind;  // "livenessProbe", "readinessProbe", "startupProbe"
    int64_t port = 0;
    std::string path;
    bool rewrite = true;
    std::string ProxyPath() const;
  };
  std::vector<AppProbe> app_probes;
};

// "livenessProbe" -> "livez", "readinessProbe" -> "readyz", "startupProbe" -> "startupz".
std::string ProbeName(absl::string_view kind) {
  return kind == "livenessProbe" ? "livez" : kind == "readinessProbe" ? "readyz" : "startupz";
}

std::string Plan::AppProbe::ProxyPath() const {
  return absl::StrCat(kAppHealthPrefix, container, "/", ProbeName(kind));
}

// InvalidArgument for the whole document or one of its objects, at `node`.
absl::Status DocumentError(const config::YamlParseOptions& source, const YAML::Node& node,
                           absl::string_view object, absl::string_view field,
                           absl::string_view reason) {
  int line = 0, column = 0;
  if (node.IsDefined() && !node.Mark().is_null()) {
    line = node.Mark().line + 1;
    column = node.Mark().column + 1;
  }
  return config::ErrorAt(source, line, column,
                         object.empty() ? std::string(field) : absl::StrCat(object, ": ", field),
                         reason);
}

class PodReader {
 public:
  PodReader(const PodLocation& where, const Options& options,
            const config::YamlParseOptions& source)
      : where_(where),
        options_(options),
        source_(source),
        prefix_(where.field.empty() ? "" : absl::StrCat(where.field, ".")) {}

  absl::StatusOr<Plan> Read();

 private:
  // InvalidArgument at `node` (its position when it came from text) for the pod's `field`.
  absl::Status Error(const YAML::Node& node, absl::string_view field,
                     absl::string_view reason) const {
    int line = 0, column = 0;
    if (node.IsDefined() && !node.Mark().is_null()) {
      line = node.Mark().line + 1;
      column = node.Mark().column + 1;
    }
    return config::ErrorAt(source_, line, column, absl::StrCat(where_.object, ": ", prefix_, field),
                           reason);
  }

  // A map or nothing (absent or null) at `field`; the map, or an undefined node.
  absl::StatusOr<YAML::Node> OptionalMap(const YAML::Node& parent, absl::string_view key,
                                         absl::string_view field) const {
    const YAML::Node node = Field(parent, key);
    if (!node || node.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    if (!node.IsMap()) return Error(node, field, "must be a map");
    return node;
  }

  // A list or nothing at `field`; an empty list for nothing.
  absl::StatusOr<YAML::Node> OptionalList(const YAML::Node& parent, absl::string_view key,
                                          absl::string_view field) const {
    const YAML::Node node = Field(parent, key);
    if (!node || node.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
    if (!node.IsSequence()) return Error(node, field, "must be a list");
    return node;
  }

  std::string AnnotationField(absl::string_view key) const {
    return absl::StrCat("metadata.annotations['", key, "']");
  }

  // The annotation's value, if set.
  std::optional<std::string> Annotation(absl::string_view key) const {
    const YAML::Node value = Field(annotations_, key);
    if (!value) return std::nullopt;
    return Text(value);
  }

  absl::Status ReadStatus(Plan& plan) const;
  // The service and version (workload.h), after the labels.
  absl::Status ReadWorkload(Plan& plan) const;
  absl::Status ReadContainers(Plan& plan) const;
  absl::Status ReadProbes(Plan& plan) const;
  absl::Status ReadAnnotations(Plan& plan) const;
  // A comma-separated list annotation (ports, CIDRs) whose items `valid` accepts, passed to
  // `sidecar init` as `flag`; `what` names an item in errors.
  absl::Status CaptureList(absl::string_view key, absl::string_view flag, bool star_allowed,
                           bool (*valid)(absl::string_view), absl::string_view what,
                           Plan& plan) const;
  absl::StatusOr<std::string> Quantity(absl::string_view key, const std::string& fallback) const;
  // The --capture-check port: the annotation's or the default, captured by the pod's rules.
  absl::Status ReadCaptureCheck(Plan& plan) const;

  const PodLocation& where_;
  const Options& options_;
  const config::YamlParseOptions& source_;
  const std::string prefix_;
  YAML::Node metadata_, annotations_, labels_, spec_;
};

absl::StatusOr<Plan> PodReader::Read() {
  Plan plan;
  ASSIGN_OR_RETURN(metadata_, OptionalMap(where_.pod, "metadata", "metadata"));
  plan.needs_metadata = !metadata_ && !where_.is_pod;
  ASSIGN_OR_RETURN(annotations_, OptionalMap(metadata_, "annotations", "metadata.annotations"));
  ASSIGN_OR_RETURN(labels_, OptionalMap(metadata_, "labels", "metadata.labels"));
  spec_ = Field(where_.pod, "spec");
  if (!spec_.IsMap()) {
    return Error(spec_ ? spec_ : where_.pod, "spec", spec_ ? "must be a map" : "required");
  }

  // Opted out: by label, else by annotation.
  for (const auto& [map, what] : {std::pair{labels_, "labels"}, {annotations_, "annotations"}}) {
    const YAML::Node value = Field(map, kInjectKey);
    if (!value) continue;
    const std::string field = absl::StrCat("metadata.", what, "['", kInjectKey, "']");
    if (!IsString(value) || (value.Scalar() != "true" && value.Scalar() != "false")) {
      return Error(value, field, "must be the string \"true\" or \"false\" (quoted)");
    }
    if (value.Scalar() == "false") {
      plan.outcome = Outcome::kOptedOut;
      plan.reason = absl::StrCat(what == std::string("labels") ? "label " : "annotation ",
                                 kInjectKey, " is \"false\"");
      return plan;
    }
    break;
  }
  if (const YAML::Node host = Field(spec_, "hostNetwork")) {
    if (TypeOf(host) != ScalarType::kBool) {
      return Error(host, "spec.hostNetwork", "must be true or false");
    }
    if (IsTrue(host)) {
      plan.outcome = Outcome::kSkipped;
      plan.reason =
          "spec.hostNetwork is true: the pod shares the node's network, whose traffic a sidecar "
          "must not capture";
      return plan;
    }
  }
  RETURN_IF_ERROR(ReadStatus(plan));
  RETURN_IF_ERROR(ReadContainers(plan));
  RETURN_IF_ERROR(ReadAnnotations(plan));
  RETURN_IF_ERROR(ReadProbes(plan));

  for (auto it = labels_.begin(); labels_ && it != labels_.end(); ++it) {
    const std::string key = Text(it->first);
    if (!it->second.IsScalar() || it->second.IsNull()) {
      return Error(it->second, absl::StrCat("metadata.labels['", key, "']"), "must be a string");
    }
    plan.labels.emplace_back(key, it->second.Scalar());
  }
  RETURN_IF_ERROR(ReadWorkload(plan));

  // Warnings: what works, but not as one might expect.
  if (plan.mode == SidecarMode::kClassic && (where_.kind == "Job" || where_.kind == "CronJob")) {
    plan.warnings.push_back(
        "a classic sidecar keeps running after the job's containers finish, so the pod never "
        "completes; native mode (the default) stops it with them");
  }
  if (!plan.drain_time.empty()) {
    absl::Duration drain;
    absl::ParseDuration(plan.drain_time, &drain);
    int64_t grace = kDefaultGracePeriodSeconds;
    PlainInt(Text(Field(spec_, "terminationGracePeriodSeconds")), &grace);
    if (drain > absl::Seconds(grace)) {
      plan.warnings.push_back(absl::StrCat(
          kDrainTimeAnnotation, " ", plan.drain_time, " is longer than the pod's ",
          "terminationGracePeriodSeconds (", grace, "): the kubelet kills the proxy first"));
    }
  }
  return plan;
}

absl::Status PodReader::ReadWorkload(Plan& plan) const {
  // The object's owner references, which name its controller: as the API server checks them.
  const YAML::Node references = Field(where_.object_metadata, "ownerReferences");
  const std::string at = absl::StrCat(where_.object_prefix, "metadata.ownerReferences");
  auto error = [&](const YAML::Node& node, const std::string& field, absl::string_view reason) {
    return DocumentError(source_, node, where_.object, field, reason);
  };
  if (references && !references.IsNull() && !references.IsSequence()) {
    return error(references, at, "must be a list");
  }
  for (size_t i = 0; references.IsSequence() && i < references.size(); ++i) {
    const YAML::Node reference = references[i];
    const std::string item = absl::StrCat(at, "[", i, "]");
    if (!reference.IsMap()) return error(reference, item, "must be a map");
    for (const char* key : {"kind", "name"}) {
      const YAML::Node value = Field(reference, key);
      if (!IsString(value) || value.Scalar().empty()) {
        return error(value ? value : reference, absl::StrCat(item, ".", key),
                     value ? "must be a non-empty string" : "required");
      }
    }
    const YAML::Node controller = Field(reference, "controller");
    if (controller && TypeOf(controller) != ScalarType::kBool) {
      return error(controller, absl::StrCat(item, ".controller"), "must be true or false");
    }
  }

  const Workload workload = WorkloadOf(where_.kind, where_.object_metadata, labels_);
  plan.service = workload.service;
  if (plan.service.empty()) {
    return Error(metadata_ ? metadata_ : where_.pod, "metadata",
                 "needs a name (or an app.kubernetes.io/name or app label) to name the service");
  }
  // The version reaches the control plane as the node label "version" (what HTTPRoute subsets
  // select on): the pod's own label of that name takes the workload's version.
  const std::string& version = workload.version;
  bool has_version_label = false;
  for (auto& [key, value] : plan.labels) {
    if (key != kPlainVersionLabel) continue;
    has_version_label = true;
    if (value != version) {
      plan.warnings.push_back(absl::StrCat("the labels ", kVersionLabel, " \"", version, "\" and ",
                                           kPlainVersionLabel, " \"", value,
                                           "\" differ: the proxy registers ", kPlainVersionLabel,
                                           "=", version, ", which HTTPRoute subsets select on"));
      value = version;
    }
  }
  if (!has_version_label && !version.empty()) {
    plan.labels.emplace_back(kPlainVersionLabel, version);
  }
  return absl::OkStatus();
}

absl::Status PodReader::ReadStatus(Plan& plan) const {
  const YAML::Node status = Field(annotations_, kStatusAnnotation);
  if (!status) return absl::OkStatus();
  const std::string field = AnnotationField(kStatusAnnotation);
  const absl::Status not_ours = Error(
      status, field,
      "not a status written by meshctl inject (a JSON object listing what it added); remove the "
      "annotation to inject this pod");
  if (!IsString(status)) return not_ours;
  YAML::Node parsed;
  try {
    parsed = YAML::Load(status.Scalar());
  } catch (const YAML::Exception&) {
    return not_ours;
  }
  if (!parsed.IsMap()) return not_ours;
  if (!Field(parsed, "initContainers") && Field(parsed, "mode")) {
    // The short form (written for podman): the names follow from the mode.
    absl::StatusOr<SidecarMode> mode = ParseSidecarMode(Text(Field(parsed, "mode")));
    if (!mode.ok()) return not_ours;
    plan.injected_init_containers.insert(kInitContainerName);
    (*mode == SidecarMode::kNative ? plan.injected_init_containers : plan.injected_containers)
        .insert(kProxyContainerName);
    plan.injected_volumes = {kTrustVolume, kTokenVolume, kJoinTokenVolume, kDataVolume};
    if (IsTrue(Field(parsed, "podman"))) {
      plan.injected_annotations.insert(kPodmanInitContainerTypeAnnotation);
    }
    plan.injected_for_podman = true;
    plan.restore_restart_policy = Text(Field(parsed, "rp")) == "1";
    return absl::OkStatus();
  }
  for (auto& [key, out] : {std::pair<const char*, std::set<std::string>*>{
                               "initContainers", &plan.injected_init_containers},
                           {"containers", &plan.injected_containers},
                           {"volumes", &plan.injected_volumes},
                           {"annotations", &plan.injected_annotations}}) {
    const YAML::Node names = Field(parsed, key);
    if (!names) continue;
    if (!names.IsSequence()) return not_ours;
    for (const YAML::Node& name : names) {
      if (!name.IsScalar()) return not_ours;
      out->insert(name.Scalar());
    }
  }
  return absl::OkStatus();
}

absl::Status PodReader::ReadContainers(Plan& plan) const {
  const std::set<std::string> ours = {kInitContainerName, kProxyContainerName};
  const YAML::Node containers = Field(spec_, "containers");
  if (!containers || !containers.IsSequence() || containers.size() == 0) {
    return Error(containers ? containers : spec_, "spec.containers",
                 containers ? "must be a non-empty list" : "required");
  }
  ASSIGN_OR_RETURN(YAML::Node init_containers,
                   OptionalList(spec_, "initContainers", "spec.initContainers"));
  for (const auto& [list, name, injected] :
       {std::tuple{init_containers, "initContainers", &plan.injected_init_containers},
        {containers, "containers", &plan.injected_containers}}) {
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node c = list[i];
      const std::string at = absl::StrCat("spec.", name, "[", i, "]");
      if (!c.IsMap()) return Error(c, at, "must be a map");
      const YAML::Node name_node = Field(c, "name");
      if (!IsString(name_node) || name_node.Scalar().empty()) {
        return Error(name_node ? name_node : c, absl::StrCat(at, ".name"),
                     name_node ? "must be a string" : "required");
      }
      const std::string container = name_node.Scalar();
      if (injected->count(container) > 0) continue;
      if (ours.count(container) > 0) {
        return Error(name_node, absl::StrCat(at, ".name"),
                     absl::StrCat("\"", container,
                                  "\" is the name of a container injection adds; rename it"));
      }
      if (name[0] == 'i') continue;
      if (plan.first_app_container.empty()) plan.first_app_container = container;
      if (Text(Field(Field(c, "securityContext"), "runAsUser")) == absl::StrCat(kProxyUid)) {
        plan.warnings.push_back(absl::StrCat("container \"", container, "\" runs as UID ",
                                             kProxyUid,
                                             ", the proxy's: its traffic bypasses the sidecar"));
      }
      ASSIGN_OR_RETURN(YAML::Node ports, OptionalList(c, "ports", absl::StrCat(at, ".ports")));
      for (size_t p = 0; p < ports.size(); ++p) {
        const YAML::Node port = ports[p];
        const std::string port_at = absl::StrCat(at, ".ports[", p, "]");
        if (!port.IsMap()) return Error(port, port_at, "must be a map");
        const YAML::Node number = Field(port, "containerPort");
        int64_t value = 0;
        if (!number || TypeOf(number) != ScalarType::kInt || !PlainInt(number.Scalar(), &value) ||
            value < 1 || value > 65535) {
          return Error(number ? number : port, absl::StrCat(port_at, ".containerPort"),
                       number ? "must be an integer from 1 to 65535" : "required");
        }
        const std::string protocol =
            Field(port, "protocol") ? Text(Field(port, "protocol")) : std::string("TCP");
        if (protocol != "TCP" && protocol != "UDP" && protocol != "SCTP") {
          return Error(Field(port, "protocol"), absl::StrCat(port_at, ".protocol"),
                       "must be TCP, UDP or SCTP");
        }
        if (protocol != "TCP") continue;
        if (std::find(std::begin(kReservedPorts), std::end(kReservedPorts), value) !=
            std::end(kReservedPorts)) {
          return Error(number, absl::StrCat(port_at, ".containerPort"),
                       absl::StrCat(value, " is the sidecar's (it uses ",
                                    absl::StrJoin(kReservedPorts, ", "), ")"));
        }
        if (std::find(plan.ports.begin(), plan.ports.end(), value) == plan.ports.end()) {
          plan.ports.push_back(value);
        }
      }
    }
  }
  ASSIGN_OR_RETURN(YAML::Node volumes, OptionalList(spec_, "volumes", "spec.volumes"));
  const std::set<std::string> our_volumes = {kTrustVolume, kTokenVolume, kJoinTokenVolume,
                                             kDataVolume};
  for (size_t i = 0; i < volumes.size(); ++i) {
    const YAML::Node name = Field(volumes[i], "name");
    const std::string at = absl::StrCat("spec.volumes[", i, "]");
    if (!volumes[i].IsMap()) return Error(volumes[i], at, "must be a map");
    if (!IsString(name))
      return Error(name ? name : volumes[i], absl::StrCat(at, ".name"), "required");
    if (plan.injected_volumes.count(name.Scalar()) == 0 && our_volumes.count(name.Scalar()) > 0) {
      return Error(name, absl::StrCat(at, ".name"),
                   absl::StrCat("\"", name.Scalar(),
                                "\" is the name of a volume injection adds; rename it"));
    }
  }
  if (const YAML::Node user = Field(Field(spec_, "securityContext"), "runAsUser");
      Text(user) == absl::StrCat(kProxyUid)) {
    plan.warnings.push_back(absl::StrCat("the pod runs as UID ", kProxyUid,
                                         ", the proxy's: its containers' traffic bypasses the "
                                         "sidecar unless they set another runAsUser"));
  }
  plan.has_default_container = static_cast<bool>(Field(annotations_, kDefaultContainerAnnotation));
  return absl::OkStatus();
}

absl::StatusOr<std::string> PodReader::Quantity(absl::string_view key,
                                                const std::string& fallback) const {
  std::optional<std::string> value = Annotation(key);
  if (!value) return fallback;
  if (absl::StatusOr<double> q = ParseQuantity(*value); !q.ok()) {
    return Error(Field(annotations_, key), AnnotationField(key), q.status().message());
  }
  return *value;
}

bool IsPort(absl::string_view text) {
  int port = 0;
  return absl::SimpleAtoi(text, &port) && port >= 1 && port <= 65535;
}

bool IsCidr(absl::string_view text) {
  const size_t slash = text.find('/');
  if (slash == absl::string_view::npos) return false;
  const std::string ip(text.substr(0, slash));
  const int max_bits = ip.find(':') != std::string::npos ? 128 : 32;
  unsigned char address[16];
  int bits = -1;
  return inet_pton(max_bits == 128 ? AF_INET6 : AF_INET, ip.c_str(), address) == 1 &&
         absl::SimpleAtoi(text.substr(slash + 1), &bits) && bits >= 0 && bits <= max_bits;
}

absl::Status PodReader::CaptureList(absl::string_view key, absl::string_view flag,
                                    bool star_allowed, bool (*valid)(absl::string_view),
                                    absl::string_view what, Plan& plan) const {
  std::optional<std::string> value = Annotation(key);
  if (!value) return absl::OkStatus();
  std::vector<absl::string_view> items;
  for (absl::string_view item : absl::StrSplit(*value, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!(star_allowed && item == "*") && !valid(item)) {
      return Error(Field(annotations_, key), AnnotationField(key),
                   absl::StrCat("\"", item, "\" is not ", what, star_allowed ? " or *" : "",
                                "; the list is comma-separated"));
    }
    items.push_back(item);
  }
  plan.capture_flags.emplace_back(flag, absl::StrJoin(items, ","));
  return absl::OkStatus();
}

absl::Status PodReader::ReadProbes(Plan& plan) const {
  bool rewrite = true;
  if (std::optional<std::string> value = Annotation(kRewriteProbesAnnotation)) {
    if (*value != "true" && *value != "false") {
      return Error(Field(annotations_, kRewriteProbesAnnotation),
                   AnnotationField(kRewriteProbesAnnotation), "must be \"true\" or \"false\"");
    }
    rewrite = *value == "true";
  }
  // What an earlier injection pointed at the proxy: the originals, from its --app-probe args.
  std::map<std::string, std::pair<int64_t, std::string>> earlier;  // proxy path -> port, path
  for (const char* list : {"initContainers", "containers"}) {
    const YAML::Node containers = Field(spec_, list);
    for (size_t i = 0; containers.IsSequence() && i < containers.size(); ++i) {
      if (Text(Field(containers[i], "name")) != kProxyContainerName) continue;
      const YAML::Node args = Field(containers[i], "args");
      for (size_t a = 0; args.IsSequence() && a < args.size(); ++a) {
        const std::string text = Text(args[a]);
        absl::string_view arg = text;
        if (!absl::ConsumePrefix(&arg, "--app-probe=")) continue;
        const size_t eq = arg.find('=');
        const size_t slash = eq == absl::string_view::npos ? eq : arg.find('/', eq);
        int64_t port = 0;
        if (slash == absl::string_view::npos ||
            !absl::SimpleAtoi(arg.substr(eq + 1, slash - eq - 1), &port)) {
          continue;
        }
        earlier[std::string(arg.substr(0, eq))] = {port, plan.injected_for_podman
                                                             ? std::string(arg.substr(slash))
                                                             : UnescapeArgs(arg.substr(slash))};
      }
    }
  }
  const YAML::Node containers = Field(spec_, "containers");
  for (size_t i = 0; i < containers.size(); ++i) {
    const YAML::Node c = containers[i];
    const std::string name = Text(Field(c, "name"));
    if (plan.injected_containers.count(name) > 0) continue;
    for (const char* kind : {"livenessProbe", "readinessProbe", "startupProbe"}) {
      const YAML::Node get = Field(Field(c, kind), "httpGet");
      if (!get.IsMap()) continue;
      Plan::AppProbe probe{.container = name, .kind = kind, .rewrite = rewrite};
      const std::string at = absl::StrCat("spec.containers[", i, "].", kind, ".httpGet");
      const YAML::Node port = Field(get, "port");
      const std::string path = Field(get, "path") ? Text(Field(get, "path")) : "/";
      if (Text(port) == absl::StrCat(kPrometheusPort) &&
          absl::StartsWith(path, probe.ProxyPath())) {
        auto it = earlier.find(path);
        if (it == earlier.end()) continue;  // not ours after all: left as it is
        probe.port = it->second.first;
        probe.path = it->second.second;
        plan.app_probes.push_back(probe);
        continue;
      }
      if (!rewrite) continue;
      const std::string scheme = Text(Field(get, "scheme"));
      if ((!scheme.empty() && scheme != "HTTP") || Field(get, "host") ||
          Field(get, "httpHeaders")) {
        plan.warnings.push_back(absl::StrCat(
            "container \"", name, "\" ", kind,
            ": an HTTPS probe, or one with a host or headers, is left as it is; under STRICT "
            "mTLS the kubelet's probe does not get through the inbound capture"));
        continue;
      }
      if (TypeOf(port) == ScalarType::kInt) {
        PlainInt(Text(port), &probe.port);
      } else {
        for (const YAML::Node& p : Field(c, "ports")) {
          if (Text(Field(p, "name")) == Text(port))
            PlainInt(Text(Field(p, "containerPort")), &probe.port);
        }
      }
      if (probe.port < 1 || probe.port > 65535) {
        return Error(port ? port : get, absl::StrCat(at, ".port"),
                     "must be a port number or the name of one of the container's ports");
      }
      if (!absl::StartsWith(path, "/")) {
        return Error(Field(get, "path"), absl::StrCat(at, ".path"), "must start with '/'");
      }
      probe.path = path;
      plan.app_probes.push_back(probe);
    }
  }
  return absl::OkStatus();
}

absl::Status PodReader::ReadAnnotations(Plan& plan) const {
  for (auto it = annotations_.begin(); annotations_ && it != annotations_.end(); ++it) {
    const std::string key = Text(it->first);
    if (!absl::StartsWith(key, "sidecar.meshlet.io/") &&
        !absl::StartsWith(key, "traffic.meshlet.io/")) {
      continue;
    }
    if (std::find(std::begin(kKnownAnnotations), std::end(kKnownAnnotations), key) ==
        std::end(kKnownAnnotations)) {
      return Error(
          it->first, AnnotationField(key),
          absl::StrCat("unknown annotation; known: ", absl::StrJoin(kKnownAnnotations, ", ")));
    }
    if (!IsString(it->second)) {
      return Error(it->second, AnnotationField(key),
                   "must be a string (annotation values are strings: quote it)");
    }
  }
  auto error = [&](absl::string_view key, absl::string_view reason) {
    return Error(Field(annotations_, key), AnnotationField(key), reason);
  };

  plan.mode = options_.mode;
  if (std::optional<std::string> mode = Annotation(kModeAnnotation)) {
    absl::StatusOr<SidecarMode> parsed = ParseSidecarMode(*mode);
    if (!parsed.ok()) return error(kModeAnnotation, parsed.status().message());
    plan.mode = *parsed;
  }
  Identity identity = options_.identity;
  if (std::optional<std::string> annotation = Annotation(kIdentityAnnotation)) {
    absl::StatusOr<Identity> parsed = ParseIdentity(*annotation);
    if (!parsed.ok()) return error(kIdentityAnnotation, parsed.status().message());
    identity = *parsed;
  }
  plan.join_token = identity == Identity::kJoinToken;
  const std::optional<std::string> secret = Annotation(kJoinTokenSecretAnnotation);
  if (secret && !plan.join_token) {
    return error(kJoinTokenSecretAnnotation,
                 absl::StrCat("only used with ", kIdentityAnnotation, ": ", kJoinTokenIdentity));
  }
  if (secret && !config::IsDnsSubdomain(*secret)) {
    return error(kJoinTokenSecretAnnotation, "must be a Secret's name (a DNS-1123 subdomain)");
  }
  plan.service_account = Text(Field(spec_, "serviceAccountName"));
  if (plan.service_account.empty()) plan.service_account = "default";
  plan.pod_namespace = Text(Field(metadata_, "namespace"));
  if (plan.pod_namespace.empty())
    plan.pod_namespace = Text(Field(where_.object_metadata, "namespace"));
  if (plan.pod_namespace.empty()) plan.pod_namespace = "default";
  if (plan.join_token) {
    plan.join_token_secret = secret.value_or(DefaultJoinTokenSecret(plan.service_account));
    if (!config::IsDnsSubdomain(plan.join_token_secret)) {
      return Error(
          Field(spec_, "serviceAccountName"), "spec.serviceAccountName",
          absl::StrCat("the join token's Secret would be named \"", plan.join_token_secret,
                       "\", which is not a Secret's name; set ", kJoinTokenSecretAnnotation));
    }
  }

  plan.image = Annotation(kProxyImageAnnotation).value_or(options_.proxy_image);
  if (plan.image.empty() || std::any_of(plan.image.begin(), plan.image.end(), [](char c) {
        return absl::ascii_isspace(static_cast<unsigned char>(c));
      })) {
    return error(kProxyImageAnnotation, "must be an image reference without spaces");
  }
  ASSIGN_OR_RETURN(plan.cpu, Quantity(kProxyCpuAnnotation, options_.proxy_cpu));
  ASSIGN_OR_RETURN(plan.memory, Quantity(kProxyMemoryAnnotation, options_.proxy_memory));
  ASSIGN_OR_RETURN(plan.cpu_limit, Quantity(kProxyCpuLimitAnnotation, ""));
  ASSIGN_OR_RETURN(plan.memory_limit, Quantity(kProxyMemoryLimitAnnotation, ""));
  for (const auto& [limit_key, limit, request] :
       {std::tuple{kProxyCpuLimitAnnotation, plan.cpu_limit, plan.cpu},
        {kProxyMemoryLimitAnnotation, plan.memory_limit, plan.memory}}) {
    if (!limit.empty() && *ParseQuantity(limit) < *ParseQuantity(request)) {
      return error(limit_key, absl::StrCat("\"", limit, "\" is below the request \"", request,
                                           "\"; a limit must be at least the request"));
    }
  }
  if (std::optional<std::string> drain = Annotation(kDrainTimeAnnotation)) {
    absl::Duration d;
    if (!absl::ParseDuration(*drain, &d) || d < absl::ZeroDuration()) {
      return error(kDrainTimeAnnotation, "must be a duration such as 30s or 1m30s");
    }
    plan.drain_time = *drain;
  }
  if (std::optional<std::string> level = Annotation(kLogLevelAnnotation)) {
    if (!ParseLogLevel(*level).has_value()) {
      return error(kLogLevelAnnotation,
                   "must be one of trace, debug, info, warn, error, critical, off");
    }
    plan.log_level = *level;
  }
  constexpr char kPort[] = "a port (1-65535)";
  constexpr char kCidr[] = "a CIDR (10.0.0.0/8, fd00::/8)";
  RETURN_IF_ERROR(CaptureList(kExcludeInboundPortsAnnotation, "--exclude-inbound-ports", false,
                              IsPort, kPort, plan));
  RETURN_IF_ERROR(CaptureList(kIncludeInboundPortsAnnotation, "--include-inbound-ports", true,
                              IsPort, kPort, plan));
  RETURN_IF_ERROR(CaptureList(kExcludeOutboundPortsAnnotation, "--exclude-outbound-ports", false,
                              IsPort, kPort, plan));
  RETURN_IF_ERROR(CaptureList(kExcludeOutboundRangesAnnotation, "--exclude-outbound-cidrs", false,
                              IsCidr, kCidr, plan));
  RETURN_IF_ERROR(CaptureList(kIncludeOutboundRangesAnnotation, "--include-outbound-cidrs", true,
                              IsCidr, kCidr, plan));
  RETURN_IF_ERROR(ReadCaptureCheck(plan));

  const YAML::Node podman = Field(annotations_, kPodmanInitContainerTypeAnnotation);
  if (options_.podman && podman &&
      plan.injected_annotations.count(kPodmanInitContainerTypeAnnotation) == 0 &&
      Text(podman) != "always") {
    plan.warnings.push_back(absl::StrCat(
        "the pod's annotation ", kPodmanInitContainerTypeAnnotation, " is \"", Text(podman),
        "\", not \"always\": podman with runc may fail removing the finished meshlet-init"));
  }
  if (options_.podman) {
    // podman 4.3 applies the pod's restart policy to init containers: under Always it runs
    // meshlet-init again as soon as it finishes, forever.
    const std::string policy = Text(Field(spec_, "restartPolicy"));
    plan.restart_on_failure = plan.restore_restart_policy || policy.empty() || policy == "Always";
    if (plan.mode == SidecarMode::kNative) {
      plan.warnings.push_back(
          "podman has no native sidecars: it would run the proxy as an init container that never "
          "finishes, and never start the app; inject with --mode classic");
    }
    if (!plan.join_token) {
      plan.warnings.push_back(
          "podman mounts no service-account tokens, so the proxy would get no certificate; inject "
          "with --identity join-token");
    }
  }
  return absl::OkStatus();
}

absl::Status PodReader::ReadCaptureCheck(Plan& plan) const {
  const std::optional<std::string> value = Annotation(kCaptureCheckPortAnnotation);
  if (value == "off") {
    plan.capture_check_port = 0;
    return absl::OkStatus();
  }
  if (value && (!IsPort(*value) || !absl::SimpleAtoi(*value, &plan.capture_check_port))) {
    return Error(Field(annotations_, kCaptureCheckPortAnnotation),
                 AnnotationField(kCaptureCheckPortAnnotation),
                 "must be a port (1-65535) that inbound capture redirects, or \"off\"");
  }
  const int port = plan.capture_check_port;
  const std::string what =
      value ? absl::StrCat("port ", port)
            : absl::StrCat("port ", port, " (the default of ", kCaptureCheckPortAnnotation, ")");
  const std::string fix =
      absl::StrCat("the sidecar dials it to see that capture is in effect; set ",
                   kCaptureCheckPortAnnotation, " to a port inbound capture redirects, or \"off\"");
  if (std::find(std::begin(kReservedPorts), std::end(kReservedPorts), port) !=
      std::end(kReservedPorts)) {
    return Error(
        Field(annotations_, kCaptureCheckPortAnnotation),
        AnnotationField(kCaptureCheckPortAnnotation),
        absl::StrCat(port, " is the sidecar's (it uses ", absl::StrJoin(kReservedPorts, ", "),
                     "), never captured inbound; ", fix));
  }
  // The ports a list annotation passed to `sidecar init` as `flag`, if it is set.
  auto listed = [&](absl::string_view flag) -> std::optional<std::vector<std::string>> {
    for (const auto& [f, items] : plan.capture_flags) {
      if (f == flag) return absl::StrSplit(items, ',');
    }
    return std::nullopt;
  };
  auto has = [&](const std::vector<std::string>& items) {
    return std::any_of(items.begin(), items.end(), [&](const std::string& item) {
      int listed_port = 0;
      return item == "*" || (absl::SimpleAtoi(item, &listed_port) && listed_port == port);
    });
  };
  if (auto excluded = listed("--exclude-inbound-ports"); excluded && has(*excluded)) {
    return Error(Field(annotations_, kExcludeInboundPortsAnnotation),
                 AnnotationField(kExcludeInboundPortsAnnotation),
                 absl::StrCat("excludes ", what, " from capture; ", fix));
  }
  if (auto included = listed("--include-inbound-ports"); included && !has(*included)) {
    return Error(Field(annotations_, kIncludeInboundPortsAnnotation),
                 AnnotationField(kIncludeInboundPortsAnnotation),
                 absl::StrCat("does not list ", what, ", so it is not captured; ", fix));
  }
  return absl::OkStatus();
}

// Writing.

YAML::Node Map() { return YAML::Node(YAML::NodeType::Map); }
YAML::Node List() { return YAML::Node(YAML::NodeType::Sequence); }

YAML::Node StringList(const std::vector<std::string>& items) {
  YAML::Node list = List();
  for (const std::string& item : items) list.push_back(StringNode(item));
  return list;
}

YAML::Node Probe(int64_t period, int64_t failures) {
  YAML::Node probe = Map();
  probe["httpGet"]["path"] = StringNode("/ready");
  probe["httpGet"]["port"] = IntNode(kPrometheusPort);
  probe["periodSeconds"] = IntNode(period);
  probe["timeoutSeconds"] = IntNode(3);
  probe["failureThreshold"] = IntNode(failures);
  return probe;
}

YAML::Node Resources(const Plan& plan) {
  YAML::Node resources = Map();
  resources["requests"]["cpu"] = StringNode(plan.cpu);
  resources["requests"]["memory"] = StringNode(plan.memory);
  if (!plan.cpu_limit.empty()) resources["limits"]["cpu"] = StringNode(plan.cpu_limit);
  if (!plan.memory_limit.empty()) resources["limits"]["memory"] = StringNode(plan.memory_limit);
  return resources;
}

YAML::Node Mount(absl::string_view volume, absl::string_view path, bool read_only) {
  YAML::Node mount = Map();
  mount["name"] = StringNode(volume);
  mount["mountPath"] = StringNode(path);
  if (read_only) mount["readOnly"] = BoolNode(true);
  return mount;
}

YAML::Node FieldEnv(absl::string_view name, absl::string_view field_path) {
  YAML::Node env = Map();
  env["name"] = StringNode(name);
  env["valueFrom"]["fieldRef"]["fieldPath"] = StringNode(field_path);
  return env;
}

YAML::Node ValueEnv(absl::string_view name, absl::string_view value) {
  YAML::Node env = Map();
  env["name"] = StringNode(name);
  env["value"] = StringNode(value);
  return env;
}

YAML::Node InitContainer(const Plan& plan) {
  std::vector<std::string> args = {"init", absl::StrCat("--proxy-uid=", kProxyUid),
                                   absl::StrCat("--outbound-port=", kOutboundPort),
                                   absl::StrCat("--inbound-port=", kInboundPort)};
  for (const auto& [flag, value] : plan.capture_flags)
    args.push_back(absl::StrCat(flag, "=", value));
  YAML::Node c = Map();
  c["name"] = StringNode(kInitContainerName);
  c["image"] = StringNode(plan.image);
  c["command"] = StringList({kProxyCommand});
  c["args"] = StringList(args);
  c["resources"] = Resources(plan);
  YAML::Node security = Map();
  // Root with NET_ADMIN and NET_RAW to program the pod's iptables; nothing else.
  security["runAsUser"] = IntNode(0);
  security["runAsGroup"] = IntNode(0);
  security["runAsNonRoot"] = BoolNode(false);
  security["allowPrivilegeEscalation"] = BoolNode(false);
  security["privileged"] = BoolNode(false);
  security["readOnlyRootFilesystem"] = BoolNode(false);  // iptables takes a lock under /run
  security["capabilities"]["add"] = StringList({"NET_ADMIN", "NET_RAW"});
  security["capabilities"]["drop"] = StringList({"ALL"});
  c["securityContext"] = security;
  return c;
}

// The proxy's --trace-collector: the option's, else the control plane's collector; "" for none.
std::string TraceCollector(const Options& options) {
  if (options.trace_collector == kTraceCollectorOff) return "";
  if (!options.trace_collector.empty()) return options.trace_collector;
  const absl::string_view address = options.control_plane_address;
  return absl::StrCat(address.substr(0, address.rfind(':')), ":", kCollectorPort);
}

YAML::Node ProxyContainer(const Plan& plan, const Options& options) {
  // The kubelet expands $(VAR) in arguments from the downward-API environment below; podman 4.3
  // expands nothing and knows only metadata.name, so for it the values are written out, and the
  // pod's name and address are found by the proxy itself (its "auto" values).
  const bool podman = options.podman;
  auto escape = [podman](absl::string_view text) {
    return podman ? std::string(text) : EscapeForArgs(text);
  };
  std::vector<std::string> args = {
      podman ? absl::StrCat("--xds=", options.control_plane_address)
             : std::string("--xds=$(MESHLET_CONTROL_PLANE)"),
      absl::StrCat("--xds-ca=", kTrustDir, "/", kTrustBundleKey),
      absl::StrCat("--xds-server-identity=spiffe://", options.trust_domain, "/ns/",
                   options.control_plane_namespace, "/sa/", options.control_plane_service_account),
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
  for (int64_t port : plan.ports) args.push_back(absl::StrCat("--node-port=", port));
  for (const auto& [key, value] : plan.labels) {
    args.push_back(absl::StrCat("--node-label=", escape(key), "=", escape(value)));
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
  for (const Plan::AppProbe& probe : plan.app_probes) {
    if (!probe.rewrite) continue;
    args.push_back(
        absl::StrCat("--app-probe=", probe.ProxyPath(), "=", probe.port, escape(probe.path)));
  }

  YAML::Node c = Map();
  c["name"] = StringNode(kProxyContainerName);
  c["image"] = StringNode(plan.image);
  c["command"] = StringList({kProxyCommand});
  c["args"] = StringList(args);
  YAML::Node env = List();
  env.push_back(FieldEnv("POD_NAME", "metadata.name"));
  if (podman) {
    env.push_back(ValueEnv("POD_NAMESPACE", plan.pod_namespace));
    env.push_back(ValueEnv("SERVICE_ACCOUNT", plan.service_account));
  } else {
    env.push_back(FieldEnv("POD_NAMESPACE", "metadata.namespace"));
    env.push_back(FieldEnv("POD_IP", "status.podIP"));
    env.push_back(FieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"));
  }
  env.push_back(ValueEnv("MESHLET_CONTROL_PLANE", options.control_plane_address));
  c["env"] = env;
  if (!podman) {  // podman 4.3 publishes every containerPort on the host
    YAML::Node port = Map();
    port["name"] = StringNode(kMetricsPortName);
    port["containerPort"] = IntNode(kPrometheusPort);
    port["protocol"] = StringNode("TCP");
    c["ports"].push_back(port);
  }
  c["readinessProbe"] = Probe(2, 3);
  // A native sidecar's startup probe holds the app's containers until the proxy is ready.
  if (plan.mode == SidecarMode::kNative) c["startupProbe"] = Probe(1, 600);
  c["resources"] = Resources(plan);
  YAML::Node security = Map();
  security["runAsUser"] = IntNode(kProxyUid);
  security["runAsGroup"] = IntNode(kProxyUid);
  security["runAsNonRoot"] = BoolNode(true);
  security["allowPrivilegeEscalation"] = BoolNode(false);
  security["privileged"] = BoolNode(false);
  security["readOnlyRootFilesystem"] = BoolNode(true);
  security["capabilities"]["drop"] = StringList({"ALL"});
  c["securityContext"] = security;
  YAML::Node mounts = List();
  mounts.push_back(Mount(kTrustVolume, kTrustDir, true));
  mounts.push_back(plan.join_token ? Mount(kJoinTokenVolume, kJoinTokenDir, true)
                                   : Mount(kTokenVolume, kTokenDir, true));
  mounts.push_back(Mount(kDataVolume, kDataDir, false));
  c["volumeMounts"] = mounts;
  if (plan.mode == SidecarMode::kNative) c["restartPolicy"] = StringNode("Always");
  return c;
}

std::vector<YAML::Node> Volumes(const Plan& plan, const Options& options) {
  YAML::Node trust = Map();
  trust["name"] = StringNode(kTrustVolume);
  trust["configMap"]["name"] = StringNode(options.trust_bundle_config_map);
  YAML::Node item = Map();
  item["key"] = StringNode(kTrustBundleKey);
  item["path"] = StringNode(kTrustBundleKey);
  trust["configMap"]["items"].push_back(item);
  // podman 4.3 dereferences a secret volume's `optional` without checking that it is set: the
  // podman form writes it (false, Kubernetes' default) on its volumes rather than leave it out.
  if (options.podman) trust["configMap"]["optional"] = BoolNode(false);

  YAML::Node credential = Map();
  if (plan.join_token) {
    credential["name"] = StringNode(kJoinTokenVolume);
    YAML::Node token = Map();
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
    YAML::Node source = Map();
    source["serviceAccountToken"]["audience"] = StringNode(options.token_audience);
    source["serviceAccountToken"]["expirationSeconds"] = IntNode(options.token_expiration_seconds);
    source["serviceAccountToken"]["path"] = StringNode("token");
    credential["projected"]["sources"].push_back(source);
  }
  YAML::Node data = Map();
  data["name"] = StringNode(kDataVolume);
  data["emptyDir"] = Map();
  return {trust, credential, data};
}

std::string StatusJson(const Plan& plan, const Options& options,
                       const std::vector<std::string>& init_containers,
                       const std::vector<std::string>& containers,
                       const std::vector<std::string>& volumes,
                       const std::vector<std::string>& annotations) {
  auto list = [](const std::vector<std::string>& names) {
    return absl::StrCat(
        "[",
        absl::StrJoin(names, ",",
                      [](std::string* out, const std::string& n) { out->append(JsonQuote(n)); }),
        "]");
  };
  return absl::StrCat(
      "{\"version\":", JsonQuote(options.version),
      ",\"mode\":", plan.mode == SidecarMode::kNative ? "\"native\"" : "\"classic\"",
      ",\"initContainers\":", list(init_containers), ",\"containers\":", list(containers),
      ",\"volumes\":", list(volumes),
      annotations.empty() ? "" : absl::StrCat(",\"annotations\":", list(annotations)), "}");
}

// The status for podman, whose 4.3 refuses annotation values over 63 characters: the version
// and mode, from which ReadStatus knows the names, whether the podman annotation was added
// ("podman":true), and whether restartPolicy was set to OnFailure from none or Always ("rp":1).
std::string ShortStatusJson(const Plan& plan, const Options& options, bool podman_annotation) {
  return absl::StrCat(
      "{\"version\":", JsonQuote(options.version),
      ",\"mode\":", plan.mode == SidecarMode::kNative ? "\"native\"" : "\"classic\"",
      podman_annotation ? ",\"podman\":true" : "", plan.restart_on_failure ? ",\"rp\":1" : "", "}");
}

// The entries of `list` whose name is not in `drop`.
YAML::Node Without(const YAML::Node& list, const std::set<std::string>& drop) {
  YAML::Node kept = List();
  for (size_t i = 0; list && list.IsSequence() && i < list.size(); ++i) {
    if (drop.count(Text(Field(list[i], "name"))) == 0) kept.push_back(list[i]);
  }
  return kept;
}

// Writes the plan into `pod` (a pod or pod template of the output tree).
void Write(const Plan& plan, const Options& options, YAML::Node pod) {
  if (plan.needs_metadata) {
    YAML::Node rebuilt = Map();
    rebuilt["metadata"] = Map();
    for (auto it = pod.begin(); it != pod.end(); ++it) {
      if (Text(it->first) != "metadata") rebuilt.force_insert(it->first, it->second);
    }
    pod = rebuilt;
  }
  YAML::Node spec = pod["spec"];
  YAML::Node proxy = ProxyContainer(plan, options);

  std::vector<std::string> added_init = {kInitContainerName};
  std::vector<std::string> added_containers;
  YAML::Node init_containers = List();
  init_containers.push_back(InitContainer(plan));
  if (plan.mode == SidecarMode::kNative) {
    init_containers.push_back(proxy);
    added_init.push_back(kProxyContainerName);
  }
  for (const YAML::Node& c :
       Without(Field(spec, "initContainers"), plan.injected_init_containers)) {
    init_containers.push_back(c);
  }
  YAML::Node containers = List();
  if (plan.mode == SidecarMode::kClassic) {
    containers.push_back(proxy);
    added_containers.push_back(kProxyContainerName);
  }
  for (const YAML::Node& c : Without(Field(spec, "containers"), plan.injected_containers)) {
    containers.push_back(c);
  }
  YAML::Node volumes = Without(Field(spec, "volumes"), plan.injected_volumes);
  std::vector<std::string> added_volumes;
  for (const YAML::Node& v : Volumes(plan, options)) {
    volumes.push_back(v);
    added_volumes.push_back(Text(v["name"]));
  }
  // The app's HTTP probes: through the proxy, or back as written.
  for (const Plan::AppProbe& probe : plan.app_probes) {
    for (size_t i = 0; i < containers.size(); ++i) {
      YAML::Node c = containers[i];
      if (Text(Field(c, "name")) != probe.container) continue;
      YAML::Node get = c[probe.kind]["httpGet"];
      get["port"] = IntNode(probe.rewrite ? kPrometheusPort : probe.port);
      get["path"] = StringNode(probe.rewrite ? probe.ProxyPath() : probe.path);
    }
  }
  spec["initContainers"] = init_containers;
  spec["containers"] = containers;
  spec["volumes"] = volumes;
  if (plan.restart_on_failure) {
    spec["restartPolicy"] = StringNode("OnFailure");
  } else if (plan.restore_restart_policy) {
    spec.remove("restartPolicy");  // the default, Always, as before the --podman injection
  }

  YAML::Node metadata = pod["metadata"];
  if (!metadata.IsMap()) metadata = Map();  // was null
  const YAML::Node old_annotations = Field(metadata, "annotations");
  YAML::Node annotations = Map();
  for (auto it = old_annotations.begin(); old_annotations.IsMap() && it != old_annotations.end();
       ++it) {
    const std::string key = Text(it->first);
    if (key != kStatusAnnotation && plan.injected_annotations.count(key) == 0) {
      annotations.force_insert(it->first, it->second);
    }
  }
  if (!plan.has_default_container) {
    annotations[kDefaultContainerAnnotation] = StringNode(plan.first_app_container);
  }
  std::vector<std::string> added_annotations;
  if (options.podman && !Field(annotations, kPodmanInitContainerTypeAnnotation)) {
    annotations[kPodmanInitContainerTypeAnnotation] = StringNode("always");
    added_annotations.push_back(kPodmanInitContainerTypeAnnotation);
  }
  annotations[kStatusAnnotation] =
      StringNode(options.podman ? ShortStatusJson(plan, options, !added_annotations.empty())
                                : StatusJson(plan, options, added_init, added_containers,
                                             added_volumes, added_annotations));
  metadata["annotations"] = annotations;
}

}  // namespace

absl::StatusOr<SidecarMode> ParseSidecarMode(absl::string_view text) {
  if (text == "native") return SidecarMode::kNative;
  if (text == "classic") return SidecarMode::kClassic;
  return absl::InvalidArgumentError("must be native or classic");
}

absl::Status CheckImage(absl::string_view image) {
  if (image.empty() || std::any_of(image.begin(), image.end(), [](char c) {
        return absl::ascii_isspace(static_cast<unsigned char>(c));
      })) {
    return absl::InvalidArgumentError("must be an image reference without spaces");
  }
  return absl::OkStatus();
}

absl::Status CheckHostPort(absl::string_view address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError("must be HOST:PORT");
  }
  return absl::OkStatus();
}

absl::StatusOr<Identity> ParseIdentity(absl::string_view text) {
  if (text == kKubernetesTokenIdentity) return Identity::kKubernetesToken;
  if (text == kJoinTokenIdentity) return Identity::kJoinToken;
  return absl::InvalidArgumentError(
      absl::StrCat("must be ", kKubernetesTokenIdentity, " (the default) or ", kJoinTokenIdentity));
}

std::string DefaultJoinTokenSecret(absl::string_view service_account) {
  return absl::StrCat("meshlet-join-token-", service_account);
}

absl::Status ValidateOptions(const Options& options) {
  RETURN_IF_ERROR(Annotate(CheckImage(options.proxy_image),
                           absl::StrCat("proxy image \"", options.proxy_image, "\"")));
  RETURN_IF_ERROR(Annotate(CheckHostPort(options.control_plane_address),
                           absl::StrCat("control plane \"", options.control_plane_address, "\"")));
  if (absl::Status s = tls::ValidateTrustDomain(options.trust_domain); !s.ok()) return s;
  if (!config::IsDnsLabel(options.control_plane_namespace) ||
      !config::IsDnsSubdomain(options.control_plane_service_account) ||
      !config::IsDnsSubdomain(options.trust_bundle_config_map)) {
    return absl::InvalidArgumentError(
        "the control plane's namespace, service account and trust bundle ConfigMap must be "
        "Kubernetes names");
  }
  if (!ParseQuantity(options.proxy_cpu).ok() || !ParseQuantity(options.proxy_memory).ok()) {
    return absl::InvalidArgumentError("proxy resources must be quantities (100m, 64Mi)");
  }
  if (!options.trace_collector.empty() && options.trace_collector != kTraceCollectorOff) {
    RETURN_IF_ERROR(Annotate(CheckHostPort(options.trace_collector),
                             absl::StrCat("trace collector \"", options.trace_collector, "\"")));
  }
  if (options.token_expiration_seconds < 600) {
    return absl::InvalidArgumentError("the token's lifetime must be at least 600 seconds");
  }
  return absl::OkStatus();
}

namespace {

// The pods of `object` (the document, or an item of a List at `path`).
absl::Status FindPods(const YAML::Node& object, std::vector<PathStep> path,
                      const std::string& field_prefix, const config::YamlParseOptions& source,
                      bool in_list, std::vector<PodLocation>& out) {
  if (!object.IsMap()) {
    return DocumentError(source, object, "", field_prefix.empty() ? "(document)" : field_prefix,
                         "not a Kubernetes object (a map with apiVersion and kind)");
  }
  const std::string field = field_prefix.empty() ? "" : absl::StrCat(field_prefix, ".");
  const YAML::Node kind_node = Field(object, "kind");
  if (!IsString(kind_node) || kind_node.Scalar().empty()) {
    return DocumentError(source, kind_node ? kind_node : object, "", absl::StrCat(field, "kind"),
                         kind_node ? "must be a string" : "required");
  }
  const std::string kind = kind_node.Scalar();
  const std::string api_version = Text(Field(object, "apiVersion"));
  const YAML::Node metadata = Field(object, "metadata");
  std::string name = Text(Field(metadata, "name"));
  if (name.empty()) {
    name = std::string(absl::StripSuffix(Text(Field(metadata, "generateName")), "-"));
  }
  const std::string object_label = absl::StrCat(kind, " \"", name, "\"");
  if (kind == "List" && !in_list && GroupOf(api_version).empty()) {
    const YAML::Node items = Field(object, "items");
    if (!items || items.IsNull()) return absl::OkStatus();
    if (!items.IsSequence()) {
      return DocumentError(source, items, "List", "items", "must be a list");
    }
    for (size_t i = 0; i < items.size(); ++i) {
      std::vector<PathStep> item_path = path;
      item_path.emplace_back(std::string("items"));
      item_path.emplace_back(i);
      RETURN_IF_ERROR(
          FindPods(items[i], item_path, absl::StrCat("items[", i, "]"), source, true, out));
    }
    return absl::OkStatus();
  }
  for (const WorkloadKind& w : WorkloadKinds()) {
    if (w.kind != kind) continue;
    if (std::find(w.groups.begin(), w.groups.end(), GroupOf(api_version)) == w.groups.end()) {
      if (api_version.empty()) {
        return DocumentError(source, object, object_label, absl::StrCat(field, "apiVersion"),
                             "required");
      }
      return absl::OkStatus();  // another API's kind of the same name
    }
    PodLocation location;
    location.kind = kind;
    location.name = name;
    location.object = object_label;
    location.object_prefix = field;
    location.object_metadata = metadata;
    location.is_pod = w.template_path.empty();
    location.path = path;
    location.field = field_prefix;
    YAML::Node node = object;
    for (absl::string_view step : w.template_path) {
      const YAML::Node next = Field(node, step);
      location.field =
          location.field.empty() ? std::string(step) : absl::StrCat(location.field, ".", step);
      if (!next.IsMap()) {
        return DocumentError(source, next ? next : node, object_label, location.field,
                             next ? "must be a map" : "required");
      }
      node.reset(next);
      location.path.emplace_back(std::string(step));
    }
    location.pod = node;
    if (location.is_pod && name.empty()) {
      return DocumentError(source, metadata ? metadata : object, object_label,
                           absl::StrCat(field, "metadata.name"), "required");
    }
    out.push_back(std::move(location));
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

// The first scalar (key or value) of `node` that is not valid UTF-8, and its path: Kubernetes
// objects are JSON, which cannot carry such bytes.
std::optional<std::pair<YAML::Node, std::string>> InvalidUtf8(const YAML::Node& node,
                                                              const std::string& path) {
  if (node.IsScalar()) {
    if (!IsValidUtf8(node.Scalar())) return std::pair{node, path};
  } else if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string at = absl::StrCat(path, path.empty() ? "" : ".", Text(it->first));
      if (auto bad = InvalidUtf8(it->first, at)) return bad;
      if (auto bad = InvalidUtf8(it->second, at)) return bad;
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      if (auto bad = InvalidUtf8(node[i], absl::StrCat(path, "[", i, "]"))) return bad;
    }
  }
  return std::nullopt;
}

YAML::Node Follow(YAML::Node node, const std::vector<PathStep>& path) {
  for (const PathStep& step : path) {
    if (const auto* key = std::get_if<std::string>(&step)) {
      node.reset(node[*key]);
    } else {
      node.reset(node[std::get<size_t>(step)]);
    }
  }
  return node;
}

absl::StatusOr<Result> InjectOrThrow(const YAML::Node& document, const Options& options,
                                     const config::YamlParseOptions& source) {
  Result result;
  result.document = document;
  if (auto bad = InvalidUtf8(document, "")) {
    return DocumentError(source, bad->first, "", bad->second.empty() ? "(document)" : bad->second,
                         "not valid UTF-8");
  }
  std::vector<PodLocation> locations;
  RETURN_IF_ERROR(FindPods(document, {}, "", source, false, locations));
  std::vector<Plan> plans;
  for (const PodLocation& location : locations) {
    ASSIGN_OR_RETURN(Plan plan, PodReader(location, options, source).Read());
    PodResult pod;
    pod.field = location.field;
    pod.object = location.object;
    pod.outcome = plan.outcome;
    pod.reason = plan.reason;
    pod.warnings = plan.warnings;
    result.pods.push_back(std::move(pod));
    plans.push_back(std::move(plan));
  }
  YAML::Node out = YAML::Clone(document);
  for (size_t i = 0; i < locations.size(); ++i) {
    if (plans[i].outcome != Outcome::kInjected) continue;
    // Templates without metadata get it first: write into the parent's entry.
    YAML::Node pod = Follow(out, locations[i].path);
    Write(plans[i], options, pod);
    pod.reset(Follow(out, locations[i].path));
    std::set<std::string> deep = {kInitContainerName, kProxyContainerName, kTrustVolume,
                                  kTokenVolume,       kJoinTokenVolume,    kDataVolume};
    std::vector<PodProblem> problems =
        CheckPod(pod["metadata"], pod["spec"],
                 locations[i].field.empty() ? "" : absl::StrCat(locations[i].field, "."), deep);
    if (!problems.empty()) {
      std::vector<std::string> lines;
      for (const PodProblem& p : problems) lines.push_back(absl::StrCat(p.field, ": ", p.message));
      return DocumentError(
          source, locations[i].pod, locations[i].object, "(injected pod)",
          absl::StrCat("the Kubernetes API would refuse it: ", absl::StrJoin(lines, "; ")));
    }
    if (Equal(pod, locations[i].pod)) {
      result.pods[i].outcome = Outcome::kUnchanged;
    } else {
      result.changed = true;
    }
  }
  if (result.changed) result.document = out;
  return result;
}

}  // namespace

absl::StatusOr<Result> Inject(const YAML::Node& document, const Options& options,
                              const config::YamlParseOptions& source) {
  try {
    return InjectOrThrow(document, options, source);
  } catch (const YAML::Exception& e) {
    // The node accessors above do not throw; this would be a bug, reported rather than fatal.
    return absl::InternalError(
        absl::StrCat("injection failed on the document's structure: ", e.what()));
  }
}

}  // namespace meshlet::controlplane::inject
