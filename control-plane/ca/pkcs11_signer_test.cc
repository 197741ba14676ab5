#include "control-plane/ca/pkcs11_signer.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/string_view.h"
#include "common/tls/certificate.h"
#include "common/tls/test_certificates.h"
#include "control-plane/ca/authority.h"
#include "control-plane/ca/test_csr.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

std::string WriteTemp(const std::string& name, const std::string& content) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

TEST(Pkcs11SignerTest, MissingModuleIsNamed) {
  Pkcs11SignerOptions o;
  o.module_path = "/nonexistent/libno-such-pkcs11.so";
  o.token_label = "meshlet-ca";
  o.key_label = "ca";
  o.pin_file = WriteTemp("pin", "1234\n");
  auto signer = NewPkcs11Signer(o);
  ASSERT_EQ(signer.status().code(), absl::StatusCode::kNotFound) << signer.status();
  EXPECT_NE(
      signer.status().message().find("PKCS#11 module /nonexistent/libno-such-pkcs11.so not found"),
      absl::string_view::npos)
      << signer.status();
}

TEST(Pkcs11SignerTest, PinFileProblemsAreClearAndNeverEchoThePin) {
  Pkcs11SignerOptions o;
  o.module_path = "/nonexistent/libno-such-pkcs11.so";
  o.pin_file = "/nonexistent/pin";
  EXPECT_EQ(NewPkcs11Signer(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.pin_file = WriteTemp("empty-pin", "\n");
  EXPECT_EQ(NewPkcs11Signer(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.max_pin_bytes = 4;
  o.pin_file = WriteTemp("long-pin", "secret-pin-123\n");
  auto too_long = NewPkcs11Signer(o);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(too_long.status().message().find("secret-pin-123"), absl::string_view::npos);
}

// The test module (fake_pkcs11_module.cc) holds the test CA's key; the path comes from the
// BUILD file's data dependency.
class FakeModuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = tls::testing::TestCa::Create("pkcs11 root");
    ASSERT_TRUE(ca.ok());
    cert_pem_ = ca->cert_pem();
    setenv("FAKE_PKCS11_KEY_FILE", WriteTemp("token-key.pem", ca->key_pem()).c_str(), 1);
    unsetenv("FAKE_PKCS11_FAIL_SIGNS");
    options_.module_path = std::string(std::getenv("TEST_SRCDIR")) + "/" +
                           std::getenv("TEST_WORKSPACE") +
                           "/control-plane/ca/libfake_pkcs11_module.so";
    options_.token_label = "meshlet-test";
    options_.key_label = "ca";
    options_.pin_file = WriteTemp("pin", "1234\n");
  }
  std::string cert_pem_;
  Pkcs11SignerOptions options_;
};

TEST_F(FakeModuleTest, TokenKeyAndPinErrorsAreNamed) {
  Pkcs11SignerOptions o = options_;
  o.token_label = "no-such-token";
  EXPECT_EQ(NewPkcs11Signer(o).status().code(), absl::StatusCode::kNotFound);
  o = options_;
  o.key_label = "other";
  auto no_key = NewPkcs11Signer(o);
  EXPECT_EQ(no_key.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_key.status().message().find("no private key labelled \"other\""),
            absl::string_view::npos);
  o = options_;
  o.pin_file = WriteTemp("wrong-pin", "9999\n");
  auto wrong = NewPkcs11Signer(o);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(wrong.status().message().find("9999"), absl::string_view::npos);
}

TEST_F(FakeModuleTest, CaSignsThroughTheTokenAndReopensASessionAfterATokenError) {
  // The first C_Sign fails as a token that dropped its sessions: re-opened and retried.
  setenv("FAKE_PKCS11_FAIL_SIGNS", "1", 1);
  auto signer = NewPkcs11Signer(options_);
  ASSERT_TRUE(signer.ok()) << signer.status();
  auto ca = CertificateAuthority::FromPemWithSigner(cert_pem_, *std::move(signer), "", {});
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto csr = testing::MakeCsr();
  ASSERT_TRUE(csr.ok());
  auto id = tls::SpiffeId::Parse("spiffe://cluster.local/ns/a/sa/b");
  ASSERT_TRUE(id.ok());
  auto issued = (*ca)->Sign(csr->csr_pem, *id, absl::Hours(1));
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto leaf = tls::ParsePemCertificates(issued->certificate_pem);
  auto root = tls::ParsePemCertificates(cert_pem_);
  ASSERT_TRUE(leaf.ok() && root.ok());
  bssl::UniquePtr<EVP_PKEY> root_key(X509_get_pubkey((*root)[0].get()));
  EXPECT_EQ(X509_verify((*leaf)[0].get(), root_key.get()), 1);
}

}  // namespace
}  // namespace meshlet::controlplane::ca
