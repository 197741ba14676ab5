#pragma once

// DownstreamTlsTransport: the transport of every connection accepted on a listener with TLS
// (mode PERMISSIVE or STRICT). It looks at the connection's first bytes before anything else:
//
//   - a TLS ClientHello: from then on it is a TlsTransport made from the listener's current
//     context (so a rotation affects only connections accepted after it), which terminates TLS,
//     verifies a client certificate when the context asks for one and checks the client's SPIFFE
//     id against the listener's allowed_peer_ids;
//   - anything else under PERMISSIVE: plaintext, passed through unchanged;
//   - anything else under STRICT: an error (the connection closes), counted as plaintext_refused.
//
// A failed handshake (bad or missing client certificate, an identity that is not allowed, no
// common ALPN...) is an error too, counted as tls_handshake_error. The owner of the connection
// reads what was decided through tls(), peer() and peer_identity() once application bytes arrive.
//
// Ownership and threading: owned by one net::Connection, used on its worker's loop thread only.
// The counters are handles of that worker's stats shard.

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "common/net/buffer.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context_provider.h"

namespace meshlet::sidecar {

class DownstreamTlsTransport final : public net::Transport {
 public:
  struct Counters {
    Counter plaintext_refused;  // meshlet_downstream_cx_rejected_total{reason="plaintext_refused"}
    Counter handshake_error;  // meshlet_downstream_cx_rejected_total{reason="tls_handshake_error"}
    Counter handshakes;       // meshlet_downstream_tls_handshakes_total
    Counter resumed;          // meshlet_downstream_tls_resumed_total (part of handshakes)
  };

  // `provider` must not be null.
  DownstreamTlsTransport(std::shared_ptr<const tls::TlsContextProvider> provider, bool strict,
                         Counters counters);
  ~DownstreamTlsTransport() override;

  absl::Status Start(const net::Address& peer, net::Buffer& out) override;
  absl::Status OnReceived(net::Buffer& wire_in, net::Buffer& app_in, net::Buffer& out) override;
  absl::Status Send(net::Buffer& app_out, net::Buffer& out) override;
  void Shutdown(net::Buffer& out) override;
  bool HandshakeComplete() const override;
  const net::PeerInfo& peer() const override;

  // The peer spoke TLS (false while undecided and for plaintext).
  bool tls() const { return state_ == State::kTls; }
  // The client has begun a TLS handshake (its first record arrived, maybe in part) that has not
  // finished yet.
  bool handshake_in_progress() const;
  // Runs once, when the TLS handshake completes (never for plaintext). It runs while the
  // connection is reading, so it must not close the connection or take it over; re-arming a timer
  // is fine.
  void SetHandshakeDoneCallback(absl::AnyInvocable<void()> callback) {
    on_handshake_done_ = std::move(callback);
  }
  // The peer's SPIFFE id from its verified certificate; empty without one.
  std::string peer_identity() const;

 private:
  enum class State { kUndecided, kTls, kPlaintext };

  const std::shared_ptr<const tls::TlsContextProvider> provider_;
  const bool strict_;
  Counters counters_;
  State state_ = State::kUndecided;
  std::unique_ptr<net::Transport> tls_;
  bool handshake_counted_ = false;
  bool tls_record_started_ = false;  // undecided, holding the start of a TLS handshake record
  absl::AnyInvocable<void()> on_handshake_done_;
  net::PeerInfo no_peer_;
};

// Returns the SPIFFE id (the first "spiffe://" URI SAN) of `peer`, or "".
std::string SpiffeIdOf(const net::PeerInfo& peer);

}  // namespace meshlet::sidecar
