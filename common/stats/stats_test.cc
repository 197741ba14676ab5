#include "common/stats/stats.h"

#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/stats/names.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

MATCHER_P2(StatusIs, code, substring, "") {
  return arg.code() == code && absl::StrContains(arg.message(), substring);
}

TEST(StatsRegistryTest, CounterGaugeHistogramRoundTrip) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<Counter> counter = shard->RegisterCounter("meshlet_rq_total", "Requests.");
  absl::StatusOr<Gauge> gauge = shard->RegisterGauge("meshlet_cx_active", "Connections.");
  absl::StatusOr<Histogram> histogram =
      shard->RegisterHistogram("meshlet_rq_duration_seconds", "Latency.", {}, {{10, 100}, 1e6});
  ASSERT_TRUE(counter.ok() && gauge.ok() && histogram.ok());
  counter->Inc();
  counter->Inc(41);
  gauge->Add(10);
  gauge->Sub(3);
  gauge->Dec();
  histogram->Record(5);
  histogram->Record(50);
  histogram->Record(5000);

  const StatsSnapshot snapshot = registry.Snapshot();
  ASSERT_EQ(snapshot.series.size(), 3u);
  EXPECT_EQ(snapshot.Find("meshlet_rq_total")->counter, 42u);
  EXPECT_EQ(snapshot.Find("meshlet_cx_active")->gauge, 6);
  const SeriesSnapshot* h = snapshot.Find("meshlet_rq_duration_seconds");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.count(), 3u);
  EXPECT_EQ(h->histogram.sum(), 5055u);
  EXPECT_THAT(h->histogram.cumulative_counts(), ::testing::ElementsAre(1, 2));
}

TEST(StatsRegistryTest, DuplicateRegistrationReturnsTheSameSeries) {
  StatsRegistry registry;
  absl::StatusOr<CounterId> a =
      registry.RegisterCounter("meshlet_rq_total", "Requests.", {{"cluster", "x"}, {"code", "2"}});
  absl::StatusOr<CounterId> b = registry.RegisterCounter("meshlet_rq_total", "Other help.",
                                                         {{"code", "2"}, {"cluster", "x"}});
  absl::StatusOr<CounterId> c =
      registry.RegisterCounter("meshlet_rq_total", "Requests.", {{"cluster", "y"}, {"code", "2"}});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(*a == *c);
  EXPECT_EQ(registry.series_count(), 2u);

  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  shard->Get(*a).Inc();
  shard->Get(*b).Inc();  // same cells
  EXPECT_EQ(registry.CounterValue(*a), 2u);
  EXPECT_EQ(registry.CounterValue(*c), 0u);
  {
    const StatsSnapshot snapshot = registry.Snapshot();
    EXPECT_EQ(snapshot.Find("meshlet_rq_total", {{"cluster", "x"}, {"code", "2"}})->help,
              "Requests.");
  }
}

TEST(StatsRegistryTest, ConflictingRegistrationsAreErrors) {
  StatsRegistry registry;
  ASSERT_TRUE(registry.RegisterGauge("meshlet_cx_active", "h", {{"cluster", "x"}}).ok());
  ASSERT_TRUE(registry.RegisterHistogram("meshlet_rq_bytes", "h").ok());

  EXPECT_THAT(registry.RegisterHistogram("meshlet_cx_active", "h", {{"cluster", "x"}}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "already a gauge, not a histogram"));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "h", {{"zone", "x"}}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "has labels {cluster}"));
  EXPECT_THAT(
      registry.RegisterGauge("meshlet_cx_active", "h", {{"cluster", "x"}, {"zone", "a"}}).status(),
      StatusIs(absl::StatusCode::kAlreadyExists, "has labels {cluster}"));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "h", {}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "has labels {cluster}"));
  EXPECT_THAT(
      registry.RegisterGauge("meshlet_cx_active", "h", {{"cluster", "y"}}, GaugeMerge::kGlobal)
          .status(),
      StatusIs(absl::StatusCode::kAlreadyExists, "merge mode"));
  EXPECT_THAT(registry.RegisterHistogram("meshlet_rq_bytes", "h", {}, {{1, 2, 3}, 1}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "other bounds or divisor"));
  EXPECT_EQ(registry.series_count(), 2u);
}

TEST(StatsRegistryTest, InvalidDeclarationsAreRejectedWithClearErrors) {
  StatsRegistry registry;
  struct Case {
    std::string name;
    MetricType type;
    std::string message;
  };
  const Case cases[] = {
      {"", MetricType::kGauge, "is empty"},
      {"meshlet_rqTotal_total", MetricType::kCounter, "lower snake_case"},
      {"meshlet:rq_total", MetricType::kCounter, "reserved for recording rules"},
      {"meshlet-rq_total", MetricType::kCounter, "invalid character at offset 7"},
      {"9meshlet_total", MetricType::kCounter, "must not start with a digit"},
      {"envoy_rq_total", MetricType::kCounter, "must start with \"meshlet_\""},
      {"meshlet_", MetricType::kGauge, "must start with \"meshlet_\""},
      {"meshlet_rq", MetricType::kCounter, "must end in \"_total\""},
      {"meshlet_cx_total", MetricType::kGauge, "must not end in \"_total\""},
      {"meshlet_rq_count", MetricType::kGauge, "must not end in \"_count\""},
      {"meshlet_rq_bucket", MetricType::kHistogram, "must not end in \"_bucket\""},
      {"meshlet_rq_sum", MetricType::kGauge, "must not end in \"_sum\""},
      {"meshlet_counter_total", MetricType::kCounter, "must not contain its type \"counter\""},
      {"meshlet_gauge_level", MetricType::kGauge, "must not contain its type \"gauge\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::Status status;
    switch (c.type) {
      case MetricType::kCounter:
        status = registry.RegisterCounter(c.name, "h").status();
        break;
      case MetricType::kGauge:
        status = registry.RegisterGauge(c.name, "h").status();
        break;
      case MetricType::kHistogram:
        status = registry.RegisterHistogram(c.name, "h").status();
        break;
    }
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  }

  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "help text must not be empty"));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "bad \xff").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid UTF-8"));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "h", {{"Cluster", "x"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "label name \"Cluster\""));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "h", {{"__name__", "x"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "reserved"));
  EXPECT_THAT(registry.RegisterHistogram("meshlet_rq_bytes", "h", {{"le", "1"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "reserved for histogram buckets"));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "h", {{"a", "1"}, {"a", "2"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "label \"a\" given twice"));
  EXPECT_THAT(registry.RegisterGauge("meshlet_cx_active", "h", {{"a", "\xc0\xaf"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "value of label \"a\" is not valid"));
  EXPECT_THAT(registry.RegisterHistogram("meshlet_rq_bytes", "h", {}, {{2, 1}, 1}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "strictly increasing"));
  // `le` is only reserved for histograms; gauges may use it.
  EXPECT_TRUE(registry.RegisterGauge("meshlet_cx_active", "h", {{"le", "x"}}).ok());
  EXPECT_EQ(registry.series_count(), 1u);
}

TEST(StatsRegistryTest, CustomPrefixAndSeriesLimit) {
  StatsRegistry registry({.name_prefix = "cp_", .max_series = 2});
  EXPECT_TRUE(registry.RegisterCounter("cp_a_total", "h", {{"k", "1"}}).ok());
  EXPECT_TRUE(registry.RegisterCounter("cp_a_total", "h", {{"k", "2"}}).ok());
  EXPECT_TRUE(registry.RegisterCounter("cp_a_total", "h", {{"k", "1"}}).ok());  // existing
  EXPECT_THAT(registry.RegisterCounter("cp_a_total", "h", {{"k", "3"}}).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "2-series limit"));
  // A refused new metric does not keep its name reserved for its type.
  EXPECT_THAT(registry.RegisterGauge("cp_b", "h").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "2-series limit"));
  EXPECT_THAT(registry.RegisterHistogram("cp_b", "h").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "2-series limit"));
}

// Per-cluster series grow with the configuration; however many there are, the process's fixed
// series still register, and each refusal is counted.
TEST(StatsRegistryTest, ScopedSeriesHaveTheirOwnBudget) {
  StatsRegistry registry({.max_series = 2, .max_scoped_series = 3});
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<CounterId> id = registry.RegisterCounter("meshlet_upstream_rq_total", "h",
                                                            {{"cluster", absl::StrCat("c", i)}});
    if (i < 3) {
      EXPECT_TRUE(id.ok()) << id.status();
    } else {
      EXPECT_THAT(id.status(),
                  StatusIs(absl::StatusCode::kResourceExhausted, "3-series limit of cluster"));
    }
  }
  // The fixed series (a listener's) are not starved by the clusters.
  EXPECT_TRUE(registry.RegisterCounter("meshlet_listener_cx_total", "h", {{"listener", "a"}}).ok());
  EXPECT_TRUE(registry.RegisterCounter("meshlet_listener_cx_total", "h", {{"listener", "b"}}).ok());
  EXPECT_THAT(
      registry.RegisterCounter("meshlet_listener_cx_total", "h", {{"listener", "c"}}).status(),
      StatusIs(absl::StatusCode::kResourceExhausted, "2-series limit"));
  EXPECT_EQ(registry.scoped_series_count(), 3u);
  EXPECT_EQ(registry.fixed_series_count(), 2u);

  const StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* scoped =
      snapshot.Find("meshlet_stats_series_refused_total", {{"budget", "scoped"}});
  const SeriesSnapshot* fixed =
      snapshot.Find("meshlet_stats_series_refused_total", {{"budget", "fixed"}});
  ASSERT_NE(scoped, nullptr);
  ASSERT_NE(fixed, nullptr);
  EXPECT_EQ(scoped->counter, 2u);
  EXPECT_EQ(fixed->counter, 1u);
  // The refusal counters are in neither budget.
  EXPECT_EQ(registry.series_count(), 7u);
}

TEST(StatsRegistryTest, EmptyScopedLabelPutsEverySeriesInOneBudget) {
  StatsRegistry registry({.max_series = 1, .scoped_label = ""});
  EXPECT_TRUE(registry.RegisterCounter("meshlet_a_total", "h", {{"cluster", "x"}}).ok());
  EXPECT_THAT(registry.RegisterCounter("meshlet_b_total", "h").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "1-series limit"));
}

TEST(Utf8Test, AcceptsValidAndRejectsMalformed) {
  using stats_internal::IsValidUtf8;
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(StatsShardTest, DestroyedShardKeepsItsContribution) {
  StatsRegistry registry;
  absl::StatusOr<CounterId> rq = registry.RegisterCounter("meshlet_rq_total", "h");
  absl::StatusOr<GaugeId> active = registry.RegisterGauge("meshlet_rq_active", "h");
  absl::StatusOr<HistogramId> size = registry.RegisterHistogram("meshlet_rq_bytes", "h");
  ASSERT_TRUE(rq.ok() && active.ok() && size.ok());
  std::unique_ptr<StatsShard> a = registry.CreateShard();
  std::unique_ptr<StatsShard> b = registry.CreateShard();
  a->Get(*rq).Inc(5);
  b->Get(*rq).Inc(7);
  a->Get(*active).Add(3);
  b->Get(*active).Sub(1);  // a request that started on a and finished on b still balances
  a->Get(*size).Record(100);
  b->Get(*size).Record(200);
  a.reset();
  EXPECT_EQ(registry.CounterValue(*rq), 12u);
  EXPECT_EQ(registry.GaugeValue(*active), 2);
  EXPECT_EQ(registry.HistogramValue(*size).count(), 2u);
  EXPECT_EQ(registry.HistogramValue(*size).sum(), 300u);
  b.reset();
  std::unique_ptr<StatsShard> c = registry.CreateShard();
  c->Get(*rq).Inc();
  EXPECT_EQ(registry.CounterValue(*rq), 13u);
  EXPECT_EQ(registry.GaugeValue(*active), 2);
}

// A shard's cells cost what its series used: a histogram holds its sum and page slots, and only
// the pages of fine buckets its samples landed in. Each histogram here records one sample (no
// split counter), so it costs HistogramCells::kShardCells cells and one page, ~440 bytes; when
// every histogram held all its fine buckets, sum and split counters it cost 4 936 bytes (a
// cluster's counters and two histograms, 10 KB).
TEST(StatsShardTest, LightlyUsedHistogramsCostLittle) {
  using stats_internal::HistogramCells;
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  constexpr int kClusters = 100;
  for (int i = 0; i < kClusters; ++i) {
    const LabelSet labels = {{"cluster", absl::StrCat("c", i)}};
    for (const char* name : {"meshlet_a_total", "meshlet_b_total", "meshlet_c_total"}) {
      ASSERT_TRUE(shard->RegisterCounter(name, "h", labels).ok());
    }
    for (const char* outcome : {"success", "failure"}) {
      LabelSet histogram_labels = labels;
      histogram_labels.emplace_back("outcome", outcome);
      absl::StatusOr<Histogram> h =
          shard->RegisterHistogram("meshlet_d_seconds", "h", histogram_labels);
      ASSERT_TRUE(h.ok());
      h->Record(static_cast<uint64_t>(i));
    }
  }
  const size_t per_histogram =
      HistogramCells::kShardCells * sizeof(uint64_t) + HistogramCells::PageBytes(16);
  const size_t per_cluster = 3 * sizeof(uint64_t) + 2 * per_histogram;
  std::printf("%zu bytes of cells for %d clusters (%zu a histogram)\n", shard->cell_bytes(),
              kClusters, per_histogram);
  EXPECT_LE(per_histogram, 512u);
  EXPECT_GE(shard->cell_bytes(), kClusters * per_cluster);
  // The counters' and histograms' cells cut from blocks, the last one partly used.
  EXPECT_LE(shard->cell_bytes(),
            kClusters * per_cluster + stats_internal::CellArena::kBlockCells * 8);
  StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* seven =
      snapshot.Find("meshlet_d_seconds", {{"cluster", "c7"}, {"outcome", "failure"}});
  ASSERT_NE(seven, nullptr);
  EXPECT_EQ(seven->histogram.sum(), 7u);
  EXPECT_EQ(seven->histogram.count(), 1u);
  EXPECT_EQ(seven->histogram.Percentile(0.5), 7.0);
}

// Pages come as samples land: a sample in a bucket a Prometheus bound splits adds the split
// counters; the merged view, and what a destroyed shard leaves behind, are the dense cells.
TEST(StatsShardTest, HistogramPagesMergeAndRetireExactly) {
  using stats_internal::HistogramCells;
  StatsRegistry registry;
  std::unique_ptr<StatsShard> a = registry.CreateShard();
  std::unique_ptr<StatsShard> b = registry.CreateShard();
  const HistogramOptions options{{31, 1000, 5000}, 1};
  absl::StatusOr<Histogram> ha = a->RegisterHistogram("meshlet_x_bytes", "h", {}, options);
  absl::StatusOr<Histogram> hb = b->RegisterHistogram("meshlet_x_bytes", "h", {}, options);
  ASSERT_TRUE(ha.ok() && hb.ok());
  const size_t empty = a->cell_bytes();
  ha->Record(3);
  EXPECT_EQ(a->cell_bytes(), empty + HistogramCells::PageBytes(HistogramCells::kPageCells));
  ha->Record(4);  // same page
  EXPECT_EQ(a->cell_bytes(), empty + HistogramCells::PageBytes(HistogramCells::kPageCells));
  ha->Record(999);  // 992..1023: split by 1000
  EXPECT_EQ(a->cell_bytes(), empty + 2 * HistogramCells::PageBytes(HistogramCells::kPageCells) +
                                 HistogramCells::PageBytes(options.bounds.size()));
  hb->Record(1001);
  hb->Record(4999);
  hb->Record(1u << 30);
  auto check = [&] {
    const StatsSnapshot snapshot = registry.Snapshot();
    const HistogramSnapshot& h = snapshot.Find("meshlet_x_bytes")->histogram;
    EXPECT_EQ(h.count(), 6u);
    EXPECT_EQ(h.sum(), 3u + 4 + 999 + 1001 + 4999 + (1u << 30));
    EXPECT_EQ(h.cumulative_counts(), (std::vector<uint64_t>{2, 3, 5}));
  };
  check();
  b.reset();
  check();
  a.reset();
  check();
}

TEST(StatsShardTest, GlobalGaugeIsOneValue) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> a = registry.CreateShard();
  std::unique_ptr<StatsShard> b = registry.CreateShard();
  absl::StatusOr<Gauge> ga =
      a->RegisterGauge("meshlet_config_version", "h", {}, GaugeMerge::kGlobal);
  absl::StatusOr<Gauge> gb =
      b->RegisterGauge("meshlet_config_version", "h", {}, GaugeMerge::kGlobal);
  ASSERT_TRUE(ga.ok() && gb.ok());
  ga->Set(7);
  gb->Set(9);
  {
    const StatsSnapshot snapshot = registry.Snapshot();
    EXPECT_EQ(snapshot.Find("meshlet_config_version")->gauge, 9);
  }
  ga->Add(1);
  a.reset();  // not folded twice
  {
    const StatsSnapshot snapshot = registry.Snapshot();
    EXPECT_EQ(snapshot.Find("meshlet_config_version")->gauge, 10);
  }
}

TEST(StatsShardTest, SumGaugeSetSetsThisShardsContribution) {
  StatsRegistry registry;
  absl::StatusOr<GaugeId> id = registry.RegisterGauge("meshlet_pool_size", "h");
  ASSERT_TRUE(id.ok());
  std::unique_ptr<StatsShard> a = registry.CreateShard();
  std::unique_ptr<StatsShard> b = registry.CreateShard();
  a->Get(*id).Set(4);
  b->Get(*id).Set(6);
  a->Get(*id).Set(5);
  EXPECT_EQ(registry.GaugeValue(*id), 11);
}

// What the registry keeps per series (its label values, index and bookkeeping; cells are the
// shards' and not counted here), for the sidecar's case: a cluster's ~20 series share one
// ~45-character cluster name. Each series used to store its values three times (an index key, a
// LabelSet, the rendered text) in separately allocated strings and map nodes: 590 bytes here.
// Then a distinct label set was stored once (its LabelSet and rendered text, ~350 bytes) and its
// series pointed at it: 91 bytes per series sharing one, 448 not. Now each distinct label value is
// stored once and a series keeps pointers to its values, so a cluster's series that differ in a
// second label (`code_class`, `threshold`) no longer bring a label set of their own.
TEST(StatsRegistryTest, SeriesCostLittleMemory) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "mallinfo2 does not see ASan's heap";
#else
  constexpr int kClusters = 500;
  constexpr int kFamilies = 20;
  auto heap_in_use = [] {
    const struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
  };
  std::vector<std::string> names;
  for (int f = 0; f < kFamilies; ++f) names.push_back(absl::StrCat("meshlet_family_", f, "_total"));
  auto cluster = [](int i) {
    return absl::StrCat("outbound|8080||service-", 10000 + i, ".team-payments.svc");
  };
  // Bytes per series for kClusters × kFamilies series; `distinct`: no two share a label set.
  auto bytes_per_series = [&](bool distinct) {
    std::vector<LabelSet> label_sets;
    for (int i = 0; i < kClusters; ++i) {
      for (int f = 0; f < kFamilies; ++f) {
        label_sets.push_back({{"cluster", cluster(distinct ? i * kFamilies + f : i)}});
      }
    }
    const size_t before = heap_in_use();
    StatsRegistry registry;
    for (int i = 0; i < kClusters; ++i) {
      for (int f = 0; f < kFamilies; ++f) {
        EXPECT_TRUE(registry.RegisterCounter(names[f], "h", label_sets[i * kFamilies + f]).ok());
      }
    }
    const size_t per_series = (heap_in_use() - before) / (kClusters * kFamilies);
    // Still found by its labels, once.
    EXPECT_EQ(*registry.RegisterCounter(names[3], "h", label_sets[7 * kFamilies + 3]),
              *registry.RegisterCounter(names[3], "h", label_sets[7 * kFamilies + 3]));
    EXPECT_EQ(registry.series_count(), static_cast<size_t>(kClusters * kFamilies));
    return per_series;
  };
  const size_t shared = bytes_per_series(false);
  const size_t distinct = bytes_per_series(true);
  std::printf("bytes per series: %zu sharing label sets, %zu not\n", shared, distinct);
  EXPECT_LE(shared, 80u);
  EXPECT_LE(distinct, 300u);
#endif
}

// A collector's gauges are read, not registered: they hold no series, appear in every snapshot
// with current values, sorted among the registered families, and stop with the handle.
TEST(StatsRegistryTest, CollectedGaugesAreComputedAtEachRead) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  ASSERT_TRUE(shard->RegisterCounter("meshlet_a_total", "h").ok());
  ASSERT_TRUE(shard->RegisterGauge("meshlet_z_active", "h").ok());
  const size_t registered = registry.series_count();
  int64_t value = 7;
  absl::StatusOr<StatsRegistry::CollectorHandle> handle = registry.AddGaugeCollector(
      "meshlet_m_remaining", "Left.", {"cluster", "threshold"}, [&](GaugeRows& rows) {
        rows.Add({"b", "max_requests"}, value);
        rows.Add({"a", "max_retries"}, 2);
        rows.Add({"a", "max_connections"}, 1);
        rows.Add({"a"}, 9);          // one value short: dropped
        rows.Add({"a", "\xff"}, 9);  // not UTF-8: dropped
      });
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_EQ(registry.series_count(), registered);
  {
    const StatsSnapshot snapshot = registry.Snapshot();
    std::vector<std::string> order;
    for (const SeriesSnapshot& series : snapshot.series) {
      std::string labels;
      AppendPrometheusLabels(&labels, series.labels);
      order.push_back(absl::StrCat(series.name, "{", labels, "}"));
    }
    EXPECT_THAT(order, ::testing::ElementsAre(
                           "meshlet_a_total{}",
                           "meshlet_m_remaining{cluster=\"a\",threshold=\"max_connections\"}",
                           "meshlet_m_remaining{cluster=\"a\",threshold=\"max_retries\"}",
                           "meshlet_m_remaining{cluster=\"b\",threshold=\"max_requests\"}",
                           "meshlet_stats_computed_series_dropped_total{}", "meshlet_z_active{}"));
    const SeriesSnapshot* b =
        snapshot.Find("meshlet_m_remaining", {{"threshold", "max_requests"}, {"cluster", "b"}});
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->type, MetricType::kGauge);
    EXPECT_EQ(b->gauge, 7);
    EXPECT_EQ(b->help, "Left.");
    EXPECT_EQ(snapshot.Find("meshlet_stats_computed_series_dropped_total")->counter, 2u);
    // A copy of the snapshot keeps the label text alive.
    StatsSnapshot copy = snapshot;
    value = 8;
    EXPECT_EQ(copy.series[3].labels[0].second, "b");
  }
  {
    const StatsSnapshot snapshot = registry.Snapshot();
    EXPECT_EQ(
        snapshot.Find("meshlet_m_remaining", {{"cluster", "b"}, {"threshold", "max_requests"}})
            ->gauge,
        8);
  }
  EXPECT_THAT(shard->RegisterGauge("meshlet_m_remaining", "h").status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "computed when read"));
  EXPECT_THAT(registry.AddGaugeCollector("meshlet_z_active", "h", {}, [](GaugeRows&) {}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "already registered"));
  EXPECT_THAT(registry.AddGaugeCollector("meshlet_n_total", "h", {}, [](GaugeRows&) {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ""));
  *handle = StatsRegistry::CollectorHandle();
  const StatsSnapshot after = registry.Snapshot();
  EXPECT_EQ(after.Find("meshlet_m_remaining", {{"cluster", "b"}, {"threshold", "max_requests"}}),
            nullptr);
}

// The handle may outlive the registry.
TEST(StatsRegistryTest, CollectorHandleOutlivesRegistry) {
  StatsRegistry::CollectorHandle handle;
  {
    StatsRegistry registry;
    absl::StatusOr<StatsRegistry::CollectorHandle> added = registry.AddGaugeCollector(
        "meshlet_m_remaining", "h", {}, [](GaugeRows& rows) { rows.Add({}, 1); });
    ASSERT_TRUE(added.ok());
    handle = *std::move(added);
    const StatsSnapshot snapshot = registry.Snapshot();
    EXPECT_EQ(snapshot.Find("meshlet_m_remaining")->gauge, 1);
  }
  EXPECT_TRUE(handle.active());
}

TEST(StatsShardTest, GaugeGuardBalances) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  absl::StatusOr<Gauge> active = shard->RegisterGauge("meshlet_rq_active", "h");
  ASSERT_TRUE(active.ok());
  {
    GaugeGuard one(*active);
    GaugeGuard two(*active);
    GaugeGuard moved(std::move(two));
    {
      const StatsSnapshot snapshot = registry.Snapshot();
      EXPECT_EQ(snapshot.Find("meshlet_rq_active")->gauge, 2);
    }
  }
  {
    const StatsSnapshot snapshot = registry.Snapshot();
    EXPECT_EQ(snapshot.Find("meshlet_rq_active")->gauge, 0);
  }
}

TEST(StatsShardTest, DefaultHandlesAreHarmless) {
  Counter counter;
  Gauge gauge;
  Histogram histogram;
  counter.Inc();
  gauge.Set(3);
  gauge.Dec();
  histogram.Record(12345);
  histogram.Record(UINT64_MAX);
}

TEST(StatsShardTest, SharedShardAcceptsManyWriters) {
  StatsRegistry registry;
  absl::StatusOr<Counter> counter =
      registry.shared_shard().RegisterCounter("meshlet_events_total", "h");
  absl::StatusOr<Histogram> histogram =
      registry.shared_shard().RegisterHistogram("meshlet_event_bytes", "h", {}, {{1000}, 1});
  ASSERT_TRUE(counter.ok() && histogram.ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        counter->Inc();
        histogram->Record(static_cast<uint64_t>(i % 2000));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(snapshot.Find("meshlet_events_total")->counter, uint64_t{kThreads} * kPerThread);
  const HistogramSnapshot& h = snapshot.Find("meshlet_event_bytes")->histogram;
  EXPECT_EQ(h.count(), uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(h.cumulative_counts()[0], uint64_t{kThreads} * (kPerThread / 2000) * 1001);
}

TEST(StatsShardDeathTest, ShardMustNotOutliveRegistry) {
  EXPECT_DEATH(
      {
        auto registry = std::make_unique<StatsRegistry>();
        StatsShard* leaked = registry->CreateShard().release();
        (void)leaked;
        registry.reset();
      },
      "outlive their StatsRegistry");
}

// Several workers write their own shards while the main thread reads and another thread keeps
// registering: totals must be exact and counters must never go backwards.
TEST(StatsConcurrencyTest, ShardsMergeExactlyUnderConcurrentReadsAndRegistration) {
  constexpr int kWorkers = 6;
  constexpr uint64_t kIterations = 50000;
  StatsRegistry registry;
  absl::StatusOr<CounterId> rq =
      registry.RegisterCounter("meshlet_rq_total", "h", {{"cluster", "a"}});
  absl::StatusOr<GaugeId> active = registry.RegisterGauge("meshlet_rq_active", "h");
  absl::StatusOr<HistogramId> latency = registry.RegisterHistogram(
      "meshlet_rq_duration_seconds", "h", {{"cluster", "a"}}, {{1000, 5000}, 1e6});
  ASSERT_TRUE(rq.ok() && active.ok() && latency.ok());

  std::atomic<int> running{kWorkers};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::unique_ptr<StatsShard> shard = registry.CreateShard();
      Counter counter = shard->Get(*rq);
      Gauge gauge = shard->Get(*active);
      Histogram histogram = shard->Get(*latency);
      for (uint64_t i = 0; i < kIterations; ++i) {
        GaugeGuard in_flight(gauge);
        counter.Inc();
        histogram.Record(i % 10000);
        if (i % 10000 == 0) {
          // Config change on a worker: new series while others record and the admin reads.
          absl::StatusOr<Counter> extra = shard->RegisterCounter(
              "meshlet_rq_total", "h", {{"cluster", absl::StrCat("w", w, "_", i)}});
          ASSERT_TRUE(extra.ok());
          extra->Inc();
        }
      }
      gauge.Add(w);  // left behind on purpose: survives the shard
      running.fetch_sub(1);
    });
  }
  uint64_t last = 0;
  int reads = 0;
  while (running.load() > 0 || reads < 3) {
    const uint64_t now = registry.CounterValue(*rq);
    ASSERT_GE(now, last);
    last = now;
    const StatsSnapshot snapshot = registry.Snapshot();
    const HistogramSnapshot& h =
        snapshot.Find("meshlet_rq_duration_seconds", {{"cluster", "a"}})->histogram;
    ASSERT_LE(h.cumulative_counts()[0], h.cumulative_counts()[1]);
    ASSERT_LE(h.cumulative_counts()[1], h.count());
    ++reads;
  }
  for (std::thread& t : workers) t.join();

  const StatsSnapshot snapshot = registry.Snapshot();
  const uint64_t total = kWorkers * kIterations;
  EXPECT_EQ(snapshot.Find("meshlet_rq_total", {{"cluster", "a"}})->counter, total);
  EXPECT_EQ(snapshot.Find("meshlet_rq_active")->gauge, 0 + 1 + 2 + 3 + 4 + 5);
  const HistogramSnapshot& h =
      snapshot.Find("meshlet_rq_duration_seconds", {{"cluster", "a"}})->histogram;
  EXPECT_EQ(h.count(), total);
  EXPECT_EQ(h.sum(), kWorkers * (kIterations / 10000) * (9999 * 10000 / 2));
  EXPECT_EQ(h.cumulative_counts()[0], kWorkers * (kIterations / 10000) * 1001);
  EXPECT_EQ(h.cumulative_counts()[1], kWorkers * (kIterations / 10000) * 5001);
  EXPECT_EQ(snapshot.series.size(), 3u + kWorkers * (kIterations / 10000));
  EXPECT_EQ(snapshot.Find("meshlet_rq_total", {{"cluster", "w3_40000"}})->counter, 1u);
}

}  // namespace
}  // namespace meshlet
