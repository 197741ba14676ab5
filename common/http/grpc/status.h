#pragma once

// gRPC status on the wire: the status code enum with its canonical names, the grpc-status /
// grpc-message trailers (grpc-message percent-encoded per the gRPC HTTP/2 protocol), trailers-only
// local replies, the HTTP-to-gRPC status mapping for responses that are not gRPC (from gRPC's
// "HTTP to gRPC Status Code Mapping" document), request detection and grpc-timeout parsing.
// Pure functions over HeaderMap; nothing here keeps state.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/http/header_map.h"

namespace meshlet::http::grpc {

// Numbering matches gRPC (and absl::StatusCode).
enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};
inline constexpr int kMaxStatusCode = 16;

// "OK", "CANCELLED", ..., "UNAUTHENTICATED"; "UNKNOWN" for values out of range.
absl::string_view StatusCodeName(StatusCode code);

// The same number (the two numberings match); INTERNAL for a value gRPC does not define.
StatusCode FromAbslStatusCode(absl::StatusCode code);

struct GrpcStatus {
  StatusCode code = StatusCode::kUnknown;
  std::string message;  // decoded grpc-message
};

// Percent-encodes a grpc-message value: bytes outside 0x20..0x7E, and '%', become %XX.
std::string PercentEncode(absl::string_view message);
// Decodes %XX sequences; malformed ones are kept literally (the spec asks receivers to be lenient).
std::string PercentDecode(absl::string_view value);

// grpc-status (and grpc-message) from trailers, or from the headers of a trailers-only
// response. nullopt if grpc-status is absent; a value that is not a number in range parses as
// UNKNOWN.
std::optional<GrpcStatus> ParseStatus(const HeaderMap& trailers);

// Trailers-only reply: ":status 200", "content-type: application/grpc", "grpc-status", and
// "grpc-message" (percent-encoded; omitted when empty). Sent as HEADERS with END_STREAM.
HeaderMap LocalReplyHeaders(StatusCode code, absl::string_view message);
// Trailers for the end of a normal response.
HeaderMap StatusTrailers(StatusCode code, absl::string_view message);

// The gRPC status for a response that carried no grpc-status: 400 INTERNAL, 401
// UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE,
// anything else UNKNOWN.
StatusCode HttpStatusToGrpcStatus(int http_status);

// True for content-type "application/grpc", optionally followed by "+<format>" or ";<params>"
// (case-insensitive). gRPC-Web ("application/grpc-web...") is not gRPC on the wire.
bool IsGrpcRequest(const HeaderMap& headers);

// grpc-timeout ("1-8 digits" then H, M, S, m, u or n). nullopt if malformed.
std::optional<Duration> ParseGrpcTimeout(absl::string_view value);

}  // namespace meshlet::http::grpc
