// CertificateManager on a real event loop with a scripted CA (a CSR signer built on a test root),
// short-lived certificates, and real time: rotation at about half the lifetime, retries after
// failures, keeping the current certificate when renewals fail, and refusing a certificate for
// another identity; starting with a certificate taken over from another process.

#include "sidecar/identity/certificate_manager.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <deque>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "common/tls/certificate.h"
#include "common/tls/test_certificates.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::identity {
namespace {

constexpr char kId[] = "spiffe://cluster.local/ns/default/sa/frontend";

// Signs CSRs like the control plane's CA would (only what this test needs).
class ScriptedCa : public CertificateSigner {
 public:
  explicit ScriptedCa(event::Loop& loop) : loop_(loop) {
    auto root = tls::testing::TestCa::Create("scripted root");
    EXPECT_TRUE(root.ok());
    root_pem_ = root->cert_pem();
    root_cert_ = std::move((*tls::ParsePemCertificates(root->cert_pem()))[0]);
    root_key_ = *tls::ParsePemPrivateKey(root->key_pem());
  }

  void RequestCertificate(const std::string& csr_pem, const tls::SpiffeId& identity,
                          absl::Duration ttl,
                          std::function<void(absl::StatusOr<SignedCertificate>)> done) override {
    ++requests;
    requested_ttl = ttl;
    absl::StatusOr<SignedCertificate> answer = absl::UnavailableError("CA unreachable");
    if (failures_to_inject > 0) {
      --failures_to_inject;
    } else {
      answer = Sign(csr_pem, issue_as.empty() ? identity.ToString() : issue_as);
    }
    loop_.Post([done = std::move(done), answer = std::move(answer)]() mutable {
      done(std::move(answer));
    });
  }

  int requests = 0;
  int failures_to_inject = 0;
  absl::Duration lifetime = absl::Seconds(2);
  absl::Duration requested_ttl;
  std::string issue_as;  // overrides the identity, for the wrong-identity test

 private:
  absl::StatusOr<SignedCertificate> Sign(const std::string& csr_pem, const std::string& uri) {
    bssl::UniquePtr<BIO> bio(
        BIO_new_mem_buf(csr_pem.data(), static_cast<ptrdiff_t>(csr_pem.size())));
    bssl::UniquePtr<X509_REQ> req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (req == nullptr) return absl::InvalidArgumentError("bad CSR");
    bssl::UniquePtr<EVP_PKEY> key(X509_REQ_get_pubkey(req.get()));
    bssl::UniquePtr<X509> cert(X509_new());
    X509_set_version(cert.get(), X509_VERSION_3);
    uint8_t serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] = (serial[0] & 0x7f) | 0x01;
    bssl::UniquePtr<BIGNUM> bn(BN_bin2bn(serial, sizeof(serial), nullptr));
    BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
    const absl::Time now = absl::Now();
    const absl::Time not_after = now + lifetime;
    ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(now - absl::Minutes(5)));
    ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
    X509_set_issuer_name(cert.get(), X509_get_subject_name(root_cert_.get()));
    X509_set_pubkey(cert.get(), key.get());
    bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
    bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    bssl::UniquePtr<ASN1_IA5STRING> value(ASN1_IA5STRING_new());
    ASN1_STRING_set(value.get(), uri.data(), static_cast<int>(uri.size()));
    GENERAL_NAME_set0_value(name.get(), GEN_URI, value.release());
    bssl::PushToStack(names.get(), std::move(name));
    X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), 1, X509V3_ADD_DEFAULT);
    if (!X509_sign(cert.get(), root_key_.get(), EVP_sha256())) return absl::InternalError("sign");
    bssl::UniquePtr<BIO> out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(out.get(), cert.get());
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(out.get(), &data, &len);
    return SignedCertificate{
        .certificate_chain_pem = std::string(reinterpret_cast<const char*>(data), len),
        .trust_bundle_pem = root_pem_,
        .serial_hex = tls::SerialNumberHex(*cert),
        .not_after = absl::FromUnixSeconds(absl::ToUnixSeconds(not_after))};
  }

  event::Loop& loop_;
  std::string root_pem_;
  bssl::UniquePtr<X509> root_cert_;
  bssl::UniquePtr<EVP_PKEY> root_key_;
};

class CertificateManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<CertificateManager> Make(CertificateManagerOptions options = Fast()) {
    return std::make_unique<CertificateManager>(
        loop_, ca_, *tls::SpiffeId::Parse(kId), options,
        [this](const WorkloadCertificate& cert) { rotated_.push_back(cert); }, &stats_);
  }

  static CertificateManagerOptions Fast() {
    CertificateManagerOptions options;
    options.ttl = absl::Seconds(2);
    options.rotation.retry_backoff = {.base = std::chrono::milliseconds(20),
                                      .cap = std::chrono::milliseconds(40)};
    options.gauge_refresh_interval = std::chrono::milliseconds(50);
    return options;
  }

  int64_t Gauge(const std::string& name) {
    const auto snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name);
    return series == nullptr ? INT64_MIN : series->gauge;
  }
  uint64_t Count(const std::string& name) {
    const auto snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name);
    return series == nullptr ? 0 : series->counter;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  ScriptedCa ca_{loop_};
  std::vector<WorkloadCertificate> rotated_;
};

TEST_F(CertificateManagerTest, RotatesAtAboutHalfTheLifetimeWithAFreshKey) {
  auto manager = Make();
  manager->Start();
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 1; }, std::chrono::seconds(5)));
  const absl::Time first_at = absl::Now();
  EXPECT_EQ(ca_.requested_ttl, absl::Seconds(2));
  const WorkloadCertificate first = rotated_[0];  // a copy: rotated_ grows below
  EXPECT_EQ(first.spiffe_id, kId);
  auto chain = tls::ParsePemCertificates(first.certificate_chain_pem);
  auto key = tls::ParsePemPrivateKey(first.private_key_pem);
  ASSERT_TRUE(chain.ok() && key.ok());
  EXPECT_TRUE(tls::CheckKeyMatchesCertificate(*chain->front(), **key).ok());
  EXPECT_EQ(manager->current()->serial_hex, first.serial_hex);
  EXPECT_GE(Gauge("meshlet_workload_certificate_expiry_seconds"), 0);
  EXPECT_LE(Gauge("meshlet_workload_certificate_expiry_seconds"), 2);

  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 2; }, std::chrono::seconds(5)));
  // 50 % +- 10 % of the remaining lifetime (which is 1-2 s: notAfter has whole seconds).
  const absl::Duration waited = absl::Now() - first_at;
  EXPECT_GE(waited, absl::Milliseconds(300)) << waited;
  EXPECT_LE(waited, absl::Milliseconds(1900))
      << waited;  // before expiry, with slack for a busy machine
  EXPECT_NE(rotated_[1].serial_hex, first.serial_hex);
  EXPECT_NE(rotated_[1].private_key_pem, first.private_key_pem);  // a new key every time
  EXPECT_EQ(Count("meshlet_workload_certificate_rotations_total"), 2u);
}

TEST_F(CertificateManagerTest, RenewsEarlyWhenTheControlPlaneAsks) {
  ca_.lifetime = absl::Hours(1);  // the usual renewal is half an hour away
  auto manager = Make();
  manager->RenewEarly(absl::ZeroDuration());  // before the first certificate: nothing to renew
  manager->Start();
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 1; }, std::chrono::seconds(5)));
  const std::string first = rotated_[0].serial_hex;
  manager->RenewEarly(absl::Milliseconds(50));
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 2; }, std::chrono::seconds(5)))
      << "no renewal after the early-renewal request";
  EXPECT_NE(rotated_[1].serial_hex, first);
  EXPECT_EQ(Count("meshlet_workload_certificate_early_renewals_total"), 2u);
  EXPECT_EQ(ca_.requests, 2);
}

TEST_F(CertificateManagerTest, RetriesUntilTheFirstCertificateArrives) {
  ca_.failures_to_inject = 3;
  auto manager = Make();
  manager->Start();
  EXPECT_EQ(manager->current(), nullptr);
  ASSERT_TRUE(loop_.RunUntil([&] { return ca_.requests == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(manager->last_error(), "CA unreachable");
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(manager->last_error(), "");  // cleared by the success
  EXPECT_EQ(manager->rotations(), 1u);
  EXPECT_EQ(ca_.requests, 4);
  EXPECT_EQ(Count("meshlet_workload_certificate_request_failures_total"), 3u);
  EXPECT_EQ(manager->rotation().consecutive_failures(), 0u);
}

TEST_F(CertificateManagerTest, KeepsTheCurrentCertificateWhileRenewalsFail) {
  auto manager = Make();
  manager->Start();
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 1; }, std::chrono::seconds(5)));
  const std::string serial = manager->current()->serial_hex;
  ca_.failures_to_inject = 1000;
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return manager->rotation().state() == CertificateRotation::State::kRetryWaiting; },
      std::chrono::seconds(5)));
  EXPECT_EQ(manager->current()->serial_hex, serial);
  EXPECT_TRUE(manager->rotation().has_valid_certificate());
  // Until it really expires.
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return manager->rotation().state() == CertificateRotation::State::kExpired; },
      std::chrono::seconds(5)));
  EXPECT_EQ(rotated_.size(), 1u);
  // Still retrying, paced by the backoff (uniform in [0, 40 ms]: ~15 attempts in 300 ms, not a
  // busy loop).
  const int before = ca_.requests;
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_GT(ca_.requests, before);
  EXPECT_LE(ca_.requests - before, 100);
  EXPECT_LE(Gauge("meshlet_workload_certificate_expiry_seconds"), 0);
  // The CA comes back: a new certificate.
  ca_.failures_to_inject = 0;
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(manager->rotation().state(), CertificateRotation::State::kValid);
}

TEST_F(CertificateManagerTest, RefusesACertificateForAnotherIdentity) {
  ca_.issue_as = "spiffe://cluster.local/ns/default/sa/admin";
  auto manager = Make();
  manager->Start();
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return Count("meshlet_workload_certificate_request_failures_total") >= 1; },
      std::chrono::seconds(5)));
  EXPECT_EQ(manager->current(), nullptr);
  EXPECT_TRUE(rotated_.empty());
}

TEST_F(CertificateManagerTest, DestroyingTheManagerDropsAPendingAnswer) {
  auto manager = Make();
  manager->Start();  // the answer is posted to a later loop turn
  manager.reset();
  loop_.RunUntilIdle();
  EXPECT_TRUE(rotated_.empty());
  EXPECT_EQ(ca_.requests, 1);
}

// The hand-over: a certificate another process held is used at once, without asking the CA, and
// renewed on the schedule; one for another identity, without its key or expired is refused.
TEST_F(CertificateManagerTest, StartsWithACertificateTakenOverAndRenewsIt) {
  auto first = Make();
  first->Start();
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 1; }, std::chrono::seconds(5)));
  const WorkloadCertificate held = *first->current();
  first.reset();
  rotated_.clear();
  const int requests = ca_.requests;
  const uint64_t rotations = Count("meshlet_workload_certificate_rotations_total");

  WorkloadCertificate keyless = held;
  keyless.private_key_pem.clear();
  auto refused = Make();
  EXPECT_FALSE(refused->StartWith(keyless).ok());
  WorkloadCertificate expired = held;
  expired.not_after = absl::Now() - absl::Seconds(1);
  absl::Status status = refused->StartWith(expired);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(refused->current(), nullptr);
  refused.reset();
  auto wrong = std::make_unique<CertificateManager>(
      loop_, ca_, *tls::SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/admin"), Fast(),
      [](const WorkloadCertificate&) {});
  status = wrong->StartWith(held);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;

  // An expiry later than the leaf's (a predecessor's mistake) is the leaf's: renewal is not put
  // off past it.
  WorkloadCertificate late = held;
  late.not_after = held.not_after + absl::Hours(24 * 365);
  auto corrected = Make();
  ASSERT_TRUE(corrected->StartWith(late).ok());
  EXPECT_EQ(corrected->current()->not_after, held.not_after);
  corrected.reset();
  rotated_.clear();

  auto manager = Make();
  ASSERT_TRUE(manager->StartWith(held).ok());
  ASSERT_EQ(rotated_.size(), 1u);
  EXPECT_EQ(rotated_[0].serial_hex, held.serial_hex);
  EXPECT_EQ(manager->current()->private_key_pem, held.private_key_pem);
  EXPECT_EQ(ca_.requests, requests);  // no CA round trip
  EXPECT_EQ(Count("meshlet_workload_certificate_rotations_total"), rotations);
  // Renewed from the CA before it expires.
  ASSERT_TRUE(loop_.RunUntil([&] { return rotated_.size() == 2; }, std::chrono::seconds(5)));
  EXPECT_NE(rotated_[1].serial_hex, held.serial_hex);
  EXPECT_EQ(ca_.requests, requests + 1);
}

}  // namespace
}  // namespace meshlet::sidecar::identity
