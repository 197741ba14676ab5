// XdsClient against a scripted ADS server (meshlet's gRPC server on 127.0.0.1): ACK and NACK
// with versions and nonces, whole-configuration apply (static + dynamic), name collisions with
// static resources, persistence and start from the saved configuration, reconnects announcing
// what the client holds, the delta stream, and that only new or changed resources are parsed.

#include "sidecar/config/xds_client.h"

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "xds/discovery.pb.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

using std::chrono::milliseconds;

constexpr char kClusterType[] = "type.googleapis.com/meshlet.xds.Cluster";

google::protobuf::Any ClusterAny(const std::string& name, int timeout_seconds = 1) {
  xds::Cluster cluster;
  cluster.set_name(name);
  cluster.mutable_connect_timeout()->set_seconds(timeout_seconds);
  auto* endpoint = cluster.mutable_load_assignment()->add_endpoints();
  endpoint->set_address("127.0.0.1:8080");
  google::protobuf::Any any;
  any.PackFrom(cluster, "type.googleapis.com");
  return any;
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
    cache_dir_ = ::testing::TempDir() + "/xds_client_test_" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::string cleanup = "rm -rf '" + cache_dir_ + "'";
    ASSERT_EQ(std::system(cleanup.c_str()), 0);
    server_ = std::make_unique<ScriptedServer>(loop_);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    loop_.RunUntilIdle();
  }

  std::unique_ptr<XdsClient> MakeClient(ResourceSet static_resources = {}, bool delta = false) {
    XdsClientOptions options;
    options.server_address = server_->address();
    options.node.set_id("node-1");
    options.delta = delta;
    options.cache_dir = cache_dir_;
    options.backoff_base = milliseconds(10);
    options.backoff_cap = milliseconds(50);
    options.config_dump_json = [] { return std::string("{\"admin\":true}"); };
    options.config_dump_max_bytes = config_dump_max_bytes_;
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
  size_t config_dump_max_bytes_ = 3 * 1024 * 1024;
};

TEST_F(XdsClientTest, SubscribesToEveryTypeWithItsNodeThenAcksAndNacks) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  EXPECT_EQ(server_->requests[0].node().id(), "node-1");
  EXPECT_FALSE(server_->requests[1].has_node());
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    EXPECT_EQ(server_->requests[i].type_url(), kXdsTypeUrls[i]);
    EXPECT_TRUE(server_->requests[i].response_nonce().empty());
    EXPECT_TRUE(server_->requests[i].resource_names().empty());  // wildcard
  }

  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 1; }));
  const xds::DiscoveryRequest& ack = server_->requests.back();
  EXPECT_EQ(ack.response_nonce(), "n1");
  EXPECT_EQ(ack.version_info(), "v1");
  EXPECT_FALSE(ack.has_error_detail());
  ASSERT_EQ(applied_.size(), 1u);
  ASSERT_EQ(applied_[0].clusters.size(), 1u);
  EXPECT_EQ(client_->version(1), "v1");
  EXPECT_TRUE(client_->connected());

  // connect_timeout 0 does not validate: NACK, keep v1.
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("a", 0)}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 2; }));
  const xds::DiscoveryRequest& nack = server_->requests.back();
  EXPECT_EQ(nack.response_nonce(), "n2");
  EXPECT_EQ(nack.version_info(), "v1");
  ASSERT_TRUE(nack.has_error_detail());
  EXPECT_EQ(nack.error_detail().code(), 3);
  EXPECT_NE(nack.error_detail().message().find("cluster \"a\": connect_timeout"), std::string::npos)
      << nack.error_detail().message();
  EXPECT_EQ(applied_.size(), 1u);
  EXPECT_EQ(client_->version(1), "v1");
  EXPECT_NE(client_->last_error(1).find("connect_timeout"), std::string::npos);
  EXPECT_NE(client_->StatusJson().find("\"updates_refused\":1"), std::string::npos);

  // A resource of the wrong type in the response is refused too.
  xds::DiscoveryResponse wrong = ClusterResponse("v3", "n3", {});
  xds::Listener listener;
  listener.set_name("l");
  wrong.add_resources()->PackFrom(listener, "type.googleapis.com");
  server_->Send(wrong);
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 3; }));
  EXPECT_NE(server_->requests.back().error_detail().message().find("type_url"), std::string::npos);
}

TEST_F(XdsClientTest, DynamicNamesMustNotCollideWithStaticOnes) {
  ResourceSet static_resources;
  xds::Cluster cluster;
  cluster.set_name("a");
  cluster.mutable_connect_timeout()->set_seconds(1);
  cluster.mutable_load_assignment()->add_endpoints()->set_address("127.0.0.1:9");
  static_resources.clusters.push_back(cluster);
  client_ = MakeClient(static_resources);
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 1; }));
  EXPECT_NE(server_->requests.back().error_detail().message().find("static_resources"),
            std::string::npos);
  // A different name merges with the static one.
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("b")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 2; }));
  EXPECT_FALSE(server_->requests.back().has_error_detail());
  ASSERT_EQ(applied_.size(), 1u);
  EXPECT_EQ(applied_[0].clusters.size(), 2u);
}

TEST_F(XdsClientTest, SavesTheLastGoodConfigurationAndStartsFromIt) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return applied_.size() == 1; }));
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("a", 0)}));  // refused: not saved
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 2; }));
  client_.reset();

  struct stat st {};
  ASSERT_EQ(::stat((cache_dir_ + "/xds-cache.pb").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(::stat((cache_dir_ + "/xds-cache.pb.tmp").c_str(), &st), 0);

  applied_.clear();
  client_ = MakeClient();
  ASSERT_TRUE(client_->LoadCache().ok());
  ASSERT_EQ(applied_.size(), 1u);
  ASSERT_EQ(applied_[0].clusters.size(), 1u);
  EXPECT_EQ(applied_[0].clusters[0].connect_timeout().seconds(), 1);
  EXPECT_TRUE(client_->has_dynamic_config());
  // A saved configuration counts as complete: /ready need not wait for the control plane.
  EXPECT_TRUE(client_->has_complete_config());
  // It announces what it runs when it connects.
  const size_t before = server_->requests.size();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == before + kXdsTypeCount; }));
  EXPECT_EQ(server_->requests[before + 1].type_url(), kClusterType);
  EXPECT_EQ(server_->requests[before + 1].version_info(), "v1");
}

// The first complete configuration: listeners applied (the server sends them last), or every
// type answered once. One type alone is not enough, nor is a refused listener update.
TEST_F(XdsClientTest, CompleteOnceListenersOrEveryTypeWereApplied) {
  client_ = MakeClient();
  EXPECT_FALSE(client_->has_complete_config());
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 1; }));
  EXPECT_FALSE(client_->has_complete_config());

  auto respond = [&](const char* type_url, const std::string& nonce,
                     const google::protobuf::Message* resource) {
    xds::DiscoveryResponse response;
    response.set_type_url(type_url);
    response.set_version_info(nonce);
    response.set_nonce(nonce);
    if (resource != nullptr) response.add_resources()->PackFrom(*resource, "type.googleapis.com");
    const size_t before = server_->requests.size();
    server_->Send(response);
    return RunUntil([&] { return server_->requests.size() == before + 1; });
  };
  // A listener naming routes that do not exist: refused, still not complete.
  xds::Listener listener;
  listener.set_name("l");
  listener.set_address("127.0.0.1:0");
  listener.set_protocol(xds::PROTOCOL_HTTP);
  listener.set_route_config_name("missing");
  ASSERT_TRUE(respond(kXdsTypeUrls[4], "n2", &listener));
  EXPECT_TRUE(server_->requests.back().has_error_detail());
  EXPECT_FALSE(client_->has_complete_config());
  // The other types, empty: every type answered once is complete too.
  ASSERT_TRUE(respond(kXdsTypeUrls[0], "n3", nullptr));
  ASSERT_TRUE(respond(kXdsTypeUrls[2], "n4", nullptr));
  EXPECT_FALSE(client_->has_complete_config());
  ASSERT_TRUE(respond(kXdsTypeUrls[3], "n5", nullptr));
  EXPECT_FALSE(client_->has_complete_config());  // listeners still refused
  ASSERT_TRUE(respond(kXdsTypeUrls[4], "n6", nullptr));
  EXPECT_TRUE(client_->has_complete_config());
}

// The control plane asks for the sidecar's view with a response of the debug type; the answer
// carries what runs, per type, and changes nothing (no ACK, no NACK, no version).
TEST_F(XdsClientTest, AnswersConfigDumpRequestsOnTheStream) {
  for (const size_t limit : {size_t{3 * 1024 * 1024}, size_t{64}}) {
    config_dump_max_bytes_ = limit;
    client_ = MakeClient();
    client_->Start();
    const size_t first = server_->requests.size();
    ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == first + kXdsTypeCount; }));
    server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
    ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == first + kXdsTypeCount + 1; }));
    const size_t applied = applied_.size();

    xds::DiscoveryResponse ask;
    ask.set_type_url(kConfigDumpTypeUrl);
    ask.set_nonce("dump-1");
    server_->Send(ask);
    ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == first + kXdsTypeCount + 2; }));
    const xds::DiscoveryRequest& answer = server_->requests.back();
    EXPECT_EQ(answer.type_url(), kConfigDumpTypeUrl);
    EXPECT_EQ(answer.response_nonce(), "dump-1");
    EXPECT_FALSE(answer.has_error_detail());
    ASSERT_EQ(answer.config_dump().types_size(), static_cast<int>(kXdsTypeCount));
    const auto& clusters = answer.config_dump().types(1);
    EXPECT_EQ(clusters.type_url(), kClusterType);
    EXPECT_EQ(clusters.version(), "v1");
    EXPECT_EQ(clusters.nonce(), "n1");
    ASSERT_EQ(clusters.resources_size(), 1);
    EXPECT_EQ(clusters.resources(0).name(), "a");
    EXPECT_EQ(clusters.resources(0).version().size(), 16u);
    const bool small = limit < 1024;
    // Over the limit: names and versions only.
    EXPECT_EQ(answer.config_dump().contents_omitted(), small);
    EXPECT_EQ(clusters.resources(0).has_resource(), !small);
    EXPECT_EQ(answer.config_dump().config_dump_json(), small ? "" : "{\"admin\":true}");
    EXPECT_FALSE(answer.config_dump().captured_at().empty());
    // Nothing applied, nothing changed.
    EXPECT_EQ(applied_.size(), applied);
    EXPECT_EQ(client_->version(1), "v1");
    client_.reset();
  }
}

TEST_F(XdsClientTest, WithoutASavedConfigurationLoadCacheSaysNotFound) {
  client_ = MakeClient();
  EXPECT_TRUE(absl::IsNotFound(client_->LoadCache()));
  EXPECT_FALSE(client_->has_dynamic_config());
}

TEST_F(XdsClientTest, ReconnectsAfterTheStreamEnds) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 1; }));  // ACK
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "going away");
  RunUntil([&] {
    return server_->calls.size() == 2 && server_->requests.size() == 2 * kXdsTypeCount + 1;
  });
  ASSERT_EQ(server_->calls.size(), 2u) << client_->StatusJson();
  ASSERT_EQ(server_->requests.size(), 2 * kXdsTypeCount + 1);
  EXPECT_EQ(client_->streams_started(), 2u);
  EXPECT_EQ(server_->requests[kXdsTypeCount + 1].node().id(), "node-1");
  EXPECT_EQ(server_->requests[kXdsTypeCount + 2].version_info(), "v1");
  EXPECT_NE(client_->StatusJson().find("going away"), std::string::npos);
}

TEST_F(XdsClientTest, DeltaAppliesUpdatesAndRemovals) {
  client_ = MakeClient({}, /*delta=*/true);
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount; }));
  EXPECT_EQ(server_->delta_requests[0].node().id(), "node-1");
  xds::DeltaDiscoveryResponse add;
  add.set_type_url(kClusterType);
  add.set_nonce("d1");
  for (const char* name : {"a", "b"}) {
    xds::Resource* r = add.add_resources();
    r->set_name(name);
    r->set_version(std::string("ver-") + name);
    *r->mutable_resource() = ClusterAny(name);
  }
  server_->Send(add);
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount + 1; }));
  EXPECT_EQ(server_->delta_requests.back().response_nonce(), "d1");
  EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  ASSERT_EQ(applied_.back().clusters.size(), 2u);

  xds::DeltaDiscoveryResponse remove;
  remove.set_type_url(kClusterType);
  remove.set_nonce("d2");
  remove.add_removed_resources("a");
  server_->Send(remove);
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount + 2; }));
  ASSERT_EQ(applied_.back().clusters.size(), 1u);
  EXPECT_EQ(applied_.back().clusters[0].name(), "b");

  // A name that does not match the resource is refused.
  xds::DeltaDiscoveryResponse mismatch;
  mismatch.set_type_url(kClusterType);
  mismatch.set_nonce("d3");
  xds::Resource* r = mismatch.add_resources();
  r->set_name("c");
  *r->mutable_resource() = ClusterAny("d");
  server_->Send(mismatch);
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount + 3; }));
  EXPECT_TRUE(server_->delta_requests.back().has_error_detail());

  // Reconnect: it announces the versions it holds.
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "bye");
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == 2 * kXdsTypeCount + 3; }));
  const xds::DeltaDiscoveryRequest& resubscribe = server_->delta_requests[kXdsTypeCount + 4];
  EXPECT_EQ(resubscribe.type_url(), kClusterType);
  ASSERT_EQ(resubscribe.initial_resource_versions().size(), 1u);
  EXPECT_EQ(resubscribe.initial_resource_versions().at("b"), "ver-b");
}

TEST_F(XdsClientTest, ParsesOnlyNewOrChangedResourcesAndNackedOnesLeaveTheCacheConsistent) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  size_t answers = kXdsTypeCount;
  auto send = [&](const xds::DiscoveryResponse& response) {
    server_->Send(response);
    ++answers;
    return RunUntil([&] { return server_->requests.size() == answers; });
  };
  ASSERT_TRUE(send(ClusterResponse("v1", "n1", {ClusterAny("a"), ClusterAny("b")})));
  EXPECT_FALSE(server_->requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 2u);

  // Only "b" changed: "a" keeps the message parsed before.
  ASSERT_TRUE(send(ClusterResponse("v2", "n2", {ClusterAny("a"), ClusterAny("b", 2)})));
  EXPECT_FALSE(server_->requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 3u);
  ASSERT_EQ(applied_.size(), 2u);
  ASSERT_EQ(applied_.back().clusters.size(), 2u);
  EXPECT_EQ(applied_.back().clusters[0].name(), "a");
  EXPECT_EQ(applied_.back().clusters[1].name(), "b");
  EXPECT_EQ(applied_.back().clusters[1].connect_timeout().seconds(), 2);
  // The unchanged "a" reaches the apply callback as the very message it got before, which is
  // what lets BuildSnapshot reuse its translation.
  EXPECT_EQ(applied_.back().clusters.shared(0), applied_[0].clusters.shared(0));
  EXPECT_NE(applied_.back().clusters.shared(1), applied_[0].clusters.shared(1));

  // An invalid "b" (connect_timeout 0) is parsed, the whole configuration refused: NACK, v2 kept.
  ASSERT_TRUE(send(ClusterResponse("v3", "n3", {ClusterAny("a"), ClusterAny("b", 0)})));
  ASSERT_TRUE(server_->requests.back().has_error_detail());
  EXPECT_EQ(server_->requests.back().version_info(), "v2");
  EXPECT_EQ(client_->resources_parsed(), 4u);
  EXPECT_EQ(applied_.size(), 2u);
  // What runs is still v2, whole.
  ResourceSet running = client_->CurrentResources();
  ASSERT_EQ(running.clusters.size(), 2u);
  EXPECT_EQ(running.clusters[1].connect_timeout().seconds(), 2);
  EXPECT_EQ(running.version, applied_.back().version);

  // The cache still holds v2: resending it parses nothing and applies v2's contents.
  ASSERT_TRUE(send(ClusterResponse("v4", "n4", {ClusterAny("a"), ClusterAny("b", 2)})));
  EXPECT_FALSE(server_->requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 4u);
  ASSERT_EQ(applied_.size(), 3u);
  ASSERT_EQ(applied_.back().clusters.size(), 2u);
  EXPECT_EQ(applied_.back().clusters[1].connect_timeout().seconds(), 2);
  // The invalid "b" was not kept: sending it again parses it again and is refused again.
  ASSERT_TRUE(send(ClusterResponse("v5", "n5", {ClusterAny("a"), ClusterAny("b", 0)})));
  EXPECT_TRUE(server_->requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 5u);
  // Another type's update re-assembles every type without parsing the clusters again.
  xds::DiscoveryResponse routes;
  routes.set_type_url(kXdsTypeUrls[3]);
  routes.set_version_info("r1");
  routes.set_nonce("n6");
  ASSERT_TRUE(send(routes));
  EXPECT_FALSE(server_->requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 5u);
  EXPECT_EQ(applied_.back().clusters.size(), 2u);
}

TEST_F(XdsClientTest, DeltaParsesOnlyResourcesWhoseBytesChanged) {
  client_ = MakeClient({}, /*delta=*/true);
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount; }));
  size_t answers = kXdsTypeCount;
  auto send = [&](const std::string& nonce, std::vector<std::pair<std::string, int>> clusters) {
    xds::DeltaDiscoveryResponse response;
    response.set_type_url(kClusterType);
    response.set_nonce(nonce);
    for (const auto& [name, timeout] : clusters) {
      xds::Resource* r = response.add_resources();
      r->set_name(name);
      *r->mutable_resource() = ClusterAny(name, timeout);
    }
    server_->Send(response);
    ++answers;
    return RunUntil([&] { return server_->delta_requests.size() == answers; });
  };
  ASSERT_TRUE(send("d1", {{"a", 1}, {"b", 1}}));
  EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 2u);
  // "a" sent again unchanged, "b" changed.
  ASSERT_TRUE(send("d2", {{"a", 1}, {"b", 3}}));
  EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 3u);
  ASSERT_EQ(applied_.back().clusters.size(), 2u);
  EXPECT_EQ(applied_.back().clusters[1].connect_timeout().seconds(), 3);
  // Refused: the held "b" stays, and is reused when sent again.
  ASSERT_TRUE(send("d3", {{"b", 0}}));
  EXPECT_TRUE(server_->delta_requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 4u);
  ASSERT_TRUE(send("d4", {{"b", 3}}));
  EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  EXPECT_EQ(client_->resources_parsed(), 4u);
  EXPECT_EQ(applied_.back().clusters[1].connect_timeout().seconds(), 3);
}

}  // namespace
}  // namespace meshlet::sidecar::config
