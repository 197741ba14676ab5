// Clusters and their endpoints (clusters.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

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
  EXPECT_FALSE(c->overload().disabled());
  ASSERT_TRUE(c->overload().has_ejection_time());
  EXPECT_EQ(c->overload().ejection_time().seconds(), 0);
  EXPECT_EQ(c->overload().max_ejection_time().seconds(), 30);
  EXPECT_EQ(c->overload().max_ejection_percent().value(), 20u);
  EXPECT_EQ(c->overload().penalty().value(), 4u);
  EXPECT_EQ(c->overload().penalty_time().seconds(), 3);
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

// A member's locality (its sidecar's Node.locality) travels on its endpoints; a TrafficPolicy's
// locality block becomes the cluster's locality_lb.
TEST_F(TranslatorTest, LocalityOnEndpointsAndLocalityBalancingFromTheTrafficPolicy) {
  for (registry::Workload& w : registry_.workloads) {
    if (w.addresses == std::vector<std::string>{"10.0.1.1"}) {
      w.locality.set_region("eu");
      w.locality.set_zone("eu-a");
      w.locality.set_node("n1");
    }
  }
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::ClusterLoadAssignment* all = Assignment(r, "outbound|9080||reviews.default");
  ASSERT_NE(all, nullptr);
  ASSERT_EQ(all->endpoints_size(), 3);
  EXPECT_EQ(all->endpoints(0).locality().zone(), "eu-a");
  EXPECT_EQ(all->endpoints(0).locality().region(), "eu");
  EXPECT_EQ(all->endpoints(0).locality().node(), "n1");
  EXPECT_FALSE(all->endpoints(1).has_locality());
  // The TrafficPolicy of the fixture sets none: balancing ignores locality.
  EXPECT_FALSE(Named(r.clusters, "outbound|9080||reviews.default")->has_locality_lb());

  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  pb::TrafficPolicySpec tp;
  tp.mutable_locality()->mutable_overprovisioning_percent()->set_value(120);
  tp.mutable_locality()->mutable_max_inflight_per_host()->set_value(16);
  tp.mutable_locality()->mutable_max_latency()->set_nanos(200000000);
  xds::Cluster on;
  ApplyTrafficPolicy(ctx, &tp, on);
  EXPECT_TRUE(on.locality_lb().enabled());
  EXPECT_EQ(on.locality_lb().overprovisioning_percent().value(), 120u);
  EXPECT_EQ(on.locality_lb().max_inflight_per_host(), 16u);
  EXPECT_EQ(on.locality_lb().max_latency().nanos(), 200000000);
  tp.mutable_locality()->mutable_enabled()->set_value(false);
  xds::Cluster off;
  ApplyTrafficPolicy(ctx, &tp, off);
  EXPECT_FALSE(off.has_locality_lb());
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
  EXPECT_EQ(Content(after.clusters), Content(before.clusters));
  // Its own sidecar keeps its whole configuration (its app's outbound calls still need it).
  xds::Node self;
  self.set_id("reviews-v1-1");
  const NodeResources own = Translate(policy_, registry_, self);
  registry_.workloads[2].ready = true;
  EXPECT_EQ(Content(own.listeners), Content(Translate(policy_, registry_, self).listeners));
  EXPECT_EQ(Content(own.routes), Content(Translate(policy_, registry_, self).routes));
  // Ready again: back where it was.
  EXPECT_EQ(Bytes(Translate(policy_, registry_, node_)), Bytes(before));
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

// The steps on their own.

TEST_F(TranslatorTest, AClusterIsBuiltOnceWhateverTheNumberOfRoutesNamingIt) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  TranslationOutput out;
  const ServiceView& reviews = *index.services.at({"default", "reviews"});
  const std::string& first = UseCluster(ctx, out, reviews, reviews.ports[0], {{"version", "v1"}});
  EXPECT_EQ(first, "outbound|9080|version=v1|reviews.default");
  out.endpoints.clear();  // a second use finds the cluster and builds nothing
  EXPECT_EQ(&UseCluster(ctx, out, reviews, reviews.ports[0], {{"version", "v1"}}), &first);
  EXPECT_EQ(out.clusters.size(), 1u);
  EXPECT_TRUE(out.endpoints.empty());
  UseCluster(ctx, out, reviews, reviews.ports[0], {});
  EXPECT_EQ(out.clusters.size(), 2u);
  ASSERT_EQ(out.endpoints.size(), 1u);
  EXPECT_EQ(out.endpoints.at("outbound|9080||reviews.default").endpoints_size(), 3);
}

TEST_F(TranslatorTest, EndpointsCarryTheMembersLabelsButNotTheMeshsOwn) {
  registry_.workloads[1].labels["meshlet.io/workload-certificate"] = "false";
  registry_.workloads[1].inbound_port = 25006;
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  TranslationOutput out;
  const ServiceView& reviews = *index.services.at({"default", "reviews"});
  UseCluster(ctx, out, reviews, reviews.ports[0], {{"version", "v1"}});
  const xds::ClusterLoadAssignment& v1 =
      out.endpoints.at("outbound|9080|version=v1|reviews.default");
  ASSERT_EQ(v1.endpoints_size(), 2);
  EXPECT_EQ(v1.endpoints(0).address(), "10.0.1.1:25006");  // its own inbound port
  EXPECT_EQ(v1.endpoints(0).labels().size(), 1u);
  EXPECT_EQ(v1.endpoints(0).labels().at("version"), "v1");
}

TEST_F(TranslatorTest, MeshConfigDefaultsUnderTheTrafficPolicy) {
  pb::MeshConfig mesh;
  mesh.mutable_spec()->set_load_balancer("RANDOM");
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_connect()->set_seconds(4);
  policy_.mesh_config = mesh;
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  xds::Cluster none;
  ApplyTrafficPolicy(ctx, nullptr, none);
  EXPECT_EQ(none.lb_policy(), xds::RANDOM);
  EXPECT_EQ(none.connect_timeout().seconds(), 4);
  EXPECT_FALSE(none.has_circuit_breakers());
  EXPECT_FALSE(none.has_outlier_detection());
  EXPECT_FALSE(none.has_overload());  // the sidecar's defaults: on
  EXPECT_FALSE(none.has_pool());
  // enabled: false turns the overload handling off.
  pb::TrafficPolicySpec off;
  off.mutable_overload()->mutable_enabled()->set_value(false);
  xds::Cluster disabled;
  ApplyTrafficPolicy(ctx, &off, disabled);
  EXPECT_TRUE(disabled.overload().disabled());
  // A retry budget given in part gets the other half's default (20 %, 10 retries/s).
  pb::TrafficPolicySpec tp;
  tp.mutable_retries()->mutable_budget_min_retries_per_second()->set_value(3);
  tp.mutable_circuit_breaker()->set_consecutive_failures(4);
  tp.mutable_circuit_breaker()->mutable_open_duration()->set_seconds(7);
  xds::Cluster some;
  ApplyTrafficPolicy(ctx, &tp, some);
  EXPECT_EQ(some.lb_policy(), xds::RANDOM);
  EXPECT_DOUBLE_EQ(some.circuit_breakers().retry_budget().budget_percent(), 20.0);
  EXPECT_EQ(some.circuit_breakers().retry_budget().min_retries_per_second(), 3u);
  EXPECT_EQ(some.circuit_breakers().consecutive_failures().failure_threshold(), 4u);
  EXPECT_EQ(some.circuit_breakers().consecutive_failures().open_duration().seconds(), 7);
  tp.mutable_retries()->clear_budget_min_retries_per_second();
  tp.mutable_retries()->mutable_budget_percent()->set_value(50);
  tp.set_load_balancer("PEAK_EWMA");
  xds::Cluster other;
  ApplyTrafficPolicy(ctx, &tp, other);
  EXPECT_EQ(other.lb_policy(), xds::PEAK_EWMA);
  EXPECT_EQ(other.circuit_breakers().retry_budget().min_retries_per_second(), 10u);
}

TEST_F(TranslatorTest, InboundClustersAreTheLocalApp) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  TranslateOptions options;
  options.local_app_host = "::1";
  const TranslationContext ctx(policy_, registry_, index, node_, options);
  const xds::Cluster grpc = InboundCluster(ctx, "inbound|9090", "GRPC", 9090);
  EXPECT_EQ(grpc.name(), "inbound|9090");
  EXPECT_EQ(grpc.type(), xds::Cluster::STATIC);
  EXPECT_EQ(grpc.protocol(), xds::UPSTREAM_HTTP2);
  EXPECT_EQ(grpc.load_assignment().cluster_name(), "inbound|9090");
  ASSERT_EQ(grpc.load_assignment().endpoints_size(), 1);
  EXPECT_EQ(grpc.load_assignment().endpoints(0).address(), "[::1]:9090");
  EXPECT_EQ(InboundCluster(ctx, "inbound|80", "HTTP", 80).protocol(), xds::UPSTREAM_HTTP1);
  EXPECT_EQ(InboundCluster(ctx, "inbound|81", "TCP", 81).protocol(), xds::UPSTREAM_HTTP1);
}

}  // namespace
}  // namespace meshlet::controlplane::translate
