#pragma once

// A cluster's retry budget: bounds retries to a share of recent traffic so that retries cannot
// multiply load on an upstream that is already failing (a "retry storm").
//
// Rule: a retry is admitted only if, counting it, retries_in_window <= allowance, where
//
//   allowance = max(budget_percent / 100 * requests_in_window,
//                   min_retries_per_second * window_seconds)
//
// The floor lets low-traffic clusters retry at all (20 % of 3 requests would be 0).
// RecordRequest() counts original downstream requests only; admitted retries are counted by
// TryAcquireRetry()/Admit(), never as requests (otherwise retries would fund more retries).
//
// Window arithmetic. The window (default 10 s) is split into `bucket_count` fixed buckets of
// width w = window / bucket_count (default 10 x 1 s), aligned to the time the budget was created.
// Bucket k covers [origin + k*w, origin + (k+1)*w). At time t the window is the current bucket and
// the bucket_count - 1 before it. An event recorded at time t0 in bucket k therefore counts until
// origin + (k + bucket_count) * w, i.e. exactly `window` after the start of its bucket: between
// window - w and window after t0. Memory is O(bucket_count) and fixed at construction (8 bytes a
// bucket; up to kInlineBuckets inside the object, so the default budget allocates nothing: every
// cluster a worker uses has one, ADR 0091). A bucket counts up to 2^32 - 1 requests and as many
// retries; more in one bucket are not counted (a worker does not reach that). Each call
// rolls over at most bucket_count buckets (all of them after a long idle gap), so every operation
// is O(1) and allocation-free.
//
// Concurrency: besides the rate, `max_concurrent_retries` (0 = unlimited) caps retries in flight;
// Admit() hands back an ActiveRetry guard that holds one slot until destroyed.
//
// Ownership and threading: one RetryBudget per cluster per worker, used only on that worker's
// thread (no locks, no atomics). The budget is a ratio of the worker's own traffic, so per-worker
// instances enforce the same ratio sidecar-wide; the absolute floor and the concurrency cap apply
// per worker. Guards must not outlive the budget.

#include <cstdint>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"

namespace meshlet::sidecar::resilience {

struct RetryBudgetConfig {
  // RetryBudget.disabled negated. When false the rate check always passes (the concurrency cap,
  // if any, still applies) and the router falls back to CircuitBreakers.max_retries.
  bool enabled = true;
  // RetryBudget.budget_percent: retries as a percentage of requests in the window.
  double budget_percent = 20.0;
  // RetryBudget.min_retries_per_second: floor of the allowance, times window seconds.
  uint32_t min_retries_per_second = 10;
  // RetryBudget.window: how far back requests and retries are counted. Rounded down to a
  // multiple of bucket_count nanoseconds.
  Duration window = std::chrono::seconds(10);
  // Granularity of the sliding window. Not in the schema; 10 gives 1 s buckets by default.
  uint32_t bucket_count = 10;
  // Retries in flight at once on this worker; 0 = unlimited (the rate budget governs).
  uint32_t max_concurrent_retries = 0;
};

// OK when percent is in [0, 100+], window >= bucket_count ns and 1 <= bucket_count <= 3600.
absl::Status ValidateRetryBudgetConfig(const RetryBudgetConfig& config);

class RetryBudget {
 public:
  enum class Verdict {
    kAdmitted,
    kBudgetExhausted,      // counter: retry_overflow (rate budget)
    kConcurrencyExceeded,  // counter: retry_overflow_concurrent
  };

  // Holds one concurrent-retry slot; releases it when destroyed or on Release(). Move-only.
  class ActiveRetry {
   public:
    ActiveRetry() = default;
    ActiveRetry(ActiveRetry&& other) noexcept : budget_(other.budget_) { other.budget_ = nullptr; }
    ActiveRetry& operator=(ActiveRetry&& other) noexcept;
    ActiveRetry(const ActiveRetry&) = delete;
    ActiveRetry& operator=(const ActiveRetry&) = delete;
    ~ActiveRetry() { Release(); }

    void Release();
    bool holds() const { return budget_ != nullptr; }

   private:
    friend class RetryBudget;
    explicit ActiveRetry(RetryBudget* budget) : budget_(budget) {}
    RetryBudget* budget_ = nullptr;
  };

  struct Admission {
    Verdict verdict;
    ActiveRetry guard;  // holds a slot iff verdict == kAdmitted
    bool admitted() const { return verdict == Verdict::kAdmitted; }
  };

  RetryBudget(const RetryBudgetConfig& config, const Clock& clock);
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // Applies a new config (a cluster update). Retries in flight keep their slots. The window's
  // counts survive when its shape (window, bucket_count) is unchanged, else they start over.
  void Reconfigure(const RetryBudgetConfig& config);

  // One original downstream request routed to this cluster.
  void RecordRequest();

  // Rate budget only: true and counts the retry if the rule above allows one more.
  bool TryAcquireRetry();

  // Concurrency first (a refused retry must not consume budget), then the rate budget.
  Admission Admit();

  // Window totals as of now (rolls expired buckets out first).
  uint64_t requests_in_window();
  uint64_t retries_in_window();
  // max(percent of requests, floor) as of now: the most retries the window may hold.
  double Allowance();
  uint32_t active_retries() const { return active_retries_; }
  const RetryBudgetConfig& config() const { return config_; }

 private:
  struct Bucket {
    uint32_t requests = 0;  // saturates (see the header comment)
    uint32_t retries = 0;
  };
  static constexpr size_t kInlineBuckets = 10;  // RetryBudgetConfig's default bucket_count

  void Roll();
  double AllowanceNow() const;

  RetryBudgetConfig config_;
  const Clock& clock_;
  MonotonicTime origin_;
  int64_t bucket_width_ns_;
  double floor_retries_;
  absl::InlinedVector<Bucket, kInlineBuckets> buckets_;  // ring, sized once
  int64_t head_index_ = 0;                               // absolute index of the newest bucket
  uint64_t requests_ = 0;                                // totals over the ring
  uint64_t retries_ = 0;
  uint32_t active_retries_ = 0;
};

absl::string_view RetryBudgetVerdictName(RetryBudget::Verdict verdict);

}  // namespace meshlet::sidecar::resilience
