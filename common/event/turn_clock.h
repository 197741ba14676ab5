#pragma once

// TurnClock: a Clock that reads its source once per loop turn. The callbacks of one batch of
// ready events (or of the timers that fired together) all see the time at which the first of
// them asked, the way HAProxy and nginx update their notion of "now" once per poll.
//
// Why: a proxied request reads the time for its start, its latency histograms, the load
// balancer's latency average, the retry budget's window, the outlier detector and the
// consecutive-failure breaker, and the tracer's span stamps. Each reading costs a vDSO call that
// is a visible share of a request's user time (most in virtual machines); with many events per
// turn one reading serves them all. The error is bounded by one turn's processing time, which
// the request had to wait for anyway.
//
// ExactNow() always reads the source: for intervals that may begin and end within one turn (a
// request's duration, docs/operations.md), which a shared reading would measure as zero. It
// leaves the turn's reading alone.
//
// Outside Run/RunOnce/RunUntil (set-up code, tests driving objects directly) nothing is cached:
// every call reads the source. Loop thread only.

#include "common/base/clock.h"
#include "common/event/loop.h"

namespace meshlet::event {

class TurnClock final : public Clock {
 public:
  // `loop` and `source` must outlive the clock.
  TurnClock(const Loop& loop, const Clock& source) : loop_(loop), source_(source) {}

  MonotonicTime Now() const override {
    if (!loop_.running()) return source_.Now();
    if (now_turn_ != loop_.turn()) {
      now_ = source_.Now();
      now_turn_ = loop_.turn();
    }
    return now_;
  }

  MonotonicTime ExactNow() const override { return source_.ExactNow(); }

  absl::Time WallNow() const override {
    if (!loop_.running()) return source_.WallNow();
    if (wall_turn_ != loop_.turn()) {
      wall_ = source_.WallNow();
      wall_turn_ = loop_.turn();
    }
    return wall_;
  }

 private:
  const Loop& loop_;
  const Clock& source_;
  mutable MonotonicTime now_;
  mutable uint64_t now_turn_ = 0;  // Loop::turn() starts at 1: the first call reads
  mutable absl::Time wall_;
  mutable uint64_t wall_turn_ = 0;
};

}  // namespace meshlet::event
