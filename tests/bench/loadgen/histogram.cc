#include "tests/bench/loadgen/histogram.h"

#include <algorithm>
#include <cmath>

#include "common/base/logging.h"

namespace meshlet::loadgen {
namespace {

int MostSignificantBit(uint64_t value) { return value == 0 ? 0 : 63 - __builtin_clzll(value); }

}  // namespace

LatencyHistogram::LatencyHistogram(uint64_t highest_trackable, int significant_digits)
    : highest_trackable_(highest_trackable) {
  CHECK(significant_digits >= 1 && significant_digits <= 5) << significant_digits;
  uint64_t resolution = 1;
  for (int i = 0; i < significant_digits; ++i) resolution *= 10;
  while ((uint64_t{1} << sub_bits_) < resolution) ++sub_bits_;
  CHECK(highest_trackable >= (uint64_t{2} << sub_bits_)) << highest_trackable;
  counts_.assign(IndexOf(highest_trackable) + 1, 0);
}

size_t LatencyHistogram::IndexOf(uint64_t value) const {
  const int shift = std::max(0, MostSignificantBit(value) - sub_bits_);
  return (static_cast<size_t>(shift) << sub_bits_) + static_cast<size_t>(value >> shift);
}

uint64_t LatencyHistogram::LowestAt(size_t index) const {
  const size_t range = index >> sub_bits_;
  const int shift = range == 0 ? 0 : static_cast<int>(range) - 1;
  const uint64_t sub = index - (static_cast<size_t>(shift) << sub_bits_);
  return sub << shift;
}

uint64_t LatencyHistogram::HighestAt(size_t index) const {
  const size_t range = index >> sub_bits_;
  const int shift = range == 0 ? 0 : static_cast<int>(range) - 1;
  return LowestAt(index) + (uint64_t{1} << shift) - 1;
}

uint64_t LatencyHistogram::LowestEquivalent(uint64_t value) const {
  return LowestAt(IndexOf(value));
}

uint64_t LatencyHistogram::HighestEquivalent(uint64_t value) const {
  return HighestAt(IndexOf(value));
}

void LatencyHistogram::RecordCount(uint64_t value, uint64_t count) {
  if (count == 0) return;
  if (value > highest_trackable_) {
    value = highest_trackable_;
    saturated_ += count;
  }
  counts_[IndexOf(value)] += count;
  total_ += count;
  sum_ += value * count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void LatencyHistogram::Add(const LatencyHistogram& other) {
  CHECK(other.counts_.size() == counts_.size() && other.sub_bits_ == sub_bits_)
      << "histograms of different layouts";
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  saturated_ += other.saturated_;
}

void LatencyHistogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  sum_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  saturated_ = 0;
}

uint64_t LatencyHistogram::RankAtPercentile(double percentile, uint64_t count) {
  if (count == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // percentile × count / 100 in floating point carries a relative error of a few ulps; an exact
  // product (99.9 × 1000 = 99900) must not round up past its integer.
  const double exact = percentile * static_cast<double>(count) / 100.0;
  const double rank = std::ceil(exact - exact * 1e-12);
  return std::clamp<uint64_t>(static_cast<uint64_t>(rank), 1, count);
}

uint64_t LatencyHistogram::ValueAtPercentile(double percentile) const {
  if (total_ == 0) return 0;
  const uint64_t rank = RankAtPercentile(percentile, total_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(HighestAt(i), max_);
  }
  return max_;
}

uint64_t LatencyHistogram::CountAtOrAbove(uint64_t value) const {
  size_t start = IndexOf(std::min(value, highest_trackable_));
  if (LowestAt(start) < value) ++start;
  uint64_t n = 0;
  for (size_t i = start; i < counts_.size(); ++i) n += counts_[i];
  return n;
}

std::vector<std::pair<uint64_t, uint64_t>> LatencyHistogram::NonEmptyBuckets() const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] != 0) out.emplace_back(std::min(HighestAt(i), max_), counts_[i]);
  }
  return out;
}

}  // namespace meshlet::loadgen
