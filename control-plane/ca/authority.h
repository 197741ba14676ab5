#pragma once

// The workload certificate authority: holds a signing certificate (a root generated on first
// start, or a root or intermediate the operator brings) and the trust bundle, and turns a
// workload's CSR into a short-lived X509-SVID for an identity that has already been attested.
//
// The CA trusts nothing in the CSR but its public key and its self-signature: subject and SANs
// are ignored, and the issued certificate carries exactly one URI SAN, the SPIFFE id the caller
// proved (attestation is the caller's job: control-plane/identity and certificate_service.h).
//
// Issued leaf: ECDSA P-256 subject key only; empty subject with a critical SAN extension (per the
// X509-SVID spec); keyUsage digitalSignature (critical; keyEncipherment is meaningless for EC
// keys); extendedKeyUsage serverAuth + clientAuth; basicConstraints CA:FALSE (critical); a random
// positive 128-bit serial; notBefore backdated by `backdate` to tolerate clock skew; lifetime the
// requested TTL capped by `max_ttl` and by the signing certificate's own expiry. Workload leaves
// (Sign) carry no other SAN, and meshlet's attestation extension when one is given (how the
// identity was attested: control-plane/identity/caller.h). The control plane's own serving
// certificate (Issue, called by serving_certificate.h) has the same profile plus DNS SANs, which
// X509-SVID allows next to the one URI SAN.
//
// Thread-safety: immutable after creation; Sign() may run on any thread. Rotating the signing
// certificate or the trust bundle means building a new CertificateAuthority and swapping it.

#include <memory>
#include <string>
#include <vector>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"
#include "control-plane/ca/signer.h"
#include "control-plane/store/store.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::ca {

struct AuthorityOptions {
  std::string trust_domain = "cluster.local";
  // Used when a request asks for no particular lifetime (ttl <= 0).
  absl::Duration default_ttl = absl::Hours(24);
  // Longer requests are shortened to this.
  absl::Duration max_ttl = absl::Hours(24);
  // notBefore = now - backdate, so a workload whose clock is a little behind accepts the
  // certificate at once. Not counted in the lifetime.
  absl::Duration backdate = absl::Minutes(5);
  // Lifetime of a root generated on first start.
  absl::Duration generated_root_lifetime = absl::Hours(24 * 365 * 10);
  // Largest CSR accepted, PEM or DER.
  size_t max_csr_bytes = 16 * 1024;
};

// Checks the options: a valid trust domain, 0 < default_ttl <= max_ttl, backdate >= 0.
absl::Status ValidateAuthorityOptions(const AuthorityOptions& options);

// What Sign() returns; all PEM.
struct IssuedCertificate {
  std::string certificate_pem;   // the leaf alone
  std::string chain_pem;         // the leaf followed by intermediates up to (not incl.) the root
  std::string trust_bundle_pem;  // every root a peer should trust now (one or two)
  std::string serial_hex;
  std::string spiffe_id;
  absl::Time not_before;
  absl::Time not_after;
};

// Roots a workload trusts. Holds more than one during a root rotation: the old root keeps
// verifying certificates it issued while the new one already verifies the new ones.
class TrustBundle {
 public:
  // Every certificate must be a CA certificate; duplicates (same DER) are kept once.
  static absl::StatusOr<TrustBundle> FromPem(absl::string_view pem);
  TrustBundle() = default;

  // Adds `cert` unless already present. Fails unless it is a CA certificate.
  absl::Status Add(const X509& cert);
  bool Contains(const X509& cert) const;
  size_t size() const { return roots_.size(); }
  const tls::CertificateChain& roots() const { return roots_; }
  std::string ToPem() const;

 private:
  tls::CertificateChain roots_;
};

// The checks Sign() makes, for signers outside the control plane (kubernetes_csr_signer.h): a
// PKCS#10 request (PEM or DER, at most `max_bytes`) parsed; its public key, after checking that it
// signed the request and is ECDSA P-256; `chain[0]` verified at `now` up to a root of `bundle`
// through the rest of `chain` (the path found, the root last). InvalidArgument saying what is
// wrong (`what` names chain[0]).
absl::StatusOr<bssl::UniquePtr<X509_REQ>> ParseCertificateRequest(absl::string_view csr,
                                                                  size_t max_bytes);
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> VerifiedRequestKey(X509_REQ* req);
absl::StatusOr<tls::CertificateChain> VerifyUpToBundle(const tls::CertificateChain& chain,
                                                       const TrustBundle& bundle, absl::Time now,
                                                       absl::string_view what);

class CertificateAuthority {
 public:
  // File names inside the directory given to LoadOrGenerateRoot.
  static constexpr char kRootCertFile[] = "root-cert.pem";
  static constexpr char kRootKeyFile[] = "root-key.pem";

  // Loads the root from `dir` (root-cert.pem, root-key.pem), or generates one there when neither
  // exists: ECDSA P-256, self-signed, CA:TRUE, pathlen 1, valid generated_root_lifetime. The key
  // file is written with mode 0600 and the directory is created with mode 0700. Exactly one of
  // the two files present is an error (never overwrite half of a CA). `extra_roots_file`
  // (optional) adds roots to the trust bundle, as in FromFiles: the other root of a rotation.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrGenerateRoot(
      const std::string& dir, const AuthorityOptions& options,
      const Clock& clock = RealClock::Get(), const std::string& extra_roots_file = "");

  // The same for several control-plane replicas sharing `store` (etcd): the root is generated
  // once, by the first replica to start, and kept in the store as the shared value "ca-root",
  // encrypted with `keys` (control-plane/store/shared_value.h); every replica signs with it.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrGenerateSharedRoot(
      Store& store, const StoreKeys& keys, const AuthorityOptions& options,
      const Clock& clock = RealClock::Get(), const std::string& extra_roots_file = "");

  // An operator's CA. `chain_pem`: the signing certificate first, then the intermediates above
  // it, optionally ending with the root. `key_pem`: the signing certificate's key.
  // `extra_roots_pem`: more roots for the trust bundle (the root of the chain when the chain does
  // not end in one, and the other root during a rotation); may be empty when the chain ends in a
  // self-signed root. Refused (InvalidArgument, the message naming the certificate and the
  // reason) unless: the signing certificate is a CA (CA:TRUE) with keyUsage keyCertSign; the key
  // matches it; every certificate of the chain is valid now (not before notBefore, not after
  // notAfter); the chain verifies up to a root of the resulting bundle; no pathlen above the
  // signing certificate forbids it to sign leaves; and a leaf it issues for the trust domain
  // verifies against the bundle (name constraints of the chain that exclude the trust domain).
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> FromPem(
      absl::string_view chain_pem, absl::string_view key_pem, absl::string_view extra_roots_pem,
      const AuthorityOptions& options, const Clock& clock = RealClock::Get());
  // The same with a key held by `signer` (a PKCS#11 token: pkcs11_signer.h) instead of a PEM key;
  // InvalidArgument when a signature it makes does not verify under the signing certificate.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> FromPemWithSigner(
      absl::string_view chain_pem, std::unique_ptr<Signer> signer,
      absl::string_view extra_roots_pem, const AuthorityOptions& options,
      const Clock& clock = RealClock::Get());
  // The same from files; `extra_roots_file` may be "".
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> FromFiles(
      const std::string& chain_file, const std::string& key_file,
      const std::string& extra_roots_file, const AuthorityOptions& options,
      const Clock& clock = RealClock::Get());

  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // Issues a certificate for `identity` (which must be in this CA's trust domain) over the
  // public key of `csr` (PEM "CERTIFICATE REQUEST" or DER). `ttl` <= 0 means default_ttl.
  // InvalidArgument for a CSR that does not parse, whose signature does not verify, or whose key
  // is not ECDSA P-256; FailedPrecondition when the signing certificate has expired.
  // `attestation` (optional) becomes the leaf's attestation extension (tls::AttestationOf): how
  // the identity was proved, kept across renewals.
  absl::StatusOr<IssuedCertificate> Sign(absl::string_view csr, const tls::SpiffeId& identity,
                                         absl::Duration ttl,
                                         absl::string_view attestation = "") const;
  // The same leaf over a key the caller holds itself (no CSR to verify): the control plane's own
  // serving certificate. `dns_names` (host names, validated) become DNS SANs after the URI SAN.
  // InvalidArgument for a key that is not ECDSA P-256 or a name that is not a host name;
  // PermissionDenied and FailedPrecondition as for Sign().
  absl::StatusOr<IssuedCertificate> Issue(const EVP_PKEY& public_key, const tls::SpiffeId& identity,
                                          absl::Duration ttl,
                                          const std::vector<std::string>& dns_names = {},
                                          absl::string_view attestation = "") const;

  const std::string& trust_bundle_pem() const { return trust_bundle_pem_; }
  const TrustBundle& trust_bundle() const { return trust_bundle_; }
  const X509& signing_certificate() const { return *signing_cert_; }
  const AuthorityOptions& options() const { return options_; }
  // SHA-256 hex of the signing certificate, and of the root of the bundle its chain verifies up
  // to (what a rotation records and the sidecars report).
  const std::string& signer_fingerprint() const { return signer_fingerprint_; }
  const std::string& root_fingerprint() const { return root_fingerprint_; }

  // The same signing material (key shared with `base`, which it keeps alive) with another trust
  // bundle: what a CA rotation serves while the bundle holds two roots. InvalidArgument when the
  // bundle does not parse or the signing chain does not verify up to one of its roots.
  static absl::StatusOr<std::shared_ptr<const CertificateAuthority>> WithTrustBundle(
      std::shared_ptr<const CertificateAuthority> base, absl::string_view trust_bundle_pem);

 private:
  CertificateAuthority(const AuthorityOptions& options, const Clock& clock)
      : options_(options), clock_(clock) {}

  // Issues a short-lived leaf for a probe identity of the trust domain and verifies it against
  // the trust bundle: catches what the signing certificate's own checks cannot (name
  // constraints of the chain that exclude the trust domain, for one).
  absl::Status CheckIssuedLeafVerifies() const;

  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> FromChainAndSigner(
      tls::CertificateChain chain, std::unique_ptr<Signer> signer,
      absl::string_view extra_roots_pem, const AuthorityOptions& options, const Clock& clock);
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Build(
      tls::CertificateChain chain, std::unique_ptr<Signer> signer, TrustBundle bundle,
      const AuthorityOptions& options, const Clock& clock);

  const AuthorityOptions options_;
  const Clock& clock_;
  bssl::UniquePtr<X509> signing_cert_;
  std::unique_ptr<Signer> signer_;
  // PEM of the intermediates between the signing certificate and the root, the signing
  // certificate itself included when it is not a root. Appended to every leaf.
  std::string intermediates_pem_;
  TrustBundle trust_bundle_;
  std::string trust_bundle_pem_;
  std::string signer_fingerprint_, root_fingerprint_;
  // WithTrustBundle's authorities sign through their base's Signer.
  std::shared_ptr<const CertificateAuthority> base_;
};

// "spiffe://<trust_domain>/ns/<ns>/sa/<sa>", validated.
absl::StatusOr<tls::SpiffeId> WorkloadSpiffeId(absl::string_view trust_domain,
                                               absl::string_view namespace_,
                                               absl::string_view service_account);

}  // namespace meshlet::controlplane::ca
