#include "common/http/grpc/status.h"

#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace meshlet::http::grpc {

StatusCode FromAbslStatusCode(absl::StatusCode code) {
  const int value = static_cast<int>(code);
  return value >= 0 && value <= kMaxStatusCode ? static_cast<StatusCode>(value)
                                               : StatusCode::kInternal;
}

absl::string_view StatusCodeName(StatusCode code) {
  static constexpr absl::string_view kNames[kMaxStatusCode + 1] = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  int i = static_cast<int>(code);
  return i >= 0 && i <= kMaxStatusCode ? kNames[i] : "UNKNOWN";
}

std::string PercentEncode(absl::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (char ch : message) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string PercentDecode(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '%' && i + 2 < value.size() && HexValue(value[i + 1]) >= 0 &&
        HexValue(value[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(value[i + 1]) * 16 + HexValue(value[i + 2])));
      i += 2;
    } else {
      out.push_back(value[i]);
    }
  }
  return out;
}

std::optional<GrpcStatus> ParseStatus(const HeaderMap& trailers) {
  std::optional<absl::string_view> status = trailers.Get("grpc-status");
  if (!status.has_value()) return std::nullopt;
  GrpcStatus result;
  int code = 0;
  if (absl::SimpleAtoi(*status, &code) && code >= 0 && code <= kMaxStatusCode && !status->empty() &&
      absl::ascii_isdigit(static_cast<unsigned char>((*status)[0]))) {
    result.code = static_cast<StatusCode>(code);
  }
  if (std::optional<absl::string_view> message = trailers.Get("grpc-message")) {
    result.message = PercentDecode(*message);
  }
  return result;
}

HeaderMap StatusTrailers(StatusCode code, absl::string_view message) {
  HeaderMap h;
  h.Add("grpc-status", std::to_string(static_cast<int>(code)));
  if (!message.empty()) h.Add("grpc-message", PercentEncode(message));
  return h;
}

HeaderMap LocalReplyHeaders(StatusCode code, absl::string_view message) {
  HeaderMap h{{":status", "200"}, {"content-type", "application/grpc"}};
  h.Add("grpc-status", std::to_string(static_cast<int>(code)));
  if (!message.empty()) h.Add("grpc-message", PercentEncode(message));
  return h;
}

StatusCode HttpStatusToGrpcStatus(int http_status) {
  switch (http_status) {
    case 400:
      return StatusCode::kInternal;
    case 401:
      return StatusCode::kUnauthenticated;
    case 403:
      return StatusCode::kPermissionDenied;
    case 404:
      return StatusCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return StatusCode::kUnavailable;
    default:
      return StatusCode::kUnknown;
  }
}

bool IsGrpcRequest(const HeaderMap& headers) {
  std::optional<absl::string_view> ct = headers.Get("content-type");
  if (!ct.has_value()) return false;
  constexpr absl::string_view kGrpc = "application/grpc";
  if (!absl::StartsWithIgnoreCase(*ct, kGrpc)) return false;
  return ct->size() == kGrpc.size() || (*ct)[kGrpc.size()] == '+' || (*ct)[kGrpc.size()] == ';';
}

std::optional<Duration> ParseGrpcTimeout(absl::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t unit_ns;
  switch (value.back()) {
    case 'H':
      unit_ns = int64_t{3600} * 1000 * 1000 * 1000;
      break;
    case 'M':
      unit_ns = int64_t{60} * 1000 * 1000 * 1000;
      break;
    case 'S':
      unit_ns = 1000 * 1000 * 1000;
      break;
    case 'm':
      unit_ns = 1000 * 1000;
      break;
    case 'u':
      unit_ns = 1000;
      break;
    case 'n':
      unit_ns = 1;
      break;
    default:
      return std::nullopt;
  }
  int64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    n = n * 10 + (c - '0');  // at most 8 digits
  }
  // Eight digits of hours do not fit in 64-bit nanoseconds: such a deadline is as good
  // as none, so it saturates instead of overflowing.
  if (n > std::numeric_limits<int64_t>::max() / unit_ns) return Duration::max();
  return Duration(n * unit_ns);
}

}  // namespace meshlet::http::grpc
