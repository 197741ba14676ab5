// The status of Gateway API routes (route_status.h): Accepted and ResolvedRefs per Service
// parentRef with each reason, observedGeneration, and no entry for parents that are not ours.

#include "control-plane/translate/route_status.h"

#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "control-plane/translate/gateway_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

// "<type>=<status>/<reason>" for each condition of a parent, ';' between parents.
std::string Conditions(const policy::RouteStatusUpdate& u) {
  std::vector<std::string> parents;
  for (const gw::RouteParentStatus& p : u.status.parents()) {
    std::vector<std::string> conditions;
    for (const gw::Condition& c : p.conditions()) {
      conditions.push_back(absl::StrCat(c.type(), "=", c.status(), "/", c.reason()));
    }
    parents.push_back(absl::StrJoin(conditions, ","));
  }
  return absl::StrJoin(parents, ";");
}

class RouteStatusTest : public GatewayTest {
 protected:
  // The status of the only route of the snapshot.
  policy::RouteStatusUpdate Only() {
    std::vector<policy::RouteStatusUpdate> all = ComputeRouteStatuses(policy_, registry_);
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? policy::RouteStatusUpdate{} : all[0];
  }
  // The message of the parent's condition `type`.
  static std::string Message(const policy::RouteStatusUpdate& u, int parent,
                             absl::string_view type) {
    for (const gw::Condition& c : u.status.parents(parent).conditions()) {
      if (c.type() == type) return c.message();
    }
    return "<none>";
  }
};

TEST_F(RouteStatusTest, AcceptedAndResolvedWithGenerationAndController) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: ok, generation: 7}
spec:
  parentRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: ingress}
  - {group: "", kind: Service, name: echo, port: 80}
  - {group: core, kind: Service, name: echo}
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
)");
  const policy::RouteStatusUpdate u = Only();
  EXPECT_EQ(u.kind, "HTTPRoute");
  EXPECT_EQ(u.namespace_, "default");
  EXPECT_EQ(u.name, "ok");
  EXPECT_EQ(u.generation, 7);
  // The Gateway is not ours: two parents, the Services, in parentRef order.
  ASSERT_EQ(u.status.parents_size(), 2);
  EXPECT_EQ(Conditions(u),
            "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs;"
            "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(u.status.parents(0).parent_ref().port(), 80);
  EXPECT_EQ(u.status.parents(1).parent_ref().group(), "core");
  for (const gw::RouteParentStatus& p : u.status.parents()) {
    EXPECT_EQ(p.controller_name(), "meshlet.io/mesh-controller");
    for (const gw::Condition& c : p.conditions()) {
      EXPECT_EQ(c.observed_generation(), 7);
      EXPECT_EQ(c.last_transition_time(), "");
    }
  }
}

TEST_F(RouteStatusTest, NoMatchingParentForAMissingServiceOrPort) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs:
  - {kind: Service, name: ghost}
  - {kind: Service, name: echo, port: 81}
  - {kind: Service, name: remote, namespace: other, port: 80}
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
)");
  const policy::RouteStatusUpdate u = Only();
  EXPECT_EQ(Conditions(u),
            "Accepted=False/NoMatchingParent,ResolvedRefs=True/ResolvedRefs;"
            "Accepted=False/NoMatchingParent,ResolvedRefs=True/ResolvedRefs;"
            "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(Message(u, 0, "Accepted"), "Service default/ghost does not exist");
  EXPECT_EQ(Message(u, 1, "Accepted"), "Service default/echo has no port 81");
}

TEST_F(RouteStatusTest, UnsupportedValueForUnsupportedFeatures) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"    sessionPersistence: {sessionName: \"a b\"}\n",
       "spec.rules[0].sessionPersistence.sessionName: \"a b\" is not supported"},
      {"    sessionPersistence: {cookieConfig: {lifetimeType: Permanent}}\n",
       "spec.rules[0].sessionPersistence.absoluteTimeout: required with lifetimeType Permanent"},
      {"    sessionPersistence: {idleTimeout: later}\n",
       "spec.rules[0].sessionPersistence.idleTimeout: \"later\" is not a duration"},
      {"    filters: [{type: ExtensionRef, extensionRef: {group: x.io, kind: F, name: f}}]\n",
       "spec.rules[0].filters[0]: filter type \"ExtensionRef\" is not supported"},
      {"    filters: [{type: CORS, cors: {allowOrigins: [\"https://www.*.com\"]}}]\n",
       "spec.rules[0].filters[0].cors.allowOrigins[0]: \"https://www.*.com\" is not an origin "
       "pattern"},
      {"    matches: [{path: {type: RegularExpression, value: \"(\"}}]\n",
       "spec.rules[0].matches[0].path: invalid regular expression \"(\""},
      {"    timeouts: {request: soon}\n",
       "spec.rules[0].timeouts.request: \"soon\" is not a duration"},
      {"    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 305}}]\n",
       "spec.rules[0].filters[0].requestRedirect.statusCode: 305 is not supported"},
  };
  for (const auto& [rule_extra, message] : cases) {
    policy_.gateway_http_routes.clear();
    AddHttp(absl::StrCat(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
)",
                         rule_extra));
    const policy::RouteStatusUpdate u = Only();
    EXPECT_EQ(Conditions(u), "Accepted=False/UnsupportedValue,ResolvedRefs=True/ResolvedRefs")
        << rule_extra;
    EXPECT_TRUE(absl::StartsWith(Message(u, 0, "Accepted"), message)) << Message(u, 0, "Accepted");
  }
}

TEST_F(RouteStatusTest, SessionPersistenceIsAccepted) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
    sessionPersistence:
      sessionName: s
      type: Cookie
      absoluteTimeout: 1h
      idleTimeout: 10m
      cookieConfig: {lifetimeType: Permanent}
)");
  EXPECT_EQ(Conditions(Only()), "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
}

TEST_F(RouteStatusTest, HeaderFiltersOnSeveralBackendsAreAcceptedOthersAreNot) {
  auto with_backends = [&](const std::string& backend_refs) {
    policy_.gateway_http_routes.clear();
    AddHttp(absl::StrCat(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - backendRefs:
)",
                         backend_refs));
    return Only();
  };
  EXPECT_EQ(Conditions(with_backends(R"(
    - {name: echo-v1, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: B, value: v1}]}}]}
    - {name: echo-v2, port: 80, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: B, value: v2}]}}]}
)")),
            "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
  const policy::RouteStatusUpdate u = with_backends(R"(
    - {name: echo-v1, port: 80}
    - {name: echo-v2, port: 80, filters: [{type: URLRewrite, urlRewrite: {hostname: x}}]}
)");
  EXPECT_EQ(Conditions(u), "Accepted=False/UnsupportedValue,ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(Message(u, 0, "Accepted"),
            "spec.rules[0].backendRefs[1].filters[0]: filter type \"URLRewrite\" is not supported "
            "on a backendRef (only header modifiers are)");
}

TEST_F(RouteStatusTest, OneBackendWithOtherFiltersInAnotherShareIsNotSupported) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - backendRefs:
    - {name: echo-v1, port: 80, weight: 1}
    - {name: echo-v1, port: 80, weight: 1, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: B, value: v1}]}}]}
)");
  const policy::RouteStatusUpdate u = Only();
  EXPECT_EQ(Conditions(u), "Accepted=False/UnsupportedValue,ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(Message(u, 0, "Accepted"),
            "spec.rules[0].backendRefs[1]: names the same backend as backendRefs[0] with other "
            "filters; not supported");
}

TEST_F(RouteStatusTest, ResolvedRefsReasons) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"{name: ghost, port: 80}", "BackendNotFound",
       "spec.rules[0].backendRefs[0]: backend Service default/ghost does not exist"},
      {"{name: echo-v1, port: 81}", "BackendNotFound",
       "spec.rules[0].backendRefs[0]: backend Service default/echo-v1 has no port 81"},
      {"{name: remote, namespace: other, port: 80}", "RefNotPermitted",
       "spec.rules[0].backendRefs[0]: backend Service other/remote: no ReferenceGrant"},
      {"{group: example.io, kind: Bucket, name: b}", "InvalidKind",
       "spec.rules[0].backendRefs[0]: backend example.io/Bucket \"b\" is not a Service"},
  };
  for (const auto& [backend, reason, message] : cases) {
    policy_.gateway_http_routes.clear();
    AddHttp(absl::StrCat(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules: [{backendRefs: [)",
                         backend, "]}]\n"));
    const policy::RouteStatusUpdate u = Only();
    EXPECT_EQ(Conditions(u), absl::StrCat("Accepted=True/Accepted,ResolvedRefs=False/", reason))
        << backend;
    EXPECT_TRUE(absl::StartsWith(Message(u, 0, "ResolvedRefs"), message))
        << Message(u, 0, "ResolvedRefs");
  }
}

TEST_F(RouteStatusTest, MirrorBackendsCountAndAReferenceGrantResolves) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: nobody, port: 80}}}]
    backendRefs: [{name: echo-v1, port: 80}]
)");
  EXPECT_EQ(Conditions(Only()), "Accepted=True/Accepted,ResolvedRefs=False/BackendNotFound");
  policy_.gateway_http_routes.clear();
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g, generation: 2}
spec:
  parentRefs: [{kind: Service, name: echo, port: 80}]
  rules: [{backendRefs: [{name: remote, namespace: other, port: 80}]}]
)");
  EXPECT_EQ(Conditions(Only()), "Accepted=True/Accepted,ResolvedRefs=False/RefNotPermitted");
  AddGrant(R"(
kind: ReferenceGrant
metadata: {name: grpc, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: default}]
  to: [{kind: Service}]
)");
  const policy::RouteStatusUpdate u = Only();
  EXPECT_EQ(u.kind, "GRPCRoute");
  EXPECT_EQ(Conditions(u), "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
}

TEST_F(RouteStatusTest, AConsumerRoutesParentServiceAsBackendResolvesWithoutAGrant) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mine, namespace: consumer}
spec:
  parentRefs: [{kind: Service, name: echo, namespace: default, port: 80}]
  rules: [{backendRefs: [{name: echo, namespace: default, port: 80}]}]
)");
  EXPECT_EQ(Conditions(Only()), "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
  // Another Service of the parent's namespace still needs one.
  policy_.gateway_http_routes.clear();
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mine, namespace: consumer}
spec:
  parentRefs: [{kind: Service, name: echo, namespace: default, port: 80}]
  rules: [{backendRefs: [{name: echo, namespace: default, port: 80}, {name: echo-v1, namespace: default, port: 80}]}]
)");
  const policy::RouteStatusUpdate u = Only();
  EXPECT_EQ(Conditions(u), "Accepted=True/Accepted,ResolvedRefs=False/RefNotPermitted");
  EXPECT_TRUE(absl::StartsWith(Message(u, 0, "ResolvedRefs"),
                               "spec.rules[0].backendRefs[1]: backend Service default/echo-v1"))
      << Message(u, 0, "ResolvedRefs");
}

TEST_F(RouteStatusTest, OneUpdatePerRouteInOrderAndNoParentsForGatewayOnlyRoutes) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: ingress-only}
spec:
  parentRefs: [{name: my-gateway}]
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
)");
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mesh}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
)");
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
)");
  const std::vector<policy::RouteStatusUpdate> all = ComputeRouteStatuses(policy_, registry_);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "ingress-only");
  EXPECT_EQ(all[0].status.parents_size(), 0);
  EXPECT_EQ(all[1].name, "mesh");
  EXPECT_EQ(all[2].kind, "GRPCRoute");
  const std::vector<policy::RouteStatusUpdate> again = ComputeRouteStatuses(policy_, registry_);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(TranslatorTest::Content(all[i].status), TranslatorTest::Content(again[i].status));
  }
}

}  // namespace
}  // namespace meshlet::controlplane::translate
