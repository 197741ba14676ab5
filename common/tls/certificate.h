#pragma once

// X.509 certificate and private-key helpers over BoringSSL: load PEM chains and keys from memory
// or files, read SANs and the SPIFFE id, and summarise a certificate for the admin /certs page.
//
// Ownership is explicit through bssl::UniquePtr. Every function is stateless and thread-safe;
// malformed input yields an error status, never a crash.

#include <string>
#include <vector>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls/spiffe.h"

namespace meshlet::tls {

using CertificateChain = std::vector<bssl::UniquePtr<X509>>;

enum class KeyAlgorithm { kEcdsa, kRsa, kOther };

absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm);

// Parses every CERTIFICATE block in `pem` (leaf first for a chain, any order for a trust bundle).
// Fails if there is none, or if any block is malformed.
absl::StatusOr<CertificateChain> ParsePemCertificates(absl::string_view pem);

// Parses one private key: PKCS#8 ("PRIVATE KEY"), SEC1 ("EC PRIVATE KEY") or PKCS#1
// ("RSA PRIVATE KEY"). Encrypted keys are rejected. Only ECDSA (P-256, P-384) and RSA
// (2048 bits or more) keys are accepted.
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> ParsePemPrivateKey(absl::string_view pem);

// Reads a whole file (bounded to 1 MiB: certificates and keys are small) and parses it.
absl::StatusOr<CertificateChain> LoadPemCertificatesFile(const std::string& path);
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> LoadPemPrivateKeyFile(const std::string& path);
// ReadFile (common/base/file.h) with the same 1 MiB bound: tokens, bundles, keys.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

// A fresh ECDSA P-256 key (workload keys, CA roots, test certificates).
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> GenerateEcdsaP256Key();

// PEM encodings: "CERTIFICATE" and unencrypted PKCS#8 "PRIVATE KEY".
absl::StatusOr<std::string> CertificateToPem(const X509& cert);
absl::StatusOr<std::string> PrivateKeyToPem(const EVP_PKEY& key);

// Fails unless `key` is the private half of `cert`'s public key.
absl::Status CheckKeyMatchesCertificate(const X509& cert, const EVP_PKEY& key);

// Subject alternative names of the given kind, in certificate order.
std::vector<std::string> UriSans(const X509& cert);
std::vector<std::string> DnsSans(const X509& cert);

// The certificate's SPIFFE id. Per the X509-SVID spec the certificate must carry exactly one URI
// SAN and it must be a valid SPIFFE id; anything else is an error that says what was found.
absl::StatusOr<SpiffeId> ExtractSpiffeId(const X509& cert);
// Same rule applied to an already extracted SAN list.
absl::StatusOr<SpiffeId> SpiffeIdFromUriSans(const std::vector<std::string>& uri_sans);

absl::Time NotBefore(const X509& cert);
absl::Time NotAfter(const X509& cert);

// meshlet's own certificate extension (non-critical, a DER UTF8String): how the identity of a
// workload certificate was attested, so that a renewal, which only presents the certificate, can
// still be traced back to the credential that bought the first one ("join-token:<id>",
// "kubernetes:<namespace>/<pod>/<uid>"; control-plane/identity/attestation.h). The OID is in the
// UUID arc (2.25, ITU-T X.667), which needs no registration.
inline constexpr char kAttestationExtensionOid[] = "2.25.91612782728688830080571624761154758079";
// Longest attestation a certificate may carry.
inline constexpr size_t kMaxAttestationBytes = 512;
// The extension's value; "" when the certificate has none, or one that is not a UTF8String of at
// most kMaxAttestationBytes.
std::string AttestationOf(const X509& cert);
// Adds the extension with `value` (at most kMaxAttestationBytes) to a certificate being built.
absl::Status AddAttestation(X509& cert, absl::string_view value);
// Lower-case hex without separators ("0a1b..."); "" if the serial cannot be read.
std::string SerialNumberHex(const X509& cert);
// RFC 2253-style distinguished name ("CN=frontend,O=meshlet").
std::string SubjectName(const X509& cert);
std::string IssuerName(const X509& cert);
bool IsCa(const X509& cert);

// The SHA-256 of the certificate's DER encoding, as "sha256:" and 64 lower-case hex digits: the
// fingerprint `openssl x509 -noout -fingerprint -sha256` prints (there upper-case, with colons).
// "" if the certificate cannot be encoded.
std::string Sha256Fingerprint(const X509& cert);
// A fingerprint as an operator may write it: "sha256:" followed by 64 hex digits, with or without
// colons between the bytes, in either case, or what openssl prints ("SHA256 Fingerprint=AB:CD:..."
// or the bare hex). Returns the Sha256Fingerprint form; InvalidArgument says what is wrong.
absl::StatusOr<std::string> ParseSha256Fingerprint(absl::string_view text);
// The Sha256Fingerprint of the certificate among `candidates` that issued `leaf` (its subject is
// the leaf's issuer and its key verifies the leaf's signature); "" when none did.
std::string IssuerFingerprint(const X509& leaf, const CertificateChain& candidates);

// A plain summary for display (admin /certs) and logs.
struct CertificateInfo {
  std::string subject;
  std::string issuer;
  std::string serial_hex;
  absl::Time not_before;
  absl::Time not_after;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::string spiffe_id;  // "" when the certificate has no valid SPIFFE id
  bool is_ca = false;
  KeyAlgorithm key_algorithm = KeyAlgorithm::kOther;
  int key_bits = 0;
};
CertificateInfo DescribeCertificate(const X509& cert);

// Drains BoringSSL's thread-local error queue into one readable string ("" if empty). Call it
// right after a failing BoringSSL call so the message belongs to that call.
std::string DrainBoringSslErrors();

}  // namespace meshlet::tls
