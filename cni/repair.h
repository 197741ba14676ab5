#pragma once

// The race repair's decisions (docs/adr/0094, "Amended: the race repair"): which of the node's
// pods had their sandbox set up while meshlet-cni was not in the chain, and what the node agent
// does about each (evict, label, report, leave). Values and pure functions: no I/O, no threads;
// the agent feeds them the API server's pod list, the plugin's log lines and the time.
//
// A pod is flagged when all of these hold: marked for capture by the plugin (Decide() in
// plugin.h says capture: injected in CNI mode, not opted out), not in an excluded namespace, not
// hostNetwork, not being deleted, Pending or Running, started at least `grace` ago, its
// meshlet-proxy container (regular or native sidecar) not ready, and no `captured`/`checked` line
// of the plugin for its namespace and name at or after its startTime. The proxy's capture check
// keeps an uncaptured pod not ready; the log line tells an uncaptured pod from one not ready for
// another reason (no configuration yet), which eviction would not fix.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cni/json.h"

namespace meshlet::cni {

enum class RepairMode {
  kEvict,  // evict through the Eviction API (PodDisruptionBudgets hold); bare pods are reported
  kLabel,  // label the pod (kUncapturedLabel) and report it; nothing is restarted
  kOff,    // report (log, metrics) only
};
absl::StatusOr<RepairMode> ParseRepairMode(absl::string_view text);  // evict|label|off
absl::string_view RepairModeName(RepairMode mode);

// The label the agent puts on a flagged pod in label mode (value "true"); `meshctl check` lists
// the pods that carry it. Its annotation kUncapturedAnnotation says why and since when.
inline constexpr char kUncapturedLabel[] = "cni.meshlet.io/uncaptured";
inline constexpr char kUncapturedAnnotation[] = "cni.meshlet.io/uncaptured";
inline constexpr char kProxyContainer[] = "meshlet-proxy";

// What the repair needs of one Pod object.
struct NodePod {
  std::string pod_namespace;
  std::string name;
  std::string uid;
  std::map<std::string, std::string> annotations;
  bool labelled = false;  // carries kUncapturedLabel
  bool host_network = false;
  bool deleting = false;  // metadata.deletionTimestamp set
  std::string phase;
  std::optional<absl::Time> start_time;  // status.startTime
  bool proxy_found = false;              // a meshlet-proxy container status, regular or init
  bool proxy_ready = false;
  std::string controller_kind;  // the ownerReference with controller: true; empty: a bare pod
};

// One Pod object (JSON, as parsed). InvalidArgument for a value that is not a Pod.
absl::StatusOr<NodePod> NodePodFromJson(const JsonValue& pod);
// The items of a PodList, and its metadata.resourceVersion (for a watch from it).
struct NodePodList {
  std::vector<NodePod> pods;
  std::string resource_version;
};
absl::StatusOr<NodePodList> NodePodListFromJson(absl::string_view list);

// The plugin's `captured` and `checked` lines, by "NS/NAME": the time of the latest.
class CaptureRecord {
 public:
  // Lines that are not such a line (other outcomes, the indented commands) are ignored.
  void AddLogLine(absl::string_view line);
  std::optional<absl::Time> LastCaptured(absl::string_view pod_namespace,
                                         absl::string_view name) const;
  // Forgets the pods not in `keep` ("NS/NAME"), so that the record stays the node's pods' size.
  void Retain(const std::vector<std::string>& keep);
  size_t size() const { return last_.size(); }

 private:
  std::map<std::string, absl::Time, std::less<>> last_;
};

struct RepairSettings {
  RepairMode mode = RepairMode::kEvict;
  absl::Duration grace = absl::Seconds(30);
  std::vector<std::string> exclude_namespaces = {"kube-system"};
};

enum class Verdict {
  kLeave,   // not the plugin's, captured, ready, or going away
  kWait,    // could be uncaptured, but not for `grace` yet
  kEvict,   // uncaptured; evict it (mode evict, a controller recreates it)
  kLabel,   // uncaptured; label it (mode label; nothing to do when already labelled: kReport)
  kReport,  // uncaptured; only report (mode off, or a bare pod in mode evict)
};
absl::string_view VerdictName(Verdict verdict);

struct RepairDecision {
  Verdict verdict = Verdict::kLeave;
  std::string reason;  // one line, for the log
};
RepairDecision DecideRepair(const NodePod& pod, const CaptureRecord& captured,
                            const RepairSettings& settings, absl::Time now);

// What the Eviction API's answer (HTTP status of POST .../pods/NAME/eviction) means.
enum class EvictionResult {
  kEvicted,     // 200, 201
  kRetryLater,  // 429: a PodDisruptionBudget refuses it now; tried again at the next pass
  kGone,        // 404: the pod is already gone; nothing to repair
  kFailed,      // anything else (403: RBAC; 500: ...): counted as a failure, tried again
};
EvictionResult ClassifyEviction(int http_status);

// The body of POST /api/v1/namespaces/NS/pods/NAME/eviction (policy/v1 Eviction), with the pod's
// uid as a precondition so that a pod recreated under the same name is not the one evicted.
std::string EvictionBody(const NodePod& pod);
// The body of a merge PATCH of the pod (application/merge-patch+json) that sets
// kUncapturedLabel and kUncapturedAnnotation (`reason`).
std::string LabelPatchBody(absl::string_view reason);

}  // namespace meshlet::cni
