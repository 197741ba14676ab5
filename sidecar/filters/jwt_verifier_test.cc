#include "sidecar/filters/jwt_verifier.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "openssl/bn.h"
#include "openssl/bytestring.h"
#include "openssl/curve25519.h"
#include "openssl/ec.h"
#include "openssl/ec_key.h"
#include "openssl/ecdsa.h"
#include "openssl/hmac.h"
#include "openssl/mem.h"
#include "openssl/nid.h"
#include "openssl/rsa.h"
#include "openssl/sha.h"
#include "sidecar/filters/jwt_json.h"

namespace meshlet::sidecar::filters {
namespace {

// Every key is generated when the suite starts; nothing secret is committed.
constexpr int64_t kNow = 1'800'000'000;
constexpr char kIssuer[] = "https://idp.example.com";

std::string B64(absl::string_view bytes) { return absl::WebSafeBase64Escape(bytes); }

std::string BnBytes(const BIGNUM* bn, size_t len = 0) {
  std::string out(len != 0 ? len : BN_num_bytes(bn), '\0');
  BN_bn2bin_padded(reinterpret_cast<uint8_t*>(out.data()), out.size(), bn);
  return out;
}

struct Keys {
  bssl::UniquePtr<RSA> rsa, other_rsa, small_rsa;
  bssl::UniquePtr<EC_KEY> p256, p384;
  uint8_t ed_public[32], ed_private[64];
};

bssl::UniquePtr<RSA> NewRsa(int bits) {
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  BN_set_word(e.get(), RSA_F4);
  EXPECT_EQ(RSA_generate_key_ex(rsa.get(), bits, e.get(), nullptr), 1);
  return rsa;
}

bssl::UniquePtr<EC_KEY> NewEc(int nid) {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(nid));
  EXPECT_EQ(EC_KEY_generate_key(ec.get()), 1);
  return ec;
}

std::string RsaJwk(const RSA* rsa, absl::string_view kid, absl::string_view extra = "") {
  return absl::StrCat(R"({"kty":"RSA","kid":")", kid, R"(","n":")", B64(BnBytes(RSA_get0_n(rsa))),
                      R"(","e":")", B64(BnBytes(RSA_get0_e(rsa))), "\"", extra, "}");
}

std::string EcJwk(const EC_KEY* ec, absl::string_view crv, size_t size, absl::string_view kid) {
  bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
  EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec), x.get(),
                                      y.get(), nullptr);
  return absl::StrCat(R"({"kty":"EC","crv":")", crv, R"(","kid":")", kid, R"(","x":")",
                      B64(BnBytes(x.get(), size)), R"(","y":")", B64(BnBytes(y.get(), size)),
                      "\"}");
}

class JwtVerifierTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    keys_ = new Keys;
    keys_->rsa = NewRsa(2048);
    keys_->other_rsa = NewRsa(2048);
    keys_->small_rsa = NewRsa(1024);
    keys_->p256 = NewEc(NID_X9_62_prime256v1);
    keys_->p384 = NewEc(NID_secp384r1);
    ED25519_keypair(keys_->ed_public, keys_->ed_private);
  }
  static void TearDownTestSuite() { delete keys_; }

  static std::string Jwks() {
    return absl::StrCat(R"({"keys":[)", RsaJwk(keys_->rsa.get(), "rsa"), ",",
                        EcJwk(keys_->p256.get(), "P-256", 32, "p256"), ",",
                        EcJwk(keys_->p384.get(), "P-384", 48, "p384"), ",",
                        R"({"kty":"OKP","crv":"Ed25519","kid":"ed","x":")",
                        B64(absl::string_view(reinterpret_cast<const char*>(keys_->ed_public), 32)),
                        R"("}]})");
  }

  std::unique_ptr<JwtVerifier> Verifier(std::vector<std::string> audiences = {"shop"},
                                        std::string jwks = Jwks()) {
    auto verifier = JwtVerifier::Create(
        {.issuers = {{.issuer = kIssuer, .audiences = audiences, .jwks = jwks}}});
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return verifier.ok() ? std::move(*verifier) : nullptr;
  }

  // header.payload signed with `alg` by the test key named `kid`.
  static std::string Sign(absl::string_view alg, absl::string_view kid, absl::string_view payload,
                          absl::string_view header_extra = "") {
    const std::string header =
        absl::StrCat(R"({"alg":")", alg, "\"", kid.empty() ? "" : R"(,"kid":")", kid,
                     kid.empty() ? "" : "\"", header_extra, "}");
    const std::string input = absl::StrCat(B64(header), ".", B64(payload));
    return absl::StrCat(input, ".", B64(Signature(alg, kid, input)));
  }

  static std::string Signature(absl::string_view alg, absl::string_view kid,
                               absl::string_view input) {
    const auto* data = reinterpret_cast<const uint8_t*>(input.data());
    uint8_t digest[SHA512_DIGEST_LENGTH];
    if (alg == "EdDSA") {
      std::string sig(64, '\0');
      ED25519_sign(reinterpret_cast<uint8_t*>(sig.data()), data, input.size(), keys_->ed_private);
      return sig;
    }
    if (alg == "RS256" || alg == "RS384" || alg == "RS512") {
      RSA* rsa = kid == "other" ? keys_->other_rsa.get() : keys_->rsa.get();
      int nid = NID_sha256;
      size_t len = 32;
      if (alg == "RS256") SHA256(data, input.size(), digest);
      if (alg == "RS384") nid = NID_sha384, len = 48, SHA384(data, input.size(), digest);
      if (alg == "RS512") nid = NID_sha512, len = 64, SHA512(data, input.size(), digest);
      std::string sig(RSA_size(rsa), '\0');
      unsigned sig_len = 0;
      EXPECT_EQ(RSA_sign(nid, digest, len, reinterpret_cast<uint8_t*>(sig.data()), &sig_len, rsa),
                1);
      return sig;
    }
    if (alg == "ES256" || alg == "ES384") {
      const bool p256 = alg == "ES256";
      const size_t half = p256 ? 32 : 48;
      p256 ? (void)SHA256(data, input.size(), digest) : (void)SHA384(data, input.size(), digest);
      bssl::UniquePtr<ECDSA_SIG> sig(
          ECDSA_do_sign(digest, half, p256 ? keys_->p256.get() : keys_->p384.get()));
      const BIGNUM *r, *s;
      ECDSA_SIG_get0(sig.get(), &r, &s);
      return BnBytes(r, half) + BnBytes(s, half);
    }
    if (alg == "HS256") {
      // Key confusion: the RSA public key, as the issuer publishes it, used as an HMAC secret.
      const std::string secret = BnBytes(RSA_get0_n(keys_->rsa.get()));
      uint8_t mac[32];
      unsigned mac_len = 0;
      HMAC(EVP_sha256(), secret.data(), secret.size(), data, input.size(), mac, &mac_len);
      return std::string(reinterpret_cast<char*>(mac), mac_len);
    }
    return "";  // alg none
  }

  static std::string Claims(absl::string_view extra = "") {
    return absl::StrCat(R"({"iss":")", kIssuer, R"(","sub":"alice","aud":"shop","exp":)",
                        kNow + 600, R"(,"iat":)", kNow - 10, extra, "}");
  }

  JwtFailure Check(const JwtVerifier& verifier, absl::string_view token) {
    return verifier.Verify(token, kNow, scratch_).failure;
  }

  static Keys* keys_;
  JwtVerifier::Scratch scratch_;
};

Keys* JwtVerifierTest::keys_ = nullptr;

TEST_F(JwtVerifierTest, EveryAcceptedAlgorithmVerifies) {
  auto verifier = Verifier();
  ASSERT_NE(verifier, nullptr);
  for (auto [alg, kid] : std::vector<std::pair<std::string, std::string>>{{"RS256", "rsa"},
                                                                          {"RS384", "rsa"},
                                                                          {"RS512", "rsa"},
                                                                          {"ES256", "p256"},
                                                                          {"ES384", "p384"},
                                                                          {"EdDSA", "ed"}}) {
    const std::string token = Sign(alg, kid, Claims());
    const JwtVerifier::Result result = verifier->Verify(token, kNow, scratch_);
    EXPECT_EQ(result.failure, JwtFailure::kNone) << alg << ": " << JwtFailureName(result.failure);
    EXPECT_EQ(result.iss, kIssuer);
    EXPECT_EQ(result.sub, "alice");
    EXPECT_EQ(jwt_json::Find(result.payload, "aud"), "\"shop\"");
    // Without a kid, every key that fits the alg is tried.
    EXPECT_EQ(Check(*verifier, Sign(alg, "", Claims())), JwtFailure::kNone) << alg;
  }
}

TEST_F(JwtVerifierTest, AlgNoneIsRefused) {
  auto verifier = Verifier();
  EXPECT_EQ(Check(*verifier, Sign("none", "rsa", Claims())), JwtFailure::kUnsupportedAlg);
  EXPECT_EQ(Check(*verifier, Sign("none", "", Claims())), JwtFailure::kUnsupportedAlg);
  EXPECT_EQ(Check(*verifier, Sign("None", "", Claims())), JwtFailure::kUnsupportedAlg);
}

TEST_F(JwtVerifierTest, Hs256SignedWithTheRsaPublicKeyIsRefused) {
  auto verifier = Verifier();
  EXPECT_EQ(Check(*verifier, Sign("HS256", "rsa", Claims())), JwtFailure::kUnsupportedAlg);
}

TEST_F(JwtVerifierTest, AnAlgOfAnotherKeyTypeIsRefused) {
  auto verifier = Verifier();
  // An RSA signature presented as ES256 under the RSA key's kid, and the reverse.
  const std::string rs = Sign("RS256", "rsa", Claims());
  const std::string header = B64(R"({"alg":"ES256","kid":"rsa"})");
  EXPECT_EQ(Check(*verifier, header + rs.substr(rs.find('.'))), JwtFailure::kKeyMismatch);
  EXPECT_EQ(Check(*verifier, Sign("ES384", "p256", Claims())), JwtFailure::kKeyMismatch);
  // A JWK that declares its alg serves that alg only.
  auto pinned = Verifier(
      {"shop"},
      absl::StrCat(R"({"keys":[)", RsaJwk(keys_->rsa.get(), "rsa", R"(,"alg":"RS512")"), "]}"));
  EXPECT_EQ(Check(*pinned, Sign("RS256", "rsa", Claims())), JwtFailure::kKeyMismatch);
  EXPECT_EQ(Check(*pinned, Sign("RS512", "rsa", Claims())), JwtFailure::kNone);
}

TEST_F(JwtVerifierTest, WrongKeyFailsTheSignature) {
  auto verifier = Verifier();
  // Signed by another RSA key, claiming the trusted key's kid.
  std::string token = Sign("RS256", "other", Claims());
  const std::string header = B64(R"({"alg":"RS256","kid":"rsa"})");
  token = header + token.substr(token.find('.'));
  EXPECT_EQ(Check(*verifier, token), JwtFailure::kBadSignature);
  // A valid token whose payload was changed after signing.
  std::string good = Sign("ES256", "p256", Claims());
  const size_t dot1 = good.find('.'), dot2 = good.rfind('.');
  const std::string tampered =
      good.substr(0, dot1 + 1) + B64(Claims(R"(,"admin":true)")) + good.substr(dot2);
  EXPECT_EQ(Check(*verifier, tampered), JwtFailure::kBadSignature);
  // One bit of the signature flipped.
  good[good.size() - 2] = good[good.size() - 2] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Check(*verifier, good), JwtFailure::kBadSignature);
}

TEST_F(JwtVerifierTest, UnknownKidIsRefused) {
  auto verifier = Verifier();
  EXPECT_EQ(Check(*verifier, Sign("RS256", "rotated-away", Claims())), JwtFailure::kUnknownKid);
}

TEST_F(JwtVerifierTest, TimeClaimsAreCheckedWithTheSkew) {
  auto verifier = Verifier();
  auto with = [&](absl::string_view claims) {
    return Check(*verifier,
                 Sign("EdDSA", "ed",
                      absl::StrCat(R"({"iss":")", kIssuer, R"(","aud":"shop")", claims, "}")));
  };
  EXPECT_EQ(with(absl::StrCat(R"(,"exp":)", kNow - 61)), JwtFailure::kExpired);
  EXPECT_EQ(with(absl::StrCat(R"(,"exp":)", kNow - 59)), JwtFailure::kNone);  // within the skew
  EXPECT_EQ(with(absl::StrCat(R"(,"nbf":)", kNow + 61)), JwtFailure::kNotYetValid);
  EXPECT_EQ(with(absl::StrCat(R"(,"nbf":)", kNow + 59)), JwtFailure::kNone);
  EXPECT_EQ(with(absl::StrCat(R"(,"iat":)", kNow + 3600)), JwtFailure::kNotYetValid);
  EXPECT_EQ(with(R"(,"exp":"tomorrow")"), JwtFailure::kMalformed);
  EXPECT_EQ(with(""), JwtFailure::kNone);  // no exp: accepted, as Istio does
  // The skew is the configuration's.
  auto strict = JwtVerifier::Create(
      {.issuers = {{.issuer = kIssuer, .jwks = Jwks()}}, .clock_skew_seconds = 0});
  ASSERT_TRUE(strict.ok());
  const std::string token =
      Sign("EdDSA", "ed", absl::StrCat(R"({"iss":")", kIssuer, R"(","exp":)", kNow - 1, "}"));
  EXPECT_EQ((*strict)->Verify(token, kNow, scratch_).failure, JwtFailure::kExpired);
}

TEST_F(JwtVerifierTest, IssuerAndAudienceAreChecked) {
  auto verifier = Verifier({"shop", "api"});
  EXPECT_EQ(
      Check(*verifier, Sign("RS256", "rsa", R"({"iss":"https://evil.example.com","aud":"shop"})")),
      JwtFailure::kUnknownIssuer);
  EXPECT_EQ(Check(*verifier, Sign("RS256", "rsa", R"({"aud":"shop"})")),
            JwtFailure::kUnknownIssuer);
  auto aud = [&](absl::string_view value) {
    return Check(*verifier,
                 Sign("RS256", "rsa", absl::StrCat(R"({"iss":")", kIssuer, "\"", value, "}")));
  };
  EXPECT_EQ(aud(R"(,"aud":"billing")"), JwtFailure::kAudienceMismatch);
  EXPECT_EQ(aud(R"(,"aud":["billing","other"])"), JwtFailure::kAudienceMismatch);
  EXPECT_EQ(aud(""), JwtFailure::kAudienceMismatch);
  EXPECT_EQ(aud(R"(,"aud":["billing","api"])"), JwtFailure::kNone);
  EXPECT_EQ(aud(R"(,"aud":"sh\u006fp")"), JwtFailure::kNone);  // escapes decode
  // No audiences configured: any.
  EXPECT_EQ(
      Check(*Verifier({}),
            Sign("RS256", "rsa", absl::StrCat(R"({"iss":")", kIssuer, R"(","aud":"billing"})"))),
      JwtFailure::kNone);
}

TEST_F(JwtVerifierTest, TruncatedGarbledAndOversizedTokensAreRefused) {
  auto verifier = Verifier();
  const std::string token = Sign("RS256", "rsa", Claims());
  EXPECT_EQ(Check(*verifier, ""), JwtFailure::kMalformed);
  EXPECT_EQ(Check(*verifier, token.substr(0, token.rfind('.'))), JwtFailure::kMalformed);
  // A signature cut short on a quantum boundary decodes, and fails; elsewhere it does not decode.
  const size_t signature_at = token.rfind('.') + 1;
  EXPECT_EQ(Check(*verifier, token.substr(0, signature_at + 340)), JwtFailure::kBadSignature);
  EXPECT_EQ(Check(*verifier, token.substr(0, signature_at + 341)), JwtFailure::kMalformed);
  EXPECT_EQ(Check(*verifier, token + ".x"), JwtFailure::kMalformed);
  EXPECT_EQ(Check(*verifier, "a.b.c"), JwtFailure::kMalformed);
  EXPECT_EQ(Check(*verifier, "!!!." + token.substr(token.find('.') + 1)), JwtFailure::kMalformed);
  std::string padded = token;
  padded.insert(token.find('.'), "=");
  EXPECT_EQ(Check(*verifier, padded), JwtFailure::kMalformed);
  // A header that is not a JSON object.
  EXPECT_EQ(Check(*verifier, B64("[1]") + token.substr(token.find('.'))), JwtFailure::kMalformed);
  EXPECT_EQ(Check(*verifier, B64(R"({"alg":"RS256")") + token.substr(token.find('.'))),
            JwtFailure::kMalformed);
  // Over the limit before anything is decoded.
  EXPECT_EQ(
      Check(*verifier, Sign("RS256", "rsa",
                            Claims(absl::StrCat(R"(,"pad":")", std::string(8000, 'x'), "\"")))),
      JwtFailure::kTooLarge);
  EXPECT_EQ(Check(*verifier, std::string(9000, 'a')), JwtFailure::kTooLarge);
  // A critical extension nobody understands.
  EXPECT_EQ(Check(*verifier, Sign("RS256", "rsa", Claims(), R"(,"crit":["exp"])")),
            JwtFailure::kUnsupportedAlg);
}

TEST_F(JwtVerifierTest, JwksErrorsNameTheField) {
  auto error = [](absl::string_view jwks) {
    auto parse = ParseJwks(jwks);
    return parse.ok() ? std::string("ok") : std::string(parse.status().message());
  };
  EXPECT_EQ(error("[]"), "not a JSON object");
  EXPECT_EQ(error(R"({"keys":{}})"), "keys: missing or not an array");
  EXPECT_EQ(error(R"({"keys":[{"kty":"RSA","n":"AQAB"}]})"), "keys[0].e: missing");
  EXPECT_EQ(error(R"({"keys":[{"kty":"RSA","n":"a+b","e":"AQAB"}]})"),
            "keys[0].n: not a base64url string (RFC 7515, no padding)");
  EXPECT_EQ(error(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})"),
            "keys: no usable key (keys[0]: kty \"oct\" is not accepted)");
  EXPECT_EQ(error(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]})"),
            "keys[0]: x and y must be 32 bytes for this curve");
  EXPECT_EQ(error(absl::StrCat(R"({"keys":[)", RsaJwk(keys_->small_rsa.get(), "weak"), "]}")),
            "keys[0].n: an RSA modulus of 1024 bits (accepted: 2048..8192)");
  EXPECT_EQ(
      error(absl::StrCat(R"({"keys":[)", RsaJwk(keys_->rsa.get(), "r", R"(,"alg":"ES256")"), "]}")),
      "keys[0].alg: \"ES256\" does not fit the key's type");
  // An HMAC key beside a usable one is skipped and listed, never used.
  auto parse = ParseJwks(absl::StrCat(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"},)",
                                      RsaJwk(keys_->rsa.get(), "rsa"), "]}"));
  ASSERT_TRUE(parse.ok()) << parse.status();
  EXPECT_EQ(parse->keys.size(), 1u);
  EXPECT_EQ(parse->skipped, std::vector<std::string>{"keys[0]: kty \"oct\" is not accepted"});
  auto duplicate = JwtVerifier::Create(
      {.issuers = {{.issuer = kIssuer, .jwks = Jwks()}, {.issuer = kIssuer, .jwks = Jwks()}}});
  EXPECT_EQ(duplicate.status().message(), "issuers[1] (https://idp.example.com): listed twice");
}

TEST_F(JwtVerifierTest, Base64UrlIsStrict) {
  std::string out;
  EXPECT_TRUE(Base64UrlDecode("aGk", &out));
  EXPECT_EQ(out, "hi");
  EXPECT_FALSE(Base64UrlDecode("aGk=", &out));  // padding
  EXPECT_FALSE(Base64UrlDecode("aGl", &out));   // non-zero leftover bits
  EXPECT_FALSE(Base64UrlDecode("a", &out));     // no encoding is one character long
  EXPECT_FALSE(Base64UrlDecode("a+/b", &out));  // the other alphabet
}

// Scratch buffers are reused: an EdDSA verification of a warm scratch allocates nothing.
TEST_F(JwtVerifierTest, VerifyingWithAWarmScratchAllocatesNothing) {
  auto verifier = Verifier();
  const std::string token = Sign("EdDSA", "ed", Claims());
  ASSERT_EQ(Check(*verifier, token), JwtFailure::kNone);
  AllocationScope scope;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Check(*verifier, token), JwtFailure::kNone);
  EXPECT_EQ(scope.count(), 0u);
}

}  // namespace
}  // namespace meshlet::sidecar::filters
