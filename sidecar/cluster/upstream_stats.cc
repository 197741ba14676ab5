#include "sidecar/cluster/upstream_stats.h"

#include <string>

#include "common/base/status.h"

namespace meshlet::sidecar {

absl::StatusOr<UpstreamStats> UpstreamStats::Create(StatsShard& shard, absl::string_view cluster) {
  UpstreamStats s;
  const std::string name(cluster);
  for (size_t i = 0; i < s.rq_by_class.size(); ++i) {
    ASSIGN_OR_RETURN(s.rq_by_class[i],
                     shard.RegisterCounter(
                         "meshlet_upstream_rq_total", "Responses received from upstream hosts.",
                         {{"cluster", name}, {"code_class", std::string(kStatusClassNames[i])}}));
  }
  const LabelSet labels = {{"cluster", name}};
  ASSIGN_OR_RETURN(s.cx_total, shard.RegisterCounter("meshlet_upstream_cx_total",
                                                     "Upstream connections opened.", labels));
  ASSIGN_OR_RETURN(
      s.rq_connect_fail,
      shard.RegisterCounter("meshlet_upstream_rq_connect_fail_total",
                            "Requests that failed because no upstream connection could be made.",
                            labels));
  ASSIGN_OR_RETURN(
      s.rq_overflow,
      shard.RegisterCounter("meshlet_upstream_rq_overflow_total",
                            "Requests refused at once by the cluster's circuit breaker limits.",
                            labels));
  ASSIGN_OR_RETURN(s.rq_timeout,
                   shard.RegisterCounter("meshlet_upstream_rq_timeout_total",
                                         "Requests that hit their route timeout.", labels));
  ASSIGN_OR_RETURN(s.rq_reset,
                   shard.RegisterCounter("meshlet_upstream_rq_reset_total",
                                         "Upstream streams that ended with a reset.", labels));
  ASSIGN_OR_RETURN(s.rq_no_healthy_host,
                   shard.RegisterCounter("meshlet_upstream_rq_no_healthy_host_total",
                                         "Requests with no healthy host to send them to.", labels));
  ASSIGN_OR_RETURN(
      s.rq_active,
      shard.RegisterGauge("meshlet_upstream_rq_active",
                          "Requests in flight to the cluster (pending or started).", labels));
  return s;
}

}  // namespace meshlet::sidecar
