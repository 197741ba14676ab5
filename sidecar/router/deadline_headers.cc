#include "sidecar/router/deadline_headers.h"

#include <algorithm>
#include <limits>

#include "common/http/grpc/status.h"

namespace meshlet::sidecar::router {
namespace {

constexpr int64_t kMaxGrpcTimeoutValue = 99999999;     // 8 digits
constexpr int64_t kMaxMeshletDeadlineMs = 9999999999;  // 10 digits
constexpr int64_t kNsPerMs = 1000 * 1000;

// Writes `value` (>= 0) in decimal at `out`, then `suffix` if not NUL; returns the length.
size_t WriteDecimal(int64_t value, char suffix, char* out) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  size_t len = 0;
  while (n > 0) out[len++] = tmp[--n];
  if (suffix != '\0') out[len++] = suffix;
  return len;
}

// Parses 1..max_digits ASCII digits; false on anything else.
bool ParseDigits(absl::string_view digits, size_t max_digits, int64_t* value) {
  if (digits.empty() || digits.size() > max_digits) return false;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');  // at most 10 digits: cannot overflow int64
  }
  *value = v;
  return true;
}

}  // namespace

absl::StatusOr<Duration> ParseGrpcTimeout(absl::string_view value) {
  std::optional<Duration> timeout = http::grpc::ParseGrpcTimeout(value);
  if (!timeout.has_value()) {
    return absl::InvalidArgumentError(
        "grpc-timeout: expected 1 to 8 digits then a unit (H, M, S, m, u or n)");
  }
  return *timeout;
}

HeaderValueText FormatGrpcTimeout(Duration remaining) {
  static constexpr struct {
    int64_t ns;
    char unit;
  } kUnits[] = {
      {1, 'n'},
      {1000, 'u'},
      {1000 * 1000, 'm'},
      {1000 * 1000 * 1000, 'S'},
      {int64_t{60} * 1000 * 1000 * 1000, 'M'},
      {int64_t{3600} * 1000 * 1000 * 1000, 'H'},
  };
  const int64_t ns = std::max<int64_t>(remaining.count(), 0);
  HeaderValueText text;
  for (const auto& u : kUnits) {
    // Duration::max() is ~2.6 million hours, so the loop always finds a fitting unit.
    if (ns / u.ns <= kMaxGrpcTimeoutValue) {
      text.size_ = WriteDecimal(ns / u.ns, u.unit, text.data_);
      break;
    }
  }
  return text;
}

absl::StatusOr<Duration> ParseMeshletDeadline(absl::string_view value) {
  int64_t ms;
  if (!ParseDigits(value, 10, &ms)) {
    return absl::InvalidArgumentError("x-meshlet-deadline: expected 1 to 10 digits (milliseconds)");
  }
  return Duration(ms * kNsPerMs);
}

HeaderValueText FormatMeshletDeadline(Duration remaining) {
  const int64_t ms =
      std::clamp<int64_t>(remaining.count() / kNsPerMs, int64_t{0}, kMaxMeshletDeadlineMs);
  HeaderValueText text;
  text.size_ = WriteDecimal(ms, '\0', text.data_);
  return text;
}

CallerDeadline ParseCallerDeadline(std::optional<absl::string_view> grpc_timeout,
                                   std::optional<absl::string_view> meshlet_deadline) {
  CallerDeadline out;
  auto take = [&out](Duration d) {
    if (!out.remaining.has_value() || d < *out.remaining) out.remaining = d;
  };
  if (grpc_timeout.has_value()) {
    absl::StatusOr<Duration> d = ParseGrpcTimeout(*grpc_timeout);
    if (d.ok()) {
      take(*d);
    } else {
      out.grpc_timeout_invalid = true;
    }
  }
  if (meshlet_deadline.has_value()) {
    absl::StatusOr<Duration> d = ParseMeshletDeadline(*meshlet_deadline);
    if (d.ok()) {
      take(*d);
    } else {
      out.meshlet_deadline_invalid = true;
    }
  }
  return out;
}

}  // namespace meshlet::sidecar::router
