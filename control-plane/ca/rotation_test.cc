#include "control-plane/ca/rotation.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

RotationLimits Limits() {
  RotationLimits limits;
  limits.bundle_ack_timeout = absl::Minutes(1);
  limits.renewals_per_second = 2;
  limits.renewal_jitter = absl::Seconds(10);
  limits.renewal_retry = absl::Seconds(30);
  return limits;
}

RotationState BeginRoot() {
  auto state = Rotation::Begin(RotationState{}, RotationKind::kRoot, "root-a", "root-b", "signer-a",
                               "signer-b", "generated", Limits(), kStart);
  EXPECT_TRUE(state.ok()) << state.status();
  return *state;
}

SidecarObservation Sidecar(std::string node, std::vector<std::string> acked, std::string leaf_root,
                           std::string leaf_issuer) {
  SidecarObservation s;
  s.node = std::move(node);
  s.acked_roots = std::move(acked);
  s.leaf_root = std::move(leaf_root);
  s.leaf_issuer = std::move(leaf_issuer);
  return s;
}

TEST(RotationTest, BeginChecksArgumentsAndRefusesASecondRotation) {
  RotationState running = BeginRoot();
  EXPECT_EQ(running.step, RotationStep::kDistributing);
  EXPECT_EQ(Rotation::Begin(running, RotationKind::kRoot, "root-b", "root-c", "signer-b",
                            "signer-c", "generated", Limits(), kStart)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Rotation::Begin(RotationState{}, RotationKind::kRoot, "root-a", "root-a", "signer-a",
                            "signer-b", "generated", Limits(), kStart)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rotation::Begin(RotationState{}, RotationKind::kIntermediate, "root-a", "root-b",
                            "signer-a", "signer-b", "files", Limits(), kStart)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  RotationLimits no_rate = Limits();
  no_rate.renewals_per_second = 0;
  EXPECT_FALSE(Rotation::Begin(RotationState{}, RotationKind::kRoot, "root-a", "root-b", "signer-a",
                               "signer-b", "generated", no_rate, kStart)
                   .ok());
}

TEST(RotationTest, Step1AddsTheNewRootAndKeepsTheOldSigner) {
  Rotation rotation(BeginRoot());
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-a", "root-b"}));
  EXPECT_EQ(rotation.Signer(), "signer-a");
}

TEST(RotationTest, Step3WaitsForEverySidecarToAckTheNewRoot) {
  Rotation rotation(BeginRoot());
  std::vector<SidecarObservation> sidecars = {
      Sidecar("web-1", {"root-a", "root-b"}, "root-a", "signer-a"),
      Sidecar("db-1", {"root-a"}, "root-a", "signer-a"),
      Sidecar("api-1", {}, "root-a", "signer-a"),
  };
  RotationDecision d = rotation.Advance(sidecars, kStart + absl::Seconds(5));
  EXPECT_FALSE(d.changed);
  EXPECT_EQ(d.waiting, (std::vector<std::string>{"api-1", "db-1"}));
  EXPECT_FALSE(d.ack_timed_out);
  EXPECT_EQ(rotation.state().step, RotationStep::kDistributing);
  EXPECT_EQ(rotation.Signer(), "signer-a");

  // Past the bounded wait it reports, and still does not switch.
  d = rotation.Advance(sidecars, kStart + absl::Minutes(2));
  EXPECT_TRUE(d.ack_timed_out);
  EXPECT_EQ(rotation.state().step, RotationStep::kDistributing);

  sidecars[1].acked_roots = {"root-a", "root-b"};
  sidecars[2].acked_roots = {"root-b", "root-a"};
  d = rotation.Advance(sidecars, kStart + absl::Minutes(3));
  EXPECT_TRUE(d.changed);
  EXPECT_TRUE(d.waiting.empty());
  EXPECT_EQ(rotation.state().step, RotationStep::kReissuing);
  EXPECT_EQ(rotation.Signer(), "signer-b");
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-a", "root-b"}));
}

TEST(RotationTest, Step4RenewsAtTheConfiguredRateWithJitterAndStep6WaitsForTheLastOldLeaf) {
  Rotation rotation(BeginRoot());
  std::vector<SidecarObservation> sidecars;
  for (int i = 0; i < 5; ++i) {
    sidecars.push_back(
        Sidecar(absl::StrCat("pod-", i), {"root-a", "root-b"}, "root-a", "signer-a"));
  }
  absl::Time now = kStart + absl::Seconds(1);
  ASSERT_TRUE(rotation.Advance(sidecars, now).changed);
  ASSERT_EQ(rotation.state().step, RotationStep::kReissuing);

  // Round 1 asks the five behind, in a window of max(10 s jitter, 5 / 2 per second) = 10 s.
  now += absl::Seconds(1);
  RotationDecision d = rotation.Advance(sidecars, now);
  EXPECT_TRUE(d.renewal_round_started);
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(d.waiting.size(), 5u);
  ASSERT_TRUE(rotation.Renewal().has_value());
  EXPECT_EQ(rotation.Renewal()->signer, "signer-b");
  EXPECT_EQ(rotation.Renewal()->round, 1u);
  EXPECT_EQ(rotation.Renewal()->window, absl::Seconds(10));
  // No other round before the window and renewal_retry (30 s) have passed.
  d = rotation.Advance(sidecars, now + absl::Seconds(39));
  EXPECT_FALSE(d.renewal_round_started);
  EXPECT_FALSE(d.changed);
  EXPECT_EQ(rotation.Renewal()->round, 1u);
  now += absl::Seconds(40);
  d = rotation.Advance(sidecars, now);
  EXPECT_TRUE(d.renewal_round_started);
  EXPECT_EQ(rotation.Renewal()->round, 2u);
  EXPECT_EQ(rotation.state().step, RotationStep::kReissuing);

  // Every leaf but one renewed under the new root: still waiting, old root still trusted.
  for (size_t i = 0; i + 1 < sidecars.size(); ++i) sidecars[i].leaf_root = "root-b";
  d = rotation.Advance(sidecars, now + absl::Seconds(1));
  EXPECT_EQ(d.waiting, (std::vector<std::string>{"pod-4"}));
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-a", "root-b"}));

  sidecars.back().leaf_root = "root-b";
  d = rotation.Advance(sidecars, now + absl::Seconds(2));
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(rotation.state().step, RotationStep::kComplete);
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-b"}));
  EXPECT_EQ(rotation.state().renewals_requested, 10u);
  EXPECT_FALSE(rotation.Renewal().has_value());
}

TEST(RotationTest, ALargeMeshGetsAWindowThatKeepsTheRate) {
  RotationLimits limits = Limits();
  limits.renewals_per_second = 50;
  auto state = Rotation::Begin(RotationState{}, RotationKind::kIntermediate, "root-a", "root-a",
                               "int-1", "int-2", "secret:ns/next", limits, kStart);
  ASSERT_TRUE(state.ok()) << state.status();
  Rotation rotation(*state);
  std::vector<SidecarObservation> sidecars;
  for (int i = 0; i < 5000; ++i) {
    sidecars.push_back(Sidecar(absl::StrCat("pod-", i), {"root-a"}, "root-a", "int-1"));
  }
  RotationDecision d = rotation.Advance(sidecars, kStart + absl::Seconds(1));
  EXPECT_TRUE(d.renewal_round_started);
  EXPECT_EQ(rotation.Renewal()->window, absl::Seconds(100));  // 5000 / 50 per second
}

TEST(RotationTest, AbortOnlyBeforeSigningSwitches) {
  Rotation rotation(BeginRoot());
  ASSERT_TRUE(rotation.Abort(kStart + absl::Seconds(1), "asked by\nthe operator").ok());
  EXPECT_EQ(rotation.state().step, RotationStep::kAborted);
  EXPECT_EQ(rotation.state().note, "asked by the operator");
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-a"}));
  EXPECT_EQ(rotation.Signer(), "signer-a");
  EXPECT_EQ(rotation.Abort(kStart, "").code(), absl::StatusCode::kFailedPrecondition);

  Rotation switched(BeginRoot());
  ASSERT_TRUE(switched.Advance({}, kStart).changed);  // no sidecar: nothing to wait for
  EXPECT_EQ(switched.Abort(kStart, "").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(switched.state().step, RotationStep::kReissuing);
}

TEST(RotationTest, IntermediateRotationKeepsTheBundleAndWaitsForTheOldSigner) {
  auto state = Rotation::Begin(RotationState{}, RotationKind::kIntermediate, "root-a", "root-a",
                               "int-1", "int-2", "Secret meshlet-system/ca", Limits(), kStart);
  ASSERT_TRUE(state.ok()) << state.status();
  Rotation rotation(*state);
  EXPECT_EQ(rotation.state().step, RotationStep::kReissuing);
  EXPECT_EQ(rotation.Signer(), "int-2");
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-a"}));
  std::vector<SidecarObservation> sidecars = {Sidecar("a", {"root-a"}, "root-a", "int-1"),
                                              Sidecar("b", {"root-a"}, "root-a", "int-2")};
  RotationDecision d = rotation.Advance(sidecars, kStart + absl::Seconds(1));
  EXPECT_EQ(d.waiting, (std::vector<std::string>{"a"}));
  EXPECT_TRUE(d.renewal_round_started);
  EXPECT_EQ(rotation.Renewal()->signer, "int-2");
  sidecars[0].leaf_issuer = "int-2";
  EXPECT_TRUE(rotation.Advance(sidecars, kStart + absl::Seconds(2)).changed);
  EXPECT_EQ(rotation.state().step, RotationStep::kComplete);
  EXPECT_EQ(rotation.BundleRoots(), (std::vector<std::string>{"root-a"}));
}

TEST(RotationTest, StateRoundTripsThroughText) {
  Rotation rotation(BeginRoot());
  rotation.Advance({}, kStart + absl::Seconds(3));
  rotation.Advance({Sidecar("x", {"root-a", "root-b"}, "root-a", "signer-a")},
                   kStart + absl::Seconds(5));
  const RotationState& s = rotation.state();
  auto back = RotationState::FromText(s.ToText());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToText(), s.ToText());
  EXPECT_EQ(back->step, RotationStep::kReissuing);
  EXPECT_EQ(back->step_since, kStart + absl::Seconds(3));
  EXPECT_EQ(back->renewals_requested, 1u);
  EXPECT_EQ(back->limits.renewal_jitter, absl::Seconds(10));
  EXPECT_FALSE(RotationState::FromText("kind=root\nstep=sideways\n").ok());
  EXPECT_FALSE(RotationState::FromText("").ok());
}

TEST(RotationTest, StatusShowsTheStepWhoHoldsItBackAndWhichRootEachSidecarHolds) {
  Rotation rotation(BeginRoot());
  std::vector<SidecarObservation> sidecars = {
      Sidecar("web-1", {"root-a", "root-b"}, "root-a", "signer-a"),
      Sidecar("db \"1\"", {"root-a"}, "root-a", "signer-a")};
  RotationDecision d = rotation.Advance(sidecars, kStart + absl::Minutes(5));
  EXPECT_EQ(
      RotationStatusJson(rotation.state(), d, sidecars),
      "{\"kind\":\"root\",\"step\":\"distributing\",\"since\":\"2027-01-15T08:00:00+00:00\","
      "\"started\":\"2027-01-15T08:00:00+00:00\",\"old_root\":\"root-a\",\"new_root\":\"root-b\","
      "\"old_signer\":\"signer-a\",\"new_signer\":\"signer-b\",\"source\":\"generated\","
      "\"base_source\":\"\",\"note\":\"\",\"message\":\"step 2: 1 of 2 sidecars have not ACKed a "
      "bundle with the new "
      "root (past "
      "the ACK timeout; abort or fix them)\",\"ack_timed_out\":true,\"renewals_requested\":0,"
      "\"renewal_round\":0,\"renewal_window_seconds\":0,"
      "\"waiting\":[\"db \\\"1\\\"\"],\"sidecars\":[{\"node\":\"web-1\",\"bundle_roots\":"
      "[\"root-a\",\"root-b\"],\"leaf_root\":\"root-a\",\"leaf_issuer\":\"signer-a\"},"
      "{\"node\":\"db \\\"1\\\"\",\"bundle_roots\":[\"root-a\"],\"leaf_root\":\"root-a\","
      "\"leaf_issuer\":\"signer-a\"}]}");
}

std::string TempDir() {
  std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/rotation.XXXXXX");
  return std::string(::mkdtemp(templ.data()));
}

TEST(RotationStoreTest, ResumesAfterRestartAndReplicasCannotOverwriteEachOther) {
  const std::string dir = TempDir();
  {
    auto store = FileStore::Open(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    RotationStore rotations(**store);
    auto loaded = rotations.Load();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->state.step, RotationStep::kIdle);
    EXPECT_EQ(loaded->revision, kMustNotExist);
    Rotation rotation(BeginRoot());
    auto revision = rotations.Save(rotation.state(), loaded->revision);
    ASSERT_TRUE(revision.ok()) << revision.status();
    // Step 3 taken and saved; then the control plane "crashes".
    ASSERT_TRUE(rotation.Advance({}, kStart + absl::Seconds(1)).changed);
    ASSERT_TRUE(rotations.Save(rotation.state(), *revision).ok());
    // A replica that read the older revision cannot write over it.
    EXPECT_EQ(rotations.Save(BeginRoot(), *revision).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  auto store = FileStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  auto loaded = rotations.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Rotation resumed(loaded->state);
  EXPECT_EQ(resumed.state().step, RotationStep::kReissuing);
  EXPECT_EQ(resumed.Signer(), "signer-b");
  EXPECT_EQ(resumed.Abort(kStart, "").code(), absl::StatusCode::kFailedPrecondition);
  RotationDecision d = resumed.Advance({Sidecar("p", {"root-a", "root-b"}, "root-b", "signer-b")},
                                       kStart + absl::Seconds(2));
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(resumed.state().step, RotationStep::kComplete);
}

}  // namespace
}  // namespace meshlet::controlplane::ca
