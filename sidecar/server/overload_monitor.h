#pragma once

// OverloadMonitor: watches the process's resident memory for load shedding. Every `interval` it
// reads RSS; above `max_rss_bytes` it first asks malloc to give free memory back (memory the
// allocator merely keeps must not hold shedding on), reads again, and raises the flag the workers
// read for each new request (stream::OverloadState::memory_pressure) while RSS stays above. The
// flag drops once RSS is 10% below the limit, so shedding does not flap at the boundary.
//
// Threading: constructed, started and run on the server's main loop; flag() may be read from any
// thread (relaxed loads). The monitor must outlive the workers that hold its flag.

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar::server {

class OverloadMonitor {
 public:
  // `max_rss_bytes` 0: no memory limit (Start does nothing, flag() is null).
  OverloadMonitor(event::Loop& loop, StatsShard& shared_stats, uint64_t max_rss_bytes,
                  Duration interval = std::chrono::milliseconds(250));

  void Start();
  const std::atomic<bool>* flag() const { return max_rss_bytes_ != 0 ? &pressure_ : nullptr; }

  // The process's resident memory in bytes (/proc/self/statm); 0 if it cannot be read.
  static uint64_t ReadRss();

 private:
  void Check();

  event::Loop& loop_;
  const uint64_t max_rss_bytes_;
  const Duration interval_;
  std::atomic<bool> pressure_{false};
  std::unique_ptr<event::Timer> timer_;
  Gauge pressure_gauge_;  // meshlet_overload_memory_pressure
  Gauge rss_gauge_;       // meshlet_overload_rss_bytes
  Counter trims_;         // meshlet_overload_malloc_trims_total
};

}  // namespace meshlet::sidecar::server
