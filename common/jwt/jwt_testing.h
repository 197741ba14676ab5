#pragma once

// Test-time JWT material for the verifier's tests and benchmark: RSA (2048 and 1024 bits),
// P-256, P-384 and Ed25519 keys generated when asked (nothing secret is committed), their JWKS,
// and tokens signed with them. Not thread-safe; for tests only.

#include <string>

#include "absl/strings/string_view.h"
#include "openssl/bn.h"
#include "openssl/ec_key.h"
#include "openssl/rsa.h"

namespace meshlet::jwt::jwt_testing {

struct Keys {
  bssl::UniquePtr<RSA> rsa, other_rsa, small_rsa;
  bssl::UniquePtr<EC_KEY> p256, p384;
  uint8_t ed_public[32], ed_private[64];
};

// Fresh keys of every kind.
Keys* NewKeys();

std::string B64(absl::string_view bytes);
// A BIGNUM big-endian, left-padded to `len` bytes (0: its own length).
std::string BnBytes(const BIGNUM* bn, size_t len = 0);
std::string RsaJwk(const RSA* rsa, absl::string_view kid, absl::string_view extra = "");
// The JWKS of keys' rsa ("rsa"), p256 ("p256"), p384 ("p384") and Ed25519 ("ed") keys.
std::string Jwks(const Keys& keys);
// The signature of `input` with `alg` by the key `kid` names ("other": other_rsa; HS256: HMAC
// keyed with the RSA modulus, the key-confusion forgery; anything else: empty, alg none).
std::string Signature(const Keys& keys, absl::string_view alg, absl::string_view kid,
                      absl::string_view input);
// header.payload.signature with header {"alg":alg,"kid":kid<header_extra>}.
std::string Sign(const Keys& keys, absl::string_view alg, absl::string_view kid,
                 absl::string_view payload, absl::string_view header_extra = "");

}  // namespace meshlet::jwt::jwt_testing
