#include "sidecar/resilience/token_bucket.h"

#include <algorithm>

namespace meshlet::resilience {

TokenBucket::TokenBucket(const TokenBucketConfig& config, const Clock& clock)
    : clock_(clock),
      rate_(config.requests_per_second),
      burst_(config.burst != 0 ? config.burst : std::max<uint32_t>(config.requests_per_second, 1)),
      capacity_(static_cast<int64_t>(burst_) * kNanoTokensPerToken),
      level_(capacity_),
      last_(clock.Now()) {}

void TokenBucket::Refill() {
  const MonotonicTime now = clock_.Now();
  const int64_t elapsed = (now - last_).count();
  if (elapsed <= 0) return;
  last_ = now;
  if (rate_ == 0 || level_ >= capacity_) return;
  // elapsed * rate_ can overflow for long idle gaps; compare against the time to fill instead.
  const int64_t missing = capacity_ - level_;
  if (elapsed >= missing / rate_ + 1) {
    level_ = capacity_;
  } else {
    level_ = std::min(capacity_, level_ + elapsed * static_cast<int64_t>(rate_));
  }
}

bool TokenBucket::TryTake(uint32_t n) {
  Refill();
  const int64_t need = static_cast<int64_t>(n) * kNanoTokensPerToken;
  if (level_ < need) return false;
  level_ -= need;
  return true;
}

Duration TokenBucket::TimeUntilNextToken() {
  Refill();
  if (level_ >= kNanoTokensPerToken) return Duration::zero();
  if (rate_ == 0) return Duration::max();
  const int64_t missing = kNanoTokensPerToken - level_;
  return Duration((missing + rate_ - 1) / rate_);  // round up: a token must really be there
}

uint64_t TokenBucket::available() {
  Refill();
  return static_cast<uint64_t>(level_ / kNanoTokensPerToken);
}

}  // namespace meshlet::resilience
