// KubernetesDiscovery against FakeApiServer: Services, EndpointSlices and Pods listed, then what
// the registry receives (ports and their protocols, named target ports resolved through the
// slices, ready endpoints with their Pods' labels, ExternalName Services and UDP ports left out),
// nothing before all three kinds are listed, and a watch event applied; per-Service publication
// (a slice event replaces only the entries of the Services it touches, equal to a fresh list's).

#include "control-plane/kubernetes/discovery.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "control-plane/registry/registry.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

constexpr char kServices[] = R"({"kind":"ServiceList","metadata":{"resourceVersion":"10"},"items":[
  {"metadata":{"namespace":"default","name":"reviews","labels":{"meshlet.io/export":"true"}},
   "spec":{"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"ports":[
     {"name":"http","port":9080,"targetPort":"web","protocol":"TCP"},
     {"name":"grpc-api","port":9090,"targetPort":9091},
     {"name":"dns","port":53,"protocol":"UDP"},
     {"name":"db","port":5432,"appProtocol":"postgresql"},
     {"name":"second","port":8081,"targetPort":3001,"appProtocol":"kubernetes.io/h2c"},
     {"name":"third","port":8082,"targetPort":3000,"appProtocol":"kubernetes.io/ws"},
     {"name":"fourth","port":8443,"targetPort":3443,"appProtocol":"kubernetes.io/wss"}],
   "trafficDistribution":"PreferClose","internalTrafficPolicy":"Local"}},
  {"metadata":{"namespace":"default","name":"external"},
   "spec":{"type":"ExternalName","externalName":"example.com"}}]})";

constexpr char kSlice[] = R"({"metadata":{"namespace":"default","name":"reviews-abc",
   "resourceVersion":"12","labels":{"kubernetes.io/service-name":"reviews"}},
   "addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],
   "endpoints":[
     {"addresses":["10.1.0.2"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","name":"reviews-1"},
      "zone":"eu-a","nodeName":"node-1"},
     {"addresses":["10.1.0.3"],"conditions":{"ready":false},"targetRef":{"kind":"Pod","name":"reviews-3"}},
     {"addresses":["10.1.0.1"],"targetRef":{"kind":"Pod","name":"reviews-2"}}]})";

constexpr char kPods[] = R"({"kind":"PartialObjectMetadataList","metadata":{"resourceVersion":"11"},
  "items":[
   {"metadata":{"namespace":"default","name":"reviews-1","labels":{"app":"reviews","version":"v1"},
     "annotations":{"sidecar.meshlet.io/revision":"canary",
                    "sidecar.meshlet.io/serviceAccount":"reviews"}}},
   {"metadata":{"namespace":"default","name":"reviews-2","labels":{"app":"reviews","version":"v2"}}}]})";

class DiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set_handler([this](const http::ServerRequest& request, http::Responder respond) {
      const std::string path(request.path());
      const bool watch = request.QueryParams().count("watch") > 0;
      if (watch) {
        // The first watch of the slices delivers one event and ends; every other watch stays
        // open until the test ends.
        if (path == "/apis/discovery.k8s.io/v1/endpointslices" && !slice_event_.empty()) {
          std::string event = std::exchange(slice_event_, "");
          respond(http::ServerResponse::Json(200, event + "\n"));
          return;
        }
        if (path == "/apis/discovery.k8s.io/v1/endpointslices") {
          slice_watches_.push_back(std::move(respond));
          return;
        }
        if (path == "/api/v1/pods") {
          pod_watches_.push_back(std::move(respond));
          return;
        }
        if (path == "/api/v1/nodes") {
          node_watches_.push_back(std::move(respond));
          return;
        }
        watches_.push_back(std::move(respond));
        return;
      }
      if (path == "/api/v1/services") {
        respond(http::ServerResponse::Json(200, services_));
      } else if (path == "/apis/discovery.k8s.io/v1/endpointslices") {
        respond(http::ServerResponse::Json(
            200, absl::StrCat(R"({"metadata":{"resourceVersion":"12"},"items":[)", slices_, "]}")));
      } else if (path == "/api/v1/pods") {
        if (hold_pods_) {
          held_pods_.push_back(std::move(respond));
          return;
        }
        respond(http::ServerResponse::Json(200, pods_));
      } else if (path == "/api/v1/nodes" && !nodes_.empty()) {
        respond(http::ServerResponse::Json(200, nodes_));
      } else {
        respond(http::ServerResponse::Json(404, "{}"));
      }
    });
  }

  std::unique_ptr<KubernetesDiscovery> Discovery() { return Discovery(registry_); }
  std::unique_ptr<KubernetesDiscovery> Discovery(registry::Registry& registry) {
    absl::StatusOr<std::unique_ptr<KubernetesDiscovery>> discovery =
        KubernetesDiscovery::Create(loop_, server_.Options(), registry, stats_, {});
    EXPECT_TRUE(discovery.ok()) << discovery.status();
    return discovery.ok() ? *std::move(discovery) : nullptr;
  }

  const registry::KubernetesService* Reviews() {
    std::shared_ptr<const registry::RegistrySnapshot> snapshot = registry_.Snapshot();
    if (snapshot->kubernetes == nullptr) return nullptr;
    for (const auto& s : snapshot->kubernetes->services) {
      if (s->namespace_ == "default" && s->name == "reviews") return s.get();
    }
    return nullptr;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  registry::Registry registry_{RealClock::Get()};
  FakeApiServer server_{loop_};
  std::vector<http::Responder> watches_;
  std::vector<http::Responder> slice_watches_;
  std::vector<http::Responder> pod_watches_;
  std::vector<http::Responder> node_watches_;
  std::vector<http::Responder> held_pods_;
  std::string services_ = kServices;
  std::string slices_ = kSlice;  // the list's items
  std::string pods_ = kPods;
  std::string nodes_;  // the Nodes' list; empty: 404 (as a server that refuses them, no region)
  std::string slice_event_;
  bool hold_pods_ = false;
};

TEST_F(DiscoveryTest, PublishesTheServicesWithTheirPortsAndReadyEndpoints) {
  auto discovery = Discovery();
  discovery->Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return discovery->synced(); }));

  std::shared_ptr<const registry::RegistrySnapshot> snapshot = registry_.Snapshot();
  EXPECT_FALSE(snapshot->kubernetes_pending);
  ASSERT_NE(snapshot->kubernetes, nullptr);
  ASSERT_EQ(snapshot->kubernetes->services.size(), 1u);  // ExternalName left out
  const registry::KubernetesService& reviews = *snapshot->kubernetes->services[0];
  EXPECT_EQ(reviews.namespace_, "default");
  EXPECT_EQ(reviews.name, "reviews");
  EXPECT_EQ(reviews.cluster_ips, std::vector<std::string>{"10.96.0.10"});
  // By port; UDP left out; the named targetPort resolved through the slice; protocols from the
  // name's prefix, or appProtocol (one meshlet does not read is carried as TCP; the Kubernetes
  // standard ones: h2c is HTTP/2 with prior knowledge, ws an HTTP/1.1 Upgrade, wss the app's
  // own TLS).
  std::vector<registry::KubernetesPort> ports = {
      {.name = "db", .port = 5432, .protocol = "TCP", .target_port = 5432},
      {.name = "second", .port = 8081, .protocol = "HTTP2", .target_port = 3001},
      {.name = "third", .port = 8082, .protocol = "HTTP", .target_port = 3000},
      {.name = "fourth", .port = 8443, .protocol = "TCP", .target_port = 3443},
      {.name = "http", .port = 9080, .protocol = "HTTP", .target_port = 8080},
      {.name = "grpc-api", .port = 9090, .protocol = "GRPC", .target_port = 9091}};
  EXPECT_EQ(reviews.ports, ports);
  // Ready endpoints only (no condition means ready), by address, with their Pods' labels.
  ASSERT_EQ(reviews.endpoints.size(), 2u);
  EXPECT_EQ(reviews.endpoints[0].address, "10.1.0.1");
  EXPECT_EQ(reviews.endpoints[0].pod, "reviews-2");
  EXPECT_EQ(reviews.endpoints[0].labels.at("version"), "v2");
  EXPECT_FALSE(reviews.endpoints[0].sidecar);
  EXPECT_EQ(reviews.endpoints[0].service_account, "");
  EXPECT_EQ(reviews.endpoints[1].address, "10.1.0.2");
  EXPECT_EQ(reviews.endpoints[1].pod, "reviews-1");
  EXPECT_EQ(reviews.endpoints[1].labels.at("version"), "v1");
  // An injected pod (its sidecar maybe another revision's): the annotations injection wrote.
  EXPECT_TRUE(reviews.endpoints[1].sidecar);
  EXPECT_EQ(reviews.endpoints[1].service_account, "reviews");
  // Topology: the slice's zone and nodeName, the Service's trafficDistribution and
  // internalTrafficPolicy.
  EXPECT_EQ(reviews.endpoints[1].zone, "eu-a");
  EXPECT_EQ(reviews.endpoints[1].node, "node-1");
  EXPECT_EQ(reviews.endpoints[0].zone, "");
  EXPECT_TRUE(reviews.prefer_close);
  EXPECT_TRUE(reviews.node_local);
  // Shared with linked clusters (label meshlet.io/export: "true").
  EXPECT_TRUE(reviews.exported);

  // Lists are paged, Pods read as metadata, and every request carries the token.
  bool pods_listed = false;
  for (const testing::SeenRequest& r : server_.requests()) {
    EXPECT_EQ(r.authorization, "Bearer test-token");
    if (absl::StartsWith(r.path, "/api/v1/pods?limit=500")) {
      pods_listed = true;
      EXPECT_TRUE(absl::StrContains(r.accept, "as=PartialObjectMetadataList")) << r.accept;
    }
  }
  EXPECT_TRUE(pods_listed);
}

TEST_F(DiscoveryTest, NothingIsPublishedBeforeEveryKindIsListed) {
  hold_pods_ = true;
  auto discovery = Discovery();
  discovery->Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return !held_pods_.empty(); }));
  loop_.RunUntilIdle();
  EXPECT_FALSE(discovery->synced());
  EXPECT_TRUE(registry_.Snapshot()->kubernetes_pending);
  EXPECT_EQ(registry_.Snapshot()->kubernetes, nullptr);
  held_pods_.front()(http::ServerResponse::Json(200, kPods));
  ASSERT_TRUE(RunUntil(loop_, [&] { return discovery->synced(); }));
  EXPECT_FALSE(registry_.Snapshot()->kubernetes_pending);
  ASSERT_NE(Reviews(), nullptr);
}

TEST_F(DiscoveryTest, AWatchEventChangesWhatIsPublished) {
  slice_event_ = absl::StrCat(R"({"type":"DELETED","object":)", kSlice, "}");
  // One line per event: the watch's JSON has no newlines.
  slice_event_.erase(std::remove(slice_event_.begin(), slice_event_.end(), '\n'),
                     slice_event_.end());
  auto discovery = Discovery();
  discovery->Start();
  ASSERT_TRUE(RunUntil(loop_, [&] {
    const registry::KubernetesService* reviews = Reviews();
    return reviews != nullptr && reviews->endpoints.empty();
  }));
  // The Service stays, its named port no longer resolved (no slice).
  const registry::KubernetesService* reviews = Reviews();
  ASSERT_NE(reviews, nullptr);
  EXPECT_EQ(reviews->ports[4].name, "http");
  EXPECT_EQ(reviews->ports[4].target_port, 0u);
}

// Endpoints' region from their Node's topology label (read as metadata), else from their Pod's
// (which Kubernetes 1.35 copies from the Node); a zone the slice leaves out from the same place.
// A Node's label change republishes the Services with endpoints on it.
TEST_F(DiscoveryTest, EndpointsTakeTheirRegionFromTheirNodeElseTheirPod) {
  nodes_ = R"({"kind":"PartialObjectMetadataList","metadata":{"resourceVersion":"13"},"items":[
    {"metadata":{"name":"node-1","labels":{"topology.kubernetes.io/region":"eu",
      "topology.kubernetes.io/zone":"eu-z","kubernetes.io/hostname":"node-1"}}}]})";
  pods_ = R"({"kind":"PartialObjectMetadataList","metadata":{"resourceVersion":"11"},"items":[
   {"metadata":{"namespace":"default","name":"reviews-1","labels":{"app":"reviews",
     "topology.kubernetes.io/region":"ignored-the-node-wins"}}},
   {"metadata":{"namespace":"default","name":"reviews-2","labels":{"app":"reviews",
     "topology.kubernetes.io/region":"us","topology.kubernetes.io/zone":"us-b"}}}]})";
  auto discovery = Discovery();
  discovery->Start();
  auto region_of = [&](size_t i) {
    const registry::KubernetesService* reviews = Reviews();
    return reviews == nullptr || reviews->endpoints.size() <= i ? std::string("?")
                                                                : reviews->endpoints[i].region;
  };
  ASSERT_TRUE(RunUntil(loop_, [&] { return region_of(1) == "eu"; }));
  const registry::KubernetesService* reviews = Reviews();
  // 10.1.0.2 on node-1: the Node's region; the slice's zone (eu-a) wins over the Node's.
  EXPECT_EQ(reviews->endpoints[1].zone, "eu-a");
  EXPECT_EQ(reviews->endpoints[1].node, "node-1");
  // 10.1.0.1: no nodeName in its slice; its Pod's labels.
  EXPECT_EQ(reviews->endpoints[0].region, "us");
  EXPECT_EQ(reviews->endpoints[0].zone, "us-b");

  // The Node moves to another region (a watch event): republished.
  ASSERT_TRUE(RunUntil(loop_, [&] { return !node_watches_.empty(); }));
  node_watches_.back()(http::ServerResponse::Json(
      200, R"({"type":"MODIFIED","object":{"metadata":{"name":"node-1","resourceVersion":"14",)"
           R"("labels":{"topology.kubernetes.io/region":"eu2"}}}})"
           "\n"));
  ASSERT_TRUE(RunUntil(loop_, [&] { return region_of(1) == "eu2"; }));
  EXPECT_EQ(region_of(0), "us");
  bool nodes_as_metadata = false;
  for (const testing::SeenRequest& r : server_.requests()) {
    if (absl::StartsWith(r.path, "/api/v1/nodes?limit=500")) {
      nodes_as_metadata = absl::StrContains(r.accept, "as=PartialObjectMetadataList");
    }
  }
  EXPECT_TRUE(nodes_as_metadata);
}

// A control plane that may not read Nodes (404 or 403 here) still publishes.
TEST_F(DiscoveryTest, NodesThatCannotBeReadDoNotHoldPublicationBack) {
  auto discovery = Discovery();
  discovery->Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return discovery->synced(); }));
  ASSERT_NE(Reviews(), nullptr);
  EXPECT_EQ(Reviews()->endpoints[1].region, "");
}

// One Service per slice, and one watch event changing one slice.
constexpr char kThreeServices[] = R"({"kind":"ServiceList","metadata":{"resourceVersion":"10"},
  "items":[
   {"metadata":{"namespace":"default","name":"details"},"spec":{"ports":[{"port":80}]}},
   {"metadata":{"namespace":"default","name":"ratings"},"spec":{"ports":[{"port":80}]}},
   {"metadata":{"namespace":"shop","name":"ratings"},"spec":{"ports":[{"port":80}]}}]})";

std::string OneLine(std::string json) {
  json.erase(std::remove(json.begin(), json.end(), '\n'), json.end());
  return json;
}

// An EndpointSlice named `name` of `service`, one endpoint per address; the i-th of `pods`
// (when given) is the Pod of the i-th address.
std::string Slice(absl::string_view namespace_, absl::string_view name, absl::string_view service,
                  const std::vector<std::string>& addresses,
                  const std::vector<std::string>& pods = {}) {
  std::string endpoints;
  for (size_t i = 0; i < addresses.size(); ++i) {
    absl::StrAppend(
        &endpoints, endpoints.empty() ? "" : ",", R"({"addresses":[")", addresses[i], R"("])",
        i < pods.size() ? absl::StrCat(R"(,"targetRef":{"kind":"Pod","name":")", pods[i], R"("})")
                        : "",
        "}");
  }
  return absl::StrCat(R"({"metadata":{"namespace":")", namespace_, R"(","name":")", name,
                      R"(","resourceVersion":"12","labels":{"kubernetes.io/service-name":")",
                      service, R"("}},"addressType":"IPv4","ports":[{"port":80}],"endpoints":[)",
                      endpoints, "]}");
}

// Three Services with a slice each (default/details, default/ratings, shop/ratings), published;
// then one slice event, after which the published Services are compared with what a discovery
// listing the changed cluster publishes.
class PerServiceTest : public DiscoveryTest {
 protected:
  void SetUp() override {
    DiscoveryTest::SetUp();
    services_ = kThreeServices;
    slices_ = absl::StrCat(Slice("default", "details-x", "details", {"10.1.0.1"}), ",",
                           Slice("default", "ratings-x", "ratings", {"10.1.0.2"}), ",",
                           Slice("shop", "ratings-x", "ratings", {"10.2.0.2"}));
    discovery_ = Discovery();
    discovery_->Start();
    ASSERT_TRUE(RunUntil(loop_, [&] { return discovery_->synced(); }));
    before_ = registry_.Snapshot()->kubernetes;
    ASSERT_EQ(before_->services.size(), 3u);
  }

  // The slices' watch delivers `slice` as MODIFIED (the cluster's list then says the same, given
  // as `slices`); returns the publication that follows.
  std::shared_ptr<const registry::KubernetesServices> Modified(const std::string& slice,
                                                               std::string slices) {
    EXPECT_TRUE(RunUntil(loop_, [&] { return !slice_watches_.empty(); }));
    slice_watches_.back()(http::ServerResponse::Json(
        200,
        absl::StrCat(OneLine(absl::StrCat(R"({"type":"MODIFIED","object":)", slice, "}")), "\n")));
    slices_ = std::move(slices);
    EXPECT_TRUE(RunUntil(loop_, [&] { return registry_.Snapshot()->kubernetes != before_; }));
    return registry_.Snapshot()->kubernetes;
  }

  // What a discovery listing the cluster now publishes.
  std::shared_ptr<const registry::KubernetesServices> Listed() {
    registry::Registry fresh_registry(RealClock::Get());
    auto fresh = Discovery(fresh_registry);
    fresh->Start();
    EXPECT_TRUE(RunUntil(loop_, [&] { return fresh->synced(); }));
    return fresh_registry.Snapshot()->kubernetes;
  }

  std::unique_ptr<KubernetesDiscovery> discovery_;
  std::shared_ptr<const registry::KubernetesServices> before_;
};

TEST_F(PerServiceTest, AnEndpointChangeReplacesOnlyItsServicesEntry) {
  const std::string changed = Slice("default", "ratings-x", "ratings", {"10.1.0.3", "10.1.0.2"});
  std::shared_ptr<const registry::KubernetesServices> after = Modified(
      changed, absl::StrCat(Slice("default", "details-x", "details", {"10.1.0.1"}), ",", changed,
                            ",", Slice("shop", "ratings-x", "ratings", {"10.2.0.2"})));
  ASSERT_EQ(after->services.size(), 3u);
  // default/ratings is a new entry with both addresses in order; the other two are the very
  // objects published before.
  EXPECT_EQ(after->services[0], before_->services[0]);  // default/details
  EXPECT_NE(after->services[1], before_->services[1]);
  ASSERT_EQ(after->services[1]->endpoints.size(), 2u);
  EXPECT_EQ(after->services[1]->endpoints[0].address, "10.1.0.2");
  EXPECT_EQ(after->services[1]->endpoints[1].address, "10.1.0.3");
  EXPECT_EQ(after->services[2], before_->services[2]);  // shop/ratings
  EXPECT_EQ(*Listed(), *after);
}

// A slice relabelled to another Service: the one it left and the one it joined are rebuilt.
TEST_F(PerServiceTest, ASliceMovedToAnotherServiceRebuildsBoth) {
  const std::string moved = Slice("default", "ratings-x", "details", {"10.1.0.2"});
  std::shared_ptr<const registry::KubernetesServices> after = Modified(
      moved, absl::StrCat(Slice("default", "details-x", "details", {"10.1.0.1"}), ",", moved, ",",
                          Slice("shop", "ratings-x", "ratings", {"10.2.0.2"})));
  ASSERT_EQ(after->services.size(), 3u);
  ASSERT_EQ(after->services[0]->endpoints.size(), 2u);  // default/details
  EXPECT_EQ(after->services[0]->endpoints[1].address, "10.1.0.2");
  EXPECT_TRUE(after->services[1]->endpoints.empty());  // default/ratings
  EXPECT_EQ(after->services[2], before_->services[2]);
  EXPECT_EQ(*Listed(), *after);
}

// A Pod as the metadata list and watch carry it.
std::string Pod(absl::string_view namespace_, absl::string_view name, absl::string_view version) {
  return absl::StrCat(R"({"metadata":{"namespace":")", namespace_, R"(","name":")", name,
                      R"(","resourceVersion":"13","labels":{"version":")", version, R"("}}})");
}

// Each Service's endpoint backed by a Pod; a Pod event then reaches only the Services whose
// slices name that Pod.
class PodIndexTest : public PerServiceTest {
 protected:
  void SetUp() override {
    pods_ = PodList("v1");
    DiscoveryTest::SetUp();
    services_ = kThreeServices;
    slices_ =
        absl::StrCat(Slice("default", "details-x", "details", {"10.1.0.1"}, {"details-1"}), ",",
                     Slice("default", "ratings-x", "ratings", {"10.1.0.2"}, {"ratings-1"}), ",",
                     Slice("shop", "ratings-x", "ratings", {"10.2.0.2"}, {"ratings-1"}));
    discovery_ = Discovery();
    discovery_->Start();
    ASSERT_TRUE(RunUntil(loop_, [&] { return discovery_->synced(); }));
    before_ = registry_.Snapshot()->kubernetes;
    ASSERT_EQ(before_->services.size(), 3u);
    ASSERT_EQ(before_->services[1]->endpoints.size(), 1u);
    ASSERT_EQ(before_->services[1]->endpoints[0].labels.at("version"), "v1");
  }

  // The pods' watch delivers `pods` as MODIFIED in one read (the cluster's list then has
  // default/ratings-1 at v2); returns the publication that follows.
  std::shared_ptr<const registry::KubernetesServices> PodsModified(
      const std::vector<std::string>& pods) {
    EXPECT_TRUE(RunUntil(loop_, [&] { return !pod_watches_.empty(); }));
    std::string events;
    for (const std::string& pod : pods) {
      absl::StrAppend(&events, R"({"type":"MODIFIED","object":)", pod, "}\n");
    }
    pod_watches_.back()(http::ServerResponse::Json(200, events));
    pods_ = PodList("v2");
    EXPECT_TRUE(RunUntil(loop_, [&] { return registry_.Snapshot()->kubernetes != before_; }));
    return registry_.Snapshot()->kubernetes;
  }

  // default/ratings-1 labelled `ratings_version`, the others v1; and a Pod no slice names.
  static std::string PodList(absl::string_view ratings_version) {
    return absl::StrCat(
        R"({"kind":"PartialObjectMetadataList","metadata":{"resourceVersion":"11"},)",
        R"("items":[)", Pod("default", "details-1", "v1"), ",",
        Pod("default", "ratings-1", ratings_version), ",", Pod("shop", "ratings-1", "v1"), ",",
        Pod("default", "lonely", "v1"), "]}");
  }
};

TEST_F(PodIndexTest, APodChangeRebuildsOnlyTheServicesWhoseSlicesNameIt) {
  const uint64_t built = discovery_->services_built();
  EXPECT_EQ(built, 3u);
  // A Pod no slice names, and default/ratings-1 relabelled.
  std::shared_ptr<const registry::KubernetesServices> after =
      PodsModified({Pod("default", "lonely", "v9"), Pod("default", "ratings-1", "v2")});
  // default/ratings alone was built again: shop/ratings-1 is another Pod of the same name.
  EXPECT_EQ(discovery_->services_built() - built, 1u);
  ASSERT_EQ(after->services.size(), 3u);
  EXPECT_EQ(after->services[0], before_->services[0]);
  ASSERT_EQ(after->services[1]->endpoints.size(), 1u);
  EXPECT_EQ(after->services[1]->endpoints[0].labels.at("version"), "v2");
  EXPECT_EQ(after->services[2], before_->services[2]);
  EXPECT_EQ(*Listed(), *after);
}

// A slice that stops naming a Pod: that Pod's later change rebuilds nothing.
TEST_F(PodIndexTest, ASliceThatNoLongerNamesAPodIsNotRebuiltForIt) {
  const std::string changed = Slice("default", "ratings-x", "ratings", {"10.1.0.2"});
  Modified(changed,
           absl::StrCat(Slice("default", "details-x", "details", {"10.1.0.1"}, {"details-1"}), ",",
                        changed, ",",
                        Slice("shop", "ratings-x", "ratings", {"10.2.0.2"}, {"ratings-1"})));
  const uint64_t built = discovery_->services_built();
  before_ = registry_.Snapshot()->kubernetes;
  PodsModified({Pod("default", "ratings-1", "v2"), Pod("default", "details-1", "v2")});
  // default/details (its Pod changed) was built; default/ratings names no Pod any more.
  EXPECT_EQ(discovery_->services_built() - built, 1u);
  EXPECT_EQ(registry_.Snapshot()->kubernetes->services[1], before_->services[1]);
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes
