#include "sidecar/cluster/cluster.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/base/allocation_counter.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/net/buffer.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/fake_codec.h"

namespace meshlet::sidecar::cluster {
namespace {

using resilience::HostResult;
using std::chrono::seconds;
using testing::FakeClientConnection;
using testing::FakeUpstream;
using testing::RefusedTlsTransport;

EndpointConfig Endpoint(const net::Address& address) {
  EndpointConfig e;
  e.address = address;
  return e;
}

// The snapshot holds one EndpointConfig per endpoint of every cluster it holds (15 000 for a
// sidecar that called 1 000 of 5 000 services): the address inline (48 bytes), the SPIFFE id a
// pointer shared by the endpoints naming it, the ALPN override a flag. 120 bytes when the id was a
// string of its own and the ALPN override a vector.
static_assert(sizeof(EndpointTlsConfig) <= 24, "EndpointTlsConfig grew: every endpoint has one");
static_assert(sizeof(EndpointConfig) <= 80,
              "EndpointConfig grew: the snapshot has one per endpoint");

EndpointConfig Endpoint(absl::string_view text) {
  auto address = net::Address::Parse(text);
  CHECK_OK(address);
  return Endpoint(*address);
}

struct Request : public ConnPoolCallbacks, public http::StreamDecoder {
  void OnPoolReady(http::StreamEncoder& encoder, Host&) override {
    http::HeaderMap headers{{":method", "GET"}, {":path", "/"}};
    encoder.EncodeHeaders(headers, true);
  }
  void OnPoolFailure(PoolFailureReason reason, absl::string_view, Host&) override {
    failure = reason;
  }
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    (void)absl::SimpleAtoi(headers->Get(":status").value_or("0"), &status);
    complete = end_stream;
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    data.Drain(data.length());
    complete = end_stream;
  }
  void DecodeTrailers(http::HeaderMapPtr) override { complete = true; }
  bool done() const { return complete || failure.has_value(); }

  std::optional<PoolFailureReason> failure;
  int status = 0;
  bool complete = false;
};

class ClusterTest : public ::testing::Test {
 protected:
  ClusterConfig Config(std::vector<EndpointConfig> endpoints) {
    ClusterConfig config;
    config.name = "backend";
    config.lb_policy = LbPolicy::kRoundRobin;
    config.endpoints = std::move(endpoints);
    config.outlier_detection = resilience::OutlierDetectionConfig{};
    config.outlier_detection->max_ejection_percent = 50;
    return config;
  }

  std::unique_ptr<Cluster> Make(const ClusterConfig& config) {
    FakeCodecOptions http2;
    http2.protocol = http::Protocol::kHttp2;
    return std::make_unique<Cluster>(
        loop_, config, thresholds_, random_, clock_,
        CodecFactories{FakeClientConnection::Factory({}), FakeClientConnection::Factory(http2)});
  }

  using FakeCodecOptions = testing::FakeCodecOptions;

  FakeClock clock_;
  event::Loop loop_;
  FakeRandom random_;
  std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds_ =
      std::make_shared<resilience::CircuitBreakerThresholds>();
};

int LibuvHandles(event::Loop& loop) {
  int n = 0;
  uv_walk(
      loop.uv_loop(), [](uv_handle_t*, void* count) { ++*static_cast<int*>(count); }, &n);
  return n;
}

// A worker builds a Cluster for every cluster its pod calls (ADR 0091): what it holds before the
// first failure is what every one of them costs. Consecutive-failure outlier detection has nothing
// to track until a host fails, and the outlier, overload and breaker timers (a libuv handle each)
// are made when first armed.
TEST_F(ClusterTest, BuiltClusterHoldsNoOutlierStateOrTimerUntilUsed) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{};
  config.consecutive_failure_breaker->failure_threshold = 5;
  config.overload.enabled = true;
  const int handles_before = LibuvHandles(loop_);
  ClusterConfig plain = config;
  plain.outlier_detection.reset();
  (void)plain.lb->panic_threshold_percent;  // the shared default, made once per process
  uint64_t plain_allocations = 0;
  {
    AllocationScope scope;
    auto without = Make(plain);
    plain_allocations = scope.count();
  }
  AllocationScope scope;
  auto cluster = Make(config);
  EXPECT_EQ(scope.count(), plain_allocations);
  EXPECT_EQ(LibuvHandles(loop_), handles_before);
  EXPECT_EQ(cluster->outlier_detector(), nullptr);

  Host& host = *cluster->host_set().hosts()[0];
  for (int i = 0; i < 3; ++i) {
    Cluster::HostSelection selection = cluster->ChooseHost();
    ASSERT_NE(selection.host, nullptr);
    cluster->RecordResult(*selection.host, HostResult::kSuccess, selection.probe);
  }
  EXPECT_EQ(cluster->outlier_detector(), nullptr);
  EXPECT_EQ(LibuvHandles(loop_), handles_before);

  // The first failure makes the detector, which counts from there as one made at the start would.
  cluster->RecordResult(host, HostResult::kGatewayError, false);
  ASSERT_NE(cluster->outlier_detector(), nullptr);
  EXPECT_EQ(cluster->outlier_detector()->host_count(), 2u);
  // A streak below the threshold has nothing to expire or decay: no interval timer yet.
  EXPECT_EQ(LibuvHandles(loop_), handles_before);
  EXPECT_EQ(cluster->timers_held(), 0u);
  for (int i = 0; i < 4; ++i) cluster->RecordResult(host, HostResult::kGatewayError, false);
  EXPECT_TRUE(host.has_health_flag(Host::kOutlierEjected));
  // The ejection's end, and the open breaker's turn to half-open.
  EXPECT_EQ(cluster->timers_held(), 2u);
}

// The detector reads the cluster's outlier settings in place (no copy per detector): an update to
// an equal config object hands it the new one, and the old one may go (ASan sees a stale read).
TEST_F(ClusterTest, OutlierDetectorFollowsTheConfigObject) {
  ClusterConfig settings = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  settings.outlier_detection->consecutive_gateway_failure = 3;
  auto first = std::make_shared<ClusterConfig>(settings);
  std::weak_ptr<const ClusterConfig> weak = first;
  auto cluster = std::make_unique<Cluster>(
      loop_, std::shared_ptr<const ClusterConfig>(first), thresholds_, random_, clock_,
      CodecFactories{FakeClientConnection::Factory({}), FakeClientConnection::Factory({})});
  first.reset();
  Host& host = *cluster->host_set().hosts()[0];
  cluster->RecordResult(host, HostResult::kGatewayError, false);
  resilience::OutlierDetector* detector = cluster->outlier_detector();
  ASSERT_NE(detector, nullptr);
  cluster->Update(std::make_shared<const ClusterConfig>(settings));
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(cluster->outlier_detector(), detector);  // equal settings: the same detector
  cluster->RecordResult(host, HostResult::kGatewayError, false);
  EXPECT_FALSE(host.has_health_flag(Host::kOutlierEjected));
  cluster->RecordResult(host, HostResult::kGatewayError, false);
  EXPECT_TRUE(host.has_health_flag(Host::kOutlierEjected));
}

// Clusters whose endpoints refuse keep their hosts in a failure streak below the threshold, which
// only a result ends: such a cluster holds no outlier timer. One with an ejection holds it until
// the host is healthy again and its ejection count decayed (nothing left to tick), then lets it go.
TEST_F(ClusterTest, OutlierTimerIsHeldOnlyWhileATickCanChangeSomething) {
  auto cluster = Make(Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")}));
  Host& other = *cluster->host_set().hosts()[1];
  for (int i = 0; i < 2; ++i) cluster->RecordResult(other, HostResult::kGatewayError, false);
  EXPECT_EQ(cluster->timers_held(), 0u);
  // Its streak ends: the next tick lets the host go, so the timer runs until then.
  cluster->RecordResult(other, HostResult::kSuccess, false);
  EXPECT_EQ(cluster->timers_held(), 1u);
  clock_.Advance(seconds(10));
  cluster->TickOutlierDetection();
  EXPECT_EQ(cluster->outlier_detector()->tracked_count(), 0u);
  EXPECT_EQ(cluster->timers_held(), 0u);

  Host& bad = *cluster->host_set().hosts()[0];
  for (int i = 0; i < 5; ++i) cluster->RecordResult(bad, HostResult::kGatewayError, false);
  ASSERT_TRUE(bad.has_health_flag(Host::kOutlierEjected));
  EXPECT_EQ(cluster->timers_held(), 1u);
  clock_.Advance(seconds(31));
  cluster->TickOutlierDetection();  // half-open
  EXPECT_EQ(cluster->timers_held(), 1u);
  Cluster::HostSelection probe;
  for (int i = 0; i < 4 && probe.host != &bad; ++i) probe = cluster->ChooseHost();
  ASSERT_EQ(probe.host, &bad);
  cluster->RecordResult(bad, HostResult::kSuccess, probe.probe);
  ASSERT_TRUE(bad.healthy());
  EXPECT_EQ(cluster->timers_held(), 1u);  // its ejection count still decays
  for (int i = 0; i < 6 && cluster->timers_held() > 0; ++i) {
    clock_.Advance(seconds(10));
    cluster->TickOutlierDetection();
  }
  EXPECT_EQ(cluster->outlier_detector()->tracked_count(), 0u);
  EXPECT_EQ(cluster->timers_held(), 0u);
}

// The consecutive-failure breaker, overload ejections and draining pools live in one block made
// on first use: a cluster configured without a breaker allocates one block less than one with it,
// and the Cluster itself stays small (every worker builds one per cluster its pod calls).
TEST_F(ClusterTest, RareStateIsAllocatedOnlyWhenUsed) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80")});
  uint64_t without_breaker = 0;
  {
    AllocationScope scope;
    auto cluster = Make(config);
    without_breaker = scope.count();
    EXPECT_FALSE(cluster->has_breaker());
  }
  config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{};
  config.consecutive_failure_breaker->failure_threshold = 5;
  AllocationScope scope;
  auto cluster = Make(config);
  EXPECT_EQ(scope.count(), without_breaker + 1);
  EXPECT_TRUE(cluster->has_breaker());
  // 864 bytes with the breaker, overload and draining state inline (and the retry budget's
  // buckets in an allocation of 160 bytes; now inside, which costs 64 bytes here); 640 with the
  // plain counters inline (made with the first count now) and the transport factory as a
  // function (a pointer now, null without TLS).
  EXPECT_LE(sizeof(Cluster), 568u);
}

TEST_F(ClusterTest, SuccessRateDetectionCountsFromTheStart) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.outlier_detection->success_rate_minimum_hosts = 2;
  auto cluster = Make(config);
  ASSERT_NE(cluster->outlier_detector(), nullptr);
  EXPECT_EQ(cluster->outlier_detector()->host_count(), 2u);
}

TEST_F(ClusterTest, EjectedHostIsSkippedThenProbed) {
  auto cluster =
      Make(Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80"), Endpoint("10.0.0.3:80")}));
  Host& bad = *cluster->host_set().hosts()[0];
  for (int i = 0; i < 5; ++i) cluster->RecordResult(bad, HostResult::kGatewayError, false);
  EXPECT_TRUE(bad.has_health_flag(Host::kOutlierEjected));
  EXPECT_EQ(cluster->stats().outlier_ejections, 1u);
  EXPECT_EQ(bad.stats().rq_error, 5u);
  for (int i = 0; i < 6; ++i) {
    Cluster::HostSelection selection = cluster->ChooseHost();
    ASSERT_NE(selection.host, nullptr);
    EXPECT_NE(selection.host, &bad);
    EXPECT_FALSE(selection.probe);
  }

  // After the ejection time the host is half-open: exactly one probe.
  clock_.Advance(seconds(31));
  cluster->TickOutlierDetection();
  EXPECT_FALSE(bad.has_health_flag(Host::kOutlierEjected));
  int probes = 0;
  for (int i = 0; i < 6; ++i) {
    Cluster::HostSelection selection = cluster->ChooseHost();
    ASSERT_NE(selection.host, nullptr);
    if (selection.host == &bad) {
      EXPECT_TRUE(selection.probe);
      ++probes;
    }
  }
  EXPECT_EQ(probes, 1);
  EXPECT_GT(cluster->stats().outlier_probe_rejected, 0u);
  cluster->RecordResult(bad, HostResult::kSuccess, /*probe=*/true);
  EXPECT_TRUE(bad.healthy());
  EXPECT_EQ(cluster->outlier_detector()->state(bad.id()),
            resilience::OutlierDetector::HostState::kHealthy);
}

TEST_F(ClusterTest, AvoidListSteersRetries) {
  auto cluster = Make(Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")}));
  Cluster::HostSelection first = cluster->ChooseHost();
  ASSERT_NE(first.host, nullptr);
  const Host* tried[] = {first.host};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NE(cluster->ChooseHost({.hosts_to_avoid = tried}).host, first.host);
  }
}

TEST_F(ClusterTest, NoHostsMeansNoSelection) {
  auto cluster = Make(Config({}));
  EXPECT_EQ(cluster->ChooseHost().host, nullptr);
  EXPECT_EQ(cluster->stats().no_healthy_host, 1u);
}

TEST_F(ClusterTest, ActiveHealthFlagCombines) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.lb.Mutable().panic_threshold_percent = 0;
  auto cluster = Make(config);
  Host& a = *cluster->host_set().hosts()[0];
  cluster->SetActiveHealth(a, false);
  for (int i = 0; i < 4; ++i) EXPECT_NE(cluster->ChooseHost().host, &a);
  cluster->SetActiveHealth(a, true);
  bool saw_a = false;
  for (int i = 0; i < 4; ++i) saw_a |= cluster->ChooseHost().host == &a;
  EXPECT_TRUE(saw_a);
}

TEST_F(ClusterTest, RequestThroughTheClusterAndPoolsSurviveUpdates) {
  FakeUpstream upstream(loop_);
  FakeUpstream other(loop_);
  auto cluster = Make(Config({Endpoint(upstream.address())}));
  Cluster::HostSelection selection = cluster->ChooseHost();
  ASSERT_NE(selection.host, nullptr);
  ConnPool& pool = cluster->PoolFor(*selection.host, http::Protocol::kHttp11);
  EXPECT_EQ(&pool, &cluster->PoolFor(*selection.host, http::Protocol::kHttp11));
  EXPECT_EQ(pool.protocol(), http::Protocol::kHttp11);
  Request request;
  pool.NewStream(request, request);
  ASSERT_TRUE(loop_.RunUntil([&] { return request.done(); }, seconds(10)));
  EXPECT_EQ(request.status, 200);

  // The same endpoint plus another: the host and its pool (with its connection) stay.
  Host* host = selection.host;
  cluster->Update(Config({Endpoint(upstream.address()), Endpoint(other.address())}));
  EXPECT_EQ(cluster->host_set().Find(upstream.address()), host);
  EXPECT_EQ(&cluster->PoolFor(*host, http::Protocol::kHttp11), &pool);
  EXPECT_EQ(pool.connections(), 1u);

  // The endpoint leaves: its pool drains and goes away.
  cluster->Update(Config({Endpoint(other.address())}));
  EXPECT_EQ(cluster->host_set().size(), 1u);
  ASSERT_TRUE(loop_.RunUntil([&] { return cluster->pool_count() == 0; }, seconds(10)));
  loop_.RunUntilIdle();
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 0u);
}

TEST_F(ClusterTest, EachEndpointGetsTheTransportItsTlsSettingsAskFor) {
  FakeUpstream meshed(loop_);
  FakeUpstream plain(loop_);
  ClusterConfig config = Config({Endpoint(meshed.address()), Endpoint(plain.address())});
  config.tls.enabled = true;
  config.endpoints[0].tls.identity = "spiffe://td/ns/default/sa/backend";
  config.endpoints[1].tls.plaintext = true;
  std::vector<EndpointTlsConfig> made;  // what the factory was asked for, in order
  EndpointTransportFactory transports = [&made](const EndpointTlsConfig& endpoint) {
    made.push_back(endpoint);
    return endpoint.plaintext ? nullptr : RefusedTlsTransport::Factory();
  };
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<Counter> tls_failures =
      shard->RegisterCounter("meshlet_test_tls_failures_total", "TLS handshakes that failed.", {});
  ASSERT_TRUE(tls_failures.ok()) << tls_failures.status();
  auto cluster = std::make_unique<Cluster>(
      loop_, config, thresholds_, random_, clock_,
      CodecFactories{FakeClientConnection::Factory({}), FakeClientConnection::Factory({})},
      transports);
  cluster->SetStatHandles({.tls_handshake_failures = *tls_failures});
  Host& meshed_host = *cluster->host_set().Find(meshed.address());
  Host& plain_host = *cluster->host_set().Find(plain.address());
  auto request_to = [&](Host& host) {
    Request request;
    cluster->PoolFor(host, http::Protocol::kHttp11).NewStream(request, request);
    EXPECT_TRUE(loop_.RunUntil([&] { return request.done(); }, seconds(10)));
    return request;
  };

  // The plaintext endpoint is reached without TLS.
  EXPECT_EQ(cluster->TransportFor(plain_host), nullptr);
  EXPECT_EQ(request_to(plain_host).status, 200);
  ASSERT_EQ(plain.requests().size(), 1u);
  // The other keeps the cluster's TLS: its failed handshake is a connect failure, counted, and
  // nothing reaches the endpoint in plaintext.
  EXPECT_NE(cluster->TransportFor(meshed_host), nullptr);
  Request refused = request_to(meshed_host);
  ASSERT_TRUE(refused.failure.has_value());
  EXPECT_EQ(*refused.failure, PoolFailureReason::kConnectFailure);
  EXPECT_TRUE(meshed.requests().empty());
  EXPECT_EQ(meshed_host.stats().cx_connect_fail, 1u);
  // The pool left without a connection is released; the plaintext endpoint's keeps its own.
  loop_.RunUntilIdle();
  EXPECT_EQ(cluster->pool_count(), 1u);
  const StatsSnapshot stats = registry.Snapshot();
  ASSERT_NE(stats.Find("meshlet_test_tls_failures_total", {}), nullptr);
  EXPECT_EQ(stats.Find("meshlet_test_tls_failures_total", {})->counter, 1u);
  // One transport per endpoint, made for its own settings.
  ASSERT_EQ(made.size(), 2u);
  EXPECT_TRUE(made[0].plaintext);
  EXPECT_EQ(made[1].identity, "spiffe://td/ns/default/sa/backend");

  // The meshed endpoint loses its sidecar: its pools are renewed with a plaintext transport; the
  // other endpoint keeps its pool.
  ConnPool* plain_pool = &cluster->PoolFor(plain_host, http::Protocol::kHttp11);
  config.endpoints[0].tls = EndpointTlsConfig{.plaintext = true};
  cluster->Update(config);
  EXPECT_EQ(&cluster->PoolFor(plain_host, http::Protocol::kHttp11), plain_pool);
  EXPECT_EQ(cluster->TransportFor(meshed_host), nullptr);
  EXPECT_EQ(request_to(meshed_host).status, 200);
  EXPECT_EQ(meshed.requests().size(), 1u);
  ASSERT_EQ(made.size(), 3u);
  EXPECT_TRUE(made[2].plaintext);
}

// Every host a worker sent a request to has a pool entry: its transport and pool pointers, and no
// endpoint of its own (the 72-byte entry kept one to compare TLS settings with; ADR 0091).
TEST_F(ClusterTest, PoolEntriesAreSmall) { EXPECT_LE(Cluster::kBytesPerPoolEntry, 56u); }

// Hosts and their pool entries refer to the shared configuration's endpoints instead of copying
// them: after an update nothing keeps the previous configuration alive (ADR 0091).
TEST_F(ClusterTest, UpdatesReleaseThePreviousConfiguration) {
  FakeUpstream upstream(loop_);
  auto first = std::make_shared<ClusterConfig>(Config({Endpoint(upstream.address())}));
  std::weak_ptr<const ClusterConfig> weak = first;
  auto cluster = std::make_unique<Cluster>(
      loop_, std::shared_ptr<const ClusterConfig>(first), thresholds_, random_, clock_,
      CodecFactories{FakeClientConnection::Factory({}), FakeClientConnection::Factory({})});
  Host& host = *cluster->host_set().Find(upstream.address());
  EXPECT_EQ(&host.address(), &first->endpoints[0].address);
  Request request;
  cluster->PoolFor(host, http::Protocol::kHttp11).NewStream(request, request);
  EXPECT_TRUE(loop_.RunUntil([&] { return request.done(); }, seconds(10)));
  EXPECT_EQ(request.status, 200);

  auto second = std::make_shared<const ClusterConfig>(*first);
  first.reset();
  EXPECT_FALSE(weak.expired());
  cluster->Update(second);
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(&host.address(), &second->endpoints[0].address);
  EXPECT_EQ(cluster->pool_count(), 1u);  // the same settings: the pool stays
}

// A pool with no connection left is released (about 0.5 KB each): a host that refused, or one
// idle for idle_timeout, keeps none, and the next request gets a new pool (ADR 0091).
TEST_F(ClusterTest, PoolsWithoutConnectionsAreReleased) {
  FakeUpstream upstream(loop_);
  const net::Address closed = [&] {
    FakeUpstream gone(loop_);
    return gone.address();
  }();
  ClusterConfig config = Config({Endpoint(upstream.address()), Endpoint(closed)});
  config.pool.idle_timeout = std::chrono::milliseconds(50);
  auto cluster = Make(config);
  auto request_to = [&](const net::Address& address) {
    Request request;
    cluster->PoolFor(*cluster->host_set().Find(address), http::Protocol::kHttp11)
        .NewStream(request, request);
    EXPECT_TRUE(loop_.RunUntil([&] { return request.done(); }, seconds(10)));
    return request;
  };

  Request refused = request_to(closed);
  ASSERT_TRUE(refused.failure.has_value());
  EXPECT_EQ(*refused.failure, PoolFailureReason::kConnectRefused);
  loop_.RunUntilIdle();
  EXPECT_EQ(cluster->pool_count(), 0u);
  // Plaintext: nothing is left for the host, not even the table (about 100 bytes a cluster).
  EXPECT_EQ(cluster->pool_entries(), 0u);
  EXPECT_EQ(cluster->pool_entries_capacity(), 0u);

  EXPECT_EQ(request_to(upstream.address()).status, 200);
  EXPECT_EQ(cluster->pool_count(), 1u);  // its connection is idle, not closed yet
  EXPECT_EQ(cluster->pool_entries(), 1u);
  ASSERT_TRUE(loop_.RunUntil([&] { return cluster->pool_count() == 0; }, seconds(10)));
  loop_.RunUntilIdle();
  EXPECT_EQ(cluster->pool_entries_capacity(), 0u);
  EXPECT_EQ(thresholds_->Active(resilience::ResourceKind::kConnection), 0u);
  // The next request makes the pool again.
  EXPECT_EQ(request_to(upstream.address()).status, 200);
  EXPECT_EQ(upstream.requests().size(), 2u);
}

TEST_F(ClusterTest, UpstreamProtocolFollowsConfig) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80")});
  config.protocol = UpstreamProtocol::kSameAsDownstream;
  auto cluster = Make(config);
  Host& host = *cluster->host_set().hosts()[0];
  EXPECT_EQ(cluster->PoolFor(host, http::Protocol::kHttp2).protocol(), http::Protocol::kHttp2);
  EXPECT_EQ(cluster->PoolFor(host, http::Protocol::kHttp11).protocol(), http::Protocol::kHttp11);
  EXPECT_EQ(cluster->pool_count(), 2u);

  // New pool settings: the old pools drain (they are idle, so they go at once).
  config.pool.max_requests_per_connection = 10;
  cluster->Update(config);
  loop_.RunUntilIdle();
  EXPECT_EQ(cluster->pool_count(), 0u);
}

TEST_F(ClusterTest, MeshHttp2SpeaksH2ToPeerSidecarsAndHttp11ForUpgradesAndPlaintext) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.protocol = UpstreamProtocol::kMeshHttp2;
  config.tls.enabled = true;
  config.endpoints[1].tls.plaintext = true;
  std::vector<EndpointTlsConfig> made;
  EndpointTransportFactory transports = [&made](const EndpointTlsConfig& endpoint) {
    made.push_back(endpoint);
    return endpoint.plaintext ? nullptr : RefusedTlsTransport::Factory();
  };
  auto cluster = std::make_unique<Cluster>(
      loop_, config, thresholds_, random_, clock_,
      CodecFactories{FakeClientConnection::Factory({}), FakeClientConnection::Factory({})},
      transports);
  Host& sidecar = *cluster->host_set().hosts()[0];
  Host& plain = *cluster->host_set().hosts()[1];
  EXPECT_EQ(cluster->UpstreamProtocol(http::Protocol::kHttp11), http::Protocol::kHttp2);
  // A peer sidecar (reached over TLS): h2 whatever the caller spoke, with the cluster's ALPN.
  EXPECT_EQ(cluster->PoolFor(sidecar, http::Protocol::kHttp11).protocol(), http::Protocol::kHttp2);
  EXPECT_EQ(cluster->PoolFor(sidecar, http::Protocol::kHttp2).protocol(), http::Protocol::kHttp2);
  ASSERT_EQ(made.size(), 1u);
  EXPECT_FALSE(made[0].http1_only);
  // An Upgrade to it: HTTP/1.1, over a transport that offers ALPN "http/1.1" only.
  EXPECT_EQ(cluster->PoolFor(sidecar, http::Protocol::kHttp11, /*upgrade=*/true).protocol(),
            http::Protocol::kHttp11);
  ASSERT_EQ(made.size(), 2u);
  EXPECT_TRUE(made[1].http1_only);
  // A plaintext member may be a plain HTTP/1.1 server.
  EXPECT_EQ(cluster->PoolFor(plain, http::Protocol::kHttp2).protocol(), http::Protocol::kHttp11);

  // Without TLS at all there is no peer sidecar to agree on h2 with.
  config.tls.enabled = false;
  config.endpoints[1].tls.plaintext = false;
  auto plaintext_cluster = Make(config);
  EXPECT_EQ(
      plaintext_cluster->PoolFor(*plaintext_cluster->host_set().hosts()[0], http::Protocol::kHttp2)
          .protocol(),
      http::Protocol::kHttp11);
}

TEST_F(ClusterTest, LatencyFeedsPeakEwma) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80")});
  config.lb_policy = LbPolicy::kPeakEwma;
  auto cluster = Make(config);
  Host& host = *cluster->host_set().hosts()[0];
  cluster->RecordResult(host, HostResult::kSuccess, false, std::chrono::milliseconds(20));
  EXPECT_DOUBLE_EQ(host.ewma_latency_ns(), 20e6);
  EXPECT_EQ(host.stats().rq_success, 1u);
}

TEST_F(ClusterTest, ConsecutiveFailureBreakerOpensProbesAndCloses) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.outlier_detection.reset();
  config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{
      .failure_threshold = 3, .open_duration = seconds(60)};
  auto cluster = Make(config);
  for (int i = 0; i < 3; ++i) {
    Cluster::HostSelection selection = cluster->ChooseHost();
    ASSERT_NE(selection.host, nullptr);
    EXPECT_FALSE(selection.probe);
    cluster->RecordResult(*selection.host, HostResult::kServerError, selection.probe);
  }
  EXPECT_EQ(cluster->BreakerState(), 1);
  EXPECT_EQ(cluster->stats().breaker_opened, 1u);
  EXPECT_TRUE(cluster->BreakerRejects());
  Cluster::HostSelection refused = cluster->ChooseHost();
  EXPECT_EQ(refused.host, nullptr);
  EXPECT_TRUE(refused.breaker_open);

  // Half-open after open_duration: one probe, everyone else refused while it is out.
  clock_.Advance(seconds(60));
  EXPECT_FALSE(cluster->BreakerRejects());
  Cluster::HostSelection probe = cluster->ChooseHost();
  ASSERT_NE(probe.host, nullptr);
  EXPECT_TRUE(probe.probe);
  EXPECT_EQ(cluster->BreakerState(), 2);
  EXPECT_TRUE(cluster->ChooseHost().breaker_open);
  // The probe fails: open again.
  cluster->RecordResult(*probe.host, HostResult::kGatewayError, /*probe=*/true);
  EXPECT_EQ(cluster->BreakerState(), 1);
  EXPECT_EQ(cluster->stats().breaker_opened, 2u);

  // Next half-open: an abandoned probe frees the slot; a successful one closes the breaker.
  clock_.Advance(seconds(60));
  probe = cluster->ChooseHost();
  ASSERT_TRUE(probe.probe);
  cluster->CancelProbe(*probe.host);
  probe = cluster->ChooseHost();
  ASSERT_TRUE(probe.probe);
  cluster->RecordResult(*probe.host, HostResult::kSuccess, /*probe=*/true);
  EXPECT_EQ(cluster->BreakerState(), 0);
  EXPECT_FALSE(cluster->ChooseHost().probe);
}

TEST_F(ClusterTest, BreakerGaugeTurnsHalfOpenWithoutTraffic) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80")});
  config.outlier_detection.reset();
  config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{
      .failure_threshold = 1, .open_duration = std::chrono::milliseconds(20)};
  auto cluster = Make(config);
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<Gauge> state =
      shard->RegisterGauge("meshlet_test_breaker_state", "Breaker state.", {});
  ASSERT_TRUE(state.ok()) << state.status();
  cluster->SetStatHandles({.breaker_state = *state});
  auto gauge = [&]() -> int64_t {
    const StatsSnapshot snapshot = registry.Snapshot();
    const SeriesSnapshot* series = snapshot.Find("meshlet_test_breaker_state", {});
    return series == nullptr ? -1 : series->gauge;
  };
  Cluster::HostSelection selection = cluster->ChooseHost();
  ASSERT_NE(selection.host, nullptr);
  cluster->RecordResult(*selection.host, HostResult::kServerError, selection.probe);
  EXPECT_EQ(gauge(), 1);  // open
  // No request comes; once open_duration has passed the gauge says half-open all the same.
  clock_.Advance(std::chrono::milliseconds(20));
  EXPECT_TRUE(loop_.RunUntil([&] { return gauge() == 2; }, seconds(5)));
}

TEST_F(ClusterTest, BreakerProbeToAHealthyHostDoesNotSettleOutlierState) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.consecutive_failure_breaker = resilience::ConsecutiveFailureBreakerConfig{
      .failure_threshold = 1, .open_duration = seconds(5)};
  auto cluster = Make(config);
  Cluster::HostSelection first = cluster->ChooseHost();
  cluster->RecordResult(*first.host, HostResult::kServerError, false);
  clock_.Advance(seconds(5));
  Cluster::HostSelection probe = cluster->ChooseHost();
  ASSERT_TRUE(probe.probe);
  cluster->RecordResult(*probe.host, HostResult::kSuccess, /*probe=*/true);
  EXPECT_EQ(cluster->BreakerState(), 0);
  EXPECT_EQ(cluster->outlier_detector()->state(probe.host->id()),
            resilience::OutlierDetector::HostState::kHealthy);
  EXPECT_TRUE(probe.host->healthy());
}

TEST_F(ClusterTest, PanicRoutesToEjectedHostsWhenTooFewAreHealthy) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80"),
                                 Endpoint("10.0.0.3:80"), Endpoint("10.0.0.4:80")});
  config.outlier_detection->max_ejection_percent = 100;
  auto cluster = Make(config);
  // Two of four ejected: 50 % healthy is not below the 50 % threshold, so no panic.
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 5; ++i) {
      cluster->RecordResult(*cluster->host_set().hosts()[h], HostResult::kGatewayError, false);
    }
  }
  for (int i = 0; i < 20; ++i) {
    const Host* host = cluster->ChooseHost().host;
    ASSERT_NE(host, nullptr);
    EXPECT_TRUE(host->healthy());
  }
  // A third: 25 % healthy, panic: every host takes traffic again.
  for (int i = 0; i < 5; ++i) {
    cluster->RecordResult(*cluster->host_set().hosts()[2], HostResult::kGatewayError, false);
  }
  EXPECT_TRUE(cluster->outlier_detector()->IsPanic());
  int to_ejected = 0;
  for (int i = 0; i < 40; ++i) {
    const Host* host = cluster->ChooseHost().host;
    ASSERT_NE(host, nullptr);
    to_ejected += host->has_health_flag(Host::kOutlierEjected);
  }
  EXPECT_GT(to_ejected, 0);
}

TEST_F(ClusterTest, SuccessRateOutlierIsEjectedOnTheIntervalTick) {
  // Six hosts: with n hosts one outlier is at most sqrt(n - 1) deviations below the mean, so
  // the default factor 1.9 needs at least five.
  ClusterConfig config =
      Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80"), Endpoint("10.0.0.3:80"),
              Endpoint("10.0.0.4:80"), Endpoint("10.0.0.5:80"), Endpoint("10.0.0.6:80")});
  config.outlier_detection->consecutive_5xx = 0;
  config.outlier_detection->consecutive_gateway_failure = 0;
  config.outlier_detection->success_rate_minimum_hosts = 3;
  config.outlier_detection->success_rate_request_volume = 20;
  auto cluster = Make(config);
  for (int i = 0; i < 20; ++i) {
    for (int h = 0; h < 6; ++h) {
      // Host 0 fails every other request; the others never do.
      const bool fail = h == 0 && i % 2 == 0;
      cluster->RecordResult(*cluster->host_set().hosts()[h],
                            fail ? HostResult::kServerError : HostResult::kSuccess, false);
    }
  }
  EXPECT_TRUE(cluster->host_set().hosts()[0]->healthy());
  clock_.Advance(config.outlier_detection->interval);
  cluster->TickOutlierDetection();
  EXPECT_TRUE(cluster->host_set().hosts()[0]->has_health_flag(Host::kOutlierEjected));
  EXPECT_EQ(cluster->stats().outlier_ejections, 1u);
  for (int h = 1; h < 6; ++h) EXPECT_TRUE(cluster->host_set().hosts()[h]->healthy());
}

// Overload (cluster_config.h OverloadConfig): 429 / RESOURCE_EXHAUSTED as the router reports them.

TEST_F(ClusterTest, OverloadWithRetryAfterEjectsForItCappedThenRecovers) {
  auto cluster =
      Make(Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80"), Endpoint("10.0.0.3:80")}));
  Host& busy = *cluster->host_set().hosts()[0];
  cluster->RecordOverload(busy, seconds(3));
  EXPECT_TRUE(busy.has_health_flag(Host::kOverloadEjected));
  EXPECT_TRUE(busy.penalized());
  EXPECT_EQ(busy.overload_until(), clock_.Now() + seconds(3));
  EXPECT_EQ(cluster->overload_ejected(), 1u);
  EXPECT_EQ(cluster->stats().overload_responses, 1u);
  EXPECT_EQ(cluster->stats().overload_ejections, 1u);
  EXPECT_EQ(busy.stats().overload_ejections, 1u);
  for (int i = 0; i < 6; ++i) EXPECT_NE(cluster->ChooseHost().host, &busy);

  clock_.Advance(seconds(2));
  cluster->TickOverload();
  EXPECT_TRUE(busy.has_health_flag(Host::kOverloadEjected));
  clock_.Advance(seconds(1));
  cluster->TickOverload();
  EXPECT_TRUE(busy.healthy());
  EXPECT_EQ(cluster->overload_ejected(), 0u);
  int picked = 0;
  for (int i = 0; i < 6; ++i) picked += cluster->ChooseHost().host == &busy;
  EXPECT_EQ(picked, 2);  // round robin over all three again

  // A retry-after beyond max_ejection_time (10 s by default) is cut to it.
  Host& other = *cluster->host_set().hosts()[1];
  cluster->RecordOverload(other, seconds(3600));
  EXPECT_EQ(other.overload_until(), clock_.Now() + seconds(10));
}

TEST_F(ClusterTest, OverloadTimerEndsTheEjectionOnItsOwn) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  auto cluster = Make(config);
  RealClock real;
  // The timer runs on the loop; the fake clock says the ejection is over when it fires.
  Host& busy = *cluster->host_set().hosts()[0];
  cluster->RecordOverload(busy, std::chrono::milliseconds(50));
  ASSERT_TRUE(busy.has_health_flag(Host::kOverloadEjected));
  clock_.Advance(std::chrono::milliseconds(50));
  const MonotonicTime give_up = real.Now() + seconds(5);
  while (busy.has_health_flag(Host::kOverloadEjected) && real.Now() < give_up) {
    loop_.RunOnce();
  }
  EXPECT_TRUE(busy.healthy());
}

TEST_F(ClusterTest, OverloadWithoutRetryAfterUsesTheEjectionTimeOrOnlyPenalizes) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.overload.ejection_time = seconds(2);
  auto cluster = Make(config);
  Host& busy = *cluster->host_set().hosts()[0];
  cluster->RecordOverload(busy, std::nullopt);
  EXPECT_EQ(busy.overload_until(), clock_.Now() + seconds(2));

  config.overload.ejection_time = Duration::zero();
  cluster->Update(config);
  Host& other = *cluster->host_set().hosts()[1];
  cluster->RecordOverload(other, std::nullopt);
  EXPECT_FALSE(other.has_health_flag(Host::kOverloadEjected));
  EXPECT_TRUE(other.penalized());
}

TEST_F(ClusterTest, OverloadEjectsNoMoreThanMaxPercentAndNeverTheLastHealthyHost) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80"),
                                 Endpoint("10.0.0.3:80"), Endpoint("10.0.0.4:80")});
  auto cluster = Make(config);  // max_ejection_percent 50: two of four
  for (int h = 0; h < 4; ++h) cluster->RecordOverload(*cluster->host_set().hosts()[h], seconds(5));
  EXPECT_EQ(cluster->overload_ejected(), 2u);
  EXPECT_EQ(cluster->stats().overload_ejections, 2u);
  EXPECT_EQ(cluster->stats().overload_ejections_skipped, 2u);
  EXPECT_EQ(cluster->host_set().healthy_count(), 2u);
  // The skipped hosts are still penalized.
  EXPECT_TRUE(cluster->host_set().hosts()[3]->penalized());

  config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  config.overload.max_ejection_percent = 100;
  auto pair = Make(config);
  pair->RecordOverload(*pair->host_set().hosts()[0], seconds(5));
  pair->RecordOverload(*pair->host_set().hosts()[1], seconds(5));
  EXPECT_EQ(pair->overload_ejected(), 1u);
  EXPECT_TRUE(pair->host_set().hosts()[1]->healthy());
  EXPECT_NE(pair->ChooseHost().host, nullptr);

  // A single host is never ejected; 0 % never ejects.
  auto single = Make(Config({Endpoint("10.0.0.1:80")}));
  single->RecordOverload(*single->host_set().hosts()[0], seconds(5));
  EXPECT_EQ(single->overload_ejected(), 0u);
  config.overload.max_ejection_percent = 0;
  auto none = Make(config);
  none->RecordOverload(*none->host_set().hosts()[0], seconds(5));
  EXPECT_EQ(none->overload_ejected(), 0u);
}

TEST_F(ClusterTest, DisabledOverloadHandlingOnlyCounts) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  auto cluster = Make(config);
  Host& busy = *cluster->host_set().hosts()[0];
  cluster->RecordOverload(busy, seconds(5));
  ASSERT_TRUE(busy.has_health_flag(Host::kOverloadEjected));
  // Turning it off lifts ejections and penalties at once.
  config.overload.enabled = false;
  cluster->Update(config);
  EXPECT_TRUE(busy.healthy());
  EXPECT_FALSE(busy.penalized());
  EXPECT_EQ(cluster->overload_ejected(), 0u);
  cluster->RecordOverload(busy, seconds(5));
  EXPECT_TRUE(busy.healthy());
  EXPECT_FALSE(busy.penalized());
  EXPECT_EQ(cluster->stats().overload_responses, 2u);
  EXPECT_EQ(busy.stats().overload_responses, 2u);
}

TEST_F(ClusterTest, RemovingAnOverloadEjectedHostFreesItsSlot) {
  ClusterConfig config = Config({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80"),
                                 Endpoint("10.0.0.3:80"), Endpoint("10.0.0.4:80")});
  config.overload.max_ejection_percent = 25;
  auto cluster = Make(config);
  cluster->RecordOverload(*cluster->host_set().hosts()[0], seconds(5));
  EXPECT_EQ(cluster->overload_ejected(), 1u);
  config.endpoints.erase(config.endpoints.begin());
  config.endpoints.push_back(Endpoint("10.0.0.5:80"));
  cluster->Update(config);
  EXPECT_EQ(cluster->overload_ejected(), 0u);
  cluster->RecordOverload(*cluster->host_set().hosts()[0], seconds(5));
  EXPECT_EQ(cluster->overload_ejected(), 1u);
}

TEST(ParseRetryAfterTest, DeltaSecondsOnly) {
  EXPECT_EQ(ParseRetryAfter("7"), std::optional<Duration>(seconds(7)));
  EXPECT_EQ(ParseRetryAfter("0"), std::optional<Duration>(seconds(0)));
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-3"), std::nullopt);
  EXPECT_EQ(ParseRetryAfter(""), std::nullopt);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
