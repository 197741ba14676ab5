#include "sidecar/telemetry/report_builder.h"

#include <malloc.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sidecar/route/route_stats.h"

namespace meshlet::sidecar::telemetry {
namespace {

// The series MetricsReporter reads, for one cluster, as UpstreamStats registers them.
struct ClusterSeries {
  ClusterSeries(StatsShard& shard, const std::string& cluster) {
    HistogramOptions seconds;
    seconds.exposition_divisor = 1e6;
    success = *shard.RegisterHistogram("meshlet_upstream_rq_duration_seconds", "h",
                                       {{"cluster", cluster}, {"outcome", "success"}}, seconds);
    tx_bytes =
        *shard.RegisterCounter("meshlet_upstream_tx_bytes_total", "h", {{"cluster", cluster}});
    rq_active = *shard.RegisterGauge("meshlet_upstream_rq_active", "h", {{"cluster", cluster}});
  }
  Histogram success;
  Counter tx_bytes;
  Gauge rq_active;
};

std::set<std::string> Names(const std::vector<metrics::v1::MetricsReport>& parts) {
  std::set<std::string> names;
  for (const auto& part : parts) {
    for (const auto& cluster : part.clusters()) names.insert(cluster.cluster());
  }
  return names;
}

class ReportBuilderTest : public ::testing::Test {
 protected:
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_ = registry_.CreateShard();
};

TEST_F(ReportBuilderTest, ASnapshotOfItsFamiliesBuildsTheSameReportAsTheWholeRegistry) {
  const std::string cluster = "outbound|80||full.default";
  HistogramOptions seconds;
  seconds.exposition_divisor = 1e6;
  shard_
      ->RegisterHistogram("meshlet_upstream_rq_duration_seconds", "h",
                          {{"cluster", cluster}, {"outcome", "success"}}, seconds)
      ->Record(1500);
  shard_
      ->RegisterHistogram("meshlet_upstream_rq_duration_seconds", "h",
                          {{"cluster", cluster}, {"outcome", "failure"}}, seconds)
      ->Record(90000);
  shard_->RegisterCounter("meshlet_upstream_tx_bytes_total", "h", {{"cluster", cluster}})->Inc(11);
  shard_->RegisterCounter("meshlet_upstream_rx_bytes_total", "h", {{"cluster", cluster}})->Inc(22);
  shard_->RegisterCounter("meshlet_upstream_cx_total", "h", {{"cluster", cluster}})->Inc(3);
  shard_->RegisterGauge("meshlet_upstream_rq_active", "h", {{"cluster", cluster}})->Add(4);
  // Series the report does not read.
  shard_->RegisterCounter("meshlet_upstream_rq_retry_total", "h", {{"cluster", cluster}})->Inc();
  shard_->RegisterCounter("meshlet_http_rq_total", "h", {{"listener", "l"}})->Inc();

  const StatsSnapshot families = registry_.Snapshot(ReportBuilder::kFamilies);
  EXPECT_EQ(families.series.size(), 6u) << "only the report's families are copied";
  const StatsSnapshot whole = registry_.Snapshot();
  const std::vector<metrics::v1::MetricsReport> from_families = ReportBuilder().Build(families, 7);
  const std::vector<metrics::v1::MetricsReport> from_whole = ReportBuilder().Build(whole, 7);
  ASSERT_EQ(from_families.size(), 1u);
  ASSERT_EQ(from_whole.size(), 1u);
  ASSERT_EQ(from_whole[0].clusters_size(), 1);
  const metrics::v1::ClusterStats& stats = from_whole[0].clusters(0);
  EXPECT_EQ(stats.rx_bytes(), 22u);
  EXPECT_EQ(stats.cx_total(), 3u);
  EXPECT_EQ(stats.rq_active(), 4);
  EXPECT_EQ(from_families[0].SerializeAsString(), from_whole[0].SerializeAsString())
      << "a family Build reads is missing from kFamilies";
}

TEST_F(ReportBuilderTest, ReportsOnlyClustersActiveSinceTheLastAcceptedReport) {
  ClusterSeries busy(*shard_, "outbound|80||busy.default");
  ClusterSeries idle(*shard_, "outbound|80||idle.default");
  ClusterSeries pending(*shard_, "outbound|80||pending.default");
  ClusterSeries inbound(*shard_, "inbound|8080||");
  ReportBuilder builder;

  // Nothing happened yet: one empty part, which keeps the sidecar known to the control plane.
  std::vector<metrics::v1::MetricsReport> parts = builder.Build(registry_.Snapshot(), 1000);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].clusters_size(), 0);
  EXPECT_EQ(parts[0].time_unix_nano(), 1000);

  busy.success.Record(2000);
  busy.tx_bytes.Inc(100);
  pending.rq_active.Inc();
  inbound.success.Record(10);
  parts = builder.Build(registry_.Snapshot(), 2000);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(Names(parts),
            (std::set<std::string>{"outbound|80||busy.default", "outbound|80||pending.default"}));
  builder.Accepted(parts[0]);

  // Unchanged since accepted: left out; requests in flight keep a cluster in.
  parts = builder.Build(registry_.Snapshot(), 3000);
  EXPECT_EQ(Names(parts), (std::set<std::string>{"outbound|80||pending.default"}));
  // Not accepted (the call failed): the clusters go again.
  busy.tx_bytes.Inc(1);
  parts = builder.Build(registry_.Snapshot(), 4000);
  EXPECT_EQ(Names(parts),
            (std::set<std::string>{"outbound|80||busy.default", "outbound|80||pending.default"}));
  parts = builder.Build(registry_.Snapshot(), 5000);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].clusters_size(), 2);
  builder.Accepted(parts[0]);
  pending.rq_active.Dec();
  // Its request ended without a response yet counted elsewhere: the change to 0 is reported once.
  parts = builder.Build(registry_.Snapshot(), 6000);
  EXPECT_EQ(Names(parts), (std::set<std::string>{"outbound|80||pending.default"}));
  builder.Accepted(parts[0]);
  parts = builder.Build(registry_.Snapshot(), 7000);
  EXPECT_EQ(parts[0].clusters_size(), 0);
  EXPECT_EQ(builder.known_clusters(), 2u);
}

// Route rules as route::RouteStats counts them: in the report with their identity and
// histograms, and, like clusters, only while they change.
TEST_F(ReportBuilderTest, ReportsRouteRulesActiveSinceTheLastAcceptedReport) {
  route::RouteStatsLimit limit(registry_, 10);
  route::RouteStats stats(*shard_, limit);
  route::VirtualHostConfig reviews{.name = "reviews.default.svc.cluster.local:9080"};
  reviews.name_hash = route::HashOfHostName(reviews.name);
  const route::SourceName source("HTTPRoute/default/reviews");
  route::RouteEntry rule0, rule1;
  rule0.source = rule1.source = source;
  rule0.source_rule = 0;
  rule1.source_rule = 1;
  rule0.virtual_host = rule1.virtual_host = &reviews;
  stats.Record(rule0, 200, false, 1000);
  stats.Record(rule0, 200, false, 3000);
  stats.Record(rule1, 503, true, 50000);

  ReportBuilder builder;
  std::vector<metrics::v1::MetricsReport> parts =
      builder.Build(registry_.Snapshot(ReportBuilder::kFamilies), 1000);
  ASSERT_EQ(parts.size(), 1u);
  ASSERT_EQ(parts[0].routes_size(), 2);
  const metrics::v1::RouteRuleStats& first = parts[0].routes(0);
  EXPECT_EQ(first.route(), "HTTPRoute/default/reviews");
  EXPECT_EQ(first.rule(), 0);
  EXPECT_EQ(first.service(), "reviews.default");
  EXPECT_EQ(first.success().sum(), 4000u);
  EXPECT_EQ(first.failure().count_size(), 0);
  const metrics::v1::RouteRuleStats& second = parts[0].routes(1);
  EXPECT_EQ(second.rule(), 1);
  EXPECT_EQ(second.failure().sum(), 50000u);
  builder.Accepted(parts[0]);

  // Nothing changed: no route rule in the next report.
  parts = builder.Build(registry_.Snapshot(ReportBuilder::kFamilies), 2000);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].routes_size(), 0);

  // Rule 1 changed: it alone, with its cumulative values.
  stats.Record(rule1, 200, false, 2000);
  parts = builder.Build(registry_.Snapshot(ReportBuilder::kFamilies), 3000);
  ASSERT_EQ(parts[0].routes_size(), 1);
  EXPECT_EQ(parts[0].routes(0).rule(), 1);
  EXPECT_EQ(parts[0].routes(0).success().sum(), 2000u);
  EXPECT_EQ(parts[0].routes(0).failure().sum(), 50000u);
}

TEST_F(ReportBuilderTest, SplitsALargeReportIntoOrderedParts) {
  constexpr int kClusters = 2500;
  std::vector<std::unique_ptr<ClusterSeries>> clusters;
  for (int i = 0; i < kClusters; ++i) {
    clusters.push_back(
        std::make_unique<ClusterSeries>(*shard_, absl::StrCat("outbound|80||s", i, ".default")));
    for (int r = 0; r < 20; ++r) clusters.back()->success.Record(100 + 37 * r);
  }
  ReportBuilder builder({.max_clusters = 1000, .max_bytes = 1 << 20});
  std::vector<metrics::v1::MetricsReport> parts = builder.Build(registry_.Snapshot(), 5000);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].clusters_size(), 1000);
  EXPECT_EQ(parts[2].clusters_size(), 500);
  EXPECT_EQ(Names(parts).size(), static_cast<size_t>(kClusters));
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(parts[i].time_unix_nano(), 5000 + static_cast<int64_t>(i));
  }

  // The byte bound splits too, each part within it.
  const size_t one = parts[0].clusters(0).ByteSizeLong();
  ReportBuilder small({.max_clusters = 1000, .max_bytes = 100 * one});
  parts = small.Build(registry_.Snapshot(), 5000);
  EXPECT_GE(parts.size(), static_cast<size_t>(kClusters / 100));
  size_t total = 0;
  for (const auto& part : parts) {
    size_t bytes = 0;
    for (const auto& cluster : part.clusters()) bytes += cluster.ByteSizeLong();
    EXPECT_LE(bytes, 100 * one + one);  // names differ in length by a few bytes
    total += static_cast<size_t>(part.clusters_size());
  }
  EXPECT_EQ(total, static_cast<size_t>(kClusters));
}

// What the builder remembers of each accepted cluster is two 64-bit hashes (16 bytes in the map):
// 2 000 clusters with names as the control plane makes them cost under 40 bytes each (229
// with the name and the 48 bytes of values kept).
TEST_F(ReportBuilderTest, RemembersLittlePerAcceptedCluster) {
  constexpr int kClusters = 2000;
  metrics::v1::MetricsReport part;
  for (int i = 0; i < kClusters; ++i) {
    metrics::v1::ClusterStats* cluster = part.add_clusters();
    cluster->set_cluster(absl::StrCat("outbound|8080||service-", i, ".default.svc.cluster.local"));
    cluster->set_tx_bytes(100 + i);
    cluster->set_cx_total(1);
  }
  ReportBuilder builder;
  const auto heap = [] {
    const struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
  };
  const size_t before = heap();
  builder.Accepted(part);
  const size_t bytes = heap() - before;
  EXPECT_EQ(builder.known_clusters(), static_cast<size_t>(kClusters));
  EXPECT_LT(bytes / kClusters, 40u) << bytes << " bytes";
}

}  // namespace
}  // namespace meshlet::sidecar::telemetry
