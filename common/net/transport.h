#pragma once

// Transport: the seam between a socket and the bytes the application sees. A transport is a pure
// byte transform with no I/O of its own: Connection feeds it what the socket read and sends what it
// produces, so a TLS engine over memory BIOs implements it without touching sockets, and tests
// drive it with plain Buffers.
//
// Ownership: a Connection owns exactly one Transport, made by a TransportFactory when the
// connection is accepted or connected. All methods run on the connection's loop thread. The
// Buffers passed in belong to the Connection and are valid only for the duration of the call.
//
// Call order, as Connection uses it:
//   Start(peer, out)                 once, when the TCP connection is established
//   OnReceived(wire_in, app_in, out) each time bytes arrive from the socket
//   Send(app_out, out)               each time the application writes, and after every OnReceived
//                                    while app_out still holds bytes (TLS flushes queued data once
//                                    the handshake completes)
//   Shutdown(out)                    once, before the write side is shut down or the connection
//                                    is closed after a flush
// Whatever a call appends to `out` is written to the socket right after the call returns.
//
// Handshake: a transport with a handshake (TLS) reports it through HandshakeInProgress(),
// HandshakeComplete() and, once, the callback set with SetHandshakeCompleteCallback(); peer() is
// filled when it completes. Transports without one (plaintext) are complete from the start and
// never call the callback.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/net/address.h"

namespace meshlet::net {

class Buffer;

// What a transport learned about the peer (filled by TLS; empty for plaintext).
struct PeerInfo {
  std::string alpn;                   // negotiated protocol, e.g. "h2"; empty if none
  std::string sni;                    // server name the client asked for (server side)
  std::vector<std::string> uri_sans;  // peer certificate URI SANs (e.g. SPIFFE ids)
  bool peer_certificate_presented = false;
  // The verified peer certificate's notAfter (InfinitePast without one); a long-lived connection
  // may outlast it.
  absl::Time peer_not_after = absl::InfinitePast();
  // Its meshlet attestation extension (tls::AttestationOf); empty without one.
  std::string peer_attestation;
  bool session_resumed = false;  // a TLS session resumed from a ticket
  bool tls = false;              // the connection speaks TLS and its handshake completed
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Starts the protocol (a TLS client writes its ClientHello into `out`). `peer` is the address
  // at the other end (a TLS client keys the sessions it may resume by it).
  virtual absl::Status Start(const Address& peer, Buffer& out) = 0;
  // Bytes read from the socket. Appends application bytes to `app_in`, and any bytes that must be
  // sent to the peer (handshake, alerts) to `out`. An error means close the connection; what it
  // appended to `out` (a TLS alert saying why) is written before the close.
  // Bytes the transport cannot use yet (a partial TLS record) may stay in `wire_in`; the
  // connection appends the next read behind them.
  virtual absl::Status OnReceived(Buffer& wire_in, Buffer& app_in, Buffer& out) = 0;
  // Application bytes to send: drains what it can from `app_out` into `out` (TLS keeps them
  // queued until the handshake completes).
  virtual absl::Status Send(Buffer& app_out, Buffer& out) = 0;
  // Orderly close (TLS close_notify) written into `out`.
  virtual void Shutdown(Buffer& out) = 0;
  // True once the handshake has completed (always, for transports without one); until then
  // peer() is empty.
  virtual bool HandshakeComplete() const = 0;
  // True while a handshake has begun (the first handshake bytes were sent or received) and has
  // neither completed nor failed; always false for transports without one. Lets an owner tell a
  // peer that is still handshaking from one that is silent.
  virtual bool HandshakeInProgress() const { return false; }
  // True once the peer ended its side within the transport (TLS close_notify): no application
  // byte follows, as at the socket's end of stream, which a peer that waits for ours before
  // closing its socket (openssl s_server) would never send. Always false for transports
  // without such a message.
  virtual bool PeerClosed() const { return false; }
  // Sets the callback that runs once when the handshake completes; it replaces any earlier one.
  // It runs on the loop thread, inline from the OnReceived() call that completed the handshake
  // (so peer() is already filled, and the application bytes of that same read are delivered
  // after it), and only when that call succeeds. It does not run for a handshake that completed
  // before it was set (check HandshakeComplete() first), that fails, or for transports without a
  // handshake. It must not close the connection, take it over, or call into the transport;
  // reading peer() and re-arming timers are fine.
  virtual void SetHandshakeCompleteCallback(absl::AnyInvocable<void()> callback) { (void)callback; }
  virtual const PeerInfo& peer() const = 0;
};

// Makes one Transport per connection. Listener calls it for every accepted connection and
// Connection::Connect once; it runs on the loop thread that will own the connection.
using TransportFactory = std::function<std::unique_ptr<Transport>()>;

}  // namespace meshlet::net
