// BuildSnapshot cost with one route table joined by N ServiceRoutes (ADR 0086): the first build,
// and a build from the running snapshot after one ServiceRoute was added (what a sidecar does
// when the mesh gains a Service port, or an on-demand sidecar with 50 or 500 ServiceRoutes an
// answered lookup); and with N EDS clusters held, a build after one cluster was added, then its
// load assignment (the other two responses of an answered lookup). Reports time per
// BuildSnapshot.
//
//   bazel run -c opt //sidecar/config:build_snapshot_benchmark

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using translate_testing::Base;
using translate_testing::Parse;

// A ServiceRoute joining the fixture's "local" table: one host, two routes.
xds::ServiceRoute Joining(int i) {
  const std::string name = absl::StrCat("svc", i, ".shop:80");
  return Parse<xds::ServiceRoute>(
      absl::StrCat("name: \"", name, "\"\nroute_config_name: local\nvirtual_host:\n  name: \"",
                   name, "\"\n  domains: [\"", name, "\", \"svc", i, ".shop\"]\n  routes:\n",
                   "  - match: {prefix: /api/}\n    route: {cluster: other, timeout: 3s}\n",
                   "  - match: {prefix: /}\n    route: {cluster: other}\n"));
}

ResourceSet WithServiceRoutes(int count) {
  ResourceSet set = Base();
  for (int i = 0; i < count; ++i) set.service_routes.push_back(Joining(i));
  return set;
}

void BM_FirstBuild(benchmark::State& state) {
  const ResourceSet set = WithServiceRoutes(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto snapshot = BuildSnapshot(set);
    if (!snapshot.ok()) state.SkipWithError(std::string(snapshot.status().message()).c_str());
    benchmark::DoNotOptimize(snapshot);
  }
}
BENCHMARK(BM_FirstBuild)->Arg(5000)->Unit(benchmark::kMillisecond);

void BM_OneServiceRouteAdded(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const ResourceSet set = WithServiceRoutes(count);
  auto running = BuildSnapshot(set);
  if (!running.ok()) {
    state.SkipWithError(std::string(running.status().message()).c_str());
    return;
  }
  ResourceSet added = set;
  added.service_routes.push_back(Joining(count));
  for (auto _ : state) {
    auto snapshot = BuildSnapshot(added, running->get());
    if (!snapshot.ok()) state.SkipWithError(std::string(snapshot.status().message()).c_str());
    benchmark::DoNotOptimize(snapshot);
  }
}
BENCHMARK(BM_OneServiceRouteAdded)->Arg(50)->Arg(500)->Arg(5000)->Unit(benchmark::kMillisecond);

// Clusters and assignments in name order, as the xDS client lists them.
xds::Cluster EdsCluster(int i) {
  return Parse<xds::Cluster>(
      absl::StrFormat("name: \"outbound|80||svc%06d.shop\"\ntype: EDS\n", i));
}
xds::ClusterLoadAssignment Assignment(int i) {
  return Parse<xds::ClusterLoadAssignment>(
      absl::StrFormat("cluster_name: \"outbound|80||svc%06d.shop\"\nendpoints:\n"
                      "- address: 10.0.0.1:8080\n- address: 10.0.0.2:8080\n",
                      i));
}

void BM_OneClusterAdded(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  ResourceSet set;
  set.version = "xds";  // as the xDS client's sets: no content hash of the whole set per build
  for (int i = 0; i < count; ++i) {
    set.clusters.push_back(EdsCluster(i));
    set.endpoints.push_back(Assignment(i));
  }
  auto running = BuildSnapshot(set);
  if (!running.ok()) {
    state.SkipWithError(std::string(running.status().message()).c_str());
    return;
  }
  ResourceSet with_cluster = set;
  with_cluster.clusters.push_back(EdsCluster(count));
  ResourceSet with_assignment = with_cluster;
  with_assignment.endpoints.push_back(Assignment(count));
  for (auto _ : state) {
    auto cluster = BuildSnapshot(with_cluster, running->get());
    auto assignment = cluster.ok() ? BuildSnapshot(with_assignment, cluster->get()) : cluster;
    if (!assignment.ok()) state.SkipWithError(std::string(assignment.status().message()).c_str());
    benchmark::DoNotOptimize(assignment);
  }
}
BENCHMARK(BM_OneClusterAdded)->Arg(20)->Arg(2000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlet::sidecar::config
