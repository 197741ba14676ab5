#include "control-plane/telemetry/config_events.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/base/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

using ::testing::ElementsAre;

TEST(ServicesNamedByTest, TargetsBackendsRefsAndHosts) {
  EXPECT_THAT(ServicesNamedBy("HTTPRoute", "default", "reviews",
                              R"({"metadata":{"name":"reviews"},"spec":{"target":"reviews",
                              "rules":[{"name":"split","backends":[{"service":"reviews"},
                              {"service":"reviews-v2.shop"}]}]}})",
                              16),
              ElementsAre("reviews-v2.shop", "reviews.default"));
  EXPECT_THAT(ServicesNamedBy("GatewayHTTPRoute", "default", "r",
                              R"({"spec":{"parentRefs":[{"kind":"Service","name":"ratings"}],
                              "rules":[{"matches":[{"headers":[{"name":"x-canary"}]}],
                              "backendRefs":[{"name":"ratings-v1","port":9080}]}]}})",
                              16),
              ElementsAre("ratings-v1.default", "ratings.default"));
  EXPECT_THAT(ServicesNamedBy("Service", "shop", "cart", "{}", 16), ElementsAre("cart.shop"));
  EXPECT_THAT(ServicesNamedBy("ServiceEntry", "default", "e",
                              R"({"spec":{"hosts":["api.example.com","*"]}})", 16),
              ElementsAre("api.example"));
  // Nothing named: concerns every service. Unparsable: the same.
  EXPECT_TRUE(
      ServicesNamedBy("MeshConfig", "", "mesh", R"({"spec":{"mtls":"STRICT"}})", 16).empty());
  EXPECT_TRUE(ServicesNamedBy("HTTPRoute", "default", "r", "not json", 16).empty());
  EXPECT_EQ(
      ServicesNamedBy("HTTPRoute", "default", "r", R"({"spec":{"hosts":["a","b","c","d"]}})", 2)
          .size(),
      2u);
}

class ConfigEventsTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  ConfigEvents events_{clock_, ConfigEventsLimits{.max_events = 3}, nullptr};
};

TEST_F(ConfigEventsTest, StoreChangeThenWriteNamesWho) {
  events_.AddPolicyChange("TrafficPolicy", "default", "reviews", false, true, 7,
                          {"reviews.default"});
  events_.AddWrite("trafficpolicies", "default", "reviews", "dana", "editor");
  const std::string json = events_.EventsJson(absl::InfinitePast(), absl::InfiniteFuture(), {});
  EXPECT_TRUE(absl::StrContains(json, R"("kind":"TrafficPolicy","namespace":"default",)"
                                      R"("name":"reviews","verb":"created",)"
                                      R"("services":["reviews.default"],"whoKnown":true,)"
                                      R"("who":"dana","role":"editor"})"))
      << json;
  EXPECT_TRUE(absl::StrContains(json, R"("type":"policy")")) << json;
  EXPECT_TRUE(absl::StrContains(json, R"("revision":7)")) << json;
}

TEST_F(ConfigEventsTest, WriteThenStoreChangeNamesWho) {
  // etcd's watch reports the change after the API answered.
  events_.AddWrite("httproutes", "default", "reviews", "ci", "admin");
  events_.AddWrite("httproutes", "default", "other", "x", "admin");
  clock_.Advance(std::chrono::seconds(1));
  events_.AddPolicyChange("GatewayHTTPRoute", "default", "reviews", false, false, 9, {});
  ASSERT_EQ(events_.events().size(), 1u);
  EXPECT_EQ(events_.events()[0].who, "ci");
  EXPECT_EQ(events_.events()[0].verb, "updated");
  // Another replica (no write of its own) knows no one.
  events_.AddPolicyChange("HTTPRoute", "default", "ratings", true, false, 10, {});
  const std::string json = events_.EventsJson(absl::InfinitePast(), absl::InfiniteFuture(), {});
  EXPECT_TRUE(absl::StrContains(json, R"("verb":"deleted","services":[],"whoKnown":false})"))
      << json;
}

TEST_F(ConfigEventsTest, FiltersByServiceAndTimeKeepsMeshWideAndPushes) {
  events_.AddPolicyChange("HTTPRoute", "default", "reviews", false, true, 1, {"reviews.default"});
  events_.AddPolicyChange("MeshConfig", "", "mesh", false, true, 2, {});
  events_.AddPush(2, 4);
  const std::string ratings =
      events_.EventsJson(absl::InfinitePast(), absl::InfiniteFuture(), {"ratings.default"});
  EXPECT_FALSE(absl::StrContains(ratings, R"("name":"reviews")")) << ratings;
  EXPECT_TRUE(absl::StrContains(ratings, R"("name":"mesh")")) << ratings;
  EXPECT_TRUE(absl::StrContains(ratings, R"({"type":"push",)")) << ratings;
  EXPECT_TRUE(absl::StrContains(ratings, R"("revision":2,"proxies":4})")) << ratings;
  const std::string edge = events_.EventsJson(absl::InfinitePast(), absl::InfiniteFuture(),
                                              {"frontend.default", "reviews.default"});
  EXPECT_TRUE(absl::StrContains(edge, R"("name":"reviews")")) << edge;
  // Outside [from, to): nothing.
  EXPECT_EQ(events_.EventsJson(clock_.WallNow() + absl::Seconds(1), absl::InfiniteFuture(), {}),
            "[]");
}

TEST_F(ConfigEventsTest, BoundedByCountAndRetention) {
  for (int i = 1; i <= 5; ++i) events_.AddPush(i, 1);
  ASSERT_EQ(events_.events().size(), 3u);
  EXPECT_EQ(events_.events().front().revision, 3);
  clock_.Advance(std::chrono::hours(1) + std::chrono::seconds(1));
  events_.AddPush(6, 1);
  ASSERT_EQ(events_.events().size(), 1u);
  EXPECT_EQ(events_.events().front().revision, 6);
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry
