#include "control-plane/inject/workload.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::inject {
namespace {

struct Owner {
  std::string kind;
  std::string name;
};

bool IsWorkloadKind(absl::string_view kind) {
  for (absl::string_view k : {"ReplicaSet", "Job", "StatefulSet", "DaemonSet",
                              "ReplicationController", "Deployment", "CronJob"}) {
    if (kind == k) return true;
  }
  return false;
}

// A label's value, or "".
std::string Label(const YAML::Node& labels, absl::string_view key) {
  const YAML::Node value = Field(labels, key);
  return value.IsScalar() && !value.IsNull() ? value.Scalar() : "";
}

// metadata.name, else generateName without its final '-' (the API server adds a random suffix).
std::string NameOf(const YAML::Node& metadata) {
  std::string name = Text(Field(metadata, "name"));
  if (name.empty()) {
    name = std::string(absl::StripSuffix(Text(Field(metadata, "generateName")), "-"));
  }
  return name;
}

// The object's controller: the ownerReference with controller: true, else its first one of a
// workload kind (hand-written references often leave `controller` out).
std::optional<Owner> ControllerOf(const YAML::Node& metadata) {
  const YAML::Node references = Field(metadata, "ownerReferences");
  if (!references.IsSequence()) return std::nullopt;
  std::optional<Owner> first_workload;
  for (const YAML::Node& reference : references) {
    Owner owner{Text(Field(reference, "kind")), Text(Field(reference, "name"))};
    if (owner.kind.empty() || owner.name.empty()) continue;
    if (IsTrue(Field(reference, "controller"))) return owner;
    if (!first_workload && IsWorkloadKind(owner.kind)) first_workload = owner;
  }
  return first_workload;
}

// `name` without "-<suffix>", when it ends so and something is left.
std::optional<std::string> WithoutSuffix(absl::string_view name, absl::string_view suffix) {
  if (suffix.empty() || name.size() <= suffix.size() + 1 || !absl::EndsWith(name, suffix) ||
      name[name.size() - suffix.size() - 1] != '-') {
    return std::nullopt;
  }
  return std::string(name.substr(0, name.size() - suffix.size() - 1));
}

// The CronJob a Job named <cronjob>-<minutes since 1970> belongs to.
std::optional<std::string> CronJobOfRun(absl::string_view job) {
  const size_t dash = job.rfind('-');
  if (dash == absl::string_view::npos || dash == 0) return std::nullopt;
  const absl::string_view digits = job.substr(dash + 1);
  if (digits.size() < kCronJobSuffixMinDigits || digits[0] == '0') return std::nullopt;
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return std::string(job.substr(0, dash));
}

// A ReplicaSet or Job whose own controller is unknown, named after the controller that made it
// when its name says so; any other owner as it is.
std::string Resolve(const Owner& owner, const YAML::Node& pod_labels) {
  if (owner.kind == "ReplicaSet") {
    if (auto deployment = WithoutSuffix(owner.name, Label(pod_labels, kPodTemplateHashLabel))) {
      return *deployment;
    }
  } else if (owner.kind == "Job") {
    if (auto cronjob = CronJobOfRun(owner.name)) return *cronjob;
  }
  return owner.name;
}

}  // namespace

Workload WorkloadOf(absl::string_view kind, const YAML::Node& object_metadata,
                    const YAML::Node& pod_labels) {
  Workload w;
  w.version = Label(pod_labels, kVersionLabel);
  if (w.version.empty()) w.version = Label(pod_labels, kPlainVersionLabel);

  for (const char* key : {kNameLabel, kAppLabel}) {
    w.service = Label(pod_labels, key);
    if (!w.service.empty()) return w;
  }
  const std::string name = NameOf(object_metadata);
  const std::optional<Owner> controller = ControllerOf(object_metadata);
  if (kind == "Pod") {
    w.service = controller ? Resolve(*controller, pod_labels) : name;
    return w;
  }
  // A template: the workload itself is the pods' controller.
  if (name.empty()) return w;
  if (controller && ((kind == "ReplicaSet" && controller->kind == "Deployment") ||
                     (kind == "Job" && controller->kind == "CronJob"))) {
    w.service = controller->name;
  } else if (controller && kind == "Job") {
    w.service = name;  // run by a controller of another kind: not a CronJob's
  } else {
    w.service = Resolve(Owner{std::string(kind), name}, pod_labels);
  }
  return w;
}

}  // namespace meshlet::controlplane::inject
