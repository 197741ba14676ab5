#pragma once

// Time sources. Code that makes decisions from time (timeouts, backoff, budgets, breakers) takes a
// Clock so tests can drive time by hand with FakeClock (common/base/fake_clock.h).

#include <chrono>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshlet {

using MonotonicTime = std::chrono::steady_clock::time_point;
using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Never goes backwards; use for intervals and deadlines.
  virtual MonotonicTime Now() const = 0;
  // Wall-clock time; use only for timestamps shown to people or other systems.
  virtual absl::Time WallNow() const = 0;
};

class RealClock final : public Clock {
 public:
  MonotonicTime Now() const override { return std::chrono::steady_clock::now(); }
  absl::Time WallNow() const override { return absl::Now(); }

  // A process-wide instance; it has no state.
  static RealClock& Get();
};

}  // namespace meshlet
