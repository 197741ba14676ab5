// Translation cost per node for meshes of growing size: what one push round costs the control
// plane (one Translate per connected sidecar). bazel run -c opt
// //control-plane/translate:translator_benchmark

#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "control-plane/translate/translator.h"

namespace meshlet::controlplane::translate {
namespace {

// `services` Services with a TrafficPolicy and a two-way HTTPRoute each, `per_service`
// workloads per service.
void BuildMesh(int services, int per_service, policy::PolicySnapshot& policy,
               registry::RegistrySnapshot& registry) {
  for (int s = 0; s < services; ++s) {
    const std::string name = absl::StrCat("svc-", s);
    meshlet::policy::Service service;
    service.mutable_metadata()->set_name(name);
    service.mutable_metadata()->set_namespace_("default");
    service.mutable_spec()->add_ports()->set_port(8080);
    policy.services.push_back(service);
    meshlet::policy::TrafficPolicy tp;
    tp.mutable_metadata()->set_name(name);
    tp.mutable_metadata()->set_namespace_("default");
    tp.mutable_spec()->set_target(name);
    tp.mutable_spec()->mutable_retries()->mutable_attempts()->set_value(2);
    policy.traffic_policies.push_back(tp);
    meshlet::policy::HTTPRoute route;
    route.mutable_metadata()->set_name(name);
    route.mutable_metadata()->set_namespace_("default");
    route.mutable_spec()->set_target(name);
    auto* rule = route.mutable_spec()->add_rules();
    for (const char* version : {"v1", "v2"}) {
      auto* backend = rule->add_backends();
      backend->set_service(name);
      backend->set_weight(50);
      (*backend->mutable_subset())["version"] = version;
    }
    policy.http_routes.push_back(route);
    for (int w = 0; w < per_service; ++w) {
      registry::Workload workload;
      workload.id = absl::StrCat(name, "-", w);
      workload.service = name;
      workload.namespace_ = "default";
      workload.addresses = {absl::StrCat("10.", s / 250, ".", s % 250, ".", w + 1)};
      workload.ports = {8080};
      workload.labels = {{"version", w % 2 == 0 ? "v1" : "v2"}};
      registry.workloads.push_back(workload);
    }
  }
  std::sort(registry.workloads.begin(), registry.workloads.end(),
            [](const registry::Workload& a, const registry::Workload& b) { return a.id < b.id; });
}

void BM_TranslateOneNode(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildMesh(static_cast<int>(state.range(0)), 10, policy, registry);
  xds::Node node;
  node.set_id("svc-0-0");
  for (auto _ : state) {
    NodeResources resources = Translate(policy, registry, node);
    benchmark::DoNotOptimize(resources);
  }
  state.SetLabel(
      absl::StrCat(state.range(0), " services, ", registry.workloads.size(), " workloads"));
}
BENCHMARK(BM_TranslateOneNode)->Arg(10)->Arg(100)->Unit(benchmark::kMicrosecond);

// One push round with the shared cache: every node after the first reuses the outbound part.
void BM_TranslateWithCache(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildMesh(static_cast<int>(state.range(0)), 10, policy, registry);
  policy.revision = 1;
  registry.version = 1;
  TranslationCache cache;
  xds::Node node;
  size_t i = 0;
  for (auto _ : state) {
    node.set_id(registry.workloads[i++ % registry.workloads.size()].id);
    NodeResources resources = Translate(policy, registry, node, {}, &cache);
    benchmark::DoNotOptimize(resources);
  }
}
BENCHMARK(BM_TranslateWithCache)->Arg(100)->Unit(benchmark::kMicrosecond);

// What the discovery server pays per node once the outbound part is shared (MeshTranslator): the
// node's key and its local part. The outbound part is built once per change and not counted.
void BM_MeshTranslatorPerNode(benchmark::State& state) {
  auto policy = std::make_shared<policy::PolicySnapshot>();
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  BuildMesh(static_cast<int>(state.range(0)), 10, *policy, *registry);
  MeshTranslator mesh(policy, registry, {});
  xds::Node node;
  size_t i = 0;
  for (auto _ : state) {
    node.set_id(registry->workloads[i++ % registry->workloads.size()].id);
    benchmark::DoNotOptimize(mesh.OutboundKey(node));
    NodeResources local = mesh.TranslateLocal(node);
    benchmark::DoNotOptimize(local);
  }
}
BENCHMARK(BM_MeshTranslatorPerNode)->Arg(100)->Unit(benchmark::kMicrosecond);

// Once per change: the index and one outbound part.
void BM_MeshTranslatorPerChange(benchmark::State& state) {
  auto policy = std::make_shared<policy::PolicySnapshot>();
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  BuildMesh(static_cast<int>(state.range(0)), 10, *policy, *registry);
  xds::Node node;
  node.set_id("svc-0-0");
  for (auto _ : state) {
    MeshTranslator mesh(policy, registry, {});
    NodeResources outbound = mesh.TranslateOutbound(node);
    benchmark::DoNotOptimize(outbound);
  }
}
BENCHMARK(BM_MeshTranslatorPerChange)->Arg(100)->Unit(benchmark::kMicrosecond);

void BM_TranslateScopedNode(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildMesh(static_cast<int>(state.range(0)), 10, policy, registry);
  meshlet::policy::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy.mesh_config = mesh;
  registry.workloads.front().labels["meshlet.io/dependencies"] = "svc-1,svc-2";
  xds::Node node;
  node.set_id(registry.workloads.front().id);
  for (auto _ : state) {
    NodeResources resources = Translate(policy, registry, node);
    benchmark::DoNotOptimize(resources);
  }
}
BENCHMARK(BM_TranslateScopedNode)->Arg(100)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlet::controlplane::translate
