// The translator's output must pass the sidecar's own validation (sidecar/config BuildSnapshot):
// for the example policies, for a policy set using every feature the policy API accepts, and
// for the corner cases (missing backends, multi-port and TCP services, scoping, no app ports).

#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "sidecar/route/route_config.h"
#include "tests/contract/contract_fixtures.h"
#include "xds/gateway.pb.h"

namespace meshlet::contract {
namespace {

cp::registry::RegistrySnapshot DemoRegistry() {
  cp::registry::RegistrySnapshot registry;
  registry.workloads = {
      Workload("frontend-0", "frontend", "127.0.0.1", {8080}),
      Workload("ratings-0", "ratings", "127.0.0.1", {9090}),
      Workload("reviews-v1-0", "reviews", "127.0.0.1", {9080}, {{"version", "v1"}}),
      Workload("reviews-v2-0", "reviews", "127.0.0.1", {9080}, {{"version", "v2"}}),
  };
  // Loopback: every sidecar has its own ports.
  uint32_t port = 20000;
  for (auto& w : registry.workloads) {
    w.inbound_port = port++;
    w.outbound_port = port++;
  }
  return registry;
}

TEST(TranslatorContractTest, ExamplePoliciesTranslateToAcceptedConfiguration) {
  cp::policy::PolicySnapshot policy;
  for (const char* file : {"00-services.yaml", "10-reviews-retries.yaml", "20-reviews-canary.yaml",
                           "30-ratings-timeout.yaml"}) {
    const std::string path = absl::StrCat("examples/policies/", file);
    absl::StatusOr<std::string> text = ReadFile(path);
    ASSERT_TRUE(text.ok()) << text.status();
    ASSERT_FALSE(text->empty()) << path;
    AddPolicies(*text, path, policy);
  }
  const cp::registry::RegistrySnapshot registry = DemoRegistry();
  cp::translate::TranslateOptions options;
  options.listen_host = "127.0.0.1";
  for (const auto& w : registry.workloads) {
    xds::Node node;
    node.set_id(w.id);
    cp::translate::NodeResources resources =
        cp::translate::Translate(policy, registry, node, options);
    EXPECT_EQ(resources.listeners.size(), 2u) << w.id;
    EXPECT_TRUE(resources.warnings.empty()) << w.id << ": " << resources.warnings[0];
    ExpectSidecarAccepts(resources, w.id);
  }
}

TEST(TranslatorContractTest, EveryPolicyFeatureTranslatesToAcceptedConfiguration) {
  cp::policy::PolicySnapshot policy;
  AddPolicies(kEverything, "everything.yaml", policy);
  cp::registry::RegistrySnapshot registry;
  registry.workloads = {
      Workload("api-1", "other-name", "10.1.0.1", {8080, 9000, 9901, 5432},
               {{"app", "api"}, {"track", "stable"}}),
      Workload("api-2", "api", "fd00::2", {8080, 9000, 9901, 5432}, {{"track", "canary"}}),
      Workload("legacy-1", "legacy", "10.1.0.3", {8080}),
      Workload("client-1", "", "10.1.0.4", {}),  // calls out only: no inbound listener
      Workload("implied-1", "implied", "10.1.0.5", {7000, 7001}),
  };
  // legacy-1 drains: the clusters of its service go out with no endpoints.
  registry.workloads[2].ready = false;
  for (const bool with_tls : {false, true}) {
    // With workload certificates announced: mesh mTLS on them, and the trust bundle pushed as a
    // Secret that the listeners and clusters name.
    cp::translate::TranslateOptions options;
    if (with_tls) {
      options.trust_bundle_pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
    }
    for (auto& w : registry.workloads) w.workload_certificate = with_tls;
    bool any_mtls = false;
    for (const auto& w : registry.workloads) {
      xds::Node node;
      node.set_id(w.id);
      cp::translate::NodeResources resources =
          cp::translate::Translate(policy, registry, node, options);
      for (const xds::Listener& l : resources.listeners) any_mtls |= l.tls().workload_certificate();
      ExpectSidecarAccepts(resources, w.id + (with_tls ? " (mTLS)" : ""));
    }
    EXPECT_EQ(any_mtls, with_tls);
  }
  // The node without app ports gets no inbound listener; the one with several gets per-port hosts.
  xds::Node client;
  client.set_id("client-1");
  EXPECT_EQ(cp::translate::Translate(policy, registry, client).listeners.size(), 1u);
}

// Nodes whose traffic is captured (meshlet.io/capture: iptables): capture listeners with
// destinations, per-port inbound routes, clusters of opaque ports, endpoints on app ports.
TEST(TranslatorContractTest, CapturedNodesTranslateToAcceptedConfiguration) {
  cp::policy::PolicySnapshot policy;
  AddPolicies(kEverything, "everything.yaml", policy);
  for (pb::Service& s : policy.services) {
    if (s.metadata().name() == "api") {
      s.mutable_spec()->add_addresses("10.96.0.1");
      s.mutable_spec()->add_addresses("fd00::1");
    } else {
      s.mutable_status()->add_addresses("240.240.0.1");
    }
  }
  cp::registry::RegistrySnapshot registry;
  const std::map<std::string, std::string> capture = {{"meshlet.io/capture", "iptables"}};
  registry.workloads = {
      Workload("api-1", "api", "10.1.0.1", {8080, 9000, 9901, 5432}, capture),
      Workload("api-2", "api", "fd00::2", {8080, 9000, 9901, 5432}),
      Workload("client-1", "", "10.1.0.4", {}, capture),
      Workload("legacy-1", "legacy", "10.1.0.3", {8080}, capture),
  };
  for (const char* policy_mode : {"ALLOW_ANY", "REGISTRY_ONLY"}) {
    policy.mesh_config->mutable_spec()->set_outbound_traffic_policy(policy_mode);
    for (const bool with_tls : {false, true}) {
      for (auto& w : registry.workloads) {
        w.capture = w.labels.count("meshlet.io/capture") > 0;
        w.workload_certificate = with_tls;
      }
      for (const auto& w : registry.workloads) {
        xds::Node node;
        node.set_id(w.id);
        cp::translate::NodeResources resources = cp::translate::Translate(policy, registry, node);
        bool destinations = false;
        for (const xds::Listener& l : resources.listeners) {
          destinations |= l.use_original_destination() && l.destinations_size() > 0;
        }
        EXPECT_EQ(destinations, w.capture) << w.id;
        ExpectSidecarAccepts(
            resources, absl::StrCat(w.id, " captured, ", policy_mode, with_tls ? ", mTLS" : ""));
      }
    }
  }
}

TEST(TranslatorContractTest, ScopedNodesStillGetEveryClusterTheirRoutesName) {
  cp::policy::PolicySnapshot policy;
  AddPolicies(kEverything, "everything.yaml", policy);
  policy.mesh_config->mutable_spec()->set_scope_to_dependencies(true);
  cp::registry::RegistrySnapshot registry;
  registry.workloads = {Workload("client-1", "client", "10.1.0.4", {80},
                                 {{"meshlet.io/dependencies", "api, legacy.default"}})};
  xds::Node node;
  node.set_id("client-1");
  cp::translate::NodeResources resources = cp::translate::Translate(policy, registry, node);
  ExpectSidecarAccepts(resources, "client-1 scoped");
}

// A Gateway API route whose backendRefs name a Service that does not exist: the control plane
// sends their share of the weight to a cluster no configuration defines, which the sidecar
// answers with 500 (Gateway API's rule). The sidecar must accept that name; it refused the whole
// route configuration ("names no Cluster"), so one such route kept every caller of the Service
// on its previous configuration.
TEST(TranslatorContractTest, AGatewayRouteWithMissingBackendsIsAccepted) {
  cp::policy::PolicySnapshot policy;
  AddPolicies(R"(
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
)",
              "echo.yaml", policy);
  gateway::HTTPRoute route;
  ASSERT_TRUE(config::YamlToProto(R"(
kind: HTTPRoute
metadata: {name: partly-missing, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /half}}]
    backendRefs: [{name: echo, port: 80, weight: 1}, {name: nowhere, port: 80, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /none}}]
    backendRefs: [{name: nowhere, port: 80}]
)",
                                  route)
                  .ok());
  policy.gateway_http_routes.push_back(route);
  cp::registry::RegistrySnapshot registry;
  registry.workloads = {Workload("echo-0", "echo", "10.1.0.1", {8080}),
                        Workload("client-1", "", "10.1.0.4", {})};
  xds::Node node;
  node.set_id("client-1");
  cp::translate::NodeResources resources = cp::translate::Translate(policy, registry, node);
  int missing = 0;
  for (const auto& config : resources.routes) {
    for (const auto& host : config.virtual_hosts()) {
      for (const auto& r : host.routes()) {
        for (const auto& c : r.route().weighted_clusters().clusters()) {
          missing += c.name() == sidecar::route::kMissingBackendCluster;
        }
      }
    }
  }
  // The translation holds what this test is about, by the name the sidecar knows (a rule with no
  // backend left is a direct 500 instead).
  EXPECT_EQ(missing, 1);
  ExpectSidecarAccepts(resources, "client-1");
}

// The harness itself: a translation missing one cluster its routes name is refused, so the tests
// above would notice a translator that forgot one.
TEST(TranslatorContractTest, SidecarRefusesAnIncompleteTranslation) {
  cp::policy::PolicySnapshot policy;
  AddPolicies(kEverything, "everything.yaml", policy);
  cp::registry::RegistrySnapshot registry;
  registry.workloads = {Workload("legacy-1", "legacy", "10.1.0.3", {8080})};
  xds::Node node;
  node.set_id("legacy-1");
  cp::translate::NodeResources resources = cp::translate::Translate(policy, registry, node);
  ExpectSidecarAccepts(resources, "complete");
  auto it = std::find_if(
      resources.clusters.begin(), resources.clusters.end(),
      [](const xds::Cluster& c) { return c.name() == "outbound|8080||legacy.default"; });
  ASSERT_NE(it, resources.clusters.end());
  resources.clusters.erase(it);
  sidecar::config::ResourceSet set;
  set.listeners.assign(resources.listeners.begin(), resources.listeners.end());
  set.routes.assign(resources.routes.begin(), resources.routes.end());
  set.clusters.assign(resources.clusters.begin(), resources.clusters.end());
  set.endpoints.assign(resources.endpoints.begin(), resources.endpoints.end());
  auto snapshot = sidecar::config::BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_NE(snapshot.status().message().find("outbound|8080||legacy.default"), std::string::npos)
      << snapshot.status().message();
}

}  // namespace
}  // namespace meshlet::contract
