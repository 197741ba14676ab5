#include "sidecar/identity/rotation.h"

#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::identity {
namespace {

using State = CertificateRotation::State;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

class RotationTest : public ::testing::Test {
 protected:
  // Issues a certificate valid for `lifetime` from now, with the jitter draw at `jitter_draw`
  // (0.5 = no jitter).
  void Issue(CertificateRotation& rotation, absl::Duration lifetime, double jitter_draw = 0.5) {
    ASSERT_TRUE(rotation.RequestDue());
    rotation.RequestStarted();
    random_.PushDouble(jitter_draw);
    rotation.Issued(clock_.WallNow() + lifetime);
  }

  FakeClock clock_;
  FakeRandom random_;
};

TEST_F(RotationTest, RenewsAtHalfTheLifetime) {
  CertificateRotation rotation({}, clock_, random_);
  EXPECT_EQ(rotation.state(), State::kNoCertificate);
  EXPECT_FALSE(rotation.SecondsToExpiry().has_value());
  Issue(rotation, absl::Hours(24));
  EXPECT_EQ(rotation.state(), State::kValid);
  EXPECT_DOUBLE_EQ(*rotation.SecondsToExpiry(), 86400);
  EXPECT_EQ(rotation.NextWakeup(), clock_.Now() + hours(12));

  clock_.Advance(hours(12) - seconds(1));
  EXPECT_FALSE(rotation.RequestDue());
  EXPECT_DOUBLE_EQ(*rotation.SecondsToExpiry(), 43201);
  clock_.Advance(seconds(1));
  EXPECT_TRUE(rotation.RequestDue());
  rotation.RequestStarted();
  EXPECT_FALSE(rotation.RequestDue());
  EXPECT_FALSE(rotation.NextWakeup().has_value());
  // While renewing, the current certificate is still the one in use.
  EXPECT_TRUE(rotation.has_valid_certificate());
  random_.PushDouble(0.5);
  rotation.Issued(clock_.WallNow() + absl::Hours(24));
  EXPECT_EQ(rotation.state(), State::kValid);
  EXPECT_DOUBLE_EQ(*rotation.SecondsToExpiry(), 86400);
}

TEST_F(RotationTest, RenewByBringsTheRenewalForwardNeverBack) {
  CertificateRotation rotation({}, clock_, random_);
  rotation.RenewBy(clock_.Now());  // no certificate yet: nothing to bring forward
  EXPECT_EQ(rotation.state(), State::kNoCertificate);
  Issue(rotation, absl::Hours(24));
  rotation.RenewBy(clock_.Now() + hours(20));  // later than the usual renewal: ignored
  EXPECT_EQ(rotation.NextWakeup(), clock_.Now() + hours(12));
  rotation.RenewBy(clock_.Now() + seconds(30));
  EXPECT_EQ(rotation.NextWakeup(), clock_.Now() + seconds(30));
  clock_.Advance(seconds(29));
  EXPECT_FALSE(rotation.RequestDue());
  clock_.Advance(seconds(1));
  EXPECT_TRUE(rotation.RequestDue());
}

TEST_F(RotationTest, JitterSpreadsRenewalsOverTenPercentEachSide) {
  CertificateRotation early({}, clock_, random_);
  Issue(early, absl::Hours(10), /*jitter_draw=*/0.0);
  EXPECT_EQ(*early.renew_at(), clock_.Now() + hours(4));
  CertificateRotation late({}, clock_, random_);
  Issue(late, absl::Hours(10), /*jitter_draw=*/0.999999);
  EXPECT_GT(*late.renew_at(), clock_.Now() + hours(6) - seconds(1));
  EXPECT_LT(*late.renew_at(), clock_.Now() + hours(6));
  CertificateRotation quarter({}, clock_, random_);
  Issue(quarter, absl::Hours(10), /*jitter_draw=*/0.25);
  EXPECT_EQ(*quarter.renew_at(), clock_.Now() + hours(4) + minutes(30));
}

TEST_F(RotationTest, ShortLivedCertificatesRenewFromArrivalNotFromBackdatedNotBefore) {
  CertificateRotation rotation({}, clock_, random_);
  Issue(rotation, absl::Seconds(10));
  EXPECT_EQ(*rotation.renew_at(), clock_.Now() + seconds(5));
  clock_.Advance(seconds(5));
  EXPECT_TRUE(rotation.RequestDue());
}

TEST_F(RotationTest, FailedRenewalKeepsTheCertificateAndRetriesWithBackoff) {
  CertificateRotation rotation({.retry_backoff = {.base = seconds(1), .cap = seconds(8)}}, clock_,
                               random_);
  Issue(rotation, absl::Minutes(10));
  clock_.Advance(minutes(5));
  ASSERT_TRUE(rotation.RequestDue());

  // Full jitter: draw 0.5 of [0, min(cap, 1 s * 2^n)].
  const Duration expected_delays[] = {milliseconds(500), seconds(1), seconds(2),
                                      seconds(4),        seconds(4), seconds(4)};
  for (Duration delay : expected_delays) {
    rotation.RequestStarted();
    random_.PushDouble(0.5);
    rotation.Failed();
    EXPECT_EQ(rotation.state(), State::kRetryWaiting);
    EXPECT_TRUE(rotation.has_valid_certificate());
    EXPECT_EQ(rotation.NextWakeup(), clock_.Now() + delay);
    clock_.Advance(delay - milliseconds(1));
    EXPECT_FALSE(rotation.RequestDue());
    clock_.Advance(milliseconds(1));
    EXPECT_TRUE(rotation.RequestDue());
  }
  EXPECT_EQ(rotation.consecutive_failures(), 6u);

  // The control plane stays away until the certificate expires.
  rotation.RequestStarted();
  random_.PushDouble(0.5);
  rotation.Failed();
  clock_.Advance(minutes(5));
  rotation.Refresh();
  EXPECT_EQ(rotation.state(), State::kExpired);
  EXPECT_FALSE(rotation.has_valid_certificate());
  EXPECT_LE(*rotation.SecondsToExpiry(), 0);
  EXPECT_TRUE(rotation.RequestDue());

  // Recovery resets the backoff.
  rotation.RequestStarted();
  random_.PushDouble(0.5);
  rotation.Issued(clock_.WallNow() + absl::Minutes(10));
  EXPECT_EQ(rotation.state(), State::kValid);
  EXPECT_EQ(rotation.consecutive_failures(), 0u);
}

TEST_F(RotationTest, FirstRequestFailuresRetryWithoutACertificate) {
  CertificateRotation rotation({}, clock_, random_);
  ASSERT_TRUE(rotation.RequestDue());
  rotation.RequestStarted();
  random_.PushDouble(0.5);
  rotation.Failed();
  EXPECT_EQ(rotation.state(), State::kNoCertificate);
  EXPECT_FALSE(rotation.RequestDue());
  clock_.Advance(milliseconds(500));
  EXPECT_TRUE(rotation.RequestDue());
}

TEST_F(RotationTest, ValidatesConfig) {
  EXPECT_TRUE(ValidateRotationConfig({}).ok());
  EXPECT_FALSE(ValidateRotationConfig({.renew_at_fraction = 0}).ok());
  EXPECT_FALSE(ValidateRotationConfig({.renew_at_fraction = 1}).ok());
  EXPECT_FALSE(ValidateRotationConfig({.renew_at_fraction = 0.5, .jitter_fraction = 0.5}).ok());
  EXPECT_FALSE(ValidateRotationConfig({.jitter_fraction = -0.1}).ok());
  EXPECT_FALSE(
      ValidateRotationConfig({.retry_backoff = {.base = seconds(2), .cap = seconds(1)}}).ok());
}

}  // namespace
}  // namespace meshlet::sidecar::identity
