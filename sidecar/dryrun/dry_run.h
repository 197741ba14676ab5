#pragma once

// The sidecar's route decision, offered outside the proxy: what a sidecar holding `resources`
// would do with a request, without sending it — the virtual host and route it matches, the
// action, the clusters with their endpoints, balancer and limits, the timeout and retries.
// meshctl explain --from --to asks it with the resources the control plane sent a sidecar of the
// calling service (docs/adr/0068-explanations-computed-by-the-collector.md); it is the one
// sidecar library the control-plane tree may link (its `visibility` names its users).
//
// It decides nothing itself: the resources go through the sidecar's own validation and
// translation (sidecar/config BuildSnapshot) and the request through the built route table's
// matching (sidecar/route RouteTable), the code a running sidecar uses, so the answer cannot
// drift from the proxy's. Only this header is the contract; the sidecar's types stay behind it.
//
// Ownership and threading: Decide keeps nothing of its inputs (it takes the resources by value,
// so a caller done with them can move them in); the Result owns its strings. Each call builds a
// snapshot of its own (reading the files that secrets name by path, as the sidecar does; the
// control plane sends secrets inline) and shares no state, so any thread may call it,
// concurrently too. It is a tool's call, not a request path: it allocates freely.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::dryrun {

// The resources a route decision reads (listeners play no part: the caller names the route
// configuration). All must build together, as the sidecar would accept them.
struct Resources {
  std::vector<xds::RouteConfiguration> routes;
  std::vector<xds::Cluster> clusters;
  std::vector<xds::ClusterLoadAssignment> endpoints;
  std::vector<xds::Secret> secrets;
};

struct Request {
  std::string method = "GET";
  std::string authority;  // host[:port]
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;  // lowercase names
};

// A limit with no bound (max_retries under an enabled retry budget).
inline constexpr uint32_t kUnlimited = 0xffffffffu;

// A cluster the matched route sends to.
struct TargetCluster {
  std::string name;
  uint32_t weight = 0;  // of a weighted route; 0 for a single cluster
  bool known = false;   // the resources hold it (else the sidecar would answer 503 NC)
  std::string lb_policy;
  std::vector<std::string> endpoints;  // IP:PORT, with " (weight N)" when not 1
  // The circuit-breaker limits; kUnlimited for none.
  uint32_t max_connections = 0, max_pending_requests = 0, max_requests = 0, max_retries = 0;
  std::string outlier_detection;            // "eject after 5 consecutive 5xx ..." or empty: off
  std::string consecutive_failure_breaker;  // or empty: off
};

struct Result {
  std::string route_config;
  std::string virtual_host;  // empty: no virtual host for the host (404)
  std::string route;         // the matched route's name; empty: none matched (404)
  std::string action;        // "forward", "redirect to URL", "direct response N"
  std::vector<TargetCluster> clusters;
  int64_t timeout_ms = 0;  // 0: none
  int64_t per_try_timeout_ms = 0;
  uint32_t num_retries = 0;
  bool has_rate_limit = false;
  bool has_fault = false;
};

// InvalidArgument with the sidecar's own message (the resource and field) when the resources do
// not build; NotFound when `route_config` names no RouteConfiguration among them.
absl::StatusOr<Result> Decide(Resources resources, absl::string_view route_config,
                              const Request& request);

}  // namespace meshlet::sidecar::dryrun
