#pragma once

// meshctl upgrade's reading of a namespace (docs/upgrades.md, ADR 0070): from the Kubernetes API
// server's JSON of a Namespace, its workloads (Deployments, StatefulSets, DaemonSets) and its
// Pods, which revision the namespace is on, which workloads a move to a target revision
// restarts, and whether a restart is done (every pod of the workload on the target revision and
// ready, no old pod left). Pure functions of the JSON; the command (upgrade.cc) does the
// requests, the patches and the waiting.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/cli/kubernetes_client.h"

namespace meshlet::controlplane::cli {

// The Kubernetes annotation `kubectl rollout restart` sets on a pod template: changing it makes
// the Deployment controller replace every pod, new ones first as its strategy allows.
inline constexpr char kRestartedAtAnnotation[] = "kubectl.kubernetes.io/restartedAt";

// The kinds of workload meshctl upgrade restarts, with their API paths.
struct WorkloadKind {
  const char* kind;      // "Deployment"
  const char* resource;  // "deployments": /apis/apps/v1/namespaces/NS/<resource>
  const char* display;   // "deployment": deployment/NAME in the report
};
const std::vector<WorkloadKind>& WorkloadKinds();

struct WorkloadState {
  std::string kind;  // "Deployment", "StatefulSet", "DaemonSet"
  std::string name;
  // spec.replicas (1 when unset); a DaemonSet's status.desiredNumberScheduled.
  int replicas = 0;
  // Its pods that are not terminating, by revision (sidecar.meshlet.io/revision; "none" for a
  // pod without a sidecar), and how many of those are ready, by revision.
  std::vector<std::pair<std::string, int>> pods_by_revision;
  std::map<std::string, int> ready_by_revision;
  // The names of those pods, by revision.
  std::map<std::string, std::vector<std::string>> pod_names_by_revision;
  int terminating = 0;
  // The template labels meshlet.io/rev (pinned to that revision; never moved), opts out
  // (sidecar.meshlet.io/inject: "false") or is on the host's network; `skip_reason` says which.
  std::string skip_reason;
  // The template's kRestartedAtAnnotation, to tell a restart of ours from an earlier one.
  std::string restarted_at;
  // The controller's status says the latest template is rolled out: observedGeneration at the
  // generation, and updated, available (ready for a StatefulSet) and total replicas all equal
  // to replicas (a StatefulSet's currentRevision its updateRevision; a DaemonSet's updated and
  // available scheduled numbers its desired one).
  bool rolled_out = false;
  int64_t generation = 0;

  // Every pod on the target, none elsewhere, none terminating, all ready, and rolled out.
  bool Done(absl::string_view target) const;
  // What Done still waits for, for the progress and timeout messages.
  std::string Waiting(absl::string_view target) const;
  // "2 on 0-2-0, 1 on canary" ("no pods" when none).
  std::string PodsText() const;
  // "deployment/web".
  std::string Display() const;
};

struct NamespaceState {
  std::string name;
  std::map<std::string, std::string> labels;  // the Namespace's
  // The namespace's revision by its labels: meshlet.io/rev's value, "default" for a namespace
  // labelled meshlet.io/inject=enabled without it, "" for one with neither (not injected).
  std::string revision;
  std::vector<WorkloadState> workloads;  // by kind (WorkloadKinds' order), then name
};

// Reads the namespace `ns_json` (a Namespace), `workload_lists` (the list JSON of each kind of
// WorkloadKinds, in that order; fewer is fewer kinds) and `pods_json` (a PodList of the
// namespace). InvalidArgument naming what was not the expected JSON. Revisions below are names,
// "" for the unnamed one.
absl::StatusOr<NamespaceState> ReadNamespace(absl::string_view ns_json,
                                             const std::vector<std::string>& workload_lists,
                                             absl::string_view pods_json);

// What the revision's control plane says of the proxies of `pods` (their node ids are
// POD.NAMESPACE, as injection names them): "" when each is connected to it, on `target`'s
// revision, with every resource type ACKED; otherwise what is missing ("proxy web-7.shop not
// connected"). `proxies_json` is GET /api/v1/proxies.
std::string ProxiesNotConnected(absl::string_view proxies_json,
                                const std::vector<std::string>& pods, absl::string_view ns,
                                absl::string_view target);

// The JSON merge patch that puts a Namespace on `target`: meshlet.io/rev=<target>, or for the
// unnamed revision ("") the label removed and meshlet.io/inject=enabled.
std::string NamespaceRevisionPatch(absl::string_view target);
// `labels` as that patch leaves them.
std::map<std::string, std::string> LabelsOnRevision(std::map<std::string, std::string> labels,
                                                    absl::string_view target);
// The JSON merge patch of a Deployment that restarts its pods (kRestartedAtAnnotation = `at`).
std::string RestartPatch(absl::string_view at);

}  // namespace meshlet::controlplane::cli
