#pragma once

// DryRun: what a sidecar would do with a request under a set of resources, without sending it.
// The resources go through BuildSnapshot (the sidecar's own validation and translation) and the
// request through the built RouteTable's Match (sidecar/route), so the answer is the sidecar's,
// from the same code; nothing here matches or translates on its own. meshctl explain --from --to
// calls it with the resources the control plane sent a sidecar of the calling service
// (docs/adr/0068-explanations-computed-by-the-collector.md).
//
// Pure: builds a snapshot of its own each call (reads the files secrets name, as BuildSnapshot
// does; the control plane sends secrets inline). Any thread.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sidecar/config/translate.h"

namespace meshlet::sidecar::config {

struct DryRunRequest {
  std::string method = "GET";
  std::string authority;  // host[:port]
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;  // lowercase names
};

// A limit with no bound (max_retries under an enabled retry budget: resilience::kUnlimitedRetries).
inline constexpr uint32_t kDryRunUnlimited = 0xffffffffu;

struct DryRunCluster {
  std::string name;
  uint32_t weight = 0;  // of a weighted route; 0 for a single cluster
  bool known = false;   // the resources hold it (else the sidecar would answer 503 NC)
  std::string lb_policy;
  std::vector<std::string> endpoints;  // IP:PORT, with " (weight N)" when not 1
  // The circuit-breaker limits; kDryRunUnlimited for none.
  uint32_t max_connections = 0, max_pending_requests = 0, max_requests = 0, max_retries = 0;
  std::string outlier_detection;            // "eject after 5 consecutive 5xx ..." or empty: off
  std::string consecutive_failure_breaker;  // or empty: off
};

struct DryRunResult {
  std::string route_config;
  std::string virtual_host;  // empty: no virtual host for the host (404)
  std::string route;         // the matched route's name; empty: none matched (404)
  std::string action;        // "forward", "redirect to URL", "direct response N"
  std::vector<DryRunCluster> clusters;
  int64_t timeout_ms = 0;  // 0: none
  int64_t per_try_timeout_ms = 0;
  uint32_t num_retries = 0;
  bool has_rate_limit = false;
  bool has_fault = false;
};

// InvalidArgument (BuildSnapshot's message) when the resources do not build; NotFound when
// `route_config` names no RouteConfiguration among them.
absl::StatusOr<DryRunResult> DryRun(const ResourceSet& resources, absl::string_view route_config,
                                    const DryRunRequest& request);

}  // namespace meshlet::sidecar::config
