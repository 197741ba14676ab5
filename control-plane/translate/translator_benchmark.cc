// Translation cost per node for meshes of growing size: what one push round costs the control
// plane (one Translate per connected sidecar). bazel run -c opt
// //control-plane/translate:translator_benchmark

#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "control-plane/translate/exports.h"
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

// What a linked control plane's read of this one costs when the mesh changed since the last
// (control-plane/multicluster caches the answer per policy snapshot and registry version):
// every Service exported, 10 members each, all answering mTLS.
void BM_ComputeExports(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, policy, registry);
  for (auto& service : policy.services) {
    (*service.mutable_metadata()->mutable_labels())["meshlet.io/export"] = "true";
  }
  for (registry::Workload& w : registry.workloads) w.workload_certificate = true;
  for (auto _ : state) {
    MeshExports exports = ComputeExports(policy, registry, "east.example");
    benchmark::DoNotOptimize(exports);
  }
  state.SetLabel(absl::StrCat(state.range(0), " exported services"));
}
BENCHMARK(BM_ComputeExports)->Arg(1000)->Arg(5000)->Unit(benchmark::kMillisecond);

// One node's translation when a linked cluster shares every Service (a gateway endpoint each).
void BM_TranslateOneNodeWithLinkedCluster(benchmark::State& state) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, policy, registry);
  for (registry::Workload& w : registry.workloads) w.workload_certificate = true;
  auto remote = std::make_shared<registry::RemoteServices>();
  for (const auto& service : policy.services) {
    auto e = std::make_shared<registry::RemoteEndpoint>();
    e->cluster = "east";
    e->host = "198.18.1.5";
    e->port = 15443;
    e->locality.set_cluster("east");
    e->identities = {
        absl::StrCat("spiffe://east.example/ns/default/sa/", service.metadata().name())};
    e->members = 10;
    remote->services[{"default", service.metadata().name()}] = {e};
  }
  registry.remote = remote;
  xds::Node node;
  node.set_id("svc-0-0");
  for (auto _ : state) {
    NodeResources resources = Translate(policy, registry, node);
    benchmark::DoNotOptimize(resources);
  }
  state.SetLabel(absl::StrCat(state.range(0), " services, each also in a linked cluster"));
}
BENCHMARK(BM_TranslateOneNodeWithLinkedCluster)->Arg(10)->Arg(100)->Unit(benchmark::kMicrosecond);

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

template <typename T>
T Parse(const std::string& yaml) {
  T out;
  CHECK(config::YamlToProto(yaml, out).ok()) << yaml;
  return out;
}

// A gateway proxy in a mesh of N services: its Gateway (one HTTP listener) and 10 HTTPRoutes to
// 10 of the Services. A gateway's listeners, routes and backends are its local part, rebuilt on
// every push: what one costs per push should follow its routes, not the mesh's size. The mesh's
// index is built once per change and not counted (BM_MeshTranslatorPerChange).
void BM_GatewayProxyPerPush(benchmark::State& state) {
  auto policy = std::make_shared<policy::PolicySnapshot>();
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  BuildScaleMesh(static_cast<int>(state.range(0)), 10, *policy, *registry);
  policy->gateway_classes.push_back(Parse<meshlet::gateway::GatewayClass>(
      "kind: GatewayClass\nmetadata: {name: meshlet}\n"
      "spec: {controllerName: meshlet.io/gateway-controller}"));
  policy->gateways.push_back(Parse<meshlet::gateway::Gateway>(
      "kind: Gateway\nmetadata: {name: edge, namespace: default}\nspec:\n"
      "  gatewayClassName: meshlet\n  listeners: [{name: web, port: 8080, protocol: HTTP}]"));
  for (int i = 0; i < 10; ++i) {
    policy->gateway_http_routes.push_back(Parse<meshlet::gateway::HTTPRoute>(
        absl::StrCat("kind: HTTPRoute\nmetadata: {name: r", i, ", namespace: default}\nspec:\n",
                     "  parentRefs: [{name: edge}]\n  hostnames: [svc-", i, ".example.com]\n",
                     "  rules: [{backendRefs: [{name: svc-", i, ", port: 8080}]}]")));
  }
  registry::Workload gateway;
  gateway.id = "edge-0";
  gateway.namespace_ = "default";
  gateway.service_account = "edge-meshlet";
  gateway.addresses = {"10.200.0.1"};
  gateway.labels = {{"meshlet.io/gateway", "default/edge"}};
  registry->workloads.insert(registry->workloads.begin(), gateway);  // sorted by id: first
  MeshTranslator mesh(policy, registry, {});
  xds::Node node;
  node.set_id("edge-0");
  for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
  size_t clusters = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(mesh.OutboundKey(node));
    NodeResources local = mesh.TranslateLocal(node);
    clusters = local.clusters.size();
    benchmark::DoNotOptimize(local);
  }
  if (clusters == 0) {
    NodeResources local = mesh.TranslateLocal(node);
    state.SkipWithError(absl::StrCat("the gateway was given no backend cluster: ",
                                     absl::StrJoin(local.warnings, "; "))
                            .c_str());
  }
  state.counters["clusters"] = static_cast<double>(clusters);
  state.SetLabel(absl::StrCat(state.range(0), " services"));
}
BENCHMARK(BM_GatewayProxyPerPush)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlet::controlplane::translate
