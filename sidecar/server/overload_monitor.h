#pragma once

// OverloadMonitor: watches the process's resident memory for load shedding. Every `interval` it
// reads RSS and raises the flag the workers read for each new request
// (stream::OverloadState::memory_pressure) while RSS is above `max_rss_bytes`. The flag drops once
// RSS is 10% below the limit, so shedding does not flap at the boundary. Whenever RSS is past the
// level that would change the state (the limit, or while shedding the level 10% below it), the
// monitor first asks malloc to give free memory back and reads again: memory the allocator merely
// keeps must neither start shedding nor hold it on after the load is gone.
//
// Threading: constructed, started and run on the server's main loop; flag() may be read from any
// thread (relaxed loads). The monitor must outlive the workers that hold its flag.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar::server {

class OverloadMonitor {
 public:
  // How the monitor measures memory and gives free memory back; tests pass their own.
  struct MemoryProbe {
    std::function<uint64_t()> read_rss;         // default: ReadRss
    std::function<void()> release_free_memory;  // default: ReleaseFreeMemory
  };

  // `max_rss_bytes` 0: no memory limit (Start does nothing, flag() is null).
  OverloadMonitor(event::Loop& loop, StatsShard& shared_stats, uint64_t max_rss_bytes,
                  Duration interval = std::chrono::milliseconds(250), MemoryProbe probe = {});

  // Checks now, then every `interval`.
  void Start();
  // One check; the timer runs it (tests may call it directly).
  void Check();
  const std::atomic<bool>* flag() const { return max_rss_bytes_ != 0 ? &pressure_ : nullptr; }

  // The process's resident memory in bytes (/proc/self/statm); 0 if it cannot be read.
  static uint64_t ReadRss();

 private:
  event::Loop& loop_;
  const uint64_t max_rss_bytes_;
  const Duration interval_;
  MemoryProbe probe_;
  std::atomic<bool> pressure_{false};
  std::unique_ptr<event::Timer> timer_;
  Gauge pressure_gauge_;  // meshlet_overload_memory_pressure
  Gauge rss_gauge_;       // meshlet_overload_rss_bytes
  Counter trims_;         // meshlet_overload_malloc_trims_total
};

}  // namespace meshlet::sidecar::server
