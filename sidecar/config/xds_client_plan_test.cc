// XdsClient's resources and run plan (xds_client_plan.cc) against a scripted server, in both
// variants: dynamic names may not collide with static ones; a removed resource the configuration
// still names runs on (retained) until nothing names it; endpoints of a cluster not yet there wait
// for it, while a route to it is refused; what is retained is saved and loaded.

#include <array>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_test_util.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

using xds_client_testing::ClusterAny;
using xds_client_testing::XdsClientTest;

// Positions of the types in xds::kResourceTypeUrls (push order).
constexpr size_t kClusters = 1;
constexpr size_t kEndpoints = 2;
constexpr size_t kRoutes = 3;
constexpr size_t kServiceRoutes = 4;
constexpr size_t kListeners = 5;
static_assert(kListeners == xds::kResourceTypeCount - 1);

TEST_F(XdsClientTest, DynamicNamesMustNotCollideWithStaticOnes) {
  ResourceSet static_resources;
  xds::Cluster cluster;
  cluster.set_name("a");
  cluster.mutable_connect_timeout()->set_seconds(1);
  cluster.mutable_load_assignment()->add_endpoints()->set_address("127.0.0.1:9");
  static_resources.clusters.push_back(cluster);
  client_ = MakeClient(static_resources);
  client_->Start();
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount; }));
  server_->Send(ClusterResponse("v1", "n1", {ClusterAny("a")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 1; }));
  EXPECT_NE(server_->requests.back().error_detail().message().find("static_resources"),
            std::string::npos);
  // A different name merges with the static one.
  server_->Send(ClusterResponse("v2", "n2", {ClusterAny("b")}));
  ASSERT_TRUE(RunUntil([&] { return server_->requests.size() == xds::kResourceTypeCount + 2; }));
  EXPECT_FALSE(server_->requests.back().has_error_detail());
  ASSERT_EQ(applied_.size(), 1u);
  EXPECT_EQ(applied_[0].clusters.size(), 2u);
}

// The control plane's view and the sidecar's differ after a reconnect (a restarted control plane
// has sent nothing on the new stream, so it cannot send the union of old and new): its first
// push drops the subset cluster v2 the held route names and brings v1, type by type. Every step
// is applied, v2 runs until no route names it, then goes. State of the world and delta alike.
class XdsRetentionTest : public XdsClientTest, public ::testing::WithParamInterface<bool> {
 protected:
  static constexpr char kAll[] = "outbound|9080||reviews.default";
  static constexpr char kV1[] = "outbound|9080|version=v1|reviews.default";
  static constexpr char kV2[] = "outbound|9080|version=v2|reviews.default";
  using Named = std::pair<std::string, google::protobuf::Any>;

  template <typename Message>
  static Named Pack(const std::string& name, const Message& message) {
    Named named{name, {}};
    named.second.PackFrom(message, "type.googleapis.com");
    return named;
  }
  static Named EdsCluster(const std::string& name) {
    xds::Cluster cluster;
    cluster.set_name(name);
    cluster.set_type(xds::Cluster::EDS);
    return Pack(name, cluster);
  }
  static Named Endpoints(const std::string& cluster, const std::string& address) {
    xds::ClusterLoadAssignment assignment;
    assignment.set_cluster_name(cluster);
    assignment.add_endpoints()->set_address(address);
    return Pack(cluster, assignment);
  }
  // Route configuration "outbound": reviews to `cluster`, everything else to kAll.
  static Named Routes(const std::string& cluster) {
    xds::RouteConfiguration routes;
    routes.set_name("outbound");
    xds::VirtualHost* reviews = routes.add_virtual_hosts();
    reviews->set_name("reviews");
    reviews->add_domains("reviews");
    xds::Route* route = reviews->add_routes();
    route->mutable_match()->set_prefix("/");
    route->mutable_route()->set_cluster(cluster);
    xds::VirtualHost* rest = routes.add_virtual_hosts();
    rest->set_name("rest");
    rest->add_domains("*");
    route = rest->add_routes();
    route->mutable_match()->set_prefix("/");
    route->mutable_route()->set_cluster(kAll);
    return Pack("outbound", routes);
  }
  static Named Listener() {
    xds::Listener listener;
    listener.set_name("outbound");
    listener.set_address("127.0.0.1:0");
    listener.set_protocol(xds::PROTOCOL_HTTP);
    listener.set_route_config_name("outbound");
    return Pack("outbound", listener);
  }

  void StartClient() {
    client_ = MakeClient({}, /*delta=*/GetParam());
    client_->Start();
    ASSERT_TRUE(RunUntil([&] { return Answers() == xds::kResourceTypeCount; }));
  }
  size_t Answers() const {
    return GetParam() ? server_->delta_requests.size() : server_->requests.size();
  }
  // Sends `resources` as the whole of the type at `index`: state of the world as it is, delta as
  // the resources and the removals of what the last push of the type had and these lack. Returns
  // the answer's error text: empty for an ACK.
  std::string Push(size_t index, std::vector<Named> resources) {
    const std::string nonce = absl::StrCat("n", ++nonces_);
    std::map<std::string, google::protobuf::Any>& last = sent_[index];
    if (GetParam()) {
      xds::DeltaDiscoveryResponse response;
      response.set_type_url(xds::kResourceTypeUrls[index]);
      response.set_nonce(nonce);
      for (const std::string& type_url : served_types_) response.add_served_types(type_url);
      std::map<std::string, google::protobuf::Any> next(resources.begin(), resources.end());
      for (const auto& [name, any] : last) {
        if (!next.contains(name)) response.add_removed_resources(name);
      }
      for (const auto& [name, any] : resources) {
        xds::Resource* r = response.add_resources();
        r->set_name(name);
        *r->mutable_resource() = any;
      }
      last = std::move(next);
      server_->Send(response);
    } else {
      xds::DiscoveryResponse response;
      response.set_type_url(xds::kResourceTypeUrls[index]);
      response.set_version_info(absl::StrCat("version-", nonce));
      response.set_nonce(nonce);
      for (const std::string& type_url : served_types_) response.add_served_types(type_url);
      for (const auto& [name, any] : resources) *response.add_resources() = any;
      server_->Send(response);
    }
    const size_t before = Answers();
    if (!RunUntil([&] { return Answers() == before + 1; })) return "no answer";
    if (GetParam()) {
      const xds::DeltaDiscoveryRequest& answer = server_->delta_requests.back();
      EXPECT_EQ(answer.response_nonce(), nonce);
      return answer.error_detail().message();
    }
    const xds::DiscoveryRequest& answer = server_->requests.back();
    EXPECT_EQ(answer.response_nonce(), nonce);
    // An ACK carries the new version, a NACK the one that still runs.
    EXPECT_EQ(answer.version_info() == absl::StrCat("version-", nonce), !answer.has_error_detail());
    return answer.error_detail().message();
  }
  // The sidecar holds a route to v2 (with its cluster and endpoints), then its stream ends and a
  // new one starts.
  void HoldRouteToV2ThenReconnect() {
    ASSERT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV2)}), "");
    ASSERT_EQ(
        Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV2, "127.0.0.2:9080")}),
        "");
    ASSERT_EQ(Push(kRoutes, {Routes(kV2)}), "");
    ASSERT_EQ(Push(kListeners, {Listener()}), "");
    server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "restarting");
    ASSERT_TRUE(RunUntil([&] { return Answers() == 2 * xds::kResourceTypeCount + 4; }));
  }
  // In name order.
  static std::vector<std::string> Names(const auto& list, auto name_of) {
    std::vector<std::string> names;
    for (const auto& m : list) names.push_back(name_of(m));
    std::sort(names.begin(), names.end());
    return names;
  }
  std::vector<std::string> RunningClusters() const {
    return Names(applied_.back().clusters, [](const xds::Cluster& c) { return c.name(); });
  }
  std::vector<std::string> RunningEndpoints() const {
    return Names(applied_.back().endpoints,
                 [](const xds::ClusterLoadAssignment& c) { return c.cluster_name(); });
  }
  int64_t Gauge(absl::string_view name, const LabelSet& labels = {}) const {
    const StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? -1 : series->gauge;
  }

  // The ServiceRoute of ratings:9080, joining "outbound", to kV1.
  static xds::ServiceRoute Ratings() {
    xds::ServiceRoute ratings;
    ratings.set_name("ratings.default:9080");
    ratings.set_route_config_name("outbound");
    xds::VirtualHost* vhost = ratings.mutable_virtual_host();
    vhost->set_name("ratings.default:9080");
    vhost->add_domains("ratings");
    xds::Route* route = vhost->add_routes();
    route->mutable_match()->set_prefix("/");
    route->mutable_route()->set_cluster(kV1);
    return ratings;
  }
  // Clusters kAll and kV1 with their endpoints, the table "outbound" to kAll, `service_routes`
  // and the listener.
  void PushWithServiceRoutes(std::vector<Named> service_routes) {
    ASSERT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV1)}), "");
    ASSERT_EQ(
        Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "127.0.0.1:9081")}),
        "");
    ASSERT_EQ(Push(kRoutes, {Routes(kAll)}), "");
    ASSERT_EQ(Push(kServiceRoutes, std::move(service_routes)), "");
    ASSERT_EQ(Push(kListeners, {Listener()}), "");
  }
  // Ends the stream; the client opens a new one and subscribes again.
  void Reconnect() {
    const size_t before = Answers();
    server_->calls.back()->Finish(http::grpc::StatusCode::kUnavailable, "restarting");
    ASSERT_TRUE(RunUntil([&] { return Answers() == before + xds::kResourceTypeCount; }));
  }

  int nonces_ = 0;
  std::array<std::map<std::string, google::protobuf::Any>, xds::kResourceTypeCount> sent_;
  // served_types of every response Push sends (empty: a control plane from before the field).
  std::vector<std::string> served_types_;
};

TEST_P(XdsRetentionTest, ARemovedClusterARouteStillNamesRunsUntilTheRouteMoves) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(HoldRouteToV2ThenReconnect());

  // Clusters without v2 (the route still names it) and with v1: applied, v2 kept as it ran.
  const ResourceList<xds::Cluster>::Pointer v2 = applied_.back().clusters.shared(0);
  ASSERT_EQ(v2->name(), kV2);
  EXPECT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(applied_.back().clusters.shared(2), v2);  // after the held ones, as it ran
  EXPECT_EQ(client_->retained(1), std::vector<std::string>{kV2});
  EXPECT_EQ(Gauge("meshlet_xds_client_retained_resources", {{"type", "clusters"}}), 1);
  // Endpoints without v2's and with v1's: v2 keeps those it ran with.
  EXPECT_EQ(Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "127.0.0.1:9081")}),
            "");
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(client_->retained(2), std::vector<std::string>{kV2});
  EXPECT_NE(client_->StatusJson().find(absl::StrCat("\"retained\":[\"", kV2, "\"]")),
            std::string::npos)
      << client_->StatusJson();
  // The route moves to v1: v2 is named by nothing any more and goes, with its endpoints.
  EXPECT_EQ(Push(kRoutes, {Routes(kV1)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kAll}));
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i)
    EXPECT_TRUE(client_->retained(i).empty()) << i;
  EXPECT_EQ(Gauge("meshlet_xds_client_retained_resources", {{"type", "clusters"}}), 0);
  EXPECT_EQ(client_->rejected_updates(), 0u);
  EXPECT_TRUE(BuildSnapshot(client_->CurrentResources()).ok());
}

// A ServiceRoute names clusters as a route configuration does: a cluster only a ServiceRoute
// names runs on after the control plane removed it, and goes with the ServiceRoute.
TEST_P(XdsRetentionTest, ClusterNamedOnlyByServiceRouteIsRetained) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  const xds::ServiceRoute ratings = Ratings();
  ASSERT_NO_FATAL_FAILURE(PushWithServiceRoutes({Pack(ratings.name(), ratings)}));
  ASSERT_EQ(applied_.back().service_routes.size(), 1u);
  // Held as the bytes received, translated and planned without keeping a parsed message: the
  // plan reads the names they refer to from what is kept beside the bytes.
  {
    const ResourceSet& held = applied_.back();
    EXPECT_NE(held.service_routes.shared(0)->bytes(), nullptr);
    EXPECT_FALSE(held.service_routes.shared(0)->holds_message());
    ASSERT_FALSE(held.clusters.empty());
    for (size_t i = 0; i < held.clusters.size(); ++i) {
      EXPECT_NE(held.clusters.shared(i)->bytes(), nullptr) << held.clusters.name(i);
      EXPECT_FALSE(held.clusters.shared(i)->holds_message()) << held.clusters.name(i);
    }
  }

  // The control plane drops v1 while the ServiceRoute still names it: applied, v1 kept.
  EXPECT_EQ(Push(kClusters, {EdsCluster(kAll)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(client_->retained(kClusters), std::vector<std::string>{kV1});
  EXPECT_EQ(Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080")}), "");
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kAll}));
  // The ServiceRoute goes: nothing names v1 any more.
  EXPECT_EQ(Push(kServiceRoutes, {}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kAll}));
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kAll}));
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    EXPECT_TRUE(client_->retained(i).empty()) << i;
  }
  EXPECT_EQ(client_->rejected_updates(), 0u);
}

// A load assignment is held as its bytes, compressed (held_bytes.h): a service's endpoints
// repeat their labels and identity, and the assignment is kept in a fraction of what it was
// received as; what is saved (and dumped) is the bytes as received.
TEST_P(XdsRetentionTest, LoadAssignmentHeldCompressedAndSavedAsReceived) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(PushWithServiceRoutes({}));
  xds::ClusterLoadAssignment assignment;
  assignment.set_cluster_name(kV1);
  for (int i = 0; i < 15; ++i) {
    xds::Endpoint* e = assignment.add_endpoints();
    e->set_address(absl::StrFormat("127.0.1.%d:9080", i + 1));
    (*e->mutable_labels())["app"] = "reviews";
    (*e->mutable_labels())["version"] = "v1";
    e->set_identity("spiffe://cluster.local/ns/default/sa/reviews");
  }
  const Named pushed = Pack(kV1, assignment);
  ASSERT_EQ(Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080"), pushed}), "");
  const ResourceSet& held = applied_.back();
  size_t v1 = 0;
  while (v1 < held.endpoints.size() && held.endpoints.name(v1) != kV1) ++v1;
  ASSERT_LT(v1, held.endpoints.size());
  const HeldBytes* bytes = held.endpoints.shared(v1)->bytes();
  ASSERT_NE(bytes, nullptr);
  EXPECT_TRUE(bytes->compressed());
  EXPECT_EQ(bytes->size(), pushed.second.value().size());
  EXPECT_LT(bytes->held_size(), pushed.second.value().size() / 4)
      << bytes->held_size() << " of " << pushed.second.value().size();
  EXPECT_EQ(held.endpoints[v1].endpoints_size(), 15);

  xds::CachedConfiguration saved;
  ASSERT_TRUE(saved.ParseFromString(client_->SavedConfiguration()));
  bool found = false;
  for (const xds::DiscoveryResponse& type : saved.types()) {
    if (type.type_url() != xds::kResourceTypeUrls[kEndpoints]) continue;
    for (const google::protobuf::Any& any : type.resources()) {
      if (any.value() == pushed.second.value()) found = true;
    }
  }
  EXPECT_TRUE(found) << "the assignment is saved as received";
}

// ServiceRoutes held from a control plane that serves them are dropped when a stream's first
// response comes from one that does not (the previous release, which sends every host inline in
// the route table): its table then does not collide with them. A control plane that lists the
// type in served_types keeps them.
TEST_P(XdsRetentionTest, HeldServiceRoutesDroppedByAControlPlaneThatDoesNotServeThem) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  served_types_.assign(xds::kResourceTypeUrls.begin(), xds::kResourceTypeUrls.end());
  const xds::ServiceRoute ratings = Ratings();
  ASSERT_NO_FATAL_FAILURE(PushWithServiceRoutes({Pack(ratings.name(), ratings)}));

  // A control plane of this release: kept.
  ASSERT_NO_FATAL_FAILURE(Reconnect());
  ASSERT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  ASSERT_EQ(applied_.back().service_routes.size(), 1u);

  // One of the previous release: the first response drops them; its table, with ratings inline,
  // is accepted.
  served_types_.clear();
  ASSERT_NO_FATAL_FAILURE(Reconnect());
  ASSERT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  EXPECT_TRUE(applied_.back().service_routes.empty());
  Named inline_table = Routes(kAll);
  xds::RouteConfiguration table;
  ASSERT_TRUE(inline_table.second.UnpackTo(&table));
  *table.add_virtual_hosts() = ratings.virtual_host();
  EXPECT_EQ(Push(kRoutes, {Pack("outbound", table)}), "");
  EXPECT_EQ(client_->rejected_updates(), 0u);
  EXPECT_TRUE(BuildSnapshot(client_->CurrentResources()).ok());
}

// Endpoints may come before their cluster (its update refused, or another order): they are held
// aside, not refused, and used once the cluster arrives. A route to a cluster that is not there

TEST_P(XdsRetentionTest, EndpointsOfAnUnknownClusterWaitForItButARouteToItIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(HoldRouteToV2ThenReconnect());

  EXPECT_EQ(Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "127.0.0.1:9081")}),
            "");
  EXPECT_EQ(client_->unmatched_assignments(), std::vector<std::string>{kV1});
  EXPECT_EQ(Gauge("meshlet_xds_client_unmatched_load_assignments"), 1);
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV2, kAll}));  // v2 still named

  const std::string refused = Push(kRoutes, {Routes(kV1)});
  EXPECT_NE(refused.find(absl::StrCat("\"", kV1, "\" names no Cluster")), std::string::npos)
      << refused;

  // Held aside, the endpoints are still checked.
  const std::string bad =
      Push(kEndpoints, {Endpoints(kAll, "127.0.0.1:9080"), Endpoints(kV1, "nowhere")});
  EXPECT_NE(bad.find(absl::StrCat("cluster_load_assignment \"", kV1, "\": endpoints[0].address")),
            std::string::npos)
      << bad;

  EXPECT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  EXPECT_TRUE(client_->unmatched_assignments().empty());
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(Push(kRoutes, {Routes(kV1)}), "");
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV1, kAll}));
  EXPECT_EQ(Gauge("meshlet_xds_client_unmatched_load_assignments"), 0);
}

// An endpoints response plans from what it changes (retained while its cluster runs, left out
// without one), not by walking every held assignment and cluster: 1 000 held, a delta response
// changing two names visits tens of entries (the full pass visited over 4 000).
TEST_P(XdsRetentionTest, AnEndpointsUpdatePlansPerChangedNameNotPerHeldName) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  std::vector<Named> clusters;
  std::vector<Named> endpoints;
  for (int i = 0; i <= 1000; ++i) {
    const std::string name = absl::StrFormat("c%04d", i);
    clusters.push_back(EdsCluster(name));
    if (i < 1000) endpoints.push_back(Endpoints(name, "127.0.0.1:9080"));
  }
  ASSERT_EQ(Push(kClusters, clusters), "");
  ASSERT_EQ(Push(kEndpoints, endpoints), "");

  // Two assignments change. The count follows the held maps' shape (treaps whose priorities
  // hash the names with a per-process seed): a changed value copies one path, tens of entries
  // whatever the seed. (A name inserted or removed may also rotate a subtree, which Diff then
  // walks: up to 500 entries in 150 runs of the test, hence not measured here.)
  endpoints[500] = Endpoints("c0500", "127.0.0.1:9081");
  endpoints[1] = Endpoints("c0001", "127.0.0.1:9081");
  const uint64_t before = client_->entries_visited();
  ASSERT_EQ(Push(kEndpoints, endpoints), "");
  if (GetParam()) {
    EXPECT_LT(client_->entries_visited() - before, 200u);
  }
  endpoints.push_back(Endpoints("c1000", "127.0.0.1:9080"));
  ASSERT_EQ(Push(kEndpoints, endpoints), "");
  EXPECT_TRUE(client_->retained(kEndpoints).empty());
  EXPECT_TRUE(client_->unmatched_assignments().empty());
  EXPECT_EQ(RunningEndpoints().size(), 1001u);

  // c1000 goes (its cluster runs: retained), "orphan" comes (no cluster: left out); then
  // "orphan" goes and "orphan2" comes.
  endpoints.pop_back();
  endpoints.push_back(Endpoints("orphan", "127.0.0.1:9080"));
  ASSERT_EQ(Push(kEndpoints, endpoints), "");
  EXPECT_EQ(client_->retained(kEndpoints), std::vector<std::string>{"c1000"});
  EXPECT_EQ(client_->unmatched_assignments(), std::vector<std::string>{"orphan"});
  endpoints.back() = Endpoints("orphan2", "127.0.0.1:9080");
  ASSERT_EQ(Push(kEndpoints, endpoints), "");
  EXPECT_EQ(client_->retained(kEndpoints), std::vector<std::string>{"c1000"});
  EXPECT_EQ(client_->unmatched_assignments(), std::vector<std::string>{"orphan2"});
  EXPECT_EQ(RunningEndpoints().size(), 1001u);
  // Sent again, a retained assignment runs as sent and is no longer retained.
  endpoints.push_back(Endpoints("c1000", "127.0.0.1:9083"));
  ASSERT_EQ(Push(kEndpoints, endpoints), "");
  EXPECT_TRUE(client_->retained(kEndpoints).empty());
  EXPECT_EQ(RunningEndpoints().size(), 1001u);

  // A changed assignment held aside is checked again; one unchanged is not refused.
  endpoints[1000] = Endpoints("orphan2", "nowhere");
  const std::string bad = Push(kEndpoints, endpoints);
  EXPECT_NE(bad.find("cluster_load_assignment \"orphan2\": endpoints[0].address"),
            std::string::npos)
      << bad;
  endpoints[1000] = Endpoints("orphan2", "127.0.0.1:9080");
  endpoints[1] = Endpoints("c0001", "127.0.0.1:9082");
  EXPECT_EQ(Push(kEndpoints, endpoints), "");
  EXPECT_EQ(client_->unmatched_assignments(), std::vector<std::string>{"orphan2"});
}

TEST_P(XdsRetentionTest, RetainedResourcesAreSavedAndLoaded) {
  ASSERT_NO_FATAL_FAILURE(StartClient());
  ASSERT_NO_FATAL_FAILURE(HoldRouteToV2ThenReconnect());
  ASSERT_EQ(Push(kClusters, {EdsCluster(kAll), EdsCluster(kV1)}), "");
  client_.reset();
  applied_.clear();

  client_ = MakeClient({}, /*delta=*/GetParam());
  ASSERT_EQ(client_->LoadCache(), absl::OkStatus());
  EXPECT_EQ(RunningClusters(), (std::vector<std::string>{kV1, kV2, kAll}));
  EXPECT_EQ(client_->retained(1), std::vector<std::string>{kV2});
  EXPECT_EQ(RunningEndpoints(), (std::vector<std::string>{kV2, kAll}));
}

INSTANTIATE_TEST_SUITE_P(Variants, XdsRetentionTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Delta" : "StateOfTheWorld";
                         });

}  // namespace
}  // namespace meshlet::sidecar::config
