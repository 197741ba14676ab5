#include "sidecar/config/dns_clusters.h"

#include <string>
#include <vector>

#include "common/event/loop.h"
#include "common/net/fake_dns_server.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::config {
namespace {

using net::FakeDnsServer;

class DnsClustersTest : public ::testing::Test {
 protected:
  DnsClustersTest() {
    net::DnsLookupOptions options;
    options.server = server_.address();
    options.timeout = std::chrono::seconds(1);
    options.attempts = 1;
    dns_ = std::make_unique<DnsClusters>(loop_, stats_.shared_shard(), options,
                                         [this] { ++changes_; });
  }

  static xds::Cluster DnsCluster(const std::string& name, const std::string& host, uint32_t port,
                                 int min_refresh_ms = 100, int max_refresh_ms = 60000) {
    xds::Cluster c;
    c.set_name(name);
    c.set_type(xds::Cluster::DNS);
    c.mutable_dns()->set_hostname(host);
    c.mutable_dns()->set_port(port);
    c.mutable_dns()->mutable_min_refresh()->set_nanos(min_refresh_ms % 1000 * 1000000);
    c.mutable_dns()->mutable_min_refresh()->set_seconds(min_refresh_ms / 1000);
    c.mutable_dns()->mutable_max_refresh()->set_seconds(max_refresh_ms / 1000);
    c.mutable_dns()->mutable_failure_refresh()->set_nanos(200000000);
    return c;
  }

  // Runs the loop until `changes_` reaches `n` (or 10 s pass).
  bool WaitForChanges(int n) {
    return loop_.RunUntil([&] { return changes_ >= n; }, std::chrono::seconds(10));
  }

  uint64_t Lookups(const std::string& cluster, const std::string& result) {
    return stats_.CounterValue(*stats_.RegisterCounter("meshlet_dns_lookups_total", "x",
                                                       {{"cluster", cluster}, {"result", result}}));
  }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeDnsServer server_;
  std::unique_ptr<DnsClusters> dns_;
  int changes_ = 0;
};

TEST_F(DnsClustersTest, ResolvedIntoALoadAssignmentInNameOrder) {
  server_.Set("api.partner.test",
              {.addresses = {"198.18.0.9", "198.18.0.8", "fd00::9"}, .ttl = 30});
  ResourceList<xds::Cluster> clusters;
  xds::Cluster eds;
  eds.set_name("outbound|80||a.default");
  eds.set_type(xds::Cluster::EDS);
  clusters.push_back(eds);
  clusters.push_back(DnsCluster("outbound|443||api.partner.test", "api.partner.test", 443));
  EXPECT_TRUE(DnsClusters::Any(clusters));
  dns_->Follow(clusters);
  EXPECT_EQ(changes_, 0);  // never from inside Follow
  ASSERT_TRUE(WaitForChanges(1));
  EXPECT_EQ(dns_->Addresses("outbound|443||api.partner.test"),
            (std::vector<std::string>{"198.18.0.8:443", "198.18.0.9:443", "[fd00::9]:443"}));
  EXPECT_EQ(Lookups("outbound|443||api.partner.test", "success"), 1u);

  ResourceSet set;
  for (const char* name : {"a.default", "z.default"}) {
    xds::ClusterLoadAssignment a;
    a.set_cluster_name(name);
    set.endpoints.push_back(a);
  }
  dns_->AddEndpoints(set);
  ASSERT_EQ(set.endpoints.size(), 3u);
  EXPECT_EQ(set.endpoints.name(1), "outbound|443||api.partner.test");
  ASSERT_EQ(set.endpoints[1].endpoints_size(), 3);
  EXPECT_EQ(set.endpoints[1].endpoints(2).address(), "[fd00::9]:443");
  // The same shared message until the addresses change: a rebuild reuses its translation.
  ResourceSet again;
  dns_->AddEndpoints(again);
  EXPECT_EQ(again.endpoints.shared(0), set.endpoints.shared(1));

  // Followed again unchanged: no new lookup.
  const int asked = server_.queries_for("api.partner.test");
  dns_->Follow(clusters);
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(200));
  EXPECT_EQ(server_.queries_for("api.partner.test"), asked);
  EXPECT_EQ(changes_, 1);
}

TEST_F(DnsClustersTest, ResolvedAgainWhenTheTtlRunsOut) {
  server_.Set("api.partner.test", {.addresses = {"198.18.0.8"}, .ttl = 1});
  ResourceList<xds::Cluster> clusters;
  clusters.push_back(DnsCluster("ext", "api.partner.test", 80));
  dns_->Follow(clusters);
  ASSERT_TRUE(WaitForChanges(1));
  const MonotonicTime first = std::chrono::steady_clock::now();
  server_.Set("api.partner.test", {.addresses = {"198.18.0.7"}, .ttl = 1});
  ASSERT_TRUE(WaitForChanges(2));
  const Duration took = std::chrono::steady_clock::now() - first;
  EXPECT_EQ(dns_->Addresses("ext"), std::vector<std::string>{"198.18.0.7:80"});
  // After the TTL (1 s), not at min_refresh (100 ms).
  EXPECT_GE(took, std::chrono::milliseconds(900));
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(DnsClustersTest, AFailedLookupKeepsTheLastAddressesAndIsTriedAgain) {
  server_.Set("api.partner.test", {.addresses = {"198.18.0.8"}, .ttl = 0});  // min_refresh then
  ResourceList<xds::Cluster> clusters;
  clusters.push_back(DnsCluster("ext", "api.partner.test", 80));
  dns_->Follow(clusters);
  ASSERT_TRUE(WaitForChanges(1));
  server_.Remove("api.partner.test");
  ASSERT_TRUE(loop_.RunUntil([&] { return Lookups("ext", "no_such_name") >= 2; },
                             std::chrono::seconds(10)));
  EXPECT_EQ(dns_->Addresses("ext"), std::vector<std::string>{"198.18.0.8:80"});
  EXPECT_EQ(changes_, 1);
  server_.Set("api.partner.test", {.addresses = {"198.18.0.6"}, .ttl = 0});
  ASSERT_TRUE(WaitForChanges(2));  // tried again after failure_refresh (200 ms)
  EXPECT_EQ(dns_->Addresses("ext"), std::vector<std::string>{"198.18.0.6:80"});
}

TEST_F(DnsClustersTest, ClustersGoneOrRenamedAreForgotten) {
  server_.Set("a.partner.test", {.addresses = {"198.18.0.1"}, .ttl = 30});
  server_.Set("b.partner.test", {.addresses = {"198.18.0.2"}, .ttl = 30});
  ResourceList<xds::Cluster> clusters;
  clusters.push_back(DnsCluster("ext", "a.partner.test", 80));
  dns_->Follow(clusters);
  ASSERT_TRUE(WaitForChanges(1));
  ResourceList<xds::Cluster> renamed;
  renamed.push_back(DnsCluster("ext", "b.partner.test", 80));
  dns_->Follow(renamed);
  EXPECT_TRUE(dns_->Addresses("ext").empty());  // a new name starts unresolved
  ASSERT_TRUE(WaitForChanges(2));
  EXPECT_EQ(dns_->Addresses("ext"), std::vector<std::string>{"198.18.0.2:80"});
  dns_->Follow(ResourceList<xds::Cluster>());
  EXPECT_EQ(dns_->size(), 0u);
  ResourceSet set;
  dns_->AddEndpoints(set);
  EXPECT_TRUE(set.endpoints.empty());
}

}  // namespace
}  // namespace meshlet::sidecar::config
