#pragma once

// HttpStats: the stat handles the HTTP connection manager and the router record into for
// downstream traffic, created once per worker from its StatsShard and then used lock-free on that
// worker's thread. Per-cluster (upstream) stats live in sidecar/cluster/upstream_stats.h.
// Every series and its meaning is listed in docs/stats.md; names are stable.
//
// Ownership: a value of handles into the worker's shard; it must not outlive the shard. A
// default-constructed HttpStats counts nothing (tests that do not look at stats).

#include <array>
#include <cstdint>

#include "absl/status/statusor.h"
#include "common/http/codec.h"
#include "common/http/h2/codec.h"
#include "common/stats/stats.h"
#include "sidecar/filters/jwt_policy.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::listener {

// Slots of per-protocol series: "http1.0", "http1.1", "http2".
inline constexpr size_t kHttpProtocolCount = 3;
size_t ProtocolIndex(http::Protocol protocol);
// StreamResetReason values, in declaration order.
inline constexpr size_t kResetReasonCount = 7;

// How an HTTP/2 connection that passed a flood limit ended
// (meshlet_http_downstream_cx_flood_end_total).
enum class FloodEnd {
  kAtOnce,        // nothing in flight to drain, or a limit after which the connection cannot go on
  kDrained,       // GOAWAY, then every request in flight finished
  kDrainTimeout,  // GOAWAY, then flood_drain_timeout passed with requests still in flight
  kFloodedOn,     // GOAWAY, then the client went on and was cut off
  kPeerClosed,    // GOAWAY, then the client closed the connection (or it failed) first
  kDrainLimit,    // GOAWAY with requests in flight, but max_flood_drains already drain: cut off
};
inline constexpr size_t kFloodEndCount = 6;
absl::string_view FloodEndName(FloodEnd end);

struct HttpStats {
  static absl::StatusOr<HttpStats> Create(StatsShard& shard);

  // meshlet_http_downstream_rq_total{protocol,code_class}: requests answered, by the status sent.
  std::array<std::array<Counter, 5>, kHttpProtocolCount> downstream_rq;
  // meshlet_http_downstream_rq_reset_total{reason}: requests that ended without a complete
  // response, by why the stream was reset.
  std::array<Counter, kResetReasonCount> downstream_rq_reset;
  // meshlet_http_response_flags_total{flag}: requests that ended with each response flag.
  std::array<Counter, stream::kResponseFlagCount> response_flags;
  Gauge downstream_rq_active;        // meshlet_http_downstream_rq_active
  Histogram downstream_rq_duration;  // meshlet_http_downstream_rq_duration_seconds
  Counter downstream_rx_bytes;       // meshlet_http_downstream_rx_bytes_total (request bodies)
  Counter downstream_tx_bytes;       // meshlet_http_downstream_tx_bytes_total (response bodies)
  // meshlet_http_downstream_cx_total{protocol}: connections handled.
  std::array<Counter, kHttpProtocolCount> downstream_cx_total;
  Gauge downstream_cx_active;            // meshlet_http_downstream_cx_active
  Counter downstream_cx_protocol_error;  // meshlet_http_downstream_cx_protocol_error_total
  // meshlet_http_downstream_cx_flood_total{limit}: HTTP/2 connections ended with
  // ENHANCE_YOUR_CALM, by the limit passed (index: http::h2::Http2Flood; kNone unused).
  std::array<Counter, http::h2::kHttp2FloodKinds> downstream_cx_flood;
  // meshlet_http_downstream_cx_flood_end_total{outcome}: how those connections ended.
  std::array<Counter, kFloodEndCount> downstream_cx_flood_end;
  // The HTTP/2 server codec's own counts (meshlet_http2_downstream_*): RST_STREAM and GOAWAY
  // frames by error code, client resets by kind, refused streams.
  http::h2::Http2Stats h2;
  // meshlet_http_downstream_rq_overload_shed_total{reason}: requests answered 503 (OL) by load
  // shedding; [0] memory, [1] active_requests.
  std::array<Counter, 2> downstream_rq_overload_shed;
  Counter downstream_rq_header_timeout;
  Counter downstream_rq_body_timeout;  // meshlet_http_downstream_rq_body_timeout_total  //
                                       // meshlet_http_downstream_rq_header_timeout_total
  Counter downstream_cx_idle_timeout;  // meshlet_http_downstream_cx_idle_timeout_total
  Counter downstream_cx_drain_close;   // meshlet_http_downstream_cx_drain_close_total
  // meshlet_http_downstream_rq_connect_refused_total: CONNECT requests answered 403.
  Counter downstream_rq_connect_refused;
  // meshlet_http_rbac_allowed_total / meshlet_http_rbac_denied_total: requests the listener's
  // authorization policies allowed / denied (403); listeners without policies count neither.
  Counter rbac_allowed;
  Counter rbac_denied;
  // meshlet_http_jwt_total{outcome}: RequestAuthentication outcomes (filters::JwtOutcomeName).
  std::array<Counter, filters::kJwtOutcomeCount> jwt_outcomes;
  // meshlet_http_downstream_tunnels_total{kind}: tunnels opened, "upgrade" (101) or "connect".
  std::array<Counter, 2> downstream_tunnels;
  Gauge downstream_tunnels_active;  // meshlet_http_downstream_tunnels_active

  // Counts one finished request: status class, flags, bytes and duration.
  void RecordRequest(const stream::StreamInfo& info, uint64_t duration_us) const;
};

}  // namespace meshlet::sidecar::listener
