#include "sidecar/server/downstream_tls.h"

#include <utility>

#include "absl/strings/match.h"
#include "common/base/logging.h"
#include "common/tls/tls_transport.h"
#include "sidecar/listener/protocol_detector.h"

namespace meshlet::sidecar {
namespace {

constexpr unsigned char kTlsHandshakeRecord = 0x16;

}  // namespace

std::string SpiffeIdOf(const net::PeerInfo& peer) {
  for (const std::string& san : peer.uri_sans) {
    if (absl::StartsWith(san, "spiffe://")) return san;
  }
  return "";
}

DownstreamTlsTransport::DownstreamTlsTransport(
    std::shared_ptr<const tls::TlsContextProvider> provider, bool strict, Counters counters)
    : provider_(std::move(provider)), strict_(strict), counters_(std::move(counters)) {}

DownstreamTlsTransport::~DownstreamTlsTransport() = default;

absl::Status DownstreamTlsTransport::Start(const net::Address&, net::Buffer&) {
  // A server says nothing until the client's first bytes tell TLS from plaintext.
  return absl::OkStatus();
}

absl::Status DownstreamTlsTransport::OnReceived(net::Buffer& wire_in, net::Buffer& app_in,
                                                net::Buffer& out) {
  if (state_ == State::kUndecided) {
    if (wire_in.empty()) return absl::OkStatus();
    bool is_tls = false;
    if (static_cast<unsigned char>(wire_in.FrontSlice()[0]) == kTlsHandshakeRecord) {
      const DetectedProtocol detected = DetectProtocol(wire_in);
      if (detected == DetectedProtocol::kNeedMoreBytes) {
        tls_record_started_ = true;
        return absl::OkStatus();  // keep them
      }
      is_tls = detected == DetectedProtocol::kTls;
    }
    if (is_tls) {
      state_ = State::kTls;
      tls_ = tls::TlsTransport::Factory(provider_)();
      if (absl::Status status = tls_->Start(net::Address(), out); !status.ok()) {
        counters_.handshake_error.Inc();
        return status;
      }
    } else if (strict_) {
      counters_.plaintext_refused.Inc();
      wire_in.Clear();
      return absl::PermissionDeniedError(
          "plaintext connection refused: the listener requires TLS (mode STRICT)");
    } else {
      state_ = State::kPlaintext;
    }
  }
  if (state_ == State::kPlaintext) {
    app_in.Move(wire_in);
    return absl::OkStatus();
  }
  absl::Status status = tls_->OnReceived(wire_in, app_in, out);
  if (!handshake_counted_) {
    if (!status.ok()) {
      handshake_counted_ = true;
      counters_.handshake_error.Inc();
      LOG_EVERY_N_SEC(DEBUG, 1) << "downstream TLS handshake failed: " << status;
    } else if (tls_->HandshakeComplete()) {
      handshake_counted_ = true;
      counters_.handshakes.Inc();
      if (tls_->peer().session_resumed) counters_.resumed.Inc();
      if (on_handshake_done_) on_handshake_done_();
    }
  }
  return status;
}

absl::Status DownstreamTlsTransport::Send(net::Buffer& app_out, net::Buffer& out) {
  switch (state_) {
    case State::kUndecided:
      return absl::OkStatus();  // kept in app_out until the client has spoken
    case State::kPlaintext:
      out.Move(app_out);
      return absl::OkStatus();
    case State::kTls:
      return tls_->Send(app_out, out);
  }
  return absl::OkStatus();
}

void DownstreamTlsTransport::Shutdown(net::Buffer& out) {
  if (state_ == State::kTls) tls_->Shutdown(out);
}

bool DownstreamTlsTransport::HandshakeComplete() const {
  switch (state_) {
    case State::kUndecided:
      return false;
    case State::kPlaintext:
      return true;
    case State::kTls:
      return tls_->HandshakeComplete();
  }
  return false;
}

bool DownstreamTlsTransport::handshake_in_progress() const {
  // Once decided, HandshakeComplete() is true for plaintext and the handshake's state for TLS.
  return state_ == State::kUndecided ? tls_record_started_ : !HandshakeComplete();
}

const net::PeerInfo& DownstreamTlsTransport::peer() const {
  return state_ == State::kTls ? tls_->peer() : no_peer_;
}

std::string DownstreamTlsTransport::peer_identity() const { return SpiffeIdOf(peer()); }

}  // namespace meshlet::sidecar
