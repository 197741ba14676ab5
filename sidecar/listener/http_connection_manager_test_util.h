#pragma once

// The fixture of the connection manager's tests (http_connection_manager_test.cc, the connection's
// duties; active_stream_test.cc, a request's): a listener on 127.0.0.1 whose connections each get
// an HttpConnectionManager, raw HTTP/1.1 clients and hand-built HTTP/2 frames, a snapshot with a
// direct-response route and a route to an upstream that never answers, an access log kept in
// memory, and a worker whose clock steps at every reading with a tracer that samples everything.

#include "sidecar/listener/http_connection_manager.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/base/fake_clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/turn_clock.h"
#include "common/http/server.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/cluster_manager.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/filters/authorization.h"
#include "sidecar/listener/http_stats.h"
#include "sidecar/route/route_table.h"
#include "sidecar/tracing/recording_span_sink.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::listener {

using cluster::ClusterConfig;
using cluster::EndpointConfig;
using cluster::SharedClusterLimits;
using cluster::UpstreamProtocol;
using cluster::WorkerClusterManager;

using std::chrono::milliseconds;
using std::chrono::seconds;

using std::chrono::milliseconds;
using std::chrono::seconds;

class Log : public AccessLogSink {
 public:
  void Write(absl::string_view line) override { lines.emplace_back(line); }
  std::vector<std::string> lines;
};

class HttpConnectionManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // As the sidecar does: a peer that closed must not kill the process on write.
    ::signal(SIGPIPE, SIG_IGN);
    auto stats = HttpStats::Create(*shard_);
    ASSERT_TRUE(stats.ok()) << stats.status();
    stats_ = *stats;
    // An upstream that accepts and never answers.
    auto silent = net::Listener::Create(loop_, *net::Address::Parse("127.0.0.1:0"), {},
                                        [this](std::unique_ptr<net::Connection> c) {
                                          c->SetCallbacks(&sink_);
                                          held_.push_back(std::move(c));
                                        });
    ASSERT_TRUE(silent.ok());
    silent_ = std::move(*silent);

    auto snapshot = std::make_shared<config::Snapshot>();
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = "silent";
    EndpointConfig endpoint;
    endpoint.address = silent_->address();
    cluster->endpoints.push_back(endpoint);
    snapshot->clusters["silent"] = cluster;
    route::RouteConfig routes;
    routes.name = "routes";
    route::VirtualHostConfig vhost;
    vhost.name = "all";
    vhost.domains = {"*"};
    route::RouteEntry direct;
    direct.name = "direct";
    direct.match.path = "/direct";
    direct.action = route::DirectResponseAction{200, "ok"};
    vhost.routes.push_back(direct);
    route::RouteEntry hang;
    hang.name = "hang";
    hang.match.path = "/hang";
    route::RouteAction action;
    action.cluster = "silent";
    action.timeout = Duration(0);  // only the stream idle timeout ends it
    hang.action = action;
    vhost.routes.push_back(hang);
    routes.virtual_hosts.push_back(vhost);
    snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
    clusters_.Update(snapshot->clusters);
    context_.snapshot = snapshot;

    listener_config_.route_config_name = "routes";
    auto listener = net::Listener::Create(loop_, *net::Address::Parse("127.0.0.1:0"), {},
                                          [this](std::unique_ptr<net::Connection> connection) {
                                            auto hcm = std::make_unique<HttpConnectionManager>(
                                                *hcm_context_, stats_, listener_config_,
                                                std::move(connection), net::Buffer(), hcm_options_,
                                                [this](HttpConnectionManager& closed) {
                                                  ++closes_;
                                                  loop_.DeferDelete(std::move(hcms_[&closed]));
                                                  hcms_.erase(&closed);
                                                });
                                            HttpConnectionManager* raw = hcm.get();
                                            hcms_[raw] = std::move(hcm);
                                            raw->Start();
                                          });
    ASSERT_TRUE(listener.ok());
    listener_ = std::move(*listener);
  }

  void TearDown() override {
    hcms_.clear();
    for (auto& c : held_) c->SetCallbacks(nullptr);
    held_.clear();
    loop_.RunUntilIdle();
  }

  // A raw client connection; `received` collects what the proxy sends.
  std::unique_ptr<net::Connection> Connect(net::testing::RecordingCallbacks& callbacks) {
    auto c = net::Connection::Connect(loop_, listener_->address(), seconds(5));
    c->SetCallbacks(&callbacks);
    return c;
  }

  // Sends `request` on a new connection; what came back once the response ended or the
  // connection closed, and how long that took.
  std::pair<std::string, Duration> Exchange(absl::string_view request) {
    net::testing::RecordingCallbacks client;
    auto c = Connect(client);
    const MonotonicTime start = RealClock::Get().Now();
    c->Write(request);
    EXPECT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
    return {client.received, RealClock::Get().Now() - start};
  }

  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  struct Sink : net::ConnectionCallbacks {
    void OnData(net::Buffer& data, bool) override { data.Drain(data.length()); }
    void OnClose(net::CloseReason, const absl::Status&) override {}
  };

  // A snapshot of `clusters` whose route table "routes" (one virtual host, every domain) has a
  // route per path, named after it: to the cluster named, or a direct 200 "ok" for an empty name;
  // each route then passed to `edit` when given. The cluster manager is updated to it.
  std::shared_ptr<const config::Snapshot> RoutesTo(
      const std::vector<std::pair<std::string, std::string>>& path_to_cluster,
      const std::vector<std::shared_ptr<ClusterConfig>>& clusters,
      const std::function<void(route::RouteEntry&)>& edit = nullptr) {
    auto snapshot = std::make_shared<config::Snapshot>();
    for (const auto& cluster : clusters) snapshot->clusters[cluster->name] = cluster;
    route::RouteConfig routes;
    routes.name = "routes";
    route::VirtualHostConfig vhost;
    vhost.name = "all";
    vhost.domains = {"*"};
    for (const auto& [path, cluster] : path_to_cluster) {
      route::RouteEntry route;
      route.name = path.substr(1);
      route.match.path = path;
      if (cluster.empty()) {
        route.action = route::DirectResponseAction{200, "ok"};
      } else {
        route::RouteAction action;
        action.cluster = cluster;
        route.action = action;
      }
      if (edit) edit(route);
      vhost.routes.push_back(route);
    }
    routes.virtual_hosts.push_back(vhost);
    snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
    clusters_.Update(snapshot->clusters);
    return snapshot;
  }

  // A worker's context as the sidecar builds it, its clock a TurnClock, here over a source whose
  // time moves on by kStep at every reading (so only readings that reach the source see time
  // pass), with a tracer sampling every request into `sink`. Point hcm_context_ at `context`.
  struct SteppedWorker {
    static constexpr Duration kStep = std::chrono::microseconds(250);
    static tracing::TracingConfig Sample(bool span_per_attempt, double percent) {
      tracing::TracingConfig config;
      config.sampling_percent = percent;
      config.span_per_attempt = span_per_attempt;
      return config;
    }
    // Every request sampled, unless `sampling_percent` says otherwise.
    SteppedWorker(HttpConnectionManagerTest& test, std::shared_ptr<const config::Snapshot> snapshot,
                  bool span_per_attempt, double sampling_percent = 100)
        : clock(test.loop_, source),
          tracer(Sample(span_per_attempt, sampling_percent), "svc", sink,
                 tracing::TracerStats::Create(*test.shard_), test.random_, clock),
          context{{.loop = test.loop_,
                   .random = test.random_,
                   .clock = clock,
                   .stats = *test.shard_,
                   .access_log = &test.log_,
                   .tracer = &tracer},
                  test.clusters_,
                  std::move(snapshot)} {
      source.AdvanceOnEveryRead(kStep);
    }
    FakeClock source;
    event::TurnClock clock;
    tracing::RecordingSpanSink sink;
    tracing::Tracer tracer;
    WorkerContext context;
  };

  event::Loop loop_;
  RealRandom random_{1};
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_ = registry_.CreateShard();
  HttpStats stats_;
  SharedClusterLimits limits_;
  WorkerClusterManager clusters_{loop_, random_, RealClock::Get(), *shard_, limits_};
  Log log_;
  WorkerContext context_{{.loop = loop_,
                          .random = random_,
                          .clock = RealClock::Get(),
                          .stats = *shard_,
                          .access_log = &log_},
                         clusters_,
                         nullptr};
  // What new connections get; a test may point it at a context of its own.
  WorkerContext* hcm_context_ = &context_;
  config::ListenerConfig listener_config_;
  HttpConnectionManager::Options hcm_options_;
  Sink sink_;
  std::unique_ptr<net::Listener> silent_;
  std::vector<std::unique_ptr<net::Connection>> held_;
  std::unique_ptr<net::Listener> listener_;
  std::map<HttpConnectionManager*, std::unique_ptr<HttpConnectionManager>> hcms_;
  int closes_ = 0;
};

// A hand-built HTTP/2 frame (RFC 9113 4.1).
inline std::string H2Frame(uint8_t type, uint8_t flags, uint32_t stream_id,
                           absl::string_view payload) {
  std::string frame = {static_cast<char>((payload.size() >> 16) & 0xff),
                       static_cast<char>((payload.size() >> 8) & 0xff),
                       static_cast<char>(payload.size() & 0xff),
                       static_cast<char>(type),
                       static_cast<char>(flags),
                       static_cast<char>((stream_id >> 24) & 0x7f),
                       static_cast<char>((stream_id >> 16) & 0xff),
                       static_cast<char>((stream_id >> 8) & 0xff),
                       static_cast<char>(stream_id & 0xff)};
  frame.append(payload.data(), payload.size());
  return frame;
}

inline constexpr uint8_t kH2Data = 0, kH2Headers = 1, kH2RstStream = 3, kH2Ping = 6, kH2Goaway = 7,
                         kH2Continuation = 9;
inline constexpr uint8_t kH2EndStream = 1, kH2Ack = 1, kH2EndHeaders = 4;
// The client preface and an empty SETTINGS frame.
inline const std::string kH2Preface =
    std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + H2Frame(4, 0, 0, "");
// HPACK: :method GET, :scheme http, :authority "x", then :path (literal, indexed name).
inline const std::string kH2RequestStart = "\x82\x86\x41\x01x";
inline std::string H2Path(absl::string_view path) {
  return std::string(1, '\x04') + static_cast<char>(path.size()) + std::string(path);
}

// A stream id as frames carry it: 31 bits, big-endian, the reserved bit ignored.
inline uint32_t H2StreamId(absl::string_view four_bytes) {
  return ((static_cast<uint8_t>(four_bytes[0]) & 0x7f) << 24) |
         (static_cast<uint8_t>(four_bytes[1]) << 16) | (static_cast<uint8_t>(four_bytes[2]) << 8) |
         static_cast<uint8_t>(four_bytes[3]);
}

// One whole frame received from the server.
struct H2ReceivedFrame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream_id = 0;
  std::string payload;
};

// The whole frames in `bytes`, in order.
inline std::vector<H2ReceivedFrame> H2Frames(absl::string_view bytes) {
  std::vector<H2ReceivedFrame> frames;
  while (bytes.size() >= 9) {
    const size_t length = (static_cast<uint8_t>(bytes[0]) << 16) |
                          (static_cast<uint8_t>(bytes[1]) << 8) | static_cast<uint8_t>(bytes[2]);
    if (bytes.size() < 9 + length) break;
    H2ReceivedFrame frame;
    frame.type = static_cast<uint8_t>(bytes[3]);
    frame.flags = static_cast<uint8_t>(bytes[4]);
    frame.stream_id = H2StreamId(bytes.substr(5, 4));
    frame.payload = std::string(bytes.substr(9, length));
    frames.push_back(std::move(frame));
    bytes.remove_prefix(9 + length);
  }
  return frames;
}

// Types of the whole frames in `bytes`, in order.
inline std::vector<uint8_t> H2FrameTypes(absl::string_view bytes) {
  std::vector<uint8_t> types;
  for (const H2ReceivedFrame& frame : H2Frames(bytes)) types.push_back(frame.type);
  return types;
}

inline bool HasFrame(absl::string_view bytes, uint8_t type) {
  std::vector<uint8_t> types = H2FrameTypes(bytes);
  return std::find(types.begin(), types.end(), type) != types.end();
}

// A policy that denies requests for `path` to everyone.
inline std::shared_ptr<const filters::Authorizer> DenyPath(const std::string& path) {
  filters::AuthorizationRuleConfig rule;
  rule.paths = {path};
  filters::AuthorizationPolicyConfig deny{
      .name = "deny", .action = filters::AuthorizationPolicyConfig::Action::kDeny, .rules = {rule}};
  return std::make_shared<const filters::Authorizer>(
      filters::AuthorizationConfig{.policies = {deny}});
}

}  // namespace meshlet::sidecar::listener
