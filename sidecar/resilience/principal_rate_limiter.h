#pragma once

// A local rate limit per source identity: one token bucket (SharedTokenBucket, GCRA) for each
// peer principal (the caller's SPIFFE id from mTLS; "" for callers without one, who share a
// bucket), so one noisy caller cannot spend everybody's budget.
//
// Memory is bounded: at most `max_principals` buckets are kept, least recently used first out. A
// flood of new identities evicts idle ones, and an evicted identity that comes back starts with a
// full bucket again; with max_principals above the number of identities that call concurrently,
// the limit each of them sees is exact. Evictions are counted.
//
// Threading: every method may be called from any thread (one mutex around the lookup; the
// bucket itself is lock-free). The lookup allocates only when a principal is new.

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "sidecar/resilience/token_bucket.h"

namespace meshlet::sidecar::resilience {

struct PrincipalRateLimitConfig {
  TokenBucketConfig bucket;  // for each principal
  uint32_t max_principals = 1024;
};

class PrincipalRateLimiter {
 public:
  explicit PrincipalRateLimiter(const PrincipalRateLimitConfig& config);
  PrincipalRateLimiter(const PrincipalRateLimiter&) = delete;
  PrincipalRateLimiter& operator=(const PrincipalRateLimiter&) = delete;

  SharedTokenBucket::Result TryTake(absl::string_view principal, MonotonicTime now);

  const PrincipalRateLimitConfig& config() const { return config_; }
  size_t principals() const;   // buckets kept now
  uint64_t evictions() const;  // buckets dropped to make room, since creation

 private:
  struct Entry {
    std::string principal;
    std::unique_ptr<SharedTokenBucket> bucket;
  };
  const PrincipalRateLimitConfig config_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t evictions_ = 0;
};

// The local rate limit of a route or a listener (xds RateLimit): one bucket for every caller, or
// one per caller identity (RateLimit.per_principal). Threading as above.
class LocalRateLimiter {
 public:
  // `max_principals` set: a bucket per principal, at most that many kept. `source`: the policy
  // object the limit came from ("TrafficPolicy/default/ratings"), for decision records; may be
  // empty.
  LocalRateLimiter(const TokenBucketConfig& bucket, std::optional<uint32_t> max_principals,
                   std::string source = {});

  // `principal`: the caller's identity ("" without mTLS); ignored by a shared limit.
  SharedTokenBucket::Result TryTake(absl::string_view principal, MonotonicTime now) {
    return shared_ != nullptr ? shared_->TryTake(now) : per_principal_->TryTake(principal, now);
  }

  uint32_t burst() const { return burst_; }
  uint32_t requests_per_second() const { return rate_; }
  // Null for a shared limit.
  const PrincipalRateLimiter* per_principal() const { return per_principal_.get(); }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  uint32_t rate_;
  uint32_t burst_;
  std::unique_ptr<SharedTokenBucket> shared_;
  std::unique_ptr<PrincipalRateLimiter> per_principal_;
};

}  // namespace meshlet::sidecar::resilience
