// What one Kubernetes endpoint change costs the discovery server's generator at growing mesh
// sizes: the registry's new snapshot (one Service's entry replaced, as Kubernetes discovery
// publishes it), the service index built and compared with the previous one, the changed
// service's clusters translated again, one node's resource set, and the previous generation
// released. The ADS push per stream is not included.
//   bazel run //control-plane/xds:node_resources_benchmark -- --benchmark_filter=Endpoint

#include <benchmark/benchmark.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "control-plane/xds/node_resources.h"

namespace meshlet::controlplane::ads {
namespace {

namespace pb = ::meshlet::policy;

constexpr int kEndpointsPerService = 10;

// As tests/bench/mesh_scale.py builds it: per service a Kubernetes Service with one HTTP port and
// 10 ready endpoints (half version=v1, half v2), a TrafficPolicy and an HTTPRoute sending some
// requests to the subset v2.
void BuildMesh(int services, controlplane::policy::PolicySnapshot& policy,
               registry::KubernetesServices& kubernetes) {
  for (int s = 0; s < services; ++s) {
    const std::string name = absl::StrCat("svc-", s);
    pb::TrafficPolicy tp;
    tp.mutable_metadata()->set_name(name);
    tp.mutable_metadata()->set_namespace_("bench");
    tp.mutable_spec()->set_target(name);
    tp.mutable_spec()->mutable_retries()->mutable_attempts()->set_value(2);
    policy.traffic_policies.push_back(tp);
    pb::HTTPRoute route;
    route.mutable_metadata()->set_name(name);
    route.mutable_metadata()->set_namespace_("bench");
    route.mutable_spec()->set_target(name);
    auto* canary = route.mutable_spec()->add_rules();
    auto* header = canary->add_matches()->add_headers();
    header->set_name("x-canary");
    header->set_value("always");
    auto* backend = canary->add_backends();
    backend->set_service(name);
    (*backend->mutable_subset())["version"] = "v2";
    policy.http_routes.push_back(route);

    registry::KubernetesService ks;
    ks.namespace_ = "bench";
    ks.name = name;
    ks.cluster_ips = {absl::StrCat("10.96.", s / 250, ".", s % 250)};
    ks.ports = {{.name = "http", .port = 80, .protocol = "HTTP", .target_port = 8080}};
    for (int e = 0; e < kEndpointsPerService; ++e) {
      ks.endpoints.push_back({.address = absl::StrCat("10.", 1 + s / 250, ".", s % 250, ".", e),
                              .pod = absl::StrCat(name, "-", e),
                              .service_account = name,
                              .labels = {{"app", name}, {"version", e % 2 == 0 ? "v1" : "v2"}}});
    }
    kubernetes.services.push_back(std::make_shared<const registry::KubernetesService>(ks));
  }
  policy.revision = 1;
}

void BM_KubernetesEndpointChange(benchmark::State& state) {
  const int services = static_cast<int>(state.range(0));
  auto policy = std::make_shared<controlplane::policy::PolicySnapshot>();
  auto kubernetes = std::make_shared<registry::KubernetesServices>();
  BuildMesh(services, *policy, *kubernetes);
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  registry->version = 1;
  registry->kubernetes = kubernetes;
  xds::Node node;
  node.set_id("client-0");
  NodeResourceGenerator generator({});
  benchmark::DoNotOptimize(generator.Generate(policy, registry, node));
  uint64_t version = 1;
  for (auto _ : state) {
    // The first endpoint of one of svc-0..svc-9 leaves its Service, or comes back.
    auto next = std::make_shared<registry::KubernetesServices>(*kubernetes);
    const size_t changed = version % 10;
    auto service = std::make_shared<registry::KubernetesService>(*next->services[changed]);
    if (service->endpoints.size() == kEndpointsPerService) {
      service->endpoints.erase(service->endpoints.begin());
    } else {
      service->endpoints.insert(service->endpoints.begin(),
                                kubernetes->services[changed + 10]->endpoints.front());
      service->endpoints.front().address = absl::StrCat("10.1.0.", 100 + changed);
    }
    next->services[changed] = std::move(service);
    auto snapshot = std::make_shared<registry::RegistrySnapshot>();
    snapshot->version = ++version;
    snapshot->kubernetes = next;
    benchmark::DoNotOptimize(generator.Generate(policy, snapshot, node));
    kubernetes = std::move(next);
  }
  state.SetLabel(absl::StrCat(services, " services, ", services * kEndpointsPerService,
                              " endpoints; assignments translated ",
                              generator.stats().assignments_translated));
}
BENCHMARK(BM_KubernetesEndpointChange)
    ->Arg(1000)
    ->Arg(5000)
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime();

}  // namespace
}  // namespace meshlet::controlplane::ads
