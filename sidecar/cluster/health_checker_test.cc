#include "sidecar/cluster/health_checker.h"
#include "common/net/test_util.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/http/server.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/fake_codec.h"

namespace meshlet::sidecar::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

net::Address Loopback0() { return *net::Address::Parse("127.0.0.1:0"); }

// A port that refuses connections, held for the rest of the test program.
net::Address ClosedPort(event::Loop&) {
  static auto* held = new std::vector<std::unique_ptr<net::testing::RefusingPort>>();
  held->push_back(std::make_unique<net::testing::RefusingPort>());
  return *net::Address::Parse(held->back()->loopback());
}

class HealthCheckerTest : public ::testing::Test {
 protected:
  HealthCheckerTest() {
    auto server = http::HttpServer::Create(
        loop_, Loopback0(), {}, [this](const http::ServerRequest& request) {
          ++requests_;
          last_path_ = std::string(request.path());
          last_host_ = std::string(request.headers.Get(":authority").value_or(""));
          return http::ServerResponse::Text(status_, "ok\n");
        });
    CHECK_OK(server);
    server_ = *std::move(server);
    subscription_ = results_.Subscribe(
        loop_, [this](const std::string& cluster) { notified_.push_back(cluster); });
  }
  ~HealthCheckerTest() override { results_.Unsubscribe(subscription_); }

  ClusterConfig Config(HealthCheckConfig::Kind kind, std::vector<net::Address> addresses) {
    ClusterConfig config;
    config.name = "backend";
    for (const net::Address& address : addresses) {
      EndpointConfig endpoint;
      endpoint.address = address;
      config.endpoints.push_back(endpoint);
    }
    config.health_check.Mutable().kind = kind;
    config.health_check.Mutable().interval = milliseconds(30);
    config.health_check.Mutable().timeout = milliseconds(200);
    config.health_check.Mutable().unhealthy_threshold = 2;
    config.health_check.Mutable().healthy_threshold = 2;
    config.health_check.Mutable().http_path = "/healthz";
    config.health_check.Mutable().http_host = "backend.local";
    config.health_check.Mutable().expected_statuses = {200, 204};
    return config;
  }

  std::unique_ptr<HealthChecker> Make(const ClusterConfig& config) {
    return std::make_unique<HealthChecker>(loop_, config, random_, RealClock::Get(), results_,
                                           HealthCheckStats{});
  }

  bool WaitFor(absl::FunctionRef<bool()> done) { return loop_.RunUntil(done, seconds(5)); }

  event::Loop loop_;
  RealRandom random_{7};
  SharedHostHealth results_;
  std::unique_ptr<http::HttpServer> server_;
  std::atomic<int> status_{200};
  int requests_ = 0;
  std::string last_path_;
  std::string last_host_;
  uint64_t subscription_ = 0;
  std::vector<std::string> notified_;
};

TEST_F(HealthCheckerTest, HttpCheckFailsAfterThresholdAndRecovers) {
  const net::Address address = server_->address();
  auto checker = Make(Config(HealthCheckConfig::Kind::kHttp, {address}));
  ASSERT_TRUE(WaitFor([&] { return requests_ >= 2; }));
  EXPECT_EQ(last_path_, "/healthz");
  EXPECT_EQ(last_host_, "backend.local");
  EXPECT_FALSE(results_.IsUnhealthy("backend", address));

  status_ = 503;
  ASSERT_TRUE(WaitFor([&] { return results_.IsUnhealthy("backend", address); }));
  EXPECT_FALSE(checker->hosts()[0].healthy);
  EXPECT_EQ(checker->hosts()[0].last_failure, "status 503");
  EXPECT_GE(checker->hosts()[0].consecutive_failures, 2u);
  ASSERT_TRUE(WaitFor([&] { return !notified_.empty(); }));
  EXPECT_EQ(notified_[0], "backend");

  // 204 is expected too; two successes in a row bring it back.
  status_ = 204;
  ASSERT_TRUE(WaitFor([&] { return !results_.IsUnhealthy("backend", address); }));
  EXPECT_TRUE(checker->hosts()[0].healthy);
}

TEST_F(HealthCheckerTest, OneFailureBelowTheThresholdChangesNothing) {
  const net::Address address = server_->address();
  ClusterConfig config = Config(HealthCheckConfig::Kind::kHttp, {address});
  config.health_check.Mutable().unhealthy_threshold = 1000;
  auto checker = Make(config);
  status_ = 500;
  ASSERT_TRUE(WaitFor([&] { return checker->hosts()[0].failures >= 3; }));
  EXPECT_TRUE(checker->hosts()[0].healthy);
  EXPECT_FALSE(results_.IsUnhealthy("backend", address));
}

TEST_F(HealthCheckerTest, TcpCheckOnClosedPortIsUnhealthy) {
  const net::Address closed = ClosedPort(loop_);
  const net::Address open = server_->address();
  auto checker = Make(Config(HealthCheckConfig::Kind::kTcp, {closed, open}));
  ASSERT_TRUE(WaitFor([&] { return results_.IsUnhealthy("backend", closed); }));
  EXPECT_FALSE(results_.IsUnhealthy("backend", open));
  for (const HealthChecker::HostState& host : checker->hosts()) {
    EXPECT_EQ(host.healthy, host.address == open) << host.address.ToString();
    EXPECT_GT(host.checks, 0u);
  }
  // A TCP check sends no request.
  EXPECT_EQ(requests_, 0);
}

TEST_F(HealthCheckerTest, RemovedEndpointsAreForgotten) {
  const net::Address closed = ClosedPort(loop_);
  auto checker = Make(Config(HealthCheckConfig::Kind::kTcp, {closed}));
  ASSERT_TRUE(WaitFor([&] { return results_.IsUnhealthy("backend", closed); }));
  checker->UpdateEndpoints({});
  EXPECT_FALSE(results_.IsUnhealthy("backend", closed));
  EXPECT_TRUE(checker->hosts().empty());
}

TEST_F(HealthCheckerTest, EachEndpointIsCheckedOverItsOwnTransport) {
  auto second = http::HttpServer::Create(loop_, Loopback0(), {}, [](const http::ServerRequest&) {
    return http::ServerResponse::Text(200, "ok\n");
  });
  CHECK_OK(second);
  const net::Address plain = server_->address();
  const net::Address meshed = (*second)->address();
  ClusterConfig config = Config(HealthCheckConfig::Kind::kHttp, {plain, meshed});
  config.tls.enabled = true;
  config.endpoints[0].tls.plaintext = true;
  config.endpoints[1].tls.identity = "spiffe://td/ns/default/sa/backend";
  // TLS endpoints get a transport whose handshake fails, the plaintext one none.
  auto checker = std::make_unique<HealthChecker>(
      loop_, config, random_, RealClock::Get(), results_, HealthCheckStats{},
      [](const EndpointTlsConfig& endpoint) {
        return endpoint.plaintext ? nullptr : testing::RefusedTlsTransport::Factory();
      });
  ASSERT_TRUE(WaitFor([&] { return results_.IsUnhealthy("backend", meshed); }));
  EXPECT_FALSE(results_.IsUnhealthy("backend", plain));
  EXPECT_GE(requests_, 1);  // the plaintext endpoint's checks arrive as plain HTTP
  for (const HealthChecker::HostState& host : checker->hosts()) {
    if (host.address == meshed) {
      EXPECT_NE(host.last_failure.find("peer identity is not the endpoint's"), std::string::npos)
          << host.last_failure;
    }
  }

  // The endpoint turns plaintext: checked over plaintext from then on, it recovers.
  config.endpoints[1].tls = EndpointTlsConfig{.plaintext = true};
  checker->UpdateEndpoints(config.endpoints);
  ASSERT_TRUE(WaitFor([&] { return !results_.IsUnhealthy("backend", meshed); }));
}

TEST_F(HealthCheckerTest, ManagerFollowsTheClusterSet) {
  const net::Address closed = ClosedPort(loop_);
  StatsRegistry registry;
  HealthCheckManager manager(loop_, random_, RealClock::Get(), registry.shared_shard(), results_);
  ClusterSet clusters;
  clusters["backend"] =
      std::make_shared<ClusterConfig>(Config(HealthCheckConfig::Kind::kTcp, {closed}));
  manager.Update(clusters);
  ASSERT_NE(manager.Find("backend"), nullptr);
  ASSERT_TRUE(WaitFor([&] { return results_.IsUnhealthy("backend", closed); }));
  // Counted: checks, failures and the healthy-host gauge.
  const StatsSnapshot stats = registry.Snapshot();
  const SeriesSnapshot* failures =
      stats.Find("meshlet_upstream_health_check_failure_total", {{"cluster", "backend"}});
  ASSERT_NE(failures, nullptr);
  EXPECT_GE(failures->counter, 2u);
  const SeriesSnapshot* healthy =
      stats.Find("meshlet_upstream_health_check_hosts_healthy", {{"cluster", "backend"}});
  ASSERT_NE(healthy, nullptr);
  EXPECT_EQ(healthy->gauge, 0);

  // Checks turned off: results cleared, subscribers told.
  notified_.clear();
  ClusterSet without;
  without["backend"] =
      std::make_shared<ClusterConfig>(Config(HealthCheckConfig::Kind::kNone, {closed}));
  manager.Update(without);
  EXPECT_EQ(manager.Find("backend"), nullptr);
  EXPECT_FALSE(results_.IsUnhealthy("backend", closed));
  ASSERT_TRUE(WaitFor([&] { return !notified_.empty(); }));
}

// A set changed by a few names: only those are started, changed or stopped; the others stay.
TEST_F(HealthCheckerTest, ManagerFollowsTheChangedNames) {
  const net::Address closed = ClosedPort(loop_);
  StatsRegistry registry;
  HealthCheckManager manager(loop_, random_, RealClock::Get(), registry.shared_shard(), results_);
  ClusterSet clusters;
  clusters["backend"] =
      std::make_shared<ClusterConfig>(Config(HealthCheckConfig::Kind::kTcp, {closed}));
  manager.Update(clusters);
  const HealthChecker* backend = manager.Find("backend");
  ASSERT_NE(backend, nullptr);

  // "other" added with checks.
  clusters["other"] =
      std::make_shared<ClusterConfig>(Config(HealthCheckConfig::Kind::kTcp, {closed}));
  manager.Update(clusters, std::vector<std::string>{"other"});
  EXPECT_NE(manager.Find("other"), nullptr);
  EXPECT_EQ(manager.Find("backend"), backend);

  // "other" replaced by a config without checks: stopped, "backend" untouched.
  clusters["other"] =
      std::make_shared<ClusterConfig>(Config(HealthCheckConfig::Kind::kNone, {closed}));
  manager.Update(clusters, std::vector<std::string>{"other"});
  EXPECT_EQ(manager.Find("other"), nullptr);
  EXPECT_EQ(manager.Find("backend"), backend);
}

// Most clusters have no health check: theirs is the shared default (no allocation) until written,
// copies of a config share it, and writing through one copy leaves the others as they were.
TEST(ClusterConfigHealthCheckTest, DefaultsAreSharedAndWritesCopy) {
  ClusterConfig plain;
  EXPECT_FALSE(plain.health_check.written());
  EXPECT_EQ(plain.health_check->kind, HealthCheckConfig::Kind::kNone);
  EXPECT_EQ(plain.health_check->http_path, "/");
  EXPECT_EQ(plain.health_check->expected_statuses, std::vector<uint32_t>{200});
  EXPECT_EQ(&*plain.health_check, &*ClusterConfig().health_check);

  ClusterConfig checked = plain;
  checked.health_check.Mutable().kind = HealthCheckConfig::Kind::kTcp;
  EXPECT_TRUE(checked.health_check.written());
  EXPECT_FALSE(plain.health_check.written());
  EXPECT_EQ(plain.health_check->kind, HealthCheckConfig::Kind::kNone);

  ClusterConfig copy = checked;
  EXPECT_EQ(&*copy.health_check, &*checked.health_check);
  copy.health_check.Mutable().interval = seconds(3);
  EXPECT_NE(&*copy.health_check, &*checked.health_check);
  EXPECT_EQ(checked.health_check->interval, seconds(10));
  EXPECT_EQ(copy.health_check->interval, seconds(3));
  EXPECT_EQ(copy.health_check->kind, HealthCheckConfig::Kind::kTcp);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
