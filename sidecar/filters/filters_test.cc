#include <chrono>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "openssl/curve25519.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/fake_codec.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/filters/authorization_filter.h"
#include "sidecar/filters/breaker_filter.h"
#include "sidecar/filters/fault_filter.h"
#include "sidecar/filters/jwt_filter.h"
#include "sidecar/filters/rate_limit_filter.h"
#include "sidecar/route/route_config.h"
#include "sidecar/stream/filter.h"

namespace meshlet::sidecar::filters {

using cluster::Cluster;
using cluster::ClusterConfig;
using cluster::CodecFactories;
using cluster::EndpointConfig;
using cluster::Host;
using cluster::UpstreamStats;

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

http::HeaderMap Headers(std::initializer_list<std::pair<absl::string_view, absl::string_view>> in) {
  http::HeaderMap headers{{":method", "GET"}, {":path", "/"}};
  for (const auto& [name, value] : in) headers.Add(name, value);
  return headers;
}

resilience::FaultConfig DelayAndAbort(double delay_percent, double abort_percent) {
  resilience::FaultConfig fault;
  fault.delay = resilience::FaultConfig::Delay{milliseconds(20), delay_percent};
  fault.abort = resilience::FaultConfig::Abort{
      .http_status = 503, .grpc_status = 14, .percentage = abort_percent};
  return fault;
}

TEST(DecideRequestFaultTest, PercentagesFollowTheDraws) {
  FakeRandom random;
  const std::optional<resilience::FaultConfig> fault = DelayAndAbort(30, 60);
  const http::HeaderMap headers = Headers({});
  // Draw order: delay, then abort. A draw f selects when f < percentage / 100.
  random.PushDouble(0.29);
  random.PushDouble(0.61);
  resilience::FaultDecision d = DecideRequestFault(fault, false, headers, false, random);
  EXPECT_EQ(d.delay, milliseconds(20));
  EXPECT_FALSE(d.abort);
  random.PushDouble(0.31);
  random.PushDouble(0.59);
  d = DecideRequestFault(fault, false, headers, false, random);
  EXPECT_FALSE(d.delayed());
  EXPECT_TRUE(d.abort);
  EXPECT_EQ(d.http_status, 503u);
}

TEST(DecideRequestFaultTest, SeededRandomHitsTheConfiguredShare) {
  RealRandom random(42);
  const std::optional<resilience::FaultConfig> fault = DelayAndAbort(0, 25);
  const http::HeaderMap headers = Headers({});
  int aborted = 0;
  for (int i = 0; i < 20000; ++i) {
    aborted += DecideRequestFault(fault, false, headers, false, random).abort;
  }
  EXPECT_NEAR(aborted / 20000.0, 0.25, 0.015);
}

TEST(DecideRequestFaultTest, HeadersTriggerOnlyWhenTheRouteAllowsIt) {
  FakeRandom random;
  const http::HeaderMap headers = Headers({{kFaultDelayHeader, "150"}, {kFaultAbortHeader, "418"}});
  resilience::FaultDecision d = DecideRequestFault(std::nullopt, false, headers, false, random);
  EXPECT_FALSE(d.delayed());
  EXPECT_FALSE(d.abort);
  d = DecideRequestFault(std::nullopt, true, headers, false, random);
  EXPECT_EQ(d.delay, milliseconds(150));
  EXPECT_TRUE(d.abort);
  EXPECT_EQ(d.http_status, 418u);
}

TEST(DecideRequestFaultTest, MalformedOrOutOfRangeHeadersAreIgnored) {
  FakeRandom random;
  for (const auto& headers : {Headers({{kFaultDelayHeader, "soon"}, {kFaultAbortHeader, "99"}}),
                              Headers({{kFaultDelayHeader, "60001"}, {kFaultAbortHeader, "600"}}),
                              Headers({{kFaultAbortGrpcHeader, "17"}})}) {
    const resilience::FaultDecision d =
        DecideRequestFault(std::nullopt, true, headers, true, random);
    EXPECT_FALSE(d.delayed());
    EXPECT_FALSE(d.abort);
  }
}

TEST(DecideRequestFaultTest, GrpcStatusHeaderAppliesToGrpcRequests) {
  FakeRandom random;
  const http::HeaderMap headers = Headers({{kFaultAbortGrpcHeader, "8"}});
  resilience::FaultDecision d = DecideRequestFault(std::nullopt, true, headers, true, random);
  EXPECT_TRUE(d.abort);
  EXPECT_EQ(d.grpc_status, 8u);
  d = DecideRequestFault(std::nullopt, true, headers, false, random);
  EXPECT_FALSE(d.abort);
}

// The stream side of one request, as the filters see it: records replies and continuations.
class FakeStream final : public stream::FilterCallbacks {
 public:
  void ContinueDecoding() override { ++continued; }
  void SendLocalReply(const stream::LocalReply& reply) override {
    http::HeaderMap headers;
    net::Buffer body;
    const bool has_body = stream::BuildLocalReply(reply, grpc_request, headers, body);
    info.response_code = stream::LocalReplyStatus(reply, grpc_request);
    reply_headers = headers;
    reply_body = body.ToString();
    reply_ended = true;
    (void)has_body;
  }
  const stream::Route& route() const override { return route_state; }
  stream::StreamInfo& stream_info() override { return info; }
  bool grpc() const override { return grpc_request; }
  void EncodeHeaders(http::HeaderMap&, bool) override {}
  void EncodeData(net::Buffer&, bool) override {}
  void EncodeTrailers(const http::HeaderMap&) override {}
  void ResetDownstream() override {}
  void ReadDisableDownstream(bool) override {}
  uint32_t DownstreamBufferLimit() const override { return 1 << 20; }

  stream::Route route_state;
  stream::StreamInfo info;
  bool grpc_request = false;
  std::optional<http::HeaderMap> reply_headers;
  std::string reply_body;
  bool reply_ended = false;
  int continued = 0;
};

// The route-level filters against a real Cluster (fake codecs), with fake time and randomness, in
// the chain's order: fault, route rate limit, breaker.
class RouteFiltersTest : public ::testing::Test {
 protected:
  RouteFiltersTest() {
    ClusterConfig config;
    config.name = "backend";
    EndpointConfig endpoint;
    endpoint.address = *net::Address::Parse("10.0.0.1:80");
    config.endpoints = {endpoint};
    config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{
        .failure_threshold = 2, .open_duration = seconds(10)};
    cluster_ = std::make_shared<Cluster>(
        loop_, config, std::make_shared<resilience::CircuitBreakerThresholds>(), random_, clock_,
        CodecFactories{cluster::testing::FakeClientConnection::Factory({}),
                       cluster::testing::FakeClientConnection::Factory({})});
  }

  struct Request {
    explicit Request(RouteFiltersTest& test)
        : fault(stream, test.loop_, test.random_),
          rate_limit(RateLimitFilter::Scope::kRoute, stream, test.policy_, test.clock_),
          breaker(stream),
          chain{&fault, &rate_limit, &breaker} {}
    // The chain from `index`: true when every filter continued.
    bool Run(size_t index) {
      for (; index < 3; ++index) {
        if (chain[index]->DecodeHeaders(headers, true) == stream::FilterStatus::kStopIteration) {
          return false;
        }
      }
      return true;
    }
    FakeStream stream;
    http::HeaderMap headers;
    FaultFilter fault;
    RateLimitFilter rate_limit;
    BreakerFilter breaker;
    stream::Filter* chain[3];
  };

  // Runs the route-level filters on a new request; returns whether it went through all of them
  // at once ("go upstream now").
  bool Admit(const route::RouteEntry& route, const http::HeaderMap& headers, bool grpc = false) {
    streams_.push_back(std::make_unique<Request>(*this));
    Request& request = *streams_.back();
    request.stream.grpc_request = grpc;
    request.stream.route_state.entry = &route;
    request.stream.route_state.cluster = cluster_;
    request.stream.route_state.cluster_stats = &stats_;
    request.headers = headers;
    const bool through = request.Run(0);
    reply_headers_ = request.stream.reply_headers;
    reply_body_ = request.stream.reply_body;
    reply_ended_ = request.stream.reply_ended;
    return through;
  }
  Request& last() { return *streams_.back(); }
  FakeStream& last_stream() { return streams_.back()->stream; }

  FakeClock clock_;
  event::Loop loop_;
  FakeRandom random_;
  UpstreamStats stats_;
  ListenerPolicy policy_;
  std::shared_ptr<Cluster> cluster_;
  std::vector<std::unique_ptr<Request>> streams_;
  std::optional<http::HeaderMap> reply_headers_;
  std::string reply_body_;
  bool reply_ended_ = false;
};

TEST_F(RouteFiltersTest, PlainRouteProceeds) {
  route::RouteEntry route;
  // The breaker is configured but closed.
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_FALSE(reply_ended_);
  EXPECT_EQ(last_stream().info.response_flags, 0u);
}

TEST_F(RouteFiltersTest, AbortAnswersWithTheConfiguredStatus) {
  route::RouteEntry route;
  route.extras.mut().fault = DelayAndAbort(0, 100);
  random_.PushDouble(0.5);
  EXPECT_FALSE(Admit(route, Headers({})));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "503");
  EXPECT_EQ(reply_body_, "fault injected\n");
  EXPECT_TRUE(reply_ended_);
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kFaultInjected));
  EXPECT_EQ(last_stream().info.response_code, 503);
}

TEST_F(RouteFiltersTest, GrpcAbortIsTrailersOnly) {
  route::RouteEntry route;
  route.extras.mut().fault = DelayAndAbort(0, 100);
  EXPECT_FALSE(Admit(route, Headers({{"content-type", "application/grpc"}}), /*grpc=*/true));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "200");
  EXPECT_EQ(reply_headers_->Get("grpc-status"), "14");
  EXPECT_TRUE(reply_ended_);
  EXPECT_TRUE(reply_body_.empty());
}

TEST_F(RouteFiltersTest, DelayThenProceed) {
  route::RouteEntry route;
  route.extras.mut().fault_header_triggered = true;
  // The delay's timer counts from the loop's time, read once per turn: bring it up to date, as
  // a turn would, so that the test's own start is not later than the timer's.
  loop_.UpdateTime();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(Admit(route, Headers({{kFaultDelayHeader, "30"}})));
  EXPECT_TRUE(last().fault.delaying());
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kDelayInjected));
  while (last_stream().continued == 0 && !last_stream().reply_ended) loop_.RunOnce();
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(25));
  EXPECT_EQ(last_stream().continued, 1);
  EXPECT_FALSE(last_stream().reply_ended);
}

TEST_F(RouteFiltersTest, DelayedAbortAnswersWhenTheDelayEnds) {
  route::RouteEntry route;
  route.extras.mut().fault_header_triggered = true;
  EXPECT_FALSE(Admit(route, Headers({{kFaultDelayHeader, "5"}, {kFaultAbortHeader, "500"}})));
  EXPECT_FALSE(last_stream().reply_ended);
  while (!last_stream().reply_ended) loop_.RunOnce();
  EXPECT_EQ(last_stream().reply_headers->Get(":status"), "500");
  EXPECT_EQ(last_stream().continued, 0);
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kDelayInjected));
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kFaultInjected));
}

TEST_F(RouteFiltersTest, DelayedRequestThatEndedMeanwhileIsNotAnswered) {
  route::RouteEntry route;
  route.extras.mut().fault_header_triggered = true;
  EXPECT_FALSE(Admit(route, Headers({{kFaultDelayHeader, "5"}, {kFaultAbortHeader, "500"}})));
  last().fault.OnStreamEnd();  // e.g. the route timeout fired during the delay
  EXPECT_FALSE(last().fault.delaying());
  loop_.RunUntil([] { return false; }, milliseconds(20));
  EXPECT_FALSE(last_stream().reply_ended);
  EXPECT_EQ(last_stream().continued, 0);
}

TEST_F(RouteFiltersTest, AbortedRequestMeetsNoLaterFilter) {
  // Fault first: an aborted request spends no rate-limit token.
  route::RouteEntry route;
  route.extras.mut().fault_header_triggered = true;
  route.extras.mut().rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 1, .burst = 1}, std::nullopt);
  EXPECT_FALSE(Admit(route, Headers({{kFaultAbortHeader, "503"}})));
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kFaultInjected));
  EXPECT_TRUE(Admit(route, Headers({})));  // the token is still there
}

TEST_F(RouteFiltersTest, RouteRateLimit) {
  route::RouteEntry route;
  route.extras.mut().rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 10, .burst = 2}, std::nullopt);
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_FALSE(Admit(route, Headers({})));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "429");
  EXPECT_EQ(reply_headers_->Get("retry-after"), "1");
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kRateLimited));
  clock_.Advance(milliseconds(100));
  EXPECT_TRUE(Admit(route, Headers({})));
}

TEST_F(RouteFiltersTest, PerPrincipalRateLimitKeysOnThePeerIdentity) {
  route::RouteEntry route;
  route.extras.mut().rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 1, .burst = 2}, 16);
  const http::HeaderMap a = Headers({{"x-meshlet-peer-identity", "spiffe://mesh/sa/a"}});
  const http::HeaderMap b = Headers({{"x-meshlet-peer-identity", "spiffe://mesh/sa/b"}});
  EXPECT_TRUE(Admit(route, a));
  EXPECT_TRUE(Admit(route, a));
  EXPECT_FALSE(Admit(route, a));  // a spent its burst
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "429");
  reply_headers_.reset();
  EXPECT_TRUE(Admit(route, b));  // b has its own bucket
  EXPECT_TRUE(Admit(route, b));
  EXPECT_TRUE(Admit(route, Headers({})));  // callers without an identity share a third one
  EXPECT_EQ(route.extras->rate_limiter->per_principal()->principals(), 3u);
}

TEST_F(RouteFiltersTest, OpenBreakerAnswers503Overloaded) {
  route::RouteEntry route;
  Host& host = *cluster_->host_set().hosts()[0];
  cluster_->RecordResult(host, resilience::HostResult::kServerError, false);
  EXPECT_TRUE(Admit(route, Headers({})));
  cluster_->RecordResult(host, resilience::HostResult::kServerError, false);
  EXPECT_EQ(cluster_->BreakerState(), 1);
  EXPECT_FALSE(Admit(route, Headers({})));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "503");
  EXPECT_EQ(reply_headers_->Get("x-meshlet-overloaded"), "true");
  EXPECT_TRUE(last_stream().info.HasFlag(stream::ResponseFlag::kBreakerOpen));
  // Half-open after open_duration: the gate lets the request through to take the probe.
  clock_.Advance(seconds(10));
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_EQ(cluster_->BreakerState(), 2);
}

}  // namespace
}  // namespace meshlet::sidecar::filters

namespace meshlet::sidecar::filters {
namespace {

// The listener-level filters: authorization from the connection's identity and the virtual host's
// destination port; the listener's rate limit keyed by the connection's identity.
class ListenerFiltersTest : public ::testing::Test {
 protected:
  ListenerFiltersTest() : shard_(registry_.CreateShard()) {
    policy_.rbac_allowed = *shard_->RegisterCounter("meshlet_http_rbac_allowed_total", "Allowed.");
    policy_.rbac_denied = *shard_->RegisterCounter("meshlet_http_rbac_denied_total", "Denied.");
  }
  uint64_t Count(absl::string_view name, const LabelSet& labels = {}) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  ListenerPolicy policy_;
  FakeClock clock_;
  FakeStream stream_;
};

TEST_F(ListenerFiltersTest, AuthorizationUsesTheVirtualHostsDestinationPort) {
  AuthorizationRuleConfig app_port;
  app_port.ports = {8080};
  policy_.authorizer = std::make_shared<const Authorizer>(
      AuthorizationConfig{.policies = {{.name = "app", .rules = {app_port}}}});
  policy_.destination_port = 15006;  // the listener's own port: not allowed
  AuthorizationFilter filter(stream_, policy_);
  http::HeaderMap headers = Headers({});
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kStopIteration);
  EXPECT_EQ(stream_.reply_headers->Get(":status"), "403");
  EXPECT_EQ(stream_.reply_body, "RBAC: access denied\n");
  EXPECT_TRUE(stream_.info.HasFlag(stream::ResponseFlag::kUnauthorized));

  FakeStream other;
  route::VirtualHostConfig vhost;
  vhost.destination_port = 8080;
  other.route_state.virtual_host = &vhost;
  AuthorizationFilter allowed(other, policy_);
  EXPECT_EQ(allowed.DecodeHeaders(headers, true), stream::FilterStatus::kContinue);
  EXPECT_FALSE(other.reply_ended);
  EXPECT_EQ(Count("meshlet_http_rbac_allowed_total"), 1u);
  EXPECT_EQ(Count("meshlet_http_rbac_denied_total"), 1u);
}

TEST_F(ListenerFiltersTest, DeniedGrpcCallIsPermissionDenied) {
  policy_.authorizer = std::make_shared<const Authorizer>(
      AuthorizationConfig{.policies = {{.name = "nobody"}}});  // ALLOW with no rules: no one
  stream_.grpc_request = true;
  AuthorizationFilter filter(stream_, policy_);
  http::HeaderMap headers = Headers({{"content-type", "application/grpc"}});
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kStopIteration);
  EXPECT_EQ(stream_.reply_headers->Get("grpc-status"), "7");
  EXPECT_EQ(stream_.info.response_code, 200);
}

TEST_F(ListenerFiltersTest, NoPoliciesCountNothing) {
  AuthorizationFilter filter(stream_, policy_);
  http::HeaderMap headers = Headers({});
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kContinue);
  EXPECT_EQ(Count("meshlet_http_rbac_allowed_total") + Count("meshlet_http_rbac_denied_total"), 0u);
}

TEST_F(ListenerFiltersTest, ListenerRateLimitKeysOnTheConnectionsIdentity) {
  policy_.rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 1, .burst = 1}, 16);
  policy_.peer_identity = "spiffe://mesh/sa/a";
  // The header is the route-level filter's key, not this one's.
  http::HeaderMap headers = Headers({{"x-meshlet-peer-identity", "spiffe://mesh/sa/b"}});
  RateLimitFilter first(RateLimitFilter::Scope::kListener, stream_, policy_, clock_);
  EXPECT_EQ(first.DecodeHeaders(headers, true), stream::FilterStatus::kContinue);
  FakeStream limited;
  RateLimitFilter second(RateLimitFilter::Scope::kListener, limited, policy_, clock_);
  EXPECT_EQ(second.DecodeHeaders(headers, true), stream::FilterStatus::kStopIteration);
  EXPECT_EQ(limited.reply_headers->Get(":status"), "429");
  EXPECT_EQ(limited.reply_headers->Get("retry-after"), "1");
  EXPECT_TRUE(limited.info.HasFlag(stream::ResponseFlag::kRateLimited));
  EXPECT_EQ(policy_.rate_limiter->per_principal()->principals(), 1u);
}

}  // namespace
}  // namespace meshlet::sidecar::filters

namespace meshlet::sidecar::filters {
namespace {

// RequestAuthentication with one Ed25519 issuer whose key is made per test.
class JwtFilterTest : public ListenerFiltersTest {
 protected:
  static constexpr char kIssuer[] = "https://idp.example.com";

  JwtFilterTest() {
    for (size_t i = 0; i < kJwtOutcomeCount; ++i) {
      policy_.jwt_outcomes[i] = *shard_->RegisterCounter(
          "meshlet_http_jwt_total", "JWT outcomes.", {{"outcome", std::string(JwtOutcomeName(i))}});
    }
    ED25519_keypair(public_key_, private_key_);
    const std::string jwks =
        absl::StrCat(R"({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":")",
                     absl::WebSafeBase64Escape(
                         absl::string_view(reinterpret_cast<const char*>(public_key_), 32)),
                     R"("}]})");
    auto verifier = JwtVerifier::Create(
        {.issuers = {{.issuer = kIssuer, .audiences = {"shop"}, .jwks = jwks}}});
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    auto jwt = std::make_shared<JwtPolicy>();
    jwt->verifier = std::move(*verifier);
    jwt->locations = DefaultJwtTokenLocations();
    jwt->locations.push_back({.name = "x-token"});
    jwt->outputs = {{.claim_to_headers = {{"sub", "x-user"}, {"level", "x-level"}},
                     .payload_header = "x-jwt-payload"}};
    jwt->output_headers = {"x-user", "x-level", "x-jwt-payload"};
    policy_.jwt = std::move(jwt);
    stream_.info.start_wall = absl::FromUnixSeconds(kNow);
  }

  std::string Token(absl::string_view claims) {
    const std::string input =
        absl::StrCat(absl::WebSafeBase64Escape(R"({"alg":"EdDSA","kid":"k1"})"), ".",
                     absl::WebSafeBase64Escape(claims));
    uint8_t sig[64];
    ED25519_sign(sig, reinterpret_cast<const uint8_t*>(input.data()), input.size(), private_key_);
    return absl::StrCat(input, ".",
                        absl::WebSafeBase64Escape(
                            absl::string_view(reinterpret_cast<const char*>(sig), sizeof(sig))));
  }
  std::string Claims(int64_t exp) {
    return absl::StrCat(R"({"iss":")", kIssuer, R"(","sub":"alice","aud":"shop","level":3,"exp":)",
                        exp, "}");
  }
  uint64_t Outcome(absl::string_view outcome) {
    return Count("meshlet_http_jwt_total", {{"outcome", std::string(outcome)}});
  }

  static constexpr int64_t kNow = 1'800'000'000;
  uint8_t public_key_[32], private_key_[64];
};

TEST_F(JwtFilterTest, AValidTokenPassesWithItsClaimsInHeadersAndTheTokenRemoved) {
  JwtFilter filter(stream_, policy_);
  const std::string token = Token(Claims(kNow + 60));
  http::HeaderMap headers = Headers(
      {{"authorization", "Bearer " + token}, {"x-user", "mallory"}});  // a client's own: replaced
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kContinue);
  EXPECT_FALSE(stream_.reply_ended);
  EXPECT_EQ(headers.GetAll("x-user").size(), 1u);
  EXPECT_EQ(headers.Get("x-user"), "alice");
  EXPECT_EQ(headers.Get("x-level"), "3");
  EXPECT_EQ(headers.Get("x-jwt-payload"),
            token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1));
  EXPECT_FALSE(headers.Has("authorization"));
  EXPECT_EQ(Outcome("ok"), 1u);
}

// Without an access log nothing records the stream's wall-clock start: the filter reads the
// clock itself (it once took the Unix epoch, and every token was "not yet valid").
TEST_F(JwtFilterTest, WithoutARecordedStartTheClockDecides) {
  stream_.info.start_wall = absl::UnixEpoch();
  JwtFilter filter(stream_, policy_);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  http::HeaderMap headers =
      Headers({{"x-token",
                Token(absl::StrCat(R"({"iss":")", kIssuer, R"(","sub":"alice","aud":"shop","iat":)",
                                   now, R"(,"exp":)", now + 60, "}"))}});
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kContinue);
  EXPECT_FALSE(stream_.reply_ended);
  EXPECT_EQ(Outcome("ok"), 1u);
}

TEST_F(JwtFilterTest, AnInvalidTokenGets401NamingTheReasonNotTheToken) {
  JwtFilter filter(stream_, policy_);
  const std::string token = Token(Claims(kNow - 3600));
  http::HeaderMap headers = Headers({{"x-token", token}});
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kStopIteration);
  ASSERT_TRUE(stream_.reply_ended);
  EXPECT_EQ(stream_.reply_headers->Get(":status"), "401");
  EXPECT_EQ(stream_.reply_headers->Get("www-authenticate"), "Bearer error=\"invalid_token\"");
  EXPECT_EQ(stream_.reply_body, "Jwt is expired\n");
  EXPECT_TRUE(stream_.info.HasFlag(stream::ResponseFlag::kUnauthenticated));
  EXPECT_EQ(stream::ErrorAttribution("web-0", stream_.info.response_flags, "Jwt is expired"),
            "web-0; flag=UA; reason=Jwt is expired");
  EXPECT_EQ(Outcome("expired"), 1u);

  // gRPC: UNAUTHENTICATED, trailers-only.
  FakeStream grpc;
  grpc.grpc_request = true;
  grpc.info.start_wall = stream_.info.start_wall;
  JwtFilter grpc_filter(grpc, policy_);
  http::HeaderMap forged = Headers({{"authorization", "bearer a.b.c"}});
  EXPECT_EQ(grpc_filter.DecodeHeaders(forged, true), stream::FilterStatus::kStopIteration);
  EXPECT_EQ(grpc.reply_headers->Get("grpc-status"), "16");
  EXPECT_EQ(Outcome("malformed"), 1u);
}

TEST_F(JwtFilterTest, NoTokenPassesAndAuthorizationDecides) {
  JwtFilter filter(stream_, policy_);
  http::HeaderMap headers =
      Headers({{"authorization", "Basic YWxpY2U6c2VjcmV0"}, {"x-jwt-payload", "forged"}});
  EXPECT_EQ(filter.DecodeHeaders(headers, true), stream::FilterStatus::kContinue);
  EXPECT_FALSE(stream_.reply_ended);
  EXPECT_FALSE(headers.Has("x-jwt-payload"));
  EXPECT_EQ(headers.Get("authorization"), "Basic YWxpY2U6c2VjcmV0");
  EXPECT_EQ(Outcome("missing"), 1u);
  // A token in the access_token query parameter counts.
  http::HeaderMap query = Headers({});
  query.Set(":path", "/cart?x=1&access_token=" + Token(Claims(kNow + 60)) + "&y=2");
  EXPECT_EQ(filter.DecodeHeaders(query, true), stream::FilterStatus::kContinue);
  EXPECT_EQ(query.Get("x-user"), "alice");
  EXPECT_EQ(Outcome("ok"), 1u);
  // Without RequestAuthentication the filter reads nothing.
  policy_.jwt.reset();
  http::HeaderMap bad = Headers({{"authorization", "Bearer not-a-token"}});
  EXPECT_EQ(filter.DecodeHeaders(bad, true), stream::FilterStatus::kContinue);
  EXPECT_EQ(Outcome("malformed"), 0u);
}

}  // namespace
}  // namespace meshlet::sidecar::filters
