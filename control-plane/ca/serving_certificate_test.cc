#include "control-plane/ca/serving_certificate.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "common/tls/certificate.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

// ---- RenewalSchedule, on fake time ----------------------------------------------------------

TEST(RenewalScheduleTest, RenewsAtHalfTheLifetimeLeftAtIssue) {
  FakeClock clock;
  RenewalSchedule schedule({}, clock);
  EXPECT_EQ(schedule.Issued(clock.WallNow() + absl::Hours(24)), hours(12));
  EXPECT_EQ(schedule.Issued(clock.WallNow() + absl::Seconds(4)), seconds(2));
  // Measured from the moment of issue, whenever that is.
  clock.Advance(hours(100));
  EXPECT_EQ(schedule.Issued(clock.WallNow() + absl::Hours(1)), std::chrono::minutes(30));
}

TEST(RenewalScheduleTest, NeverSoonerThanTheMinimumDelay) {
  FakeClock clock;
  RenewalSchedule schedule({}, clock);
  // Cut short by a signing certificate about to expire, or already expired.
  EXPECT_EQ(schedule.Issued(clock.WallNow() + absl::Milliseconds(600)), seconds(1));
  EXPECT_EQ(schedule.Issued(clock.WallNow() - absl::Seconds(5)), seconds(1));
  RenewalSchedule custom({.renew_at_fraction = 0.8, .min_delay = milliseconds(10)}, clock);
  EXPECT_EQ(custom.Issued(clock.WallNow() + absl::Seconds(10)), seconds(8));
  EXPECT_EQ(custom.Issued(clock.WallNow() + absl::Milliseconds(5)), milliseconds(10));
}

TEST(RenewalScheduleTest, FailuresBackOffExponentiallyUpToTheCapAndAnIssueResetsThem) {
  FakeClock clock;
  RenewalSchedule schedule({}, clock);
  std::vector<Duration> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(schedule.Failed());
  EXPECT_EQ(delays, (std::vector<Duration>{seconds(1), seconds(2), seconds(4), seconds(8),
                                           seconds(16), seconds(30), seconds(30), seconds(30)}));
  EXPECT_EQ(schedule.consecutive_failures(), 8);
  schedule.Issued(clock.WallNow() + absl::Hours(1));
  EXPECT_EQ(schedule.consecutive_failures(), 0);
  EXPECT_EQ(schedule.Failed(), seconds(1));
  // A long run of failures does not overflow.
  for (int i = 0; i < 200; ++i) schedule.Failed();
  EXPECT_EQ(schedule.Failed(), seconds(30));
}

// ---- Flags ----------------------------------------------------------------------------------

absl::StatusOr<ServingCertificateOptions> Parse(const std::vector<std::string>& args) {
  ServingCertificateOptions options;
  absl::StatusOr<flags::ParsedArgs> parsed = flags::Parse(ServingCertificateFlags(options), args);
  if (!parsed.ok()) return parsed.status();
  if (absl::Status checked = CheckServingCertificateFlags(options, absl::Hours(24));
      !checked.ok()) {
    return checked;
  }
  return options;
}

TEST(ServingCertificateFlagsTest, EveryFlag) {
  absl::StatusOr<ServingCertificateOptions> options =
      Parse({"--identity-namespace=mesh", "--identity-service-account", "cp.v2",
             "--xds-dns-names=cp.example.org,CP,localhost"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->namespace_, "mesh");
  EXPECT_EQ(options->service_account, "cp.v2");
  EXPECT_EQ(options->dns_names, (std::vector<std::string>{"cp.example.org", "CP", "localhost"}));
}

TEST(ServingCertificateFlagsTest, ErrorsNameTheFlag) {
  for (const auto& [args, expected] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--identity-namespace=Mesh"}, "--identity-namespace=\"Mesh\": must be a namespace"},
           {{"--identity-namespace="}, "--identity-namespace=\"\": must be a namespace"},
           {{"--identity-service-account=a/b"},
            "--identity-service-account=\"a/b\": must be a service account name"},
           {{"--xds-dns-names=a,,b"}, "--xds-dns-names=\"a,,b\": \"\" is not a host name"},
           {{"--xds-dns-names=a b"}, "--xds-dns-names=\"a b\": \"a b\" is not a host name"},
           {{"--xds-dns-names="}, "--xds-dns-names=\"\": \"\" is not a host name"},
       }) {
    absl::StatusOr<ServingCertificateOptions> options = Parse(args);
    ASSERT_FALSE(options.ok()) << expected;
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(options.status().message().find(expected), std::string::npos) << options.status();
  }
}

TEST(ServingCertificateFlagsTest, NamespaceDefaultsToThePodsAndNamesFollowIt) {
  ::unsetenv("POD_NAMESPACE");
  EXPECT_EQ(DefaultServingCertificateOptions().namespace_, "meshlet-system");
  ::setenv("POD_NAMESPACE", "", 1);
  EXPECT_EQ(DefaultServingCertificateOptions().namespace_, "meshlet-system");
  ::setenv("POD_NAMESPACE", "mesh-ops", 1);
  ServingCertificateOptions options = DefaultServingCertificateOptions();
  EXPECT_EQ(options.namespace_, "mesh-ops");
  EXPECT_TRUE(CheckServingCertificateFlags(options, absl::Hours(24)).ok());
  // A bad value from the environment is named with the flag that would override it.
  ::setenv("POD_NAMESPACE", "Not_A_Label", 1);
  absl::Status bad =
      CheckServingCertificateFlags(DefaultServingCertificateOptions(), absl::Hours(24));
  EXPECT_NE(bad.message().find("--identity-namespace=\"Not_A_Label\" (from $POD_NAMESPACE)"),
            std::string::npos)
      << bad;
  ::unsetenv("POD_NAMESPACE");
  EXPECT_EQ(DefaultServingDnsNames("mesh-ops"),
            (std::vector<std::string>{"meshlet-control-plane", "meshlet-control-plane.mesh-ops",
                                      "meshlet-control-plane.mesh-ops.svc",
                                      "meshlet-control-plane.mesh-ops.svc.cluster.local"}));
}

// X.509 times are whole seconds and renewals at least a second apart: a shorter lifetime would
// serve certificates that expire before their renewal.
TEST(ServingCertificateFlagsTest, TheLifetimeIsAtLeastTwoSeconds) {
  EXPECT_TRUE(CheckServingCertificateFlags({}, absl::Seconds(2)).ok());
  absl::Status short_lived = CheckServingCertificateFlags({}, absl::Milliseconds(1500));
  EXPECT_EQ(short_lived.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_lived.message().find("--cert-ttl=1.5s: the discovery port's own certificate has "
                                       "this lifetime and needs at least 2s"),
            std::string::npos)
      << short_lived;
}

// ---- ServingCertificate on a real loop, with a real CA --------------------------------------

constexpr char kControlPlaneId[] =
    "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane";

class ServingCertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/ca.XXXXXX");
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    // 2-second certificates: renewed every second.
    auto authority = CertificateAuthority::LoadOrGenerateRoot(
        dir, {.default_ttl = absl::Seconds(2), .max_ttl = absl::Seconds(2)});
    ASSERT_TRUE(authority.ok()) << authority.status();
    authority_ = *std::move(authority);
  }

  std::unique_ptr<ServingCertificate> Make(ServingCertificateOptions options = {}) {
    options.renewal.retry_base = milliseconds(100);
    return std::make_unique<ServingCertificate>(
        loop_, *authority_, RealClock::Get(), stats_, std::move(options),
        [this](const ServingCredentials& credentials) {
          if (refuse_next_) {
            refuse_next_ = false;
            return absl::InvalidArgumentError("the TLS context refused it");
          }
          installed_.push_back(credentials);
          return absl::OkStatus();
        });
  }

  uint64_t Counter(absl::string_view name) {
    return stats_.CounterValue(*stats_.RegisterCounter(name, "x"));
  }
  int64_t ExpiryGauge() {
    return stats_.GaugeValue(*stats_.RegisterGauge(
        "meshlet_cp_serving_certificate_expiry_timestamp_seconds", "x", {}, GaugeMerge::kGlobal));
  }

  // Checks what `install` got: a chain that verifies for the control plane's identity and
  // names, and the key of its leaf.
  void ExpectValid(const ServingCredentials& credentials,
                   const std::vector<std::string>& dns_names) {
    auto chain = tls::ParsePemCertificates(credentials.certificate_chain_pem);
    ASSERT_TRUE(chain.ok()) << chain.status();
    const X509& leaf = *chain->front();
    EXPECT_EQ(tls::UriSans(leaf), std::vector<std::string>{kControlPlaneId});
    EXPECT_EQ(tls::DnsSans(leaf), dns_names);
    EXPECT_EQ(tls::SerialNumberHex(leaf), credentials.serial_hex);
    EXPECT_EQ(tls::NotAfter(leaf), credentials.not_after);
    auto key = tls::ParsePemPrivateKey(credentials.private_key_pem);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_TRUE(tls::CheckKeyMatchesCertificate(leaf, **key).ok());
    EXPECT_EQ(tls::DescribeCertificate(leaf).key_bits, 256);
  }

  event::Loop loop_;
  StatsRegistry stats_;
  std::unique_ptr<CertificateAuthority> authority_;
  std::vector<ServingCredentials> installed_;
  bool refuse_next_ = false;
};

TEST_F(ServingCertificateTest, InstallsTheFirstCertificateWithinStartThenRenewsAtHalfItsLife) {
  std::unique_ptr<ServingCertificate> serving = Make();
  ASSERT_TRUE(serving->Start().ok());
  ASSERT_EQ(installed_.size(), 1u);
  EXPECT_EQ(serving->spiffe_id(), kControlPlaneId);
  ExpectValid(installed_[0], DefaultServingDnsNames("meshlet-system"));
  EXPECT_EQ(serving->serial_hex(), installed_[0].serial_hex);
  EXPECT_EQ(ExpiryGauge(), absl::ToUnixSeconds(installed_[0].not_after));

  const absl::Time started = absl::Now();
  ASSERT_TRUE(loop_.RunUntil([&] { return installed_.size() == 3; }, seconds(5)));
  // Two renewals of 2-second certificates: about a second apart, each with a new key and serial.
  EXPECT_GE(absl::Now() - started, absl::Milliseconds(900));
  ExpectValid(installed_[2], DefaultServingDnsNames("meshlet-system"));
  EXPECT_NE(installed_[1].serial_hex, installed_[0].serial_hex);
  EXPECT_NE(installed_[2].serial_hex, installed_[1].serial_hex);
  EXPECT_NE(installed_[1].private_key_pem, installed_[0].private_key_pem);
  EXPECT_EQ(serving->serial_hex(), installed_[2].serial_hex);
  EXPECT_EQ(ExpiryGauge(), absl::ToUnixSeconds(installed_[2].not_after));
  EXPECT_EQ(Counter("meshlet_cp_serving_certificate_renewals_total"), 2u);
  EXPECT_EQ(Counter("meshlet_cp_serving_certificate_renewal_failures_total"), 0u);
}

TEST_F(ServingCertificateTest, AFailedRenewalIsCountedKeepsTheCertificateAndIsRetried) {
  std::unique_ptr<ServingCertificate> serving =
      Make({.namespace_ = "mesh", .service_account = "cp", .dns_names = {"cp.example.org"}});
  ASSERT_TRUE(serving->Start().ok());
  ASSERT_EQ(installed_.size(), 1u);
  EXPECT_EQ(serving->spiffe_id(), "spiffe://cluster.local/ns/mesh/sa/cp");
  const std::string first = serving->serial_hex();
  const int64_t first_expiry = ExpiryGauge();

  refuse_next_ = true;
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return Counter("meshlet_cp_serving_certificate_renewal_failures_total") == 1; },
      seconds(5)));
  // Refused: the certificate in use is still the first.
  EXPECT_EQ(installed_.size(), 1u);
  EXPECT_EQ(serving->serial_hex(), first);
  EXPECT_EQ(ExpiryGauge(), first_expiry);
  // Retried after the backoff (100 ms here), not after another half lifetime.
  const absl::Time failed = absl::Now();
  ASSERT_TRUE(loop_.RunUntil([&] { return installed_.size() == 2; }, seconds(5)));
  EXPECT_LT(absl::Now() - failed, absl::Milliseconds(800));
  EXPECT_NE(serving->serial_hex(), first);
  EXPECT_EQ(Counter("meshlet_cp_serving_certificate_renewals_total"), 1u);
  EXPECT_EQ(Counter("meshlet_cp_serving_certificate_renewal_failures_total"), 1u);
}

TEST_F(ServingCertificateTest, StartFailsWithTheReason) {
  // An identity the CA cannot issue: names the flags.
  std::unique_ptr<ServingCertificate> bad_identity = Make({.namespace_ = "Bad_NS"});
  absl::Status status = bad_identity->Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--identity-namespace"), std::string::npos) << status;

  // The first certificate refused by the TLS context: no timer is left behind.
  refuse_next_ = true;
  std::unique_ptr<ServingCertificate> refused = Make();
  status = refused->Start();
  EXPECT_NE(status.message().find("the discovery port's certificate: the TLS context refused it"),
            std::string::npos)
      << status;
  EXPECT_TRUE(installed_.empty());
  loop_.RunUntil([] { return false; }, milliseconds(1200));
  EXPECT_TRUE(installed_.empty());
}

}  // namespace
}  // namespace meshlet::controlplane::ca
