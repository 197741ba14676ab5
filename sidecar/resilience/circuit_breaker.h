#pragma once

// Per-cluster resource limits ("circuit breaker thresholds"): how many upstream connections,
// pending requests (waiting for a connection), active requests and concurrent retries a cluster
// may have at once. Past a limit the caller fails fast (local 503 with the overflow reason)
// instead of queueing work onto an upstream that is already saturated.
//
// Usage: TryAcquire(kind) returns a ResourceGuard that holds one unit until it is destroyed, so
// counts always balance, or nullopt on overflow (the caller counts `<kind>_overflow`).
//
// Ownership and threading: one instance per cluster, shared by all workers (the cluster holds it
// in a shared_ptr and guards keep a raw pointer; the cluster must outlive every guard). Counters
// are lock-free atomics. Why shared rather than one per worker: the limits are absolute numbers
// that protect the upstream ("at most 1024 requests to this cluster from this sidecar"); per-worker
// copies would multiply them by --concurrency, and small limits such as 3 concurrent retries do
// not divide between workers. An acquire is one fetch_add (plus a fetch_sub on overflow), which
// is cheap next to the request it admits. Limits can change at runtime (config update) without
// disturbing the counts. Nothing allocates.

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::resilience {

enum class ResourceKind : uint8_t {
  kConnection = 0,      // upstream connections open or opening
  kPendingRequest = 1,  // requests waiting for a connection or stream
  kRequest = 2,         // requests in flight upstream
  kRetry = 3,           // retries in flight
};
inline constexpr size_t kResourceKindCount = 4;

// "cx_overflow", "rq_pending_overflow", "rq_overflow", "rq_retry_overflow": the counter suffix.
absl::string_view ResourceOverflowName(ResourceKind kind);

// max_retries with no limit: what a cluster whose retry budget is enabled gets unless its
// resource sets max_retries (the budget's rate governs; sidecar/config translate_clusters.cc).
inline constexpr uint32_t kUnlimitedRetries = 0xffffffffu;

struct CircuitBreakerConfig {
  uint32_t max_connections = 1024;       // CircuitBreakers.max_connections
  uint32_t max_pending_requests = 1024;  // CircuitBreakers.max_pending_requests
  uint32_t max_requests = 1024;          // CircuitBreakers.max_requests
  // CircuitBreakers.max_retries (concurrent). 3 is the default without a retry budget; with an
  // enabled budget an unset max_retries is kUnlimitedRetries.
  uint32_t max_retries = 3;
};

class CircuitBreakerThresholds;

// Holds one unit of one resource; releases it when destroyed or on Release(). Move-only.
class ResourceGuard {
 public:
  ResourceGuard(ResourceGuard&& other) noexcept : counter_(other.counter_) {
    other.counter_ = nullptr;
  }
  ResourceGuard& operator=(ResourceGuard&& other) noexcept;
  ResourceGuard(const ResourceGuard&) = delete;
  ResourceGuard& operator=(const ResourceGuard&) = delete;
  ~ResourceGuard() { Release(); }

  void Release();
  bool holds() const { return counter_ != nullptr; }

 private:
  friend class CircuitBreakerThresholds;
  explicit ResourceGuard(std::atomic<uint32_t>* counter) : counter_(counter) {}
  std::atomic<uint32_t>* counter_;
};

class CircuitBreakerThresholds {
 public:
  explicit CircuitBreakerThresholds(const CircuitBreakerConfig& config = {});
  CircuitBreakerThresholds(const CircuitBreakerThresholds&) = delete;
  CircuitBreakerThresholds& operator=(const CircuitBreakerThresholds&) = delete;

  // One unit of `kind`, or nullopt when that would exceed the limit.
  std::optional<ResourceGuard> TryAcquire(ResourceKind kind);

  // New limits apply to later acquires; units already held stay held (a lowered limit drains).
  void SetLimits(const CircuitBreakerConfig& config);

  uint32_t Active(ResourceKind kind) const;
  uint32_t Limit(ResourceKind kind) const;
  // Limit - Active, or 0 when over (after a lowered limit): the remaining-capacity gauge.
  uint32_t Remaining(ResourceKind kind) const;
  // Acquires of `kind` refused so far (monotonic), for the per-threshold overflow counters. Only
  // the refusal path pays for counting it.
  uint64_t Overflows(ResourceKind kind) const;

 private:
  std::array<std::atomic<uint32_t>, kResourceKindCount> active_{};
  std::array<std::atomic<uint32_t>, kResourceKindCount> limit_{};
  std::array<std::atomic<uint64_t>, kResourceKindCount> overflows_{};
};

}  // namespace meshlet::sidecar::resilience
