// XdsClient's last good configuration on disk (xds_client_persist.cc): saved when accepted, a new
// client starts from it while the control plane is away, and without one LoadCache says so.

#include <sys/stat.h>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_test_util.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

using xds_client_testing::ClusterAny;
using xds_client_testing::kClusterType;
using xds_client_testing::kServiceRouteType;
using xds_client_testing::ServiceRouteResource;
using xds_client_testing::ServiceRouteResponse;
using xds_client_testing::XdsClientTest;

TEST_F(XdsClientTest, SavesTheLastGoodConfigurationAndStartsFromIt) {
  client_ = MakeClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return applied_.size() == 1; }));
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("a", 0)}));  // refused: not saved
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 2; }));
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
  ASSERT_TRUE(
      RunUntil([&] { return server_->requests.size() == before + xds::kResourceTypeCount; }));
  EXPECT_EQ(server_->requests[before + 1].type_url(), kClusterType);
  EXPECT_EQ(server_->requests[before + 1].version_info(), "v1");
}

// The first complete configuration: listeners applied (the server sends them last), or every

TEST_F(XdsClientTest, WithoutASavedConfigurationLoadCacheSaysNotFound) {
  client_ = MakeClient();
  EXPECT_TRUE(absl::IsNotFound(client_->LoadCache()));
  EXPECT_FALSE(client_->has_dynamic_config());
}

// Held lookup keys and their answers are saved with the configuration: a restarted sidecar, and
// one that takes over from a running one, holds them and subscribes them on its first stream.
TEST_F(XdsClientTest, LookupsSurviveRestartAndHandOver) {
  client_ = MakeLookupClient();
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount; }));
  client_->Lookup({"host:reviews", "host:nope"}, {});
  server_->Send(ServiceRouteResponse(
      "n1", {ServiceRouteResource("reviews.shop:80", "reviews", {"host:reviews"})}, {"host:nope"}));
  ASSERT_TRUE(RunUntil([&] { return lookup_answers_.size() == 2; }));
  // The lookup and the ACK.
  ASSERT_TRUE(
      RunUntil([&] { return server_->delta_requests.size() == xds::kResourceTypeCount + 2; }));
  const std::map<std::string, std::string> expected = {{"host:nope", ""},
                                                       {"host:reviews", "reviews.shop:80"}};
  ASSERT_EQ(client_->lookups(), expected);
  const std::string handed = client_->SavedConfiguration();
  client_.reset();

  for (const bool hand_over : {false, true}) {
    SCOPED_TRACE(hand_over ? "hand-over" : "restart");
    client_ = MakeLookupClient();
    ASSERT_TRUE((hand_over ? client_->LoadSavedConfiguration(handed, "the predecessor's")
                           : client_->LoadCache())
                    .ok());
    EXPECT_EQ(client_->lookups(), expected);
    const size_t before = server_->delta_requests.size();
    client_->Start();
    ASSERT_TRUE(RunUntil(
        [&] { return server_->delta_requests.size() == before + xds::kResourceTypeCount; }));
    const xds::DeltaDiscoveryRequest& subscription = server_->delta_requests[before + 4];
    EXPECT_EQ(subscription.type_url(), kServiceRouteType);
    EXPECT_EQ(std::vector<std::string>(subscription.resource_names_subscribe().begin(),
                                       subscription.resource_names_subscribe().end()),
              (std::vector<std::string>{"*", "host:nope", "host:reviews"}));
    client_.reset();
    loop_.RunUntilIdle();
  }
}

}  // namespace
}  // namespace meshlet::sidecar::config
