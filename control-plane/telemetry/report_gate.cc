#include "control-plane/telemetry/report_gate.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "control-plane/identity/caller.h"

namespace meshlet::controlplane::telemetry {

ReportGate::ReportGate(const Clock& clock, ReportLimits limits, std::string trust_domain,
                       bool authenticate, StatsRegistry* stats)
    : clock_(clock),
      limits_(limits),
      trust_domain_(std::move(trust_domain)),
      authenticate_(authenticate) {
  if (stats == nullptr) return;
  for (const char* reason : {"no_certificate", "certificate_expired", "not_a_workload",
                             "unknown_node", "rate_limited", "too_large", "too_many_callers"}) {
    absl::StatusOr<Counter> counter = stats->shared_shard().RegisterCounter(
        "meshlet_cp_metrics_report_refusals_total",
        "Golden-metrics reports refused, by reason: no client certificate, a certificate naming "
        "no workload, a node not registered under the certificate's identity, over the "
        "per-identity rate, over the size limit, too many callers tracked.",
        {{"reason", reason}});
    if (counter.ok()) refusals_[reason] = *counter;
  }
}

absl::Status ReportGate::Refuse(const char* reason, absl::Status status) {
  if (auto it = refusals_.find(reason); it != refusals_.end()) it->second.Inc();
  LOG_EVERY_N_SEC(WARN, 5) << "metrics report refused (" << reason << "): " << status.message();
  return status;
}

ReportGate::Take ReportGate::TakeToken(const std::string& key) {
  const MonotonicTime now = clock_.Now();
  const auto interval = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double>(1.0 / std::max(limits_.reports_per_second, 1e-9)));
  const auto tolerance =
      std::chrono::duration_cast<Duration>(interval * std::max(limits_.burst - 1.0, 0.0));
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= limits_.max_callers) {
      // Buckets whose next arrival time has passed are as good as new: drop them.
      absl::erase_if(buckets_, [now](const auto& entry) { return entry.second <= now; });
      if (buckets_.size() >= limits_.max_callers) return Take::kFull;
    }
    it = buckets_.emplace(key, now).first;
  }
  const MonotonicTime tat = std::max(it->second, now);
  if (tat - now > tolerance) return Take::kLimited;
  it->second = tat + interval;
  return Take::kOk;
}

absl::Status ReportGate::Admit(const net::PeerInfo& peer,
                               const registry::RegistrySnapshot& registry,
                               metrics::v1::MetricsReport& report) {
  std::string key = report.node_id();
  std::optional<identity::Caller> caller;
  if (authenticate_) {
    absl::StatusOr<identity::Caller> authenticated =
        identity::AuthenticateCaller(peer, trust_domain_, clock_.WallNow());
    if (!authenticated.ok()) {
      return Refuse(identity::CallerRefusalReason(authenticated.status()), authenticated.status());
    }
    caller = *std::move(authenticated);
    key = caller->spiffe_id;
  }
  const size_t bytes = report.ByteSizeLong();
  if (bytes > limits_.max_report_bytes) {
    return Refuse("too_large", absl::ResourceExhaustedError(
                                   absl::StrCat("the report has ", bytes, " bytes; the limit is ",
                                                limits_.max_report_bytes)));
  }
  const Take take = TakeToken(key);
  if (take == Take::kFull) {
    return Refuse("too_many_callers",
                  absl::ResourceExhaustedError("too many reporting callers; retry later"));
  }
  if (take == Take::kLimited) {
    return Refuse("rate_limited",
                  absl::ResourceExhaustedError(absl::StrCat(
                      "more than ", limits_.reports_per_second, " reports per second from ",
                      caller.has_value() ? caller->spiffe_id : report.node_id())));
  }
  if (!caller.has_value()) return absl::OkStatus();
  const registry::Workload* workload = registry.Find(report.node_id());
  if (workload == nullptr || workload->namespace_ != caller->identity.namespace_ ||
      workload->service_account != caller->identity.service_account) {
    return Refuse("unknown_node",
                  absl::PermissionDeniedError(absl::StrCat(
                      "node ", report.node_id(), " is not a workload registered under ",
                      caller->spiffe_id, ": a sidecar reports for its own node only")));
  }
  // What the figures are recorded under comes from the registration, not from the report.
  report.set_service(workload->service);
  report.set_namespace_(workload->namespace_);
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::telemetry
