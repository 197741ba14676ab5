// XdsClient's stream (xds_client_stream.cc) against a scripted server: reconnects announcing what
// the client holds, failover to the next replica, readiness reports in both variants, the config
// dump answer, and the resolution of the control plane's addresses.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/net/address.h"
#include "gtest/gtest.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_test_util.h"
#include "xds/capabilities.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

using xds_client_testing::ClusterAny;
using xds_client_testing::kClusterType;
using xds_client_testing::kServiceRouteType;
using xds_client_testing::ScriptedServer;
using xds_client_testing::ServiceRouteResource;
using xds_client_testing::ServiceRouteResponse;
using xds_client_testing::XdsClientTest;

std::vector<std::string> Subscribed(const xds::DeltaDiscoveryRequest& request) {
  return {request.resource_names_subscribe().begin(), request.resource_names_subscribe().end()};
}
std::vector<std::string> Unsubscribed(const xds::DeltaDiscoveryRequest& request) {
  return {request.resource_names_unsubscribe().begin(), request.resource_names_unsubscribe().end()};
}

TEST_F(XdsClientTest, AnswersConfigDumpRequestsOnTheStream) {
  for (const size_t limit : {size_t{3 * 1024 * 1024}, size_t{64}}) {
    config_dump_max_bytes_ = limit;
    client_ = MakeClient();
    client_->Start();
    const size_t first = server_->requests.size();
    ASSERT_TRUE(
        RunUntil([&] { return server_->requests.size() == first + xds::kResourceTypeCount; }));
    server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
    ASSERT_TRUE(
        RunUntil([&] { return server_->requests.size() == first + xds::kResourceTypeCount + 1; }));
    const size_t applied = applied_.size();

    xds::DiscoveryResponse ask;
    ask.set_type_url(xds::kConfigDumpTypeUrl);
    ask.set_nonce("dump-1");
    server_->Send(ask);
    ASSERT_TRUE(
        RunUntil([&] { return server_->requests.size() == first + xds::kResourceTypeCount + 2; }));
    const xds::DiscoveryRequest& answer = server_->requests.back();
    EXPECT_EQ(answer.type_url(), xds::kConfigDumpTypeUrl);
    EXPECT_EQ(answer.response_nonce(), "dump-1");
    EXPECT_FALSE(answer.has_error_detail());
    ASSERT_EQ(answer.config_dump().types_size(), static_cast<int>(xds::kResourceTypeCount));
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

TEST_F(XdsClientTest, ReconnectsAfterTheStreamEnds) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(
      RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));  // ACK
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "going away");
  RunUntil([&] {
    return server_->calls.size() == 2 &&
           server_->requests.size() == 2 * xds::kResourceTypeCount + 1;
  });
  ASSERT_EQ(server_->calls.size(), 2u) << client_->StatusJson();
  ASSERT_EQ(server_->requests.size(), 2 * xds::kResourceTypeCount + 1);
  EXPECT_EQ(client_->streams_started(), 2u);
  EXPECT_EQ(server_->requests[xds::kResourceTypeCount + 1].node().id(), "node-1");
  EXPECT_EQ(server_->requests[xds::kResourceTypeCount + 2].version_info(), "v1");
  EXPECT_NE(client_->StatusJson().find("going away"), std::string::npos);
}

// A stream the control plane never answers (every version current) but which stays open as long
// as the longest backoff worked: the next reconnect starts from the shortest delay again, as
// after an answered stream. Streams that end at once keep growing it.
TEST_F(XdsClientTest, AQuietStreamThatLastedResetsTheBackoff) {
  XdsClientOptions options = Options();
  options.backoff_base = std::chrono::milliseconds(10);
  options.backoff_cap = std::chrono::milliseconds(300);
  client_ = MakeClient(options);
  client_->Start();
  for (size_t ended = 1; ended <= 2; ++ended) {  // two streams ended at once, unanswered
    ASSERT_TRUE(RunUntil([&] { return server_->calls.size() == ended; }));
    server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "refused");
    ASSERT_TRUE(RunUntil([&] {
      return client_->StatusJson().find(absl::StrCat("\"reconnect_attempt\":", ended)) !=
             std::string::npos;
    })) << client_->StatusJson();
  }
  ASSERT_TRUE(RunUntil([&] { return server_->calls.size() == 3; }));
  // The third stays open, unanswered, past the cap; then its certificate "expires".
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(400));
  ASSERT_EQ(server_->calls.size(), 3u);
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnauthenticated, "certificate expired");
  ASSERT_TRUE(RunUntil(
      [&] { return client_->StatusJson().find("certificate expired") != std::string::npos; }));
  EXPECT_NE(client_->StatusJson().find("\"reconnect_attempt\":1,"), std::string::npos)
      << client_->StatusJson();
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
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));
  // That replica goes away: the next stream is the other replica's, which is told what runs.
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "replica stopping");
  ASSERT_TRUE(RunUntil([&] { return other.requests.size() == xds::kResourceTypeCount; }))
      << client_->StatusJson();
  EXPECT_EQ(other.requests[1].version_info(), "v1");
  EXPECT_EQ(client_->version(1), "v1");  // kept meanwhile
  EXPECT_NE(client_->StatusJson().find(other.address().ToString()), std::string::npos);
  ::close(dead_fd);
}

TEST_F(XdsClientTest, ReportsReadinessOnEveryStreamAndAtOnceWhenItChanges) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  ASSERT_TRUE(server_->requests[0].has_readiness());
  EXPECT_TRUE(server_->requests[0].readiness().ready());
  EXPECT_EQ(server_->requests[0].readiness().reason(), "");
  for (size_t i = 1; i < xds::kResourceTypeCount; ++i)
    EXPECT_FALSE(server_->requests[i].has_readiness());
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(
      RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));  // ACK

  // Drain starts: at once, one request that carries the report and nothing else.
  client_->SetReadiness(false, "draining");
  client_->SetReadiness(false, "draining");  // no news: nothing more goes out
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 2; }));
  const xds::DiscoveryRequest& report = server_->requests.back();
  EXPECT_EQ(report.type_url(), xds::kReadinessTypeUrl);
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
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 3; }));
  EXPECT_EQ(server_->requests.back().response_nonce(), "n2");
  EXPECT_EQ(server_->requests.back().version_info(), "v2");
  EXPECT_FALSE(server_->requests.back().has_readiness());
  EXPECT_EQ(applied_.back().clusters.size(), 2u);
  EXPECT_TRUE(client_->connected());

  // A new stream says it again with its first request.
  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "going away");
  ASSERT_TRUE(
      RunUntil([&] { return server_->requests.size() == 2 * xds::kResourceTypeCount + 3; }));
  const xds::DiscoveryRequest& first = server_->requests[xds::kResourceTypeCount + 3];
  EXPECT_EQ(first.node().id(), "node-1");
  EXPECT_FALSE(first.readiness().ready());
  EXPECT_EQ(first.readiness().reason(), "draining");

  // Ready again: reported without a reason.
  client_->SetReadiness(true, "ignored");
  ASSERT_TRUE(
      RunUntil([&] { return server_->requests.size() == 2 * xds::kResourceTypeCount + 4; }));
  EXPECT_TRUE(server_->requests.back().readiness().ready());
  EXPECT_EQ(server_->requests.back().readiness().reason(), "");
}

// Both variants subscribe to the six types in push order, ServiceRoutes between route
// configurations and listeners, each in a request of its own.
TEST_F(XdsClientTest, SubscribesSixTypesInPushOrder) {
  const std::vector<std::string> expected = {
      "type.googleapis.com/meshlet.xds.Secret",
      "type.googleapis.com/meshlet.xds.Cluster",
      "type.googleapis.com/meshlet.xds.ClusterLoadAssignment",
      "type.googleapis.com/meshlet.xds.RouteConfiguration",
      "type.googleapis.com/meshlet.xds.ServiceRoute",
      "type.googleapis.com/meshlet.xds.Listener",
  };
  for (const bool delta : {false, true}) {
    SCOPED_TRACE(delta ? "delta" : "state of the world");
    client_ = MakeClient({}, delta);
    client_->Start();
    std::vector<std::string> subscribed;
    ASSERT_TRUE(RunUntil([&] {
      return (delta ? server_->delta_requests.size() : server_->requests.size()) >= expected.size();
    }));
    for (size_t i = 0; i < expected.size(); ++i) {
      if (delta) {
        EXPECT_TRUE(server_->delta_requests[i].resource_names_subscribe().empty());
        subscribed.push_back(server_->delta_requests[i].type_url());
      } else {
        EXPECT_TRUE(server_->requests[i].resource_names().empty());
        subscribed.push_back(server_->requests[i].type_url());
      }
    }
    EXPECT_EQ(subscribed, expected);
    client_.reset();
    loop_.RunUntilIdle();
  }
}

// A control plane of the previous release ignores the subscription to a type it does not know
// and never answers it: the configuration is complete once its listeners are applied, and the
// sidecar ready, without a ServiceRoute answer.
TEST_F(XdsClientTest, CompleteWithoutAnAnswerForServiceRoutes) {
  client_ = MakeClient({}, /*delta=*/true);
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  size_t answers = xds::kResourceTypeCount;
  for (const char* type_url : xds::kResourceTypeUrls) {
    if (std::string(type_url) == "type.googleapis.com/meshlet.xds.ServiceRoute") continue;
    xds::DeltaDiscoveryResponse response;
    response.set_type_url(type_url);
    response.set_nonce(absl::StrCat("n-", answers));
    server_->Send(response);
    ++answers;
    ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == answers; }));
    EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  }
  EXPECT_TRUE(client_->has_complete_config());
  EXPECT_TRUE(client_->connected());
}

TEST_F(XdsClientTest, DeltaReportsReadinessTheSameWay) {
  client_ = MakeClient({}, /*delta=*/true);
  // Before any stream: the first request carries it.
  client_->SetReadiness(false, "draining");
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  EXPECT_EQ(server_->delta_requests[0].node().id(), "node-1");
  EXPECT_FALSE(server_->delta_requests[0].readiness().ready());
  EXPECT_EQ(server_->delta_requests[0].readiness().reason(), "draining");

  client_->SetReadiness(true, "");
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 1; }));
  const xds::DeltaDiscoveryRequest& report = server_->delta_requests.back();
  EXPECT_EQ(report.type_url(), xds::kReadinessTypeUrl);
  EXPECT_TRUE(report.readiness().ready());
  EXPECT_EQ(report.response_nonce(), "");
  EXPECT_TRUE(report.resource_names_subscribe().empty());
  EXPECT_TRUE(report.resource_names_unsubscribe().empty());
  EXPECT_TRUE(report.initial_resource_versions().empty());
  EXPECT_FALSE(report.has_error_detail());
  EXPECT_FALSE(report.has_node());

  client_->SetReadiness(false, "draining");
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 2; }));
  EXPECT_FALSE(server_->delta_requests.back().readiness().ready());
  EXPECT_EQ(server_->delta_requests.back().readiness().reason(), "draining");
}

// Lookups (ADR 0086): the keys of one Lookup call go in one ServiceRoute request of their own
// (no nonce), subscribing and unsubscribing; a state-of-the-world stream sends none.
TEST_F(XdsClientTest, LookupsOfOneTurnGoInOneRequest) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  client_->Lookup({"host:reviews", "addr:10.96.0.7:80"}, {});
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 1; }));
  const xds::DeltaDiscoveryRequest& asked = server_->delta_requests.back();
  EXPECT_EQ(asked.type_url(), kServiceRouteType);
  EXPECT_EQ(asked.response_nonce(), "");
  EXPECT_EQ(Subscribed(asked), (std::vector<std::string>{"host:reviews", "addr:10.96.0.7:80"}));
  EXPECT_TRUE(asked.resource_names_unsubscribe().empty());
  EXPECT_FALSE(asked.has_node());

  // A held key is not subscribed twice; dropping one and adding another is one request.
  client_->Lookup({"host:reviews", "host:ratings"}, {"addr:10.96.0.7:80"});
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 2; }));
  EXPECT_EQ(Subscribed(server_->delta_requests.back()), std::vector<std::string>{"host:ratings"});
  EXPECT_EQ(Unsubscribed(server_->delta_requests.back()),
            std::vector<std::string>{"addr:10.96.0.7:80"});
  EXPECT_EQ(client_->lookups().size(), 2u);
  // Nothing new: nothing sent.
  client_->Lookup({"host:reviews"}, {"host:unknown"});
  loop_.RunUntilIdle();
  EXPECT_EQ(server_->delta_requests.size(), xds::kResourceTypeCount + 2);

  // State of the world: the keys are held, never sent.
  client_.reset();
  loop_.RunUntilIdle();
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  client_->Lookup({"host:reviews"}, {});
  loop_.RunUntilIdle();
  EXPECT_EQ(server_->requests.size(), xds::kResourceTypeCount);
  EXPECT_FALSE(client_->can_look_up());
}

TEST_F(XdsClientTest, ReconnectResubscribesEveryHeldKey) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  // Without held keys the ServiceRoute subscription is the implicit wildcard.
  EXPECT_TRUE(server_->delta_requests[4].resource_names_subscribe().empty());
  client_->Lookup({"host:reviews", "addr:10.96.0.7:80"}, {});
  server_->Send(ServiceRouteResponse(
      "n1", {ServiceRouteResource("reviews.shop:80", "reviews", {"host:reviews"})}));
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 2; }));

  server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "restarting");
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == 2 * xds::kResourceTypeCount + 2; }));
  const xds::DeltaDiscoveryRequest& again =
      server_->delta_requests[xds::kResourceTypeCount + 2 + 4];
  EXPECT_EQ(again.type_url(), kServiceRouteType);
  // The wildcard (the base set) stays, named now that keys are named too.
  EXPECT_EQ(Subscribed(again),
            (std::vector<std::string>{"*", "addr:10.96.0.7:80", "host:reviews"}));
  ASSERT_EQ(again.initial_resource_versions().size(), 1u);
  EXPECT_EQ(again.initial_resource_versions().begin()->first, "reviews.shop:80");
  // The other types subscribe as before.
  EXPECT_TRUE(
      server_->delta_requests[xds::kResourceTypeCount + 2 + 1].resource_names_subscribe().empty());
}

TEST_F(XdsClientTest, AnswersRunAfterTheSnapshotIsPosted) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  client_->Lookup({"host:reviews", "host:nope", "addr:10.96.0.7:80"}, {});
  const size_t applied = applied_.size();
  server_->Send(ServiceRouteResponse(
      "n1",
      {ServiceRouteResource("reviews.shop:80", "reviews", {"host:reviews", "host:not-asked"})},
      {"host:nope"}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 2; }));
  // Applied (one configuration with the ServiceRoute) before the answers were given.
  ASSERT_EQ(applied_.size(), applied + 1);
  ASSERT_EQ(applied_.back().service_routes.size(), 1u);
  EXPECT_EQ(applied_before_answer_, (std::vector<size_t>{applied + 1, applied + 1}));
  EXPECT_EQ(lookup_answers_[0].key, "host:nope");
  EXPECT_EQ(lookup_answers_[0].outcome, LookupOutcome::kNotFound);
  EXPECT_EQ(lookup_answers_[1].key, "host:reviews");
  EXPECT_EQ(lookup_answers_[1].outcome, LookupOutcome::kFound);
  // ACKed; a key removed is not taken for a resource name.
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 2; }));
  EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  EXPECT_EQ(client_->lookups().at("host:reviews"), "reviews.shop:80");
  EXPECT_EQ(client_->lookups().at("host:nope"), "");
  EXPECT_EQ(client_->lookups().at("addr:10.96.0.7:80"), "");

  // The ServiceRoute goes: the key it answered is answered not found, after that configuration.
  server_->Send(ServiceRouteResponse("n2", {}, {"reviews.shop:80"}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 3; }));
  EXPECT_EQ(lookup_answers_[2].key, "host:reviews");
  EXPECT_EQ(lookup_answers_[2].outcome, LookupOutcome::kNotFound);
  EXPECT_EQ(applied_before_answer_[2], applied + 2);
  EXPECT_TRUE(applied_.back().service_routes.empty());
}

TEST_F(XdsClientTest, AliasOnlyResponseAnswersWithoutANewSnapshot) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  client_->Lookup({"host:reviews"}, {});
  server_->Send(ServiceRouteResponse(
      "n1", {ServiceRouteResource("reviews.shop:80", "reviews", {"host:reviews"})}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 1; }));
  const size_t applied = applied_.size();
  const uint64_t accepted = client_->accepted_updates();
  const std::string version = client_->version(4);

  // Another key of the same Service: the same resource, now with both aliases.
  client_->Lookup({"host:reviews.shop"}, {});
  server_->Send(ServiceRouteResponse(
      "n2",
      {ServiceRouteResource("reviews.shop:80", "reviews", {"host:reviews", "host:reviews.shop"})}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 3; }));
  EXPECT_EQ(lookup_answers_[2].key, "host:reviews.shop");
  EXPECT_EQ(lookup_answers_[2].outcome, LookupOutcome::kFound);
  EXPECT_EQ(applied_.size(), applied);  // no configuration built
  EXPECT_EQ(client_->accepted_updates(), accepted);
  EXPECT_EQ(client_->version(4), version);
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 4; }));
  EXPECT_EQ(server_->delta_requests.back().response_nonce(), "n2");
  EXPECT_FALSE(server_->delta_requests.back().has_error_detail());
  EXPECT_EQ(client_->lookups().at("host:reviews.shop"), "reviews.shop:80");
}

TEST_F(XdsClientTest, NackedResponseAnswersItsKeysRefused) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  client_->Lookup({"host:reviews", "host:nope"}, {});
  // Joins a route configuration the sidecar does not have: refused.
  server_->Send(ServiceRouteResponse(
      "n1", {ServiceRouteResource("reviews.shop:80", "reviews", {"host:reviews"}, "elsewhere")},
      {"host:nope"}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 2; }));
  for (const LookupAnswer& answer : lookup_answers_) {
    EXPECT_EQ(answer.outcome, LookupOutcome::kRefused) << answer.key;
  }
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 2; }));
  EXPECT_EQ(server_->delta_requests.back().response_nonce(), "n1");
  EXPECT_TRUE(server_->delta_requests.back().has_error_detail());
  // Nothing recorded: both keys stay unanswered.
  EXPECT_EQ(client_->lookups().at("host:reviews"), "");
  EXPECT_EQ(client_->lookups().at("host:nope"), "");
}

// A ServiceRoute response looks at the keys it answers, not at every held one (those only when it
// removes a ServiceRoute); refused, the answers it replaced are put back.
TEST_F(XdsClientTest, LookupAnswersLookAtTheKeysTheyAnswer) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  std::vector<std::string> keys;
  std::vector<xds::Resource> routes;
  for (int i = 0; i < 500; ++i) {
    const std::string host = absl::StrCat("s", i);
    keys.push_back("host:" + host);
    routes.push_back(ServiceRouteResource(host + ".shop:80", host, {"host:" + host}));
  }
  client_->Lookup(keys, {});
  server_->Send(ServiceRouteResponse("n1", std::move(routes)));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 500; }));

  client_->Lookup({"host:t"}, {});
  const uint64_t before = client_->entries_visited();
  server_->Send(ServiceRouteResponse("n2", {ServiceRouteResource("t.shop:80", "t", {"host:t"})}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 501; }));
  // The ServiceRoute list patched (a path of the held entries), no key but "host:t" looked at:
  // well under the 500 held keys (looking at every held key visits more than 500; the bound
  // leaves room for the paths of the persistent maps, which vary with where a run's work lands).
  EXPECT_LT(client_->entries_visited() - before, 250u);
  EXPECT_EQ(client_->lookups().at("host:t"), "t.shop:80");

  // Refused (joins a route configuration the sidecar lacks): "host:s0" answered by another
  // ServiceRoute, s1's removed; both keys keep their answers.
  server_->Send(ServiceRouteResponse(
      "n3", {ServiceRouteResource("other:80", "other", {"host:s0"}, "elsewhere")}, {"s1.shop:80"}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 502; }));
  EXPECT_EQ(lookup_answers_.back().outcome, LookupOutcome::kRefused);
  EXPECT_EQ(client_->lookups().at("host:s0"), "s0.shop:80");
  EXPECT_EQ(client_->lookups().at("host:s1"), "s1.shop:80");
  // Applied: the key of the removed ServiceRoute is no longer found.
  server_->Send(ServiceRouteResponse("n4", {}, {"s1.shop:80"}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 503; }));
  EXPECT_EQ(lookup_answers_.back().key, "host:s1");
  EXPECT_EQ(lookup_answers_.back().outcome, LookupOutcome::kNotFound);
  EXPECT_EQ(client_->lookups().at("host:s1"), "");
  EXPECT_EQ(client_->lookups().at("host:s0"), "s0.shop:80");
}

// Capability on-demand needs a delta stream: a state-of-the-world stream's node leaves it out,
// so the control plane gives that node no listener that looks up.
TEST_F(XdsClientTest, StateOfTheWorldNodeDoesNotListOnDemand) {
  const std::string on_demand(xds::Info(xds::Capability::kOnDemand).name);
  for (const bool delta : {false, true}) {
    SCOPED_TRACE(delta ? "delta" : "state of the world");
    XdsClientOptions options = Options(delta);
    for (const std::string& name : xds::CapabilitySet::All().Names()) {
      options.node.add_capabilities(name);
    }
    client_ = MakeClient(std::move(options));
    client_->Start();
    ASSERT_TRUE(RunUntil([&] {
      return (delta ? server_->delta_requests.size() : server_->requests.size()) >=
             xds::kResourceTypeCount;
    }));
    const xds::Node& node = delta ? server_->delta_requests[0].node() : server_->requests[0].node();
    std::vector<std::string> listed(node.capabilities().begin(), node.capabilities().end());
    EXPECT_EQ(std::count(listed.begin(), listed.end(), on_demand), delta ? 1 : 0);
    EXPECT_EQ(listed.size(), xds::kCapabilityCount - (delta ? 0 : 1));
    client_.reset();
    loop_.RunUntilIdle();
  }
}

}  // namespace
}  // namespace meshlet::sidecar::config
