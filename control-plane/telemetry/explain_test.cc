#include "control-plane/telemetry/explain.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

constexpr int64_t kMs = 1000000;
constexpr int64_t kBase = int64_t{1700000000} * 1000000000;
const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";

std::string SpanId(int n) { return absl::StrFormat("%016x", n); }

SpanRecord Span(int id, int parent, const std::string& service, SpanKind kind, int64_t start_ms,
                int64_t duration_ms,
                std::vector<std::pair<std::string, std::string>> attributes = {}) {
  SpanRecord s;
  s.trace_id = kTrace;
  s.span_id = SpanId(id);
  if (parent != 0) s.parent_span_id = SpanId(parent);
  s.service = service;
  s.name = "GET /reviews";
  s.kind = kind;
  s.start_unix_nanos = kBase + start_ms * kMs;
  s.end_unix_nanos = s.start_unix_nanos + duration_ms * kMs;
  s.attributes = std::move(attributes);
  return s;
}

// productpage's outbound sidecar → reviews' inbound sidecar → the app; the outbound side's route
// timeout (300 ms from TrafficPolicy/default/reviews) fires after two attempts, the inbound side
// still waiting on its app is cut later.
std::vector<SpanRecord> TimeoutTrace() {
  return {
      Span(1, 0, "productpage.default", SpanKind::kServer, 0, 300,
           {{"http.response.status_code", "504"},
            {"meshlet.route", "reviews-split.rule-0"},
            {"meshlet.policy.route", "HTTPRoute/default/reviews-split"},
            {"meshlet.route.rule", "0"},
            {"meshlet.route.match", "0"},
            {"meshlet.cluster", "outbound|9080|version=v2|reviews.default"},
            {"meshlet.subset", "version=v2"},
            {"meshlet.policy.traffic", "TrafficPolicy/default/reviews"},
            {"meshlet.timeout.request_ms", "300"},
            {"meshlet.timeout.per_try_ms", "200"},
            {"meshlet.response_flags", "UT,UPT"},
            {"meshlet.error.reason", "upstream request timeout"},
            {"meshlet.request_id", "req-504"},
            {"meshlet.attempts",
             "endpoint=10.0.0.5:15006 outcome=timeout duration_ms=200 next=retry(per-try "
             "timeout); endpoint=10.0.0.6:15006 outcome=timeout duration_ms=100 "
             "next=no-retry(deadline)"},
            {"meshlet.source.node", "productpage-0"}}),
      Span(2, 1, "productpage.default", SpanKind::kClient, 1, 200,
           {{"meshlet.retry_attempt", "1"}, {"server.address", "10.0.0.5:15006"}}),
      Span(3, 2, "reviews.default", SpanKind::kServer, 2, 400,
           {{"http.response.status_code", "504"},
            {"meshlet.route", "inbound"},
            {"meshlet.cluster", "inbound|9080"},
            {"meshlet.authz", "allow"},
            {"meshlet.policy.authz", "AuthorizationPolicy/default/reviews-callers"},
            {"meshlet.peer.identity", "spiffe://cluster.local/ns/default/sa/productpage"},
            {"meshlet.response_flags", "UT"},
            {"meshlet.error.reason", "upstream request timeout"},
            {"meshlet.source.node", "reviews-v2-0"}}),
  };
}

TEST(ExplainTest, TimeoutNamesTheHopThePolicyAndTheAttempts) {
  absl::StatusOr<Explanation> e = Explain(kTrace, TimeoutTrace());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->verdict,
            "504 at productpage.default's outbound sidecar (productpage-0): request timeout 300ms "
            "from TrafficPolicy/default/reviews (route HTTPRoute/default/reviews-split rule 0) "
            "expired after 2 attempts");
  EXPECT_EQ(e->status, "504");
  EXPECT_EQ(e->request_id, "req-504");
  ASSERT_EQ(e->hops.size(), 2u);
  EXPECT_EQ(e->first_failure, 0);
  EXPECT_TRUE(e->hops[0].failed_first);
  EXPECT_FALSE(e->hops[1].failed_first);
  EXPECT_EQ(e->hops[0].direction, "outbound");
  EXPECT_EQ(e->hops[1].direction, "inbound");
  EXPECT_EQ(e->hops[1].depth, 1);
  ASSERT_EQ(e->hops[0].attempts.size(), 2u);
  EXPECT_EQ(e->hops[0].attempts[0].endpoint, "10.0.0.5:15006");
  EXPECT_EQ(e->hops[0].attempts[0].next, "retry(per-try timeout)");
  EXPECT_EQ(e->hops[0].attempts[1].duration_ms, 100);
  EXPECT_EQ(e->hops[0].attempts[1].next, "no-retry(deadline)");
  EXPECT_EQ(e->policies, (std::vector<std::string>{"AuthorizationPolicy/default/reviews-callers",
                                                   "HTTPRoute/default/reviews-split",
                                                   "TrafficPolicy/default/reviews"}));
  const std::string json = ExplanationJson(*e);
  EXPECT_TRUE(absl::StrContains(json, R"("verdict":"504 at productpage.default's outbound)"))
      << json;
  EXPECT_TRUE(absl::StrContains(
      json, R"j({"endpoint":"10.0.0.5:15006","outcome":"timeout","durationMs":200,)j"
            R"j("next":"retry(per-try timeout)"})j"))
      << json;
  EXPECT_TRUE(absl::StrContains(json, R"("firstFailure":0)")) << json;
}

// A decision record keeps a few attempts and counts the rest in a last "dropped=N" entry: they
// count as attempts, never as attempts of their own.
TEST(ExplainTest, AttemptsPastTheRecordsCapAreCountedNotListed) {
  std::vector<SpanRecord> trace = TimeoutTrace();
  for (auto& [key, value] : trace[0].attributes) {
    if (key == "meshlet.attempts") value += "; dropped=3";
  }
  absl::StatusOr<Explanation> e = Explain(kTrace, trace);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops[0].attempts.size(), 2u);
  EXPECT_EQ(e->hops[0].attempts_dropped, 3);
  EXPECT_TRUE(absl::EndsWith(e->verdict, "expired after 5 attempts")) << e->verdict;
  EXPECT_TRUE(absl::StrContains(ExplanationJson(*e), R"("attemptsDropped":3)"));
}

// The failure that ended first is the cause even when it is deeper in the chain.
TEST(ExplainTest, TheFailureThatEndedFirstIsTheCause) {
  std::vector<SpanRecord> spans = TimeoutTrace();
  spans[2].end_unix_nanos = spans[2].start_unix_nanos + 100 * kMs;  // inbound gave up first
  absl::StatusOr<Explanation> e = Explain(kTrace, spans);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->first_failure, 1);
  EXPECT_TRUE(absl::StartsWith(e->verdict,
                               "504 at reviews.default's inbound sidecar (reviews-v2-0): request "
                               "timeout (route inbound) expired"))
      << e->verdict;
}

// A trace of one hop, productpage.default's, with `attributes`.
absl::StatusOr<Explanation> ExplainOne(
    std::vector<std::pair<std::string, std::string>> attributes) {
  return Explain(
      kTrace, {Span(1, 0, "productpage.default", SpanKind::kServer, 0, 5, std::move(attributes))});
}

// One outbound hop made the reply itself with `flags`; the verdict after "503 at ...: ".
std::string Verdict(const std::string& status, const std::string& flags, const std::string& reason,
                    std::vector<std::pair<std::string, std::string>> extra = {}) {
  std::vector<std::pair<std::string, std::string>> attributes = {
      {"http.response.status_code", status},
      {"meshlet.response_flags", flags},
      {"meshlet.error.reason", reason}};
  attributes.insert(attributes.end(), extra.begin(), extra.end());
  absl::StatusOr<Explanation> e = ExplainOne(attributes);
  if (!e.ok()) return std::string(e.status().message());
  return e->verdict;
}

// A token refused by JWT authentication: the hop, and the check that failed.
TEST(ExplainTest, ARefusedJwtIsNamedWithItsReason) {
  const std::vector<std::pair<std::string, std::string>> inbound = {
      {"meshlet.listener.direction", "inbound"}};
  EXPECT_EQ(Verdict("401", "UA", "Jwt is expired", inbound),
            "401 at productpage.default's inbound sidecar: JWT authentication refused the "
            "request's token (Jwt is expired) from a caller without a mesh identity");
}

TEST(ExplainTest, EachProxyMadeErrorKind) {
  const std::vector<std::pair<std::string, std::string>> route = {
      {"meshlet.cluster", "outbound|9080||reviews.default"},
      {"meshlet.route", "default"},
      {"meshlet.policy.route", "Service/default/reviews"},
      {"meshlet.policy.traffic", "TrafficPolicy/default/reviews"}};
  EXPECT_EQ(Verdict("503", "UH", "no healthy upstream", route),
            "503 at productpage.default's outbound sidecar: no healthy endpoint in cluster "
            "outbound|9080||reviews.default (route Service/default/reviews)");
  EXPECT_EQ(Verdict("503", "UO", "upstream overflow", route),
            "503 at productpage.default's outbound sidecar: a circuit-breaker limit of cluster "
            "outbound|9080||reviews.default refused the request (limits from "
            "TrafficPolicy/default/reviews) (route Service/default/reviews)");
  EXPECT_EQ(Verdict("503", "BO", "breaker open", route),
            "503 at productpage.default's outbound sidecar: the consecutive-failure breaker of "
            "cluster outbound|9080||reviews.default is open (outlier settings from "
            "TrafficPolicy/default/reviews) (route Service/default/reviews)");
  EXPECT_EQ(Verdict("429", "RL", "local rate limit", route),
            "429 at productpage.default's outbound sidecar: rate limited (route "
            "Service/default/reviews)");
  EXPECT_EQ(Verdict("404", "NR", "no route", {{"meshlet.route", "no-service"}}),
            "404 at productpage.default's outbound sidecar: unknown destination: no route matched "
            "the request (route no-service)");
  EXPECT_EQ(Verdict("500", "NC", "route backend does not exist", route),
            "500 at productpage.default's outbound sidecar: the route's backend does not exist "
            "(the share of backendRefs the control plane could not resolve: see the route's "
            "ResolvedRefs status) (route Service/default/reviews)");
  EXPECT_EQ(Verdict("503", "NC", "route cluster not found", route),
            "503 at productpage.default's outbound sidecar: the route names a cluster the sidecar "
            "has not got (route Service/default/reviews)");
  EXPECT_EQ(Verdict("502", "NM", "unknown destination 203.0.113.9:80"),
            "502 at productpage.default's sidecar: unknown destination (unknown destination "
            "203.0.113.9:80)");
  EXPECT_EQ(Verdict("403", "AZ", "denied by authorization",
                    {{"meshlet.authz", "deny"},
                     {"meshlet.policy.authz", "AuthorizationPolicy/default/reviews-callers"},
                     {"meshlet.peer.identity", "spiffe://cluster.local/ns/default/sa/ratings"}}),
            "403 at productpage.default's inbound sidecar: denied by "
            "AuthorizationPolicy/default/reviews-callers for "
            "spiffe://cluster.local/ns/default/sa/ratings");
  EXPECT_EQ(Verdict("503", "UF,URX", "upstream connect error", route),
            "503 at productpage.default's outbound sidecar: connecting to cluster "
            "outbound|9080||reviews.default failed (route Service/default/reviews)");
  // The sidecar recorded why the last attempt got no connection.
  std::vector<std::pair<std::string, std::string>> refused = route;
  refused.emplace_back("meshlet.attempts",
                       "endpoint=10.0.0.5:9080 outcome=connect-failure connect=refused "
                       "duration_ms=0 next=retry(connect-failure); endpoint=10.0.0.6:9080 "
                       "outcome=connect-failure connect=refused duration_ms=0 "
                       "next=no-retry(attempts-exhausted)");
  EXPECT_EQ(Verdict("503", "UF,URX", "upstream connect error", refused),
            "503 at productpage.default's outbound sidecar: connecting to cluster "
            "outbound|9080||reviews.default failed: connection refused after 2 attempts (route "
            "Service/default/reviews)");
  std::vector<std::pair<std::string, std::string>> timed_out = route;
  timed_out.emplace_back("meshlet.attempts",
                         "endpoint=10.0.0.5:9080 outcome=connect-failure connect=timeout "
                         "duration_ms=1000 next=no-retry(attempts-exhausted)");
  EXPECT_EQ(Verdict("503", "UF", "upstream connect error", timed_out),
            "503 at productpage.default's outbound sidecar: connecting to cluster "
            "outbound|9080||reviews.default failed: no connection within the connect timeout "
            "after 1 attempt (route Service/default/reviews)");
  // Locality-aware balancing sent the request out of the caller's zone.
  std::vector<std::pair<std::string, std::string>> failover = route;
  failover.emplace_back("meshlet.upstream.locality", "failover");
  EXPECT_EQ(Verdict("503", "UF", "upstream connect error", failover),
            "503 at productpage.default's outbound sidecar: connecting to cluster "
            "outbound|9080||reviews.default (by locality failover: too few healthy endpoints "
            "nearer the caller) failed (route Service/default/reviews)");
  std::vector<std::pair<std::string, std::string>> spillover = route;
  spillover.emplace_back("meshlet.upstream.locality", "spillover");
  EXPECT_EQ(Verdict("503", "UO", "upstream overflow", spillover),
            "503 at productpage.default's outbound sidecar: a circuit-breaker limit of cluster "
            "outbound|9080||reviews.default (by locality spill-over: the endpoints nearest the "
            "caller were overloaded) refused the request (limits from "
            "TrafficPolicy/default/reviews) (route Service/default/reviews)");
  std::vector<std::pair<std::string, std::string>> local = route;
  local.emplace_back("meshlet.upstream.locality", "local");
  EXPECT_EQ(Verdict("503", "UH", "no healthy upstream", local),
            "503 at productpage.default's outbound sidecar: no healthy endpoint in cluster "
            "outbound|9080||reviews.default (route Service/default/reviews)");
  EXPECT_EQ(Verdict("503", "UF", "upstream TLS handshake failed", route),
            "503 at productpage.default's outbound sidecar: the TLS handshake with cluster "
            "outbound|9080||reviews.default failed (route Service/default/reviews)");
}

// No hop made the reply: the application's status passed through every sidecar; the deepest hop
// that returned it is where it came from. Attempts come from the client spans of a retried
// request when the span carries no meshlet.attempts.
TEST(ExplainTest, AnApplicationErrorPassesThrough) {
  std::vector<SpanRecord> spans = {
      Span(1, 0, "frontend.default", SpanKind::kServer, 0, 20,
           {{"http.response.status_code", "503"},
            {"meshlet.cluster", "outbound|80||backend.default"}}),
      Span(2, 1, "frontend.default", SpanKind::kClient, 1, 5,
           {{"meshlet.retry_attempt", "1"},
            {"server.address", "10.0.0.7:15006"},
            {"http.response.status_code", "503"}}),
      Span(3, 1, "frontend.default", SpanKind::kClient, 8, 5,
           {{"meshlet.retry_attempt", "2"},
            {"server.address", "10.0.0.8:15006"},
            {"http.response.status_code", "503"}}),
      Span(4, 3, "backend.default", SpanKind::kServer, 9, 3,
           {{"http.response.status_code", "503"}, {"meshlet.cluster", "inbound|80"}}),
  };
  absl::StatusOr<Explanation> e = Explain(kTrace, spans);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->verdict,
            "503 from the application behind backend.default's inbound sidecar: no proxy made it "
            "(an upstream response passed through)");
  ASSERT_EQ(e->hops.size(), 2u);
  ASSERT_EQ(e->hops[0].attempts.size(), 2u);
  EXPECT_EQ(e->hops[0].attempts[1].endpoint, "10.0.0.8:15006");
  EXPECT_EQ(e->hops[0].attempts[1].outcome, "503");
  EXPECT_TRUE(e->hops[1].failed_first);
}

// An outbound sidecar's span of a request it did not retry is a CLIENT span (the call to the next
// hop, its attempt folded into it): a hop, not an attempt, with the next hop's SERVER span under
// it. Its upstream is meshlet.upstream.address (server.address is the request's authority); a
// span from an earlier sidecar names it in server.address, without a server.port.
TEST(ExplainTest, AnOutboundClientSpanIsAHop) {
  std::vector<SpanRecord> spans = {
      Span(1, 0, "frontend.default", SpanKind::kClient, 0, 20,
           {{"http.response.status_code", "503"},
            {"meshlet.listener.direction", "outbound"},
            {"meshlet.cluster", "outbound|80||backend.default"},
            {"server.address", "backend"},
            {"server.port", "80"},
            {"peer.service", "backend.default"},
            {"meshlet.upstream.address", "10.0.0.7:15006"}}),
      Span(2, 1, "backend.default", SpanKind::kServer, 2, 10,
           {{"http.response.status_code", "503"},
            {"meshlet.listener.direction", "inbound"},
            {"meshlet.cluster", "inbound|80"},
            {"server.address", "10.0.0.9:8080"}}),
  };
  absl::StatusOr<Explanation> e = Explain(kTrace, spans);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops.size(), 2u);
  EXPECT_EQ(e->hops[0].service, "frontend.default");
  EXPECT_EQ(e->hops[0].direction, "outbound");
  EXPECT_EQ(e->hops[0].upstream, "10.0.0.7:15006");
  EXPECT_EQ(e->hops[0].depth, 0);
  EXPECT_EQ(e->hops[1].service, "backend.default");
  EXPECT_EQ(e->hops[1].depth, 1);
  EXPECT_EQ(e->hops[1].upstream, "10.0.0.9:8080");  // an earlier sidecar's
  EXPECT_EQ(e->verdict,
            "503 from the application behind backend.default's inbound sidecar: no proxy made it "
            "(an upstream response passed through)");
}

// The timeout's own policy object (meshlet.policy.timeout) is named rather than the cluster's
// TrafficPolicy when the sidecar says where its timeouts came from: here the HTTPRoute rule set
// 300 ms while a TrafficPolicy (with retries) applies to the cluster. Without it (the sidecar's
// default), no object is named.
TEST(ExplainTest, ATimeoutNamesTheObjectThatSetIt) {
  std::vector<std::pair<std::string, std::string>> own = {
      {"meshlet.route", "ratings.slow-paths"},
      {"meshlet.policy.route", "HTTPRoute/default/ratings"},
      {"meshlet.route.rule", "0"},
      {"meshlet.policy.traffic", "TrafficPolicy/default/ratings"},
      {"meshlet.timeout.request_ms", "300"},
      {"meshlet.timeout.origin", "route"},
      {"meshlet.policy.timeout", "HTTPRoute/default/ratings"},
      {"meshlet.timeout.per_try_ms", "100"},
      {"meshlet.policy.per_try_timeout", "MeshConfig/mesh"}};
  EXPECT_EQ(Verdict("504", "UT", "upstream request timeout", own),
            "504 at productpage.default's sidecar: request timeout 300ms from "
            "HTTPRoute/default/ratings (route HTTPRoute/default/ratings rule 0) expired");
  EXPECT_EQ(Verdict("504", "UPT", "upstream request timeout", own),
            "504 at productpage.default's sidecar: per-try timeout 100ms from MeshConfig/mesh "
            "(route HTTPRoute/default/ratings rule 0) expired on the last attempt");
  own.erase(own.begin() + 6);  // meshlet.policy.timeout: the sidecar's own default
  EXPECT_EQ(Verdict("504", "UT", "upstream request timeout", own),
            "504 at productpage.default's sidecar: request timeout 300ms (route "
            "HTTPRoute/default/ratings rule 0) expired");
  absl::StatusOr<Explanation> e =
      Explain(kTrace, {
                          Span(1, 0, "productpage.default", SpanKind::kServer, 0, 5,
                               {{"http.response.status_code", "504"},
                                {"meshlet.response_flags", "UT"},
                                {"meshlet.error.reason", "upstream request timeout"},
                                {"meshlet.policy.timeout", "HTTPRoute/default/ratings"},
                                {"meshlet.policy.per_try_timeout", "MeshConfig/mesh"}}),
                      });
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->policies,
            (std::vector<std::string>{"HTTPRoute/default/ratings", "MeshConfig/mesh"}));
  const std::string json = ExplanationJson(*e);
  EXPECT_TRUE(absl::StrContains(json, R"("timeoutPolicy":"HTTPRoute/default/ratings")")) << json;
  EXPECT_TRUE(absl::StrContains(json, R"("perTryTimeoutPolicy":"MeshConfig/mesh")")) << json;
}

// The callee's sidecar, told the caller's deadline, times out a little before its caller by
// design and answers 504 itself; the caller passes that on (its span exported as it passed a
// proxy's error on, unsampled). The cause is the caller's route timeout and the object that set
// it, not the callee.
TEST(ExplainTest, ADeadlineFromTheCallerIsBlamedOnTheHopWhoseTimeoutSetIt) {
  const std::vector<SpanRecord> spans = {
      Span(1, 0, "client.default", SpanKind::kServer, 0, 301,
           {{"http.response.status_code", "504"},
            {"meshlet.route", "ratings.slow-paths"},
            {"meshlet.policy.route", "HTTPRoute/default/ratings"},
            {"meshlet.route.rule", "0"},
            {"meshlet.cluster", "outbound|9080||ratings.default"},
            {"meshlet.timeout.request_ms", "300"},
            {"meshlet.timeout.origin", "route"},
            {"meshlet.policy.timeout", "HTTPRoute/default/ratings"},
            {"meshlet.request_id", "req-slow"},
            {"meshlet.attempts", "endpoint=10.0.0.9:9080 outcome=504 duration_ms=300 next=done"},
            {"meshlet.source.node", "client-0.default"}}),
      Span(2, 1, "ratings.default", SpanKind::kServer, 1, 290,
           {{"http.response.status_code", "504"},
            {"meshlet.route", "app"},
            {"meshlet.cluster", "inbound|9080"},
            {"meshlet.timeout.request_ms", "290"},
            {"meshlet.timeout.origin", "caller"},
            {"meshlet.response_flags", "UT"},
            {"meshlet.error.reason", "upstream request timeout"},
            {"meshlet.source.node", "ratings-v1-0.default"}}),
  };
  std::vector<SpanRecord> unsampled = spans;
  for (SpanRecord& span : unsampled) span.flags = 0x300;  // parent known, not sampled
  absl::StatusOr<Explanation> e = Explain(kTrace, unsampled);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->first_failure, 1);
  EXPECT_EQ(e->deadline_from, 0);
  EXPECT_TRUE(e->unsampled);
  EXPECT_EQ(e->verdict,
            "504 at ratings.default's inbound sidecar (ratings-v1-0.default): the deadline of "
            "client.default's outbound sidecar (client-0.default) ran out: request timeout 300ms "
            "from HTTPRoute/default/ratings (route HTTPRoute/default/ratings rule 0) expired "
            "after 1 attempt");
  const std::string json = ExplanationJson(*e);
  EXPECT_TRUE(absl::StrContains(json, R"("deadlineFrom":0)")) << json;
  EXPECT_TRUE(absl::StrContains(json, R"("unsampled":true)")) << json;
  EXPECT_TRUE(absl::StrContains(json, R"("sampled":false)")) << json;
  EXPECT_TRUE(absl::StrContains(json, R"("timeoutOrigin":"caller")")) << json;
  // Sampled spans (flag 01) are not marked.
  std::vector<SpanRecord> sampled = spans;
  for (SpanRecord& span : sampled) span.flags = 0x301;
  EXPECT_FALSE(Explain(kTrace, sampled)->unsampled);

  // Without the caller's span: the caller's deadline, as far as this hop knows.
  e = Explain(kTrace, {spans[1]});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->deadline_from, -1);
  EXPECT_EQ(e->verdict,
            "504 at ratings.default's inbound sidecar (ratings-v1-0.default): the caller's "
            "deadline (290ms left) expired (route app)");
}

// Objects behind refusals made before routing: the MeshConfig that refuses unknown destinations
// (NM) and the TrafficPolicy whose rate limit refused the request (RL).
TEST(ExplainTest, RefusalsNameTheirPolicyObjects) {
  EXPECT_EQ(Verdict("502", "NM", "destination 203.0.113.9:80 is not in the mesh registry",
                    {{"meshlet.policy.destination", "MeshConfig/mesh"}}),
            "502 at productpage.default's outbound sidecar: unknown destination (destination "
            "203.0.113.9:80 is not in the mesh registry): refused by MeshConfig/mesh "
            "(outboundTrafficPolicy REGISTRY_ONLY)");
  EXPECT_EQ(Verdict("502", "NM", "destination 203.0.113.9:80 is not in the mesh registry",
                    {{"meshlet.policy.destination", "Namespace/shop"}}),
            "502 at productpage.default's outbound sidecar: unknown destination (destination "
            "203.0.113.9:80 is not in the mesh registry): refused by Namespace/shop (label "
            "meshlet.io/outbound-traffic-policy: REGISTRY_ONLY)");
  EXPECT_EQ(Verdict("429", "RL", "local rate limit exceeded",
                    {{"meshlet.route", "app"},
                     {"meshlet.cluster", "inbound|9080"},
                     {"meshlet.policy.rate_limit", "TrafficPolicy/default/ratings"}}),
            "429 at productpage.default's inbound sidecar: rate limited by "
            "TrafficPolicy/default/ratings (route app)");
  absl::StatusOr<Explanation> e = Explain(
      kTrace, {Span(1, 0, "productpage.default", SpanKind::kServer, 0, 5,
                    {{"http.response.status_code", "502"},
                     {"meshlet.response_flags", "NM"},
                     {"meshlet.error.reason", "destination 203.0.113.9:80 is not in the registry"},
                     {"meshlet.policy.destination", "MeshConfig/mesh"}})});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->policies, std::vector<std::string>{"MeshConfig/mesh"});
  EXPECT_TRUE(absl::StrContains(ExplanationJson(*e), R"("destinationPolicy":"MeshConfig/mesh")"));
}

// The hop's direction is what its sidecar says (its listener's), not guessed from what happened:
// an authorization refusal on an outbound listener is the outbound sidecar's. A span that does
// not say (an older sidecar) is placed by its cluster's name or a verified caller, else not.
TEST(ExplainTest, TheDirectionIsTheListenersNotTheAuthorizations) {
  const std::vector<std::pair<std::string, std::string>> denied = {
      {"meshlet.authz", "deny"}, {"meshlet.policy.authz", "AuthorizationPolicy/default/no-admin"}};
  std::vector<std::pair<std::string, std::string>> outbound = denied;
  outbound.emplace_back("meshlet.listener.direction", "outbound");
  EXPECT_EQ(Verdict("403", "AZ", "RBAC: access denied", outbound),
            "403 at productpage.default's outbound sidecar: denied by "
            "AuthorizationPolicy/default/no-admin for a caller without a mesh identity");
  std::vector<std::pair<std::string, std::string>> inbound = denied;
  inbound.emplace_back("meshlet.listener.direction", "inbound");
  inbound.emplace_back("meshlet.cluster", "outbound|9080||reviews.default");  // it says better
  EXPECT_EQ(Verdict("403", "AZ", "RBAC: access denied", inbound),
            "403 at productpage.default's inbound sidecar: denied by "
            "AuthorizationPolicy/default/no-admin for a caller without a mesh identity");
  // Without it: nothing tells.
  EXPECT_EQ(Verdict("403", "AZ", "RBAC: access denied", denied),
            "403 at productpage.default's sidecar: denied by "
            "AuthorizationPolicy/default/no-admin for a caller without a mesh identity");
  absl::StatusOr<Explanation> e = ExplainOne(outbound);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(absl::StrContains(ExplanationJson(*e), R"("direction":"outbound")"));
}

// Load shedding: which limit, and the setting behind it.
TEST(ExplainTest, ShedRequestsNameTheLimitAndItsSetting) {
  EXPECT_EQ(Verdict("503", "OL", "overloaded",
                    {{"meshlet.listener.direction", "outbound"},
                     {"meshlet.shed.reason", "active_requests"},
                     {"meshlet.shed.limit", "40"},
                     {"meshlet.shed.worker_limit", "20"}}),
            "503 at productpage.default's outbound sidecar: the sidecar shed the request: more "
            "than 20 requests in flight on its worker (its share of "
            "--overload-max-active-requests 40)");
  EXPECT_EQ(Verdict("503", "OL", "overloaded",
                    {{"meshlet.shed.reason", "active_requests"},
                     {"meshlet.shed.limit", "1"},
                     {"meshlet.shed.worker_limit", "1"}}),
            "503 at productpage.default's sidecar: the sidecar shed the request: more than 1 "
            "request in flight on its worker (its share of --overload-max-active-requests 1)");
  EXPECT_EQ(Verdict("503", "OL", "overloaded",
                    {{"meshlet.shed.reason", "memory"}, {"meshlet.shed.limit", "512"}}),
            "503 at productpage.default's sidecar: the sidecar shed the request: resident memory "
            "above --overload-max-rss-mb 512");
  // A sidecar that does not say which.
  EXPECT_EQ(Verdict("503", "OL", "overloaded"),
            "503 at productpage.default's sidecar: the sidecar is overloaded and shed the request");
  absl::StatusOr<Explanation> e = ExplainOne({{"http.response.status_code", "503"},
                                              {"meshlet.response_flags", "OL"},
                                              {"meshlet.shed.reason", "memory"},
                                              {"meshlet.shed.limit", "512"}});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(absl::StrContains(ExplanationJson(*e),
                                R"("shed":"resident memory above --overload-max-rss-mb 512")"))
      << ExplanationJson(*e);
}

// An unsampled request retried by the caller's sidecar: its attempts' client spans were not
// exported, so the callee's error span names a parent that is not in the trace. The caller's
// decision record lists each attempt's span id, which links the two into one chain.
TEST(ExplainTest, AnUnsampledRetriedRequestStaysOneChain) {
  std::vector<SpanRecord> spans = {
      Span(1, 0, "frontend.default", SpanKind::kServer, 0, 60,
           {{"http.response.status_code", "503"},
            {"meshlet.listener.direction", "outbound"},
            {"meshlet.cluster", "outbound|9080||backend.default"},
            {"meshlet.request_id", "req-retried"},
            {"meshlet.attempts",
             absl::StrCat("endpoint=10.0.0.7:15006 outcome=503 duration_ms=20 next=retry(5xx) "
                          "span_id=",
                          SpanId(0x71),
                          "; endpoint=10.0.0.8:15006 outcome=503 duration_ms=20 "
                          "next=no-retry(attempts-exhausted) span_id=",
                          SpanId(0x72))}}),
      // The callee's sidecar of each attempt, which answered 503 itself.
      Span(3, 0x71, "backend.default", SpanKind::kServer, 2, 15,
           {{"http.response.status_code", "503"},
            {"meshlet.listener.direction", "inbound"},
            {"meshlet.cluster", "inbound|9080"},
            {"meshlet.response_flags", "UF"},
            {"meshlet.error.reason", "upstream connect error"}}),
      Span(4, 0x72, "backend.default", SpanKind::kServer, 30, 15,
           {{"http.response.status_code", "503"},
            {"meshlet.listener.direction", "inbound"},
            {"meshlet.cluster", "inbound|9080"},
            {"meshlet.response_flags", "UF"},
            {"meshlet.error.reason", "upstream connect error"}}),
  };
  for (SpanRecord& span : spans) span.flags = 0x300;
  absl::StatusOr<Explanation> e = Explain(kTrace, spans);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops.size(), 3u);
  EXPECT_EQ(e->hops[0].depth, 0);
  EXPECT_EQ(e->hops[1].depth, 1);
  EXPECT_EQ(e->hops[1].parent, 0);
  EXPECT_EQ(e->hops[1].span_id, SpanId(3));
  EXPECT_EQ(e->hops[2].depth, 1);
  EXPECT_EQ(e->hops[2].parent, 0);
  EXPECT_EQ(e->first_failure, 1);
  EXPECT_EQ(e->verdict,
            "503 at backend.default's inbound sidecar: connecting to cluster inbound|9080 failed");
  ASSERT_EQ(e->hops[0].attempts.size(), 2u);
  EXPECT_EQ(e->hops[0].attempts[1].span_id, SpanId(0x72));
  EXPECT_TRUE(absl::StrContains(ExplanationJson(*e), absl::StrCat(R"("spanId":")", SpanId(0x71))))
      << ExplanationJson(*e);
}

// Spans may come from senders the collector did not verify: parents that form a cycle (through
// client spans, or between hops) and a repeated span id must neither hang nor lose a hop.
TEST(ExplainTest, ParentCyclesAndRepeatedIdsEndAndKeepEveryHop) {
  const std::vector<std::pair<std::string, std::string>> failed = {
      {"http.response.status_code", "503"},
      {"meshlet.response_flags", "UH"},
      {"meshlet.error.reason", "no healthy upstream"}};
  absl::StatusOr<Explanation> e =
      Explain(kTrace, {Span(1, 2, "a", SpanKind::kClient, 0, 5, {{"meshlet.retry_attempt", "1"}}),
                       Span(2, 1, "a", SpanKind::kClient, 0, 5, {{"meshlet.retry_attempt", "1"}}),
                       Span(3, 1, "b", SpanKind::kServer, 1, 3, failed)});
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops.size(), 1u);
  EXPECT_EQ(e->hops[0].service, "b");

  e = Explain(kTrace, {Span(4, 5, "c", SpanKind::kServer, 0, 5, failed),
                       Span(5, 4, "d", SpanKind::kServer, 1, 3, failed)});
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops.size(), 2u);
  EXPECT_EQ(e->hops[0].service, "c");
  EXPECT_EQ(e->hops[1].service, "d");
  EXPECT_EQ(e->hops[1].parent, 0);

  e = Explain(kTrace, {Span(6, 0, "e", SpanKind::kServer, 0, 5, failed),
                       Span(7, 6, "f", SpanKind::kServer, 1, 3, failed),
                       Span(6, 7, "g", SpanKind::kServer, 2, 1, failed)});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->hops.size(), 3u);

  // A chain as long as the trace store keeps (10 000 spans), each hop under the one before.
  std::vector<SpanRecord> chain;
  for (int i = 1; i <= 10000; ++i) {
    chain.push_back(Span(i, i - 1, "h", SpanKind::kServer, i, 1, failed));
  }
  e = Explain(kTrace, chain);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops.size(), 10000u);
  EXPECT_EQ(e->hops.back().depth, 9999);
  EXPECT_EQ(e->hops.back().parent, 9998);
}

// A gateway proxy names itself "gateway:<name>.<namespace>": its hop is the Gateway's, with the
// class its verified identity's service account tells ("<name>-<class>"); an unverified span of
// that name gets no class.
TEST(ExplainTest, AGatewayProxysHopIsNamedAsItsGateway) {
  std::vector<SpanRecord> spans = {
      Span(1, 0, "gateway:bookinfo.default", SpanKind::kServer, 0, 20,
           {{"http.response.status_code", "504"},
            {"meshlet.listener.direction", "outbound"},
            {"meshlet.policy.route", "HTTPRoute.gateway.networking.k8s.io/default/bookinfo"},
            {"meshlet.gateway.listener", "http"},
            {"meshlet.route.rule", "0"},
            {"meshlet.cluster", "outbound|9080||productpage.default"},
            {"meshlet.timeout.request_ms", "20"},
            {"meshlet.response_flags", "UT"},
            {"meshlet.error.reason", "upstream request timeout"},
            {"meshlet.source.identity", "spiffe://cluster.local/ns/default/sa/bookinfo-meshlet"},
            {"meshlet.source.node", "bookinfo-meshlet-0"}}),
      Span(2, 1, "productpage.default", SpanKind::kServer, 1, 30,
           {{"http.response.status_code", "200"},
            {"meshlet.listener.direction", "inbound"},
            {"meshlet.cluster", "inbound|9080"}}),
  };
  absl::StatusOr<Explanation> e = Explain(kTrace, spans);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->hops.size(), 2u);
  EXPECT_EQ(e->hops[0].gateway, "default/bookinfo");
  EXPECT_EQ(e->hops[0].gateway_class, "meshlet");
  EXPECT_EQ(e->hops[0].direction, "gateway");
  EXPECT_EQ(e->hops[1].gateway, "");
  EXPECT_TRUE(absl::StartsWith(e->verdict,
                               "504 at gateway default/bookinfo (class meshlet, listener http) "
                               "(bookinfo-meshlet-0): request timeout 20ms"))
      << e->verdict;
  const std::string json = ExplanationJson(*e);
  EXPECT_TRUE(absl::StrContains(
      json,
      R"("direction":"gateway","gateway":"default/bookinfo","gatewayClass":"meshlet","gatewayListener":"http")"))
      << json;

  spans[0].attributes.pop_back();
  spans[0].attributes.pop_back();  // unverified: no identity, no node
  e = Explain(kTrace, spans);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->hops[0].gateway_class, "");
  EXPECT_TRUE(absl::StartsWith(e->verdict, "504 at gateway default/bookinfo (listener http): "))
      << e->verdict;

  // A status the backend (without a sidecar of its own) answered, passed through the gateway.
  e = Explain(kTrace, {Span(1, 0, "gateway:bookinfo.default", SpanKind::kServer, 0, 20,
                            {{"http.response.status_code", "503"},
                             {"meshlet.listener.direction", "outbound"},
                             {"meshlet.cluster", "outbound|9080||legacy.default"}})});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->verdict,
            "503 from the backend gateway default/bookinfo called (outbound|9080||legacy.default): "
            "no proxy made it (its response passed through)");
}

TEST(ExplainTest, SuccessSaysNoHopFailed) {
  absl::StatusOr<Explanation> e =
      Explain(kTrace, {Span(1, 0, "frontend.default", SpanKind::kServer, 0, 20,
                            {{"http.response.status_code", "200"},
                             {"meshlet.cluster", "outbound|80||backend.default"}})});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->verdict, "200: no hop failed");
  EXPECT_EQ(e->first_failure, -1);
}

TEST(ExplainTest, ATraceWithoutSidecarSpansIsRefused) {
  absl::StatusOr<Explanation> e = Explain(
      kTrace,
      {Span(1, 0, "app", SpanKind::kServer, 0, 20,
            {{"http.response.status_code", "200"}, {"meshlet.source.unverified", "otlp"}})});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(e.status().message(), "no span from a meshlet sidecar"))
      << e.status();
  EXPECT_EQ(Explain(kTrace, {}).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry
