#include "control-plane/federation/spiffe_bundle.h"

#include <openssl/mem.h>
#include <openssl/x509.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/tls/certificate.h"
#include "common/tls/test_certificates.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::federation {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using tls::testing::TestCa;
using tls::testing::ValueOrDie;

// The base64 DER of the first certificate in `pem`, as x5c carries it.
std::string X5c(const std::string& pem) {
  tls::CertificateChain chain = ValueOrDie(tls::ParsePemCertificates(pem));
  uint8_t* der = nullptr;
  const int len = i2d_X509(chain[0].get(), &der);
  CHECK(len > 0);
  std::string out = absl::Base64Escape(absl::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return out;
}

std::string X509Key(const std::string& x5c) {
  return absl::StrCat(R"({"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [")", x5c,
                      R"("]})");
}

class SpiffeBundleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_a_ = new TestCa(ValueOrDie(TestCa::Create("other root A")));
    root_b_ = new TestCa(ValueOrDie(TestCa::Create("other root B")));
  }
  static void TearDownTestSuite() {
    delete root_a_;
    delete root_b_;
  }
  static TestCa* root_a_;
  static TestCa* root_b_;
};
TestCa* SpiffeBundleTest::root_a_ = nullptr;
TestCa* SpiffeBundleTest::root_b_ = nullptr;

TEST_F(SpiffeBundleTest, JwksBundleWithTwoRootsAndAJwtKey) {
  const std::string text = absl::StrCat(
      R"({"spiffe_sequence": 7, "spiffe_refresh_hint": 300, "keys": [)",
      X509Key(X5c(root_a_->cert_pem())), ",", X509Key(X5c(root_b_->cert_pem())),
      R"(, {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"}]})");
  FederatedBundle bundle = ValueOrDie(ParseFederatedBundle("other.example", text));
  ASSERT_EQ(bundle.roots.size(), 2u);
  EXPECT_THAT(bundle.roots[0].subject, HasSubstr("other root A"));
  EXPECT_THAT(bundle.roots[1].subject, HasSubstr("other root B"));
  EXPECT_EQ(bundle.sequence, 7u);
  EXPECT_EQ(bundle.refresh_hint, absl::Seconds(300));
  EXPECT_THAT(bundle.skipped, ElementsAre("keys[2]: use \"jwt-svid\" is not for X.509"));
  // The roots come out as PEM a TLS context loads.
  EXPECT_EQ(ValueOrDie(tls::ParsePemCertificates(bundle.roots_pem)).size(), 2u);
}

TEST_F(SpiffeBundleTest, PemRoots) {
  FederatedBundle bundle = ValueOrDie(ParseFederatedBundle(
      "other.example", absl::StrCat("\n", root_a_->cert_pem(), root_b_->cert_pem())));
  EXPECT_EQ(bundle.roots.size(), 2u);
  EXPECT_FALSE(bundle.sequence.has_value());
  EXPECT_FALSE(bundle.refresh_hint.has_value());
}

TEST_F(SpiffeBundleTest, ErrorsSayWhatAndWhere) {
  const std::string leaf_pem =
      ValueOrDie(root_a_->Issue({.spiffe_id = "spiffe://other.example/ns/x/sa/y"})).chain_pem;
  const std::string a = X5c(root_a_->cert_pem());
  const struct {
    std::string domain;
    std::string text;
    std::string error;
  } cases[] = {
      {"Other Example", root_a_->cert_pem(), "trust domain \"Other Example\""},
      {"other.example", "{", "neither PEM nor a JSON SPIFFE bundle"},
      {"other.example", "[]", "neither PEM nor a JSON SPIFFE bundle"},
      {"other.example", "{}", "keys: missing or not an array"},
      {"other.example", R"({"keys": []})", "no x509-svid key"},
      {"other.example", R"({"keys": [{"use": "jwt-svid"}]})",
       "no x509-svid key (keys[0]: use \"jwt-svid\" is not for X.509)"},
      {"other.example", R"({"keys": [1]})", "keys[0]: not an object"},
      {"other.example", R"({"keys": [{"x5c": []}]})", "keys[0].use: missing or not a string"},
      {"other.example", R"({"keys": [{"use": "x509-svid"}]})",
       "keys[0].x5c: missing or not an array"},
      {"other.example",
       absl::StrCat(R"({"keys": [{"use": "x509-svid", "x5c": [")", a, R"(", ")", a, R"("]}]})"),
       "keys[0]: x509-svid key needs exactly one x5c certificate, has 2"},
      {"other.example", R"({"keys": [{"use": "x509-svid", "x5c": ["%%%"]}]})",
       "keys[0].x5c[0]: not base64"},
      {"other.example", R"({"keys": [{"use": "x509-svid", "x5c": ["AAAA"]}]})",
       "keys[0].x5c[0]: not a DER X.509 certificate"},
      {"other.example", absl::StrCat(R"({"keys": [)", X509Key(X5c(leaf_pem)), "]}"),
       "keys[0]: root #1"},
      {"other.example", absl::StrCat(R"({"spiffe_refresh_hint": -1, "keys": [)", X509Key(a), "]}"),
       "spiffe_refresh_hint: not a whole number"},
      {"other.example", absl::StrCat(R"({"spiffe_sequence": "7", "keys": [)", X509Key(a), "]}"),
       "spiffe_sequence: not a whole number"},
      {"other.example", leaf_pem, "root #1 (CN=meshlet test leaf"},
      {"other.example", leaf_pem, "is not a CA certificate"},
      {"other.example", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM: "},
  };
  for (const auto& c : cases) {
    absl::StatusOr<FederatedBundle> bundle = ParseFederatedBundle(c.domain, c.text);
    ASSERT_FALSE(bundle.ok()) << c.error;
    EXPECT_EQ(bundle.status().code(), absl::StatusCode::kInvalidArgument) << c.error;
    EXPECT_THAT(bundle.status().message(), HasSubstr(c.error));
  }
}

TEST_F(SpiffeBundleTest, LimitsAreExplicit) {
  const std::string two = absl::StrCat(root_a_->cert_pem(), root_b_->cert_pem());
  absl::StatusOr<FederatedBundle> bundle =
      ParseFederatedBundle("other.example", two, {.max_roots = 1});
  ASSERT_FALSE(bundle.ok());
  EXPECT_THAT(bundle.status().message(), HasSubstr("more than 1 roots"));
  bundle = ParseFederatedBundle("other.example", two, {.max_bytes = 100});
  ASSERT_FALSE(bundle.ok());
  EXPECT_THAT(bundle.status().message(), HasSubstr("over the limit of 100"));
}

}  // namespace
}  // namespace meshlet::controlplane::federation
