// One request through the connection manager (active_stream.h), over a real socket with a raw
// HTTP/1.1 (or hand-framed HTTP/2) client: the filter chain's order (authorization, rate limits,
// fault injection, the route timeout armed before the route-level filters), the stream idle
// timeout, refused destinations, and what a request leaves behind — access-log line, durations,
// response flags, server and client spans, the traceparent sent upstream.

#include "sidecar/listener/active_stream.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/http/cors_origin.h"
#include "gtest/gtest.h"
#include "sidecar/listener/http_connection_manager_test_util.h"
#include "sidecar/stream/decision_ring.h"

namespace meshlet::sidecar::listener {
namespace {

// Requests through the connection manager's fixture.
class ActiveStreamTest : public HttpConnectionManagerTest {
 protected:
  // A worker sampling nothing whose proxy, "web-0.shop", attributes its errors.
  std::unique_ptr<SteppedWorker> Unsampled(std::shared_ptr<const config::Snapshot> snapshot) {
    auto worker = std::make_unique<SteppedWorker>(*this, std::move(snapshot),
                                                  /*span_per_attempt=*/false,
                                                  /*sampling_percent=*/0);
    worker->context.error_header = "x-meshlet-error";
    worker->context.node_name = "web-0.shop";
    return worker;
  }
  // A cluster `name` of one endpoint at `address`.
  static std::shared_ptr<ClusterConfig> OneEndpoint(const std::string& name,
                                                    const net::Address& address) {
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = name;
    EndpointConfig endpoint;
    endpoint.address = address;
    cluster->endpoints.push_back(endpoint);
    return cluster;
  }
  // The span id a request's traceparent names (its receiver's parent); "" without one.
  static std::string ToldSpanId(const http::ServerRequest& request) {
    const std::vector<std::string> fields =
        absl::StrSplit(request.headers.Get("traceparent").value_or(""), '-');
    return fields.size() == 4 ? fields[2] : "";
  }
  static std::string Hex(uint64_t id) {
    char hex[16];
    tracing::FormatHex64(id, hex);
    return std::string(hex, sizeof(hex));
  }
};

TEST_F(ActiveStreamTest, StreamIdleTimeoutAnswers408AndResetsUpstream) {
  listener_config_.http.stream_idle_timeout = milliseconds(100);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(
      loop_.RunUntil([&] { return absl::StrContains(client.received, "\r\n\r\n"); }, seconds(5)));
  EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 408")) << client.received;
  ASSERT_EQ(log_.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"SI\"")) << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"route_name\":\"hang\"")) << log_.lines[0];
  // The duration, in milliseconds and in microseconds: about the idle timeout (its timer runs on
  // the loop's millisecond clock).
  auto field = [&](absl::string_view name) -> int64_t {
    const std::string key = absl::StrCat("\"", name, "\":");
    const size_t at = log_.lines[0].find(key);
    if (at == std::string::npos) return -1;
    int64_t value = -1;
    const std::string rest = log_.lines[0].substr(at + key.size());
    EXPECT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find_first_of(",}")), &value)) << rest;
    return value;
  };
  const int64_t duration_us = field("duration_us");
  EXPECT_GE(duration_us, 90000) << log_.lines[0];
  EXPECT_LT(duration_us, 5000000) << log_.lines[0];
  EXPECT_EQ(field("duration_ms"), duration_us / 1000) << log_.lines[0];
  EXPECT_EQ(clusters_.Find("silent")->thresholds().Active(resilience::ResourceKind::kRequest), 0u);
}

TEST_F(ActiveStreamTest, StreamIdleTimeoutCountsFromEachStreamsOwnActivity) {
  // One timer per connection serves every stream: a stream started while it is armed for an
  // earlier stream still gets its whole timeout.
  listener_config_.http.stream_idle_timeout = milliseconds(300);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return absl::EndsWith(client.received, "ok"); }, seconds(5)));
  loop_.RunUntil([] { return false; }, milliseconds(200));
  client.received.clear();
  const auto start = std::chrono::steady_clock::now();
  c->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(
      loop_.RunUntil([&] { return absl::StrContains(client.received, "\r\n\r\n"); }, seconds(5)));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 408")) << client.received;
  // libuv time has millisecond granularity, hence the slack.
  EXPECT_GE(elapsed, milliseconds(290));
  EXPECT_LT(elapsed, seconds(3));
}

TEST_F(ActiveStreamTest, ClientGoingAwayMidRequestIsLoggedAsDownstreamClosed) {
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return !held_.empty(); }, seconds(5)));
  c->Close(net::CloseMode::kAbort);
  ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"DC\"")) << log_.lines[0];
  EXPECT_EQ(clusters_.Find("silent")->thresholds().Active(resilience::ResourceKind::kRequest), 0u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "DC"}}), 1u);
}

// RequestAuthentication runs first: a refused token gets 401 with the reason (never the token)
// in x-meshlet-error and www-authenticate, before authorization or routing; no token passes.
TEST_F(ActiveStreamTest, AnInvalidJwtGets401BeforeAuthorization) {
  context_.error_header = "x-meshlet-error";
  context_.node_name = "web-0.shop";
  auto verifier = filters::JwtVerifier::Create(
      {.issuers = {{.issuer = "https://idp",
                    .jwks = absl::StrCat(R"({"keys":[{"kty":"OKP","crv":"Ed25519","x":")",
                                         std::string(43, 'A'), R"("}]})")}}});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  auto jwt = std::make_shared<filters::JwtPolicy>();
  jwt->verifier = std::move(*verifier);
  jwt->locations = filters::DefaultJwtTokenLocations();
  jwt->outputs.resize(1);
  listener_config_.jwt = std::move(jwt);
  auto get = [&](absl::string_view extra) {
    net::testing::RecordingCallbacks client;
    auto c = Connect(client);
    c->Write(
        absl::StrCat("GET /direct HTTP/1.1\r\nhost: x\r\n", extra, "connection: close\r\n\r\n"));
    EXPECT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
    return client.received;
  };
  const std::string refused = get("authorization: Bearer eyJhbGciOiJub25lIn0.e30.\r\n");
  EXPECT_TRUE(absl::StartsWith(refused, "HTTP/1.1 401")) << refused;
  EXPECT_TRUE(absl::StrContains(refused, "www-authenticate: Bearer error=\"invalid_token\""));
  EXPECT_TRUE(absl::StrContains(
      refused, "x-meshlet-error: web-0.shop; flag=UA; reason=Jwt algorithm is not accepted"))
      << refused;
  EXPECT_FALSE(absl::StrContains(refused, "eyJhbGciOiJub25lIn0")) << refused;
  EXPECT_TRUE(absl::StartsWith(get(""), "HTTP/1.1 200"));
  EXPECT_EQ(Counter("meshlet_http_jwt_total", {{"outcome", "unsupported_alg"}}), 1u);
  EXPECT_EQ(Counter("meshlet_http_jwt_total", {{"outcome", "missing"}}), 1u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "UA"}}), 1u);
}

TEST_F(ActiveStreamTest, AuthorizationDeniesBeforeRouting) {
  filters::AuthorizationRuleConfig web_reads;
  web_reads.principals = {"spiffe://td/ns/shop/sa/*"};
  web_reads.paths = {"/direct"};
  filters::AuthorizationPolicyConfig allow{.name = "shop-reads", .rules = {web_reads}};
  listener_config_.authorizer = std::make_shared<const filters::Authorizer>(
      filters::AuthorizationConfig{.policies = {allow}});
  auto get = [&](absl::string_view path) {
    net::testing::RecordingCallbacks client;
    auto c = Connect(client);
    c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"));
    EXPECT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
    return client.received;
  };

  hcm_options_.peer_identity = "spiffe://td/ns/shop/sa/web";
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 200"));
  // Denied before routing: /missing would be 404 (NR) if it were routed.
  EXPECT_TRUE(absl::StartsWith(get("/missing"), "HTTP/1.1 403"));
  hcm_options_.peer_identity = "spiffe://td/ns/ops/sa/web";
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 403"));
  hcm_options_.peer_identity.clear();  // plaintext: no identity
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 403"));

  EXPECT_EQ(Counter("meshlet_http_rbac_allowed_total"), 1u);
  EXPECT_EQ(Counter("meshlet_http_rbac_denied_total"), 3u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "AZ"}}), 3u);
  ASSERT_EQ(log_.lines.size(), 4u);
  EXPECT_TRUE(absl::StrContains(log_.lines[1], "\"response_flags\":\"AZ\"")) << log_.lines[1];
  EXPECT_TRUE(absl::StrContains(log_.lines[1], "\"response_code\":403")) << log_.lines[1];
}

// Decision records: an unsampled request the proxy refused goes into the worker's ring, naming
// the AuthorizationPolicy that denied it; an unsampled request that succeeded does not.
TEST_F(ActiveStreamTest, ADenialNamesItsAuthorizationPolicyInTheDecisionRing) {
  filters::AuthorizationRuleConfig admin;
  admin.paths = {"/admin*"};
  filters::AuthorizationRuleConfig anyone;
  filters::AuthorizationPolicyConfig deny{
      .name = "shop/no-admin",
      .action = filters::AuthorizationPolicyConfig::Action::kDeny,
      .rules = {admin},
      .source = "AuthorizationPolicy/shop/no-admin"};
  filters::AuthorizationPolicyConfig allow{
      .name = "shop/all", .rules = {anyone}, .source = "AuthorizationPolicy/shop/all"};
  listener_config_.authorizer = std::make_shared<const filters::Authorizer>(
      filters::AuthorizationConfig{.policies = {deny, allow}});
  stream::DecisionRing ring(8, 0, *shard_->RegisterCounter("meshlet_t_records_total", "h"),
                            *shard_->RegisterCounter("meshlet_t_overwritten_total", "h"),
                            *shard_->RegisterCounter("meshlet_t_dropped_total", "h"));
  context_.decisions = &ring;
  const auto get = [&](absl::string_view path, absl::string_view id) {
    return Exchange(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\nx-request-id: ", id,
                                 "\r\nconnection: close\r\n\r\n"))
        .first;
  };
  EXPECT_TRUE(absl::StartsWith(get("/direct", "ok-1"), "HTTP/1.1 200"));
  EXPECT_TRUE(absl::StartsWith(get("/admin/x", "denied-1"), "HTTP/1.1 403"));
  context_.decisions = nullptr;
  EXPECT_EQ(Counter("meshlet_t_records_total"), 1u);
  std::string json;
  bool first = true;
  ring.AppendJson("", "", &json, &first);
  EXPECT_TRUE(absl::StrContains(json, "\"request_id\":\"denied-1\"")) << json;
  EXPECT_FALSE(absl::StrContains(json, "ok-1")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"meshlet.authz\":\"deny\"")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"meshlet.listener.direction\":\"outbound\"")) << json;
  EXPECT_TRUE(
      absl::StrContains(json, "\"meshlet.policy.authz\":\"AuthorizationPolicy/shop/no-admin\""))
      << json;
  EXPECT_TRUE(absl::StrContains(json, "\"meshlet.error.reason\":\"RBAC: access denied\"")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"meshlet.response_flags\":\"AZ\"")) << json;
  // Its time, though no access log recorded the stream's start: not the Unix epoch.
  const size_t at = json.find("\"time_unix_nano\":");
  ASSERT_NE(at, std::string::npos) << json;
  int64_t time_unix_nano = 0;
  ASSERT_TRUE(absl::SimpleAtoi(json.substr(at + 17, json.find_first_of(",}", at + 17) - (at + 17)),
                               &time_unix_nano))
      << json;
  EXPECT_GT(time_unix_nano, absl::ToUnixNanos(absl::Now() - absl::Minutes(1))) << json;
}

// A sampled request's server span carries its decision record: the route's and cluster's policy
// sources, the ALLOW policy that let it in, and its attempt.
TEST_F(ActiveStreamTest, ASampledRequestsSpanCarriesItsDecisionRecord) {
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {},
      [](const http::ServerRequest&) { return http::ServerResponse::Text(200, "ok"); });
  ASSERT_TRUE(upstream.ok()) << upstream.status();
  auto cluster = OneEndpoint("up", (*upstream)->address());
  cluster->traffic_policy = "TrafficPolicy/shop/up";
  cluster->subset = "version=v2";
  auto snapshot = std::make_shared<config::Snapshot>(*RoutesTo({{"/up", "up"}}, {cluster}));
  route::RouteConfig routes = snapshot->route_tables["routes"]->config();
  routes.virtual_hosts[0].routes[0].source = "GRPCRoute/shop/up";
  routes.virtual_hosts[0].routes[0].source_rule = 0;
  routes.virtual_hosts[0].routes[0].source_match = -1;
  snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
  filters::AuthorizationRuleConfig anyone;
  listener_config_.authorizer =
      std::make_shared<const filters::Authorizer>(filters::AuthorizationConfig{
          .policies = {
              {.name = "shop/all", .rules = {anyone}, .source = "AuthorizationPolicy/shop/all"}}});
  SteppedWorker worker(*this, snapshot, /*span_per_attempt=*/false);
  hcm_context_ = &worker.context;
  const std::string response =
      Exchange("GET /up HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
  ASSERT_EQ(worker.sink.spans.size(), 1u);
  const tracing::Span& span = worker.sink.spans[0];
  EXPECT_EQ(span.policy_route, "GRPCRoute/shop/up");
  EXPECT_EQ(span.route_rule, 0);
  EXPECT_EQ(span.route_match, -1);
  EXPECT_EQ(span.policy_traffic, "TrafficPolicy/shop/up");
  EXPECT_EQ(span.subset, "version=v2");
  EXPECT_EQ(span.authz, "allow");
  EXPECT_EQ(span.policy_authz, "AuthorizationPolicy/shop/all");
  EXPECT_EQ(span.direction, "outbound");  // the listener's, whatever its authorization
  EXPECT_TRUE(absl::StartsWith(
      span.attempts,
      absl::StrCat("endpoint=", (*upstream)->address().ToString(), " outcome=200 duration_ms=")))
      << span.attempts;
  // Its one attempt's span id, which the folded server span took.
  EXPECT_TRUE(absl::EndsWith(span.attempts, " next=done span_id=" + Hex(span.span_id)))
      << span.attempts;
}

// The chain's order at the listener level: authorization before the listener's rate limit, so
// a denied request spends no token.
TEST_F(ActiveStreamTest, DeniedRequestsSpendNoRateLimitToken) {
  listener_config_.authorizer = DenyPath("/denied");
  listener_config_.rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 0, .burst = 1}, std::nullopt);
  auto get = [&](absl::string_view path) {
    return Exchange(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"))
        .first;
  };

  EXPECT_TRUE(absl::StartsWith(get("/denied"), "HTTP/1.1 403"));
  EXPECT_TRUE(absl::StartsWith(get("/denied"), "HTTP/1.1 403"));
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 200"));  // the one token
  const std::string limited = get("/direct");
  EXPECT_TRUE(absl::StartsWith(limited, "HTTP/1.1 429")) << limited;
  EXPECT_TRUE(absl::StrContains(limited, "retry-after: 3600")) << limited;
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "AZ"}}), 2u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "RL"}}), 1u);
}

// A route whose faults requests may trigger by header, to the cluster that never answers, with a
// route timeout of `timeout`.
std::shared_ptr<const config::Snapshot> FaultRoute(const config::Snapshot& base, Duration timeout) {
  auto snapshot = std::make_shared<config::Snapshot>(base);
  route::RouteConfig routes;
  routes.name = "routes";
  route::VirtualHostConfig vhost;
  vhost.name = "all";
  vhost.domains = {"*"};
  route::RouteEntry faulty;
  faulty.name = "faulty";
  faulty.match.path = "/";
  faulty.extras.mut().fault_header_triggered = true;
  route::RouteAction action;
  action.cluster = "silent";
  action.timeout = timeout;
  faulty.action = action;
  vhost.routes.push_back(faulty);
  routes.virtual_hosts.push_back(vhost);
  snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
  return snapshot;
}

// A fault delay holds the request (and its body) in the chain; the route timeout, armed before
// the route-level filters, keeps running and ends the request during the delay.
TEST_F(ActiveStreamTest, FaultDelayCountsAgainstTheRouteTimeout) {
  context_.snapshot = FaultRoute(*context_.snapshot, milliseconds(100));
  const auto [received, elapsed] = Exchange(
      "POST /slow HTTP/1.1\r\nhost: x\r\nx-meshlet-fault-delay-ms: 5000\r\n"
      "content-length: 4\r\nconnection: close\r\n\r\nbody");
  EXPECT_LT(elapsed, seconds(2));
  EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 504")) << received;
  ASSERT_EQ(log_.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"UT,DI\"")) << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"bytes_received\":4")) << log_.lines[0];
}

// A delayed request continues through the chain when its delay ends: here to the fault's abort.
TEST_F(ActiveStreamTest, DelayedRequestMeetsItsAbortWhenTheDelayEnds) {
  context_.snapshot = FaultRoute(*context_.snapshot, Duration(0));
  const auto [received, elapsed] = Exchange(
      "POST /x HTTP/1.1\r\nhost: x\r\nx-meshlet-fault-delay-ms: 50\r\n"
      "x-meshlet-fault-abort: 418\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody");
  EXPECT_GE(elapsed, milliseconds(45));
  EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 418")) << received;
  EXPECT_TRUE(absl::StrContains(received, "fault injected\n")) << received;
  ASSERT_EQ(log_.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"FI,DI\"")) << log_.lines[0];
}

// A capture listener's connection to a destination the mesh does not know, under REFUSE: every
// request gets a local 502 naming the destination, flagged NM, and nothing is routed.
TEST_F(ActiveStreamTest, RefusedDestinationAnswers502WithNM) {
  hcm_options_.refuse = true;
  hcm_options_.original_destination = "203.0.113.7:80";
  const std::string response =
      Exchange("GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 502")) << response;
  EXPECT_TRUE(absl::StrContains(response, "destination 203.0.113.7:80 is not in the mesh registry"))
      << response;
  ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"NM\"")) << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"original_destination\":\"203.0.113.7:80\""))
      << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"path\":\"/direct\"")) << log_.lines[0];
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "NM"}}), 1u);
}

// A request answered within the loop turn its headers arrived in (a direct response, a local
// reply for a cluster without hosts) still took time: the worker's clock reads the time once per
// turn for everything else, but a request's start and end are read exactly, so its access-log
// duration, its duration histograms (downstream and the cluster's golden metrics) and its
// server span all show it.
TEST_F(ActiveStreamTest, LocalRepliesAfterRoutingCarryTheRoutesCorsHeaders) {
  auto empty = std::make_shared<ClusterConfig>();
  empty->name = "empty";
  auto cors = std::make_shared<route::CorsPolicy>();
  cors->allow_origins.push_back(*http::ParseOriginPattern("https://app.example"));
  cors->expose_headers = "x-request-id";
  context_.snapshot = RoutesTo({{"/no-hosts", "empty"}}, {empty},
                               [&](route::RouteEntry& r) { r.extras.mut().cors = cors; });
  auto get = [&](absl::string_view origin) {
    return Exchange(absl::StrCat("GET /no-hosts HTTP/1.1\r\nhost: x\r\n",
                                 origin.empty() ? "" : absl::StrCat("origin: ", origin, "\r\n"),
                                 "connection: close\r\n\r\n"))
        .first;
  };
  // No healthy upstream: the router's 503, readable by the page of an allowed origin.
  std::string response = get("https://app.example");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 503")) << response;
  EXPECT_TRUE(absl::StrContains(response, "access-control-allow-origin: https://app.example"))
      << response;
  EXPECT_TRUE(absl::StrContains(response, "access-control-expose-headers: x-request-id"))
      << response;
  EXPECT_TRUE(absl::StrContains(response, "vary: Origin")) << response;
  // Another origin, or none: the same reply without them.
  for (absl::string_view origin : {"https://evil.example", ""}) {
    response = get(origin);
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 503")) << response;
    EXPECT_FALSE(absl::StrContains(response, "access-control-")) << origin << ": " << response;
  }
  // Before routing (no route for the path) nothing is known of a policy.
  response = Exchange(
                 "GET /nowhere HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\n"
                 "connection: close\r\n\r\n")
                 .first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404")) << response;
  EXPECT_FALSE(absl::StrContains(response, "access-control-")) << response;
}

TEST_F(ActiveStreamTest, RequestsAnsweredWithinOneLoopTurnHaveADuration) {
  auto empty = std::make_shared<ClusterConfig>();
  empty->name = "empty";
  SteppedWorker worker(*this, RoutesTo({{"/direct", ""}, {"/no-hosts", "empty"}}, {empty}),
                       /*span_per_attempt=*/false);
  tracing::RecordingSpanSink& sink = worker.sink;
  hcm_context_ = &worker.context;

  for (const char* path : {"/direct", "/no-hosts"}) {
    for (http::Protocol protocol : {http::Protocol::kHttp11, http::Protocol::kHttp2}) {
      SCOPED_TRACE(absl::StrCat(path, " ", http::ProtocolName(protocol)));
      hcm_options_.protocol = protocol;
      log_.lines.clear();
      sink.spans.clear();
      net::testing::RecordingCallbacks client;
      auto c = Connect(client);
      if (protocol == http::Protocol::kHttp2) {
        c->Write(kH2Preface + H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1,
                                      kH2RequestStart + H2Path(path)));
      } else {
        c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\n\r\n"));
      }
      ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
      const std::string& line = log_.lines[0];
      EXPECT_TRUE(absl::StrContains(line, path == absl::string_view("/direct")
                                              ? "\"response_code\":200"
                                              : "\"response_code\":503"))
          << line;
      const size_t at = line.find("\"duration_us\":");
      ASSERT_NE(at, std::string::npos) << line;
      uint64_t duration_us = 0;
      const std::string rest = line.substr(at + 14);
      ASSERT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find_first_of(",}")), &duration_us));
      // At least the two exact readings' distance, whatever else read the clock in between.
      EXPECT_GE(duration_us, 250u) << line;
      ASSERT_EQ(sink.spans.size(), 1u);
      EXPECT_GE(sink.spans[0].end_ns - sink.spans[0].start_ns, SteppedWorker::kStep.count());
      c->Close(net::CloseMode::kNoFlush);
      loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
    }
  }
  loop_.RunUntilIdle();  // the connection managers go before the worker's context
  hcm_context_ = &context_;

  // Every sample of the histograms is the access log's nonzero duration.
  const StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* downstream = stats.Find("meshlet_http_downstream_rq_duration_seconds");
  ASSERT_NE(downstream, nullptr);
  EXPECT_EQ(downstream->histogram.count(), 4u);
  EXPECT_GE(downstream->histogram.Percentile(0), 250.0 * (1 - 0.04));
  const SeriesSnapshot* golden = stats.Find("meshlet_upstream_rq_duration_seconds",
                                            {{"cluster", "empty"}, {"outcome", "failure"}});
  ASSERT_NE(golden, nullptr);
  EXPECT_EQ(golden->histogram.count(), 2u);
  EXPECT_GE(golden->histogram.Percentile(0), 250.0 * (1 - 0.04));
}

// A server span starts at the exact time its request's headers were decoded; the turn's shared
// reading, which client spans start at, may be earlier (here: the first of two streams that
// arrived together took it). An attempt's client span still starts and ends within its server
// span.
TEST_F(ActiveStreamTest, ClientSpansLieWithinTheirServerSpans) {
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {},
      [](const http::ServerRequest&) { return http::ServerResponse::Text(200, "ok"); });
  ASSERT_TRUE(upstream.ok()) << upstream.status();
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = "up";
  EndpointConfig endpoint;
  endpoint.address = (*upstream)->address();
  cluster->endpoints.push_back(endpoint);
  SteppedWorker worker(*this, RoutesTo({{"/up", "up"}}, {cluster}), /*span_per_attempt=*/true);
  tracing::RecordingSpanSink& sink = worker.sink;
  hcm_context_ = &worker.context;
  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  // Two streams in one read: both are decoded, and their attempts begun, in one loop turn.
  c->Write(kH2Preface +
           H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1, kH2RequestStart + H2Path("/up")) +
           H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 3, kH2RequestStart + H2Path("/up")));
  ASSERT_TRUE(loop_.RunUntil([&] { return sink.spans.size() == 4; }, seconds(5)));
  c->Close(net::CloseMode::kNoFlush);
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();  // the connection managers go before the worker's context
  hcm_context_ = &context_;

  int pairs = 0;
  for (const tracing::Span& server : sink.spans) {
    if (server.kind != tracing::SpanKind::kServer) continue;
    for (const tracing::Span& attempt : sink.spans) {
      if (attempt.kind != tracing::SpanKind::kClient || attempt.parent_span_id != server.span_id) {
        continue;
      }
      ++pairs;
      EXPECT_GE(attempt.start_ns, server.start_ns);
      EXPECT_LE(attempt.end_ns, server.end_ns);
      EXPECT_LE(attempt.start_ns, attempt.end_ns);
    }
  }
  EXPECT_EQ(pairs, 2);
}

// The upstream request carries exactly one traceparent, naming this hop's client span, over
// HTTP/1 and HTTP/2 upstreams alike: a caller's is replaced, a request without one gets one
// (appended without a lookup), and one a route adds after the trace began is replaced too.
TEST_F(ActiveStreamTest, UpstreamGetsExactlyOneTraceparent) {
  std::vector<std::vector<std::string>> received;  // each upstream request's traceparent values
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {}, [&](const http::ServerRequest& request) {
        std::vector<std::string> values;
        for (absl::string_view value : request.headers.GetAll("traceparent")) {
          values.emplace_back(value);
        }
        received.push_back(std::move(values));
        return http::ServerResponse::Text(200, "ok");
      });
  ASSERT_TRUE(upstream.ok()) << upstream.status();

  constexpr absl::string_view kCallerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string caller = absl::StrCat("00-", kCallerTrace, "-00f067aa0ba902b7-01");
  constexpr absl::string_view kRouteTrace = "11111111111111111111111111111111";
  auto snapshot = std::make_shared<config::Snapshot>();
  route::RouteConfig routes;
  routes.name = "routes";
  route::VirtualHostConfig vhost;
  vhost.name = "all";
  vhost.domains = {"*"};
  for (const auto& [name, protocol] :
       {std::pair{"h1", UpstreamProtocol::kHttp1}, std::pair{"h2", UpstreamProtocol::kHttp2}}) {
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = name;
    cluster->protocol = protocol;
    EndpointConfig endpoint;
    endpoint.address = (*upstream)->address();
    cluster->endpoints.push_back(endpoint);
    snapshot->clusters[name] = cluster;
    for (bool route_adds : {false, true}) {
      route::RouteEntry route;
      route.name = absl::StrCat(route_adds ? "added-" : "plain-", name);
      route.match.path = absl::StrCat("/", route.name);
      route::RouteAction action;
      action.cluster = name;
      route.action = action;
      if (route_adds) {
        route.extras.mut().headers.request_headers_to_add.push_back(
            {"traceparent", absl::StrCat("00-", kRouteTrace, "-2222222222222222-01"), true});
      }
      vhost.routes.push_back(route);
    }
  }
  routes.virtual_hosts.push_back(vhost);
  snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
  clusters_.Update(snapshot->clusters);
  context_.snapshot = snapshot;

  tracing::RecordingSpanSink sink;
  tracing::TracingConfig tracing_config;
  tracing_config.sampling_percent = 0;
  tracing::Tracer tracer(tracing_config, "svc", sink, tracing::TracerStats::Create(*shard_),
                         random_, RealClock::Get());
  context_.tracer = &tracer;

  for (const char* path : {"/plain-h1", "/plain-h2", "/added-h1", "/added-h2"}) {
    for (bool with_caller : {false, true}) {
      SCOPED_TRACE(absl::StrCat(path, with_caller ? " with" : " without", " a caller's context"));
      net::testing::RecordingCallbacks client;
      auto c = Connect(client);
      c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\n",
                            with_caller ? absl::StrCat("traceparent: ", caller, "\r\n") : "",
                            "connection: close\r\n\r\n"));
      ASSERT_TRUE(
          loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
      EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 200")) << client.received;
      ASSERT_FALSE(received.empty());
      ASSERT_EQ(received.back().size(), 1u);
      const std::string& sent = received.back()[0];
      ASSERT_EQ(sent.size(), tracing::kTraceparentLength) << sent;
      const absl::string_view trace_id = absl::string_view(sent).substr(3, 32);
      EXPECT_NE(trace_id, kRouteTrace);
      if (with_caller) {
        EXPECT_EQ(trace_id, kCallerTrace);
        EXPECT_NE(sent, caller);  // this hop's client span, not the caller's
      } else {
        EXPECT_NE(trace_id, kCallerTrace);
      }
    }
  }
  EXPECT_EQ(received.size(), 8u);
  context_.tracer = nullptr;
}

}  // namespace
// Error attribution: a response the proxy makes itself names the proxy, the flags and the reason
// in x-meshlet-error, also in the access log; an upstream's answer passes through as it is (a
// hop behind may have attributed its own error); a caller outside the mesh sees neither.
TEST_F(ActiveStreamTest, LocalRepliesAreAttributedExceptAtTheMeshEdge) {
  context_.error_header = "x-meshlet-error";
  context_.node_name = "web-0.shop";
  // An upstream that answers with another proxy's attribution.
  std::vector<std::unique_ptr<net::Connection>> accepted;
  struct Answer : net::ConnectionCallbacks {
    net::Connection* c = nullptr;
    void OnData(net::Buffer& data, bool) override {
      data.Drain(data.length());
      c->Write(
          "HTTP/1.1 503 Service Unavailable\r\nx-meshlet-error: db-0.shop; flag=UH; "
          "reason=no healthy upstream\r\ncontent-length: 0\r\n\r\n");
    }
    void OnClose(net::CloseReason, const absl::Status&) override {}
  };
  std::vector<std::unique_ptr<Answer>> answers;
  auto upstream = net::Listener::Create(loop_, *net::Address::Parse("127.0.0.1:0"), {},
                                        [&](std::unique_ptr<net::Connection> c) {
                                          answers.push_back(std::make_unique<Answer>());
                                          answers.back()->c = c.get();
                                          c->SetCallbacks(answers.back().get());
                                          accepted.push_back(std::move(c));
                                        });
  ASSERT_TRUE(upstream.ok());
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = "db";
  EndpointConfig endpoint;
  endpoint.address = (*upstream)->address();
  cluster->endpoints.push_back(endpoint);
  context_.snapshot = RoutesTo({{"/db", "db"}}, {cluster});
  const std::string no_route = "GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
  const std::string to_db = "GET /db HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

  std::string response = Exchange(no_route).first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404")) << response;
  EXPECT_TRUE(absl::StrContains(response, "x-meshlet-error: web-0.shop; flag=NR; reason=no route"))
      << response;
  ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"error_reason\":\"no route\"")) << log_.lines[0];
  response = Exchange(to_db).first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 503")) << response;
  EXPECT_TRUE(absl::StrContains(response, "x-meshlet-error: db-0.shop; flag=UH;")) << response;
  EXPECT_FALSE(absl::StrContains(response, "web-0.shop")) << response;

  hcm_options_.mesh_edge = true;
  for (const std::string& request : {no_route, to_db}) {
    response = Exchange(request).first;
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 ")) << response;
    EXPECT_FALSE(absl::StrContains(response, "x-meshlet-error")) << response;
  }

  hcm_options_.mesh_edge = false;
  context_.error_header = "";  // --error-header=
  response = Exchange(no_route).first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404")) << response;
  EXPECT_FALSE(absl::StrContains(response, "x-meshlet-error")) << response;
}

}  // namespace meshlet::sidecar::listener

namespace meshlet::sidecar::listener {
namespace {

// The value of header `name` in an HTTP/1.1 response's head; empty when absent.
std::string ResponseHeader(const std::string& response, absl::string_view name) {
  const std::string head = response.substr(0, response.find("\r\n\r\n"));
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon != absl::string_view::npos &&
        absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), name)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "";
}

// A request the proxy failed exports its server span even when it was not sampled (an error
// span), with its decision record, its error reason and its request id, which the reply carries
// beside x-meshlet-error so that `meshctl explain` can be given it; an unsampled request that
// succeeded exports nothing. The access log says the same.
TEST_F(ActiveStreamTest, UnsampledFailuresExportTheirSpanAndTellTheirRequestId) {
  auto empty = std::make_shared<ClusterConfig>();
  empty->name = "empty";
  empty->traffic_policy = "TrafficPolicy/shop/empty";
  auto stepped = Unsampled(RoutesTo({{"/direct", ""}, {"/no-hosts", "empty"}}, {empty}));
  SteppedWorker& worker = *stepped;
  hcm_context_ = &worker.context;
  const std::string ok =
      Exchange("GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::StartsWith(ok, "HTTP/1.1 200")) << ok;
  EXPECT_EQ(ResponseHeader(ok, "x-request-id"), "");  // an upstream's answer is left alone
  const std::string failed =
      Exchange("GET /no-hosts HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
  EXPECT_TRUE(absl::StartsWith(failed, "HTTP/1.1 503")) << failed;
  EXPECT_EQ(ResponseHeader(failed, "x-meshlet-error"),
            "web-0.shop; flag=UH; reason=no healthy upstream");
  const std::string id = ResponseHeader(failed, "x-request-id");
  EXPECT_EQ(id.size(), 36u) << failed;  // the id the proxy gave the request
  // A version 4 UUID: 8-4-4-4-12 lowercase hex digits, version digit 4, variant 8, 9, a or b.
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      EXPECT_EQ(id[i], '-') << id;
    } else {
      EXPECT_TRUE(absl::ascii_isxdigit(id[i]) && !absl::ascii_isupper(id[i])) << id;
    }
  }
  EXPECT_EQ(id[14], '4') << id;
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
  ASSERT_EQ(worker.sink.spans.size(), 1u);
  const tracing::Span& span = worker.sink.spans[0];
  EXPECT_FALSE(span.sampled);
  EXPECT_EQ(span.request_id, id);
  EXPECT_EQ(span.response_flags, "UH");
  EXPECT_EQ(span.error_reason, "no healthy upstream");
  EXPECT_EQ(span.policy_traffic, "TrafficPolicy/shop/empty");
  EXPECT_EQ(span.path, "/no-hosts");
  EXPECT_EQ(span.status_code, 503);
  EXPECT_EQ(Counter("meshlet_tracing_error_spans_total"), 1u);
  ASSERT_EQ(log_.lines.size(), 2u);
  EXPECT_TRUE(absl::StrContains(log_.lines[1], "\"error_reason\":\"no healthy upstream\""))
      << log_.lines[1];
  EXPECT_TRUE(absl::StrContains(log_.lines[1], absl::StrCat("\"request_id\":\"", id, "\"")))
      << log_.lines[1];
}

// Refused before its trace began: an unknown destination under REGISTRY_ONLY (its span names the
// MeshConfig that refuses), and a denial by authorization of a request its caller sampled (a
// span of the caller's trace, as any sampled request's). Each reply carries the request id the
// span has, given by the proxy when the caller sent none.
TEST_F(ActiveStreamTest, RequestsRefusedBeforeRoutingAreExplainedToo) {
  auto stepped = Unsampled(context_.snapshot);
  SteppedWorker& worker = *stepped;
  hcm_context_ = &worker.context;
  listener_config_.unmatched_destination_source = "MeshConfig/mesh";
  hcm_options_.refuse = true;
  hcm_options_.original_destination = "203.0.113.7:80";
  const std::string refused =
      Exchange("GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  hcm_options_.refuse = false;
  hcm_options_.original_destination.clear();
  listener_config_.authorizer = DenyPath("/denied");
  listener_config_.direction = config::TrafficDirection::kInbound;
  const std::string denied =
      Exchange(
          "GET /denied HTTP/1.1\r\nhost: x\r\nx-request-id: caller-7\r\n"
          "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
          "connection: close\r\n\r\n")
          .first;
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
  EXPECT_TRUE(absl::StartsWith(refused, "HTTP/1.1 502")) << refused;
  const std::string id = ResponseHeader(refused, "x-request-id");
  EXPECT_EQ(id.size(), 36u) << refused;
  EXPECT_TRUE(absl::StartsWith(denied, "HTTP/1.1 403")) << denied;
  EXPECT_EQ(ResponseHeader(denied, "x-request-id"), "caller-7");
  ASSERT_EQ(worker.sink.spans.size(), 2u);
  const tracing::Span& nm = worker.sink.spans[0];
  EXPECT_FALSE(nm.sampled);
  EXPECT_EQ(nm.request_id, id);
  EXPECT_EQ(nm.response_flags, "NM");
  EXPECT_EQ(nm.policy_destination, "MeshConfig/mesh");
  EXPECT_EQ(nm.status_code, 502);
  EXPECT_EQ(nm.direction, "outbound");
  EXPECT_TRUE(nm.trace_id.valid());
  const tracing::Span& az = worker.sink.spans[1];
  EXPECT_TRUE(az.sampled);
  EXPECT_EQ(az.trace_id.high, 0x4bf92f3577b34da6ULL);
  EXPECT_EQ(az.parent_span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_EQ(az.request_id, "caller-7");
  EXPECT_EQ(az.response_flags, "AZ");
  EXPECT_EQ(az.authz, "deny");
  EXPECT_EQ(az.direction, "inbound");
  EXPECT_EQ(az.path, "/denied");
  ASSERT_EQ(log_.lines.size(), 2u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], absl::StrCat("\"request_id\":\"", id, "\"")))
      << log_.lines[0];
}

// A 5xx an upstream proxy made (its x-meshlet-error) fails this hop's request too: its span is
// exported unsampled, so a chain's explanation has the hop whose timeout or policy may be the
// cause; the answer itself passes through untouched. An application's own 503 does not count.
TEST_F(ActiveStreamTest, AnUpstreamProxysErrorPassedOnIsExplainedHereToo) {
  bool attributed = true;
  std::vector<std::string> told;
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {}, [&](const http::ServerRequest& request) {
        told.push_back(ToldSpanId(request));
        http::ServerResponse r = http::ServerResponse::Text(504, "upstream request timeout");
        if (attributed) {
          r.headers.Add("x-meshlet-error", "db-0.shop; flag=UT; reason=upstream request timeout");
        }
        return r;
      });
  ASSERT_TRUE(upstream.ok()) << upstream.status();
  auto stepped = Unsampled(RoutesTo({{"/db", "db"}}, {OneEndpoint("db", (*upstream)->address())}));
  SteppedWorker& worker = *stepped;
  hcm_context_ = &worker.context;
  const std::string passed =
      Exchange("GET /db HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  attributed = false;
  const std::string app =
      Exchange("GET /db HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
  EXPECT_EQ(ResponseHeader(passed, "x-meshlet-error"),
            "db-0.shop; flag=UT; reason=upstream request timeout");
  EXPECT_EQ(ResponseHeader(passed, "x-request-id"), "");  // untouched
  EXPECT_TRUE(absl::StartsWith(app, "HTTP/1.1 504")) << app;
  ASSERT_EQ(worker.sink.spans.size(), 1u);
  EXPECT_FALSE(worker.sink.spans[0].sampled);
  EXPECT_EQ(worker.sink.spans[0].status_code, 504);
  EXPECT_TRUE(worker.sink.spans[0].error_reason.empty());
  // Its one attempt's client span id is its id: the parent the upstream was told, so the
  // upstream's error span hangs under it.
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(Hex(worker.sink.spans[0].span_id), told[0]);
  EXPECT_TRUE(absl::EndsWith(worker.sink.spans[0].attempts, " span_id=" + told[0]))
      << worker.sink.spans[0].attempts;
}

// With several attempts the error span cannot take their ids (it has one), and their client
// spans are not exported: its decision record lists each attempt's span id, the parent each
// upstream was told, which is how `meshctl explain` links the next hops' spans to this one.
TEST_F(ActiveStreamTest, AnErrorSpanListsTheSpanIdOfEachAttempt) {
  std::vector<std::string> told;
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {}, [&](const http::ServerRequest& request) {
        told.push_back(ToldSpanId(request));
        http::ServerResponse r = http::ServerResponse::Text(503, "no healthy upstream");
        r.headers.Add("x-meshlet-error", "db-0.shop; flag=UH; reason=no healthy upstream");
        return r;
      });
  ASSERT_TRUE(upstream.ok()) << upstream.status();
  // 503: retried twice.
  auto stepped = Unsampled(RoutesTo({{"/db", "db"}}, {OneEndpoint("db", (*upstream)->address())}));
  SteppedWorker& worker = *stepped;
  hcm_context_ = &worker.context;
  const std::string response =
      Exchange("GET /db HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 503")) << response;
  ASSERT_EQ(told.size(), 3u);
  ASSERT_EQ(worker.sink.spans.size(), 1u);
  const tracing::Span& span = worker.sink.spans[0];
  EXPECT_FALSE(span.sampled);
  const std::vector<std::string> attempts = absl::StrSplit(span.attempts, "; ");
  ASSERT_EQ(attempts.size(), 3u) << span.attempts;
  for (size_t i = 0; i < told.size(); ++i) {
    EXPECT_TRUE(absl::EndsWith(attempts[i], " span_id=" + told[i])) << attempts[i];
    EXPECT_NE(told[i], Hex(span.span_id));
  }
}

// A request load shedding refused names the limit and the setting behind it: resident memory
// over --overload-max-rss-mb, or its worker's share of --overload-max-active-requests in flight.
TEST_F(ActiveStreamTest, AShedRequestNamesTheLimitThatShedIt) {
  auto stepped = Unsampled(context_.snapshot);
  SteppedWorker& worker = *stepped;
  std::atomic<bool> pressure{true};
  worker.context.overload.memory_pressure = &pressure;
  worker.context.overload.max_rss_mb = 512;
  hcm_context_ = &worker.context;
  const std::string memory =
      Exchange("GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::StartsWith(memory, "HTTP/1.1 503")) << memory;
  EXPECT_EQ(ResponseHeader(memory, "x-meshlet-error"), "web-0.shop; flag=OL; reason=overloaded");
  pressure = false;
  // One request holds the worker's only slot (a share of 1 of a setting of 2).
  worker.context.overload.max_active_requests = 1;
  worker.context.overload.max_active_requests_setting = 2;
  net::testing::RecordingCallbacks holder;
  auto held = Connect(holder);
  held->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(
      loop_.RunUntil([&] { return worker.context.overload.active_requests == 1; }, seconds(5)));
  const std::string busy =
      Exchange("GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::StartsWith(busy, "HTTP/1.1 503")) << busy;
  held->Close(net::CloseMode::kAbort);
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
  ASSERT_EQ(worker.sink.spans.size(), 2u);
  const tracing::Span& by_memory = worker.sink.spans[0];
  EXPECT_EQ(by_memory.response_flags, "OL");
  EXPECT_EQ(by_memory.shed_reason, "memory");
  EXPECT_EQ(by_memory.shed_limit, 512);
  EXPECT_EQ(by_memory.shed_worker_limit, -1);
  const tracing::Span& by_requests = worker.sink.spans[1];
  EXPECT_EQ(by_requests.response_flags, "OL");
  EXPECT_EQ(by_requests.shed_reason, "active_requests");
  EXPECT_EQ(by_requests.shed_limit, 2);
  EXPECT_EQ(by_requests.shed_worker_limit, 1);
  EXPECT_EQ(Counter("meshlet_http_downstream_rq_overload_shed_total", {{"reason", "memory"}}), 1u);
  EXPECT_EQ(
      Counter("meshlet_http_downstream_rq_overload_shed_total", {{"reason", "active_requests"}}),
      1u);
}

}  // namespace
}  // namespace meshlet::sidecar::listener
