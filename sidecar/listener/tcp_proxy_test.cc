// TcpProxy's timing: a connection refused at once still logs a duration.

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

}  // namespace
}  // namespace meshlet::sidecar::listener
