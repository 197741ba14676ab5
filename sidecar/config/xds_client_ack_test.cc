// XdsClient's answers (xds_client_ack.cc) against a scripted server: subscriptions with the node,
// ACK with the new version and NACK with the reason and the version still running, and when the
// configuration counts as complete.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_test_util.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

using xds_client_testing::ClusterAny;
using xds_client_testing::XdsClientTest;

TEST_F(XdsClientTest, SubscribesToEveryTypeWithItsNodeThenAcksAndNacks) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  EXPECT_EQ(server_->requests[0].node().id(), "node-1");
  EXPECT_FALSE(server_->requests[1].has_node());
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    EXPECT_EQ(server_->requests[i].type_url(), xds::kResourceTypeUrls[i]);
    EXPECT_TRUE(server_->requests[i].response_nonce().empty());
    EXPECT_TRUE(server_->requests[i].resource_names().empty());  // wildcard
  }

  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));
  const xds::DiscoveryRequest& ack = server_->requests.back();
  EXPECT_EQ(ack.response_nonce(), "n1");
  EXPECT_EQ(ack.version_info(), "v1");
  EXPECT_FALSE(ack.has_error_detail());
  ASSERT_EQ(applied_.size(), 1u);
  ASSERT_EQ(applied_[0].clusters.size(), 1u);
  EXPECT_EQ(client_->version(1), "v1");
  EXPECT_TRUE(client_->connected());
  auto last_update = [&](const char* type) {
    const StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_xds_client_last_update_timestamp_seconds", {{"type", type}});
    return series == nullptr ? int64_t{-1} : series->gauge;
  };
  const int64_t applied_at = last_update("clusters");
  EXPECT_NEAR(applied_at, absl::ToUnixSeconds(absl::Now()), 5);
  EXPECT_EQ(last_update("listeners"), 0);  // nothing applied yet

  // connect_timeout 0 does not validate: NACK, keep v1.
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("a", 0)}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 2; }));
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
  EXPECT_EQ(last_update("clusters"), applied_at);  // a refused update is not an update

  // A resource of the wrong type in the response is refused too.
  xds::DiscoveryResponse wrong = ClusterResponse("v3", "n3", {});
  xds::Listener listener;
  listener.set_name("l");
  wrong.add_resources()->PackFrom(listener, "type.googleapis.com");
  server_->Send(wrong);
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 3; }));
  EXPECT_NE(server_->requests.back().error_detail().message().find("type_url"), std::string::npos);
}

TEST_F(XdsClientTest, CompleteOnceListenersOrEveryTypeWereApplied) {
  client_ = MakeClient();
  EXPECT_FALSE(client_->has_complete_config());
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));
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
  ASSERT_TRUE(respond(xds::kResourceTypeUrls[5], "n2", &listener));
  EXPECT_TRUE(server_->requests.back().has_error_detail());
  EXPECT_FALSE(client_->has_complete_config());
  // The other types, empty: every type answered once is complete too.
  ASSERT_TRUE(respond(xds::kResourceTypeUrls[0], "n3", nullptr));
  ASSERT_TRUE(respond(xds::kResourceTypeUrls[2], "n4", nullptr));
  EXPECT_FALSE(client_->has_complete_config());
  ASSERT_TRUE(respond(xds::kResourceTypeUrls[3], "n5", nullptr));
  ASSERT_TRUE(respond(xds::kResourceTypeUrls[4], "n6", nullptr));
  EXPECT_FALSE(client_->has_complete_config());  // listeners still refused
  ASSERT_TRUE(respond(xds::kResourceTypeUrls[5], "n7", nullptr));
  EXPECT_TRUE(client_->has_complete_config());
}

// The control plane asks for the sidecar's view with a response of the debug type; the answer

// Skew (docs/upgrades.md): fields of a later release are kept and ignored, so such a cluster is
// ACKed; an enum value of a later release is refused by the field's path, and the NACK notes the
// fields this release does not know, the likely cause.
TEST_F(XdsClientTest, UnknownFieldsAreIgnoredAndUnknownValuesRefusedWithTheReason) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  auto cluster = [](const std::string& name, int protocol) {
    xds::Cluster c;
    EXPECT_TRUE(ClusterAny(name).UnpackTo(&c));
    c.set_protocol(static_cast<xds::UpstreamProtocol>(protocol));
    // Field 99 (a varint) and a nested message's field 98: what a later release could add.
    c.GetReflection()->MutableUnknownFields(&c)->AddVarint(99, 1);
    google::protobuf::Duration* timeout = c.mutable_connect_timeout();
    timeout->GetReflection()->MutableUnknownFields(timeout)->AddLengthDelimited(98, "x");
    google::protobuf::Any any;
    any.PackFrom(c, "type.googleapis.com");
    return any;
  };
  server_->Send(ClusterResponse("v1", "n1", {cluster("a", xds::UPSTREAM_HTTP2)}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));
  EXPECT_FALSE(server_->requests.back().has_error_detail())
      << server_->requests.back().error_detail().message();
  ASSERT_EQ(applied_.size(), 1u);
  ASSERT_EQ(applied_[0].clusters.size(), 1u);

  server_->Send(ClusterResponse("v2", "n2", {cluster("a", 42), cluster("b", 0)}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 2; }));
  const xds::DiscoveryRequest& nack = server_->requests.back();
  ASSERT_TRUE(nack.has_error_detail());
  const std::string& message = nack.error_detail().message();
  EXPECT_NE(message.find("cluster \"a\": protocol: unknown value 42"), std::string::npos)
      << message;
  EXPECT_NE(message.find("does not know, in 2 resources, first Cluster \"a\": field 99 of "
                         "meshlet.xds.Cluster"),
            std::string::npos)
      << message;
  EXPECT_EQ(nack.version_info(), "v1");
  EXPECT_EQ(applied_.size(), 1u);
}

}  // namespace
}  // namespace meshlet::sidecar::config
