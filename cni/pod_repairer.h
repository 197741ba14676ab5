#pragma once

// The node agent's race repair (docs/adr/0094, "Amended: the race repair"): every interval it
// lists the pods of its node from the API server (GET /api/v1/pods?fieldSelector=spec.nodeName=
// NODE), decides for each with DecideRepair (cni/repair.h) against what the plugin logged, and
// acts: an eviction (POST .../pods/NAME/eviction, policy/v1, the pod's uid as a precondition; a
// 429 from a PodDisruptionBudget is counted and tried again at the next pass), a merge PATCH that
// labels the pod (mode label), or only a log line (mode off, bare pods). Every action and
// failure is logged and counted:
//   meshlet_cni_pods_repaired_total{action="evict|label|report"}
//   meshlet_cni_repair_failures_total{step="list|evict|label"}
//   meshlet_cni_repair_evictions_refused_total       (429: a PodDisruptionBudget said not now)
//   meshlet_cni_pods_uncaptured                      (flagged at the last pass)
// A pod is reported (logged and counted) once, and a labelled pod is not reported again; an action
// that failed is tried again.
//
// Threading and ownership: the loop's thread only; the Loop and the StatsShard outlive it. At
// most one pass runs: the list, then the actions it decided, each its own HttpFetch; the next
// pass starts only once they all ended. Destroying it (or Stop) cancels what is in flight.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cni/plugin.h"
#include "cni/repair.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/client.h"
#include "common/stats/stats.h"

namespace meshlet::cni {

struct PodRepairerOptions {
  std::string node_name;
  // The agent's own API access: server, its ServiceAccount's CA and token files, the timeout of
  // each call.
  KubernetesSettings kubernetes;
  RepairSettings settings;
  Duration interval = std::chrono::seconds(10);
  size_t max_list_bytes = 64 << 20;  // the node's pod list
  // Called once a list came, before deciding: hands the plugin's newest log lines over
  // (AddLogLine), so that a capture logged since the last read counts. May be empty.
  std::function<void()> read_plugin_log;
};

class PodRepairer {
 public:
  PodRepairer(event::Loop& loop, PodRepairerOptions options, StatsShard& shard);
  ~PodRepairer();
  PodRepairer(const PodRepairer&) = delete;
  PodRepairer& operator=(const PodRepairer&) = delete;

  // A pass now, then one every interval.
  void Start();
  void Stop();
  // One line of the plugin's log (the agent hands it every line it reads).
  void AddLogLine(absl::string_view line) { captured_.AddLogLine(line); }

 private:
  void Pass();
  void OnList(http::ClientResult result);
  void Act(const NodePod& pod, const RepairDecision& decision);
  void OnActed(const std::string& key, const std::string& uid, Verdict verdict,
               const std::string& reason, http::ClientResult result);
  void Failed(absl::string_view step, absl::string_view detail);

  event::Loop& loop_;
  const PodRepairerOptions options_;
  CaptureRecord captured_;
  std::unique_ptr<event::Timer> timer_;
  std::unique_ptr<http::HttpFetch> list_;
  std::map<std::string, std::unique_ptr<http::HttpFetch>> actions_;  // by "NS/NAME"
  std::set<std::string> reported_;  // pods (uid) already reported, so logged and counted once
  std::map<std::string, Counter> repaired_;  // by action
  std::map<std::string, Counter> failures_;  // by step
  Counter refused_;
  Gauge uncaptured_;
};

}  // namespace meshlet::cni
