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

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "common/base/clock.h"

namespace meshlet::sidecar::resilience {

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

// The same limit shared by every worker, lock-free: a GCRA ("virtual scheduling") limiter, which
// admits exactly what a token bucket with the same rate and burst admits. It keeps one atomic
// number, the theoretical arrival time (TAT) of the next request; a request at `now` is admitted
// when TAT - now <= (burst - 1) * emission_interval, and moves TAT to max(TAT, now) +
// emission_interval with one compare-and-swap. Why shared rather than per worker (TokenBucket):
// a per-worker bucket multiplies the configured rate by --concurrency and splits a small burst
// unevenly, so "100 requests/s on this route" would not mean what the operator wrote
// (docs/adr/0012). Time is passed in, so tests drive it.
//
// The emission interval is 1 s / requests_per_second rounded to the nanosecond (an error below
// 1e-9 relative). requests_per_second 0: the burst is all there ever is.
//
// Threading: every method may be called from any thread. Nothing allocates.
class SharedTokenBucket {
 public:
  explicit SharedTokenBucket(const TokenBucketConfig& config);
  SharedTokenBucket(const SharedTokenBucket&) = delete;
  SharedTokenBucket& operator=(const SharedTokenBucket&) = delete;

  struct Result {
    bool admitted = false;
    // When refused: how long until a request would be admitted; Duration::max() if never.
    Duration retry_after = Duration::zero();
  };
  Result TryTake(MonotonicTime now);

  uint32_t burst() const { return burst_; }
  uint32_t requests_per_second() const { return rate_; }

 private:
  const uint32_t rate_;
  const uint32_t burst_;
  const int64_t emission_interval_ns_;  // 0 when rate_ is 0
  const int64_t tolerance_ns_;          // (burst_ - 1) * emission_interval_ns_
  // Nanoseconds since the steady clock's epoch; 0 = a full bucket.
  std::atomic<int64_t> tat_ns_{0};
  // rate_ 0 only: tokens left.
  std::atomic<int64_t> remaining_;
};

}  // namespace meshlet::sidecar::resilience
