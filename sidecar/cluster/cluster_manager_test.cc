#include "sidecar/cluster/cluster_manager.h"

#include <memory>

#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

std::shared_ptr<const ClusterConfig> Config(const std::string& name,
                                            std::vector<std::string> endpoints,
                                            uint32_t max_requests = 1024) {
  auto config = std::make_shared<ClusterConfig>();
  config->name = name;
  config->lb_policy = LbPolicy::kRoundRobin;
  config->circuit_breakers.max_requests = max_requests;
  for (const std::string& text : endpoints) {
    EndpointConfig endpoint;
    endpoint.address = *net::Address::Parse(text);
    config->endpoints.push_back(endpoint);
  }
  return config;
}

class ClusterManagerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    manager_.reset();
    loop_.RunUntilIdle();
  }

  FakeClock clock_;
  FakeRandom random_;
  event::Loop loop_;
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_ = registry_.CreateShard();
  SharedClusterLimits limits_;
  std::unique_ptr<WorkerClusterManager> manager_ =
      std::make_unique<WorkerClusterManager>(loop_, random_, clock_, *shard_, limits_);
};

TEST_F(ClusterManagerTest, BuildsClustersWithStats) {
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80", "10.0.0.2:80"});
  clusters["b"] = Config("b", {"10.0.0.3:80"});
  manager_->Update(clusters);
  EXPECT_EQ(manager_->size(), 2u);
  Cluster* a = manager_->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->host_set().size(), 2u);
  EXPECT_EQ(manager_->Find("missing"), nullptr);
  EXPECT_EQ(manager_->Get("missing").cluster, nullptr);

  ClusterRef ref = manager_->Get("b");
  ASSERT_NE(ref.cluster, nullptr);
  ASSERT_NE(ref.stats, nullptr);
  ref.stats->RecordStatus(503);
  ref.stats->rq_timeout.Inc();
  StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* series =
      stats.Find("meshlet_upstream_rq_total", {{"cluster", "b"}, {"code_class", "5xx"}});
  ASSERT_NE(series, nullptr);
  EXPECT_EQ(series->counter, 1u);
  series = stats.Find("meshlet_upstream_rq_timeout_total", {{"cluster", "b"}});
  ASSERT_NE(series, nullptr);
  EXPECT_EQ(series->counter, 1u);
}

TEST_F(ClusterManagerTest, UpdateKeepsClustersAndTheirHosts) {
  ClusterSet first;
  first["a"] = Config("a", {"10.0.0.1:80"});
  manager_->Update(first);
  Cluster* a = manager_->Find("a");
  Host* host = a->host_set().hosts()[0].get();

  // Same config object: nothing to do. New object with another endpoint: same Cluster and Host.
  manager_->Update(first);
  EXPECT_EQ(manager_->Find("a"), a);
  ClusterSet second;
  second["a"] = Config("a", {"10.0.0.1:80", "10.0.0.9:80"});
  manager_->Update(second);
  EXPECT_EQ(manager_->Find("a"), a);
  EXPECT_EQ(a->host_set().size(), 2u);
  EXPECT_EQ(a->host_set().Find(*net::Address::Parse("10.0.0.1:80")), host);
}

TEST_F(ClusterManagerTest, RemovedClusterLivesWhileARequestHoldsIt) {
  ClusterSet first;
  first["a"] = Config("a", {"10.0.0.1:80"});
  manager_->Update(first);
  ClusterRef held = manager_->Get("a");
  ASSERT_NE(held.cluster, nullptr);

  manager_->Update(ClusterSet());
  loop_.RunUntilIdle();
  EXPECT_EQ(manager_->Find("a"), nullptr);
  EXPECT_EQ(manager_->size(), 0u);
  // Still usable by the request that holds it; its hosts are gone (pools drain).
  EXPECT_EQ(held.cluster->name(), "a");
  EXPECT_EQ(held.cluster->host_set().size(), 0u);
  EXPECT_EQ(held.cluster->ChooseHost().host, nullptr);
  held.stats->rq_reset.Inc();
  held = {};
  loop_.RunUntilIdle();
}

TEST_F(ClusterManagerTest, LimitsAreSharedAcrossWorkers) {
  auto shard2 = registry_.CreateShard();
  WorkerClusterManager other(loop_, random_, clock_, *shard2, limits_);
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/2);
  manager_->Update(clusters);
  other.Update(clusters);
  resilience::CircuitBreakerThresholds& t1 = manager_->Find("a")->thresholds();
  resilience::CircuitBreakerThresholds& t2 = other.Find("a")->thresholds();
  EXPECT_EQ(&t1, &t2);
  EXPECT_EQ(t1.Limit(resilience::ResourceKind::kRequest), 2u);

  ClusterSet raised;
  raised["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/5);
  manager_->Update(raised);
  EXPECT_EQ(t2.Limit(resilience::ResourceKind::kRequest), 5u);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
