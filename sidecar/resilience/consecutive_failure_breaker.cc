#include "sidecar/resilience/consecutive_failure_breaker.h"

namespace meshlet::sidecar::resilience {

ConsecutiveFailureBreaker::ConsecutiveFailureBreaker(const ConsecutiveFailureBreakerConfig& config,
                                                     const Clock& clock)
    : config_(config), clock_(clock) {}

void ConsecutiveFailureBreaker::Enter(State state, MonotonicTime now) {
  state_ = state;
  ++generation_;
  probe_in_flight_ = false;
  if (state == State::kOpen) opened_at_ = now;
  if (state == State::kClosed) consecutive_failures_ = 0;
}

void ConsecutiveFailureBreaker::Refresh(MonotonicTime now) {
  if (state_ == State::kOpen && now - opened_at_ >= config_.open_duration) {
    Enter(State::kHalfOpen, now);
  }
  if (state_ == State::kHalfOpen && probe_in_flight_ &&
      now - probe_started_ >= config_.open_duration) {
    // The probe's result never came: let another request probe.
    probe_in_flight_ = false;
    ++generation_;
  }
}

ConsecutiveFailureBreaker::State ConsecutiveFailureBreaker::state() {
  Refresh(clock_.Now());
  return state_;
}

bool ConsecutiveFailureBreaker::WouldReject() {
  Refresh(clock_.Now());
  return state_ == State::kOpen || (state_ == State::kHalfOpen && probe_in_flight_);
}

void ConsecutiveFailureBreaker::CancelProbe(const Ticket& ticket) {
  if (ticket.verdict != Verdict::kAdmittedProbe || ticket.generation != generation_) return;
  if (state_ == State::kHalfOpen) probe_in_flight_ = false;
}

ConsecutiveFailureBreaker::Ticket ConsecutiveFailureBreaker::TryAdmit() {
  const MonotonicTime now = clock_.Now();
  Refresh(now);
  switch (state_) {
    case State::kClosed:
      return Ticket{Verdict::kAdmitted, generation_};
    case State::kOpen:
      return Ticket{Verdict::kRejectedOpen, generation_};
    case State::kHalfOpen:
      if (probe_in_flight_) return Ticket{Verdict::kRejectedProbeInFlight, generation_};
      probe_in_flight_ = true;
      probe_started_ = now;
      return Ticket{Verdict::kAdmittedProbe, generation_};
  }
  return Ticket{Verdict::kRejectedOpen, generation_};
}

ConsecutiveFailureBreaker::Transition ConsecutiveFailureBreaker::Record(const Ticket& ticket,
                                                                        bool success) {
  if (!ticket.admitted()) return Transition::kNone;
  const MonotonicTime now = clock_.Now();
  Refresh(now);
  if (ticket.generation != generation_) return Transition::kIgnoredStale;
  switch (state_) {
    case State::kClosed:
      if (success) {
        consecutive_failures_ = 0;
        return Transition::kNone;
      }
      ++consecutive_failures_;
      if (config_.failure_threshold != 0 && consecutive_failures_ >= config_.failure_threshold) {
        Enter(State::kOpen, now);
        return Transition::kOpened;
      }
      return Transition::kNone;
    case State::kHalfOpen:
      if (ticket.verdict != Verdict::kAdmittedProbe) return Transition::kIgnoredStale;
      if (success) {
        Enter(State::kClosed, now);
        return Transition::kClosed;
      }
      Enter(State::kOpen, now);
      return Transition::kReopened;
    case State::kOpen:
      // Unreachable: nothing is admitted while open, and opening bumps the generation.
      return Transition::kIgnoredStale;
  }
  return Transition::kNone;
}

absl::string_view BreakerStateName(ConsecutiveFailureBreaker::State state) {
  switch (state) {
    case ConsecutiveFailureBreaker::State::kClosed:
      return "closed";
    case ConsecutiveFailureBreaker::State::kOpen:
      return "open";
    case ConsecutiveFailureBreaker::State::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

}  // namespace meshlet::sidecar::resilience
