#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/stats/histogram_buckets.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

using B = HistogramBuckets;

TEST(HistogramBucketsTest, BoundsTileTheRangeWithoutGaps) {
  EXPECT_EQ(B::LowerBound(0), 0u);
  for (size_t i = 0; i < B::kCount; ++i) {
    SCOPED_TRACE(i);
    ASSERT_LE(B::LowerBound(i), B::UpperBound(i));
    EXPECT_EQ(B::Index(B::LowerBound(i)), i);
    EXPECT_EQ(B::Index(B::UpperBound(i)), i);
    if (i + 1 < B::kCount) {
      EXPECT_EQ(B::UpperBound(i) + 1, B::LowerBound(i + 1));
    }
  }
  EXPECT_EQ(B::UpperBound(B::kCount - 1), B::kMaxTrackable);
}

TEST(HistogramBucketsTest, SmallValuesAreExact) {
  for (uint64_t v = 0; v < 2 * B::kSubBuckets; ++v) {
    EXPECT_EQ(B::Index(v), v);
    EXPECT_EQ(B::Midpoint(B::Index(v)), static_cast<double>(v));
  }
}

TEST(HistogramBucketsTest, WidthIsBoundedRelativeToValue) {
  for (size_t i = 2 * B::kSubBuckets; i < B::kCount; ++i) {
    const double width = static_cast<double>(B::UpperBound(i) - B::LowerBound(i) + 1);
    EXPECT_LE(width / static_cast<double>(B::LowerBound(i)), 1.0 / B::kSubBuckets) << i;
  }
}

TEST(HistogramBucketsTest, IndexIsMonotonicAndClampsLargeValues) {
  size_t previous = 0;
  for (uint64_t v = 0; v < 200000; ++v) {
    const size_t index = B::Index(v);
    ASSERT_GE(index, previous);
    ASSERT_LE(B::LowerBound(index), v);
    ASSERT_GE(B::UpperBound(index), v);
    previous = index;
  }
  EXPECT_EQ(B::Index(B::kMaxTrackable + 1), B::kCount - 1);
  EXPECT_EQ(B::Index(UINT64_MAX), B::kCount - 1);
}

TEST(HistogramLayoutTest, RejectsBadOptions) {
  EXPECT_EQ(HistogramLayout::Create({1, 1}, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HistogramLayout::Create({5, 2}, 1).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint64_t> many(HistogramLayout::kMaxBounds + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = i + 1;
  EXPECT_EQ(HistogramLayout::Create(many, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HistogramLayout::Create({1}, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HistogramLayout::Create({1}, NAN).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(HistogramLayout::Create({}, 1).ok());
}

TEST(HistogramLayoutTest, MarksBoundsThatSplitAFineBucket) {
  absl::StatusOr<HistogramLayout> layout = HistogramLayout::Create({31, 1000, 1023}, 1);
  ASSERT_TRUE(layout.ok());
  EXPECT_TRUE(layout->bound_aligned(0));   // width-1 bucket
  EXPECT_FALSE(layout->bound_aligned(1));  // inside [992, 1023]
  EXPECT_TRUE(layout->bound_aligned(2));
  EXPECT_EQ(layout->first_split(B::Index(1000)), 2);
  EXPECT_EQ(layout->first_split(B::Index(31)), 0);
}

// Records `values` through a shard and returns the merged snapshot.
HistogramSnapshot RecordAll(const std::vector<uint64_t>& values, HistogramOptions options = {}) {
  StatsRegistry registry;
  HistogramSnapshot snapshot;
  {
    std::unique_ptr<StatsShard> shard = registry.CreateShard();
    absl::StatusOr<HistogramId> id =
        registry.RegisterHistogram("meshlet_test_value", "test", {}, options);
    EXPECT_TRUE(id.ok()) << id.status();
    Histogram histogram = shard->Get(*id);
    for (uint64_t v : values) histogram.Record(v);
    snapshot = registry.HistogramValue(*id);
  }
  return snapshot;
}

// The nearest-rank percentile over exact data, with q given in thousandths to stay exact.
uint64_t ExactPercentile(std::vector<uint64_t> sorted, uint64_t q_thousandths) {
  const uint64_t n = sorted.size();
  const uint64_t rank = std::max<uint64_t>(1, (q_thousandths * n + 999) / 1000);
  return sorted[rank - 1];
}

void ExpectPercentilesWithinBound(std::vector<uint64_t> values) {
  const HistogramSnapshot snapshot = RecordAll(values);
  std::sort(values.begin(), values.end());
  ASSERT_EQ(snapshot.count(), values.size());
  for (uint64_t q : {0, 1, 10, 250, 500, 900, 950, 990, 999, 1000}) {
    const double exact = static_cast<double>(ExactPercentile(values, q));
    const double estimate = snapshot.Percentile(static_cast<double>(q) / 1000);
    EXPECT_LE(std::abs(estimate - exact), exact * B::kMaxRelativeError)
        << "q=" << q / 1000.0 << " exact=" << exact << " estimate=" << estimate;
  }
}

TEST(HistogramPercentileTest, UniformWithinDocumentedError) {
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= 100000; ++v) values.push_back(v * 7);
  ExpectPercentilesWithinBound(values);
}

TEST(HistogramPercentileTest, ExponentialWithinDocumentedError) {
  std::mt19937_64 rng(42);
  std::exponential_distribution<double> latency(1.0 / 2000);  // mean 2 ms in µs
  std::vector<uint64_t> values;
  for (int i = 0; i < 50000; ++i) values.push_back(static_cast<uint64_t>(latency(rng)));
  ExpectPercentilesWithinBound(values);
}

TEST(HistogramPercentileTest, LogNormalLongTailWithinDocumentedError) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> latency(8, 2);  // ~3 ms median, tail into seconds
  std::vector<uint64_t> values;
  for (int i = 0; i < 50000; ++i) values.push_back(static_cast<uint64_t>(latency(rng)));
  ExpectPercentilesWithinBound(values);
}

TEST(HistogramPercentileTest, BimodalAndConstant) {
  std::vector<uint64_t> bimodal;
  for (int i = 0; i < 900; ++i) bimodal.push_back(150);
  for (int i = 0; i < 100; ++i) bimodal.push_back(250000);
  ExpectPercentilesWithinBound(bimodal);
  ExpectPercentilesWithinBound(std::vector<uint64_t>(1000, 12345));
  ExpectPercentilesWithinBound({0, 0, 0, 1});
}

TEST(HistogramPercentileTest, RankIsNotSkippedByFloatingPoint) {
  // 0.9 * 10 evaluates to 9.000000000000002; the 9th sample must still be chosen.
  std::vector<uint64_t> values = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const HistogramSnapshot snapshot = RecordAll(values);
  EXPECT_EQ(snapshot.Percentile(0.9), 9);
  EXPECT_EQ(snapshot.Percentile(0.5), 5);
  EXPECT_EQ(snapshot.Percentile(0), 1);
  EXPECT_EQ(snapshot.Percentile(1), 10);
}

TEST(HistogramPercentileTest, EmptyIsNan) {
  EXPECT_TRUE(std::isnan(RecordAll({}).Percentile(0.5)));
}

TEST(HistogramPercentileTest, ValuesPastTheRangeSaturateButSumStaysExact) {
  const uint64_t huge = uint64_t{1} << 50;
  const HistogramSnapshot snapshot = RecordAll({huge, 1});
  EXPECT_EQ(snapshot.sum(), huge + 1);
  EXPECT_EQ(snapshot.Percentile(1), B::Midpoint(B::kCount - 1));
}

TEST(HistogramCumulativeTest, PrometheusBucketsAreExact) {
  // Aligned (31, 1023), splitting (1000, 5000), two bounds inside one fine bucket (100000 and
  // 100001), and bounds beyond the tracked range.
  const std::vector<uint64_t> bounds = {
      31, 1000, 1023, 5000, 100000, 100001, B::kMaxTrackable + 5, uint64_t{1} << 45};
  std::mt19937_64 rng(1);
  std::vector<uint64_t> values;
  for (int i = 0; i < 20000; ++i) {
    const int shift = static_cast<int>(rng() % 48);
    values.push_back(rng() >> (16 + shift));
  }
  for (uint64_t b : bounds) {
    values.push_back(b);
    values.push_back(b + 1);
    values.push_back(b - 1);
  }
  const HistogramSnapshot snapshot = RecordAll(values, {bounds, 1});
  ASSERT_EQ(snapshot.cumulative_counts().size(), bounds.size());
  for (size_t j = 0; j < bounds.size(); ++j) {
    const auto expected = static_cast<uint64_t>(
        std::count_if(values.begin(), values.end(), [&](uint64_t v) { return v <= bounds[j]; }));
    EXPECT_EQ(snapshot.cumulative_counts()[j], expected) << "le=" << bounds[j];
  }
}

}  // namespace
}  // namespace meshlet
