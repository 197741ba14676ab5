#pragma once

// The router against FakeUpstream servers (real sockets on 127.0.0.1, the fake line codec from
// sidecar/cluster/fake_codec.h) driven from the test thread's loop: a recording downstream stream
// that resolves the route as the connection manager does, and a fixture with one cluster "c"
// (and more on demand) behind a route table.

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/base/fake_random.h"
#include "common/event/loop.h"
#include "common/http/grpc/status.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/cluster_ref.h"
#include "sidecar/cluster/fake_codec.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/route/route_table.h"
#include "sidecar/router/mirror.h"
#include "sidecar/router/router.h"
#include "sidecar/stream/filter.h"
#include "sidecar/stream/local_reply.h"
#include "sidecar/stream/stream_context.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::router {

using cluster::Cluster;
using cluster::ClusterConfig;
using cluster::CodecFactories;
using cluster::EndpointConfig;
using cluster::LbPolicy;
using cluster::UpstreamStats;

using cluster::testing::FakeClientConnection;
using cluster::testing::FakeUpstream;
using route::RouteAction;
using route::RouteConfig;
using route::RouteEntry;
using route::RouteTable;
using route::VirtualHostConfig;
using std::chrono::milliseconds;
using stream::ResponseFlag;
using stream::StreamInfo;

// One virtual host "*" with `routes`.
inline std::shared_ptr<const RouteTable> Table(std::vector<RouteEntry> routes) {
  RouteConfig config;
  config.name = "routes";
  VirtualHostConfig vhost;
  vhost.name = "all";
  vhost.domains = {"*"};
  vhost.routes = std::move(routes);
  config.virtual_hosts.push_back(std::move(vhost));
  return std::shared_ptr<const RouteTable>(*RouteTable::Create(std::move(config)));
}

inline RouteEntry Routed(const std::string& name, const std::string& prefix, RouteAction action) {
  RouteEntry route;
  route.name = name;
  route.match.path = prefix;
  route.action = std::move(action);
  return route;
}

inline RouteAction ToCluster(const std::string& cluster) {
  RouteAction action;
  action.cluster = cluster;
  return action;
}

// The downstream side: records what the router sends to the client.
class RecordingCallbacks final : public stream::FilterCallbacks {
 public:
  void ContinueDecoding() override {}
  void SendLocalReply(const stream::LocalReply& reply) override {
    http::HeaderMap headers;
    net::Buffer body;
    const bool has_body = stream::BuildLocalReply(reply, grpc_request, headers, body);
    info.response_code = stream::LocalReplyStatus(reply, grpc_request);
    ++local_replies;
    EncodeHeaders(headers, !has_body);
    if (has_body) EncodeData(body, true);
  }
  const stream::Route& route() const override { return resolved; }
  bool grpc() const override { return grpc_request; }
  void EncodeHeaders(http::HeaderMap& headers, bool end_stream) override {
    ++headers_sent;
    status = std::string(headers.Get(":status").value_or(""));
    grpc_status = std::string(headers.Get("grpc-status").value_or(""));
    response_headers = headers;
    if (end_stream) complete = true;
  }
  void EncodeData(net::Buffer& data, bool end_stream) override {
    body += data.ToString();
    data.Drain(data.length());
    if (end_stream) complete = true;
  }
  void EncodeTrailers(const http::HeaderMap&) override { complete = true; }
  void ResetDownstream() override { reset = true; }
  void ReadDisableDownstream(bool disable) override { read_disables += disable ? 1 : -1; }
  uint32_t DownstreamBufferLimit() const override { return 1 << 20; }
  uint64_t RetryBufferLimit() const override { return retry_buffer_limit; }
  stream::StreamInfo& stream_info() override { return info; }

  bool done() const { return complete || reset; }

  stream::Route resolved;
  bool grpc_request = false;
  int local_replies = 0;
  http::HeaderMap response_headers;
  // The request as the stream keeps it (the router refers to it).
  http::HeaderMapPtr request_headers;
  http::HeaderMapPtr request_trailers;
  StreamInfo info;
  int headers_sent = 0;
  std::string status;
  std::string grpc_status;
  std::string body;
  bool complete = false;
  bool reset = false;
  int read_disables = 0;
  uint64_t retry_buffer_limit = 64 * 1024;
};

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : shard_(registry_.CreateShard()) {
    stats_["c"] = *UpstreamStats::Create(*shard_, "c");
    random_.Push(~uint64_t{0});  // every backoff at its upper bound
  }

  ~RouterTest() override {
    routers_.clear();
    mirrors_.reset();
    loop_.RunUntilIdle();
    for (auto& callbacks : callbacks_) callbacks->resolved = {};
    clusters_.clear();
    upstreams_.clear();
    loop_.RunUntilIdle();
  }

  FakeUpstream& AddUpstream() {
    upstreams_.push_back(std::make_unique<FakeUpstream>(loop_));
    return *upstreams_.back();
  }

  // The cluster over `addresses` (round robin, no outlier detection) and a catch-all route with
  // `action`; with `other`, a route for the prefix /b/ with that action first.
  void Configure(std::vector<net::Address> addresses, const RouteAction& action,
                 const RouteAction* other = nullptr) {
    AddCluster("c", std::move(addresses));
    RouteConfig routes;
    routes.name = "routes";
    VirtualHostConfig vhost;
    vhost.name = "all";
    vhost.domains = {"*"};
    if (other != nullptr) {
      RouteEntry route;
      route.name = "b";
      route.match.path = "/b/";
      RouteAction routed = *other;
      routed.cluster = "c";
      route.action = routed;
      vhost.routes.push_back(route);
    }
    RouteEntry route;
    route.name = "r";
    route.match.path = "/";
    route.source = route_source_;
    route.source_rule = route_source_.empty() ? -1 : 2;
    route.source_match = route_source_.empty() ? -1 : 1;
    RouteAction routed = action;
    routed.cluster = "c";
    route.action = routed;
    vhost.routes.push_back(route);
    routes.virtual_hosts.push_back(vhost);
    table_ = std::shared_ptr<const RouteTable>(*RouteTable::Create(routes));
  }

  // Cluster `name` over `addresses` (round robin, no outlier detection), with its stats.
  Cluster& AddCluster(const std::string& name, std::vector<net::Address> addresses,
                      resilience::CircuitBreakerConfig breakers = {.max_retries = 100}) {
    ClusterConfig config;
    config.name = name;
    config.lb_policy = LbPolicy::kRoundRobin;
    config.connect_timeout = milliseconds(200);
    for (const net::Address& address : addresses) {
      EndpointConfig endpoint;
      endpoint.address = address;
      config.endpoints.push_back(endpoint);
    }
    config.retry_budget = budget_;
    config.circuit_breakers = breakers;
    config.traffic_policy = traffic_policy_;
    config.subset = subset_;
    if (!stats_.contains(name)) stats_[name] = *UpstreamStats::Create(*shard_, name);
    clusters_[name] = std::make_shared<Cluster>(
        loop_, config, std::make_shared<resilience::CircuitBreakerThresholds>(breakers), random_,
        RealClock::Get(), FakeCodecs());
    return *clusters_[name];
  }

  static CodecFactories FakeCodecs() {
    return CodecFactories{FakeClientConnection::Factory({}), FakeClientConnection::Factory({})};
  }

  static RouteAction Retrying(uint32_t num_retries) {
    RouteAction action;
    action.retry_policy.num_retries = num_retries;
    action.retry_policy.backoff.base = milliseconds(1);
    action.retry_policy.backoff.cap = milliseconds(2);
    return action;
  }

  // Sends one request (headers, then `body` if any) and runs the loop until the client has its
  // answer.
  RecordingCallbacks& Send(absl::string_view method, absl::string_view body = "",
                           std::vector<std::pair<std::string, std::string>> extra = {},
                           absl::string_view path = "/x") {
    RecordingCallbacks& callbacks = NewStream();
    auto headers = std::make_unique<http::HeaderMap>();
    headers->Add(":method", method);
    if (method != "CONNECT") headers->Add(":path", path);
    headers->Add(":authority", "test");
    if (method != "CONNECT") headers->Add(":scheme", "http");
    for (const auto& [name, value] : extra) headers->Add(name, value);
    Start(callbacks, std::move(headers), body.empty());
    if (!body.empty()) {
      net::Buffer data(body);
      routers_.back()->DecodeData(data, /*end_stream=*/true);
    }
    loop_.RunUntil([&] { return callbacks.done(); }, std::chrono::seconds(5));
    return callbacks;
  }

  // A new downstream stream and its router.
  RecordingCallbacks& NewStream() {
    callbacks_.push_back(std::make_unique<RecordingCallbacks>());
    RecordingCallbacks& callbacks = *callbacks_.back();
    if (next_trace_.has_value()) callbacks.info.trace = *next_trace_;
    routers_.push_back(std::make_unique<Router>(context_, callbacks, mirrors_.get()));
    return callbacks;
  }

  // The worker's mirroring (mirror.h) over the fixture's clusters, for the streams made next.
  Mirrors& EnableMirrors(uint64_t max_in_flight) {
    mirrors_ = std::make_unique<Mirrors>(loop_, cluster_manager_, max_in_flight);
    return *mirrors_;
  }

  // What the connection manager does with a request's headers: resolves the route (Resolve), lets
  // the router route the request at the route stage, then (the route-level filters letting it
  // through) runs it as the last filter.
  void Start(RecordingCallbacks& callbacks, http::HeaderMapPtr headers, bool end_stream) {
    http::HeaderMap& request = Resolve(callbacks, std::move(headers));
    Router& router = *routers_.back();
    if (router.DecodeHeaders(request, end_stream) == stream::FilterStatus::kContinue) {
      router.DecodeHeaders(request, end_stream);
    }
  }

  // Keeps `headers` on the stream and resolves its route as the connection manager does: the
  // virtual host, the route, the cluster it picks. Returns the stream's headers.
  http::HeaderMap& Resolve(RecordingCallbacks& callbacks, http::HeaderMapPtr headers) {
    // A request arrives in a loop callback, just after the loop read the time; the fixture's own
    // work since the last turn must not make the router's timers fire early.
    loop_.UpdateTime();
    callbacks.request_headers = std::move(headers);
    http::HeaderMap& request = *callbacks.request_headers;
    callbacks.grpc_request = http::grpc::IsGrpcRequest(request);
    stream::Route& resolved = callbacks.resolved;
    resolved.table = table_;
    resolved.virtual_host = table_->MatchVirtualHost(route::RequestHost(request));
    if (resolved.virtual_host != nullptr) {
      const bool connect = request.Get(":method") == absl::string_view("CONNECT");
      if (connect) request.Set(":path", "/");
      resolved.entry = RouteTable::MatchRoute(*resolved.virtual_host, request);
      if (connect) request.Remove(":path");
    }
    if (resolved.entry != nullptr && resolved.entry->route_action() != nullptr) {
      const std::string& name = route::PickCluster(*resolved.entry->route_action(), random_);
      resolved.cluster_name = name;
      if (auto it = clusters_.find(name); it != clusters_.end()) {
        resolved.cluster = it->second;
        resolved.cluster_stats = &stats_[name];
      }
    }
    return request;
  }

  uint64_t Count(absl::string_view name, LabelSet labels = {}, absl::string_view cluster = "c") {
    labels.emplace_back("cluster", std::string(cluster));
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    // Most per-cluster series register on their first count (upstream_stats.h): absent is 0.
    return series == nullptr ? 0 : series->counter;
  }

  event::Loop loop_;
  FakeRandom random_;
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  std::map<std::string, std::shared_ptr<Cluster>> clusters_;
  std::map<std::string, UpstreamStats> stats_;
  // The fixture's clusters as a worker's ClusterManager shows them.
  class MapClusters final : public cluster::ClusterManager {
   public:
    explicit MapClusters(RouterTest& test) : test_(test) {}
    Cluster* Find(absl::string_view name) override { return Get(name).cluster.get(); }
    cluster::ClusterRef Get(absl::string_view name) override {
      auto it = test_.clusters_.find(std::string(name));
      if (it == test_.clusters_.end()) return {};
      return {it->second, &test_.stats_[it->first]};
    }

   private:
    RouterTest& test_;
  };
  MapClusters cluster_manager_{*this};
  std::unique_ptr<Mirrors> mirrors_;
  stream::StreamContext context_{
      .loop = loop_, .random = random_, .clock = RealClock::Get(), .stats = *shard_};
  resilience::RetryBudgetConfig budget_;
  // Decision-record sources Configure() and AddCluster() give the route "r" (rule 2, match 1) and
  // the clusters; empty: none.
  std::string route_source_;
  std::string traffic_policy_;
  std::string subset_;
  std::shared_ptr<const RouteTable> table_;
  std::vector<std::unique_ptr<FakeUpstream>> upstreams_;
  std::vector<std::unique_ptr<RecordingCallbacks>> callbacks_;
  std::vector<std::unique_ptr<Router>> routers_;
  // The trace the connection manager would have set up for the next Send().
  std::optional<tracing::RequestTrace> next_trace_;
};

}  // namespace meshlet::sidecar::router
