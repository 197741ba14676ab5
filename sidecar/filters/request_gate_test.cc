#include "sidecar/filters/request_gate.h"

#include <chrono>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/fake_codec.h"

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

TEST(BuildGateReplyTest, RateLimitedHttpAndGrpc) {
  resilience::LocalRateLimiter limiter({.requests_per_second = 2, .burst = 1}, std::nullopt);
  FakeClock clock;
  EXPECT_FALSE(RateLimitReply(&limiter, "", clock.Now()).has_value());
  std::optional<GateReply> reply = RateLimitReply(&limiter, "", clock.Now());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->flag, router::ResponseFlag::kRateLimited);
  http::HeaderMap headers;
  net::Buffer body;
  EXPECT_TRUE(BuildGateReply(*reply, /*grpc=*/false, headers, body));
  EXPECT_EQ(headers.Get(":status"), "429");
  // 500 ms to the next token: rounded up to whole seconds.
  EXPECT_EQ(headers.Get("retry-after"), "1");
  EXPECT_EQ(body.ToString(), "local rate limit exceeded\n");

  http::HeaderMap grpc_headers;
  net::Buffer grpc_body;
  EXPECT_FALSE(BuildGateReply(*reply, /*grpc=*/true, grpc_headers, grpc_body));
  EXPECT_EQ(grpc_headers.Get(":status"), "200");
  EXPECT_EQ(grpc_headers.Get("grpc-status"), "8");  // RESOURCE_EXHAUSTED
  EXPECT_EQ(grpc_body.length(), 0u);
}

// The gate against a real Cluster (fake codecs), with fake time and randomness.
class RequestGateTest : public ::testing::Test {
 protected:
  RequestGateTest() {
    ClusterConfig config;
    config.name = "backend";
    EndpointConfig endpoint;
    endpoint.address = *net::Address::Parse("10.0.0.1:80");
    config.endpoints = {endpoint};
    config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{
        .failure_threshold = 2, .open_duration = seconds(10)};
    cluster_ = std::make_unique<Cluster>(
        loop_, config, std::make_shared<resilience::CircuitBreakerThresholds>(), random_, clock_,
        CodecFactories{cluster::testing::FakeClientConnection::Factory({}),
                       cluster::testing::FakeClientConnection::Factory({})});
  }

  // Runs the gate; returns whether it said "go upstream now".
  // The request's headers live as long as the request, as the router's do (a delayed request
  // reads them again when the delay ends): the fixture keeps a copy.
  bool Admit(const router::RouteEntry& route, const http::HeaderMap& headers, bool grpc = false) {
    const http::HeaderMap& kept = kept_headers_.emplace_back(headers);
    return gate_.Admit(
        RequestGate::Request{route, *cluster_, stats_, kept, grpc}, loop_, clock_, random_, info_,
        [this](http::HeaderMap& h, bool end) {
          reply_headers_ = h;
          reply_ended_ = end;
        },
        [this](net::Buffer& b, bool end) {
          reply_body_ += b.ToString();
          reply_ended_ = end;
        },
        [this] {
          ++finished_;
          return !request_ended_;
        },
        [this] { ++proceeded_; });
  }

  FakeClock clock_;
  event::Loop loop_;
  FakeRandom random_;
  UpstreamStats stats_;
  std::unique_ptr<Cluster> cluster_;
  RequestGate gate_;
  router::StreamInfo info_;
  std::list<http::HeaderMap> kept_headers_;
  std::optional<http::HeaderMap> reply_headers_;
  std::string reply_body_;
  bool reply_ended_ = false;
  bool request_ended_ = false;
  int finished_ = 0;
  int proceeded_ = 0;
};

TEST_F(RequestGateTest, PlainRouteProceeds) {
  router::RouteEntry route;
  // The breaker is configured but closed.
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_EQ(finished_, 0);
  EXPECT_EQ(info_.response_flags, 0u);
}

TEST_F(RequestGateTest, AbortAnswersWithTheConfiguredStatus) {
  router::RouteEntry route;
  route.fault = DelayAndAbort(0, 100);
  random_.PushDouble(0.5);
  EXPECT_FALSE(Admit(route, Headers({})));
  EXPECT_EQ(finished_, 1);
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "503");
  EXPECT_EQ(reply_body_, "fault injected\n");
  EXPECT_TRUE(reply_ended_);
  EXPECT_TRUE(info_.HasFlag(router::ResponseFlag::kFaultInjected));
  EXPECT_EQ(info_.response_code, 503);
}

TEST_F(RequestGateTest, GrpcAbortIsTrailersOnly) {
  router::RouteEntry route;
  route.fault = DelayAndAbort(0, 100);
  EXPECT_FALSE(Admit(route, Headers({{"content-type", "application/grpc"}}), /*grpc=*/true));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "200");
  EXPECT_EQ(reply_headers_->Get("grpc-status"), "14");
  EXPECT_TRUE(reply_ended_);
  EXPECT_TRUE(reply_body_.empty());
}

TEST_F(RequestGateTest, DelayThenProceed) {
  router::RouteEntry route;
  route.fault_header_triggered = true;
  EXPECT_FALSE(Admit(route, Headers({{kFaultDelayHeader, "30"}})));
  EXPECT_TRUE(gate_.delaying());
  EXPECT_TRUE(info_.HasFlag(router::ResponseFlag::kDelayInjected));
  const auto start = std::chrono::steady_clock::now();
  while (proceeded_ == 0 && finished_ == 0) loop_.RunOnce();
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(25));
  EXPECT_EQ(proceeded_, 1);
  EXPECT_EQ(finished_, 0);
}

TEST_F(RequestGateTest, DelayedRequestThatEndedMeanwhileIsNotAnswered) {
  router::RouteEntry route;
  route.fault_header_triggered = true;
  EXPECT_FALSE(Admit(route, Headers({{kFaultDelayHeader, "5"}, {kFaultAbortHeader, "500"}})));
  request_ended_ = true;  // e.g. the route timeout fired during the delay
  while (finished_ == 0) loop_.RunOnce();
  EXPECT_EQ(finished_, 1);
  EXPECT_FALSE(reply_headers_.has_value());
}

TEST_F(RequestGateTest, RouteRateLimit) {
  router::RouteEntry route;
  route.rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 10, .burst = 2}, std::nullopt);
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_FALSE(Admit(route, Headers({})));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "429");
  EXPECT_EQ(reply_headers_->Get("retry-after"), "1");
  EXPECT_TRUE(info_.HasFlag(router::ResponseFlag::kRateLimited));
  clock_.Advance(milliseconds(100));
  EXPECT_TRUE(Admit(route, Headers({})));
}

TEST_F(RequestGateTest, PerPrincipalRateLimitKeysOnThePeerIdentity) {
  router::RouteEntry route;
  route.rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
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
  EXPECT_EQ(route.rate_limiter->per_principal()->principals(), 3u);
}

TEST_F(RequestGateTest, OpenBreakerAnswers503Overloaded) {
  router::RouteEntry route;
  Host& host = *cluster_->host_set().hosts()[0];
  cluster_->RecordResult(host, resilience::HostResult::kServerError, false);
  EXPECT_TRUE(Admit(route, Headers({})));
  cluster_->RecordResult(host, resilience::HostResult::kServerError, false);
  EXPECT_EQ(cluster_->BreakerState(), 1);
  EXPECT_FALSE(Admit(route, Headers({})));
  ASSERT_TRUE(reply_headers_.has_value());
  EXPECT_EQ(reply_headers_->Get(":status"), "503");
  EXPECT_EQ(reply_headers_->Get("x-meshlet-overloaded"), "true");
  EXPECT_TRUE(info_.HasFlag(router::ResponseFlag::kBreakerOpen));
  // Half-open after open_duration: the gate lets the request through to take the probe.
  clock_.Advance(seconds(10));
  EXPECT_TRUE(Admit(route, Headers({})));
  EXPECT_EQ(cluster_->BreakerState(), 2);
}

}  // namespace
}  // namespace meshlet::sidecar::filters
