#include "common/stats/stats.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/status.h"

// The histogram half of stats.h: bucket layouts, a handle's pages and the snapshot's percentiles.
// The registry (series, shards, merging) is in stats.cc.

namespace meshlet {

absl::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  CHECK(false) << "unknown MetricType " << static_cast<int>(type);
  return "";
}

std::vector<uint64_t> DefaultHistogramBounds() {
  return {1,      2,      5,       10,      25,      50,       100,      250,
          500,    1000,   2500,    5000,    10000,   25000,    50000,    100000,
          250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000};
}

// ---------------------------------------------------------------------------------------------
// HistogramLayout

absl::StatusOr<HistogramLayout> HistogramLayout::Create(std::vector<uint64_t> bounds,
                                                        double divisor) {
  if (bounds.size() > kMaxBounds) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram has ", bounds.size(), " bounds; at most ", kMaxBounds, " allowed"));
  }
  for (size_t j = 1; j < bounds.size(); ++j) {
    if (bounds[j] <= bounds[j - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram bounds must be strictly increasing; bound ", j, " (", bounds[j],
                       ") follows ", bounds[j - 1]));
    }
  }
  if (!(divisor > 0) || !std::isfinite(divisor)) {
    return absl::InvalidArgumentError("histogram exposition divisor must be finite and > 0");
  }
  HistogramLayout layout;
  layout.bounds_ = std::move(bounds);
  layout.divisor_ = divisor;
  layout.first_split_.assign(HistogramBuckets::kCount, 0);
  for (size_t j = 0; j < layout.bounds_.size(); ++j) {
    const size_t bucket = HistogramBuckets::Index(layout.bounds_[j]);
    const bool aligned = HistogramBuckets::UpperBound(bucket) == layout.bounds_[j];
    layout.bound_bucket_.push_back(static_cast<uint32_t>(bucket));
    layout.bound_aligned_.push_back(aligned);
    if (!aligned && layout.first_split_[bucket] == 0) {
      layout.first_split_[bucket] = static_cast<uint8_t>(j + 1);
    }
  }
  return layout;
}

stats_internal::Cell* Histogram::Page(size_t slot, size_t cell_count) const {
  using stats_internal::CellLine;
  using stats_internal::HistogramCells;
  if (stats_internal::Cell* page = HistogramCells::PageAt(cells_, slot)) return page;
  auto* line = new CellLine[HistogramCells::PageBytes(cell_count) / sizeof(CellLine)]();
  uint64_t expected = 0;
  const auto desired = reinterpret_cast<uint64_t>(line);
  if (!shared_) {
    // Only this thread writes the slot, and it found it empty.
    cells_[slot].store(desired, std::memory_order_release);
    return line->cells;
  }
  if (cells_[slot].compare_exchange_strong(expected, desired, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
    return line->cells;
  }
  delete[] line;  // another writer's page is in place
  return reinterpret_cast<CellLine*>(expected)->cells;
}

void Histogram::RecordInNewPage(uint64_t value) const {
  using stats_internal::HistogramCells;
  const size_t index = HistogramBuckets::Index(value);
  stats_internal::Cell* page =
      Page(HistogramCells::kFirstPage + (index >> HistogramCells::kPageBits),
           HistogramCells::kPageCells);
  stats_internal::AddToCell(page + (index & (HistogramCells::kPageCells - 1)), 1, shared_);
  stats_internal::AddToCell(cells_ + HistogramCells::kSum, value, shared_);
  if (const uint8_t split = layout_->first_split(index); split != 0) {
    RecordSplit(index, split - 1, value);
  }
}

void Histogram::RecordSplit(size_t index, size_t first_bound, uint64_t value) const {
  const std::vector<uint64_t>& bounds = layout_->bounds();
  for (size_t j = first_bound; j < bounds.size() && layout_->bound_bucket(j) == index; ++j) {
    if (value <= bounds[j] && !layout_->bound_aligned(j)) {
      stats_internal::AddToCell(Page(stats_internal::HistogramCells::kSplits, bounds.size()) + j, 1,
                                shared_);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HistogramSnapshot

HistogramSnapshot::HistogramSnapshot(const HistogramLayout& layout,
                                     const std::vector<uint64_t>& cells) {
  CHECK(cells.size() == layout.cell_count());
  for (size_t i = 0; i < HistogramBuckets::kCount; ++i) {
    if (cells[i] == 0) continue;
    buckets_.push_back({static_cast<uint32_t>(i), cells[i]});
    count_ += cells[i];
  }
  sum_ = cells[HistogramLayout::kSumCell];

  // Bounds map to non-decreasing fine buckets, so one forward walk computes every prefix.
  cumulative_.reserve(layout.bounds().size());
  uint64_t before = 0;  // samples in fine buckets below `next`
  size_t next = 0;
  uint64_t previous = 0;
  for (size_t j = 0; j < layout.bounds().size(); ++j) {
    const size_t bucket = layout.bound_bucket(j);
    for (; next < bucket; ++next) before += cells[next];
    const uint64_t in_bucket = cells[bucket];
    const uint64_t at_or_below =
        layout.bound_aligned(j) ? in_bucket
                                : std::min(in_bucket, cells[HistogramLayout::kFirstSplitCell + j]);
    // Cells are read one by one while writers run, so a split may briefly lead its bucket;
    // clamping keeps the exposed buckets cumulative.
    previous = std::max(previous, std::min(before + at_or_below, count_));
    cumulative_.push_back(previous);
  }
}

double HistogramSnapshot::Percentile(double q) const {
  if (count_ == 0 || std::isnan(q)) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 1.0);
  // q is a binary approximation of a decimal (0.9 * 10 = 9.000000000000002); shaving a few ulps
  // keeps ceil() from skipping to the next rank when q * count is meant to be an integer.
  const double exact = q * static_cast<double>(count_) * (1 - 4 * DBL_EPSILON);
  const uint64_t rank =
      std::clamp<uint64_t>(static_cast<uint64_t>(std::ceil(exact)), uint64_t{1}, count_);
  uint64_t seen = 0;
  for (const Bucket& bucket : buckets_) {
    seen += bucket.count;
    if (seen >= rank) return HistogramBuckets::Midpoint(bucket.index);
  }
  return HistogramBuckets::Midpoint(buckets_.back().index);
}

}  // namespace meshlet
