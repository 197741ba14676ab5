#include "sidecar/listener/downstream_tls.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "sidecar/listener/protocol_detector.h"

namespace meshlet::sidecar::listener {
namespace {

constexpr unsigned char kTlsHandshakeRecord = 0x16;

}  // namespace

std::string SpiffeIdOf(const net::PeerInfo& peer) {
  for (const std::string& san : peer.uri_sans) {
    if (absl::StartsWith(san, "spiffe://")) return san;
  }
  return "";
}

TlsRefusalLog::TlsRefusalLog(const Clock& clock, Duration interval, size_t max_addresses)
    : clock_(clock), interval_(interval), max_addresses_(max_addresses) {}

bool TlsRefusalLog::ShouldLog(absl::string_view address) {
  const MonotonicTime now = clock_.Now();
  MutexLock lock(&mu_);
  if (auto it = logged_at_.find(address); it != logged_at_.end()) {
    if (now - it->second < interval_) return false;
    it->second = now;
    return true;
  }
  if (logged_at_.size() >= max_addresses_) {
    if (now - oldest_ < interval_) return false;  // nothing can have aged out yet
    MonotonicTime oldest = now;
    for (auto it = logged_at_.begin(); it != logged_at_.end();) {
      if (now - it->second >= interval_) {
        logged_at_.erase(it++);
      } else {
        oldest = std::min(oldest, it->second);
        ++it;
      }
    }
    oldest_ = oldest;
    if (logged_at_.size() >= max_addresses_) return false;
  }
  if (logged_at_.empty()) oldest_ = now;
  logged_at_.emplace(address, now);
  return true;
}

size_t TlsRefusalLog::size() const {
  MutexLock lock(&mu_);
  return logged_at_.size();
}

DownstreamTlsTransport::DownstreamTlsTransport(
    std::shared_ptr<const tls::TlsContextProvider> provider, bool strict, Counters counters,
    std::string listener, TlsRefusalLog* refusal_log)
    : provider_(std::move(provider)),
      strict_(strict),
      counters_(std::move(counters)),
      listener_(std::move(listener)),
      refusal_log_(refusal_log) {}

DownstreamTlsTransport::~DownstreamTlsTransport() = default;

absl::Status DownstreamTlsTransport::Start(const net::Address& peer, net::Buffer&) {
  // A server says nothing until the client's first bytes tell TLS from plaintext.
  peer_address_ = peer;
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
      tls_ = tls::TlsTransport::Make(provider_->Current());
      if (absl::Status status = tls_->Start(net::Address(), out); !status.ok()) {
        handshake_counted_ = true;
        OnHandshakeFailed(status);
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
      OnHandshakeFailed(status);
    } else if (tls_->HandshakeComplete()) {
      handshake_counted_ = true;
      counters_.handshakes.Inc();
      if (tls_->peer().session_resumed) counters_.resumed.Inc();
      if (on_handshake_complete_) on_handshake_complete_();
    }
  }
  return status;
}

void DownstreamTlsTransport::OnHandshakeFailed(const absl::Status& status) {
  const tls::TlsSession* session = tls_ != nullptr ? tls_->session() : nullptr;
  tls::HandshakeFailure failure =
      session != nullptr ? session->handshake_failure() : tls::HandshakeFailure::kOther;
  if (failure == tls::HandshakeFailure::kNone) failure = tls::HandshakeFailure::kOther;
  counters_.handshake_error.Inc();
  counters_.handshake_fail[static_cast<size_t>(failure)].Inc();
  if (refusal_log_ == nullptr ||
      !refusal_log_->ShouldLog(peer_address_.is_ip() ? peer_address_.ip()
                                                     : peer_address_.ToString())) {
    return;
  }
  std::string details;
  if (session != nullptr && !session->refused_spiffe_id().empty()) {
    absl::StrAppend(&details, ", peer ", session->refused_spiffe_id());
  }
  if (session != nullptr && session->alert_sent() >= 0) {
    absl::StrAppend(&details, ", sent alert \"", SSL_alert_desc_string_long(session->alert_sent()),
                    "\"");
  }
  LOG(INFO) << "listener " << listener_ << ": TLS handshake from " << peer_address_.ToString()
            << " failed: " << tls::HandshakeFailureName(failure) << details << ": "
            << status.message();
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

bool DownstreamTlsTransport::HandshakeInProgress() const {
  // Once decided, HandshakeComplete() is true for plaintext and the handshake's state for TLS.
  return state_ == State::kUndecided ? tls_record_started_ : !HandshakeComplete();
}

const net::PeerInfo& DownstreamTlsTransport::peer() const {
  return state_ == State::kTls ? tls_->peer() : no_peer_;
}

}  // namespace meshlet::sidecar::listener
