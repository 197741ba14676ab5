#include "sidecar/server/memory_releaser.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/base/malloc_tuning.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::server {

MemoryReleaser::MemoryReleaser(event::Loop& loop, StatsShard& shared_stats, Duration delay,
                               Duration max_delay, OverloadMonitor::MemoryProbe probe)
    : loop_(loop), delay_(delay), max_delay_(std::max(delay, max_delay)), probe_(std::move(probe)) {
  if (delay_ <= Duration::zero()) return;
  if (!probe_.read_rss) probe_.read_rss = &OverloadMonitor::ReadRss;
  if (!probe_.release_free_memory) probe_.release_free_memory = &ReleaseFreeMemory;
  releases_ = OrDiscard(
      shared_stats.RegisterCounter("meshlet_memory_releases_total",
                                   "Times free malloc memory was given back to the kernel "
                                   "after configuration work settled (--memory-release-delay)."),
      "meshlet_memory_releases_total");
  released_bytes_ = OrDiscard(
      shared_stats.RegisterCounter("meshlet_memory_released_bytes_total",
                                   "Resident memory those releases gave back (the fall in RSS "
                                   "across each one)."),
      "meshlet_memory_released_bytes_total");
  HistogramOptions seconds;
  seconds.exposition_divisor = 1e6;
  release_seconds_ = OrDiscard(shared_stats.RegisterHistogram(
                                   "meshlet_memory_release_seconds",
                                   "Time the main thread spent in one such release.", {}, seconds),
                               "meshlet_memory_release_seconds");
  timer_ = std::make_unique<event::Timer>(loop_, [this] { Release(); });
}

void MemoryReleaser::Notify() {
  if (timer_ == nullptr) return;
  const MonotonicTime now = loop_.Now();
  if (!timer_->enabled()) {
    first_notify_ = now;
    timer_->Enable(delay_);
    return;
  }
  // Quiet for `delay` from now, unless that would pass `max_delay` after the first Notify.
  const Duration left = first_notify_ + max_delay_ - now;
  timer_->Enable(std::max(Duration::zero(), std::min(delay_, left)));
}

void MemoryReleaser::Release() {
  if (timer_ == nullptr) return;
  timer_->Disable();
  const uint64_t before = probe_.read_rss();
  const auto start = std::chrono::steady_clock::now();
  probe_.release_free_memory();
  release_seconds_.Record(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count()));
  const uint64_t after = probe_.read_rss();
  releases_.Inc();
  if (before > after) released_bytes_.Inc(before - after);
}

}  // namespace meshlet::sidecar::server
