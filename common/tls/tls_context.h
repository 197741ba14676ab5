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
// servers never offer it), no compression (BoringSSL has none), no stateful server session cache,
// session tickets and client resumption off unless asked for.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/base.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
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

  // SPIFFE federation (ADR 0101). With `local_trust_domain` set, the trust domain of the peer
  // leaf's SPIFFE id chooses the roots it must chain to: the local domain and its
  // `trust_domain_aliases` verify against trust_bundle_pem only, a domain of
  // `federated_bundles_pem` (domain -> PEM roots) against its own roots only, and any other
  // domain, or a leaf without a SPIFFE id, is refused. So a foreign root never validates a
  // certificate claiming the local domain. Unset: every peer verifies against trust_bundle_pem,
  // and the other two must be empty.
  std::string local_trust_domain;
  std::vector<std::string> trust_domain_aliases;
  std::map<std::string, std::string> federated_bundles_pem;

  // Server: issue TLS session tickets so clients can resume (a TLS 1.3 resumption still runs an
  // X25519 exchange, so it keeps forward secrecy, but needs no signature). A resumed session's
  // remembered peer chain and identity are checked again like a new one's (TlsSession), so
  // resumption never admits a peer the current trust bundle, clock or policy would refuse.
  // Ticket keys belong to this context: a rotation (a new context) ends every earlier ticket.
  bool session_tickets = false;
  // Client: keep the tickets servers send, per server address, and offer one when connecting to
  // the same address again (a TLS 1.3 ticket is used once). At most this many addresses; 0 turns
  // client resumption off.
  size_t client_session_cache_size = 0;
  // How long after its full handshake a session may be resumed (tickets a server issues, and
  // sessions a client keeps).
  absl::Duration session_lifetime = absl::Hours(1);
  // Peer chains that verified against the trust bundle, remembered by their exact bytes, so a
  // later handshake presenting the same chain skips the signature checks (its validity dates are
  // still checked against the clock, and the identity policy always runs). At most this many
  // chains; 0 turns it off. Not used for sessions that check a host name (verify_peer_name).
  size_t verified_chain_cache_size = 1024;

  // TLS 1.2 cipher list in BoringSSL syntax; every entry must be known. Empty: hardened default.
  // (TLS 1.3 suites are not configurable in BoringSSL; all three are AEADs.)
  std::string cipher_list;
  // Key-exchange groups, e.g. "X25519:P-256". Empty: that default.
  std::string curves;

  // Time source for certificate validity checks; null means the real clock. Not owned; must
  // outlive the context.
  const Clock* clock = nullptr;

  // Server: more certificates, chosen by the name the client sends (SNI) before the handshake
  // goes on: an exact name first (ASCII case ignored), then the longest "*.suffix" the name ends
  // with (one or more labels under it); no name, or one none of them takes, gets
  // certificate_chain_pem. Each chain and key is checked as that one is; a name listed twice is
  // an error.
  struct SniCertificate {
    std::vector<std::string> server_names;  // "shop.example.com", "*.example.com"
    std::string certificate_chain_pem;
    std::string private_key_pem;
  };
  std::vector<SniCertificate> sni_certificates;
};

class TlsSession;

// The ALPN list in its wire form (each name behind its length); an error names a name outside
// 1..255 bytes.
absl::StatusOr<std::string> AlpnWireFormat(const std::vector<std::string>& protocols);

class TlsContext {
 public:
  enum class Role { kClient, kServer };

  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateClient(
      const TlsContextConfig& config);
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateServer(
      const TlsContextConfig& config);

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ~TlsContext();

  Role role() const { return role_; }
  bool is_server() const { return role_ == Role::kServer; }
  // Client: whether sessions are kept for resumption (client_session_cache_size > 0).
  bool KeepsClientSessions() const;
  ClientCertificateMode client_certificate() const { return client_certificate_; }
  const std::optional<SpiffeIdMatcher>& peer_identity() const { return peer_identity_; }
  const std::vector<std::string>& alpn_protocols() const { return alpn_protocols_; }

  // Handshakes that found their peer's chain already verified (verified_chain_cache_size).
  uint64_t verified_chain_cache_hits() const;
  // Client: addresses with at least one session kept for resumption.
  size_t resumable_peers() const;

  // The certificate chain a handshake naming `server_name` (SNI; empty: none) is served:
  // sni_certificates' index, or -1 for the default chain.
  int SniIndexFor(absl::string_view server_name) const;

  // For the admin /certs page: our own chain and the trust bundle, as loaded.
  const std::vector<CertificateInfo>& certificate_chain_info() const { return chain_info_; }
  const std::vector<CertificateInfo>& trust_bundle_info() const { return bundle_info_; }
  // Federated trust domains with the roots loaded for each (empty without federation).
  const std::map<std::string, std::vector<CertificateInfo>, std::less<>>& federated_bundle_info()
      const {
    return federated_info_;
  }

 private:
  friend class TlsSession;

  TlsContext();
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Create(Role role,
                                                                  const TlsContextConfig& config);
  absl::Status Init(const TlsContextConfig& config);

  static int SelectAlpn(SSL* ssl, const uint8_t** out, uint8_t* out_len, const uint8_t* in,
                        unsigned in_len, void* arg);
  // SSL_CTX_set_cert_cb: the SNI certificate of the client's name, if one applies.
  static int SelectCertificate(SSL* ssl, void* arg);
  absl::Status InitSniCertificates(const TlsContextConfig& config);

  // sni_certificates as loaded; names by exact (lower-case) name and by wildcard suffix (".x",
  // longest first), to the index.
  struct SniEntry {
    bssl::UniquePtr<X509> leaf;
    bssl::UniquePtr<STACK_OF(X509)> chain;  // intermediates
    bssl::UniquePtr<EVP_PKEY> key;
  };
  std::vector<SniEntry> sni_entries_;
  std::map<std::string, int, std::less<>> sni_exact_;
  std::vector<std::pair<std::string, int>> sni_wildcards_;

  Role role_ = Role::kClient;
  bssl::UniquePtr<SSL_CTX> ssl_ctx_;
  // Verification is done by TlsSession against this store (not the SSL_CTX's) so that the error
  // reported can say exactly what was wrong.
  bssl::UniquePtr<X509_STORE> trust_store_;
  // Federation: the local domain and its aliases (verified by trust_store_), and one store per
  // federated domain. An empty local domain means no per-domain selection.
  std::string local_trust_domain_;
  std::vector<std::string> trust_domain_aliases_;
  std::map<std::string, bssl::UniquePtr<X509_STORE>, std::less<>> federated_stores_;
  std::map<std::string, std::vector<CertificateInfo>, std::less<>> federated_info_;
  // The store a peer whose leaf is `leaf` must chain to, or an error saying why there is none.
  absl::StatusOr<X509_STORE*> TrustStoreFor(const X509& leaf) const;
  ClientCertificateMode client_certificate_ = ClientCertificateMode::kNone;
  std::optional<SpiffeIdMatcher> peer_identity_;
  std::vector<std::string> alpn_protocols_;
  bool require_alpn_match_ = false;
  const Clock* clock_ = nullptr;
  std::vector<CertificateInfo> chain_info_;
  std::vector<CertificateInfo> bundle_info_;

  // Remembered chain verifications and client sessions: the only state that changes after
  // creation, behind its own lock, taken a few times per handshake and never per record.
  class HandshakeCache;
  std::unique_ptr<HandshakeCache> cache_;
  // For TlsSession: whether `chain_key` verified before and `now` is inside the validity of
  // every certificate of the verified path; and remembering one that just verified.
  bool RemembersVerifiedChains() const;
  bool ChainVerifiedBefore(const std::string& chain_key, absl::Time now) const;
  void RememberVerifiedChain(std::string chain_key, absl::Time not_before,
                             absl::Time not_after) const;
  // Client: a session to offer to `peer_key`, or null; and keeping one a server sent.
  bssl::UniquePtr<SSL_SESSION> TakeSession(const std::string& peer_key) const;
  void KeepSession(const std::string& peer_key, bssl::UniquePtr<SSL_SESSION> session) const;
};

}  // namespace meshlet::tls
