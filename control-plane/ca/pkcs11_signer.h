#pragma once

// A Signer (signer.h) whose key stays in a PKCS#11 token: the module is loaded with dlopen at
// start (no build or link dependency on any module), the token found by label, the user logged
// in with a PIN read from a file, the private key found by label; every signature is one C_Sign
// (CKM_ECDSA over a SHA-256 digest for EC keys, CKM_SHA256_RSA_PKCS for RSA keys). The key never
// leaves the token, so it can appear in no store, log, API answer or dump of the control plane.
//
// Sessions: one session, serialised by a mutex (signing is a control-plane path, not the
// proxy's request path). A C_Sign that fails with a session or token error closes the session,
// opens and logs in a new one and retries once; each re-open is counted.
//
// Threading: SignSha256() may be called on any thread; it blocks for the token's C_Sign.
// Lifetime: the module stays loaded (C_Finalize, then dlclose) until the signer is destroyed.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/stats/stats.h"
#include "control-plane/ca/signer.h"

namespace meshlet::controlplane::ca {

struct Pkcs11SignerOptions {
  std::string module_path;  // --ca-pkcs11-module: the module's shared object
  std::string token_label;  // --ca-pkcs11-token
  std::string key_label;    // --ca-pkcs11-key-label: CKA_LABEL of the private key
  std::string pin_file;     // --ca-pkcs11-pin-file: the user PIN, trailing newline ignored
  size_t max_pin_bytes = 256;
};

// Handles the signer records into; default handles discard.
struct Pkcs11SignerStats {
  Counter signatures;       // C_Sign that succeeded
  Counter sign_errors;      // signatures that failed even after a re-open
  Counter session_reopens;  // sessions re-opened after a token error
  Histogram sign_latency_us;
};

// Loads the module and checks token, PIN and key. Errors name what is wrong without the PIN:
// NotFound "PKCS#11 module <path> not found: ...", NotFound "no PKCS#11 token labelled <l>",
// PermissionDenied "wrong PIN for PKCS#11 token <l>", NotFound "no private key labelled <k> in
// token <l>", InvalidArgument for a key that is neither EC nor RSA or a PIN file that is
// unreadable, empty or too large.
absl::StatusOr<std::unique_ptr<Signer>> NewPkcs11Signer(const Pkcs11SignerOptions& options,
                                                        const Pkcs11SignerStats& stats = {});

}  // namespace meshlet::controlplane::ca
