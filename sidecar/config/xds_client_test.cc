// XdsClient against a scripted ADS server (meshlet's gRPC server on 127.0.0.1): ACK and NACK
// with versions and nonces, whole-configuration apply (static + dynamic), name collisions with
// static resources, persistence and start from the saved configuration, reconnects announcing
// what the client holds, the delta stream, readiness reports, and that only new or changed
// resources are parsed.

#include "sidecar/config/xds_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
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
    // Parameterized tests' names have a '/'.
    cache_dir_ = ::testing::TempDir() + "/xds_client_test_" +
                 absl::StrReplaceAll(
                     ::testing::UnitTest::GetInstance()->current_test_info()->name(), {{"/", "_"}});
    std::string cleanup = "rm -rf '" + cache_dir_ + "'";
    ASSERT_EQ(std::system(cleanup.c_str()), 0);
    server_ = std::make_unique<ScriptedServer>(loop_);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    loop_.RunUntilIdle();
  }

  XdsClientOptions Options(bool delta = false) {
    XdsClientOptions options;
    options.server_addresses = {server_->address()};
    options.node.set_id("node-1");
    options.delta = delta;
    options.cache_dir = cache_dir_;
    options.backoff_base = milliseconds(10);
    options.backoff_cap = milliseconds(50);
    options.config_dump_json = [] { return std::string("{\"admin\":true}"); };
    options.config_dump_max_bytes = config_dump_max_bytes_;
    return options;
  }

  std::unique_ptr<XdsClient> MakeClient(ResourceSet static_resources = {}, bool delta = false) {
    return MakeClient(Options(delta), std::move(static_resources));
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

TEST(ResolveHostPortsTest, EveryAddressOfEveryEntryInOrderWithoutRepeats) {
  absl::StatusOr<std::vector<net::Address>> all =
      ResolveHostPorts("127.0.0.1:1,127.0.0.2:2,127.0.0.1:1,localhost:3");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_GE(all->size(), 3u);
  EXPECT_EQ((*all)[0].ToString(), "127.0.0.1:1");
  EXPECT_EQ((*all)[1].ToString(), "127.0.0.2:2");
  EXPECT_EQ((*all)[2].port(), 3);
  absl::Status bad = ResolveHostPorts("127.0.0.1:1,nope").status();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("\"nope\""), std::string::npos) << bad;
}

TEST_F(XdsClientTest, MovesToTheNextReplicaWhenAStreamEndsOrCannotOpen) {
  // A second replica, and an address where nothing listens.
  ScriptedServer other(loop_);
  int dead_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(dead_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(dead_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  absl::StatusOr<net::Address> dead =
      net::Address::Parse(absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)));
  ASSERT_TRUE(dead.ok());
  XdsClientOptions options = Options();
  options.server_addresses = {*dead, server_->address(), other.address()};
  client_ = MakeClient(options);
  client_->Start();
  // The dead address fails; the next one serves.
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 1; }));
  // That replica goes away: the next stream is the other replica's, which is told what runs.
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "replica stopping");
  ASSERT_TRUE(RunUntil([&] { return other.requests.size() == kXdsTypeCount; }))
      << client_->StatusJson();
  EXPECT_EQ(other.requests[1].version_info(), "v1");
  EXPECT_EQ(client_->version(1), "v1");  // kept meanwhile
  EXPECT_NE(client_->StatusJson().find(other.address().ToString()), std::string::npos);
  ::close(dead_fd);
}

TEST_F(XdsClientTest, ReportsReadinessOnEveryStreamAndAtOnceWhenItChanges) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount; }));
  ASSERT_TRUE(server_->requests[0].has_readiness());
  EXPECT_TRUE(server_->requests[0].readiness().ready());
  EXPECT_EQ(server_->requests[0].readiness().reason(), "");
  for (size_t i = 1; i < kXdsTypeCount; ++i) EXPECT_FALSE(server_->requests[i].has_readiness());
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 1; }));  // ACK

  // Drain starts: at once, one request that carries the report and nothing else.
  client_->SetReadiness(false, "draining");
  client_->SetReadiness(false, "draining");  // no news: nothing more goes out
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 2; }));
  const xds::DiscoveryRequest& report = server_->requests.back();
  EXPECT_EQ(report.type_url(), kReadinessTypeUrl);
  EXPECT_FALSE(report.readiness().ready());
  EXPECT_EQ(report.readiness().reason(), "draining");
  EXPECT_EQ(report.response_nonce(), "");
  EXPECT_EQ(report.version_info(), "");
  EXPECT_FALSE(report.has_error_detail());
  EXPECT_FALSE(report.has_node());
  EXPECT_TRUE(report.resource_names().empty());
  EXPECT_FALSE(client_->ready());

  // The stream and the configuration stay: updates are still applied and ACKed.
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("a"), ClusterAny("b")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == kXdsTypeCount + 3; }));
  EXPECT_EQ(server_->requests.back().response_nonce(), "n2");
  EXPECT_EQ(server_->requests.back().version_info(), "v2");
  EXPECT_FALSE(server_->requests.back().has_readiness());
  EXPECT_EQ(applied_.back().clusters.size(), 2u);
  EXPECT_TRUE(client_->connected());

  // A new stream says it again with its first request.
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "going away");
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == 2 * kXdsTypeCount + 3; }));
  const xds::DiscoveryRequest& first = server_->requests[kXdsTypeCount + 3];
  EXPECT_EQ(first.node().id(), "node-1");
  EXPECT_FALSE(first.readiness().ready());
  EXPECT_EQ(first.readiness().reason(), "draining");

  // Ready again: reported without a reason.
  client_->SetReadiness(true, "ignored");
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == 2 * kXdsTypeCount + 4; }));
  EXPECT_TRUE(server_->requests.back().readiness().ready());
  EXPECT_EQ(server_->requests.back().readiness().reason(), "");
}

TEST_F(XdsClientTest, DeltaReportsReadinessTheSameWay) {
  client_ = MakeClient({}, /*delta=*/true);
  // Before any stream: the first request carries it.
  client_->SetReadiness(false, "draining");
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount; }));
  EXPECT_EQ(server_->delta_requests[0].node().id(), "node-1");
  EXPECT_FALSE(server_->delta_requests[0].readiness().ready());
  EXPECT_EQ(server_->delta_requests[0].readiness().reason(), "draining");

  client_->SetReadiness(true, "");
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount + 1; }));
  const xds::DeltaDiscoveryRequest& report = server_->delta_requests.back();
  EXPECT_EQ(report.type_url(), kReadinessTypeUrl);
  EXPECT_TRUE(report.readiness().ready());
  EXPECT_EQ(report.response_nonce(), "");
  EXPECT_TRUE(report.resource_names_subscribe().empty());
  EXPECT_TRUE(report.resource_names_unsubscribe().empty());
  EXPECT_TRUE(report.initial_resource_versions().empty());
  EXPECT_FALSE(report.has_error_detail());
  EXPECT_FALSE(report.has_node());

  client_->SetReadiness(false, "draining");
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == kXdsTypeCount + 2; }));
  EXPECT_FALSE(server_->delta_requests.back().readiness().ready());
  EXPECT_EQ(server_->delta_requests.back().readiness().reason(), "draining");
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

// The control plane's view and the sidecar's differ after a reconnect (a restarted control plane
// has sent nothing on the new stream, so it cannot send the union of old and new): its first
// push drops the subset cluster v2 the held route names and brings v1, type by type. Every step
// is applied, v2 runs until no route names it, then goes. State of the world and delta alike.
class XdsRetentionTest : public XdsClientTest, public ::testing::WithParamInterface<bool> {
 protected:
  static constexpr char kAll[] = "outbound|9080||reviews.default";
  static constexpr char kV1[] = "outbound|9080|version=v1|reviews.default";
  static constexpr char kV2[] = "outbound|9080|version=v2|reviews.default";
  using Named = std::pair<std::string, google::protobuf::Any>;

  template <typename Message>
  static Named Pack(const std::string& name, const Message& message) {
    Named named{name, {}};
    named.second.PackFrom(message, "type.googleapis.com");
    return named;
  }
  static Named EdsCluster(const std::string& name) {
    xds::Cluster cluster;
    cluster.set_name(name);
    cluster.set_type(xds::Cluster::EDS);
    return Pack(name, cluster);
  }
  static Named Endpoints(const std::string& cluster, const std::string& address) {
    xds::ClusterLoadAssignment assignment;
    assignment.set_cluster_name(cluster);
    assignment.add_endpoints()->set_address(address);
    return Pack(cluster, assignment);
  }
  // Route configuration "outbound": reviews to `cluster`, everything else to kAll.
  static Named Routes(const std::string& cluster) {
    xds::RouteConfiguration routes;
    routes.set_name("outbound");
    xds::VirtualHost* reviews = routes.add_virtual_hosts();
    reviews->set_name("reviews");
    reviews->add_domains("reviews");
    xds::Route* route = reviews->add_routes();
    route->mutable_match()->set_prefix("/");
    route->mutable_route()->set_cluster(cluster);
    xds::VirtualHost* rest = routes.add_virtual_hosts();
    rest->set_name("rest");
    rest->add_domains("*");
    route = rest->add_routes();
    route->mutable_match()->set_prefix("/");
    route->mutable_route()->set_cluster(kAll);
    return Pack("outbound", routes);
  }
  static Named Listener() {
    xds::Listener listener;
    listener.set_name("outbound");
    listener.set_address("127.0.0.1:0");
    listener.set_protocol(xds::PROTOCOL_HTTP);
    listener.set_route_config_name("outbound");
    return Pack("outbound", listener);
  }

  void StartClient() {
    client_ = MakeClient({}, /*delta=*/GetParam());
    client_->Start();
    ASSERT_TRUE(RunUntil([&] { return Answers() == kXdsTypeCount; }));
  }
  size_t Answers() const {
    return GetParam() ? server_->delta_requests.size() : server_->requests.size();
  }
  // Sends `resources` as the whole of the type at `index`: state of the world as it is, delta as
  // the resources and the removals of what the last push of the type had and these lack. Returns
  // the answer's error text: empty for an ACK.
  std::string Push(size_t index, std::vector<Named> resources) {
    const std::string nonce = absl::StrCat("n", ++nonces_);
    std::map<std::string, google::protobuf::Any>& last = sent_[index];
    if (GetParam()) {
      xds::DeltaDiscoveryResponse response;
      response.set_type_url(kXdsTypeUrls[index]);
      response.set_nonce(nonce);
      std::map<std::string, google::protobuf::Any> next(resources.begin(), resources.end());
      for (const auto& [name, any] : last) {
        if (!next.contains(name)) response.add_removed_resources(name);
      }
      for (const auto& [name, any] : resources) {
        xds::Resource* r = response.add_resources();
        r->set_name(name);
        *r->mutable_resource() = any;
      }
      last = std::move(next);
      server_->Send(response);
    } else {
      xds::DiscoveryResponse response;
      response.set_type_url(kXdsTypeUrls[index]);
      response.set_version_info(absl::StrCat("version-", nonce));
      response.set_nonce(nonce);
      for (const auto& [name, any] : resources) *response.add_resources() = any;
      server_->Send(response);
    }
    const size_t before = Answers();
    if (!RunUntil([&] { return Answers() == before + 1; })) return "no answer";
    if (GetParam()) {
      const xds::DeltaDiscoveryRequest& answer = server_->delta_requests.back();
      EXPECT_EQ(answer.response_nonce(), nonce);
      return answer.error_detail().message();
    }
    const xds::DiscoveryRequest& answer = server_->requests.back();
    EXPECT_EQ(answer.response_nonce(), nonce);
    // An ACK carries the new version, a NACK the one that still runs.
    EXPECT_EQ(answer.version_info() == absl::StrCat("version-", nonce), !answer.has_error_detail());
    return answer.error_detail().message();
  }
  // The sidecar holds a route to v2 (with its cluster and endpoints), then its stream ends and a
  // new one starts.
  void HoldRouteToV2ThenReconnect() {
    ASSERT_EQ(Push(1, {EdsCluster(kAll), EdsCluster(kV2)}), "");
    ASSERT_EQ(Push(2, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV2, "127.0.0.2:9080")}), "");
    ASSERT_EQ(Push(3, {Routes(kV2)}), "");
    ASSERT_EQ(Push(4, {Listener()}), "");
    server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "restarting");
    ASSERT_TRUE(RunUntil([&] { return Answers() == 2 * kXdsTypeCount + 4; }));
  }
  // In name order.
  static std::vector<std::string> Names(const auto& list, auto name_of) {
    std::vector<std::string> names;
    for (const auto& m : list) names.push_back(name_of(m));
    std::sort(names.begin(), names.end());
    return names;
  }
  std::vector<std::string> RunningClusters() const {
    return Names(applied_.back().clusters, [](const xds::Cluster& c) { return c.name(); });
  }
  std::vector<std::string> RunningEndpoints() const {
    return Names(applied_.back().endpoints,
                 [](const xds::ClusterLoadAssignment& c) { return c.cluster_name(); });
  }
  int64_t Gauge(absl::string_view name, const LabelSet& labels = {}) const {
    const StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? -1 : series->gauge;
  }

  int nonces_ = 0;
  std::array<std::map<std::string, google::protobuf::Any>, kXdsTypeCount> sent_;
};

TEST_P(XdsRetentionTest, ARemovedClusterARouteStillNamesRunsUntilTheRouteMoves) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(HoldRouteToV2ThenReconnect());

  // Clusters without v2 (the route still names it) and with v1: applied, v2 kept as it ran.
  const std::shared_ptr<const xds::Cluster> v2 = applied_.back().clusters.shared(0);
  ASSERT_EQ(v2->name(), kV2);
  EXPECT_EQ(Push(1, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(applied_.back().clusters.shared(2), v2);  // after the held ones, as it ran
  EXPECT_EQ(client_->retained(1), std::vector<std::string>{kV2});
  EXPECT_EQ(Gauge("meshlet_xds_client_retained_resources", {{"type", "clusters"}}), 1);
  // Endpoints without v2's and with v1's: v2 keeps those it ran with.
  EXPECT_EQ(Push(2, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "127.0.0.1:9081")}), "");
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(client_->retained(2), std::vector<std::string>{kV2});
  EXPECT_NE(client_->StatusJson().find(absl::StrCat("\"retained\":[\"", kV2, "\"]")),
            std::string::npos)
      << client_->StatusJson();
  // The route moves to v1: v2 is named by nothing any more and goes, with its endpoints.
  EXPECT_EQ(Push(3, {Routes(kV1)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kAll}));
  for (size_t i = 0; i < kXdsTypeCount; ++i) EXPECT_TRUE(client_->retained(i).empty()) << i;
  EXPECT_EQ(Gauge("meshlet_xds_client_retained_resources", {{"type", "clusters"}}), 0);
  EXPECT_EQ(client_->rejected_updates(), 0u);
  EXPECT_TRUE(BuildSnapshot(client_->CurrentResources()).ok());
}

// Endpoints may come before their cluster (its update refused, or another order): they are held
// aside, not refused, and used once the cluster arrives. A route to a cluster that is not there
// is still refused.
TEST_P(XdsRetentionTest, EndpointsOfAnUnknownClusterWaitForItButARouteToItIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(HoldRouteToV2ThenReconnect());

  EXPECT_EQ(Push(2, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "127.0.0.1:9081")}), "");
  EXPECT_EQ(client_->unmatched_assignments(), std::vector<std::string>{kV1});
  EXPECT_EQ(Gauge("meshlet_xds_client_unmatched_load_assignments"), 1);
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV2, kAll}));  // v2 still named

  const std::string refused = Push(3, {Routes(kV1)});
  EXPECT_NE(refused.find(absl::StrCat("\"", kV1, "\" names no Cluster")), std::string::npos)
      << refused;

  // Held aside, the endpoints are still checked.
  const std::string bad = Push(2, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "nowhere")});
  EXPECT_NE(bad.find(absl::StrCat("cluster_load_assignment \"", kV1, "\": endpoints[0].address")),
            std::string::npos)
      << bad;

  EXPECT_EQ(Push(1, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  EXPECT_TRUE(client_->unmatched_assignments().empty());
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(Push(3, {Routes(kV1)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(Gauge("meshlet_xds_client_unmatched_load_assignments"), 0);
}

// What is retained is saved with the configuration: a sidecar restarted meanwhile runs it.
TEST_P(XdsRetentionTest, RetainedResourcesAreSavedAndLoaded) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(HoldRouteToV2ThenReconnect());
  ASSERT_EQ(Push(1, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  client_.reset();
  applied_.clear();

  client_ = MakeClient({}, /*delta=*/GetParam());
  ASSERT_EQ(client_->LoadCache(), absl::OkStatus());
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(client_->retained(1), std::vector<std::string>{kV2});
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV2, kAll}));
}

INSTANTIATE_TEST_SUITE_P(Variants, XdsRetentionTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Delta" : "StateOfTheWorld";
                         });

}  // namespace
}  // namespace meshlet::sidecar::config
