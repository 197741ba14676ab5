#pragma once

// LocalReply: a response the sidecar makes up itself instead of forwarding one (no route, no
// healthy upstream, a timeout, a fault, a rate limit, a denied request...). Every local reply of
// the request path is built here, so they all look alike: an HTTP request gets `http_status` with
// a text/plain body of `message` and a newline; a gRPC request (content-type application/grpc)
// gets a trailers-only response instead — HTTP 200 with grpc-status and grpc-message — unless
// `grpc_status` is kOk, which asks for the HTTP reply for gRPC requests too (a fault configured
// with an HTTP status only). `retry_after` adds `retry-after` in whole seconds (rounded up, at
// least 1, at most an hour); `overloaded` adds `x-meshlet-overloaded: true`.
//
// A value; `message` must outlive the call that sends it (the replies of the request path use
// string literals).

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/http/grpc/status.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::sidecar::stream {

struct LocalReply {
  int http_status = 503;
  http::grpc::StatusCode grpc_status = http::grpc::StatusCode::kUnavailable;
  absl::string_view message;
  std::optional<Duration> retry_after;
  bool overloaded = false;
  // A refused bearer token (RFC 6750 §3): adds `www-authenticate: Bearer error="invalid_token"`.
  bool invalid_bearer_token = false;
  // What exactly went wrong (a refused certificate, and why), after `message` and ": " in the
  // body or grpc-message only: the reason logged and in x-meshlet-error stays `message`. Must
  // outlive the call, like `message`.
  absl::string_view detail;
};

// Fills `headers` (and `body`, for an HTTP reply) for `reply` to a request that is gRPC or not.
// Returns whether a body follows the headers (false: a trailers-only gRPC response).
bool BuildLocalReply(const LocalReply& reply, bool grpc, http::HeaderMap& headers,
                     net::Buffer& body);

// Error attribution: the value of the x-meshlet-error field (--error-header) a local reply
// carries, "<node>; flag=<FLAGS>; reason=<message>" (FLAGS as the access log's response_flags,
// "-" when none). Characters a field value cannot hold become spaces.
std::string ErrorAttribution(absl::string_view node, uint32_t response_flags,
                             absl::string_view reason);

// The status a local reply is logged and counted with: `http_status`, or 200 for a trailers-only
// gRPC reply.
inline int LocalReplyStatus(const LocalReply& reply, bool grpc) {
  return grpc && reply.grpc_status != http::grpc::StatusCode::kOk ? 200 : reply.http_status;
}

}  // namespace meshlet::sidecar::stream
