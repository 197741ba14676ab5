// Translation cost per node for meshes of growing size: what one push round costs the control
// plane (one Translate per connected sidecar). bazel run -c opt
// //control-plane/translate:translator_benchmark

#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

void BM_TranslateOneNode(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, policy, registry);
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
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, policy, registry);
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
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, *policy, *registry);
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
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, *policy, *registry);
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
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, policy, registry);
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

// The largest resource and the total bytes one node gets (serialized), in the inline form (a node
// reading everything but service-routes) and split (one reading everything).
void BM_ResourceSizes(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildScaleMesh(static_cast<int>(state.range(0)), 5, policy, registry);
  xds::Node node;
  node.set_id("svc-0-0");
  xds::CapabilitySet reads = xds::CapabilitySet::All();
  if (state.range(1) == 0) reads.Remove(xds::Capability::kServiceRoutes);
  for (const std::string& name : reads.Names()) node.add_capabilities(name);
  size_t largest = 0;
  size_t total = 0;
  for (auto _ : state) {
    const NodeResources r = Translate(policy, registry, node);
    largest = 0;
    total = 0;
    auto add = [&](const auto& list) {
      for (const auto& m : list) {
        largest = std::max(largest, m.ByteSizeLong());
        total += m.ByteSizeLong();
      }
    };
    add(r.listeners);
    add(r.routes);
    add(r.service_routes);
    add(r.clusters);
    add(r.endpoints);
  }
  state.counters["largest_bytes"] = static_cast<double>(largest);
  state.counters["total_bytes"] = static_cast<double>(total);
  state.SetLabel(absl::StrCat(state.range(0), " services, ", state.range(1) ? "split" : "inline"));
}
BENCHMARK(BM_ResourceSizes)
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Args({5000, 0})
    ->Args({5000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace meshlet::controlplane::translate
