#pragma once

// A Clock that moves only when a test says so. Safe to read from several threads.

#include <atomic>

#include "common/base/clock.h"

namespace meshlet {

class FakeClock final : public Clock {
 public:
  FakeClock() = default;

  MonotonicTime Now() const override {
    return MonotonicTime(Duration(now_ns_.load(std::memory_order_acquire)));
  }
  absl::Time WallNow() const override {
    return absl::FromUnixNanos(kWallEpochNanos + now_ns_.load(std::memory_order_acquire));
  }

  void Advance(Duration d) { now_ns_.fetch_add(d.count(), std::memory_order_acq_rel); }

 private:
  // 2026-01-01T00:00:00Z: a fixed, readable wall time for assertions.
  static constexpr int64_t kWallEpochNanos = 1767225600LL * 1000000000LL;
  // Starts well above zero so that "time since epoch" arithmetic in code under test never sees 0.
  std::atomic<int64_t> now_ns_{1000LL * 1000000000LL};
};

}  // namespace meshlet
