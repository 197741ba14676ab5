#pragma once

// TelemetryGate: decides whether telemetry sent to the discovery port is taken, and whose it is.
// One gate guards golden-metrics reports (MetricsService/Report, AdmitReport below), another span
// batches (OTLP/gRPC TraceService/Export, TelemetryService). On a TLS port the sender must present
// the workload certificate of the sidecar it speaks for: what it sends is taken only for a node
// registered in the registry under that certificate's identity (and, for a pod's certificate, only
// for that pod's node), and recorded under that registration's names, never what the sender
// wrote. Each identity is also limited in rate (a GCRA bucket of `per_second` units with `burst`;
// a report is one unit, a span batch one per span) and each call in size, so no workload can grow
// the control plane's memory or drown others' figures. On a plaintext port (local tests) only the
// limits apply, per key the caller chooses (a node id).
//
// Several replicas (etcd): each keeps its own buckets, so the configured rate and burst are the
// mesh's and each replica admits its share, per_second / N and burst / N (rounded up, at least
// 1 unit), N being the live replicas it knows, itself included (SetReplicas; ADR 0087). A change
// of N rescales every bucket's debt to the new depth, so a caller keeps the fraction of its burst
// it had used rather than starting full. The size check stays on the configured burst: a call up
// to that size passes a replica whose share is smaller when that caller's bucket there is full,
// and the debt it leaves drains at the share's rate.
//
// A call goes through the steps in order, each refusing with a status that is already counted:
//   Authenticate   who sends (nullopt on a plaintext port)
//   CheckSize      bytes against max_bytes
//   Take           `cost` units from the sender's bucket
//   Registration   the registered workload a node id names, under the sender's identity
// Refusals are counted in the gate's counter (`counter_name`){reason}: no_certificate,
// certificate_expired, not_a_workload, unknown_node (not registered, or under another identity),
// not_its_pod (a pod's certificate naming another node), rate_limited, too_large, too_many_callers
// (the bucket table is full), and the reasons the caller adds with Refuse() (registered at
// construction from `extra_reasons`).
//
// Threading: one thread (the control plane's loop).

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "control-plane/identity/caller.h"
#include "control-plane/registry/registry.h"
#include "xds/metrics.pb.h"

namespace meshlet::controlplane::telemetry {

struct TelemetryLimits {
  // Units accepted per second per identity, and the burst above that rate.
  double per_second = 100;
  double burst = 200;
  // Largest call accepted, in serialized bytes.
  size_t max_bytes = 256 * 1024;
  // Identities (or keys on a plaintext port) tracked at once.
  size_t max_callers = 20000;
};

// Golden-metrics reports: a sidecar reports every 10 s, so 100 a second admits a thousand replicas
// of one service account.
inline TelemetryLimits DefaultReportLimits() { return {}; }
// Span batches, in spans: a thousand replicas of one service account each exporting 10 spans a
// second (1 % of 1000 requests/s) fit. Each worker of a sidecar sends up to 512 spans a batch.
inline TelemetryLimits DefaultSpanLimits() {
  return {.per_second = 10000, .burst = 20000, .max_bytes = 4 << 20};
}

struct TelemetryGateOptions {
  // The refusals counter, its help text, and what is gated in log lines ("metrics report").
  std::string counter_name;
  std::string counter_help;
  std::string what;
  // Refusal reasons the caller counts with Refuse(), besides the gate's own.
  std::vector<std::string> extra_reasons;
  TelemetryLimits limits;
  std::string trust_domain = "cluster.local";
  // False: a plaintext port (no identities).
  bool authenticate = true;
};

class TelemetryGate {
 public:
  // `clock` must outlive the gate; `stats` may be null.
  TelemetryGate(const Clock& clock, TelemetryGateOptions options, StatsRegistry* stats);

  // The caller's workload identity from its client certificate; nullopt on a plaintext port.
  // UNAUTHENTICATED or PERMISSION_DENIED otherwise.
  absl::StatusOr<std::optional<identity::Caller>> Authenticate(const net::PeerInfo& peer);
  // RESOURCE_EXHAUSTED above max_bytes.
  absl::Status CheckSize(size_t bytes);
  // Takes `cost` units from the bucket of `caller` (of `plaintext_key` without one):
  // RESOURCE_EXHAUSTED when it has not that many, when `cost` is more than the burst, or when the
  // table of buckets is full.
  absl::Status Take(const std::optional<identity::Caller>& caller, absl::string_view plaintext_key,
                    double cost = 1);
  // The workload registered as `node_id` under `caller`'s identity, which a pod's certificate may
  // be only for its own pod's node; PERMISSION_DENIED otherwise. The pointer is into `registry`.
  absl::StatusOr<const registry::Workload*> Registration(const identity::Caller& caller,
                                                         const registry::RegistrySnapshot& registry,
                                                         absl::string_view node_id);
  // Counts a refusal under `reason` (one of the gate's, or of options.extra_reasons), logs it
  // (rate-limited) and returns `status`.
  absl::Status Refuse(absl::string_view reason, absl::Status status);

  // The live control-plane replicas (>= 1, itself included) the configured limits are shared
  // among: this replica's rate and burst become its share, and every bucket is rescaled to them.
  void SetReplicas(size_t replicas);

  // The configured (mesh-wide) limits, and this replica's share of the rate and burst.
  const TelemetryLimits& limits() const { return options_.limits; }
  size_t replicas() const { return replicas_; }
  double share_per_second() const { return share_per_second_; }
  double share_burst() const { return share_burst_; }
  bool authenticates() const { return options_.authenticate; }

 private:
  enum class Taken { kOk, kLimited, kFull };
  Taken TakeTokens(const std::string& key, double cost);
  // How long `units` take to drain at this replica's rate.
  Duration UnitsTime(double units) const;

  const Clock& clock_;
  const TelemetryGateOptions options_;
  size_t replicas_ = 1;
  double share_per_second_;
  double share_burst_;
  // GCRA: the theoretical arrival time of the next unit per caller.
  absl::flat_hash_map<std::string, MonotonicTime> buckets_;
  absl::flat_hash_map<std::string, Counter> refusals_;
};

// The gate of golden-metrics reports: counter meshlet_cp_metrics_report_refusals_total.
TelemetryGateOptions ReportGateOptions(TelemetryLimits limits, std::string trust_domain,
                                       bool authenticate);

// The service a registration's golden metrics and spans are recorded under: its service, else a
// gateway proxy's "gateway:<name>" from its label meshlet.io/gateway naming a Gateway of its own
// namespace (xds/protocol.h); empty when neither.
std::string RegisteredService(const registry::Workload& workload);

// A golden-metrics report through `gate`: OK to record `report`, whose service and namespace are
// now the registered workload's (on a TLS port). Otherwise the status to answer (UNAUTHENTICATED,
// PERMISSION_DENIED, RESOURCE_EXHAUSTED), already counted.
absl::Status AdmitReport(TelemetryGate& gate, const net::PeerInfo& peer,
                         const registry::RegistrySnapshot& registry,
                         metrics::v1::MetricsReport& report);

}  // namespace meshlet::controlplane::telemetry
