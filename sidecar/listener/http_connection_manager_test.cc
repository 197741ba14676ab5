// HttpConnectionManager's own duties over a real socket with a raw HTTP/1.1 (or hand-framed
// HTTP/2) client: the request header timeout, the connection idle timeout, draining, and the
// listener's settings and routes as each new snapshot brings them. A request's own handling (its
// filter chain, stream timeouts, access log and spans) is tested in active_stream_test.cc.

#include "sidecar/listener/http_connection_manager.h"
#include "common/net/test_util.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sidecar/listener/http_connection_manager_test_util.h"

namespace meshlet::sidecar::listener {
namespace {

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
  const net::testing::RefusingPort refusing;
  const uint16_t closed_port = refusing.port();
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

// The HTTP/2 codec measures a stream's lifetime (premature against late resets, ADR 0078) on the
// worker's turn clock, not on a clock of its own: a request held an hour by that clock before
// its client reset it is a late reset, though far less real time passed.
TEST_F(HttpConnectionManagerTest, Http2StreamLifetimeIsMeasuredOnTheWorkersClock) {
  SteppedWorker worker(*this, context_.snapshot, /*span_per_attempt=*/false,
                       /*sampling_percent=*/0);
  worker.source.AdvanceOnEveryRead(Duration::zero());
  hcm_context_ = &worker.context;
  hcm_options_.protocol = http::Protocol::kHttp2;
  listener_config_.http.stream_reset_min_lifetime = std::chrono::hours(1);
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write(kH2Preface +
           H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1, kH2RequestStart + H2Path("/hang")));
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return hcms_.size() == 1 && hcms_.begin()->second->active_streams() == 1; },
      seconds(5)));
  worker.source.Advance(std::chrono::hours(2));
  c->Write(H2Frame(kH2RstStream, 0, 1, std::string("\0\0\0\x08", 4)));  // CANCEL
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return hcms_.size() == 1 && hcms_.begin()->second->active_streams() == 0; },
      seconds(5)));
  EXPECT_EQ(Counter("meshlet_http2_downstream_client_resets_total", {{"kind", "late"}}), 1u);
  EXPECT_EQ(Counter("meshlet_http2_downstream_client_resets_total", {{"kind", "premature"}}), 0u);
  c->Close(net::CloseMode::kNoFlush);
  hcms_.clear();
  loop_.RunUntilIdle();
  hcm_context_ = &context_;
}

// Flooders that each keep a request of their own in flight would hold a connection apiece for
// http.flood_drain_timeout: past http.max_flood_drains draining on the worker, the next is cut
// off at once (drain_limit), request and all; a drain that ends gives its place back.
TEST_F(HttpConnectionManagerTest, FloodDrainsPastTheWorkersCapAreCutOffAtOnce) {
  hcm_options_.protocol = http::Protocol::kHttp2;
  listener_config_.http.stream_reset_burst = 3;
  listener_config_.http.stream_resets_per_second = 0;
  listener_config_.http.max_flood_drains = 1;
  // A request left in flight (its upstream never answers), then four streams opened and reset at
  // once: the fourth passes the burst with stream 1 in flight.
  const std::string hang = kH2RequestStart + H2Path("/hang");
  std::string flood = kH2Preface + H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1, hang);
  for (uint32_t id = 3; id <= 9; id += 2) {
    flood += H2Frame(kH2Headers, kH2EndHeaders, id, hang);
    flood += H2Frame(kH2RstStream, 0, id, std::string("\0\0\0\x08", 4));  // CANCEL
  }
  auto flood_end = [&](const char* outcome) {
    return Counter("meshlet_http_downstream_cx_flood_end_total", {{"outcome", outcome}});
  };
  auto floods = [&] {
    return Counter("meshlet_http_downstream_cx_flood_total", {{"limit", "resets"}});
  };

  net::testing::RecordingCallbacks first_client, second_client, third_client;
  auto first = Connect(first_client);
  first->Write(flood);
  ASSERT_TRUE(
      loop_.RunUntil([&] { return HasFrame(first_client.received, kH2Goaway); }, seconds(5)));
  ASSERT_EQ(floods(), 1u);
  EXPECT_EQ(context_.flood_drains, 1u);  // draining: stream 1 is still in flight
  EXPECT_EQ(first_client.closes, 0);

  auto second = Connect(second_client);
  second->Write(flood);
  ASSERT_TRUE(loop_.RunUntil([&] { return second_client.end_stream || second_client.closes > 0; },
                             seconds(2)))
      << "a second flooder kept its connection while the first drains";
  EXPECT_TRUE(HasFrame(second_client.received, kH2Goaway));
  EXPECT_FALSE(H2StreamEnded(second_client.received, 1));
  EXPECT_EQ(floods(), 2u);
  EXPECT_EQ(flood_end("drain_limit"), 1u);
  EXPECT_EQ(context_.flood_drains, 1u);
  EXPECT_EQ(first_client.closes, 0);  // the first still drains

  // The first client goes: its drain ends, and the next flooder drains again.
  first->Close(net::CloseMode::kNoFlush);
  ASSERT_TRUE(loop_.RunUntil([&] { return flood_end("peer_closed") == 1; }, seconds(5)));
  EXPECT_EQ(context_.flood_drains, 0u);
  auto third = Connect(third_client);
  third->Write(flood);
  ASSERT_TRUE(loop_.RunUntil([&] { return floods() == 3; }, seconds(5)));
  EXPECT_EQ(context_.flood_drains, 1u);
  EXPECT_EQ(flood_end("drain_limit"), 1u);
  // A connection that goes while it drains gives its place back too.
  hcms_.clear();
  EXPECT_EQ(context_.flood_drains, 0u);
  for (auto* c : {&second, &third}) (*c)->Close(net::CloseMode::kNoFlush);
  loop_.RunUntilIdle();
}

// A request the codec answers itself, its header section over http.max_request_headers_kb (431),
// is counted among the requests answered, by its status class, like any other reply: over
// HTTP/1.1 (the connection then closes) and over HTTP/2 (only that stream ends).
TEST_F(HttpConnectionManagerTest, RequestsTheCodecAnswers431AreCounted) {
  listener_config_.http.max_request_headers_kb = 1;
  const std::string big(2048, 'a');
  const std::string h1 =
      Exchange(absl::StrCat("GET /direct HTTP/1.1\r\nhost: x\r\nx-big: ", big, "\r\n\r\n")).first;
  EXPECT_TRUE(absl::StartsWith(h1, "HTTP/1.1 431")) << h1;
  EXPECT_EQ(
      Counter("meshlet_http_downstream_rq_total", {{"protocol", "http1.1"}, {"code_class", "4xx"}}),
      1u);

  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  // x-big as a literal field without indexing, its 2048-byte value's length an HPACK integer
  // (the 7-bit prefix full, then 1921 as 0x81 0x0f).
  const std::string block =
      kH2RequestStart + H2Path("/direct") + std::string("\x00\x05x-big\x7f\x81\x0f", 10) + big;
  c->Write(kH2Preface + H2Frame(kH2Headers, kH2EndStream | kH2EndHeaders, 1, block));
  ASSERT_TRUE(loop_.RunUntil([&] { return H2StreamEnded(client.received, 1); }, seconds(5)));
  const std::vector<H2ReceivedFrame> frames = H2Frames(client.received);
  const auto headers = std::find_if(frames.begin(), frames.end(), [](const H2ReceivedFrame& f) {
    return f.type == kH2Headers && f.stream_id == 1;
  });
  ASSERT_NE(headers, frames.end());
  // :status 431 has no static-table entry: a literal, its three digits shorter raw than Huffman.
  EXPECT_TRUE(absl::StrContains(headers->payload, "431"));
  EXPECT_EQ(
      Counter("meshlet_http_downstream_rq_total", {{"protocol", "http2"}, {"code_class", "4xx"}}),
      1u);
  EXPECT_EQ(client.closes, 0);
  c->Close(net::CloseMode::kNoFlush);
  hcms_.clear();
  loop_.RunUntilIdle();
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

// A connection captured on its way to a Service address is routed by the virtual host bound to
// that destination whatever its Host says; other connections (no or an unbound destination)
// choose by Host.
TEST_F(HttpConnectionManagerTest, CapturedServiceAddressChoosesTheVirtualHostBeforeHost) {
  auto snapshot = std::make_shared<config::Snapshot>(*context_.snapshot);
  route::RouteConfig routes;
  routes.name = "outbound";
  for (const std::string name : {"echo-v1", "echo-v2"}) {
    route::VirtualHostConfig vhost;
    vhost.name = name;
    vhost.domains = {name};
    vhost.destinations = {name == "echo-v1" ? "198.18.0.1:80" : "198.18.0.2:80"};
    route::RouteEntry direct;
    direct.name = "all";
    direct.action = route::DirectResponseAction{200, "from " + name};
    vhost.routes.push_back(direct);
    routes.virtual_hosts.push_back(vhost);
  }
  snapshot->route_tables["outbound"] = std::move(*route::RouteTable::Create(routes));
  context_.snapshot = snapshot;
  listener_config_.route_config_name = "outbound";
  auto body = [&](absl::string_view original_destination, absl::string_view host) {
    hcm_options_.original_destination = std::string(original_destination);
    net::testing::RecordingCallbacks client;
    auto c = Connect(client);
    c->Write(absl::StrCat("GET / HTTP/1.1\r\nhost: ", host, "\r\n\r\n"));
    EXPECT_TRUE(loop_.RunUntil(
        [&] { return absl::StrContains(client.received, "from ") || client.closes > 0; },
        seconds(5)));
    const size_t at = client.received.find("from ");
    return at == std::string::npos ? client.received : client.received.substr(at);
  };
  EXPECT_EQ(body("198.18.0.1:80", "echo-v2"), "from echo-v1");
  EXPECT_EQ(body("198.18.0.2:80", "echo-v1"), "from echo-v2");
  EXPECT_EQ(body("198.18.0.1:80", "echo-v1"), "from echo-v1");
  // Not a Service address (another port), or no captured destination: Host decides.
  EXPECT_EQ(body("198.18.0.1:81", "echo-v2"), "from echo-v2");
  EXPECT_EQ(body("", "echo-v2"), "from echo-v2");
}

}  // namespace
}  // namespace meshlet::sidecar::listener
