#pragma once

// MemoryReleaser: gives the free memory malloc keeps back to the kernel once the main loop's
// bursts of work settle (ADR 0095). Building and applying a configuration — an on-demand lookup's
// answer, an endpoint change — and answering a large admin page free many small blocks in the
// middle of the main thread's malloc arena. glibc returns only the top of an arena past the trim
// threshold, so those holes stay resident: after 1 000 on-demand lookups in a 5 000-service mesh
// they were about 4 MB of a sidecar's 25 MB. Notify() after such work; once no Notify came for
// `delay`, or `max_delay` after the first unanswered one (so steady churn still releases), every
// arena is trimmed (malloc_trim(0), which also returns the whole free pages inside an arena).
//
// Cost: one trim takes a few milliseconds on the main loop for tens of MB of heap; a worker
// arena's free pages, given back too, are faulted in again by its next allocations (the trim
// threshold, common/base/malloc_tuning.h, keeps them from being given back on every free). Both
// happen at most once per `delay` of quiet after configuration work, never per request.
//
// Threading: constructed and used on the server's main loop only.

#include <cstdint>
#include <memory>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "sidecar/server/overload_monitor.h"

namespace meshlet::sidecar::server {

class MemoryReleaser {
 public:
  // `delay` zero: never releases (Notify does nothing). `max_delay` is at least `delay`.
  MemoryReleaser(event::Loop& loop, StatsShard& shared_stats, Duration delay, Duration max_delay,
                 OverloadMonitor::MemoryProbe probe = {});

  // Work that frees memory happened: release once it has been quiet for `delay`.
  void Notify();
  // Releases now (the timer runs it; tests may call it directly).
  void Release();
  bool pending() const { return timer_ != nullptr && timer_->enabled(); }

 private:
  event::Loop& loop_;
  const Duration delay_;
  const Duration max_delay_;
  OverloadMonitor::MemoryProbe probe_;
  std::unique_ptr<event::Timer> timer_;
  MonotonicTime first_notify_{};  // of the release pending, if any
  Counter releases_;              // meshlet_memory_releases_total
  Counter released_bytes_;        // meshlet_memory_released_bytes_total
  Histogram release_seconds_;     // meshlet_memory_release_seconds
};

}  // namespace meshlet::sidecar::server
