#include "sidecar/cluster/upstream_stats.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

struct Expected {
  const LazyCounter* handle;
  std::string name;
  LabelSet labels;  // besides cluster="c"
};

// Every lazy counter of an UpstreamStats with the series it must count into: a handle wired to
// the wrong entry of the lazy counters' table shows here as a count under another name.
std::vector<Expected> EveryLazyCounter(const UpstreamStats& s) {
  std::vector<Expected> all;
  for (size_t i = 0; i < kStatusClassNames.size(); ++i) {
    all.push_back({&s.rq_by_class[i],
                   "meshlet_upstream_rq_total",
                   {{"code_class", std::string(kStatusClassNames[i])}}});
  }
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
  for (size_t i = 0; i < kRetryReasonNames.size(); ++i) {
    all.push_back({&s.rq_retry[i],
                   "meshlet_upstream_rq_retry_total",
                   {{"reason", std::string(kRetryReasonNames[i])}}});
  }
  for (size_t i = 0; i < kRetrySkipReasonNames.size(); ++i) {
    all.push_back({&s.rq_retry_skipped[i],
                   "meshlet_upstream_rq_retry_skipped_total",
                   {{"reason", std::string(kRetrySkipReasonNames[i])}}});
  }
  for (size_t i = 0; i < kRetryOverflowNames.size(); ++i) {
    all.push_back({&s.rq_retry_overflow[i],
                   "meshlet_upstream_rq_retry_overflow_total",
                   {{"limit", std::string(kRetryOverflowNames[i])}}});
  }
  all.push_back({&s.rq_retry_success, "meshlet_upstream_rq_retry_success_total", {}});
  all.push_back({&s.rq_per_try_timeout, "meshlet_upstream_rq_per_try_timeout_total", {}});
  all.push_back({&s.rq_deadline_header_invalid[0],
                 "meshlet_upstream_rq_deadline_header_invalid_total",
                 {{"header", "grpc-timeout"}}});
  all.push_back({&s.rq_deadline_header_invalid[1],
                 "meshlet_upstream_rq_deadline_header_invalid_total",
                 {{"header", "x-meshlet-deadline"}}});
  all.push_back({&s.rq_mirror, "meshlet_upstream_rq_mirror_total", {}});
  all.push_back({&s.rq_mirror_failed, "meshlet_upstream_rq_mirror_failed_total", {}});
  for (size_t i = 0; i < kMirrorSkipReasonNames.size(); ++i) {
    all.push_back({&s.rq_mirror_skipped[i],
                   "meshlet_upstream_rq_mirror_skipped_total",
                   {{"reason", std::string(kMirrorSkipReasonNames[i])}}});
  }
  for (size_t i = 0; i < kSessionResultNames.size(); ++i) {
    all.push_back({&s.rq_session[i],
                   "meshlet_upstream_rq_session_total",
                   {{"result", std::string(kSessionResultNames[i])}}});
  }
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
  options.max_scoped_series = 9;  // the 8 registered with the cluster, and one more
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

// What a worker holds for a cluster it used, before any series registers on first count: a lazy
// counter is one word (it was 24 bytes: 1 232 for the whole UpstreamStats).
TEST(UpstreamStatsTest, HandlesAreSmall) {
  EXPECT_EQ(sizeof(LazyCounter), 8u);
  EXPECT_LE(sizeof(UpstreamStats), 576u);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster
