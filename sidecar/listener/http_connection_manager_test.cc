// HttpConnectionManager's own duties over a real socket with a raw HTTP/1.1 (or hand-framed
// HTTP/2) client: the request header timeout, the stream and connection idle timeouts, draining and
// the access log.

#include "sidecar/listener/http_connection_manager.h"

#include <algorithm>
#include <chrono>
#include <csignal>
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

namespace {

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
  // route per path, named after it: to the cluster named, or a direct 200 "ok" for an empty name.
  // The cluster manager is updated to it.
  std::shared_ptr<const config::Snapshot> RoutesTo(
      const std::vector<std::pair<std::string, std::string>>& path_to_cluster,
      const std::vector<std::shared_ptr<ClusterConfig>>& clusters) {
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
    static tracing::TracingConfig SampleAll(bool span_per_attempt) {
      tracing::TracingConfig config;
      config.sampling_percent = 100;
      config.span_per_attempt = span_per_attempt;
      return config;
    }
    SteppedWorker(HttpConnectionManagerTest& test, std::shared_ptr<const config::Snapshot> snapshot,
                  bool span_per_attempt)
        : clock(test.loop_, source),
          tracer(SampleAll(span_per_attempt), "svc", sink,
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

TEST_F(HttpConnectionManagerTest, PartialRequestHeadGets408) {
  listener_config_.http.request_headers_timeout = milliseconds(100);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n");  // the head never ends
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 408")) << client.received;
  EXPECT_EQ(Counter("meshlet_http_downstream_rq_header_timeout_total"), 1u);
  EXPECT_EQ(closes_, 1);
}

// A hand-built HTTP/2 frame (RFC 9113 4.1).
std::string H2Frame(uint8_t type, uint8_t flags, uint32_t stream_id, absl::string_view payload) {
  std::string frame = {0,
                       0,
                       static_cast<char>(payload.size()),
                       static_cast<char>(type),
                       static_cast<char>(flags),
                       static_cast<char>((stream_id >> 24) & 0x7f),
                       static_cast<char>((stream_id >> 16) & 0xff),
                       static_cast<char>((stream_id >> 8) & 0xff),
                       static_cast<char>(stream_id & 0xff)};
  frame.append(payload.data(), payload.size());
  return frame;
}

constexpr uint8_t kH2Data = 0, kH2Headers = 1, kH2RstStream = 3, kH2Ping = 6, kH2Goaway = 7,
                  kH2Continuation = 9;
constexpr uint8_t kH2EndStream = 1, kH2Ack = 1, kH2EndHeaders = 4;
// The client preface and an empty SETTINGS frame.
const std::string kH2Preface =
    std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + H2Frame(4, 0, 0, "");
// HPACK: :method GET, :scheme http, :authority "x", then :path (literal, indexed name).
const std::string kH2RequestStart = "\x82\x86\x41\x01x";
std::string H2Path(absl::string_view path) {
  return std::string(1, '\x04') + static_cast<char>(path.size()) + std::string(path);
}

// A stream id as frames carry it: 31 bits, big-endian, the reserved bit ignored.
uint32_t H2StreamId(absl::string_view four_bytes) {
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
std::vector<H2ReceivedFrame> H2Frames(absl::string_view bytes) {
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
std::vector<uint8_t> H2FrameTypes(absl::string_view bytes) {
  std::vector<uint8_t> types;
  for (const H2ReceivedFrame& frame : H2Frames(bytes)) types.push_back(frame.type);
  return types;
}

bool HasFrame(absl::string_view bytes, uint8_t type) {
  std::vector<uint8_t> types = H2FrameTypes(bytes);
  return std::find(types.begin(), types.end(), type) != types.end();
}

TEST_F(HttpConnectionManagerTest, Http2PartialHeaderBlockGetsGoAwayAndClose) {
  listener_config_.http.request_headers_timeout = milliseconds(200);
  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks slow;
  auto s = Connect(slow);
  // A stream in progress (upstream never answers) must not shelter the stalled header block.
  s->Write(kH2Preface +
           H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1, kH2RequestStart + H2Path("/hang")));
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return hcms_.size() == 1 && hcms_.begin()->second->active_streams() == 1; },
      seconds(5)));
  const MonotonicTime start = RealClock::Get().Now();
  s->Write(H2Frame(kH2Headers, kH2EndStream, 3, kH2RequestStart));
  s->Write(H2Frame(kH2Continuation, 0, 3, H2Path("/direct")));  // never END_HEADERS

  // Another connection's complete request is served meanwhile and outlives the timeout.
  net::testing::RecordingCallbacks good;
  auto g = Connect(good);
  g->Write(kH2Preface + H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1,
                                kH2RequestStart + H2Path("/direct")));
  ASSERT_TRUE(loop_.RunUntil([&] { return HasFrame(good.received, kH2Headers); }, seconds(5)));

  ASSERT_TRUE(loop_.RunUntil([&] { return slow.end_stream || slow.closes > 0; }, seconds(5)));
  EXPECT_GE(RealClock::Get().Now() - start, milliseconds(150));
  EXPECT_TRUE(HasFrame(slow.received, kH2Goaway));
  EXPECT_EQ(Counter("meshlet_http_downstream_rq_header_timeout_total"), 1u);
  EXPECT_EQ(closes_, 1);
  loop_.RunUntil([] { return false; }, milliseconds(300));
  EXPECT_EQ(good.closes, 0);
  EXPECT_FALSE(good.end_stream);
  EXPECT_EQ(Counter("meshlet_http_downstream_rq_header_timeout_total"), 1u);
}

TEST_F(HttpConnectionManagerTest, Http2HeaderBlockCompletedInTimeIsServed) {
  listener_config_.http.request_headers_timeout = milliseconds(200);
  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write(kH2Preface + H2Frame(kH2Headers, kH2EndStream, 1, kH2RequestStart));
  loop_.RunUntil([] { return false; }, milliseconds(100));
  c->Write(H2Frame(kH2Continuation, kH2EndHeaders, 1, H2Path("/direct")));
  ASSERT_TRUE(loop_.RunUntil([&] { return HasFrame(client.received, kH2Headers); }, seconds(5)));
  // Well past the timeout counted from the first HEADERS: the timer was disarmed.
  loop_.RunUntil([] { return false; }, milliseconds(400));
  EXPECT_EQ(client.closes, 0);
  EXPECT_FALSE(HasFrame(client.received, kH2Goaway));
  EXPECT_EQ(Counter("meshlet_http_downstream_rq_header_timeout_total"), 0u);
}

TEST_F(HttpConnectionManagerTest, KeepAliveConnectionIsNotCutByTheHeaderTimeout) {
  listener_config_.http.request_headers_timeout = milliseconds(100);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return absl::EndsWith(client.received, "ok"); }, seconds(5)));
  // Idle between requests for longer than the header timeout: still open.
  loop_.RunUntil([] { return false; }, milliseconds(300));
  EXPECT_EQ(client.closes, 0);
  c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil(
      [&] {
        return client.received.find("ok", client.received.find("ok") + 2) != std::string::npos;
      },
      seconds(5)));
  EXPECT_EQ(log_.lines.size(), 2u);
}

TEST_F(HttpConnectionManagerTest, StreamIdleTimeoutAnswers408AndResetsUpstream) {
  listener_config_.http.stream_idle_timeout = milliseconds(100);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(
      loop_.RunUntil([&] { return absl::StrContains(client.received, "\r\n\r\n"); }, seconds(5)));
  EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 408")) << client.received;
  ASSERT_EQ(log_.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"SI\"")) << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"route_name\":\"hang\"")) << log_.lines[0];
  // The duration, in milliseconds and in microseconds: about the idle timeout (its timer runs on
  // the loop's millisecond clock).
  auto field = [&](absl::string_view name) -> int64_t {
    const std::string key = absl::StrCat("\"", name, "\":");
    const size_t at = log_.lines[0].find(key);
    if (at == std::string::npos) return -1;
    int64_t value = -1;
    const std::string rest = log_.lines[0].substr(at + key.size());
    EXPECT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find_first_of(",}")), &value)) << rest;
    return value;
  };
  const int64_t duration_us = field("duration_us");
  EXPECT_GE(duration_us, 90000) << log_.lines[0];
  EXPECT_LT(duration_us, 5000000) << log_.lines[0];
  EXPECT_EQ(field("duration_ms"), duration_us / 1000) << log_.lines[0];
  EXPECT_EQ(clusters_.Find("silent")->thresholds().Active(resilience::ResourceKind::kRequest), 0u);
}

TEST_F(HttpConnectionManagerTest, StreamIdleTimeoutCountsFromEachStreamsOwnActivity) {
  // One timer per connection serves every stream: a stream started while it is armed for an
  // earlier stream still gets its whole timeout.
  listener_config_.http.stream_idle_timeout = milliseconds(300);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return absl::EndsWith(client.received, "ok"); }, seconds(5)));
  loop_.RunUntil([] { return false; }, milliseconds(200));
  client.received.clear();
  const auto start = std::chrono::steady_clock::now();
  c->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(
      loop_.RunUntil([&] { return absl::StrContains(client.received, "\r\n\r\n"); }, seconds(5)));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 408")) << client.received;
  // libuv time has millisecond granularity, hence the slack.
  EXPECT_GE(elapsed, milliseconds(290));
  EXPECT_LT(elapsed, seconds(3));
}

TEST_F(HttpConnectionManagerTest, IdleConnectionIsClosed) {
  listener_config_.http.idle_timeout = milliseconds(100);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  EXPECT_EQ(Counter("meshlet_http_downstream_cx_idle_timeout_total"), 1u);
}

TEST_F(HttpConnectionManagerTest, DrainSaysConnectionCloseAndCloses) {
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return absl::EndsWith(client.received, "ok"); }, seconds(5)));
  EXPECT_FALSE(absl::StrContains(client.received, "connection: close"));
  // An idle connection closes at once on Drain().
  ASSERT_EQ(hcms_.size(), 1u);
  hcms_.begin()->second->Drain();
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));

  // A worker that is draining answers with `Connection: close`, then closes.
  context_.draining = true;
  net::testing::RecordingCallbacks second;
  auto c2 = Connect(second);
  c2->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return second.end_stream || second.closes > 0; }, seconds(5)));
  EXPECT_TRUE(absl::StrContains(second.received, "connection: close")) << second.received;
  EXPECT_TRUE(absl::EndsWith(second.received, "ok"));
  EXPECT_EQ(Counter("meshlet_http_downstream_cx_drain_close_total"), 1u);
}

// The last-stream-id of every GOAWAY in `bytes`, in order.
std::vector<uint32_t> H2GoAwayLastStreamIds(absl::string_view bytes) {
  std::vector<uint32_t> ids;
  for (const H2ReceivedFrame& f : H2Frames(bytes)) {
    if (f.type != kH2Goaway || f.payload.size() < 8) continue;
    ids.push_back(H2StreamId(f.payload));
  }
  return ids;
}

// The stream's response ended (a frame with END_STREAM) or was reset.
bool H2StreamEnded(absl::string_view bytes, uint32_t stream_id) {
  for (const H2ReceivedFrame& f : H2Frames(bytes)) {
    if (f.stream_id != stream_id) continue;
    if (f.type == kH2RstStream) return true;
    if ((f.type == kH2Data || f.type == kH2Headers) && (f.flags & kH2EndStream) != 0) return true;
  }
  return false;
}

// ACKs of every PING in `bytes`, as a client's codec would send them.
std::string H2PingAcks(absl::string_view bytes) {
  std::string acks;
  for (const H2ReceivedFrame& f : H2Frames(bytes)) {
    if (f.type == kH2Ping && (f.flags & kH2Ack) == 0)
      acks += H2Frame(kH2Ping, kH2Ack, 0, f.payload);
  }
  return acks;
}

// Draining an HTTP/2 connection whose requests' upstream refuses every connect (the pod's app
// went away first), with a request (stream 3) the client sent before it read the drain's GOAWAY
// notice: the stream either gets its answer — a local 503 UF,URX after the retries, written after
// the final GOAWAY — or is refused by the final GOAWAY's last-stream-id, never both; and the
// connection then ends.
TEST_F(HttpConnectionManagerTest, DrainingHttp2ConnectionAnswersOrRefusesEveryStream) {
  uint16_t closed_port = 0;
  {
    // A port that was just free: nothing listens there now, so connects are refused.
    auto probe = net::Listener::Create(loop_, *net::Address::Parse("127.0.0.1:0"), {},
                                       [](std::unique_ptr<net::Connection>) {});
    ASSERT_TRUE(probe.ok());
    closed_port = (*probe)->address().port();
  }
  auto dead = std::make_shared<ClusterConfig>();
  dead->name = "dead";
  EndpointConfig endpoint;
  endpoint.address = net::Address::Parse("127.0.0.1:0")->WithPort(closed_port);
  dead->endpoints.push_back(endpoint);
  auto silent = std::make_shared<ClusterConfig>(*context_.snapshot->clusters.at("silent"));
  context_.snapshot =
      RoutesTo({{"/direct", ""}, {"/dead", "dead"}, {"/hang", "silent"}}, {dead, silent});
  hcm_options_.protocol = http::Protocol::kHttp2;
  const std::string request3 =
      H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 3, kH2RequestStart + H2Path("/dead"));

  struct Case {
    const char* name;
    bool busy;       // stream 1 still waits for its upstream when the drain starts
    bool ack_first;  // the PING's ACK precedes stream 3 in the same read
    bool answered;   // stream 3 gets its answer (else: refused by the last-stream-id)
  };
  for (const Case& c : {Case{"idle connection: closes at once", false, false, false},
                        Case{"stream 3, then the PING's ACK", true, false, true},
                        Case{"the PING's ACK, then stream 3 in the same read", true, true, true}}) {
    SCOPED_TRACE(c.name);
    hcms_.clear();
    log_.lines.clear();
    loop_.RunUntilIdle();
    net::testing::RecordingCallbacks client;
    auto connection = Connect(client);
    connection->Write(kH2Preface + H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1,
                                           kH2RequestStart + H2Path(c.busy ? "/hang" : "/direct")));
    if (c.busy) {
      ASSERT_TRUE(loop_.RunUntil(
          [&] { return hcms_.size() == 1 && hcms_.begin()->second->active_streams() == 1; },
          seconds(5)));
    } else {
      ASSERT_TRUE(loop_.RunUntil([&] { return H2StreamEnded(client.received, 1); }, seconds(5)));
    }
    ASSERT_EQ(hcms_.size(), 1u);
    hcms_.begin()->second->Drain();
    if (!c.busy) {
      // Sent before the client read anything of the drain; it arrives after the close.
      connection->Write(request3);
    } else {
      ASSERT_TRUE(loop_.RunUntil([&] { return HasFrame(client.received, kH2Ping); }, seconds(5)));
      const std::string ack = H2PingAcks(client.received);
      connection->Write(c.ack_first ? ack + request3 : request3 + ack);
    }
    const auto refused = [&] {
      const std::vector<uint32_t> last = H2GoAwayLastStreamIds(client.received);
      return last.size() == 2 && last.back() < 3;
    };
    ASSERT_TRUE(
        loop_.RunUntil([&] { return H2StreamEnded(client.received, 3) || refused(); }, seconds(5)));
    const std::vector<uint32_t> last = H2GoAwayLastStreamIds(client.received);
    ASSERT_EQ(last.size(), 2u);  // the notice, then the final GOAWAY
    EXPECT_EQ(last[0], 0x7fffffffu);
    if (c.answered) {
      EXPECT_GE(last[1], 3u);
      EXPECT_TRUE(H2StreamEnded(client.received, 3));
      EXPECT_FALSE(HasFrame(client.received, kH2RstStream));
      ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
      EXPECT_TRUE(absl::StrContains(log_.lines.back(), "\"response_code\":503"))
          << log_.lines.back();
      EXPECT_TRUE(absl::StrContains(log_.lines.back(), "\"response_flags\":\"UF,URX\""))
          << log_.lines.back();
    } else {
      EXPECT_EQ(last[1], 1u);
      EXPECT_FALSE(H2StreamEnded(client.received, 3));
      // Nothing of stream 3 reached the filters: a refused stream was not processed.
      loop_.RunUntil([] { return false; }, milliseconds(50));
      for (const std::string& line : log_.lines) {
        EXPECT_FALSE(absl::StrContains(line, "\"path\":\"/dead\"")) << line;
      }
      // The connection ends once its streams are done: a FIN after the final GOAWAY.
      EXPECT_TRUE(loop_.RunUntil([&] { return client.end_stream; }, seconds(5)));
    }
    connection->Close(net::CloseMode::kNoFlush);
    loop_.RunUntilIdle();
  }
}

TEST_F(HttpConnectionManagerTest, ClientGoingAwayMidRequestIsLoggedAsDownstreamClosed) {
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return !held_.empty(); }, seconds(5)));
  c->Close(net::CloseMode::kAbort);
  ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"DC\"")) << log_.lines[0];
  EXPECT_EQ(clusters_.Find("silent")->thresholds().Active(resilience::ResourceKind::kRequest), 0u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "DC"}}), 1u);
}

TEST_F(HttpConnectionManagerTest, AuthorizationDeniesBeforeRouting) {
  filters::AuthorizationRuleConfig web_reads;
  web_reads.principals = {"spiffe://td/ns/shop/sa/*"};
  web_reads.paths = {"/direct"};
  filters::AuthorizationPolicyConfig allow{.name = "shop-reads", .rules = {web_reads}};
  listener_config_.authorizer = std::make_shared<const filters::Authorizer>(
      filters::AuthorizationConfig{.policies = {allow}});
  auto get = [&](absl::string_view path) {
    net::testing::RecordingCallbacks client;
    auto c = Connect(client);
    c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"));
    EXPECT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
    return client.received;
  };

  hcm_options_.peer_identity = "spiffe://td/ns/shop/sa/web";
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 200"));
  // Denied before routing: /missing would be 404 (NR) if it were routed.
  EXPECT_TRUE(absl::StartsWith(get("/missing"), "HTTP/1.1 403"));
  hcm_options_.peer_identity = "spiffe://td/ns/ops/sa/web";
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 403"));
  hcm_options_.peer_identity.clear();  // plaintext: no identity
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 403"));

  EXPECT_EQ(Counter("meshlet_http_rbac_allowed_total"), 1u);
  EXPECT_EQ(Counter("meshlet_http_rbac_denied_total"), 3u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "AZ"}}), 3u);
  ASSERT_EQ(log_.lines.size(), 4u);
  EXPECT_TRUE(absl::StrContains(log_.lines[1], "\"response_flags\":\"AZ\"")) << log_.lines[1];
  EXPECT_TRUE(absl::StrContains(log_.lines[1], "\"response_code\":403")) << log_.lines[1];
}

// A policy that denies requests for `path` to everyone.
std::shared_ptr<const filters::Authorizer> DenyPath(const std::string& path) {
  filters::AuthorizationRuleConfig rule;
  rule.paths = {path};
  filters::AuthorizationPolicyConfig deny{
      .name = "deny", .action = filters::AuthorizationPolicyConfig::Action::kDeny, .rules = {rule}};
  return std::make_shared<const filters::Authorizer>(
      filters::AuthorizationConfig{.policies = {deny}});
}

// The chain's order at the listener level: authorization before the listener's rate limit, so
// a denied request spends no token.
TEST_F(HttpConnectionManagerTest, DeniedRequestsSpendNoRateLimitToken) {
  listener_config_.authorizer = DenyPath("/denied");
  listener_config_.rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 0, .burst = 1}, std::nullopt);
  auto get = [&](absl::string_view path) {
    return Exchange(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"))
        .first;
  };

  EXPECT_TRUE(absl::StartsWith(get("/denied"), "HTTP/1.1 403"));
  EXPECT_TRUE(absl::StartsWith(get("/denied"), "HTTP/1.1 403"));
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 200"));  // the one token
  const std::string limited = get("/direct");
  EXPECT_TRUE(absl::StartsWith(limited, "HTTP/1.1 429")) << limited;
  EXPECT_TRUE(absl::StrContains(limited, "retry-after: 3600")) << limited;
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "AZ"}}), 2u);
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "RL"}}), 1u);
}

// A route whose faults requests may trigger by header, to the cluster that never answers, with a
// route timeout of `timeout`.
std::shared_ptr<const config::Snapshot> FaultRoute(const config::Snapshot& base, Duration timeout) {
  auto snapshot = std::make_shared<config::Snapshot>(base);
  route::RouteConfig routes;
  routes.name = "routes";
  route::VirtualHostConfig vhost;
  vhost.name = "all";
  vhost.domains = {"*"};
  route::RouteEntry faulty;
  faulty.name = "faulty";
  faulty.match.path = "/";
  faulty.fault_header_triggered = true;
  route::RouteAction action;
  action.cluster = "silent";
  action.timeout = timeout;
  faulty.action = action;
  vhost.routes.push_back(faulty);
  routes.virtual_hosts.push_back(vhost);
  snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
  return snapshot;
}

// A fault delay holds the request (and its body) in the chain; the route timeout, armed before
// the route-level filters, keeps running and ends the request during the delay.
TEST_F(HttpConnectionManagerTest, FaultDelayCountsAgainstTheRouteTimeout) {
  context_.snapshot = FaultRoute(*context_.snapshot, milliseconds(100));
  const auto [received, elapsed] = Exchange(
      "POST /slow HTTP/1.1\r\nhost: x\r\nx-meshlet-fault-delay-ms: 5000\r\n"
      "content-length: 4\r\nconnection: close\r\n\r\nbody");
  EXPECT_LT(elapsed, seconds(2));
  EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 504")) << received;
  ASSERT_EQ(log_.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"UT,DI\"")) << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"bytes_received\":4")) << log_.lines[0];
}

// A delayed request continues through the chain when its delay ends: here to the fault's abort.
TEST_F(HttpConnectionManagerTest, DelayedRequestMeetsItsAbortWhenTheDelayEnds) {
  context_.snapshot = FaultRoute(*context_.snapshot, Duration(0));
  const auto [received, elapsed] = Exchange(
      "POST /x HTTP/1.1\r\nhost: x\r\nx-meshlet-fault-delay-ms: 50\r\n"
      "x-meshlet-fault-abort: 418\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody");
  EXPECT_GE(elapsed, milliseconds(45));
  EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 418")) << received;
  EXPECT_TRUE(absl::StrContains(received, "fault injected\n")) << received;
  ASSERT_EQ(log_.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"FI,DI\"")) << log_.lines[0];
}

// Policies reach connections opened before them: the first request after a new snapshot on a
// kept-alive connection already meets the new authorization and rate limit.
TEST_F(HttpConnectionManagerTest, PolicyChangesReachOpenConnectionsAtTheNextRequest) {
  listener_config_.name = "inbound";
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  auto get = [&](absl::string_view path) {
    client.received.clear();
    c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\n\r\n"));
    // The whole response: its head and content-length bytes of body.
    auto complete = [&] {
      const size_t head_end = client.received.find("\r\n\r\n");
      const size_t length_at = client.received.find("content-length: ");
      if (head_end == std::string::npos || length_at == std::string::npos) return false;
      const size_t length = std::stoul(client.received.substr(length_at + 16));
      return client.received.size() >= head_end + 4 + length;
    };
    EXPECT_TRUE(loop_.RunUntil([&] { return complete() || client.closes > 0; }, seconds(5)));
    return client.received;
  };
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 200")) << client.received;

  // The same routes and clusters with another version of this listener.
  const std::shared_ptr<const config::Snapshot> base = context_.snapshot;
  auto with_listener = [&](const config::ListenerConfig& l) {
    auto next = std::make_shared<config::Snapshot>();
    next->route_tables = base->route_tables;
    next->clusters = base->clusters;
    next->listeners = {l};
    return next;
  };

  // A new snapshot whose listener denies /direct to everyone.
  config::ListenerConfig listener = listener_config_;
  listener.authorizer = DenyPath("/direct");
  context_.snapshot = with_listener(listener);
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 403")) << client.received;

  // Then one that allows it again but limits the listener to one request.
  listener.authorizer = nullptr;
  listener.rate_limiter = std::make_shared<resilience::LocalRateLimiter>(
      resilience::TokenBucketConfig{.requests_per_second = 0, .burst = 1}, std::nullopt);
  context_.snapshot = with_listener(listener);
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 200")) << client.received;
  EXPECT_TRUE(absl::StartsWith(get("/direct"), "HTTP/1.1 429")) << client.received;
  EXPECT_EQ(closes_, 0);  // all on the one connection
}

// A capture listener's connection to a destination the mesh does not know, under REFUSE: every
// request gets a local 502 naming the destination, flagged NM, and nothing is routed.
TEST_F(HttpConnectionManagerTest, RefusedDestinationAnswers502WithNM) {
  hcm_options_.refuse = true;
  hcm_options_.original_destination = "203.0.113.7:80";
  const std::string response =
      Exchange("GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 502")) << response;
  EXPECT_TRUE(absl::StrContains(response, "destination 203.0.113.7:80 is not in the mesh registry"))
      << response;
  ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"response_flags\":\"NM\"")) << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"original_destination\":\"203.0.113.7:80\""))
      << log_.lines[0];
  EXPECT_TRUE(absl::StrContains(log_.lines[0], "\"path\":\"/direct\"")) << log_.lines[0];
  EXPECT_EQ(Counter("meshlet_http_response_flags_total", {{"flag", "NM"}}), 1u);
}

// A matched destination's route configuration replaces the listener's, also after a snapshot
// change (which refreshes the listener's own settings).
TEST_F(HttpConnectionManagerTest, DestinationRoutesOverrideTheListenersAcrossSnapshots) {
  listener_config_.name = "outbound";
  listener_config_.route_config_name = "missing";  // the listener's own: would answer 404
  hcm_options_.route_config_name = "routes";
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  auto get = [&] {
    client.received.clear();
    c->Write("GET /direct HTTP/1.1\r\nhost: x\r\n\r\n");
    EXPECT_TRUE(loop_.RunUntil(
        [&] { return absl::EndsWith(client.received, "ok") || client.closes > 0; }, seconds(5)));
    return client.received;
  };
  EXPECT_TRUE(absl::StartsWith(get(), "HTTP/1.1 200")) << client.received;
  auto next = std::make_shared<config::Snapshot>(*context_.snapshot);
  next->listeners = {listener_config_};
  context_.snapshot = next;
  EXPECT_TRUE(absl::StartsWith(get(), "HTTP/1.1 200")) << client.received;
}

// A request answered within the loop turn its headers arrived in (a direct response, a local
// reply for a cluster without hosts) still took time: the worker's clock reads the time once per
// turn for everything else, but a request's start and end are read exactly, so its access-log
// duration, its duration histograms (downstream and the cluster's golden metrics) and its
// server span all show it.
TEST_F(HttpConnectionManagerTest, RequestsAnsweredWithinOneLoopTurnHaveADuration) {
  auto empty = std::make_shared<ClusterConfig>();
  empty->name = "empty";
  SteppedWorker worker(*this, RoutesTo({{"/direct", ""}, {"/no-hosts", "empty"}}, {empty}),
                       /*span_per_attempt=*/false);
  tracing::RecordingSpanSink& sink = worker.sink;
  hcm_context_ = &worker.context;

  for (const char* path : {"/direct", "/no-hosts"}) {
    for (http::Protocol protocol : {http::Protocol::kHttp11, http::Protocol::kHttp2}) {
      SCOPED_TRACE(absl::StrCat(path, " ", http::ProtocolName(protocol)));
      hcm_options_.protocol = protocol;
      log_.lines.clear();
      sink.spans.clear();
      net::testing::RecordingCallbacks client;
      auto c = Connect(client);
      if (protocol == http::Protocol::kHttp2) {
        c->Write(kH2Preface + H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1,
                                      kH2RequestStart + H2Path(path)));
      } else {
        c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\n\r\n"));
      }
      ASSERT_TRUE(loop_.RunUntil([&] { return !log_.lines.empty(); }, seconds(5)));
      const std::string& line = log_.lines[0];
      EXPECT_TRUE(absl::StrContains(line, path == absl::string_view("/direct")
                                              ? "\"response_code\":200"
                                              : "\"response_code\":503"))
          << line;
      const size_t at = line.find("\"duration_us\":");
      ASSERT_NE(at, std::string::npos) << line;
      uint64_t duration_us = 0;
      const std::string rest = line.substr(at + 14);
      ASSERT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find_first_of(",}")), &duration_us));
      // At least the two exact readings' distance, whatever else read the clock in between.
      EXPECT_GE(duration_us, 250u) << line;
      ASSERT_EQ(sink.spans.size(), 1u);
      EXPECT_GE(sink.spans[0].end_ns - sink.spans[0].start_ns, SteppedWorker::kStep.count());
      c->Close(net::CloseMode::kNoFlush);
      loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
    }
  }
  loop_.RunUntilIdle();  // the connection managers go before the worker's context
  hcm_context_ = &context_;

  // Every sample of the histograms is the access log's nonzero duration.
  const StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* downstream = stats.Find("meshlet_http_downstream_rq_duration_seconds");
  ASSERT_NE(downstream, nullptr);
  EXPECT_EQ(downstream->histogram.count(), 4u);
  EXPECT_GE(downstream->histogram.Percentile(0), 250.0 * (1 - 0.04));
  const SeriesSnapshot* golden = stats.Find("meshlet_upstream_rq_duration_seconds",
                                            {{"cluster", "empty"}, {"outcome", "failure"}});
  ASSERT_NE(golden, nullptr);
  EXPECT_EQ(golden->histogram.count(), 2u);
  EXPECT_GE(golden->histogram.Percentile(0), 250.0 * (1 - 0.04));
}

// A server span starts at the exact time its request's headers were decoded; the turn's shared
// reading, which client spans start at, may be earlier (here: the first of two streams that
// arrived together took it). An attempt's client span still starts and ends within its server
// span.
TEST_F(HttpConnectionManagerTest, ClientSpansLieWithinTheirServerSpans) {
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {},
      [](const http::ServerRequest&) { return http::ServerResponse::Text(200, "ok"); });
  ASSERT_TRUE(upstream.ok()) << upstream.status();
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = "up";
  EndpointConfig endpoint;
  endpoint.address = (*upstream)->address();
  cluster->endpoints.push_back(endpoint);
  SteppedWorker worker(*this, RoutesTo({{"/up", "up"}}, {cluster}), /*span_per_attempt=*/true);
  tracing::RecordingSpanSink& sink = worker.sink;
  hcm_context_ = &worker.context;
  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  // Two streams in one read: both are decoded, and their attempts begun, in one loop turn.
  c->Write(kH2Preface +
           H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1, kH2RequestStart + H2Path("/up")) +
           H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 3, kH2RequestStart + H2Path("/up")));
  ASSERT_TRUE(loop_.RunUntil([&] { return sink.spans.size() == 4; }, seconds(5)));
  c->Close(net::CloseMode::kNoFlush);
  loop_.RunUntil([&] { return hcms_.empty(); }, seconds(5));
  loop_.RunUntilIdle();  // the connection managers go before the worker's context
  hcm_context_ = &context_;

  int pairs = 0;
  for (const tracing::Span& server : sink.spans) {
    if (server.kind != tracing::SpanKind::kServer) continue;
    for (const tracing::Span& attempt : sink.spans) {
      if (attempt.kind != tracing::SpanKind::kClient || attempt.parent_span_id != server.span_id) {
        continue;
      }
      ++pairs;
      EXPECT_GE(attempt.start_ns, server.start_ns);
      EXPECT_LE(attempt.end_ns, server.end_ns);
      EXPECT_LE(attempt.start_ns, attempt.end_ns);
    }
  }
  EXPECT_EQ(pairs, 2);
}

// The upstream request carries exactly one traceparent, naming this hop's client span, over
// HTTP/1 and HTTP/2 upstreams alike: a caller's is replaced, a request without one gets one
// (appended without a lookup), and one a route adds after the trace began is replaced too.
TEST_F(HttpConnectionManagerTest, UpstreamGetsExactlyOneTraceparent) {
  std::vector<std::vector<std::string>> received;  // each upstream request's traceparent values
  auto upstream = http::HttpServer::Create(
      loop_, *net::Address::Parse("127.0.0.1:0"), {}, [&](const http::ServerRequest& request) {
        std::vector<std::string> values;
        for (absl::string_view value : request.headers.GetAll("traceparent")) {
          values.emplace_back(value);
        }
        received.push_back(std::move(values));
        return http::ServerResponse::Text(200, "ok");
      });
  ASSERT_TRUE(upstream.ok()) << upstream.status();

  constexpr absl::string_view kCallerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string caller = absl::StrCat("00-", kCallerTrace, "-00f067aa0ba902b7-01");
  constexpr absl::string_view kRouteTrace = "11111111111111111111111111111111";
  auto snapshot = std::make_shared<config::Snapshot>();
  route::RouteConfig routes;
  routes.name = "routes";
  route::VirtualHostConfig vhost;
  vhost.name = "all";
  vhost.domains = {"*"};
  for (const auto& [name, protocol] :
       {std::pair{"h1", UpstreamProtocol::kHttp1}, std::pair{"h2", UpstreamProtocol::kHttp2}}) {
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = name;
    cluster->protocol = protocol;
    EndpointConfig endpoint;
    endpoint.address = (*upstream)->address();
    cluster->endpoints.push_back(endpoint);
    snapshot->clusters[name] = cluster;
    for (bool route_adds : {false, true}) {
      route::RouteEntry route;
      route.name = absl::StrCat(route_adds ? "added-" : "plain-", name);
      route.match.path = absl::StrCat("/", route.name);
      route::RouteAction action;
      action.cluster = name;
      route.action = action;
      if (route_adds) {
        route.headers.request_headers_to_add.push_back(
            {"traceparent", absl::StrCat("00-", kRouteTrace, "-2222222222222222-01"), true});
      }
      vhost.routes.push_back(route);
    }
  }
  routes.virtual_hosts.push_back(vhost);
  snapshot->route_tables["routes"] = std::move(*route::RouteTable::Create(routes));
  clusters_.Update(snapshot->clusters);
  context_.snapshot = snapshot;

  tracing::RecordingSpanSink sink;
  tracing::TracingConfig tracing_config;
  tracing_config.sampling_percent = 0;
  tracing::Tracer tracer(tracing_config, "svc", sink, tracing::TracerStats::Create(*shard_),
                         random_, RealClock::Get());
  context_.tracer = &tracer;

  for (const char* path : {"/plain-h1", "/plain-h2", "/added-h1", "/added-h2"}) {
    for (bool with_caller : {false, true}) {
      SCOPED_TRACE(absl::StrCat(path, with_caller ? " with" : " without", " a caller's context"));
      net::testing::RecordingCallbacks client;
      auto c = Connect(client);
      c->Write(absl::StrCat("GET ", path, " HTTP/1.1\r\nhost: x\r\n",
                            with_caller ? absl::StrCat("traceparent: ", caller, "\r\n") : "",
                            "connection: close\r\n\r\n"));
      ASSERT_TRUE(
          loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
      EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 200")) << client.received;
      ASSERT_FALSE(received.empty());
      ASSERT_EQ(received.back().size(), 1u);
      const std::string& sent = received.back()[0];
      ASSERT_EQ(sent.size(), tracing::kTraceparentLength) << sent;
      const absl::string_view trace_id = absl::string_view(sent).substr(3, 32);
      EXPECT_NE(trace_id, kRouteTrace);
      if (with_caller) {
        EXPECT_EQ(trace_id, kCallerTrace);
        EXPECT_NE(sent, caller);  // this hop's client span, not the caller's
      } else {
        EXPECT_NE(trace_id, kCallerTrace);
      }
    }
  }
  EXPECT_EQ(received.size(), 8u);
  context_.tracer = nullptr;
}

}  // namespace
}  // namespace meshlet::sidecar::listener
