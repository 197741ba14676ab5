#pragma once

// A Clock that moves only when a test says so. Safe to read from several threads.

#include <atomic>

#include "common/base/clock.h"

namespace meshlet {

class FakeClock final : public Clock {
 public:
  FakeClock() = default;

  MonotonicTime Now() const override {
    const int64_t step = step_ns_.load(std::memory_order_relaxed);
    if (step != 0) {
      return MonotonicTime(Duration(now_ns_.fetch_add(step, std::memory_order_acq_rel) + step));
    }
    return MonotonicTime(Duration(now_ns_.load(std::memory_order_acquire)));
  }
  absl::Time WallNow() const override {
    return absl::FromUnixNanos(kWallEpochNanos + now_ns_.load(std::memory_order_acquire));
  }

  void Advance(Duration d) { now_ns_.fetch_add(d.count(), std::memory_order_acq_rel); }
  // From now on every Now() first moves the clock on by `step` (zero: stop), as a real clock's
  // time passes between any two readings: under a TurnClock, the readings that reach this source
  // are the ones that see time pass.
  void AdvanceOnEveryRead(Duration step) {
    step_ns_.store(step.count(), std::memory_order_relaxed);
  }

 private:
  // 2026-01-01T00:00:00Z: a fixed, readable wall time for assertions.
  static constexpr int64_t kWallEpochNanos = 1767225600LL * 1000000000LL;
  // Starts well above zero so that "time since epoch" arithmetic in code under test never sees 0.
  mutable std::atomic<int64_t> now_ns_{1000LL * 1000000000LL};
  std::atomic<int64_t> step_ns_{0};
};

}  // namespace meshlet
