#include "sidecar/resilience/outlier_detector.h"

#include <gtest/gtest.h>

#include <vector>

#include "common/base/fake_clock.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;
using Admission = OutlierDetector::Admission;
using Event = OutlierDetector::Event;
using HostState = OutlierDetector::HostState;

std::vector<uint64_t> Ids(uint64_t n) {
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= n; ++i) ids.push_back(i);
  return ids;
}

class OutlierDetectorTest : public ::testing::Test {
 protected:
  void Make(const OutlierDetectionConfig& config, uint64_t hosts) {
    detector_.reset();
    config_ = config;  // the detector reads it in place
    detector_ = std::make_unique<OutlierDetector>(&config_, clock_);
    detector_->SetHosts(Ids(hosts));
  }
  // `n` results of one kind; returns the last event.
  Event Report(uint64_t host, HostResult result, int n) {
    Event e = Event::kNone;
    for (int i = 0; i < n; ++i) e = detector_->RecordResult(host, result);
    return e;
  }
  // Expires the ejection of `host` and runs its probe with `result`.
  Event Probe(uint64_t host, HostResult result) {
    detector_->Tick();
    EXPECT_EQ(detector_->TryAdmit(host), Admission::kAdmitProbe);
    return detector_->RecordResult(host, result, /*probe=*/true);
  }

  FakeClock clock_;
  OutlierDetectionConfig config_;  // the detector's, which it reads in place
  std::unique_ptr<OutlierDetector> detector_;
};

TEST_F(OutlierDetectorTest, FiveConsecutive5xxEject) {
  Make(OutlierDetectionConfig{}, 10);
  EXPECT_EQ(Report(3, HostResult::kServerError, 4), Event::kNone);
  EXPECT_EQ(detector_->RecordResult(3, HostResult::kServerError), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(detector_->state(3), HostState::kEjected);
  EXPECT_EQ(detector_->TryAdmit(3), Admission::kReject);
  EXPECT_EQ(detector_->times_ejected(3), 1u);
  EXPECT_EQ(detector_->ejected_until(3), clock_.Now() + seconds(30));
}

TEST_F(OutlierDetectorTest, SuccessBreaksTheRun) {
  Make(OutlierDetectionConfig{}, 10);
  Report(3, HostResult::kServerError, 4);
  detector_->RecordResult(3, HostResult::kSuccess);
  EXPECT_EQ(Report(3, HostResult::kServerError, 4), Event::kNone);
  EXPECT_EQ(detector_->state(3), HostState::kHealthy);
}

TEST_F(OutlierDetectorTest, GatewayFailuresHaveTheirOwnThresholdAndCountAs5xx) {
  Make(OutlierDetectionConfig{.consecutive_5xx = 0, .consecutive_gateway_failure = 3}, 10);
  // A plain 500 resets the gateway run.
  Report(1, HostResult::kGatewayError, 2);
  detector_->RecordResult(1, HostResult::kServerError);
  EXPECT_EQ(Report(1, HostResult::kGatewayError, 2), Event::kNone);
  EXPECT_EQ(detector_->RecordResult(1, HostResult::kGatewayError),
            Event::kEjectedConsecutiveGatewayFailure);

  Make(OutlierDetectionConfig{.consecutive_5xx = 4, .consecutive_gateway_failure = 0}, 10);
  Report(1, HostResult::kGatewayError, 2);
  EXPECT_EQ(Report(1, HostResult::kServerError, 2), Event::kEjectedConsecutive5xx);
}

TEST_F(OutlierDetectorTest, ClassifyHttpStatus) {
  EXPECT_EQ(ClassifyHttpStatus(200), HostResult::kSuccess);
  EXPECT_EQ(ClassifyHttpStatus(404), HostResult::kSuccess);
  EXPECT_EQ(ClassifyHttpStatus(500), HostResult::kServerError);
  EXPECT_EQ(ClassifyHttpStatus(502), HostResult::kGatewayError);
  EXPECT_EQ(ClassifyHttpStatus(503), HostResult::kGatewayError);
  EXPECT_EQ(ClassifyHttpStatus(504), HostResult::kGatewayError);
  EXPECT_EQ(ClassifyHttpStatus(505), HostResult::kServerError);
}

TEST_F(OutlierDetectorTest, EjectionExpiresExactlyAndTheHostGoesHalfOpen) {
  Make(OutlierDetectionConfig{}, 10);
  Report(2, HostResult::kServerError, 5);
  EXPECT_EQ(detector_->NextExpiry(), clock_.Now() + seconds(30));
  clock_.Advance(seconds(30) - nanoseconds(1));
  EXPECT_EQ(detector_->Tick().half_opened, 0u);
  EXPECT_EQ(detector_->state(2), HostState::kEjected);
  clock_.Advance(nanoseconds(1));
  EXPECT_EQ(detector_->Tick().half_opened, 1u);
  EXPECT_EQ(detector_->state(2), HostState::kHalfOpen);
  EXPECT_FALSE(detector_->NextExpiry().has_value());
}

TEST_F(OutlierDetectorTest, HalfOpenAdmitsExactlyOneProbe) {
  Make(OutlierDetectionConfig{}, 10);
  Report(2, HostResult::kServerError, 5);
  clock_.Advance(seconds(30));
  detector_->Tick();
  std::vector<uint64_t> routable;
  detector_->RoutableHosts(&routable);
  EXPECT_EQ(routable.size(), 10u);  // the half-open host is offered for its probe
  const uint64_t version = detector_->version();
  EXPECT_EQ(detector_->TryAdmit(2), Admission::kAdmitProbe);
  EXPECT_NE(detector_->version(), version);
  detector_->RoutableHosts(&routable);
  EXPECT_EQ(routable.size(), 9u);
  EXPECT_EQ(detector_->TryAdmit(2), Admission::kReject);
  EXPECT_EQ(detector_->TryAdmit(2), Admission::kReject);
  // A late result from before the ejection does not decide; only the probe does.
  EXPECT_EQ(detector_->RecordResult(2, HostResult::kSuccess), Event::kIgnored);
  EXPECT_EQ(detector_->state(2), HostState::kHalfOpen);
  EXPECT_EQ(detector_->RecordResult(2, HostResult::kSuccess, true), Event::kProbeSucceeded);
  EXPECT_EQ(detector_->state(2), HostState::kHealthy);
  EXPECT_EQ(detector_->ejected_count(), 0u);
  EXPECT_EQ(detector_->TryAdmit(2), Admission::kAdmit);
}

TEST_F(OutlierDetectorTest, CancelledOrLostProbeAllowsAnother) {
  Make(OutlierDetectionConfig{}, 10);
  Report(2, HostResult::kServerError, 5);
  clock_.Advance(seconds(30));
  ASSERT_EQ(detector_->TryAdmit(2), Admission::kAdmitProbe);  // expires lazily, too
  detector_->CancelProbe(2);
  ASSERT_EQ(detector_->TryAdmit(2), Admission::kAdmitProbe);
  clock_.Advance(seconds(30) - nanoseconds(1));
  EXPECT_EQ(detector_->TryAdmit(2), Admission::kReject);
  clock_.Advance(nanoseconds(1));  // base_ejection_time without a result
  EXPECT_EQ(detector_->TryAdmit(2), Admission::kAdmitProbe);
}

TEST_F(OutlierDetectorTest, EjectionTimeGrowsWithTimesEjectedAndIsCapped) {
  Make(OutlierDetectionConfig{}, 10);
  Report(4, HostResult::kServerError, 5);
  std::vector<int64_t> durations_s;
  for (int i = 0; i < 12; ++i) {
    const MonotonicTime ejected_at = clock_.Now();
    const MonotonicTime until = *detector_->ejected_until(4);
    durations_s.push_back(std::chrono::duration_cast<seconds>(until - ejected_at).count());
    clock_.Advance(until - clock_.Now());
    EXPECT_EQ(Probe(4, HostResult::kGatewayError), Event::kProbeFailed);
  }
  EXPECT_EQ(durations_s,
            (std::vector<int64_t>{30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300}));
  EXPECT_EQ(detector_->times_ejected(4), 13u);
}

TEST_F(OutlierDetectorTest, MaxEjectionTimeBelowBaseMeansBase) {
  Make(OutlierDetectionConfig{.max_ejection_time = seconds(10)}, 10);
  Report(4, HostResult::kServerError, 5);
  EXPECT_EQ(detector_->ejected_until(4), clock_.Now() + seconds(30));
}

TEST_F(OutlierDetectorTest, TimesEjectedDecaysWhileHealthy) {
  Make(OutlierDetectionConfig{}, 10);
  Report(4, HostResult::kServerError, 5);
  clock_.Advance(seconds(30));
  Probe(4, HostResult::kServerError);  // times 2, 60 s
  clock_.Advance(seconds(60));
  EXPECT_EQ(Probe(4, HostResult::kSuccess), Event::kProbeSucceeded);
  EXPECT_EQ(detector_->times_ejected(4), 2u);
  // Ejected soon after recovering: the multiplier remembers (3 x 30 s).
  Report(4, HostResult::kServerError, 5);
  EXPECT_EQ(detector_->ejected_until(4), clock_.Now() + seconds(90));
  clock_.Advance(seconds(90));
  EXPECT_EQ(Probe(4, HostResult::kSuccess), Event::kProbeSucceeded);
  EXPECT_EQ(detector_->times_ejected(4), 3u);
  // One step down per full interval (10 s) spent healthy.
  for (uint32_t expected : {2u, 1u, 0u, 0u}) {
    clock_.Advance(seconds(10));
    EXPECT_TRUE(detector_->Tick().evaluated_interval);
    EXPECT_EQ(detector_->times_ejected(4), expected);
  }
  Report(4, HostResult::kServerError, 5);
  EXPECT_EQ(detector_->ejected_until(4), clock_.Now() + seconds(30));
}

TEST_F(OutlierDetectorTest, MaxEjectionPercentIsRespected) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 20}, 10);  // 2 of 10
  EXPECT_EQ(detector_->MaxEjected(), 2u);
  EXPECT_EQ(Report(1, HostResult::kServerError, 5), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(Report(2, HostResult::kServerError, 5), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(Report(3, HostResult::kServerError, 5), Event::kEjectionSkippedMaxPercent);
  EXPECT_EQ(detector_->state(3), HostState::kHealthy);
  EXPECT_EQ(detector_->ejected_count(), 2u);
  // Half-open hosts still count; once one recovers, the next failure of host 3 ejects it.
  clock_.Advance(seconds(30));
  detector_->Tick();
  EXPECT_EQ(detector_->RecordResult(3, HostResult::kServerError),
            Event::kEjectionSkippedMaxPercent);
  ASSERT_EQ(detector_->TryAdmit(1), Admission::kAdmitProbe);
  detector_->RecordResult(1, HostResult::kSuccess, true);
  EXPECT_EQ(detector_->RecordResult(3, HostResult::kServerError), Event::kEjectedConsecutive5xx);
}

TEST_F(OutlierDetectorTest, AtLeastOneHostMayBeEjectedFromTwoOrMore) {
  Make(OutlierDetectionConfig{}, 5);  // 10 % of 5 rounds to 0
  EXPECT_EQ(detector_->MaxEjected(), 1u);
  EXPECT_EQ(Report(1, HostResult::kServerError, 5), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(Report(2, HostResult::kServerError, 5), Event::kEjectionSkippedMaxPercent);

  Make(OutlierDetectionConfig{}, 2);
  EXPECT_EQ(detector_->MaxEjected(), 1u);
  Make(OutlierDetectionConfig{}, 1);
  EXPECT_EQ(detector_->MaxEjected(), 0u);
  EXPECT_EQ(Report(1, HostResult::kServerError, 5), Event::kEjectionSkippedMaxPercent);
  Make(OutlierDetectionConfig{.max_ejection_percent = 0}, 10);
  EXPECT_EQ(detector_->MaxEjected(), 0u);
  Make(OutlierDetectionConfig{}, 25);
  EXPECT_EQ(detector_->MaxEjected(), 2u);  // floor(2.5)
}

TEST_F(OutlierDetectorTest, PanicWhenHealthyHostsFallBelowThreshold) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 4);
  Report(1, HostResult::kServerError, 5);
  EXPECT_FALSE(detector_->IsPanic());  // 3 of 4 healthy
  Report(2, HostResult::kServerError, 5);
  EXPECT_FALSE(detector_->IsPanic());  // 2 of 4 = 50 %: not below
  std::vector<uint64_t> routable;
  detector_->RoutableHosts(&routable);
  EXPECT_EQ(routable, (std::vector<uint64_t>{3, 4}));
  Report(3, HostResult::kServerError, 5);
  EXPECT_TRUE(detector_->IsPanic());  // 1 of 4
  detector_->RoutableHosts(&routable);
  EXPECT_EQ(routable, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(detector_->TryAdmit(1), Admission::kAdmit);
  // Results from ejected hosts during panic do not change their state.
  EXPECT_EQ(detector_->RecordResult(1, HostResult::kSuccess), Event::kIgnored);

  Make(OutlierDetectionConfig{.max_ejection_percent = 100, .panic_threshold_percent = 0}, 2);
  Report(1, HostResult::kServerError, 5);
  Report(2, HostResult::kServerError, 5);
  EXPECT_FALSE(detector_->IsPanic());
}

TEST_F(OutlierDetectorTest, SuccessRateEjectsTheOutlier) {
  Make(OutlierDetectionConfig{.success_rate_minimum_hosts = 5, .success_rate_request_volume = 100},
       10);
  for (uint64_t h = 1; h <= 10; ++h) {
    // Host 7 succeeds 50 %, the others 99 %; host 10 has too few requests to be judged.
    const int total = h == 10 ? 50 : 100;
    // Failures alternate with successes, so no host reaches the consecutive threshold.
    for (int i = 0; i < total; ++i) {
      const bool fail = h == 7 ? i % 2 == 0 : i == 0;
      detector_->RecordResult(h, fail ? HostResult::kServerError : HostResult::kSuccess);
    }
  }
  clock_.Advance(seconds(10) - nanoseconds(1));
  EXPECT_FALSE(detector_->Tick().evaluated_interval);
  clock_.Advance(nanoseconds(1));
  OutlierDetector::TickSummary summary = detector_->Tick();
  EXPECT_TRUE(summary.evaluated_interval);
  EXPECT_EQ(summary.ejected_success_rate, 1u);
  EXPECT_EQ(detector_->state(7), HostState::kEjected);
  EXPECT_EQ(detector_->ejected_count(), 1u);
  // Counters reset each interval: nothing more to judge next time.
  clock_.Advance(seconds(10));
  EXPECT_EQ(detector_->Tick().ejected_success_rate, 0u);
}

TEST_F(OutlierDetectorTest, SuccessRateNeedsEnoughHostsWithEnoughVolume) {
  Make(OutlierDetectionConfig{.success_rate_minimum_hosts = 5, .success_rate_request_volume = 100},
       10);
  for (uint64_t h = 1; h <= 4; ++h) {
    for (int i = 0; i < 100; ++i) {
      detector_->RecordResult(
          h, (h == 1 && i % 2 == 0) ? HostResult::kServerError : HostResult::kSuccess);
    }
  }
  clock_.Advance(seconds(10));
  EXPECT_EQ(detector_->Tick().ejected_success_rate, 0u);  // only 4 hosts qualified
}

TEST_F(OutlierDetectorTest, SetHostsKeepsStateOfSurvivors) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 4);
  Report(2, HostResult::kServerError, 5);
  Report(3, HostResult::kServerError, 3);
  const std::vector<uint64_t> next = {2, 3, 9};
  detector_->SetHosts(next);
  EXPECT_EQ(detector_->host_count(), 3u);
  EXPECT_EQ(detector_->state(2), HostState::kEjected);
  EXPECT_EQ(detector_->ejected_count(), 1u);
  EXPECT_EQ(detector_->state(9), HostState::kHealthy);
  EXPECT_FALSE(detector_->state(1).has_value());
  EXPECT_EQ(Report(3, HostResult::kServerError, 2), Event::kEjectedConsecutive5xx);
  // Unknown hosts are admitted and their results ignored.
  EXPECT_EQ(detector_->TryAdmit(1), Admission::kAdmit);
  EXPECT_EQ(detector_->RecordResult(1, HostResult::kServerError), Event::kIgnored);
}

// Ids come in the host set's order, which is not the ids' order after updates, and may repeat
// (the first wins): lookups find each host's own state whichever way they come.
TEST_F(OutlierDetectorTest, SetHostsInAnyOrderFindsEachHost) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 0);
  const std::vector<uint64_t> ids = {42, 7, 19, 7, 3, 100, 42};
  detector_->SetHosts(ids);
  EXPECT_EQ(detector_->host_count(), 5u);
  EXPECT_EQ(Report(19, HostResult::kServerError, 5), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(Report(3, HostResult::kGatewayError, 4), Event::kNone);
  for (uint64_t id : {7u, 42u, 100u}) EXPECT_EQ(detector_->state(id), HostState::kHealthy) << id;
  EXPECT_EQ(detector_->state(19), HostState::kEjected);
  EXPECT_FALSE(detector_->state(8).has_value());
  EXPECT_FALSE(detector_->state(101).has_value());
  EXPECT_FALSE(detector_->state(1).has_value());

  const std::vector<uint64_t> next = {100, 3, 19, 5};
  detector_->SetHosts(next);
  EXPECT_EQ(detector_->state(19), HostState::kEjected);
  EXPECT_EQ(Report(3, HostResult::kGatewayError, 1), Event::kEjectedConsecutiveGatewayFailure);
  EXPECT_EQ(detector_->state(5), HostState::kHealthy);
  EXPECT_FALSE(detector_->state(42).has_value());
  std::vector<uint64_t> routable;
  detector_->RoutableHosts(&routable);
  EXPECT_EQ(routable, (std::vector<uint64_t>{5, 100}));  // in id order
}

// Every worker holds this per host of every cluster it built (ADR 0091): 8 bytes (the id), where
// it held 12 (the id and a second index) and before that 68 (the whole state) for every host.
TEST_F(OutlierDetectorTest, HostStateIsSmall) { EXPECT_LE(OutlierDetector::kBytesPerHost, 8u); }

// Every built cluster whose calls failed holds a detector: it reads its config in place (8 bytes
// where the copy took 64) and keeps one member array: 88 bytes, 168 before.
static_assert(sizeof(OutlierDetector) <= 88, "OutlierDetector grew: every failing cluster has one");

// State is held only for hosts with something to remember: from their first failure until they
// are healthy again with nothing counted and nothing to decay.
TEST_F(OutlierDetectorTest, HoldsStateOnlyForHostsThatFailed) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 100);
  for (uint64_t id = 1; id <= 100; ++id) Report(id, HostResult::kSuccess, 3);
  EXPECT_EQ(detector_->tracked_count(), 0u);
  EXPECT_EQ(detector_->state(50), HostState::kHealthy);

  EXPECT_EQ(Report(7, HostResult::kServerError, 2), Event::kNone);
  EXPECT_EQ(Report(9, HostResult::kServerError, 5), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(detector_->tracked_count(), 2u);
  EXPECT_EQ(detector_->ejected_count(), 1u);
  EXPECT_EQ(Report(7, HostResult::kSuccess, 1), Event::kNone);

  // Host 7 has nothing left to remember; host 9 stays ejected, then decays after its probe.
  clock_.Advance(std::chrono::seconds(10));
  detector_->Tick();
  EXPECT_EQ(detector_->tracked_count(), 1u);
  clock_.Advance(std::chrono::seconds(20));  // the 30 s ejection ends
  EXPECT_EQ(Probe(9, HostResult::kSuccess), Event::kProbeSucceeded);
  EXPECT_EQ(detector_->times_ejected(9), 1u);
  EXPECT_EQ(detector_->tracked_count(), 1u);
  clock_.Advance(std::chrono::seconds(10));
  detector_->Tick();
  EXPECT_EQ(detector_->times_ejected(9), 0u);
  EXPECT_EQ(detector_->tracked_count(), 0u);
  EXPECT_EQ(detector_->state(9), HostState::kHealthy);
  EXPECT_EQ(detector_->host_count(), 100u);
}

// Records for failed hosts grow by a quarter, never past the members: a detector tracking 10 of
// 1 000 hosts holds about 10 records, and one tracking every host of a 10-host cluster holds 10
// (doubling held 16 for either).
TEST_F(OutlierDetectorTest, TrackedStateHasLittleSlack) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 1000);
  for (uint64_t id = 1; id <= 10; ++id) Report(id * 7, HostResult::kServerError, 1);
  EXPECT_EQ(detector_->tracked_count(), 10u);
  EXPECT_LE(detector_->tracked_capacity(), 12u);
  for (uint64_t id = 1; id <= 900; ++id) Report(id, HostResult::kGatewayError, 1);
  EXPECT_LE(detector_->tracked_capacity(), detector_->tracked_count() * 5 / 4 + 1);

  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 10);
  for (uint64_t id = 10; id >= 1; --id) Report(id, HostResult::kServerError, 1);
  EXPECT_EQ(detector_->tracked_count(), 10u);
  EXPECT_EQ(detector_->tracked_capacity(), 10u);
  // Ordered by id wherever they were inserted, each found again.
  for (uint64_t id = 1; id <= 10; ++id)
    EXPECT_EQ(Report(id, HostResult::kServerError, 4), Event::kEjectedConsecutive5xx);
}

// A half-open host's probe start and an ejected host's end share one field: each is read only in
// its own state.
TEST_F(OutlierDetectorTest, ProbeStartAndEjectionEndDoNotMix) {
  Make(OutlierDetectionConfig{.max_ejection_percent = 100}, 4);
  EXPECT_EQ(Report(1, HostResult::kServerError, 5), Event::kEjectedConsecutive5xx);
  EXPECT_EQ(detector_->ejected_until(1), clock_.Now() + seconds(30));
  clock_.Advance(seconds(30));
  detector_->Tick();
  EXPECT_EQ(detector_->state(1), HostState::kHalfOpen);
  EXPECT_EQ(detector_->ejected_until(1), std::nullopt);
  EXPECT_EQ(detector_->NextExpiry(), std::nullopt);
  clock_.Advance(seconds(5));
  EXPECT_EQ(detector_->TryAdmit(1), Admission::kAdmitProbe);
  EXPECT_EQ(detector_->TryAdmit(1), Admission::kReject);
  // The lost probe's wait counts from when it started, not from the ejection's end.
  clock_.Advance(seconds(29));
  EXPECT_EQ(detector_->TryAdmit(1), Admission::kReject);
  clock_.Advance(seconds(1));
  EXPECT_EQ(detector_->TryAdmit(1), Admission::kAdmitProbe);
  EXPECT_EQ(detector_->RecordResult(1, HostResult::kGatewayError, /*probe=*/true),
            Event::kProbeFailed);
  EXPECT_EQ(detector_->ejected_until(1), clock_.Now() + seconds(60));
}

TEST_F(OutlierDetectorTest, Validate) {
  EXPECT_TRUE(ValidateOutlierDetectionConfig(OutlierDetectionConfig{}).ok());
  EXPECT_FALSE(ValidateOutlierDetectionConfig({.interval = Duration::zero()}).ok());
  EXPECT_FALSE(ValidateOutlierDetectionConfig({.max_ejection_percent = 101}).ok());
  EXPECT_FALSE(ValidateOutlierDetectionConfig({.panic_threshold_percent = 101}).ok());
  EXPECT_EQ(OutlierEventName(Event::kEjectedConsecutive5xx), "ejections_consecutive_5xx");
}

}  // namespace
}  // namespace meshlet::sidecar::resilience
