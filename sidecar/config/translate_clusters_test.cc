// Clusters and endpoints: outlier detection, overload handling and each endpoint's TLS settings.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using namespace std::chrono_literals;

TEST(TranslateTest, OutlierPanicThresholdIsTheClusterPanicThreshold) {
  ResourceSet set = Base();
  set.clusters.Mutable(0).mutable_outlier_detection()->set_panic_threshold_percent(30);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const cluster::ClusterConfig& cluster = *(*snapshot)->clusters.begin()->second;
  EXPECT_EQ(cluster.outlier_detection->panic_threshold_percent, 30u);
  EXPECT_EQ(cluster.lb.panic_threshold_percent, 30u);
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
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const cluster::ClusterConfig* cluster = (*snapshot)->FindCluster("eds-cluster");
  ASSERT_EQ(cluster->endpoints.size(), 2u);
  EXPECT_EQ(cluster->endpoints[0].tls,
            (cluster::EndpointTlsConfig{.identity = "spiffe://cluster.local/ns/shop/sa/backend"}));
  EXPECT_EQ(cluster->endpoints[1].tls, cluster::EndpointTlsConfig{.plaintext = true});
  EXPECT_TRUE(cluster::UsesTls(*cluster, cluster->endpoints[0].tls));
  EXPECT_FALSE(cluster::UsesTls(*cluster, cluster->endpoints[1].tls));
}
}  // namespace
}  // namespace meshlet::sidecar::config
