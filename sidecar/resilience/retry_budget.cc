#include "sidecar/resilience/retry_budget.h"

#include <algorithm>
#include <limits>

#include "common/base/logging.h"

namespace meshlet::sidecar::resilience {

absl::Status ValidateRetryBudgetConfig(const RetryBudgetConfig& config) {
  if (!(config.budget_percent >= 0.0) || config.budget_percent > 1e6) {
    return absl::InvalidArgumentError("budget_percent: must be a non-negative percentage");
  }
  if (config.bucket_count < 1 || config.bucket_count > 3600) {
    return absl::InvalidArgumentError("bucket_count: must be in [1, 3600]");
  }
  if (config.window.count() < static_cast<int64_t>(config.bucket_count)) {
    return absl::InvalidArgumentError("window: must be positive");
  }
  return absl::OkStatus();
}

RetryBudget::ActiveRetry& RetryBudget::ActiveRetry::operator=(ActiveRetry&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = other.budget_;
    other.budget_ = nullptr;
  }
  return *this;
}

void RetryBudget::ActiveRetry::Release() {
  if (budget_ == nullptr) return;
  CHECK(budget_->active_retries_ > 0) << "retry slot released twice";
  --budget_->active_retries_;
  budget_ = nullptr;
}

RetryBudget::RetryBudget(const RetryBudgetConfig& config, const Clock& clock)
    : config_(config), clock_(clock), origin_(clock.Now()) {
  CHECK_OK(ValidateRetryBudgetConfig(config_));
  bucket_width_ns_ = config_.window.count() / config_.bucket_count;
  floor_retries_ = static_cast<double>(config_.min_retries_per_second) *
                   (static_cast<double>(config_.window.count()) / 1e9);
  buckets_.resize(config_.bucket_count);
}

void RetryBudget::Reconfigure(const RetryBudgetConfig& config) {
  CHECK_OK(ValidateRetryBudgetConfig(config));
  const bool same_shape =
      config.window == config_.window && config.bucket_count == config_.bucket_count;
  config_ = config;
  floor_retries_ = static_cast<double>(config_.min_retries_per_second) *
                   (static_cast<double>(config_.window.count()) / 1e9);
  if (same_shape) return;
  bucket_width_ns_ = config_.window.count() / config_.bucket_count;
  buckets_.assign(config_.bucket_count, Bucket{});
  origin_ = clock_.Now();
  head_index_ = 0;
  requests_ = retries_ = 0;
}

void RetryBudget::Roll() {
  const int64_t now_index = (clock_.Now() - origin_).count() / bucket_width_ns_;
  if (now_index <= head_index_) return;
  const int64_t n = static_cast<int64_t>(buckets_.size());
  if (now_index - head_index_ >= n) {
    // Idle for a whole window: everything expired.
    for (Bucket& b : buckets_) b = Bucket{};
    requests_ = retries_ = 0;
  } else {
    for (int64_t i = head_index_ + 1; i <= now_index; ++i) {
      Bucket& b = buckets_[i % n];
      requests_ -= b.requests;
      retries_ -= b.retries;
      b = Bucket{};
    }
  }
  head_index_ = now_index;
}

double RetryBudget::AllowanceNow() const {
  // Multiply before dividing: with integral percentages the result is then exact, so the
  // boundary (e.g. 20 % of 1005 = 201) does not depend on rounding.
  return std::max(config_.budget_percent * static_cast<double>(requests_) / 100.0, floor_retries_);
}

void RetryBudget::RecordRequest() {
  Roll();
  uint32_t& requests = buckets_[head_index_ % static_cast<int64_t>(buckets_.size())].requests;
  if (requests == std::numeric_limits<uint32_t>::max()) return;
  ++requests;
  ++requests_;
}

bool RetryBudget::TryAcquireRetry() {
  Roll();
  if (config_.enabled && static_cast<double>(retries_ + 1) > AllowanceNow()) return false;
  uint32_t& retries = buckets_[head_index_ % static_cast<int64_t>(buckets_.size())].retries;
  if (retries == std::numeric_limits<uint32_t>::max()) return true;  // admitted, not counted
  ++retries;
  ++retries_;
  return true;
}

RetryBudget::Admission RetryBudget::Admit() {
  if (config_.max_concurrent_retries != 0 && active_retries_ >= config_.max_concurrent_retries) {
    return Admission{Verdict::kConcurrencyExceeded, ActiveRetry()};
  }
  if (!TryAcquireRetry()) return Admission{Verdict::kBudgetExhausted, ActiveRetry()};
  ++active_retries_;
  return Admission{Verdict::kAdmitted, ActiveRetry(this)};
}

uint64_t RetryBudget::requests_in_window() {
  Roll();
  return requests_;
}

uint64_t RetryBudget::retries_in_window() {
  Roll();
  return retries_;
}

double RetryBudget::Allowance() {
  Roll();
  return AllowanceNow();
}

absl::string_view RetryBudgetVerdictName(RetryBudget::Verdict verdict) {
  switch (verdict) {
    case RetryBudget::Verdict::kAdmitted:
      return "admitted";
    case RetryBudget::Verdict::kBudgetExhausted:
      return "retry_overflow";
    case RetryBudget::Verdict::kConcurrencyExceeded:
      return "retry_overflow_concurrent";
  }
  return "unknown";
}

}  // namespace meshlet::sidecar::resilience
