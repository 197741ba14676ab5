#include "common/jwt/jwt_verifier.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/jwt/jwt_json.h"
#include "common/jwt/jwt_testing.h"

namespace meshlet::jwt {
namespace {

using jwt_testing::B64;
using jwt_testing::RsaJwk;

// Every key is generated when the suite starts; nothing secret is committed.
constexpr int64_t kNow = 1'800'000'000;
constexpr char kIssuer[] = "https://idp.example.com";

class JwtVerifierTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { keys_ = jwt_testing::NewKeys(); }
  static void TearDownTestSuite() { delete keys_; }
  static std::string Jwks() { return jwt_testing::Jwks(*keys_); }

  std::unique_ptr<JwtVerifier> Verifier(std::vector<std::string> audiences = {"shop"},
                                        std::string jwks = Jwks()) {
    auto verifier = JwtVerifier::Create(
        {.issuers = {{.issuer = kIssuer, .audiences = audiences, .jwks = jwks}}});
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return verifier.ok() ? std::move(*verifier) : nullptr;
  }

  static std::string Sign(absl::string_view alg, absl::string_view kid, absl::string_view payload,
                          absl::string_view header_extra = "") {
    return jwt_testing::Sign(*keys_, alg, kid, payload, header_extra);
  }

  static std::string Claims(absl::string_view extra = "") {
    return absl::StrCat(R"({"iss":")", kIssuer, R"(","sub":"alice","aud":"shop","exp":)",
                        kNow + 600, R"(,"iat":)", kNow - 10, extra, "}");
  }

  JwtFailure Check(const JwtVerifier& verifier, absl::string_view token) {
    return verifier.Verify(token, kNow, scratch_).failure;
  }

  static jwt_testing::Keys* keys_;
  JwtVerifier::Scratch scratch_;
};

jwt_testing::Keys* JwtVerifierTest::keys_ = nullptr;

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

// An issuer whose keys were never fetched is known: its tokens, however well signed, get their
// own reason, and the other issuers' tokens still verify.
TEST_F(JwtVerifierTest, AnIssuerWithoutKeysRefusesItsTokens) {
  auto verifier = JwtVerifier::Create(
      {.issuers = {{.issuer = "https://pending.example", .keys_unavailable = true},
                   {.issuer = kIssuer, .audiences = {"shop"}, .jwks = Jwks()}}});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  EXPECT_EQ(
      Check(**verifier, Sign("RS256", "rsa", R"({"iss":"https://pending.example","aud":"shop"})")),
      JwtFailure::kKeysUnavailable);
  EXPECT_EQ(Check(**verifier, Sign("RS256", "rsa", Claims())), JwtFailure::kNone);
  EXPECT_EQ(JwtFailureName(JwtFailure::kKeysUnavailable), "keys_unavailable");

  auto both = JwtVerifier::Create(
      {.issuers = {{.issuer = kIssuer, .jwks = Jwks(), .keys_unavailable = true}}});
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().message(),
            "issuers[0] (https://idp.example.com): jwks: set, keys unavailable");
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
}  // namespace meshlet::jwt
