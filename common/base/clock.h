#pragma once

// Time sources. Code that makes decisions from time (timeouts, backoff, budgets, breakers) takes a
// Clock so tests can drive time by hand with FakeClock (common/base/fake_clock.h).
//
// A worker's clock is an event::TurnClock: Now() there is one reading per event-loop turn, shared
// by every callback of the turn (ADR 0027). ExactNow() is the reading at the moment of the call,
// for an interval that may begin and end within one turn (a request answered locally).

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshlet {

using MonotonicTime = std::chrono::steady_clock::time_point;
using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Never goes backwards; use for intervals and deadlines. May be a reading taken earlier in the
  // same loop turn (TurnClock).
  virtual MonotonicTime Now() const = 0;
  // The monotonic time at this call, never a reading shared with other callbacks; not earlier
  // than any Now() before it. Costs a clock read even where Now() does not.
  virtual MonotonicTime ExactNow() const { return Now(); }
  // Wall-clock time; use only for timestamps shown to people or other systems.
  virtual absl::Time WallNow() const = 0;
};

class RealClock final : public Clock {
 public:
  MonotonicTime Now() const override { return std::chrono::steady_clock::now(); }
  MonotonicTime ExactNow() const override { return std::chrono::steady_clock::now(); }
  absl::Time WallNow() const override { return absl::Now(); }

  // A process-wide instance; it has no state.
  static RealClock& Get();
};

// `d` in whole microseconds, rounded up: an interval that took any time at all is at least 1
// (a duration shown as 0 would claim the work took no time); a negative one is 0.
inline uint64_t MicrosRoundedUp(Duration d) {
  return d.count() <= 0 ? 0 : static_cast<uint64_t>((d.count() + 999) / 1000);
}

// The wait before the next attempt after `failures` failures in a row (at least 1): `base`
// doubling per failure, at most `cap`. Deterministic; for jitter see sidecar/resilience/backoff.h.
inline Duration DoublingRetryDelay(int failures, Duration base, Duration cap) {
  Duration delay = base;
  for (int i = 1; i < failures && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

}  // namespace meshlet
