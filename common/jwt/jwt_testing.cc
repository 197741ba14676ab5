#include "common/jwt/jwt_testing.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "openssl/curve25519.h"
#include "openssl/ec.h"
#include "openssl/ecdsa.h"
#include "openssl/hmac.h"
#include "openssl/nid.h"
#include "openssl/sha.h"

namespace meshlet::jwt::jwt_testing {

std::string B64(absl::string_view bytes) { return absl::WebSafeBase64Escape(bytes); }

std::string BnBytes(const BIGNUM* bn, size_t len) {
  std::string out(len != 0 ? len : BN_num_bytes(bn), '\0');
  BN_bn2bin_padded(reinterpret_cast<uint8_t*>(out.data()), out.size(), bn);
  return out;
}

namespace {

bssl::UniquePtr<RSA> NewRsa(int bits) {
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  BN_set_word(e.get(), RSA_F4);
  RSA_generate_key_ex(rsa.get(), bits, e.get(), nullptr);
  return rsa;
}

bssl::UniquePtr<EC_KEY> NewEc(int nid) {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(nid));
  EC_KEY_generate_key(ec.get());
  return ec;
}

}  // namespace

std::string RsaJwk(const RSA* rsa, absl::string_view kid, absl::string_view extra) {
  return absl::StrCat(R"({"kty":"RSA","kid":")", kid, R"(","n":")", B64(BnBytes(RSA_get0_n(rsa))),
                      R"(","e":")", B64(BnBytes(RSA_get0_e(rsa))), "\"", extra, "}");
}

static std::string EcJwk(const EC_KEY* ec, absl::string_view crv, size_t size,
                         absl::string_view kid) {
  bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
  EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec), x.get(),
                                      y.get(), nullptr);
  return absl::StrCat(R"({"kty":"EC","crv":")", crv, R"(","kid":")", kid, R"(","x":")",
                      B64(BnBytes(x.get(), size)), R"(","y":")", B64(BnBytes(y.get(), size)),
                      "\"}");
}

Keys* NewKeys() {
  auto* keys = new Keys;
  keys->rsa = NewRsa(2048);
  keys->other_rsa = NewRsa(2048);
  keys->small_rsa = NewRsa(1024);
  keys->p256 = NewEc(NID_X9_62_prime256v1);
  keys->p384 = NewEc(NID_secp384r1);
  ED25519_keypair(keys->ed_public, keys->ed_private);
  return keys;
}

std::string Jwks(const Keys& keys) {
  return absl::StrCat(
      R"({"keys":[)", RsaJwk(keys.rsa.get(), "rsa"), ",",
      EcJwk(keys.p256.get(), "P-256", 32, "p256"), ",", EcJwk(keys.p384.get(), "P-384", 48, "p384"),
      ",", R"({"kty":"OKP","crv":"Ed25519","kid":"ed","x":")",
      B64(absl::string_view(reinterpret_cast<const char*>(keys.ed_public), 32)), R"("}]})");
}

std::string Sign(const Keys& keys, absl::string_view alg, absl::string_view kid,
                 absl::string_view payload, absl::string_view header_extra) {
  const std::string header =
      absl::StrCat(R"({"alg":")", alg, "\"", kid.empty() ? "" : R"(,"kid":")", kid,
                   kid.empty() ? "" : "\"", header_extra, "}");
  const std::string input = absl::StrCat(B64(header), ".", B64(payload));
  return absl::StrCat(input, ".", B64(Signature(keys, alg, kid, input)));
}

std::string Signature(const Keys& keys, absl::string_view alg, absl::string_view kid,
                      absl::string_view input) {
  const auto* data = reinterpret_cast<const uint8_t*>(input.data());
  uint8_t digest[SHA512_DIGEST_LENGTH];
  if (alg == "EdDSA") {
    std::string sig(64, '\0');
    ED25519_sign(reinterpret_cast<uint8_t*>(sig.data()), data, input.size(), keys.ed_private);
    return sig;
  }
  if (alg == "RS256" || alg == "RS384" || alg == "RS512") {
    RSA* rsa = kid == "other" ? keys.other_rsa.get() : keys.rsa.get();
    int nid = NID_sha256;
    size_t len = 32;
    if (alg == "RS256") SHA256(data, input.size(), digest);
    if (alg == "RS384") nid = NID_sha384, len = 48, SHA384(data, input.size(), digest);
    if (alg == "RS512") nid = NID_sha512, len = 64, SHA512(data, input.size(), digest);
    std::string sig(RSA_size(rsa), '\0');
    unsigned sig_len = 0;
    // A failed signature is an empty one, which no verification accepts.
    if (RSA_sign(nid, digest, len, reinterpret_cast<uint8_t*>(sig.data()), &sig_len, rsa) != 1) {
      return "";
    }
    return sig;
  }
  if (alg == "ES256" || alg == "ES384") {
    const bool p256 = alg == "ES256";
    const size_t half = p256 ? 32 : 48;
    p256 ? (void)SHA256(data, input.size(), digest) : (void)SHA384(data, input.size(), digest);
    bssl::UniquePtr<ECDSA_SIG> sig(
        ECDSA_do_sign(digest, half, p256 ? keys.p256.get() : keys.p384.get()));
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    return BnBytes(r, half) + BnBytes(s, half);
  }
  if (alg == "HS256") {
    // Key confusion: the RSA public key, as the issuer publishes it, used as an HMAC secret.
    const std::string secret = BnBytes(RSA_get0_n(keys.rsa.get()));
    uint8_t mac[32];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), secret.data(), secret.size(), data, input.size(), mac, &mac_len);
    return std::string(reinterpret_cast<char*>(mac), mac_len);
  }
  return "";  // alg none
}

}  // namespace meshlet::jwt::jwt_testing
