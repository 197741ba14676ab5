#include "common/tls/certificate.h"

#include <openssl/base.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/tls/test_certificates.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::tls {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::LeafOptions;
using testing::TestCa;
using testing::TestCertificate;
using testing::TestKeyType;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/default/sa/frontend";

TEST(BoringSslTest, IsBoringSsl) {
#ifndef OPENSSL_IS_BORINGSSL
  FAIL() << "built against a TLS library other than BoringSSL";
#endif
  EXPECT_GT(BORINGSSL_API_VERSION, 0);
}

std::string WriteTempFile(const std::string& name, const std::string& contents) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
  FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  if (f != nullptr) {
    std::fwrite(contents.data(), 1, contents.size(), f);
    std::fclose(f);
  }
  return path;
}

class CertificateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new TestCa(*TestCa::Create("test root"));
    leaf_ = new TestCertificate(*ca_->Issue({.spiffe_id = kFrontend,
                                             .dns_names = {"frontend.default.svc"},
                                             .common_name = "frontend"}));
  }
  static void TearDownTestSuite() {
    delete leaf_;
    delete ca_;
  }
  static TestCa* ca_;
  static TestCertificate* leaf_;
};
TestCa* CertificateTest::ca_ = nullptr;
TestCertificate* CertificateTest::leaf_ = nullptr;

TEST_F(CertificateTest, ParsesLeafAndDescribesIt) {
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(leaf_->chain_pem);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 1u);
  const X509& cert = *chain->front();
  EXPECT_THAT(UriSans(cert), ElementsAre(kFrontend));
  EXPECT_THAT(DnsSans(cert), ElementsAre("frontend.default.svc"));
  absl::StatusOr<SpiffeId> id = ExtractSpiffeId(cert);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->ToString(), kFrontend);

  CertificateInfo info = DescribeCertificate(cert);
  EXPECT_EQ(info.spiffe_id, kFrontend);
  EXPECT_THAT(info.subject, HasSubstr("CN=frontend"));
  EXPECT_THAT(info.issuer, HasSubstr("CN=test root"));
  EXPECT_FALSE(info.is_ca);
  EXPECT_EQ(info.key_algorithm, KeyAlgorithm::kEcdsa);
  EXPECT_EQ(info.key_bits, 256);
  EXPECT_EQ(info.serial_hex, SerialNumberHex(cert));
  EXPECT_GE(info.serial_hex.size(), 16u);
  absl::Time now = absl::Now();
  EXPECT_LT(info.not_before, now);
  EXPECT_GT(info.not_before, now - absl::Hours(2));
  EXPECT_GT(info.not_after, now + absl::Hours(23));
  EXPECT_LT(info.not_after, now + absl::Hours(25));
}

TEST_F(CertificateTest, Sha256FingerprintIsTheDigestOfTheDerAndParsesInEverySpelling) {
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(ca_->cert_pem());
  ASSERT_TRUE(chain.ok()) << chain.status();
  // The DER is the PEM's base64 body; its digest, computed apart from the function under test.
  absl::string_view body = ca_->cert_pem();
  body = body.substr(body.find('\n') + 1);
  body = body.substr(0, body.find("-----END"));
  std::string der;
  ASSERT_TRUE(absl::Base64Unescape(absl::StrReplaceAll(body, {{"\n", ""}}), &der));
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(der.data()), der.size(), digest);
  const std::string hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  const std::string fingerprint = Sha256Fingerprint(*chain->front());
  EXPECT_EQ(fingerprint, absl::StrCat("sha256:", hex));

  // openssl's spelling: upper case, colons between the bytes.
  std::string openssl;
  for (size_t i = 0; i < hex.size(); i += 2) {
    absl::StrAppend(&openssl, i == 0 ? "" : ":", absl::AsciiStrToUpper(hex.substr(i, 2)));
  }
  for (const std::string& spelling :
       {fingerprint, hex, openssl, absl::StrCat("SHA256 Fingerprint=", openssl),
        absl::StrCat("sha256:", openssl, "\n")}) {
    absl::StatusOr<std::string> parsed = ParseSha256Fingerprint(spelling);
    ASSERT_TRUE(parsed.ok()) << spelling << ": " << parsed.status();
    EXPECT_EQ(*parsed, fingerprint) << spelling;
  }
  for (const std::string& bad :
       {std::string(""), std::string("sha256:"), hex.substr(2), absl::StrCat("sha1:", hex),
        absl::StrCat(hex, "00"), absl::StrCat("sha256:", std::string(64, 'g'))}) {
    absl::StatusOr<std::string> parsed = ParseSha256Fingerprint(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("64 hex digits")) << bad;
  }
}

TEST_F(CertificateTest, CaIsCa) {
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(ca_->cert_pem());
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_TRUE(IsCa(*chain->front()));
  EXPECT_TRUE(UriSans(*chain->front()).empty());
  EXPECT_EQ(ExtractSpiffeId(*chain->front()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CertificateTest, ParsesMultipleCertificatesInOrder) {
  absl::StatusOr<CertificateChain> chain =
      ParsePemCertificates(absl::StrCat(leaf_->chain_pem, "\n", ca_->cert_pem()));
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_FALSE(IsCa(*(*chain)[0]));
  EXPECT_TRUE(IsCa(*(*chain)[1]));
}

TEST_F(CertificateTest, RejectsGarbage) {
  EXPECT_THAT(ParsePemCertificates("").status().message(), HasSubstr("no PEM CERTIFICATE"));
  EXPECT_THAT(ParsePemCertificates("hello").status().message(), HasSubstr("no PEM CERTIFICATE"));
  EXPECT_THAT(ParsePemCertificates(leaf_->key_pem).status().message(),
              HasSubstr("no PEM CERTIFICATE"));
  std::string corrupt = leaf_->chain_pem;
  corrupt[corrupt.size() / 2] = '!';
  EXPECT_THAT(ParsePemCertificates(corrupt).status().message(), HasSubstr("malformed"));
  // A good certificate followed by a truncated one is an error, not a silent partial chain.
  std::string truncated = absl::StrCat(leaf_->chain_pem, ca_->cert_pem().substr(0, 200));
  EXPECT_FALSE(ParsePemCertificates(truncated).ok());
  std::string bad_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  EXPECT_FALSE(ParsePemCertificates(bad_der).ok());
}

TEST_F(CertificateTest, ParsesEcdsaKeyInPkcs8AndSec1) {
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = ParsePemPrivateKey(leaf_->key_pem);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(EVP_PKEY_id(key->get()), EVP_PKEY_EC);
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(leaf_->chain_pem);
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(CheckKeyMatchesCertificate(*chain->front(), **key).ok());

  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  ASSERT_TRUE(PEM_write_bio_ECPrivateKey(bio.get(), EVP_PKEY_get0_EC_KEY(key->get()), nullptr,
                                         nullptr, 0, nullptr, nullptr));
  const uint8_t* data;
  size_t len;
  BIO_mem_contents(bio.get(), &data, &len);
  std::string sec1(reinterpret_cast<const char*>(data), len);
  ASSERT_THAT(sec1, HasSubstr("BEGIN EC PRIVATE KEY"));
  EXPECT_TRUE(ParsePemPrivateKey(sec1).ok());
}

TEST_F(CertificateTest, ParsesRsaKeyAndRejectsWeakOnes) {
  absl::StatusOr<TestCertificate> rsa =
      ca_->Issue({.spiffe_id = kFrontend, .key_type = TestKeyType::kRsa2048});
  ASSERT_TRUE(rsa.ok()) << rsa.status();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = ParsePemPrivateKey(rsa->key_pem);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(EVP_PKEY_id(key->get()), EVP_PKEY_RSA);
  EXPECT_EQ(DescribeCertificate(*ParsePemCertificates(rsa->chain_pem)->front()).key_algorithm,
            KeyAlgorithm::kRsa);

  bssl::UniquePtr<RSA> weak(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  ASSERT_TRUE(BN_set_word(e.get(), RSA_F4));
  ASSERT_TRUE(RSA_generate_key_ex(weak.get(), 1024, e.get(), nullptr));
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  ASSERT_TRUE(
      PEM_write_bio_RSAPrivateKey(bio.get(), weak.get(), nullptr, nullptr, 0, nullptr, nullptr));
  const uint8_t* data;
  size_t len;
  BIO_mem_contents(bio.get(), &data, &len);
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> weak_key =
      ParsePemPrivateKey(std::string(reinterpret_cast<const char*>(data), len));
  EXPECT_THAT(weak_key.status().message(), HasSubstr("at least 2048"));
}

TEST_F(CertificateTest, KeyErrorsAreClear) {
  EXPECT_THAT(ParsePemPrivateKey("").status().message(), HasSubstr("no PEM private key"));
  EXPECT_THAT(ParsePemPrivateKey(leaf_->chain_pem).status().message(),
              HasSubstr("no PEM private key"));
  std::string corrupt = leaf_->key_pem;
  corrupt[corrupt.size() / 2] = '#';
  EXPECT_FALSE(ParsePemPrivateKey(corrupt).ok());

  absl::StatusOr<TestCertificate> other = ca_->Issue({.spiffe_id = kFrontend});
  ASSERT_TRUE(other.ok());
  EXPECT_THAT(CheckKeyMatchesCertificate(*ParsePemCertificates(leaf_->chain_pem)->front(),
                                         **ParsePemPrivateKey(other->key_pem))
                  .message(),
              HasSubstr("does not match"));
}

TEST_F(CertificateTest, SpiffeIdNeedsExactlyOneUriSan) {
  absl::StatusOr<TestCertificate> two =
      ca_->Issue({.spiffe_id = kFrontend, .extra_uri_sans = {"spiffe://cluster.local/ns/x/sa/y"}});
  ASSERT_TRUE(two.ok());
  EXPECT_THAT(ExtractSpiffeId(*ParsePemCertificates(two->chain_pem)->front()).status().message(),
              HasSubstr("2 URI SANs"));
  absl::StatusOr<TestCertificate> https = ca_->Issue({.spiffe_id = "https://example.com/x"});
  ASSERT_TRUE(https.ok());
  EXPECT_THAT(ExtractSpiffeId(*ParsePemCertificates(https->chain_pem)->front()).status().message(),
              HasSubstr("not a SPIFFE id"));
}

TEST_F(CertificateTest, AttestationExtensionRoundTrips) {
  absl::StatusOr<TestCertificate> attested =
      ca_->Issue({.spiffe_id = kFrontend, .attestation = "join-token:0123456789abcdef"});
  ASSERT_TRUE(attested.ok()) << attested.status();
  EXPECT_EQ(AttestationOf(*ParsePemCertificates(attested->chain_pem)->front()),
            "join-token:0123456789abcdef");
  // The extension's OID is kAttestationExtensionOid: its DER, computed here from the text.
  {
    absl::StatusOr<CertificateChain> chain = ParsePemCertificates(attested->chain_pem);
    ASSERT_TRUE(chain.ok());
    const X509& leaf = *chain->front();
    std::string expected;
    std::vector<std::string> arcs = absl::StrSplit(kAttestationExtensionOid, '.');
    ASSERT_EQ(arcs.size(), 3u);
    ASSERT_EQ(arcs[0], "2");
    unsigned __int128 arc = 0;
    for (char c : arcs[2]) arc = arc * 10 + static_cast<unsigned>(c - '0');
    std::string base128;
    base128.insert(base128.begin(), static_cast<char>(arc & 0x7f));
    for (arc >>= 7; arc != 0; arc >>= 7) {
      base128.insert(base128.begin(), static_cast<char>((arc & 0x7f) | 0x80));
    }
    expected = absl::StrCat(std::string(1, static_cast<char>(80 + std::stoi(arcs[1]))), base128);
    bool found = false;
    for (int i = 0; i < X509_get_ext_count(&leaf); ++i) {
      const ASN1_OBJECT* oid = X509_EXTENSION_get_object(X509_get_ext(&leaf, i));
      const std::string der(reinterpret_cast<const char*>(OBJ_get0_data(oid)), OBJ_length(oid));
      found |= der == expected;
    }
    EXPECT_TRUE(found) << "no extension with the OID " << kAttestationExtensionOid;
  }
  // None on a certificate without it.
  EXPECT_EQ(AttestationOf(*ParsePemCertificates(leaf_->chain_pem)->front()), "");
  // Out of bounds values are refused when building.
  bssl::UniquePtr<X509> cert(X509_new());
  EXPECT_FALSE(AddAttestation(*cert, "").ok());
  EXPECT_FALSE(AddAttestation(*cert, std::string(kMaxAttestationBytes + 1, 'x')).ok());
  EXPECT_TRUE(AddAttestation(*cert, std::string(kMaxAttestationBytes, 'x')).ok());
}

TEST_F(CertificateTest, ExpiredCertificateTimes) {
  absl::StatusOr<TestCertificate> expired = ca_->Issue({.spiffe_id = kFrontend,
                                                        .not_before_offset = -absl::Hours(48),
                                                        .not_after_offset = -absl::Hours(24)});
  ASSERT_TRUE(expired.ok());
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(expired->chain_pem);
  ASSERT_TRUE(chain.ok());
  EXPECT_LT(NotAfter(*chain->front()), absl::Now() - absl::Hours(23));
}

TEST_F(CertificateTest, LoadsFromFiles) {
  std::string cert_path = WriteTempFile("cert.pem", leaf_->chain_pem);
  std::string key_path = WriteTempFile("key.pem", leaf_->key_pem);
  absl::StatusOr<CertificateChain> chain = LoadPemCertificatesFile(cert_path);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->size(), 1u);
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = LoadPemPrivateKeyFile(key_path);
  ASSERT_TRUE(key.ok()) << key.status();

  absl::StatusOr<CertificateChain> missing = LoadPemCertificatesFile(cert_path + ".missing");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("cert.pem.missing"));
  // Errors about file contents name the file.
  EXPECT_THAT(LoadPemCertificatesFile(key_path).status().message(), HasSubstr("key.pem"));
  std::string big_path = WriteTempFile("big.pem", std::string((1 << 20) + 10, 'x'));
  EXPECT_THAT(LoadPemCertificatesFile(big_path).status().message(), HasSubstr("1 MiB"));
}

TEST_F(CertificateTest, IntermediateChainPem) {
  absl::StatusOr<TestCa> intermediate = ca_->CreateIntermediate("test intermediate");
  ASSERT_TRUE(intermediate.ok()) << intermediate.status();
  absl::StatusOr<TestCertificate> leaf = intermediate->Issue({.spiffe_id = kFrontend});
  ASSERT_TRUE(leaf.ok());
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(leaf->chain_pem);
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_THAT(IssuerName(*(*chain)[0]), HasSubstr("CN=test intermediate"));
  EXPECT_THAT(IssuerName(*(*chain)[1]), HasSubstr("CN=test root"));
}

}  // namespace
}  // namespace meshlet::tls
