// Gateway API HTTPRoutes and GRPCRoutes as a caller's routes (gateway_routes.cc): which routes
// apply to which caller and port, their precedence, filters, backends, timeouts and retries.

#include <gtest/gtest.h>

#include <algorithm>

#include "gmock/gmock.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

using ::testing::ElementsAre;

// An HTTPRoute on echo (port 80 unless `port` is empty) with the given rules (YAML).
std::string EchoRoute(const std::string& name, const std::string& rules,
                      const std::string& extra_meta = "", const std::string& port = "80") {
  return absl::StrCat("kind: HTTPRoute\nmetadata: {name: ", name, extra_meta,
                      "}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: echo",
                      port.empty() ? "" : absl::StrCat(", port: ", port), "}]\n  rules:\n", rules);
}

// --- Which routes apply ---------------------------------------------------------------------

TEST_F(GatewayTest, ProducerRouteAppliesToEveryCallerAndUnmatchedGets404) {
  AddHttp(EchoRoute("split", R"(
  - name: v1
    matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  for (const char* caller : {"frontend-0", "client-0"}) {
    const NodeResources r = For(caller);
    const xds::VirtualHost* vh = Host(r, "echo.default:80");
    ASSERT_NE(vh, nullptr) << caller;
    EXPECT_THAT(RouteNames(vh), ElementsAre("default/split/v1", "no-matching-route")) << caller;
    EXPECT_EQ(vh->routes(0).match().path_separated_prefix(), "/v1");
    EXPECT_EQ(vh->routes(0).route().cluster(), "outbound|80||echo-v1.default");
    EXPECT_EQ(vh->routes(1).direct_response().status(), 404u);
  }
  // Without routes attached, the Service's default route stands.
  EXPECT_THAT(RouteNames(Host(For("frontend-0"), "echo-v1.default:80")), ElementsAre("default"));
}

TEST_F(GatewayTest, ConsumerRouteAppliesOnlyToCallersOfItsNamespaceAndReplacesProducerRoutes) {
  AddHttp(EchoRoute("producer", R"(
  - backendRefs: [{name: echo-v1, port: 80}]
)"));
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mine, namespace: consumer}
spec:
  parentRefs: [{kind: Service, group: core, name: echo, namespace: default, port: 80}]
  rules:
  - name: fast
    backendRefs: [{name: echo-v2, namespace: default, port: 80}]
    timeouts: {request: 100ms}
)");
  AddGrant(R"(
kind: ReferenceGrant
metadata: {name: consumers}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: consumer}]
  to: [{group: "", kind: Service}]
)");
  const NodeResources client = For("client-0");
  const xds::VirtualHost* vh = Host(client, "echo.default:80");
  EXPECT_THAT(RouteNames(vh), ElementsAre("consumer/mine/fast", "no-matching-route"));
  EXPECT_EQ(vh->routes(0).route().cluster(), "outbound|80||echo-v2.default");
  EXPECT_EQ(vh->routes(0).route().timeout().nanos(), 100000000);
  EXPECT_THAT(RouteNames(Host(For("frontend-0"), "echo.default:80")),
              ElementsAre("default/producer/rule-0", "no-matching-route"));

  // The shared outbound part differs by caller namespace only where consumer routes exist.
  auto policy = std::make_shared<policy::PolicySnapshot>(policy_);
  auto registry = std::make_shared<registry::RegistrySnapshot>(registry_);
  MeshTranslator translator(policy, registry, kDefaultOptions);
  xds::Node client_node, frontend_node, echo_node;
  client_node.set_id("client-0");
  frontend_node.set_id("frontend-0");
  echo_node.set_id("echo-0");
  EXPECT_NE(translator.OutboundKey(client_node), translator.OutboundKey(frontend_node));
  EXPECT_EQ(translator.OutboundKey(echo_node), translator.OutboundKey(frontend_node));
  TranslationCache cache;
  const NodeResources first = Translate(*policy, *registry, frontend_node, kDefaultOptions, &cache);
  const NodeResources second = Translate(*policy, *registry, client_node, kDefaultOptions, &cache);
  EXPECT_THAT(RouteNames(Host(second, "echo.default:80")),
              ElementsAre("consumer/mine/fast", "no-matching-route"));
  EXPECT_THAT(RouteNames(Host(first, "echo.default:80")),
              ElementsAre("default/producer/rule-0", "no-matching-route"));
}

TEST_F(GatewayTest, ParentRefPortLimitsTheRouteToThatPort) {
  AddHttp(EchoRoute("only-80", "  - backendRefs: [{name: echo-v1, port: 80}]\n"));
  const NodeResources r = For("frontend-0");
  EXPECT_THAT(RouteNames(Host(r, "echo.default:80")),
              ElementsAre("default/only-80/rule-0", "no-matching-route"));
  EXPECT_THAT(RouteNames(Host(r, "echo.default:9090")), ElementsAre("default"));
}

TEST_F(GatewayTest, ParentRefWithoutPortAppliesToEveryPortAndToAPortTheServiceLacksToNone) {
  AddHttp(EchoRoute("all", "  - backendRefs: [{name: echo-v1, port: 80}]\n", "", ""));
  AddHttp(EchoRoute("nowhere", "  - backendRefs: [{name: echo-v2, port: 80}]\n", "", "81"));
  const NodeResources r = For("frontend-0");
  EXPECT_THAT(RouteNames(Host(r, "echo.default:80")),
              ElementsAre("default/all/rule-0", "no-matching-route"));
  EXPECT_THAT(RouteNames(Host(r, "echo.default:9090")),
              ElementsAre("default/all/rule-0", "no-matching-route"));
}

TEST_F(GatewayTest, EveryNameAndAddressOfTheServiceRoutesAlikeAndRouteHostnamesAreIgnored) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo, port: 80}]
  hostnames: [elsewhere.example.com]
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
)");
  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "frontend-0") {
      w.labels[registry::kCaptureLabel] = registry::kCaptureIptables;
      w.capture = true;
    }
  }
  const NodeResources r = For("frontend-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  ASSERT_NE(vh, nullptr);
  std::vector<std::string> domains(vh->domains().begin(), vh->domains().end());
  for (const char* name : {"echo", "echo:80", "echo.default", "echo.default.svc",
                           "echo.default.svc.cluster.local:80", "10.96.0.10", "10.96.0.10:80"}) {
    EXPECT_NE(std::find(domains.begin(), domains.end(), name), domains.end()) << name;
  }
  EXPECT_EQ(std::find(domains.begin(), domains.end(), "elsewhere.example.com"), domains.end());
  EXPECT_THAT(RouteNames(vh), ElementsAre("default/r/rule-0", "no-matching-route"));
}

TEST_F(GatewayTest, GatewayRoutesWinOverTheServicesOwnHTTPRouteWithAWarning) {
  policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: own}
spec:
  target: echo
  rules: [{name: all, backends: [{service: echo-v2}]}]
)"));
  AddHttp(EchoRoute("gw", "  - backendRefs: [{name: echo-v1, port: 80}]\n"));
  const NodeResources r = For("frontend-0");
  EXPECT_THAT(RouteNames(Host(r, "echo.default:80")),
              ElementsAre("default/gw/rule-0", "no-matching-route"));
  EXPECT_TRUE(HasWarning(r,
                         "HTTPRoute default/own: Gateway API routes are attached to "
                         "echo.default:80 and win"));
  // The other port keeps the Service's own HTTPRoute.
  EXPECT_THAT(RouteNames(Host(r, "echo.default:9090")), ElementsAre("own.all", "default"));
}

TEST_F(GatewayTest, AnUnsupportedRouteIsNotProgrammed) {
  AddHttp(EchoRoute("sticky", R"(
  - backendRefs: [{name: echo-v1, port: 80}]
    sessionPersistence: {sessionName: "not a token"}
)"));
  AddHttp(EchoRoute("bad-regex", R"(
  - matches: [{path: {type: RegularExpression, value: "/a(b"}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  AddHttp(EchoRoute("ext", R"(
  - filters: [{type: ExtensionRef, extensionRef: {group: x.io, kind: F, name: f}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  EXPECT_THAT(RouteNames(Host(For("frontend-0"), "echo.default:80")), ElementsAre("default"));
}

// --- Precedence -----------------------------------------------------------------------------
// In each case the route that must come first is added last, or named later.

TEST_F(GatewayTest, PrecedenceExactPathBeforeRegexBeforeLongerPrefix) {
  AddHttp(EchoRoute("a", R"(
  - name: prefix
    matches: [{path: {type: PathPrefix, value: /a/very/long/prefix}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: "/x.*"}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: exact
    matches: [{path: {type: Exact, value: /x}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  EXPECT_THAT(RouteNames(vh), ElementsAre("default/a/exact", "default/a/regex", "default/a/prefix",
                                          "no-matching-route"));
  EXPECT_EQ(vh->routes(0).match().path(), "/x");
  EXPECT_EQ(vh->routes(1).match().safe_regex(), "/x.*");
}

TEST_F(GatewayTest, PrecedenceLongestPrefixFirst) {
  AddHttp(EchoRoute("a", R"(
  - name: short
    matches: [{path: {value: /v}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: long
    matches: [{path: {value: /v2/api}}]
    backendRefs: [{name: echo-v2, port: 80}]
)"));
  EXPECT_THAT(RouteNames(Host(For("frontend-0"), "echo.default:80")),
              ElementsAre("default/a/long", "default/a/short", "no-matching-route"));
}

TEST_F(GatewayTest, PrecedenceMethodBeforeHeaders) {
  AddHttp(EchoRoute("a", R"(
  - name: headers
    matches: [{headers: [{name: A, value: "1"}, {name: B, value: "2"}]}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: method
    matches: [{method: POST}]
    backendRefs: [{name: echo-v2, port: 80}]
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  EXPECT_THAT(RouteNames(vh),
              ElementsAre("default/a/method", "default/a/headers", "no-matching-route"));
  EXPECT_THAT(vh->routes(0).match().methods(), ElementsAre("POST"));
  EXPECT_EQ(vh->routes(1).match().headers(0).name(), "a");
  EXPECT_EQ(vh->routes(1).match().headers(1).exact(), "2");
}

TEST_F(GatewayTest, PrecedenceMostHeaderMatchesThenMostQueryParamMatches) {
  AddHttp(EchoRoute("a", R"(
  - name: one-query
    matches: [{queryParams: [{name: q, value: "1"}]}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: two-queries
    matches: [{queryParams: [{name: q, value: "1"}, {type: RegularExpression, name: r, value: "x+"}]}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: one-header
    matches: [{headers: [{name: h, type: RegularExpression, value: "v.*"}]}]
    backendRefs: [{name: echo-v2, port: 80}]
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  EXPECT_THAT(RouteNames(vh), ElementsAre("default/a/one-header", "default/a/two-queries",
                                          "default/a/one-query", "no-matching-route"));
  EXPECT_EQ(vh->routes(0).match().headers(0).safe_regex(), "v.*");
  EXPECT_EQ(vh->routes(1).match().query_parameters(1).safe_regex(), "x+");
  EXPECT_EQ(vh->routes(1).match().query_parameters(0).exact(), "1");
}

TEST_F(GatewayTest, PrecedenceOldestRouteThenNamespaceAndNameThenRuleOrder) {
  const std::string rules = R"(
  - name: first
    matches: [{path: {value: /same}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: second
    matches: [{path: {value: /same}}]
    backendRefs: [{name: echo-v1, port: 80}]
)";
  AddHttp(EchoRoute("z-newer", rules, ", creationTimestamp: \"2026-01-02T00:00:00Z\""));
  AddHttp(EchoRoute("y-older", rules, ", creationTimestamp: \"2026-01-01T00:00:00Z\""));
  AddHttp(EchoRoute("c-same-time", rules, ", creationTimestamp: \"2026-01-02T00:00:00Z\""));
  AddHttp(EchoRoute("b-unstored", rules));
  EXPECT_THAT(
      RouteNames(Host(For("frontend-0"), "echo.default:80")),
      ElementsAre("default/y-older/first", "default/y-older/second", "default/c-same-time/first",
                  "default/c-same-time/second", "default/z-newer/first", "default/z-newer/second",
                  "default/b-unstored/first", "default/b-unstored/second", "no-matching-route"));
}

TEST_F(GatewayTest, RulesWithoutNamesAndSeveralMatchesAreNamedByIndex) {
  AddHttp(EchoRoute("a", R"(
  - matches: [{path: {type: Exact, value: /one}}, {path: {type: Exact, value: /two}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  EXPECT_THAT(RouteNames(Host(For("frontend-0"), "echo.default:80")),
              ElementsAre("default/a/rule-0/0", "default/a/rule-0/1", "no-matching-route"));
}

// --- Filters --------------------------------------------------------------------------------

TEST_F(GatewayTest, HeaderModifiersOfTheRuleAndOfItsOnlyBackend) {
  AddHttp(EchoRoute("a", R"(
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Set, value: s}], add: [{name: X-Add, value: a}], remove: [X-Gone]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Resp, value: r}], remove: [Server]}
    backendRefs:
    - name: echo-v1
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Backend, value: b}]}}]
)"));
  const xds::Route& r = Host(For("frontend-0"), "echo.default:80")->routes(0);
  ASSERT_EQ(r.request_headers_to_add_size(), 2);
  EXPECT_EQ(r.request_headers_to_add(0).name(), "x-set");
  EXPECT_FALSE(r.request_headers_to_add(0).append());
  EXPECT_EQ(r.request_headers_to_add(1).name(), "x-add");
  EXPECT_TRUE(r.request_headers_to_add(1).append());
  EXPECT_THAT(r.request_headers_to_remove(), ElementsAre("x-gone"));
  ASSERT_EQ(r.response_headers_to_add_size(), 1);
  EXPECT_EQ(r.response_headers_to_add(0).value(), "r");
  EXPECT_THAT(r.response_headers_to_remove(), ElementsAre("server"));
  // The backend's own filter: its weighted cluster's (of one), applied after the route's.
  ASSERT_EQ(r.route().weighted_clusters().clusters_size(), 1);
  const auto& only = r.route().weighted_clusters().clusters(0);
  EXPECT_EQ(only.name(), "outbound|80||echo-v1.default");
  ASSERT_EQ(only.request_headers_to_add_size(), 1);
  EXPECT_EQ(only.request_headers_to_add(0).name(), "x-backend");
  EXPECT_TRUE(only.request_headers_to_add(0).append());
}

TEST_F(GatewayTest, EachOfSeveralBackendsHasItsOwnHeaderModifiers) {
  AddHttp(EchoRoute("a", R"(
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Rule, value: r}]}}]
    backendRefs:
    - name: echo-v1
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: Backend, value: echo-v1}], remove: [X-Rule]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: X-Answered-By, value: v1}]}
    - name: echo-v2
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: echo-v2}]}}]
    - name: echo
      port: 80
    - name: ghost
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: ghost}]}}]
)"));
  const xds::Route& r = Host(For("frontend-0"), "echo.default:80")->routes(0);
  ASSERT_EQ(r.request_headers_to_add_size(), 1);
  EXPECT_EQ(r.request_headers_to_add(0).name(), "x-rule");
  const auto& wc = r.route().weighted_clusters();
  ASSERT_EQ(wc.clusters_size(), 4);
  const auto& v1 = wc.clusters(0);
  EXPECT_EQ(v1.name(), "outbound|80||echo-v1.default");
  ASSERT_EQ(v1.request_headers_to_add_size(), 1);
  EXPECT_EQ(v1.request_headers_to_add(0).name(), "backend");
  EXPECT_EQ(v1.request_headers_to_add(0).value(), "echo-v1");
  EXPECT_FALSE(v1.request_headers_to_add(0).append());
  EXPECT_THAT(v1.request_headers_to_remove(), ElementsAre("x-rule"));
  ASSERT_EQ(v1.response_headers_to_add_size(), 1);
  EXPECT_EQ(v1.response_headers_to_add(0).name(), "x-answered-by");
  const auto& v2 = wc.clusters(1);
  EXPECT_EQ(v2.name(), "outbound|80||echo-v2.default");
  ASSERT_EQ(v2.request_headers_to_add_size(), 1);
  EXPECT_EQ(v2.request_headers_to_add(0).value(), "echo-v2");
  EXPECT_EQ(v2.response_headers_to_add_size(), 0);
  const auto& plain = wc.clusters(2);
  EXPECT_EQ(plain.name(), "outbound|80||echo.default");
  EXPECT_EQ(plain.request_headers_to_add_size(), 0);
  EXPECT_EQ(plain.request_headers_to_remove_size(), 0);
  // The missing backend's share answers 500; its filters have nothing to apply to.
  EXPECT_EQ(wc.clusters(3).name(), kMissingBackendCluster);
  EXPECT_EQ(wc.clusters(3).request_headers_to_add_size(), 0);
}

TEST_F(GatewayTest, RequestMirrorByPercentFractionOrAll) {
  AddHttp(EchoRoute("a", R"(
  - name: percent
    matches: [{path: {value: /p}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}, percent: 25}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: fraction
    matches: [{path: {value: /f}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}, fraction: {numerator: 1, denominator: 8}}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: all
    matches: [{path: {value: /a}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  const NodeResources r = For("frontend-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  const xds::Route* p = RouteNamed(vh, "default/a/percent");
  const xds::Route* f = RouteNamed(vh, "default/a/fraction");
  const xds::Route* a = RouteNamed(vh, "default/a/all");
  ASSERT_TRUE(p && f && a);
  ASSERT_EQ(p->route().request_mirror_policies_size(), 1);
  EXPECT_EQ(p->route().request_mirror_policies(0).cluster(), "outbound|80||echo-v2.default");
  EXPECT_DOUBLE_EQ(p->route().request_mirror_policies(0).percent().value(), 25);
  EXPECT_DOUBLE_EQ(f->route().request_mirror_policies(0).percent().value(), 12.5);
  EXPECT_FALSE(a->route().request_mirror_policies(0).has_percent());
  EXPECT_NE(Named(r.clusters, "outbound|80||echo-v2.default"), nullptr);
}

// A rule's CORS filter becomes its routes' CORS policy, as written; maxAge defaults to the API's 5.
TEST_F(GatewayTest, CorsFilterBecomesTheRoutesCorsPolicy) {
  AddHttp(EchoRoute("a", R"(
  - name: api
    matches: [{path: {value: /api}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1]
        exposeHeaders: [x-header-3]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: echo-v1, port: 80}]
  - name: open
    filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: plain
    matches: [{path: {value: /plain}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  const NodeResources r = For("frontend-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  const xds::Route* api = RouteNamed(vh, "default/a/api");
  const xds::Route* open = RouteNamed(vh, "default/a/open");
  const xds::Route* plain = RouteNamed(vh, "default/a/plain");
  ASSERT_TRUE(api && open && plain);
  const xds::CorsPolicy& cors = api->cors();
  EXPECT_EQ(std::vector<std::string>(cors.allow_origins().begin(), cors.allow_origins().end()),
            (std::vector<std::string>{"https://www.foo.com", "https://*.bar.com"}));
  EXPECT_EQ(cors.allow_methods_size(), 2);
  EXPECT_EQ(cors.allow_headers(0), "x-header-1");
  EXPECT_EQ(cors.expose_headers(0), "x-header-3");
  EXPECT_TRUE(cors.allow_credentials());
  EXPECT_EQ(cors.max_age_seconds(), 3600u);
  EXPECT_EQ(api->route().cluster(), "outbound|80||echo-v1.default");
  EXPECT_EQ(open->cors().allow_origins(0), "*");
  EXPECT_FALSE(open->cors().allow_credentials());
  EXPECT_EQ(open->cors().max_age_seconds(), 5u);
  EXPECT_FALSE(plain->has_cors());
}

TEST_F(GatewayTest, RequestRedirectPartsAndPortRules) {
  AddHttp(EchoRoute("a", R"(
  - name: scheme
    matches: [{path: {value: /s}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - name: port
    matches: [{path: {value: /p}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8443, statusCode: 308}}]
  - name: host-full
    matches: [{path: {value: /h}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}}]
  - name: prefix
    matches: [{path: {value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /fresh}}}]
)",
                    "", "9090"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:9090");
  const xds::RedirectAction& scheme = RouteNamed(vh, "default/a/scheme")->redirect();
  EXPECT_EQ(scheme.scheme(), "https");
  EXPECT_EQ(scheme.port(), 443u);  // the scheme's port, left out of Location by the sidecar
  EXPECT_EQ(scheme.response_code(), 302u);  // Gateway API's default
  const xds::RedirectAction& port = RouteNamed(vh, "default/a/port")->redirect();
  EXPECT_EQ(port.port(), 8443u);
  EXPECT_EQ(port.response_code(), 308u);
  const xds::RedirectAction& host = RouteNamed(vh, "default/a/host-full")->redirect();
  EXPECT_EQ(host.host(), "example.org");
  EXPECT_EQ(host.path(), "/new");
  EXPECT_EQ(host.port(), 9090u);  // neither port nor scheme: the Service port (the "listener")
  EXPECT_EQ(host.response_code(), 301u);
  const xds::RedirectAction& prefix = RouteNamed(vh, "default/a/prefix")->redirect();
  EXPECT_EQ(prefix.prefix_rewrite(), "/fresh");
  EXPECT_EQ(prefix.path(), "");
}

TEST_F(GatewayTest, URLRewriteHostnameFullPathAndPrefix) {
  AddHttp(EchoRoute("a", R"(
  - name: full
    matches: [{path: {value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: inner.example, path: {type: ReplaceFullPath, replaceFullPath: /whole}}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: prefix
    matches: [{path: {value: /pre}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  const xds::RouteAction& full = RouteNamed(vh, "default/a/full")->route();
  EXPECT_EQ(full.host_rewrite(), "inner.example");
  EXPECT_EQ(full.path_rewrite(), "/whole");
  EXPECT_EQ(full.prefix_rewrite(), "");
  const xds::RouteAction& prefix = RouteNamed(vh, "default/a/prefix")->route();
  EXPECT_EQ(prefix.prefix_rewrite(), "/");
  EXPECT_EQ(prefix.path_rewrite(), "");
  EXPECT_EQ(RouteNamed(vh, "default/a/prefix")->match().path_separated_prefix(), "/pre");
}

// --- Backends -------------------------------------------------------------------------------

TEST_F(GatewayTest, WeightsSplitAndWeightZeroGetsNothing) {
  AddHttp(EchoRoute("a", R"(
  - name: split
    matches: [{path: {value: /split}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 3}, {name: echo-v2, port: 80, weight: 1}, {name: echo, port: 80, weight: 0}]
  - name: zero
    matches: [{path: {value: /zero}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 0}]
  - name: none
    matches: [{path: {value: /none}}]
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  const xds::Route* split = RouteNamed(vh, "default/a/split");
  ASSERT_EQ(split->route().weighted_clusters().clusters_size(), 2);
  EXPECT_EQ(split->route().weighted_clusters().clusters(0).name(), "outbound|80||echo-v1.default");
  EXPECT_EQ(split->route().weighted_clusters().clusters(0).weight(), 3u);
  EXPECT_EQ(split->route().weighted_clusters().clusters(1).weight(), 1u);
  EXPECT_EQ(RouteNamed(vh, "default/a/zero")->direct_response().status(), 500u);
  EXPECT_EQ(RouteNamed(vh, "default/a/none")->direct_response().status(), 500u);
}

// Two refs to one backend are one weighted cluster with both weights (a cluster named twice would
// make the sidecar refuse the whole route configuration); with other filters the route is not
// programmed.
TEST_F(GatewayTest, RefsToOneBackendAddTheirWeights) {
  AddHttp(EchoRoute("a", R"(
  - name: twice
    matches: [{path: {value: /twice}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 3}, {name: echo-v2, port: 80, weight: 1}, {name: echo-v1, port: 80, weight: 2}]
)"));
  AddHttp(EchoRoute("b", R"(
  - name: other-filters
    matches: [{path: {value: /b}}]
    backendRefs:
    - {name: echo-v1, port: 80}
    - {name: echo-v1, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X, value: y}]}}]}
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  const auto& wc = RouteNamed(vh, "default/a/twice")->route().weighted_clusters();
  ASSERT_EQ(wc.clusters_size(), 2);
  EXPECT_EQ(wc.clusters(0).name(), "outbound|80||echo-v1.default");
  EXPECT_EQ(wc.clusters(0).weight(), 5u);
  EXPECT_EQ(wc.clusters(1).weight(), 1u);
  EXPECT_EQ(RouteNamed(vh, "default/b/other-filters"), nullptr);
}

TEST_F(GatewayTest, UnresolvedBackendsShareAnswers500) {
  AddHttp(EchoRoute("a", R"(
  - name: all-missing
    matches: [{path: {value: /gone}}]
    backendRefs: [{name: ghost, port: 80}]
  - name: half-missing
    matches: [{path: {value: /half}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 1}, {name: ghost, port: 80, weight: 1}]
  - name: wrong-port
    matches: [{path: {value: /port}}]
    backendRefs: [{name: echo-v1, port: 81}]
  - name: wrong-kind
    matches: [{path: {value: /kind}}]
    backendRefs: [{group: example.io, kind: Bucket, name: echo-v1}]
)"));
  const NodeResources r = For("frontend-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  EXPECT_EQ(RouteNamed(vh, "default/a/all-missing")->direct_response().status(), 500u);
  EXPECT_EQ(RouteNamed(vh, "default/a/wrong-port")->direct_response().status(), 500u);
  EXPECT_EQ(RouteNamed(vh, "default/a/wrong-kind")->direct_response().status(), 500u);
  const auto& half = RouteNamed(vh, "default/a/half-missing")->route().weighted_clusters();
  ASSERT_EQ(half.clusters_size(), 2);
  EXPECT_EQ(half.clusters(0).name(), "outbound|80||echo-v1.default");
  EXPECT_EQ(half.clusters(1).name(), kMissingBackendCluster);
  EXPECT_EQ(half.clusters(1).weight(), 1u);
  EXPECT_TRUE(HasWarning(r, "backend Service default/ghost does not exist"));
}

TEST_F(GatewayTest, CrossNamespaceBackendNeedsAReferenceGrant) {
  AddHttp(EchoRoute("a", R"(
  - backendRefs: [{name: remote, namespace: other, port: 80}]
)"));
  const xds::VirtualHost* denied = Host(For("frontend-0"), "echo.default:80");
  EXPECT_EQ(denied->routes(0).direct_response().status(), 500u);
  // A grant for another kind, or from another namespace, does not do.
  AddGrant(R"(
kind: ReferenceGrant
metadata: {name: wrong, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: default}, {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: elsewhere}]
  to: [{group: "", kind: Service}]
)");
  EXPECT_EQ(Host(For("frontend-0"), "echo.default:80")->routes(0).direct_response().status(), 500u);
  AddGrant(R"(
kind: ReferenceGrant
metadata: {name: right, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service, name: remote}]
)");
  EXPECT_EQ(Host(For("frontend-0"), "echo.default:80")->routes(0).route().cluster(),
            "outbound|80||remote.other");
}

TEST_F(GatewayTest, ConsumerRouteMayNameItsParentServiceAsBackendWithoutAGrant) {
  // GEP-1294: a route's own parent Service needs no ReferenceGrant as its backend; another
  // Service of that namespace still does.
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mine, namespace: consumer}
spec:
  parentRefs: [{kind: Service, group: "", name: echo, namespace: default, port: 80}]
  rules:
  - name: parent
    matches: [{path: {value: /parent}}]
    backendRefs: [{name: echo, namespace: default, port: 80}]
  - name: other
    matches: [{path: {value: /other}}]
    backendRefs: [{name: echo-v1, namespace: default, port: 80}]
)");
  const NodeResources r = For("client-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  ASSERT_NE(vh, nullptr);
  EXPECT_EQ(RouteNamed(vh, "consumer/mine/parent")->route().cluster(), "outbound|80||echo.default");
  EXPECT_EQ(RouteNamed(vh, "consumer/mine/other")->direct_response().status(), 500u);
  EXPECT_TRUE(HasWarning(r, "backend Service default/echo-v1: no ReferenceGrant"));
  EXPECT_FALSE(HasWarning(r, "backend Service default/echo:"));
}

// --- Timeouts and retries -------------------------------------------------------------------

TEST_F(GatewayTest, TimeoutsZeroDisablesAndTrafficPolicySuppliesWhatARuleLeavesUnset) {
  policy_.traffic_policies.push_back(Parse<pb::TrafficPolicy>(R"(
kind: TrafficPolicy
metadata: {name: echo}
spec:
  target: echo
  timeouts: {request: 7s, perTry: 2s}
  retries: {attempts: 4}
)"));
  AddHttp(EchoRoute("a", R"(
  - name: unset
    matches: [{path: {value: /unset}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: zero
    matches: [{path: {value: /zero}}]
    backendRefs: [{name: echo-v1, port: 80}]
    timeouts: {request: 0s, backendRequest: 0s}
  - name: set
    matches: [{path: {value: /set}}]
    backendRefs: [{name: echo-v1, port: 80}]
    timeouts: {request: 1500ms, backendRequest: 500ms}
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  const xds::RouteAction& unset = RouteNamed(vh, "default/a/unset")->route();
  EXPECT_EQ(unset.timeout().seconds(), 7);
  EXPECT_EQ(unset.retry_policy().per_try_timeout().seconds(), 2);
  EXPECT_EQ(unset.retry_policy().num_retries().value(), 4u);
  const xds::RouteAction& zero = RouteNamed(vh, "default/a/zero")->route();
  EXPECT_TRUE(zero.has_timeout());
  EXPECT_EQ(zero.timeout().seconds(), 0);
  EXPECT_EQ(zero.timeout().nanos(), 0);
  EXPECT_FALSE(zero.retry_policy().has_per_try_timeout());
  const xds::RouteAction& set = RouteNamed(vh, "default/a/set")->route();
  EXPECT_EQ(set.timeout().seconds(), 1);
  EXPECT_EQ(set.timeout().nanos(), 500000000);
  EXPECT_EQ(set.retry_policy().per_try_timeout().nanos(), 500000000);
  // Decision records: the rule's own timeouts name the route, the others the TrafficPolicy; a
  // disabled timeout names nobody.
  auto source = [](const xds::PolicySource& s) {
    return absl::StrCat(s.kind(), "/", s.namespace_(), "/", s.name());
  };
  EXPECT_EQ(source(set.timeout_source()), "HTTPRoute.gateway.networking.k8s.io/default/a");
  EXPECT_EQ(source(set.per_try_timeout_source()), "HTTPRoute.gateway.networking.k8s.io/default/a");
  EXPECT_EQ(source(unset.timeout_source()), "TrafficPolicy/default/echo");
  EXPECT_EQ(source(unset.per_try_timeout_source()), "TrafficPolicy/default/echo");
  EXPECT_FALSE(zero.has_timeout_source());
  EXPECT_FALSE(zero.has_per_try_timeout_source());
}

TEST_F(GatewayTest, RetryCodesAttemptsBackoffBoundedByTheRequestTimeout) {
  AddHttp(EchoRoute("a", R"(
  - name: retry
    matches: [{path: {value: /r}}]
    backendRefs: [{name: echo-v1, port: 80}]
    retry: {codes: [500, 502], attempts: 3, backoff: 100ms}
  - name: long-backoff
    matches: [{path: {value: /long}}]
    backendRefs: [{name: echo-v1, port: 80}]
    timeouts: {request: 1s}
    retry: {attempts: 2, backoff: 5s}
)"));
  const NodeResources r = For("frontend-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  const xds::RetryPolicy& retry = RouteNamed(vh, "default/a/retry")->route().retry_policy();
  EXPECT_EQ(retry.num_retries().value(), 3u);
  EXPECT_THAT(retry.retriable_status_codes(), ElementsAre(500u, 502u));
  EXPECT_NE(std::find(retry.retry_on().begin(), retry.retry_on().end(), "retriable-status-codes"),
            retry.retry_on().end());
  EXPECT_EQ(retry.base_interval().nanos(), 100000000);
  const xds::RouteAction& bounded = RouteNamed(vh, "default/a/long-backoff")->route();
  EXPECT_EQ(bounded.timeout().seconds(), 1);
  EXPECT_EQ(bounded.retry_policy().base_interval().seconds(), 1);
  EXPECT_LE(bounded.retry_policy().max_interval().seconds(), 1);
  EXPECT_TRUE(HasWarning(r, "retry.backoff 5s exceeds the request timeout 1s"));
}

TEST_F(GatewayTest, AttemptsEndedByBackendRequestAreRetried) {
  // An attempt that outlasts backendRequest ends either at this sidecar's per-try timer (a
  // reset) or, a margin earlier, with the next hop's 504 when the budget it was told runs out:
  // both are retried, with or without codes; without backendRequest only the codes given are.
  AddHttp(EchoRoute("a", R"(
  - name: attempts-only
    matches: [{path: {value: /a}}]
    backendRefs: [{name: echo-v1, port: 80}]
    timeouts: {backendRequest: 200ms}
    retry: {attempts: 2}
  - name: codes
    matches: [{path: {value: /c}}]
    backendRefs: [{name: echo-v1, port: 80}]
    timeouts: {request: 400ms, backendRequest: 200ms}
    retry: {codes: [500], attempts: 5}
  - name: no-backend-request
    matches: [{path: {value: /n}}]
    backendRefs: [{name: echo-v1, port: 80}]
    retry: {codes: [500], attempts: 3}
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  auto retry_on = [](const xds::RetryPolicy& p) {
    return std::vector<std::string>(p.retry_on().begin(), p.retry_on().end());
  };
  const xds::RetryPolicy& only = RouteNamed(vh, "default/a/attempts-only")->route().retry_policy();
  EXPECT_EQ(only.num_retries().value(), 2u);
  EXPECT_EQ(only.per_try_timeout().nanos(), 200000000);
  EXPECT_THAT(only.retriable_status_codes(), ElementsAre(504u));
  EXPECT_THAT(retry_on(only), ::testing::IsSupersetOf({"reset", "retriable-status-codes"}));
  const xds::RetryPolicy& codes = RouteNamed(vh, "default/a/codes")->route().retry_policy();
  EXPECT_THAT(codes.retriable_status_codes(), ElementsAre(500u, 504u));
  EXPECT_THAT(retry_on(codes), ::testing::IsSupersetOf({"reset", "retriable-status-codes"}));
  const xds::RetryPolicy& plain =
      RouteNamed(vh, "default/a/no-backend-request")->route().retry_policy();
  EXPECT_THAT(plain.retriable_status_codes(), ElementsAre(500u));
  // A request timeout that runs out during retries is the answer (504), not the last attempt's.
  EXPECT_TRUE(only.retry_until_deadline());
  EXPECT_TRUE(codes.retry_until_deadline());
  EXPECT_TRUE(plain.retry_until_deadline());
}

TEST_F(GatewayTest, BackendRequestLongerThanRequestIsNotAccepted) {
  AddHttp(EchoRoute("a", R"(
  - backendRefs: [{name: echo-v1, port: 80}]
    timeouts: {request: 1s, backendRequest: 2s}
)"));
  EXPECT_THAT(RouteNames(Host(For("frontend-0"), "echo.default:80")), ElementsAre("default"));
}

// --- Session persistence --------------------------------------------------------------------

TEST_F(GatewayTest, SessionPersistenceBecomesTheRoutesStickySessions) {
  AddHttp(EchoRoute("sticky", R"(
  - name: cart
    matches: [{path: {type: PathPrefix, value: /cart}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 50}, {name: echo-v2, port: 80, weight: 50}]
    sessionPersistence:
      sessionName: cart-session
      absoluteTimeout: 1h
      idleTimeout: 10m
      cookieConfig: {lifetimeType: Permanent}
  - name: api
    matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: echo-v1, port: 80}]
    sessionPersistence: {type: Header}
  - name: plain
    backendRefs: [{name: echo-v1, port: 80}]
  - name: shop
    matches:
    - {path: {type: PathPrefix, value: /shop/cart}}
    - {path: {type: Exact, value: /shop/cart/items}}
    - {path: {type: PathPrefix, value: /shop/checkout}}
    backendRefs: [{name: echo-v1, port: 80}, {name: echo-v2, port: 80}]
    sessionPersistence: {sessionName: shop-session}
  - name: anywhere
    matches:
    - {path: {type: PathPrefix, value: /account}}
    - {path: {type: RegularExpression, value: "/account/[0-9]+"}}
    backendRefs: [{name: echo-v1, port: 80}, {name: echo-v2, port: 80}]
    sessionPersistence: {sessionName: account-session}
)"));
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: echo, port: 9090}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
    sessionPersistence: {sessionName: x-grpc-session, type: Header}
)");
  const NodeResources r = For("frontend-0");
  const xds::VirtualHost* vh = Host(r, "echo.default:80");
  const xds::SessionPersistence& cart =
      RouteNamed(vh, "default/sticky/cart")->route().session_persistence();
  EXPECT_EQ(RouteNamed(vh, "default/sticky/cart")->route().weighted_clusters().clusters_size(), 2);
  EXPECT_EQ(cart.type(), xds::SessionPersistence::COOKIE);
  EXPECT_EQ(cart.name(), "cart-session");
  EXPECT_EQ(cart.absolute_timeout().seconds(), 3600);
  EXPECT_EQ(cart.idle_timeout().seconds(), 600);
  EXPECT_EQ(cart.cookie_lifetime(), xds::SessionPersistence::PERMANENT);
  EXPECT_EQ(cart.cookie_path(), "");  // one match: the sidecar takes the route's path match
  // Several matches: one cookie Path that every match lies under, so the rule has one session
  // whichever path a request takes (ADR 0062), by whole segments; "/" when a regular expression
  // is among them.
  for (int m = 0; m < 3; ++m) {
    const xds::Route* shop = RouteNamed(vh, absl::StrCat("default/sticky/shop/", m));
    ASSERT_NE(shop, nullptr) << m;
    EXPECT_EQ(shop->route().session_persistence().cookie_path(), "/shop") << m;
  }
  for (int m = 0; m < 2; ++m) {
    const xds::Route* account = RouteNamed(vh, absl::StrCat("default/sticky/anywhere/", m));
    ASSERT_NE(account, nullptr) << m;
    EXPECT_EQ(account->route().session_persistence().cookie_path(), "/") << m;
  }

  const xds::RouteAction& api = RouteNamed(vh, "default/sticky/api")->route();
  ASSERT_TRUE(api.has_session_persistence());
  EXPECT_EQ(api.session_persistence().type(), xds::SessionPersistence::HEADER);
  EXPECT_EQ(api.session_persistence().name(), "");  // the sidecar's default name
  EXPECT_FALSE(api.session_persistence().has_absolute_timeout());
  EXPECT_EQ(api.session_persistence().cookie_lifetime(), xds::SessionPersistence::SESSION);
  EXPECT_FALSE(RouteNamed(vh, "default/sticky/plain")->route().has_session_persistence());

  const xds::VirtualHost* grpc = Host(r, "echo.default:9090");
  const xds::RouteAction& g = RouteNamed(grpc, "default/g/rule-0")->route();
  ASSERT_TRUE(g.has_session_persistence());
  EXPECT_EQ(g.session_persistence().type(), xds::SessionPersistence::HEADER);
  EXPECT_EQ(g.session_persistence().name(), "x-grpc-session");
}

// --- GRPCRoute ------------------------------------------------------------------------------

TEST_F(GatewayTest, GrpcMethodMatchFormsAndPrecedence) {
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: echo, port: 80}]
  rules:
  - name: any
    backendRefs: [{name: echo, port: 80}]
  - name: method-only
    matches: [{method: {method: Get}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: service-only
    matches: [{method: {service: pkg.Echo}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: regex
    matches: [{method: {type: RegularExpression, service: "pkg\\..*", method: "Get.*"}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - name: exact-with-header
    matches: [{method: {service: pkg.Echo, method: Get}, headers: [{name: X-Version, value: "2"}]}]
    backendRefs: [{name: echo-v2, port: 80}]
  - name: exact
    matches: [{method: {service: pkg.Echo, method: Get}}]
    backendRefs: [{name: echo-v1, port: 80}]
)");
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  EXPECT_THAT(RouteNames(vh),
              ElementsAre("default/g/exact-with-header", "default/g/exact",
                          "default/g/service-only", "default/g/regex", "default/g/method-only",
                          "default/g/any", "no-matching-route"));
  EXPECT_EQ(RouteNamed(vh, "default/g/exact")->match().path(), "/pkg.Echo/Get");
  EXPECT_EQ(RouteNamed(vh, "default/g/service-only")->match().prefix(), "/pkg.Echo/");
  EXPECT_EQ(RouteNamed(vh, "default/g/method-only")->match().safe_regex(), "/[^/]+/Get");
  EXPECT_EQ(RouteNamed(vh, "default/g/regex")->match().safe_regex(), "/pkg\\..*/Get.*");
  EXPECT_EQ(RouteNamed(vh, "default/g/any")->match().prefix(), "/");
  EXPECT_EQ(RouteNamed(vh, "default/g/exact-with-header")->match().headers(0).name(), "x-version");
  EXPECT_EQ(RouteNamed(vh, "default/g/exact-with-header")->route().cluster(),
            "outbound|80||echo-v2.default");
}

// Decision records: each route names its GRPCRoute or HTTPRoute, rule and match.
TEST_F(GatewayTest, RoutesNameTheirObjectRuleAndMatch) {
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: echo, port: 80}]
  rules:
  - name: any
    backendRefs: [{name: echo, port: 80}]
  - name: two
    matches: [{method: {service: pkg.Echo, method: Get}}, {method: {service: pkg.Echo, method: Put}}]
    backendRefs: [{name: echo-v1, port: 80}]
)");
  AddHttp(EchoRoute("h", R"(
  - name: v1
    matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  const xds::VirtualHost* vh = Host(For("frontend-0"), "echo.default:80");
  ASSERT_NE(vh, nullptr);
  const auto source = [vh](const std::string& name) {
    const xds::Route* route = RouteNamed(vh, name);
    if (route == nullptr) return std::string("missing");
    const xds::PolicySource& s = route->source();
    return absl::StrCat(s.kind(), "/", s.namespace_(), "/", s.name(), " ", s.rule(), " ",
                        s.match());
  };
  // Named with their group: meshlet's own HTTPRoute is "HTTPRoute/default/h".
  EXPECT_EQ(source("default/g/any"), "GRPCRoute.gateway.networking.k8s.io/default/g 0 -1");
  EXPECT_EQ(source("default/g/two/0"), "GRPCRoute.gateway.networking.k8s.io/default/g 1 0");
  EXPECT_EQ(source("default/g/two/1"), "GRPCRoute.gateway.networking.k8s.io/default/g 1 1");
  EXPECT_EQ(source("default/h/v1"), "HTTPRoute.gateway.networking.k8s.io/default/h 0 0");
}

TEST_F(GatewayTest, GrpcWeightsAndHeaderModifier) {
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Grpc, value: "1"}]}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 70}, {name: echo-v2, port: 80, weight: 30}]
)");
  const xds::Route& r = Host(For("frontend-0"), "echo.default:80")->routes(0);
  ASSERT_EQ(r.route().weighted_clusters().clusters_size(), 2);
  EXPECT_EQ(r.route().weighted_clusters().clusters(0).weight(), 70u);
  EXPECT_EQ(r.route().weighted_clusters().clusters(1).weight(), 30u);
  EXPECT_EQ(r.request_headers_to_add(0).name(), "x-grpc");
}

TEST_F(GatewayTest, GrpcBackendsHaveTheirOwnHeaderModifiers) {
  AddGrpc(R"(
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - backendRefs:
    - {name: echo-v1, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-B, value: "1"}]}}]}
    - {name: echo-v2, port: 80, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [X-C]}}]}
)");
  const xds::Route& r = Host(For("frontend-0"), "echo.default:80")->routes(0);
  EXPECT_EQ(r.request_headers_to_add_size(), 0);
  const auto& wc = r.route().weighted_clusters();
  ASSERT_EQ(wc.clusters_size(), 2);
  ASSERT_EQ(wc.clusters(0).request_headers_to_add_size(), 1);
  EXPECT_EQ(wc.clusters(0).request_headers_to_add(0).name(), "x-b");
  EXPECT_THAT(wc.clusters(1).response_headers_to_remove(), ElementsAre("x-c"));
}

TEST_F(GatewayTest, TranslationIsDeterministic) {
  AddHttp(EchoRoute("b", "  - backendRefs: [{name: echo-v1, port: 80}]\n"));
  AddHttp(EchoRoute("a", "  - backendRefs: [{name: echo-v2, port: 80}]\n"));
  const NodeResources first = For("frontend-0");
  std::reverse(policy_.gateway_http_routes.begin(), policy_.gateway_http_routes.end());
  const NodeResources second = For("frontend-0");
  EXPECT_EQ(Bytes(first), Bytes(second));
  EXPECT_THAT(RouteNames(Host(first, "echo.default:80")),
              ElementsAre("default/a/rule-0", "default/b/rule-0", "no-matching-route"));
}

}  // namespace
}  // namespace meshlet::controlplane::translate
