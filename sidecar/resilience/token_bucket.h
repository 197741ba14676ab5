#pragma once

// A token-bucket rate limiter (RateLimit on a route): `requests_per_second` tokens accrue
// continuously up to `burst`; each admitted request takes one. The bucket starts full.
//
// Arithmetic is exact integers: the level is kept in nano-tokens (1e-9 token), and t nanoseconds
// add t * requests_per_second nano-tokens. So over any stretch of fake time T the bucket admits
// exactly burst + floor(T * rate) requests when driven to exhaustion, with no floating-point drift.
// TimeUntilNextToken() is the exact wait for a whole token, for a Retry-After on the 429.
//
// Ownership: holds a reference to the Clock, which must outlive it. Threading: single-threaded;
// each worker owns its own bucket, so a sidecar-wide limit is the per-worker limit times
// --concurrency (the config layer divides if it wants an exact sidecar-wide figure). Refill is
// lazy, on each call: no timer. Nothing allocates.

#include <cstdint>

#include "absl/status/status.h"
#include "common/base/clock.h"

namespace meshlet::resilience {

struct TokenBucketConfig {
  // RateLimit.requests_per_second; 0 = no refill (the burst is all there ever is).
  uint32_t requests_per_second = 0;
  // RateLimit.burst; 0 = one second's worth (requests_per_second), at least 1.
  uint32_t burst = 0;
};

class TokenBucket {
 public:
  TokenBucket(const TokenBucketConfig& config, const Clock& clock);

  // Takes `n` tokens if all are available; otherwise takes none.
  bool TryTake(uint32_t n = 1);
  // Zero when a token is available now; Duration::max() when one never will be (rate 0).
  Duration TimeUntilNextToken();
  // Whole tokens available now.
  uint64_t available();
  uint32_t burst() const { return burst_; }

 private:
  static constexpr int64_t kNanoTokensPerToken = 1000 * 1000 * 1000;
  void Refill();

  const Clock& clock_;
  uint32_t rate_;
  uint32_t burst_;
  int64_t capacity_;  // burst_ in nano-tokens
  int64_t level_;     // nano-tokens
  MonotonicTime last_;
};

}  // namespace meshlet::resilience
