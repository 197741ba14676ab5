#pragma once

// UpstreamStats: the stat handles of one cluster on one worker, registered once when the worker's
// ClusterManager creates the cluster and then incremented lock-free by the router (requests,
// failures) and the cluster's codec factories (connections). Every series carries the label
// `cluster`; docs/stats.md lists them.
//
// Ownership: a value of handles into the worker's StatsShard; it must not outlive the shard and
// is used only on the shard's thread. Default-constructed handles count nothing, so code can hold
// an UpstreamStats before stats are wired (tests).

#include <array>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar {

// Index of "1xx".."5xx" for an HTTP status; statuses outside 100..599 clamp to the nearest class.
inline size_t StatusClassIndex(int status) {
  if (status < 200) return 0;
  if (status >= 500) return 4;
  return static_cast<size_t>(status / 100 - 1);
}
inline constexpr std::array<absl::string_view, 5> kStatusClassNames = {"1xx", "2xx", "3xx", "4xx",
                                                                       "5xx"};

struct UpstreamStats {
  static absl::StatusOr<UpstreamStats> Create(StatsShard& shard, absl::string_view cluster);

  // meshlet_upstream_rq_total{cluster,code_class}: responses received from upstream hosts.
  std::array<Counter, 5> rq_by_class;
  Counter cx_total;            // meshlet_upstream_cx_total: connections opened
  Counter rq_connect_fail;     // meshlet_upstream_rq_connect_fail_total
  Counter rq_overflow;         // meshlet_upstream_rq_overflow_total (circuit breaker)
  Counter rq_timeout;          // meshlet_upstream_rq_timeout_total (route timeout)
  Counter rq_reset;            // meshlet_upstream_rq_reset_total
  Counter rq_no_healthy_host;  // meshlet_upstream_rq_no_healthy_host_total
  Gauge rq_active;             // meshlet_upstream_rq_active

  void RecordStatus(int status) const { rq_by_class[StatusClassIndex(status)].Inc(); }
};

}  // namespace meshlet::sidecar
