#pragma once

// TlsSession: one TLS connection as a socket-free, loop-free state machine over memory BIOs.
// The caller moves bytes; the session never does I/O, never blocks and never calls back.
//
//   ciphertext from the wire ──FeedCiphertext──▶ [session] ──ReadPlaintext──▶ application
//   application ──WritePlaintext──▶ [session] ──ReadCiphertext──▶ ciphertext for the wire
//
// Typical turn: feed what arrived, call ReadPlaintext until it returns 0 (this also advances the
// handshake), write any queued application data once handshake_complete(), then send everything
// ReadCiphertext yields. A client calls Handshake() once first to produce its ClientHello.
//
// Memory is bounded: incoming ciphertext waits in a queue of at most 32 KiB (FeedCiphertext takes
// less than offered when it is full: read plaintext, then offer the rest again), and
// WritePlaintext stops taking data while more than 64 KiB of ciphertext awaits the wire. Both
// queues free their memory whenever they are drained, and BoringSSL frees its record buffers when
// empty, so an idle session holds no buffers. Bytes are copied once into the input queue and once
// out of the output queue; nothing else is buffered.
//
// Errors are sticky: after the first failure every call returns it. Even then, drain
// ReadCiphertext: it may hold a TLS alert that tells the peer why.
//
// Ownership and threading: the session holds a shared_ptr to its TlsContext, so the context
// lives as long as any session made from it. A session belongs to one thread at a time and
// takes no locks.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/base.h>
#include <openssl/ssl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_context.h"

namespace meshlet::tls {

// Why a TLS handshake failed, in a few fixed classes for counters (the session's status says
// exactly what). The verification classes name what this side refused, and match the alert it
// sent the peer (RFC 8446 §6.2).
enum class HandshakeFailure {
  kNone,            // the handshake has not failed
  kNoCertificate,   // the peer presented no certificate where one is required (alert
                    // certificate_required; handshake_failure in TLS 1.2)
  kUntrusted,       // its chain did not verify: not issued by a trusted CA (unknown_ca), or
                    // malformed, badly signed, not for its role, a CA as a workload
                    // (bad_certificate)
  kExpired,         // a certificate of its chain is expired or not yet valid
                    // (certificate_expired)
  kIdentityDenied,  // the chain verified, but its SPIFFE id is not one the policy allows
                    // (access_denied)
  kPeerAlert,       // the peer aborted with an alert of its own: it refused us
  kProtocol,        // no TLS version, cipher suite or ALPN protocol in common; malformed or
                    // unexpected messages
  kOther,           // anything else (internal errors)
};
// Every failure class but kNone, e.g. to register one counter each.
inline constexpr HandshakeFailure kHandshakeFailures[] = {
    HandshakeFailure::kNoCertificate,  HandshakeFailure::kUntrusted, HandshakeFailure::kExpired,
    HandshakeFailure::kIdentityDenied, HandshakeFailure::kPeerAlert, HandshakeFailure::kProtocol,
    HandshakeFailure::kOther};
inline constexpr size_t kHandshakeFailureCount = static_cast<size_t>(HandshakeFailure::kOther) + 1;
// "no_certificate", "untrusted", "expired", "identity_denied", "peer_alert", "protocol",
// "other" ("none" for kNone): stable, for metric labels and logs.
absl::string_view HandshakeFailureName(HandshakeFailure failure);

namespace tls_internal {
// Where a session reads and writes ciphertext while one is attached (TlsSession::AttachWire).
class CiphertextWire {
 public:
  // Copies up to dst.size() received bytes into `dst` and consumes them; 0 when there are none.
  virtual size_t ReadWire(absl::Span<char> dst) = 0;
  // Takes bytes to send.
  virtual void WriteWire(absl::string_view bytes) = 0;

 protected:
  ~CiphertextWire() = default;
};

// A FIFO of bytes behind one of a session's BIOs. Consumes from the front without moving the
// rest, and releases its allocation whenever it becomes empty.
class ByteQueue {
 public:
  size_t size() const { return data_.size() - offset_; }
  bool empty() const { return size() == 0; }
  absl::string_view view() const { return absl::string_view(data_).substr(offset_); }
  void Append(const char* bytes, size_t n);
  // Copies up to dst.size() bytes out and consumes them.
  size_t Read(absl::Span<char> dst);
  void Consume(size_t n);

 private:
  std::string data_;
  size_t offset_ = 0;
};

// What one of a session's BIOs reads from or writes to: its queue and, when attached, the wire.
struct BioEnd {
  ByteQueue queue;
  CiphertextWire* wire = nullptr;
};
}  // namespace tls_internal

// A subjectAltName a server certificate must carry (TlsSession::Options::verify_subject_alt_names):
// a DNS name, matched as verify_peer_name is (a wildcard in the certificate covers one label), or
// a URI, matched exactly.
struct SubjectAltName {
  enum class Type { kDns, kUri };
  Type type = Type::kDns;
  std::string value;
  // "dns:abc.example.com", "uri:spiffe://x/y": for errors and keys.
  std::string ToString() const;
  bool operator==(const SubjectAltName&) const = default;
};
// "[dns:abc.example.com, uri:spiffe://x/y]".
std::string SubjectAltNamesText(const std::vector<SubjectAltName>& names);

class TlsSession {
 public:
  // Create() shares one instance for options that are all defaults: a field added here must be
  // added to its check too.
  struct Options {
    // Client: the SNI host name to send. Identity is checked by SPIFFE id, not by this name.
    std::string server_name;
    // Client: if set, the server certificate's subjectAltName must contain this IP address
    // (when it parses as one) or DNS name, on top of chaining to the trust bundle. For non-mesh
    // servers such as the Kubernetes API server; mesh peers are checked by SPIFFE id.
    std::string verify_peer_name;
    // Client: if not empty, the server certificate must carry at least one of these
    // subjectAltNames instead of verify_peer_name (which is then not checked), on top of chaining
    // to the trust bundle.
    std::vector<SubjectAltName> verify_subject_alt_names;
    // Overrides the context's peer_identity for this TLS session only, e.g. the identities allowed
    // for one upstream cluster while the client context is shared by all clusters.
    std::optional<SpiffeIdMatcher> peer_identity;
    // Client: offer these ALPN protocols instead of the context's, e.g. "http/1.1" for a
    // connection that will carry an Upgrade while the cluster speaks h2 otherwise.
    std::vector<std::string> alpn_protocols;
  };

  static constexpr size_t kCiphertextInputCapacity = 32 * 1024;
  static constexpr size_t kMaxPendingCiphertext = 64 * 1024;
  // One full TLS record of plaintext per WritePlaintext call.
  static constexpr size_t kMaxWriteChunk = 16 * 1024;

  static absl::StatusOr<std::unique_ptr<TlsSession>> Create(
      std::shared_ptr<const TlsContext> context, Options options = {});
  // The same with options shared by many sessions (a transport factory's, one per upstream
  // cluster): they are immutable, and each session only takes a reference, so starting one
  // copies none of their strings or identity patterns. Null: the defaults.
  static absl::StatusOr<std::unique_ptr<TlsSession>> Create(
      std::shared_ptr<const TlsContext> context, std::shared_ptr<const Options> options);

  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  ~TlsSession();

  // Client, before the first Handshake(): the address of the server at the other end, so a
  // ticket kept from an earlier connection to it is offered for resumption and the tickets it
  // sends are kept for the next one. Tickets are kept per address, server_name, verify_peer_name
  // and Options::peer_identity: a session is never offered to a connection with other
  // expectations. Does nothing unless the context keeps client sessions.
  void SetResumptionKey(std::string peer_key);

  // Advances the handshake as far as the received bytes allow. OK while still in progress;
  // check handshake_complete(). A client's first call queues the ClientHello.
  absl::Status Handshake();

  // Takes ciphertext received from the wire; returns how much was taken (all of it unless the
  // input ring is full). After the peer's close_notify or a failure, input is discarded (and
  // reported as taken).
  size_t FeedCiphertext(absl::string_view wire);

  // Advances the handshake, then decrypts into `dst`. Returns the number of plaintext bytes; 0
  // means nothing more until more ciphertext arrives (or the peer closed: peer_closed()).
  absl::StatusOr<size_t> ReadPlaintext(absl::Span<char> dst);

  // Encrypts a prefix of `plaintext` (at most kMaxWriteChunk) and returns its length. Returns 0,
  // taking nothing, until the handshake completes or while kMaxPendingCiphertext is exceeded.
  // Fails after Shutdown().
  absl::StatusOr<size_t> WritePlaintext(absl::string_view plaintext);

  // Attaches the owner's wire buffers (null detaches): while attached, the session reads
  // ciphertext from `wire` once what FeedCiphertext queued is used up (only as much as each
  // record needs, so unread bytes stay there), and writes what it sends straight to `wire`
  // instead of its own queue (what was queued goes first). This saves a copy and a buffer each
  // way; a transport attaches around each call it makes. Not owned; must outlive the attachment.
  using Wire = tls_internal::CiphertextWire;
  void AttachWire(Wire* wire);

  // Ciphertext (handshake messages, records, alerts) waiting to be sent.
  size_t PendingCiphertextSize() const { return output_.queue.size(); }
  // A view of it, valid until the next call on the session; ConsumeCiphertext(n) once n bytes
  // have been copied to the wire.
  absl::string_view PendingCiphertext() const { return output_.queue.view(); }
  void ConsumeCiphertext(size_t n) { output_.queue.Consume(n); }
  // Copies up to dst.size() bytes of it into `dst` and consumes them; returns how many.
  size_t ReadCiphertext(absl::Span<char> dst) { return output_.queue.Read(dst); }

  // Queues close_notify (once). Before the handshake completes, nothing is sent: the owner just
  // closes the connection. Reading continues to work until the peer's close_notify.
  void Shutdown();

  const absl::Status& status() const { return status_; }
  // Why the handshake failed; kNone while it has not (a failure after it completed is not a
  // handshake failure).
  HandshakeFailure handshake_failure() const { return handshake_failure_; }
  // The fatal alert this side sent (SSL_AD_*), or -1 if none.
  int alert_sent() const { return alert_sent_; }
  // When the handshake failed verifying the peer's certificate: the SPIFFE id that certificate
  // claims, verified or not (to say who was refused); "" otherwise or without one.
  const std::string& refused_spiffe_id() const { return refused_spiffe_id_; }
  bool handshake_complete() const { return handshake_complete_; }
  // The peer sent close_notify: no more plaintext will come.
  bool peer_closed() const { return peer_closed_; }
  bool shutdown_sent() const { return shutdown_sent_; }

  // Valid once handshake_complete().
  const std::string& alpn() const { return alpn_; }
  // Server: the SNI the client sent. Client: the SNI we sent.
  const std::string& server_name() const { return server_name_; }
  bool peer_certificate_presented() const { return peer_leaf_ != nullptr; }
  const std::vector<std::string>& peer_uri_sans() const { return peer_uri_sans_; }
  // The peer's SPIFFE id, or "" if its certificate has none.
  const std::string& peer_spiffe_id() const { return peer_spiffe_id_; }
  // The peer's leaf certificate, or null.
  const X509* peer_certificate() const { return peer_leaf_.get(); }
  bool session_resumed() const;
  // "TLSv1.3", "TLSv1.2".
  absl::string_view protocol_version() const;
  absl::string_view cipher_name() const;

  const std::shared_ptr<const TlsContext>& context() const { return context_; }
  // The options given to Create (shared with the factory that gave them).
  const Options& options() const { return *options_; }

 private:
  TlsSession(std::shared_ptr<const TlsContext> context, std::shared_ptr<const Options> options);
  absl::Status Init();

  friend class TlsContext;
  // BoringSSL's callback for a session a server sent (a TLS 1.3 ticket arrives after the
  // handshake); returns 1 when it took ownership.
  static int OnNewClientSession(SSL* ssl, SSL_SESSION* session);
  static enum ssl_verify_result_t VerifyCallback(SSL* ssl, uint8_t* out_alert);
  // BoringSSL's info callback; records the fatal alert we send.
  static void InfoCallback(const SSL* ssl, int type, int value);
  // Records a failed verification of the peer's certificate: its class (from the alert chosen)
  // and the identity the certificate claims.
  void OnVerifyFailed(uint8_t alert);
  // Checks the peer chain against the trust bundle and the peer identity policy.
  absl::Status VerifyPeer(uint8_t* out_alert);
  // The identity policy part of VerifyPeer, for a leaf whose chain verified.
  absl::Status CheckIdentityPolicy(X509& leaf, uint8_t* out_alert) const;
  absl::Status OnHandshakeComplete();
  const std::optional<SpiffeIdMatcher>& identity_policy() const;

  // Turns a failed SSL_* return into a specific status and records it.
  absl::Status FailFromSsl(int ret);
  // Records the first failure; `failure` classifies it when the handshake has not completed.
  absl::Status Fail(absl::Status status, HandshakeFailure failure = HandshakeFailure::kOther);

  std::shared_ptr<const TlsContext> context_;
  std::shared_ptr<const Options> options_;  // never null
  // Behind the SSL's read and write BIOs. Declared before ssl_ so they outlive it.
  tls_internal::BioEnd input_;
  tls_internal::BioEnd output_;
  bssl::UniquePtr<SSL> ssl_;

  absl::Status status_;
  // Set by VerifyCallback; more specific than what BoringSSL reports afterwards.
  absl::Status verify_error_;
  HandshakeFailure verify_failure_ = HandshakeFailure::kNone;
  HandshakeFailure handshake_failure_ = HandshakeFailure::kNone;
  int alert_sent_ = -1;
  std::string refused_spiffe_id_;
  bool peer_verified_ = false;
  bool handshake_complete_ = false;
  bool peer_closed_ = false;
  bool shutdown_sent_ = false;

  std::string alpn_;
  std::string resumption_key_;  // client: the server's address (SetResumptionKey)
  std::string server_name_;
  bssl::UniquePtr<X509> peer_leaf_;
  std::vector<std::string> peer_uri_sans_;
  std::string peer_spiffe_id_;
};

}  // namespace meshlet::tls
