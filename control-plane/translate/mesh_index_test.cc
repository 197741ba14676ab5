// The mesh index (mesh_index.cc): which services exist, their ports and members.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

TEST_F(TranslatorTest, ServicesKnownOnlyFromTheRegistry) {
  registry_.workloads.push_back(MakeWorkload("ratings-0", "ratings", "10.0.3.1"));
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_NE(Host(r, "outbound", "ratings.default:9080"), nullptr);
  EXPECT_NE(Named(r.clusters, "outbound|9080||ratings.default"), nullptr);
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
  std::vector<std::string> destinations = DestinationSummary(r, "outbound");
  EXPECT_TRUE(Has(destinations, "ratings.shop:80 [10.96.0.30]:80 PROTOCOL_HTTP outbound 0"))
      << absl::StrJoin(destinations, "\n");
  EXPECT_TRUE(Has(destinations,
                  "ratings.shop:6379 [10.96.0.30]:6379 PROTOCOL_TCP outbound|6379||ratings.shop 0"))
      << absl::StrJoin(destinations, "\n");
}

// EndpointSlices' zone and nodeName (and the region discovery read) become the endpoints' locality
// (a registered sidecar's own wins); trafficDistribution: PreferClose turns locality-aware
// balancing on and internalTrafficPolicy: Local keeps callers to their node's endpoints.
TEST_F(KubernetesServicesTest, TopologyOfEndpointSlicesAndServices) {
  auto services = std::make_shared<registry::KubernetesServices>(*kubernetes_);
  auto ratings = std::make_shared<registry::KubernetesService>(*services->services[0]);
  ratings->endpoints[0].region = "eu";  // 10.1.0.5, no sidecar
  ratings->endpoints[0].zone = "eu-a";
  ratings->endpoints[0].node = "n1";
  ratings->endpoints[1].zone = "eu-b";  // 10.1.0.6, its sidecar registered
  ratings->endpoints[1].node = "n2";
  services->services[0] = ratings;
  registry_.kubernetes = services;
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::ClusterLoadAssignment* a = Assignment(r, "outbound|80||ratings.shop");
  ASSERT_EQ(a->endpoints_size(), 2);
  EXPECT_EQ(a->endpoints(0).locality().region(), "eu");
  EXPECT_EQ(a->endpoints(0).locality().zone(), "eu-a");
  EXPECT_EQ(a->endpoints(0).locality().node(), "n1");
  EXPECT_EQ(a->endpoints(1).locality().zone(), "eu-b");
  EXPECT_FALSE(Named(r.clusters, "outbound|80||ratings.shop")->has_locality_lb());

  ratings->prefer_close = true;
  r = Translate(policy_, registry_, node_);
  const xds::Cluster* c = Named(r.clusters, "outbound|80||ratings.shop");
  EXPECT_TRUE(c->locality_lb().enabled());
  EXPECT_FALSE(c->locality_lb().node_local());
  ratings->prefer_close = false;
  ratings->node_local = true;
  r = Translate(policy_, registry_, node_);
  c = Named(r.clusters, "outbound|80||ratings.shop");
  EXPECT_FALSE(c->locality_lb().enabled());
  EXPECT_TRUE(c->locality_lb().node_local());
}

// A pod whose sidecar talks to another control-plane revision (injected, not registered here):
// mTLS to its Pod's identity, beside the registered pod, so callers on either revision reach
// both (ADR 0069).
TEST_F(KubernetesServicesTest, APodOfAnotherRevisionIsReachedOverMtls) {
  auto services = std::make_shared<registry::KubernetesServices>(*kubernetes_);
  auto ratings = std::make_shared<registry::KubernetesService>(*services->services[0]);
  ratings->endpoints[0].sidecar = true;  // ratings-a, service account ratings
  services->services[0] = ratings;
  registry_.kubernetes = services;
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::ClusterLoadAssignment* a = Assignment(r, "outbound|80||ratings.shop");
  ASSERT_EQ(a->endpoints_size(), 2);
  EXPECT_EQ(a->endpoints(0).address(), "10.1.0.5:9080");
  EXPECT_FALSE(a->endpoints(0).plaintext());
  EXPECT_EQ(a->endpoints(0).identity(), "spiffe://cluster.local/ns/shop/sa/ratings");
  EXPECT_EQ(a->endpoints(1).identity(), "spiffe://cluster.local/ns/shop/sa/ratings");
  const xds::Cluster* http = Named(r.clusters, "outbound|80||ratings.shop");
  ASSERT_NE(http, nullptr);
  EXPECT_TRUE(http->tls().enabled());
  // Without its service account (a Pod injected before these annotations) it stays plaintext.
  ratings->endpoints[0].service_account.clear();
  r = Translate(policy_, registry_, node_);
  EXPECT_TRUE(Assignment(r, "outbound|80||ratings.shop")->endpoints(0).plaintext());
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
  std::vector<std::string> destinations = DestinationSummary(r, "outbound");
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
  std::vector<registry::KubernetesEndpoint>& endpoints = MutableService(0).endpoints;
  endpoints.erase(endpoints.begin());
  r = Translate(policy_, registry_, node_);
  ASSERT_EQ(Assignment(r, "outbound|80||ratings.shop")->endpoints_size(), 1);
  kubernetes_->services.erase(kubernetes_->services.begin());
  r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(r.clusters, "outbound|80||ratings.shop"), nullptr);
  EXPECT_EQ(Host(r, "outbound", "ratings.shop:80"), nullptr);
}

// BuildIndex on its own: what a service is made of.

TEST_F(TranslatorTest, RegisteredPortsAreHttpPortsOfServicesOnlyTheRegistryKnows) {
  registry::Workload ratings = MakeWorkload("ratings-0", "ratings", "10.0.3.1");
  ratings.ports = {9090, 9080};
  registry::Workload ratings_again = MakeWorkload("ratings-1", "ratings", "10.0.3.2");
  ratings_again.ports = {9080, 7070};
  registry_.workloads.push_back(ratings);
  registry_.workloads.push_back(ratings_again);
  registry_.workloads[1].ports = {7000};  // reviews-v1-0: its Service resource keeps its ports
  const MeshIndex index = BuildIndex(policy_, registry_);

  const ServiceView& implied = *index.services.at({"default", "ratings"});
  EXPECT_EQ(implied.resource, nullptr);
  std::vector<std::string> ports;
  for (const pb::ServicePort& p : implied.ports) {
    ports.push_back(absl::StrCat(p.port(), "/", p.protocol()));
  }
  EXPECT_EQ(ports, (std::vector<std::string>{"7070/HTTP", "9080/HTTP", "9090/HTTP"}));
  EXPECT_TRUE(implied.addresses.empty());
  ASSERT_EQ(implied.members.size(), 2u);
  EXPECT_EQ(implied.members[0]->id, "ratings-0");

  const ServiceView& reviews = *index.services.at({"default", "reviews"});
  EXPECT_EQ(reviews.resource, &policy_.services[0]);
  ASSERT_EQ(reviews.ports.size(), 1u);
  EXPECT_EQ(reviews.ports[0].port(), 9080u);
  EXPECT_EQ(reviews.members.size(), 3u);
}

TEST_F(TranslatorTest, SelectorsJoinWorkloadsOfTheServiceNamespaceOrderedById) {
  (*policy_.services[0].mutable_spec()->mutable_selector())["app"] = "reviews";
  registry::Workload labelled =
      MakeWorkload("a-labelled", "other", "10.0.9.1", {{"app", "reviews"}});
  registry::Workload elsewhere =
      MakeWorkload("b-elsewhere", "other", "10.0.9.2", {{"app", "reviews"}});
  elsewhere.namespace_ = "shop";
  registry::Workload unlabelled = MakeWorkload("c-unlabelled", "other", "10.0.9.3");
  registry_.workloads.push_back(labelled);
  registry_.workloads.push_back(elsewhere);
  registry_.workloads.push_back(unlabelled);
  const MeshIndex index = BuildIndex(policy_, registry_);
  std::vector<std::string> members;
  for (const registry::Workload* w : index.services.at({"default", "reviews"})->members) {
    members.push_back(w->id);
  }
  EXPECT_EQ(members, (std::vector<std::string>{"a-labelled", "reviews-v1-0", "reviews-v1-1",
                                               "reviews-v2-0"}));
}

TEST_F(TranslatorTest, PoliciesAndRoutesAreIndexedByTheServiceTheyTarget) {
  pb::TrafficPolicy later = policy_.traffic_policies[0];
  later.mutable_metadata()->set_name("zz-reviews");
  pb::TrafficPolicy earlier = policy_.traffic_policies[0];
  earlier.mutable_metadata()->set_name("aa-reviews");
  policy_.traffic_policies = {later, policy_.traffic_policies[0], earlier};
  pb::HTTPRoute second = policy_.http_routes[0];
  second.mutable_metadata()->set_name("a-first");
  policy_.http_routes.push_back(second);
  const MeshIndex index = BuildIndex(policy_, registry_);
  // Several TrafficPolicies for one Service: the greatest name, whatever the order.
  ASSERT_EQ(index.by_target->traffic_policies.size(), 1u);
  EXPECT_EQ(index.by_target->traffic_policies.at({"default", "reviews"})->metadata().name(),
            "zz-reviews");
  const std::vector<const pb::HTTPRoute*>& routes =
      index.by_target->routes.at({"default", "reviews"});
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0]->metadata().name(), "a-first");
  EXPECT_EQ(routes[1]->metadata().name(), "reviews");
}

TEST_F(KubernetesServicesTest, AnEndpointOfARegisteredPodIsThatWorkloadOnce) {
  // Two addresses of ratings-b's pod in the slices; the Pod's labels join those its sidecar
  // registered, which win.
  registry::Workload* b = nullptr;
  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "ratings-b.shop") b = &w;
  }
  ASSERT_NE(b, nullptr);
  b->addresses.push_back("fd00:1::6");
  b->labels["version"] = "registered";
  MutableService(0).endpoints.push_back(
      {.address = "fd00:1::6", .pod = "ratings-b", .labels = {{"zone", "a"}}});
  const MeshIndex index = BuildIndex(policy_, registry_);
  const ServiceView& ratings = *index.services.at({"shop", "ratings"});
  EXPECT_EQ(ratings.kubernetes, kubernetes_->services[0].get());
  EXPECT_EQ(ratings.addresses, std::vector<std::string>{"10.96.0.30"});
  ASSERT_EQ(ratings.members.size(), 2u);
  const registry::Workload* plain = ratings.members[0];
  EXPECT_EQ(plain->id, "kubernetes/shop/ratings-a");
  EXPECT_TRUE(plain->capture);  // reached on its app port
  EXPECT_FALSE(plain->workload_certificate);
  const registry::Workload* registered = ratings.members[1];
  EXPECT_EQ(registered->id, "ratings-b.shop");
  EXPECT_TRUE(registered->workload_certificate);
  EXPECT_EQ(registered->labels.at("version"), "registered");
  EXPECT_EQ(registered->labels.at("app"), "ratings");
}

// An index built from the previous one shares the views of the Kubernetes Services that did not
// change: the same objects, not rebuilt. A changed EndpointSlice's Service, a Service with an
// endpoint at the address of a registered workload that changed, and the views that read the
// registry are built again; the result is the index built from nothing.
TEST_F(KubernetesServicesTest, ANewerIndexSharesTheViewsOfUnchangedKubernetesServices) {
  const RegistrySnapshot before = registry_;
  const MeshIndex first = BuildIndex(policy_, before);
  const PreviousIndex previous{&first, &policy_, &before};
  auto keys = [](const MeshIndex& index) {
    std::vector<std::string> out;
    for (const auto& [key, view] : index.services) out.push_back(key.first + "/" + key.second);
    return out;
  };
  auto built = [](const MeshIndex& index) {
    std::vector<std::string> out;
    for (const ServiceKey& key : index.built) out.push_back(key.first + "/" + key.second);
    return out;
  };
  // Views of Service resources and of registered workloads read the registry: built each time.
  std::vector<std::string> registry_views;
  for (const auto& [key, view] : first.services) {
    if (view->kubernetes == nullptr) registry_views.push_back(key.first + "/" + key.second);
  }
  ASSERT_EQ(first.services.size() - registry_views.size(), 2u);  // ratings, reviews

  // Nothing changed but the version.
  RegistrySnapshot same = before;
  same.version = before.version + 1;
  const MeshIndex unchanged = BuildIndex(policy_, same, previous);
  EXPECT_EQ(unchanged.built_from, first.serial);
  EXPECT_EQ(built(unchanged), registry_views);
  EXPECT_EQ(unchanged.members_built, 0u);
  EXPECT_EQ(unchanged.services.at({"shop", "ratings"}).get(),
            first.services.at({"shop", "ratings"}).get());
  EXPECT_EQ(unchanged.by_target.get(), first.by_target.get());

  // ratings' EndpointSlice changed (an endpoint left): its view alone is built again.
  RegistrySnapshot sliced = before;
  auto services = std::make_shared<registry::KubernetesServices>(*before.kubernetes);
  auto ratings_slice = std::make_shared<registry::KubernetesService>(*services->services[0]);
  ratings_slice->endpoints.pop_back();
  services->services[0] = ratings_slice;
  sliced.kubernetes = services;
  const MeshIndex after_slice = BuildIndex(policy_, sliced, previous);
  std::vector<std::string> expected = registry_views;
  expected.push_back("shop/ratings");
  EXPECT_EQ(built(after_slice), expected);
  EXPECT_EQ(after_slice.services.at({"default", "reviews"}).get(),
            first.services.at({"default", "reviews"}).get());
  EXPECT_EQ(after_slice.members_built, 1u);
  EXPECT_EQ(after_slice.services.at({"shop", "ratings"})->members.size(), 1u);

  // ratings-b's sidecar (registered at a ratings endpoint's address) is not ready: ratings is
  // built again with it, reviews (whose endpoints are elsewhere) is not.
  RegistrySnapshot not_ready = before;
  for (registry::Workload& w : not_ready.workloads) {
    if (w.id == "ratings-b.shop") w.ready = false;
  }
  const MeshIndex after_ready = BuildIndex(policy_, not_ready, previous);
  EXPECT_EQ(built(after_ready), expected);
  const ServiceView& ratings = *after_ready.services.at({"shop", "ratings"});
  ASSERT_EQ(ratings.members.size(), 2u);
  EXPECT_FALSE(ratings.members[1]->ready);

  // ratings-a's pod gets a sidecar (registered at its address, which was a plaintext endpoint):
  // ratings is built again and reaches it as a registered member; reviews is shared.
  RegistrySnapshot joined = before;
  registry::Workload a = MakeWorkload("ratings-a.shop", "ratings", "10.1.0.5");
  a.namespace_ = "shop";
  a.ports = {9080, 6379};
  a.workload_certificate = true;
  joined.workloads.push_back(a);
  std::sort(joined.workloads.begin(), joined.workloads.end(),
            [](const auto& x, const auto& y) { return x.id < y.id; });
  const MeshIndex after_join = BuildIndex(policy_, joined, previous);
  EXPECT_EQ(built(after_join), expected);
  EXPECT_EQ(after_join.services.at({"default", "reviews"}).get(),
            first.services.at({"default", "reviews"}).get());

  // ratings-b's sidecar goes away (its registration ends): ratings is built again.
  RegistrySnapshot left = before;
  std::erase_if(left.workloads,
                [](const registry::Workload& w) { return w.id == "ratings-b.shop"; });
  const MeshIndex after_leave = BuildIndex(policy_, left, previous);
  EXPECT_EQ(built(after_leave), expected);

  // Another policy snapshot object: nothing is shared.
  const PolicySnapshot other_policy = policy_;
  const MeshIndex fresh = BuildIndex(other_policy, same, previous);
  EXPECT_EQ(fresh.built_from, 0u);
  EXPECT_EQ(fresh.built.size(), fresh.services.size());

  // Each equals the index built from nothing, view by view.
  for (const auto& [index, registry] :
       std::vector<std::pair<const MeshIndex*, const RegistrySnapshot*>>{{&unchanged, &same},
                                                                         {&after_slice, &sliced},
                                                                         {&after_ready, &not_ready},
                                                                         {&after_join, &joined},
                                                                         {&after_leave, &left}}) {
    const MeshIndex alone = BuildIndex(policy_, *registry);
    ASSERT_EQ(keys(*index), keys(alone));
    for (const auto& [key, view] : index->services) {
      const ServiceView& a = *view;
      const ServiceView& b = *alone.services.at(key);
      EXPECT_EQ(a.kubernetes, b.kubernetes) << key.second;
      EXPECT_EQ(a.resource, b.resource) << key.second;
      EXPECT_EQ(a.addresses, b.addresses) << key.second;
      EXPECT_EQ(a.selector, b.selector) << key.second;
      EXPECT_EQ(a.service_accounts, b.service_accounts) << key.second;
      ASSERT_EQ(a.ports.size(), b.ports.size()) << key.second;
      for (size_t i = 0; i < a.ports.size(); ++i) {
        EXPECT_EQ(a.ports[i].SerializeAsString(), b.ports[i].SerializeAsString()) << key.second;
      }
      ASSERT_EQ(a.members.size(), b.members.size()) << key.second;
      for (size_t i = 0; i < a.members.size(); ++i) {
        EXPECT_TRUE(SameMember(*a.members[i], *b.members[i])) << key.second << " " << i;
      }
    }
  }
}

// An EndpointSlice change in a mesh of many Kubernetes Services builds one view and takes every
// other from the previous index in order: no shared view is looked up, however large the mesh;
// a list out of key order is still indexed as the index built from nothing.
TEST(MeshIndexScaleTest, AnEndpointSliceChangeLooksUpNoSharedViewAsTheMeshGrows) {
  const PolicySnapshot policy;
  for (size_t count : {10u, 1000u}) {
    auto services = std::make_shared<registry::KubernetesServices>();
    for (size_t i = 0; i < count; ++i) {
      auto ks = std::make_shared<registry::KubernetesService>();
      ks->namespace_ = i % 2 == 0 ? "alpha" : "beta";
      ks->name = absl::StrCat("svc-", 100000 + i);
      ks->cluster_ips = {absl::StrCat("10.96.", i / 250, ".", i % 250)};
      ks->ports = {{.name = "http", .port = 80, .protocol = "HTTP", .target_port = 8080}};
      ks->endpoints = {{.address = absl::StrCat("10.1.", i / 250, ".", i % 250)}};
      services->services.push_back(std::move(ks));
    }
    std::sort(services->services.begin(), services->services.end(),
              [](const auto& a, const auto& b) {
                return std::tie(a->namespace_, a->name) < std::tie(b->namespace_, b->name);
              });
    RegistrySnapshot before;
    before.kubernetes = services;
    const MeshIndex first = BuildIndex(policy, before);
    ASSERT_EQ(first.services.size(), count);

    RegistrySnapshot after = before;
    auto changed = std::make_shared<registry::KubernetesServices>(*services);
    auto slice = std::make_shared<registry::KubernetesService>(*changed->services[count / 2]);
    slice->endpoints.push_back({.address = "10.2.0.1"});
    changed->services[count / 2] = slice;
    after.kubernetes = changed;
    const MeshIndex next = BuildIndex(policy, after, {&first, &policy, &before});
    EXPECT_EQ(next.built.size(), 1u) << count;
    EXPECT_EQ(next.shared_searched, 0u) << count;
    ASSERT_EQ(next.services.size(), count);
    EXPECT_EQ(next.services.at({slice->namespace_, slice->name})->members.size(), 2u);

    // Out of key order: found by a search, and the table is the same.
    RegistrySnapshot shuffled = after;
    auto reordered = std::make_shared<registry::KubernetesServices>(*changed);
    std::mt19937 random(7);
    std::shuffle(reordered->services.begin(), reordered->services.end(), random);
    shuffled.kubernetes = reordered;
    const MeshIndex searched = BuildIndex(policy, shuffled, {&next, &policy, &after});
    EXPECT_EQ(searched.built.size(), 0u) << count;
    EXPECT_GT(searched.shared_searched, 0u) << count;
    ASSERT_EQ(searched.services.size(), count);
    auto a = searched.services.begin();
    for (const auto& [key, view] : next.services) {
      EXPECT_EQ(a->first, key);
      EXPECT_EQ(a->second.get(), view.get());
      ++a;
    }
  }
}

TEST(AppPortTest, TheTargetPortUnlessOtherPortsAreRegistered) {
  std::vector<pb::ServicePort> ports(2);
  ports[0].set_port(80);
  ports[0].set_target_port(8080);
  ports[1].set_port(90);  // no target port: the port itself
  EXPECT_EQ(AppPort(ports, ports[0], {}), 8080u);
  EXPECT_EQ(AppPort(ports, ports[1], {}), 90u);
  EXPECT_EQ(AppPort(ports, ports[0], {90, 8080}), 8080u);  // registered, so kept
  // Other registered ports: matched to the Service's ports in order, the first when fewer.
  EXPECT_EQ(AppPort(ports, ports[0], {18080, 19090}), 18080u);
  EXPECT_EQ(AppPort(ports, ports[1], {18080, 19090}), 19090u);
  EXPECT_EQ(AppPort(ports, ports[1], {18080}), 18080u);
  EXPECT_EQ(SortedPorts({3, 1, 2}), (std::vector<uint32_t>{1, 2, 3}));
}

TEST(NamesTest, ClusterNamesAndAddresses) {
  ServiceView s;
  s.namespace_ = "shop";
  s.name = "ratings";
  EXPECT_EQ(ClusterName(s, 80, {}), "outbound|80||ratings.shop");
  EXPECT_EQ(ClusterName(s, 80, {{"version", "v2"}, {"zone", "a"}}),
            "outbound|80|version=v2,zone=a|ratings.shop");
  EXPECT_EQ(ClusterName(s, 80, {}, /*opaque=*/true), "outbound|80|tcp|ratings.shop");
  EXPECT_EQ(FormatAddress("10.0.0.1", 15006), "10.0.0.1:15006");
  EXPECT_EQ(FormatAddress("fd00::1", 15006), "[fd00::1]:15006");
  EXPECT_EQ(AddressHost("fd00::1"), "[fd00::1]");
  EXPECT_EQ(AddressHost("10.0.0.1"), "10.0.0.1");
  EXPECT_TRUE(Matches({}, {{"a", "1"}}));
  EXPECT_TRUE(Matches({{"a", "1"}}, {{"a", "1"}, {"b", "2"}}));
  EXPECT_FALSE(Matches({{"a", "1"}}, {{"a", "2"}}));
  EXPECT_FALSE(Matches({{"a", "1"}}, {}));
}

}  // namespace
}  // namespace meshlet::controlplane::translate
