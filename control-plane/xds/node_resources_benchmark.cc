// What one Kubernetes endpoint change costs the discovery server's generator at growing mesh
// sizes: the registry's new snapshot (one Service's entry replaced, as Kubernetes discovery
// publishes it), the service index built and compared with the previous one, the changed
// service's clusters translated again, one node's resource set, and the previous generation
// released. The ADS push per stream is not included.
//   bazel run -c opt //control-plane/xds:node_resources_benchmark -- --benchmark_filter=Endpoint

#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control-plane/xds/node_resources.h"
#include "xds/capabilities.h"

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

// Who the generator serves at each change: one node reading the whole mesh (as a sidecar naming no
// release, the inline form; or as a current one, ServiceRoutes), or 100 current nodes, node i
// declaring svc-10i..svc-10i+9 (discovery Declared by label), or one current node in discovery
// OnDemand (by label) on a delta stream holding the lookup keys of svc-0..svc-9, generated whole
// each time or, as the ADS server asks, handing its previous set back (GenerateRequest::previous).
enum class Nodes {
  kWholeMeshInline = 0,
  kWholeMesh = 1,
  kHundredDeclared = 2,
  kOnDemand = 3,
  kOnDemandExtended = 4,
};

std::vector<xds::Node> MakeNodes(Nodes kind) {
  std::vector<xds::Node> nodes;
  const int count = kind == Nodes::kHundredDeclared ? 100 : 1;
  for (int i = 0; i < count; ++i) {
    xds::Node& node = nodes.emplace_back();
    node.set_id(absl::StrCat("client-", i));
    if (kind == Nodes::kWholeMeshInline) continue;
    for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
    if (kind == Nodes::kOnDemand) {
      (*node.mutable_labels())["meshlet.io/discovery"] = "on-demand";
      node.set_namespace_("bench");
    }
    if (kind != Nodes::kHundredDeclared) continue;
    (*node.mutable_labels())["meshlet.io/discovery"] = "declared";
    std::string deps;
    for (int d = 0; d < 10; ++d) absl::StrAppend(&deps, d == 0 ? "" : ",", "svc-", 10 * i + d);
    (*node.mutable_labels())["meshlet.io/dependencies"] = deps;
    node.set_namespace_("bench");
  }
  return nodes;
}

// Args: services, Nodes.
void BM_KubernetesEndpointChange(benchmark::State& state) {
  const int services = static_cast<int>(state.range(0));
  const bool extend = static_cast<Nodes>(state.range(1)) == Nodes::kOnDemandExtended;
  const Nodes kind = extend ? Nodes::kOnDemand : static_cast<Nodes>(state.range(1));
  auto policy = std::make_shared<controlplane::policy::PolicySnapshot>();
  auto kubernetes = std::make_shared<registry::KubernetesServices>();
  BuildMesh(services, *policy, *kubernetes);
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  registry->version = 1;
  registry->kubernetes = kubernetes;
  const std::vector<xds::Node> nodes = MakeNodes(kind);
  std::vector<std::string> key_storage;
  for (int s = 0; kind == Nodes::kOnDemand && s < 10; ++s) {
    key_storage.push_back(absl::StrCat("host:svc-", s, ".bench"));
  }
  NodeResourceGenerator generator({});
  GenerateRequest request{.node = nodes.front(), .delta = kind == Nodes::kOnDemand};
  request.keys.assign(key_storage.begin(), key_storage.end());
  NodeResourceSet previous;
  auto generate = [&](const std::shared_ptr<const registry::RegistrySnapshot>& snapshot) {
    if (kind == Nodes::kOnDemand) {
      request.previous = extend ? &previous : nullptr;
      previous = generator.Generate(policy, snapshot, request);
      benchmark::DoNotOptimize(previous);
      return;
    }
    for (const xds::Node& node : nodes) {
      benchmark::DoNotOptimize(generator.Generate(policy, snapshot, node));
    }
  };
  generate(registry);
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
    generate(snapshot);
    kubernetes = std::move(next);
  }
  static constexpr const char* kKinds[] = {
      "one whole-mesh node (inline)", "one whole-mesh node (service-routes)",
      "100 nodes declaring 10 services each", "one OnDemand node holding 10 keys",
      "one OnDemand node holding 10 keys, its set handed back"};
  state.SetLabel(absl::StrCat(services, " services, ", services * kEndpointsPerService,
                              " endpoints, ", kKinds[state.range(1)], "; assignments translated ",
                              generator.stats().assignments_translated));
}
BENCHMARK(BM_KubernetesEndpointChange)
    ->ArgsProduct({{1000, 5000}, {0, 1, 2, 3, 4}})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime();

// What one lookup costs the generator for an OnDemand node (ADR 0086) that holds range(1) keys
// already (svc-0.. looked up one by one): the set for its keys and one more, svc-N, as the ADS
// server asks for it. range(2): 1 hands the stream's previous set back (GenerateRequest::previous,
// what the server does), 0 generates the whole set each time. Each iteration looks up the next
// Service, so the node holds range(1) + iterations keys at the end.
//   bazel run -c opt //control-plane/xds:node_resources_benchmark -- --benchmark_filter=Lookup
void BM_OnDemandLookup(benchmark::State& state) {
  const int services = static_cast<int>(state.range(0));
  const int held = static_cast<int>(state.range(1));
  const bool extend = state.range(2) != 0;
  auto policy = std::make_shared<controlplane::policy::PolicySnapshot>();
  auto kubernetes = std::make_shared<registry::KubernetesServices>();
  BuildMesh(services, *policy, *kubernetes);
  policy->mesh_config.emplace();
  policy->mesh_config->mutable_metadata()->set_name("mesh");
  policy->mesh_config->mutable_spec()->mutable_discovery()->set_mode("OnDemand");
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  registry->version = 1;
  registry->kubernetes = kubernetes;
  const xds::Node node = MakeNodes(Nodes::kOnDemand).front();
  std::vector<std::string> storage;
  storage.reserve(static_cast<size_t>(services));
  std::vector<absl::string_view> keys;
  translate::TranslateOptions options;
  options.max_on_demand_services = static_cast<size_t>(services);
  NodeResourceGenerator generator(options);
  NodeResourceSet set;
  auto lookup = [&] {
    keys.push_back(storage.emplace_back(absl::StrCat("host:svc-", keys.size(), ".bench")));
    set = generator.Generate(
        policy, registry,
        GenerateRequest{
            .node = node, .delta = true, .keys = keys, .previous = extend ? &set : nullptr});
  };
  while (keys.size() < static_cast<size_t>(held)) lookup();
  const uint64_t merged = generator.stats().resources_merged;
  for (auto _ : state) lookup();
  state.SetLabel(absl::StrCat(
      services, " services, node holding ", held, " keys, ",
      extend ? "extending its set" : "generating its set whole", "; resources merged per lookup ",
      (generator.stats().resources_merged - merged) / std::max<uint64_t>(1, state.iterations())));
}
BENCHMARK(BM_OnDemandLookup)
    ->ArgsProduct({{5000}, {10, 1000}, {0, 1}})
    ->Iterations(200)
    ->Unit(benchmark::kMicrosecond)
    ->MeasureProcessCPUTime();

// What a change that is not an endpoint change (here a new policy revision) costs the generator
// for 100 nodes whose declared sets overlap: node i declares svc-i..svc-i+9, so each Service's
// part is read by up to 10 nodes.
void BM_FullGenerationOverlappingNodes(benchmark::State& state) {
  auto policy = std::make_shared<controlplane::policy::PolicySnapshot>();
  auto kubernetes = std::make_shared<registry::KubernetesServices>();
  BuildMesh(static_cast<int>(state.range(0)), *policy, *kubernetes);
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  registry->version = 1;
  registry->kubernetes = kubernetes;
  std::vector<xds::Node> nodes = MakeNodes(Nodes::kHundredDeclared);
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::string deps;
    for (size_t d = 0; d < 10; ++d) absl::StrAppend(&deps, d == 0 ? "" : ",", "svc-", i + d);
    (*nodes[i].mutable_labels())["meshlet.io/dependencies"] = deps;
  }
  NodeResourceGenerator generator({});
  for (auto _ : state) {
    auto next = std::make_shared<controlplane::policy::PolicySnapshot>(*policy);
    ++next->revision;
    policy = next;
    for (const xds::Node& node : nodes) {
      benchmark::DoNotOptimize(generator.Generate(policy, registry, node));
    }
  }
  state.SetLabel(
      absl::StrCat(state.range(0),
                   " services, 100 nodes declaring 10 overlapping; "
                   "clusters translated per generation ",
                   generator.stats().clusters_translated / generator.stats().generations));
}
BENCHMARK(BM_FullGenerationOverlappingNodes)
    ->Arg(5000)
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime();

}  // namespace
}  // namespace meshlet::controlplane::ads
