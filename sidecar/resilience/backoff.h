#pragma once

// Full-jitter exponential backoff between retry attempts.
//
// Retry n (n = 0 for the first retry) waits a uniformly random time in [0, min(cap, base * 2^n)]:
// full jitter spreads retries from many clients evenly over the window instead of having them
// arrive in synchronized waves. A server-provided Retry-After replaces the random delay (the
// server knows better than our guess) but is capped at `cap` unless the config allows more,
// because a retry that waits minutes is worse than returning the error to the caller.
//
// Ownership: holds a reference to a Random the caller keeps alive. Threading: not thread-safe;
// Random generators are per thread. Nothing allocates.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "common/base/clock.h"
#include "common/base/random.h"

namespace meshlet::sidecar::resilience {

struct BackoffConfig {
  // RetryPolicy.base_interval: the upper bound of the first retry's delay.
  Duration base = std::chrono::milliseconds(25);
  // RetryPolicy.max_interval: no delay ever exceeds this (unless the Retry-After option below).
  Duration cap = std::chrono::milliseconds(250);
  // When true a server's Retry-After is honoured in full even above `cap`.
  bool retry_after_may_exceed_cap = false;
};

// OK when base > 0 and cap >= base.
absl::Status ValidateBackoffConfig(const BackoffConfig& config);

class Backoff {
 public:
  Backoff(const BackoffConfig& config, Random& random) : config_(config), random_(random) {}

  // min(cap, base * 2^attempt), without overflow for any attempt.
  Duration UpperBound(uint32_t attempt) const;

  // A uniformly random delay in [0, UpperBound(attempt)], both ends inclusive.
  Duration Delay(uint32_t attempt);

  // Retry-After when given (negative counts as zero; capped at `cap` unless allowed to exceed it),
  // else Delay(attempt). Draws from Random only when there is no Retry-After.
  Duration DelayWithRetryAfter(uint32_t attempt, std::optional<Duration> retry_after);

  const BackoffConfig& config() const { return config_; }

 private:
  BackoffConfig config_;
  Random& random_;
};

}  // namespace meshlet::sidecar::resilience
