#include "tests/e2e/testapp/echo.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::testapp {
namespace {

http::ServerRequest Request(const std::string& target) {
  http::ServerRequest r;
  r.headers.Add(":method", "GET");
  r.headers.Add(":path", target);
  r.headers.Add(":authority", "echo");
  return r;
}

TEST(EchoBody, DescribesTheRequestAndWhoAnswered) {
  http::ServerRequest r = Request("/one/two?animal=whale");
  r.headers.Add("X-Header-Add", "first");
  r.headers.Add("some-other-header", "val");
  r.headers.Add("x-header-add", "second");
  ServeOptions o;
  o.namespace_name = "gateway-conformance-mesh";
  o.service = "echo-v1";
  o.version = "v1";
  o.pod = "echo-v1-0";
  EXPECT_EQ(EchoBody(r, o, 200),
            "{\"path\":\"/one/two?animal=whale\",\"host\":\"echo\",\"method\":\"GET\","
            "\"proto\":\"HTTP/1.1\",\"headers\":{\"x-header-add\":[\"first\",\"second\"],"
            "\"some-other-header\":[\"val\"]},\"namespace\":\"gateway-conformance-mesh\","
            "\"service\":\"echo-v1\",\"version\":\"v1\",\"pod\":\"echo-v1-0\",\"status\":200}\n");
}

TEST(PlanEcho, PlainRequestIs200AtOnce) {
  EchoAttempts attempts(16);
  absl::StatusOr<EchoOutcome> o = PlanEcho(Request("/"), attempts);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->status, 200);
  EXPECT_EQ(o->delay, Duration(0));
  EXPECT_EQ(attempts.keys(), 0u);
}

TEST(PlanEcho, SetHeaderAsksForResponseHeaders) {
  EchoAttempts attempts(16);
  http::ServerRequest r = Request("/set");
  r.headers.Add("X-Echo-Set-Header", "Some-Other-Header:val, X-Header-Set: some:value");
  r.headers.Add("x-echo-set-header", "X-Header-Add:one");
  absl::StatusOr<EchoOutcome> o = PlanEcho(r, attempts);
  ASSERT_TRUE(o.ok()) << o.status();
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(o->headers, (Pairs{{"Some-Other-Header", "val"},
                               {"X-Header-Set", "some:value"},
                               {"X-Header-Add", "one"}}));
  EXPECT_EQ(o->status, 200);
  for (const char* bad : {"no-colon", ":value", "a:b,c"}) {
    http::ServerRequest b = Request("/set");
    b.headers.Add("x-echo-set-header", bad);
    absl::StatusOr<EchoOutcome> refused = PlanEcho(b, attempts);
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_NE(refused.status().message().find("x-echo-set-header"), std::string::npos)
        << refused.status();
  }
}

TEST(PlanEcho, DelayAndStatus) {
  EchoAttempts attempts(16);
  absl::StatusOr<EchoOutcome> o =
      PlanEcho(Request("/request-timeout?delay=1s&status=418"), attempts);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->status, 418);
  EXPECT_EQ(o->delay, std::chrono::seconds(1));
}

TEST(PlanEcho, RetrySimulationFailsTheFirstAttemptsOfEachUuid) {
  EchoAttempts attempts(16);
  auto status = [&](const std::string& uuid) {
    absl::StatusOr<EchoOutcome> o = PlanEcho(
        Request("/retry?responseCode=503&succeedAfter=2&delayRetry=300ms&uuid=" + uuid), attempts);
    EXPECT_TRUE(o.ok()) << o.status();
    return std::make_pair(o->status, o->delay);
  };
  EXPECT_EQ(status("a"), std::make_pair(503, Duration(std::chrono::milliseconds(300))));
  EXPECT_EQ(status("b"), std::make_pair(503, Duration(std::chrono::milliseconds(300))));
  EXPECT_EQ(status("a"), std::make_pair(503, Duration(std::chrono::milliseconds(300))));
  EXPECT_EQ(status("a"), std::make_pair(200, Duration(0)));
  EXPECT_EQ(status("a"), std::make_pair(200, Duration(0)));
  EXPECT_EQ(status("b"), std::make_pair(503, Duration(std::chrono::milliseconds(300))));
  EXPECT_EQ(status("b"), std::make_pair(200, Duration(0)));
}

TEST(PlanEcho, RetrySimulationWithoutResponseCodeResetsTheFirstAttempts) {
  EchoAttempts attempts(16);
  auto plan = [&](const std::string& query) {
    absl::StatusOr<EchoOutcome> o = PlanEcho(Request("/retry?" + query), attempts);
    EXPECT_TRUE(o.ok()) << o.status();
    return o.ok() ? *o : EchoOutcome{};
  };
  EchoOutcome first = plan("succeedAfter=2&uuid=c&delayRetry=100ms");
  EXPECT_TRUE(first.reset);
  EXPECT_EQ(first.delay, std::chrono::milliseconds(100));
  EXPECT_TRUE(plan("succeedAfter=2&uuid=c").reset);
  EchoOutcome third = plan("succeedAfter=2&uuid=c");
  EXPECT_FALSE(third.reset);
  EXPECT_EQ(third.status, 200);
  EXPECT_FALSE(plan("succeedAfter=0&uuid=d").reset);
  // With a responseCode the failures are answers, never resets.
  EchoOutcome answered = plan("succeedAfter=1&uuid=e&responseCode=500");
  EXPECT_FALSE(answered.reset);
  EXPECT_EQ(answered.status, 500);
}

TEST(EchoAttempts, ForgetsTheOldestUuidBeyondItsLimit) {
  EchoAttempts attempts(2);
  EXPECT_EQ(attempts.Next("a"), 1u);
  EXPECT_EQ(attempts.Next("b"), 1u);
  EXPECT_EQ(attempts.Next("a"), 2u);
  EXPECT_EQ(attempts.Next("c"), 1u);  // a, the oldest, goes
  EXPECT_EQ(attempts.keys(), 2u);
  EXPECT_EQ(attempts.Next("b"), 2u);
  EXPECT_EQ(attempts.Next("a"), 1u);
}

TEST(PlanEcho, BadParametersAreNamed) {
  EchoAttempts attempts(16);
  for (const auto& [target, expected] : std::vector<std::pair<std::string, std::string>>{
           {"/?delay=soon", "delay=\"soon\""},
           {"/?delay=2m", "delay=\"2m\""},
           {"/?status=99", "status=\"99\""},
           {"/?responseCode=500&succeedAfter=1", "uuid"},
           {"/?succeedAfter=1", "uuid"},
           {"/?responseCode=500&uuid=x", "succeedAfter"},
           {"/?responseCode=5000&succeedAfter=1&uuid=x", "responseCode=\"5000\""},
           {"/?responseCode=500&succeedAfter=-1&uuid=x", "succeedAfter=\"-1\""},
           {"/?responseCode=500&succeedAfter=1&uuid=x&delayRetry=x", "delayRetry=\"x\""},
       }) {
    absl::StatusOr<EchoOutcome> o = PlanEcho(Request(target), attempts);
    ASSERT_FALSE(o.ok()) << target;
    EXPECT_NE(std::string(o.status().message()).find(expected), std::string::npos)
        << target << ": " << o.status();
  }
}

}  // namespace
}  // namespace meshlet::testapp
