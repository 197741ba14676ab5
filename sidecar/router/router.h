#pragma once

// Router: the terminal filter of one downstream request. It matches the request against the
// route table of the snapshot the stream started with, answers direct-response and redirect
// routes itself, applies the route's header mutations and rewrites, picks the (weighted)
// cluster, arms the route timeout, and proxies the request to a host of that cluster through the
// cluster's connection pool: request headers, body and trailers upstream, the response back.
//
// Translation between HTTP/1 and HTTP/2 needs nothing here: both codecs speak the same header
// map with pseudo-headers (common/http/codec.h) and drop or add framing headers themselves. The
// router removes hop-by-hop headers from responses (the connection manager does it for
// requests), so an HTTP/1 upstream's `connection`/`transfer-encoding` never reach an HTTP/2 peer.
//
// Bodies stream and are never copied (Buffer::Move relinks blocks). Flow control runs both ways:
// when the upstream stream's send buffer passes its high watermark the downstream stream is
// read-disabled until the low watermark; when the downstream stream's send buffer is high
// (RouterCallbacks reports it), the upstream stream is read-disabled. Body that arrives before the
// upstream stream is ready is held up to DownstreamBufferLimit(), then the downstream is paused.
//
// Local replies (see docs/stats.md for the response flags): no route 404 (NR); route cluster
// unknown on this worker 503 (NC); no healthy host 503 (UH); connect failure 503 (UF);
// circuit-breaker overflow 503 with `x-meshlet-overloaded: true` (UO); upstream reset before the
// response 502 (UR); route timeout 504 (UT); per-try timeout of the last attempt 504 (UPT). A
// failure the retry policy matched but could not retry also carries URX. A gRPC request
// (content-type application/grpc) gets every local reply as a trailers-only gRPC response
// instead: HTTP 200 with grpc-status (UNIMPLEMENTED for no route, DEADLINE_EXCEEDED for timeouts,
// UNAVAILABLE otherwise) and grpc-message. After the response started, failures reset the
// downstream stream instead. Results go to the cluster (RecordResult) for outlier detection.
//
// Tunnels (docs/operations.md): an HTTP/1.1 Upgrade request (the connection manager keeps its
// `upgrade` header only for those) goes to the upstream with its Upgrade; a 101 turns the stream
// into a byte tunnel both ways, anything else is an ordinary response. A CONNECT request (the
// connection manager passes only the ones its listener allows) is routed by :authority as if its
// path were "/", to a route with a cluster; the router opens a TCP connection to a host of that
// cluster (no pool, no HTTP) and answers 200 once it is up, then relays bytes. The route timeout
// covers a tunnel until it opens and is then disarmed (the stream idle timeout still applies).
// HTTP/1 has no half-close towards the client, so the first side to finish sending ends the
// tunnel: the other side gets what was already sent, then its connection closes.
//
// Attempts and retries (docs/resilience.md): each try at an upstream host is an UpstreamRequest
// (router.cc); the request headers, trailers and replayable body stay with the router, so a retry
// is simply another UpstreamRequest. When the route's retry policy allows retries the router keeps
// a resilience::RetryState (inline, no allocation) and asks it after every failed attempt:
// connect failure, refused stream, reset before response headers, per-try timeout, or response
// headers the policy retries on (5xx, gateway errors, listed statuses, a trailers-only gRPC
// status). A response the policy may retry is not forwarded until the decision is made; a retried
// one is discarded. The next attempt starts from a backoff timer on the worker's loop (never
// inside an upstream callback) on a host the load balancer prefers over the ones already tried.
// Request body is copied into a replay buffer (up to RetryBufferLimit()) only while a retry of
// this request is possible and only when it may resend the body (idempotent methods, or the
// route's retry_non_idempotent); a non-idempotent request is otherwise retried only if none of its
// body reached the upstream and the failure proves the upstream never processed it.
//
// Tracing (docs/tracing.md): when the stream's StreamInfo carries an active trace and the worker
// has a Tracer, every attempt writes its own `traceparent` (and B3 when the caller used B3) and,
// for a sampled request, records a client span with the attempt number, host and status.
//
// Deadlines: the request's deadline is min(route timeout, the caller's grpc-timeout /
// x-meshlet-deadline); every attempt carries what is left of it (bounded by the per-try timeout)
// upstream, as grpc-timeout for gRPC requests and x-meshlet-deadline otherwise. A retry whose
// backoff plus a minimal attempt does not fit in what is left is not started.
//
// Ownership and callbacks: the connection manager's stream owns the Router and implements
// RouterCallbacks; the router calls it only from inside the Decode* calls the stream makes, from
// pool/upstream callbacks, or from its timer, all on the worker's loop thread. Once the response
// is complete, a local reply was sent, or Abandon() was called, the router calls nothing more
// except ReadDisableDownstream(false) to give back pauses it made.
// Destroying the router cancels or resets its upstream attempt; the stream destroys it through
// Loop::DeferDelete, never inside one of its callbacks.

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
#include "sidecar/filters/request_gate.h"
#include "sidecar/listener/worker_context.h"
#include "sidecar/resilience/deadline.h"
#include "sidecar/resilience/retry_state.h"
#include "sidecar/router/route_table.h"
#include "sidecar/router/stream_info.h"

namespace meshlet::sidecar::router {

// What the router needs from the downstream stream that runs it.
class RouterCallbacks {
 public:
  virtual ~RouterCallbacks() = default;
  // Response pieces for the client; the last has end_stream set (or is the trailers). Headers
  // may be changed by the callee (it owns the protocol's last word on them).
  virtual void EncodeHeaders(http::HeaderMap& headers, bool end_stream) = 0;
  virtual void EncodeData(net::Buffer& data, bool end_stream) = 0;
  virtual void EncodeTrailers(const http::HeaderMap& trailers) = 0;
  // Ends the downstream stream abnormally: the response cannot be completed.
  virtual void ResetDownstream() = 0;
  // Pauses (true) or resumes (false) the request body; counted.
  virtual void ReadDisableDownstream(bool disable) = 0;
  // Request body bytes the router may hold while no upstream stream takes them.
  virtual uint32_t DownstreamBufferLimit() const = 0;
  // Request body bytes the router may keep to replay on a retry
  // (HttpOptions.max_request_body_buffer_kb).
  virtual uint64_t RetryBufferLimit() const { return 64 * 1024; }
  virtual StreamInfo& stream_info() = 0;
};

struct LocalReply {
  int http_status = 503;
  http::grpc::StatusCode grpc_status = http::grpc::StatusCode::kUnavailable;
  absl::string_view message;
  bool overloaded = false;  // adds `x-meshlet-overloaded: true`
};

// Sends a complete local reply: for gRPC requests trailers-only (HTTP 200, grpc-status,
// grpc-message), otherwise `http_status` with a text/plain body of `message` and a newline.
void SendLocalReply(RouterCallbacks& callbacks, bool grpc, const LocalReply& reply);

class Router {
 public:
  // `context` must outlive the router; `route_table` may be null (every request is a 404).
  Router(WorkerContext& context, std::shared_ptr<const RouteTable> route_table,
         RouterCallbacks& callbacks);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // The request, as the connection manager prepared it (hop-by-hop headers removed).
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream);
  void DecodeData(net::Buffer& data, bool end_stream);
  void DecodeTrailers(http::HeaderMapPtr trailers);

  // The downstream stream's send buffer crossed its watermarks.
  void OnDownstreamAboveWriteBufferHighWatermark();
  void OnDownstreamBelowWriteBufferLowWatermark();

  // The stream ends without the router (client reset, connection gone, the connection manager's
  // own timeout): cancels or resets the upstream attempt and gives back the read-disables it
  // holds; no other RouterCallbacks call follows.
  void Abandon();

  // The request is over (the connection manager's end of stream): records its golden metrics on
  // the cluster it was routed to, if any. `reset`: the response did not complete.
  void RecordCompletion(const StreamInfo& info, bool reset, uint64_t duration_us) const {
    if (cluster_.cluster != nullptr) {
      stats_->RecordCompletion(info.response_code, info.grpc_failure, reset, duration_us,
                               info.bytes_received, info.bytes_sent);
    }
  }

  bool response_started() const { return response_started_; }
  // The stream carries raw bytes (after a 101 or CONNECT's 200).
  bool tunnel() const { return tunnel_; }
  bool grpc() const { return grpc_; }
  // The request headers as sent upstream (after mutations); null before DecodeHeaders.
  const http::HeaderMap* request_headers() const { return request_headers_.get(); }

 private:
  class UpstreamRequest;
  class TcpUpstream;
  friend class UpstreamRequest;
  friend class TcpUpstream;

  void RouteRequest();
  void SendDirectResponse(const RouteEntry& route);
  void SendRedirect(const RouteEntry& route);
  // Starts an attempt: host choice, pool, stream. May finish the request synchronously.
  void StartFirstAttempt();
  void StartAttempt();
  // The attempt's stream is ready: sends what the downstream gave so far.
  void OnUpstreamReady();
  void OnUpstreamPoolFailure(cluster::PoolFailureReason reason);
  // `status`: the response's :status as parsed by the attempt (0: none or invalid).
  void OnUpstreamHeaders(http::HeaderMapPtr headers, bool end_stream, int status);
  void OnUpstreamData(net::Buffer& data, bool end_stream);
  void OnUpstreamTrailers(http::HeaderMapPtr trailers);
  void OnUpstreamReset(http::StreamResetReason reason);
  void OnUpstreamAboveWriteBufferHighWatermark();
  void OnUpstreamBelowWriteBufferLowWatermark();
  // Tracing: the new attempt's client span and its traceparent (and B3) on the request headers.
  void BeginClientSpan(const cluster::Host& host);
  // Out of line (only sampled requests and retries get here), so the unsampled path stays short.
  [[gnu::noinline]] void ExportHeldAttemptSpan();
  [[gnu::noinline]] void DescribeClientSpan(tracing::Span& span, const cluster::Host& host);
  // The attempt now beginning (or ending) is the request's first and, with span_per_attempt
  // false, will be folded into the server span if no other follows (tracing::FoldSingleAttempt).
  bool AttemptMayBeFolded() const;
  // A client span's text attributes: method, route, cluster, and the attempt's `endpoint`. A span
  // that may be folded gets them only once it is to be exported.
  void FillClientSpanText(tracing::Span& span, absl::string_view endpoint) const;
  // CONNECT: a TCP connection to the chosen host instead of a pooled HTTP stream.
  void StartConnectAttempt(const cluster::Cluster::HostSelection& selection);
  void OnTcpUpstreamConnected();
  void OnTcpUpstreamConnectFailed();
  // Either side finished sending in a tunnel: ends the upstream side and the response.
  void EndTunnel(net::Buffer& last_data);
  void OnTimeout();
  // The per-try timeout or the backoff between attempts expired.
  void OnAttemptTimer();
  // Sets the remaining deadline headers for the next attempt and arms its per-try timeout.
  void PrepareAttempt();
  // After a failed attempt: true when a retry was scheduled (the attempt is then gone).
  bool MaybeRetry(const resilience::AttemptResult& result);
  // A response the retry policy might retry: true when it was discarded for a retry.
  bool MaybeRetryResponse(const http::HeaderMap& headers, bool end_stream, int status);
  void CountNoRetry(resilience::NoRetryReason reason);
  // Request body on its way to the current attempt: kept for replay while that is possible.
  void SendBody(net::Buffer& data, bool end_stream);
  event::Timer& attempt_timer();
  void OnResponseComplete();
  // Ends the request with a local reply (or a downstream reset if the response started).
  void Fail(ResponseFlag flag, const LocalReply& reply);
  // Stops the timer and the attempt and gives back read-disables the router holds.
  void Finish();
  void DisableDownstreamReads(bool disable);

  WorkerContext& context_;
  const std::shared_ptr<const RouteTable> route_table_;
  RouterCallbacks& callbacks_;
  StreamInfo& info_;

  http::HeaderMapPtr request_headers_;
  http::HeaderMapPtr request_trailers_;  // held until the upstream stream is ready
  net::Buffer pending_body_;             // request body the upstream stream has not taken yet
  bool downstream_end_ = false;          // the whole request arrived
  bool grpc_ = false;
  bool upgrade_request_ = false;  // HTTP/1.1 Upgrade (the request kept its `upgrade` header)
  bool connect_request_ = false;
  bool tunnel_ = false;

  const RouteEntry* route_ = nullptr;
  cluster::ClusterRef cluster_;
  const cluster::UpstreamStats* stats_ = nullptr;
  std::unique_ptr<UpstreamRequest> upstream_;
  std::unique_ptr<TcpUpstream> tcp_upstream_;  // CONNECT only
  event::Timer timeout_timer_;

  // Retries (see the header comment); nothing here allocates for a request without a failure.
  std::optional<resilience::Deadline> deadline_;
  std::optional<resilience::RetryState> retry_state_;  // set when the route may retry
  std::optional<event::Timer> attempt_timer_;          // per-try timeout / backoff; lazily made
  bool attempt_timer_backoff_ = false;                 // attempt_timer_ is the backoff
  bool replay_buffering_ = false;  // replay_body_ holds all body sent to the current attempt
  bool body_sent_ = false;         // request body reached the current attempt's stream
  net::Buffer replay_body_;
  absl::InlinedVector<const cluster::Host*, 4> tried_hosts_;
  filters::RequestGate gate_;  // fault injection, rate limit, breaker (before the first attempt)

  bool response_started_ = false;
  bool done_ = false;
  // ReadDisableDownstream(true) calls the router has made and not undone.
  int downstream_reads_disabled_ = 0;
  bool pending_body_over_limit_ = false;
  bool upstream_above_high_watermark_ = false;
  bool downstream_above_high_watermark_ = false;
};

}  // namespace meshlet::sidecar::router
