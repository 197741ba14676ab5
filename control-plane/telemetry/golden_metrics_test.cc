#include "control-plane/telemetry/golden_metrics.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/histogram_buckets.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

using std::chrono::seconds;

// A sidecar's cumulative counters for one cluster: latencies in microseconds.
struct Counters {
  std::map<uint32_t, uint64_t> success, failure;
  uint64_t tx = 0, rx = 0, cx = 0;
  void Add(uint64_t micros, bool ok, int n = 1) {
    (ok ? success : failure)[HistogramBuckets::Index(micros)] += n;
  }
};

metrics::v1::MetricsReport Report(const std::string& node, const std::string& service,
                                  uint64_t instance,
                                  const std::map<std::string, Counters>& clusters) {
  metrics::v1::MetricsReport r;
  r.set_node_id(node);
  r.set_service(service);
  r.set_namespace_("default");
  r.set_instance(instance);
  for (const auto& [name, c] : clusters) {
    auto* out = r.add_clusters();
    out->set_cluster(name);
    for (const auto& [index, count] : c.success) {
      out->mutable_success()->add_bucket(index);
      out->mutable_success()->add_count(count);
    }
    for (const auto& [index, count] : c.failure) {
      out->mutable_failure()->add_bucket(index);
      out->mutable_failure()->add_count(count);
    }
    out->set_tx_bytes(c.tx);
    out->set_rx_bytes(c.rx);
    out->set_cx_total(c.cx);
  }
  return r;
}

constexpr char kBackend[] = "outbound|8080||backend.default";

// GET /api/v1/certificates: the certificate each sidecar reported last; none without one.
TEST(GoldenMetricsTest, TheWorkloadCertificatesReportedAreListed) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  metrics::v1::MetricsReport fe = Report("fe-1.default", "frontend", 1, {});
  fe.set_workload("fe-1");
  fe.set_time_unix_nano(1'000'000'000'000);
  fe.set_certificate_not_before_unix(1'800'000'000);
  fe.set_certificate_not_after_unix(1'800'086'400);
  ASSERT_TRUE(golden.Record(fe).ok());
  ASSERT_TRUE(golden.Record(Report("db-1", "db", 2, {})).ok());  // no certificate
  // A renewal: the next report carries the new one.
  fe.set_time_unix_nano(1'001'000'000'000);
  fe.set_certificate_not_before_unix(1'800'043'200);
  fe.set_certificate_not_after_unix(1'800'129'600);
  ASSERT_TRUE(golden.Record(fe).ok());
  http::ServerRequest request;
  request.headers.Add(":method", "GET");
  request.headers.Add(":path", "/api/v1/certificates");
  const http::ServerResponse answer = golden.HandleCertificates(request);
  EXPECT_EQ(answer.status, 200);
  EXPECT_TRUE(absl::StartsWith(
      answer.body, R"({"items":[{"node":"fe-1.default","namespace":"default","service":"frontend",)"
                   R"("workload":"fe-1","notBefore":"2027-01-15T20:00:00+00:00",)"
                   R"("notAfter":"2027-01-16T20:00:00+00:00","reported":")"))
      << answer.body;
  EXPECT_EQ(answer.body.find("db-1"), std::string::npos) << answer.body;
  request.headers.Set(":path", "/api/v1/certificates?x=1");
  EXPECT_EQ(golden.HandleCertificates(request).status, 400);
}

TEST(GoldenMetricsTest, ServiceNamesFromClustersAndNodes) {
  EXPECT_EQ(DestinationService("outbound|8080||backend.default"), "backend.default");
  EXPECT_EQ(DestinationService("outbound|8080|version=v2|backend.prod"), "backend.prod");
  EXPECT_EQ(DestinationService("backend"), "backend");
  EXPECT_EQ(SourceService("frontend", "default"), "frontend.default");
  EXPECT_EQ(SourceService("frontend", ""), "frontend");
}

TEST(GoldenMetricsTest, RatesSuccessAndPercentilesOverTheWindow) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  Counters c;
  // Before the window: 1000 slow requests that must not count.
  c.Add(900000, true, 1000);
  ASSERT_TRUE(golden.Record(Report("fe-1", "frontend", 7, {{kBackend, c}})).ok());
  clock.Advance(seconds(60));
  ASSERT_TRUE(golden.Record(Report("fe-1", "frontend", 7, {{kBackend, c}})).ok());
  // In the last 60 s: 96 fast successes, 2 at 50 ms, 2 failures at 100 ms.
  c.Add(1000, true, 96);
  c.Add(50000, true, 2);
  c.Add(100000, false, 2);
  c.tx += 6000;
  c.cx += 3;
  clock.Advance(seconds(60));
  ASSERT_TRUE(golden.Record(Report("fe-1", "frontend", 7, {{kBackend, c}})).ok());

  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 1u);
  const EdgeStats& e = edges[0];
  EXPECT_EQ(e.source, "frontend.default");
  EXPECT_EQ(e.destination, "backend.default");
  EXPECT_EQ(e.requests, 100u);
  EXPECT_EQ(e.failures, 2u);
  EXPECT_NEAR(e.rps, 100.0 / 60, 1e-9);
  EXPECT_NEAR(e.success_rate, 0.98, 1e-9);
  EXPECT_NEAR(e.p50_ms, 1.0, 0.05);
  EXPECT_NEAR(e.p95_ms, 1.0, 0.05);  // the 95th of 100 is still a fast one
  EXPECT_NEAR(e.p99_ms, 100.0, 100.0 * HistogramBuckets::kMaxRelativeError);
  EXPECT_NEAR(e.tx_bytes_per_second, 100.0, 1e-9);
  EXPECT_NEAR(e.connections_per_second, 0.05, 1e-9);

  // Over two minutes the baseline is the first report, which already held the slow ones.
  edges = golden.Query(seconds(120));
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].requests, 100u);  // the first report is the baseline
}

TEST(GoldenMetricsTest, SidecarsOfOneServiceAddUpAndFiltersApply) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  Counters a, b, db;
  a.Add(2000, true, 10);
  b.Add(2000, false, 5);
  db.Add(500, true, 7);
  // A sidecar's first report counts everything since it started.
  ASSERT_TRUE(golden.Record(Report("fe-1", "frontend", 1, {{kBackend, a}})).ok());
  ASSERT_TRUE(golden.Record(Report("fe-2", "frontend", 2, {{kBackend, b}})).ok());
  ASSERT_TRUE(
      golden.Record(Report("be-1", "backend", 3, {{"outbound|5432||db.default", db}})).ok());
  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_EQ(edges[0].source, "backend.default");
  EXPECT_EQ(edges[0].destination, "db.default");
  EXPECT_EQ(edges[1].source, "frontend.default");
  EXPECT_EQ(edges[1].requests, 15u);
  EXPECT_EQ(edges[1].failures, 5u);
  EXPECT_EQ(edges[1].reporters, 2u);
  EXPECT_NEAR(edges[1].success_rate, 10.0 / 15, 1e-9);

  EXPECT_EQ(golden.Query(seconds(60), "db.default").size(), 1u);
  EXPECT_EQ(golden.Query(seconds(60), "backend.default").size(), 2u);
  EXPECT_EQ(golden.Query(seconds(60), "nobody").size(), 0u);
}

TEST(GoldenMetricsTest, RequestsBeforeTheFirstReportCountFromTheSidecarsStart) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  Counters c;
  c.Add(3000, true, 10);  // all before the first report
  metrics::v1::MetricsReport r = Report("fe-1", "frontend", 1, {{kBackend, c}});
  r.set_start_time_unix_nano(1'000'000'000'000);
  r.set_time_unix_nano(1'002'000'000'000);  // two seconds later
  ASSERT_TRUE(golden.Record(r).ok());
  clock.Advance(seconds(1));
  r.set_time_unix_nano(1'003'000'000'000);
  ASSERT_TRUE(golden.Record(r).ok());  // nothing new
  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].requests, 10u);
  EXPECT_NEAR(edges[0].rps, 10.0 / 3, 1e-9);  // over the three seconds since the start
  // A window that starts after the last change sees no requests: the edge is left out.
  clock.Advance(seconds(30));
  r.set_time_unix_nano(1'033'000'000'000);
  ASSERT_TRUE(golden.Record(r).ok());
  EXPECT_TRUE(golden.Query(seconds(10)).empty());
  EXPECT_EQ(golden.Query(seconds(60)).size(), 1u);
}

// A sidecar that moved from replica A to B: A's forwarded copy of an older report reaches B after
// B recorded a newer one from the sidecar itself. It must not read as counters going backwards
// (which would drop the series' samples).
TEST(GoldenMetricsTest, AReportNotNewerThanTheLastIsIgnored) {
  FakeClock clock;
  StatsRegistry stats;
  GoldenMetrics golden(clock, {}, &stats);
  Counters older, newer;
  older.Add(3000, true, 100);
  newer.Add(3000, true, 160);
  metrics::v1::MetricsReport first = Report("fe-1", "frontend", 1, {});
  first.set_time_unix_nano(1'000'000'000'000);
  ASSERT_TRUE(golden.Record(first).ok());
  clock.Advance(seconds(10));
  metrics::v1::MetricsReport late = Report("fe-1", "frontend", 1, {{kBackend, older}});
  late.set_time_unix_nano(1'010'000'000'000);
  metrics::v1::MetricsReport direct = Report("fe-1", "frontend", 1, {{kBackend, newer}});
  direct.set_time_unix_nano(1'012'000'000'000);
  ASSERT_TRUE(golden.Record(direct).ok());
  clock.Advance(seconds(1));
  ASSERT_TRUE(golden.Record(late).ok());
  ASSERT_TRUE(golden.Record(direct).ok());  // the same report twice: also ignored
  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].requests, 160u);
  StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* stale =
      snapshot.Find("meshlet_cp_golden_reports_total", {{"result", "stale"}});
  ASSERT_NE(stale, nullptr);
  EXPECT_EQ(stale->counter, 2u);
}

TEST(GoldenMetricsTest, ClustersWithoutTrafficInTheWindowAreNoEdges) {
  FakeClock clock;
  GoldenMetrics golden(clock, {}, nullptr);
  Counters used, unused;
  used.Add(1000, true, 5);
  ASSERT_TRUE(golden
                  .Record(Report("fe-1", "frontend", 1,
                                 {{kBackend, used}, {"outbound|80||db.default", unused}}))
                  .ok());
  clock.Advance(seconds(1));
  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].destination, "backend.default");
}

TEST(GoldenMetricsTest, RestartsSilenceAndLimits) {
  FakeClock clock;
  GoldenMetricsLimits limits;
  limits.max_series = 2;
  limits.retention = std::chrono::minutes(5);
  GoldenMetrics golden(clock, limits, nullptr);
  Counters c;
  c.Add(1000, true, 50);
  ASSERT_TRUE(golden.Record(Report("fe-1", "frontend", 1, {{kBackend, c}})).ok());
  clock.Advance(seconds(10));
  // A new process: its counters start over; the old ones are not subtracted from the new.
  Counters fresh;
  fresh.Add(1000, true, 4);
  ASSERT_TRUE(golden.Record(Report("fe-1", "frontend", 2, {{kBackend, fresh}})).ok());
  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].requests, 4u);

  // The series limit: the second sidecar's second cluster is left out.
  absl::Status status = golden.Record(
      Report("fe-2", "frontend", 3, {{kBackend, c}, {"outbound|80||other.default", c}}));
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(golden.series_count(), 2u);

  // Malformed reports are refused whole.
  metrics::v1::MetricsReport bad = Report("fe-3", "frontend", 4, {{kBackend, c}});
  bad.mutable_clusters(0)->mutable_success()->add_bucket(HistogramBuckets::kCount);
  EXPECT_TRUE(absl::IsInvalidArgument(golden.Record(bad)));
  EXPECT_TRUE(absl::IsInvalidArgument(golden.Record(Report("", "x", 1, {}))));

  // Silent past the window: no edge; past the retention: forgotten.
  clock.Advance(seconds(120));
  EXPECT_TRUE(golden.Query(seconds(60)).empty());
  clock.Advance(std::chrono::minutes(5));
  ASSERT_TRUE(golden.Record(Report("be-1", "backend", 9, {})).ok());
  EXPECT_EQ(golden.series_count(), 0u);
}

// A report naming more clusters than the per-report limit keeps the first ones and counts the
// rest, instead of losing the whole sidecar's golden metrics.
TEST(GoldenMetricsTest, AReportPastTheClusterLimitKeepsWhatFits) {
  FakeClock clock;
  StatsRegistry stats;
  GoldenMetricsLimits limits;
  limits.max_clusters_per_report = 3;
  GoldenMetrics golden(clock, limits, &stats);
  Counters c;
  c.Add(1000, true, 10);
  std::map<std::string, Counters> clusters;
  for (int i = 0; i < 5; ++i) clusters[absl::StrCat("outbound|80||s", i, ".default")] = c;
  absl::Status status = golden.Record(Report("fe-1", "frontend", 1, clusters));
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_NE(status.message().find("the last 2 of 5"), std::string::npos) << status;
  EXPECT_EQ(golden.series_count(), 3u);
  clock.Advance(seconds(1));
  std::vector<EdgeStats> edges = golden.Query(seconds(60));
  ASSERT_EQ(edges.size(), 3u);
  EXPECT_EQ(edges[0].destination, "s0.default");
  EXPECT_EQ(edges[2].destination, "s2.default");

  StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* dropped =
      snapshot.Find("meshlet_cp_golden_clusters_dropped_total", {{"reason", "report_limit"}});
  ASSERT_NE(dropped, nullptr);
  EXPECT_EQ(dropped->counter, 2u);
  const SeriesSnapshot* partial =
      snapshot.Find("meshlet_cp_golden_reports_total", {{"result", "partial"}});
  ASSERT_NE(partial, nullptr);
  EXPECT_EQ(partial->counter, 1u);
}

// A sidecar splits a large report into parts read at the same time, each part a nanosecond after
// the one before (sidecar/telemetry/report_builder.h): every part is recorded, none is stale.
TEST(GoldenMetricsTest, ThePartsOfASplitReportAreAllRecorded) {
  FakeClock clock;
  StatsRegistry stats;
  GoldenMetrics golden(clock, {}, &stats);
  Counters c;
  c.Add(1000, true, 10);
  metrics::v1::MetricsReport first = Report("fe-1", "frontend", 1, {{kBackend, c}});
  metrics::v1::MetricsReport second =
      Report("fe-1", "frontend", 1, {{"outbound|80||db.default", c}});
  first.set_time_unix_nano(1'000'000'000'000);
  second.set_time_unix_nano(1'000'000'000'001);
  ASSERT_TRUE(golden.Record(first).ok());
  ASSERT_TRUE(golden.Record(second).ok());
  clock.Advance(seconds(1));
  EXPECT_EQ(golden.Query(seconds(60)).size(), 2u);
  StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* stale =
      snapshot.Find("meshlet_cp_golden_reports_total", {{"result", "stale"}});
  ASSERT_NE(stale, nullptr);
  EXPECT_EQ(stale->counter, 0u);
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry
