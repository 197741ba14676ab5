// Routes (routes.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

TEST_F(TranslatorTest, WeightedSplitMatchesAndHeaderEdits) {
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::VirtualHost* vh = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(vh, nullptr);
  std::vector<std::string> domains(vh->domains().begin(), vh->domains().end());
  for (const char* d : {"reviews", "reviews:9080", "reviews.default", "reviews.default.svc",
                        "reviews.default.svc.cluster.local:9080", "reviews.example.com"}) {
    EXPECT_NE(std::find(domains.begin(), domains.end(), d), domains.end()) << d;
  }
  // canary, split x2 matches, ghost, then the default route.
  ASSERT_EQ(vh->routes_size(), 5);
  const xds::Route& canary = vh->routes(0);
  EXPECT_EQ(canary.match().prefix(), "/");
  ASSERT_EQ(canary.match().headers_size(), 1);
  EXPECT_EQ(canary.match().headers(0).name(), "x-canary");
  EXPECT_EQ(canary.match().headers(0).exact(), "always");
  EXPECT_EQ(canary.route().cluster(), "outbound|9080|version=v2|reviews.default");

  const xds::Route& split = vh->routes(1);
  EXPECT_EQ(split.match().prefix(), "/api");
  EXPECT_EQ(vh->routes(2).match().path(), "/health");
  EXPECT_EQ(vh->routes(2).match().methods(0), "GET");
  ASSERT_EQ(split.route().weighted_clusters().clusters_size(), 2);
  EXPECT_EQ(split.route().weighted_clusters().clusters(0).name(),
            "outbound|9080|version=v1|reviews.default");
  EXPECT_EQ(split.route().weighted_clusters().clusters(0).weight(), 90u);
  EXPECT_EQ(split.route().weighted_clusters().clusters(1).weight(), 10u);
  EXPECT_EQ(split.route().timeout().seconds(), 3);
  // Header edits in name order, so the output does not depend on map iteration.
  ASSERT_EQ(split.request_headers_to_add_size(), 2);
  EXPECT_EQ(split.request_headers_to_add(0).name(), "x-a");
  EXPECT_FALSE(split.request_headers_to_add(0).append());
  EXPECT_EQ(split.request_headers_to_remove(0), "x-debug");
  EXPECT_EQ(split.fault().abort().http_status(), 503u);
  EXPECT_DOUBLE_EQ(split.fault().abort().percentage(), 5.0);

  // A backend naming a missing Service answers 503 and says so.
  EXPECT_EQ(vh->routes(3).direct_response().status(), 503u);
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings[0].find("nonexistent"), std::string::npos) << r.warnings[0];

  const xds::Route& fallback = vh->routes(4);
  EXPECT_EQ(fallback.route().cluster(), "outbound|9080||reviews.default");
}

// Decision records: each route names the HTTPRoute, rule and match it came from (the default
// route its Service), each cluster its TrafficPolicy and subset.
TEST_F(TranslatorTest, RoutesAndClustersNameThePolicyTheyCameFrom) {
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::VirtualHost* vh = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(vh, nullptr);
  ASSERT_EQ(vh->routes_size(), 5);
  const auto source = [](const xds::Route& route) {
    const xds::PolicySource& s = route.source();
    return absl::StrCat(s.kind(), "/", s.namespace_(), "/", s.name(), " ", s.rule(), " ",
                        s.match());
  };
  EXPECT_EQ(source(vh->routes(0)), "HTTPRoute/default/reviews 0 0");
  EXPECT_EQ(source(vh->routes(1)), "HTTPRoute/default/reviews 1 0");
  EXPECT_EQ(source(vh->routes(2)), "HTTPRoute/default/reviews 1 1");
  EXPECT_EQ(source(vh->routes(3)), "HTTPRoute/default/reviews 2 0");
  EXPECT_EQ(source(vh->routes(4)), "Service/default/reviews -1 -1");

  const xds::Cluster* v2 = Named(r.clusters, "outbound|9080|version=v2|reviews.default");
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ(v2->subset(), "version=v2");
  EXPECT_EQ(v2->traffic_policy().kind(), "TrafficPolicy");
  EXPECT_EQ(v2->traffic_policy().namespace_(), "default");
  EXPECT_EQ(v2->traffic_policy().name(), "reviews");
  const xds::Cluster* all = Named(r.clusters, "outbound|9080||reviews.default");
  ASSERT_NE(all, nullptr);
  EXPECT_EQ(all->subset(), "");
  EXPECT_EQ(all->traffic_policy().name(), "reviews");
  // frontend has no TrafficPolicy: no source.
  const xds::Cluster* frontend = Named(r.clusters, "outbound|8080||frontend.default");
  ASSERT_NE(frontend, nullptr);
  EXPECT_FALSE(frontend->has_traffic_policy());
}

// A rule without matches matches everything: match -1.
TEST_F(TranslatorTest, ARuleWithoutMatchesHasMatchMinusOne) {
  policy_.http_routes[0].mutable_spec()->mutable_rules(0)->clear_matches();
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::VirtualHost* vh = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(vh, nullptr);
  EXPECT_EQ(vh->routes(0).source().rule(), 0);
  EXPECT_EQ(vh->routes(0).source().match(), -1);
}

TEST_F(TranslatorTest, RedirectsDirectResponsesAndRewrites) {
  policy_.http_routes[0] = Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: reviews}
spec:
  target: reviews
  rules:
  - name: moved
    matches: [{path: {value: /old}}]
    redirect: {scheme: https, host: reviews.example.com, path: /new, port: 8443, statusCode: 301}
  - matches: [{path: {value: /teapot}, headers: [{name: X-Debug, type: Present, invert: true}]}]
    directResponse: {status: 418, body: "short and stout\n"}
  - matches: [{path: {value: /v2}, headers: [{name: X-Tier, type: Prefix, value: gold}]}]
    backends: [{service: reviews}]
    rewrite: {pathPrefix: /, host: reviews-v2}
    responseHeaders: {add: {x-served-by: mesh}}
)");
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::VirtualHost* vh = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(vh, nullptr);
  ASSERT_EQ(vh->routes_size(), 4);  // three rules, then the default route
  const xds::Route& moved = vh->routes(0);
  EXPECT_EQ(moved.name(), "reviews.moved");
  EXPECT_EQ(moved.redirect().scheme(), "https");
  EXPECT_EQ(moved.redirect().host(), "reviews.example.com");
  EXPECT_EQ(moved.redirect().path(), "/new");
  EXPECT_EQ(moved.redirect().port(), 8443u);
  EXPECT_EQ(moved.redirect().response_code(), 301u);
  const xds::Route& teapot = vh->routes(1);
  EXPECT_EQ(teapot.name(), "reviews.rule-1");  // unnamed rules by their index
  EXPECT_EQ(teapot.direct_response().status(), 418u);
  EXPECT_EQ(teapot.direct_response().body(), "short and stout\n");
  ASSERT_EQ(teapot.match().headers_size(), 1);
  EXPECT_EQ(teapot.match().headers(0).name(), "x-debug");
  EXPECT_TRUE(teapot.match().headers(0).present());
  EXPECT_TRUE(teapot.match().headers(0).invert());
  const xds::Route& rewritten = vh->routes(2);
  EXPECT_EQ(rewritten.match().prefix(), "/v2");
  EXPECT_EQ(rewritten.match().headers(0).prefix(), "gold");
  EXPECT_EQ(rewritten.route().cluster(), "outbound|9080||reviews.default");
  EXPECT_EQ(rewritten.route().prefix_rewrite(), "/");
  EXPECT_EQ(rewritten.route().host_rewrite(), "reviews-v2");
  EXPECT_EQ(rewritten.route().timeout().seconds(), 2);  // the TrafficPolicy's
  ASSERT_EQ(rewritten.response_headers_to_add_size(), 1);
  EXPECT_TRUE(rewritten.response_headers_to_add(0).append());
  // The last virtual host answers every other host with 404.
  const xds::VirtualHost* unknown = Host(r, "outbound", "unknown-host");
  ASSERT_NE(unknown, nullptr);
  EXPECT_EQ(unknown->domains(0), "*");
  EXPECT_EQ(unknown->routes(0).direct_response().status(), 404u);
}

TEST_F(TranslatorTest, BackendsWithoutAnHttpPortAndHostNamesTakenTwice) {
  policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: cache}
spec:
  ports: [{name: redis, port: 6379, protocol: TCP}]
)"));
  policy_.http_routes[0].mutable_spec()->mutable_rules(2)->mutable_backends(0)->set_service(
      "cache");
  // frontend claims reviews' extra host name too: the first service (by name) keeps it.
  pb::HTTPRoute claim = Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: frontend}
spec:
  target: frontend
  hostnames: [reviews.example.com]
)");
  policy_.http_routes.push_back(claim);
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::VirtualHost* vh = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(vh, nullptr);
  EXPECT_EQ(vh->routes(3).direct_response().status(), 503u);  // ghost, now cache
  const std::string all = absl::StrJoin(r.warnings, "\n");
  EXPECT_TRUE(absl::StrContains(
      all,
      "HTTPRoute default/reviews spec.rules[2].backends[0]: Service \"cache\" has no such HTTP "
      "port; its share of traffic gets 503"))
      << all;
  EXPECT_TRUE(absl::StrContains(all,
                                "host name \"reviews.example.com\" of reviews.default:9080 is "
                                "already used by another service; ignored"))
      << all;
  EXPECT_TRUE(absl::StrContains(all, "Service default/cache port 6379: TCP ports are not routed"))
      << all;
  const xds::VirtualHost* frontend = Host(r, "outbound", "frontend.default:8080");
  std::vector<std::string> domains(frontend->domains().begin(), frontend->domains().end());
  EXPECT_NE(std::find(domains.begin(), domains.end(), "reviews.example.com"), domains.end());
}

TEST_F(TranslatorTest, StatusCodesImplyRetryingOnThem) {
  pb::Retries retries;
  retries.add_retriable_status_codes(503);
  retries.mutable_backoff_max()->set_seconds(1);
  pb::Timeouts timeouts;
  timeouts.mutable_per_try()->set_seconds(2);
  xds::RetryPolicy policy = ToRetryPolicy(retries, timeouts);
  EXPECT_EQ(std::vector<std::string>(policy.retry_on().begin(), policy.retry_on().end()),
            (std::vector<std::string>{"connect-failure", "refused-stream", "reset",
                                      "retriable-status-codes"}));
  EXPECT_EQ(policy.retriable_status_codes(0), 503u);
  EXPECT_EQ(policy.per_try_timeout().seconds(), 2);
  EXPECT_EQ(policy.max_interval().seconds(), 1);
  EXPECT_FALSE(policy.has_num_retries());
  retries.add_retry_on("5xx");
  policy = ToRetryPolicy(retries, timeouts);
  EXPECT_EQ(std::vector<std::string>(policy.retry_on().begin(), policy.retry_on().end()),
            (std::vector<std::string>{"5xx", "retriable-status-codes"}));
  retries.add_retry_on("retriable-status-codes");
  EXPECT_EQ(ToRetryPolicy(retries, timeouts).retry_on_size(), 2);  // said once
}

TEST_F(TranslatorTest, RouteDefaultsRuleOverTrafficPolicy) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  const ServiceView& reviews = *index.services.at({"default", "reviews"});
  pb::HTTPRouteRule rule;
  rule.mutable_timeout()->set_seconds(7);
  rule.mutable_retries()->mutable_attempts()->set_value(1);
  xds::RouteAction action;
  ApplyRouteDefaults(ctx, reviews, action, &rule);
  EXPECT_EQ(action.timeout().seconds(), 7);
  EXPECT_EQ(action.retry_policy().num_retries().value(), 1u);
  EXPECT_EQ(action.retry_policy().retry_on_size(), 2);  // the TrafficPolicy's
  EXPECT_EQ(action.retry_policy().per_try_timeout().nanos(), 500000000);
  // A service without TrafficPolicy or mesh defaults: no timeout, no retry policy (the
  // sidecar's defaults apply).
  xds::RouteAction plain;
  ApplyRouteDefaults(ctx, *index.services.at({"default", "frontend"}), plain, nullptr);
  EXPECT_FALSE(plain.has_timeout());
  EXPECT_FALSE(plain.has_retry_policy());
}

TEST_F(TranslatorTest, HostNamesOfAServicePort) {
  policy_.services[0].mutable_status()->add_addresses("fd00::9");
  const MeshIndex index = BuildIndex(policy_, registry_);
  TranslateOptions options;
  options.cluster_domain = "example.org";
  const TranslationContext ctx(policy_, registry_, index, node_, options);
  const ServiceView& reviews = *index.services.at({"default", "reviews"});
  EXPECT_EQ(
      Domains(ctx, reviews, 9080, false),
      (std::vector<std::string>{"reviews:9080", "reviews.default:9080", "reviews.default.svc:9080",
                                "reviews.default.svc.example.org:9080"}));
  EXPECT_EQ(
      Domains(ctx, reviews, 9080, true, true),
      (std::vector<std::string>{
          "reviews", "reviews:9080", "reviews.default", "reviews.default:9080",
          "reviews.default.svc", "reviews.default.svc:9080", "reviews.default.svc.example.org",
          "reviews.default.svc.example.org:9080", "[fd00::9]", "[fd00::9]:9080"}));
}

// A captured connection to a Service port's address is routed by that port's virtual host whatever
// its Host says (GAMMA: the Service is the route's frontend); without capture nothing is bound.
TEST_F(CaptureTest, ServiceAddressesBindTheirPortsVirtualHost) {
  auto destinations = [](const NodeResources& r, const std::string& vhost) {
    const xds::VirtualHost* host = Host(r, "outbound", vhost);
    EXPECT_NE(host, nullptr) << vhost;
    if (host == nullptr) return std::vector<std::string>{};
    return std::vector<std::string>(host->destinations().begin(), host->destinations().end());
  };
  const NodeResources plain = Translate(policy_, registry_, node_);
  EXPECT_EQ(destinations(plain, "reviews.default:9080"), std::vector<std::string>{});
  Capture(registry_.workloads[0]);  // frontend-0
  const NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_EQ(destinations(r, "reviews.default:9080"),
            (std::vector<std::string>{"240.240.0.1:9080", "[fd00:240::1]:9080"}));
  EXPECT_EQ(destinations(r, "db.default:8080"),
            (std::vector<std::string>{"10.96.0.20:8080", "[fd00::20]:8080"}));
  EXPECT_EQ(destinations(r, "unknown-host"), std::vector<std::string>{});
}

// Split and inline tables (ADR 0086) -------------------------------------------------------------

// Serialized messages by name.
template <typename T>
std::map<std::string, std::string> ByName(const std::vector<T>& list) {
  std::map<std::string, std::string> out;
  for (const T& m : list) {
    EXPECT_TRUE(out.emplace(m.name(), TranslatorTest::Content(m)).second) << m.name();
  }
  return out;
}
std::vector<xds::VirtualHost> Copies(const std::vector<const xds::VirtualHost*>& hosts) {
  std::vector<xds::VirtualHost> out;
  for (const xds::VirtualHost* vh : hosts) out.push_back(*vh);
  return out;
}

xds::Node WithoutServiceRoutes(const xds::Node& node) {
  xds::Node out = node;
  out.clear_capabilities();
  xds::CapabilitySet reads = xds::CapabilitySet::All();
  reads.Remove(xds::Capability::kServiceRoutes);
  for (const std::string& name : reads.Names()) out.add_capabilities(name);
  return out;
}

// What a node that reads ServiceRoutes gets, joined as the sidecar joins them, is what the same
// node gets inline: the same virtual hosts and capture destinations, the same everything else;
// and no domain is served twice.
void ExpectServiceRoutesCarryTheInlineTable(const policy::PolicySnapshot& policy,
                                            const registry::RegistrySnapshot& registry,
                                            const xds::Node& node) {
  SCOPED_TRACE(node.id());
  xds::Node reads_all = node;
  reads_all.clear_capabilities();
  for (const std::string& name : xds::CapabilitySet::All().Names())
    reads_all.add_capabilities(name);
  const NodeResources split = Translate(policy, registry, reads_all);
  const NodeResources inline_table = Translate(policy, registry, WithoutServiceRoutes(node));
  EXPECT_TRUE(inline_table.service_routes.empty());
  for (const xds::ServiceRoute& sr : split.service_routes) {
    EXPECT_EQ(sr.route_config_name(), "outbound") << sr.name();
    EXPECT_TRUE(sr.has_virtual_host() || sr.has_destination()) << sr.name();
    if (sr.has_virtual_host()) {
      EXPECT_EQ(sr.virtual_host().name(), sr.name());
    }
    if (sr.has_destination()) {
      EXPECT_EQ(sr.destination().name(), sr.name());
    }
  }
  // The route table: its own hosts plus the ServiceRoutes' ("*" stays in the table).
  EXPECT_EQ(ByName(Copies(TranslatorTest::JoinedHosts(split, "outbound"))),
            ByName(Copies(TranslatorTest::JoinedHosts(inline_table, "outbound"))));
  const xds::RouteConfiguration* table = TranslatorTest::Named(split.routes, "outbound");
  ASSERT_NE(table, nullptr);
  ASSERT_EQ(table->virtual_hosts_size(), 1);
  EXPECT_EQ(table->virtual_hosts(0).name(), "unknown-host");
  std::map<std::string, std::string> owner;
  for (const xds::VirtualHost* vh : TranslatorTest::JoinedHosts(split, "outbound")) {
    for (const std::string& domain : vh->domains()) {
      auto [it, fresh] = owner.emplace(domain, vh->name());
      EXPECT_TRUE(fresh) << domain << " of " << vh->name() << " and " << it->second;
    }
  }
  // Listeners: the capture destinations move, nothing else differs.
  ASSERT_EQ(split.listeners.size(), inline_table.listeners.size());
  for (size_t i = 0; i < split.listeners.size(); ++i) {
    xds::Listener a = split.listeners[i];
    xds::Listener b = inline_table.listeners[i];
    EXPECT_EQ(ByName(TranslatorTest::JoinedDestinations(split, a)),
              ByName(TranslatorTest::JoinedDestinations(inline_table, b)))
        << a.name();
    if (a.name() == "outbound") {
      EXPECT_EQ(a.destinations_size(), 0);
    }
    a.clear_destinations();
    b.clear_destinations();
    EXPECT_EQ(TranslatorTest::Content(a), TranslatorTest::Content(b)) << a.name();
  }
  // Every other route configuration, the clusters (the same ones: nothing names fewer) and
  // their endpoints, the warnings.
  auto others = [](const NodeResources& r) {
    std::vector<xds::RouteConfiguration> out;
    for (const xds::RouteConfiguration& rc : r.routes) {
      if (rc.name() != "outbound") out.push_back(rc);
    }
    return out;
  };
  EXPECT_EQ(ByName(others(split)), ByName(others(inline_table)));
  EXPECT_EQ(TranslatorTest::Content(split.clusters),
            TranslatorTest::Content(inline_table.clusters));
  EXPECT_EQ(TranslatorTest::Content(split.endpoints),
            TranslatorTest::Content(inline_table.endpoints));
  EXPECT_EQ(split.warnings, inline_table.warnings);
}

// Each node of a fixture, captured and not, whole mesh and scoped to one dependency.
void ExpectEveryNodeCarriesTheInlineTable(policy::PolicySnapshot policy,
                                          registry::RegistrySnapshot registry,
                                          const xds::Node& base) {
  for (const bool scoped : {false, true}) {
    if (!policy.mesh_config) policy.mesh_config.emplace();
    policy.mesh_config->mutable_spec()->set_scope_to_dependencies(scoped);
    for (const bool capture : {false, true}) {
      SCOPED_TRACE(absl::StrCat(scoped ? "scoped" : "whole mesh", capture ? ", captured" : ""));
      registry::RegistrySnapshot r = registry;
      for (registry::Workload& w : r.workloads) {
        if (capture) {
          w.labels[registry::kCaptureLabel] = registry::kCaptureIptables;
          w.capture = true;
        }
        w.labels[std::string(kDependenciesLabel)] = "reviews";
      }
      for (const registry::Workload& w : r.workloads) {
        xds::Node node = base;
        node.set_id(w.id);
        ExpectServiceRoutesCarryTheInlineTable(policy, r, node);
      }
    }
  }
}

TEST_F(TranslatorTest, ServiceRoutesCarryWhatTheInlineTableCarried) {
  ExpectEveryNodeCarriesTheInlineTable(policy_, registry_, node_);
}
TEST_F(CaptureTest, ServiceRoutesCarryWhatTheInlineTableCarried) {
  ExpectEveryNodeCarriesTheInlineTable(policy_, registry_, node_);
}
TEST_F(KubernetesServicesTest, ServiceRoutesCarryWhatTheInlineTableCarried) {
  ExpectEveryNodeCarriesTheInlineTable(policy_, registry_, node_);
}
TEST_F(GatewayTest, ServiceRoutesCarryWhatTheInlineTableCarried) {
  ExpectEveryNodeCarriesTheInlineTable(policy_, registry_, node_);
}

// A host name two Services claim (in any case) belongs to the first of them (by namespace and
// name) for every node: one that reaches only the second does not get it either (the virtual host
// of a Service port is the same for every node that reaches it, and no two ServiceRoutes share a
// domain).
TEST_F(TranslatorTest, HostnameClaimedTwiceHasOneOwnerForEveryNode) {
  policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: frontend}
spec:
  target: frontend
  hostnames: [Reviews.Example.com]
)"));
  policy_.mesh_config.emplace();
  policy_.mesh_config->mutable_spec()->set_scope_to_dependencies(true);
  registry_.workloads[0].labels[std::string(kDependenciesLabel)] = "reviews";  // frontend-0
  // reviews-v1-0 reaches its own service only; reviews-v2-0 reaches frontend too.
  registry_.workloads[3].labels[std::string(kDependenciesLabel)] = "frontend";
  for (const char* id : {"frontend-0", "reviews-v1-0", "reviews-v2-0"}) {
    for (const bool split : {true, false}) {
      SCOPED_TRACE(absl::StrCat(id, split ? " split" : " inline"));
      xds::Node node = node_;
      node.set_id(id);
      if (!split) node = WithoutServiceRoutes(node);
      const NodeResources r = Translate(policy_, registry_, node);
      EXPECT_EQ(r.service_routes.empty(), !split);
      std::vector<std::string> owners;
      for (const xds::VirtualHost* vh : JoinedHosts(r, "outbound")) {
        for (const std::string& domain : vh->domains()) {
          if (absl::AsciiStrToLower(domain) == "reviews.example.com") {
            owners.push_back(vh->name());
          }
        }
      }
      const bool reaches_frontend = std::string(id) != "reviews-v1-0";
      EXPECT_EQ(owners, reaches_frontend ? std::vector<std::string>{"frontend.default:8080"}
                                         : std::vector<std::string>{});
      const xds::VirtualHost* reviews = Host(r, "outbound", "reviews.default:9080");
      ASSERT_NE(reviews, nullptr);
      EXPECT_EQ(reviews->routes_size(), 5);  // its routes stay; only the host name went
    }
  }
}

// The owners are a function of the index and the variant: built once, whatever the number of
// nodes (scoped ones too) that read them. Address owners (lookup.cc) depend on the index alone.
TEST_F(CaptureTest, HostOwnersBuiltOncePerIndexAndVariant) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  xds::Node other = node_;
  other.set_id("reviews-v1-0");
  const TranslationContext a(policy_, registry_, index, node_, kDefaultOptions);
  const TranslationContext b(policy_, registry_, index, other, kDefaultOptions);
  EXPECT_EQ(&OwnHostNames(a), &OwnHostNames(b));
  EXPECT_EQ(&OwnAddresses(a), &OwnAddresses(b));
  EXPECT_EQ(index.Name(OwnAddresses(a).at("addr:[fd00::20]:3306")), "db.default:3306");
  EXPECT_EQ(OwnAddresses(a).size(), 7u);  // addresses × ports: reviews 2 × 1, frontend 1, db 2 × 2
  EXPECT_EQ(index.Name(OwnHostNames(a).at("reviews.example.com")), "reviews.default:9080");
  EXPECT_FALSE(OwnHostNames(a).contains("240.240.0.1:9080"));
  Capture(registry_.workloads[0]);  // frontend-0: its hosts include Service addresses
  const TranslationContext captured(policy_, registry_, index, node_, kDefaultOptions);
  EXPECT_NE(&OwnHostNames(captured), &OwnHostNames(a));
  EXPECT_EQ(index.Name(OwnHostNames(captured).at("240.240.0.1:9080")), "reviews.default:9080");
  // Another index (the next generation) builds its own.
  const MeshIndex next = BuildIndex(policy_, registry_);
  const TranslationContext c(policy_, registry_, next, node_, kDefaultOptions);
  EXPECT_NE(&OwnHostNames(c), &OwnHostNames(a));
  EXPECT_NE(&OwnAddresses(c), &OwnAddresses(a));
}

TEST_F(CaptureTest, OversizedServiceRouteBecomes503WithWarning) {
  Capture(registry_.workloads[0]);  // frontend-0: its ServiceRoutes carry destinations
  TranslateOptions unlimited;
  unlimited.max_resource_bytes = 0;
  const NodeResources full = Translate(policy_, registry_, node_, unlimited);
  const xds::ServiceRoute* reviews = Named(full.service_routes, "reviews.default:9080");
  const xds::ServiceRoute* frontend = Named(full.service_routes, "frontend.default:8080");
  ASSERT_NE(reviews, nullptr);
  ASSERT_NE(frontend, nullptr);
  ASSERT_GT(reviews->ByteSizeLong(), frontend->ByteSizeLong());
  EXPECT_EQ(full.oversized_service_routes, 0u);

  TranslateOptions limited;
  limited.max_resource_bytes = reviews->ByteSizeLong() - 1;
  const NodeResources r = Translate(policy_, registry_, node_, limited);
  EXPECT_EQ(r.oversized_service_routes, 1u);
  const xds::ServiceRoute* replaced = Named(r.service_routes, "reviews.default:9080");
  ASSERT_NE(replaced, nullptr);
  EXPECT_LE(replaced->ByteSizeLong(), limited.max_resource_bytes);
  // Its host names and destinations stay (requests for it are answered, not sent elsewhere).
  EXPECT_EQ(Content(replaced->destination()), Content(reviews->destination()));
  EXPECT_EQ(std::vector<std::string>(replaced->virtual_host().domains().begin(),
                                     replaced->virtual_host().domains().end()),
            std::vector<std::string>(reviews->virtual_host().domains().begin(),
                                     reviews->virtual_host().domains().end()));
  ASSERT_EQ(replaced->virtual_host().routes_size(), 1);
  const xds::Route& route = replaced->virtual_host().routes(0);
  EXPECT_EQ(route.match().prefix(), "/");
  EXPECT_EQ(route.direct_response().status(), 503u);
  EXPECT_EQ(route.direct_response().body(),
            "meshlet: route table of reviews.default:9080 too large\n");
  const std::string all = absl::StrJoin(r.warnings, "\n");
  EXPECT_TRUE(absl::StrContains(
      all, absl::StrCat("ServiceRoute reviews.default:9080: ", reviews->ByteSizeLong(),
                        " bytes, more than the limit of ", limited.max_resource_bytes)))
      << all;
  // The others are untouched.
  EXPECT_EQ(Content(*Named(r.service_routes, "frontend.default:8080")), Content(*frontend));
}

TEST(AppRouteTest, TheInboundHopAddsNoDeadlineAndRetriesOnlyWhatNeverReachedTheApp) {
  const xds::Route plain = AppRoute("inbound|8080", nullptr);
  EXPECT_EQ(plain.name(), "app");
  EXPECT_EQ(plain.match().prefix(), "/");
  EXPECT_EQ(plain.route().cluster(), "inbound|8080");
  EXPECT_TRUE(plain.route().has_timeout());
  EXPECT_EQ(plain.route().timeout().seconds(), 0);
  EXPECT_EQ(std::vector<std::string>(plain.route().retry_policy().retry_on().begin(),
                                     plain.route().retry_policy().retry_on().end()),
            (std::vector<std::string>{"connect-failure", "refused-stream"}));
  EXPECT_FALSE(plain.has_rate_limit());
  pb::TrafficPolicy tp;
  tp.mutable_metadata()->set_name("ratings");
  tp.mutable_metadata()->set_namespace_("shop");
  tp.mutable_spec()->mutable_rate_limit()->set_requests_per_second(5);
  tp.mutable_spec()->mutable_rate_limit()->set_burst(10);
  const xds::Route limited = AppRoute("inbound|8080", &tp);
  EXPECT_EQ(limited.rate_limit().requests_per_second(), 5u);
  EXPECT_EQ(limited.rate_limit().burst(), 10u);
  EXPECT_FALSE(limited.rate_limit().per_principal());
  // Decision records: a refused request names the TrafficPolicy the limit came from.
  EXPECT_EQ(limited.rate_limit().source().kind(), "TrafficPolicy");
  EXPECT_EQ(limited.rate_limit().source().namespace_(), "shop");
  EXPECT_EQ(limited.rate_limit().source().name(), "ratings");
}

// Decision records: each route names the policy object its timeout came from (the HTTPRoute rule
// that set one, else the TrafficPolicy, else the MeshConfig's defaults), and its per-try
// timeout's, so an explanation of a 504 blames the object that has to change.
TEST_F(TranslatorTest, RoutesNameWhereTheirTimeoutsCameFrom) {
  auto source = [](const xds::PolicySource& s) {
    return s.kind().empty() ? std::string()
                            : absl::StrCat(s.kind(), "/", s.namespace_(), "/", s.name());
  };
  auto route = [&](const NodeResources& r, const std::string& host, const std::string& name) {
    const xds::VirtualHost* vhost = Host(r, "outbound", host);
    if (vhost == nullptr) {
      ADD_FAILURE() << "no virtual host " << host;
      return xds::Route();
    }
    for (const xds::Route& route : vhost->routes()) {
      if (route.name() == name) return route;
    }
    ADD_FAILURE() << "no route " << name << " in " << host;
    return xds::Route();
  };
  const NodeResources r = Translate(policy_, registry_, node_);
  // The "split" rule sets 3s itself; per try comes from the TrafficPolicy.
  const xds::Route split = route(r, "reviews.default:9080", "reviews.split.0");
  EXPECT_EQ(split.route().timeout().seconds(), 3);
  EXPECT_EQ(source(split.route().timeout_source()), "HTTPRoute/default/reviews");
  EXPECT_EQ(source(split.route().per_try_timeout_source()), "TrafficPolicy/default/reviews");
  // The "canary" rule sets none: the TrafficPolicy's 2s.
  const xds::Route canary = route(r, "reviews.default:9080", "reviews.canary");
  EXPECT_EQ(canary.route().timeout().seconds(), 2);
  EXPECT_EQ(source(canary.route().timeout_source()), "TrafficPolicy/default/reviews");
  // frontend has neither TrafficPolicy nor mesh defaults: no timeout, no source.
  const xds::Route plain = route(r, "frontend.default:8080", "default");
  EXPECT_FALSE(plain.route().has_timeout_source());
  EXPECT_FALSE(plain.route().has_per_try_timeout_source());
  // The mesh's defaults: the MeshConfig, which has no namespace.
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_request()->set_seconds(9);
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_per_try()->set_seconds(1);
  policy_.mesh_config = mesh;
  const NodeResources with_mesh = Translate(policy_, registry_, node_);
  const xds::Route defaulted = route(with_mesh, "frontend.default:8080", "default");
  EXPECT_EQ(defaulted.route().timeout().seconds(), 9);
  EXPECT_EQ(source(defaulted.route().timeout_source()), "MeshConfig//mesh");
  EXPECT_EQ(source(defaulted.route().per_try_timeout_source()), "MeshConfig//mesh");
  // The TrafficPolicy's per try still wins over the mesh's for reviews.
  EXPECT_EQ(source(route(with_mesh, "reviews.default:9080", "reviews.canary")
                       .route()
                       .per_try_timeout_source()),
            "TrafficPolicy/default/reviews");
}

}  // namespace
}  // namespace meshlet::controlplane::translate
