#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/testapp/tcp_client.h"
#include "tests/e2e/testapp/tcp_server.h"

namespace meshlet::testapp {
namespace {

using net::testing::RecordingCallbacks;

// Banner servers and their clients on one loop, on 127.0.0.1.
class TcpTest : public ::testing::Test {
 protected:
  ~TcpTest() override {
    for (auto& c : raw_) c.connection.reset();
    servers_.clear();
    scripted_.reset();
    loop_.RunUntilIdle();
  }

  BannerServer& Start(BannerServerOptions options) {
    auto server = BannerServer::Create(loop_, *net::Address::Parse("127.0.0.1:0"), options);
    EXPECT_TRUE(server.ok()) << server.status();
    servers_.push_back(*std::move(server));
    return *servers_.back();
  }

  // A plain connection to `server` that records what it receives.
  struct Raw {
    std::unique_ptr<RecordingCallbacks> callbacks = std::make_unique<RecordingCallbacks>();
    std::unique_ptr<net::Connection> connection;
  };
  Raw& Connect(const BannerServer& server) {
    Raw raw;
    raw.connection = net::Connection::Connect(loop_, server.address(), std::chrono::seconds(5));
    raw.connection->SetCallbacks(raw.callbacks.get());
    raw_.push_back(std::move(raw));
    return raw_.back();
  }
  // The server finished sending (closed).
  bool RunUntilEnd(Raw& raw) {
    return loop_.RunUntil([&] { return raw.callbacks->end_stream; }, std::chrono::seconds(5));
  }
  bool RunUntilReceived(Raw& raw, absl::string_view text) {
    return loop_.RunUntil([&] { return raw.callbacks->received == text; }, std::chrono::seconds(5));
  }

  // A server that is not a BannerServer: each accepted connection records what it receives, and
  // `on_accept` / `on_line` (a whole line received) say what it writes.
  struct Scripted {
    std::unique_ptr<net::Listener> listener;
    std::deque<Raw> accepted;
    std::function<void(net::Connection&)> on_accept = [](net::Connection&) {};
    std::function<void(net::Connection&, const std::string&)> on_line = [](net::Connection&,
                                                                           const std::string&) {};
  };
  Scripted& StartScripted() {
    scripted_ = std::make_unique<Scripted>();
    Scripted* s = scripted_.get();
    auto listener = net::Listener::Create(
        loop_, *net::Address::Parse("127.0.0.1:0"), net::ListenerOptions{},
        [s](std::unique_ptr<net::Connection> connection) {
          Raw& raw = s->accepted.emplace_back();
          raw.connection = std::move(connection);
          raw.connection->SetCallbacks(raw.callbacks.get());
          net::Connection* c = raw.connection.get();
          RecordingCallbacks* callbacks = raw.callbacks.get();
          callbacks->on_data = [s, c, callbacks](net::Buffer& data, bool) {
            callbacks->received += data.ToString();
            data.Clear();
            for (size_t end = callbacks->received.find('\n'); end != std::string::npos;
                 end = callbacks->received.find('\n')) {
              std::string line = callbacks->received.substr(0, end);
              callbacks->received.erase(0, end + 1);
              s->on_line(*c, line);
            }
          };
          s->on_accept(*c);
        });
    EXPECT_TRUE(listener.ok()) << listener.status();
    s->listener = *std::move(listener);
    return *s;
  }

  TcpResult Talk(const net::Address& address, std::vector<std::string> lines,
                 Duration timeout = std::chrono::seconds(5), std::string host = "127.0.0.1") {
    TcpRequest request;
    request.host = std::move(host);
    request.port = address.port();
    request.lines = std::move(lines);
    request.timeout = timeout;
    std::optional<TcpResult> result;
    auto session =
        TcpSession::Start(loop_, std::move(request), [&](TcpResult r) { result = std::move(r); });
    EXPECT_TRUE(loop_.RunUntil([&] { return result.has_value(); }, std::chrono::seconds(10)));
    return result.has_value() ? *std::move(result) : TcpResult{};
  }

  event::Loop loop_;
  std::vector<std::unique_ptr<BannerServer>> servers_;
  std::deque<Raw> raw_;  // stable references
  std::unique_ptr<Scripted> scripted_;
};

TEST_F(TcpTest, ServerSpeaksFirstThenEchoesLines) {
  BannerServerOptions o;
  o.service = "mysql";
  o.pod = "mysql-0";
  BannerServer& server = Start(o);
  EXPECT_EQ(server.banner(), "220 mysql mysql-0 ready");
  Raw& raw = Connect(server);
  // Nothing sent: the banner comes anyway.
  ASSERT_TRUE(RunUntilReceived(raw, "220 mysql mysql-0 ready\r\n")) << raw.callbacks->received;
  raw.connection->Write("HELO x\r\nplain\n");
  ASSERT_TRUE(RunUntilReceived(raw,
                               "220 mysql mysql-0 ready\r\n"
                               "echo mysql/mysql-0: HELO x\r\n"
                               "echo mysql/mysql-0: plain\r\n"))
      << raw.callbacks->received;
  // A line in pieces, and a last one without LF answered when the client finishes.
  raw.callbacks->received.clear();
  raw.connection->Write("pie");
  loop_.RunUntilIdle();
  raw.connection->Write("ce\r\nlast");
  raw.connection->ShutdownWrite();
  ASSERT_TRUE(loop_.RunUntil([&] { return raw.callbacks->closes == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(raw.callbacks->received, "echo mysql/mysql-0: piece\r\necho mysql/mysql-0: last\r\n");
  EXPECT_EQ(server.lines(), 4u);
  EXPECT_TRUE(loop_.RunUntil([&] { return server.connections() == 0; }, std::chrono::seconds(5)));
}

TEST_F(TcpTest, CustomBannerLongLinesAndConnectionLimit) {
  BannerServerOptions o;
  o.banner = "* OK IMAP4rev1";
  o.max_line_bytes = 8;
  o.max_connections = 1;
  BannerServer& server = Start(o);
  Raw& first = Connect(server);
  ASSERT_TRUE(RunUntilReceived(first, "* OK IMAP4rev1\r\n"));
  // Beyond the limit: closed at once, no banner.
  Raw& second = Connect(server);
  ASSERT_TRUE(RunUntilEnd(second));
  EXPECT_EQ(second.callbacks->received, "");
  first.connection->Write("123456789");
  ASSERT_TRUE(RunUntilEnd(first));
  EXPECT_EQ(first.callbacks->received, "* OK IMAP4rev1\r\nerror: line longer than 8 bytes\r\n");
  EXPECT_EQ(server.accepted(), 1u);
}

TEST_F(TcpTest, ShutdownStopsAcceptingAndCloses) {
  BannerServer& server = Start(BannerServerOptions{});
  Raw& raw = Connect(server);
  ASSERT_TRUE(RunUntilReceived(raw, "220 testapp testapp ready\r\n"));
  server.Shutdown();
  ASSERT_TRUE(RunUntilEnd(raw));
  EXPECT_EQ(server.connections(), 0u);
  Raw& late = Connect(server);
  ASSERT_TRUE(loop_.RunUntil([&] { return late.callbacks->closes == 1; }, std::chrono::seconds(5)));
  EXPECT_FALSE(late.callbacks->connected);
}

TEST_F(TcpTest, ClientWaitsForTheBannerThenSendsEachLine) {
  BannerServerOptions o;
  o.service = "smtp";
  o.pod = "smtp-0";
  BannerServer& server = Start(o);
  TcpResult r = Talk(server.address(), {"EHLO me", "", "QUIT"});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.banner, "220 smtp smtp-0 ready");
  EXPECT_EQ(r.answers, (std::vector<std::string>{"echo smtp/smtp-0: EHLO me",
                                                 "echo smtp/smtp-0: ", "echo smtp/smtp-0: QUIT"}));
  // No lines: the banner is all.
  r = Talk(server.address(), {});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.banner, "220 smtp smtp-0 ready");
  EXPECT_TRUE(r.answers.empty());
  // By name (/etc/hosts).
  r = Talk(server.address(), {"x"}, std::chrono::seconds(5), "localhost");
  EXPECT_TRUE(r.error.ok()) << r.error;
}

// A server that does not speak first: the client waits (sending nothing) until its deadline.
TEST_F(TcpTest, ClientSendsNothingBeforeTheBanner) {
  Scripted& silent = StartScripted();
  auto start = std::chrono::steady_clock::now();
  TcpResult r = Talk(silent.listener->address(), {"hello"}, std::chrono::milliseconds(200));
  EXPECT_EQ(r.error.code(), absl::StatusCode::kDeadlineExceeded) << r.error;
  EXPECT_EQ(r.error.message(), absl::StrCat("no banner from 127.0.0.1:",
                                            silent.listener->address().port(), " within 200 ms"));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(190));
  // The client's deadline and the server's accept can become ready in the same loop turn (a
  // loaded machine that did not run the loop for 200 ms), and libuv runs timers before it polls:
  // the accept may come after the result.
  ASSERT_TRUE(loop_.RunUntil([&] { return silent.accepted.size() == 1; }, std::chrono::seconds(5)));
  ASSERT_EQ(silent.accepted.size(), 1u);
  EXPECT_EQ(silent.accepted[0].callbacks->received, "");
  EXPECT_EQ(silent.accepted[0].callbacks->data_events, 0);
  EXPECT_EQ(r.banner, "");
}

TEST_F(TcpTest, ClientFailures) {
  Scripted& odd = StartScripted();
  odd.on_accept = [](net::Connection& c) { c.Write("hello there\r\n"); };
  odd.on_line = [](net::Connection& c, const std::string& line) {
    c.Write(line == "close\r" ? "" : "something else\r\n");
    if (line == "close\r") c.Close(net::CloseMode::kFlush);
  };
  const net::Address address = odd.listener->address();
  const std::string authority = absl::StrCat("127.0.0.1:", address.port());
  // Any banner will do; an answer that is not the echo is unexpected.
  TcpResult r = Talk(address, {"a"});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kDataLoss) << r.error;
  EXPECT_EQ(r.error.message(),
            absl::StrCat("unexpected answer from ", authority, " to \"a\": \"something else\""));
  EXPECT_EQ(r.banner, "hello there");
  EXPECT_EQ(r.answers, std::vector<std::string>{"something else"});
  // Closed before the answer.
  r = Talk(address, {"close"});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
  EXPECT_EQ(r.error.message(),
            absl::StrCat(authority, " closed the connection before the answer to \"close\""));
  // Closed before the banner.
  odd.on_accept = [](net::Connection& c) { c.Close(net::CloseMode::kFlush); };
  r = Talk(address, {});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
  EXPECT_TRUE(absl::StrContains(r.error.message(), "closed the connection before the banner"))
      << r.error;
  // Nobody listens.
  odd.listener.reset();
  loop_.RunUntilIdle();
  r = Talk(address, {});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
  EXPECT_TRUE(absl::StrContains(r.error.message(), "connection refused")) << r.error;
  // A name nobody knows.
  TcpRequest request;
  request.host = "no-such-host.invalid";
  request.port = 3306;
  std::optional<TcpResult> result;
  auto session =
      TcpSession::Start(loop_, std::move(request), [&](TcpResult r) { result = std::move(r); });
  ASSERT_TRUE(loop_.RunUntil([&] { return result.has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(result->error.code(), absl::StatusCode::kUnavailable) << result->error;
}

TEST_F(TcpTest, SummaryOfManyConnections) {
  BannerServerOptions o;
  o.service = "db";
  o.pod = "db-0";
  BannerServer& server = Start(o);
  TcpOptions options;
  options.host = "127.0.0.1";
  options.port = server.address().port();
  options.send = {"ping"};
  options.count = 3;
  TcpSummary summary = RunTcp(loop_, options);
  EXPECT_TRUE(summary.all_succeeded()) << summary.ToJson();
  EXPECT_EQ(summary.connections, 3u);
  EXPECT_EQ(server.accepted(), 3u);
  EXPECT_TRUE(absl::StartsWith(summary.ToJson(),
                               "{\"connections\":3,\"ok\":3,\"errors\":{},"
                               "\"banners\":{\"220 db db-0 ready\":3},\"latency_ms\":{\"p50\":"))
      << summary.ToJson();
  EXPECT_TRUE(absl::StrContains(summary.ToJson(), ",\"failures\":[]}")) << summary.ToJson();

  // A server that answers otherwise: every connection fails, and the first ones are listed.
  Scripted& odd = StartScripted();
  odd.on_accept = [](net::Connection& c) { c.Write("* OK\r\n"); };
  odd.on_line = [](net::Connection& c, const std::string&) { c.Write("no\r\n"); };
  options.port = odd.listener->address().port();
  options.count = 2;
  summary = RunTcp(loop_, options);
  EXPECT_FALSE(summary.all_succeeded());
  const std::string json = summary.ToJson();
  EXPECT_TRUE(absl::StartsWith(json,
                               "{\"connections\":2,\"ok\":0,\"errors\":{\"DATA_LOSS\":2},"
                               "\"banners\":{\"* OK\":2},"))
      << json;
  ASSERT_EQ(summary.failures.size(), 2u);
  EXPECT_TRUE(absl::StrContains(json, "\"error\":\"DATA_LOSS: unexpected answer from 127.0.0.1:"))
      << json;
  EXPECT_LE(summary.failures[0].at_seconds, summary.failures[1].at_seconds);
}

}  // namespace
}  // namespace meshlet::testapp
