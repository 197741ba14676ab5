#include "common/tls/tls_transport.h"

#include <algorithm>
#include <utility>

#include "common/base/status.h"
#include "common/tls/certificate.h"

namespace meshlet::tls {
namespace {

// Smallest tail space worth decrypting into; a full record is 16 KiB.
constexpr size_t kMinPlaintextReservation = 4096;

// The connection's buffers attached to the session for one call: records are read from
// `wire_in` (if any) and written to `out` without passing through the session's queues.
class AttachedWire final : public TlsSession::Wire {
 public:
  AttachedWire(TlsSession& session, net::Buffer* wire_in, net::Buffer& out)
      : session_(session), wire_in_(wire_in), out_(out) {
    session_.AttachWire(this);
  }
  ~AttachedWire() { session_.AttachWire(nullptr); }
  AttachedWire(const AttachedWire&) = delete;
  AttachedWire& operator=(const AttachedWire&) = delete;

  size_t ReadWire(absl::Span<char> dst) override {
    if (wire_in_ == nullptr) return 0;
    size_t n = wire_in_->CopyOut(0, dst.data(), dst.size());
    wire_in_->Drain(n);
    return n;
  }
  void WriteWire(absl::string_view bytes) override { out_.Append(bytes); }

 private:
  TlsSession& session_;
  net::Buffer* wire_in_;
  net::Buffer& out_;
};

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

std::unique_ptr<TlsTransport> TlsTransport::Make(
    std::shared_ptr<const TlsContext> context, std::shared_ptr<const TlsSession::Options> options) {
  absl::StatusOr<std::unique_ptr<TlsSession>> session =
      TlsSession::Create(std::move(context), std::move(options));
  if (!session.ok()) return std::unique_ptr<TlsTransport>(new TlsTransport(session.status()));
  return std::make_unique<TlsTransport>(*std::move(session));
}

net::TransportFactory TlsTransport::Factory(std::shared_ptr<const TlsContextProvider> provider,
                                            TlsSession::Options options) {
  return [provider = std::move(provider),
          options = std::make_shared<const TlsSession::Options>(std::move(options))]()
             -> std::unique_ptr<net::Transport> { return Make(provider->Current(), options); };
}

TlsTransport::TlsTransport(std::unique_ptr<TlsSession> session) : session_(std::move(session)) {}

absl::Status TlsTransport::Start(const net::Address& peer, net::Buffer& out) {
  if (session_ == nullptr) return error_;
  // Only a client has something to say first; for a server this is a no-op.
  const bool client = !session_->context()->is_server();
  if (client && peer.is_ip() && session_->context()->KeepsClientSessions()) {
    session_->SetResumptionKey(peer.ToString());
  }
  FlushCiphertext(out);
  AttachedWire wire(*session_, nullptr, out);
  absl::Status status = client ? session_->Handshake() : absl::OkStatus();
  handshake_started_ = client;
  return status;
}

absl::Status TlsTransport::OnReceived(net::Buffer& wire_in, net::Buffer& app_in, net::Buffer& out) {
  if (session_ == nullptr) return error_;
  if (!wire_in.empty()) handshake_started_ = true;
  FlushCiphertext(out);
  absl::Status status;
  {
    // The session reads the records straight from wire_in as it decrypts them.
    AttachedWire wire(*session_, &wire_in, out);
    status = DrainPlaintext(app_in);
  }
  // After the peer's close_notify or a failure, the rest is discarded (as FeedCiphertext does).
  if (!session_->status().ok() || session_->peer_closed()) wire_in.Clear();
  const bool completed = UpdatePeer();
  if (completed && status.ok() && on_handshake_complete_) on_handshake_complete_();
  return status;
}

absl::Status TlsTransport::Send(net::Buffer& app_out, net::Buffer& out) {
  if (session_ == nullptr) return error_;
  RETURN_IF_ERROR(session_->status());
  // Queued in app_out until the handshake completes; the connection calls again after reads.
  if (!session_->handshake_complete()) return absl::OkStatus();
  FlushCiphertext(out);
  AttachedWire wire(*session_, nullptr, out);
  while (!app_out.empty()) {
    absl::StatusOr<size_t> taken = session_->WritePlaintext(app_out.FrontSlice());
    if (!taken.ok()) return taken.status();
    if (*taken == 0) break;  // cannot happen while records go straight to `out`; don't spin
    app_out.Drain(*taken);
  }
  return absl::OkStatus();
}

void TlsTransport::Shutdown(net::Buffer& out) {
  if (session_ == nullptr) return;
  FlushCiphertext(out);
  AttachedWire wire(*session_, nullptr, out);
  session_->Shutdown();
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
