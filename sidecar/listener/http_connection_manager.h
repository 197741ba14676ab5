#pragma once

// HttpConnectionManager (HCM): serves one accepted downstream connection as an HTTP proxy. It
// owns the connection and its server codec (HTTP/1.1 or HTTP/2, as detected by the listener), and
// runs each request stream — an ActiveStream (active_stream.h), which holds the request's filters —
// through the filter chain (sidecar/stream/filter.h), in this order:
//   0. load shedding first: while WorkerContext::overload says so (stream/stream_context.h), the
//      request gets a local 503 (OL) before anything else runs;
//   1. JWT authentication (filters/jwt_filter.h), authorization (filters/authorization_filter.h),
//      then the listener's rate limit
//      (filters/rate_limit_filter.h), on the request as the client sent it;
//   2. the HCM prepares the request: removes hop-by-hop headers (TE: trailers survives, for
//      gRPC), generates `x-request-id` when absent (HttpOptionsConfig::generate_request_id),
//      appends the peer address to `x-forwarded-for` (use_remote_address), sets
//      `x-forwarded-proto` and `x-meshlet-peer-identity`; with WorkerContext::tracer set it starts
//      the request's trace (sampling, the server span; docs/tracing.md);
//   3. it resolves the route once — in the route table of the snapshot current when the request
//      started, the virtual host matched for step 1 — and the cluster the route picks, caches
//      both on the stream, and lets the router route the request (sidecar/router/router.h);
//   4. fault injection (filters/fault_filter.h), the route's rate limit, the breaker gate
//      (filters/breaker_filter.h), and the router last, which forwards the request upstream.
// Any of them may answer the request with a local reply (sidecar/stream/local_reply.h). The HCM
// enforces the stream idle timeout (408 before the response started, a reset after) and the
// minimum request body rate (HttpOptionsConfig::request_body_timeout; 408 likewise), counts
// HttpStats and the cluster's golden metrics, writes one access-log JSON line when
// WorkerContext::access_log is set, and ends the server span with the request.
// Per connection it enforces the request-header read timeout — a request header section begun
// request_headers_timeout ago and still incomplete. HTTP/1: a partial head gets 408 and the
// connection closes. HTTP/2: a HEADERS block still without END_HEADERS (trickled CONTINUATION)
// makes the connection send GOAWAY and close, whatever other streams it runs, since a stream
// without its headers cannot be answered. It also enforces the idle timeout (no stream for
// idle_timeout: HTTP/2 GOAWAY, then close).
// Tunnels: an HTTP/1.1 Upgrade request keeps its `upgrade` header for the router, which opens a
// byte tunnel on the upstream's 101. CONNECT is refused with 403 (counted) unless the listener's
// HttpOptionsConfig::allow_connect is set, and always over HTTP/2; allowed, the router tunnels it.
// The client closing its sending side (EOF) counts as the client going away: the connection
// closes and requests in flight end with the DC flag — except an open tunnel, which ends when the
// router ends it.
//
// Draining: Drain(), or a stream starting while WorkerContext::draining is set, makes the codec
// stop taking new streams (HTTP/2 GOAWAY, HTTP/1 `Connection: close` on the next response); the
// connection closes once its streams are done. The server calls Drain() on every live HCM when a
// drain starts. An HTTP/2 client past a flood limit with requests in flight drains the same way
// after the codec's GOAWAY(ENHANCE_YOUR_CALM) (OnFloodDrain), once, for at most
// HttpOptionsConfig::flood_drain_timeout, waiting only for the streams accepted before it; one
// that goes on meanwhile makes Dispatch fail and is cut off at once, and so is one that floods
// while HttpOptionsConfig::max_flood_drains connections of the worker drain already
// (WorkerContext::flood_drains). Every such connection counts once in downstream_cx_flood (by
// limit) and once in downstream_cx_flood_end (how it ended).
//
// Ownership and lifetime: the owner (the server's listener) creates the HCM with the accepted
// connection, keeps it, and calls Start() once it has stored it. The close callback fires exactly
// once, on the loop thread, when the connection has closed for whatever reason (peer, error,
// timeout, drain) — possibly from inside Start(). The owner must then destroy the HCM with
// Loop::DeferDelete, never inside the callback. Destroying an HCM whose connection is still open
// (worker shutdown) closes it at once without calling the callback. Requests' router and upstream
// streams are released with the HCM; destroy the HCMs, let the loop run deferred deletions
// (Loop::RunUntilIdle), then destroy the cluster manager.
//
// Threading: everything runs on the worker's loop thread; nothing takes a lock.

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "common/base/free_list.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"
#include "common/stats/stats.h"
#include "sidecar/config/listener_config.h"
#include "sidecar/filters/listener_policy.h"
#include "sidecar/listener/http_stats.h"
#include "sidecar/listener/worker_context.h"
#include "sidecar/route/route_table.h"

namespace meshlet::http::h1 {
class ServerCodec;
}
namespace meshlet::http::h2 {
class ServerCodec;
}

namespace meshlet::sidecar::listener {

class ActiveStream;

class HttpConnectionManager final : public net::ConnectionCallbacks,
                                    public http::CodecIo,
                                    public http::ServerConnectionCallbacks {
 public:
  using CloseCallback = absl::AnyInvocable<void(HttpConnectionManager&)>;

  struct Options {
    // The codec: kHttp2 for the HTTP/2 preface or ALPN "h2", anything else means HTTP/1.1.
    http::Protocol protocol = http::Protocol::kHttp11;
    // The connection is TLS: requests get :scheme and x-forwarded-proto "https".
    bool tls = false;
    // The client's SPIFFE id from its verified certificate (mTLS); empty when it presented none.
    // Logged as downstream_peer_identity and forwarded as x-meshlet-peer-identity, which is
    // removed from every request first so a client cannot claim an identity.
    std::string peer_identity;
    // Capture listeners (listener/destination_matcher.h). Non-empty: the route configuration to
    // use instead of the listener's (a matched destination's); it stays across snapshots.
    std::string route_config_name;
    // Non-zero: the destination port authorization sees instead of the listener's.
    uint32_t destination_port = 0;
    // Where the client was going (e.g. "240.240.0.1:80"); logged as original_destination.
    std::string original_destination;
    // No destination of the mesh matched: every request gets a local 502 naming
    // original_destination, response flag NM.
    bool refuse = false;
    // The client is outside the mesh (an inbound listener's caller without a verified mesh
    // identity): error attribution (the x-meshlet-error field) is neither added to the local
    // replies nor passed on in upstream responses, so no internal name leaves the mesh.
    bool mesh_edge = false;
  };

  // `context` and `stats` must outlive the HCM. `listener` is copied (route configuration name
  // and HttpOptionsConfig). `initial_data`: bytes already read from the connection (protocol
  // detection); they are processed by Start().
  HttpConnectionManager(WorkerContext& context, const HttpStats& stats,
                        const config::ListenerConfig& listener,
                        std::unique_ptr<net::Connection> connection, net::Buffer initial_data,
                        Options options, CloseCallback on_close);
  ~HttpConnectionManager() override;
  HttpConnectionManager(const HttpConnectionManager&) = delete;
  HttpConnectionManager& operator=(const HttpConnectionManager&) = delete;

  // Processes the initial bytes and starts the timers. Call once, after storing the HCM.
  void Start();
  // Finish the streams in progress, accept no new ones, then close. An idle HTTP/1.1 connection
  // closes at once, unless `keep_idle_http1`: then it answers its next request (with `Connection:
  // close`) and closes after it, or at its idle timeout — so a request the client sends just as
  // the drain starts is answered, not lost to the close (a hand-over, when this process need not
  // exit soon).
  void Drain(bool keep_idle_http1 = false);

  net::Connection& connection() { return *connection_; }
  size_t active_streams() const { return streams_.size(); }
  bool closed() const { return closed_; }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnWriteHighWatermark() override;
  void OnWriteLowWatermark() override;
  void OnClose(net::CloseReason reason, const absl::Status& detail) override;

  // http::CodecIo
  void Write(net::Buffer& data) override;
  size_t UnsentBytes() const override;
  void ReadDisable(bool disable) override;
  void Close(bool flush) override;

  // http::ServerConnectionCallbacks
  http::StreamDecoder& NewStream(http::StreamEncoder& response_encoder) override;
  // The client sent GOAWAY (HTTP/2): once no stream is left the connection closes (CheckIdle).
  void OnGoAway() override { peer_goaway_ = true; }
  // The HTTP/2 client passed a flood limit; the codec sent GOAWAY and refuses new streams: drain.
  void OnFloodDrain() override;

 private:
  // The request streams (active_stream.h) read the connection's settings, stat handles and
  // codec, and report their end (OnStreamDone).
  friend class ActiveStream;
  // Streams and their list nodes come from the worker's free lists (common/base/free_list.h).
  using StreamList =
      std::list<std::unique_ptr<ActiveStream>, RecyclingAllocator<std::unique_ptr<ActiveStream>>>;

  // The route table for a new request (cached per snapshot, so a request costs no map lookup);
  // also refreshes authorizer_, destination_port_ and destination_virtual_host_ when the snapshot
  // changed.
  std::shared_ptr<const route::RouteTable> CurrentRouteTable();
  // The listener's destination port, else the port the connection arrived on.
  uint32_t DestinationPort() const;
  void OnStreamDone(ActiveStream& stream);
  // A Dispatch() error: a refused CONNECT (PermissionDenied) or a protocol error.
  void CountDispatchError(const absl::Status& status);
  // After a stream ends or input stopped: close when draining, else start the idle timer.
  void CheckIdle();
  void OnIdleTimeout();
  // The stream idle timeout: one timer per connection, due no later than the earliest stream's
  // timeout, instead of one timer per stream.
  void OnStreamIdleTimer();
  // A request header section has started and not ended (HTTP/1: a partial head buffered while
  // no stream runs; HTTP/2: a HEADERS block still waiting for END_HEADERS, whatever else runs).
  bool RequestHeadersInProgress() const;
  void OnRequestHeadersTimeout();
  void MaybeArmRequestHeadersTimer();
  void BeginDrain();
  void CloseConnection(net::CloseMode mode);
  void OnFloodDrainTimeout();
  // Counts how a flood's connection ended (once), stops its drain timer and gives its place among
  // the worker's drains back.
  void EndFlood(FloodEnd how);

  WorkerContext& context_;
  const HttpStats& stats_;
  const std::string route_config_name_;
  const config::HttpOptionsConfig http_options_;
  std::string refusal_message_;  // Options::refuse only
  // Listener.on_demand with hosts: how long a request may wait for its host's lookup.
  std::optional<Duration> host_lookup_timeout_;
  // Options::refuse only: the policy object that refuses unknown destinations ("MeshConfig/mesh"),
  // for decision records; may be empty.
  std::string refusal_source_;
  const std::string listener_name_;
  // The listener's direction is INBOUND (server spans say meshlet.listener.direction).
  const bool inbound_;
  const Options options_;
  // The listener's authorization policies, local rate limit and destination port, as of the
  // current snapshot: a long-lived connection (pooled HTTP/2 from a peer) applies a policy change
  // from its next request on. Refreshed with the route table, before each request's filters.
  filters::ListenerPolicy policy_;
  uint32_t listener_destination_port_ = 0;  // ListenerConfig::destination_port
  std::unique_ptr<net::Connection> connection_;
  net::Buffer initial_data_;
  CloseCallback on_close_;
  std::unique_ptr<http::ServerConnection> codec_;
  http::h1::ServerCodec* h1_codec_ = nullptr;  // codec_, when it is HTTP/1
  http::h2::ServerCodec* h2_codec_ = nullptr;  // codec_, when it is HTTP/2
  StreamList streams_;
  GaugeGuard cx_active_;

  event::Timer idle_timer_;
  event::Timer request_headers_timer_;
  // Fires for the earliest stream deadline (idle timeout, body clock); each fire scans every
  // stream and re-arms for the next.
  event::Timer stream_idle_timer_;
  std::optional<MonotonicTime> stream_timer_due_;
  void ArmStreamTimer(Duration within);
  // Closes a draining connection on a later turn: closing from inside the codec's own call
  // would drop frames it has not written yet.
  event::Timer drain_close_timer_;
  // Bounds a flood's drain (HttpOptionsConfig::flood_drain_timeout).
  event::Timer flood_drain_timer_;

  const config::Snapshot* cached_snapshot_ = nullptr;
  std::shared_ptr<const route::RouteTable> cached_route_table_;
  // The virtual host of cached_route_table_ bound to options_.original_destination (a Service
  // address), looked up once per snapshot; null: each request's host chooses.
  const route::VirtualHostConfig* destination_virtual_host_ = nullptr;

  bool started_ = false;
  bool draining_ = false;
  bool peer_goaway_ = false;  // the client sent GOAWAY
  // An HTTP/2 flood: none; GOAWAY sent, requests in flight finishing; counted and over.
  enum class FloodState : uint8_t { kNone, kDraining, kEnded };
  FloodState flood_state_ = FloodState::kNone;
  bool closed_ = false;
  bool destroying_ = false;
};

}  // namespace meshlet::sidecar::listener
