#include "sidecar/resilience/fault.h"

#include <gtest/gtest.h>

#include "common/base/fake_random.h"
#include "common/base/random.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::milliseconds;

TEST(FaultTest, NoFaultConfiguredDrawsNothing) {
  FakeRandom random;
  random.Push(42);
  FaultDecision d = DecideFault(FaultConfig{}, false, random);
  EXPECT_FALSE(d.delayed());
  EXPECT_FALSE(d.abort);
  EXPECT_EQ(random.Next(), 42u);
}

TEST(FaultTest, PercentageBoundaryIsExact) {
  FaultConfig config{.delay = FaultConfig::Delay{milliseconds(100), 25.0}};
  FakeRandom random;
  random.PushDouble(0.249999);  // selects: below 25 %
  random.PushDouble(0.25);      // does not: exactly 25 %
  random.PushDouble(0.0);
  random.PushDouble(0.999999);
  EXPECT_EQ(DecideFault(config, false, random).delay, milliseconds(100));
  EXPECT_FALSE(DecideFault(config, false, random).delayed());
  EXPECT_TRUE(DecideFault(config, false, random).delayed());
  EXPECT_FALSE(DecideFault(config, false, random).delayed());
}

TEST(FaultTest, ZeroAndHundredPercentAreNeverAndAlways) {
  FakeRandom random;
  random.PushDouble(0.0);
  FaultConfig never{.abort = FaultConfig::Abort{.http_status = 503, .percentage = 0}};
  EXPECT_FALSE(DecideFault(never, false, random).abort);
  random.PushDouble(0.9999999);
  FaultConfig always{.abort = FaultConfig::Abort{.http_status = 503, .percentage = 100}};
  EXPECT_TRUE(DecideFault(always, false, random).abort);
}

TEST(FaultTest, FractionalPercentages) {
  FaultConfig config{.abort = FaultConfig::Abort{.http_status = 500, .percentage = 0.01}};
  FakeRandom random;
  random.PushDouble(0.000099);   // 99 ppm < 100 ppm
  random.PushDouble(0.0001001);  // 100 ppm
  EXPECT_TRUE(DecideFault(config, false, random).abort);
  EXPECT_FALSE(DecideFault(config, false, random).abort);
}

TEST(FaultTest, DelayIsDrawnBeforeAbort) {
  FaultConfig config{.delay = FaultConfig::Delay{milliseconds(5), 50},
                     .abort = FaultConfig::Abort{.http_status = 429, .percentage = 50}};
  FakeRandom random;
  random.PushDouble(0.9);  // delay: no
  random.PushDouble(0.1);  // abort: yes
  FaultDecision d = DecideFault(config, false, random);
  EXPECT_FALSE(d.delayed());
  EXPECT_TRUE(d.abort);
  EXPECT_EQ(d.http_status, 429u);
  random.PushDouble(0.1);  // delay: yes
  random.PushDouble(0.1);  // abort: yes
  d = DecideFault(config, false, random);
  EXPECT_EQ(d.delay, milliseconds(5));
  EXPECT_TRUE(d.abort);
}

TEST(FaultTest, GrpcAbortUsesGrpcStatusForGrpcRequests) {
  FaultConfig config{
      .abort = FaultConfig::Abort{.http_status = 503, .grpc_status = 14, .percentage = 100}};
  FakeRandom random;
  FaultDecision grpc = DecideFault(config, true, random);
  EXPECT_TRUE(grpc.abort);
  EXPECT_EQ(grpc.http_status, 200u);
  EXPECT_EQ(grpc.grpc_status, 14u);
  FaultDecision http = DecideFault(config, false, random);
  EXPECT_EQ(http.http_status, 503u);
  EXPECT_EQ(http.grpc_status, 0u);

  FaultConfig grpc_only{.abort = FaultConfig::Abort{.grpc_status = 8, .percentage = 100}};
  EXPECT_EQ(DecideFault(grpc_only, false, random).http_status, 503u);
}

TEST(FaultTest, ObservedRateMatchesPercentage) {
  FaultConfig config{.abort = FaultConfig::Abort{.http_status = 500, .percentage = 30}};
  RealRandom random(99);
  int aborted = 0;
  for (int i = 0; i < 100000; ++i) aborted += DecideFault(config, false, random).abort;
  EXPECT_NEAR(aborted / 100000.0, 0.30, 0.01);
}

TEST(FaultTest, Validate) {
  EXPECT_TRUE(ValidateFaultConfig(FaultConfig{}).ok());
  EXPECT_FALSE(
      ValidateFaultConfig(FaultConfig{.delay = FaultConfig::Delay{milliseconds(1), 101}}).ok());
  EXPECT_FALSE(
      ValidateFaultConfig(FaultConfig{.delay = FaultConfig::Delay{milliseconds(-1), 10}}).ok());
  EXPECT_FALSE(
      ValidateFaultConfig(FaultConfig{.abort = FaultConfig::Abort{.percentage = 10}}).ok());
  EXPECT_FALSE(
      ValidateFaultConfig(FaultConfig{.abort = FaultConfig::Abort{.http_status = 99}}).ok());
  EXPECT_FALSE(
      ValidateFaultConfig(FaultConfig{.abort = FaultConfig::Abort{.grpc_status = 17}}).ok());
  absl::Status s =
      ValidateFaultConfig(FaultConfig{.abort = FaultConfig::Abort{.http_status = 700}});
  EXPECT_EQ(s.message(), "abort.http_status: must be in [200, 599]");
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
