#include "sidecar/resilience/deadline.h"

#include <algorithm>

namespace meshlet::sidecar::resilience {

Deadline::Deadline(const Clock& clock, std::optional<Duration> route_timeout,
                   std::optional<Duration> caller_remaining)
    : clock_(clock) {
  const MonotonicTime now = clock_.Now();
  // now + d, or "no deadline" when that is past what a time_point holds.
  auto expiry_after = [now](Duration d) -> std::optional<MonotonicTime> {
    if (d <= Duration::zero()) return now;
    if (d >= MonotonicTime::max() - now) return std::nullopt;
    return now + d;
  };
  if (route_timeout.has_value() && *route_timeout > Duration::zero()) {
    expiry_ = expiry_after(*route_timeout);
    if (expiry_.has_value()) source_ = Source::kRoute;
  }
  if (caller_remaining.has_value()) {
    std::optional<MonotonicTime> caller = expiry_after(*caller_remaining);
    // Strictly earlier: on a tie the route's own timeout is the reported source.
    if (caller.has_value() && (!expiry_.has_value() || *caller < *expiry_)) {
      expiry_ = caller;
      source_ = Source::kCaller;
    }
  }
}

Duration Deadline::Remaining() const {
  if (!expiry_.has_value()) return Duration::max();
  return std::max(*expiry_ - clock_.Now(), Duration::zero());
}

Duration NextHopBudget(Duration attempt_timeout) {
  if (attempt_timeout <= Duration::zero()) return Duration::zero();
  return attempt_timeout - std::min(attempt_timeout / 20, kMaxNextHopMargin);
}

std::optional<Duration> Deadline::PerTryTimeout(std::optional<Duration> per_try) const {
  const bool has_per_try = per_try.has_value() && *per_try > Duration::zero();
  if (infinite()) return has_per_try ? per_try : std::nullopt;
  const Duration remaining = Remaining();
  return has_per_try ? std::min(*per_try, remaining) : remaining;
}

absl::string_view DeadlineSourceName(Deadline::Source source) {
  switch (source) {
    case Deadline::Source::kNone:
      return "none";
    case Deadline::Source::kRoute:
      return "route";
    case Deadline::Source::kCaller:
      return "caller";
  }
  return "unknown";
}

}  // namespace meshlet::sidecar::resilience
