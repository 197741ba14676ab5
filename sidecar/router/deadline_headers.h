#pragma once

// The caller's deadline as request headers: how much time the caller has left, read from the
// downstream request and written, reduced, on the upstream one (resilience::Deadline keeps the
// time). It arrives in one of two headers:
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
// Pure functions; nothing here allocates.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"

namespace meshlet::sidecar::router {

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

}  // namespace meshlet::sidecar::router
