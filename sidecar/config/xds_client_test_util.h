#pragma once

// The XdsClient tests' fixture: a scripted ADS server (meshlet's gRPC server on 127.0.0.1) that
// records every request of every stream and sends what a test tells it on the latest stream, and
// XdsClientTest, which makes clients against it with a private cache directory and an apply
// callback that translates (BuildSnapshot) and records what it accepts. One loop thread: the
// test's.

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/config/lookup.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/xds_client.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config::xds_client_testing {

inline constexpr char kClusterType[] = "type.googleapis.com/meshlet.xds.Cluster";

inline google::protobuf::Any ClusterAny(const std::string& name, int timeout_seconds = 1) {
  xds::Cluster cluster;
  cluster.set_name(name);
  cluster.mutable_connect_timeout()->set_seconds(timeout_seconds);
  auto* endpoint = cluster.mutable_load_assignment()->add_endpoints();
  endpoint->set_address("127.0.0.1:8080");
  google::protobuf::Any any;
  any.PackFrom(cluster, "type.googleapis.com");
  return any;
}

inline constexpr char kServiceRouteType[] = "type.googleapis.com/meshlet.xds.ServiceRoute";

// A ServiceRoute of `name` joining the static route configuration "outbound" (LookupStatics) for
// host `domain`, to the static cluster "a"; `route_config` names another table (refused).
inline xds::Resource ServiceRouteResource(const std::string& name, const std::string& domain,
                                          std::vector<std::string> aliases,
                                          const std::string& route_config = "outbound") {
  xds::ServiceRoute route;
  route.set_name(name);
  route.set_route_config_name(route_config);
  xds::VirtualHost* vhost = route.mutable_virtual_host();
  vhost->set_name(name);
  vhost->add_domains(domain);
  xds::Route* r = vhost->add_routes();
  r->mutable_match()->set_prefix("/");
  r->mutable_route()->set_cluster("a");
  xds::Resource resource;
  resource.set_name(name);
  resource.mutable_resource()->PackFrom(route, "type.googleapis.com");
  for (std::string& alias : aliases) resource.add_aliases(std::move(alias));
  return resource;
}

// What ServiceRouteResource's routes join: the route configuration "outbound" and cluster "a".
inline ResourceSet LookupStatics() {
  xds::RouteConfiguration outbound;
  outbound.set_name("outbound");
  xds::Cluster cluster;
  ClusterAny("a").UnpackTo(&cluster);
  const std::vector<xds::RouteConfiguration> routes = {outbound};
  const std::vector<xds::Cluster> clusters = {cluster};
  ResourceSet set;
  set.routes.assign(routes.begin(), routes.end());
  set.clusters.assign(clusters.begin(), clusters.end());
  return set;
}

// A delta ServiceRoute response.
inline xds::DeltaDiscoveryResponse ServiceRouteResponse(const std::string& nonce,
                                                        std::vector<xds::Resource> resources,
                                                        std::vector<std::string> removed = {}) {
  xds::DeltaDiscoveryResponse response;
  response.set_type_url(kServiceRouteType);
  response.set_nonce(nonce);
  for (xds::Resource& r : resources) *response.add_resources() = std::move(r);
  for (std::string& name : removed) response.add_removed_resources(std::move(name));
  return response;
}

// Records every request of every stream; the test sends responses on the latest stream.
class ScriptedServer {
 public:
  explicit ScriptedServer(event::Loop& loop) : server_(loop) {
    for (const char* method :
         {"/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources",
          "/meshlet.xds.AggregatedDiscoveryService/DeltaAggregatedResources"}) {
      const bool delta = std::string(method).find("Delta") != std::string::npos;
      CHECK_OK(server_.RegisterMethod(method,
                                      [this, delta](std::shared_ptr<http::grpc::ServerCall> call) {
                                        calls.push_back(call);
                                        call->OnMessage([this, delta](std::string bytes) {
                                          if (delta) {
                                            xds::DeltaDiscoveryRequest request;
                                            request.ParseFromString(bytes);
                                            delta_requests.push_back(request);
                                          } else {
                                            xds::DiscoveryRequest request;
                                            request.ParseFromString(bytes);
                                            requests.push_back(request);
                                          }
                                        });
                                      }));
    }
    CHECK_OK(server_.Start(*net::Address::Parse("127.0.0.1:0")));
  }
  const net::Address& address() const { return server_.address(); }
  void Send(const google::protobuf::MessageLite& response) { calls.back()->SendProto(response); }

  std::vector<std::shared_ptr<http::grpc::ServerCall>> calls;
  std::vector<xds::DiscoveryRequest> requests;
  std::vector<xds::DeltaDiscoveryRequest> delta_requests;

 private:
  http::grpc::Server server_;
};

class XdsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Parameterized tests' names have a '/'.
    cache_dir_ = ::testing::TempDir() + "/xds_client_test_" +
                 absl::StrReplaceAll(
                     ::testing::UnitTest::GetInstance()->current_test_info()->name(), {{"/", "_"}});
    ASSERT_EQ(RemoveCacheDir(), 0);
    server_ = std::make_unique<ScriptedServer>(loop_);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    loop_.RunUntilIdle();
    // The cache directory goes too (TempDir is /tmp when the test runs outside bazel test).
    EXPECT_EQ(RemoveCacheDir(), 0);
  }
  int RemoveCacheDir() { return std::system(("rm -rf '" + cache_dir_ + "'").c_str()); }

  XdsClientOptions Options(bool delta = false) {
    XdsClientOptions options;
    options.server_addresses = {server_->address()};
    options.node.set_id("node-1");
    options.delta = delta;
    options.cache_dir = cache_dir_;
    options.backoff_base = std::chrono::milliseconds(10);
    options.backoff_cap = std::chrono::milliseconds(50);
    options.config_dump_json = [] { return std::string("{\"admin\":true}"); };
    options.config_dump_max_bytes = config_dump_max_bytes_;
    return options;
  }

  std::unique_ptr<XdsClient> MakeClient(ResourceSet static_resources = {}, bool delta = false) {
    return MakeClient(Options(delta), std::move(static_resources));
  }

  // A delta client holding LookupStatics whose lookup answers go to lookup_answers_, each noted
  // with how many configurations had been applied when it came.
  std::unique_ptr<XdsClient> MakeLookupClient() {
    XdsClientOptions options = Options(/*delta=*/true);
    options.on_lookup_answers = [this](std::vector<LookupAnswer> answers) {
      for (LookupAnswer& answer : answers) {
        lookup_answers_.push_back(std::move(answer));
        applied_before_answer_.push_back(applied_.size());
      }
    };
    return MakeClient(std::move(options), LookupStatics());
  }

  std::unique_ptr<XdsClient> MakeClient(XdsClientOptions options,
                                        ResourceSet static_resources = {}) {
    return std::make_unique<XdsClient>(
        loop_, options, std::move(static_resources),
        [this](const ResourceSet& set) -> absl::Status {
          absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(set);
          if (!snapshot.ok()) return snapshot.status();
          applied_.push_back(set);
          return absl::OkStatus();
        },
        stats_.shared_shard(), RealRandom::ThreadLocal());
  }

  bool RunUntil(std::function<bool()> done) {
    return loop_.RunUntil([&] { return done(); }, std::chrono::seconds(5));
  }

  xds::DiscoveryResponse ClusterResponse(const std::string& version, const std::string& nonce,
                                         std::vector<google::protobuf::Any> resources) {
    xds::DiscoveryResponse response;
    response.set_type_url(kClusterType);
    response.set_version_info(version);
    response.set_nonce(nonce);
    for (auto& r : resources) *response.add_resources() = r;
    return response;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  std::string cache_dir_;
  std::unique_ptr<ScriptedServer> server_;
  std::unique_ptr<XdsClient> client_;
  std::vector<ResourceSet> applied_;
  std::vector<LookupAnswer> lookup_answers_;
  std::vector<size_t> applied_before_answer_;
  size_t config_dump_max_bytes_ = 3 * 1024 * 1024;
};

}  // namespace meshlet::sidecar::config::xds_client_testing
