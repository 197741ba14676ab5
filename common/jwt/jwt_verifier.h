#pragma once

// JWT verification (RFC 7519, JWS compact serialization RFC 7515) for RequestAuthentication:
// the keys of each trusted issuer come as a JWKS (RFC 7517) the control plane sends inline.
//
// Accepted: RS256/RS384/RS512 with RSA keys (2048..8192 bits), ES256 with P-256 and ES384 with
// P-384 keys, EdDSA with Ed25519 (OKP) keys. Refused, whatever the key set holds: "none", HS*
// (a JWKS public key is never used as an HMAC secret), any other alg, and any alg that does not
// match the key's type, curve or declared "alg" (no key confusion). A token with a "kid" is
// checked with the keys of that kid only; without one, with every key of a matching type. A
// "crit" header is refused (no extension is understood).
//
// Claims: "iss" must name a configured issuer; "aud" (string or array) must hold one of the
// issuer's audiences when it lists any; "exp", "nbf" and "iat", when present, must be numbers and
// are checked with the configured clock skew (exp + skew >= now; nbf - skew <= now; iat - skew <=
// now). A token longer than max_token_bytes is refused before anything is decoded.
//
// Threading: a JwtVerifier is built once per configuration (Create, which may allocate and parses
// the JWKS) and shared read-only by every worker; Verify() takes no lock. Verify() decodes into
// the caller's Scratch (one per worker, reused: no allocation once its buffers have grown), and
// the views of its result point into that Scratch until its next use. BoringSSL's RSA and ECDSA
// verification allocate internally; nothing else does.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "openssl/base.h"

namespace meshlet::jwt {

// Why a token was refused; each has a stats label (JwtFailureName) and is what x-meshlet-error
// names (never the token).
enum class JwtFailure : uint8_t {
  kNone = 0,
  kTooLarge,          // longer than max_token_bytes
  kMalformed,         // not three base64url parts of a JSON object header/payload and signature
  kUnsupportedAlg,    // none, HS*, unknown, or "crit"
  kUnknownIssuer,     // iss absent or not configured
  kUnknownKid,        // the kid names no key of the issuer
  kKeyMismatch,       // no key of the issuer fits the alg (type, curve, declared alg)
  kBadSignature,      // no candidate key verifies the signature
  kExpired,           // exp + skew < now
  kNotYetValid,       // nbf - skew > now, or iat - skew > now
  kAudienceMismatch,  // the issuer lists audiences and aud holds none of them
  kKeysUnavailable,   // the issuer's keys were never fetched (JwtIssuerConfig::keys_unavailable)
  kCount,
};
inline constexpr size_t kJwtFailureCount = static_cast<size_t>(JwtFailure::kCount);

// meshlet_http_jwt_total{outcome}: ListenerPolicy::jwt_outcomes[i] is outcome JwtOutcomeName(i):
// "ok" (JwtFailure::kNone), each JwtFailureName(), and last "missing" (no token).
inline constexpr size_t kJwtOutcomeCount = kJwtFailureCount + 1;
inline constexpr size_t kJwtMissing = kJwtFailureCount;
absl::string_view JwtOutcomeName(size_t outcome);

// "malformed", "expired", ... (snake case; "ok" for kNone).
absl::string_view JwtFailureName(JwtFailure failure);
// "Jwt is expired", ... : the sentence a 401 reply carries.
absl::string_view JwtFailureMessage(JwtFailure failure);

enum class JwtAlg : uint8_t { kRs256, kRs384, kRs512, kEs256, kEs384, kEdDsa };

// One public key of a JWKS.
struct JwtKey {
  enum class Type : uint8_t { kRsa, kEcP256, kEcP384, kEd25519 };
  Type type = Type::kRsa;
  std::string kid;       // empty: none
  bool has_alg = false;  // the JWK declared "alg": only that alg may use it
  JwtAlg alg = JwtAlg::kRs256;
  std::shared_ptr<RSA> rsa;           // kRsa
  std::shared_ptr<EC_KEY> ec;         // kEcP256, kEcP384
  std::array<uint8_t, 32> ed25519{};  // kEd25519
};

struct JwksParse {
  std::vector<JwtKey> keys;
  // Keys left out, one line each ("keys[2]: kty \"oct\" is not accepted"), for status and logs.
  std::vector<std::string> skipped;
};

// Parses a JWKS document. Keys of a type this verifier does not accept (oct, unknown kty or crv,
// use other than "sig") are skipped and listed; a malformed document or a malformed field of an
// accepted key is an error naming it ("keys[0].n: not base64url"). No usable key is an error.
absl::StatusOr<JwksParse> ParseJwks(absl::string_view json);

struct JwtIssuerConfig {
  std::string issuer;                  // the "iss" a token carries
  std::vector<std::string> audiences;  // empty: any audience
  std::string jwks;                    // the key set, JSON
  // The issuer is known but its keys are not (a jwksUri never fetched): jwks is empty and every
  // token naming this issuer is refused (kKeysUnavailable) instead of being unknown.
  bool keys_unavailable = false;
};

struct JwtVerifierConfig {
  std::vector<JwtIssuerConfig> issuers;
  int64_t clock_skew_seconds = 60;
  size_t max_token_bytes = 8192;
};

class JwtVerifier {
 public:
  // Per-worker buffers; reuse one for every Verify() of a thread.
  struct Scratch {
    std::string header, payload, signature, iss, sub, text;
  };

  struct Result {
    JwtFailure failure = JwtFailure::kNone;
    size_t issuer = 0;           // index into the config's issuers, when ok
    absl::string_view payload;   // the decoded payload JSON, when ok (claims: jwt_json::Find)
    absl::string_view iss, sub;  // decoded; sub empty when absent
    bool ok() const { return failure == JwtFailure::kNone; }
  };

  // Errors name the issuer and field ("issuers[1] (https://idp): jwks: keys[0].n: ...").
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(const JwtVerifierConfig& config);

  // Verifies the compact token `token` (no "Bearer " prefix) at wall time `now_seconds`.
  Result Verify(absl::string_view token, int64_t now_seconds, Scratch& scratch) const;

  size_t issuer_count() const { return issuers_.size(); }
  const std::string& issuer_name(size_t i) const { return issuers_[i].issuer; }

 private:
  struct Issuer {
    std::string issuer;
    std::vector<std::string> audiences;
    std::vector<JwtKey> keys;
    bool keys_unavailable = false;
  };
  explicit JwtVerifier(const JwtVerifierConfig& config) : config_(config) {}

  JwtVerifierConfig config_;
  std::vector<Issuer> issuers_;
};

// Base64url without padding (RFC 7515 §2) into *out (replacing its contents; capacity reused).
// False on any other character, padding, or a length no encoding has.
bool Base64UrlDecode(absl::string_view in, std::string* out);

}  // namespace meshlet::jwt
