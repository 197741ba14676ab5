#include "sidecar/resilience/token_bucket.h"

#include <algorithm>

namespace meshlet::sidecar::resilience {
namespace {
constexpr int64_t kNanosPerSecond = 1000 * 1000 * 1000;
}  // namespace

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

namespace {
uint32_t EffectiveBurst(const TokenBucketConfig& config) {
  return config.burst != 0 ? config.burst : std::max<uint32_t>(config.requests_per_second, 1);
}
}  // namespace

SharedTokenBucket::SharedTokenBucket(const TokenBucketConfig& config)
    : rate_(config.requests_per_second),
      burst_(EffectiveBurst(config)),
      emission_interval_ns_(rate_ == 0 ? 0 : (kNanosPerSecond + rate_ / 2) / rate_),
      tolerance_ns_(static_cast<int64_t>(burst_ - 1) * emission_interval_ns_),
      remaining_(burst_) {}

SharedTokenBucket::Result SharedTokenBucket::TryTake(MonotonicTime now) {
  if (rate_ == 0) {
    int64_t left = remaining_.load(std::memory_order_relaxed);
    while (left > 0) {
      if (remaining_.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
        return {.admitted = true};
      }
    }
    return {.admitted = false, .retry_after = Duration::max()};
  }
  const int64_t now_ns = now.time_since_epoch().count();
  int64_t tat = tat_ns_.load(std::memory_order_relaxed);
  while (true) {
    const int64_t base = std::max(tat, now_ns);
    if (base - now_ns > tolerance_ns_) {
      return {.admitted = false, .retry_after = Duration(base - tolerance_ns_ - now_ns)};
    }
    if (tat_ns_.compare_exchange_weak(tat, base + emission_interval_ns_,
                                      std::memory_order_relaxed)) {
      return {.admitted = true};
    }
  }
}

}  // namespace meshlet::sidecar::resilience
