#include "sidecar/admin/admin_json.h"

#include <optional>
#include <string>
#include <vector>

#include "common/net/address.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::admin {
using cluster::Host;
using cluster::SharedClusterLimits;

namespace {

using ::testing::HasSubstr;

net::Address Parse(const std::string& text) {
  absl::StatusOr<net::Address> address = net::Address::Parse(text);
  EXPECT_TRUE(address.ok()) << address.status();
  return address.ok() ? *address : net::Address();
}

TEST(ClustersJsonTest, MergesTheWorkersReportsPerEndpoint) {
  HostStatus host{.address = "10.0.0.1:80", .weight = 2, .active_requests = 1};
  host.stats.rq_total = 3;
  HostStatus ejected = host;
  ejected.health_flags = Host::kOutlierEjected;
  ejected.active_requests = 2;
  ejected.stats.rq_total = 4;
  std::vector<std::optional<std::vector<ClusterStatus>>> workers = {
      std::vector<ClusterStatus>{{.name = "backend\"1", .hosts = {host}}},
      std::nullopt,  // did not answer
      std::vector<ClusterStatus>{{.name = "backend\"1", .hosts = {ejected}}},
  };
  SharedClusterLimits limits;
  const std::string json = ClustersJson(workers, limits, /*health_checks=*/nullptr);
  EXPECT_THAT(json, HasSubstr("{\"workers\":3,\"workers_answered\":2,\"clusters\":[{\"name\":"
                              "\"backend\\\"1\","));
  EXPECT_THAT(json, HasSubstr("\"health_check\":null"));
  EXPECT_THAT(json, HasSubstr("{\"address\":\"10.0.0.1:80\",\"weight\":2,\"healthy\":false,"
                              "\"health_flags\":[\"outlier_ejected\"],\"active_requests\":3,"
                              "\"rq_total\":7,"));
}

// A worker that never used a cluster reports its configured endpoints: the control plane's and
// the health checks' view, no requests; merged with a worker that built it, the counts are that
// worker's and "workers_built" says how many did.
TEST(ClustersJsonTest, ReportsClustersAWorkerNeverBuilt) {
  cluster::ClusterConfig config;
  config.name = "backend";
  config.tls.enabled = true;
  for (const char* address : {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"}) {
    config.endpoints.push_back({.address = Parse(address), .weight = 0});
  }
  config.endpoints[1].health = cluster::EndpointHealth::kDraining;
  config.endpoints[1].tls = {.plaintext = true};
  config.endpoints[0].tls.identity = "spiffe://td/ns/default/sa/backend";
  SharedClusterLimits limits;
  limits.host_health().Set("backend", Parse("10.0.0.1:80"), /*healthy=*/false);
  const ClusterStatus unbuilt = UnbuiltClusterStatus(config, limits.host_health());
  EXPECT_FALSE(unbuilt.built);
  ASSERT_EQ(unbuilt.hosts.size(), 2u);  // the first of each address, as a built cluster keeps
  EXPECT_EQ(unbuilt.hosts[0].address, "10.0.0.1:80");
  EXPECT_EQ(unbuilt.hosts[0].weight, 1u);
  EXPECT_EQ(unbuilt.hosts[0].health_flags, Host::kFailedActiveHealthCheck);
  EXPECT_TRUE(unbuilt.hosts[0].tls);
  EXPECT_EQ(unbuilt.hosts[0].identity, "spiffe://td/ns/default/sa/backend");
  EXPECT_EQ(unbuilt.hosts[1].health_flags, Host::kDraining);
  EXPECT_FALSE(unbuilt.hosts[1].tls);

  HostStatus used{.address = "10.0.0.2:80", .health_flags = Host::kDraining};
  used.stats.rq_total = 5;
  std::vector<std::optional<std::vector<ClusterStatus>>> workers = {
      std::vector<ClusterStatus>{unbuilt},
      std::vector<ClusterStatus>{{.name = "backend", .hosts = {used}, .built = true}},
  };
  const std::string json = ClustersJson(workers, limits, /*health_checks=*/nullptr);
  EXPECT_THAT(json, HasSubstr("{\"name\":\"backend\",\"workers_built\":1,"));
  EXPECT_THAT(json, HasSubstr("{\"address\":\"10.0.0.2:80\",\"weight\":1,\"healthy\":false,"
                              "\"health_flags\":[\"eds_draining\"],\"active_requests\":0,"
                              "\"rq_total\":5,"));
}

TEST(ListenersJsonTest, ListsTheSnapshotsListenersWithWhatTheWorkersBound) {
  config::Snapshot snapshot;
  snapshot.version = "v7";
  config::ListenerConfig inbound;
  inbound.name = "inbound";
  inbound.address = Parse("0.0.0.0:0");
  inbound.direction = config::TrafficDirection::kInbound;
  inbound.protocol = config::ListenerProtocol::kAuto;
  inbound.tcp_cluster = "app";
  snapshot.listeners.push_back(inbound);
  config::ListenerConfig unbound = inbound;
  unbound.name = "unbound";
  snapshot.listeners.push_back(unbound);
  std::vector<std::vector<ListenerStatus>> workers = {
      {{.name = "inbound", .address = Parse("127.0.0.1:15006"), .accepting = false}},
      {{.name = "inbound", .address = Parse("127.0.0.1:15006"), .accepting = true}},
  };
  const std::string json = ListenersJson(/*draining=*/true, &snapshot, workers);
  EXPECT_THAT(json, HasSubstr("{\"draining\":true,\"version\":\"v7\",\"listeners\":[{\"name\":"
                              "\"inbound\",\"address\":\"0.0.0.0:0\",\"direction\":\"INBOUND\","
                              "\"protocol\":\"AUTO\",\"route_config_name\":\"\",\"tcp_cluster\":"
                              "\"app\",\"bound_addresses\":[\"127.0.0.1:15006\"],\"accepting\":"
                              "true}"));
  EXPECT_THAT(json, HasSubstr("{\"name\":\"unbound\",\"address\":\"0.0.0.0:0\","));
  EXPECT_THAT(json, HasSubstr("\"bound_addresses\":[],\"accepting\":false}]}"));
  EXPECT_EQ(ListenersJson(false, nullptr, {}),
            "{\"draining\":false,\"version\":\"\",\"listeners\":[]}");
}

TEST(CertsJsonTest, NoCertificate) {
  EXPECT_EQ(CertsJson(nullptr, "", nullptr,
                      [](absl::string_view, const std::string&) { return uint64_t{0}; }),
            "{\"workload_certificate\":null}");
}

}  // namespace
}  // namespace meshlet::sidecar::admin
