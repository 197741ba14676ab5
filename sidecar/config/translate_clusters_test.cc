// Clusters and endpoints: outlier detection, overload handling and each endpoint's TLS settings.
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using namespace std::chrono_literals;

size_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

TEST(TranslateTest, OutlierPanicThresholdIsTheClusterPanicThreshold) {
  ResourceSet set = Base();
  set.clusters.Mutable(0).mutable_outlier_detection()->set_panic_threshold_percent(30);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const cluster::ClusterConfig& cluster = *(*snapshot)->clusters.begin()->second;
  EXPECT_EQ(cluster.outlier_detection->panic_threshold_percent, 30u);
  EXPECT_EQ(cluster.lb->panic_threshold_percent, 30u);
}

TEST(TranslateTest, OverloadIsOnByDefaultAndTunable) {
  ResourceSet set = Base();
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->FindCluster("backend")->overload, cluster::OverloadConfig());
  EXPECT_TRUE((*snapshot)->FindCluster("backend")->overload.enabled);

  xds::Cluster& backend = set.clusters.Mutable(0);
  ASSERT_EQ(backend.name(), "backend");
  xds::Overload* overload = backend.mutable_overload();
  overload->mutable_ejection_time()->set_seconds(0);
  overload->mutable_max_ejection_time()->set_seconds(30);
  overload->mutable_max_ejection_percent()->set_value(20);
  overload->mutable_penalty()->set_value(4);
  overload->mutable_penalty_time()->set_seconds(3);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const cluster::OverloadConfig& tuned = (*snapshot)->FindCluster("backend")->overload;
  EXPECT_TRUE(tuned.enabled);
  EXPECT_EQ(tuned.ejection_time, 0s);
  EXPECT_EQ(tuned.max_ejection_time, 30s);
  EXPECT_EQ(tuned.max_ejection_percent, 20u);
  EXPECT_EQ(tuned.penalty, 4u);
  EXPECT_EQ(tuned.penalty_time, 3s);

  overload->set_disabled(true);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_FALSE((*snapshot)->FindCluster("backend")->overload.enabled);
}

TEST(TranslateTest, BadOverloadSettingsAreRefusedByName) {
  auto error = [](void (*edit)(xds::Overload&)) {
    ResourceSet set = Base();
    edit(*set.clusters.Mutable(0).mutable_overload());
    auto snapshot = BuildSnapshot(set);
    return snapshot.ok() ? std::string("accepted") : std::string(snapshot.status().message());
  };
  EXPECT_THAT(error([](xds::Overload& o) { o.mutable_max_ejection_percent()->set_value(101); }),
              ::testing::HasSubstr("overload.max_ejection_percent: must be in [0, 100]"));
  EXPECT_THAT(error([](xds::Overload& o) { o.mutable_penalty()->set_value(0); }),
              ::testing::HasSubstr("overload.penalty: must be in [1, 1000]"));
  EXPECT_THAT(error([](xds::Overload& o) { o.mutable_penalty_time()->set_seconds(0); }),
              ::testing::HasSubstr("overload.penalty_time"));
  EXPECT_THAT(error([](xds::Overload& o) { o.mutable_max_ejection_time()->set_seconds(0); }),
              ::testing::HasSubstr("overload.max_ejection_time"));
  EXPECT_THAT(error([](xds::Overload& o) { o.mutable_ejection_time()->set_seconds(20); }),
              ::testing::HasSubstr("overload.ejection_time: must not exceed max_ejection_time"));
}

TEST(TranslateTest, RetryBudgetOverridesTheDefaultConcurrentRetryLimit) {
  auto max_retries = [](const ResourceSet& set) {
    auto snapshot = BuildSnapshot(set);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    return snapshot.ok() ? (*snapshot)->FindCluster("backend")->circuit_breakers.max_retries : 0;
  };
  ResourceSet set = Base();
  EXPECT_EQ(max_retries(set), resilience::kUnlimitedRetries);  // the budget governs
  xds::CircuitBreakers* cb = set.clusters.Mutable(0).mutable_circuit_breakers();
  cb->mutable_retry_budget()->set_disabled(true);
  EXPECT_EQ(max_retries(set), 3u);  // without a budget: design.md's 3 in flight
  cb->mutable_max_retries()->set_value(7);
  EXPECT_EQ(max_retries(set), 7u);  // set: honoured
  cb->mutable_retry_budget()->set_disabled(false);
  EXPECT_EQ(max_retries(set), 7u);  // set: honoured alongside the budget too
}

TEST(TranslateTest, EndpointTlsSettings) {
  ResourceSet set = Base();
  set.clusters.Mutable(2).mutable_tls()->set_enabled(true);
  set.clusters.Mutable(2).mutable_tls()->set_secret_name("mesh-cert");
  xds::ClusterLoadAssignment& assignment = set.endpoints.Mutable(0);
  assignment.mutable_endpoints(0)->set_identity("spiffe://cluster.local/ns/shop/sa/backend");
  xds::Endpoint* plain = assignment.add_endpoints();
  plain->set_address("127.0.0.1:9091");
  plain->set_plaintext(true);
  xds::Endpoint* same = assignment.add_endpoints();
  same->set_address("127.0.0.1:9092");
  same->set_identity("spiffe://cluster.local/ns/shop/sa/backend");
  xds::Endpoint* other = assignment.add_endpoints();
  other->set_address("127.0.0.1:9093");
  other->set_identity("spiffe://cluster.local/ns/shop/sa/other");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const cluster::ClusterConfig* cluster = (*snapshot)->FindCluster("eds-cluster");
  ASSERT_EQ(cluster->endpoints.size(), 4u);
  EXPECT_EQ(cluster->endpoints[0].tls,
            (cluster::EndpointTlsConfig{.identity = "spiffe://cluster.local/ns/shop/sa/backend"}));
  EXPECT_EQ(cluster->endpoints[1].tls, cluster::EndpointTlsConfig{.plaintext = true});
  EXPECT_TRUE(cluster::UsesTls(*cluster, cluster->endpoints[0].tls));
  EXPECT_FALSE(cluster::UsesTls(*cluster, cluster->endpoints[1].tls));
  // Endpoints naming the same id share one string; another id has its own.
  EXPECT_EQ(cluster->endpoints[2].tls.identity.str(), "spiffe://cluster.local/ns/shop/sa/backend");
  EXPECT_TRUE(cluster->endpoints[2].tls.identity.SharesWith(cluster->endpoints[0].tls.identity));
  EXPECT_EQ(cluster->endpoints[3].tls.identity.str(), "spiffe://cluster.local/ns/shop/sa/other");
  EXPECT_FALSE(cluster->endpoints[3].tls.identity.SharesWith(cluster->endpoints[0].tls.identity));
}

// Each endpoint's locality level is its locality seen from the sidecar's: the same zone, the same
// region, elsewhere (another region, another cluster, or none known).
TEST(TranslateTest, EndpointLocalityLevelsAndLocalityLb) {
  ResourceSet set = Base();
  xds::Cluster& eds = set.clusters.Mutable(2);
  eds.mutable_locality_lb()->set_enabled(true);
  eds.mutable_locality_lb()->mutable_overprovisioning_percent()->set_value(150);
  eds.mutable_locality_lb()->set_max_inflight_per_host(8);
  eds.mutable_locality_lb()->mutable_max_latency()->set_nanos(250000000);
  xds::ClusterLoadAssignment& assignment = set.endpoints.Mutable(0);
  auto add = [&](const char* address, const char* region, const char* zone, const char* node,
                 const char* cluster_name) {
    xds::Endpoint* e = assignment.add_endpoints();
    e->set_address(address);
    e->mutable_locality()->set_region(region);
    e->mutable_locality()->set_zone(zone);
    e->mutable_locality()->set_node(node);
    e->mutable_locality()->set_cluster(cluster_name);
  };
  add("127.0.0.1:9101", "eu", "eu-a", "n1", "");    // same zone, same node
  add("127.0.0.1:9102", "eu", "eu-a", "n2", "");    // same zone
  add("127.0.0.1:9103", "eu", "eu-b", "n3", "");    // same region
  add("127.0.0.1:9104", "us", "eu-a", "n4", "");    // another region with a like-named zone
  add("127.0.0.1:9105", "eu", "eu-a", "n5", "c2");  // another cluster
  add("127.0.0.1:9106", "", "eu-a", "n6", "");      // a zone without a region (EndpointSlice)
  xds::Locality own;
  own.set_region("eu");
  own.set_zone("eu-a");
  own.set_node("n1");
  own.set_cluster("c1");
  auto snapshot = BuildSnapshot(set, nullptr, &own);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const cluster::ClusterConfig* cluster = (*snapshot)->FindCluster("eds-cluster");
  ASSERT_EQ(cluster->endpoints.size(), 7u);
  std::vector<int> levels;
  for (const cluster::EndpointConfig& e : cluster->endpoints) levels.push_back(e.locality_level);
  // The first endpoint of the fixture has no locality.
  EXPECT_EQ(levels, (std::vector<int>{2, 0, 0, 1, 2, 2, 0}));
  const cluster::LocalityLbConfig& lb = cluster->lb->locality;
  EXPECT_TRUE(lb.enabled);
  EXPECT_EQ(lb.overprovisioning_percent, 150u);
  EXPECT_EQ(lb.max_inflight_per_host, 8u);
  EXPECT_EQ(lb.max_latency, 250ms);

  // Without the sidecar's locality every endpoint of its cluster is as near as any other; a
  // linked cluster's (one naming a cluster) is the farthest level (ADR 0106).
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  levels.clear();
  for (const cluster::EndpointConfig& e : (*snapshot)->FindCluster("eds-cluster")->endpoints) {
    levels.push_back(e.locality_level);
  }
  EXPECT_EQ(levels, (std::vector<int>{0, 0, 0, 0, 0, 2, 0}));
  // A sidecar that knows its zone but names no cluster: the same.
  own.clear_cluster();
  snapshot = BuildSnapshot(set, nullptr, &own);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  levels.clear();
  for (const cluster::EndpointConfig& e : (*snapshot)->FindCluster("eds-cluster")->endpoints) {
    levels.push_back(e.locality_level);
  }
  EXPECT_EQ(levels, (std::vector<int>{2, 0, 0, 1, 2, 2, 0}));
  own.set_cluster("c1");

  // internalTrafficPolicy: Local: only the sidecar's node's endpoints.
  eds.mutable_locality_lb()->set_node_local(true);
  snapshot = BuildSnapshot(set, nullptr, &own);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  cluster = (*snapshot)->FindCluster("eds-cluster");
  ASSERT_EQ(cluster->endpoints.size(), 1u);
  EXPECT_EQ(cluster->endpoints[0].address.ToString(), "127.0.0.1:9101");
}

TEST(TranslateTest, BadLocalityLbSettingsAreRefusedByName) {
  auto error = [](void (*edit)(xds::LocalityLb&)) {
    ResourceSet set = Base();
    edit(*set.clusters.Mutable(2).mutable_locality_lb());
    auto snapshot = BuildSnapshot(set);
    return snapshot.ok() ? std::string("accepted") : std::string(snapshot.status().message());
  };
  EXPECT_THAT(
      error([](xds::LocalityLb& l) { l.mutable_overprovisioning_percent()->set_value(99); }),
      ::testing::HasSubstr("locality_lb.overprovisioning_percent: must be in [100, 1000]"));
  EXPECT_THAT(error([](xds::LocalityLb& l) { l.mutable_max_latency()->set_seconds(-1); }),
              ::testing::HasSubstr("locality_lb.max_latency"));
}

// What the snapshot and its memo hold per service a sidecar called (docs/performance.md, "What
// that sidecar's memory is"): the service's two EDS clusters, of 10 and 5 endpoints carrying a
// Pod's two labels and an identity, as the control plane sends them. Heap bytes in use after the
// build, beside the resources (the xDS client's); printed for the record. 12.8 KB per service
// with each endpoint's labels copied and the endpoint vectors grown by doubling, 6.4 KB without
// (fastbuild); the labels alone are 4.1 KB of it. 4.4 KB with the endpoints 80 bytes each (120
// before) and one identity string per assignment instead of one per endpoint.
// A load assignment held as the bytes it came as (as the xDS client holds them) translates as
// its message does, and a build from the same held item takes the cluster from the previous one.
TEST(TranslateTest, LoadAssignmentHeldAsBytesTranslatesAndIsReused) {
  ResourceSet set = Base();
  ASSERT_EQ(set.endpoints.size(), 1u);
  const xds::ClusterLoadAssignment message = set.endpoints[0];
  ResourceSet held = set;
  held.endpoints.clear();
  held.endpoints.push_back(std::make_shared<const ResourceList<xds::ClusterLoadAssignment>::Held>(
      message, message.SerializeAsString()));
  ASSERT_EQ(held.endpoints.name(0), "eds-cluster");
  ASSERT_NE(held.endpoints.shared(0)->bytes(), nullptr);
  auto from_message = BuildSnapshot(set);
  auto from_bytes = BuildSnapshot(held);
  ASSERT_TRUE(from_message.ok()) << from_message.status();
  ASSERT_TRUE(from_bytes.ok()) << from_bytes.status();
  const cluster::ClusterConfig* expected = (*from_message)->FindCluster("eds-cluster");
  const cluster::ClusterConfig* got = (*from_bytes)->FindCluster("eds-cluster");
  ASSERT_NE(expected, nullptr);
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(got->endpoints.size(), expected->endpoints.size());
  ASSERT_FALSE(got->endpoints.empty());
  for (size_t i = 0; i < got->endpoints.size(); ++i) {
    EXPECT_EQ(got->endpoints[i].address.ToString(), expected->endpoints[i].address.ToString());
    EXPECT_EQ(got->endpoints[i].weight, expected->endpoints[i].weight);
  }
  auto again = BuildSnapshot(held, from_bytes->get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->FindCluster("eds-cluster"), got);
  EXPECT_EQ(TranslationReuseOf(**again).clusters, held.clusters.size());
}

// Clusters and ServiceRoutes held as their bytes (as the xDS client holds them) translate as
// their messages do; neither the build, a build taking them from the previous one, nor the config
// dump keeps a parsed message of them.
TEST(TranslateTest, ClustersAndServiceRoutesHeldAsBytesStayBytes) {
  ResourceSet set = Base();
  set.service_routes.push_back(Parse<xds::ServiceRoute>(
      "name: \"ratings.shop:80\"\nroute_config_name: local\nvirtual_host:\n"
      "  name: ratings\n  domains: [ratings]\n"
      "  routes:\n  - match: {prefix: /}\n    route: {cluster: backend}\n"));
  ResourceSet held = set;
  held.clusters.clear();
  for (const xds::Cluster& cluster : set.clusters) {
    held.clusters.push_back(std::make_shared<const ResourceList<xds::Cluster>::Held>(
        cluster, cluster.SerializeAsString()));
  }
  held.service_routes.clear();
  for (const xds::ServiceRoute& service_route : set.service_routes) {
    held.service_routes.push_back(std::make_shared<const ResourceList<xds::ServiceRoute>::Held>(
        service_route, service_route.SerializeAsString()));
  }
  auto from_message = BuildSnapshot(set);
  auto from_bytes = BuildSnapshot(held);
  ASSERT_TRUE(from_message.ok()) << from_message.status();
  ASSERT_TRUE(from_bytes.ok()) << from_bytes.status();
  EXPECT_EQ((*from_bytes)->clusters.size(), (*from_message)->clusters.size());
  EXPECT_EQ((*from_bytes)->FindCluster("eds-cluster")->endpoints.size(),
            (*from_message)->FindCluster("eds-cluster")->endpoints.size());
  std::vector<std::string> hosts;
  for (const auto* vhost : (*from_bytes)->FindRouteTable("local")->virtual_hosts()) {
    hosts.push_back(vhost->name);
  }
  EXPECT_THAT(hosts, testing::Contains("ratings"));
  auto again = BuildSnapshot(held, from_bytes->get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(TranslationReuseOf(**again).clusters, held.clusters.size());
  // The dump shows them as it shows messages, parsed for the dump only.
  ResourceSet versioned = held;
  versioned.version = "v1";
  set.version = "v1";
  EXPECT_EQ((*BuildSnapshot(versioned))->render_config_dump(),
            (*BuildSnapshot(set))->render_config_dump());
  for (size_t i = 0; i < held.clusters.size(); ++i) {
    EXPECT_FALSE(held.clusters.shared(i)->holds_message()) << held.clusters.name(i);
  }
  EXPECT_FALSE(held.service_routes.shared(0)->holds_message());
}

TEST(TranslateTest, HeldClustersCostLittleMemory) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  constexpr int kServices = 200;
  ResourceSet set;
  for (int s = 0; s < kServices; ++s) {
    const std::string service = absl::StrCat("svc-", s);
    for (int subset = 0; subset < 2; ++subset) {
      const std::string name =
          absl::StrCat("outbound|80|", subset == 0 ? "" : "v1", "|", service, ".bench.svc");
      xds::Cluster cluster;
      cluster.set_name(name);
      cluster.set_type(xds::Cluster::EDS);
      set.clusters.push_back(std::move(cluster));
      xds::ClusterLoadAssignment assignment;
      assignment.set_cluster_name(name);
      for (int e = 0; e < (subset == 0 ? 10 : 5); ++e) {
        xds::Endpoint* endpoint = assignment.add_endpoints();
        endpoint->set_address(absl::StrCat("10.", s / 200, ".", s % 200, ".", e + 1, ":8080"));
        (*endpoint->mutable_labels())["app"] = service;
        (*endpoint->mutable_labels())["version"] = "v1";
        endpoint->set_identity(absl::StrCat("spiffe://cluster.local/ns/bench/sa/", service));
      }
      set.endpoints.push_back(std::move(assignment));
    }
  }
  const size_t before = HeapInUse();
  auto snapshot = BuildSnapshot(set);
  const size_t held = HeapInUse() - before;
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ((*snapshot)->clusters.size(), 2u * kServices);
  for (const auto& [name, cluster] : (*snapshot)->clusters) {
    // As many endpoints as room for them.
    EXPECT_EQ(cluster->endpoints.capacity(), cluster->endpoints.size()) << name;
  }
  std::printf("%d services' clusters held: %zu bytes, %zu per service\n", kServices, held,
              held / kServices);
  EXPECT_LT(held / kServices, 5000u);
#endif
}
}  // namespace
}  // namespace meshlet::sidecar::config
