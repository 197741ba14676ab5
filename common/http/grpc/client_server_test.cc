// The gRPC client against the gRPC server over real sockets on 127.0.0.1: every RPC kind,
// status and metadata round trips, deadlines, cancellation, limits, flow control, shutdown,
// reconnects, keepalive, and TLS with and without client certificates.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/http/grpc/client.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "gtest/gtest.h"
#include "xds/discovery.pb.h"

namespace meshlet::http::grpc {
namespace {

// The value of the counter `name` in `stats` (0 when absent).
uint64_t Counted(const StatsRegistry& stats, absl::string_view name) {
  const StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* series = snapshot.Find(name);
  return series == nullptr ? 0 : series->counter;
}

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr absl::string_view kUnary = "/test.Echo/Unary";
constexpr absl::string_view kServerStream = "/test.Echo/ServerStream";
constexpr absl::string_view kClientStream = "/test.Echo/ClientStream";
constexpr absl::string_view kBidi = "/test.Echo/Bidi";
constexpr absl::string_view kFail = "/test.Echo/Fail";
constexpr absl::string_view kHang = "/test.Echo/Hang";
constexpr absl::string_view kBig = "/test.Echo/Big";
constexpr absl::string_view kAds =
    "/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources";

// What a finished client call reported.
struct Outcome {
  std::optional<StatusCode> code;
  std::string message;
  HeaderMap trailers;
  std::vector<std::string> messages;
};

// Records messages and the status of `call` into `out`.
void Record(const std::shared_ptr<ClientCall>& call, Outcome& out) {
  call->OnMessage([&out](std::string m) { out.messages.push_back(std::move(m)); });
  call->OnFinish([&out](StatusCode code, const std::string& message, const HeaderMap& trailers) {
    out.code = code;
    out.message = message;
    out.trailers = trailers;
  });
}

// A plain TCP connection to 127.0.0.1:`port`, for clients that play HTTP/2 by hand; -1 on
// failure.
int ConnectRaw(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class GrpcClientServerTest : public ::testing::Test {
 protected:
  void SetUp() override {}

  void TearDown() override {
    hanging_.reset();
    channel_.reset();
    server_.reset();
    loop_.RunUntilIdle();
  }

  // Starts a server on 127.0.0.1:0 with the test methods.
  void StartServer(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(loop_, std::move(options));
    RegisterHandlers(*server_);
    ASSERT_TRUE(server_->Start(LocalAddress(port_)).ok());
    port_ = server_->address().port();
  }

  void MakeChannel(ChannelOptions options = {}) {
    channel_ = std::make_unique<Channel>(loop_, server_->address(), std::move(options));
  }

  static net::Address LocalAddress(uint16_t port) {
    return *net::Address::FromIp("127.0.0.1", port);
  }

  bool RunUntil(const std::function<bool()>& done, Duration timeout = seconds(10)) {
    return loop_.RunUntil(done, timeout);
  }

  Outcome RunCall(absl::string_view method, const std::vector<std::string>& requests,
                  CallOptions options = {}) {
    Outcome out;
    auto call = channel_->StartCall(method, std::move(options));
    Record(call, out);
    for (const std::string& r : requests) call->Send(r);
    call->HalfClose();
    EXPECT_TRUE(RunUntil([&] { return out.code.has_value(); }));
    return out;
  }

  void RegisterHandlers(Server& server) {
    ASSERT_TRUE(server
                    .RegisterMethod(kUnary,
                                    [](std::shared_ptr<ServerCall> call) {
                                      auto request = std::make_shared<std::string>();
                                      call->OnMessage([request](std::string m) { *request = m; });
                                      call->OnHalfClose([call, request] {
                                        call->AddInitialMetadata("x-served-by", "meshlet");
                                        call->Send(absl::StrCat("echo:", *request));
                                        call->Finish(StatusCode::kOk);
                                      });
                                    })
                    .ok());
    // Sends N messages of 1 KiB, pausing while the client is not taking them.
    ASSERT_TRUE(server
                    .RegisterMethod(kServerStream,
                                    [this](std::shared_ptr<ServerCall> call) {
                                      auto state = std::make_shared<std::pair<int, int>>(
                                          0, 0);  // next, total
                                      auto pump = std::make_shared<std::function<void()>>();
                                      *pump = [call, state] {
                                        while (state->first < state->second &&
                                               !call->write_buffer_above_high_watermark()) {
                                          std::string m = absl::StrCat("message ", state->first++);
                                          m.resize(1024, '.');
                                          if (!call->Send(m)) return;
                                        }
                                        if (state->first == state->second)
                                          call->Finish(StatusCode::kOk);
                                      };
                                      call->OnMessage([state](std::string m) {
                                        (void)absl::SimpleAtoi(m, &state->second);
                                      });
                                      call->OnWriteBufferWatermark([this, pump](bool above) {
                                        if (above) {
                                          ++server_watermarks_;
                                        } else {
                                          (*pump)();
                                        }
                                      });
                                      call->OnHalfClose([pump] { (*pump)(); });
                                      // Breaks the pump's cycle once the call ends.
                                      call->OnCancel([pump] { *pump = nullptr; });
                                    })
                    .ok());
    ASSERT_TRUE(server
                    .RegisterMethod(kClientStream,
                                    [](std::shared_ptr<ServerCall> call) {
                                      auto count = std::make_shared<size_t>(0);
                                      auto bytes = std::make_shared<size_t>(0);
                                      call->OnMessage([count, bytes](std::string m) {
                                        ++*count;
                                        *bytes += m.size();
                                      });
                                      call->OnHalfClose([call, count, bytes] {
                                        call->Send(
                                            absl::StrCat(*count, " messages, ", *bytes, " bytes"));
                                        call->Finish(StatusCode::kOk);
                                      });
                                    })
                    .ok());
    ASSERT_TRUE(server
                    .RegisterMethod(kBidi,
                                    [](std::shared_ptr<ServerCall> call) {
                                      call->OnMessage([call](std::string m) {
                                        call->Send(absl::StrCat("pong ", m.substr(5)));
                                      });
                                      call->OnHalfClose([call] { call->Finish(StatusCode::kOk); });
                                    })
                    .ok());
    ASSERT_TRUE(server
                    .RegisterMethod(kFail,
                                    [](std::shared_ptr<ServerCall> call) {
                                      call->OnMessage([](std::string) {});
                                      call->OnHalfClose([call] {
                                        call->Finish(StatusCode::kFailedPrecondition, kFailMessage,
                                                     HeaderMap{{"x-detail", "42"}});
                                      });
                                    })
                    .ok());
    ASSERT_TRUE(server
                    .RegisterMethod(kHang,
                                    [this](std::shared_ptr<ServerCall> call) {
                                      hanging_ = call;
                                      call->OnMessage([](std::string) {});
                                      call->OnCancel([this] { ++server_cancels_; });
                                    })
                    .ok());
    // Replies with a message of the size asked for.
    ASSERT_TRUE(server
                    .RegisterMethod(kBig,
                                    [this](std::shared_ptr<ServerCall> call) {
                                      call->OnMessage([call](std::string m) {
                                        size_t n = 0;
                                        (void)absl::SimpleAtoi(m, &n);
                                        call->Send(std::string(n, 'x'));
                                        call->Finish(StatusCode::kOk);
                                      });
                                      call->OnCancel([this] { ++server_cancels_; });
                                    })
                    .ok());
    // An ADS-shaped handler: records every DiscoveryRequest, answers the first one.
    ASSERT_TRUE(server
                    .RegisterMethod(kAds,
                                    [this](std::shared_ptr<ServerCall> call) {
                                      call->OnProtoMessage<xds::DiscoveryRequest>(
                                          [this, call](xds::DiscoveryRequest request) {
                                            ads_requests_.push_back(request);
                                            if (ads_requests_.size() > 1) return;
                                            xds::DiscoveryResponse response;
                                            response.set_version_info("v1");
                                            response.set_type_url(request.type_url());
                                            response.set_nonce("n1");
                                            call->SendProto(response);
                                          });
                                      call->OnHalfClose([call] { call->Finish(StatusCode::kOk); });
                                      call->OnCancel([this] { ++server_cancels_; });
                                    })
                    .ok());
  }

  static constexpr absl::string_view kFailMessage = "bad state: 100% wrong\n\xc3\xa9t\xc3\xa9";

  event::Loop loop_;
  uint16_t port_ = 0;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Channel> channel_;
  std::shared_ptr<ServerCall> hanging_;
  int server_cancels_ = 0;
  int server_watermarks_ = 0;
  std::vector<xds::DiscoveryRequest> ads_requests_;
};

TEST_F(GrpcClientServerTest, Unary) {
  StartServer();
  MakeChannel();
  std::optional<StatusCode> code;
  std::string response;
  channel_->Unary(kUnary, "hello", {}, [&](StatusCode c, const std::string&, std::string r) {
    code = c;
    response = std::move(r);
  });
  ASSERT_TRUE(RunUntil([&] { return code.has_value(); }));
  EXPECT_EQ(*code, StatusCode::kOk);
  EXPECT_EQ(response, "echo:hello");

  // Initial metadata and a second call on the same connection.
  Outcome out;
  auto call = channel_->StartCall(kUnary);
  std::string served_by;
  call->OnInitialMetadata(
      [&](const HeaderMap& h) { served_by = std::string(h.Get("x-served-by").value_or("")); });
  Record(call, out);
  call->Send("again");
  call->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value(); }));
  EXPECT_EQ(out.messages, std::vector<std::string>{"echo:again"});
  EXPECT_EQ(served_by, "meshlet");
  EXPECT_EQ(channel_->connection_attempts(), 1u);
  EXPECT_TRUE(RunUntil([&] { return server_->active_calls() == 0; }));
}

TEST_F(GrpcClientServerTest, ServerStreamingThousandMessagesWithFlowControl) {
  StartServer();
  MakeChannel();
  Outcome out;
  auto call = channel_->StartCall(kServerStream);
  Record(call, out);
  // Not reading at first: the server must hit its write watermark and wait.
  call->PauseReading();
  call->Send("1000");
  call->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return server_watermarks_ > 0; }));
  EXPECT_TRUE(out.messages.empty());
  call->ResumeReading();
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value(); }));
  EXPECT_EQ(*out.code, StatusCode::kOk) << out.message;
  ASSERT_EQ(out.messages.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(absl::StartsWith(out.messages[i], absl::StrCat("message ", i, ".")));
    EXPECT_EQ(out.messages[i].size(), 1024u);
  }
}

TEST_F(GrpcClientServerTest, ClientStreaming) {
  StartServer();
  MakeChannel();
  std::vector<std::string> requests;
  for (int i = 0; i < 200; ++i) requests.push_back(std::string(100 + i, 'r'));
  Outcome out = RunCall(kClientStream, requests);
  EXPECT_EQ(*out.code, StatusCode::kOk);
  size_t bytes = 0;
  for (const auto& r : requests) bytes += r.size();
  EXPECT_EQ(out.messages,
            std::vector<std::string>{absl::StrCat("200 messages, ", bytes, " bytes")});
}

TEST_F(GrpcClientServerTest, BidiPingPong) {
  StartServer();
  MakeChannel();
  Outcome out;
  auto call = channel_->StartCall(kBidi);
  int next = 0;
  call->OnMessage([&](std::string m) {
    EXPECT_EQ(m, absl::StrCat("pong ", next));
    out.messages.push_back(m);
    if (++next < 100) {
      call->Send(absl::StrCat("ping ", next));
    } else {
      call->HalfClose();
    }
  });
  call->OnFinish([&](StatusCode code, const std::string&, const HeaderMap&) { out.code = code; });
  call->Send("ping 0");
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value(); }));
  EXPECT_EQ(*out.code, StatusCode::kOk);
  EXPECT_EQ(out.messages.size(), 100u);
}

TEST_F(GrpcClientServerTest, UnknownMethodIsUnimplemented) {
  StartServer();
  MakeChannel();
  Outcome out = RunCall("/test.Echo/Nope", {"x"});
  EXPECT_EQ(*out.code, StatusCode::kUnimplemented);
  EXPECT_EQ(out.message, "unknown method /test.Echo/Nope");
  EXPECT_EQ(server_->counters().calls_unimplemented, 1u);
  // The connection is still good.
  EXPECT_EQ(*RunCall(kUnary, {"y"}).code, StatusCode::kOk);
  EXPECT_EQ(channel_->connection_attempts(), 1u);
}

TEST_F(GrpcClientServerTest, ErrorStatusMessageRoundTripsPercentEncoded) {
  StartServer();
  MakeChannel();
  Outcome out = RunCall(kFail, {"x"});
  EXPECT_EQ(*out.code, StatusCode::kFailedPrecondition);
  EXPECT_EQ(out.message, kFailMessage);
  EXPECT_EQ(out.trailers.Get("x-detail"), "42");
  // On the wire it was percent-encoded.
  EXPECT_EQ(out.trailers.Get("grpc-message"), PercentEncode(kFailMessage));
}

TEST_F(GrpcClientServerTest, DeadlineExceededCancelsServerCall) {
  StartServer();
  MakeChannel();
  Outcome out;
  auto call = channel_->StartCall(kHang, {.timeout = milliseconds(100)});
  Record(call, out);
  call->Send("x");
  ASSERT_TRUE(RunUntil([&] { return hanging_ != nullptr; }));
  EXPECT_TRUE(hanging_->deadline().has_value());
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value() && server_cancels_ == 1; }));
  EXPECT_EQ(*out.code, StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(hanging_->cancelled());
  EXPECT_FALSE(hanging_->Send("too late"));
}

// A call that never reads its response (no OnMessage callback): the server's answer and status
// wait in the stream, read-disabled, until the deadline ends the call. Ending it must not let the
// codec deliver the rest of the stream (and free it) before the call has let go of it.
TEST_F(GrpcClientServerTest, ADeadlineWhileTheAnswerWaitsUnreadEndsTheCall) {
  StartServer();
  MakeChannel();
  std::optional<StatusCode> code;
  auto call = channel_->StartCall(kUnary, {.timeout = milliseconds(100)});
  call->OnFinish([&](StatusCode c, const std::string&, const HeaderMap&) { code = c; });
  call->Send("unread");
  call->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return code.has_value(); }));
  EXPECT_EQ(*code, StatusCode::kDeadlineExceeded);
  // The connection still works.
  EXPECT_EQ(RunCall(kUnary, {"next"}).messages, std::vector<std::string>{"echo:next"});
}

TEST_F(GrpcClientServerTest, ClientCancelReachesServer) {
  StartServer();
  MakeChannel();
  Outcome out;
  auto call = channel_->StartCall(kHang);
  Record(call, out);
  call->Send("x");
  ASSERT_TRUE(RunUntil([&] { return hanging_ != nullptr; }));
  call->Cancel();
  EXPECT_FALSE(out.code.has_value());  // posted, not called from inside Cancel()
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value() && server_cancels_ == 1; }));
  EXPECT_EQ(*out.code, StatusCode::kCancelled);
  EXPECT_FALSE(call->Send("after cancel"));
  EXPECT_TRUE(RunUntil([&] { return server_->active_calls() == 0; }));
}

TEST_F(GrpcClientServerTest, MaxMessageSize) {
  StartServer();
  MakeChannel({.max_send_message_size = 8 << 20});
  // Request over the server's 4 MiB default.
  Outcome out = RunCall(kClientStream, {std::string((4 << 20) + 1, 'a')});
  EXPECT_EQ(*out.code, StatusCode::kResourceExhausted) << out.message;
  // Exactly at the limit is fine.
  out = RunCall(kClientStream, {std::string(4 << 20, 'a')});
  EXPECT_EQ(*out.code, StatusCode::kOk) << out.message;
  // A response over the client's receive limit.
  channel_ = std::make_unique<Channel>(loop_, server_->address(),
                                       ChannelOptions{.max_receive_message_size = 1000});
  out = RunCall(kBig, {"1001"});
  EXPECT_EQ(*out.code, StatusCode::kResourceExhausted) << out.message;
  out = RunCall(kBig, {"1000"});
  EXPECT_EQ(*out.code, StatusCode::kOk) << out.message;
  // Sending over the client's own limit fails locally.
  channel_ = std::make_unique<Channel>(loop_, server_->address(),
                                       ChannelOptions{.max_send_message_size = 10});
  out = RunCall(kUnary, {std::string(11, 'a')});
  EXPECT_EQ(*out.code, StatusCode::kResourceExhausted) << out.message;
}

TEST_F(GrpcClientServerTest, TypedProtobufMessages) {
  StartServer();
  MakeChannel();
  std::vector<xds::DiscoveryResponse> responses;
  std::optional<StatusCode> code;
  auto call = channel_->StartCall(kAds);
  call->OnProtoMessage<xds::DiscoveryResponse>(
      [&](xds::DiscoveryResponse r) { responses.push_back(std::move(r)); });
  call->OnFinish([&](StatusCode c, const std::string&, const HeaderMap&) { code = c; });
  xds::DiscoveryRequest request;
  request.mutable_node()->set_id("sidecar-1");
  request.set_type_url("type.meshlet.dev/Cluster");
  ASSERT_TRUE(call->SendProto(request));
  ASSERT_TRUE(RunUntil([&] { return responses.size() == 1; }));
  EXPECT_EQ(responses[0].nonce(), "n1");
  request.set_version_info("v1");
  request.set_response_nonce("n1");
  call->SendProto(request);
  call->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return code.has_value(); }));
  EXPECT_EQ(*code, StatusCode::kOk);
  ASSERT_EQ(ads_requests_.size(), 2u);
  EXPECT_EQ(ads_requests_[0].node().id(), "sidecar-1");
  EXPECT_EQ(ads_requests_[1].response_nonce(), "n1");

  // Bytes that are not a DiscoveryRequest.
  Outcome out = RunCall(kAds, {"\xff\xff\xff"});
  EXPECT_EQ(*out.code, StatusCode::kInvalidArgument);
  EXPECT_EQ(out.message, "could not parse the request as meshlet.xds.DiscoveryRequest");
}

TEST_F(GrpcClientServerTest, ShutdownFailsOpenCallsWithUnavailableAndChannelReconnects) {
  StartServer();
  MakeChannel();
  Outcome out;
  auto call = channel_->StartCall(kHang);
  Record(call, out);
  ASSERT_TRUE(RunUntil([&] { return hanging_ != nullptr; }));
  server_->Shutdown(milliseconds(0));
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value(); }));
  EXPECT_EQ(*out.code, StatusCode::kUnavailable);
  EXPECT_EQ(server_cancels_, 1);
  ASSERT_TRUE(RunUntil([&] { return server_->active_connections() == 0; }));

  // Nobody listens now.
  Outcome refused = RunCall(kUnary, {"x"});
  EXPECT_EQ(*refused.code, StatusCode::kUnavailable) << refused.message;

  // A new server on the same port: the channel connects again on demand.
  server_.reset();
  hanging_.reset();
  StartServer();
  EXPECT_EQ(*RunCall(kUnary, {"x"}).code, StatusCode::kOk);
  EXPECT_EQ(channel_->connection_attempts(), 3u);
}

TEST_F(GrpcClientServerTest, GracefulShutdownLetsCallsFinish) {
  StartServer();
  MakeChannel();
  Outcome out;
  auto call = channel_->StartCall(kBidi);
  Record(call, out);
  call->Send("ping 1");
  ASSERT_TRUE(RunUntil([&] { return out.messages.size() == 1; }));
  server_->Shutdown(seconds(10));
  // The call in flight still works after the GOAWAY.
  call->Send("ping 2");
  ASSERT_TRUE(RunUntil([&] { return out.messages.size() == 2; }));
  call->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value(); }));
  EXPECT_EQ(*out.code, StatusCode::kOk);
  ASSERT_TRUE(RunUntil([&] { return server_->active_connections() == 0; }));
}

TEST_F(GrpcClientServerTest, ConnectionLossFailsEveryOpenCall) {
  StartServer();
  MakeChannel();
  Outcome a, b;
  auto call_a = channel_->StartCall(kHang);
  auto call_b = channel_->StartCall(kBidi);
  Record(call_a, a);
  Record(call_b, b);
  call_b->Send("ping 1");
  ASSERT_TRUE(RunUntil([&] { return b.messages.size() == 1; }));
  server_.reset();  // closes every connection at once
  hanging_.reset();
  ASSERT_TRUE(RunUntil([&] { return a.code.has_value() && b.code.has_value(); }));
  EXPECT_EQ(*a.code, StatusCode::kUnavailable);
  EXPECT_EQ(*b.code, StatusCode::kUnavailable);
}

TEST_F(GrpcClientServerTest, KeepalivePingsKeepTheConnection) {
  StartServer();
  MakeChannel({.keepalive_interval = milliseconds(20), .keepalive_timeout = milliseconds(500)});
  EXPECT_EQ(*RunCall(kUnary, {"x"}).code, StatusCode::kOk);
  // Several PINGs go out and are answered; the connection stays up.
  RunUntil([] { return false; }, milliseconds(150));
  EXPECT_EQ(*RunCall(kUnary, {"y"}).code, StatusCode::kOk);
  EXPECT_EQ(channel_->connection_attempts(), 1u);
}

// A client whose process stopped: its kernel keeps the TCP connection up, but nothing answers
// HTTP/2 PINGs. A raw socket plays it: preface, SETTINGS, one call's HEADERS, then silence.
TEST_F(GrpcClientServerTest, ServerKeepaliveClosesConnectionsWhosePeerStopsAnswering) {
  ServerOptions options;
  options.http2.keepalive_interval = milliseconds(30);
  options.http2.keepalive_timeout = milliseconds(100);
  StartServer(std::move(options));
  const int fd = ConnectRaw(port_);
  ASSERT_GE(fd, 0);
  std::string bytes = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  bytes += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // empty SETTINGS
  std::string block;  // HPACK literals without indexing, no Huffman
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, std::string>>{{":method", "POST"},
                                                        {":scheme", "http"},
                                                        {":path", std::string(kHang)},
                                                        {":authority", "test"},
                                                        {"content-type", "application/grpc"},
                                                        {"te", "trailers"}}) {
    block += '\0';
    block += static_cast<char>(name.size());
    block += name;
    block += static_cast<char>(value.size());
    block += value;
  }
  bytes += std::string("\x00\x00", 2) + static_cast<char>(block.size());
  bytes += std::string("\x01\x04\x00\x00\x00\x01", 6);  // HEADERS, END_HEADERS, stream 1
  bytes += block;
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ASSERT_TRUE(RunUntil([&] { return hanging_ != nullptr; }));
  EXPECT_EQ(server_->active_connections(), 1u);
  // Idle for the interval, PING, no ACK within the timeout: closed, and the call cancelled.
  ASSERT_TRUE(RunUntil([&] { return server_->active_connections() == 0; }, seconds(2)));
  EXPECT_EQ(server_cancels_, 1);
  EXPECT_TRUE(hanging_->ended());
  ::close(fd);
}

// A peer that answers keeps its connection however long it stays idle.
TEST_F(GrpcClientServerTest, ServerKeepaliveKeepsConnectionsThatAnswer) {
  ServerOptions options;
  options.http2.keepalive_interval = milliseconds(20);
  options.http2.keepalive_timeout = milliseconds(100);
  StartServer(std::move(options));
  MakeChannel();
  EXPECT_EQ(*RunCall(kUnary, {"x"}).code, StatusCode::kOk);
  RunUntil([] { return false; }, milliseconds(300));
  EXPECT_EQ(server_->active_connections(), 1u);
  EXPECT_EQ(*RunCall(kUnary, {"y"}).code, StatusCode::kOk);
  EXPECT_EQ(channel_->connection_attempts(), 1u);
}

TEST_F(GrpcClientServerTest, IdleConnectionsAreToldToGoAway) {
  StartServer({.max_connection_idle = milliseconds(50)});
  MakeChannel();
  EXPECT_EQ(*RunCall(kUnary, {"x"}).code, StatusCode::kOk);
  ASSERT_TRUE(RunUntil([&] { return server_->active_connections() == 0; }));
  EXPECT_EQ(*RunCall(kUnary, {"y"}).code, StatusCode::kOk);
  EXPECT_EQ(channel_->connection_attempts(), 2u);
}

// A client that connects and never opens a call (here: sends nothing at all, as one stuck in
// its TLS handshake would) is closed after the handshake timeout and counted; one that opens a
// call in time keeps its connection past it.
TEST_F(GrpcClientServerTest, ConnectionsThatNeverOpenACallAreClosed) {
  StatsRegistry stats;
  absl::StatusOr<Counter> timeouts =
      stats.shared_shard().RegisterCounter("meshlet_test_timeouts_total", "test");
  ASSERT_TRUE(timeouts.ok());
  StartServer({.handshake_timeout = milliseconds(100), .timeouts = *timeouts});
  const int fd = ConnectRaw(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(RunUntil([&] { return server_->active_connections() == 1; }));
  ASSERT_TRUE(RunUntil([&] { return server_->active_connections() == 0; }, seconds(2)));
  EXPECT_EQ(Counted(stats, "meshlet_test_timeouts_total"), 1u);
  ::close(fd);
  MakeChannel();
  EXPECT_EQ(*RunCall(kUnary, {"x"}).code, StatusCode::kOk);
  RunUntil([] { return false; }, milliseconds(300));
  EXPECT_EQ(server_->active_connections(), 1u);
  EXPECT_EQ(*RunCall(kUnary, {"y"}).code, StatusCode::kOk);
  EXPECT_EQ(channel_->connection_attempts(), 1u);
  EXPECT_EQ(Counted(stats, "meshlet_test_timeouts_total"), 1u);
}

TEST_F(GrpcClientServerTest, CallbacksSetLateStillSeeTheStatus) {
  StartServer();
  MakeChannel();
  auto call = channel_->StartCall("/test.Echo/Missing");
  call->HalfClose();
  RunUntil([&] { return call->finished(); });
  std::optional<StatusCode> code;
  call->OnFinish([&](StatusCode c, const std::string&, const HeaderMap&) { code = c; });
  ASSERT_TRUE(RunUntil([&] { return code.has_value(); }));
  EXPECT_EQ(*code, StatusCode::kUnimplemented);
}

TEST_F(GrpcClientServerTest, RegisterMethodValidatesPaths) {
  Server server(loop_);
  auto noop = [](std::shared_ptr<ServerCall>) {};
  EXPECT_TRUE(server.RegisterMethod("/a.B/C", noop).ok());
  EXPECT_EQ(server.RegisterMethod("/a.B/C", noop).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(server.RegisterMethod("a.B/C", noop).ok());
  EXPECT_FALSE(server.RegisterMethod("/a.B/", noop).ok());
  EXPECT_FALSE(server.RegisterMethod("/a.B/C/D", noop).ok());
  EXPECT_FALSE(server.RegisterMethod("//C", noop).ok());
}

// ----- TLS ------------------------------------------------------------------------------------

class GrpcTlsTest : public GrpcClientServerTest {
 protected:
  static constexpr absl::string_view kServerId = "spiffe://cluster.local/ns/mesh/sa/control-plane";
  static constexpr absl::string_view kClientId = "spiffe://cluster.local/ns/default/sa/frontend";

  void SetUp() override {
    auto ca = tls::testing::TestCa::Create("grpc test root");
    ASSERT_TRUE(ca.ok());
    ca_ = std::make_unique<tls::testing::TestCa>(std::move(*ca));
    auto server_cert = ca_->Issue({.spiffe_id = std::string(kServerId)});
    auto client_cert = ca_->Issue({.spiffe_id = std::string(kClientId)});
    ASSERT_TRUE(server_cert.ok() && client_cert.ok());
    server_cert_ = *server_cert;
    client_cert_ = *client_cert;
  }

  net::TransportFactory ServerFactory(bool require_client_cert) {
    tls::TlsContextConfig config{.certificate_chain_pem = server_cert_.chain_pem,
                                 .private_key_pem = server_cert_.key_pem,
                                 .trust_bundle_pem = ca_->cert_pem(),
                                 .alpn_protocols = {"h2"},
                                 .require_alpn_match = true};
    if (require_client_cert) {
      config.client_certificate = tls::ClientCertificateMode::kRequire;
    }
    auto context = tls::TlsContext::CreateServer(config);
    EXPECT_TRUE(context.ok()) << context.status();
    return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
  }

  net::TransportFactory ClientFactory(bool with_cert) {
    tls::TlsContextConfig config{.trust_bundle_pem = ca_->cert_pem(), .alpn_protocols = {"h2"}};
    if (with_cert) {
      config.certificate_chain_pem = client_cert_.chain_pem;
      config.private_key_pem = client_cert_.key_pem;
    }
    auto context = tls::TlsContext::CreateClient(config);
    EXPECT_TRUE(context.ok()) << context.status();
    return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
  }

  std::unique_ptr<tls::testing::TestCa> ca_;
  tls::testing::TestCertificate server_cert_;
  tls::testing::TestCertificate client_cert_;
};

TEST_F(GrpcTlsTest, ServerAuthenticatedTls) {
  StartServer({.transport_factory = ServerFactory(/*require_client_cert=*/false)});
  MakeChannel({.transport_factory = ClientFactory(/*with_cert=*/false)});
  Outcome out = RunCall(kUnary, {"secret"});
  EXPECT_EQ(*out.code, StatusCode::kOk) << out.message;
  EXPECT_EQ(out.messages, std::vector<std::string>{"echo:secret"});
  // Streaming over TLS too.
  out = RunCall(kServerStream, {"300"});
  EXPECT_EQ(*out.code, StatusCode::kOk) << out.message;
  EXPECT_EQ(out.messages.size(), 300u);
}

TEST_F(GrpcTlsTest, MutualTlsExposesThePeerIdentity) {
  StartServer({.transport_factory = ServerFactory(/*require_client_cert=*/true)});
  MakeChannel({.transport_factory = ClientFactory(/*with_cert=*/true)});
  Outcome out;
  auto call = channel_->StartCall(kHang);
  Record(call, out);
  ASSERT_TRUE(RunUntil([&] { return hanging_ != nullptr; }));
  EXPECT_EQ(hanging_->peer().alpn, "h2");
  EXPECT_EQ(hanging_->peer().uri_sans, std::vector<std::string>{std::string(kClientId)});
  hanging_->Finish(StatusCode::kOk);
  ASSERT_TRUE(RunUntil([&] { return out.code.has_value(); }));
  EXPECT_EQ(*out.code, StatusCode::kOk);
}

TEST_F(GrpcTlsTest, MutualTlsWithoutClientCertificateIsUnavailable) {
  StartServer({.transport_factory = ServerFactory(/*require_client_cert=*/true)});
  MakeChannel({.transport_factory = ClientFactory(/*with_cert=*/false)});
  Outcome out = RunCall(kUnary, {"x"});
  EXPECT_EQ(*out.code, StatusCode::kUnavailable) << out.message;
}

TEST_F(GrpcTlsTest, PlaintextClientCannotTalkToTlsServer) {
  StartServer({.transport_factory = ServerFactory(/*require_client_cert=*/false)});
  MakeChannel({.connect_timeout = seconds(2)});
  Outcome out = RunCall(kUnary, {"x"}, {.timeout = seconds(3)});
  EXPECT_TRUE(*out.code == StatusCode::kUnavailable) << StatusCodeName(*out.code) << out.message;
}

}  // namespace
}  // namespace meshlet::http::grpc
