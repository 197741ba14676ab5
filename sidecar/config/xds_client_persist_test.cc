// XdsClient's last good configuration on disk (xds_client_persist.cc): saved when accepted, a new
// client starts from it while the control plane is away, and without one LoadCache says so.

#include <sys/stat.h>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
using xds_client_testing::ScriptedServer;
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

// A listener response with none: sent last, it makes the configuration complete.
xds::DiscoveryResponse NoListeners() {
  xds::DiscoveryResponse listeners;
  listeners.set_type_url(xds::kResourceTypeUrls[xds::kResourceTypeCount - 1]);
  listeners.set_version_info("l1");
  listeners.set_nonce("n0");
  return listeners;
}

// Once a complete configuration is saved, updates are saved at most once per
// cache_write_interval: not one whole file (two fsyncs) per response, as an answered lookup's
// three responses would cost; what was put off is saved when the stream ends.
TEST_F(XdsClientTest, OnceCompleteABurstOfUpdatesIsSavedTogether) {
  XdsClientOptions options = Options();
  options.cache_write_interval = std::chrono::hours(1);
  client_ = MakeClient(std::move(options));
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  // The configuration complete: saved at once.
  server_->Send(NoListeners());
  ASSERT_TRUE(RunUntil([&] { return applied_.size() == 1; }));
  ASSERT_TRUE(client_->has_complete_config());
  EXPECT_EQ(client_->cache_writes(), 1u);
  for (int i = 1; i <= 10; ++i) {
    server_->Send(ClusterResponse(absl::StrCat("v", i), absl::StrCat("n", i),
                                  {ClusterAny(absl::StrCat("c", i))}));
  }
  ASSERT_TRUE(RunUntil([&] { return applied_.size() == 11; }));
  // Ten responses applied, none saved yet: the interval has not passed.
  EXPECT_EQ(client_->cache_writes(), 1u);
  // The control plane goes away: what runs is saved at once.
  server_.reset();
  ASSERT_TRUE(RunUntil([&] { return client_->cache_writes() == 2; }));
  client_.reset();

  server_ = std::make_unique<ScriptedServer>(loop_);
  applied_.clear();
  client_ = MakeClient();
  ASSERT_TRUE(client_->LoadCache().ok());
  ASSERT_EQ(applied_.size(), 1u);
  ASSERT_EQ(applied_[0].clusters.size(), 1u);
  EXPECT_EQ(applied_[0].clusters[0].name(), "c10");
}

// A save put off is written once the interval has passed, without anything else happening.
TEST_F(XdsClientTest, ASavePutOffIsWrittenWhenTheIntervalHasPassed) {
  XdsClientOptions options = Options();
  options.cache_write_interval = std::chrono::milliseconds(50);
  client_ = MakeClient(std::move(options));
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(NoListeners());
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("c1")}));
  ASSERT_TRUE(RunUntil([&] { return applied_.size() == 2; }));
  ASSERT_TRUE(RunUntil([&] { return client_->cache_writes() == 2; }));
  EXPECT_TRUE(client_->connected());
}

// With the interval zero every accepted response is saved at once, complete or not.
TEST_F(XdsClientTest, AZeroCacheWriteIntervalSavesEveryResponse) {
  XdsClientOptions options = Options();
  options.cache_write_interval = Duration::zero();
  client_ = MakeClient(std::move(options));
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(NoListeners());
  for (int i = 1; i <= 3; ++i) {
    server_->Send(ClusterResponse(absl::StrCat("v", i), absl::StrCat("n", i),
                                  {ClusterAny(absl::StrCat("c", i))}));
  }
  ASSERT_TRUE(RunUntil([&] { return applied_.size() == 4; }));
  ASSERT_TRUE(client_->has_complete_config());
  EXPECT_EQ(client_->cache_writes(), 4u);
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
