#include "common/stats/exposition.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

// Registered out of order, with label values that need escaping.
class ExpositionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shard_ = registry_.CreateShard();
    Counter b = *shard_->RegisterCounter("meshlet_rq_total", "Requests by cluster.",
                                         {{"cluster", "b"}, {"code_class", "5xx"}});
    Counter a = *shard_->RegisterCounter("meshlet_rq_total", "Requests by cluster.",
                                         {{"code_class", "2xx"}, {"cluster", "a\\\"\n"}});
    Gauge version =
        *shard_->RegisterGauge("meshlet_config_version", "Applied config\\version.\nSecond line.",
                               {}, GaugeMerge::kGlobal);
    Gauge active = *shard_->RegisterGauge("meshlet_cx_active", "Open connections.");
    Histogram latency = *shard_->RegisterHistogram("meshlet_rq_duration_seconds", "Latency.",
                                                   {{"cluster", "a"}}, {{1000, 250000}, 1e6});
    b.Inc(3);
    a.Inc(12);
    version.Set(42);
    active.Sub(2);
    latency.Record(500);
    latency.Record(1000);
    latency.Record(1001);
    latency.Record(300000);
  }
  void TearDown() override { shard_.reset(); }

  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
};

TEST_F(ExpositionTest, PrometheusGolden) {
  EXPECT_EQ(FormatPrometheus(registry_.Snapshot()),
            R"(# HELP meshlet_config_version Applied config\\version.\nSecond line.
# TYPE meshlet_config_version gauge
meshlet_config_version 42
# HELP meshlet_cx_active Open connections.
# TYPE meshlet_cx_active gauge
meshlet_cx_active -2
# HELP meshlet_rq_duration_seconds Latency.
# TYPE meshlet_rq_duration_seconds histogram
meshlet_rq_duration_seconds_bucket{cluster="a",le="0.001"} 2
meshlet_rq_duration_seconds_bucket{cluster="a",le="0.25"} 3
meshlet_rq_duration_seconds_bucket{cluster="a",le="+Inf"} 4
meshlet_rq_duration_seconds_sum{cluster="a"} 0.302501
meshlet_rq_duration_seconds_count{cluster="a"} 4
# HELP meshlet_rq_total Requests by cluster.
# TYPE meshlet_rq_total counter
meshlet_rq_total{cluster="a\\\"\n",code_class="2xx"} 12
meshlet_rq_total{cluster="b",code_class="5xx"} 3
)");
}

TEST_F(ExpositionTest, TextGolden) {
  EXPECT_EQ(FormatText(registry_.Snapshot()),
            R"(meshlet_config_version: 42
meshlet_cx_active: -2
meshlet_rq_duration_seconds{cluster="a"}: count=4 sum=0.302501 p50=0.0010075 p90=0.3031035 p95=0.3031035 p99=0.3031035 p999=0.3031035
meshlet_rq_total{cluster="a\\\"\n",code_class="2xx"}: 12
meshlet_rq_total{cluster="b",code_class="5xx"}: 3
)");
  EXPECT_EQ(FormatText(registry_.Snapshot(), "_cx_"), "meshlet_cx_active: -2\n");
}

TEST_F(ExpositionTest, JsonGolden) {
  EXPECT_EQ(FormatJson(registry_.Snapshot(), "rq_"),
            R"({"stats":[
{"name":"meshlet_rq_duration_seconds","type":"histogram","labels":{"cluster":"a"},"count":4,"sum":0.302501,"percentiles":{"p50":0.0010075,"p90":0.3031035,"p95":0.3031035,"p99":0.3031035,"p999":0.3031035}},
{"name":"meshlet_rq_total","type":"counter","labels":{"cluster":"a\\\"\n","code_class":"2xx"},"value":12},
{"name":"meshlet_rq_total","type":"counter","labels":{"cluster":"b","code_class":"5xx"},"value":3}
]}
)");
  EXPECT_EQ(FormatJson(registry_.Snapshot(), "no_such"), "{\"stats\":[]}\n");
}

TEST(ExpositionEmptyTest, EmptyHistogramAndEmptyRegistry) {
  StatsRegistry registry;
  EXPECT_EQ(FormatPrometheus(registry.Snapshot()), "");
  ASSERT_TRUE(registry.RegisterHistogram("meshlet_rq_bytes", "Sizes.", {}, {{10}, 1}).ok());
  const StatsSnapshot snapshot = registry.Snapshot();
  EXPECT_EQ(FormatPrometheus(snapshot),
            "# HELP meshlet_rq_bytes Sizes.\n"
            "# TYPE meshlet_rq_bytes histogram\n"
            "meshlet_rq_bytes_bucket{le=\"10\"} 0\n"
            "meshlet_rq_bytes_bucket{le=\"+Inf\"} 0\n"
            "meshlet_rq_bytes_sum 0\n"
            "meshlet_rq_bytes_count 0\n");
  EXPECT_EQ(FormatText(snapshot),
            "meshlet_rq_bytes: count=0 sum=0 p50=nan p90=nan p95=nan p99=nan p999=nan\n");
  EXPECT_EQ(FormatJson(snapshot),
            "{\"stats\":[\n{\"name\":\"meshlet_rq_bytes\",\"type\":\"histogram\",\"labels\":{},"
            "\"count\":0,\"sum\":0,\"percentiles\":{\"p50\":null,\"p90\":null,\"p95\":null,"
            "\"p99\":null,\"p999\":null}}\n]}\n");
}

TEST(ExpositionNumberTest, ScaledBoundsReadLikePrometheusClients) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  Histogram h = *shard->RegisterHistogram("meshlet_rq_duration_seconds", "h", {},
                                          {{1, 100, 250000, 60000000, 5000000000000}, 1e6});
  h.Record(1234567);
  EXPECT_EQ(FormatPrometheus(registry.Snapshot()),
            "# HELP meshlet_rq_duration_seconds h\n"
            "# TYPE meshlet_rq_duration_seconds histogram\n"
            "meshlet_rq_duration_seconds_bucket{le=\"1e-06\"} 0\n"
            "meshlet_rq_duration_seconds_bucket{le=\"0.0001\"} 0\n"
            "meshlet_rq_duration_seconds_bucket{le=\"0.25\"} 0\n"
            "meshlet_rq_duration_seconds_bucket{le=\"60\"} 1\n"
            "meshlet_rq_duration_seconds_bucket{le=\"5e+06\"} 1\n"
            "meshlet_rq_duration_seconds_bucket{le=\"+Inf\"} 1\n"
            "meshlet_rq_duration_seconds_sum 1.234567\n"
            "meshlet_rq_duration_seconds_count 1\n");
  shard.reset();
}

TEST(ExpositionEscapeTest, JsonEscapesControlCharacters) {
  StatsRegistry registry;
  ASSERT_TRUE(registry.RegisterGauge("meshlet_x", "h", {{"v", "a\tb\x01\"\\"}}).ok());
  EXPECT_NE(FormatJson(registry.Snapshot()).find(R"("v":"a\tb\u0001\"\\")"), std::string::npos);
}

// Ten thousand series render in one pass, in order, one sample line each.
TEST(ExpositionScaleTest, TenThousandSeries) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  for (int i = 0; i < 10000; ++i) {
    absl::StatusOr<Counter> c = shard->RegisterCounter(
        absl::StrCat("meshlet_family", i % 100, "_total"), "h", {{"cluster", absl::StrCat(i)}});
    ASSERT_TRUE(c.ok());
    c->Inc(static_cast<uint64_t>(i));
  }
  const std::string text = FormatPrometheus(registry.Snapshot());
  const std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 10000u + 2 * 100);
  EXPECT_EQ(lines[0], "# HELP meshlet_family0_total h");
  EXPECT_EQ(lines[2], "meshlet_family0_total{cluster=\"0\"} 0");
  EXPECT_EQ(lines[3], "meshlet_family0_total{cluster=\"100\"} 100");  // byte order of values
  shard.reset();
}

}  // namespace
}  // namespace meshlet
