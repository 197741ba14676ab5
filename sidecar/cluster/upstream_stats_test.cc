#include "sidecar/cluster/upstream_stats.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

struct Expected {
  const LazyCounter* handle;
  std::string name;
  LabelSet labels;  // besides cluster="c"
};

// One entry per handle of `handles`, of metric `name` with `label` set to each of `values`.
template <size_t N>
void AddEach(std::vector<Expected>& all, const std::array<LazyCounter, N>& handles,
             const std::string& name, const std::string& label,
             const std::array<absl::string_view, N>& values) {
  for (size_t i = 0; i < N; ++i) {
    all.push_back({&handles[i], name, {{label, std::string(values[i])}}});
  }
}

// Every lazy counter of an UpstreamStats with the series it must count into: a handle wired to
// the wrong entry of the lazy counters' table shows here as a count under another name.
std::vector<Expected> EveryLazyCounter(const UpstreamStats& s) {
  std::vector<Expected> all;
  AddEach(all, s.rq_by_class, "meshlet_upstream_rq_total", "code_class", kStatusClassNames);
  all.push_back({&s.rq_connect_fail, "meshlet_upstream_rq_connect_fail_total", {}});
  all.push_back({&s.rq_overflow, "meshlet_upstream_rq_overflow_total", {}});
  all.push_back({&s.rq_timeout, "meshlet_upstream_rq_timeout_total", {}});
  all.push_back({&s.rq_reset, "meshlet_upstream_rq_reset_total", {}});
  all.push_back({&s.rq_no_healthy_host, "meshlet_upstream_rq_no_healthy_host_total", {}});
  all.push_back({&s.rq_breaker_open, "meshlet_upstream_rq_breaker_open_total", {}});
  all.push_back({&s.cf_breaker_opened, "meshlet_upstream_cf_breaker_opened_total", {}});
  all.push_back({&s.outlier_ejections, "meshlet_upstream_outlier_ejections_total", {}});
  all.push_back({&s.overload_responses, "meshlet_upstream_overload_responses_total", {}});
  all.push_back({&s.overload_ejections, "meshlet_upstream_overload_ejections_total", {}});
  all.push_back(
      {&s.overload_ejections_skipped, "meshlet_upstream_overload_ejections_skipped_total", {}});
  AddEach(all, s.rq_retry, "meshlet_upstream_rq_retry_total", "reason", kRetryReasonNames);
  AddEach(all, s.rq_retry_skipped, "meshlet_upstream_rq_retry_skipped_total", "reason",
          kRetrySkipReasonNames);
  AddEach(all, s.rq_retry_overflow, "meshlet_upstream_rq_retry_overflow_total", "limit",
          kRetryOverflowNames);
  all.push_back({&s.rq_retry_success, "meshlet_upstream_rq_retry_success_total", {}});
  all.push_back({&s.rq_per_try_timeout, "meshlet_upstream_rq_per_try_timeout_total", {}});
  AddEach(all, s.rq_deadline_header_invalid, "meshlet_upstream_rq_deadline_header_invalid_total",
          "header", std::array<absl::string_view, 2>{"grpc-timeout", "x-meshlet-deadline"});
  all.push_back({&s.rq_mirror, "meshlet_upstream_rq_mirror_total", {}});
  all.push_back({&s.rq_mirror_failed, "meshlet_upstream_rq_mirror_failed_total", {}});
  AddEach(all, s.rq_mirror_skipped, "meshlet_upstream_rq_mirror_skipped_total", "reason",
          kMirrorSkipReasonNames);
  AddEach(all, s.rq_session, "meshlet_upstream_rq_session_total", "result", kSessionResultNames);
  return all;
}

// Each lazy counter registers its own series with its first count, and counts there; the others
// stay unregistered. Distinct amounts per handle tell a miswired handle apart.
TEST(UpstreamStatsTest, EachLazyCounterCountsIntoItsSeries) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<UpstreamStats> stats = UpstreamStats::Create(*shard, "c", "0");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::vector<Expected> all = EveryLazyCounter(*stats);
  ASSERT_EQ(all.size(), 42u);
  const size_t eager = registry.series_count();
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_FALSE(all[i].handle->registered()) << all[i].name;
    all[i].handle->Inc(i + 1);
    all[i].handle->Inc(1000);
    EXPECT_TRUE(all[i].handle->registered()) << all[i].name;
    EXPECT_EQ(registry.series_count(), eager + i + 1) << all[i].name;
  }
  StatsSnapshot snapshot = registry.Snapshot();
  for (size_t i = 0; i < all.size(); ++i) {
    LabelSet labels = {{"cluster", "c"}};
    labels.insert(labels.end(), all[i].labels.begin(), all[i].labels.end());
    const SeriesSnapshot* series = snapshot.Find(all[i].name, labels);
    ASSERT_NE(series, nullptr) << all[i].name;
    EXPECT_EQ(series->counter, i + 1 + 1000) << all[i].name;
  }
}

// A copy registers its own handle of the same series; a handle refused by the series budget
// counts nothing and does not ask again; a default one counts nothing.
TEST(UpstreamStatsTest, LazyCounterCopiesAndRefusals) {
  StatsRegistry::Options options;
  options.max_scoped_series = 6;  // the 5 registered with the cluster, and one more
  StatsRegistry registry(options);
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<UpstreamStats> stats = UpstreamStats::Create(*shard, "c", "0");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const LazyCounter copy = stats->rq_timeout;
  stats->rq_timeout.Inc();
  copy.Inc(2);
  EXPECT_TRUE(copy.registered());
  StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* timeouts =
      snapshot.Find("meshlet_upstream_rq_timeout_total", {{"cluster", "c"}});
  ASSERT_NE(timeouts, nullptr);
  EXPECT_EQ(timeouts->counter, 3u);

  stats->rq_reset.Inc();  // past the budget
  stats->rq_reset.Inc();
  EXPECT_FALSE(stats->rq_reset.registered());
  snapshot = registry.Snapshot();
  EXPECT_EQ(snapshot.Find("meshlet_upstream_rq_reset_total", {{"cluster", "c"}}), nullptr);
  const SeriesSnapshot* refused =
      snapshot.Find("meshlet_stats_series_refused_total", {{"budget", "scoped"}});
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->counter, 1u);  // asked once

  LazyCounter unwired;
  unwired.Inc();
  EXPECT_FALSE(unwired.registered());
}

// The breaker state and the ejections active gauges register when first set to something other
// than 0 (a closed breaker, no ejections: what the absent series reads), the breaker state with
// the worker's label; from then on they are set like any gauge, to 0 too.
TEST(UpstreamStatsTest, LazyGaugesRegisterWhenFirstNotZero) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<UpstreamStats> stats = UpstreamStats::Create(*shard, "c", "3");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const size_t eager = registry.series_count();
  EXPECT_EQ(eager, 5u);  // connections, TLS handshake failures, requests active, bytes both ways
  const LazyGauge state = stats->cf_breaker_state;  // as the Cluster holds it
  state.Set(0);
  stats->outlier_ejections_active.Set(0);
  stats->overload_ejections_active.Set(0);
  EXPECT_EQ(registry.series_count(), eager);
  EXPECT_FALSE(state.registered());

  state.Set(1);
  stats->outlier_ejections_active.Set(2);
  EXPECT_TRUE(state.registered());
  EXPECT_EQ(registry.series_count(), eager + 2);
  StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* open =
      snapshot.Find("meshlet_upstream_cf_breaker_state", {{"cluster", "c"}, {"worker", "3"}});
  ASSERT_NE(open, nullptr);
  EXPECT_EQ(open->gauge, 1);
  const SeriesSnapshot* ejected =
      snapshot.Find("meshlet_upstream_outlier_ejections_active", {{"cluster", "c"}});
  ASSERT_NE(ejected, nullptr);
  EXPECT_EQ(ejected->gauge, 2);
  EXPECT_EQ(snapshot.Find("meshlet_upstream_overload_ejections_active", {{"cluster", "c"}}),
            nullptr);

  state.Set(0);
  snapshot = registry.Snapshot();
  open = snapshot.Find("meshlet_upstream_cf_breaker_state", {{"cluster", "c"}, {"worker", "3"}});
  ASSERT_NE(open, nullptr);
  EXPECT_EQ(open->gauge, 0);

  // A registered Gauge converts to a LazyGauge that sets it.
  absl::StatusOr<Gauge> plain = shard->RegisterGauge("meshlet_test_level", "A level.");
  ASSERT_TRUE(plain.ok()) << plain.status();
  const LazyGauge converted = *plain;
  EXPECT_TRUE(converted.registered());
  converted.Set(7);
  snapshot = registry.Snapshot();
  const SeriesSnapshot* set = snapshot.Find("meshlet_test_level");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->gauge, 7);
}

// What a worker holds for a cluster it used, before any series registers on first use: a lazy
// counter or gauge is one word (a lazy counter was 24 bytes and the 3 gauges eager: 1 232 for the
// whole UpstreamStats; the locality decisions' three counters added 24).
TEST(UpstreamStatsTest, HandlesAreSmall) {
  EXPECT_EQ(sizeof(LazyCounter), 8u);
  EXPECT_EQ(sizeof(LazyGauge), 8u);
  EXPECT_LE(sizeof(UpstreamStats), 544u);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
