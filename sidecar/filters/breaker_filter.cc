#include "sidecar/filters/breaker_filter.h"

#include "sidecar/cluster/upstream_stats.h"

namespace meshlet::sidecar::filters {

stream::FilterStatus BreakerFilter::Check() {
  if (!route_.cluster->BreakerRejects()) return stream::FilterStatus::kContinue;
  if (route_.cluster_stats != nullptr) route_.cluster_stats->rq_breaker_open.Inc();
  callbacks_.stream_info().SetFlag(stream::ResponseFlag::kBreakerOpen);
  callbacks_.SendLocalReply({.http_status = 503,
                             .grpc_status = http::grpc::StatusCode::kUnavailable,
                             .message = "upstream circuit breaker open",
                             .overloaded = true});
  return stream::FilterStatus::kStopIteration;
}

}  // namespace meshlet::sidecar::filters
