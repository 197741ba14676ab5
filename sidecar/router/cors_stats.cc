#include "sidecar/router/cors_stats.h"

#include "common/base/status.h"

namespace meshlet::sidecar::router {

absl::StatusOr<CorsStats> CorsStats::Create(StatsShard& shard) {
  constexpr absl::string_view kName = "meshlet_http_cors_total";
  constexpr absl::string_view kHelp =
      "Requests with an Origin to routes with a CORS policy, by what the policy made of them.";
  CorsStats stats;
  ASSIGN_OR_RETURN(stats.preflight_allowed,
                   shard.RegisterCounter(kName, kHelp, {{"outcome", "preflight_allowed"}}));
  ASSIGN_OR_RETURN(stats.preflight_refused,
                   shard.RegisterCounter(kName, kHelp, {{"outcome", "preflight_refused"}}));
  ASSIGN_OR_RETURN(stats.allowed, shard.RegisterCounter(kName, kHelp, {{"outcome", "allowed"}}));
  ASSIGN_OR_RETURN(stats.refused, shard.RegisterCounter(kName, kHelp, {{"outcome", "refused"}}));
  return stats;
}

}  // namespace meshlet::sidecar::router
