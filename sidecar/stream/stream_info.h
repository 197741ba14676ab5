#pragma once

// StreamInfo: what happened to one downstream request, filled in by the connection manager and
// the router as the request runs, and read when it ends for stats and the access log. Response
// flags say why a request did not get a normal upstream response (the access log's
// `response_flags` field, e.g. "UH" or "UF,UR").
//
// Ownership: a value inside the connection manager's stream. String views (cluster, route) point
// into configuration the router keeps alive (its route table and cluster reference), so they are
// valid while the stream's router lives.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/http/codec.h"
#include "common/net/address.h"
#include "sidecar/stream/decision_record.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::stream {

enum class ResponseFlag : uint32_t {
  kNoRoute = 1u << 0,                 // NR: no route matched (404)
  kNoClusterFound = 1u << 1,          // NC: the route names a cluster this worker lacks (503)
  kNoHealthyUpstream = 1u << 2,       // UH: the cluster had no host to pick (503)
  kUpstreamConnectFailure = 1u << 3,  // UF: the upstream connection could not be made (503)
  kUpstreamOverflow = 1u << 4,        // UO: a circuit-breaker limit refused the request (503)
  kUpstreamRequestTimeout = 1u << 5,  // UT: the route timeout fired (504, or a reset mid-body)
  kUpstreamReset = 1u << 6,           // UR: the upstream reset the stream (502, or a reset)
  kDownstreamClosed = 1u << 7,        // DC: the client reset or closed before the end
  kLocalReset = 1u << 8,              // LR: the proxy reset the downstream stream itself
  kStreamIdleTimeout = 1u << 9,       // SI: no activity for stream_idle_timeout (408, or a reset)
  kUpstreamPerTryTimeout = 1u << 10,  // UPT: an attempt hit the retry policy's per-try timeout
  kRetryLimitExceeded = 1u << 11,     // URX: a retriable failure was not retried (attempts,
                                      // budget, deadline, body size or method said no)
  kFaultInjected = 1u << 12,          // FI: the route's fault injection aborted the request
  kDelayInjected = 1u << 13,          // DI: the route's fault injection delayed the request
  kRateLimited = 1u << 14,            // RL: a local rate limit refused the request (429)
  kBreakerOpen = 1u << 15,            // BO: the cluster's consecutive-failure breaker is open (503)
  kUnauthorized = 1u << 16,           // AZ: the listener's authorization policies denied it (403)
  kNotInRegistry = 1u << 17,          // NM: a capture listener's original destination is not in
                                      // the mesh and unmatched destinations are refused (502)
  kOverloaded = 1u << 18,             // OL: the sidecar shed the request (overload, 503)
  kUnauthenticated = 1u << 19,        // UA: RequestAuthentication refused the request's JWT (401)
};
inline constexpr size_t kResponseFlagCount = 20;

// The flag at bit `index` (0 .. kResponseFlagCount - 1).
inline ResponseFlag ResponseFlagAt(size_t index) { return static_cast<ResponseFlag>(1u << index); }
// "NR", "NC", "UH", ...
absl::string_view ResponseFlagShortName(ResponseFlag flag);
// Appends the set flags comma-separated ("UF,UR"), or "-" when none.
void AppendResponseFlags(std::string* out, uint32_t flags);

struct StreamInfo;

// Fills a server span's end-of-request attributes from what happened (status, flags, bytes,
// route, cluster, the upstream host unless the router named it), and marks it an error for 5xx,
// no response, or a reset.
void FillServerSpan(const StreamInfo& info, tracing::Span& span);

// A stream that became a byte tunnel.
enum class TunnelKind : uint8_t {
  kNone,
  kUpgrade,  // HTTP/1.1 Upgrade (WebSocket) after the upstream's 101
  kConnect,  // CONNECT after the proxy's 200
};

struct StreamInfo {
  MonotonicTime start;
  absl::Time start_wall;
  http::Protocol protocol = http::Protocol::kHttp11;
  int response_code = 0;  // 0 until response headers were sent
  // The response ended with a grpc-status other than OK (in trailers, or trailers-only headers):
  // a failed call even though its HTTP status is 200.
  bool grpc_failure = false;
  uint32_t response_flags = 0;
  uint64_t bytes_received = 0;  // request body bytes
  uint64_t bytes_sent = 0;      // response body bytes
  std::optional<net::Address> upstream_host;
  // With locality balancing, why the last attempt's endpoint was picked from its locality level:
  // "local", "failover" or "spillover" (a literal); empty without (access log upstream_locality).
  absl::string_view upstream_locality;
  absl::string_view cluster_name;
  absl::string_view route_name;
  // The message of the local reply the proxy answered with (stream/local_reply.h), else empty:
  // the "reason" of error attribution, logged as error_reason and on the span. Points at text
  // that outlives the stream (literals, or the connection's refusal message).
  absl::string_view local_reply_reason;
  // Set by the router right before the response headers that open the tunnel are encoded; the
  // bytes that follow count as body bytes.
  TunnelKind tunnel = TunnelKind::kNone;
  // The request's trace at this hop (docs/tracing.md): set by the connection manager when tracing
  // is on; the router starts a client span per attempt from it.
  tracing::RequestTrace trace;
  // The connection manager's server span while it is recorded (sampled requests), else null: the
  // router names each attempt's upstream host in it (formatted once per host, not per request).
  tracing::Span* server_span = nullptr;
  // The first attempt's client span, kept rather than exported while it is the only attempt
  // (TracingConfig::span_per_attempt false): exported when a second attempt begins, else folded
  // into the server span when the request ends (tracing::FoldSingleAttempt).
  tracing::SpanPtr held_attempt_span;
  // Why this hop did what it did (decision_record.h), filled by the router and authorization.
  DecisionRecord decision;
  // The request's valid JWT, recorded by the JWT filter only when the listener's authorization
  // reads tokens (filters/authorization.h): its issuer (a view into the listener's policy, which
  // outlives the stream) and its decoded payload.
  absl::string_view jwt_issuer;
  std::string jwt_payload;
  // The upstream's error response (5xx, or a gRPC trailers-only reply) carried the error
  // attribution field: another proxy made it, and this hop passed it on.
  bool upstream_error_attributed = false;

  void SetFlag(ResponseFlag flag) { response_flags |= static_cast<uint32_t>(flag); }
  // The request failed at a proxy: this one answered it itself or reset it (any flag but DC, the
  // client's doing, DI, a delay, and UPT, which alone means a per-try timeout that was retried
  // into an answer), or it passed on another proxy's error. Such a request's server span is
  // exported even when it was not sampled (tracing/tracer.h BeginErrorSpan).
  bool ProxyFailed() const {
    constexpr uint32_t kNotFailures = static_cast<uint32_t>(ResponseFlag::kDownstreamClosed) |
                                      static_cast<uint32_t>(ResponseFlag::kDelayInjected) |
                                      static_cast<uint32_t>(ResponseFlag::kUpstreamPerTryTimeout);
    return (response_flags & ~kNotFailures) != 0 || !local_reply_reason.empty() ||
           upstream_error_attributed;
  }
  bool HasFlag(ResponseFlag flag) const {
    return (response_flags & static_cast<uint32_t>(flag)) != 0;
  }
};

}  // namespace meshlet::sidecar::stream
