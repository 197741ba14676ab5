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
// common ALPN...) is an error too: the client gets the TLS alert that says why (the connection
// writes it before closing), and the failure is counted as tls_handshake_error and by its class
// (tls::HandshakeFailure), and logged at INFO through the TlsRefusalLog (at most once a minute
// per client address). The owner of the connection reads what was decided through peer() (with
// `tls` set once a TLS handshake completed) once application bytes arrive, or when the
// handshake-complete callback runs; HandshakeInProgress() is true from the first byte of a
// ClientHello until the handshake completes.
//
// Ownership and threading: owned by one net::Connection, used on its worker's loop thread only.
// The counters are handles of that worker's stats shard; the refusal log is shared by all workers
// and outlives them.

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/sync.h"
#include "common/net/address.h"
#include "common/net/buffer.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_session.h"
#include "common/tls/tls_transport.h"

namespace meshlet::sidecar::listener {

// Which failed downstream TLS handshakes get a log line: at most one per client address (its IP,
// whatever the port) per interval, so a client retrying with a bad certificate does not flood the
// log; every failure is counted all the same. Memory is bounded: at most `max_addresses`
// addresses are remembered, and while that many were logged within the interval, failures from
// further addresses are not logged until the oldest entries age out.
//
// Threading: one per process (the Server owns it), shared by the workers. ShouldLog takes a
// mutex, once per failed handshake and never for a connection that is served.
class TlsRefusalLog {
 public:
  static constexpr Duration kDefaultInterval = std::chrono::minutes(1);
  static constexpr size_t kDefaultMaxAddresses = 1024;

  // `clock` must outlive the log.
  explicit TlsRefusalLog(const Clock& clock, Duration interval = kDefaultInterval,
                         size_t max_addresses = kDefaultMaxAddresses);

  // Whether to log a failure of a client at `address` now; if so, failures from it are not
  // logged again for the interval.
  bool ShouldLog(absl::string_view address);
  // Addresses remembered now (at most max_addresses).
  size_t size() const;
  Duration interval() const { return interval_; }

 private:
  const Clock& clock_;
  const Duration interval_;
  const size_t max_addresses_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, MonotonicTime> logged_at_ ABSL_GUARDED_BY(mu_);
  // At most the earliest time in logged_at_: while the table is full and this is less than an
  // interval ago, no entry can have aged out and nothing is swept.
  MonotonicTime oldest_ ABSL_GUARDED_BY(mu_);
};

class DownstreamTlsTransport final : public net::Transport {
 public:
  struct Counters {
    Counter plaintext_refused;  // meshlet_downstream_cx_rejected_total{reason="plaintext_refused"}
    Counter handshake_error;  // meshlet_downstream_cx_rejected_total{reason="tls_handshake_error"}
    // meshlet_downstream_tls_handshake_fail_total{reason}, indexed by tls::HandshakeFailure
    // (kNone unused); each also counts in handshake_error.
    std::array<Counter, tls::kHandshakeFailureCount> handshake_fail;
    Counter handshakes;  // meshlet_downstream_tls_handshakes_total
    Counter resumed;     // meshlet_downstream_tls_resumed_total (part of handshakes)
  };

  // `provider` must not be null. `listener` names the listener in log lines; `refusal_log`
  // (null: failed handshakes are not logged) must outlive the transport.
  DownstreamTlsTransport(std::shared_ptr<const tls::TlsContextProvider> provider, bool strict,
                         Counters counters, std::string listener = "",
                         TlsRefusalLog* refusal_log = nullptr);
  ~DownstreamTlsTransport() override;

  absl::Status Start(const net::Address& peer, net::Buffer& out) override;
  absl::Status OnReceived(net::Buffer& wire_in, net::Buffer& app_in, net::Buffer& out) override;
  absl::Status Send(net::Buffer& app_out, net::Buffer& out) override;
  void Shutdown(net::Buffer& out) override;
  // True for plaintext once the first bytes showed it is not TLS.
  bool HandshakeComplete() const override;
  // The client has begun a TLS handshake (its first record arrived, maybe in part) that has not
  // finished yet.
  bool HandshakeInProgress() const override;
  // Runs after the handshake is counted (net::Transport's contract; never for plaintext).
  void SetHandshakeCompleteCallback(absl::AnyInvocable<void()> callback) override {
    on_handshake_complete_ = std::move(callback);
  }
  const net::PeerInfo& peer() const override;

 private:
  enum class State { kUndecided, kTls, kPlaintext };

  // Counts and (rate-limited) logs a handshake that failed with `status`.
  void OnHandshakeFailed(const absl::Status& status);

  const std::shared_ptr<const tls::TlsContextProvider> provider_;
  const bool strict_;
  Counters counters_;
  const std::string listener_;
  TlsRefusalLog* const refusal_log_;
  net::Address peer_address_;
  State state_ = State::kUndecided;
  std::unique_ptr<tls::TlsTransport> tls_;
  bool handshake_counted_ = false;
  bool tls_record_started_ = false;  // undecided, holding the start of a TLS handshake record
  absl::AnyInvocable<void()> on_handshake_complete_;
  net::PeerInfo no_peer_;
};

// Returns the SPIFFE id (the first "spiffe://" URI SAN) of `peer`, or "".
std::string SpiffeIdOf(const net::PeerInfo& peer);

}  // namespace meshlet::sidecar::listener
