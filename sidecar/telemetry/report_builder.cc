#include "sidecar/telemetry/report_builder.h"

#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace meshlet::sidecar::telemetry {
namespace {

absl::string_view Label(const SeriesSnapshot& series, absl::string_view name) {
  for (const auto& [key, value] : series.labels) {
    if (key == name) return value;
  }
  return "";
}

void FillHistogram(const HistogramSnapshot& from, metrics::v1::Histogram* to) {
  for (const HistogramSnapshot::Bucket& bucket : from.buckets()) {
    to->add_bucket(bucket.index);
    to->add_count(bucket.count);
  }
  to->set_sum(from.sum());
}

uint64_t Count(const metrics::v1::Histogram& histogram) {
  uint64_t total = 0;
  for (uint64_t count : histogram.count()) total += count;
  return total;
}

// Every outbound cluster that has series, by name.
std::map<absl::string_view, metrics::v1::ClusterStats> ReadClusters(const StatsSnapshot& snapshot) {
  std::map<absl::string_view, metrics::v1::ClusterStats> clusters;
  auto cluster_for = [&](const SeriesSnapshot& series) -> metrics::v1::ClusterStats* {
    absl::string_view name = Label(series, "cluster");
    if (name.empty() || absl::StartsWith(name, "inbound|")) return nullptr;
    auto [it, inserted] = clusters.try_emplace(name);
    if (inserted) it->second.set_cluster(std::string(name));
    return &it->second;
  };
  for (const SeriesSnapshot& series : snapshot.series) {
    if (!absl::StartsWith(series.name, "meshlet_upstream_")) continue;
    const absl::string_view name = series.name.substr(17);
    if (name == "rq_duration_seconds") {
      metrics::v1::ClusterStats* cluster = cluster_for(series);
      if (cluster == nullptr || series.histogram.count() == 0) continue;
      FillHistogram(series.histogram, Label(series, "outcome") == "failure"
                                          ? cluster->mutable_failure()
                                          : cluster->mutable_success());
    } else if (name == "tx_bytes_total" || name == "rx_bytes_total" || name == "cx_total") {
      metrics::v1::ClusterStats* cluster = cluster_for(series);
      if (cluster == nullptr) continue;
      if (name == "tx_bytes_total") cluster->set_tx_bytes(series.counter);
      if (name == "rx_bytes_total") cluster->set_rx_bytes(series.counter);
      if (name == "cx_total") cluster->set_cx_total(series.counter);
    } else if (name == "rq_active") {
      metrics::v1::ClusterStats* cluster = cluster_for(series);
      if (cluster != nullptr) cluster->set_rq_active(series.gauge);
    }
  }
  return clusters;
}

// Every route rule that has series, by (route, rule, service).
std::map<std::tuple<absl::string_view, absl::string_view, absl::string_view>,
         metrics::v1::RouteRuleStats>
ReadRoutes(const StatsSnapshot& snapshot) {
  std::map<std::tuple<absl::string_view, absl::string_view, absl::string_view>,
           metrics::v1::RouteRuleStats>
      routes;
  for (const SeriesSnapshot& series : snapshot.series) {
    if (series.name != "meshlet_route_rq_duration_seconds" || series.histogram.count() == 0) {
      continue;
    }
    const absl::string_view route = Label(series, "route");
    const absl::string_view rule = Label(series, "rule");
    const absl::string_view service = Label(series, "service");
    auto [it, inserted] = routes.try_emplace({route, rule, service});
    metrics::v1::RouteRuleStats& out = it->second;
    if (inserted) {
      int32_t index = -1;
      if (!absl::SimpleAtoi(rule, &index)) index = -1;
      out.set_route(std::string(route));
      out.set_rule(index);
      out.set_service(std::string(service));
    }
    FillHistogram(series.histogram, Label(series, "outcome") == "failure" ? out.mutable_failure()
                                                                          : out.mutable_success());
  }
  return routes;
}

}  // namespace

ReportBuilder::Fingerprint ReportBuilder::Of(const metrics::v1::RouteRuleStats& route) {
  return Fingerprint{.requests = Count(route.success()) + Count(route.failure()),
                     .latency_sum = route.success().sum() + route.failure().sum()};
}

uint64_t ReportBuilder::KeyOf(const metrics::v1::RouteRuleStats& route) {
  return absl::HashOf(absl::string_view("route"), route.route(), route.rule(), route.service());
}

ReportBuilder::Fingerprint ReportBuilder::Of(const metrics::v1::ClusterStats& cluster) {
  return Fingerprint{.requests = Count(cluster.success()) + Count(cluster.failure()),
                     .latency_sum = cluster.success().sum() + cluster.failure().sum(),
                     .tx_bytes = cluster.tx_bytes(),
                     .rx_bytes = cluster.rx_bytes(),
                     .cx_total = cluster.cx_total(),
                     .rq_active = cluster.rq_active()};
}

uint64_t ReportBuilder::KeyOf(absl::string_view name) { return absl::HashOf(name); }

uint64_t ReportBuilder::HashOf(const Fingerprint& f) {
  return absl::HashOf(f.requests, f.latency_sum, f.tx_bytes, f.rx_bytes, f.cx_total, f.rq_active);
}

std::vector<metrics::v1::MetricsReport> ReportBuilder::Build(const StatsSnapshot& snapshot,
                                                             int64_t time_unix_nano) const {
  std::vector<metrics::v1::MetricsReport> parts(1);
  size_t part_bytes = 0;
  for (auto& [name, cluster] : ReadClusters(snapshot)) {
    const Fingerprint now = Of(cluster);
    auto known = accepted_.find(KeyOf(name));
    const bool unchanged =
        known != accepted_.end() ? known->second == HashOf(now) : now == Fingerprint{};
    if (unchanged && now.rq_active == 0) continue;
    const size_t bytes = cluster.ByteSizeLong();
    const size_t count = static_cast<size_t>(parts.back().clusters_size());
    if (count > 0 && (count >= options_.max_clusters || part_bytes + bytes > options_.max_bytes)) {
      parts.emplace_back();
      part_bytes = 0;
    }
    *parts.back().add_clusters() = std::move(cluster);
    part_bytes += bytes;
  }
  for (auto& [key, route] : ReadRoutes(snapshot)) {
    const Fingerprint now = Of(route);
    auto known = accepted_.find(KeyOf(route));
    if (known != accepted_.end() ? known->second == HashOf(now) : now == Fingerprint{}) continue;
    const size_t bytes = route.ByteSizeLong();
    const size_t count =
        static_cast<size_t>(parts.back().clusters_size() + parts.back().routes_size());
    if (count > 0 && (count >= options_.max_clusters || part_bytes + bytes > options_.max_bytes)) {
      parts.emplace_back();
      part_bytes = 0;
    }
    *parts.back().add_routes() = std::move(route);
    part_bytes += bytes;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    parts[i].set_time_unix_nano(time_unix_nano + static_cast<int64_t>(i));
  }
  return parts;
}

void ReportBuilder::Accepted(const metrics::v1::MetricsReport& part) {
  for (const metrics::v1::ClusterStats& cluster : part.clusters()) {
    accepted_[KeyOf(cluster.cluster())] = HashOf(Of(cluster));
  }
  for (const metrics::v1::RouteRuleStats& route : part.routes()) {
    accepted_[KeyOf(route)] = HashOf(Of(route));
  }
}

}  // namespace meshlet::sidecar::telemetry
