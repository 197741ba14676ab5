#include "control-plane/ca/kubernetes_csr_signer.h"

#include <string>

#include "absl/strings/match.h"
#include "common/base/clock.h"
#include "common/tls/spiffe.h"
#include "control-plane/ca/authority.h"
#include "control-plane/ca/test_csr.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

constexpr char kId[] = "spiffe://cluster.local/ns/shop/sa/web";

// What an external signer answers stands in for here: a CA of the test's own signs the CSRs.
class CsrSignerChecksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/csr-signer-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    auto ca = CertificateAuthority::LoadOrGenerateRoot(dir_, {}, RealClock::Get());
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
  }
  std::string Issue(const std::string& csr_pem, const std::string& id) {
    absl::StatusOr<IssuedCertificate> issued =
        ca_->Sign(csr_pem, *tls::SpiffeId::Parse(id), absl::Hours(1));
    EXPECT_TRUE(issued.ok()) << issued.status();
    return issued.ok() ? issued->chain_pem : "";
  }
  absl::Status Check(const std::string& chain, const std::string& csr, const std::string& bundle) {
    absl::Time not_before, not_after;
    std::string serial;
    return CheckIssuedChain(chain, csr, kId, bundle, absl::Now(), &not_before, &not_after, &serial);
  }

  std::string dir_;
  std::unique_ptr<CertificateAuthority> ca_;
};

TEST_F(CsrSignerChecksTest, ARequestMustNameExactlyTheAttestedIdentity) {
  auto good = testing::MakeCsr({.uri_sans = {kId}});
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(CheckCsrForSigner(good->csr_pem, kId).ok());
  auto other = testing::MakeCsr({.uri_sans = {"spiffe://cluster.local/ns/shop/sa/admin"}});
  absl::Status refused = CheckCsrForSigner(other->csr_pem, kId);
  EXPECT_TRUE(absl::IsInvalidArgument(refused));
  EXPECT_TRUE(absl::StrContains(refused.message(), "must be exactly the URI " + std::string(kId)))
      << refused;
  auto two = testing::MakeCsr({.uri_sans = {kId, "spiffe://cluster.local/ns/shop/sa/admin"}});
  EXPECT_FALSE(CheckCsrForSigner(two->csr_pem, kId).ok());
  auto none = testing::MakeCsr({});
  EXPECT_FALSE(CheckCsrForSigner(none->csr_pem, kId).ok());
  auto forged = testing::MakeCsr({.uri_sans = {kId}, .corrupt_signature = true});
  EXPECT_FALSE(CheckCsrForSigner(forged->csr_pem, kId).ok());
}

TEST_F(CsrSignerChecksTest, TheAnswerMustBeALeafForTheKeyAndIdentityUnderTheBundle) {
  auto csr = testing::MakeCsr({.uri_sans = {kId}});
  ASSERT_TRUE(csr.ok());
  const std::string bundle = ca_->trust_bundle_pem();
  const std::string chain = Issue(csr->csr_pem, kId);
  absl::Time not_before, not_after;
  std::string serial;
  EXPECT_TRUE(CheckIssuedChain(chain, csr->csr_pem, kId, bundle, absl::Now(), &not_before,
                               &not_after, &serial)
                  .ok());
  EXPECT_FALSE(serial.empty());
  EXPECT_GT(not_after, absl::Now());

  // Another key's certificate (a signer that mixed requests up).
  auto other_key = testing::MakeCsr({.uri_sans = {kId}});
  EXPECT_TRUE(
      absl::StrContains(Check(Issue(other_key->csr_pem, kId), csr->csr_pem, bundle).message(),
                        "not for the requested key"));
  // Another identity.
  EXPECT_TRUE(absl::StrContains(
      Check(Issue(csr->csr_pem, "spiffe://cluster.local/ns/shop/sa/admin"), csr->csr_pem, bundle)
          .message(),
      "does not name exactly"));
  // A root the bundle does not hold.
  auto stranger =
      CertificateAuthority::LoadOrGenerateRoot(dir_ + "-stranger", {}, RealClock::Get());
  ASSERT_TRUE(stranger.ok());
  absl::Status untrusted = Check(chain, csr->csr_pem, (*stranger)->trust_bundle_pem());
  EXPECT_TRUE(absl::StrContains(untrusted.message(), "does not verify up to a root")) << untrusted;
  EXPECT_TRUE(absl::StrContains(untrusted.message(), "--ca-trust-bundle")) << untrusted;
  // Not a certificate at all.
  EXPECT_FALSE(Check("garbage", csr->csr_pem, bundle).ok());
}

}  // namespace
}  // namespace meshlet::controlplane::ca
