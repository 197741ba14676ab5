// The decision record the router fills (stream/decision_record.h), against FakeUpstream servers
// (real sockets on 127.0.0.1): the route's and cluster's policy sources and timeouts, and each
// attempt with its endpoint, outcome and why it was or was not retried.

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "sidecar/resilience/retry_state.h"
#include "sidecar/router/router.h"
#include "sidecar/router/router_test_util.h"
#include "sidecar/stream/decision_record.h"

namespace meshlet::sidecar::router {
namespace {

class RouterDecisionTest : public RouterTest {
 protected:
  // An upstream that answers every request 503.
  FakeUpstream& AlwaysFailing() {
    FakeUpstream& up = AddUpstream();
    up.auto_respond = false;
    up.on_request = [&up](const FakeUpstream::Request& r) {
      if (r.ended) up.Respond(up.requests().size() - 1, 503);
    };
    return up;
  }
};

std::string Attempts(const StreamInfo& info) {
  std::string out;
  stream::AppendAttempts(info.decision, &out);
  return out;
}

// "duration_ms=N" made "duration_ms=*", for comparisons.
std::string WithoutDurations(std::string text) {
  for (size_t at = text.find("duration_ms="); at != std::string::npos;
       at = text.find("duration_ms=", at)) {
    at += 12;
    const size_t end = text.find(' ', at);
    text.replace(at, end - at, "*");
  }
  return text;
}

// The cause names the retry_on condition that admitted the retry: the default policy retries a
// 503 because retriable_status_codes lists it (`status`), `5xx` any 5xx, `gateway-error` 502-504.
TEST_F(RouterDecisionTest, RetryCauseNamesTheConditionThatAdmittedIt) {
  struct Case {
    uint32_t retry_on;
    int status;
    const char* cause;
  };
  for (const Case& c :
       {Case{resilience::RetryOn::kRetriableStatusCodes, 503, "status"},
        Case{resilience::RetryOn::k5xx, 503, "5xx"}, Case{resilience::RetryOn::k5xx, 500, "5xx"},
        Case{resilience::RetryOn::kGatewayError, 502, "gateway-error"},
        Case{resilience::RetryOn::kGatewayError | resilience::RetryOn::kRetriableStatusCodes, 503,
             "gateway-error"}}) {
    SCOPED_TRACE(c.cause);
    FakeUpstream& up = AddUpstream();
    up.auto_respond = false;
    up.on_request = [&up, status = c.status](const FakeUpstream::Request& r) {
      if (r.ended) up.Respond(up.requests().size() - 1, up.requests().size() == 1 ? status : 200);
    };
    RouteAction action = Retrying(1);
    action.retry_policy.retry_on = c.retry_on;
    Configure({up.address()}, action);
    RecordingCallbacks& client = Send("GET");
    EXPECT_EQ(client.status, "200");
    EXPECT_EQ(WithoutDurations(Attempts(client.info)),
              absl::StrCat("endpoint=", up.address().ToString(), " outcome=", c.status,
                           " duration_ms=* next=retry(", c.cause, "); endpoint=",
                           up.address().ToString(), " outcome=200 duration_ms=* next=done"));
  }
}

TEST_F(RouterDecisionTest, RetriedServerErrorThenSuccessShowsTwoAttempts) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) up.Respond(up.requests().size() - 1, up.requests().size() == 1 ? 503 : 200);
  };
  route_source_ = "HTTPRoute/default/reviews-split";
  traffic_policy_ = "TrafficPolicy/default/reviews";
  subset_ = "version=v2";
  RouteAction action = Retrying(2);
  action.timeout = std::chrono::seconds(3);
  Configure({up.address()}, action);
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "200");
  const std::string endpoint = up.address().ToString();
  EXPECT_EQ(WithoutDurations(Attempts(client.info)),
            absl::StrCat("endpoint=", endpoint, " outcome=503 duration_ms=* next=retry(status); ",
                         "endpoint=", endpoint, " outcome=200 duration_ms=* next=done"));
  const stream::DecisionRecord& d = client.info.decision;
  EXPECT_EQ(d.policy_route, "HTTPRoute/default/reviews-split");
  EXPECT_EQ(d.route_rule, 2);
  EXPECT_EQ(d.route_match, 1);
  EXPECT_EQ(d.policy_traffic, "TrafficPolicy/default/reviews");
  EXPECT_EQ(d.subset, "version=v2");
  EXPECT_GT(d.timeout_request_ms, 2900);
  EXPECT_LE(d.timeout_request_ms, 3000);
  EXPECT_EQ(d.timeout_per_try_ms, -1);                // none set
  EXPECT_EQ(d.authz, stream::AuthzResult::kUnknown);  // no authorization on this path
}

TEST_F(RouterDecisionTest, PerTryTimeoutsAreRetriedUntilTheAttemptsRunOut) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;  // never answers
  RouteAction action = Retrying(1);
  action.timeout = std::chrono::seconds(5);
  action.retry_policy.per_try_timeout = milliseconds(50);
  Configure({up.address()}, action);
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "504");
  const std::string endpoint = up.address().ToString();
  EXPECT_EQ(WithoutDurations(Attempts(client.info)),
            absl::StrCat("endpoint=", endpoint,
                         " outcome=timeout duration_ms=* next=retry(timeout); endpoint=", endpoint,
                         " outcome=timeout duration_ms=* next=no-retry(attempts-exhausted)"));
  // About the per-try timeout (its timer runs on the loop's cached time, so not to the ms).
  EXPECT_GT(stream::AttemptDurationMs(client.info.decision.attempts[0]), 10);
  EXPECT_LT(stream::AttemptDurationMs(client.info.decision.attempts[0]), 5000);
  EXPECT_EQ(client.info.decision.timeout_per_try_ms, 50);
  EXPECT_EQ(client.info.decision.policy_route, "");  // the route has no source
  EXPECT_EQ(client.info.decision.route_rule, -1);
}

TEST_F(RouterDecisionTest, ACircuitBreakerWithNoRetryRoomSaysBreaker) {
  FakeUpstream& up = AlwaysFailing();
  Configure({up.address()}, Retrying(2));
  AddCluster("c", {up.address()}, {.max_retries = 0});  // replaces Configure's
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(WithoutDurations(Attempts(client.info)),
            absl::StrCat("endpoint=", up.address().ToString(),
                         " outcome=503 duration_ms=* next=no-retry(breaker)"));
}

TEST_F(RouterDecisionTest, ASpentRetryBudgetSaysBudget) {
  FakeUpstream& up = AlwaysFailing();
  budget_.budget_percent = 0;
  budget_.min_retries_per_second = 0;
  Configure({up.address()}, Retrying(2));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(WithoutDurations(Attempts(client.info)),
            absl::StrCat("endpoint=", up.address().ToString(),
                         " outcome=503 duration_ms=* next=no-retry(budget)"));
}

TEST_F(RouterDecisionTest, AConnectFailureRetriedToAnotherHost) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& dead = AddUpstream();
  dead.StopListening();
  Configure({dead.address(), up.address()}, Retrying(2));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(
      WithoutDurations(Attempts(client.info)),
      absl::StrCat("endpoint=", dead.address().ToString(),
                   " outcome=connect-failure connect=refused duration_ms=* "
                   "next=retry(connect-failure); ",
                   "endpoint=", up.address().ToString(), " outcome=200 duration_ms=* next=done"));
}

// Who set the timeouts: the route names its timeout's and per-try timeout's policy objects; a
// caller's shorter deadline (x-meshlet-deadline) is the caller's, whatever the route said.
TEST_F(RouterDecisionTest, TimeoutsNameWhoSetThem) {
  FakeUpstream& up = AddUpstream();
  RouteAction action = Retrying(1);
  action.timeout = std::chrono::seconds(3);
  action.timeout_source = "HTTPRoute/default/ratings";
  action.retry_policy.per_try_timeout = std::chrono::seconds(1);
  action.per_try_timeout_source = "TrafficPolicy/default/ratings";
  Configure({up.address()}, action);
  RecordingCallbacks& own = Send("GET");
  EXPECT_EQ(own.status, "200");
  EXPECT_EQ(own.info.decision.policy_timeout, "HTTPRoute/default/ratings");
  EXPECT_FALSE(own.info.decision.timeout_from_caller);
  EXPECT_EQ(own.info.decision.policy_per_try, "TrafficPolicy/default/ratings");
  RecordingCallbacks& caller = Send("GET", "", {{"x-meshlet-deadline", "250"}});
  EXPECT_EQ(caller.status, "200");
  EXPECT_TRUE(caller.info.decision.timeout_from_caller);
  EXPECT_LE(caller.info.decision.timeout_request_ms, 250);
  // A longer deadline leaves the route's own in charge.
  RecordingCallbacks& longer = Send("GET", "", {{"x-meshlet-deadline", "60000"}});
  EXPECT_FALSE(longer.info.decision.timeout_from_caller);
  EXPECT_GT(longer.info.decision.timeout_request_ms, 2900);
}

TEST_F(RouterDecisionTest, NoHealthyUpstreamMeansNoAttempt) {
  Configure({}, Retrying(2));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(client.info.decision.attempt_count, 0u);
  EXPECT_EQ(Attempts(client.info), "");
}

}  // namespace
}  // namespace meshlet::sidecar::router
