#pragma once

// ReportGate: decides whether a golden-metrics report (MetricsService/Report on the discovery
// port) is recorded, and whose it is. On a TLS port a report must come with the workload
// certificate of the sidecar that sends it: the report's node must be a workload registered in
// the registry under that certificate's identity, and the service and namespace recorded are the
// registration's, never what the report says. Reports are also limited per identity (a GCRA
// bucket of `reports_per_second` with `burst`) and in size, so no workload can grow the control
// plane's memory or drown others' figures. On a plaintext port (local tests) only the limits
// apply, per node id.
//
// Refusals are counted in meshlet_cp_metrics_report_refusals_total{reason}: no_certificate,
// not_a_workload, unknown_node (not registered, or under another identity), rate_limited,
// too_large, too_many_callers (the bucket table is full).
//
// Threading: one thread (the control plane's loop).

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/base/clock.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "control-plane/registry/registry.h"
#include "xds/metrics.pb.h"

namespace meshlet::controlplane::telemetry {

struct ReportLimits {
  // Reports accepted per second per identity, and the burst above that rate. A sidecar reports
  // every 10 s, so the default admits a thousand replicas of one service account.
  double reports_per_second = 100;
  double burst = 200;
  // Largest serialized report accepted.
  size_t max_report_bytes = 256 * 1024;
  // Identities (or node ids on a plaintext port) tracked at once.
  size_t max_callers = 20000;
};

class ReportGate {
 public:
  // `authenticate` false: a plaintext port (no identities). `stats` may be null.
  ReportGate(const Clock& clock, ReportLimits limits, std::string trust_domain, bool authenticate,
             StatsRegistry* stats);

  // OK: record `report`, whose service and namespace are now the registered workload's. Otherwise
  // the status to answer (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
  // INVALID_ARGUMENT), already counted.
  absl::Status Admit(const net::PeerInfo& peer, const registry::RegistrySnapshot& registry,
                     metrics::v1::MetricsReport& report);

  const ReportLimits& limits() const { return limits_; }

 private:
  absl::Status Refuse(const char* reason, absl::Status status);
  enum class Take { kOk, kLimited, kFull };
  // Takes one token from `key`'s bucket: kLimited when it has none, kFull when `key` has no
  // bucket and the table is full.
  Take TakeToken(const std::string& key);

  const Clock& clock_;
  const ReportLimits limits_;
  const std::string trust_domain_;
  const bool authenticate_;
  // GCRA: the theoretical arrival time of the next report per caller.
  absl::flat_hash_map<std::string, MonotonicTime> buckets_;
  absl::flat_hash_map<std::string, Counter> refusals_;
};

}  // namespace meshlet::controlplane::telemetry
