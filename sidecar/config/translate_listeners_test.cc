// Listeners: HTTP options, rate limits and authorization.
#include <algorithm>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"
#include "sidecar/route/route_table.h"
#include "sidecar/route/usage_cell.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using ::testing::HasSubstr;
using ::testing::Not;
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

TEST(TranslateTest, Http2AbuseLimits) {
  ResourceSet set = Base();
  {
    auto snapshot = BuildSnapshot(set);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    const HttpOptionsConfig& http = (*snapshot)->listeners[0].http;
    EXPECT_EQ(http.stream_reset_burst, 200u);
    EXPECT_EQ(http.stream_resets_per_second, 20u);
    EXPECT_EQ(http.stream_reset_min_lifetime, std::chrono::milliseconds(10));
    EXPECT_EQ(http.max_inbound_priority_frames_per_stream, 100u);
    EXPECT_EQ(http.max_consecutive_inbound_empty_frames, 1u);
    EXPECT_EQ(http.max_continuation_frames, 8u);
    EXPECT_EQ(http.connection_buffer_kb, 4096u);
    EXPECT_EQ(http.control_frame_burst, 1000u);
    EXPECT_EQ(http.control_frames_per_second, 100u);
    EXPECT_EQ(http.flood_drain_timeout, std::chrono::seconds(5));
    EXPECT_EQ(http.max_flood_drains, 64u);
  }
  auto* options = set.listeners.Mutable(0).mutable_http();
  options->mutable_stream_reset_burst()->set_value(0);  // zero is meaningful: off
  options->mutable_stream_resets_per_second()->set_value(5);
  options->mutable_stream_reset_min_lifetime()->set_seconds(1);
  options->set_max_inbound_priority_frames_per_stream(7);
  options->mutable_max_consecutive_inbound_empty_frames()->set_value(0);
  options->set_max_continuation_frames(3);
  options->set_connection_buffer_kb(512);
  options->mutable_control_frame_burst()->set_value(0);
  options->mutable_flood_drain_timeout()->set_seconds(0);  // an explicit 0s: no drain
  options->mutable_max_flood_drains()->set_value(0);       // an explicit 0: none drains
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const HttpOptionsConfig& http = (*snapshot)->listeners[0].http;
  EXPECT_EQ(http.stream_reset_burst, 0u);
  EXPECT_EQ(http.stream_resets_per_second, 5u);
  EXPECT_EQ(http.stream_reset_min_lifetime, std::chrono::seconds(1));
  EXPECT_EQ(http.max_inbound_priority_frames_per_stream, 7u);
  EXPECT_EQ(http.max_consecutive_inbound_empty_frames, 0u);
  EXPECT_EQ(http.max_continuation_frames, 3u);
  EXPECT_EQ(http.connection_buffer_kb, 512u);
  EXPECT_EQ(http.control_frame_burst, 0u);
  EXPECT_EQ(http.flood_drain_timeout, Duration::zero());
  EXPECT_EQ(http.max_flood_drains, 0u);
  options->mutable_flood_drain_timeout()->set_seconds(-1);
  auto negative = BuildSnapshot(set);
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(std::string(negative.status().message()),
              ::testing::HasSubstr("http.flood_drain_timeout"));
  options->mutable_flood_drain_timeout()->set_seconds(2);
  options->set_max_continuation_frames(5000);
  auto refused = BuildSnapshot(set);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("http.max_continuation_frames: must be at most 1024"));
}

TEST(TranslateTest, MinimumRequestBodyRate) {
  ResourceSet set = Base();
  auto* options = set.listeners.Mutable(0).mutable_http();
  options->set_min_request_body_bytes_per_second(500);
  auto refused = BuildSnapshot(set);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("http.min_request_body_bytes_per_second: needs "
                                   "request_body_timeout"));
  options->mutable_request_body_timeout()->set_seconds(20);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].http.request_body_timeout, std::chrono::seconds(20));
  EXPECT_EQ((*snapshot)->listeners[0].http.min_request_body_bytes_per_second, 500u);
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

// RequestAuthentication over xDS: the issuers' inline keys, token locations and outputs become
// the listener's JwtPolicy; a bad field is named.
TEST(TranslateTest, ListenerJwt) {
  ResourceSet set = Base();
  xds::JwtAuthentication* jwt = set.listeners.Mutable(0).mutable_jwt();
  xds::JwtIssuer* issuer = jwt->add_issuers();
  issuer->set_issuer("https://idp");
  issuer->add_audiences("shop");
  issuer->set_jwks(absl::StrCat(R"({"keys":[{"kty":"OKP","crv":"Ed25519","x":")",
                                std::string(43, 'A'), R"("}]})"));
  issuer->add_from_headers()->set_name("X-Token");
  xds::JwtClaimToHeader* claim = issuer->add_output_claim_to_headers();
  claim->set_claim("sub");
  claim->set_header("X-User");
  issuer->set_output_payload_to_header("x-jwt");
  jwt->mutable_clock_skew()->set_seconds(5);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const filters::JwtPolicy* policy = (*snapshot)->listeners[0].jwt.get();
  ASSERT_NE(policy, nullptr);
  ASSERT_NE(policy->verifier, nullptr);
  EXPECT_EQ(policy->verifier->issuer_name(0), "https://idp");
  ASSERT_EQ(policy->locations.size(), 1u);  // only the issuer's own location
  EXPECT_EQ(policy->locations[0].name, "x-token");
  EXPECT_EQ(policy->outputs[0].claim_to_headers[0].second, "x-user");
  EXPECT_THAT(policy->output_headers, testing::ElementsAre("x-user", "x-jwt"));

  // Keys not fetched yet: no jwks, the locations and output headers stay.
  std::string keys = issuer->jwks();
  issuer->clear_jwks();
  issuer->set_keys_unavailable(true);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  policy = (*snapshot)->listeners[0].jwt.get();
  EXPECT_EQ(policy->verifier->issuer_name(0), "https://idp");
  EXPECT_THAT(policy->output_headers, testing::ElementsAre("x-user", "x-jwt"));
  issuer->set_jwks(keys);
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("jwt.issuers[0].jwks: set, keys_unavailable too"));
  issuer->set_keys_unavailable(false);

  issuer->set_jwks(R"({"keys":[{"kty":"RSA","n":"a+b","e":"AQAB"}]})");
  claim->set_header("x user");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("jwt.issuers[0].jwks: keys[0].n: not a base64url string"));
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("jwt.issuers[0].output_claim_to_headers[0].header: not a header name"));
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

  // Hosts: the request's authority, read only when a rule names some.
  ResourceSet with_hosts = set;
  with_hosts.listeners.Mutable(0)
      .mutable_authorization()
      ->mutable_policies(0)
      ->mutable_rules(0)
      ->add_hosts("*.partner.example");
  snapshot = BuildSnapshot(with_hosts);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const filters::Authorizer& by_host = *(*snapshot)->listeners[0].authorizer;
  EXPECT_TRUE(by_host.reads_hosts());
  filters::AuthorizationRequest to_host{.peer_identity = "spiffe://cluster.local/ns/shop/sa/web",
                                        .port = 8080,
                                        .method = "GET",
                                        .path = "/api/items",
                                        .host = "api.partner.example:80"};
  EXPECT_TRUE(by_host.Decide(to_host).allowed);
  to_host.host = "api.other.example";
  EXPECT_FALSE(by_host.Decide(to_host).allowed);
  EXPECT_FALSE(listener.authorizer->reads_hosts());

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
  rule->add_hosts("API.example");
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
  EXPECT_THAT(message, HasSubstr(rule_path + "hosts[0]: \"API.example\" is not a lower-case"));
}

// The capture fields as the control plane sends them (docs/xds.md, "Capture listeners").
xds::Listener& CaptureListener(ResourceSet& set) {
  xds::Listener& listener = set.listeners.Mutable(0);
  listener = Parse<xds::Listener>(R"yaml(
name: outbound
address: 0.0.0.0:15001
protocol: PROTOCOL_HTTP
route_config_name: local
use_original_destination: true
destinations:
- {name: "db.shop:3306", addresses: [10.96.0.20], port: 3306, protocol: PROTOCOL_TCP,
   tcp_cluster: other}
- {name: "reviews.shop:9080", addresses: [240.240.0.1, "fd00:240::/64"], port: 9080,
   protocol: PROTOCOL_HTTP, route_config_name: local, destination_port: 9080}
- {name: "any-8080", port: 8080, protocol: PROTOCOL_AUTO, route_config_name: local,
   tcp_cluster: backend}
unmatched_destination: REFUSE
unmatched_destination_source: {kind: MeshConfig, name: mesh}
)yaml");
  return listener;
}

// A ServiceRoute with a capture destination (and no virtual host: a TCP port) joining "local".
xds::ServiceRoute TcpServiceRoute(const std::string& name, const std::string& destination_name,
                                  const std::string& address, uint32_t port) {
  xds::ServiceRoute out;
  out.set_name(name);
  out.set_route_config_name("local");
  xds::ListenerDestination* d = out.mutable_destination();
  d->set_name(destination_name);
  d->add_addresses(address);
  d->set_port(port);
  d->set_protocol(xds::PROTOCOL_TCP);
  d->set_tcp_cluster("other");
  return out;
}

TEST(TranslateTest, CaptureListenerServesServiceRouteDestinationsAfterItsOwn) {
  ResourceSet set = Base();
  CaptureListener(set);
  // Out of name order on purpose: they join in name order.
  set.service_routes.push_back(
      TcpServiceRoute("redis.shop:6379", "redis.shop:6379", "10.96.0.31", 6379));
  set.service_routes.push_back(
      TcpServiceRoute("mysql.shop:3306", "mysql.shop:3306", "10.96.0.30", 3306));
  xds::ServiceRoute http = TcpServiceRoute("reviews.shop:80", "reviews.shop:80", "10.96.0.5", 80);
  http.mutable_destination()->set_protocol(xds::PROTOCOL_HTTP);
  http.mutable_destination()->clear_tcp_cluster();
  http.mutable_destination()->set_route_config_name("local");
  set.service_routes.push_back(http);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  std::vector<std::string> names;
  for (const ListenerDestinationConfig& d : (*snapshot)->listeners[0].destinations) {
    names.push_back(d.name);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"db.shop:3306", "reviews.shop:9080", "any-8080",
                                      "mysql.shop:3306", "redis.shop:6379", "reviews.shop:80"}));
  const ListenerDestinationConfig& mysql = (*snapshot)->listeners[0].destinations[3];
  ASSERT_EQ(mysql.addresses.size(), 1u);
  EXPECT_EQ(mysql.addresses[0].ToString(), "10.96.0.30/32");
  EXPECT_EQ(mysql.port, 3306);
  EXPECT_EQ(mysql.protocol, ListenerProtocol::kTcp);
  EXPECT_EQ(mysql.tcp_cluster, "other");
  EXPECT_EQ((*snapshot)->listeners[0].destinations[5].route_config_name, "local");
  // A listener of the same routes that does not capture gets none.
  EXPECT_TRUE((*snapshot)->listeners[1].destinations.empty());

  // A destination name the listener has already, or a bad destination: refused by path.
  set.service_routes.push_back(TcpServiceRoute("db.shop:3306", "db.shop:3306", "10.96.0.20", 3306));
  set.service_routes.push_back(TcpServiceRoute("x.shop:1", "x.shop:1", "10.96.0.300", 1));
  auto refused = BuildSnapshot(set);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              HasSubstr("listener \"outbound\": service_route \"db.shop:3306\": "
                        "destination.name: \"db.shop:3306\" is already used by destinations[0]"));
  EXPECT_THAT(refused.status().message(),
              HasSubstr("service_route \"x.shop:1\": destination.addresses[0]: "));
}

TEST(TranslateTest, ServiceRouteUsageCellSharedByItsHostDestinationAndLaterSnapshots) {
  ResourceSet set = Base();
  CaptureListener(set);
  set.service_routes.push_back(
      TcpServiceRoute("redis.shop:6379", "redis.shop:6379", "10.96.0.31", 6379));
  xds::ServiceRoute http = TcpServiceRoute("reviews.shop:80", "reviews.shop:80", "10.96.0.5", 80);
  http.mutable_destination()->set_protocol(xds::PROTOCOL_HTTP);
  http.mutable_destination()->clear_tcp_cluster();
  http.mutable_destination()->set_route_config_name("local");
  *http.mutable_virtual_host() = Parse<xds::VirtualHost>(
      "name: \"reviews.shop:80\"\ndomains: [reviews]\n"
      "routes:\n- match: {prefix: /}\n  route: {cluster: other}\n");
  set.service_routes.push_back(http);
  auto first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  const route::UsageCell* reviews = ServiceRouteUsage(**first, "reviews.shop:80");
  const route::UsageCell* redis = ServiceRouteUsage(**first, "redis.shop:6379");
  ASSERT_NE(reviews, nullptr);
  ASSERT_NE(redis, nullptr);
  EXPECT_NE(reviews, redis);
  EXPECT_EQ(ServiceRouteUsage(**first, "ratings.shop:80"), nullptr);
  // The host the ServiceRoute joined its table with and its capture destination share the cell.
  const std::vector<ListenerDestinationConfig>& destinations = (*first)->listeners[0].destinations;
  auto destination = [&](const std::string& name) -> const ListenerDestinationConfig& {
    return *std::find_if(destinations.begin(), destinations.end(),
                         [&](const ListenerDestinationConfig& d) { return d.name == name; });
  };
  EXPECT_EQ(destination("reviews.shop:80").usage.get(), reviews);
  EXPECT_EQ(destination("redis.shop:6379").usage.get(), redis);
  EXPECT_EQ(destination("db.shop:3306").usage, nullptr);  // the listener's own: not tracked
  const route::RouteTable* table = (*first)->FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  const route::VirtualHostConfig* host = table->MatchVirtualHost("reviews");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->usage.get(), reviews);
  EXPECT_EQ(table->MatchVirtualHost("anything-else")->usage, nullptr);

  // Re-translated (its route changed) or not, a ServiceRoute keeps its cell, and so its use.
  set.service_routes.Mutable(1)
      .mutable_virtual_host()
      ->mutable_routes(0)
      ->mutable_route()
      ->set_cluster("backend");
  auto second = BuildSnapshot(set, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(ServiceRouteUsage(**second, "reviews.shop:80"), reviews);
  EXPECT_EQ(ServiceRouteUsage(**second, "redis.shop:6379"), redis);
  EXPECT_EQ((*second)->FindRouteTable("local")->MatchVirtualHost("reviews")->usage.get(), reviews);
}

TEST(TranslateTest, CaptureListener) {
  ResourceSet set = Base();
  CaptureListener(set);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const ListenerConfig& listener = (*snapshot)->listeners[0];
  EXPECT_TRUE(listener.use_original_destination);
  EXPECT_EQ(listener.unmatched_destination, UnmatchedDestination::kRefuse);
  // An object without a namespace is named "Kind/name".
  EXPECT_EQ(listener.unmatched_destination_source, "MeshConfig/mesh");
  EXPECT_EQ(listener.passthrough_host, std::nullopt);
  ASSERT_EQ(listener.destinations.size(), 3u);

  const ListenerDestinationConfig& db = listener.destinations[0];
  EXPECT_EQ(db.name, "db.shop:3306");
  ASSERT_EQ(db.addresses.size(), 1u);
  EXPECT_EQ(db.addresses[0].ToString(), "10.96.0.20/32");
  EXPECT_EQ(db.port, 3306);
  EXPECT_EQ(db.protocol, ListenerProtocol::kTcp);
  EXPECT_FALSE(db.is_http());
  EXPECT_EQ(db.tcp_cluster, "other");
  EXPECT_EQ(db.destination_port, 0u);

  const ListenerDestinationConfig& reviews = listener.destinations[1];
  ASSERT_EQ(reviews.addresses.size(), 2u);
  EXPECT_EQ(reviews.addresses[1].ToString(), "fd00:240::/64");
  EXPECT_EQ(reviews.protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(reviews.route_config_name, "local");
  EXPECT_EQ(reviews.destination_port, 9080u);

  const ListenerDestinationConfig& any = listener.destinations[2];
  EXPECT_TRUE(any.addresses.empty());
  EXPECT_EQ(any.protocol, ListenerProtocol::kAuto);
  EXPECT_EQ(any.tcp_cluster, "backend");

  // Every listener's port is one a capture listener refuses to pass through.
  std::vector<uint16_t> ports;
  for (const ListenerConfig& l : (*snapshot)->listeners) ports.push_back(l.address.port());
  std::sort(ports.begin(), ports.end());
  EXPECT_EQ(listener.sidecar_ports, ports);
  EXPECT_NE(std::find(ports.begin(), ports.end(), 15001), ports.end());

  // The other listeners capture nothing.
  EXPECT_FALSE((*snapshot)->listeners[1].use_original_destination);
  EXPECT_TRUE((*snapshot)->listeners[1].destinations.empty());
  EXPECT_TRUE((*snapshot)->listeners[1].sidecar_ports.empty());

  // The source goes with capture only.
  set.listeners.Mutable(1).mutable_unmatched_destination_source()->set_kind("MeshConfig");
  set.listeners.Mutable(1).mutable_unmatched_destination_source()->set_name("mesh");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("unmatched_destination_source: only with use_original_destination: "
                        "true"));
}

TEST(TranslateTest, CapturePassthroughHost) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  listener.set_unmatched_destination(xds::PASSTHROUGH);
  listener.set_passthrough_host("127.0.0.1");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].unmatched_destination, UnmatchedDestination::kPassthrough);
  ASSERT_TRUE((*snapshot)->listeners[0].passthrough_host.has_value());
  EXPECT_EQ((*snapshot)->listeners[0].passthrough_host->ToString(), "127.0.0.1");

  listener.set_passthrough_host("::1");
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].passthrough_host->ToString(), "::1");

  for (const char* bad : {"localhost", "127.0.0.1:8080", "10.0.0.0/8"}) {
    listener.set_passthrough_host(bad);
    snapshot = BuildSnapshot(set);
    ASSERT_FALSE(snapshot.ok()) << bad;
    EXPECT_THAT(std::string(snapshot.status().message()),
                HasSubstr(absl::StrCat("listener \"outbound\": passthrough_host: \"", bad,
                                       "\" is not an IP address")));
  }

  // REFUSE never connects anywhere.
  listener.set_passthrough_host("127.0.0.1");
  listener.set_unmatched_destination(xds::REFUSE);
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("listener \"outbound\": passthrough_host: only with "
                        "unmatched_destination: PASSTHROUGH"));
}

TEST(TranslateTest, CaptureAdditionalAddressesAndPassthroughConnectTimeout) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  listener.set_unmatched_destination(xds::PASSTHROUGH);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_TRUE((*snapshot)->listeners[0].additional_addresses.empty());
  EXPECT_EQ((*snapshot)->listeners[0].passthrough_connect_timeout, 1s);

  listener.add_additional_addresses("[::]:15001");
  listener.mutable_passthrough_connect_timeout()->set_seconds(5);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ((*snapshot)->listeners[0].additional_addresses.size(), 1u);
  EXPECT_EQ((*snapshot)->listeners[0].additional_addresses[0].ToString(), "[::]:15001");
  EXPECT_EQ((*snapshot)->listeners[0].passthrough_connect_timeout, 5s);

  // Each address is bound once, by one listener; port 0 would differ per address.
  listener.add_additional_addresses("0.0.0.0:15001");
  listener.add_additional_addresses("unix:/tmp/x.sock");
  listener.add_additional_addresses("[::1]:0");
  listener.add_additional_addresses("nowhere");
  listener.mutable_passthrough_connect_timeout()->set_seconds(0);
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  const std::string at = "listener \"outbound\": ";
  EXPECT_THAT(message, HasSubstr(at + "additional_addresses[1]: \"0.0.0.0:15001\" is the "
                                      "listener's address"));
  EXPECT_THAT(message, HasSubstr(at + "additional_addresses[2]: must be an IP address"));
  EXPECT_THAT(message, HasSubstr(at + "additional_addresses[3]: must name a port"));
  EXPECT_THAT(message, HasSubstr(at + "additional_addresses[4]: "));
  EXPECT_THAT(message, HasSubstr(at + "passthrough_connect_timeout: "));

  // Another listener's address: that listener, translated next, finds it taken.
  listener.clear_additional_addresses();
  listener.add_additional_addresses(set.listeners[1].address());
  listener.clear_passthrough_connect_timeout();
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("address: \"" + set.listeners[1].address() +
                        "\" is already used by listener \"outbound\""));

  // The timeout belongs to capture listeners.
  set = Base();
  set.listeners.Mutable(0).mutable_passthrough_connect_timeout()->set_seconds(2);
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("passthrough_connect_timeout: only with use_original_destination: true"));
}

TEST(TranslateTest, CaptureFieldsNeedUseOriginalDestination) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  listener.set_use_original_destination(false);
  listener.set_passthrough_host("127.0.0.1");
  auto snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  const std::string only = ": only with use_original_destination: true";
  // Destinations there match by server name alone: addresses and ports are capture's.
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": destinations[0].addresses" + only));
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": destinations[0].port" + only));
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": destinations[2].server_names: required "
                                 "without use_original_destination"));
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": unmatched_destination" + only));
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": passthrough_host" + only));
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": unmatched_destination_source" + only));

  // Without the capture fields it is an ordinary listener.
  listener.clear_destinations();
  listener.clear_unmatched_destination();
  listener.clear_unmatched_destination_source();
  listener.clear_passthrough_host();
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_FALSE((*snapshot)->listeners[0].use_original_destination);
}

// An east-west gateway's listener: TLS routed by its server name, without capture.
TEST(TranslateTest, DestinationsByServerName) {
  ResourceSet set = Base();
  xds::Listener& listener = set.listeners.Mutable(0);
  listener = Parse<xds::Listener>(R"yaml(
name: gateway
address: 0.0.0.0:15443
protocol: PROTOCOL_TCP
destinations:
- {name: "reviews.shop:9080", server_names: [9080.reviews.shop.meshlet.internal],
   protocol: PROTOCOL_TCP, tcp_cluster: other}
- {name: "any", server_names: ["*.shop.meshlet.internal", a.example], protocol: PROTOCOL_TCP,
   tcp_cluster: backend}
)yaml");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const ListenerConfig& out = (*snapshot)->listeners[0];
  EXPECT_FALSE(out.use_original_destination);
  ASSERT_EQ(out.destinations.size(), 2u);
  EXPECT_EQ(out.destinations[0].server_names,
            std::vector<std::string>{"9080.reviews.shop.meshlet.internal"});
  EXPECT_EQ(out.destinations[0].tcp_cluster, "other");
  EXPECT_EQ(out.destinations[1].server_names,
            (std::vector<std::string>{"*.shop.meshlet.internal", "a.example"}));

  // Names must be lower-case host names or *.suffix; a listener that terminates TLS cannot
  // read them; without capture each destination needs some.
  listener.mutable_destinations(0)->add_server_names("Upper.example");
  listener.mutable_destinations(0)->add_server_names("a.*.example");
  listener.mutable_destinations(1)->clear_server_names();
  listener.mutable_tls()->set_secret_name("cert");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  const std::string at = "listener \"gateway\": destinations";
  EXPECT_THAT(message, HasSubstr(at + "[0].server_names[1]: \"Upper.example\" is not a "
                                      "lower-case host name or *.suffix"));
  EXPECT_THAT(message, HasSubstr(at + "[0].server_names[2]: \"a.*.example\" is not"));
  EXPECT_THAT(message, HasSubstr(at + "[0].server_names: not with Listener.tls"));
  EXPECT_THAT(message, HasSubstr(at + "[1].server_names: required without "
                                      "use_original_destination"));
}

// Plain HTTP to external services routed by the Host of the first request (ADR 0108).
TEST(TranslateTest, CaptureDestinationsByHttpHost) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  *listener.add_destinations() = Parse<xds::ListenerDestination>(R"yaml(
{name: partner, port: 80, http_hosts: [api.partner.example, "*.cdn.example"],
 protocol: PROTOCOL_HTTP1, route_config_name: local}
)yaml");
  *listener.add_destinations() = Parse<xds::ListenerDestination>(R"yaml(
{name: partner-http, port: 8080, http_hosts: [b.example], protocol: PROTOCOL_HTTP,
 route_config_name: local}
)yaml");
  *listener.add_destinations() = Parse<xds::ListenerDestination>(R"yaml(
{name: partner-as-is, port: 80, http_hosts: [c.example], protocol: PROTOCOL_TCP, passthrough: true}
)yaml");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const ListenerConfig& out = (*snapshot)->listeners[0];
  ASSERT_EQ(out.destinations.size(), 6u);
  EXPECT_TRUE(out.destinations[0].http_hosts.empty());
  EXPECT_EQ(out.destinations[3].http_hosts,
            (std::vector<std::string>{"api.partner.example", "*.cdn.example"}));
  EXPECT_EQ(out.destinations[3].protocol, ListenerProtocol::kHttp1);
  EXPECT_EQ(out.destinations[3].route_config_name, "local");
  EXPECT_EQ(out.destinations[4].http_hosts, std::vector<std::string>{"b.example"});
  EXPECT_EQ(out.destinations[4].protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(out.destinations[5].http_hosts, std::vector<std::string>{"c.example"});
  EXPECT_TRUE(out.destinations[5].passthrough);

  // Names as for server_names; never with server_names; protocols that read HTTP/1 (or pass it
  // through); no listener TLS.
  xds::ListenerDestination* partner = listener.mutable_destinations(3);
  partner->add_http_hosts("Upper.example");
  partner->add_http_hosts("a.*.example");
  partner->add_http_hosts("a.example:80");
  partner->add_server_names("tls.example");
  partner->set_protocol(xds::PROTOCOL_HTTP2);
  listener.mutable_destinations(4)->set_protocol(xds::PROTOCOL_AUTO);
  xds::ListenerDestination* to_cluster = listener.add_destinations();
  *to_cluster = Parse<xds::ListenerDestination>(R"yaml(
{name: to-cluster, port: 80, http_hosts: [d.example], protocol: PROTOCOL_TCP, tcp_cluster: other}
)yaml");
  listener.mutable_tls()->set_secret_name("cert");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  const std::string at = "listener \"outbound\": destinations";
  EXPECT_THAT(message, HasSubstr(at + "[3].http_hosts[2]: \"Upper.example\" is not a "
                                      "lower-case host name or *.suffix"));
  EXPECT_THAT(message, HasSubstr(at + "[3].http_hosts[3]: \"a.*.example\" is not"));
  EXPECT_THAT(message, HasSubstr(at + "[3].http_hosts[4]: \"a.example:80\" is not"));
  EXPECT_THAT(message, HasSubstr(at + "[3].http_hosts: not with server_names"));
  EXPECT_THAT(message, HasSubstr(at + "[3].http_hosts: not with protocol HTTP2: needs protocol "
                                      "HTTP1 or HTTP (with route_config_name), or TCP with "
                                      "passthrough"));
  EXPECT_THAT(message, HasSubstr(at + "[3].http_hosts: not with Listener.tls"));
  EXPECT_THAT(message, HasSubstr(at + "[4].http_hosts: not with protocol AUTO: needs"));
  EXPECT_THAT(message, HasSubstr(at + "[6].http_hosts: not with protocol TCP without passthrough: "
                                      "needs"));
  EXPECT_THAT(message, Not(HasSubstr(at + "[5].http_hosts: not with protocol")));

  // Only on capture listeners.
  set = Base();
  xds::Listener& plain = set.listeners.Mutable(0);
  plain = Parse<xds::Listener>(R"yaml(
name: gateway
address: 0.0.0.0:15443
protocol: PROTOCOL_TCP
destinations:
- {name: a, server_names: [a.example], http_hosts: [a.example], protocol: PROTOCOL_TCP,
   tcp_cluster: other}
)yaml");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("listener \"gateway\": destinations[0].http_hosts: only with "
                        "use_original_destination: true"));
}

TEST(TranslateTest, CaptureDestinationErrorsNameTheField) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  xds::ListenerDestination* db = listener.mutable_destinations(0);
  db->add_addresses("10.0.0.1/8");
  db->add_addresses("reviews");
  db->set_port(70000);
  db->set_route_config_name("local");
  db->set_destination_port(65536);
  xds::ListenerDestination* reviews = listener.mutable_destinations(1);
  reviews->set_name("db.shop:3306");
  reviews->set_route_config_name("nowhere");
  reviews->set_tcp_cluster("backend");
  xds::ListenerDestination* any = listener.mutable_destinations(2);
  any->set_name("");
  any->set_tcp_cluster("missing");
  xds::ListenerDestination* extra = listener.add_destinations();
  extra->set_name("bad name");
  extra->set_protocol(static_cast<xds::ListenerProtocol>(9));
  xds::ListenerDestination* tcp = listener.add_destinations();
  tcp->set_name("tcp");
  tcp->set_protocol(xds::PROTOCOL_TCP);
  xds::ListenerDestination* http = listener.add_destinations();
  http->set_name("http");
  http->set_protocol(xds::PROTOCOL_HTTP1);
  listener.set_unmatched_destination(static_cast<xds::UnmatchedDestination>(7));

  auto snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  const std::string at = "listener \"outbound\": destinations";
  EXPECT_THAT(message, HasSubstr(at + "[0].addresses[1]: \"10.0.0.1/8\" has bits set past the "
                                      "prefix length; the range is 10.0.0.0/8"));
  EXPECT_THAT(message, HasSubstr(at + "[0].addresses[2]: \"reviews\" is not an address range"));
  EXPECT_THAT(message, HasSubstr(at + "[0].port: must be at most 65535"));
  EXPECT_THAT(
      message,
      HasSubstr(at + "[0].route_config_name: not used with protocol TCP (use tcp_cluster)"));
  EXPECT_THAT(message, HasSubstr(at + "[0].destination_port: must be at most 65535"));
  EXPECT_THAT(message,
              HasSubstr(at + "[1].name: \"db.shop:3306\" is already used by destinations[0]"));
  EXPECT_THAT(message, HasSubstr(at + "[1]: route_config_name \"nowhere\" names no "
                                      "RouteConfiguration"));
  EXPECT_THAT(message, HasSubstr(at + "[1].tcp_cluster: not used with protocol HTTP"));
  EXPECT_THAT(message, HasSubstr(at + "[2].name: must not be empty"));
  EXPECT_THAT(message, HasSubstr(at + "[2]: tcp_cluster \"missing\" names no Cluster"));
  EXPECT_THAT(message, HasSubstr(at + "[3].name: must not contain spaces or control characters"));
  EXPECT_THAT(message, HasSubstr(at + "[3].protocol: unknown value 9"));
  EXPECT_THAT(message, HasSubstr(at + "[4].tcp_cluster: required with protocol TCP"));
  EXPECT_THAT(message, HasSubstr(at + "[5].route_config_name: required with protocol HTTP1"));
  EXPECT_THAT(message, HasSubstr("listener \"outbound\": unmatched_destination: unknown value 7"));
}

TEST(TranslateTest, CaptureListenerOnDemand) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  {
    auto snapshot = BuildSnapshot(set);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    EXPECT_FALSE((*snapshot)->listeners[0].on_demand.has_value());  // absent: never waits
  }
  xds::OnDemand* on_demand = listener.mutable_on_demand();
  on_demand->add_address_ranges("10.96.0.0/12");
  on_demand->add_address_ranges("fd00::/108");
  on_demand->set_hosts(true);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_TRUE((*snapshot)->listeners[0].on_demand.has_value());
  const OnDemandConfig& config = *(*snapshot)->listeners[0].on_demand;
  ASSERT_EQ(config.address_ranges.size(), 2u);
  EXPECT_EQ(config.address_ranges[0].ToString(), "10.96.0.0/12");
  EXPECT_EQ(config.address_ranges[1].ToString(), "fd00::/108");
  EXPECT_TRUE(config.hosts);
  EXPECT_EQ(config.timeout, 1s);  // the defaults
  EXPECT_EQ(config.idle_time, 15min);
  EXPECT_EQ(config.missing_ttl, 30s);
  EXPECT_TRUE(config.WaitsFor(*net::IpAddress::Parse("10.100.3.4")));
  EXPECT_TRUE(config.WaitsFor(*net::IpAddress::Parse("fd00::5")));
  EXPECT_FALSE(config.WaitsFor(*net::IpAddress::Parse("10.112.0.1")));
  EXPECT_FALSE(config.WaitsFor(*net::IpAddress::Parse("192.168.1.1")));

  on_demand->mutable_timeout()->set_nanos(250'000'000);
  on_demand->mutable_idle_time()->set_seconds(60);
  on_demand->mutable_missing_ttl()->set_seconds(5);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners[0].on_demand->timeout, 250ms);
  EXPECT_EQ((*snapshot)->listeners[0].on_demand->idle_time, 60s);
  EXPECT_EQ((*snapshot)->listeners[0].on_demand->missing_ttl, 5s);
  // The bounds are inclusive.
  on_demand->mutable_timeout()->set_nanos(10'000'000);
  ASSERT_TRUE(BuildSnapshot(set).ok());
  on_demand->mutable_timeout()->set_nanos(0);
  on_demand->mutable_timeout()->set_seconds(30);
  ASSERT_TRUE(BuildSnapshot(set).ok());
}

TEST(TranslateTest, OnDemandErrorsNameTheField) {
  ResourceSet set = Base();
  xds::Listener& listener = CaptureListener(set);
  xds::OnDemand* on_demand = listener.mutable_on_demand();
  on_demand->add_address_ranges("10.96.0.0/12");
  on_demand->add_address_ranges("10.96.0.1/12");
  on_demand->add_address_ranges("reviews");
  on_demand->mutable_timeout()->set_seconds(31);
  on_demand->mutable_idle_time()->set_seconds(9);
  on_demand->mutable_missing_ttl()->set_seconds(-1);
  auto snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  std::string message(snapshot.status().message());
  const std::string at = "listener \"outbound\": on_demand.";
  EXPECT_THAT(message, HasSubstr(at + "address_ranges[1]: \"10.96.0.1/12\" has bits set past the "
                                      "prefix length; the range is 10.96.0.0/12"));
  EXPECT_THAT(message, HasSubstr(at + "address_ranges[2]: \"reviews\" is not an address range"));
  EXPECT_THAT(message, HasSubstr(at + "timeout: must be 10ms to 30s"));
  EXPECT_THAT(message, HasSubstr(at + "idle_time: must be at least 10s"));
  EXPECT_THAT(message, HasSubstr(at + "missing_ttl: "));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("address_ranges[0]")));

  // Shorter than 10ms is refused too; address ranges go with capture only.
  on_demand->clear_address_ranges();
  on_demand->mutable_timeout()->set_seconds(0);
  on_demand->mutable_timeout()->set_nanos(9'000'000);
  on_demand->clear_idle_time();
  on_demand->clear_missing_ttl();
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr(at + "timeout: must be 10ms to 30s"));
  on_demand->clear_timeout();
  xds::OnDemand* plain = set.listeners.Mutable(1).mutable_on_demand();
  plain->add_address_ranges("10.96.0.0/12");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  message = std::string(snapshot.status().message());
  EXPECT_THAT(message, HasSubstr("on_demand.address_ranges: only with use_original_destination: "
                                 "true"));
  // Hosts alone are fine on a listener that serves HTTP.
  plain->clear_address_ranges();
  plain->set_hosts(true);
  snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_TRUE((*snapshot)->listeners[1].on_demand->hosts);
}

}  // namespace
}  // namespace meshlet::sidecar::config
