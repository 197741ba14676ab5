#include "common/tls/tls_transport.h"

#include <algorithm>
#include <utility>

#include "common/base/status.h"
#include "common/tls/certificate.h"

namespace meshlet::tls {
namespace {

// Smallest tail space worth decrypting into; a full record is 16 KiB.
constexpr size_t kMinPlaintextReservation = 4096;

}  // namespace

absl::StatusOr<std::unique_ptr<TlsTransport>> TlsTransport::Create(
    std::shared_ptr<const TlsContext> context, TlsSession::Options options) {
  ASSIGN_OR_RETURN(std::unique_ptr<TlsSession> session,
                   TlsSession::Create(std::move(context), std::move(options)));
  return std::make_unique<TlsTransport>(std::move(session));
}

std::unique_ptr<TlsTransport> TlsTransport::Make(std::shared_ptr<const TlsContext> context,
                                                 TlsSession::Options options) {
  absl::StatusOr<std::unique_ptr<TlsSession>> session =
      TlsSession::Create(std::move(context), std::move(options));
  if (!session.ok()) return std::unique_ptr<TlsTransport>(new TlsTransport(session.status()));
  return std::make_unique<TlsTransport>(*std::move(session));
}

net::TransportFactory TlsTransport::Factory(std::shared_ptr<const TlsContextProvider> provider,
                                            TlsSession::Options options) {
  return [provider = std::move(provider),
          options = std::move(options)]() -> std::unique_ptr<net::Transport> {
    return Make(provider->Current(), options);
  };
}

TlsTransport::TlsTransport(std::unique_ptr<TlsSession> session) : session_(std::move(session)) {}

absl::Status TlsTransport::Start(const net::Address& peer, net::Buffer& out) {
  if (session_ == nullptr) return error_;
  // Only a client has something to say first; for a server this is a no-op.
  const bool client = !session_->context()->is_server();
  if (client && peer.is_ip() && session_->context()->KeepsClientSessions()) {
    session_->SetResumptionKey(peer.ToString());
  }
  absl::Status status = client ? session_->Handshake() : absl::OkStatus();
  handshake_started_ = client;
  FlushCiphertext(out);
  return status;
}

absl::Status TlsTransport::OnReceived(net::Buffer& wire_in, net::Buffer& app_in, net::Buffer& out) {
  if (session_ == nullptr) return error_;
  if (!wire_in.empty()) handshake_started_ = true;
  absl::Status status = absl::OkStatus();
  bool stalled = false;
  while (status.ok() && !wire_in.empty()) {
    size_t taken = session_->FeedCiphertext(wire_in.FrontSlice());
    wire_in.Drain(taken);
    // Decrypting empties the session's input ring, making room for the rest.
    status = DrainPlaintext(app_in);
    if (taken > 0) {
      stalled = false;
    } else if (stalled) {
      // Twice no room even after reading: the session stopped consuming, which a healthy one
      // never does. Fail rather than spin.
      status = absl::InternalError("TLS session stopped consuming input");
    } else {
      stalled = true;
    }
  }
  if (status.ok()) status = DrainPlaintext(app_in);
  const bool completed = UpdatePeer();
  FlushCiphertext(out);
  if (completed && status.ok() && on_handshake_complete_) on_handshake_complete_();
  return status;
}

absl::Status TlsTransport::Send(net::Buffer& app_out, net::Buffer& out) {
  if (session_ == nullptr) return error_;
  RETURN_IF_ERROR(session_->status());
  // Queued in app_out until the handshake completes; the connection calls again after reads.
  if (!session_->handshake_complete()) return absl::OkStatus();
  while (!app_out.empty()) {
    absl::StatusOr<size_t> taken = session_->WritePlaintext(app_out.FrontSlice());
    if (!taken.ok()) {
      FlushCiphertext(out);
      return taken.status();
    }
    if (*taken == 0) break;  // cannot happen while we flush after every write; don't spin
    app_out.Drain(*taken);
    FlushCiphertext(out);
  }
  return absl::OkStatus();
}

void TlsTransport::Shutdown(net::Buffer& out) {
  if (session_ == nullptr) return;
  session_->Shutdown();
  FlushCiphertext(out);
}

void TlsTransport::FlushCiphertext(net::Buffer& out) {
  absl::string_view pending = session_->PendingCiphertext();
  if (pending.empty()) return;
  out.Append(pending);
  session_->ConsumeCiphertext(pending.size());
}

absl::Status TlsTransport::DrainPlaintext(net::Buffer& app_in) {
  while (true) {
    absl::Span<char> space = app_in.Reserve(kMinPlaintextReservation);
    absl::StatusOr<size_t> n = session_->ReadPlaintext(space);
    if (!n.ok()) {
      app_in.Commit(0);
      return n.status();
    }
    app_in.Commit(*n);
    if (*n == 0) return absl::OkStatus();
  }
}

bool TlsTransport::HandshakeInProgress() const {
  return session_ != nullptr && handshake_started_ && !peer_ready_ && session_->status().ok();
}

bool TlsTransport::UpdatePeer() {
  if (peer_ready_ || !session_->handshake_complete()) return false;
  peer_.alpn = session_->alpn();
  peer_.session_resumed = session_->session_resumed();
  peer_.sni = session_->server_name();
  peer_.uri_sans = session_->peer_uri_sans();
  peer_.peer_certificate_presented = session_->peer_certificate_presented();
  if (const X509* leaf = session_->peer_certificate(); leaf != nullptr) {
    peer_.peer_not_after = NotAfter(*leaf);
    peer_.peer_attestation = AttestationOf(*leaf);
  }
  peer_.tls = true;
  peer_ready_ = true;
  return true;
}

}  // namespace meshlet::tls
