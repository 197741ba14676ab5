#include "sidecar/resilience/principal_rate_limiter.h"

#include <algorithm>
#include <utility>

namespace meshlet::sidecar::resilience {

PrincipalRateLimiter::PrincipalRateLimiter(const PrincipalRateLimitConfig& config)
    : config_{config.bucket, std::max<uint32_t>(config.max_principals, 1)} {}

SharedTokenBucket::Result PrincipalRateLimiter::TryTake(absl::string_view principal,
                                                        MonotonicTime now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(principal);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
  } else {
    if (lru_.size() >= config_.max_principals) {
      index_.erase(lru_.back().principal);
      lru_.pop_back();
      ++evictions_;
    }
    lru_.push_front(
        Entry{std::string(principal), std::make_unique<SharedTokenBucket>(config_.bucket)});
    index_.emplace(lru_.front().principal, lru_.begin());
  }
  // Taken under the lock: another thread may evict the bucket as soon as it is released.
  return lru_.front().bucket->TryTake(now);
}

size_t PrincipalRateLimiter::principals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

uint64_t PrincipalRateLimiter::evictions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evictions_;
}

LocalRateLimiter::LocalRateLimiter(const TokenBucketConfig& bucket,
                                   std::optional<uint32_t> max_principals, std::string source)
    : source_(std::move(source)) {
  if (max_principals.has_value()) {
    per_principal_ = std::make_unique<PrincipalRateLimiter>(
        PrincipalRateLimitConfig{.bucket = bucket, .max_principals = *max_principals});
  } else {
    shared_ = std::make_unique<SharedTokenBucket>(bucket);
  }
  // The effective figures (a burst of 0 means one second's worth), as SharedTokenBucket has them.
  SharedTokenBucket probe(bucket);
  rate_ = probe.requests_per_second();
  burst_ = probe.burst();
}

}  // namespace meshlet::sidecar::resilience
