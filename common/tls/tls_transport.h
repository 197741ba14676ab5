#pragma once

// TlsTransport: net::Transport over a TlsSession, so a net::Connection speaks TLS without
// knowing it. It only moves bytes between net::Buffers and the session: ciphertext from the wire
// into the session, plaintext out into the application's buffer, application bytes in and
// ciphertext out. Handshake, verification and identity checks are the session's.
//
// Ownership and threading: owned by one Connection and used on its loop thread only. It holds
// the session, which holds its TlsContext; a rotation (TlsContextProvider::Update) affects only
// transports made after it.
//
// Errors: a failed handshake or a bad record makes OnReceived return the session's (specific)
// error after appending any alert to `out`, so the peer learns why before the connection closes.

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net/buffer.h"
#include "common/net/transport.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_session.h"

namespace meshlet::tls {

class TlsTransport final : public net::Transport {
 public:
  static absl::StatusOr<std::unique_ptr<TlsTransport>> Create(
      std::shared_ptr<const TlsContext> context, TlsSession::Options options = {});

  // Never null: if a session cannot be created, the transport fails its first call with the
  // reason (and has no session()).
  static std::unique_ptr<TlsTransport> Make(std::shared_ptr<const TlsContext> context,
                                            TlsSession::Options options = {});
  // The same with shared, immutable options (TlsSession::Create).
  static std::unique_ptr<TlsTransport> Make(std::shared_ptr<const TlsContext> context,
                                            std::shared_ptr<const TlsSession::Options> options);

  // One transport per connection, each from the provider's context at that moment (Make). The
  // options are made shared once, here: each connection's session references them (its server
  // name, identity patterns, ALPN) rather than copying them.
  static net::TransportFactory Factory(std::shared_ptr<const TlsContextProvider> provider,
                                       TlsSession::Options options = {});

  explicit TlsTransport(std::unique_ptr<TlsSession> session);

  absl::Status Start(const net::Address& peer, net::Buffer& out) override;
  absl::Status OnReceived(net::Buffer& wire_in, net::Buffer& app_in, net::Buffer& out) override;
  absl::Status Send(net::Buffer& app_out, net::Buffer& out) override;
  void Shutdown(net::Buffer& out) override;
  bool HandshakeComplete() const override { return session_ != nullptr && peer_ready_; }
  bool HandshakeInProgress() const override;
  bool PeerClosed() const override { return session_ != nullptr && session_->peer_closed(); }
  void SetHandshakeCompleteCallback(absl::AnyInvocable<void()> callback) override {
    on_handshake_complete_ = std::move(callback);
  }
  const net::PeerInfo& peer() const override { return peer_; }

  // Null only for a transport whose session could not be created.
  const TlsSession* session() const { return session_.get(); }

 private:
  explicit TlsTransport(absl::Status error) : error_(std::move(error)) {}

  // Appends every pending ciphertext byte to `out`.
  void FlushCiphertext(net::Buffer& out);
  // Reads all available plaintext into `app_in`.
  absl::Status DrainPlaintext(net::Buffer& app_in);
  // Copies the peer's details into peer_ once the handshake has completed; true the one time it
  // does.
  bool UpdatePeer();

  std::unique_ptr<TlsSession> session_;
  absl::Status error_;
  net::PeerInfo peer_;
  bool peer_ready_ = false;
  bool handshake_started_ = false;  // a client sent its hello, or a server received bytes
  absl::AnyInvocable<void()> on_handshake_complete_;
};

}  // namespace meshlet::tls
