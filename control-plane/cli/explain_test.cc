// meshctl explain against a fake control plane whose explanations the collector's own Explain
// (control-plane/telemetry/explain.h) wrote from synthetic decision records, one per kind of
// response a proxy makes itself; and apply recording the file each object came from.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "control-plane/cli/api_client.h"
#include "control-plane/cli/fake_api_transport.h"
#include "control-plane/cli/meshctl.h"
#include "control-plane/telemetry/explain.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {
namespace {

using telemetry::SpanKind;
using telemetry::SpanRecord;
using Attributes = std::vector<std::pair<std::string, std::string>>;

constexpr char kTrace[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr int64_t kMs = 1000000;
constexpr int64_t kBase = int64_t{1700000000} * 1000000000;

SpanRecord Span(int id, int parent, const std::string& service, SpanKind kind, int64_t start_ms,
                int64_t duration_ms, Attributes attributes) {
  SpanRecord s;
  s.trace_id = kTrace;
  s.span_id = absl::StrFormat("%016x", id);
  if (parent != 0) s.parent_span_id = absl::StrFormat("%016x", parent);
  s.service = service;
  s.name = "GET /reviews/1";
  s.kind = kind;
  s.start_unix_nanos = kBase + start_ms * kMs;
  s.end_unix_nanos = s.start_unix_nanos + duration_ms * kMs;
  s.attributes = std::move(attributes);
  return s;
}

// GET /api/v1/traces/{id}/explain's answer for `spans`, as the collector writes it.
std::string ExplanationOf(const std::vector<SpanRecord>& spans) {
  absl::StatusOr<telemetry::Explanation> e = telemetry::Explain(kTrace, spans);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? telemetry::ExplanationJson(*e) : "";
}

// productpage's outbound sidecar calls reviews through its inbound sidecar; `outbound` and
// `inbound` are their decision records.
std::vector<SpanRecord> Chain(Attributes outbound, Attributes inbound) {
  outbound.emplace_back("meshlet.request_id", "5e1c0a9f-77");
  outbound.emplace_back("meshlet.source.node", "productpage-0");
  inbound.emplace_back("meshlet.source.node", "reviews-v2-0");
  return {Span(1, 0, "productpage.default", SpanKind::kServer, 0, 300, outbound),
          Span(2, 1, "productpage.default", SpanKind::kClient, 1, 290,
               {{"meshlet.retry_attempt", "1"}}),
          Span(3, 2, "reviews.default", SpanKind::kServer, 2, 280, inbound)};
}

const Attributes kOutboundRoute = {{"meshlet.route", "reviews-split.rule-0"},
                                   {"meshlet.policy.route", "HTTPRoute/default/reviews-split"},
                                   {"meshlet.route.rule", "0"},
                                   {"meshlet.route.match", "0"},
                                   {"meshlet.cluster", "outbound|9080|version=v2|reviews.default"},
                                   {"meshlet.subset", "version=v2"},
                                   {"meshlet.policy.traffic", "TrafficPolicy/default/reviews"},
                                   {"meshlet.timeout.request_ms", "300"}};

Attributes With(Attributes base, const Attributes& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

class ExplainCommandTest : public ::testing::Test {
 protected:
  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return RunMeshctl(std::move(args), Io{.in = in_, .out = out_, .err = err_}, api_, env_);
  }

  // The object `ref` ("Kind/ns/name") as the API returns it, applied from `file`.
  void AnswerObject(const std::string& kind, const std::string& name, const std::string& file) {
    const policy::KindInfo* info = policy::FindKind(kind);
    ASSERT_NE(info, nullptr) << kind;
    api_.Answer(
        "GET", ResourcePath(*info, info->namespaced ? "default" : "", name), 200,
        absl::StrCat(R"({"kind":")", kind, R"(","metadata":{"name":")", name,
                     info->namespaced ? R"(","namespace":"default)" : "",
                     R"(","annotations":{"meshlet.io/applied-from":")", file, R"("}},"spec":{}})"));
  }

  std::stringstream in_, out_, err_;
  FakeApiTransport api_;
  Environment env_;
};

TEST_F(ExplainCommandTest, ATimeoutByTraceIdNamesTheHopThePolicyAndItsFile) {
  const std::vector<SpanRecord> spans =
      Chain(With(kOutboundRoute,
                 {{"http.response.status_code", "504"},
                  {"meshlet.timeout.per_try_ms", "200"},
                  {"meshlet.response_flags", "UT"},
                  {"meshlet.error.reason", "upstream request timeout"},
                  {"meshlet.attempts",
                   "endpoint=10.0.0.5:15006 outcome=timeout duration_ms=200 next=retry(per-try "
                   "timeout); endpoint=10.0.0.6:15006 outcome=timeout duration_ms=100 "
                   "next=no-retry(deadline)"}}),
            {{"http.response.status_code", "200"},
             {"meshlet.route", "inbound"},
             {"meshlet.cluster", "inbound|9080"},
             {"meshlet.authz", "allow"},
             {"meshlet.policy.authz", "AuthorizationPolicy/default/reviews-callers"},
             {"meshlet.peer.identity", "spiffe://cluster.local/ns/default/sa/productpage"}});
  api_.Answer("GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
              ExplanationOf(spans));
  AnswerObject("HTTPRoute", "reviews-split", "policies/reviews.yaml");
  AnswerObject("TrafficPolicy", "reviews", "policies/timeouts.yaml");
  // The AuthorizationPolicy was deleted since: shown without a file.

  ASSERT_EQ(Run({"explain", "4BF92F3577B34DA6A3CE929D0E0E4736"}), 0) << err_.str();
  EXPECT_EQ(
      out_.str(),
      "Trace 4bf92f3577b34da6a3ce929d0e0e4736 (request id 5e1c0a9f-77): 504 in 300.00ms, 2 hops\n"
      "\n"
      "1. productpage.default outbound sidecar (productpage-0): GET /reviews/1 -> 504 in "
      "300.00ms   <- failed first\n"
      "     route     HTTPRoute/default/reviews-split (from policies/reviews.yaml) rule 0 match 0 "
      "[reviews-split.rule-0]\n"
      "     cluster   outbound|9080|version=v2|reviews.default (subset version=v2)\n"
      "     policy    TrafficPolicy/default/reviews (from policies/timeouts.yaml)\n"
      "     timeouts  request 300ms, per try 200ms\n"
      "     attempt 1 10.0.0.5:15006 timeout 200ms -> retry(per-try timeout)\n"
      "     attempt 2 10.0.0.6:15006 timeout 100ms -> no-retry(deadline)\n"
      "     error     UT: upstream request timeout (the proxy answered itself)\n"
      "\n"
      "  2. reviews.default inbound sidecar (reviews-v2-0): GET /reviews/1 -> 200 in 280.00ms\n"
      "       route     inbound\n"
      "       cluster   inbound|9080\n"
      "       authz     allow by AuthorizationPolicy/default/reviews-callers for "
      "spiffe://cluster.local/ns/default/sa/productpage\n"
      "\n"
      "Verdict: 504 at productpage.default's outbound sidecar (productpage-0): request timeout "
      "300ms from TrafficPolicy/default/reviews (from policies/timeouts.yaml) (route "
      "HTTPRoute/default/reviews-split (from policies/reviews.yaml) rule 0) expired after 2 "
      "attempts\n");

  ASSERT_EQ(Run({"explain", kTrace, "-o", "json"}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(
      out_.str(), R"("appliedFrom":{"HTTPRoute/default/reviews-split":"policies/reviews.yaml",)"
                  R"("TrafficPolicy/default/reviews":"policies/timeouts.yaml"}})"))
      << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), R"("verdict":"504 at productpage.default's)"))
      << out_.str();
}

// Each kind of reply a proxy makes itself: the hop that made it, the reason and the policy object
// responsible, in the verdict and the hop's lines.
TEST_F(ExplainCommandTest, EachProxyMadeErrorKind) {
  struct Case {
    std::string name;
    Attributes outbound, inbound;
    std::vector<std::string> expected;  // lines or parts of lines
  };
  const Attributes ok_inbound = {{"http.response.status_code", "200"},
                                 {"meshlet.cluster", "inbound|9080"}};
  const std::vector<Case> cases = {
      {"no healthy upstream",
       With(kOutboundRoute, {{"http.response.status_code", "503"},
                             {"meshlet.response_flags", "UH"},
                             {"meshlet.error.reason", "no healthy upstream"}}),
       ok_inbound,
       {"error     UH: no healthy upstream (the proxy answered itself)",
        "Verdict: 503 at productpage.default's outbound sidecar (productpage-0): no healthy "
        "endpoint in cluster outbound|9080|version=v2|reviews.default (subset version=v2) "
        "(route HTTPRoute/default/reviews-split rule 0)"}},
      {"breaker open",
       With(kOutboundRoute, {{"http.response.status_code", "503"},
                             {"meshlet.response_flags", "BO"},
                             {"meshlet.error.reason", "upstream circuit breaker open"}}),
       ok_inbound,
       {"Verdict: 503 at productpage.default's outbound sidecar (productpage-0): the "
        "consecutive-failure breaker of cluster outbound|9080|version=v2|reviews.default (subset "
        "version=v2) is open (outlier settings from TrafficPolicy/default/reviews)"}},
      {"breaker limit",
       With(kOutboundRoute, {{"http.response.status_code", "503"},
                             {"meshlet.response_flags", "UO"},
                             {"meshlet.error.reason", "upstream overflow"}}),
       ok_inbound,
       {"a circuit-breaker limit of cluster outbound|9080|version=v2|reviews.default (subset "
        "version=v2) refused the request (limits from TrafficPolicy/default/reviews)"}},
      {"authorization",
       With(kOutboundRoute, {{"http.response.status_code", "403"}}),
       {{"http.response.status_code", "403"},
        {"meshlet.authz", "deny"},
        {"meshlet.policy.authz", "AuthorizationPolicy/default/reviews-callers"},
        {"meshlet.peer.identity", "spiffe://cluster.local/ns/default/sa/productpage"},
        {"meshlet.response_flags", "AZ"},
        {"meshlet.error.reason", "RBAC: access denied"}},
       {"authz     deny by AuthorizationPolicy/default/reviews-callers for "
        "spiffe://cluster.local/ns/default/sa/productpage",
        "2. reviews.default inbound sidecar (reviews-v2-0): GET /reviews/1 -> 403 in 280.00ms   "
        "<- failed first",
        "Verdict: 403 at reviews.default's inbound sidecar (reviews-v2-0): denied by "
        "AuthorizationPolicy/default/reviews-callers for "
        "spiffe://cluster.local/ns/default/sa/productpage"}},
      {"a rule without matches",
       With({{"meshlet.policy.route", "HTTPRoute/default/reviews-all"},
             {"meshlet.route.rule", "2"},
             {"meshlet.route.match", "-1"},
             {"meshlet.cluster", "outbound|9080||reviews.default"}},
            {{"http.response.status_code", "503"},
             {"meshlet.response_flags", "UH"},
             {"meshlet.error.reason", "no healthy upstream"}}),
       {},
       {"     route     HTTPRoute/default/reviews-all rule 2\n"}},
      {"rate limited",
       With(kOutboundRoute, {{"http.response.status_code", "429"}}),
       {{"http.response.status_code", "429"},
        {"meshlet.route", "inbound"},
        {"meshlet.cluster", "inbound|9080"},
        {"meshlet.response_flags", "RL"},
        {"meshlet.error.reason", "local rate limit"}},
       {"Verdict: 429 at reviews.default's inbound sidecar (reviews-v2-0): rate limited (route "
        "inbound)"}},
      {"unknown destination",
       {{"http.response.status_code", "404"},
        {"meshlet.route", "no-service"},
        {"meshlet.response_flags", "NR"},
        {"meshlet.error.reason", "no service for this host"}},
       {},
       {"Verdict: 404 at productpage.default's outbound sidecar (productpage-0): unknown "
        "destination: no route matched the request (route no-service)"}},
      {"shed",
       {{"http.response.status_code", "503"},
        {"meshlet.listener.direction", "outbound"},
        {"meshlet.response_flags", "OL"},
        {"meshlet.error.reason", "overloaded"},
        {"meshlet.shed.reason", "active_requests"},
        {"meshlet.shed.limit", "40"},
        {"meshlet.shed.worker_limit", "20"}},
       {},
       {"     shed      more than 20 requests in flight on its worker (its share of "
        "--overload-max-active-requests 40)\n",
        "Verdict: 503 at productpage.default's outbound sidecar (productpage-0): the sidecar shed "
        "the request: more than 20 requests in flight on its worker (its share of "
        "--overload-max-active-requests 40)"}},
      {"timeout",
       With(kOutboundRoute, {{"http.response.status_code", "504"},
                             {"meshlet.response_flags", "UT"},
                             {"meshlet.error.reason", "upstream request timeout"}}),
       ok_inbound,
       {"Verdict: 504 at productpage.default's outbound sidecar (productpage-0): request "
        "timeout 300ms from TrafficPolicy/default/reviews (route HTTPRoute/default/reviews-split "
        "rule 0) expired"}},
  };
  for (const Case& c : cases) {
    std::vector<SpanRecord> spans = Chain(c.outbound, c.inbound);
    if (c.inbound.empty()) spans.resize(1);  // nothing was sent on
    api_.Answer("GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
                ExplanationOf(spans));
    ASSERT_EQ(Run({"explain", kTrace}), 0) << c.name << ": " << err_.str();
    for (const std::string& expected : c.expected) {
      EXPECT_TRUE(absl::StrContains(out_.str(), expected)) << c.name << ": want\n"
                                                           << expected << "\nin\n"
                                                           << out_.str();
    }
  }
}

// What the e2e suite's proxy-made errors look like, unsampled (only failing hops exported spans):
// each names the hop, the reason and the policy object, with the file it was applied from — the
// MeshConfig too, which has no namespace.
TEST_F(ExplainCommandTest, UnsampledFailuresNameTheirPolicyObjectsAndFiles) {
  auto unsampled = [](std::vector<SpanRecord> spans) {
    for (SpanRecord& span : spans) span.flags = 0x300;
    return spans;
  };
  AnswerObject("MeshConfig", "mesh", "policies/mesh.yaml");
  AnswerObject("HTTPRoute", "ratings", "policies/ratings-timeout.yaml");
  // An unknown destination under REGISTRY_ONLY.
  api_.Answer(
      "GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
      ExplanationOf(unsampled({Span(
          1, 0, "client.default", SpanKind::kServer, 0, 1,
          {{"http.response.status_code", "502"},
           {"meshlet.response_flags", "NM"},
           {"meshlet.error.reason", "destination 198.18.0.9:8080 is not in the mesh registry"},
           {"meshlet.policy.destination", "MeshConfig/mesh"},
           {"meshlet.request_id", "r-nm"},
           {"meshlet.source.node", "client-0.default"}})})));
  ASSERT_EQ(Run({"explain", kTrace}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(),
                                "(not sampled: only the sidecars that failed the request, or "
                                "passed a proxy's error on, exported their spans)\n"))
      << out_.str();
  EXPECT_TRUE(absl::StrContains(
      out_.str(),
      "     refusal   unknown destinations refused by MeshConfig/mesh (from policies/mesh.yaml) "
      "(outboundTrafficPolicy REGISTRY_ONLY)\n"))
      << out_.str();
  EXPECT_TRUE(absl::StrContains(
      out_.str(),
      "Verdict: 502 at client.default's outbound sidecar (client-0.default): unknown destination "
      "(destination 198.18.0.9:8080 is not in the mesh registry): refused by MeshConfig/mesh "
      "(from policies/mesh.yaml) (outboundTrafficPolicy REGISTRY_ONLY)\n"))
      << out_.str();

  // A route timeout set by an HTTPRoute rule, fired first at the callee (its caller's deadline).
  api_.Answer(
      "GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
      ExplanationOf(unsampled({Span(1, 0, "client.default", SpanKind::kServer, 0, 301,
                                    {{"http.response.status_code", "504"},
                                     {"meshlet.policy.route", "HTTPRoute/default/ratings"},
                                     {"meshlet.route.rule", "0"},
                                     {"meshlet.cluster", "outbound|9080||ratings.default"},
                                     {"meshlet.policy.traffic", "TrafficPolicy/default/ratings"},
                                     {"meshlet.timeout.request_ms", "300"},
                                     {"meshlet.timeout.origin", "route"},
                                     {"meshlet.policy.timeout", "HTTPRoute/default/ratings"},
                                     {"meshlet.request_id", "r-504"},
                                     {"meshlet.source.node", "client-0.default"}}),
                               Span(2, 1, "ratings.default", SpanKind::kServer, 1, 290,
                                    {{"http.response.status_code", "504"},
                                     {"meshlet.cluster", "inbound|9080"},
                                     {"meshlet.timeout.request_ms", "290"},
                                     {"meshlet.timeout.origin", "caller"},
                                     {"meshlet.response_flags", "UT"},
                                     {"meshlet.error.reason", "upstream request timeout"},
                                     {"meshlet.source.node", "ratings-v1-0.default"}})})));
  ASSERT_EQ(Run({"explain", kTrace}), 0) << err_.str();
  for (const std::string expected :
       {"1. client.default outbound sidecar (client-0.default): GET /reviews/1 -> 504 in "
        "301.00ms   <- its timeout set the deadline\n",
        "     timeouts  request 300ms from HTTPRoute/default/ratings (from "
        "policies/ratings-timeout.yaml)\n",
        "       timeouts  request 290ms (the caller's deadline)\n",
        "Verdict: 504 at ratings.default's inbound sidecar (ratings-v1-0.default): the deadline "
        "of client.default's outbound sidecar (client-0.default) ran out: request timeout "
        "300ms from HTTPRoute/default/ratings (from policies/ratings-timeout.yaml) (route "
        "HTTPRoute/default/ratings (from policies/ratings-timeout.yaml) rule 0) expired\n"}) {
    EXPECT_TRUE(absl::StrContains(out_.str(), expected)) << expected << "\nin\n" << out_.str();
  }
}

// A gateway proxy's hop is named as its Gateway and class, with the route that matched and the
// backend, like a sidecar's hop.
TEST_F(ExplainCommandTest, AGatewayHopIsNamedAsItsGateway) {
  AnswerObject("HTTPRoute.gateway.networking.k8s.io", "bookinfo", "policies/bookinfo-route.yaml");
  api_.Answer(
      "GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
      ExplanationOf({Span(
          1, 0, "gateway:bookinfo.default", SpanKind::kServer, 0, 3,
          {{"http.response.status_code", "503"},
           {"meshlet.listener.direction", "outbound"},
           {"meshlet.policy.route", "HTTPRoute.gateway.networking.k8s.io/default/bookinfo"},
           {"meshlet.route.rule", "0"},
           {"meshlet.cluster", "outbound|9080||productpage.default"},
           {"meshlet.response_flags", "UH"},
           {"meshlet.error.reason", "no healthy upstream"},
           {"meshlet.source.identity", "spiffe://cluster.local/ns/default/sa/bookinfo-meshlet"},
           {"meshlet.source.node", "bookinfo-meshlet-0"}})}));
  ASSERT_EQ(Run({"explain", kTrace}), 0) << err_.str();
  for (const std::string expected :
       {"1. gateway default/bookinfo (class meshlet) (bookinfo-meshlet-0): GET /reviews/1 -> 503",
        "     route     HTTPRoute.gateway.networking.k8s.io/default/bookinfo (from "
        "policies/bookinfo-route.yaml) rule 0\n",
        "     cluster   outbound|9080||productpage.default\n",
        "Verdict: 503 at gateway default/bookinfo (class meshlet) (bookinfo-meshlet-0): "}) {
    EXPECT_TRUE(absl::StrContains(out_.str(), expected)) << expected << "\n" << out_.str();
  }
  EXPECT_FALSE(absl::StrContains(out_.str(), "sidecar")) << out_.str();
}

// meshlet's HTTPRoute and the Gateway API's share the kind's name: a route made from the Gateway
// API's is named with its group, so the file shown is that object's, not the one of meshlet's
// HTTPRoute of the same name.
TEST_F(ExplainCommandTest, AGatewayApiRouteShowsItsOwnFile) {
  AnswerObject("HTTPRoute", "reviews", "policies/meshlet-reviews.yaml");
  AnswerObject("HTTPRoute.gateway.networking.k8s.io", "reviews", "policies/gateway-reviews.yaml");
  const Attributes failed = {
      {"http.response.status_code", "503"}, {"meshlet.route.rule", "0"},
      {"meshlet.route.match", "0"},         {"meshlet.cluster", "outbound|9080||reviews.default"},
      {"meshlet.response_flags", "UH"},     {"meshlet.error.reason", "no healthy upstream"}};
  api_.Answer("GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
              ExplanationOf({Chain(With(failed, {{"meshlet.policy.route",
                                                  "HTTPRoute.gateway.networking.k8s.io/default/"
                                                  "reviews"}}),
                                   {})[0]}));
  ASSERT_EQ(Run({"explain", kTrace}), 0) << err_.str();
  EXPECT_TRUE(
      absl::StrContains(out_.str(),
                        "     route     HTTPRoute.gateway.networking.k8s.io/default/reviews (from "
                        "policies/gateway-reviews.yaml) rule 0 match 0\n"))
      << out_.str();
  EXPECT_FALSE(absl::StrContains(out_.str(), "meshlet-reviews.yaml")) << out_.str();
  EXPECT_EQ(api_.requests().back().path,
            "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/reviews");

  // meshlet's own, unqualified.
  api_.Answer("GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
              ExplanationOf({Chain(
                  With(failed, {{"meshlet.policy.route", "HTTPRoute/default/reviews"}}), {})[0]}));
  ASSERT_EQ(Run({"explain", kTrace}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(),
                                "     route     HTTPRoute/default/reviews (from "
                                "policies/meshlet-reviews.yaml) rule 0 match 0\n"))
      << out_.str();
}

TEST_F(ExplainCommandTest, ARequestIdIsLookedUpInTheCollector) {
  const std::vector<SpanRecord> spans =
      Chain(With(kOutboundRoute, {{"http.response.status_code", "503"},
                                  {"meshlet.response_flags", "UH"},
                                  {"meshlet.error.reason", "no healthy upstream"}}),
            {});
  api_.Answer("GET", "/api/v1/traces?requestId=5e1c0a9f-77&limit=2", 200,
              absl::StrCat(R"({"kind":"TraceList","items":[{"traceId":")", kTrace, R"("}]})"));
  api_.Answer("GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 200,
              ExplanationOf({spans[0]}));
  ASSERT_EQ(Run({"explain", "5e1c0a9f-77"}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "Verdict: 503 at productpage.default's outbound"))
      << out_.str();
  EXPECT_EQ(api_.requests()[0].path, "/api/v1/traces?requestId=5e1c0a9f-77&limit=2");

  // A request id that names no trace, and one that is also no trace id the collector holds.
  api_.Answer("GET", "/api/v1/traces?requestId=nosuch&limit=2", 200, R"({"items":[]})");
  api_.Answer("GET", absl::StrCat("/api/v1/traces?requestId=", std::string(32, 'a'), "&limit=2"),
              200, R"({"items":[]})");
  EXPECT_EQ(Run({"explain", "nosuch"}), 1);
  EXPECT_EQ(err_.str(),
            "meshctl: no trace with request id \"nosuch\": no proxy failed it and it was not "
            "sampled, its spans have not arrived yet, or they were not kept (past the sidecars' "
            "error-span rate, or evicted; meshctl traces lists what the collector holds)\n");
  const std::string other(32, 'a');
  EXPECT_EQ(Run({"explain", other}), 1);
  EXPECT_TRUE(absl::StrContains(err_.str(), "no trace with trace id or request id \"" + other))
      << err_.str();
  // A request id with characters a query must escape.
  Run({"explain", "a b&c"});
  EXPECT_EQ(api_.requests().back().path, "/api/v1/traces?requestId=a%20b%26c&limit=2");
}

TEST_F(ExplainCommandTest, ClearErrors) {
  // A trace without sidecar spans: the collector's reason.
  api_.Answer("GET", absl::StrCat("/api/v1/traces/", kTrace, "/explain"), 422,
              R"({"kind":"Status","message":"trace 4bf92f3577b34da6a3ce929d0e0e4736 has no span )"
              R"(from a meshlet sidecar (no meshlet.* attributes): nothing to explain"})");
  EXPECT_EQ(Run({"explain", kTrace}), 1);
  EXPECT_EQ(err_.str(),
            "meshctl: trace 4bf92f3577b34da6a3ce929d0e0e4736 has no span from a meshlet sidecar "
            "(no meshlet.* attributes): nothing to explain\n");
  // No id, two ids.
  EXPECT_EQ(Run({"explain"}), 2);
  EXPECT_TRUE(absl::StrContains(err_.str(), "usage: meshctl explain")) << err_.str();
  EXPECT_EQ(Run({"explain", "a", "b"}), 2);
  // Dry-run flags: both or neither, not with an id, a URL meshctl can read.
  EXPECT_EQ(Run({"explain", "--from", "frontend"}), 2);
  EXPECT_EQ(err_.str(), "meshctl: a dry run needs both --from SERVICE and --to URL\n");
  EXPECT_EQ(Run({"explain", "--from", "a", "--to", "http://b/", kTrace}), 2);
  EXPECT_EQ(Run({"explain", "--from", "a", "--to", "https://b/"}), 2);
  EXPECT_EQ(err_.str(), "meshctl: --to: expected http://HOST[:PORT][/PATH]\n");
  EXPECT_EQ(Run({"explain", "--from", "a", "--to", "http://b/", "-o", "json"}), 2);
  EXPECT_EQ(Run({"explain", kTrace, "-H", "x:y"}), 2);
  EXPECT_EQ(Run({"explain", "--from", "a", "--to", "http://b/", "-H", "novalue"}), 2);
  EXPECT_TRUE(absl::StrContains(err_.str(), "expected NAME:VALUE")) << err_.str();
  // A dry run from a service without a connected sidecar.
  api_.Answer("GET", "/api/v1/proxies", 200,
              R"({"items":[{"id":"frontend-0","service":"frontend","namespace":"shop"}]})");
  EXPECT_EQ(Run({"explain", "--from", "frontend", "--to", "http://reviews/"}), 1);
  EXPECT_EQ(err_.str(),
            "meshctl: no sidecar of service frontend in namespace default is connected: the dry "
            "run uses the configuration the control plane sends one (meshctl proxy-status lists "
            "them)\n");
  // The control plane cannot be reached.
  api_.FailWith(absl::UnavailableError("connect: connection refused"));
  EXPECT_EQ(Run({"explain", kTrace}), 3);
  EXPECT_TRUE(absl::StrContains(err_.str(), "cannot reach the control plane")) << err_.str();
}

// A sidecar that reads ServiceRoutes gets its outbound table split: the dry run joins each
// ServiceRoute's virtual host to the table it names, as the sidecar does. It asks for the
// configuration with the URL's host looked up (?lookup=host:...): an on-demand sidecar holds only
// what it called so far, and the control plane answers with what it would send once it looked
// the host up (ADR 0086).
TEST_F(ExplainCommandTest, ADryRunReadsTheVirtualHostsOfServiceRoutes) {
  api_.Answer("GET", "/api/v1/proxies", 200,
              R"({"items":[{"id":"frontend-0","service":"frontend","namespace":"default"}]})");
  const std::string outbound =
      R"({"type":"routes","resources":[{"name":"outbound","resource":{"name":"outbound",)"
      R"("virtual_hosts":[{"name":"unknown-host","domains":["*"],"routes":[{"name":"no-service",)"
      R"("match":{"prefix":"/"},"direct_response":{"status":404}}]}]}}]})";
  // What was sent: reviews not called yet.
  api_.Answer("GET", "/api/v1/proxies/frontend-0/config", 200,
              absl::StrCat(R"({"types":[)", outbound, "]}"));
  api_.Answer("GET", "/api/v1/proxies/frontend-0/config?lookup=host%3anowhere", 200,
              absl::StrCat(R"({"types":[)", outbound, "]}"));
  api_.Answer(
      "GET", "/api/v1/proxies/frontend-0/config?lookup=host%3areviews%3a9080", 200,
      R"({"types":[)" + outbound +
          ","
          R"({"type":"service_routes","resources":[)"
          R"({"name":"ratings.default:9080","resource":{"name":"ratings.default:9080",)"
          R"("route_config_name":"outbound","destination":{"name":"ratings.default:9080"}}},)"
          R"({"name":"reviews.default:9080","resource":{"name":"reviews.default:9080",)"
          R"("route_config_name":"outbound","virtual_host":{"name":"reviews.default:9080",)"
          R"("domains":["reviews:9080"],"routes":[{"name":"default","match":{"prefix":"/"},)"
          R"("route":{"cluster":"outbound|9080||reviews.default"}}]}}}]},)"
          R"({"type":"clusters","resources":[{"name":"outbound|9080||reviews.default",)"
          R"("resource":{"name":"outbound|9080||reviews.default","type":"EDS"}}]},)"
          R"({"type":"endpoints","resources":[{"name":"outbound|9080||reviews.default",)"
          R"("resource":{"cluster_name":"outbound|9080||reviews.default",)"
          R"("endpoints":[{"address":"10.0.1.1:15006"}]}}]}]})");
  EXPECT_EQ(Run({"explain", "--from", "frontend", "--to", "http://reviews:9080/r/1"}), 0)
      << err_.str();
  EXPECT_EQ(api_.requests().back().path,
            "/api/v1/proxies/frontend-0/config?lookup=host%3areviews%3a9080");
  EXPECT_TRUE(absl::StrContains(out_.str(), "virtual host    reviews.default:9080")) << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "cluster         outbound|9080||reviews.default"))
      << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "10.0.1.1:15006")) << out_.str();
  // A host no ServiceRoute answers gets the table's own "*" host.
  EXPECT_EQ(Run({"explain", "--from", "frontend", "--to", "http://nowhere/"}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "virtual host    unknown-host")) << out_.str();
}

// apply -f FILE records the file in each object; stdin leaves the documents as they are; diff
// compares what apply would store.
TEST_F(ExplainCommandTest, ApplyRecordsTheFileEachObjectCameFrom) {
  const std::string file = absl::StrCat(::testing::TempDir(), "/reviews.yaml");
  {
    std::ofstream f(file);
    f << "apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: reviews\n"
         "spec:\n  ports: [{port: 9080}]\n";
  }
  api_.Answer("PUT", "/apis/meshlet.io/v1/namespaces/default/services/reviews", 201, "{}",
              {{"x-meshlet-result", "created"}});
  ASSERT_EQ(Run({"apply", "-f", file}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(
      api_.requests().back().body,
      absl::StrCat(R"("annotations":{"meshlet.io/applied-from":")", file, R"("})")))
      << api_.requests().back().body;

  in_.str(
      "apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: reviews\n"
      "spec:\n  ports: [{port: 9080}]\n");
  ASSERT_EQ(Run({"apply", "-f", "-"}), 0) << err_.str();
  EXPECT_FALSE(absl::StrContains(api_.requests().back().body, "applied-from"))
      << api_.requests().back().body;

  // The live object was applied from this file: no difference.
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/default/services/reviews", 200,
              absl::StrCat(R"({"apiVersion":"meshlet.io/v1","kind":"Service","metadata":{)",
                           R"("name":"reviews","namespace":"default","annotations":{)",
                           R"("meshlet.io/applied-from":")", file,
                           R"("}},"spec":{"ports":[{"port":9080}]}})"));
  EXPECT_EQ(Run({"diff", "-f", file}), 0) << out_.str() << err_.str();
}

}  // namespace
}  // namespace meshlet::controlplane::cli
