#include "tests/bench/loadgen/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::loadgen {
namespace {

// The reference: the value of rank ceil(p/100 × n) in the sorted values.
uint64_t Reference(const std::vector<uint64_t>& sorted, double percentile) {
  return sorted[LatencyHistogram::RankAtPercentile(percentile, sorted.size()) - 1];
}

void ExpectMatchesReference(const std::vector<uint64_t>& values) {
  LatencyHistogram h;
  for (uint64_t v : values) h.Record(v);
  std::vector<uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(h.count(), sorted.size());
  EXPECT_EQ(h.min(), sorted.front());
  EXPECT_EQ(h.max(), sorted.back());
  double sum = 0;
  for (uint64_t v : sorted) sum += static_cast<double>(v);
  EXPECT_NEAR(h.mean(), sum / sorted.size(), 1e-6 * sum / sorted.size());

  std::mt19937_64 random(7);
  std::vector<double> percentiles = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
  for (int i = 0; i < 200; ++i) {
    percentiles.push_back(std::uniform_real_distribution<double>(0, 100)(random));
  }
  for (double p : percentiles) {
    const uint64_t expected = Reference(sorted, p);
    const uint64_t got = h.ValueAtPercentile(p);
    // Never below the true value, and above it by less than 1/1000 of it (3 digits).
    EXPECT_GE(got, expected) << "p" << p;
    EXPECT_LE(static_cast<double>(got - expected), static_cast<double>(expected) / 1000.0)
        << "p" << p << " expected " << expected;
    // Exactly the highest value of the true value's bucket (capped at the max).
    EXPECT_EQ(got, std::min(h.HighestEquivalent(expected), h.max())) << "p" << p;
  }
}

TEST(LatencyHistogramTest, PercentilesMatchASortedReferenceOnUniformData) {
  std::mt19937_64 random(1);
  std::uniform_int_distribution<uint64_t> dist(0, 50'000'000);
  std::vector<uint64_t> values(100'000);
  for (uint64_t& v : values) v = dist(random);
  ExpectMatchesReference(values);
}

TEST(LatencyHistogramTest, PercentilesMatchASortedReferenceOnLogSpreadData) {
  // Latencies from 1 ns to ~100 s, spread evenly in log space with a heavy tail.
  std::mt19937_64 random(2);
  std::uniform_real_distribution<double> exponent(0, 11);
  std::vector<uint64_t> values(100'000);
  for (uint64_t& v : values) v = static_cast<uint64_t>(std::pow(10.0, exponent(random)));
  ExpectMatchesReference(values);
}

TEST(LatencyHistogramTest, PercentilesMatchASortedReferenceOnSmallSamples) {
  std::mt19937_64 random(3);
  std::exponential_distribution<double> exponential(1.0 / 2'000'000);
  for (size_t n : {1, 2, 3, 10, 999, 1000, 1001}) {
    std::vector<uint64_t> values(n);
    for (uint64_t& v : values) v = static_cast<uint64_t>(exponential(random));
    ExpectMatchesReference(values);
  }
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 0; v < 2048; ++v) {
    EXPECT_EQ(h.LowestEquivalent(v), v);
    EXPECT_EQ(h.HighestEquivalent(v), v);
  }
  // Above 2048 buckets widen by powers of two: 1024 per range.
  EXPECT_EQ(h.LowestEquivalent(2049), 2048u);
  EXPECT_EQ(h.HighestEquivalent(2049), 2049u);
  EXPECT_EQ(h.LowestEquivalent(1'000'000), 999'936u);  // 2^19..2^20: 512 wide
  EXPECT_EQ(h.HighestEquivalent(1'000'000), 1'000'447u);
}

TEST(LatencyHistogramTest, RankOfExactProductsDoesNotRoundUp) {
  EXPECT_EQ(LatencyHistogram::RankAtPercentile(99.9, 1000), 999u);
  EXPECT_EQ(LatencyHistogram::RankAtPercentile(99.99, 10000), 9999u);
  EXPECT_EQ(LatencyHistogram::RankAtPercentile(50, 3), 2u);
  EXPECT_EQ(LatencyHistogram::RankAtPercentile(0, 5), 1u);
  EXPECT_EQ(LatencyHistogram::RankAtPercentile(100, 5), 5u);
  EXPECT_EQ(LatencyHistogram::RankAtPercentile(50, 0), 0u);
}

TEST(LatencyHistogramTest, CountAtOrAboveCountsWholeBuckets) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.Record(v * 1'000'000);  // 1..1000 ms
  // 500 ms shares its bucket (262144 ns wide) with lower values: it is left out, 501 ms is not.
  EXPECT_EQ(h.LowestEquivalent(500'000'000), 499'908'608u);
  EXPECT_EQ(h.CountAtOrAbove(500'000'000), 500u);
  EXPECT_EQ(h.CountAtOrAbove(499'908'608), 501u);
  EXPECT_EQ(h.CountAtOrAbove(0), 1000u);
  EXPECT_EQ(h.CountAtOrAbove(2'000'000'000), 0u);
}

TEST(LatencyHistogramTest, ValuesAboveTheRangeSaturate) {
  LatencyHistogram h(/*highest_trackable=*/1'000'000);
  h.Record(5);
  h.Record(5'000'000);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.saturated(), 1u);
  EXPECT_EQ(h.max(), 1'000'000u);
  EXPECT_EQ(h.ValueAtPercentile(100), 1'000'000u);
}

TEST(LatencyHistogramTest, AddMergesAndEmptyReadsZero) {
  LatencyHistogram a;
  LatencyHistogram b;
  EXPECT_EQ(a.ValueAtPercentile(50), 0u);
  EXPECT_EQ(a.min(), 0u);
  a.Record(10);
  b.Record(20);
  b.Record(30);
  a.Add(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.min(), 10u);
  EXPECT_EQ(a.max(), 30u);
  EXPECT_EQ(a.ValueAtPercentile(50), 20u);
  const auto buckets = a.NonEmptyBuckets();
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[1], std::make_pair(uint64_t{20}, uint64_t{1}));
  a.Reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.max(), 0u);
}

}  // namespace
}  // namespace meshlet::loadgen
