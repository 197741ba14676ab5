#include "sidecar/cluster/conn_pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "common/net/transport.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/fake_codec.h"
#include "sidecar/resilience/circuit_breaker.h"

namespace meshlet::sidecar::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeClientConnection;
using testing::FakeCodecOptions;
using testing::FakeUpstream;

constexpr auto kWait = seconds(10);

// One request through the pool: records what the pool and the stream reported.
struct TestRequest : public ConnPoolCallbacks,
                     public http::StreamDecoder,
                     public http::StreamCallbacks {
  void OnPoolReady(http::StreamEncoder& e, Host& h) override {
    encoder = &e;
    host = &h;
    e.GetStream().AddCallbacks(*this);
    if (send_on_ready) {
      http::HeaderMap headers{{":method", "GET"}, {":path", path}, {":authority", "upstream"}};
      e.EncodeHeaders(headers, /*end_stream=*/true);
    }
  }
  void OnPoolFailure(PoolFailureReason reason, absl::string_view details, Host& h) override {
    failure = reason;
    failure_details = std::string(details);
    host = &h;
  }
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    (void)absl::SimpleAtoi(headers->Get(":status").value_or("0"), &status);
    if (end_stream) complete = true;
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    body += data.ToString();
    data.Drain(data.length());
    if (end_stream) complete = true;
  }
  void DecodeTrailers(http::HeaderMapPtr) override { complete = true; }
  void OnResetStream(http::StreamResetReason reason, absl::string_view) override { reset = reason; }

  bool ready() const { return encoder != nullptr; }
  bool done() const { return complete || failure.has_value() || reset.has_value(); }

  std::string path = "/";
  bool send_on_ready = true;
  Cancellable* handle = nullptr;
  http::StreamEncoder* encoder = nullptr;
  Host* host = nullptr;
  std::optional<PoolFailureReason> failure;
  std::string failure_details;
  int status = 0;
  std::string body;
  bool complete = false;
  std::optional<http::StreamResetReason> reset;
};

// An address nobody listens on: bind a port, then let it go.
net::Address ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  socklen_t len = sizeof(sa);
  CHECK(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  close(fd);
  auto address = net::Address::FromSockaddr(reinterpret_cast<sockaddr*>(&sa), len);
  CHECK_OK(address);
  return *address;
}

// A listener whose accept queue is full, so further SYNs are dropped and connects hang.
class FullBacklogListener {
 public:
  FullBacklogListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd_ >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    CHECK(listen(fd_, 0) == 0);
    socklen_t len = sizeof(sa);
    CHECK(getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    auto address = net::Address::FromSockaddr(reinterpret_cast<sockaddr*>(&sa), len);
    CHECK_OK(address);
    address_ = *address;
    for (int i = 0; i < 4; ++i) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      CHECK(c >= 0);
      (void)connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
      fillers_.push_back(c);
    }
  }
  ~FullBacklogListener() {
    for (int c : fillers_) close(c);
    close(fd_);
  }
  const net::Address& address() const { return address_; }

 private:
  int fd_;
  net::Address address_;
  std::vector<int> fillers_;
};

// Passes bytes through like plaintext but never reports its handshake as complete, like a TLS
// client still waiting for the server's Finished.
class NeverHandshakenTransport final : public net::Transport {
 public:
  absl::Status Start(const net::Address&, net::Buffer&) override { return absl::OkStatus(); }
  absl::Status OnReceived(net::Buffer& wire_in, net::Buffer& app_in, net::Buffer&) override {
    app_in.Move(wire_in);
    return absl::OkStatus();
  }
  absl::Status Send(net::Buffer& app_out, net::Buffer& out) override {
    out.Move(app_out);
    return absl::OkStatus();
  }
  void Shutdown(net::Buffer&) override {}
  bool HandshakeComplete() const override { return false; }
  const net::PeerInfo& peer() const override { return peer_; }

 private:
  net::PeerInfo peer_;
};

class ConnPoolTest : public ::testing::Test {
 protected:
  ConnPoolTest() { SetUpstream(upstream_.address()); }

  void SetUpstream(const net::Address& address) {
    EndpointConfig endpoint;
    endpoint.address = address;
    hosts_.Update({endpoint});
    host_ = hosts_.hosts()[0];
  }

  std::unique_ptr<ConnPool> MakePool(ConnPoolOptions options = {}, FakeCodecOptions codec = {}) {
    codec.protocol = options.protocol;
    return std::make_unique<ConnPool>(loop_, host_, FakeClientConnection::Factory(codec, &codecs_),
                                      thresholds_, std::move(options));
  }

  ConnPoolOptions Http2Options(uint32_t max_streams) {
    ConnPoolOptions options;
    options.protocol = http::Protocol::kHttp2;
    options.config.max_concurrent_streams = max_streams;
    return options;
  }

  void Start(ConnPool& pool, TestRequest& request) {
    request.handle = pool.NewStream(request, request);
  }

  bool RunUntil(std::function<bool()> done) { return loop_.RunUntil(done, kWait); }

  event::Loop loop_;
  FakeUpstream upstream_{loop_};
  HostSet hosts_;
  HostSharedPtr host_;
  std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds_ =
      std::make_shared<resilience::CircuitBreakerThresholds>();
  std::vector<FakeClientConnection*> codecs_;
};

TEST_F(ConnPoolTest, RequestSucceedsAndConnectionIsReused) {
  auto pool = MakePool();
  TestRequest first;
  Start(*pool, first);
  ASSERT_NE(first.handle, nullptr);  // must connect first
  EXPECT_EQ(pool->pending_requests(), 1u);
  EXPECT_EQ(host_->active_requests(), 1u);
  ASSERT_TRUE(RunUntil([&] { return first.done(); }));
  EXPECT_TRUE(first.complete);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.host, host_.get());
  EXPECT_EQ(pool->active_streams(), 0u);
  EXPECT_EQ(host_->active_requests(), 0u);
  EXPECT_EQ(pool->ready_connections(), 1u);

  TestRequest second;
  Start(*pool, second);
  EXPECT_EQ(second.handle, nullptr);  // an idle connection was ready: served at once
  EXPECT_TRUE(second.ready());
  ASSERT_TRUE(RunUntil([&] { return second.done(); }));
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(upstream_.accepted(), 1u);
  EXPECT_EQ(pool->stats().cx_total, 1u);
  EXPECT_EQ(pool->stats().rq_total, 2u);
  EXPECT_EQ(pool->stats().rq_pending_total, 1u);
  EXPECT_EQ(host_->stats().rq_total, 2u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kRequest), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kPendingRequest), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 1u);
}

TEST_F(ConnPoolTest, MostRecentlyUsedConnectionIsReusedFirst) {
  upstream_.auto_respond = false;
  auto pool = MakePool();
  TestRequest a, b;
  Start(*pool, a);
  Start(*pool, b);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 2; }));
  EXPECT_EQ(upstream_.accepted(), 2u);
  // Answer b's connection last: it is the most recently used.
  const size_t a_index = upstream_.requests()[0].connection;
  const size_t b_index = upstream_.requests()[1].connection;
  ASSERT_NE(a_index, b_index);
  upstream_.Respond(0);
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
  upstream_.Respond(1);
  ASSERT_TRUE(RunUntil([&] { return b.done(); }));

  upstream_.auto_respond = true;
  TestRequest c;
  Start(*pool, c);
  ASSERT_TRUE(RunUntil([&] { return c.done(); }));
  EXPECT_EQ(upstream_.requests().back().connection, b_index);
  EXPECT_EQ(upstream_.accepted(), 2u);
}

TEST_F(ConnPoolTest, IdleTimeoutClosesConnection) {
  ConnPoolOptions options;
  options.config.idle_timeout = milliseconds(30);
  auto pool = MakePool(options);
  TestRequest request;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  EXPECT_EQ(pool->connections(), 1u);
  ASSERT_TRUE(RunUntil([&] { return pool->connections() == 0; }));
  EXPECT_EQ(pool->stats().cx_idle_timeout, 1u);
  EXPECT_EQ(pool->stats().cx_closed, 1u);
  ASSERT_TRUE(RunUntil([&] { return upstream_.open_connections() == 0; }));
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 0u);
}

TEST_F(ConnPoolTest, ServerClosedIdleConnectionIsNotUsed) {
  auto pool = MakePool();
  TestRequest first;
  Start(*pool, first);
  ASSERT_TRUE(RunUntil([&] { return first.done(); }));
  // The server closes its keep-alive connection while the pool holds it idle.
  upstream_.Close(0);
  ASSERT_TRUE(RunUntil([&] { return pool->connections() == 0; }));
  EXPECT_EQ(pool->stats().cx_remote_close, 1u);

  TestRequest second;
  Start(*pool, second);
  ASSERT_NE(second.handle, nullptr);
  ASSERT_TRUE(RunUntil([&] { return second.done(); }));
  EXPECT_TRUE(second.complete);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(upstream_.accepted(), 2u);
  EXPECT_EQ(upstream_.requests().back().connection, 1u);
}

TEST_F(ConnPoolTest, MaxRequestsPerConnectionRotates) {
  ConnPoolOptions options;
  options.config.max_requests_per_connection = 2;
  auto pool = MakePool(options);
  for (int i = 0; i < 3; ++i) {
    TestRequest request;
    Start(*pool, request);
    ASSERT_TRUE(RunUntil([&] { return request.done(); }));
    EXPECT_EQ(request.status, 200);
  }
  EXPECT_EQ(upstream_.accepted(), 2u);
  EXPECT_EQ(upstream_.requests()[0].connection, 0u);
  EXPECT_EQ(upstream_.requests()[1].connection, 0u);
  EXPECT_EQ(upstream_.requests()[2].connection, 1u);
  EXPECT_EQ(pool->stats().cx_max_requests, 1u);
  ASSERT_TRUE(RunUntil([&] { return !upstream_.connection_open(0); }));
}

TEST_F(ConnPoolTest, PendingQueueOverflowFailsAtOnce) {
  thresholds_->SetLimits({.max_connections = 1, .max_pending_requests = 1});
  auto pool = MakePool();
  TestRequest a, b;
  Start(*pool, a);
  ASSERT_NE(a.handle, nullptr);
  Start(*pool, b);
  EXPECT_EQ(b.handle, nullptr);
  ASSERT_TRUE(b.failure.has_value());
  EXPECT_EQ(*b.failure, PoolFailureReason::kOverflow);
  EXPECT_EQ(pool->stats().rq_pending_overflow, 1u);
  EXPECT_EQ(host_->active_requests(), 1u);
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
  EXPECT_EQ(a.status, 200);
}

TEST_F(ConnPoolTest, MaxConnectionsMakesRequestsWaitForAFreeConnection) {
  thresholds_->SetLimits({.max_connections = 1});
  auto pool = MakePool();
  TestRequest a, b;
  Start(*pool, a);
  Start(*pool, b);
  ASSERT_NE(b.handle, nullptr);
  EXPECT_EQ(pool->stats().cx_overflow, 1u);
  ASSERT_TRUE(RunUntil([&] { return a.done() && b.done(); }));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(upstream_.accepted(), 1u);
}

TEST_F(ConnPoolTest, MaxRequestsOverflow) {
  thresholds_->SetLimits({.max_requests = 1});
  auto pool = MakePool();
  TestRequest a, b;
  Start(*pool, a);
  Start(*pool, b);
  ASSERT_TRUE(b.failure.has_value());
  EXPECT_EQ(*b.failure, PoolFailureReason::kOverflow);
  EXPECT_EQ(pool->stats().rq_overflow, 1u);
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
}

TEST_F(ConnPoolTest, ConnectRefusedFailsWithConnectRefused) {
  SetUpstream(ClosedPort());
  auto pool = MakePool();
  TestRequest request;
  Start(*pool, request);
  ASSERT_NE(request.handle, nullptr);
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  ASSERT_TRUE(request.failure.has_value());
  EXPECT_EQ(*request.failure, PoolFailureReason::kConnectRefused);
  EXPECT_EQ(pool->stats().cx_connect_fail, 1u);
  EXPECT_EQ(host_->stats().cx_connect_fail, 1u);
  EXPECT_EQ(host_->active_requests(), 0u);
  EXPECT_EQ(pool->connections(), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kPendingRequest), 0u);
}

TEST_F(ConnPoolTest, ConnectTimeoutFailsWithConnectFailure) {
  FullBacklogListener full;
  SetUpstream(full.address());
  ConnPoolOptions options;
  options.connect_timeout = milliseconds(100);
  auto pool = MakePool(options);
  TestRequest request;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  ASSERT_TRUE(request.failure.has_value());
  EXPECT_EQ(*request.failure, PoolFailureReason::kConnectFailure);
  EXPECT_TRUE(absl::StrContains(request.failure_details, "timeout")) << request.failure_details;
  EXPECT_EQ(pool->stats().cx_connect_timeout, 1u);
}

TEST_F(ConnPoolTest, CancelledPendingRequestHearsNothing) {
  auto pool = MakePool();
  TestRequest request;
  Start(*pool, request);
  ASSERT_NE(request.handle, nullptr);
  request.handle->Cancel();
  EXPECT_EQ(pool->pending_requests(), 0u);
  EXPECT_EQ(host_->active_requests(), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kPendingRequest), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kRequest), 0u);
  // The connection still comes up and is kept for the next request.
  ASSERT_TRUE(RunUntil([&] { return pool->ready_connections() == 1; }));
  EXPECT_FALSE(request.done());
  EXPECT_FALSE(request.ready());
  EXPECT_EQ(pool->stats().rq_cancelled, 1u);
  EXPECT_TRUE(upstream_.requests().empty());
}

TEST_F(ConnPoolTest, PendingTimeout) {
  upstream_.auto_respond = false;
  thresholds_->SetLimits({.max_connections = 1});
  ConnPoolOptions options;
  options.config.pending_timeout = milliseconds(30);
  auto pool = MakePool(options);
  TestRequest a, b;
  Start(*pool, a);
  ASSERT_TRUE(RunUntil([&] { return a.ready(); }));
  Start(*pool, b);
  ASSERT_TRUE(RunUntil([&] { return b.done(); }));
  ASSERT_TRUE(b.failure.has_value());
  EXPECT_EQ(*b.failure, PoolFailureReason::kTimeout);
  EXPECT_FALSE(a.done());
  upstream_.Respond(0);
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
}

TEST_F(ConnPoolTest, ConnectionClosedMidRequestResetsTheStream) {
  upstream_.auto_respond = false;
  auto pool = MakePool();
  TestRequest request;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  upstream_.Close(0);
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  ASSERT_TRUE(request.reset.has_value());
  EXPECT_EQ(*request.reset, http::StreamResetReason::kConnectionTermination);
  EXPECT_EQ(pool->connections(), 0u);
  EXPECT_EQ(pool->active_streams(), 0u);
  EXPECT_EQ(host_->active_requests(), 0u);
}

TEST_F(ConnPoolTest, CloseBeforeHandshakeIsAConnectionFailure) {
  upstream_.auto_respond = false;
  ConnPoolOptions options;
  options.transport_factory = [] { return std::make_unique<NeverHandshakenTransport>(); };
  auto pool = MakePool(options);
  TestRequest request;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  upstream_.Close(0);
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  ASSERT_TRUE(request.reset.has_value());
  EXPECT_EQ(*request.reset, http::StreamResetReason::kConnectionFailure);
  EXPECT_EQ(pool->stats().cx_connect_fail, 1u);
}

TEST_F(ConnPoolTest, LocalResetOfHttp1StreamClosesTheConnection) {
  upstream_.auto_respond = false;
  auto pool = MakePool();
  TestRequest request;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  request.encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  ASSERT_TRUE(request.reset.has_value());
  EXPECT_EQ(*request.reset, http::StreamResetReason::kLocalReset);
  EXPECT_EQ(pool->active_streams(), 0u);
  ASSERT_TRUE(RunUntil([&] { return pool->connections() == 0; }));
  EXPECT_EQ(pool->stats().rq_reset, 1u);
}

TEST_F(ConnPoolTest, Http1GoAwayDrainsAfterTheResponse) {
  upstream_.auto_respond = false;
  auto pool = MakePool();
  TestRequest a;
  Start(*pool, a);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  // `Connection: close` on the response.
  upstream_.Send(0, "GOAWAY\n");
  upstream_.Respond(0);
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
  ASSERT_TRUE(RunUntil([&] { return pool->connections() == 0; }));
  EXPECT_EQ(pool->stats().cx_goaway, 1u);
}

TEST_F(ConnPoolTest, Http2MultiplexesUpToTheStreamLimit) {
  upstream_.auto_respond = false;
  auto pool = MakePool(Http2Options(2));
  TestRequest r[5];
  for (auto& request : r) Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 5; }));
  EXPECT_EQ(upstream_.accepted(), 3u);
  int per_connection[3] = {0, 0, 0};
  for (const auto& request : upstream_.requests()) ++per_connection[request.connection];
  EXPECT_EQ(per_connection[0] + per_connection[1] + per_connection[2], 5);
  for (int n : per_connection) EXPECT_LE(n, 2);
  EXPECT_EQ(pool->active_streams(), 5u);
  for (size_t i = 0; i < 5; ++i) upstream_.Respond(i);
  ASSERT_TRUE(RunUntil([&] {
    for (auto& request : r) {
      if (!request.done()) return false;
    }
    return true;
  }));
  for (auto& request : r) EXPECT_EQ(request.status, 200);
  // With room on the pooled connections, a new request opens nothing new.
  TestRequest more;
  Start(*pool, more);
  EXPECT_EQ(more.handle, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  EXPECT_EQ(upstream_.accepted(), 3u);
}

TEST_F(ConnPoolTest, Http2PeerSettingsLimitStreams) {
  upstream_.auto_respond = false;
  auto pool = MakePool(Http2Options(100));
  TestRequest first;
  Start(*pool, first);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  upstream_.Send(0, "SETTINGS 1\n");
  ASSERT_TRUE(RunUntil([&] { return pool->ready_connections() == 0; }));
  TestRequest second;
  Start(*pool, second);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 2; }));
  EXPECT_EQ(upstream_.requests()[1].connection, 1u);
}

TEST_F(ConnPoolTest, Http2GoAwayDrainsTheConnection) {
  upstream_.auto_respond = false;
  auto pool = MakePool(Http2Options(100));
  TestRequest first;
  Start(*pool, first);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  upstream_.Send(0, "GOAWAY\n");
  ASSERT_TRUE(RunUntil([&] { return pool->draining_connections() == 1; }));
  EXPECT_EQ(pool->stats().cx_goaway, 1u);

  // New streams go to a new connection; the draining one keeps its stream.
  TestRequest second;
  Start(*pool, second);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 2; }));
  EXPECT_EQ(upstream_.requests()[1].connection, 1u);
  EXPECT_TRUE(upstream_.connection_open(0));

  upstream_.Respond(0);
  ASSERT_TRUE(RunUntil([&] { return first.done(); }));
  EXPECT_EQ(first.status, 200);
  // Its last stream ended: the draining connection closes.
  ASSERT_TRUE(RunUntil([&] { return !upstream_.connection_open(0); }));
  EXPECT_EQ(pool->connections(), 1u);
  upstream_.Respond(1);
  ASSERT_TRUE(RunUntil([&] { return second.done(); }));
  EXPECT_EQ(second.status, 200);
}

TEST_F(ConnPoolTest, Http2RemoteResetKeepsTheConnection) {
  upstream_.auto_respond = false;
  auto pool = MakePool(Http2Options(100));
  TestRequest a, b;
  Start(*pool, a);
  ASSERT_TRUE(RunUntil([&] { return a.ready(); }));
  Start(*pool, b);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 2; }));
  upstream_.Send(0, "RST 1\n");
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
  ASSERT_TRUE(a.reset.has_value());
  EXPECT_EQ(*a.reset, http::StreamResetReason::kRemoteReset);
  upstream_.Respond(1);
  ASSERT_TRUE(RunUntil([&] { return b.done(); }));
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(upstream_.accepted(), 1u);
  EXPECT_EQ(pool->connections(), 1u);
}

TEST_F(ConnPoolTest, Http2MaxConnectionDurationRotates) {
  ConnPoolOptions options = Http2Options(100);
  options.config.max_connection_duration = milliseconds(30);
  auto pool = MakePool(options);
  TestRequest a;
  Start(*pool, a);
  ASSERT_TRUE(RunUntil([&] { return a.done(); }));
  ASSERT_TRUE(RunUntil([&] { return pool->connections() == 0; }));
  EXPECT_EQ(pool->stats().cx_max_duration, 1u);
  TestRequest b;
  Start(*pool, b);
  ASSERT_TRUE(RunUntil([&] { return b.done(); }));
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(upstream_.accepted(), 2u);
}

TEST_F(ConnPoolTest, ResponseBodyAndWrappedStreamEvents) {
  upstream_.auto_respond = false;
  auto pool = MakePool();
  TestRequest request;
  request.send_on_ready = false;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return request.ready(); }));
  http::HeaderMap headers{{":method", "POST"}, {":path", "/upload"}};
  request.encoder->EncodeHeaders(headers, false);
  net::Buffer body("hello");
  request.encoder->EncodeData(body, true);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  EXPECT_EQ(upstream_.requests()[0].path, "/upload");
  upstream_.Send(0, "RESP 1 201\nBODY 1 abc\nDONE 1\n");
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  EXPECT_EQ(request.status, 201);
  EXPECT_EQ(request.body, "abc");
  EXPECT_EQ(pool->ready_connections(), 1u);
}

TEST_F(ConnPoolTest, ProtocolErrorClosesTheConnection) {
  upstream_.auto_respond = false;
  auto pool = MakePool();
  TestRequest request;
  Start(*pool, request);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  upstream_.Send(0, "GARBAGE\n");
  ASSERT_TRUE(RunUntil([&] { return request.done(); }));
  ASSERT_TRUE(request.reset.has_value());
  EXPECT_EQ(*request.reset, http::StreamResetReason::kProtocolError);
  ASSERT_TRUE(RunUntil([&] { return pool->connections() == 0; }));
}

TEST_F(ConnPoolTest, DrainFailsPendingAndReportsIdle) {
  upstream_.auto_respond = false;
  thresholds_->SetLimits({.max_connections = 1});
  auto pool = MakePool();
  bool idle = false;
  pool->SetEmptyCallback([&] { idle = pool->draining(); });
  TestRequest a, b;
  Start(*pool, a);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  Start(*pool, b);
  pool->Drain();
  ASSERT_TRUE(b.failure.has_value());
  EXPECT_EQ(*b.failure, PoolFailureReason::kRemoteClose);
  EXPECT_FALSE(idle);
  TestRequest c;
  Start(*pool, c);
  ASSERT_TRUE(c.failure.has_value());
  upstream_.Respond(0);
  ASSERT_TRUE(RunUntil([&] { return idle; }));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(pool->connections(), 0u);
}

TEST_F(ConnPoolTest, DrainLetsTheConnectionBeingMadeServeTheRequestWaitingForIt) {
  // A cluster's settings change while a request waits for its connection (every request does,
  // with max_requests_per_connection 1): the request is served, not failed into a retry.
  upstream_.auto_respond = false;
  auto pool = MakePool();
  bool idle = false;
  pool->SetEmptyCallback([&] { idle = pool->draining(); });
  TestRequest a, b;
  Start(*pool, a);
  Start(*pool, b);
  ASSERT_NE(b.handle, nullptr);
  EXPECT_EQ(pool->connecting(), 2u);
  b.handle->Cancel();  // one connection in progress that nobody waits for any more
  pool->Drain();
  EXPECT_FALSE(a.failure.has_value());
  TestRequest c;
  Start(*pool, c);  // a drained pool takes nothing new
  ASSERT_TRUE(c.failure.has_value());
  EXPECT_EQ(*c.failure, PoolFailureReason::kRemoteClose);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  EXPECT_EQ(pool->connections(), 1u);  // the surplus connection was closed
  upstream_.Respond(0);
  ASSERT_TRUE(RunUntil([&] { return idle; }));
  EXPECT_EQ(a.status, 200);
  EXPECT_FALSE(a.failure.has_value());
  EXPECT_EQ(pool->stats().rq_pending_failure, 0u);
  EXPECT_EQ(pool->connections(), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 0u);
}

TEST_F(ConnPoolTest, DestroyingThePoolWithWorkInFlightIsQuiet) {
  upstream_.auto_respond = false;
  auto pool = MakePool(Http2Options(10));
  TestRequest a, b;
  Start(*pool, a);
  ASSERT_TRUE(RunUntil([&] { return upstream_.unanswered() == 1; }));
  thresholds_->SetLimits({.max_connections = 1, .max_requests = 100});
  Start(*pool, b);
  pool.reset();
  loop_.RunUntilIdle();
  EXPECT_EQ(host_->active_requests(), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kRequest), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 0u);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
