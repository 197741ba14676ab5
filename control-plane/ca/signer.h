#pragma once

// The CA's signing key behind a small interface, so the key can live outside the control plane
// (a PKCS#11 token: pkcs11_signer.h) while CertificateAuthority builds every certificate the same
// way. A Signer signs the SHA-256 digest of a byte string; SignCertificate() turns that into a
// signed X.509 certificate (algorithm identifier, TBS encoding, signature value).
//
// Ownership: CertificateAuthority owns its Signer. Threading: SignSha256() may be called on any
// thread, concurrently; an implementation serialises internally if its backend needs it (the
// PKCS#11 signer holds one session). Calls block until the signature is made.

#include <cstdint>
#include <memory>
#include <string>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::ca {

enum class SignerKeyType { kEcdsaP256, kRsa };

class Signer {
 public:
  virtual ~Signer() = default;
  virtual SignerKeyType key_type() const = 0;
  // A DER signature over SHA-256(data): an ECDSA-Sig-Value for ECDSA, PKCS#1 v1.5 for RSA.
  virtual absl::StatusOr<std::string> SignSha256(absl::string_view data) const = 0;
  // Where the key lives, for logs: never key material. "in-memory key", "PKCS#11 token ...".
  virtual std::string Describe() const = 0;
};

// A key held in memory (a generated root, --ca-key, a Secret's tls.key).
std::unique_ptr<Signer> NewInMemorySigner(bssl::UniquePtr<EVP_PKEY> key);

// Sets `cert`'s signature algorithm (ecdsa-with-SHA256 or sha256WithRSAEncryption as the key
// type says), encodes its TBSCertificate and stores the signer's signature over it.
absl::Status SignCertificate(const Signer& signer, X509& cert);

// InvalidArgument unless a signature the signer makes verifies under `cert`'s public key: the
// start-up check that a token's key is the key of the CA certificate.
absl::Status CheckSignerMatchesCertificate(const Signer& signer, const X509& cert);

}  // namespace meshlet::controlplane::ca
