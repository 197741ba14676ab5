// TcpProxy's timing: a connection refused at once still logs a duration. Its fixed-upstream mode
// (StartTo, a capture listener's passthrough): no cluster, bytes both ways, logged as such, with
// the server name of TLS passing through.

#include "sidecar/listener/tcp_proxy.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "common/event/turn_clock.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "common/tls/client_hello_test_util.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

using std::chrono::seconds;

class Log : public AccessLogSink {
 public:
  void Write(absl::string_view line) override { lines.emplace_back(line); }
  std::vector<std::string> lines;
};

class NoClusters : public cluster::ClusterManager {
 public:
  cluster::Cluster* Find(absl::string_view) override { return nullptr; }
};

// A connection for a cluster the worker lacks is closed within the loop turn that accepted it:
// its start and end are read exactly, so the turn's one shared reading does not make it 0.
TEST(TcpProxyTest, ConnectionClosedWithinOneLoopTurnHasADuration) {
  event::Loop loop;
  FakeClock source;
  source.AdvanceOnEveryRead(std::chrono::microseconds(250));
  event::TurnClock clock(loop, source);
  NoClusters clusters;
  Log log;
  std::unique_ptr<TcpProxy> proxy;
  auto listener = net::Listener::Create(loop, *net::Address::Parse("127.0.0.1:0"), {},
                                        [&](std::unique_ptr<net::Connection> connection) {
                                          proxy = std::make_unique<TcpProxy>(
                                              loop, clusters, clock, TcpProxyStats(), &log, "tcp",
                                              "missing", Duration(0), std::move(connection), [] {});
                                          proxy->Start(net::Buffer());
                                        });
  ASSERT_TRUE(listener.ok()) << listener.status();
  net::testing::RecordingCallbacks client;
  auto c = net::Connection::Connect(loop, (*listener)->address(), seconds(5));
  c->SetCallbacks(&client);
  ASSERT_TRUE(loop.RunUntil([&] { return !log.lines.empty(); }, seconds(5)));
  const std::string& line = log.lines[0];
  EXPECT_NE(line.find("\"failure\":\"no_cluster\""), std::string::npos) << line;
  const std::string key = "\"duration_us\":";
  const size_t at = line.find(key);
  ASSERT_NE(at, std::string::npos) << line;
  const std::string rest = line.substr(at + key.size());
  uint64_t duration_us = 0;
  ASSERT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find_first_of(",}")), &duration_us)) << line;
  EXPECT_GE(duration_us, 250u) << line;
  c->SetCallbacks(nullptr);
  c.reset();
  proxy.reset();
  loop.RunUntilIdle();
}

// A passthrough (StartTo) of `first` as the bytes read before (detection) to an upstream that
// answers "pong:" and what it read, then closes; returns the access log line, and what the client
// received in `received`.
std::string PassthroughLogLine(const std::string& first, std::string* received,
                               std::string* upstream_host) {
  event::Loop loop;
  FakeClock source;
  event::TurnClock clock(loop, source);
  NoClusters clusters;  // never asked
  Log log;
  std::vector<std::unique_ptr<net::Connection>> upstream_side;
  std::vector<std::unique_ptr<net::testing::RecordingCallbacks>> upstream_callbacks;
  auto upstream = net::Listener::Create(
      loop, *net::Address::Parse("127.0.0.1:0"), {}, [&](std::unique_ptr<net::Connection> c) {
        auto callbacks = std::make_unique<net::testing::RecordingCallbacks>();
        net::Connection* raw = c.get();
        callbacks->on_data = [raw](net::Buffer& data, bool) {
          net::Buffer reply;
          reply.Append("pong:" + data.ToString());
          data.Drain(data.length());
          raw->Write(reply);
          raw->Close(net::CloseMode::kFlush);
        };
        c->SetCallbacks(callbacks.get());
        upstream_side.push_back(std::move(c));
        upstream_callbacks.push_back(std::move(callbacks));
      });
  EXPECT_TRUE(upstream.ok()) << upstream.status();
  if (!upstream.ok()) return "";
  const net::Address upstream_address = (*upstream)->address();
  *upstream_host = upstream_address.ToString();
  std::unique_ptr<TcpProxy> proxy;
  bool done = false;
  auto listener = net::Listener::Create(
      loop, *net::Address::Parse("127.0.0.1:0"), {}, [&](std::unique_ptr<net::Connection> c) {
        proxy = std::make_unique<TcpProxy>(loop, clusters, clock, TcpProxyStats(), &log, "capture",
                                           "passthrough", Duration(0), std::move(c),
                                           [&] { done = true; });
        proxy->set_original_destination("240.240.0.9:5000");
        net::Buffer bytes;
        bytes.Append(first);
        proxy->StartTo(upstream_address, seconds(1), std::move(bytes));
      });
  EXPECT_TRUE(listener.ok()) << listener.status();
  if (!listener.ok()) return "";
  net::testing::RecordingCallbacks client;
  auto c = net::Connection::Connect(loop, (*listener)->address(), seconds(5));
  c->SetCallbacks(&client);
  EXPECT_TRUE(loop.RunUntil([&] { return client.end_stream; }, seconds(5)));
  *received = client.received;
  c->Close(net::CloseMode::kNoFlush);
  EXPECT_TRUE(loop.RunUntil([&] { return done; }, seconds(5)));
  EXPECT_EQ(log.lines.size(), 1u);
  EXPECT_EQ(proxy->received_bytes(), first.size());
  EXPECT_EQ(proxy->sent_bytes(), first.size() + 5);
  c.reset();
  proxy.reset();
  upstream_side.clear();
  loop.RunUntilIdle();
  return log.lines.empty() ? "" : log.lines[0];
}

// StartTo: the upstream is the address given; the bytes read before (detection) go first, the
// server's answer comes back, and the log names the address and the original destination.
TEST(TcpProxyTest, FixedUpstreamCarriesBytesWithoutACluster) {
  std::string received, upstream_host;
  const std::string line = PassthroughLogLine("ping", &received, &upstream_host);
  EXPECT_EQ(received, "pong:ping");
  EXPECT_NE(line.find("\"cluster\":\"passthrough\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"upstream_host\":\"" + upstream_host + "\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"original_destination\":\"240.240.0.9:5000\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"failure\":\"\""), std::string::npos) << line;
  EXPECT_EQ(line.find("requested_server_name"), std::string::npos) << line;
}

// Opaque TLS passing through: the log names the server the client asked for (its ClientHello's
// SNI, the TLS itself untouched).
TEST(TcpProxyTest, TlsPassingThroughIsLoggedWithItsServerName) {
  using tls::testing::HandMadeClientHello;
  using tls::testing::SniExtension;
  const std::string hello = HandMadeClientHello(SniExtension("API.partner.example"));
  std::string received, upstream_host;
  const std::string line = PassthroughLogLine(hello, &received, &upstream_host);
  EXPECT_EQ(received, "pong:" + hello);
  EXPECT_NE(line.find("\"requested_server_name\":\"api.partner.example\""), std::string::npos)
      << line;
  // Half a hello (the rest not read yet when the connection was handed over): no name.
  const std::string half = hello.substr(0, hello.size() / 2);
  const std::string partial = PassthroughLogLine(half, &received, &upstream_host);
  EXPECT_EQ(partial.find("requested_server_name"), std::string::npos) << partial;
}

// StartTo an address nobody listens on: the downstream is closed and the failure logged.
TEST(TcpProxyTest, FixedUpstreamConnectFailureClosesDownstream) {
  event::Loop loop;
  FakeClock source;
  event::TurnClock clock(loop, source);
  NoClusters clusters;
  Log log;
  const net::testing::RefusingPort refusing;
  const net::Address closed_address = *net::Address::Parse(refusing.loopback());
  std::unique_ptr<TcpProxy> proxy;
  auto listener = net::Listener::Create(
      loop, *net::Address::Parse("127.0.0.1:0"), {}, [&](std::unique_ptr<net::Connection> c) {
        proxy = std::make_unique<TcpProxy>(loop, clusters, clock, TcpProxyStats(), &log, "capture",
                                           "passthrough", Duration(0), std::move(c), [] {});
        proxy->StartTo(closed_address, seconds(1), net::Buffer());
      });
  ASSERT_TRUE(listener.ok());
  net::testing::RecordingCallbacks client;
  auto c = net::Connection::Connect(loop, (*listener)->address(), seconds(5));
  c->SetCallbacks(&client);
  ASSERT_TRUE(loop.RunUntil([&] { return !log.lines.empty(); }, seconds(5)));
  EXPECT_NE(log.lines[0].find("\"failure\":\"upstream_"), std::string::npos) << log.lines[0];
  EXPECT_TRUE(loop.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  c->SetCallbacks(nullptr);
  c.reset();
  proxy.reset();
  loop.RunUntilIdle();
}

}  // namespace
}  // namespace meshlet::sidecar::listener
