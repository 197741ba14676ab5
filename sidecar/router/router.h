#pragma once

// Router: the filter that forwards a request (stream/filter.h). It forwards the request to a
// host of the cluster of the stream's cached route through that cluster's connection pool —
// request headers, body and trailers upstream, the response back — with retries, per-try and
// route timeouts and deadline propagation (docs/resilience.md), tunnels for Upgrade and CONNECT
// (docs/operations.md), and a client span per attempt (docs/tracing.md). Each attempt is an
// UpstreamRequest (upstream_request.h), or for CONNECT a TcpUpstream (tcp_upstream.h); the router
// keeps what spans attempts: the route, the deadline, the retry state and the body kept for
// replay. A route with request mirror policies also gets copies of the request sent to its mirror
// clusters (mirror.h), which the request never waits for. docs/architecture.md follows a request
// through it.
//
// One entry point, DecodeHeaders(), which the stream calls at two places of its chain. First at
// the route stage, once its route is resolved and before the route-level filters (fault, rate
// limit, breaker) run: the router answers what needs no upstream — no route 404 (NR), a direct
// response, a redirect, a cluster this worker lacks 503 (NC), a deadline already spent 504 (UT) —
// and returns kStopIteration, or applies the route's header mutations and rewrites, arms the route
// timeout (so that time the filters hold the request counts against it) and returns kContinue.
// Then as the last filter, when the route-level filters passed the request: it starts the first
// attempt (kStopIteration: the router keeps the request). ADR 0039 says why routing precedes
// those filters. Every local reply goes through FilterCallbacks::SendLocalReply
// (stream/local_reply.h); once the response started, a failure resets the downstream stream
// instead. Response flags: stream/stream_info.h.
//
// CORS (route/cors.h): at the route stage, a request with an Origin to a route with a CORS
// policy is checked against it first; a preflight is answered there (200 with the policy's
// headers, or 403 for an origin it does not allow), before the direct response, redirect or
// cluster; an allowed origin's response gets the Access-Control-* headers, whatever the action,
// local replies sent after the route stage included (so a browser can read a 503 or a 429).
// Counted in StreamContext::cors (cors_stats.h).
//
// Ownership and callbacks: the stream owns the Router, the request headers and trailers it passes
// (valid until the stream ends), and implements FilterCallbacks; the router calls it only from
// inside the calls the stream makes, from pool/upstream callbacks, or from its timers, all on the
// worker's loop thread. Once the response is complete, a local reply was sent, or Abandon() (or
// OnStreamEnd()) was called, the router calls nothing more except ReadDisableDownstream(false) to
// give back pauses it made. Destroying the router cancels or resets its upstream attempt; the
// stream destroys it through Loop::DeferDelete, never inside one of its callbacks.

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/grpc/status.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/resilience/deadline.h"
#include "sidecar/resilience/retry_state.h"
#include "sidecar/route/route_table.h"
#include "sidecar/stream/filter.h"
#include "sidecar/stream/local_reply.h"
#include "sidecar/stream/stream_context.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::router {

class UpstreamRequest;
class TcpUpstream;
class Mirrors;

class Router final : public stream::Filter {
 public:
  // `context` and `mirrors` (the worker's; null: every mirror copy is skipped, counted as over the
  // in-flight limit) must outlive the router.
  Router(stream::StreamContext& context, stream::FilterCallbacks& callbacks,
         Mirrors* mirrors = nullptr);
  ~Router() override;
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // stream::Filter. DecodeHeaders: at the route stage, then as the last filter (see above); the
  // headers are the stream's, as the connection manager prepared them (hop-by-hop headers removed).
  // Inline, so that telling the two apart costs the stream a test, not a call.
  stream::FilterStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) override {
    if (request_headers_ == nullptr) return Route(headers, end_stream);
    Forward(end_stream);
    return stream::FilterStatus::kStopIteration;
  }
  stream::FilterStatus DecodeData(net::Buffer& data, bool end_stream) override;
  stream::FilterStatus DecodeTrailers(http::HeaderMap& trailers) override;
  void OnStreamEnd() override { Abandon(); }

  // The downstream stream's send buffer crossed its watermarks.
  void OnDownstreamAboveWriteBufferHighWatermark();
  void OnDownstreamBelowWriteBufferLowWatermark();

  // The stream ends without the router (client reset, connection gone, the connection manager's
  // own timeout, a filter's local reply): cancels or resets the upstream attempt and gives back
  // the read-disables it holds; no other FilterCallbacks call follows.
  void Abandon();

  bool response_started() const { return response_started_; }
  // A local reply to a request whose route has a CORS policy allowing its origin gets the
  // Access-Control-* headers a proxied response would (the stream calls it for every local reply
  // sent once the route is chosen: the router's own, route-level filters'); nothing otherwise.
  void AddCorsHeadersToLocalReply(http::HeaderMap& headers) {
    if (cors_ != nullptr) [[unlikely]] {
      AddCorsHeaders(headers);
    }
  }
  // The stream carries raw bytes (after a 101 or CONNECT's 200).
  bool tunnel() const { return tunnel_; }
  bool grpc() const { return grpc_; }
  // The request headers as sent upstream (after mutations); null before the route stage.
  const http::HeaderMap* request_headers() const { return request_headers_; }

 private:
  // An attempt reports to the router through the OnUpstream* and OnTcpUpstream* calls below and
  // reads the router's context, stats and stream info.
  friend class UpstreamRequest;
  friend class TcpUpstream;

  // The route stage: the request under callbacks.route(). kStopIteration: the router answered it
  // (see the header comment); nothing more follows. kContinue: routed, for the route-level filters.
  stream::FilterStatus Route(http::HeaderMap& headers, bool end_stream);
  // As the last filter: the route-level filters let the request through; starts the first attempt
  // (which may finish the request synchronously).
  void Forward(bool end_stream);
  void DecodeBody(net::Buffer& data, bool end_stream);
  // CORS at the route stage: true when it answered a preflight. Sets cors_ for an allowed
  // origin.
  bool CheckCors(const route::CorsPolicy& policy, const http::HeaderMap& headers);
  // The Access-Control-* headers of an allowed origin's response (cors_ set).
  void AddCorsHeaders(http::HeaderMap& response_headers);
  void SendDirectResponse(const route::RouteEntry& route);
  void SendRedirect(const route::RouteEntry& route);
  // Starts an attempt: host choice, pool, stream. May finish the request synchronously.
  void StartAttempt();
  // The attempt's stream is ready: sends what the downstream gave so far.
  void OnUpstreamReady();
  // No stream from the pool of `host`.
  void OnUpstreamPoolFailure(cluster::PoolFailureReason reason, const cluster::Host& host);
  // `status`: the response's :status as parsed by the attempt (0: none or invalid).
  void OnUpstreamHeaders(http::HeaderMapPtr headers, bool end_stream, int status);
  void OnUpstreamData(net::Buffer& data, bool end_stream);
  void OnUpstreamTrailers(http::HeaderMapPtr trailers);
  // `tls_failure`: a kConnectionFailure because the TLS handshake failed (the upstream's
  // certificate or identity refused, or it does not speak TLS); `details`: the pool's account of
  // the connection's end (the refused certificate and why), shown in the local reply's body.
  void OnUpstreamReset(http::StreamResetReason reason, bool tls_failure = false,
                       absl::string_view details = {});
  void OnUpstreamAboveWriteBufferHighWatermark();
  void OnUpstreamBelowWriteBufferLowWatermark();
  // CONNECT: a TCP connection to the chosen host instead of a pooled HTTP stream.
  void StartConnectAttempt(const cluster::Cluster::HostSelection& selection);
  void OnTcpUpstreamConnected();
  void OnTcpUpstreamConnectFailed();
  // Either side finished sending in a tunnel: ends the upstream side and the response.
  void EndTunnel(net::Buffer& last_data);
  void OnTimeout();
  // The attempt had no response headers within its per-try timeout.
  void OnPerTryTimeout();
  // Notes the time the next attempt has (attempt_budget_); returns its per-try timeout (zero:
  // none shorter than what the route timeout leaves).
  Duration PrepareAttempt();
  // Once the attempt's stream is ready, just before its headers go: the deadline headers say what
  // is left of attempt_budget_, a little reduced (resilience::NextHopBudget).
  void SetDeadlineHeaders();
  // After a failed attempt: true when a retry was scheduled (the attempt is then gone).
  bool MaybeRetry(const resilience::AttemptResult& result);
  // A response the retry policy might retry: true when it was discarded for a retry.
  bool MaybeRetryResponse(const http::HeaderMap& headers, bool end_stream, int status);
  void CountNoRetry(resilience::NoRetryReason reason);
  // Decision record (stream/decision_record.h): ends the current attempt with `outcome`.
  void EndAttempt(stream::AttemptOutcome outcome, int status = 0);
  // Sticky sessions (route/session.h): counts what the request's token did once the first
  // attempt's host is chosen (`preferred`: the token's host, null if none is in the cluster), and
  // puts a token on the response when the session is new, moved or renewed (idle timeout).
  void CountSession(const cluster::Host* chosen, const cluster::Host* preferred);
  void AddSessionToken(http::HeaderMap& response_headers);
  // Mirroring (mirror.h): picks the route's mirror copies for this request and starts copying it;
  // copies body as it passes; hands the copies over once the request is whole; or drops them.
  void StartMirrors();
  void CopyBodyForMirrors(const net::Buffer& data);
  void SendMirrors();
  void DropMirrors(cluster::MirrorSkip reason);
  // Request body on its way to the current attempt: kept for replay while that is possible.
  void SendBody(net::Buffer& data, bool end_stream);
  void OnResponseComplete();
  // Ends the request with a local reply (or a downstream reset if the response started).
  void Fail(stream::ResponseFlag flag, const stream::LocalReply& reply);
  // Stops the timer and the attempt and gives back read-disables the router holds.
  void Finish();
  void DisableDownstreamReads(bool disable);

  stream::StreamContext& context_;
  stream::FilterCallbacks& callbacks_;
  stream::StreamInfo& info_;

  http::HeaderMap* request_headers_ = nullptr;         // the stream's
  const http::HeaderMap* request_trailers_ = nullptr;  // the stream's; held until the upstream
                                                       // stream is ready
  net::Buffer pending_body_;     // request body the upstream stream has not taken yet
  bool downstream_end_ = false;  // the whole request arrived
  bool grpc_ = false;
  bool upgrade_request_ = false;  // HTTP/1.1 Upgrade (the request kept its `upgrade` header)
  bool connect_request_ = false;
  bool tunnel_ = false;

  const route::RouteEntry* route_ = nullptr;
  // The route's CORS policy when the request's origin is one it allows; null otherwise.
  const route::CorsPolicy* cors_ = nullptr;
  cluster::Cluster* cluster_ = nullptr;  // the stream's route's, which keeps it alive
  // The picked weighted cluster's own header changes (route::BackendHeaders); null: none. Every
  // attempt goes to cluster_, so they hold for retries too.
  const route::HeaderMutations* backend_headers_ = nullptr;
  const cluster::UpstreamStats* stats_ = nullptr;
  std::unique_ptr<UpstreamRequest> upstream_;
  std::unique_ptr<TcpUpstream> tcp_upstream_;  // CONNECT only
  event::Timer timeout_timer_;

  // Retries (see the header comment); nothing here allocates for a request without a failure.
  std::optional<resilience::Deadline> deadline_;
  // The current attempt's time (min of its per-try timeout and the deadline) from its start, in
  // loop turn attempt_turn_; nullopt: unbounded, or an Upgrade, and no deadline header is written.
  std::optional<Duration> attempt_budget_;
  uint64_t attempt_turn_ = 0;
  std::optional<resilience::RetryState> retry_state_;  // set when the route may retry
  std::optional<event::Timer> backoff_timer_;          // before a retry; lazily made
  bool replay_buffering_ = false;  // replay_body_ holds all body sent to the current attempt
  bool body_sent_ = false;         // request body reached the current attempt's stream
  net::Buffer replay_body_;
  absl::InlinedVector<const cluster::Host*, 4> tried_hosts_;

  // The route's sticky sessions (null: none, or CONNECT); the host the request's token named
  // when the first attempt went there (null otherwise).
  const route::SessionPersistence* session_ = nullptr;
  const cluster::Host* session_host_ = nullptr;
  bool session_looked_up_ = false;  // the first attempt's host was chosen

  // The copies being made for mirror clusters; null unless this request is mirrored.
  struct MirrorCopy;
  Mirrors* const mirrors_;
  std::unique_ptr<MirrorCopy> mirror_;

  bool response_started_ = false;
  bool done_ = false;
  // ReadDisableDownstream(true) calls the router has made and not undone.
  int downstream_reads_disabled_ = 0;
  bool pending_body_over_limit_ = false;
  bool upstream_above_high_watermark_ = false;
  bool downstream_above_high_watermark_ = false;
  // Why the last attempt's TLS handshake failed, for the local reply (set on that failure only).
  std::string tls_failure_detail_;
};

}  // namespace meshlet::sidecar::router
