#pragma once

// The fixed log-linear bucket layout every histogram records into, and the per-family layout that
// maps those fine buckets onto the coarse Prometheus `le` buckets.
//
// Fine buckets (HdrHistogram-style): values below 2^(kSubBucketBits+1) = 32 each get their own
// bucket; above that, every power-of-two range [2^e, 2^(e+1)) is split into kSubBuckets equal
// buckets. A bucket's width is therefore at most 1/kSubBuckets of its lower bound, and reporting
// the bucket midpoint for a percentile is off from the true sample by at most
//
//     kMaxRelativeError = 1 / (2 * kSubBuckets) = 3.125 %
//
// of the true value (exact below 32). Values at or above 2^kMaxExponent (~12.7 days in
// microseconds, 1 TiB in bytes) are counted in the top bucket; their percentiles saturate there,
// while _sum and the Prometheus `le` buckets stay exact.
//
// Prometheus bounds rarely fall on fine-bucket edges (1000 lies inside [992, 1023]). Rather than
// approximate, a HistogramLayout gives each bound that splits a fine bucket its own "split"
// counter of values in that bucket that are <= the bound; Record() updates it only for samples
// that land in such a bucket, so exported cumulative counts are exact.
//
// Everything here is immutable after construction and safe to share between threads.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace meshlet {

struct HistogramBuckets {
  static constexpr int kSubBucketBits = 4;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;
  static constexpr int kMaxExponent = 40;
  static constexpr uint64_t kMaxTrackable = (uint64_t{1} << kMaxExponent) - 1;
  static constexpr size_t kCount =
      ((kMaxExponent - 1 - kSubBucketBits) << kSubBucketBits) + 2 * kSubBuckets;
  static constexpr double kMaxRelativeError = 1.0 / (2.0 * kSubBuckets);

  // Branch-free apart from the clamp: the exponent is floored at kSubBucketBits so that small
  // values fall into the linear, width-1 region.
  static constexpr size_t Index(uint64_t value) {
    value = std::min(value, kMaxTrackable);
    const int exponent = std::max(static_cast<int>(std::bit_width(value)) - 1, kSubBucketBits);
    const int shift = exponent - kSubBucketBits;
    return (static_cast<size_t>(shift) << kSubBucketBits) + static_cast<size_t>(value >> shift);
  }

  // Smallest value that maps to bucket `index`.
  static constexpr uint64_t LowerBound(size_t index) {
    if (index < 2 * kSubBuckets) return index;
    const int shift = static_cast<int>(index >> kSubBucketBits) - 1;
    const uint64_t mantissa = (index & (kSubBuckets - 1)) | kSubBuckets;
    return mantissa << shift;
  }

  // Largest value that maps to bucket `index` (inclusive).
  static constexpr uint64_t UpperBound(size_t index) {
    return index + 1 >= kCount ? kMaxTrackable : LowerBound(index + 1) - 1;
  }

  // The value reported for samples in bucket `index`.
  static constexpr double Midpoint(size_t index) {
    return (static_cast<double>(LowerBound(index)) + static_cast<double>(UpperBound(index))) / 2;
  }
};

static_assert(HistogramBuckets::kCount == 592);
static_assert(HistogramBuckets::Index(HistogramBuckets::kMaxTrackable) ==
              HistogramBuckets::kCount - 1);

// Per-family mapping from fine buckets to Prometheus bounds, plus the layout of one shard's
// cells for one histogram series: [fine buckets | sum | one split counter per bound].
class HistogramLayout {
 public:
  static constexpr size_t kMaxBounds = 64;
  static constexpr size_t kSumCell = HistogramBuckets::kCount;
  static constexpr size_t kFirstSplitCell = kSumCell + 1;

  // `bounds` must be strictly increasing and at most kMaxBounds long; `divisor` (> 0) converts
  // recorded units to exposed units (1e6 to record microseconds and expose seconds).
  static absl::StatusOr<HistogramLayout> Create(std::vector<uint64_t> bounds, double divisor);

  const std::vector<uint64_t>& bounds() const { return bounds_; }
  double divisor() const { return divisor_; }
  size_t cell_count() const { return kFirstSplitCell + bounds_.size(); }

  // Fine bucket holding bound j's value.
  size_t bound_bucket(size_t j) const { return bound_bucket_[j]; }
  // True when bound j is the top value of its fine bucket, so no split counter is needed.
  bool bound_aligned(size_t j) const { return bound_aligned_[j]; }
  // 1 + the first bound that splits fine bucket `index`, or 0 when none does.
  uint8_t first_split(size_t index) const { return first_split_[index]; }

  bool operator==(const HistogramLayout& other) const {
    return bounds_ == other.bounds_ && divisor_ == other.divisor_;
  }

 private:
  HistogramLayout() = default;

  std::vector<uint64_t> bounds_;
  double divisor_ = 1.0;
  std::vector<uint32_t> bound_bucket_;
  std::vector<bool> bound_aligned_;
  std::vector<uint8_t> first_split_;
};

}  // namespace meshlet
