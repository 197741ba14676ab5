#include "sidecar/listener/http_stats.h"

#include <string>

#include "common/base/status.h"
#include "sidecar/cluster/http2_stats.h"
#include "sidecar/cluster/upstream_stats.h"

namespace meshlet::sidecar::listener {
namespace {

constexpr std::array<absl::string_view, kHttpProtocolCount> kProtocolLabels = {"http1.0", "http1.1",
                                                                               "http2"};

}  // namespace

absl::string_view FloodEndName(FloodEnd end) {
  switch (end) {
    case FloodEnd::kAtOnce:
      return "at_once";
    case FloodEnd::kDrained:
      return "drained";
    case FloodEnd::kDrainTimeout:
      return "drain_timeout";
    case FloodEnd::kFloodedOn:
      return "flooded_on";
    case FloodEnd::kPeerClosed:
      return "peer_closed";
    case FloodEnd::kDrainLimit:
      return "drain_limit";
  }
  return "at_once";
}

size_t ProtocolIndex(http::Protocol protocol) {
  switch (protocol) {
    case http::Protocol::kHttp10:
      return 0;
    case http::Protocol::kHttp11:
      return 1;
    case http::Protocol::kHttp2:
      return 2;
  }
  return 1;
}

absl::StatusOr<HttpStats> HttpStats::Create(StatsShard& shard) {
  HttpStats s;
  for (size_t p = 0; p < kHttpProtocolCount; ++p) {
    const std::string protocol(kProtocolLabels[p]);
    for (size_t c = 0; c < cluster::kStatusClassNames.size(); ++c) {
      ASSIGN_OR_RETURN(
          s.downstream_rq[p][c],
          shard.RegisterCounter("meshlet_http_downstream_rq_total",
                                "Downstream requests answered, by protocol and status class.",
                                {{"protocol", protocol},
                                 {"code_class", std::string(cluster::kStatusClassNames[c])}}));
    }
    ASSIGN_OR_RETURN(s.downstream_cx_total[p],
                     shard.RegisterCounter("meshlet_http_downstream_cx_total",
                                           "Downstream HTTP connections handled, by protocol.",
                                           {{"protocol", protocol}}));
  }
  for (size_t r = 0; r < kResetReasonCount; ++r) {
    ASSIGN_OR_RETURN(
        s.downstream_rq_reset[r],
        shard.RegisterCounter(
            "meshlet_http_downstream_rq_reset_total",
            "Downstream requests that ended without a complete response, by reset reason.",
            {{"reason",
              std::string(http::ResetReasonName(static_cast<http::StreamResetReason>(r)))}}));
  }
  for (size_t f = 0; f < stream::kResponseFlagCount; ++f) {
    ASSIGN_OR_RETURN(
        s.response_flags[f],
        shard.RegisterCounter(
            "meshlet_http_response_flags_total",
            "Downstream requests that ended with a response flag (see docs/stats.md).",
            {{"flag", std::string(stream::ResponseFlagShortName(stream::ResponseFlagAt(f)))}}));
  }
  ASSIGN_OR_RETURN(s.downstream_rq_active, shard.RegisterGauge("meshlet_http_downstream_rq_active",
                                                               "Downstream requests in progress."));
  HistogramOptions duration;
  duration.exposition_divisor = 1e6;
  ASSIGN_OR_RETURN(s.downstream_rq_duration,
                   shard.RegisterHistogram(
                       "meshlet_http_downstream_rq_duration_seconds",
                       "Time from a request's headers to the end of its response.", {}, duration));
  ASSIGN_OR_RETURN(s.downstream_rx_bytes,
                   shard.RegisterCounter("meshlet_http_downstream_rx_bytes_total",
                                         "Request body bytes received from downstream."));
  ASSIGN_OR_RETURN(s.downstream_tx_bytes,
                   shard.RegisterCounter("meshlet_http_downstream_tx_bytes_total",
                                         "Response body bytes sent downstream."));
  ASSIGN_OR_RETURN(s.downstream_cx_active,
                   shard.RegisterGauge("meshlet_http_downstream_cx_active",
                                       "Downstream HTTP connections open."));
  ASSIGN_OR_RETURN(s.downstream_cx_protocol_error,
                   shard.RegisterCounter("meshlet_http_downstream_cx_protocol_error_total",
                                         "Downstream connections closed for a protocol error."));
  for (size_t k = 1; k < http::h2::kHttp2FloodKinds; ++k) {
    ASSIGN_OR_RETURN(
        s.downstream_cx_flood[k],
        shard.RegisterCounter(
            "meshlet_http_downstream_cx_flood_total",
            "HTTP/2 connections ended with GOAWAY(ENHANCE_YOUR_CALM), by the limit the client "
            "passed: control_frames (replies left unread, WINDOW_UPDATEs without data), resets "
            "(rapid reset), priority, empty_frames, continuation, ping_settings.",
            {{"limit",
              std::string(http::h2::Http2FloodName(static_cast<http::h2::Http2Flood>(k)))}}));
  }
  for (size_t e = 0; e < kFloodEndCount; ++e) {
    ASSIGN_OR_RETURN(
        s.downstream_cx_flood_end[e],
        shard.RegisterCounter(
            "meshlet_http_downstream_cx_flood_end_total",
            "How HTTP/2 connections that passed a flood limit ended: at_once (nothing in flight, "
            "or a limit after which the connection cannot go on), or after GOAWAY: drained "
            "(every request in flight finished), drain_timeout (http.flood_drain_timeout "
            "passed), flooded_on (the client went on and was cut off), peer_closed; "
            "drain_limit: cut off with requests in flight, http.max_flood_drains connections of "
            "the worker draining already.",
            {{"outcome", std::string(FloodEndName(static_cast<FloodEnd>(e)))}}));
  }
  RETURN_IF_ERROR(cluster::RegisterHttp2Stats(shard, cluster::Http2Side::kDownstream, s.h2));
  // The HTTP/2 codec's own 431 replies are answered requests like any other.
  s.h2.requests_answered_431 =
      s.downstream_rq[ProtocolIndex(http::Protocol::kHttp2)][cluster::StatusClassIndex(431)];
  for (size_t r = 0; r < 2; ++r) {
    ASSIGN_OR_RETURN(s.downstream_rq_overload_shed[r],
                     shard.RegisterCounter(
                         "meshlet_http_downstream_rq_overload_shed_total",
                         "Requests answered 503 (OL) by load shedding, by the limit passed: memory "
                         "(--overload-max-rss-mb) or active_requests "
                         "(--overload-max-active-requests).",
                         {{"reason", r == 0 ? "memory" : "active_requests"}}));
  }
  ASSIGN_OR_RETURN(s.downstream_rq_body_timeout,
                   shard.RegisterCounter(
                       "meshlet_http_downstream_rq_body_timeout_total",
                       "Requests answered 408 (or reset) because their body arrived slower than "
                       "request_body_timeout and min_request_body_bytes_per_second allow."));
  ASSIGN_OR_RETURN(s.downstream_rq_header_timeout,
                   shard.RegisterCounter(
                       "meshlet_http_downstream_rq_header_timeout_total",
                       "HTTP/1 connections closed (408) because a request head did not arrive in "
                       "time."));
  ASSIGN_OR_RETURN(s.downstream_cx_idle_timeout,
                   shard.RegisterCounter("meshlet_http_downstream_cx_idle_timeout_total",
                                         "Downstream connections closed after being idle."));
  ASSIGN_OR_RETURN(s.downstream_cx_drain_close,
                   shard.RegisterCounter("meshlet_http_downstream_cx_drain_close_total",
                                         "Downstream connections closed because of a drain."));
  ASSIGN_OR_RETURN(s.downstream_rq_connect_refused,
                   shard.RegisterCounter("meshlet_http_downstream_rq_connect_refused_total",
                                         "CONNECT requests refused with 403."));
  ASSIGN_OR_RETURN(s.rbac_allowed, shard.RegisterCounter(
                                       "meshlet_http_rbac_allowed_total",
                                       "Requests the listener's authorization policies allowed."));
  ASSIGN_OR_RETURN(s.rbac_denied,
                   shard.RegisterCounter("meshlet_http_rbac_denied_total",
                                         "Requests the listener's authorization policies denied "
                                         "with 403."));
  for (size_t o = 0; o < filters::kJwtOutcomeCount; ++o) {
    ASSIGN_OR_RETURN(s.jwt_outcomes[o],
                     shard.RegisterCounter("meshlet_http_jwt_total",
                                           "Requests by what RequestAuthentication made of their "
                                           "JWT: ok, missing, or why it was refused (401).",
                                           {{"outcome", std::string(filters::JwtOutcomeName(o))}}));
  }
  static constexpr absl::string_view kTunnelKinds[] = {"upgrade", "connect"};
  for (size_t i = 0; i < s.downstream_tunnels.size(); ++i) {
    ASSIGN_OR_RETURN(s.downstream_tunnels[i],
                     shard.RegisterCounter("meshlet_http_downstream_tunnels_total",
                                           "Tunnels opened: Upgrade after a 101, or CONNECT.",
                                           {{"kind", std::string(kTunnelKinds[i])}}));
  }
  ASSIGN_OR_RETURN(s.downstream_tunnels_active,
                   shard.RegisterGauge("meshlet_http_downstream_tunnels_active", "Tunnels open."));
  return s;
}

void HttpStats::RecordRequest(const stream::StreamInfo& info, uint64_t duration_us) const {
  if (info.response_code != 0) {
    downstream_rq[ProtocolIndex(info.protocol)][cluster::StatusClassIndex(info.response_code)]
        .Inc();
  }
  for (uint32_t flags = info.response_flags; flags != 0; flags &= flags - 1) {
    response_flags[static_cast<size_t>(__builtin_ctz(flags))].Inc();
  }
  downstream_rx_bytes.Inc(info.bytes_received);
  downstream_tx_bytes.Inc(info.bytes_sent);
  downstream_rq_duration.Record(duration_us);
}

}  // namespace meshlet::sidecar::listener
