#include "cni/repair.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cni/plugin.h"
#include "common/base/json.h"

namespace meshlet::cni {
namespace {

std::string Key(absl::string_view pod_namespace, absl::string_view name) {
  return absl::StrCat(pod_namespace, "/", name);
}

const std::string* StringMember(const JsonValue* object, absl::string_view key) {
  const JsonValue* value = object != nullptr ? object->Find(key) : nullptr;
  return value != nullptr && value->IsString() ? &value->text : nullptr;
}

// Looks for meshlet-proxy in one of status.containerStatuses / initContainerStatuses.
void ReadProxyStatus(const JsonValue* statuses, NodePod& pod) {
  if (statuses == nullptr || statuses->type != JsonValue::Type::kArray) return;
  for (const JsonValue& status : statuses->items) {
    const std::string* name = StringMember(&status, "name");
    if (name == nullptr || *name != kProxyContainer) continue;
    pod.proxy_found = true;
    const JsonValue* ready = status.Find("ready");
    pod.proxy_ready = ready != nullptr && ready->type == JsonValue::Type::kBool && ready->boolean;
  }
}

}  // namespace

absl::StatusOr<RepairMode> ParseRepairMode(absl::string_view text) {
  if (text == "evict") return RepairMode::kEvict;
  if (text == "label") return RepairMode::kLabel;
  if (text == "off") return RepairMode::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("repair mode \"", text, "\": must be evict, label or off"));
}

absl::string_view RepairModeName(RepairMode mode) {
  switch (mode) {
    case RepairMode::kEvict:
      return "evict";
    case RepairMode::kLabel:
      return "label";
    case RepairMode::kOff:
      return "off";
  }
  return "off";
}

absl::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLeave:
      return "leave";
    case Verdict::kWait:
      return "wait";
    case Verdict::kEvict:
      return "evict";
    case Verdict::kLabel:
      return "label";
    case Verdict::kReport:
      return "report";
  }
  return "leave";
}

absl::StatusOr<NodePod> NodePodFromJson(const JsonValue& object) {
  const JsonValue* metadata = object.Find("metadata");
  if (!object.IsObject() || metadata == nullptr || !metadata->IsObject()) {
    return absl::InvalidArgumentError("a pod with no metadata");
  }
  NodePod pod;
  const std::string* ns = StringMember(metadata, "namespace");
  const std::string* name = StringMember(metadata, "name");
  if (ns == nullptr || name == nullptr) {
    return absl::InvalidArgumentError("a pod with no metadata.namespace or metadata.name");
  }
  pod.pod_namespace = *ns;
  pod.name = *name;
  if (const std::string* uid = StringMember(metadata, "uid")) pod.uid = *uid;
  if (const JsonValue* annotations = metadata->Find("annotations");
      annotations != nullptr && annotations->IsObject()) {
    for (const auto& [key, value] : annotations->members) {
      if (value.IsString()) pod.annotations[key] = value.text;
    }
  }
  const std::string* label = StringMember(metadata->Find("labels"), kUncapturedLabel);
  pod.labelled = label != nullptr && *label == "true";
  const JsonValue* deletion = metadata->Find("deletionTimestamp");
  pod.deleting = deletion != nullptr && deletion->type != JsonValue::Type::kNull;
  if (const JsonValue* owners = metadata->Find("ownerReferences");
      owners != nullptr && owners->type == JsonValue::Type::kArray) {
    for (const JsonValue& owner : owners->items) {
      const JsonValue* controller = owner.Find("controller");
      const std::string* kind = StringMember(&owner, "kind");
      if (controller != nullptr && controller->type == JsonValue::Type::kBool &&
          controller->boolean && kind != nullptr) {
        pod.controller_kind = *kind;
      }
    }
  }
  const JsonValue* spec = object.Find("spec");
  const JsonValue* host_network = spec != nullptr ? spec->Find("hostNetwork") : nullptr;
  pod.host_network = host_network != nullptr && host_network->type == JsonValue::Type::kBool &&
                     host_network->boolean;
  const JsonValue* status = object.Find("status");
  if (const std::string* phase = StringMember(status, "phase")) pod.phase = *phase;
  if (const std::string* start = StringMember(status, "startTime")) {
    absl::Time t;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, *start, &t, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pod ", Key(pod.pod_namespace, pod.name), ": status.startTime: ", error));
    }
    pod.start_time = t;
  }
  if (status != nullptr) {
    ReadProxyStatus(status->Find("initContainerStatuses"), pod);
    ReadProxyStatus(status->Find("containerStatuses"), pod);
  }
  return pod;
}

absl::StatusOr<NodePodList> NodePodListFromJson(absl::string_view text) {
  absl::StatusOr<JsonValue> parsed = ParseJson(text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the pod list: ", parsed.status().message()));
  }
  const std::string* kind = StringMember(&*parsed, "kind");
  const JsonValue* items = parsed->Find("items");
  if (kind == nullptr || *kind != "PodList" || items == nullptr ||
      (items->type != JsonValue::Type::kArray && items->type != JsonValue::Type::kNull)) {
    return absl::InvalidArgumentError("the API server's answer is not a PodList");
  }
  NodePodList list;
  if (const std::string* version = StringMember(parsed->Find("metadata"), "resourceVersion")) {
    list.resource_version = *version;
  }
  for (const JsonValue& item : items->items) {
    absl::StatusOr<NodePod> pod = NodePodFromJson(item);
    if (!pod.ok()) return pod.status();
    list.pods.push_back(*std::move(pod));
  }
  return list;
}

void CaptureRecord::AddLogLine(absl::string_view line) {
  // TIME meshlet-cni CMD pod=NS/NAME container=ID12 outcome=OUTCOME detail="..."
  if (line.empty() || line[0] == ' ') return;
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos || !absl::StartsWith(line.substr(space), " meshlet-cni "))
    return;
  const size_t outcome_at = line.find(" outcome=");
  const size_t pod_at = line.find(" pod=");
  if (outcome_at == absl::string_view::npos || pod_at == absl::string_view::npos) return;
  absl::string_view outcome = line.substr(outcome_at + 9);
  outcome = outcome.substr(0, outcome.find(' '));
  if (outcome != "captured" && outcome != "checked") return;
  absl::string_view pod = line.substr(pod_at + 5);
  pod = pod.substr(0, pod.find(' '));
  if (pod.find('/') == absl::string_view::npos) return;  // "-": no pod named
  absl::Time t;
  std::string error;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", line.substr(0, space), &t, &error)) return;
  auto it = last_.find(pod);
  if (it == last_.end()) {
    last_.emplace(std::string(pod), t);
  } else {
    it->second = std::max(it->second, t);
  }
}

std::optional<absl::Time> CaptureRecord::LastCaptured(absl::string_view pod_namespace,
                                                      absl::string_view name) const {
  auto it = last_.find(Key(pod_namespace, name));
  if (it == last_.end()) return std::nullopt;
  return it->second;
}

void CaptureRecord::Retain(const std::vector<std::string>& keep) {
  const std::set<std::string, std::less<>> kept(keep.begin(), keep.end());
  for (auto it = last_.begin(); it != last_.end();) {
    it = kept.count(it->first) != 0 ? std::next(it) : last_.erase(it);
  }
}

RepairDecision DecideRepair(const NodePod& pod, const CaptureRecord& captured,
                            const RepairSettings& settings, absl::Time now) {
  auto leave = [](std::string reason) {
    return RepairDecision{.verdict = Verdict::kLeave, .reason = std::move(reason)};
  };
  Decision marked;
  CniError error;
  // Invalid capture annotations: the plugin fails such a pod's sandbox, so it never runs.
  if (!Decide(pod.annotations, &marked, &error) || !marked.capture) {
    return leave(marked.capture ? error.msg : marked.reason);
  }
  if (std::find(settings.exclude_namespaces.begin(), settings.exclude_namespaces.end(),
                pod.pod_namespace) != settings.exclude_namespaces.end()) {
    return leave(absl::StrCat("namespace ", pod.pod_namespace, " is excluded"));
  }
  if (pod.host_network) return leave("hostNetwork: the node's namespace, never captured");
  if (pod.deleting) return leave("being deleted");
  if (pod.phase != "Pending" && pod.phase != "Running") {
    return leave(absl::StrCat("phase ", pod.phase.empty() ? "unknown" : pod.phase));
  }
  if (pod.proxy_found && pod.proxy_ready) return leave("its proxy is ready");
  if (!pod.start_time.has_value()) return leave("not started");
  const std::optional<absl::Time> last = captured.LastCaptured(pod.pod_namespace, pod.name);
  if (last.has_value() && *last >= *pod.start_time) return leave("captured by meshlet-cni");
  if (now - *pod.start_time < settings.grace) {
    return RepairDecision{.verdict = Verdict::kWait,
                          .reason = "not ready and not captured, within the grace period"};
  }
  std::string reason = absl::StrCat(
      "started ", absl::FormatTime(absl::RFC3339_sec, *pod.start_time, absl::UTCTimeZone()),
      ", its proxy not ready, and no capture by meshlet-cni since: its sandbox was set up while "
      "meshlet-cni was not in the node's chain");
  switch (settings.mode) {
    case RepairMode::kEvict:
      if (pod.controller_kind.empty()) {
        return RepairDecision{.verdict = Verdict::kReport,
                              .reason = absl::StrCat(reason,
                                                     " (a bare pod: not evicted, "
                                                     "nothing would recreate it)")};
      }
      return RepairDecision{.verdict = Verdict::kEvict, .reason = std::move(reason)};
    case RepairMode::kLabel:
      return RepairDecision{.verdict = pod.labelled ? Verdict::kReport : Verdict::kLabel,
                            .reason = std::move(reason)};
    case RepairMode::kOff:
      break;
  }
  return RepairDecision{.verdict = Verdict::kReport, .reason = std::move(reason)};
}

EvictionResult ClassifyEviction(int http_status) {
  if (http_status == 200 || http_status == 201) return EvictionResult::kEvicted;
  if (http_status == 429) return EvictionResult::kRetryLater;
  if (http_status == 404) return EvictionResult::kGone;
  return EvictionResult::kFailed;
}

std::string EvictionBody(const NodePod& pod) {
  std::string body =
      absl::StrCat(R"({"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":)",
                   JsonQuote(pod.name), R"(,"namespace":)", JsonQuote(pod.pod_namespace), "}");
  if (!pod.uid.empty()) {
    absl::StrAppend(&body, R"(,"deleteOptions":{"preconditions":{"uid":)", JsonQuote(pod.uid),
                    "}}");
  }
  absl::StrAppend(&body, "}");
  return body;
}

std::string LabelPatchBody(absl::string_view reason) {
  return absl::StrCat(R"({"metadata":{"labels":{)", JsonQuote(kUncapturedLabel),
                      R"(:"true"},"annotations":{)", JsonQuote(kUncapturedAnnotation), ":",
                      JsonQuote(reason), "}}}");
}

}  // namespace meshlet::cni
