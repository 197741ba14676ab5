#include "control-plane/telemetry/telemetry_gate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::telemetry {
namespace {

// One replica's share of a burst of `burst` units among `replicas`: whole units, at least one.
double BurstShare(double burst, size_t replicas) {
  if (replicas <= 1) return burst;
  return std::max(std::ceil(burst / static_cast<double>(replicas)), 1.0);
}

}  // namespace

TelemetryGate::TelemetryGate(const Clock& clock, TelemetryGateOptions options, StatsRegistry* stats)
    : clock_(clock),
      options_(std::move(options)),
      share_per_second_(options_.limits.per_second),
      share_burst_(options_.limits.burst) {
  if (stats == nullptr) return;
  std::vector<std::string> reasons = {"no_certificate", "certificate_expired", "not_a_workload",
                                      "unknown_node",   "not_its_pod",         "rate_limited",
                                      "too_large",      "too_many_callers"};
  reasons.insert(reasons.end(), options_.extra_reasons.begin(), options_.extra_reasons.end());
  for (const std::string& reason : reasons) {
    absl::StatusOr<Counter> counter = stats->shared_shard().RegisterCounter(
        options_.counter_name, options_.counter_help, {{"reason", reason}});
    if (counter.ok()) refusals_[reason] = *counter;
  }
}

absl::Status TelemetryGate::Refuse(absl::string_view reason, absl::Status status) {
  if (auto it = refusals_.find(reason); it != refusals_.end()) it->second.Inc();
  LOG_EVERY_N_SEC(WARN, 5) << options_.what << " refused (" << reason << "): " << status.message();
  return status;
}

Duration TelemetryGate::UnitsTime(double units) const {
  const std::chrono::duration<double> interval(1.0 / std::max(share_per_second_, 1e-9));
  return std::chrono::duration_cast<Duration>(interval * units);
}

void TelemetryGate::SetReplicas(size_t replicas) {
  replicas = std::max<size_t>(replicas, 1);
  if (replicas == replicas_) return;
  const Duration old_depth = UnitsTime(share_burst_);
  replicas_ = replicas;
  share_per_second_ = options_.limits.per_second / static_cast<double>(replicas);
  share_burst_ = BurstShare(options_.limits.burst, replicas);
  const Duration new_depth = UnitsTime(share_burst_);
  // Each caller keeps the fraction of its burst it has used: its debt (how far its next arrival
  // time lies ahead) scales with the depth.
  const double scale = static_cast<double>(new_depth.count()) /
                       static_cast<double>(std::max<Duration::rep>(old_depth.count(), 1));
  const MonotonicTime now = clock_.Now();
  for (auto& [key, tat] : buckets_) {
    if (tat <= now) continue;
    tat = now + std::chrono::duration_cast<Duration>((tat - now) * scale);
  }
}

TelemetryGate::Taken TelemetryGate::TakeTokens(const std::string& key, double cost) {
  const MonotonicTime now = clock_.Now();
  // The bucket's depth: this replica's share of the burst arriving at once.
  const Duration depth = UnitsTime(share_burst_);
  const Duration increment = UnitsTime(cost);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.limits.max_callers) {
      // Buckets whose next arrival time has passed are as good as new: drop them.
      absl::erase_if(buckets_, [now](const auto& entry) { return entry.second <= now; });
      if (buckets_.size() >= options_.limits.max_callers) return Taken::kFull;
    }
    it = buckets_.emplace(key, now).first;
  }
  const MonotonicTime tat = std::max(it->second, now) + increment;
  // A call above this replica's share (Take bounds it by the configured burst) passes a full
  // bucket only; the debt it leaves drains at the share's rate.
  const bool full_bucket_takes_it = cost > share_burst_ && it->second <= now;
  if (tat - now > depth && !full_bucket_takes_it) return Taken::kLimited;
  it->second = tat;
  return Taken::kOk;
}

absl::StatusOr<std::optional<identity::Caller>> TelemetryGate::Authenticate(
    const net::PeerInfo& peer) {
  if (!options_.authenticate) return std::optional<identity::Caller>();
  absl::StatusOr<identity::Caller> caller =
      identity::AuthenticateCaller(peer, options_.trust_domain, clock_.WallNow());
  if (!caller.ok()) return Refuse(identity::CallerRefusalReason(caller.status()), caller.status());
  return std::optional<identity::Caller>(*std::move(caller));
}

absl::Status TelemetryGate::CheckSize(size_t bytes) {
  if (bytes <= options_.limits.max_bytes) return absl::OkStatus();
  return Refuse("too_large", absl::ResourceExhaustedError(
                                 absl::StrCat("the ", options_.what, " has ", bytes,
                                              " bytes; the limit is ", options_.limits.max_bytes)));
}

absl::Status TelemetryGate::Take(const std::optional<identity::Caller>& caller,
                                 absl::string_view plaintext_key, double cost) {
  const std::string key = caller.has_value() ? caller->spiffe_id : std::string(plaintext_key);
  if (cost > options_.limits.burst) {
    return Refuse("too_large",
                  absl::ResourceExhaustedError(absl::StrCat(
                      "the ", options_.what, " counts ", cost, " against a limit of ",
                      options_.limits.burst, " at once per identity: send smaller ones")));
  }
  switch (TakeTokens(key, cost)) {
    case Taken::kOk:
      return absl::OkStatus();
    case Taken::kFull:
      return Refuse("too_many_callers",
                    absl::ResourceExhaustedError(absl::StrCat(
                        "too many callers sending ", options_.what, "s are tracked; retry later")));
    case Taken::kLimited:
      break;
  }
  std::string limit =
      absl::StrCat(share_per_second_, " per second (", options_.what, "s) from ", key);
  if (replicas_ > 1) {
    absl::StrAppend(&limit, " on this replica, its share of ", options_.limits.per_second,
                    " across ", replicas_, " control-plane replicas");
  }
  return Refuse("rate_limited", absl::ResourceExhaustedError(absl::StrCat("more than ", limit)));
}

absl::StatusOr<const registry::Workload*> TelemetryGate::Registration(
    const identity::Caller& caller, const registry::RegistrySnapshot& registry,
    absl::string_view node_id) {
  if (std::optional<std::string> pod_node = identity::PodNodeId(caller);
      pod_node.has_value() && node_id != *pod_node) {
    return Refuse("not_its_pod", absl::PermissionDeniedError(absl::StrCat(
                                     "the client certificate was issued to the pod whose node "
                                     "id is ",
                                     *pod_node, ", not ", node_id)));
  }
  const registry::Workload* workload = registry.Find(node_id);
  if (workload == nullptr || workload->namespace_ != caller.identity.namespace_ ||
      workload->service_account != caller.identity.service_account) {
    return Refuse("unknown_node",
                  absl::PermissionDeniedError(absl::StrCat(
                      "node ", node_id, " is not a workload registered under ", caller.spiffe_id,
                      ": a sidecar sends telemetry for its own node only")));
  }
  return workload;
}

TelemetryGateOptions ReportGateOptions(TelemetryLimits limits, std::string trust_domain,
                                       bool authenticate) {
  return TelemetryGateOptions{
      .counter_name = "meshlet_cp_metrics_report_refusals_total",
      .counter_help =
          "Golden-metrics reports refused, by reason: no client certificate, a certificate "
          "naming no workload, a node not registered under the certificate's identity (or not "
          "the pod's), over the per-identity rate, over the size limit, too many callers "
          "tracked.",
      .what = "metrics report",
      .limits = limits,
      .trust_domain = std::move(trust_domain),
      .authenticate = authenticate,
  };
}

std::string RegisteredService(const registry::Workload& workload) {
  if (!workload.service.empty()) return workload.service;
  std::string service, ns;
  auto gateway = workload.labels.find(std::string(xds::kGatewayNodeLabel));
  if (gateway != workload.labels.end() &&
      xds::GatewayProxyService(gateway->second, &service, &ns) && ns == workload.namespace_) {
    return service;
  }
  return "";
}

absl::Status AdmitReport(TelemetryGate& gate, const net::PeerInfo& peer,
                         const registry::RegistrySnapshot& registry,
                         metrics::v1::MetricsReport& report) {
  absl::StatusOr<std::optional<identity::Caller>> caller = gate.Authenticate(peer);
  if (!caller.ok()) return caller.status();
  if (absl::Status size = gate.CheckSize(report.ByteSizeLong()); !size.ok()) return size;
  if (absl::Status taken = gate.Take(*caller, report.node_id()); !taken.ok()) return taken;
  if (!caller->has_value()) return absl::OkStatus();
  absl::StatusOr<const registry::Workload*> workload =
      gate.Registration(**caller, registry, report.node_id());
  if (!workload.ok()) return workload.status();
  // What the figures are recorded under comes from the registration, not from the report.
  report.set_service(RegisteredService(**workload));
  report.set_namespace_((*workload)->namespace_);
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::telemetry
