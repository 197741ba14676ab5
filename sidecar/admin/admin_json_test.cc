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
