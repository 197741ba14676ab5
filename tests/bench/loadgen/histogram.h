#pragma once

// LatencyHistogram: a log-linear histogram of non-negative integer values (the load generator
// records nanoseconds), in the manner of HdrHistogram: values below 2^(b+1) are counted exactly,
// and above that every power-of-two range is split into 2^b equal buckets, where b is chosen from
// the significant decimal digits asked for (3 digits: b = 10, 1024 buckets per range). A value
// read back (a percentile, the max) is the highest value its bucket holds, so it is never below
// the true value and exceeds it by less than one part in 2^b (0.1 % for 3 digits).
//
// Memory is fixed at construction: (ranges + 1) × 2^b counters of 8 bytes, where the ranges cover
// 0..highest_trackable (about 300 KiB for 3 digits up to an hour in nanoseconds). Values above
// highest_trackable are counted at highest_trackable (saturated(): how many). Record() is a few
// instructions and never allocates. Not thread-safe: one owner thread (merge with Add()).

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace meshlet::loadgen {

class LatencyHistogram {
 public:
  // `significant_digits` 1..5; `highest_trackable` at least 2^(b+1).
  explicit LatencyHistogram(uint64_t highest_trackable = 3'600'000'000'000ull,
                            int significant_digits = 3);

  void Record(uint64_t value) { RecordCount(value, 1); }
  void RecordCount(uint64_t value, uint64_t count);
  // Adds every count of `other`, which must have the same layout (same constructor arguments).
  void Add(const LatencyHistogram& other);
  void Reset();

  uint64_t count() const { return total_; }
  // Exact (not bucketed); 0 when empty.
  uint64_t min() const { return total_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return total_ == 0 ? 0.0 : static_cast<double>(sum_) / total_; }
  uint64_t saturated() const { return saturated_; }

  // The value at `percentile` (0..100): the smallest bucket's highest value such that at least
  // ceil(percentile / 100 × count) values are at or below it (at least one), capped at max();
  // 0 when empty. 100 gives max().
  uint64_t ValueAtPercentile(double percentile) const;
  // The rank (1-based, in increasing order) of the value at `percentile` among `count` values:
  // ceil(percentile / 100 × count), at least 1 and at most count. Computed so that a percentile
  // like 99.9 of 1000 values is rank 999, not 1000 from the rounding of 99.9 / 100.
  static uint64_t RankAtPercentile(double percentile, uint64_t count);
  // Values recorded at or above `value` (counting whole buckets: a bucket counts when its lowest
  // value is >= `value`, so the answer may miss values within 0.1 % of `value`).
  uint64_t CountAtOrAbove(uint64_t value) const;

  // The non-empty buckets in increasing order, as (highest value of the bucket, count).
  std::vector<std::pair<uint64_t, uint64_t>> NonEmptyBuckets() const;

  // Bucket layout, for tests.
  size_t bucket_count() const { return counts_.size(); }
  uint64_t highest_trackable() const { return highest_trackable_; }
  // The lowest and highest value counted in the same bucket as `value`.
  uint64_t LowestEquivalent(uint64_t value) const;
  uint64_t HighestEquivalent(uint64_t value) const;

 private:
  size_t IndexOf(uint64_t value) const;
  uint64_t LowestAt(size_t index) const;
  uint64_t HighestAt(size_t index) const;

  const uint64_t highest_trackable_;
  int sub_bits_ = 0;  // b: 2^b buckets per power-of-two range above the exact part
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t sum_ = 0;  // wraps only after ~584 years of nanoseconds in total
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  uint64_t saturated_ = 0;
};

}  // namespace meshlet::loadgen
