#include "common/jwt/jwt_verifier.h"

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/jwt/jwt_json.h"
#include "openssl/bn.h"
#include "openssl/curve25519.h"
#include "openssl/ec.h"
#include "openssl/ec_key.h"
#include "openssl/ecdsa.h"
#include "openssl/nid.h"
#include "openssl/rsa.h"
#include "openssl/sha.h"

namespace meshlet::jwt {
namespace {

namespace json = jwt_json;

constexpr unsigned kMinRsaBits = 2048;
constexpr unsigned kMaxRsaBits = 8192;

int Base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool ParseAlg(absl::string_view name, JwtAlg* alg) {
  if (name == "RS256")
    *alg = JwtAlg::kRs256;
  else if (name == "RS384")
    *alg = JwtAlg::kRs384;
  else if (name == "RS512")
    *alg = JwtAlg::kRs512;
  else if (name == "ES256")
    *alg = JwtAlg::kEs256;
  else if (name == "ES384")
    *alg = JwtAlg::kEs384;
  else if (name == "EdDSA")
    *alg = JwtAlg::kEdDsa;
  else
    return false;
  return true;
}

bool KeyFits(const JwtKey& key, JwtAlg alg) {
  if (key.has_alg && key.alg != alg) return false;
  switch (alg) {
    case JwtAlg::kRs256:
    case JwtAlg::kRs384:
    case JwtAlg::kRs512:
      return key.type == JwtKey::Type::kRsa;
    case JwtAlg::kEs256:
      return key.type == JwtKey::Type::kEcP256;
    case JwtAlg::kEs384:
      return key.type == JwtKey::Type::kEcP384;
    case JwtAlg::kEdDsa:
      return key.type == JwtKey::Type::kEd25519;
  }
  return false;
}

// The SHA-2 digest `alg` signs, into `digest`; its length.
size_t Digest(JwtAlg alg, absl::string_view input, uint8_t* digest, int* nid) {
  const auto* data = reinterpret_cast<const uint8_t*>(input.data());
  switch (alg) {
    case JwtAlg::kRs256:
    case JwtAlg::kEs256:
      *nid = NID_sha256;
      SHA256(data, input.size(), digest);
      return SHA256_DIGEST_LENGTH;
    case JwtAlg::kRs384:
    case JwtAlg::kEs384:
      *nid = NID_sha384;
      SHA384(data, input.size(), digest);
      return SHA384_DIGEST_LENGTH;
    case JwtAlg::kRs512:
      *nid = NID_sha512;
      SHA512(data, input.size(), digest);
      return SHA512_DIGEST_LENGTH;
    case JwtAlg::kEdDsa:
      break;
  }
  return 0;
}

bool VerifyWith(const JwtKey& key, JwtAlg alg, absl::string_view signing_input,
                absl::string_view signature) {
  const auto* sig = reinterpret_cast<const uint8_t*>(signature.data());
  if (key.type == JwtKey::Type::kEd25519) {
    return signature.size() == 64 &&
           ED25519_verify(reinterpret_cast<const uint8_t*>(signing_input.data()),
                          signing_input.size(), sig, key.ed25519.data()) == 1;
  }
  uint8_t digest[SHA512_DIGEST_LENGTH];
  int nid = 0;
  const size_t digest_len = Digest(alg, signing_input, digest, &nid);
  if (key.type == JwtKey::Type::kRsa) {
    return signature.size() == RSA_size(key.rsa.get()) &&
           RSA_verify(nid, digest, digest_len, sig, signature.size(), key.rsa.get()) == 1;
  }
  // ECDSA in JWS: r and s, each the curve's byte length, concatenated (RFC 7518 §3.4).
  const size_t half = key.type == JwtKey::Type::kEcP256 ? 32 : 48;
  if (signature.size() != 2 * half) return false;
  ECDSA_SIG* ecdsa = ECDSA_SIG_new();
  if (ecdsa == nullptr) return false;
  BIGNUM* r = BN_bin2bn(sig, half, nullptr);
  BIGNUM* s = BN_bin2bn(sig + half, half, nullptr);
  bool ok = false;
  if (r != nullptr && s != nullptr && ECDSA_SIG_set0(ecdsa, r, s) == 1) {
    r = s = nullptr;  // owned by ecdsa now
    ok = ECDSA_do_verify(digest, digest_len, ecdsa, key.ec.get()) == 1;
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(ecdsa);
  return ok;
}

// A number claim: absent (true, *present false), a number (true), or anything else (false).
bool NumberClaim(absl::string_view payload, absl::string_view name, bool* present, double* value) {
  const absl::string_view raw = json::Find(payload, name);
  *present = !raw.empty();
  if (!*present) return true;
  return json::TypeOf(raw) == json::Type::kNumber && absl::SimpleAtod(raw, value) &&
         std::isfinite(*value);
}

absl::StatusOr<std::string> Base64Field(absl::string_view jwk, absl::string_view name,
                                        absl::string_view where) {
  const absl::string_view raw = json::Find(jwk, name);
  if (raw.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ".", name, ": missing"));
  std::string text_scratch;
  const absl::string_view text = json::StringText(raw, &text_scratch);
  std::string out;
  if (json::TypeOf(raw) != json::Type::kString || !Base64UrlDecode(text, &out) || out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", name, ": not a base64url string (RFC 7515, no padding)"));
  }
  return out;
}

absl::Status ParseRsa(absl::string_view jwk, absl::string_view where, JwtKey* key) {
  auto n = Base64Field(jwk, "n", where);
  if (!n.ok()) return n.status();
  auto e = Base64Field(jwk, "e", where);
  if (!e.ok()) return e.status();
  RSA* rsa = RSA_new();
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const uint8_t*>(n->data()), n->size(), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const uint8_t*>(e->data()), e->size(), nullptr);
  if (rsa == nullptr || bn_n == nullptr || bn_e == nullptr ||
      RSA_set0_key(rsa, bn_n, bn_e, nullptr) != 1) {
    RSA_free(rsa);
    BN_free(bn_n);
    BN_free(bn_e);
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a usable RSA key"));
  }
  key->rsa.reset(rsa, RSA_free);
  const unsigned bits = RSA_bits(rsa);
  if (bits < kMinRsaBits || bits > kMaxRsaBits) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".n: an RSA modulus of ", bits,
                                                   " bits (accepted: ", kMinRsaBits, "..",
                                                   kMaxRsaBits, ")"));
  }
  if (!BN_is_odd(RSA_get0_e(rsa)) || BN_num_bits(RSA_get0_e(rsa)) < 2 ||
      BN_num_bits(RSA_get0_e(rsa)) > 33) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".e: not a usable RSA exponent"));
  }
  key->type = JwtKey::Type::kRsa;
  return absl::OkStatus();
}

absl::Status ParseEc(absl::string_view jwk, absl::string_view where, int nid, size_t size,
                     JwtKey* key) {
  auto x = Base64Field(jwk, "x", where);
  if (!x.ok()) return x.status();
  auto y = Base64Field(jwk, "y", where);
  if (!y.ok()) return y.status();
  if (x->size() != size || y->size() != size) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": x and y must be ", size, " bytes for this curve"));
  }
  EC_KEY* ec = EC_KEY_new_by_curve_name(nid);
  BIGNUM* bx = BN_bin2bn(reinterpret_cast<const uint8_t*>(x->data()), size, nullptr);
  BIGNUM* by = BN_bin2bn(reinterpret_cast<const uint8_t*>(y->data()), size, nullptr);
  const bool ok = ec != nullptr && bx != nullptr && by != nullptr &&
                  EC_KEY_set_public_key_affine_coordinates(ec, bx, by) == 1;
  BN_free(bx);
  BN_free(by);
  if (!ok) {
    EC_KEY_free(ec);
    return absl::InvalidArgumentError(absl::StrCat(where, ": x, y is not a point of the curve"));
  }
  key->ec.reset(ec, EC_KEY_free);
  key->type = nid == NID_X9_62_prime256v1 ? JwtKey::Type::kEcP256 : JwtKey::Type::kEcP384;
  return absl::OkStatus();
}

// One JWK: a key, a reason to skip it (*skip set), or an error.
absl::Status ParseJwk(absl::string_view jwk, absl::string_view where, JwtKey* key,
                      std::string* skip) {
  if (json::TypeOf(jwk) != json::Type::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
  }
  std::string scratch;
  auto text = [&](absl::string_view name, std::string* out) -> absl::Status {
    const absl::string_view raw = json::Find(jwk, name);
    if (raw.empty()) return absl::OkStatus();
    if (json::TypeOf(raw) != json::Type::kString) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".", name, ": not a string"));
    }
    *out = std::string(json::StringText(raw, &scratch));
    return absl::OkStatus();
  };
  std::string kty, use, alg, crv;
  for (auto [name, out] : {std::pair<absl::string_view, std::string*>{"kty", &kty},
                           {"use", &use},
                           {"alg", &alg},
                           {"crv", &crv},
                           {"kid", &key->kid}}) {
    if (absl::Status s = text(name, out); !s.ok()) return s;
  }
  if (!use.empty() && use != "sig") {
    *skip = absl::StrCat(where, ": use \"", use, "\" is not \"sig\"");
    return absl::OkStatus();
  }
  if (!alg.empty()) {
    if (!ParseAlg(alg, &key->alg)) {
      *skip = absl::StrCat(where, ": alg \"", alg, "\" is not accepted");
      return absl::OkStatus();
    }
    key->has_alg = true;
  }
  absl::Status status;
  if (kty == "RSA") {
    status = ParseRsa(jwk, where, key);
  } else if (kty == "EC" && crv == "P-256") {
    status = ParseEc(jwk, where, NID_X9_62_prime256v1, 32, key);
  } else if (kty == "EC" && crv == "P-384") {
    status = ParseEc(jwk, where, NID_secp384r1, 48, key);
  } else if (kty == "OKP" && crv == "Ed25519") {
    auto x = Base64Field(jwk, "x", where);
    if (!x.ok()) return x.status();
    if (x->size() != 32) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".x: an Ed25519 key is 32 bytes"));
    }
    std::copy(x->begin(), x->end(), key->ed25519.begin());
    key->type = JwtKey::Type::kEd25519;
  } else if (kty.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".kty: missing"));
  } else {
    *skip = absl::StrCat(where, ": kty \"", kty, "\"", crv.empty() ? "" : " crv \"", crv,
                         crv.empty() ? "" : "\"", " is not accepted");
    return absl::OkStatus();
  }
  if (!status.ok()) return status;
  if (key->has_alg && !KeyFits(*key, key->alg)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".alg: \"", alg, "\" does not fit the key's type"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view JwtFailureName(JwtFailure failure) {
  switch (failure) {
    case JwtFailure::kNone:
      return "ok";
    case JwtFailure::kTooLarge:
      return "too_large";
    case JwtFailure::kMalformed:
      return "malformed";
    case JwtFailure::kUnsupportedAlg:
      return "unsupported_alg";
    case JwtFailure::kUnknownIssuer:
      return "unknown_issuer";
    case JwtFailure::kUnknownKid:
      return "unknown_kid";
    case JwtFailure::kKeyMismatch:
      return "key_mismatch";
    case JwtFailure::kBadSignature:
      return "bad_signature";
    case JwtFailure::kExpired:
      return "expired";
    case JwtFailure::kNotYetValid:
      return "not_yet_valid";
    case JwtFailure::kAudienceMismatch:
      return "audience_mismatch";
    case JwtFailure::kKeysUnavailable:
      return "keys_unavailable";
    case JwtFailure::kCount:
      break;
  }
  return "unknown";
}

absl::string_view JwtOutcomeName(size_t outcome) {
  return outcome >= kJwtFailureCount ? absl::string_view("missing")
                                     : JwtFailureName(static_cast<JwtFailure>(outcome));
}

absl::string_view JwtFailureMessage(JwtFailure failure) {
  switch (failure) {
    case JwtFailure::kNone:
      return "Jwt is valid";
    case JwtFailure::kTooLarge:
      return "Jwt is too large";
    case JwtFailure::kMalformed:
      return "Jwt is malformed";
    case JwtFailure::kUnsupportedAlg:
      return "Jwt algorithm is not accepted";
    case JwtFailure::kUnknownIssuer:
      return "Jwt issuer is not configured";
    case JwtFailure::kUnknownKid:
      return "Jwt kid matches no key";
    case JwtFailure::kKeyMismatch:
      return "Jwt algorithm matches no key";
    case JwtFailure::kBadSignature:
      return "Jwt verification fails";
    case JwtFailure::kExpired:
      return "Jwt is expired";
    case JwtFailure::kNotYetValid:
      return "Jwt is not yet valid";
    case JwtFailure::kAudienceMismatch:
      return "Audiences in Jwt are not allowed";
    case JwtFailure::kKeysUnavailable:
      return "Jwks of the issuer are not available";
    case JwtFailure::kCount:
      break;
  }
  return "Jwt is invalid";
}

bool Base64UrlDecode(absl::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 == 1) return false;
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = Base64UrlValue(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // The bits left over must be zero (a canonical encoding).
  return (acc & ((1u << bits) - 1)) == 0;
}

absl::StatusOr<JwksParse> ParseJwks(absl::string_view text) {
  if (!json::IsObject(text)) return absl::InvalidArgumentError("not a JSON object");
  const absl::string_view keys = json::Find(text, "keys");
  if (json::TypeOf(keys) != json::Type::kArray) {
    return absl::InvalidArgumentError("keys: missing or not an array");
  }
  JwksParse parse;
  absl::Status status;
  size_t index = 0;
  json::ForEachItem(keys, [&](absl::string_view jwk) {
    JwtKey key;
    std::string skip;
    status = ParseJwk(jwk, absl::StrCat("keys[", index++, "]"), &key, &skip);
    if (!status.ok()) return false;
    if (!skip.empty()) {
      parse.skipped.push_back(std::move(skip));
    } else {
      parse.keys.push_back(std::move(key));
    }
    return true;
  });
  if (!status.ok()) return status;
  if (parse.keys.empty()) {
    return absl::InvalidArgumentError(
        parse.skipped.empty() ? std::string("keys: empty")
                              : absl::StrCat("keys: no usable key (", parse.skipped[0], ")"));
  }
  return parse;
}

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(const JwtVerifierConfig& config) {
  if (config.clock_skew_seconds < 0) {
    return absl::InvalidArgumentError("clock skew: negative");
  }
  if (config.max_token_bytes == 0) return absl::InvalidArgumentError("max token bytes: zero");
  std::unique_ptr<JwtVerifier> verifier(new JwtVerifier(config));
  for (size_t i = 0; i < config.issuers.size(); ++i) {
    const JwtIssuerConfig& issuer = config.issuers[i];
    const std::string where = absl::StrCat("issuers[", i, "] (", issuer.issuer, ")");
    if (issuer.issuer.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty"));
    for (const Issuer& seen : verifier->issuers_) {
      if (seen.issuer == issuer.issuer) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": listed twice"));
      }
    }
    if (issuer.keys_unavailable) {
      if (!issuer.jwks.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": jwks: set, keys unavailable"));
      }
      verifier->issuers_.push_back(
          {.issuer = issuer.issuer, .audiences = issuer.audiences, .keys_unavailable = true});
      continue;
    }
    auto jwks = ParseJwks(issuer.jwks);
    if (!jwks.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": jwks: ", jwks.status().message()));
    }
    verifier->issuers_.push_back(
        {.issuer = issuer.issuer, .audiences = issuer.audiences, .keys = std::move(jwks->keys)});
  }
  return verifier;
}

JwtVerifier::Result JwtVerifier::Verify(absl::string_view token, int64_t now_seconds,
                                        Scratch& scratch) const {
  Result result;
  auto fail = [&](JwtFailure failure) {
    result.failure = failure;
    result.payload = result.iss = result.sub = {};
    return result;
  };
  if (token.size() > config_.max_token_bytes) return fail(JwtFailure::kTooLarge);
  const size_t dot1 = token.find('.');
  if (dot1 == absl::string_view::npos) return fail(JwtFailure::kMalformed);
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == absl::string_view::npos || token.find('.', dot2 + 1) != absl::string_view::npos) {
    return fail(JwtFailure::kMalformed);
  }
  if (!Base64UrlDecode(token.substr(0, dot1), &scratch.header) ||
      !Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1), &scratch.payload) ||
      !Base64UrlDecode(token.substr(dot2 + 1), &scratch.signature) ||
      !json::IsObject(scratch.header) || !json::IsObject(scratch.payload)) {
    return fail(JwtFailure::kMalformed);
  }
  const absl::string_view header = scratch.header;
  const absl::string_view payload = scratch.payload;

  // Header: alg (required, one this verifier accepts), kid (optional), no crit.
  const absl::string_view alg_raw = json::Find(header, "alg");
  if (json::TypeOf(alg_raw) != json::Type::kString) return fail(JwtFailure::kMalformed);
  JwtAlg alg;
  if (!ParseAlg(json::StringText(alg_raw, &scratch.text), &alg) ||
      !json::Find(header, "crit").empty()) {
    return fail(JwtFailure::kUnsupportedAlg);
  }
  const absl::string_view kid_raw = json::Find(header, "kid");
  if (!kid_raw.empty() && json::TypeOf(kid_raw) != json::Type::kString) {
    return fail(JwtFailure::kMalformed);
  }

  // The issuer whose keys apply.
  const absl::string_view iss_raw = json::Find(payload, "iss");
  if (json::TypeOf(iss_raw) != json::Type::kString) return fail(JwtFailure::kUnknownIssuer);
  const absl::string_view iss = json::StringText(iss_raw, &scratch.iss);
  const Issuer* issuer = nullptr;
  for (const Issuer& candidate : issuers_) {
    if (candidate.issuer == iss) {
      issuer = &candidate;
      break;
    }
  }
  if (issuer == nullptr) return fail(JwtFailure::kUnknownIssuer);
  if (issuer->keys_unavailable) return fail(JwtFailure::kKeysUnavailable);

  // The signature, with each key of the kid (or every key without one) that fits the alg.
  const absl::string_view kid =
      kid_raw.empty() ? absl::string_view() : json::StringText(kid_raw, &scratch.text);
  const absl::string_view signing_input = token.substr(0, dot2);
  bool kid_known = kid_raw.empty(), fitting = false, verified = false;
  for (const JwtKey& key : issuer->keys) {
    if (!kid_raw.empty() && key.kid != kid) continue;
    kid_known = true;
    if (!KeyFits(key, alg)) continue;
    fitting = true;
    if (VerifyWith(key, alg, signing_input, scratch.signature)) {
      verified = true;
      break;
    }
  }
  if (!kid_known) return fail(JwtFailure::kUnknownKid);
  if (!fitting) return fail(JwtFailure::kKeyMismatch);
  if (!verified) return fail(JwtFailure::kBadSignature);

  // Time claims, with the skew.
  const double now = static_cast<double>(now_seconds);
  const double skew = static_cast<double>(config_.clock_skew_seconds);
  bool present = false;
  double value = 0;
  if (!NumberClaim(payload, "exp", &present, &value)) return fail(JwtFailure::kMalformed);
  if (present && value + skew < now) return fail(JwtFailure::kExpired);
  if (!NumberClaim(payload, "nbf", &present, &value)) return fail(JwtFailure::kMalformed);
  if (present && value - skew > now) return fail(JwtFailure::kNotYetValid);
  if (!NumberClaim(payload, "iat", &present, &value)) return fail(JwtFailure::kMalformed);
  if (present && value - skew > now) return fail(JwtFailure::kNotYetValid);

  // Audiences.
  if (!issuer->audiences.empty()) {
    const absl::string_view aud = json::Find(payload, "aud");
    auto allowed = [&](absl::string_view literal) {
      if (json::TypeOf(literal) != json::Type::kString) return false;
      for (const std::string& audience : issuer->audiences) {
        if (json::StringEquals(literal, audience)) return true;
      }
      return false;
    };
    bool match = false;
    if (json::TypeOf(aud) == json::Type::kArray) {
      json::ForEachItem(aud, [&](absl::string_view item) {
        match = allowed(item);
        return !match;
      });
    } else {
      match = allowed(aud);
    }
    if (!match) return fail(JwtFailure::kAudienceMismatch);
  }

  const absl::string_view sub_raw = json::Find(payload, "sub");
  result.issuer = static_cast<size_t>(issuer - issuers_.data());
  result.payload = payload;
  result.iss = iss;
  result.sub = json::TypeOf(sub_raw) == json::Type::kString
                   ? json::StringText(sub_raw, &scratch.sub)
                   : absl::string_view();
  return result;
}

}  // namespace meshlet::jwt
