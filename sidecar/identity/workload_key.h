#pragma once

// The workload's key pair and certificate request. The key is generated in memory at start and
// on every rotation and never written to disk; only the CSR (public key + a self-signature)
// leaves the process. The CSR names the SPIFFE id the sidecar wants as its only URI SAN; the CA
// decides the identity from attestation and ignores what the CSR says, so this is a courtesy
// that makes the request self-describing in logs and tools.

#include <string>

#include <openssl/base.h>
#include <openssl/evp.h>

#include "absl/status/statusor.h"
#include "common/tls/spiffe.h"

namespace meshlet::sidecar::identity {

// A fresh ECDSA P-256 key from BoringSSL's CSPRNG.
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> GenerateWorkloadKey();

// A PKCS#10 request (PEM "CERTIFICATE REQUEST") signed with `key` (ECDSA with SHA-256), with an
// empty subject and `id` as its only subjectAltName (URI).
absl::StatusOr<std::string> BuildCsrPem(EVP_PKEY& key, const tls::SpiffeId& id);

// PKCS#8 "PRIVATE KEY" PEM, for building the TLS context in memory.
absl::StatusOr<std::string> PrivateKeyPem(EVP_PKEY& key);

}  // namespace meshlet::sidecar::identity
