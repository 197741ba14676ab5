#pragma once

// ActiveConnection: one accepted connection from accept to close, whatever ends up handling it.
//
// TCP listeners hand the connection straight to a TcpProxy. HTTP and AUTO listeners first read
// the connection's opening bytes (up to the listener's detect_timeout) to tell HTTP/1, HTTP/2,
// TLS and opaque bytes apart: HTTP goes to the HTTP connection manager; opaque bytes (or silence,
// under AUTO) and TLS the listener does not terminate go to the listener's tcp_cluster, or are
// closed when it has none. An HTTP listener has no tcp_cluster: there a method the detector does
// not know waits for the end of its first line (DetectHttp1RequestLine), and bytes that are
// neither HTTP/1 nor the HTTP/2 preface get the HTTP/2 codec's answer to a bad preface
// (GOAWAY(PROTOCOL_ERROR), closed). On a listener with TLS the transport (downstream_tls.h)
// terminates it: HTTP listeners then wait for the first decrypted bytes, ALPN "h2" / "http/1.1"
// chooses the codec (otherwise the bytes are detected as above), and the client's verified SPIFFE
// id goes to the connection manager. The wait restarts when the handshake completes (the
// transport's handshake-complete callback); a handshake still under way is bounded by
// tls_handshake_timeout from accept. Every refusal is counted in
// meshlet_downstream_cx_rejected_total.
//
// On a capture listener with on_demand, a connection whose original destination no destination
// serves (passthrough or refuse) and whose address is inside on_demand.address_ranges first waits
// for a lookup of that address (ADR 0086; the worker's OnDemandWaiters, up to on_demand.timeout):
// bytes it sends meanwhile are kept (reading pauses past kMaxBytesWhileWaiting) and no detection
// timer runs. Found: the original destination is matched again against the listener as the
// worker runs it now (the snapshot that carries the answer) and served so; any other outcome: the
// first decision is served, exactly as without on_demand. Closing while waiting cancels the wait.
//
// On a listener with destinations by server name (ADR 0106), a connection whose decision depends
// on it (DestinationMatcher::NameNeeded) first reads its TLS ClientHello, without consuming it,
// up to the listener's detect_timeout: the name it carries (none when the bytes are not TLS, not
// a whole ClientHello in time, or name nothing) is matched with the original destination, and
// everything read is then served as above, the ClientHello forwarded unchanged. Counted in
// meshlet_downstream_cx_client_hello_total. A capture listener's connection whose decision
// depends on the Host of its first HTTP/1 request (destinations with http_hosts, ADR 0108) reads
// that request's head the same way (http1_host.h; at most MaxRequestHeadBytes(), up to
// detect_timeout): the host it names (none when the bytes are not such a head, not a whole one in
// time, or name no single host) is matched, and every byte read goes on to what the match chose
// (the HTTP connection manager, a passthrough, a refusal) as it came. Counted in
// meshlet_downstream_cx_http_host_total.
//
// Ownership and threading: the ConnectionOwner (the worker) owns it and its loop thread is the
// only one it runs on. While the protocol is being detected it is the connection's callbacks
// object; afterwards it owns the handler (TcpProxy or HttpConnectionManager). When the connection
// ends it calls ConnectionOwner::OnConnectionDone, from a loop callback, once; the owner then
// deletes it later (Loop::DeferDelete), never inline.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"
#include "common/stats/stats.h"
#include "sidecar/listener/http1_host.h"
#include "sidecar/listener/http_connection_manager.h"
#include "sidecar/listener/http_stats.h"
#include "sidecar/listener/listener_context.h"
#include "sidecar/listener/on_demand_waiters.h"
#include "sidecar/listener/protocol_detector.h"
#include "sidecar/listener/tcp_proxy.h"
#include "sidecar/listener/worker_context.h"

namespace meshlet::sidecar::listener {

class ActiveConnection;

// What a connection needs from the worker that accepted it. Every method is called on the
// worker's loop thread; what the references name outlives every connection the owner holds.
class ConnectionOwner {
 public:
  virtual event::Loop& loop() = 0;
  // The clock the worker's requests use.
  virtual const Clock& clock() = 0;
  virtual cluster::ClusterManager& clusters() = 0;
  virtual HttpStats& http_stats() = 0;
  // Open downstream connections: +1 when a connection is made, -1 when it is destroyed.
  virtual void CountConnection(int delta) = 0;
  // `connection` has ended: the owner forgets it and deletes it with Loop::DeferDelete.
  virtual void OnConnectionDone(ActiveConnection& connection) = 0;
  // The worker's connections waiting for lookups (ADR 0086).
  virtual OnDemandWaiters& on_demand() = 0;
  // The context the worker gives connections the listener called `name` accepts now (of its
  // latest snapshot); null when it runs no such listener any more.
  virtual std::shared_ptr<const ListenerContext> CurrentListenerContext(absl::string_view name) = 0;

 protected:
  ~ConnectionOwner() = default;
};

class ActiveConnection final : public net::ConnectionCallbacks, private Waiter {
 public:
  ActiveConnection(ConnectionOwner& owner, std::shared_ptr<const ListenerContext> listener,
                   std::unique_ptr<net::Connection> connection);
  ~ActiveConnection() override;
  ActiveConnection(const ActiveConnection&) = delete;
  ActiveConnection& operator=(const ActiveConnection&) = delete;

  // Begins serving (or detecting); may end the connection (OnConnectionDone) before it returns.
  // On a capture listener (ListenerContext::matcher) it first reads the original destination and
  // picks what serves the connection: a matched destination's protocol, routes and tcp_cluster,
  // the listener's own, a plaintext passthrough to where the client was going, or a refusal
  // (HTTP: a local 502 per request, flag NM; other bytes: closed as unmatched_destination), after
  // waiting for a lookup of the original destination when the listener's on_demand says so.
  void Start();
  // HTTP connections finish their streams and close (GOAWAY / Connection: close; an idle HTTP/1.1
  // one after its next request with `keep_idle_http1`, HttpConnectionManager::Drain); TCP proxies
  // and connections still detecting carry on until they end.
  void StartDrain(bool keep_idle_http1 = false);

  // net::ConnectionCallbacks, while detecting.
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnClose(net::CloseReason reason, const absl::Status& error) override;

 private:
  // The protocol settled without looking at the bytes: by the listener (HTTP1/HTTP2 listeners
  // with TLS wait here only for the handshake) or by ALPN.
  std::optional<DetectedProtocol> ChosenProtocol() const;
  // Capture listeners: reads the original destination into original_destination_.
  void ReadOriginalDestination();
  // Listeners with a matcher: sets decision_ and what follows from it from
  // original_destination_, server_name_ and http_host_.
  void Decide();
  // Reading a name first (Start): arms the detect timer, which bounds the wait.
  void StartReadingName();
  // While reading_hello_: parses what arrived; once it is a whole ClientHello, something else,
  // or the connection ended or timed out (`timed_out`), decides and serves (NameRead).
  void ReadClientHello(bool end_stream, bool timed_out);
  // While host_reader_ is set: once it decided, or the connection ended or timed out, reads the
  // host and decides and serves (NameRead).
  void ReadHttpHost(bool end_stream, bool timed_out);
  // The name (server name or host) was read, or not: decides with it, then waits for a lookup
  // or serves, handing on what was read.
  void NameRead(bool end_stream);
  // The most bytes of a first request head read for its Host.
  size_t MaxRequestHeadBytes() const;
  // Capture listeners: starts waiting for a lookup of the original destination if decision_ and
  // the listener's on_demand ask for one; false when the connection does not wait.
  bool WaitForLookup();
  // Waiter: the lookup ended (found: Decide() again with the worker's current listener), then
  // Serve() and what arrived meanwhile.
  void OnLookupDone(config::LookupOutcome outcome) override;
  // What serves the connection as decided: a handler at once, or detection of its first bytes.
  void Serve();
  // A captured connection served by a ServiceRoute's destination touches its usage cell when
  // served and when it ends (ADR 0086: unused destinations age out).
  void NoteDestinationUse();
  // The HTTP version the client chose by ALPN in a completed TLS handshake, if any.
  std::optional<DetectedProtocol> NegotiatedProtocol() const;
  // What the connection's transport learned about the peer; empty before a TLS handshake
  // completes and for plaintext.
  const net::PeerInfo& Peer() const;
  void ArmDetectTimer(Duration window);
  void OnDetectTimeout();
  void Dispatch(DetectedProtocol protocol, bool timed_out);
  void ToTcp();
  // kPassthrough: opaque bytes, plaintext, to decision_.upstream.
  void ToPassthrough();
  // Opaque bytes are authorized once per connection, on the peer's identity and the destination
  // port (filters/authorization.h). False: denied and closed.
  bool AuthorizedConnection();
  void ToHttp(DetectedProtocol protocol);
  void Reject(Counter counter, absl::string_view reason);

  // A detect timer that fires this much past its time (or half its window, if more) was held up
  // by a stall; a connection gets at most kMaxLateRestarts fresh waits for it. The floor keeps
  // timer rounding and ordinary loop delays from counting, the cap keeps a worker that stays
  // overloaded from waiting forever.
  static constexpr Duration kLateFloor = std::chrono::milliseconds(100);
  static constexpr int kMaxLateRestarts = 3;
  // Bytes kept from a client while its connection waits for a lookup before reading pauses.
  static constexpr size_t kMaxBytesWhileWaiting = 64 * 1024;

  ConnectionOwner& owner_;
  std::shared_ptr<const ListenerContext> listener_;
  // What serves the connection: the listener's fields, or (capture listeners, Start) those the
  // original destination chose. The strings point into listener_->config.
  config::ListenerProtocol protocol_;
  const std::string* route_config_name_;
  const std::string* tcp_cluster_;
  CaptureDecision decision_;                          // kListener unless a capture listener
  std::optional<net::Address> original_destination_;  // capture listeners, when redirected
  bool reading_hello_ = false;                        // waiting for the ClientHello (Start)
  std::optional<std::string> server_name_;            // the ClientHello's, when it named one
  std::optional<Http1HostReader> host_reader_;        // reading the first request head (Start)
  std::optional<std::string> http_host_;              // the first request's, when it named one
  std::unique_ptr<net::Connection> connection_;       // until a handler takes it
  GaugeGuard active_;
  std::unique_ptr<event::Timer> detect_timer_;
  int late_restarts_ = 0;
  MonotonicTime accepted_at_{};
  MonotonicTime detect_deadline_{};  // when detect_timer_ is due
  Duration detect_window_{};         // what it was armed with
  net::Buffer pending_;              // bytes read while detecting
  WaitHandle lookup_;                // while waiting for a lookup (WaitForLookup)
  bool paused_for_lookup_ = false;   // reading disabled while waiting
  bool ended_while_waiting_ = false;
  bool served_ = false;  // Serve() ran
  std::unique_ptr<TcpProxy> tcp_;
  std::unique_ptr<HttpConnectionManager> http_;
};

}  // namespace meshlet::sidecar::listener
