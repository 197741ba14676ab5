#include "control-plane/inject/pod_model.h"

#include <algorithm>
#include <iterator>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "common/base/status.h"
#include "control-plane/inject/pod_checks.h"
#include "control-plane/inject/revision.h"
#include "control-plane/inject/workload.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr int64_t kDefaultGracePeriodSeconds = 30;

}  // namespace

// "$" doubled, so the kubelet's $(VAR) expansion of args leaves the text as it is.
std::string EscapeForArgs(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"$", "$$"}});
}

// EscapeForArgs undone.
std::string UnescapeArgs(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"$$", "$"}});
}

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

absl::StatusOr<YAML::Node> PodReader::OptionalMap(const YAML::Node& parent, absl::string_view key,
                                                  absl::string_view field) const {
  const YAML::Node node = Field(parent, key);
  if (!node || node.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
  if (!node.IsMap()) return Error(node, field, "must be a map");
  return node;
}

absl::StatusOr<YAML::Node> PodReader::OptionalList(const YAML::Node& parent, absl::string_view key,
                                                   absl::string_view field) const {
  const YAML::Node node = Field(parent, key);
  if (!node || node.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
  if (!node.IsSequence()) return Error(node, field, "must be a list");
  return node;
}

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
  RETURN_IF_ERROR(ReadRevision(plan));
  if (plan.outcome != Outcome::kInjected) return plan;
  // The webhook: a pod another revision's webhook injected already keeps that sidecar. Two
  // webhook configurations select it (ADR 0082) and the API server called that one first;
  // injecting again would replace the sidecar, so that the last webhook called would win,
  // unseen.
  if (options_.own_revision_only && Field(annotations_, kStatusAnnotation)) {
    const std::string earlier = Text(Field(annotations_, kRevisionAnnotation));
    if (!earlier.empty() && earlier != RevisionDisplayName(plan.revision)) {
      plan.outcome = Outcome::kSkipped;
      plan.reason = absl::StrCat("revision ", earlier, "'s webhook injected it already (its ",
                                 kRevisionAnnotation, ")");
      plan.warnings.push_back(
          absl::StrCat("not injected again: ", plan.reason,
                       "; two webhook configurations select the pod (check their selectors)"));
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

absl::Status PodReader::ReadRevision(Plan& plan) const {
  plan.revision = options_.revision;
  std::string from = "the injection's";
  const std::string pod_namespace = !Text(Field(metadata_, "namespace")).empty()
                                        ? Text(Field(metadata_, "namespace"))
                                        : Text(Field(where_.object_metadata, "namespace"));
  if (auto it =
          options_.namespace_revisions.find(pod_namespace.empty() ? "default" : pod_namespace);
      it != options_.namespace_revisions.end()) {
    plan.revision = it->second;
    from = absl::StrCat("namespace ", it->first, "'s");
  }
  if (const YAML::Node label = Field(labels_, kRevisionLabel)) {
    const std::string field = absl::StrCat("metadata.labels['", kRevisionLabel, "']");
    if (!IsString(label)) return Error(label, field, "must be a string");
    if (absl::Status valid = CheckRevisionLabel(label.Scalar()); !valid.ok()) {
      return Error(label, field, valid.message());
    }
    plan.revision = label.Scalar();
    from = "the pod's";
  }
  // A tag stands for its revision; the unnamed revision, for the one the tag "default" names.
  if (auto tag = options_.tags.find(plan.revision.empty() ? kDefaultTag : plan.revision);
      tag != options_.tags.end()) {
    plan.revision = tag->second;
  }
  if (plan.revision == options_.revision) {
    plan.control_plane_address = options_.control_plane_address;
    plan.control_plane_service_account = options_.control_plane_service_account;
    return absl::OkStatus();
  }
  if (options_.own_revision_only) {
    plan.outcome = Outcome::kSkipped;
    plan.reason = absl::StrCat(from, " label ", kRevisionLabel, " names revision ",
                               RevisionDisplayName(plan.revision), ", not this control plane's (",
                               RevisionDisplayName(options_.revision), ")");
    // The webhook answers with it (an AdmissionReview warning, which kubectl prints): a pod of
    // another revision reaching this webhook means a configuration selects what it should not.
    plan.warnings.push_back(absl::StrCat(
        "not injected: ", plan.reason,
        "; that revision's webhook injects it (check the webhook configurations' selectors)"));
    return absl::OkStatus();
  }
  plan.control_plane_address =
      ControlPlaneDiscoveryAddress(plan.revision, options_.control_plane_namespace);
  plan.control_plane_service_account = ControlPlaneName(plan.revision);
  return absl::OkStatus();
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

}  // namespace meshlet::controlplane::inject
