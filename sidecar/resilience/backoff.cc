#include "sidecar/resilience/backoff.h"

#include <algorithm>

namespace meshlet::sidecar::resilience {

absl::Status ValidateBackoffConfig(const BackoffConfig& config) {
  if (config.base <= Duration::zero()) {
    return absl::InvalidArgumentError("base_interval: must be positive");
  }
  if (config.cap < config.base) {
    return absl::InvalidArgumentError("max_interval: must be at least base_interval");
  }
  return absl::OkStatus();
}

Duration Backoff::UpperBound(uint32_t attempt) const {
  const int64_t base = config_.base.count();
  const int64_t cap = config_.cap.count();
  if (base <= 0 || cap <= 0) return Duration::zero();
  // base * 2^attempt > cap  <=>  base > floor(cap / 2^attempt) for integer base; this form never
  // computes a product that could overflow.
  if (attempt >= 62 || base > (cap >> attempt)) return config_.cap;
  return Duration(base << attempt);
}

Duration Backoff::Delay(uint32_t attempt) {
  const uint64_t bound = static_cast<uint64_t>(UpperBound(attempt).count());
  // Uniform(n) is in [0, n); +1 makes the bound itself reachable.
  return Duration(static_cast<int64_t>(random_.Uniform(bound + 1)));
}

Duration Backoff::DelayWithRetryAfter(uint32_t attempt, std::optional<Duration> retry_after) {
  if (!retry_after.has_value()) return Delay(attempt);
  Duration d = std::max(*retry_after, Duration::zero());
  if (!config_.retry_after_may_exceed_cap) d = std::min(d, config_.cap);
  return d;
}

}  // namespace meshlet::sidecar::resilience
