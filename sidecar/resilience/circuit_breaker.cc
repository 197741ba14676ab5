#include "sidecar/resilience/circuit_breaker.h"

#include "common/base/logging.h"

namespace meshlet::sidecar::resilience {

absl::string_view ResourceOverflowName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kConnection:
      return "cx_overflow";
    case ResourceKind::kPendingRequest:
      return "rq_pending_overflow";
    case ResourceKind::kRequest:
      return "rq_overflow";
    case ResourceKind::kRetry:
      return "rq_retry_overflow";
  }
  return "unknown_overflow";
}

ResourceGuard& ResourceGuard::operator=(ResourceGuard&& other) noexcept {
  if (this != &other) {
    Release();
    counter_ = other.counter_;
    other.counter_ = nullptr;
  }
  return *this;
}

void ResourceGuard::Release() {
  if (counter_ == nullptr) return;
  const uint32_t before = counter_->fetch_sub(1, std::memory_order_acq_rel);
  CHECK(before > 0) << "resource released more often than acquired";
  counter_ = nullptr;
}

CircuitBreakerThresholds::CircuitBreakerThresholds(const CircuitBreakerConfig& config) {
  SetLimits(config);
}

void CircuitBreakerThresholds::SetLimits(const CircuitBreakerConfig& config) {
  auto set = [this](ResourceKind kind, uint32_t limit) {
    limit_[static_cast<size_t>(kind)].store(limit, std::memory_order_relaxed);
  };
  set(ResourceKind::kConnection, config.max_connections);
  set(ResourceKind::kPendingRequest, config.max_pending_requests);
  set(ResourceKind::kRequest, config.max_requests);
  set(ResourceKind::kRetry, config.max_retries);
}

std::optional<ResourceGuard> CircuitBreakerThresholds::TryAcquire(ResourceKind kind) {
  const size_t i = static_cast<size_t>(kind);
  // Optimistic increment: a caller is admitted only if the count before its own increment was
  // below the limit, so admitted units never exceed it. One that lands past the limit takes its
  // increment back; a racer at the boundary may be refused during that instant, which is safe.
  const uint32_t before = active_[i].fetch_add(1, std::memory_order_acq_rel);
  if (before >= limit_[i].load(std::memory_order_relaxed)) {
    active_[i].fetch_sub(1, std::memory_order_acq_rel);
    overflows_[i].fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  return ResourceGuard(&active_[i]);
}

uint32_t CircuitBreakerThresholds::Active(ResourceKind kind) const {
  return active_[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

uint32_t CircuitBreakerThresholds::Limit(ResourceKind kind) const {
  return limit_[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

uint64_t CircuitBreakerThresholds::Overflows(ResourceKind kind) const {
  return overflows_[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

uint32_t CircuitBreakerThresholds::Remaining(ResourceKind kind) const {
  const uint32_t active = Active(kind);
  const uint32_t limit = Limit(kind);
  return active >= limit ? 0 : limit - active;
}

}  // namespace meshlet::sidecar::resilience
