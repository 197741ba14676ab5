#include "control-plane/inject/inject.h"

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
#include "control-plane/inject/annotations.h"
#include "control-plane/inject/containers.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_checks.h"
#include "control-plane/inject/pod_model.h"
#include "control-plane/inject/probes.h"
#include "control-plane/inject/revision.h"
#include "control-plane/inject/workload.h"

namespace meshlet::controlplane::inject {
namespace {

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

// The entries of `list` whose name is not in `drop`.
YAML::Node Without(const YAML::Node& list, const std::set<std::string>& drop) {
  YAML::Node kept = ListNode();
  for (size_t i = 0; list && list.IsSequence() && i < list.size(); ++i) {
    if (drop.count(Text(Field(list[i], "name"))) == 0) kept.push_back(list[i]);
  }
  return kept;
}

// Writes the plan into `pod` (a pod or pod template of the output tree).
void Write(const Plan& plan, const Options& options, YAML::Node pod) {
  if (plan.needs_metadata) {
    YAML::Node rebuilt = MapNode();
    rebuilt["metadata"] = MapNode();
    for (auto it = pod.begin(); it != pod.end(); ++it) {
      if (Text(it->first) != "metadata") rebuilt.force_insert(it->first, it->second);
    }
    pod = rebuilt;
  }
  YAML::Node spec = pod["spec"];
  YAML::Node proxy = ProxyContainer(plan, options);

  std::vector<std::string> added_init;
  std::vector<std::string> added_containers;
  YAML::Node init_containers = ListNode();
  if (!options.cni) {  // with the CNI plugin, the node installs the capture rules
    init_containers.push_back(InitContainer(plan));
    added_init.push_back(kInitContainerName);
  }
  if (plan.mode == SidecarMode::kNative) {
    init_containers.push_back(proxy);
    added_init.push_back(kProxyContainerName);
  }
  for (const YAML::Node& c :
       Without(Field(spec, "initContainers"), plan.injected_init_containers)) {
    init_containers.push_back(c);
  }
  YAML::Node containers = ListNode();
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
  WriteAppProbes(plan, containers);
  spec["initContainers"] = init_containers;
  spec["containers"] = containers;
  spec["volumes"] = volumes;
  if (plan.restart_on_failure) {
    spec["restartPolicy"] = StringNode("OnFailure");
  } else if (plan.restore_restart_policy) {
    spec.remove("restartPolicy");  // the default, Always, as before the --podman injection
  }

  YAML::Node metadata = pod["metadata"];
  if (!metadata.IsMap()) metadata = MapNode();  // was null
  const YAML::Node old_annotations = Field(metadata, "annotations");
  YAML::Node annotations = MapNode();
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
  annotations[kRevisionAnnotation] = StringNode(RevisionDisplayName(plan.revision));
  annotations[kServiceAccountAnnotation] = StringNode(plan.service_account);
  if (options.podman && !Field(annotations, kPodmanInitContainerTypeAnnotation)) {
    annotations[kPodmanInitContainerTypeAnnotation] = StringNode("always");
    added_annotations.push_back(kPodmanInitContainerTypeAnnotation);
  }
  annotations[kStatusAnnotation] = StringNode(StatusAnnotation(
      plan, options, added_init, added_containers, added_volumes, added_annotations));
  metadata["annotations"] = annotations;
}

}  // namespace

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
  if (absl::StatusOr<std::string> revision = ParseRevision(options.revision);
      !revision.ok() || *revision != options.revision) {
    return absl::InvalidArgumentError(absl::StrCat(
        "revision: ", revision.ok() ? "\"default\" is the unnamed revision, given as \"\""
                                    : revision.status().message()));
  }
  for (const auto& [ns, revision] : options.namespace_revisions) {
    if (!revision.empty()) {
      RETURN_IF_ERROR(Annotate(CheckRevisionLabel(revision),
                               absl::StrCat("namespace ", ns, "'s label ", kRevisionLabel)));
    }
  }
  for (const auto& [tag, revision] : options.tags) {
    RETURN_IF_ERROR(Annotate(ParseTag(tag).status(), "tag"));
    absl::StatusOr<std::string> parsed = ParseRevision(revision);
    if (!parsed.ok() || *parsed != revision) {
      return absl::InvalidArgumentError(
          absl::StrCat("tag ", tag, ": revision: ",
                       parsed.ok() ? "\"default\" is the unnamed revision, given as \"\""
                                   : parsed.status().message()));
    }
  }
  if (!ParseQuantity(options.proxy_cpu).ok() || !ParseQuantity(options.proxy_memory).ok()) {
    return absl::InvalidArgumentError("proxy resources must be quantities (100m, 64Mi)");
  }
  if (!options.trace_collector.empty() && options.trace_collector != kTraceCollectorOff &&
      options.trace_collector != kTraceCollectorControlPlane) {
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
