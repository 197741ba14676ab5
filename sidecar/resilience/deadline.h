#pragma once

// Request deadlines: the time by which the whole request, retries included, must be answered.
//
// A Deadline is the earliest of the route timeout (RouteAction.timeout, default 15 s) and the time
// the caller has left, which arrives in one of two headers:
//
//   grpc-timeout        gRPC's format: 1 to 8 ASCII digits then one unit letter,
//                       H (hours), M (minutes), S (seconds), m (ms), u (µs), n (ns).
//                       "0" followed by a unit is accepted and means already expired (the spec
//                       says "positive" but common peers send it). Values beyond what a
//                       Duration holds saturate to "no deadline".
//   x-meshlet-deadline  meshlet's own: the caller's remaining time in whole milliseconds, as 1 to
//                       10 ASCII digits (no sign, unit or spaces; leading zeros allowed; at most
//                       9999999999 ms, about 115 days). It is relative, not an absolute time,
//                       because clocks on different hosts disagree; each hop subtracts the time it
//                       spent before forwarding. "0" means expired.
//
// For the next hop, the remaining time is written back in both formats, rounded down so the
// next hop never believes it has more time than we do.
//
// Ownership: holds a reference to the Clock, which must outlive it. Threading: a Deadline belongs
// to one request on one worker. Nothing here allocates.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"

namespace meshlet::resilience {

inline constexpr absl::string_view kGrpcTimeoutHeader = "grpc-timeout";
inline constexpr absl::string_view kMeshletDeadlineHeader = "x-meshlet-deadline";

// A header value formatted into an inline buffer, so formatting never allocates.
class HeaderValueText {
 public:
  absl::string_view view() const { return absl::string_view(data_, size_); }

 private:
  friend HeaderValueText FormatGrpcTimeout(Duration remaining);
  friend HeaderValueText FormatMeshletDeadline(Duration remaining);
  char data_[16] = {};
  size_t size_ = 0;
};

// Parses a grpc-timeout value. InvalidArgument for an empty value, more than 8 digits, a
// non-digit, or an unknown unit. Saturates to Duration::max() on overflow.
absl::StatusOr<Duration> ParseGrpcTimeout(absl::string_view value);
// The finest unit that fits in 8 digits, rounded down; negative counts as zero ("0n").
HeaderValueText FormatGrpcTimeout(Duration remaining);

// Parses an x-meshlet-deadline value (see above).
absl::StatusOr<Duration> ParseMeshletDeadline(absl::string_view value);
// Whole milliseconds, rounded down, clamped to [0, 9999999999].
HeaderValueText FormatMeshletDeadline(Duration remaining);

// What the caller's headers said. A malformed header is ignored (as if absent) and flagged so the
// caller can count it; when both are present the smaller wins.
struct CallerDeadline {
  std::optional<Duration> remaining;
  bool grpc_timeout_invalid = false;
  bool meshlet_deadline_invalid = false;
};
CallerDeadline ParseCallerDeadline(std::optional<absl::string_view> grpc_timeout,
                                   std::optional<absl::string_view> meshlet_deadline);

class Deadline {
 public:
  // Which limit set the deadline, for stats and for the error message when it fires.
  enum class Source { kNone, kRoute, kCaller };

  // A request without any deadline.
  explicit Deadline(const Clock& clock) : clock_(clock) {}
  // route_timeout: nullopt or zero means none (RouteAction.timeout "0s"). caller_remaining: from
  // ParseCallerDeadline; zero or negative means already expired.
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

// What the next hop is told it has when this attempt has `attempt_timeout`: a little less, so the
// hop nearest the work times out first and its answer (a 504 with its own response flag, or a
// gRPC DEADLINE_EXCEEDED) travels back before our own timer fires. With equal budgets the two
// timers race, and when ours loses after the upstream's response headers were already forwarded,
// all we can do is reset a half-sent response. The margin is 1/20 of the time, at most
// kMaxNextHopMargin: 10 ms of 300 ms, 1 ms of 20 ms.
inline constexpr Duration kMaxNextHopMargin = std::chrono::milliseconds(10);
Duration NextHopBudget(Duration attempt_timeout);

}  // namespace meshlet::resilience
