#pragma once

// TlsContext: one immutable, validated TLS configuration (role, certificate chain and key, trust
// bundle, versions, ALPN, client-certificate policy, peer identity policy) compiled into a
// BoringSSL SSL_CTX. Sessions (tls_session.h) are created from it.
//
// Ownership and threading: contexts are created once and shared as
// std::shared_ptr<const TlsContext>; each TlsSession holds a reference, so a context outlives
// every session made from it even after a rotation replaced it (see TlsContextProvider). After
// creation nothing in a context changes, so any thread may create sessions from it concurrently.
//
// Hardened defaults: TLS 1.2 minimum; TLS 1.2 limited to ECDHE + AEAD suites; X25519 and P-256
// key exchange; SHA-256+ signatures only; no renegotiation (BoringSSL clients refuse it and
// servers never offer it), no compression (BoringSSL has none), no stateful session cache,
// session tickets off unless asked for.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/base.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"

namespace meshlet::tls {

enum class TlsVersion { kTls12, kTls13 };

// Server side: whether the client must present a certificate.
enum class ClientCertificateMode {
  kNone,     // do not ask (plain server-authenticated TLS)
  kRequest,  // ask; a presented certificate must verify, but none is accepted
  kRequire,  // ask and fail the handshake without one (mTLS)
};

struct TlsContextConfig {
  // PEM chain, leaf first, then intermediates. Required for servers; for clients it enables
  // client-certificate (mTLS) authentication.
  std::string certificate_chain_pem;
  // PEM private key for the leaf (ECDSA P-256/P-384 or RSA >= 2048).
  std::string private_key_pem;
  // One or more PEM CA certificates that may issue peer certificates. Several roots coexist
  // during CA rotation. Required for clients and for servers that ask for client certificates.
  std::string trust_bundle_pem;

  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;

  // Client: offered in this order. Server: the first of these (server preference) that the
  // client also offered is chosen.
  std::vector<std::string> alpn_protocols;
  // Server: with no protocol in common, fail the handshake (no_application_protocol alert)
  // instead of continuing without ALPN.
  bool require_alpn_match = false;

  ClientCertificateMode client_certificate = ClientCertificateMode::kNone;

  // If set, the peer must present a certificate whose single URI SAN is a SPIFFE id this matcher
  // accepts. Unset: any peer certificate that chains to the trust bundle is accepted.
  std::optional<SpiffeIdMatcher> peer_identity;

  // Server: issue TLS session tickets for resumption. Off by default: resumption skips
  // certificate verification, so it trades security review for latency.
  bool session_tickets = false;

  // TLS 1.2 cipher list in BoringSSL syntax; every entry must be known. Empty: hardened default.
  // (TLS 1.3 suites are not configurable in BoringSSL; all three are AEADs.)
  std::string cipher_list;
  // Key-exchange groups, e.g. "X25519:P-256". Empty: that default.
  std::string curves;

  // Time source for certificate validity checks; null means the real clock. Not owned; must
  // outlive the context.
  const Clock* clock = nullptr;
};

class TlsSession;

class TlsContext {
 public:
  enum class Role { kClient, kServer };

  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateClient(
      const TlsContextConfig& config);
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateServer(
      const TlsContextConfig& config);

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  Role role() const { return role_; }
  bool is_server() const { return role_ == Role::kServer; }
  ClientCertificateMode client_certificate() const { return client_certificate_; }
  const std::optional<SpiffeIdMatcher>& peer_identity() const { return peer_identity_; }
  const std::vector<std::string>& alpn_protocols() const { return alpn_protocols_; }

  // For the admin /certs page: our own chain and the trust bundle, as loaded.
  const std::vector<CertificateInfo>& certificate_chain_info() const { return chain_info_; }
  const std::vector<CertificateInfo>& trust_bundle_info() const { return bundle_info_; }

 private:
  friend class TlsSession;

  TlsContext() = default;
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Create(Role role,
                                                                  const TlsContextConfig& config);
  absl::Status Init(const TlsContextConfig& config);

  static int SelectAlpn(SSL* ssl, const uint8_t** out, uint8_t* out_len, const uint8_t* in,
                        unsigned in_len, void* arg);

  Role role_ = Role::kClient;
  bssl::UniquePtr<SSL_CTX> ssl_ctx_;
  // Verification is done by TlsSession against this store (not the SSL_CTX's) so that the error
  // reported can say exactly what was wrong.
  bssl::UniquePtr<X509_STORE> trust_store_;
  ClientCertificateMode client_certificate_ = ClientCertificateMode::kNone;
  std::optional<SpiffeIdMatcher> peer_identity_;
  std::vector<std::string> alpn_protocols_;
  bool require_alpn_match_ = false;
  const Clock* clock_ = nullptr;
  std::vector<CertificateInfo> chain_info_;
  std::vector<CertificateInfo> bundle_info_;
};

}  // namespace meshlet::tls
