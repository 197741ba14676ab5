// Listeners: HTTP options, rate limits and authorization.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(TranslateTest, RequestIdGenerationCanBeTurnedOff) {
  ResourceSet set = Base();
  set.listeners.Mutable(0).mutable_http()->mutable_generate_request_id()->set_value(false);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_FALSE((*snapshot)->listeners[0].http.generate_request_id);
}

TEST(TranslateTest, Http2FloodLimits) {
  ResourceSet set = Base();
  set.listeners.Mutable(0).mutable_http()->set_max_outbound_control_frames(50);
  set.listeners.Mutable(0).mutable_http()->set_max_inbound_window_update_frames_per_data_frame_sent(
      3);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].http.max_outbound_control_frames, 50u);
  EXPECT_EQ((*snapshot)->listeners[0].http.max_inbound_window_update_frames_per_data_frame_sent,
            3u);
  set.listeners.Mutable(0).mutable_http()->set_max_outbound_control_frames(2u << 20);
  auto refused = BuildSnapshot(set);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("http.max_outbound_control_frames: must be at most 1048576"));
}

TEST(TranslateTest, ListenerRateLimit) {
  ResourceSet set = Base();
  set.listeners.Mutable(0).mutable_rate_limit()->set_requests_per_second(100);
  set.listeners.Mutable(0).mutable_rate_limit()->set_burst(7);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const config::ListenerConfig& listener = (*snapshot)->listeners[0];
  ASSERT_TRUE(listener.rate_limit.has_value());
  ASSERT_NE(listener.rate_limiter, nullptr);
  EXPECT_EQ(listener.rate_limiter->burst(), 7u);
  EXPECT_EQ(listener.rate_limiter->requests_per_second(), 100u);

  set.listeners.Mutable(0).mutable_rate_limit()->Clear();
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("rate_limit: needs requests_per_second or burst"));
}

TEST(TranslateTest, ListenerRateLimitPerPrincipal) {
  ResourceSet set = Base();
  xds::RateLimit* rl = set.listeners.Mutable(0).mutable_rate_limit();
  rl->set_requests_per_second(5);
  rl->set_per_principal(true);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const config::ListenerConfig& listener = (*snapshot)->listeners[0];
  ASSERT_NE(listener.rate_limiter, nullptr);
  ASSERT_NE(listener.rate_limiter->per_principal(), nullptr);
  EXPECT_EQ(listener.rate_limiter->per_principal()->config().max_principals, 1024u);
  EXPECT_EQ(listener.rate_limiter->burst(), 5u);

  rl->set_max_principals(10);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].rate_limiter->per_principal()->config().max_principals, 10u);

  rl->set_per_principal(false);
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("rate_limit.max_principals: only applies with per_principal: true"));
}

TEST(TranslateTest, ListenerAuthorization) {
  ResourceSet set = Base();
  xds::AuthorizationPolicy* allow =
      set.listeners.Mutable(0).mutable_authorization()->add_policies();
  allow->set_name("shop-only");
  xds::AuthorizationRule* rule = allow->add_rules();
  rule->add_principals("spiffe://cluster.local/ns/shop/sa/*");
  rule->add_ports(8080);
  rule->add_methods("GET");
  rule->add_paths("/api/*");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const config::ListenerConfig& listener = (*snapshot)->listeners[0];
  ASSERT_NE(listener.authorizer, nullptr);
  ASSERT_EQ(listener.authorization.policies.size(), 1u);
  EXPECT_EQ(listener.authorization.policies[0].action,
            filters::AuthorizationPolicyConfig::Action::kAllow);
  filters::AuthorizationRequest request{.peer_identity = "spiffe://cluster.local/ns/shop/sa/web",
                                        .port = 8080,
                                        .method = "GET",
                                        .path = "/api/items"};
  EXPECT_TRUE(listener.authorizer->Decide(request).allowed);
  request.peer_identity = "spiffe://cluster.local/ns/ops/sa/web";
  EXPECT_FALSE(listener.authorizer->Decide(request).allowed);

  // PROTOCOL_AUTO's TCP fallback is authorized per connection, on the destination port.
  ResourceSet with_fallback = set;
  with_fallback.listeners.Mutable(0).set_protocol(xds::PROTOCOL_AUTO);
  with_fallback.listeners.Mutable(0).set_tcp_cluster(with_fallback.clusters[0].name());
  with_fallback.listeners.Mutable(0).set_destination_port(8080);
  snapshot = BuildSnapshot(with_fallback);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].destination_port, 8080u);
  with_fallback.listeners.Mutable(0).set_destination_port(70000);
  snapshot = BuildSnapshot(with_fallback);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("listener \"outbound\": destination_port: must be at most 65535"));

  rule->add_principals("spiffe://cluster.local/*/sa/web");
  rule->add_principals("web");
  rule->add_namespaces("a/b");
  rule->add_ports(0);
  rule->add_methods("");
  rule->add_paths("api");
  allow->set_action(static_cast<xds::AuthorizationPolicy::Action>(9));
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  const std::string rule_path = "listener \"outbound\": authorization.policies[0].rules[0].";
  EXPECT_THAT(message, HasSubstr("authorization.policies[0].action: unknown value 9"));
  EXPECT_THAT(message, HasSubstr(rule_path + "principals[1]: \"spiffe://cluster.local/*/sa/web\" "
                                             "must be non-empty, with '*' only as its last"));
  EXPECT_THAT(message, HasSubstr(rule_path + "principals[2]: \"web\" is not a SPIFFE id"));
  EXPECT_THAT(message, HasSubstr(rule_path + "namespaces[0]: \"a/b\" must not contain '/'"));
  EXPECT_THAT(message, HasSubstr(rule_path + "ports[1]: must be 1 to 65535"));
  EXPECT_THAT(message, HasSubstr(rule_path + "methods[1]: \"\" is not an HTTP method"));
  EXPECT_THAT(message, HasSubstr(rule_path + "paths[1]: \"api\" must start with '/'"));
}
}  // namespace
}  // namespace meshlet::sidecar::config
