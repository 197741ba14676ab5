#include "sidecar/config/translate_internal.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/resilience/retry_budget.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

void TranslateCircuitBreakers(Errors::Scope& scope, const xds::CircuitBreakers& in,
                              cluster::ClusterConfig& out) {
  auto limit = [&](absl::string_view field, bool has, uint32_t value, bool allow_zero,
                   uint32_t* target) {
    if (!has) return;
    if (value == 0 && !allow_zero) {
      scope.Add(Join("circuit_breakers", field), "must be greater than 0");
      return;
    }
    *target = value;
  };
  resilience::CircuitBreakerConfig& cb = out.circuit_breakers;
  limit("max_connections", in.has_max_connections(), in.max_connections().value(), false,
        &cb.max_connections);
  limit("max_pending_requests", in.has_max_pending_requests(), in.max_pending_requests().value(),
        false, &cb.max_pending_requests);
  limit("max_requests", in.has_max_requests(), in.max_requests().value(), false, &cb.max_requests);
  limit("max_retries", in.has_max_retries(), in.max_retries().value(), true, &cb.max_retries);

  if (in.has_retry_budget()) {
    const xds::RetryBudget& rb = in.retry_budget();
    resilience::RetryBudgetConfig& budget = out.retry_budget;
    budget.enabled = !rb.disabled();
    if (rb.budget_percent() != 0) {
      CheckPercentage(scope, "circuit_breakers.retry_budget.budget_percent", rb.budget_percent());
      budget.budget_percent = rb.budget_percent();
    }
    if (rb.min_retries_per_second() != 0) {
      budget.min_retries_per_second = rb.min_retries_per_second();
    }
    ReadDuration(scope, "circuit_breakers.retry_budget.window", rb.has_window(), rb.window(),
                 DurationRule::kPositive, &budget.window);
    scope.Add("circuit_breakers.retry_budget", resilience::ValidateRetryBudgetConfig(budget));
  }
  // The retry budget overrides the default concurrent-retry limit (design.md §6, ADR 0043): its
  // rate bounds retry storms, and 3 retries in flight would refuse the retries a burst of
  // failures needs (a pod going away under load). A max_retries the resource sets still applies.
  if (!in.has_max_retries() && out.retry_budget.enabled) {
    cb.max_retries = resilience::kUnlimitedRetries;
  }

  if (in.has_consecutive_failures() && in.consecutive_failures().failure_threshold() > 0) {
    const xds::ConsecutiveFailureBreaker& cf = in.consecutive_failures();
    resilience::ConsecutiveFailureBreakerConfig breaker;
    breaker.failure_threshold = cf.failure_threshold();
    ReadDuration(scope, "circuit_breakers.consecutive_failures.open_duration",
                 cf.has_open_duration(), cf.open_duration(), DurationRule::kPositive,
                 &breaker.open_duration);
    out.consecutive_failure_breaker = breaker;
  }
}

void TranslateOutlierDetection(Errors::Scope& scope, const xds::Cluster& cluster,
                               cluster::ClusterConfig& out) {
  // On by default (design.md §6); a resource may retune it or turn both detectors off with 0.
  resilience::OutlierDetectionConfig od;
  if (cluster.has_outlier_detection()) {
    const xds::OutlierDetection& in = cluster.outlier_detection();
    if (in.has_consecutive_5xx()) od.consecutive_5xx = in.consecutive_5xx().value();
    if (in.has_consecutive_gateway_failure()) {
      od.consecutive_gateway_failure = in.consecutive_gateway_failure().value();
    }
    ReadDuration(scope, "outlier_detection.interval", in.has_interval(), in.interval(),
                 DurationRule::kPositive, &od.interval);
    ReadDuration(scope, "outlier_detection.base_ejection_time", in.has_base_ejection_time(),
                 in.base_ejection_time(), DurationRule::kPositive, &od.base_ejection_time);
    ReadDuration(scope, "outlier_detection.max_ejection_time", in.has_max_ejection_time(),
                 in.max_ejection_time(), DurationRule::kPositive, &od.max_ejection_time);
    if (in.has_max_ejection_percent()) {
      od.max_ejection_percent = in.max_ejection_percent().value();
    }
    od.success_rate_minimum_hosts = in.success_rate_minimum_hosts();
    if (in.success_rate_request_volume() != 0) {
      od.success_rate_request_volume = in.success_rate_request_volume();
    }
    if (in.success_rate_stdev_factor() != 0) {
      od.success_rate_stdev_factor = in.success_rate_stdev_factor();
    }
    if (in.panic_threshold_percent() != 0) {
      od.panic_threshold_percent = in.panic_threshold_percent();
    }
  }
  absl::Status valid = resilience::ValidateOutlierDetectionConfig(od);
  if (!valid.ok()) {
    scope.Add("outlier_detection", valid);
    return;
  }
  out.outlier_detection = od;
  // One panic threshold for the cluster: the load balancer's (which counts every reason a host is
  // unhealthy: ejection, active health checks, EDS) follows the one the operator sets here.
  out.lb.Mutable().panic_threshold_percent = od.panic_threshold_percent;
}

void TranslateOverload(Errors::Scope& scope, const xds::Overload& in,
                       cluster::OverloadConfig& out) {
  out.enabled = !in.disabled();
  ReadDuration(scope, "overload.ejection_time", in.has_ejection_time(), in.ejection_time(),
               DurationRule::kNonNegative, &out.ejection_time);
  ReadDuration(scope, "overload.max_ejection_time", in.has_max_ejection_time(),
               in.max_ejection_time(), DurationRule::kPositive, &out.max_ejection_time);
  if (out.ejection_time > out.max_ejection_time) {
    scope.Add("overload.ejection_time", "must not exceed max_ejection_time");
  }
  if (in.has_max_ejection_percent()) {
    if (in.max_ejection_percent().value() > 100) {
      scope.Add("overload.max_ejection_percent", "must be in [0, 100]");
    }
    out.max_ejection_percent = in.max_ejection_percent().value();
  }
  if (in.has_penalty()) {
    if (in.penalty().value() < 1 || in.penalty().value() > cluster::kMaxOverloadPenalty) {
      scope.Add("overload.penalty",
                absl::StrCat("must be in [1, ", cluster::kMaxOverloadPenalty, "]"));
    }
    out.penalty = in.penalty().value();
  }
  ReadDuration(scope, "overload.penalty_time", in.has_penalty_time(), in.penalty_time(),
               DurationRule::kPositive, &out.penalty_time);
}

void TranslateHealthCheck(Errors::Scope& scope, const xds::HealthCheck& in,
                          cluster::HealthCheckConfig& out) {
  switch (in.check_case()) {
    case xds::HealthCheck::kHttp: {
      out.kind = cluster::HealthCheckConfig::Kind::kHttp;
      const xds::HttpHealthCheck& http = in.http();
      if (!http.path().empty()) {
        if (http.path().front() != '/') {
          scope.Add("health_check.http.path", "must start with '/'");
        }
        out.http_path = http.path();
      }
      if (!http.host().empty() && !ValidHost(http.host())) {
        scope.Add("health_check.http.host", absl::StrCat(Quote(http.host()), " is not a host"));
      }
      out.http_host = http.host();
      if (http.expected_statuses_size() > 0) {
        out.expected_statuses.clear();
        for (int i = 0; i < http.expected_statuses_size(); ++i) {
          CheckStatusCode(scope, Index("health_check.http.expected_statuses", i),
                          http.expected_statuses(i));
          out.expected_statuses.push_back(http.expected_statuses(i));
        }
      }
      break;
    }
    case xds::HealthCheck::kTcp:
      if (!in.tcp()) scope.Add("health_check.tcp", "must be true (or use http)");
      out.kind = cluster::HealthCheckConfig::Kind::kTcp;
      break;
    default:
      scope.Add("health_check", "needs http or tcp");
      return;
  }
  ReadDuration(scope, "health_check.interval", in.has_interval(), in.interval(),
               DurationRule::kPositive, &out.interval);
  ReadDuration(scope, "health_check.timeout", in.has_timeout(), in.timeout(),
               DurationRule::kPositive, &out.timeout);
  if (in.healthy_threshold() != 0) out.healthy_threshold = in.healthy_threshold();
  if (in.unhealthy_threshold() != 0) out.unhealthy_threshold = in.unhealthy_threshold();
}

// A DNS name of letters, digits, '-' and '_' in labels of 1 to 63, 253 at most (a trailing dot
// allowed: it ends the resolver's search list).
bool ValidDnsName(absl::string_view name) {
  if (absl::EndsWith(name, ".")) name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
        return false;
      }
    }
  }
  return true;
}

void TranslateDnsResolution(Errors::Scope& scope, const xds::DnsResolution& dns) {
  if (!ValidDnsName(dns.hostname())) {
    scope.Add("dns.hostname", absl::StrCat(Quote(dns.hostname()),
                                           " is not a DNS name (labels of letters, digits, '-' "
                                           "and '_', 1 to 63 each, 253 in all)"));
  }
  if (dns.port() == 0 || dns.port() > 65535) {
    scope.Add("dns.port", absl::StrCat(dns.port(), " is not a port from 1 to 65535"));
  }
  Duration min_refresh = kDnsMinRefresh, max_refresh = kDnsMaxRefresh,
           failure_refresh = kDnsFailureRefresh;
  ReadDuration(scope, "dns.min_refresh", dns.has_min_refresh(), dns.min_refresh(),
               DurationRule::kPositive, &min_refresh);
  ReadDuration(scope, "dns.max_refresh", dns.has_max_refresh(), dns.max_refresh(),
               DurationRule::kPositive, &max_refresh);
  ReadDuration(scope, "dns.failure_refresh", dns.has_failure_refresh(), dns.failure_refresh(),
               DurationRule::kPositive, &failure_refresh);
  if (max_refresh < min_refresh) {
    scope.Add("dns.max_refresh", "is shorter than dns.min_refresh");
  }
}

void TranslateLocalityLb(Errors::Scope& scope, const xds::LocalityLb& in,
                         cluster::LocalityLbConfig& out) {
  out.enabled = in.enabled();
  if (in.has_overprovisioning_percent()) {
    const uint32_t v = in.overprovisioning_percent().value();
    if (v < 100 || v > 1000)
      scope.Add("locality_lb.overprovisioning_percent", "must be in [100, 1000]");
    out.overprovisioning_percent = v;
  }
  out.max_inflight_per_host = in.max_inflight_per_host();
  ReadDuration(scope, "locality_lb.max_latency", in.has_max_latency(), in.max_latency(),
               DurationRule::kNonNegative, &out.max_latency);
}

std::optional<cluster::ClusterConfig> TranslateCluster(
    Errors::Scope& scope, const xds::Cluster& cluster,
    const Snapshot::ByName<SecretConfig>& secrets, const xds::Locality* own) {
  const size_t before = scope.count();
  cluster::ClusterConfig out;
  out.name = cluster.name();
  if (cluster.has_traffic_policy()) {
    out.traffic_policy =
        PolicySourceName(scope, "traffic_policy", cluster.traffic_policy(), /*route=*/false);
  }
  if (!cluster.subset().empty() && !IsSafeHeaderValue(cluster.subset())) {
    scope.Add("subset", "must be printable text");
  } else {
    out.subset = cluster.subset();
  }
  switch (cluster.type()) {
    case xds::Cluster::STATIC:
      out.eds = false;
      break;
    case xds::Cluster::EDS:
      out.eds = true;
      break;
    case xds::Cluster::DNS:
      out.eds = true;  // the sidecar's own load assignment (DnsClusters)
      TranslateDnsResolution(scope, cluster.dns());
      break;
    default:
      scope.Add("type", absl::StrCat("unknown value ", cluster.type()));
  }
  if (cluster.has_dns() && cluster.type() != xds::Cluster::DNS) {
    scope.Add("dns", "only with type DNS");
  }
  switch (cluster.lb_policy()) {
    case xds::LEAST_REQUEST:
      out.lb_policy = cluster::LbPolicy::kLeastRequest;
      break;
    case xds::ROUND_ROBIN:
      out.lb_policy = cluster::LbPolicy::kRoundRobin;
      break;
    case xds::RANDOM:
      out.lb_policy = cluster::LbPolicy::kRandom;
      break;
    case xds::PEAK_EWMA:
      out.lb_policy = cluster::LbPolicy::kPeakEwma;
      break;
    default:
      scope.Add("lb_policy", absl::StrCat("unknown value ", cluster.lb_policy()));
  }
  switch (cluster.protocol()) {
    case xds::UPSTREAM_HTTP1:
      out.protocol = cluster::UpstreamProtocol::kHttp1;
      break;
    case xds::UPSTREAM_HTTP2:
      out.protocol = cluster::UpstreamProtocol::kHttp2;
      break;
    case xds::UPSTREAM_SAME_AS_DOWNSTREAM:
      out.protocol = cluster::UpstreamProtocol::kSameAsDownstream;
      break;
    case xds::UPSTREAM_MESH_HTTP2:
      out.protocol = cluster::UpstreamProtocol::kMeshHttp2;
      break;
    default:
      scope.Add("protocol", absl::StrCat("unknown value ", cluster.protocol()));
  }
  ReadDuration(scope, "connect_timeout", cluster.has_connect_timeout(), cluster.connect_timeout(),
               DurationRule::kPositive, &out.connect_timeout);

  const xds::ClusterLoadAssignment& inline_endpoints = cluster.load_assignment();
  if (out.eds) {
    if (cluster.has_load_assignment() && inline_endpoints.endpoints_size() > 0) {
      scope.Add("load_assignment",
                cluster.type() == xds::Cluster::DNS
                    ? std::string("not used with type DNS (endpoints are what dns.hostname "
                                  "resolves to)")
                    : absl::StrCat("not used with type EDS (endpoints come from the "
                                   "ClusterLoadAssignment named ",
                                   Quote(cluster.name()), ")"));
    }
  } else {
    if (!inline_endpoints.cluster_name().empty() &&
        inline_endpoints.cluster_name() != cluster.name()) {
      scope.Add("load_assignment.cluster_name",
                absl::StrCat(Quote(inline_endpoints.cluster_name()),
                             " differs from the cluster's name (leave it empty)"));
    }
    if (inline_endpoints.endpoints_size() == 0) {
      scope.Add("load_assignment.endpoints", "a STATIC cluster needs at least one endpoint");
    }
    out.endpoints = TranslateEndpoints(scope, "load_assignment", inline_endpoints, own,
                                       cluster.locality_lb().node_local());
  }

  // Also when absent: the defaults depend on each other (max_retries on the retry budget).
  TranslateCircuitBreakers(scope, cluster.circuit_breakers(), out);
  TranslateOutlierDetection(scope, cluster, out);
  if (cluster.has_locality_lb()) {
    TranslateLocalityLb(scope, cluster.locality_lb(), out.lb.Mutable().locality);
  }
  if (cluster.has_overload()) TranslateOverload(scope, cluster.overload(), out.overload);
  if (cluster.has_health_check())
    TranslateHealthCheck(scope, cluster.health_check(), out.health_check.Mutable());
  if (cluster.has_tls()) TranslateUpstreamTls(scope, cluster.tls(), secrets, out.tls);
  // The codec follows `protocol`, not what ALPN agrees on: an ALPN list without the protocol's
  // name would let the upstream pick another one and every request fail.
  if (!out.tls.alpn.empty()) {
    const char* wanted = nullptr;
    if (out.protocol == cluster::UpstreamProtocol::kHttp1) wanted = "http/1.1";
    if (out.protocol == cluster::UpstreamProtocol::kHttp2 ||
        out.protocol == cluster::UpstreamProtocol::kMeshHttp2) {
      wanted = "h2";
    }
    if (wanted != nullptr &&
        std::find(out.tls.alpn.begin(), out.tls.alpn.end(), wanted) == out.tls.alpn.end()) {
      scope.Add("tls.alpn", absl::StrCat("must contain \"", wanted, "\" for protocol ",
                                         xds::UpstreamProtocol_Name(cluster.protocol())));
    }
  }
  if (cluster.has_pool()) {
    const xds::ConnectionPool& pool = cluster.pool();
    ReadDuration(scope, "pool.idle_timeout", pool.has_idle_timeout(), pool.idle_timeout(),
                 DurationRule::kNonNegative, &out.pool.idle_timeout);
    out.pool.max_requests_per_connection = pool.max_requests_per_connection();
    if (pool.max_concurrent_streams() != 0) {
      out.pool.max_concurrent_streams = pool.max_concurrent_streams();
    }
    ReadDuration(scope, "pool.max_connection_duration", pool.has_max_connection_duration(),
                 pool.max_connection_duration(), DurationRule::kNonNegative,
                 &out.pool.max_connection_duration);
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

}  // namespace

namespace {

// The position of the resource named `name` in `list` (strictly increasing name order), if any.
template <typename Message>
std::optional<size_t> Position(const ResourceList<Message>& list, absl::string_view name) {
  size_t low = 0;
  size_t high = list.size();
  while (low < high) {
    const size_t middle = low + (high - low) / 2;
    const std::string& at = list.name(middle);
    if (at == name) return middle;
    if (absl::string_view(at) < name) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return std::nullopt;
}

// The clusters taken from the previous build by what changed since (ADR 0086, "the sidecar's
// share of a lookup's wait"): both lists are compared with the previous ones by pointer, and only
// the clusters added or changed, or whose load assignment was, are translated; the rest of the
// memo and of the cluster set is the previous one's, shared (persistent maps, O(k log n) for k
// changed). False, with `build` unchanged, when it cannot be done that way: no previous build,
// secrets changed, a list out of name order, a cluster or an assignment gone, or any error (the
// full pass then reports every error as it always does).
bool ApplyClusterChanges(SnapshotBuild& build, const ResourceList<xds::Cluster>& clusters,
                         const ResourceList<xds::ClusterLoadAssignment>& assignments) {
  const TranslationMemo* before = build.before;
  if (before == nullptr || build.previous == nullptr || !before->lists_sorted ||
      !build.secrets_as_before) {
    return false;
  }
  std::vector<size_t> changed_clusters;
  std::vector<size_t> changed_assignments;
  if (!ChangedSince(before->cluster_list, clusters, changed_clusters) ||
      !ChangedSince(before->assignment_list, assignments, changed_assignments)) {
    return false;
  }
  // The names whose cluster entry changes: the clusters changed, and those of the assignments
  // changed.
  std::vector<absl::string_view> affected;
  affected.reserve(changed_clusters.size() + changed_assignments.size());
  for (size_t i : changed_clusters) affected.push_back(clusters.name(i));
  for (size_t i : changed_assignments) affected.push_back(assignments.name(i));
  std::sort(affected.begin(), affected.end());
  affected.erase(std::unique(affected.begin(), affected.end()), affected.end());

  Errors errors;
  std::vector<TranslationMemo::Cluster> entries;
  entries.reserve(affected.size());
  size_t translated_count = 0;
  for (absl::string_view name : affected) {
    if (!ValidName(name)) return false;
    const std::optional<size_t> cluster_at = Position(clusters, name);
    if (!cluster_at) return false;  // an assignment naming no cluster
    const ResourceList<xds::Cluster>::Pointer& cluster = clusters.shared(*cluster_at);
    ResourceList<xds::ClusterLoadAssignment>::Pointer assignment;
    if (const std::optional<size_t> at = Position(assignments, name)) {
      if (!cluster->facts().eds) return false;  // the full pass reports it
      assignment = assignments.shared(*at);
    }
    const TranslationMemo::Cluster* held = before->clusters.Get(name);
    if (held != nullptr && held->cluster == cluster && held->assignment == assignment) {
      entries.push_back(*held);
      continue;
    }
    Errors::Scope scope(errors, Label("cluster", name));
    std::optional<cluster::ClusterConfig> out =
        TranslateCluster(scope, *cluster->Parse(), build.snapshot->secrets, build.locality);
    if (out.has_value() && assignment != nullptr) {
      Errors::Scope endpoints_scope(errors, "");
      out->endpoints = TranslateEndpoints(endpoints_scope, "", *assignment->Parse(), build.locality,
                                          cluster->Parse()->locality_lb().node_local());
    }
    if (!out.has_value() || !errors.empty()) return false;
    ++translated_count;
    entries.push_back(TranslationMemo::Cluster{
        cluster, assignment, std::make_shared<const cluster::ClusterConfig>(*std::move(out))});
  }

  TranslationMemo& memo = *build.memo;
  memo.cluster_list = clusters;
  memo.assignment_list = assignments;
  memo.lists_sorted = true;
  memo.clusters = before->clusters;
  memo.cluster_names = before->cluster_names;
  build.snapshot->clusters = build.previous->clusters;
  memo.clusters_changed.emplace();
  memo.clusters_changed_since = build.previous;
  memo.clusters_changed->reserve(entries.size());
  for (TranslationMemo::Cluster& entry : entries) {
    const std::string& name = entry.cluster->name();
    memo.clusters_changed->push_back(name);
    memo.cluster_names.emplace(name, NameOnly{});
    build.snapshot->clusters.insert_or_assign(name, entry.translated);
    memo.clusters.insert_or_assign(name, std::move(entry));
  }
  memo.clusters_reused = clusters.size() - translated_count;
  memo.clusters_examined = affected.size();
  build.cluster_names_kept = true;
  return true;
}

}  // namespace

void AddClusters(SnapshotBuild& build, const ResourceList<xds::Cluster>& clusters,
                 const ResourceList<xds::ClusterLoadAssignment>& assignments) {
  if (ApplyClusterChanges(build, clusters, assignments)) return;
  TranslationMemo& memo = *build.memo;
  const TranslationMemo* before = build.before;
  memo.clusters_examined = clusters.size();
  memo.assignment_list = assignments;
  memo.lists_sorted = Sorted(clusters) && Sorted(assignments);
  // Clusters, then the load assignments that fill EDS clusters.
  // Views of the names in `clusters`, which the memo keeps (cluster_list).
  memo.cluster_list = clusters;
  absl::flat_hash_map<absl::string_view, size_t> cluster_index;  // name → position in the list
  absl::flat_hash_map<absl::string_view, size_t> seen;
  cluster_index.reserve(clusters.size());
  seen.reserve(clusters.size());
  for (size_t i = 0; i < clusters.size(); ++i) {
    // By name only: a cluster held as bytes is parsed when it is translated.
    const std::string& name = clusters.name(i);
    if (!build.Named("cluster", "clusters", i, name, seen)) continue;
    // Even an invalid cluster's name counts as known, so its routes do not add noise.
    memo.cluster_names.emplace(name, NameOnly{});
    cluster_index.emplace(name, i);
  }
  const std::vector<ResourceList<xds::ClusterLoadAssignment>::Pointer> assignment_of =
      MatchLoadAssignments(build, clusters, assignments, cluster_index);
  for (size_t i = 0; i < clusters.size(); ++i) {
    const ResourceList<xds::Cluster>::Pointer& cluster = clusters.shared(i);
    const std::string& name = cluster->name();
    auto indexed = cluster_index.find(name);
    if (indexed == cluster_index.end() || indexed->second != i) continue;  // reported above
    const ResourceList<xds::ClusterLoadAssignment>::Pointer& assignment = assignment_of[i];
    std::shared_ptr<const cluster::ClusterConfig> translated;
    if (before != nullptr && (build.secrets_as_before || !cluster->facts().tls)) {
      const TranslationMemo::Cluster* held = before->clusters.Get(name);
      if (held != nullptr && held->cluster == cluster && held->assignment == assignment) {
        translated = held->translated;
        ++memo.clusters_reused;
      }
    }
    if (translated == nullptr) {
      Errors::Scope scope(build.errors, Label("cluster", name));
      std::optional<cluster::ClusterConfig> out =
          TranslateCluster(scope, *cluster->Parse(), build.snapshot->secrets, build.locality);
      if (out.has_value() && assignment != nullptr) {
        Errors::Scope endpoints_scope(build.errors,
                                      absl::StrCat("cluster_load_assignment ", Quote(name)));
        out->endpoints =
            TranslateEndpoints(endpoints_scope, "", *assignment->Parse(), build.locality,
                               cluster->Parse()->locality_lb().node_local());
      }
      if (!out.has_value()) continue;
      translated = std::make_shared<const cluster::ClusterConfig>(*std::move(out));
    }
    memo.clusters.emplace(cluster->name(),
                          TranslationMemo::Cluster{cluster, assignment, translated});
    build.snapshot->clusters.emplace(name, std::move(translated));
  }
}

}  // namespace meshlet::sidecar::config::translate_internal
