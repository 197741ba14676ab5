#pragma once

// UsageCell: when a discovered destination (a ServiceRoute, ADR 0086) was last used, to the
// second, so the main thread can unsubscribe the ones nobody uses any more.
//
// One cell per ServiceRoute, kept across snapshots by the translation memo and pointed to by the
// virtual host and the capture destination the ServiceRoute produced. Workers touch it on the
// request path (any thread, lock-free: one relaxed load, and a relaxed store at most once per
// second per cell, so a busy destination does not bounce the cache line between workers); the
// main thread reads it. Time is the monotonic clock's, in whole seconds since its epoch.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "common/base/clock.h"

namespace meshlet::sidecar::route {

class UsageCell {
 public:
  UsageCell() = default;
  UsageCell(const UsageCell&) = delete;
  UsageCell& operator=(const UsageCell&) = delete;

  // Notes a use at `now`. Stores only when the second differs from the one held.
  void Touch(MonotonicTime now) {
    const uint32_t seconds = ToSeconds(now);
    if (seconds_.load(std::memory_order_relaxed) != seconds) {
      seconds_.store(seconds, std::memory_order_relaxed);
    }
  }

  // The end of the second of the last use (no use is older than it); nullopt: never used.
  std::optional<MonotonicTime> last_use() const {
    const uint32_t seconds = seconds_.load(std::memory_order_relaxed);
    if (seconds == 0) return std::nullopt;
    return MonotonicTime(std::chrono::seconds(seconds) + std::chrono::seconds(1));
  }

 private:
  static uint32_t ToSeconds(MonotonicTime now) {
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    // 0 means never used: a use in the clock's first second counts as the next one.
    return seconds <= 0 ? 1 : static_cast<uint32_t>(seconds);
  }

  std::atomic<uint32_t> seconds_{0};
};

}  // namespace meshlet::sidecar::route
