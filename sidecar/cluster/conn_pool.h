#pragma once

// ConnPool: upstream connections to one Host, for one HTTP protocol, on one worker. The router
// asks it for a stream; the pool finds a connection with room for one (or opens one, or queues
// the request until one frees up) and hands back a StreamEncoder for the request.
//
//   HTTP/1  one stream per connection at a time. Idle connections are reused most recently used
//           first, so extra connections left over from a burst sit at the back and expire.
//   HTTP/2  up to max_concurrent_streams per connection (and no more than the peer's SETTINGS
//           allow: the codec's CanOpenStream()); another connection opens when all are full.
//
// Connections leave the pool when idle for idle_timeout (default 55 s, below common server
// keep-alives), when the peer closes them (an idle connection that saw EOF is never used), and
// are drained (no new streams; closed once their streams end) after a GOAWAY (HTTP/1:
// `Connection: close`), max_requests_per_connection streams, or max_connection_duration. Streams
// above a GOAWAY's last-stream-id are reset with kRemoteRefusedStream; the HTTP/2 codec closes a
// GOAWAY'd connection whose peer then goes silent with streams in flight
// (Http2Options::goaway_keepalive_interval), and those streams are reset with
// kConnectionTermination, so that neither kind waits for its request's timeout.
//
// Limits come from the cluster's shared CircuitBreakerThresholds: connections (kConnection),
// requests waiting for a stream (kPendingRequest) and requests pending or in flight (kRequest).
// Past a limit the request fails at once with kOverflow.
//
// Callbacks (ConnPoolCallbacks) fire on the loop thread, exactly once per NewStream():
//   OnPoolReady    a stream is ready: send the request through `encoder`. The encoder (and its
//                  GetStream()) stays valid until the response completed and the request was fully
//                  sent, or until OnResetStream on the stream's callbacks.
//   OnPoolFailure  no stream: kConnectRefused (the host refused the connection: nothing listens
//                  on its port), kConnectFailure (any other failed connect, or one timed out),
//                  both safe to retry (nothing was sent); kOverflow (a limit), kTimeout (waited
//                  longer than pending_timeout), kRemoteClose (the pool is draining: the host
//                  left the cluster or the pool settings changed).
// Streams start as soon as TCP connects (a TLS transport holds the request until its handshake
// completes). If the connection then dies before the TLS handshake finished, the stream is reset
// with kConnectionFailure (the upstream never saw the request: as safe to retry as a connect
// failure); after that, with kConnectionTermination.
// NewStream() returns null when it already called one of them (synchronously); otherwise a
// Cancellable that withdraws the queued request. Never Cancel() from inside the callbacks of the
// same request (the handle is gone by then).
//
// Ownership: the owner (the worker's Cluster) holds the pool; the pool owns its connections,
// codecs and queued requests; the caller owns the decoder and callbacks, which must outlive the
// request. Destroying the pool calls no callbacks: destroy it once idle (see Drain() and
// SetEmptyCallback()) or at worker shutdown. Objects the pool retires from inside callbacks are
// destroyed at the end of the loop turn (Loop::DeferDelete).

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/free_list.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/net/connection.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/host.h"
#include "sidecar/resilience/circuit_breaker.h"

namespace meshlet::sidecar::cluster {

// Withdraws an asynchronous request.
class Cancellable {
 public:
  virtual void Cancel() = 0;

 protected:
  ~Cancellable() = default;
};

enum class PoolFailureReason {
  kConnectFailure,
  kConnectRefused,
  kOverflow,
  kTimeout,
  kRemoteClose
};
absl::string_view PoolFailureReasonName(PoolFailureReason reason);

class ConnPoolCallbacks {
 public:
  virtual ~ConnPoolCallbacks() = default;
  virtual void OnPoolReady(http::StreamEncoder& encoder, Host& host) = 0;
  virtual void OnPoolFailure(PoolFailureReason reason, absl::string_view details, Host& host) = 0;
};

// Makes the client codec for a new upstream connection. `io` and `callbacks` belong to the pool's
// connection and outlive the codec. The HTTP/1 and HTTP/2 codecs each provide one.
using CodecFactory = std::function<std::unique_ptr<http::ClientConnection>(
    http::CodecIo& io, http::ConnectionCallbacks& callbacks)>;

// Plain counters (monotonic) for the stats layer.
struct ConnPoolStats {
  uint64_t cx_total = 0;               // connections created
  uint64_t cx_closed = 0;              // connections closed, whatever the reason
  uint64_t cx_connect_fail = 0;        // refused, unreachable, or closed before the TLS handshake
  uint64_t cx_tls_handshake_fail = 0;  // of those: the TLS handshake failed (certificate, identity)
  uint64_t cx_connect_timeout = 0;
  uint64_t cx_idle_timeout = 0;   // closed after idle_timeout
  uint64_t cx_remote_close = 0;   // closed by the peer
  uint64_t cx_max_requests = 0;   // drained after max_requests_per_connection
  uint64_t cx_max_duration = 0;   // drained after max_connection_duration
  uint64_t cx_goaway = 0;         // drained after the peer's GOAWAY / Connection: close
  uint64_t cx_overflow = 0;       // a connection was needed but max_connections was reached
  uint64_t rq_total = 0;          // streams started
  uint64_t rq_pending_total = 0;  // requests that had to wait
  uint64_t rq_pending_overflow = 0;
  uint64_t rq_overflow = 0;         // max_requests reached
  uint64_t rq_pending_failure = 0;  // queued requests failed (connect failure, timeout, drain)
  uint64_t rq_cancelled = 0;
  uint64_t rq_reset = 0;  // streams that ended with a reset
};

struct ConnPoolOptions {
  http::Protocol protocol = http::Protocol::kHttp11;
  ConnectionPoolConfig config;
  Duration connect_timeout = std::chrono::seconds(1);
  // One Transport per upstream connection (TLS); null means plaintext.
  net::TransportFactory transport_factory;
  // Counts connections whose TLS handshake failed (meshlet_upstream_cx_tls_handshake_fail_total).
  Counter tls_handshake_failures;
  net::ConnectionOptions connection;
};

class ConnPool {
 public:
  // `thresholds` is the cluster's, shared by every pool of the cluster on every worker.
  ConnPool(event::Loop& loop, HostSharedPtr host, CodecFactory codec_factory,
           std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds,
           ConnPoolOptions options);
  ~ConnPool();
  ConnPool(const ConnPool&) = delete;
  ConnPool& operator=(const ConnPool&) = delete;

  // Asks for a stream whose response goes to `response_decoder`. See the header comment.
  Cancellable* NewStream(http::StreamDecoder& response_decoder, ConnPoolCallbacks& callbacks);

  // Stops using the pool for good: new requests fail with kRemoteClose; queued requests are
  // served by the connections being made for them, which then close (those none of them can take
  // fail with kRemoteClose, as do the queued requests of a connection that fails); idle
  // connections close, busy ones when their streams end. The idle callback fires once nothing is
  // left.
  void Drain();
  // Called each time the pool is left with no connection and no queued request, so that its
  // owner may destroy it: after Drain() (draining() is true), once its last stream ended; not
  // draining, when its last connection closed (a failed connect, idle_timeout, the peer): a pool
  // is about 0.5 KB, and a host that refused its connection, or one the cluster has not called
  // for idle_timeout, keeps none (Cluster does; ADR 0091). From inside pool callbacks, so
  // destroy the pool with DeferDelete; it may fire again before that.
  void SetEmptyCallback(std::function<void()> callback) { empty_callback_ = std::move(callback); }

  // Closes connections that have no streams (for tests and memory pressure).
  void CloseIdleConnections();

  Host& host() { return *host_; }
  http::Protocol protocol() const { return options_.protocol; }
  const ConnPoolStats& stats() const { return stats_; }
  // Gauges, derived from what the pool holds, so they always balance.
  size_t connections() const;
  size_t connecting() const { return connecting_.size(); }
  size_t ready_connections() const { return ready_.size(); }
  size_t draining_connections() const { return draining_.size(); }
  size_t pending_requests() const { return pending_.size(); }
  size_t active_streams() const { return active_streams_; }
  bool draining() const { return draining_pool_; }
  bool idle() const { return connections() == 0 && pending_.empty(); }

 private:
  class Client;
  class ActiveStream;
  class PendingRequest;
  // A connection's streams; they and their list nodes come from the worker's free lists.
  using StreamList =
      std::list<std::unique_ptr<ActiveStream>, RecyclingAllocator<std::unique_ptr<ActiveStream>>>;
  using ClientList = std::list<std::unique_ptr<Client>>;
  using PendingList = std::list<std::unique_ptr<PendingRequest>>;

  // Streams a connection may carry at once.
  uint32_t StreamsPerConnection() const;
  // Creates a connection if the limits allow; false when max_connections was reached.
  bool TryCreateClient();
  // Streams the connections still connecting will be able to take.
  uint64_t ConnectingCapacity() const;
  // Serves queued requests from ready connections and opens connections for the rest.
  void ProcessPending();
  void ScheduleProcessPending();
  // Starts a stream on `client` (which has capacity) and calls OnPoolReady.
  void AttachStream(Client& client, http::StreamDecoder& decoder, ConnPoolCallbacks& callbacks,
                    resilience::ResourceGuard request_guard, Host::RequestGuard host_guard);
  // A ready connection to use now, closing any found dead on the way; null if none.
  Client* TakeReadyClient();
  // Moves `client` to the list its state calls for; closes a draining client with no streams.
  void UpdateClientState(Client& client);
  void MoveClient(Client& client, ClientList& to, bool front);
  // Removes a closed client from its list and defers its destruction.
  void RemoveClient(Client& client);
  // A connection failed to connect; `refused`: the host refused it (kConnectRefused).
  void OnClientConnectFailure(absl::string_view details, bool refused);
  void FailPending(PendingList::iterator it, PoolFailureReason reason, absl::string_view details);
  // Draining: fails the newest queued requests the connections still being made cannot take.
  void FailPendingNoConnectionCanServe();
  void CancelPending(PendingRequest& request);
  void ArmPendingTimer();
  void OnPendingTimer();
  void MaybeFireIdle();

  event::Loop& loop_;
  HostSharedPtr host_;
  CodecFactory codec_factory_;
  std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds_;
  ConnPoolOptions options_;

  // Each connection is in exactly one list. ready_ is most recently used first.
  ClientList connecting_;
  ClientList ready_;     // can take another stream
  ClientList busy_;      // full for now
  ClientList draining_;  // no new streams; closes when its streams end
  PendingList pending_;  // oldest first
  size_t active_streams_ = 0;

  event::Timer process_timer_;
  event::Timer pending_timer_;
  bool draining_pool_ = false;
  std::function<void()> empty_callback_;
  ConnPoolStats stats_;
};

}  // namespace meshlet::sidecar::cluster
