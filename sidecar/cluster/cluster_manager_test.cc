#include "sidecar/cluster/cluster_manager.h"

#include <malloc.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/event/loop.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "common/stats/exposition.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

std::shared_ptr<const ClusterConfig> Config(const std::string& name,
                                            std::vector<std::string> endpoints,
                                            uint32_t max_requests = 1024) {
  auto config = std::make_shared<ClusterConfig>();
  config->name = name;
  config->lb_policy = LbPolicy::kRoundRobin;
  config->circuit_breakers.max_requests = max_requests;
  for (const std::string& text : endpoints) {
    EndpointConfig endpoint;
    endpoint.address = *net::Address::Parse(text);
    config->endpoints.push_back(endpoint);
  }
  return config;
}

class ClusterManagerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    manager_.reset();
    loop_.RunUntilIdle();
  }

  FakeClock clock_;
  FakeRandom random_;
  event::Loop loop_;
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_ = registry_.CreateShard();
  SharedClusterLimits limits_;
  std::unique_ptr<WorkerClusterManager> manager_ =
      std::make_unique<WorkerClusterManager>(loop_, random_, clock_, *shard_, limits_);
};

TEST_F(ClusterManagerTest, BuildsClustersWithStats) {
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80", "10.0.0.2:80"});
  clusters["b"] = Config("b", {"10.0.0.3:80"});
  manager_->Update(clusters);
  EXPECT_EQ(manager_->size(), 2u);
  Cluster* a = manager_->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->host_set().size(), 2u);
  EXPECT_EQ(manager_->Find("missing"), nullptr);
  EXPECT_EQ(manager_->Get("missing").cluster, nullptr);

  ClusterRef ref = manager_->Get("b");
  ASSERT_NE(ref.cluster, nullptr);
  ASSERT_NE(ref.stats, nullptr);
  ref.stats->RecordStatus(503);
  ref.stats->rq_timeout.Inc();
  StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* series =
      stats.Find("meshlet_upstream_rq_total", {{"cluster", "b"}, {"code_class", "5xx"}});
  ASSERT_NE(series, nullptr);
  EXPECT_EQ(series->counter, 1u);
  series = stats.Find("meshlet_upstream_rq_timeout_total", {{"cluster", "b"}});
  ASSERT_NE(series, nullptr);
  EXPECT_EQ(series->counter, 1u);
}

// An HTTP/2 frame (RFC 9113 4.1) of up to 255 bytes of payload.
std::string Frame(uint8_t type, uint8_t flags, uint32_t stream_id, const std::string& payload) {
  std::string frame = {0,
                       0,
                       static_cast<char>(payload.size()),
                       static_cast<char>(type),
                       static_cast<char>(flags),
                       static_cast<char>(stream_id >> 24),
                       static_cast<char>(stream_id >> 16),
                       static_cast<char>(stream_id >> 8),
                       static_cast<char>(stream_id)};
  return frame + payload;
}

// A request that only waits for its pool's answer.
struct WaitingRequest : ConnPoolCallbacks, http::StreamDecoder {
  void OnPoolReady(http::StreamEncoder& encoder, Host&) override {
    http::HeaderMap headers{{":method", "GET"}, {":path", "/"}, {":authority", "x"}};
    encoder.EncodeHeaders(headers, true);
  }
  void OnPoolFailure(PoolFailureReason, absl::string_view, Host&) override {}
  void DecodeHeaders(http::HeaderMapPtr, bool) override {}
  void DecodeData(net::Buffer& data, bool) override { data.Drain(data.length()); }
  void DecodeTrailers(http::HeaderMapPtr) override {}
};

// The HTTP/2 codecs of the pools count their frames in the worker's meshlet_http2_upstream_*
// series, as the downstream codecs do in meshlet_http2_downstream_*: here a GOAWAY and a
// RST_STREAM from an upstream that refuses the request, by error code. The server's counters
// (client resets, refused streams) have no upstream series.
TEST_F(ClusterManagerTest, UpstreamHttp2FramesAreCounted) {
  std::vector<std::unique_ptr<net::Connection>> accepted;
  net::testing::RecordingCallbacks upstream;
  std::string received;
  bool answered = false;
  upstream.on_data = [&](net::Buffer& data, bool) {
    received += data.ToString();
    data.Drain(data.length());
    // Once the request's HEADERS (stream 1) arrived after the client preface: SETTINGS, the
    // stream refused (RST_STREAM REFUSED_STREAM), then GOAWAY(last stream 1, NO_ERROR).
    for (size_t at = 24; !answered && at + 9 <= received.size();) {
      const size_t length = (static_cast<uint8_t>(received[at]) << 16) |
                            (static_cast<uint8_t>(received[at + 1]) << 8) |
                            static_cast<uint8_t>(received[at + 2]);
      if (received[at + 3] == 1) {
        answered = true;
        accepted.back()->Write(Frame(4, 0, 0, "") + Frame(3, 0, 1, std::string("\0\0\0\x07", 4)) +
                               Frame(7, 0, 0, std::string("\0\0\0\x01\0\0\0\0", 8)));
      }
      at += 9 + length;
    }
  };
  auto listener = net::Listener::Create(loop_, *net::Address::Parse("127.0.0.1:0"), {},
                                        [&](std::unique_ptr<net::Connection> c) {
                                          c->SetCallbacks(&upstream);
                                          accepted.push_back(std::move(c));
                                        });
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto config = std::make_shared<ClusterConfig>(*Config("h2", {(*listener)->address().ToString()}));
  config->protocol = UpstreamProtocol::kHttp2;
  ClusterSet clusters;
  clusters["h2"] = config;
  manager_->Update(clusters);
  Cluster* cluster = manager_->Find("h2");
  ASSERT_NE(cluster, nullptr);
  WaitingRequest request;
  ConnPool& pool = cluster->PoolFor(*cluster->host_set().hosts()[0], http::Protocol::kHttp2);
  ASSERT_EQ(pool.protocol(), http::Protocol::kHttp2);
  pool.NewStream(request, request);
  const auto counter = [&](const std::string& name, const std::string& code) -> uint64_t {
    StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series = stats.Find(name, {{"code", code}});
    return series == nullptr ? 0 : series->counter;
  };
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return counter("meshlet_http2_upstream_goaway_received_total", "NO_ERROR") > 0; },
      std::chrono::seconds(5)));
  EXPECT_EQ(counter("meshlet_http2_upstream_goaway_received_total", "NO_ERROR"), 1u);
  EXPECT_EQ(counter("meshlet_http2_upstream_rst_stream_received_total", "REFUSED_STREAM"), 1u);
  StatsSnapshot stats = registry_.Snapshot();
  EXPECT_EQ(stats.Find("meshlet_http2_downstream_goaway_received_total", {{"code", "NO_ERROR"}}),
            nullptr);
  EXPECT_EQ(stats.Find("meshlet_http2_upstream_client_resets_total", {{"kind", "late"}}), nullptr);
  // The pool may be gone already (released once its connection closed): not touched again.
  for (auto& c : accepted) c->Close(net::CloseMode::kNoFlush);
  loop_.RunUntilIdle();
}

TEST_F(ClusterManagerTest, UpdateKeepsClustersAndTheirHosts) {
  ClusterSet first;
  first["a"] = Config("a", {"10.0.0.1:80"});
  manager_->Update(first);
  Cluster* a = manager_->Find("a");
  Host* host = a->host_set().hosts()[0].get();

  // Same config object: nothing to do. New object with another endpoint: same Cluster and Host.
  manager_->Update(first);
  EXPECT_EQ(manager_->Find("a"), a);
  ClusterSet second;
  second["a"] = Config("a", {"10.0.0.1:80", "10.0.0.9:80"});
  manager_->Update(second);
  EXPECT_EQ(manager_->Find("a"), a);
  EXPECT_EQ(a->host_set().size(), 2u);
  EXPECT_EQ(a->host_set().Find(*net::Address::Parse("10.0.0.1:80")), host);
}

// With the names a configuration changed, an update looks at the built clusters among them
// alone, however many this worker built.
TEST_F(ClusterManagerTest, UpdateWithTheChangedNamesCostsPerChangedName) {
  ClusterSet first;
  for (int i = 0; i < 200; ++i) {
    const std::string name = absl::StrCat("svc-", i);
    first[name] = Config(name, {absl::StrCat("10.0.", i / 100, ".", i % 100 + 1, ":80")});
  }
  manager_->Update(first);
  for (const auto& [name, config] : first) ASSERT_NE(manager_->Find(name), nullptr) << name;
  ASSERT_EQ(manager_->built_count(), 200u);
  Cluster* kept = manager_->Find("svc-3");

  // svc-7 gets a second endpoint and svc-new is added; the others are the same objects.
  ClusterSet second = first;
  second["svc-7"] = Config("svc-7", {"10.0.0.8:80", "10.9.0.1:80"});
  second["svc-new"] = Config("svc-new", {"10.9.0.2:80"});
  const std::vector<std::string> changed = {"svc-7", "svc-new"};
  manager_->Update(std::make_shared<const ClusterSet>(second), &changed);
  EXPECT_EQ(manager_->last_update_examined(), 1u);  // svc-7: svc-new is not built here
  EXPECT_EQ(manager_->Find("svc-7")->host_set().size(), 2u);
  EXPECT_EQ(manager_->Find("svc-3"), kept);
  EXPECT_EQ(manager_->size(), 201u);

  // Without them, every built cluster is compared.
  manager_->Update(second);
  EXPECT_EQ(manager_->last_update_examined(), 200u);
}

TEST_F(ClusterManagerTest, RemovedClusterLivesWhileARequestHoldsIt) {
  ClusterSet first;
  first["a"] = Config("a", {"10.0.0.1:80"});
  manager_->Update(first);
  ClusterRef held = manager_->Get("a");
  ASSERT_NE(held.cluster, nullptr);

  manager_->Update(ClusterSet());
  loop_.RunUntilIdle();
  EXPECT_EQ(manager_->Find("a"), nullptr);
  EXPECT_EQ(manager_->size(), 0u);
  // Still usable by the request that holds it; its hosts are gone (pools drain).
  EXPECT_EQ(held.cluster->name(), "a");
  EXPECT_EQ(held.cluster->host_set().size(), 0u);
  EXPECT_EQ(held.cluster->ChooseHost().host, nullptr);
  held.stats->rq_reset.Inc();
  held = {};
  loop_.RunUntilIdle();
}

TEST_F(ClusterManagerTest, LimitsAreSharedAcrossWorkers) {
  auto shard2 = registry_.CreateShard();
  WorkerClusterManager other(loop_, random_, clock_, *shard2, limits_);
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/2);
  manager_->Update(clusters);
  other.Update(clusters);
  resilience::CircuitBreakerThresholds& t1 = manager_->Find("a")->thresholds();
  resilience::CircuitBreakerThresholds& t2 = other.Find("a")->thresholds();
  EXPECT_EQ(&t1, &t2);
  EXPECT_EQ(t1.Limit(resilience::ResourceKind::kRequest), 2u);

  ClusterSet raised;
  raised["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/5);
  manager_->Update(raised);
  EXPECT_EQ(t2.Limit(resilience::ResourceKind::kRequest), 5u);
}

// A configured cluster that carries no traffic has no series, on no worker; its first request
// registers them, on that worker only, and its circuit-breaker series appear from then on.
TEST_F(ClusterManagerTest, IdleClustersHaveNoSeriesUntilTheirFirstRequest) {
  auto shard2 = registry_.CreateShard();
  WorkerClusterManager other(loop_, random_, clock_, *shard2, limits_);
  other.SetWorkerIndex(1);
  // Each manager's own series (meshlet_http2_upstream_*, and meshlet_worker_clusters_built from
  // the first Update), none of them a cluster's.
  manager_->Update(ClusterSet());
  other.Update(ClusterSet());
  const size_t managers_series = registry_.series_count();
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"});
  clusters["b"] = Config("b", {"10.0.0.2:80"});
  manager_->Update(clusters);
  other.Update(clusters);
  limits_.PublishStats(registry_.shared_shard());
  EXPECT_EQ(registry_.series_count(), managers_series);
  EXPECT_EQ(manager_->FindStats("a"), nullptr);

  ClusterRef ref = manager_->Get("a");
  ASSERT_NE(ref.stats, nullptr);
  EXPECT_EQ(manager_->FindStats("a"), ref.stats);
  EXPECT_EQ(manager_->Get("a").stats, ref.stats);  // registered once
  EXPECT_EQ(other.FindStats("a"), nullptr);
  ref.stats->rq_timeout.Inc();
  limits_.PublishStats(registry_.shared_shard());

  StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* timeouts =
      stats.Find("meshlet_upstream_rq_timeout_total", {{"cluster", "a"}});
  ASSERT_NE(timeouts, nullptr);
  EXPECT_EQ(timeouts->counter, 1u);
  EXPECT_NE(stats.Find("meshlet_upstream_cx_total", {{"cluster", "a"}}), nullptr);
  // A closed breaker's state is 0, what its absent series reads: it registers when it opens.
  EXPECT_EQ(stats.Find("meshlet_upstream_cf_breaker_state", {{"cluster", "a"}, {"worker", "0"}}),
            nullptr);
  EXPECT_EQ(stats.Find("meshlet_upstream_cf_breaker_state", {{"cluster", "a"}, {"worker", "1"}}),
            nullptr);
  EXPECT_NE(stats.Find("meshlet_upstream_cb_remaining",
                       {{"cluster", "a"}, {"threshold", "max_requests"}}),
            nullptr);
  // No overflow yet: no overflow series (it registers with the first).
  EXPECT_EQ(stats.Find("meshlet_upstream_cb_overflow_total",
                       {{"cluster", "a"}, {"threshold", "max_requests"}}),
            nullptr);
  {
    // Config() allows 1 024 requests: hold them all, and one more is refused.
    std::vector<resilience::ResourceGuard> held;
    for (int i = 0; i < 1024; ++i) {
      held.push_back(*ref.cluster->thresholds().TryAcquire(resilience::ResourceKind::kRequest));
    }
    EXPECT_FALSE(ref.cluster->thresholds().TryAcquire(resilience::ResourceKind::kRequest));
  }
  limits_.PublishStats(registry_.shared_shard());
  StatsSnapshot after = registry_.Snapshot();
  const SeriesSnapshot* overflow = after.Find("meshlet_upstream_cb_overflow_total",
                                              {{"cluster", "a"}, {"threshold", "max_requests"}});
  ASSERT_NE(overflow, nullptr);
  EXPECT_EQ(overflow->counter, 1u);
  EXPECT_EQ(after.Find("meshlet_upstream_cb_overflow_total",
                       {{"cluster", "a"}, {"threshold", "max_connections"}}),
            nullptr);
  for (const SeriesSnapshot& series : stats.series) {
    for (const auto& [label, value] : series.labels) {
      EXPECT_FALSE(label == "cluster" && value == "b") << series.name << " of the idle cluster";
    }
  }
}

// The capacity left per threshold is computed when stats are read: a used cluster's four
// meshlet_upstream_cb_remaining series take no registered series, and each read sees the
// thresholds as they are, without another PublishStats.
TEST_F(ClusterManagerTest, RemainingCapacityIsComputedWhenRead) {
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"});
  manager_->Update(clusters);
  ClusterRef ref = manager_->Get("a");
  ASSERT_NE(ref.cluster, nullptr);
  const size_t series = registry_.series_count();
  limits_.PublishStats(registry_.shared_shard());
  EXPECT_EQ(registry_.series_count(), series);
  auto remaining = [&](absl::string_view threshold) -> int64_t {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* found = stats.Find(
        "meshlet_upstream_cb_remaining", {{"cluster", "a"}, {"threshold", std::string(threshold)}});
    return found == nullptr ? -1 : found->gauge;
  };
  EXPECT_EQ(remaining("max_requests"), 1024);
  EXPECT_EQ(remaining("max_connections"), 1024);
  {
    std::optional<resilience::ResourceGuard> held =
        ref.cluster->thresholds().TryAcquire(resilience::ResourceKind::kRequest);
    ASSERT_TRUE(held.has_value());
    EXPECT_EQ(remaining("max_requests"), 1023);
  }
  EXPECT_EQ(remaining("max_requests"), 1024);
  // The exposition keeps the gauge's name, type and labels.
  const std::string text = FormatPrometheus(registry_.Snapshot());
  EXPECT_TRUE(absl::StrContains(text, "# TYPE meshlet_upstream_cb_remaining gauge\n")) << text;
  EXPECT_TRUE(absl::StrContains(
      text, "meshlet_upstream_cb_remaining{cluster=\"a\",threshold=\"max_retries\"} 3\n"))
      << text;
}

// A cluster's first request registers the series its pools and every request write (5); the
// others (responses by class, duration by outcome, failures, retries, mirroring, sticky sessions,
// malformed deadlines, breaker openings, outlier and overload ejections, and the breaker state and
// ejections active gauges while 0) register on their first count, so a cluster has only the series
// it used.
TEST_F(ClusterManagerTest, MostSeriesRegisterOnFirstCount) {
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"});
  manager_->Update(clusters);
  const size_t before = registry_.series_count();
  ClusterRef ref = manager_->Get("a");
  ASSERT_NE(ref.stats, nullptr);
  const size_t everyday = registry_.series_count() - before;
  EXPECT_EQ(everyday, 5u);  // of 52
  EXPECT_FALSE(ref.stats->cf_breaker_state.registered());
  EXPECT_FALSE(ref.stats->outlier_ejections_active.registered());
  EXPECT_FALSE(ref.stats->outlier_ejections.registered());
  EXPECT_FALSE(ref.stats->overload_responses.registered());
  EXPECT_FALSE(ref.stats->rq_retry[0].registered());
  EXPECT_FALSE(ref.stats->rq_session[3].registered());
  {
    StatsSnapshot stats = registry_.Snapshot();
    EXPECT_EQ(stats.Find("meshlet_upstream_rq_retry_total",
                         {{"cluster", "a"}, {"reason", "connect_failure"}}),
              nullptr);
  }
  ref.stats->rq_retry[0].Inc(2);
  ref.stats->rq_retry[0].Inc();
  ref.stats->rq_per_try_timeout.Inc();
  ref.stats->RecordStatus(200);
  ref.stats->RecordCompletion(200, false, false, 1500, 10, 20);
  EXPECT_TRUE(ref.stats->rq_retry[0].registered());
  EXPECT_TRUE(ref.stats->rq_duration[0].registered());
  EXPECT_FALSE(ref.stats->rq_duration[1].registered());  // no failure yet
  EXPECT_EQ(registry_.series_count() - before, everyday + 4);
  StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* retries = stats.Find("meshlet_upstream_rq_retry_total",
                                             {{"cluster", "a"}, {"reason", "connect_failure"}});
  ASSERT_NE(retries, nullptr);
  EXPECT_EQ(retries->counter, 3u);
  const SeriesSnapshot* timeouts =
      stats.Find("meshlet_upstream_rq_per_try_timeout_total", {{"cluster", "a"}});
  ASSERT_NE(timeouts, nullptr);
  EXPECT_EQ(timeouts->counter, 1u);
  const SeriesSnapshot* success = stats.Find("meshlet_upstream_rq_duration_seconds",
                                             {{"cluster", "a"}, {"outcome", "success"}});
  ASSERT_NE(success, nullptr);
  EXPECT_EQ(success->histogram.count(), 1u);
  EXPECT_EQ(success->histogram.sum(), 1500u);
  // A default-constructed one counts nothing and registers nothing.
  LazyCounter unwired;
  unwired.Inc();
  EXPECT_FALSE(unwired.registered());
  // What a used cluster's handles cost each worker that used it: 45 lazy counters and 3 lazy
  // gauges of 8 bytes (their source and series index, then the handle's cell, in one word), 2
  // lazy histograms of 32 and 6 plain handles; 1 232 bytes when a lazy counter was 24 (a union of
  // the counter and its series and source, and a state), 1 568 when it kept the handle beside
  // them.
  EXPECT_EQ(sizeof(LazyCounter), 8u);
  EXPECT_LE(sizeof(UpstreamStats), 544u);
}

// `count` clusters of 5 endpoints each, named as the control plane names outbound clusters.
std::shared_ptr<const ClusterSet> ManyClusters(int count) {
  auto clusters = std::make_shared<ClusterSet>();
  for (int i = 0; i < count; ++i) {
    const std::string name = absl::StrCat("outbound|8080||service-", i, ".default.svc");
    std::vector<std::string> endpoints;
    for (int e = 1; e <= 5; ++e)
      endpoints.push_back(absl::StrCat("10.", i / 250, ".", i % 250, ".", e, ":8080"));
    (*clusters)[name] = Config(name, endpoints);
  }
  return clusters;
}

size_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

int64_t GaugeValue(StatsRegistry& registry, const std::string& name, const LabelSet& labels) {
  StatsSnapshot stats = registry.Snapshot();
  const SeriesSnapshot* series = stats.Find(name, labels);
  return series == nullptr ? -1 : series->gauge;
}

// Update keeps the shared configuration only: no worker builds a Cluster (hosts, balancer, pools)
// until a request on that worker uses it, and then only that one.
TEST_F(ClusterManagerTest, ClustersAreBuiltOnFirstUse) {
  manager_->SetWorkerIndex(3);
  std::shared_ptr<const ClusterSet> clusters = ManyClusters(100);
  manager_->Update(clusters);
  EXPECT_EQ(manager_->size(), 100u);
  EXPECT_EQ(manager_->built_count(), 0u);
  EXPECT_EQ(GaugeValue(registry_, "meshlet_worker_clusters_built", {{"worker", "3"}}), 0);
  const std::string used = "outbound|8080||service-42.default.svc";
  EXPECT_EQ(manager_->FindBuilt(used), nullptr);

  ClusterRef ref = manager_->Get(used);
  ASSERT_NE(ref.cluster, nullptr);
  EXPECT_EQ(ref.cluster->host_set().size(), 5u);
  EXPECT_EQ(manager_->FindBuilt(used), ref.cluster.get());
  EXPECT_EQ(manager_->Get(used).cluster, ref.cluster);  // built once
  EXPECT_EQ(manager_->built_count(), 1u);
  EXPECT_EQ(GaugeValue(registry_, "meshlet_worker_clusters_built", {{"worker", "3"}}), 1);
  EXPECT_EQ(manager_->Get("outbound|8080||missing").cluster, nullptr);
  EXPECT_EQ(manager_->built_count(), 1u);

  // The same configuration applied again (a snapshot that changed something else) builds nothing.
  manager_->Update(clusters);
  EXPECT_EQ(manager_->built_count(), 1u);
  EXPECT_EQ(manager_->FindBuilt(used), ref.cluster.get());
}

// A cluster built after health checks reported and after its limits changed starts with both:
// the failed endpoint flagged, and the thresholds every worker shares, at the current limits.
TEST_F(ClusterManagerTest, LateBuiltClusterGetsCurrentHealthAndLimits) {
  auto shard2 = registry_.CreateShard();
  WorkerClusterManager other(loop_, random_, clock_, *shard2, limits_);
  ClusterSet first;
  first["a"] = Config("a", {"10.0.0.1:80", "10.0.0.2:80"}, /*max_requests=*/3);
  manager_->Update(first);
  other.Update(first);
  ASSERT_NE(other.Get("a").cluster, nullptr);  // only the other worker carried traffic

  ClusterSet raised;
  raised["a"] = Config("a", {"10.0.0.1:80", "10.0.0.2:80"}, /*max_requests=*/7);
  limits_.Update(raised);  // as the server does once per configuration
  manager_->Update(raised);
  other.Update(raised);
  limits_.host_health().Set("a", *net::Address::Parse("10.0.0.2:80"), /*healthy=*/false);
  loop_.RunUntilIdle();  // the notification reaches the subscribed managers
  EXPECT_EQ(manager_->built_count(), 0u);
  std::string json;
  limits_.AppendJson(json, "a");
  EXPECT_NE(json.find("\"max_requests\":{\"limit\":7,"), std::string::npos) << json;

  Cluster* late = manager_->Find("a");
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(&late->thresholds(), &other.Find("a")->thresholds());
  EXPECT_EQ(late->thresholds().Limit(resilience::ResourceKind::kRequest), 7u);
  const Host* failed = late->host_set().Find(*net::Address::Parse("10.0.0.2:80"));
  ASSERT_NE(failed, nullptr);
  EXPECT_TRUE(failed->has_health_flag(Host::kFailedActiveHealthCheck));
  EXPECT_TRUE(late->host_set().Find(*net::Address::Parse("10.0.0.1:80"))->healthy());
  EXPECT_EQ(late->ChooseHost().host->address(), *net::Address::Parse("10.0.0.1:80"));
}

// A configuration that differs by a few names applies those names' limits only: the thresholds
// of a built cluster not named are not even looked at.
TEST_F(ClusterManagerTest, LimitsFollowTheChangedNames) {
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/3);
  clusters["c"] = Config("c", {"10.0.0.3:80"}, /*max_requests=*/5);
  limits_.Update(clusters);
  manager_->Update(clusters);
  Cluster* a = manager_->Find("a");
  Cluster* c = manager_->Find("c");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(c, nullptr);
  clusters["b"] = Config("b", {"10.0.0.2:80"}, /*max_requests=*/4);
  clusters["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/9);  // not named: not applied
  clusters["c"] = Config("c", {"10.0.0.3:80"}, /*max_requests=*/6);
  limits_.Update(clusters, std::vector<std::string>{"b", "c"});
  std::string json;
  limits_.AppendJson(json, "b");
  EXPECT_NE(json.find("\"max_requests\":{\"limit\":4,"), std::string::npos) << json;
  json.clear();
  limits_.AppendJson(json, "a");
  EXPECT_NE(json.find("\"max_requests\":{\"limit\":3,"), std::string::npos) << json;
  EXPECT_EQ(a->thresholds().Limit(resilience::ResourceKind::kRequest), 3u);
  EXPECT_EQ(c->thresholds().Limit(resilience::ResourceKind::kRequest), 6u);
  manager_->Update(ClusterSet());
  loop_.RunUntilIdle();
}

// A configured cluster no worker built holds nothing in the limits (no entry: 5 000 configured
// clusters cost no table of 5 000 names, ADR 0091): no thresholds until a worker builds it (they
// hold units in use), and /clusters reports its configured limits, all remaining.
TEST_F(ClusterManagerTest, LimitsOfClustersNoWorkerBuiltHoldNoThresholds) {
  ClusterSet clusters;
  clusters["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/3);
  clusters["b"] = Config("b", {"10.0.0.2:80"}, /*max_requests=*/4);
  limits_.Update(clusters);
  EXPECT_EQ(limits_.thresholds_count(), 0u);
  EXPECT_EQ(limits_.entries_count(), 0u);
  std::string json;
  limits_.AppendJson(json, "a");
  EXPECT_NE(json.find("\"max_requests\":{\"limit\":3,\"remaining\":3,\"overflows\":0}"),
            std::string::npos)
      << json;

  manager_->Update(clusters);
  Cluster* a = manager_->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(limits_.thresholds_count(), 1u);
  std::optional<resilience::ResourceGuard> held =
      a->thresholds().TryAcquire(resilience::ResourceKind::kRequest);
  ASSERT_TRUE(held.has_value());
  clusters["a"] = Config("a", {"10.0.0.1:80"}, /*max_requests=*/5);
  limits_.Update(clusters);
  EXPECT_EQ(a->thresholds().Limit(resilience::ResourceKind::kRequest), 5u);
  json.clear();
  limits_.AppendJson(json, "a");
  EXPECT_NE(json.find("\"max_requests\":{\"limit\":5,\"remaining\":4,"), std::string::npos) << json;

  // Removed: the built one keeps its thresholds (a request holds a unit), the other goes.
  limits_.Update(ClusterSet());
  json.clear();
  limits_.AppendJson(json, "a");
  EXPECT_NE(json.find("\"remaining\":4,"), std::string::npos) << json;
  json.clear();
  limits_.AppendJson(json, "b");
  EXPECT_EQ(json, "\"circuit_breakers\":null");
  manager_->Update(ClusterSet());
  loop_.RunUntilIdle();
}

// What the limits keep per configured cluster no worker built: nothing (they share the set), in
// heap bytes in use.
TEST_F(ClusterManagerTest, LimitsCostLittlePerConfiguredCluster) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  std::shared_ptr<const ClusterSet> clusters = ManyClusters(1000);
  const size_t before = HeapInUse();
  limits_.Update(*clusters);
  const size_t per_cluster = (HeapInUse() - before) / clusters->size();
  std::printf("limits: %zu bytes per configured cluster\n", per_cluster);
  // 0. 199 (fastbuild) when each held a map entry (its name and config pointer), 394 when it also
  // held its thresholds and a second copy of its name in another map.
  EXPECT_LT(per_cluster, 8u);
#endif
}

// What the limits keep per cluster that carried traffic, besides its thresholds: the
// remaining-capacity gauges' handles; the overflow counters and what they last counted only from
// the cluster's first refusal.
TEST_F(ClusterManagerTest, ActiveClustersCostLittleInTheLimits) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  std::shared_ptr<const ClusterSet> clusters = ManyClusters(1000);
  limits_.Update(*clusters);
  for (const auto& [name, config] : *clusters) limits_.For(*config);
  const size_t before = HeapInUse();
  for (const auto& [name, config] : *clusters) limits_.MarkActive(name);
  const size_t per_cluster = (HeapInUse() - before) / clusters->size();
  std::printf("limits: %zu bytes per active cluster\n", per_cluster);
  // 96 (fastbuild): the gauges' handles. 176 when the overflow counters were made with them.
  EXPECT_LT(per_cluster, 128u);
#endif
}

// Updating a built cluster keeps its Cluster, its pools and its outlier state, and builds none of
// the clusters beside it.
TEST_F(ClusterManagerTest, UpdateOfABuiltClusterKeepsPoolsAndOutlierState) {
  auto with_detection = [](std::vector<std::string> endpoints) {
    auto config = std::make_shared<ClusterConfig>(*Config("a", std::move(endpoints)));
    config->outlier_detection = resilience::OutlierDetectionConfig{
        .consecutive_5xx = 1, .consecutive_gateway_failure = 1, .max_ejection_percent = 100};
    return config;
  };
  ClusterSet first;
  first["a"] = with_detection({"10.0.0.1:80", "10.0.0.2:80"});
  first["b"] = Config("b", {"10.0.0.3:80"});
  manager_->Update(first);
  Cluster* a = manager_->Find("a");
  ASSERT_NE(a, nullptr);
  Host* ejected = a->host_set().Find(*net::Address::Parse("10.0.0.1:80"));
  Host* kept = a->host_set().Find(*net::Address::Parse("10.0.0.2:80"));
  a->PoolFor(*kept, http::Protocol::kHttp11);
  a->RecordResult(*ejected, resilience::HostResult::kServerError, /*probe=*/false);
  ASSERT_TRUE(ejected->has_health_flag(Host::kOutlierEjected));
  ASSERT_EQ(a->pool_count(), 1u);

  ClusterSet second;
  second["a"] = with_detection({"10.0.0.1:80", "10.0.0.2:80", "10.0.0.4:80"});
  second["b"] = Config("b", {"10.0.0.3:80", "10.0.0.5:80"});
  manager_->Update(second);
  EXPECT_EQ(manager_->FindBuilt("a"), a);
  EXPECT_EQ(a->host_set().size(), 3u);
  EXPECT_EQ(a->host_set().Find(*net::Address::Parse("10.0.0.1:80")), ejected);
  EXPECT_TRUE(ejected->has_health_flag(Host::kOutlierEjected));
  EXPECT_EQ(a->pool_count(), 1u);
  EXPECT_EQ(manager_->FindBuilt("b"), nullptr);
  EXPECT_EQ(manager_->built_count(), 1u);
  // The unbuilt one is built from the config current when it is first used.
  ASSERT_NE(manager_->Find("b"), nullptr);
  EXPECT_EQ(manager_->Find("b")->host_set().size(), 2u);
}

// Removing clusters no request used on this worker allocates nothing and leaves the built ones
// alone; a removed built cluster drains as before.
TEST_F(ClusterManagerTest, RemovingUnbuiltClustersIsFree) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  std::shared_ptr<const ClusterSet> all = ManyClusters(1000);
  const std::string used = "outbound|8080||service-7.default.svc";
  auto fewer = std::make_shared<ClusterSet>();
  (*fewer)[used] = all->at(used);
  manager_->Update(all);
  Cluster* cluster = manager_->Find(used);
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(manager_->built_count(), 1u);

  const size_t before = HeapInUse();
  manager_->Update(fewer);  // 999 clusters removed, none of them built here
  const size_t after = HeapInUse();
  // Nothing allocated, nothing freed: the set is the test's, and no Cluster had to drain.
  EXPECT_EQ(after, before);
  EXPECT_EQ(manager_->size(), 1u);
  EXPECT_EQ(manager_->FindBuilt(used), cluster);

  manager_->Update(ClusterSet());
  EXPECT_EQ(manager_->FindBuilt(used), nullptr);
  EXPECT_EQ(manager_->built_count(), 0u);
  loop_.RunUntilIdle();
#endif
}

// What configured clusters of 5 endpoints cost the workers, in heap bytes in use
// (docs/performance.md): 1 000 idle ones on 2 workers, then 100 of them carrying a request on
// each worker. Printed for the record; the bounds hold with room to spare.
TEST_F(ClusterManagerTest, IdleClustersCostLittleMemory) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  constexpr int kClusters = 1000;
  constexpr int kUsed = 100;
  std::shared_ptr<const ClusterSet> clusters = ManyClusters(kClusters);
  auto shard2 = registry_.CreateShard();
  const size_t before = HeapInUse();
  {
    WorkerClusterManager other(loop_, random_, clock_, *shard2, limits_);
    manager_->Update(ClusterSet());  // registers the managers' own series
    other.Update(ClusterSet());
    const size_t managers_series = registry_.series_count();
    const size_t start = HeapInUse();
    manager_->Update(clusters);
    other.Update(clusters);
    ASSERT_EQ(manager_->size(), static_cast<size_t>(kClusters));
    const size_t workers = HeapInUse() - start;
    // The circuit-breaker thresholds of every cluster, once for the process (the server applies
    // each configuration's limits).
    limits_.Update(*clusters);
    limits_.PublishStats(registry_.shared_shard());
    const size_t idle = HeapInUse() - before;
    // The shared configuration is the test's (the snapshot's in a sidecar).
    std::printf(
        "%d idle clusters, 2 workers: %zu bytes (workers %zu), %zu per cluster, "
        "%zu series\n",
        kClusters, idle, workers, idle / kClusters, registry_.series_count() - managers_series);
    EXPECT_EQ(registry_.series_count(), managers_series);
    EXPECT_LT(workers, 1024u);  // a pointer each, whatever the number of clusters
    EXPECT_LT(idle / kClusters, 1024u);

    int i = 0;
    for (const auto& [name, config] : *clusters) {
      if (i++ == kUsed) break;
      // A request that succeeds on each worker: its status class and duration series.
      for (WorkerClusterManager* worker : {manager_.get(), &other}) {
        ClusterRef ref = worker->Get(name);
        ASSERT_NE(ref.cluster, nullptr);
        ASSERT_NE(ref.stats, nullptr);
        ref.stats->RecordStatus(200);
        ref.stats->RecordCompletion(200, false, false, 1500, 10, 20);
      }
    }
    const size_t used = HeapInUse() - before - idle;
    std::printf("%d of them used on both workers: %zu bytes more, %zu per used cluster\n", kUsed,
                used, used / kUsed);
    // The series it used (the others register on first count), their cells on each worker (a
    // histogram's sum and page slots, and the one page of fine buckets its sample landed in)
    // and each worker's Cluster, which shares the config. 16.6 KB (fastbuild); 32.4 KB when
    // each worker's histogram held all its 617 cells and each lazy handle a shared_ptr.
    EXPECT_LT(used / kUsed, 24u * 1024);
    manager_->Update(ClusterSet());
    other.Update(ClusterSet());
    loop_.RunUntilIdle();
  }
#endif
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
