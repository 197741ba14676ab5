#pragma once

// A consecutive-failure circuit breaker for one cluster (or one dependency):
//
//   kClosed   admits everything; `failure_threshold` failures in a row open it.
//   kOpen     rejects everything for `open_duration` (default 60 s), then becomes kHalfOpen.
//   kHalfOpen admits exactly one probe request; its success closes the breaker, its failure opens
//             it again for another `open_duration`. Other requests are rejected meanwhile.
//
// Results are matched to the state they were admitted in: TryAdmit() returns a Ticket carrying the
// breaker's generation, and Record() ignores tickets from an earlier generation. So a slow request
// admitted while closed cannot close a breaker that has since opened, and only the probe decides a
// half-open breaker. If a probe's result never arrives (the request was cancelled and the caller
// forgot to report), another probe is admitted after `open_duration`, so the breaker cannot stick.
//
// Ownership: holds a reference to the Clock, which must outlive it. Threading: single-threaded;
// each worker owns its own (the decision depends on the order of results, which only one thread
// sees). Time-based transitions happen lazily when the breaker is asked, so it needs no timer.
// Nothing allocates.

#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"

namespace meshlet::sidecar::resilience {

struct ConsecutiveFailureBreakerConfig {
  // ConsecutiveFailureBreaker.failure_threshold: failures in a row that open it; 0 = off (the
  // breaker always admits).
  uint32_t failure_threshold = 0;
  // ConsecutiveFailureBreaker.open_duration.
  Duration open_duration = std::chrono::seconds(60);
};

class ConsecutiveFailureBreaker {
 public:
  // Numeric values are the exported gauge: 0 closed, 1 open, 2 half-open.
  enum class State : int { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

  enum class Verdict {
    kAdmitted,               // closed
    kAdmittedProbe,          // half-open: this request is the probe
    kRejectedOpen,           // counter: breaker_open
    kRejectedProbeInFlight,  // counter: breaker_open (half-open, probe outstanding)
  };

  struct Ticket {
    Verdict verdict;
    uint64_t generation;
    bool admitted() const {
      return verdict == Verdict::kAdmitted || verdict == Verdict::kAdmittedProbe;
    }
  };

  // What a result changed, for counters (breaker_opened, breaker_closed).
  enum class Transition { kNone, kOpened, kClosed, kReopened, kIgnoredStale };

  ConsecutiveFailureBreaker(const ConsecutiveFailureBreakerConfig& config, const Clock& clock);

  Ticket TryAdmit();
  // The result of a request admitted with `ticket` (rejected tickets are ignored).
  Transition Record(const Ticket& ticket, bool success);

  // Whether TryAdmit() would refuse now (open, or half-open with its probe out), without taking
  // the probe: lets a caller answer early and leave the admission itself for later.
  bool WouldReject();
  // The probe admitted with `ticket` ended without a result: another request may probe now.
  void CancelProbe(const Ticket& ticket);
  uint64_t generation() const { return generation_; }

  State state();
  int StateGauge() { return static_cast<int>(state()); }
  uint32_t consecutive_failures() const { return consecutive_failures_; }

 private:
  void Refresh(MonotonicTime now);
  void Enter(State state, MonotonicTime now);

  ConsecutiveFailureBreakerConfig config_;
  const Clock& clock_;
  State state_ = State::kClosed;
  uint64_t generation_ = 0;  // bumped on every state change
  uint32_t consecutive_failures_ = 0;
  MonotonicTime opened_at_{};
  bool probe_in_flight_ = false;
  MonotonicTime probe_started_{};
};

absl::string_view BreakerStateName(ConsecutiveFailureBreaker::State state);

}  // namespace meshlet::sidecar::resilience
