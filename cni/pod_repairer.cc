#include "cni/pod_repairer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cni/kubernetes.h"
#include "common/base/logging.h"
#include "common/stats/must_stat.h"

namespace meshlet::cni {
namespace {

constexpr const char* kActions[] = {"evict", "label", "report"};
constexpr const char* kSteps[] = {"list", "evict", "label"};

std::string Key(const NodePod& pod) { return absl::StrCat(pod.pod_namespace, "/", pod.name); }

}  // namespace

PodRepairer::PodRepairer(event::Loop& loop, PodRepairerOptions options, StatsShard& shard)
    : loop_(loop), options_(std::move(options)) {
  for (const char* action : kActions) {
    repaired_[action] = MustStat(shard.RegisterCounter(
        "meshlet_cni_pods_repaired_total",
        "Pods found set up without meshlet-cni in the chain, by what the agent did: evicted, "
        "labelled, or only reported.",
        {{"action", action}}));
  }
  for (const char* step : kSteps) {
    failures_[step] = MustStat(shard.RegisterCounter("meshlet_cni_repair_failures_total",
                                                     "Failed calls of the race repair, by step.",
                                                     {{"step", step}}));
  }
  refused_ = MustStat(shard.RegisterCounter(
      "meshlet_cni_repair_evictions_refused_total",
      "Evictions refused with 429 (a PodDisruptionBudget); tried again at the next pass."));
  uncaptured_ = MustStat(shard.RegisterGauge(
      "meshlet_cni_pods_uncaptured",
      "Pods of the node marked for meshlet-cni and not captured, at the last pass."));
}

PodRepairer::~PodRepairer() { Stop(); }

void PodRepairer::Start() {
  timer_ = std::make_unique<event::Timer>(loop_, [this] { Pass(); });
  timer_->EnableRepeating(options_.interval);
  Pass();
}

void PodRepairer::Stop() {
  if (timer_) timer_->Disable();
  list_.reset();
  actions_.clear();
}

void PodRepairer::Failed(absl::string_view step, absl::string_view detail) {
  failures_[std::string(step)].Inc();
  LOG(ERROR) << "meshlet-cni-agent: repair: " << step << ": " << detail;
}

void PodRepairer::Pass() {
  if (list_ != nullptr || !actions_.empty()) return;  // the last pass still runs
  absl::StatusOr<ApiEndpoint> endpoint = PrepareApiCall(options_.kubernetes);
  if (!endpoint.ok()) {
    Failed("list", endpoint.status().message());
    return;
  }
  list_ = http::HttpFetch::Start(
      loop_, endpoint->addresses,
      endpoint->Request(
          "GET",
          absl::StrCat("/api/v1/pods?fieldSelector=",
                       http::QueryEscape(absl::StrCat("spec.nodeName=", options_.node_name))),
          "meshlet-cni-agent"),
      endpoint->Options(options_.max_list_bytes),
      [this](http::ClientResult result) { OnList(std::move(result)); });
}

void PodRepairer::OnList(http::ClientResult result) {
  // Destroyed on a later turn: this runs inside its callback.
  loop_.DeferDelete(std::move(list_));
  if (result.error != http::ClientError::kNone) {
    Failed("list", absl::StrCat(http::ClientErrorName(result.error), " ", result.detail));
    return;
  }
  if (result.status != 200) {
    Failed("list", absl::StrCat("the API server answered HTTP ", result.status,
                                result.status == 403 ? " (RBAC: list on pods)" : ""));
    return;
  }
  absl::StatusOr<NodePodList> list = NodePodListFromJson(result.body);
  if (!list.ok()) {
    Failed("list", list.status().message());
    return;
  }
  if (options_.read_plugin_log) options_.read_plugin_log();
  const absl::Time now = absl::Now();
  std::vector<std::string> on_node;
  std::set<std::string> uids;
  int64_t uncaptured = 0;
  for (const NodePod& pod : list->pods) {
    on_node.push_back(Key(pod));
    uids.insert(pod.uid);
    const RepairDecision decision = DecideRepair(pod, captured_, options_.settings, now);
    if (decision.verdict == Verdict::kLeave || decision.verdict == Verdict::kWait) continue;
    ++uncaptured;
    Act(pod, decision);
  }
  uncaptured_.Set(uncaptured);
  captured_.Retain(on_node);
  for (auto it = reported_.begin(); it != reported_.end();) {
    it = uids.count(*it) != 0 ? std::next(it) : reported_.erase(it);
  }
}

void PodRepairer::Act(const NodePod& pod, const RepairDecision& decision) {
  const std::string key = Key(pod);
  if (decision.verdict == Verdict::kReport) {
    if (reported_.insert(pod.uid).second) {
      repaired_["report"].Inc();
      LOG(WARN) << "meshlet-cni-agent: repair: pod " << key << " is not captured ("
                << decision.reason << "); repair mode " << RepairModeName(options_.settings.mode)
                << ": reported only";
    }
    return;
  }
  absl::StatusOr<ApiEndpoint> endpoint = PrepareApiCall(options_.kubernetes);
  const char* step = decision.verdict == Verdict::kEvict ? "evict" : "label";
  if (!endpoint.ok()) {
    Failed(step, endpoint.status().message());
    return;
  }
  const std::string pod_path =
      absl::StrCat("/api/v1/namespaces/", http::QueryEscape(pod.pod_namespace), "/pods/",
                   http::QueryEscape(pod.name));
  const bool evict = decision.verdict == Verdict::kEvict;
  http::ClientRequest request = endpoint->Request(
      evict ? "POST" : "PATCH", evict ? absl::StrCat(pod_path, "/eviction") : pod_path,
      "meshlet-cni-agent");
  request.body = evict ? EvictionBody(pod) : LabelPatchBody(decision.reason);
  request.headers.Add("content-type", evict ? "application/json" : "application/merge-patch+json");
  http::ClientOptions client = endpoint->Options(/*max_response_bytes=*/64 << 10);
  client.read_body = false;
  actions_[key] = http::HttpFetch::Start(
      loop_, endpoint->addresses, std::move(request), std::move(client),
      [this, key, uid = pod.uid, verdict = decision.verdict, reason = decision.reason](
          http::ClientResult result) { OnActed(key, uid, verdict, reason, std::move(result)); });
}

void PodRepairer::OnActed(const std::string& key, const std::string& uid, Verdict verdict,
                          const std::string& reason, http::ClientResult result) {
  auto it = actions_.find(key);
  if (it != actions_.end()) {
    loop_.DeferDelete(std::move(it->second));
    actions_.erase(it);
  }
  const bool evict = verdict == Verdict::kEvict;
  const char* step = evict ? "evict" : "label";
  if (result.error != http::ClientError::kNone) {
    Failed(step, absl::StrCat(key, ": ", http::ClientErrorName(result.error), " ", result.detail));
    return;
  }
  if (!evict) {
    if (result.status != 200) {
      Failed(step, absl::StrCat(key, ": the API server answered HTTP ", result.status,
                                result.status == 403 ? " (RBAC: patch on pods)" : ""));
      return;
    }
    repaired_["label"].Inc();
    reported_.insert(uid);  // labelled is reported: not counted again as report
    LOG(WARN) << "meshlet-cni-agent: repair: labelled pod " << key << " " << kUncapturedLabel
              << "=true: " << reason;
    return;
  }
  switch (ClassifyEviction(result.status)) {
    case EvictionResult::kEvicted:
      repaired_["evict"].Inc();
      LOG(WARN) << "meshlet-cni-agent: repair: evicted pod " << key << ": " << reason;
      return;
    case EvictionResult::kRetryLater:
      refused_.Inc();
      LOG(WARN) << "meshlet-cni-agent: repair: eviction of pod " << key
                << " refused for now (HTTP 429, a PodDisruptionBudget); tried again at the "
                   "next pass";
      return;
    case EvictionResult::kGone:
      return;  // nothing left to repair
    case EvictionResult::kFailed:
      Failed(step, absl::StrCat(key, ": the API server answered HTTP ", result.status,
                                result.status == 403 ? " (RBAC: create on pods/eviction)" : ""));
      return;
  }
}

}  // namespace meshlet::cni
