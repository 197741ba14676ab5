#include "sidecar/dryrun/dry_run.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/http/header_map.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/config/translate.h"
#include "sidecar/resilience/circuit_breaker.h"
#include "sidecar/route/route_table.h"

namespace meshlet::sidecar::dryrun {

static_assert(kUnlimited == resilience::kUnlimitedRetries);

namespace {

using config::Snapshot;

int64_t Millis(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

const char* LbPolicyName(cluster::LbPolicy policy) {
  switch (policy) {
    case cluster::LbPolicy::kLeastRequest:
      return "least-request";
    case cluster::LbPolicy::kRoundRobin:
      return "round-robin";
    case cluster::LbPolicy::kRandom:
      return "random";
    case cluster::LbPolicy::kPeakEwma:
      return "peak-ewma";
  }
  return "?";
}

TargetCluster Describe(const Snapshot& snapshot, const std::string& name, uint32_t weight) {
  TargetCluster out;
  out.name = name;
  out.weight = weight;
  const cluster::ClusterConfig* c = snapshot.FindCluster(name);
  if (c == nullptr) return out;
  out.known = true;
  out.lb_policy = LbPolicyName(c->lb_policy);
  for (const cluster::EndpointConfig& e : c->endpoints) {
    out.endpoints.push_back(absl::StrCat(
        e.address.ToString(), e.weight == 1 ? "" : absl::StrCat(" (weight ", e.weight, ")")));
  }
  out.max_connections = c->circuit_breakers.max_connections;
  out.max_pending_requests = c->circuit_breakers.max_pending_requests;
  out.max_requests = c->circuit_breakers.max_requests;
  out.max_retries = c->circuit_breakers.max_retries;
  if (c->outlier_detection.has_value()) {
    const resilience::OutlierDetectionConfig& o = *c->outlier_detection;
    out.outlier_detection = absl::StrCat(
        "eject after ", o.consecutive_5xx, " consecutive 5xx or ", o.consecutive_gateway_failure,
        " gateway errors for ", Millis(o.base_ejection_time), "ms x times ejected (at most ",
        Millis(o.max_ejection_time), "ms, ", o.max_ejection_percent, "% of endpoints)");
  }
  if (c->consecutive_failure_breaker.has_value()) {
    out.consecutive_failure_breaker = absl::StrCat(
        "open after ", c->consecutive_failure_breaker->failure_threshold,
        " consecutive failures for ", Millis(c->consecutive_failure_breaker->open_duration), "ms");
  }
  return out;
}

template <typename Message>
void MoveInto(std::vector<Message>& from, config::ResourceList<Message>& to) {
  to.reserve(from.size());
  for (Message& message : from) to.push_back(std::move(message));
}

}  // namespace

absl::StatusOr<Result> Decide(Resources resources, absl::string_view route_config,
                              const Request& request) {
  config::ResourceSet set;
  MoveInto(resources.routes, set.routes);
  MoveInto(resources.clusters, set.clusters);
  MoveInto(resources.endpoints, set.endpoints);
  MoveInto(resources.secrets, set.secrets);
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = config::BuildSnapshot(set);
  if (!snapshot.ok()) return snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable(route_config);
  if (table == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no RouteConfiguration \"", route_config, "\" among the resources"));
  }
  Result out;
  out.route_config = std::string(route_config);
  http::HeaderMap headers;
  headers.Add(":method", request.method);
  headers.Add(":scheme", "http");
  headers.Add(":authority", request.authority);
  headers.Add(":path", request.path);
  for (const auto& [name, value] : request.headers) headers.Add(name, value);
  if (const route::VirtualHostConfig* vhost = table->MatchVirtualHost(request.authority)) {
    out.virtual_host = vhost->name;
  }
  const route::RouteEntry* entry = table->Match(headers);
  if (entry == nullptr) {
    out.action = "direct response 404 (no route)";
    return out;
  }
  out.route = entry->name;
  out.has_rate_limit = entry->extras->rate_limit.has_value();
  out.has_fault = entry->extras->fault.has_value();
  if (const route::RouteAction* action = entry->route_action()) {
    out.action = "forward";
    if (action->weighted_clusters.empty()) {
      out.clusters.push_back(Describe(**snapshot, action->cluster, 0));
    } else {
      for (const route::WeightedCluster& w : action->weighted_clusters) {
        out.clusters.push_back(Describe(**snapshot, w.name, w.weight));
      }
    }
    out.timeout_ms = Millis(action->timeout);
    out.per_try_timeout_ms = Millis(action->retry_policy.per_try_timeout);
    out.num_retries = action->retry_policy.num_retries;
  } else if (const route::RedirectAction* redirect = entry->redirect()) {
    out.action =
        absl::StrCat("redirect to ", route::RedirectLocation(*redirect, headers, &entry->match));
  } else if (const route::DirectResponseAction* direct = entry->direct_response()) {
    out.action = absl::StrCat("direct response ", direct->status);
  }
  return out;
}

}  // namespace meshlet::sidecar::dryrun
