// The ADS server over real sockets on 127.0.0.1, driven by meshlet's gRPC client: push order,
// make-before-break removals, ACK/NACK accounting, NACKed versions not re-pushed, debounce,
// throttling, delta, observer calls, readiness reports and metrics.

#include "control-plane/xds/ads_server.h"

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "xds/capabilities.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::ads {
namespace {

using std::chrono::milliseconds;

constexpr auto kClusters = ResourceType::kCluster;
constexpr auto kEndpoints = ResourceType::kEndpoint;
constexpr auto kRoutes = ResourceType::kRoute;
constexpr auto kServiceRoutes = ResourceType::kServiceRoute;
constexpr auto kListeners = ResourceType::kListener;

xds::Cluster Cluster(const std::string& name, int timeout_seconds = 1) {
  xds::Cluster cluster;
  cluster.set_name(name);
  cluster.mutable_connect_timeout()->set_seconds(timeout_seconds);
  return cluster;
}

xds::RouteConfiguration Route(const std::string& name, const std::string& cluster) {
  xds::RouteConfiguration route;
  route.set_name(name);
  auto* vhost = route.add_virtual_hosts();
  vhost->set_name("all");
  vhost->add_domains("*");
  auto* r = vhost->add_routes();
  r->mutable_match()->set_prefix("/");
  r->mutable_route()->set_cluster(cluster);
  return route;
}

xds::Listener Listener(const std::string& name, const std::string& route) {
  xds::Listener listener;
  listener.set_name(name);
  listener.set_address("127.0.0.1:0");
  listener.set_route_config_name(route);
  return listener;
}

class RecordingObserver : public ProxyObserver {
 public:
  void OnProxyConnected(const xds::Node& node) override {
    connected.push_back(node.id());
    events.push_back("connected " + node.id());
  }
  void OnProxyDisconnected(const std::string& id) override { disconnected.push_back(id); }
  void OnProxyActivity(const std::string&) override { ++activity; }
  void OnProxyReadiness(const std::string& id, bool ready, const std::string& reason) override {
    events.push_back(
        absl::StrCat(ready ? "ready " : "not ready ", id, reason.empty() ? "" : ": ", reason));
  }
  std::vector<std::string> connected;
  int activity = 0;
  std::vector<std::string> disconnected;
  // Connections and readiness reports, in order.
  std::vector<std::string> events;
};

xds::WorkloadReadiness Readiness(bool ready, const std::string& reason = "") {
  xds::WorkloadReadiness readiness;
  readiness.set_ready(ready);
  readiness.set_reason(reason);
  return readiness;
}

// A state-of-the-world client stream that records every response.
struct SotwClient {
  std::shared_ptr<http::grpc::ClientCall> call;
  std::vector<xds::DiscoveryResponse> responses;
  bool finished = false;

  // The first request carries the Node and, when given, `readiness`.
  void Subscribe(std::initializer_list<ResourceType> types, const std::string& node_id,
                 std::optional<xds::WorkloadReadiness> readiness = std::nullopt) {
    bool first = true;
    for (ResourceType type : types) {
      xds::DiscoveryRequest request;
      if (first) request.mutable_node()->set_id(node_id);
      if (first && readiness) *request.mutable_readiness() = *readiness;
      first = false;
      request.set_type_url(std::string(TypeUrl(type)));
      call->SendProto(request);
    }
  }
  void Answer(const xds::DiscoveryResponse& response, const std::string& nack = "") {
    xds::DiscoveryRequest request;
    request.set_type_url(response.type_url());
    request.set_response_nonce(response.nonce());
    request.set_version_info(response.version_info());
    if (!nack.empty()) {
      request.mutable_error_detail()->set_code(3);
      request.mutable_error_detail()->set_message(nack);
    }
    call->SendProto(request);
  }
  // A report of readiness alone, as a sidecar sends it when it starts draining.
  void ReportReadiness(const xds::WorkloadReadiness& readiness) {
    xds::DiscoveryRequest request;
    request.set_type_url(std::string(xds::kReadinessTypeUrl));
    *request.mutable_readiness() = readiness;
    call->SendProto(request);
  }
};

struct DeltaClient {
  std::shared_ptr<http::grpc::ClientCall> call;
  std::vector<xds::DeltaDiscoveryResponse> responses;

  // A first request: the Node, a wildcard subscription to `type` and, when given, `readiness`.
  void Subscribe(ResourceType type, const std::string& node_id,
                 std::optional<xds::WorkloadReadiness> readiness = std::nullopt) {
    xds::DeltaDiscoveryRequest request;
    request.mutable_node()->set_id(node_id);
    request.set_type_url(std::string(TypeUrl(type)));
    if (readiness) *request.mutable_readiness() = *readiness;
    call->SendProto(request);
  }
  // A later request on the stream: subscribes to `subscribe` and unsubscribes `unsubscribe` of
  // `type` (a type's first request with neither is a wildcard subscription).
  void SubscribeMore(ResourceType type, std::vector<std::string> subscribe,
                     std::vector<std::string> unsubscribe = {}) {
    xds::DeltaDiscoveryRequest request;
    request.set_type_url(std::string(TypeUrl(type)));
    for (std::string& name : subscribe) request.add_resource_names_subscribe(std::move(name));
    for (std::string& name : unsubscribe) request.add_resource_names_unsubscribe(std::move(name));
    call->SendProto(request);
  }
  // Lookup keys subscribed (ADR 0086).
  void Lookup(std::vector<std::string> keys) {
    SubscribeMore(ResourceType::kServiceRoute, std::move(keys));
  }
  void Ack(const xds::DeltaDiscoveryResponse& response) {
    xds::DeltaDiscoveryRequest request;
    request.set_type_url(response.type_url());
    request.set_response_nonce(response.nonce());
    call->SendProto(request);
  }
  void Nack(const xds::DeltaDiscoveryResponse& response) {
    xds::DeltaDiscoveryRequest request;
    request.set_type_url(response.type_url());
    request.set_response_nonce(response.nonce());
    request.mutable_error_detail()->set_code(3);
    request.mutable_error_detail()->set_message("refused");
    call->SendProto(request);
  }
};

class AdsServerTest : public ::testing::Test {
 protected:
  void StartServer(AdsServerOptions options = {}) {
    grpc_server_ = std::make_unique<http::grpc::Server>(loop_);
    ads_ = std::make_unique<AdsServer>(
        loop_, stats_,
        [this](const GenerateRequest& request) -> absl::StatusOr<NodeResourceSet> {
          ++generated_;
          previous_bases_.push_back(request.previous != nullptr ? request.previous->basis.get()
                                                                : nullptr);
          generated_keys_.clear();
          for (absl::string_view key : request.keys) generated_keys_.emplace_back(key);
          NodeResourceSet out = resources_;
          // Lookups: a key of lookups_ finds its ServiceRoute and adds its Service's resources.
          for (absl::string_view key : request.keys) {
            KeyAnswer& answer = out.key_answers[std::string(key)];
            auto found = lookups_.find(key);
            if (found == lookups_.end()) continue;
            answer = KeyAnswer{.result = KeyResult::kFound, .service_route = found->second};
            const NodeResourceSet& service = services_.at(found->second);
            for (ResourceType type : kPushOrder) {
              for (const auto& [name, resource] : service.of(type)) {
                out.of(type).emplace(name, resource);
              }
            }
          }
          out.basis = basis_;
          // An extending generator keeps the answers of the keys the previous set answered.
          if (keep_answers_ && request.previous != nullptr) {
            out.answers_kept = request.previous->key_answers.size();
          }
          return out;
        },
        options);
    ads_->SetObserver(&observer_);
    ASSERT_TRUE(ads_->Register(*grpc_server_).ok());
    ASSERT_TRUE(grpc_server_->Start(*net::Address::Parse("127.0.0.1:0")).ok());
    channel_ = std::make_unique<http::grpc::Channel>(loop_, grpc_server_->address());
  }

  void TearDown() override {
    clients_.clear();
    delta_clients_.clear();
    channel_.reset();
    if (ads_) ads_->Stop();
    grpc_server_.reset();
    ads_.reset();
    loop_.RunUntilIdle();
  }

  void SetResources(std::vector<xds::Cluster> clusters, std::vector<xds::RouteConfiguration> routes,
                    std::vector<xds::Listener> listeners) {
    NodeResourceSet set;
    for (const auto& c : clusters) set.Add(kClusters, c.name(), c);
    for (const auto& r : routes) set.Add(kRoutes, r.name(), r);
    for (const auto& l : listeners) set.Add(kListeners, l.name(), l);
    resources_ = set;
  }

  SotwClient& NewClient() {
    auto client = std::make_unique<SotwClient>();
    SotwClient* raw = client.get();
    raw->call = channel_->StartCall(xds::kStreamMethod);
    raw->call->OnProtoMessage<xds::DiscoveryResponse>(
        [raw](xds::DiscoveryResponse r) { raw->responses.push_back(std::move(r)); });
    raw->call->OnFinish([raw](http::grpc::StatusCode, const std::string&, const http::HeaderMap&) {
      raw->finished = true;
    });
    clients_.push_back(std::move(client));
    return *raw;
  }

  DeltaClient& NewDeltaClient() {
    auto client = std::make_unique<DeltaClient>();
    DeltaClient* raw = client.get();
    raw->call = channel_->StartCall(xds::kDeltaMethod);
    raw->call->OnProtoMessage<xds::DeltaDiscoveryResponse>(
        [raw](xds::DeltaDiscoveryResponse r) { raw->responses.push_back(std::move(r)); });
    delta_clients_.push_back(std::move(client));
    return *raw;
  }

  bool RunUntil(std::function<bool()> done, Duration timeout = std::chrono::seconds(5)) {
    return loop_.RunUntil([&] { return done(); }, timeout);
  }
  // Runs the loop for `d` (a timer wakes it, so an idle loop does not sleep past the end).
  void RunFor(Duration d) {
    bool done = false;
    event::Timer wake(loop_, [&] { done = true; });
    wake.Enable(d);
    loop_.RunUntil([&] { return done; }, d + milliseconds(500));
  }

  const TypeStatus* Status(const std::string& id, ResourceType type) {
    statuses_ = ads_->ProxyStatuses();
    for (const ProxyStatus& s : statuses_) {
      if (s.id != id) continue;
      for (const TypeStatus& t : s.types) {
        if (t.type == TypeLabel(type)) return &t;
      }
    }
    return nullptr;
  }

  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  // A Service that lookups may find: its cluster and load assignment `<service>`, its
  // ServiceRoute `<service>.shop:80`, found by the key `host:<service>.shop`.
  std::string AddService(const std::string& service) {
    const std::string route = service + ".shop:80";
    NodeResourceSet set;
    set.Add(kClusters, service, Cluster(service));
    xds::ClusterLoadAssignment endpoints;
    endpoints.set_cluster_name(service);
    set.Add(kEndpoints, service, endpoints);
    xds::ServiceRoute service_route;
    service_route.set_name(route);
    service_route.set_route_config_name("outbound");
    service_route.mutable_virtual_host()->set_name(route);
    service_route.mutable_virtual_host()->add_domains(service + ".shop");
    set.Add(kServiceRoutes, route, service_route);
    services_[route] = std::move(set);
    lookups_["host:" + service + ".shop"] = route;
    return route;
  }

  // A delta client subscribed (wildcard) to clusters, endpoints and ServiceRoutes, its first push
  // answered: its three responses ACKed.
  DeltaClient& ReadyDeltaClient(const std::string& node_id) {
    DeltaClient& client = NewDeltaClient();
    client.Subscribe(kClusters, node_id);
    client.SubscribeMore(kEndpoints, {});
    client.SubscribeMore(kServiceRoutes, {"*"});
    EXPECT_TRUE(RunUntil([&] { return client.responses.size() == 3; }));
    for (const auto& response : client.responses) client.Ack(response);
    EXPECT_TRUE(RunUntil([&] { return ads_->pushes_in_flight() == 0; }));
    return client;
  }

  const ProxyStatus* StatusOf(const std::string& id) {
    statuses_ = ads_->ProxyStatuses();
    for (const ProxyStatus& s : statuses_) {
      if (s.id == id) return &s;
    }
    return nullptr;
  }

  uint64_t Lookups(const std::string& result) {
    return Counter("meshlet_xds_on_demand_lookups_total", {{"result", result}});
  }

  event::Loop loop_;
  StatsRegistry stats_;
  NodeResourceSet resources_;
  // What lookups find: key → ServiceRoute name, ServiceRoute name → its Service's resources.
  std::map<std::string, std::string, std::less<>> lookups_;
  std::map<std::string, NodeResourceSet> services_;
  // The keys of the last GenerateRequest.
  std::vector<std::string> generated_keys_;
  int generated_ = 0;
  // Left in every set generated (NodeResourceSet::basis), and the basis of each request's
  // previous set (null: none handed back).
  std::shared_ptr<GeneratorBasis> basis_;
  std::vector<GeneratorBasis*> previous_bases_;
  // Whether sets say they keep the previous set's answers (NodeResourceSet::answers_kept).
  bool keep_answers_ = false;
  RecordingObserver observer_;
  std::unique_ptr<http::grpc::Server> grpc_server_;
  std::unique_ptr<AdsServer> ads_;
  std::unique_ptr<http::grpc::Channel> channel_;
  std::vector<std::unique_ptr<SotwClient>> clients_;
  std::vector<std::unique_ptr<DeltaClient>> delta_clients_;
  std::vector<ProxyStatus> statuses_;
};

TEST_F(AdsServerTest, PushesInDependencyOrderAndTracksAcks) {
  StartServer();
  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  SotwClient& client = NewClient();
  // Subscribed in the "wrong" order; pushed clusters → routes → listeners.
  client.Subscribe({kListeners, kRoutes, kClusters}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 3; }));
  EXPECT_EQ(client.responses[0].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(client.responses[1].type_url(), TypeUrl(kRoutes));
  EXPECT_EQ(client.responses[2].type_url(), TypeUrl(kListeners));
  EXPECT_EQ(client.responses[0].version_info(), TypeVersion(resources_.of(kClusters)));
  // The stream's first response says which types this control plane serves; no other does.
  EXPECT_EQ(std::vector<std::string>(client.responses[0].served_types().begin(),
                                     client.responses[0].served_types().end()),
            std::vector<std::string>(xds::kResourceTypeUrls.begin(), xds::kResourceTypeUrls.end()));
  EXPECT_EQ(client.responses[1].served_types_size(), 0);
  EXPECT_EQ(client.responses[2].served_types_size(), 0);
  EXPECT_EQ(observer_.connected, std::vector<std::string>{"node-1"});
  EXPECT_EQ(Status("node-1", kClusters)->state, "PENDING");
  for (const auto& response : client.responses) client.Answer(response);
  ASSERT_TRUE(RunUntil([&] { return Status("node-1", kListeners)->state == "ACKED"; }));
  EXPECT_EQ(Status("node-1", kClusters)->acked_version, client.responses[0].version_info());
  EXPECT_EQ(observer_.activity, 2 + 3);  // two more subscriptions, three ACKs
  EXPECT_EQ(Status("node-1", ResourceType::kEndpoint)->state, "UNSUBSCRIBED");
  EXPECT_EQ(Counter("meshlet_xds_pushes_total", {{"type", "clusters"}}), 1u);
  EXPECT_EQ(Counter("meshlet_xds_acks_total", {{"type", "listeners"}}), 1u);
  EXPECT_EQ(ads_->pushes_in_flight(), 0u);
  EXPECT_EQ(stats_
                .HistogramValue(
                    *stats_.RegisterHistogram("meshlet_xds_convergence_seconds",
                                              "Time from a change to the sidecar's ACK of every "
                                              "response carrying it.",
                                              {}, HistogramOptions{.exposition_divisor = 1e6}))
                .count(),
            1u);

  // An unchanged node gets nothing on a change round.
  ads_->NotifyChanged();
  RunFor(milliseconds(300));
  EXPECT_EQ(ads_->push_rounds(), 1u);
  EXPECT_EQ(client.responses.size(), 3u);
}

TEST_F(AdsServerTest, RemovalsGoOutAfterTheReferencesAreGone) {
  StartServer();
  SetResources({Cluster("a"), Cluster("b")}, {Route("r", "b")}, {Listener("l", "r")});
  SotwClient& client = NewClient();
  client.Subscribe({kClusters, kRoutes, kListeners}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 3; }));
  for (const auto& response : client.responses) client.Answer(response);
  ASSERT_TRUE(RunUntil([&] { return ads_->pushes_in_flight() == 0; }));

  // Drop cluster b and point the route at a: routes first, then clusters without b.
  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 5; }));
  EXPECT_EQ(client.responses[3].type_url(), TypeUrl(kRoutes));
  EXPECT_EQ(client.responses[4].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(client.responses[4].resources_size(), 1);

  // Add cluster c and point the route at it: clusters (a, c) first, then routes.
  SetResources({Cluster("a"), Cluster("c")}, {Route("r", "c")}, {Listener("l", "r")});
  client.Answer(client.responses[3]);
  client.Answer(client.responses[4]);
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 7; }));
  EXPECT_EQ(client.responses[5].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(client.responses[5].resources_size(), 2);
  EXPECT_EQ(client.responses[6].type_url(), TypeUrl(kRoutes));
}

TEST_F(AdsServerTest, NackedVersionIsKeptAndNotPushedAgain) {
  StartServer();
  SetResources({Cluster("a")}, {}, {});
  SotwClient& client = NewClient();
  client.Subscribe({kClusters}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  client.Answer(client.responses[0], "cluster \"a\": connect_timeout: too short");
  ASSERT_TRUE(RunUntil([&] { return Status("node-1", kClusters)->state == "NACKED"; }));
  const TypeStatus* status = Status("node-1", kClusters);
  ASSERT_TRUE(status->last_nack.has_value());
  EXPECT_EQ(status->last_nack->message, "cluster \"a\": connect_timeout: too short");
  EXPECT_EQ(status->last_nack->version, client.responses[0].version_info());
  EXPECT_EQ(Counter("meshlet_xds_nacks_total", {{"type", "clusters"}}), 1u);

  // Change rounds with the same content: nothing is sent again.
  for (int i = 0; i < 3; ++i) {
    ads_->NotifyChanged();
    RunFor(milliseconds(150));
  }
  EXPECT_EQ(client.responses.size(), 1u);
  EXPECT_GE(generated_, 2);

  // A fixed resource goes out; its ACK clears the NACKED state, the text stays.
  SetResources({Cluster("a", 2)}, {}, {});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 2; }));
  client.Answer(client.responses[1]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-1", kClusters)->state == "ACKED"; }));
  EXPECT_TRUE(Status("node-1", kClusters)->last_nack.has_value());
}

TEST_F(AdsServerTest, StaleNoncesAreIgnored) {
  StartServer();
  SetResources({Cluster("a")}, {}, {});
  SotwClient& client = NewClient();
  client.Subscribe({kClusters}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  xds::DiscoveryResponse fake = client.responses[0];
  fake.set_nonce("0-999");
  client.Answer(fake, "should be ignored");
  ASSERT_TRUE(RunUntil([&] { return Counter("meshlet_xds_stale_nonces_total") == 1; }));
  EXPECT_EQ(Status("node-1", kClusters)->state, "PENDING");
  EXPECT_FALSE(Status("node-1", kClusters)->last_nack.has_value());
}

TEST_F(AdsServerTest, DebounceCoalescesABurstButCapsTheDelay) {
  StartServer(AdsServerOptions{.debounce_quiet = milliseconds(100),
                               .debounce_max_delay = milliseconds(400)});
  // A burst of changes 30 ms apart: one round, after the burst went quiet.
  for (int i = 0; i < 5; ++i) {
    ads_->NotifyChanged();
    RunFor(milliseconds(30));
  }
  EXPECT_EQ(ads_->push_rounds(), 0u);
  RunFor(milliseconds(150));
  EXPECT_EQ(ads_->push_rounds(), 1u);

  // Changes that never go quiet still push within the maximum delay.
  const MonotonicTime start = std::chrono::steady_clock::now();
  while (ads_->push_rounds() == 1 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
    ads_->NotifyChanged();
    RunFor(milliseconds(50));
  }
  EXPECT_EQ(ads_->push_rounds(), 2u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(700));
}

TEST_F(AdsServerTest, ThrottlesConcurrentPushes) {
  StartServer(AdsServerOptions{.max_concurrent_pushes = 1});
  SetResources({Cluster("a")}, {}, {});
  SotwClient& first = NewClient();
  SotwClient& second = NewClient();
  first.Subscribe({kClusters}, "node-1");
  second.Subscribe({kClusters}, "node-2");
  ASSERT_TRUE(RunUntil([&] { return first.responses.size() + second.responses.size() == 1; }));
  RunFor(milliseconds(100));
  SotwClient& pushed = first.responses.empty() ? second : first;
  SotwClient& waiting = first.responses.empty() ? first : second;
  EXPECT_TRUE(waiting.responses.empty());
  EXPECT_EQ(ads_->queued_pushes(), 1u);
  EXPECT_EQ(ads_->pushes_in_flight(), 1u);
  pushed.Answer(pushed.responses[0]);
  ASSERT_TRUE(RunUntil([&] { return waiting.responses.size() == 1; }));
}

TEST_F(AdsServerTest, DisconnectNotifiesTheObserver) {
  StartServer();
  SetResources({Cluster("a")}, {}, {});
  SotwClient& client = NewClient();
  client.Subscribe({kClusters}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return ads_->connected_proxies() == 1; }));
  client.call->Cancel();
  ASSERT_TRUE(RunUntil([&] { return observer_.disconnected.size() == 1; }));
  EXPECT_EQ(observer_.disconnected[0], "node-1");
  EXPECT_EQ(ads_->connected_proxies(), 0u);
  EXPECT_TRUE(ads_->ProxyStatuses().empty());
}

TEST_F(AdsServerTest, FirstRequestWithoutNodeIsRefused) {
  StartServer();
  SotwClient& client = NewClient();
  client.Subscribe({kClusters}, "");
  ASSERT_TRUE(RunUntil([&] { return client.finished; }));
  EXPECT_EQ(Counter("meshlet_xds_refused_streams_total"), 1u);
  EXPECT_TRUE(observer_.connected.empty());
}

TEST_F(AdsServerTest, DeltaSendsOnlyChangesAndRemovals) {
  StartServer();
  SetResources({Cluster("a"), Cluster("b")}, {}, {});
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(kClusters, "node-d");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  EXPECT_EQ(client.responses[0].resources_size(), 2);
  client.Ack(client.responses[0]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-d", kClusters)->state == "ACKED"; }));
  EXPECT_EQ(Status("node-d", kClusters)->acked_version, TypeVersion(resources_.of(kClusters)));

  // b changes, a goes away: one response with b, then (pass 2) one removing a.
  SetResources({Cluster("b", 5)}, {}, {});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 3; }));
  ASSERT_EQ(client.responses[1].resources_size(), 1);
  EXPECT_EQ(client.responses[1].resources(0).name(), "b");
  EXPECT_EQ(client.responses[1].resources(0).version(), resources_.of(kClusters).at("b")->version);
  EXPECT_EQ(client.responses[1].removed_resources_size(), 0);
  EXPECT_EQ(client.responses[2].resources_size(), 0);
  ASSERT_EQ(client.responses[2].removed_resources_size(), 1);
  EXPECT_EQ(client.responses[2].removed_resources(0), "a");
}

// A sidecar that reads ServiceRoutes subscribes to them although this control plane sends none
// yet: the delta stream answers with an empty response, so the sidecar knows the type is empty
// rather than still coming, and proxy-status shows the type ACKed.
TEST_F(AdsServerTest, DeltaSubscriptionToServiceRoutesGetsAnEmptyFirstAnswer) {
  StartServer();
  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(kServiceRoutes, "node-d");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  EXPECT_EQ(client.responses[0].type_url(), "type.googleapis.com/meshlet.xds.ServiceRoute");
  EXPECT_EQ(client.responses[0].served_types_size(), static_cast<int>(xds::kResourceTypeCount));
  EXPECT_EQ(client.responses[0].resources_size(), 0);
  EXPECT_EQ(client.responses[0].removed_resources_size(), 0);
  client.Ack(client.responses[0]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-d", kServiceRoutes)->state == "ACKED"; }));
  EXPECT_EQ(Counter("meshlet_xds_acks_total", {{"type", "service_routes"}}), 1u);
  // Nothing changed for it: a change round sends nothing more.
  ads_->NotifyChanged();
  RunFor(milliseconds(300));
  EXPECT_EQ(client.responses.size(), 1u);
}

// ServiceRoutes go after the route configurations they join and before listeners; a sidecar that
// does not subscribe to them (an older release) gets exactly the other types.
TEST_F(AdsServerTest, ServiceRoutesArePushedBetweenRoutesAndListeners) {
  StartServer();
  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  xds::ServiceRoute service_route;
  service_route.set_name("a.default:80");
  service_route.set_route_config_name("r");
  resources_.Add(kServiceRoutes, service_route.name(), service_route);
  SotwClient& current = NewClient();
  current.Subscribe({kListeners, kServiceRoutes, kRoutes, kClusters}, "node-new");
  SotwClient& older = NewClient();
  older.Subscribe({kListeners, kRoutes, kClusters}, "node-old");
  ASSERT_TRUE(
      RunUntil([&] { return current.responses.size() == 4 && older.responses.size() == 3; }));
  std::vector<std::string> order;
  for (const auto& response : current.responses) order.push_back(response.type_url());
  EXPECT_EQ(order, (std::vector<std::string>{
                       std::string(TypeUrl(kClusters)), std::string(TypeUrl(kRoutes)),
                       std::string(TypeUrl(kServiceRoutes)), std::string(TypeUrl(kListeners))}));
  ASSERT_EQ(current.responses[2].resources_size(), 1);
  order.clear();
  for (const auto& response : older.responses) order.push_back(response.type_url());
  EXPECT_EQ(order, (std::vector<std::string>{std::string(TypeUrl(kClusters)),
                                             std::string(TypeUrl(kRoutes)),
                                             std::string(TypeUrl(kListeners))}));
  EXPECT_EQ(Status("node-old", kServiceRoutes)->state, "UNSUBSCRIBED");
}

// A host name moving from one ServiceRoute to another in one change (the first removed, the
// second gaining its name, as when a Service port replaces another): the sidecar refuses a domain
// two ServiceRoutes share, so no response may hold the one going with the one coming. They are
// named by nothing: the type goes out exact in the first pass, like listeners.
TEST_F(AdsServerTest, AHostNameMovingBetweenServiceRoutesIsNeverSentTwice) {
  StartServer();
  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  auto service_route = [](const std::string& name) {
    xds::ServiceRoute sr;
    sr.set_name(name);
    sr.set_route_config_name("r");
    sr.mutable_virtual_host()->set_name(name);
    sr.mutable_virtual_host()->add_domains("reviews");
    return sr;
  };
  resources_.Add(kServiceRoutes, "reviews.default:19080", service_route("reviews.default:19080"));
  SotwClient& client = NewClient();
  client.Subscribe({kClusters, kRoutes, kServiceRoutes, kListeners}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 4; }));
  for (const auto& response : client.responses) client.Answer(response);
  ASSERT_TRUE(RunUntil([&] { return Status("node-1", kServiceRoutes)->state == "ACKED"; }));

  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  resources_.Add(kServiceRoutes, "reviews.default:9080", service_route("reviews.default:9080"));
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 5; }));
  RunFor(milliseconds(300));
  ASSERT_EQ(client.responses.size(), 5u);  // one response: nothing left over for a second pass
  const xds::DiscoveryResponse& response = client.responses[4];
  EXPECT_EQ(response.type_url(), TypeUrl(kServiceRoutes));
  ASSERT_EQ(response.resources_size(), 1);
  xds::ServiceRoute sent;
  ASSERT_TRUE(response.resources(0).UnpackTo(&sent));
  EXPECT_EQ(sent.name(), "reviews.default:9080");
}

// Endpoint sets of `count` clusters with `per_cluster` endpoints each (about 40 bytes each).
NodeResourceSet ManyEndpoints(int count, int per_cluster, int port = 80) {
  NodeResourceSet set;
  for (int c = 0; c < count; ++c) {
    xds::ClusterLoadAssignment assignment;
    assignment.set_cluster_name(absl::StrCat("svc-", c, ".default:80"));
    for (int e = 0; e < per_cluster; ++e) {
      auto* endpoint = assignment.add_endpoints();
      endpoint->set_address(absl::StrCat("198.18.", (c * per_cluster + e) / 250, ".",
                                         (c * per_cluster + e) % 250, ":", port));
    }
    set.Add(ResourceType::kEndpoint, assignment.cluster_name(), assignment);
  }
  return set;
}

// Split over several delta responses, ServiceRoutes (named by nothing) lose their removed ones
// first: a host name handed from one to another never has both holders between two chunks.
TEST_F(AdsServerTest, SplitServiceRoutePushRemovesBeforeItAdds) {
  StartServer({.max_response_bytes = 4 * 1024});
  auto service_routes = [&](int first, int count) {
    resources_ = NodeResourceSet();
    for (int i = first; i < first + count; ++i) {
      xds::ServiceRoute sr;
      sr.set_name(absl::StrCat("svc-", i, ".default:80"));
      sr.set_route_config_name("outbound");
      sr.mutable_virtual_host()->set_name(sr.name());
      // The host name of svc-i, whichever Service holds it: 200 bytes each.
      sr.mutable_virtual_host()->add_domains(absl::StrCat("host-", i % 100, std::string(190, 'x')));
      resources_.Add(kServiceRoutes, sr.name(), sr);
    }
  };
  service_routes(0, 100);
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(kServiceRoutes, "node-d");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() >= 2; }));
  RunFor(milliseconds(100));
  for (const auto& response : client.responses) client.Ack(response);
  ASSERT_TRUE(RunUntil([&] { return Status("node-d", kServiceRoutes)->state == "ACKED"; }));
  const size_t before = client.responses.size();

  // svc-100..199 take over the host names of svc-0..99.
  service_routes(100, 100);
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() >= before + 3; }));
  RunFor(milliseconds(100));
  bool added = false;
  size_t removed = 0;
  for (size_t i = before; i < client.responses.size(); ++i) {
    const xds::DeltaDiscoveryResponse& response = client.responses[i];
    if (response.removed_resources_size() > 0) {
      EXPECT_FALSE(added) << "chunk " << i - before;
    }
    removed += response.removed_resources_size();
    added |= response.resources_size() > 0;
  }
  EXPECT_EQ(removed, 100u);
  EXPECT_TRUE(added);
}

// 5 000 Services × 10 endpoints: far above the 4 MiB message limit in one response. The push is
// split into responses under the budget, each with its own nonce; the state is complete once the
// last one is ACKed.
TEST_F(AdsServerTest, DeltaPushOf50000EndpointsSplitUnderTheBudget) {
  constexpr size_t kBudget = 512 * 1024;
  StartServer({.max_response_bytes = kBudget});
  resources_ = ManyEndpoints(5000, 10);
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(ResourceType::kEndpoint, "node-d");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() >= 2; }));
  RunFor(milliseconds(100));
  size_t total = 0;
  std::set<std::string> nonces;
  for (const auto& response : client.responses) {
    EXPECT_LE(response.ByteSizeLong(), kBudget + 1024);
    total += response.resources_size();
    nonces.insert(response.nonce());
  }
  EXPECT_EQ(total, 5000u);
  EXPECT_EQ(nonces.size(), client.responses.size());
  const size_t chunks = client.responses.size();
  EXPECT_GE(chunks, 3u);
  EXPECT_EQ(Counter("meshlet_xds_response_chunks_total", {{"type", "endpoints"}}), chunks - 1);
  // ACKs of the first chunks leave the known state as it was; the last one completes it.
  for (size_t i = 0; i + 1 < chunks; ++i) client.Ack(client.responses[i]);
  ASSERT_TRUE(
      RunUntil([&] { return Status("node-d", ResourceType::kEndpoint)->acks == chunks - 1; }));
  EXPECT_EQ(Status("node-d", ResourceType::kEndpoint)->state, "PENDING");
  EXPECT_TRUE(Status("node-d", ResourceType::kEndpoint)->acked_version.empty());
  client.Ack(client.responses.back());
  ASSERT_TRUE(
      RunUntil([&] { return Status("node-d", ResourceType::kEndpoint)->state == "ACKED"; }));
  EXPECT_EQ(Status("node-d", ResourceType::kEndpoint)->acked_version,
            TypeVersion(resources_.of(ResourceType::kEndpoint)));
  EXPECT_EQ(Status("node-d", ResourceType::kEndpoint)->resources, 5000u);

  // A change of every endpoint set goes out split again, diffed against the whole state.
  resources_ = ManyEndpoints(5000, 10, 81);
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() >= 2 * chunks; }));
  RunFor(milliseconds(100));
  EXPECT_EQ(client.responses.size(), 2 * chunks);
}

// The sidecar refuses a chunk in the middle: the push counts as NACKed, and the next push diffs
// against what it held before the split push, so it re-sends every resource of it.
TEST_F(AdsServerTest, NackOfAMiddleChunkResendsFromTheAckedState) {
  StartServer({.max_response_bytes = 64 * 1024});
  resources_ = ManyEndpoints(1000, 10);
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(ResourceType::kEndpoint, "node-d");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() >= 3; }));
  RunFor(milliseconds(100));
  const size_t chunks = client.responses.size();
  ASSERT_GE(chunks, 3u);
  client.Ack(client.responses[0]);
  client.Nack(client.responses[1]);
  for (size_t i = 2; i < chunks; ++i) client.Ack(client.responses[i]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-d", ResourceType::kEndpoint)->nacks == 1; }));
  RunFor(milliseconds(100));
  EXPECT_EQ(Status("node-d", ResourceType::kEndpoint)->resources, 0u);
  // One endpoint set changes: everything is sent again, not only that one.
  resources_ = ManyEndpoints(1000, 10);
  xds::ClusterLoadAssignment changed;
  changed.set_cluster_name("svc-0.default:80");
  changed.add_endpoints()->set_address("198.18.99.1:80");
  resources_.of(ResourceType::kEndpoint).erase("svc-0.default:80");
  resources_.Add(ResourceType::kEndpoint, "svc-0.default:80", changed);
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() > chunks; }));
  RunFor(milliseconds(200));
  size_t resent = 0;
  for (size_t i = chunks; i < client.responses.size(); ++i) {
    resent += client.responses[i].resources_size();
  }
  EXPECT_EQ(resent, 1000u);
}

// An endpoint change of one service among many: a delta stream holding the previous set gets
// exactly the changed and the new assignment, then the removal; a stream that is behind (it
// NACKed its first push) gets everything again; a new stream gets the whole current set.
TEST_F(AdsServerTest, EndpointChangeReachesEachDeltaStreamAsItsOwnDiff) {
  StartServer();
  resources_ = ManyEndpoints(200, 3);
  DeltaClient& current = NewDeltaClient();
  DeltaClient& behind = NewDeltaClient();
  current.Subscribe(ResourceType::kEndpoint, "node-current");
  behind.Subscribe(ResourceType::kEndpoint, "node-behind");
  ASSERT_TRUE(
      RunUntil([&] { return current.responses.size() == 1 && behind.responses.size() == 1; }));
  current.Ack(current.responses[0]);
  behind.Nack(behind.responses[0]);
  ASSERT_TRUE(RunUntil([&] {
    return Status("node-current", ResourceType::kEndpoint)->state == "ACKED" &&
           Status("node-behind", ResourceType::kEndpoint)->nacks == 1;
  }));

  ResourceMap& endpoints = resources_.of(ResourceType::kEndpoint);
  xds::ClusterLoadAssignment changed;
  changed.set_cluster_name("svc-7.default:80");
  changed.add_endpoints()->set_address("198.18.99.1:80");
  endpoints.erase("svc-7.default:80");
  resources_.Add(ResourceType::kEndpoint, "svc-7.default:80", changed);
  xds::ClusterLoadAssignment added;
  added.set_cluster_name("svc-new.default:80");
  added.add_endpoints()->set_address("198.18.99.2:80");
  resources_.Add(ResourceType::kEndpoint, "svc-new.default:80", added);
  endpoints.erase("svc-3.default:80");
  ads_->NotifyChanged();
  ASSERT_TRUE(
      RunUntil([&] { return current.responses.size() == 3 && behind.responses.size() == 2; }));

  auto names = [](const xds::DeltaDiscoveryResponse& r) {
    std::vector<std::string> out;
    for (const xds::Resource& resource : r.resources()) out.push_back(resource.name());
    return out;
  };
  EXPECT_EQ(names(current.responses[1]),
            (std::vector<std::string>{"svc-7.default:80", "svc-new.default:80"}));
  EXPECT_EQ(current.responses[1].removed_resources_size(), 0);
  EXPECT_EQ(current.responses[2].resources_size(), 0);
  ASSERT_EQ(current.responses[2].removed_resources_size(), 1);
  EXPECT_EQ(current.responses[2].removed_resources(0), "svc-3.default:80");
  // Behind: it holds nothing it ACKed, so the whole current set, and nothing to remove.
  EXPECT_EQ(behind.responses[1].resources_size(), 200);
  EXPECT_EQ(behind.responses[1].removed_resources_size(), 0);

  current.Ack(current.responses[1]);
  current.Ack(current.responses[2]);
  ASSERT_TRUE(
      RunUntil([&] { return Status("node-current", ResourceType::kEndpoint)->state == "ACKED"; }));
  EXPECT_EQ(Status("node-current", ResourceType::kEndpoint)->acked_version, TypeVersion(endpoints));

  DeltaClient& late = NewDeltaClient();
  late.Subscribe(ResourceType::kEndpoint, "node-late");
  ASSERT_TRUE(RunUntil([&] { return late.responses.size() == 1; }));
  EXPECT_EQ(late.responses[0].resources_size(), 200);
}

// A push compares what the stream holds with what it should hold where they differ only: the
// generated set and the state after the last push share every subtree where they agree
// (ResourceMap), so one changed endpoint set of 5 000 costs a path, not 5 000 comparisons.
TEST_F(AdsServerTest, AnEndpointChangeIsComparedPerChangeNotPerResource) {
  StartServer();
  resources_ = ManyEndpoints(5000, 2);
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(ResourceType::kEndpoint, "node-d");
  ASSERT_TRUE(RunUntil([&] { return !client.responses.empty(); }));
  for (const auto& response : client.responses) client.Ack(response);
  ASSERT_TRUE(
      RunUntil([&] { return Status("node-d", ResourceType::kEndpoint)->state == "ACKED"; }));
  const size_t responses = client.responses.size();
  for (int change = 0; change < 3; ++change) {
    xds::ClusterLoadAssignment changed;
    changed.set_cluster_name(absl::StrCat("svc-", 1000 * change + 7, ".default:80"));
    changed.add_endpoints()->set_address(absl::StrCat("198.18.99.", change, ":80"));
    resources_.of(ResourceType::kEndpoint).erase(changed.cluster_name());
    resources_.Add(ResourceType::kEndpoint, changed.cluster_name(), changed);
    const uint64_t compared = ads_->push_entries_compared();
    ads_->NotifyChanged();
    ASSERT_TRUE(RunUntil([&] { return client.responses.size() == responses + change + 1; }));
    const xds::DeltaDiscoveryResponse& response = client.responses.back();
    ASSERT_EQ(response.resources_size(), 1);
    EXPECT_EQ(response.resources(0).name(), changed.cluster_name());
    EXPECT_LT(ads_->push_entries_compared() - compared, 100u);  // a full walk compares 5 000
    client.Ack(response);
    ASSERT_TRUE(RunUntil([&] {
      return Status("node-d", ResourceType::kEndpoint)->acked_version ==
             TypeVersion(resources_.of(ResourceType::kEndpoint));
    }));
  }
}

// A state-of-the-world response above the message limit is not sent (the gRPC layer would end
// the stream and the sidecar would reconnect into the same response forever): counted once,
// shown TOO_LARGE, and the stream stays up for the types that fit.
TEST_F(AdsServerTest, SotwResponseOverTheLimitIsNotSentAndCounted) {
  StartServer({.max_message_bytes = 256 * 1024});
  resources_ = ManyEndpoints(1000, 10);
  resources_.Add(kClusters, "a", Cluster("a"));
  SotwClient& client = NewClient();
  client.Subscribe({kClusters, ResourceType::kEndpoint}, "node-1");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  client.Answer(client.responses[0]);
  RunFor(milliseconds(200));
  ASSERT_EQ(client.responses.size(), 1u);
  EXPECT_EQ(client.responses[0].type_url(), TypeUrl(kClusters));
  EXPECT_FALSE(client.finished);
  EXPECT_EQ(Status("node-1", ResourceType::kEndpoint)->state, "TOO_LARGE");
  EXPECT_EQ(Status("node-1", kClusters)->state, "ACKED");
  EXPECT_EQ(Counter("meshlet_xds_oversized_responses_total", {{"type", "endpoints"}}), 1u);
  // An unrelated change pushes again; the same oversized version is not counted twice.
  resources_.of(kClusters).clear();
  resources_.Add(kClusters, "a", Cluster("a", 7));
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 2; }));
  EXPECT_EQ(Counter("meshlet_xds_oversized_responses_total", {{"type", "endpoints"}}), 1u);
  client.Answer(client.responses[1]);
  // Once it fits, it goes out and the state is ordinary again.
  resources_.of(ResourceType::kEndpoint) = ManyEndpoints(10, 10).of(ResourceType::kEndpoint);
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 3; }));
  EXPECT_EQ(client.responses[2].type_url(), TypeUrl(ResourceType::kEndpoint));
  EXPECT_EQ(Status("node-1", ResourceType::kEndpoint)->state, "PENDING");
}

// A sidecar that reads large messages (capability large-xds-messages) gets a response above the
// default limit, up to the larger one; one that does not say so gets it withheld.
TEST_F(AdsServerTest, LargeResponsesOnlyToSidecarsThatReadThem) {
  StartServer({.max_message_bytes = 64 * 1024, .max_large_message_bytes = 1024 * 1024});
  resources_ = ManyEndpoints(1000, 10);  // about 300 KiB
  SotwClient& old_client = NewClient();
  old_client.Subscribe({ResourceType::kEndpoint}, "old");
  SotwClient& new_client = NewClient();
  {
    xds::DiscoveryRequest request;
    request.mutable_node()->set_id("new");
    for (const xds::CapabilityInfo& info : xds::Capabilities()) {
      request.mutable_node()->add_capabilities(std::string(info.name));
    }
    request.set_type_url(std::string(TypeUrl(ResourceType::kEndpoint)));
    new_client.call->SendProto(request);
  }
  ASSERT_TRUE(RunUntil([&] { return new_client.responses.size() == 1; }));
  EXPECT_EQ(new_client.responses[0].resources_size(), 1000);
  EXPECT_GT(new_client.responses[0].ByteSizeLong(), 64u * 1024);
  RunFor(milliseconds(100));
  EXPECT_TRUE(old_client.responses.empty());
  EXPECT_EQ(Status("old", ResourceType::kEndpoint)->state, "TOO_LARGE");
  EXPECT_EQ(Status("new", ResourceType::kEndpoint)->state, "PENDING");
}

// On a delta stream only the one resource above the limit stays out; the rest of the push goes.
TEST_F(AdsServerTest, DeltaResourceOverTheLimitIsWithheldAlone) {
  StartServer({.max_message_bytes = 64 * 1024});
  resources_ = ManyEndpoints(3, 10);
  resources_.of(ResourceType::kEndpoint).erase("svc-1.default:80");
  xds::ClusterLoadAssignment big;  // about 100 KiB
  big.set_cluster_name("svc-1.default:80");
  for (int e = 0; e < 5000; ++e) {
    big.add_endpoints()->set_address(absl::StrCat("198.19.", e / 250, ".", e % 250, ":80"));
  }
  resources_.Add(ResourceType::kEndpoint, "svc-1.default:80", big);
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(ResourceType::kEndpoint, "node-d");
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  std::vector<std::string> names;
  for (const auto& r : client.responses[0].resources()) names.push_back(r.name());
  EXPECT_EQ(names, (std::vector<std::string>{"svc-0.default:80", "svc-2.default:80"}));
  client.Ack(client.responses[0]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-d", ResourceType::kEndpoint)->acks == 1; }));
  EXPECT_EQ(Status("node-d", ResourceType::kEndpoint)->state, "TOO_LARGE");
  EXPECT_EQ(Status("node-d", ResourceType::kEndpoint)->resources, 2u);
  EXPECT_EQ(Counter("meshlet_xds_oversized_responses_total", {{"type", "endpoints"}}), 1u);
}

// A delta sidecar reconnecting (to a restarted control plane) with what it holds: nothing is sent
// for a type it holds in full, and proxy-status shows that type ACKED at its version.
TEST_F(AdsServerTest, ReconnectingDeltaClientHoldingTheCurrentSetIsAcked) {
  StartServer();
  SetResources({Cluster("a"), Cluster("b")}, {}, {});
  DeltaClient& client = NewDeltaClient();
  xds::DeltaDiscoveryRequest request;
  request.mutable_node()->set_id("node-d");
  request.set_type_url(std::string(TypeUrl(kClusters)));
  for (const auto& [name, resource] : resources_.of(kClusters)) {
    (*request.mutable_initial_resource_versions())[name] = resource->version;
  }
  client.call->SendProto(request);
  RunFor(milliseconds(200));
  EXPECT_TRUE(client.responses.empty());
  const TypeStatus* status = Status("node-d", kClusters);
  ASSERT_NE(status, nullptr);
  EXPECT_EQ(status->state, "ACKED");
  EXPECT_EQ(status->acked_version, TypeVersion(resources_.of(kClusters)));
  EXPECT_EQ(status->resources, 2u);
}

TEST_F(AdsServerTest, ReconnectingSotwClientWithCurrentVersionGetsNothing) {
  StartServer();
  SetResources({Cluster("a")}, {}, {});
  SotwClient& client = NewClient();
  xds::DiscoveryRequest request;
  request.mutable_node()->set_id("node-1");
  request.set_type_url(std::string(TypeUrl(kClusters)));
  request.set_version_info(TypeVersion(resources_.of(kClusters)));
  client.call->SendProto(request);
  RunFor(milliseconds(200));
  EXPECT_TRUE(client.responses.empty());
  EXPECT_EQ(Status("node-1", kClusters)->acked_version, TypeVersion(resources_.of(kClusters)));
}

// A control plane that restarted has sent nothing on a reconnected stream; when the sidecar
// reports the versions it would send, it knows what the sidecar holds, and a later change that
// drops a cluster the held route names still goes routes first, clusters last.
TEST_F(AdsServerTest, ReconnectedSotwClientRunningTheCurrentVersionsGetsRemovalsLast) {
  StartServer();
  SetResources({Cluster("a"), Cluster("b")}, {Route("r", "b")}, {Listener("l", "r")});
  SotwClient& client = NewClient();
  bool first = true;
  for (ResourceType type : {kClusters, kRoutes, kListeners}) {
    xds::DiscoveryRequest request;
    if (first) request.mutable_node()->set_id("node-1");
    first = false;
    request.set_type_url(std::string(TypeUrl(type)));
    request.set_version_info(TypeVersion(resources_.of(type)));
    client.call->SendProto(request);
  }
  RunFor(milliseconds(200));
  EXPECT_TRUE(client.responses.empty());
  EXPECT_EQ(Status("node-1", kClusters)->resources, 2u);

  SetResources({Cluster("a")}, {Route("r", "a")}, {Listener("l", "r")});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 2; }));
  EXPECT_EQ(client.responses[0].type_url(), TypeUrl(kRoutes));
  EXPECT_EQ(client.responses[1].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(client.responses[1].resources_size(), 1);
}

TEST_F(AdsServerTest, ReadinessOnTheFirstRequestReachesTheObserverAfterTheNode) {
  StartServer();
  SetResources({Cluster("a")}, {}, {});
  SotwClient& client = NewClient();
  client.Subscribe({kClusters, kRoutes}, "node-1", Readiness(true));
  SotwClient& draining = NewClient();
  draining.Subscribe({kClusters}, "node-2", Readiness(false, "draining"));
  ASSERT_TRUE(RunUntil([&] { return observer_.events.size() == 4; }));
  // Per stream: registered first, then its readiness (which overrides what a registry kept).
  std::vector<std::string> first, second;
  for (const std::string& event : observer_.events) {
    (event.find("node-1") != std::string::npos ? first : second).push_back(event);
  }
  EXPECT_EQ(first, (std::vector<std::string>{"connected node-1", "ready node-1"}));
  EXPECT_EQ(second, (std::vector<std::string>{"connected node-2", "not ready node-2: draining"}));
  // The status keeps why a sidecar is not ready (`meshctl check` lists uncaptured ones by it).
  for (const ProxyStatus& status : ads_->ProxyStatuses()) {
    EXPECT_EQ(status.not_ready_reason, status.id == "node-2" ? "draining" : "") << status.id;
  }
  EXPECT_EQ(Counter("meshlet_xds_readiness_reports_total", {{"ready", "true"}}), 1u);
  EXPECT_EQ(Counter("meshlet_xds_readiness_reports_total", {{"ready", "false"}}), 1u);
  // The request still subscribed as usual.
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 2; }));
  EXPECT_EQ(client.responses[0].type_url(), TypeUrl(kClusters));

  // A stream without readiness says nothing about it.
  SotwClient& old_sidecar = NewClient();
  old_sidecar.Subscribe({kClusters}, "node-3");
  ASSERT_TRUE(RunUntil([&] { return old_sidecar.responses.size() == 1; }));
  EXPECT_EQ(observer_.events.size(), 5u);
  EXPECT_EQ(observer_.events.back(), "connected node-3");
}

TEST_F(AdsServerTest, AReadinessReportIsNeitherAnAnswerNorASubscription) {
  StartServer();
  SetResources({Cluster("a")}, {Route("r", "a")}, {});
  SotwClient& client = NewClient();
  client.Subscribe({kClusters, kRoutes}, "node-1", Readiness(true));
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 2; }));
  client.Answer(client.responses[0]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-1", kClusters)->state == "ACKED"; }));
  ASSERT_EQ(Status("node-1", kRoutes)->state, "PENDING");

  // Drain starts while the routes response still awaits its answer.
  client.ReportReadiness(Readiness(false, "draining"));
  ASSERT_TRUE(RunUntil([&] { return observer_.events.size() == 3; }));
  EXPECT_EQ(observer_.events.back(), "not ready node-1: draining");
  EXPECT_EQ(Counter("meshlet_xds_readiness_reports_total", {{"ready", "false"}}), 1u);
  // No ACK, NACK or stale answer was counted, no type changed state, nothing was subscribed.
  EXPECT_EQ(Status("node-1", kClusters)->state, "ACKED");
  EXPECT_EQ(Status("node-1", kClusters)->acks, 1u);
  EXPECT_EQ(Status("node-1", kRoutes)->state, "PENDING");
  EXPECT_EQ(Status("node-1", kRoutes)->sent_nonce, client.responses[1].nonce());
  EXPECT_EQ(Status("node-1", ResourceType::kEndpoint)->state, "UNSUBSCRIBED");
  EXPECT_EQ(Counter("meshlet_xds_nacks_total", {{"type", "clusters"}}), 0u);
  EXPECT_EQ(Counter("meshlet_xds_nacks_total", {{"type", "routes"}}), 0u);
  EXPECT_EQ(Counter("meshlet_xds_stale_nonces_total"), 0u);
  EXPECT_FALSE(Status("node-1", kClusters)->last_nack.has_value());

  // The pending response's answer is still that response's ACK, and no push follows the report.
  client.Answer(client.responses[1]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-1", kRoutes)->state == "ACKED"; }));
  EXPECT_EQ(Status("node-1", kRoutes)->acked_version, client.responses[1].version_info());
  RunFor(milliseconds(200));
  EXPECT_EQ(client.responses.size(), 2u);
  EXPECT_EQ(ads_->pushes_in_flight(), 0u);
  EXPECT_EQ(generated_, 1);

  // Changes still reach the draining sidecar (its app's outbound calls need them).
  SetResources({Cluster("a", 2)}, {Route("r", "a")}, {});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 3; }));
  EXPECT_EQ(client.responses[2].type_url(), TypeUrl(kClusters));
}

TEST_F(AdsServerTest, DeltaReadinessReportsLeaveSubscriptionsAlone) {
  StartServer();
  SetResources({Cluster("a")}, {}, {});
  DeltaClient& client = NewDeltaClient();
  client.Subscribe(kClusters, "node-d", Readiness(true));
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  EXPECT_EQ(observer_.events, (std::vector<std::string>{"connected node-d", "ready node-d"}));

  xds::DeltaDiscoveryRequest report;
  report.set_type_url(std::string(xds::kReadinessTypeUrl));
  *report.mutable_readiness() = Readiness(false, "draining");
  client.call->SendProto(report);
  ASSERT_TRUE(RunUntil([&] { return observer_.events.size() == 3; }));
  EXPECT_EQ(observer_.events.back(), "not ready node-d: draining");
  EXPECT_EQ(Status("node-d", kClusters)->state, "PENDING");
  EXPECT_EQ(Status("node-d", kRoutes)->state, "UNSUBSCRIBED");

  client.Ack(client.responses[0]);
  ASSERT_TRUE(RunUntil([&] { return Status("node-d", kClusters)->state == "ACKED"; }));
  EXPECT_EQ(Status("node-d", kClusters)->acked_version, TypeVersion(resources_.of(kClusters)));
  RunFor(milliseconds(200));
  EXPECT_EQ(client.responses.size(), 1u);
  EXPECT_EQ(Counter("meshlet_xds_stale_nonces_total"), 0u);

  // A reason longer than the limit is cut at it.
  report.mutable_readiness()->set_reason(std::string(1000, 'x'));
  client.call->SendProto(report);
  ASSERT_TRUE(RunUntil([&] { return observer_.events.size() == 4; }));
  EXPECT_EQ(observer_.events.back(),
            "not ready node-d: " + std::string(ProxyObserver::kMaxReadinessReason, 'x'));
}

// --- Lookups on the delta ServiceRoute subscription (ADR 0086) ---

std::vector<std::string> Aliases(const xds::Resource& resource) {
  return std::vector<std::string>(resource.aliases().begin(), resource.aliases().end());
}
std::vector<std::string> Removed(const xds::DeltaDiscoveryResponse& response) {
  return std::vector<std::string>(response.removed_resources().begin(),
                                  response.removed_resources().end());
}

// A key is answered in one push on the loop turn after its request, with no debounce: the found
// Service's cluster, then its load assignment, then its ServiceRoute carrying the key as an
// alias. The push takes no slot.
TEST_F(AdsServerTest, KeyAnsweredInOnePushWithinTheTurn) {
  StartServer(
      {.debounce_quiet = std::chrono::seconds(10), .debounce_max_delay = std::chrono::seconds(10)});
  SetResources({Cluster("local")}, {}, {});
  const std::string route = AddService("reviews");
  DeltaClient& client = ReadyDeltaClient("node-d");
  const int generated_before = generated_;
  const auto sent_at = std::chrono::steady_clock::now();
  client.Lookup({"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 6; }));
  const auto wall = std::chrono::steady_clock::now() - sent_at;
  EXPECT_EQ(generated_ - generated_before, 1);
  EXPECT_EQ(generated_keys_, std::vector<std::string>{"host:reviews.shop"});
  ASSERT_EQ(client.responses[3].type_url(), TypeUrl(kClusters));
  ASSERT_EQ(client.responses[3].resources_size(), 1);
  EXPECT_EQ(client.responses[3].resources(0).name(), "reviews");
  EXPECT_EQ(client.responses[3].resources(0).aliases_size(), 0);
  ASSERT_EQ(client.responses[4].type_url(), TypeUrl(kEndpoints));
  ASSERT_EQ(client.responses[4].resources_size(), 1);
  EXPECT_EQ(client.responses[4].resources(0).name(), "reviews");
  ASSERT_EQ(client.responses[5].type_url(), TypeUrl(kServiceRoutes));
  ASSERT_EQ(client.responses[5].resources_size(), 1);
  EXPECT_EQ(client.responses[5].resources(0).name(), route);
  EXPECT_EQ(Aliases(client.responses[5].resources(0)),
            std::vector<std::string>{"host:reviews.shop"});
  EXPECT_EQ(ads_->pushes_in_flight(), 0u);
  EXPECT_EQ(Lookups("found"), 1u);
  const ProxyStatus* status = StatusOf("node-d");
  ASSERT_NE(status, nullptr);
  EXPECT_EQ(status->on_demand.keys, 1u);
  EXPECT_EQ(status->on_demand.found, 1u);
  EXPECT_EQ(status->on_demand.missing, 0u);
  EXPECT_NE(ProxyStatusJson(statuses_).find(R"("onDemand":{"keys":1,"found":1,"missing":0})"),
            std::string::npos);
  StatsSnapshot snapshot = stats_.Snapshot();
  const SeriesSnapshot* answer = snapshot.Find("meshlet_xds_on_demand_answer_seconds", {});
  ASSERT_NE(answer, nullptr);
  EXPECT_EQ(answer->histogram.count(), 1u);
  std::cout << "key answered: " << answer->histogram.sum()
            << " us by the server (request read to answer handed to the stream), "
            << std::chrono::duration_cast<std::chrono::microseconds>(wall).count()
            << " us by the client (request sent to the three responses read)\n";
  // Answered once: a change round that changes nothing for the node sends nothing more.
  ads_->NotifyChanged();
  RunFor(milliseconds(200));
  EXPECT_EQ(client.responses.size(), 6u);
}

// The set a push generated goes back to the generator with the stream's next push
// (GenerateRequest::previous) when the generator left a basis in it, so a lookup extends it
// instead of generating what the node holds again; a set without one is not kept, and a dry run
// (proxy-config) hands nothing back and takes nothing.
TEST_F(AdsServerTest, ThePreviousSetGoesBackToTheGeneratorWithTheNextPush) {
  StartServer(
      {.debounce_quiet = std::chrono::seconds(10), .debounce_max_delay = std::chrono::seconds(10)});
  SetResources({Cluster("local")}, {}, {});
  AddService("reviews");
  AddService("ratings");
  DeltaClient& client = ReadyDeltaClient("node-d");
  basis_ = std::make_shared<GeneratorBasis>();
  previous_bases_.clear();
  client.Lookup({"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 6; }));
  ASSERT_TRUE(ads_->ProxyConfigJson("node-d", {"host:ratings.shop"}).has_value());
  client.Lookup({"host:ratings.shop"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 9; }));
  EXPECT_EQ(previous_bases_, (std::vector<GeneratorBasis*>{nullptr, nullptr, basis_.get()}));
  EXPECT_EQ(Aliases(client.responses[8].resources(0)),
            std::vector<std::string>{"host:ratings.shop"});
}

// A push compares with the answers last sent only the keys whose answer may have changed: with
// a set that keeps the previous set's answers (NodeResourceSet::answers_kept), the keys added
// since, however many the stream holds; with a set generated whole, every key.
TEST_F(AdsServerTest, APushComparesTheKeysItMayAnswerNotEveryKeyHeld) {
  StartServer({.debounce_quiet = milliseconds(10)});
  SetResources({Cluster("local")}, {}, {});
  constexpr int kKeys = 50;
  std::vector<std::string> keys;
  for (int i = 0; i <= kKeys; ++i) {
    AddService(absl::StrCat("s", i));
    keys.push_back(absl::StrCat("host:s", i, ".shop"));
  }
  DeltaClient& client = ReadyDeltaClient("node-d");
  basis_ = std::make_shared<GeneratorBasis>();
  keep_answers_ = true;
  client.Lookup(std::vector<std::string>(keys.begin(), keys.end() - 1));
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 6; }));
  EXPECT_EQ(client.responses[5].resources_size(), kKeys);
  for (size_t i = 3; i < 6; ++i) client.Ack(client.responses[i]);

  // A change of the node's own resources: no key compared, no answer sent again.
  uint64_t compared = ads_->push_keys_compared();
  SetResources({Cluster("local"), Cluster("local-2")}, {}, {});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 7; }));
  EXPECT_EQ(client.responses[6].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(ads_->push_keys_compared() - compared, 0u);
  client.Ack(client.responses[6]);
  ASSERT_TRUE(RunUntil([&] { return ads_->pushes_in_flight() == 0; }));

  // One more key: that key alone, answered.
  compared = ads_->push_keys_compared();
  client.Lookup({keys.back()});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 10; }));
  EXPECT_EQ(ads_->push_keys_compared() - compared, 1u);
  ASSERT_EQ(client.responses[9].resources_size(), 1);
  EXPECT_EQ(Aliases(client.responses[9].resources(0)), std::vector<std::string>{keys.back()});
  for (size_t i = 7; i < 10; ++i) client.Ack(client.responses[i]);

  // A set generated whole: every key compared, none answered again (the same answers).
  keep_answers_ = false;
  compared = ads_->push_keys_compared();
  SetResources({Cluster("local")}, {}, {});
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 11; }));
  EXPECT_EQ(ads_->push_keys_compared() - compared, static_cast<uint64_t>(kKeys) + 1);
  EXPECT_EQ(client.responses[10].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(Lookups("found"), static_cast<uint64_t>(kKeys) + 1);
}

// proxy-config with lookups shows what the node would hold had it looked them up (what
// `meshctl explain --from --to` and `proxy-config --lookup` show for a destination an on-demand
// sidecar has not called yet), without subscribing or sending anything.
TEST_F(AdsServerTest, ProxyConfigWithLookupsShowsTheServiceAsIfLookedUp) {
  StartServer({.debounce_quiet = milliseconds(10)});
  SetResources({Cluster("local")}, {}, {});
  const std::string route = AddService("reviews");
  DeltaClient& client = ReadyDeltaClient("node-d");
  const std::optional<std::string> sent = ads_->ProxyConfigJson("node-d");
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->find(route), std::string::npos) << *sent;
  EXPECT_EQ(sent->find("\"lookups\""), std::string::npos);

  const std::vector<std::string> keys = {"host:reviews.shop", "host:nothing.shop"};
  const std::optional<std::string> looked_up = ads_->ProxyConfigJson("node-d", keys);
  ASSERT_TRUE(looked_up.has_value());
  EXPECT_NE(looked_up->find(absl::StrCat("{\"name\":\"", route, "\"")), std::string::npos)
      << *looked_up;
  EXPECT_NE(looked_up->find(R"({"name":"reviews")"), std::string::npos) << *looked_up;
  EXPECT_NE(looked_up->find(absl::StrCat(
                R"("lookups":[{"key":"host:reviews.shop","result":"found","serviceRoute":")", route,
                R"("},{"key":"host:nothing.shop","result":"not_found","serviceRoute":""}])")),
            std::string::npos)
      << *looked_up;
  // Nothing was subscribed or sent.
  RunFor(milliseconds(200));
  EXPECT_EQ(client.responses.size(), 3u);
  EXPECT_EQ(StatusOf("node-d")->on_demand.keys, 0u);
  EXPECT_EQ(ads_->ProxyConfigJson("node-d"), sent);
  EXPECT_FALSE(ads_->ProxyConfigJson("node-x", keys).has_value());
}

// A key nothing answers is named in the ServiceRoute response's removed_resources, although the
// type's version is unchanged; it is answered once.
TEST_F(AdsServerTest, UnknownKeyAnsweredInRemovedResources) {
  StartServer({.debounce_quiet = milliseconds(10)});
  SetResources({Cluster("local")}, {}, {});
  DeltaClient& client = ReadyDeltaClient("node-d");
  client.Lookup({"host:nothing.shop", "addr:10.0.0.9:80"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 4; }));
  ASSERT_EQ(client.responses[3].type_url(), TypeUrl(kServiceRoutes));
  EXPECT_EQ(client.responses[3].resources_size(), 0);
  EXPECT_EQ(Removed(client.responses[3]),
            (std::vector<std::string>{"host:nothing.shop", "addr:10.0.0.9:80"}));
  EXPECT_EQ(Lookups("not_found"), 2u);
  EXPECT_EQ(StatusOf("node-d")->on_demand.missing, 2u);
  client.Ack(client.responses[3]);
  ads_->NotifyChanged();
  RunFor(milliseconds(200));
  EXPECT_EQ(client.responses.size(), 4u);
  EXPECT_EQ(Lookups("not_found"), 2u);
}

// Keys past the stream's limit or its rate, and keys too long to be keys, are answered missing
// and not held (the generator never sees them).
TEST_F(AdsServerTest, KeysPastTheLimitAndRate) {
  StartServer({.on_demand_max_keys = 3, .on_demand_rate = 1, .on_demand_burst = 3});
  SetResources({Cluster("local")}, {}, {});
  DeltaClient& client = ReadyDeltaClient("node-d");
  const std::string too_long = "host:" + std::string(xds::kMaxLookupKeyBytes, 'a');
  client.Lookup({"host:a", "host:b", "host:c", "host:d", too_long});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 4; }));
  EXPECT_EQ(Removed(client.responses[3]),
            (std::vector<std::string>{"host:d", too_long, "host:a", "host:b", "host:c"}));
  EXPECT_EQ(Lookups("over_limit"), 1u);
  EXPECT_EQ(Lookups("malformed"), 1u);
  EXPECT_EQ(Lookups("not_found"), 3u);
  EXPECT_EQ(generated_keys_, (std::vector<std::string>{"host:a", "host:b", "host:c"}));
  // One key goes: there is room again, but the bucket (3 at once, 1 a second) is empty.
  client.SubscribeMore(kServiceRoutes, {"host:e"}, {"host:a"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 5; }));
  EXPECT_EQ(Removed(client.responses[4]), std::vector<std::string>{"host:e"});
  EXPECT_EQ(Lookups("rate_limited"), 1u);
  EXPECT_EQ(generated_keys_, (std::vector<std::string>{"host:b", "host:c"}));
  EXPECT_EQ(StatusOf("node-d")->on_demand.keys, 2u);
  StatsSnapshot snapshot = stats_.Snapshot();
  ASSERT_NE(snapshot.Find("meshlet_xds_on_demand_keys", {}), nullptr);
  EXPECT_EQ(snapshot.Find("meshlet_xds_on_demand_keys", {})->gauge, 2);
  client.call->Cancel();
  ASSERT_TRUE(RunUntil([&] { return ads_->connected_proxies() == 0; }));
  snapshot = stats_.Snapshot();
  EXPECT_EQ(snapshot.Find("meshlet_xds_on_demand_keys", {})->gauge, 0);
}

// Lookups jump the push queue and need no slot: a node whose push awaits its answers, with
// another node queued behind it, gets its key answered at once.
TEST_F(AdsServerTest, AnswerNotDelayedByAPushInFlightOrTheQueue) {
  StartServer({.max_concurrent_pushes = 1});
  SetResources({Cluster("local")}, {}, {});
  AddService("reviews");
  DeltaClient& busy = NewDeltaClient();
  busy.Subscribe(kClusters, "node-busy");
  busy.SubscribeMore(kServiceRoutes, {"*"});
  ASSERT_TRUE(RunUntil([&] { return busy.responses.size() == 2; }));  // not answered
  DeltaClient& waiting = NewDeltaClient();
  waiting.Subscribe(kClusters, "node-waiting");
  ASSERT_TRUE(RunUntil([&] { return ads_->queued_pushes() == 1; }));
  ASSERT_EQ(ads_->pushes_in_flight(), 1u);

  busy.Lookup({"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] { return busy.responses.size() == 4; }));
  EXPECT_EQ(busy.responses[2].type_url(), TypeUrl(kClusters));
  ASSERT_EQ(busy.responses[3].resources_size(), 1);
  EXPECT_EQ(Aliases(busy.responses[3].resources(0)), std::vector<std::string>{"host:reviews.shop"});
  EXPECT_EQ(ads_->pushes_in_flight(), 1u);
  EXPECT_EQ(ads_->queued_pushes(), 1u);
  EXPECT_TRUE(waiting.responses.empty());
  // The busy node's push ends once it answers everything, the lookup's responses too.
  for (const auto& response : busy.responses) busy.Ack(response);
  ASSERT_TRUE(RunUntil([&] { return waiting.responses.size() == 1; }));
}

// A key answered missing is answered again when a Service created later answers it, and missing
// again when that Service goes.
TEST_F(AdsServerTest, ServiceCreatedLaterIsPushedToItsKey) {
  StartServer({.debounce_quiet = milliseconds(10)});
  SetResources({Cluster("local")}, {}, {});
  DeltaClient& client = ReadyDeltaClient("node-d");
  client.Lookup({"host:ratings.shop"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 4; }));
  EXPECT_EQ(Removed(client.responses[3]), std::vector<std::string>{"host:ratings.shop"});
  client.Ack(client.responses[3]);

  const std::string route = AddService("ratings");
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 7; }));
  EXPECT_EQ(client.responses[4].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(client.responses[5].type_url(), TypeUrl(kEndpoints));
  ASSERT_EQ(client.responses[6].resources_size(), 1);
  EXPECT_EQ(client.responses[6].resources(0).name(), route);
  EXPECT_EQ(Aliases(client.responses[6].resources(0)),
            std::vector<std::string>{"host:ratings.shop"});
  EXPECT_EQ(StatusOf("node-d")->on_demand.found, 1u);
  for (size_t i = 4; i < 7; ++i) client.Ack(client.responses[i]);
  ASSERT_TRUE(RunUntil([&] { return ads_->pushes_in_flight() == 0; }));

  // The Service goes: its ServiceRoute and the key leave together, then (pass 2) what it named.
  lookups_.clear();
  ads_->NotifyChanged();
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 10; }));
  EXPECT_EQ(client.responses[7].type_url(), TypeUrl(kServiceRoutes));
  EXPECT_EQ(Removed(client.responses[7]), (std::vector<std::string>{route, "host:ratings.shop"}));
  EXPECT_EQ(client.responses[8].type_url(), TypeUrl(kEndpoints));
  EXPECT_EQ(client.responses[9].type_url(), TypeUrl(kClusters));
  EXPECT_EQ(StatusOf("node-d")->on_demand.missing, 1u);
  EXPECT_EQ(Lookups("found"), 1u);
  EXPECT_EQ(Lookups("not_found"), 2u);
}

// An unsubscribed key is forgotten: no longer generated for, and answered afresh when subscribed
// again.
TEST_F(AdsServerTest, UnsubscribedKeyIsForgotten) {
  StartServer();
  SetResources({Cluster("local")}, {}, {});
  const std::string route = AddService("reviews");
  DeltaClient& client = ReadyDeltaClient("node-d");
  client.Lookup({"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 6; }));
  for (size_t i = 3; i < 6; ++i) client.Ack(client.responses[i]);

  client.SubscribeMore(kServiceRoutes, {}, {"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] {
    return client.responses.size() == 9 && client.responses[6].removed_resources_size() == 1;
  }));
  EXPECT_TRUE(generated_keys_.empty());
  EXPECT_EQ(client.responses[6].type_url(), TypeUrl(kServiceRoutes));
  EXPECT_EQ(Removed(client.responses[6]), std::vector<std::string>{route});
  EXPECT_EQ(StatusOf("node-d")->on_demand.keys, 0u);
  for (size_t i = 6; i < 9; ++i) client.Ack(client.responses[i]);
  ASSERT_TRUE(RunUntil([&] { return ads_->pushes_in_flight() == 0; }));

  client.Lookup({"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 12; }));
  ASSERT_EQ(client.responses[11].resources_size(), 1);
  EXPECT_EQ(Aliases(client.responses[11].resources(0)),
            std::vector<std::string>{"host:reviews.shop"});
  EXPECT_EQ(Lookups("found"), 2u);
}

// A sidecar reconnecting with keys and the ServiceRoute answering them: its first push answers
// the key (the ServiceRoute re-sent with its alias although the sidecar holds that version) and
// nothing else changes.
TEST_F(AdsServerTest, ReconnectWithKeysGetsThemInTheFirstPush) {
  StartServer();
  SetResources({Cluster("local")}, {}, {});
  const std::string route = AddService("reviews");
  DeltaClient& client = NewDeltaClient();
  xds::DeltaDiscoveryRequest request;
  request.mutable_node()->set_id("node-d");
  request.set_type_url(std::string(TypeUrl(kServiceRoutes)));
  request.add_resource_names_subscribe("*");
  request.add_resource_names_subscribe("host:reviews.shop");
  (*request.mutable_initial_resource_versions())[route] =
      services_.at(route).of(kServiceRoutes).at(route)->version;
  client.call->SendProto(request);
  ASSERT_TRUE(RunUntil([&] { return client.responses.size() == 1; }));
  RunFor(milliseconds(200));
  EXPECT_EQ(generated_, 1);
  ASSERT_EQ(client.responses.size(), 1u);
  EXPECT_EQ(client.responses[0].type_url(), TypeUrl(kServiceRoutes));
  ASSERT_EQ(client.responses[0].resources_size(), 1);
  EXPECT_EQ(client.responses[0].resources(0).name(), route);
  EXPECT_EQ(Aliases(client.responses[0].resources(0)),
            std::vector<std::string>{"host:reviews.shop"});
  EXPECT_EQ(client.responses[0].removed_resources_size(), 0);
}

// Keys belong to a delta ServiceRoute subscription: on a state-of-the-world stream or another
// type they are counted malformed and neither held nor passed to the generator.
TEST_F(AdsServerTest, KeysOnAStateOfTheWorldStreamAreRefused) {
  StartServer();
  SetResources({Cluster("local")}, {}, {});
  AddService("reviews");
  SotwClient& sotw = NewClient();
  xds::DiscoveryRequest request;
  request.mutable_node()->set_id("node-s");
  request.set_type_url(std::string(TypeUrl(kServiceRoutes)));
  request.add_resource_names("host:reviews.shop");
  sotw.call->SendProto(request);
  ASSERT_TRUE(RunUntil([&] { return sotw.responses.size() == 1; }));
  EXPECT_EQ(sotw.responses[0].resources_size(), 0);
  EXPECT_TRUE(generated_keys_.empty());
  // The same list repeated with the ACK is not counted again.
  request.clear_node();
  request.set_response_nonce(sotw.responses[0].nonce());
  request.set_version_info(sotw.responses[0].version_info());
  sotw.call->SendProto(request);

  DeltaClient& delta = NewDeltaClient();
  delta.Subscribe(kClusters, "node-d");
  delta.SubscribeMore(kClusters, {"host:reviews.shop"});
  ASSERT_TRUE(RunUntil([&] { return delta.responses.size() == 1; }));
  RunFor(milliseconds(100));
  EXPECT_EQ(delta.responses.size(), 1u);
  EXPECT_TRUE(generated_keys_.empty());
  EXPECT_EQ(Lookups("malformed"), 2u);
  EXPECT_EQ(StatusOf("node-s")->on_demand.keys, 0u);
  EXPECT_EQ(StatusOf("node-d")->on_demand.keys, 0u);
}

}  // namespace
}  // namespace meshlet::controlplane::ads
