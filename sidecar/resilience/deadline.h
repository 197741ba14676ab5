#pragma once

// Request deadlines: the time by which the whole request, retries included, must be answered.
//
// A Deadline is the earliest of the route timeout (RouteAction.timeout, default 15 s) and the time
// the caller has left (its grpc-timeout or x-meshlet-deadline header, which the router parses).
// The remaining time, a little reduced (NextHopBudget), is what the next hop is told it has.
//
// Ownership: holds a reference to the Clock, which must outlive it. Threading: a Deadline belongs
// to one request on one worker. Nothing here allocates.

#include <optional>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"

namespace meshlet::sidecar::resilience {

class Deadline {
 public:
  // Which limit set the deadline, for stats and for the error message when it fires.
  enum class Source { kNone, kRoute, kCaller };

  // A request without any deadline.
  explicit Deadline(const Clock& clock) : clock_(clock) {}
  // route_timeout: nullopt or zero means none (RouteAction.timeout "0s"). caller_remaining: from
  // the caller's headers; zero or negative means already expired.
  Deadline(const Clock& clock, std::optional<Duration> route_timeout,
           std::optional<Duration> caller_remaining);

  bool infinite() const { return !expiry_.has_value(); }
  Source source() const { return source_; }
  std::optional<MonotonicTime> expiry() const { return expiry_; }

  // Time left, never negative; Duration::max() when infinite.
  Duration Remaining() const;
  bool Expired() const { return expiry_.has_value() && clock_.Now() >= *expiry_; }

  // The timeout for the next attempt: min(per_try, Remaining()); nullopt when neither limits it.
  // per_try of zero means "not set" (RetryPolicy.per_try_timeout unset).
  std::optional<Duration> PerTryTimeout(std::optional<Duration> per_try) const;

 private:
  const Clock& clock_;
  std::optional<MonotonicTime> expiry_;
  Source source_ = Source::kNone;
};

absl::string_view DeadlineSourceName(Deadline::Source source);

// What the next hop is told it has when this attempt has `attempt_timeout` left as its request
// leaves: a little less, so the hop nearest the work times out first and its answer (a 504 with
// its own response flag, or a gRPC DEADLINE_EXCEEDED) travels back before our own timer fires and
// resets the attempt. When the two timers still meet, the client gets either 504, whole: a local
// reply leaves in one write (docs/adr/0077). The margin is 1/20 of the time, at most
// kMaxNextHopMargin: 10 ms of 300 ms, 1 ms of 20 ms.
inline constexpr Duration kMaxNextHopMargin = std::chrono::milliseconds(10);
Duration NextHopBudget(Duration attempt_timeout);

}  // namespace meshlet::sidecar::resilience
