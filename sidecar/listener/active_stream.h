#pragma once

// ActiveStream: one request on a connection the HttpConnectionManager serves, from its decoded
// headers to its last response byte or reset. It is the codec's decoder for the request, the
// FilterCallbacks of its filter chain (sidecar/stream/filter.h) — the filters are its members,
// run in the order http_connection_manager.h lists, the router last — and the router's downstream
// side for the response. It prepares the request for the route stage (hop-by-hop headers, request
// id, forwarded headers, peer identity, the server span), resolves the route once, holds the body
// while a filter holds the request, keeps the stream's activity and body-rate clocks for the
// connection's timer, and when the stream ends records its stats, the cluster's golden metrics,
// the access-log line and the server span.
//
// Ownership and lifetime: the connection manager creates it in NewStream, owns it (its list
// node's position is pos_), and is told once when it is over (HttpConnectionManager::OnStreamDone),
// which defers its deletion to the end of the loop turn. Objects come from the worker's free list
// (ThreadRecycled), so a request allocates none. It reads the connection manager's settings and
// stat handles as a friend; both live on the worker's loop thread, and nothing takes a lock.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/base/clock.h"
#include "common/base/free_list.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "common/stats/stats.h"
#include "sidecar/filters/authorization_filter.h"
#include "sidecar/filters/breaker_filter.h"
#include "sidecar/filters/fault_filter.h"
#include "sidecar/filters/jwt_filter.h"
#include "sidecar/filters/rate_limit_filter.h"
#include "sidecar/listener/http_connection_manager.h"
#include "sidecar/listener/on_demand_waiters.h"
#include "sidecar/router/router.h"
#include "sidecar/stream/filter.h"
#include "sidecar/stream/local_reply.h"
#include "sidecar/stream/stream_context.h"
#include "sidecar/stream/stream_info.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::listener {

class ActiveStream final : public http::StreamDecoder,
                           public http::StreamCallbacks,
                           public stream::FilterCallbacks,
                           public ThreadRecycled<ActiveStream>,
                           private Waiter {
 public:
  // `encoder` is the codec's response side of this stream; `hcm` outlives the stream.
  ActiveStream(HttpConnectionManager& hcm, http::StreamEncoder& encoder);
  // The worker's context (and its overload state) outlives every connection and stream.
  ~ActiveStream() override { --overload_->active_requests; }
  ActiveStream(const ActiveStream&) = delete;
  ActiveStream& operator=(const ActiveStream&) = delete;

  // Where the connection manager keeps the stream (its own list).
  HttpConnectionManager::StreamList::iterator pos_;

  // The connection closed under the stream (its codec stream may still exist, so detach first).
  void OnConnectionClosed();

  // How long the stream may stay idle from `now` before it times out (zero or less: it has);
  // Duration::max() without an idle timeout.
  Duration IdleTimeLeft(MonotonicTime now) const;
  // Minimum request body rate (HttpOptionsConfig::request_body_timeout): from the headers on, the
  // body may take request_body_timeout plus one second per min_request_body_bytes_per_second
  // bytes received. Time during which the sidecar itself does not read it (the upstream pushes
  // back, a filter holds the request) does not count. Duration::max(): no clock running.
  Duration BodyTimeLeft(MonotonicTime now) const;
  // The stream idle timeout expired (HttpConnectionManager::OnStreamIdleTimer): 408 before the
  // response started, else a reset.
  void OnIdleTimeout();
  // The body came too slowly: 408 before the response started, else a reset.
  void OnBodyTimeout();
  // The stream carries an open tunnel (Upgrade or CONNECT).
  bool tunnel() const { return !done_ && router_.tunnel(); }

  // http::StreamDecoder (the request)
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;

  // http::StreamCallbacks (the downstream stream)
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;

  // stream::FilterCallbacks
  void ContinueDecoding() override;
  void SendLocalReply(const stream::LocalReply& reply) override;
  const stream::Route& route() const override { return route_; }
  bool grpc() const override { return grpc_; }
  stream::StreamInfo& stream_info() override { return info_; }
  // The response side.
  void EncodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  void EncodeData(net::Buffer& data, bool end_stream) override;
  void EncodeTrailers(const http::HeaderMap& trailers) override;
  void ResetDownstream() override;
  void ReadDisableDownstream(bool disable) override;
  uint32_t DownstreamBufferLimit() const override;
  uint64_t RetryBufferLimit() const override;

 private:
  // The chain (stream/filter.h), in order. The listener-level filters see the request as the
  // client sent it; the route stage begins with the connection manager preparing the request
  // (PrepareRequest, the trace), resolving the route once and letting the router route it.
  static constexpr size_t kChainLength = 7;
  static constexpr size_t kFirstRouteFilter = 3;  // fault injection

  void Touch();
  // Calls `call` with the filter at `index` of the chain. The filters are members of known type:
  // no virtual call, and their inline fast paths (a listener without policies, a route without
  // faults) inline here.
  template <typename Call>
  stream::FilterStatus ForFilter(size_t index, Call&& call);
  void DecodeHeadersFrom(size_t index);
  bool BeginRouteStage();
  // The route, matched once in the virtual host found for the listener-level filters, and the
  // cluster it names (weighted clusters: one drawn now).
  void ResolveRoute(http::HeaderMap& headers);
  void DecodeDataFrom(net::Buffer& data, bool end_stream);
  void DecodeTrailersFrom(http::HeaderMap& trailers);
  // Body that arrives while a filter holds the request waits here, up to the stream's buffer
  // limit; beyond it the stream stops reading until the filter lets the request go.
  void Hold(net::Buffer& data, bool end_stream);
  void ReleaseHeldReads();
  // Every filter's OnStreamEnd(), once.
  void EndFilters();
  // Every ReadDisable of the downstream stream goes through here: the body clock stops meanwhile.
  void SetReadDisabled(bool disable);

  // Load shedding: a fast local 503 before any filter or upstream work.
  void Shed(stream::OverloadState::Reason reason);
  // A capture listener's connection to a destination the mesh does not know (Options::refuse).
  void Refuse();
  // The method and path as the client sent them, for the access log (the router may rewrite the
  // path later); nothing without an access log.
  void RememberRequestLine(const http::HeaderMap& headers);
  void PrepareRequest(http::HeaderMap& headers);
  // Trace context and sampling (docs/tracing.md); a sampled request gets its server span here.
  void BeginServerSpan(http::HeaderMap& headers);
  // A sampled request's server span: what the request asked for. Out of line, so the unsampled
  // path above stays a call and a test.
  [[gnu::noinline]] void DescribeServerSpan(const http::HeaderMap& headers);
  // A request the proxy failed ends without a server span (unsampled, or refused before its
  // trace began): the tracer's error span for it, when it gives one (tracer.h).
  [[gnu::noinline]] void BeginErrorSpan();
  // The request's x-request-id for a local reply: generated now (and added to the request) when
  // it was refused before PrepareRequest gave it one; empty without request headers, or when the
  // listener generates no ids.
  absl::string_view RequestIdForReply();
  void NoteGrpcStatus(const http::HeaderMap& fields);

  // Encodes the last piece of the response with the stream settled first: the codec may complete
  // (and recycle) its stream inside the call.
  template <typename EncodeLast>
  void Complete(EncodeLast&& encode_last);
  // The stream ended abnormally under us.
  void Terminate(http::StreamResetReason reason);
  // The stream is over for us: the router stops, stats and the access log are written, and the
  // connection manager lets go of the stream. The encoder is not touched after this.
  void Finish();
  void WriteAccessLog(uint64_t duration_us);
  // Live tap (stream/tap.h), only while the worker runs a tap: the response's error attribution
  // and, when a tap wants headers, the response headers; then the finished request.
  void NoteTapResponse(const http::HeaderMap& headers);
  void RecordTap(MonotonicTime now, uint64_t duration_us);

  HttpConnectionManager& hcm_;
  http::StreamEncoder* encoder_;  // null once done
  stream::StreamInfo info_;
  std::optional<GaugeGuard> active_;
  std::optional<GaugeGuard> tunnel_active_;  // while a tunnel is open
  // Before the filters: they read it, and the route keeps the cluster of the router's attempt
  // alive (members are destroyed in reverse order).
  stream::Route route_;
  http::HeaderMapPtr request_headers_;
  http::HeaderMapPtr request_trailers_;
  filters::JwtFilter jwt_;
  filters::AuthorizationFilter authorization_;
  filters::RateLimitFilter listener_rate_limit_;
  filters::FaultFilter fault_;
  filters::RateLimitFilter route_rate_limit_;
  filters::BreakerFilter breaker_;
  router::Router router_;
  // A request whose host only the route table's "*" host (or none) answers, on a listener with
  // on_demand.hosts, waits for its host's lookup before the filters (ADR 0086): holding_ is set,
  // the body is held as for a filter's hold, and OnLookupDone matches the host again in the
  // worker's current table and lets the request go on.
  bool StartHostLookup();
  void OnLookupDone(config::LookupOutcome outcome) override;
  // Starts the body clock after the headers (or after the host's lookup).
  void StartBodyClock();
  // Touches the matched virtual host's usage cell, if it has one (a ServiceRoute's).
  void NoteHostUse();
  WaitHandle lookup_;
  MonotonicTime lookup_started_{};
  net::Buffer held_body_;  // while holding_
  size_t resume_at_ = 0;
  bool holding_ = false;
  bool held_end_ = false;
  bool held_reads_disabled_ = false;
  bool filters_ended_ = false;
  bool grpc_ = false;
  bool connect_ = false;
  bool request_end_ = false;  // the request ended with its headers
  MonotonicTime last_activity_{};
  // The body clock (BodyTimeLeft).
  bool body_clock_ = false;
  MonotonicTime body_start_{};
  Duration body_paused_{0};
  MonotonicTime paused_since_{};
  int read_disables_ = 0;
  stream::OverloadState* const overload_ = &hcm_.context_.overload;
  std::optional<http::StreamResetReason> reset_reason_;
  bool done_ = false;
  // Access log only.
  std::string method_;
  std::string path_;
  std::string request_id_;
  // Sampled requests, and at their end those the proxy failed (BeginErrorSpan).
  tracing::SpanPtr server_span_;
  // What the live tap keeps of the response (NoteTapResponse); null while no tap runs.
  struct TapResponse {
    std::string error;
    std::optional<http::HeaderMap> headers;
  };
  std::unique_ptr<TapResponse> tap_response_;
};

}  // namespace meshlet::sidecar::listener
