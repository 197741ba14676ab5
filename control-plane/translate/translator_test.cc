#include "control-plane/translate/translator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/fake_clock.h"
#include "control-plane/policy/codec.h"

namespace meshlet::controlplane::translate {
namespace {

namespace pb = ::meshlet::policy;

template <typename T>
T Parse(const std::string& yaml) {
  absl::StatusOr<policy::ParsedResource> parsed = policy::ParseResource(yaml);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  T out = static_cast<T&>(*parsed->message);
  if (out.metadata().namespace_().empty()) out.mutable_metadata()->set_namespace_("default");
  return out;
}

registry::Workload MakeWorkload(std::string id, std::string service, std::string address,
                                std::map<std::string, std::string> labels = {}) {
  registry::Workload w;
  w.id = std::move(id);
  w.service = std::move(service);
  w.namespace_ = "default";
  w.addresses = {std::move(address)};
  w.ports = {9080};
  w.labels = std::move(labels);
  w.service_account = w.service;
  return w;
}

class TranslatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
)"));
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, targetPort: 8081}]
)"));
    policy_.traffic_policies.push_back(Parse<pb::TrafficPolicy>(R"(
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  target: reviews
  loadBalancer: ROUND_ROBIN
  timeouts: {connect: 250ms, request: 2s, perTry: 500ms}
  retries: {attempts: 3, retryOn: [connect-failure, reset], budgetPercent: 25}
  circuitBreaker: {maxRequests: 100}
  outlierDetection: {consecutive5xx: 7}
  rateLimit: {requestsPerSecond: 50, burst: 100, perSourceIdentity: true}
  connectionPool: {idleTimeout: 20s, maxRequestsPerConnection: 1, maxConnectionDuration: 1m}
)"));
    policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: reviews}
spec:
  target: reviews
  hostnames: [reviews.example.com]
  rules:
  - name: canary
    matches:
    - headers: [{name: X-Canary, value: always}]
    backends: [{service: reviews, subset: {version: v2}}]
  - name: split
    matches:
    - path: {type: PathPrefix, value: /api}
    - path: {type: Exact, value: /health}
      method: GET
    backends:
    - {service: reviews, subset: {version: v1}, weight: 90}
    - {service: reviews, subset: {version: v2}, weight: 10}
    timeout: 3s
    requestHeaders: {set: {x-b: "2", x-a: "1"}, remove: [x-debug]}
    fault: {abort: {httpStatus: 503, percent: 5}}
  - name: ghost
    matches: [{path: {value: /ghost}}]
    backends: [{service: nonexistent}]
)"));
    registry_.workloads = {
        MakeWorkload("frontend-0", "frontend", "10.0.0.1"),
        MakeWorkload("reviews-v1-0", "reviews", "10.0.1.1", {{"version", "v1"}}),
        MakeWorkload("reviews-v1-1", "reviews", "10.0.1.2", {{"version", "v1"}}),
        MakeWorkload("reviews-v2-0", "reviews", "10.0.2.1", {{"version", "v2"}}),
    };
    registry_.workloads[0].ports = {8081};
    node_.set_id("frontend-0");
  }

  static std::string Bytes(const NodeResources& r) {
    std::string out;
    auto add = [&](const google::protobuf::Message& m) {
      std::string bytes;
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      m.SerializeToCodedStream(&coded);
      coded.Trim();
      out += bytes;
      out += '|';
    };
    for (const auto& m : r.listeners) add(m);
    for (const auto& m : r.routes) add(m);
    for (const auto& m : r.clusters) add(m);
    for (const auto& m : r.endpoints) add(m);
    return out;
  }

  template <typename T>
  static const T* Named(const std::vector<T>& list, absl::string_view name) {
    for (const T& item : list) {
      if (item.name() == name) return &item;
    }
    return nullptr;
  }
  static const xds::ClusterLoadAssignment* Assignment(const NodeResources& r,
                                                      absl::string_view name) {
    for (const auto& a : r.endpoints) {
      if (a.cluster_name() == name) return &a;
    }
    return nullptr;
  }
  static const xds::VirtualHost* Host(const NodeResources& r, absl::string_view route_config,
                                      absl::string_view vhost) {
    const xds::RouteConfiguration* rc = Named(r.routes, route_config);
    if (rc == nullptr) return nullptr;
    for (const auto& vh : rc->virtual_hosts()) {
      if (vh.name() == vhost) return &vh;
    }
    return nullptr;
  }

  policy::PolicySnapshot policy_;
  registry::RegistrySnapshot registry_;
  xds::Node node_;
};

TEST_F(TranslatorTest, ListenersForTheNode) {
  NodeResources r = Translate(policy_, registry_, node_);
  ASSERT_EQ(r.listeners.size(), 2u);
  const xds::Listener* outbound = Named(r.listeners, "outbound");
  ASSERT_NE(outbound, nullptr);
  // Without capture, for the app beside it alone: it makes calls with this workload's identity.
  EXPECT_EQ(outbound->address(), "127.0.0.1:15001");
  EXPECT_EQ(outbound->additional_addresses_size(), 0);  // no capture: nothing redirects to it
  EXPECT_EQ(outbound->direction(), xds::OUTBOUND);
  EXPECT_EQ(outbound->route_config_name(), "outbound");
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->address(), "0.0.0.0:15006");
  EXPECT_EQ(inbound->direction(), xds::INBOUND);
  // frontend's Service maps port 8080 to the app's 8081.
  EXPECT_EQ(inbound->tcp_cluster(), "inbound|8081");
  const xds::Cluster* app = Named(r.clusters, "inbound|8081");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->type(), xds::Cluster::STATIC);
  EXPECT_EQ(app->load_assignment().endpoints(0).address(), "127.0.0.1:8081");
  // The inbound hop adds no timeout of its own: the caller's deadline governs. It retries only
  // what never reached the app, so attempts do not multiply across hops.
  const xds::VirtualHost* local = Host(r, "inbound", "inbound:8080");
  ASSERT_NE(local, nullptr);
  ASSERT_EQ(local->routes_size(), 1);
  EXPECT_EQ(local->routes(0).route().timeout().seconds(), 0);
  const xds::RetryPolicy& inbound_retries = local->routes(0).route().retry_policy();
  EXPECT_FALSE(inbound_retries.has_num_retries());  // the default attempts
  EXPECT_EQ(std::vector<std::string>(inbound_retries.retry_on().begin(),
                                     inbound_retries.retry_on().end()),
            (std::vector<std::string>{"connect-failure", "refused-stream"}));
}

TEST_F(TranslatorTest, RegisteredAppPortsWinOverTheServiceTargetPort) {
  // Two reviews instances on one host listen on 19080 and 29080; the Service says 9080.
  registry_.workloads[1].ports = {19080};
  registry_.workloads[3].ports = {29080};
  node_.set_id("reviews-v2-0");
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(r.listeners, "inbound")->tcp_cluster(), "inbound|29080");
  ASSERT_NE(Named(r.clusters, "inbound|29080"), nullptr);
  // Registered ports that include the target port keep it.
  registry_.workloads[3].ports = {9080, 29080};
  r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(r.listeners, "inbound")->tcp_cluster(), "inbound|9080");
}

TEST_F(TranslatorTest, PortsFromTheRegistrationForLoopbackSidecars) {
  registry_.workloads[0].inbound_port = 26006;
  registry_.workloads[0].outbound_port = 26001;
  registry_.workloads[1].inbound_port = 27006;
  TranslateOptions options;
  options.listen_host = "127.0.0.1";
  NodeResources r = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(r.listeners, "outbound")->address(), "127.0.0.1:26001");
  EXPECT_EQ(Named(r.listeners, "inbound")->address(), "127.0.0.1:26006");
  // Listeners on IPv6: the outbound one on both loopback addresses (an app may use either).
  options.listen_host = "::";
  r = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(r.listeners, "outbound")->address(), "127.0.0.1:26001");
  EXPECT_EQ(Named(r.listeners, "outbound")->additional_addresses(0), "[::1]:26001");
  EXPECT_EQ(Named(r.listeners, "inbound")->address(), "[::]:26006");
  const xds::ClusterLoadAssignment* v1 = Assignment(r, "outbound|9080|version=v1|reviews.default");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(v1->endpoints(0).address(), "10.0.1.1:27006");
}

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

TEST_F(TranslatorTest, TrafficPolicyBecomesClusterAndRouteSettings) {
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Cluster* c = Named(r.clusters, "outbound|9080||reviews.default");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->type(), xds::Cluster::EDS);
  EXPECT_EQ(c->lb_policy(), xds::ROUND_ROBIN);
  EXPECT_EQ(c->connect_timeout().nanos(), 250000000);
  EXPECT_EQ(c->circuit_breakers().max_requests().value(), 100u);
  EXPECT_DOUBLE_EQ(c->circuit_breakers().retry_budget().budget_percent(), 25.0);
  EXPECT_EQ(c->outlier_detection().consecutive_5xx().value(), 7u);
  EXPECT_EQ(c->pool().idle_timeout().seconds(), 20);
  EXPECT_EQ(c->pool().max_requests_per_connection(), 1u);
  EXPECT_EQ(c->pool().max_connection_duration().seconds(), 60);

  const xds::Route& fallback = Host(r, "outbound", "reviews.default:9080")->routes(4);
  EXPECT_EQ(fallback.route().timeout().seconds(), 2);
  EXPECT_EQ(fallback.route().retry_policy().num_retries().value(), 3u);
  EXPECT_EQ(fallback.route().retry_policy().per_try_timeout().nanos(), 500000000);
  ASSERT_EQ(fallback.route().retry_policy().retry_on_size(), 2);

  // The rate limit is applied by reviews' own sidecar, on its inbound route.
  node_.set_id("reviews-v1-0");
  NodeResources own = Translate(policy_, registry_, node_);
  const xds::RouteConfiguration* inbound = Named(own.routes, "inbound");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->virtual_hosts(0).routes(0).rate_limit().requests_per_second(), 50u);
  EXPECT_TRUE(inbound->virtual_hosts(0).routes(0).rate_limit().per_principal());
}

TEST_F(TranslatorTest, EndpointsFromTheRegistry) {
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::ClusterLoadAssignment* all = Assignment(r, "outbound|9080||reviews.default");
  ASSERT_NE(all, nullptr);
  ASSERT_EQ(all->endpoints_size(), 3);
  EXPECT_EQ(all->endpoints(0).address(), "10.0.1.1:15006");
  EXPECT_EQ(all->endpoints(0).health(), xds::Endpoint::HEALTHY);
  EXPECT_EQ(all->endpoints(1).address(), "10.0.1.2:15006");
  EXPECT_EQ(all->endpoints(2).address(), "10.0.2.1:15006");
  // Without workload certificates no endpoint presents an identity (MeshMtls... below).
  EXPECT_EQ(all->endpoints(0).identity(), "");
  EXPECT_FALSE(all->endpoints(0).plaintext());
  const xds::ClusterLoadAssignment* v2 = Assignment(r, "outbound|9080|version=v2|reviews.default");
  ASSERT_NE(v2, nullptr);
  ASSERT_EQ(v2->endpoints_size(), 1);
  EXPECT_EQ(v2->endpoints(0).address(), "10.0.2.1:15006");
  // Every outbound cluster has its assignment; every route's cluster exists.
  for (const xds::Cluster& c : r.clusters) {
    if (c.type() == xds::Cluster::EDS) {
      EXPECT_NE(Assignment(r, c.name()), nullptr) << c.name();
    }
  }
}

TEST_F(TranslatorTest, ServiceAccountsOfAServiceBoundItsMembers) {
  // reviews admits only its own service account: a workload of another one that registers under
  // the name, or carries a label its selector would match, is no endpoint of it.
  policy_.services[0].mutable_spec()->add_service_accounts("reviews");
  (*policy_.services[0].mutable_spec()->mutable_selector())["app"] = "reviews";
  registry::Workload impostor = MakeWorkload("reviews-x", "reviews", "10.0.9.1");
  impostor.service_account = "intruder";
  registry::Workload labelled = MakeWorkload("other-0", "other", "10.0.9.2", {{"app", "reviews"}});
  labelled.service_account = "intruder";
  registry::Workload admitted = MakeWorkload("other-1", "other", "10.0.9.3", {{"app", "reviews"}});
  admitted.service_account = "reviews";
  registry_.workloads.push_back(admitted);
  registry_.workloads.push_back(labelled);
  registry_.workloads.push_back(impostor);
  std::sort(registry_.workloads.begin(), registry_.workloads.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::ClusterLoadAssignment* all = Assignment(r, "outbound|9080||reviews.default");
  ASSERT_NE(all, nullptr);
  std::vector<std::string> addresses;
  for (const auto& e : all->endpoints()) addresses.push_back(e.address());
  EXPECT_EQ(addresses, (std::vector<std::string>{"10.0.1.1:15006", "10.0.1.2:15006",
                                                 "10.0.2.1:15006", "10.0.9.3:15006"}));
}

TEST_F(TranslatorTest, UnreadyWorkloadsLeaveTheEndpointsButNotTheClusters) {
  const NodeResources before = Translate(policy_, registry_, node_);
  registry_.workloads[2].ready = false;  // reviews-v1-1 drains
  const NodeResources after = Translate(policy_, registry_, node_);
  auto addresses = [](const NodeResources& r, const std::string& cluster) {
    std::vector<std::string> out;
    const xds::ClusterLoadAssignment* assignment = Assignment(r, cluster);
    if (assignment == nullptr) return out;
    for (const xds::Endpoint& e : assignment->endpoints()) {
      EXPECT_EQ(e.health(), xds::Endpoint::HEALTHY) << e.address();
      out.push_back(e.address());
    }
    return out;
  };
  // Gone from every assignment that listed it, so no caller's load balancer can pick it, not
  // even in panic mode (which would spread load over unhealthy hosts too).
  EXPECT_EQ(addresses(after, "outbound|9080||reviews.default"),
            (std::vector<std::string>{"10.0.1.1:15006", "10.0.2.1:15006"}));
  EXPECT_EQ(addresses(after, "outbound|9080|version=v1|reviews.default"),
            std::vector<std::string>{"10.0.1.1:15006"});
  // Its service's clusters stay as they were: callers keep their pools to the other members.
  EXPECT_EQ(TypeVersion(after.clusters), TypeVersion(before.clusters));
  // Its own sidecar keeps its whole configuration (its app's outbound calls still need it).
  xds::Node self;
  self.set_id("reviews-v1-1");
  const NodeResources own = Translate(policy_, registry_, self);
  registry_.workloads[2].ready = true;
  EXPECT_EQ(TypeVersion(own.listeners), TypeVersion(Translate(policy_, registry_, self).listeners));
  EXPECT_EQ(TypeVersion(own.routes), TypeVersion(Translate(policy_, registry_, self).routes));
  // Ready again: back where it was.
  EXPECT_EQ(Bytes(Translate(policy_, registry_, node_)), Bytes(before));
}

TEST_F(TranslatorTest, ServicesKnownOnlyFromTheRegistry) {
  registry_.workloads.push_back(MakeWorkload("ratings-0", "ratings", "10.0.3.1"));
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_NE(Host(r, "outbound", "ratings.default:9080"), nullptr);
  EXPECT_NE(Named(r.clusters, "outbound|9080||ratings.default"), nullptr);
}

TEST_F(TranslatorTest, ScopeToDependencies) {
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads.push_back(MakeWorkload("ratings-0", "ratings", "10.0.3.1"));
  NodeResources none = Translate(policy_, registry_, node_);
  EXPECT_EQ(Host(none, "outbound", "reviews.default:9080"), nullptr);
  EXPECT_EQ(Host(none, "outbound", "ratings.default:9080"), nullptr);
  EXPECT_NE(Host(none, "outbound", "frontend.default:8080"), nullptr);  // its own service

  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  NodeResources some = Translate(policy_, registry_, node_);
  EXPECT_NE(Host(some, "outbound", "reviews.default:9080"), nullptr);
  EXPECT_EQ(Host(some, "outbound", "ratings.default:9080"), nullptr);
  EXPECT_EQ(Named(some.clusters, "outbound|9080||ratings.default"), nullptr);
  EXPECT_LT(some.clusters.size(), Translate(policy_, registry_, node_).clusters.size() + 1);
}

TEST_F(TranslatorTest, DeterministicWhateverTheInputOrder) {
  const NodeResources first = Translate(policy_, registry_, node_);
  const std::string first_bytes = Bytes(first);
  std::mt19937 shuffle(42);
  for (int i = 0; i < 5; ++i) {
    policy::PolicySnapshot shuffled = policy_;
    std::shuffle(shuffled.services.begin(), shuffled.services.end(), shuffle);
    std::shuffle(shuffled.http_routes.begin(), shuffled.http_routes.end(), shuffle);
    EXPECT_EQ(Bytes(Translate(shuffled, registry_, node_)), first_bytes);
  }
  EXPECT_EQ(TypeVersion(first.clusters),
            TypeVersion(Translate(policy_, registry_, node_).clusters));
  // Each list is ordered by name.
  for (size_t i = 1; i < first.clusters.size(); ++i) {
    EXPECT_LT(first.clusters[i - 1].name(), first.clusters[i].name());
  }
}

TEST_F(TranslatorTest, VersionsFollowContent) {
  const NodeResources before = Translate(policy_, registry_, node_);
  registry_.workloads[3].ready = false;  // reviews-v2-0 stops being ready
  const NodeResources after = Translate(policy_, registry_, node_);
  EXPECT_EQ(TypeVersion(before.clusters), TypeVersion(after.clusters));
  EXPECT_EQ(TypeVersion(before.routes), TypeVersion(after.routes));
  EXPECT_NE(TypeVersion(before.endpoints), TypeVersion(after.endpoints));
  EXPECT_EQ(ResourceVersion(before.listeners[0]).size(), 16u);
  EXPECT_NE(ResourceVersion(before.listeners[0]), ResourceVersion(before.listeners[1]));
}

TEST_F(TranslatorTest, CacheGivesTheSameResultAsTranslatingAlone) {
  TranslationCache cache;
  policy_.revision = 7;
  registry_.version = 3;
  for (const auto& w : registry_.workloads) {
    xds::Node node;
    node.set_id(w.id);
    EXPECT_EQ(Bytes(Translate(policy_, registry_, node, {}, &cache)),
              Bytes(Translate(policy_, registry_, node)))
        << w.id;
  }
  TranslationCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, registry_.workloads.size() - 1);

  // New inputs (a new revision) are never answered from old entries.
  policy_.revision = 8;
  policy_.http_routes.clear();
  EXPECT_EQ(Bytes(Translate(policy_, registry_, node_, {}, &cache)),
            Bytes(Translate(policy_, registry_, node_)));
  EXPECT_EQ(cache.stats().misses, 2u);

  // Scoped nodes share entries only with nodes that reach the same services.
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  policy_.revision = 9;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  for (const auto& w : registry_.workloads) {
    xds::Node node;
    node.set_id(w.id);
    EXPECT_EQ(Bytes(Translate(policy_, registry_, node, {}, &cache)),
              Bytes(Translate(policy_, registry_, node)))
        << w.id;
  }
  // frontend (frontend + reviews) and the reviews workloads (reviews only): two entries.
  EXPECT_EQ(cache.stats().misses, 4u);
}

// MeshTranslator's two parts together are exactly Translate(), and its keys group nodes whose
// outbound parts are identical.
TEST_F(TranslatorTest, MeshTranslatorPartsMakeTheWholeTranslation) {
  auto check = [&](absl::string_view what) {
    auto policy = std::make_shared<const PolicySnapshot>(policy_);
    auto registry = std::make_shared<const RegistrySnapshot>(registry_);
    MeshTranslator mesh(policy, registry, {});
    std::map<std::string, std::string> outbound_by_key;
    for (const auto& w : registry_.workloads) {
      xds::Node node;
      node.set_id(w.id);
      NodeResources outbound = mesh.TranslateOutbound(node);
      NodeResources local = mesh.TranslateLocal(node);
      EXPECT_TRUE(outbound.listeners.empty()) << what;
      for (const auto& c : local.clusters) {
        EXPECT_TRUE(absl::StartsWith(c.name(), "inbound|"));
      }
      const std::string shared = Bytes(outbound);
      auto [it, inserted] = outbound_by_key.emplace(mesh.OutboundKey(node), shared);
      if (!inserted) {
        EXPECT_EQ(it->second, shared) << what << " " << w.id;
      }
      // Merge the parts the way a caller does and compare with the one-shot translation.
      NodeResources merged = std::move(local);
      for (auto& r : outbound.routes) merged.routes.push_back(std::move(r));
      for (auto& c : outbound.clusters) merged.clusters.push_back(std::move(c));
      for (auto& e : outbound.endpoints) merged.endpoints.push_back(std::move(e));
      auto by_name = [](const auto& a, const auto& b) { return a.name() < b.name(); };
      std::sort(merged.routes.begin(), merged.routes.end(), by_name);
      std::sort(merged.clusters.begin(), merged.clusters.end(), by_name);
      EXPECT_EQ(Bytes(merged), Bytes(Translate(*policy, *registry, node))) << what << " " << w.id;
    }
    return outbound_by_key.size();
  };
  EXPECT_EQ(check("unscoped"), 1u);
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  // frontend (frontend + reviews) and the reviews workloads (reviews only).
  EXPECT_EQ(check("scoped"), 2u);
}

TEST_F(TranslatorTest, MeshMtlsWithWorkloadCertificates) {
  // Without a workload certificate the node gets plaintext, whatever the mode.
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_tls());
  EXPECT_FALSE(Named(r.clusters, "outbound|9080||reviews.default")->has_tls());
  EXPECT_TRUE(r.secrets.empty());

  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  registry_.workloads[3].service_account = "reviews-canary";
  TranslateOptions options;
  options.trust_bundle_pem = "-----BEGIN CERTIFICATE-----\nroots\n-----END CERTIFICATE-----\n";
  r = Translate(policy_, registry_, node_, options);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_TRUE(inbound->has_tls());
  EXPECT_EQ(inbound->tls().mode(), xds::DownstreamTls::PERMISSIVE);
  EXPECT_TRUE(inbound->tls().workload_certificate());
  EXPECT_TRUE(inbound->tls().secret_name().empty());
  EXPECT_EQ(inbound->tls().trust_bundle_secret(), kTrustBundleSecret);
  // The control plane never emits per-connection peer lists (authorization instead).
  EXPECT_EQ(inbound->tls().allowed_peer_ids_size(), 0);
  ASSERT_EQ(r.secrets.size(), 1u);
  EXPECT_EQ(r.secrets[0].name(), kTrustBundleSecret);
  EXPECT_EQ(r.secrets[0].trust_bundle_pem(), options.trust_bundle_pem);
  EXPECT_TRUE(r.secrets[0].private_key_pem().empty());

  // Outbound: the workload certificate, expecting exactly the members' identities.
  const xds::Cluster* all = Named(r.clusters, "outbound|9080||reviews.default");
  ASSERT_TRUE(all->tls().enabled());
  // Sidecar to sidecar over mTLS, the HTTP/1.1 service's requests travel over HTTP/2.
  EXPECT_EQ(all->protocol(), xds::UPSTREAM_MESH_HTTP2);
  EXPECT_TRUE(all->tls().workload_certificate());
  EXPECT_EQ(all->tls().trust_bundle_secret(), kTrustBundleSecret);
  EXPECT_EQ(std::vector<std::string>(all->tls().expected_peer_ids().begin(),
                                     all->tls().expected_peer_ids().end()),
            (std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/reviews",
                                      "spiffe://cluster.local/ns/default/sa/reviews-canary"}));
  const xds::Cluster* v1 = Named(r.clusters, "outbound|9080|version=v1|reviews.default");
  ASSERT_EQ(v1->tls().expected_peer_ids_size(), 1);
  EXPECT_EQ(v1->tls().expected_peer_ids(0), "spiffe://cluster.local/ns/default/sa/reviews");

  // Each endpoint must present exactly its own identity.
  auto endpoint_tls = [&](absl::string_view cluster) {
    std::vector<std::pair<std::string, std::string>> out;  // (address, identity or "plaintext")
    for (const xds::Endpoint& e : Assignment(r, cluster)->endpoints()) {
      out.emplace_back(e.address(), e.plaintext() ? "plaintext" : e.identity());
    }
    return out;
  };
  using EndpointTls = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(
      endpoint_tls("outbound|9080||reviews.default"),
      (EndpointTls{{"10.0.1.1:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                   {"10.0.1.2:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                   {"10.0.2.1:15006", "spiffe://cluster.local/ns/default/sa/reviews-canary"}}));

  // Automatic mTLS per endpoint: a member without a certificate cannot answer mTLS, so in
  // PERMISSIVE it alone is reached in plaintext while the cluster keeps mTLS for the others.
  registry_.workloads[2].workload_certificate = false;
  r = Translate(policy_, registry_, node_, options);
  const xds::Cluster* mixed = Named(r.clusters, "outbound|9080|version=v1|reviews.default");
  ASSERT_TRUE(mixed->tls().enabled());
  EXPECT_TRUE(mixed->tls().workload_certificate());
  EXPECT_EQ(endpoint_tls("outbound|9080|version=v1|reviews.default"),
            (EndpointTls{{"10.0.1.1:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                         {"10.0.1.2:15006", "plaintext"}}));
  EXPECT_EQ(endpoint_tls("outbound|9080||reviews.default")[1],
            (std::pair<std::string, std::string>{"10.0.1.2:15006", "plaintext"}));
  EXPECT_EQ(
      endpoint_tls("outbound|9080|version=v2|reviews.default"),
      (EndpointTls{{"10.0.2.1:15006", "spiffe://cluster.local/ns/default/sa/reviews-canary"}}));
  // No member with a certificate: plaintext as a whole, nothing marked per endpoint.
  registry_.workloads[1].workload_certificate = false;
  r = Translate(policy_, registry_, node_, options);
  EXPECT_FALSE(Named(r.clusters, "outbound|9080|version=v1|reviews.default")->has_tls());
  EXPECT_EQ(endpoint_tls("outbound|9080|version=v1|reviews.default"),
            (EndpointTls{{"10.0.1.1:15006", ""}, {"10.0.1.2:15006", ""}}));
  // STRICT keeps mTLS to every member (a member refuses plaintext anyway), each with the
  // identity its service account gives it.
  policy_.traffic_policies[0].mutable_spec()->set_mtls("STRICT");
  r = Translate(policy_, registry_, node_, options);
  EXPECT_TRUE(Named(r.clusters, "outbound|9080|version=v1|reviews.default")->tls().enabled());
  EXPECT_EQ(endpoint_tls("outbound|9080|version=v1|reviews.default"),
            (EndpointTls{{"10.0.1.1:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                         {"10.0.1.2:15006", "spiffe://cluster.local/ns/default/sa/reviews"}}));
  // A subset without members (none has version v3) expects any identity of the trust domain: a
  // narrower pattern cannot be expressed, and an id pattern the sidecar cannot compile would make
  // it refuse the whole configuration.
  (*policy_.http_routes[0]
        .mutable_spec()
        ->mutable_rules(0)
        ->mutable_backends(0)
        ->mutable_subset())["version"] = "v3";
  r = Translate(policy_, registry_, node_, options);
  const xds::Cluster* empty = Named(r.clusters, "outbound|9080|version=v3|reviews.default");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(std::vector<std::string>(empty->tls().expected_peer_ids().begin(),
                                     empty->tls().expected_peer_ids().end()),
            (std::vector<std::string>{"spiffe://cluster.local/*"}));

  // DISABLE: plaintext both ways.
  pb::MeshConfig mesh;
  mesh.mutable_spec()->set_mtls("DISABLE");
  policy_.mesh_config = mesh;
  policy_.traffic_policies[0].mutable_spec()->clear_mtls();
  r = Translate(policy_, registry_, node_, options);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_tls());
  EXPECT_FALSE(Named(r.clusters, "outbound|9080||reviews.default")->has_tls());
  EXPECT_EQ(Named(r.clusters, "outbound|9080||reviews.default")->protocol(), xds::UPSTREAM_HTTP1);
}

TEST_F(TranslatorTest, AuthorizationPoliciesOfTheWorkload) {
  // frontend serves Service port 8080 on app port 8081, plus an opaque TCP port.
  policy_.services[1] = Parse<pb::Service>(R"(
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, targetPort: 8081}, {name: db, port: 5432, protocol: TCP}]
)");
  registry_.workloads[0].ports = {8081, 5432};
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: b-shop-reads}
spec:
  target: frontend
  rules:
  - from: [{namespaces: [shop]}, {principals: ["spiffe://cluster.local/ns/ops/sa/*"]}]
    to: [{ports: [8080], methods: [GET]}, {ports: [5432]}]
)"));
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: a-no-admin}
spec:
  action: DENY
  rules:
  - to: [{paths: ["/admin/*"]}]
)"));
  // Not this workload's: another target, another namespace.
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: reviews-only}
spec:
  target: reviews
  rules: [{}]
)"));
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  rules: [{}]
)"));
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_EQ(inbound->authorization().policies_size(), 2);
  const xds::AuthorizationPolicy& deny = inbound->authorization().policies(0);
  EXPECT_EQ(deny.name(), "default/a-no-admin");
  EXPECT_EQ(deny.action(), xds::AuthorizationPolicy::DENY);
  ASSERT_EQ(deny.rules_size(), 1);
  EXPECT_EQ(deny.rules(0).paths(0), "/admin/*");
  EXPECT_EQ(deny.rules(0).principals_size(), 0);
  const xds::AuthorizationPolicy& allow = inbound->authorization().policies(1);
  EXPECT_EQ(allow.name(), "default/b-shop-reads");
  EXPECT_EQ(allow.action(), xds::AuthorizationPolicy::ALLOW);
  // 2 sources x 2 destinations; Service port 8080 stands for app port 8081 as well.
  ASSERT_EQ(allow.rules_size(), 4);
  EXPECT_EQ(allow.rules(0).namespaces(0), "shop");
  EXPECT_EQ(std::vector<uint32_t>(allow.rules(0).ports().begin(), allow.rules(0).ports().end()),
            (std::vector<uint32_t>{8080, 8081}));
  EXPECT_EQ(allow.rules(0).methods(0), "GET");
  EXPECT_EQ(allow.rules(1).ports(0), 5432u);
  EXPECT_EQ(allow.rules(1).methods_size(), 0);
  EXPECT_EQ(allow.rules(3).principals(0), "spiffe://cluster.local/ns/ops/sa/*");
  // The destination ports authorization sees: the app port each host routes to, and the TCP
  // fallback's (the lowest Service port's).
  EXPECT_EQ(inbound->tcp_cluster(), "inbound|5432");
  EXPECT_EQ(inbound->destination_port(), 5432u);
  EXPECT_EQ(Host(r, "inbound", "inbound:8080")->destination_port(), 8081u);

  // A workload without policies gets no authorization.
  node_.set_id("reviews-v1-0");
  r = Translate(policy_, registry_, node_);
  ASSERT_EQ(Named(r.listeners, "inbound")->authorization().policies_size(), 2);
  EXPECT_EQ(Named(r.listeners, "inbound")->authorization().policies(1).name(),
            "default/reviews-only");
  policy_.authorization_policies.clear();
  r = Translate(policy_, registry_, node_);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_authorization());
}

// Traffic capture (label meshlet.io/capture: iptables): listeners that route by original
// destination. The fixture's Services get addresses, and a database with an opaque port joins.
class CaptureTest : public TranslatorTest {
 protected:
  void SetUp() override {
    TranslatorTest::SetUp();
    policy_.services[0].mutable_status()->add_addresses("240.240.0.1");  // reviews, allocated
    policy_.services[0].mutable_status()->add_addresses("fd00:240::1");
    policy_.services[1].mutable_status()->add_addresses("240.240.0.2");  // frontend
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: db}
spec:
  addresses: [10.96.0.20, "fd00::20"]
  ports:
  - {name: mysql, port: 3306, targetPort: 3307, protocol: TCP}
  - {name: admin, port: 8080}
)"));
    // (Ids in order: the registry snapshot is sorted by id.)
    registry::Workload db = MakeWorkload("store-db-0", "db", "10.0.4.1");
    db.ports = {3307, 8080};
    registry_.workloads.push_back(db);
  }

  static void Capture(registry::Workload& w) {
    w.labels[registry::kCaptureLabel] = registry::kCaptureIptables;
    w.capture = true;
  }

  std::vector<std::string> DestinationSummary(const xds::Listener& listener) {
    std::vector<std::string> out;
    for (const xds::ListenerDestination& d : listener.destinations()) {
      out.push_back(absl::StrCat(d.name(), " [", absl::StrJoin(d.addresses(), ","), "]:", d.port(),
                                 " ", xds::ListenerProtocol_Name(d.protocol()), " ",
                                 d.route_config_name(), d.tcp_cluster(), " ",
                                 d.destination_port()));
    }
    return out;
  }
};

TEST_F(CaptureTest, WorkloadCaptureComesFromItsNodeLabel) {
  xds::Node node;
  node.set_id("x");
  EXPECT_FALSE(registry::WorkloadFromNode(node).capture);
  (*node.mutable_labels())[registry::kCaptureLabel] = "iptables";
  EXPECT_TRUE(registry::WorkloadFromNode(node).capture);
  (*node.mutable_labels())[registry::kCaptureLabel] = "nftables";
  EXPECT_FALSE(registry::WorkloadFromNode(node).capture);
}

TEST_F(CaptureTest, OutboundListenerMatchesEachServicePortByItsAddresses) {
  Capture(registry_.workloads[0]);  // frontend-0
  TranslateOptions loopback;
  loopback.listen_host = "127.0.0.1";  // captured traffic arrives on every address all the same
  NodeResources r = Translate(policy_, registry_, node_, loopback);
  const xds::Listener* outbound = Named(r.listeners, "outbound");
  ASSERT_NE(outbound, nullptr);
  // Loopback only, where the packet filter redirects the app's connections: a peer that reaches
  // the pod's port 15001 (not captured inbound, by annotation) finds nothing there.
  EXPECT_EQ(outbound->address(), "127.0.0.1:15001");
  EXPECT_TRUE(outbound->use_original_destination());
  // Connections that were not redirected: as without capture.
  EXPECT_EQ(outbound->protocol(), xds::PROTOCOL_HTTP);
  EXPECT_EQ(outbound->route_config_name(), "outbound");
  EXPECT_EQ(
      DestinationSummary(*outbound),
      (std::vector<std::string>{
          "db.default:3306 [10.96.0.20,fd00::20]:3306 PROTOCOL_TCP outbound|3306||db.default 0",
          "db.default:8080 [10.96.0.20,fd00::20]:8080 PROTOCOL_HTTP outbound 0",
          "frontend.default:8080 [240.240.0.2]:8080 PROTOCOL_HTTP outbound 0",
          "reviews.default:9080 [240.240.0.1,fd00:240::1]:9080 PROTOCOL_HTTP outbound 0",
      }));
  EXPECT_EQ(outbound->unmatched_destination(), xds::PASSTHROUGH);  // ALLOW_ANY by default
  EXPECT_EQ(outbound->passthrough_host(), "");
  // IPv6 connections of a pod with IPv6 land on the IPv6 loopback address of the same port.
  EXPECT_EQ(std::vector<std::string>(outbound->additional_addresses().begin(),
                                     outbound->additional_addresses().end()),
            std::vector<std::string>{"[::1]:15001"});
  EXPECT_FALSE(outbound->has_passthrough_connect_timeout());  // the sidecar's 1s
  // The opaque port's cluster exists (the destination names it), and no TCP warning.
  const xds::Cluster* mysql = Named(r.clusters, "outbound|3306||db.default");
  ASSERT_NE(mysql, nullptr);
  EXPECT_EQ(mysql->type(), xds::Cluster::EDS);
  for (const std::string& w : r.warnings) EXPECT_EQ(w.find("TCP"), std::string::npos) << w;
  // The virtual hosts answer to the addresses, bare on the first HTTP port, with the port always.
  const xds::VirtualHost* reviews = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(reviews, nullptr);
  std::vector<std::string> domains(reviews->domains().begin(), reviews->domains().end());
  for (const char* d : {"240.240.0.1", "240.240.0.1:9080", "[fd00:240::1]", "[fd00:240::1]:9080",
                        "reviews", "reviews.default.svc.cluster.local:9080"}) {
    EXPECT_NE(std::find(domains.begin(), domains.end(), d), domains.end()) << d;
  }
  const xds::VirtualHost* admin = Host(r, "outbound", "db.default:8080");
  ASSERT_NE(admin, nullptr);
  domains.assign(admin->domains().begin(), admin->domains().end());
  EXPECT_NE(std::find(domains.begin(), domains.end(), "10.96.0.20:8080"), domains.end());
  EXPECT_NE(std::find(domains.begin(), domains.end(), "[fd00::20]"), domains.end());

  // REGISTRY_ONLY: unknown destinations are refused.
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_outbound_traffic_policy("REGISTRY_ONLY");
  policy_.mesh_config = mesh;
  EXPECT_EQ(
      Named(Translate(policy_, registry_, node_).listeners, "outbound")->unmatched_destination(),
      xds::REFUSE);

  // The mesh's connect timeout bounds passthrough connections too.
  mesh.mutable_spec()->set_outbound_traffic_policy("ALLOW_ANY");
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_connect()->set_seconds(3);
  policy_.mesh_config = mesh;
  NodeResources with_timeout = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(with_timeout.listeners, "outbound")->passthrough_connect_timeout().seconds(), 3);
  EXPECT_EQ(Named(with_timeout.listeners, "inbound")->passthrough_connect_timeout().seconds(), 3);
}

TEST_F(CaptureTest, OnlyReachableServicesWithAddressesAreDestinations) {
  Capture(registry_.workloads[0]);
  registry_.workloads.push_back(MakeWorkload("ratings-0", "ratings", "10.0.3.1"));  // no address
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "db, ratings";
  NodeResources r = Translate(policy_, registry_, node_);
  std::vector<std::string> names;
  for (const auto& d : Named(r.listeners, "outbound")->destinations()) names.push_back(d.name());
  EXPECT_EQ(names, (std::vector<std::string>{"db.default:3306", "db.default:8080",
                                             "frontend.default:8080"}));
}

TEST_F(CaptureTest, InboundListenerRoutesByTheAppPortCalled) {
  Capture(registry_.workloads.back());  // store-db-0
  node_.set_id("store-db-0");
  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->address(), "0.0.0.0:15006");
  EXPECT_TRUE(inbound->use_original_destination());
  EXPECT_EQ(DestinationSummary(*inbound),
            (std::vector<std::string>{"inbound|3307 []:3307 PROTOCOL_TCP inbound|3307 3307",
                                      "inbound|8080 []:8080 PROTOCOL_HTTP inbound|8080 8080"}));
  // Other ports reach the app as they are, on loopback (the pod's address would be captured
  // again).
  EXPECT_EQ(inbound->unmatched_destination(), xds::PASSTHROUGH);
  EXPECT_EQ(inbound->passthrough_host(), "127.0.0.1");
  EXPECT_EQ(std::vector<std::string>(inbound->additional_addresses().begin(),
                                     inbound->additional_addresses().end()),
            std::vector<std::string>{"[::]:15006"});
  // mTLS as without capture; the connection-level fields as without capture too.
  EXPECT_TRUE(inbound->tls().workload_certificate());
  EXPECT_EQ(inbound->tcp_cluster(), "inbound|3307");
  EXPECT_EQ(inbound->route_config_name(), "inbound");
  ASSERT_NE(Named(r.routes, "inbound"), nullptr);
  // The HTTP port's own route table: every host to that app port.
  const xds::VirtualHost* admin = Host(r, "inbound|8080", "inbound:8080");
  ASSERT_NE(admin, nullptr);
  EXPECT_EQ(std::vector<std::string>(admin->domains().begin(), admin->domains().end()),
            std::vector<std::string>{"*"});
  EXPECT_EQ(admin->destination_port(), 8080u);
  ASSERT_EQ(admin->routes_size(), 1);
  EXPECT_EQ(admin->routes(0).route().cluster(), "inbound|8080");
  EXPECT_EQ(admin->routes(0).route().timeout().seconds(), 0);
  EXPECT_EQ(Named(r.clusters, "inbound|8080")->load_assignment().endpoints(0).address(),
            "127.0.0.1:8080");
  EXPECT_EQ(Named(r.routes, "inbound|3307"), nullptr);  // opaque: no routes
}

TEST_F(CaptureTest, CapturedMembersAreReachedOnTheirAppPorts) {
  Capture(registry_.workloads.back());  // store-db-0 listens on 3307 and 8080
  Capture(registry_.workloads[1]);      // reviews-v1-0; reviews-v1-1 and v2-0 are not captured
  NodeResources r = Translate(policy_, registry_, node_);  // from frontend, not captured
  EXPECT_EQ(Assignment(r, "outbound|8080||db.default")->endpoints(0).address(), "10.0.4.1:8080");
  const xds::ClusterLoadAssignment* reviews = Assignment(r, "outbound|9080||reviews.default");
  ASSERT_EQ(reviews->endpoints_size(), 3);
  EXPECT_EQ(reviews->endpoints(0).address(), "10.0.1.1:9080");
  EXPECT_EQ(reviews->endpoints(1).address(), "10.0.1.2:15006");
  EXPECT_EQ(reviews->endpoints(2).address(), "10.0.2.1:15006");
  // The opaque port: the target port; its cluster is not HTTP/2 even with mesh mTLS.
  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  Capture(registry_.workloads[0]);
  r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Assignment(r, "outbound|3306||db.default")->endpoints(0).address(), "10.0.4.1:3307");
  EXPECT_TRUE(Named(r.clusters, "outbound|3306||db.default")->tls().enabled());
  EXPECT_EQ(Named(r.clusters, "outbound|3306||db.default")->protocol(), xds::UPSTREAM_HTTP1);
  EXPECT_EQ(Named(r.clusters, "outbound|8080||db.default")->protocol(), xds::UPSTREAM_MESH_HTTP2);
}

TEST_F(CaptureTest, NodesWithoutCaptureGetExactlyWhatTheyGotWithoutAddresses) {
  policy::PolicySnapshot without = policy_;
  for (pb::Service& s : without.services) {
    s.clear_status();
    s.mutable_spec()->clear_addresses();
  }
  for (const registry::Workload& w : registry_.workloads) {
    xds::Node node;
    node.set_id(w.id);
    const NodeResources with = Translate(policy_, registry_, node);
    EXPECT_EQ(Bytes(with), Bytes(Translate(without, registry_, node))) << w.id;
    for (const xds::Listener& l : with.listeners) {
      EXPECT_FALSE(l.use_original_destination());
      EXPECT_EQ(l.destinations_size(), 0);
    }
  }
}

TEST_F(CaptureTest, CapturedAndOtherNodesShareNoOutboundPart) {
  Capture(registry_.workloads[0]);
  policy_.revision = 4;
  registry_.version = 2;
  auto policy = std::make_shared<const PolicySnapshot>(policy_);
  auto registry = std::make_shared<const RegistrySnapshot>(registry_);
  MeshTranslator mesh(policy, registry, {});
  xds::Node captured, plain;
  captured.set_id("frontend-0");
  plain.set_id("reviews-v1-0");
  EXPECT_NE(mesh.OutboundKey(captured), mesh.OutboundKey(plain));
  TranslationCache cache;
  for (const xds::Node& node : {plain, captured, plain}) {
    EXPECT_EQ(Bytes(Translate(policy_, registry_, node, {}, &cache)),
              Bytes(Translate(policy_, registry_, node)))
        << node.id();
  }
  EXPECT_EQ(cache.stats().misses, 2u);
}

// Kubernetes discovery (RegistrySnapshot::kubernetes): ordinary Services are destinations, their
// ClusterIPs route captured connections, and their EndpointSlices' ready addresses are the
// members — a pod whose sidecar is connected by its registration, any other in plaintext.
class KubernetesServicesTest : public CaptureTest {
 protected:
  void SetUp() override {
    CaptureTest::SetUp();
    auto services = std::make_shared<registry::KubernetesServices>();
    registry::KubernetesService ratings;
    ratings.namespace_ = "shop";
    ratings.name = "ratings";
    ratings.cluster_ips = {"10.96.0.30"};
    ratings.ports = {{.name = "http", .port = 80, .protocol = "HTTP", .target_port = 9080},
                     {.name = "redis", .port = 6379, .protocol = "TCP", .target_port = 6379}};
    ratings.endpoints = {
        {.address = "10.1.0.5",
         .pod = "ratings-a",
         .service_account = "ratings",
         .labels = {{"app", "ratings"}, {"version", "v1"}}},
        {.address = "10.1.0.6",
         .pod = "ratings-b",
         .service_account = "ratings",
         .labels = {{"app", "ratings"}, {"version", "v2"}}},
    };
    services->services.push_back(ratings);
    // A Kubernetes Service of the same name as a Service resource: the resource's ports win.
    registry::KubernetesService reviews;
    reviews.namespace_ = "default";
    reviews.name = "reviews";
    reviews.cluster_ips = {"10.96.0.9"};
    reviews.ports = {{.name = "", .port = 9080, .protocol = "TCP", .target_port = 9080}};
    reviews.endpoints = {{.address = "10.0.1.1", .pod = "reviews-v1-0"},
                         {.address = "10.0.1.7", .pod = "reviews-plain"}};
    services->services.push_back(reviews);
    kubernetes_ = services;
    registry_.kubernetes = services;
    // ratings-b's sidecar is connected (a captured pod with a workload certificate).
    registry::Workload b = MakeWorkload("ratings-b.shop", "ratings", "10.1.0.6");
    b.namespace_ = "shop";
    b.ports = {9080, 6379};
    b.workload_certificate = true;
    Capture(b);
    registry_.workloads.push_back(b);
    std::sort(registry_.workloads.begin(), registry_.workloads.end(),
              [](const auto& x, const auto& y) { return x.id < y.id; });
    for (registry::Workload& w : registry_.workloads) {
      if (w.id == "frontend-0") {
        w.workload_certificate = true;
        Capture(w);
      }
    }
  }
  static bool Has(const std::vector<std::string>& list, absl::string_view item) {
    return std::find(list.begin(), list.end(), item) != list.end();
  }
  std::shared_ptr<registry::KubernetesServices> kubernetes_;
};

TEST_F(KubernetesServicesTest, AServiceAndItsEndpointSlicesAreAMeshDestination) {
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Cluster* http = Named(r.clusters, "outbound|80||ratings.shop");
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->type(), xds::Cluster::EDS);
  const xds::ClusterLoadAssignment* a = Assignment(r, "outbound|80||ratings.shop");
  ASSERT_EQ(a->endpoints_size(), 2);
  // The pod without a sidecar: its target port, in plaintext, its Pod's labels kept.
  EXPECT_EQ(a->endpoints(0).address(), "10.1.0.5:9080");
  EXPECT_TRUE(a->endpoints(0).plaintext());
  EXPECT_EQ(a->endpoints(0).labels().at("version"), "v1");
  // The pod with a connected sidecar: mTLS to its own identity.
  EXPECT_EQ(a->endpoints(1).address(), "10.1.0.6:9080");
  EXPECT_FALSE(a->endpoints(1).plaintext());
  EXPECT_EQ(a->endpoints(1).identity(), "spiffe://cluster.local/ns/shop/sa/ratings");
  EXPECT_TRUE(http->tls().enabled());
  // Host names of the Service, and the ClusterIP for captured connections.
  const xds::VirtualHost* vhost = Host(r, "outbound", "ratings.shop:80");
  ASSERT_NE(vhost, nullptr);
  std::vector<std::string> domains(vhost->domains().begin(), vhost->domains().end());
  for (const char* domain : {"ratings.shop.svc.cluster.local", "10.96.0.30", "10.96.0.30:80"}) {
    EXPECT_TRUE(Has(domains, domain)) << domain;
  }
  std::vector<std::string> destinations = DestinationSummary(*Named(r.listeners, "outbound"));
  EXPECT_TRUE(Has(destinations, "ratings.shop:80 [10.96.0.30]:80 PROTOCOL_HTTP outbound 0"))
      << absl::StrJoin(destinations, "\n");
  EXPECT_TRUE(Has(destinations,
                  "ratings.shop:6379 [10.96.0.30]:6379 PROTOCOL_TCP outbound|6379||ratings.shop 0"))
      << absl::StrJoin(destinations, "\n");
}

TEST_F(KubernetesServicesTest, EndpointSlicesDecideMembershipAndServiceResourcesTheirPorts) {
  NodeResources r = Translate(policy_, registry_, node_);
  // reviews: the Service resource's HTTP port, the Kubernetes ClusterIP added to its addresses,
  // and only the EndpointSlice's addresses as members: reviews-v1-0 through its registration,
  // reviews-plain without a sidecar; reviews-v1-1 and v2-0 (registered, not in the slice) left
  // out.
  const xds::ClusterLoadAssignment* reviews = Assignment(r, "outbound|9080||reviews.default");
  ASSERT_EQ(reviews->endpoints_size(), 2);
  EXPECT_EQ(reviews->endpoints(0).address(), "10.0.1.1:15006");
  EXPECT_EQ(reviews->endpoints(1).address(), "10.0.1.7:9080");
  EXPECT_NE(Host(r, "outbound", "reviews.default:9080"), nullptr);
  std::vector<std::string> destinations = DestinationSummary(*Named(r.listeners, "outbound"));
  EXPECT_TRUE(Has(destinations,
                  "reviews.default:9080 [10.96.0.9,240.240.0.1,fd00:240::1]:9080 PROTOCOL_HTTP "
                  "outbound 0"))
      << absl::StrJoin(destinations, "\n");
  // Subsets select by the Pods' labels.
  policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: ratings, namespace: shop}
spec:
  target: ratings
  rules:
  - backends: [{service: ratings, subset: {version: v2}}]
)"));
  r = Translate(policy_, registry_, node_);
  const xds::ClusterLoadAssignment* v2 = Assignment(r, "outbound|80|version=v2|ratings.shop");
  ASSERT_NE(v2, nullptr);
  ASSERT_EQ(v2->endpoints_size(), 1);
  EXPECT_EQ(v2->endpoints(0).address(), "10.1.0.6:9080");

  // An endpoint removed from the slices leaves the configuration; a Service removed leaves it
  // whole.
  kubernetes_->services[0].endpoints.erase(kubernetes_->services[0].endpoints.begin());
  r = Translate(policy_, registry_, node_);
  ASSERT_EQ(Assignment(r, "outbound|80||ratings.shop")->endpoints_size(), 1);
  kubernetes_->services.erase(kubernetes_->services.begin());
  r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(r.clusters, "outbound|80||ratings.shop"), nullptr);
  EXPECT_EQ(Host(r, "outbound", "ratings.shop:80"), nullptr);
}

TEST_F(KubernetesServicesTest, APortDeclaringNoProtocolIsDetected) {
  // ratings' port 80 declares nothing (no appProtocol, no name prefix): AUTO.
  kubernetes_->services[0].ports[0].name = "web";
  kubernetes_->services[0].ports[0].protocol = "AUTO";
  NodeResources r = Translate(policy_, registry_, node_);  // frontend-0, captured
  // Routed as HTTP by Host, like an HTTP port...
  ASSERT_NE(Host(r, "outbound", "ratings.shop:80"), nullptr);
  ASSERT_NE(Named(r.clusters, "outbound|80||ratings.shop"), nullptr);
  // ...and captured connections to the ClusterIP detected: what is not HTTP goes as bytes to
  // the TCP twin, which has the same endpoints and is never HTTP/2 over mTLS.
  std::vector<std::string> destinations = DestinationSummary(*Named(r.listeners, "outbound"));
  EXPECT_TRUE(
      Has(destinations,
          "ratings.shop:80 [10.96.0.30]:80 PROTOCOL_AUTO outboundoutbound|80|tcp|ratings.shop"
          " 0"))
      << absl::StrJoin(destinations, "\n");
  const xds::Cluster* twin = Named(r.clusters, "outbound|80|tcp|ratings.shop");
  ASSERT_NE(twin, nullptr);
  EXPECT_EQ(twin->protocol(), xds::UPSTREAM_HTTP1);
  EXPECT_EQ(Named(r.clusters, "outbound|80||ratings.shop")->protocol(), xds::UPSTREAM_MESH_HTTP2);
  ASSERT_EQ(Assignment(r, "outbound|80|tcp|ratings.shop")->endpoints_size(), 2);
  EXPECT_EQ(Assignment(r, "outbound|80|tcp|ratings.shop")->endpoints(1).address(), "10.1.0.6:9080");

  // The member's own inbound side: connections to the app port detected too, what is not HTTP
  // proxied to the app as bytes.
  node_.set_id("ratings-b.shop");
  r = Translate(policy_, registry_, node_);
  bool found = false;
  for (const xds::ListenerDestination& d : Named(r.listeners, "inbound")->destinations()) {
    if (d.port() != 9080) continue;
    found = true;
    EXPECT_EQ(d.protocol(), xds::PROTOCOL_AUTO);
    EXPECT_EQ(d.route_config_name(), "inbound|9080");
    EXPECT_EQ(d.tcp_cluster(), "inbound|9080");
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace meshlet::controlplane::translate
