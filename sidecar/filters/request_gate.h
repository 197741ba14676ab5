#pragma once

// The request gate: what happens to a routed request before it may go upstream — fault injection,
// local rate limiting and the cluster's consecutive-failure breaker — in the order of the filter
// chain (design.md §4: fault, then rate limit, then the router):
//
//   1. Fault (RouteEntry::fault, and the x-meshlet-fault-* request headers when the route sets
//      fault_header_triggered): an optional fixed delay, then an optional abort with an HTTP
//      status (gRPC requests: a trailers-only reply with the configured gRPC status). Flags DI
//      (delayed) and FI (aborted).
//   2. Rate limit (RouteEntry::rate_limiter, one token bucket per route shared by every worker):
//      a refused request gets 429 with `retry-after` (whole seconds, at least 1); gRPC requests
//      get RESOURCE_EXHAUSTED, trailers-only. Flag RL. The per-listener limit runs earlier, in the
//      connection manager, through RateLimitReply().
//   3. Breaker (Cluster::BreakerRejects()): while the cluster's consecutive-failure breaker is
//      open, or half-open with its probe out, 503 with `x-meshlet-overloaded: true` (gRPC:
//      UNAVAILABLE). Flag BO.
// A delayed request runs steps 1 (abort), 2 and 3 when its delay ends, so a delay simulates a slow
// network in front of everything else; the delay counts against the route timeout (the router's
// timer keeps running), like a slow upstream would.
//
// Header-triggered faults (only on routes that enable them; otherwise the headers are ignored):
//   x-meshlet-fault-delay-ms: N      delay N ms (0..kMaxHeaderFaultDelay)
//   x-meshlet-fault-abort: S         abort with HTTP status S (200..599)
//   x-meshlet-fault-abort-grpc: C    abort gRPC requests with status C (1..16)
// They apply to every request carrying them (no percentage) and take precedence over the route's
// configured fault of the same kind. Malformed values are ignored.
//
// Extension point: rate limits are keyed by route and by listener today. A limit per source
// identity (the peer's SPIFFE id, once mTLS identities reach the router) is another
// SharedTokenBucket looked up by that key in CheckRateLimit(): the reply and flags stay the same.
//
// Time and randomness come from the WorkerContext's Clock and Random, so the decisions are
// testable with fakes (request_gate_test.cc). Threading: a RequestGate belongs to one router on
// one worker loop. The fast path (a route with no fault, no rate limit, and a cluster without a
// breaker) is three branches and allocates nothing.

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/status.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/resilience/fault.h"
#include "sidecar/resilience/principal_rate_limiter.h"
#include "sidecar/resilience/token_bucket.h"
#include "sidecar/router/route_config.h"
#include "sidecar/router/stream_info.h"

namespace meshlet::sidecar::filters {

inline constexpr absl::string_view kFaultDelayHeader = "x-meshlet-fault-delay-ms";
inline constexpr absl::string_view kFaultAbortHeader = "x-meshlet-fault-abort";
inline constexpr absl::string_view kFaultAbortGrpcHeader = "x-meshlet-fault-abort-grpc";
// Longest delay a request header may ask for.
inline constexpr Duration kMaxHeaderFaultDelay = std::chrono::seconds(60);

// The fault for one request: the route's configured fault (percentages drawn from `random`)
// overridden by the x-meshlet-fault-* headers when `header_triggered`.
resilience::FaultDecision DecideRequestFault(const std::optional<resilience::FaultConfig>& fault,
                                             bool header_triggered, const http::HeaderMap& headers,
                                             bool grpc, Random& random);

// A local reply the gate sends instead of forwarding the request.
struct GateReply {
  router::ResponseFlag flag = router::ResponseFlag::kFaultInjected;
  uint32_t http_status = 503;
  // For gRPC requests; kOk means "answer with http_status as a plain HTTP response".
  http::grpc::StatusCode grpc_status = http::grpc::StatusCode::kUnavailable;
  absl::string_view message;
  std::optional<Duration> retry_after;  // adds `retry-after` in whole seconds (at least 1)
  bool overloaded = false;              // adds `x-meshlet-overloaded: true`
};

// The 429 for a request `bucket` refused (nullopt: admitted). `now` from the worker's clock.
// `principal`: the caller's identity, for a per-principal limit ("" without mTLS).
std::optional<GateReply> RateLimitReply(resilience::LocalRateLimiter* limiter,
                                        absl::string_view principal, MonotonicTime now);

// Fills `headers` (and `body`, for non-gRPC replies) for `reply`; returns whether a body follows.
bool BuildGateReply(const GateReply& reply, bool grpc, http::HeaderMap& headers, net::Buffer& body);

// Sends `reply` through `callbacks` (anything with EncodeHeaders, EncodeData and stream_info(),
// e.g. router::RouterCallbacks) and records its flag and status.
template <typename Callbacks>
void SendGateReply(Callbacks& callbacks, bool grpc, const GateReply& reply) {
  router::StreamInfo& info = callbacks.stream_info();
  info.SetFlag(reply.flag);
  http::HeaderMap headers;
  net::Buffer body;
  const bool has_body = BuildGateReply(reply, grpc, headers, body);
  info.response_code = has_body ? static_cast<int>(reply.http_status) : 200;
  callbacks.EncodeHeaders(headers, /*end_stream=*/!has_body);
  if (has_body) callbacks.EncodeData(body, /*end_stream=*/true);
}

class RequestGate {
 public:
  struct Request {
    const router::RouteEntry& route;
    cluster::Cluster& cluster;
    const cluster::UpstreamStats& stats;
    const http::HeaderMap& headers;
    bool grpc;
  };

  // Runs the gate for a routed request. True: go upstream now. False: the gate answered (after
  // calling `finish`, which must end the router's own work and return false if the request had
  // already ended) or delayed the request; after the delay it calls `proceed` or answers.
  // `encode_headers(headers, end_stream)` and `encode_data(body, end_stream)` send the reply
  // downstream and `info` records the flags. The callables, and what `request` refers to (the
  // route, the cluster, the headers), must stay valid until the request ends: a delayed request
  // reads them again when its delay ends (the router owns this gate and all of them).
  template <typename EncodeHeaders, typename EncodeData, typename Finish, typename Proceed>
  bool Admit(const Request& request, event::Loop& loop, const Clock& clock, Random& random,
             router::StreamInfo& info, EncodeHeaders encode_headers, EncodeData encode_data,
             Finish finish, Proceed proceed) {
    const router::RouteEntry& route = request.route;
    if (!route.fault.has_value() && !route.fault_header_triggered &&
        route.rate_limiter == nullptr && !request.cluster.has_breaker()) {
      return true;
    }
    const resilience::FaultDecision fault = DecideRequestFault(
        route.fault, route.fault_header_triggered, request.headers, request.grpc, random);
    if (fault.delayed()) {
      info.SetFlag(router::ResponseFlag::kDelayInjected);
      delayed_ = std::make_unique<Delayed>(Delayed{
          .request = request,
          .fault = fault,
          .clock = &clock,
          .info = &info,
          .encode_headers = std::move(encode_headers),
          .encode_data = std::move(encode_data),
          .finish = std::move(finish),
          .proceed = std::move(proceed),
      });
      timer_ = std::make_unique<event::Timer>(loop, [this] { OnDelayEnd(); });
      timer_->Enable(fault.delay);
      return false;
    }
    const std::optional<GateReply> reply = AfterDelay(request, fault, clock.Now());
    if (!reply.has_value()) return true;
    if (!finish()) return false;
    Send(*reply, request.grpc, info, encode_headers, encode_data);
    return false;
  }

  bool delaying() const { return timer_ != nullptr && timer_->enabled(); }

 private:
  struct Delayed {
    Request request;
    resilience::FaultDecision fault;
    const Clock* clock;
    router::StreamInfo* info;
    absl::AnyInvocable<void(http::HeaderMap&, bool)> encode_headers;
    absl::AnyInvocable<void(net::Buffer&, bool)> encode_data;
    absl::AnyInvocable<bool()> finish;
    absl::AnyInvocable<void()> proceed;
  };

  // Steps 1 (abort), 2 and 3 of the header comment.
  static std::optional<GateReply> AfterDelay(const Request& request,
                                             const resilience::FaultDecision& fault,
                                             MonotonicTime now);
  void OnDelayEnd();

  template <typename EncodeHeaders, typename EncodeData>
  static void Send(const GateReply& reply, bool grpc, router::StreamInfo& info,
                   EncodeHeaders& encode_headers, EncodeData& encode_data) {
    info.SetFlag(reply.flag);
    http::HeaderMap headers;
    net::Buffer body;
    const bool has_body = BuildGateReply(reply, grpc, headers, body);
    info.response_code = has_body ? static_cast<int>(reply.http_status) : 200;
    encode_headers(headers, /*end_stream=*/!has_body);
    if (has_body) encode_data(body, /*end_stream=*/true);
  }

  // Only while a delay fault holds the request (a request without one allocates nothing here).
  std::unique_ptr<Delayed> delayed_;
  std::unique_ptr<event::Timer> timer_;
};

}  // namespace meshlet::sidecar::filters
