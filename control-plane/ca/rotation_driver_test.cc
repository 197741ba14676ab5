#include "control-plane/ca/rotation_driver.h"

#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

std::string TempDir() {
  std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/rotation_driver.XXXXXX");
  return std::string(::mkdtemp(templ.data()));
}

RotationState BeginRoot() {
  RotationLimits limits;
  limits.renewals_per_second = 2;
  limits.renewal_jitter = absl::Seconds(10);
  limits.renewal_retry = absl::Seconds(30);
  auto state = Rotation::Begin(RotationState{}, RotationKind::kRoot, "root-a", "root-b", "signer-a",
                               "signer-b", "generated", limits, kStart);
  EXPECT_TRUE(state.ok()) << state.status();
  return *state;
}

// A mesh of sidecars: each ACKs a bundle and holds a certificate from some root and signer.
class FakeMesh : public RotationObserver, public RotationActuator {
 public:
  explicit FakeMesh(std::vector<std::string> nodes) {
    for (std::string& node : nodes) {
      SidecarObservation s;
      s.node = std::move(node);
      s.acked_roots = {"root-a"};
      s.leaf_root = "root-a";
      s.leaf_issuer = "signer-a";
      sidecars.push_back(std::move(s));
    }
  }
  std::vector<SidecarObservation> Observe() override {
    if (on_observe) on_observe();
    return sidecars;
  }
  absl::StatusOr<MaterialFingerprints> Material(const RotationState& requested) override {
    EXPECT_EQ(requested.step, RotationStep::kRequested);
    return material;
  }
  void Serve(const Rotation& rotation) override {
    bundle = rotation.BundleRoots();
    signer = rotation.Signer();
    renewal = rotation.Renewal();
  }
  // Every sidecar ACKs the bundle served now.
  void AckAll() {
    for (SidecarObservation& s : sidecars) s.acked_roots = bundle;
  }
  // Sidecars whose certificate is not from the renewal round's signer renew (all but `skip`).
  void RenewAsked(const std::string& skip = "") {
    ASSERT_TRUE(renewal.has_value());
    for (SidecarObservation& s : sidecars) {
      if (s.node == skip || s.leaf_issuer == renewal->signer) continue;
      s.leaf_root = "root-b";
      s.leaf_issuer = renewal->signer;
    }
  }

  std::vector<SidecarObservation> sidecars;
  std::vector<std::string> bundle;
  std::string signer;
  std::optional<RenewalRound> renewal;
  absl::StatusOr<MaterialFingerprints> material =
      MaterialFingerprints{"root-a", "root-b", "signer-a", "signer-b"};
  std::function<void()> on_observe;
};

TEST(RotationDriverTest, IdleServesNothing) {
  auto store = FileStore::Open(TempDir());
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  FakeMesh mesh({"a"});
  RotationDriver driver(rotations, mesh, mesh, [] { return true; });
  ASSERT_TRUE(driver.Tick(kStart).ok());
  EXPECT_TRUE(mesh.bundle.empty());
  EXPECT_EQ(mesh.signer, "");
  EXPECT_EQ(driver.state().step, RotationStep::kIdle);
}

TEST(RotationDriverTest, WalksARootRotationAndNeverSwitchesSigningBeforeEveryAck) {
  auto store = FileStore::Open(TempDir());
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  ASSERT_TRUE(rotations.Save(BeginRoot(), kMustNotExist).ok());
  FakeMesh mesh({"a", "b", "c", "d"});
  RotationDriver driver(rotations, mesh, mesh, [] { return true; });

  // Step 1: bundle {old, new}, signing stays on the old material.
  absl::Time now = kStart;
  auto d = driver.Tick(now);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(mesh.bundle, (std::vector<std::string>{"root-a", "root-b"}));
  EXPECT_EQ(mesh.signer, "signer-a");

  // Step 2: one sidecar has not ACKed: however long we wait, signing does not switch.
  mesh.AckAll();
  mesh.sidecars[2].acked_roots = {"root-a"};
  for (int i = 0; i < 20; ++i) {
    now += absl::Minutes(1);
    d = driver.Tick(now);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(mesh.signer, "signer-a");
    EXPECT_EQ(d->waiting, (std::vector<std::string>{"c"}));
  }
  EXPECT_TRUE(d->ack_timed_out);
  EXPECT_NE(driver.StatusJson().find("\"waiting\":[\"c\"]"), std::string::npos)
      << driver.StatusJson();
  EXPECT_EQ(driver.state().step, RotationStep::kDistributing);

  // Step 3: all ACKed → signing switches, persisted.
  mesh.AckAll();
  now += absl::Seconds(1);
  d = driver.Tick(now);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(mesh.signer, "signer-b");
  EXPECT_EQ(driver.state().step, RotationStep::kReissuing);
  auto loaded = rotations.Load();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->state.step, RotationStep::kReissuing);

  EXPECT_FALSE(mesh.renewal.has_value()) << "a round before the switch was persisted";

  // Step 4: a renewal round for the four sidecars behind: 2 a second needs a 2 s window, the
  // 10 s jitter is longer.
  now += absl::Seconds(1);
  d = driver.Tick(now);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(mesh.renewal.has_value());
  EXPECT_EQ(mesh.renewal->signer, "signer-b");
  EXPECT_EQ(mesh.renewal->round, 1u);
  EXPECT_EQ(mesh.renewal->window, absl::Seconds(10));
  // One sidecar does not renew: no new round before the window and renewal_retry have passed.
  mesh.RenewAsked("d");
  now += absl::Seconds(20);
  d = driver.Tick(now);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->waiting, (std::vector<std::string>{"d"}));
  EXPECT_EQ(mesh.renewal->round, 1u) << "asked again before renewal_retry";
  now += absl::Seconds(21);
  d = driver.Tick(now);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(mesh.renewal->round, 2u);

  // Step 5 → 6: once every live certificate chains to the new root, the old root goes.
  mesh.RenewAsked();
  now += absl::Seconds(1);
  d = driver.Tick(now);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(driver.state().step, RotationStep::kComplete);
  EXPECT_EQ(mesh.bundle, (std::vector<std::string>{"root-b"}));
  EXPECT_EQ(mesh.signer, "signer-b");
  EXPECT_FALSE(mesh.renewal.has_value());
  EXPECT_EQ(driver.counters().steps, 2u);
  EXPECT_EQ(driver.counters().renewal_rounds, 2u);
  EXPECT_EQ(driver.state().renewals_requested, 5u);
}

TEST(RotationDriverTest, ARequestBeginsWithTheNewMaterialOrAbortsNamingWhy) {
  auto store = FileStore::Open(TempDir());
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  auto requested = Rotation::Request(RotationState{}, RotationKind::kRoot, "secret:ns/next",
                                     RotationLimits{}, kStart);
  ASSERT_TRUE(requested.ok()) << requested.status();
  auto revision = rotations.Save(*requested, kMustNotExist);
  ASSERT_TRUE(revision.ok());
  FakeMesh mesh({"a"});
  RotationDriver driver(rotations, mesh, mesh, [] { return true; });
  // Still being read: the request waits, serving nothing new.
  mesh.material = absl::UnavailableError("waiting for the API server");
  auto d = driver.Tick(kStart + absl::Seconds(1));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(driver.state().step, RotationStep::kRequested);
  EXPECT_TRUE(mesh.bundle.empty());
  // Read: step 1 begins.
  mesh.material = MaterialFingerprints{"root-a", "root-b", "signer-a", "signer-b"};
  d = driver.Tick(kStart + absl::Seconds(2));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(driver.state().step, RotationStep::kDistributing);
  EXPECT_EQ(driver.state().source, "secret:ns/next");
  EXPECT_EQ(mesh.bundle, (std::vector<std::string>{"root-a", "root-b"}));
  EXPECT_EQ(mesh.signer, "signer-a");

  // A second request is refused while this one runs; after an abort, a request whose material
  // is refused ends aborted with the reason, serving the old material.
  auto loaded = rotations.Load();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(Rotation::Request(loaded->state, RotationKind::kRoot, "secret:ns/other",
                              RotationLimits{}, kStart)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  Rotation aborted(loaded->state);
  ASSERT_TRUE(aborted.Abort(kStart + absl::Seconds(3), "operator").ok());
  auto again = Rotation::Request(aborted.state(), RotationKind::kRoot, "secret:ns/same",
                                 RotationLimits{}, kStart + absl::Seconds(3));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(rotations.Save(*again, loaded->revision).ok());
  mesh.material = MaterialFingerprints{"root-a", "root-a", "signer-a", "signer-a"};
  d = driver.Tick(kStart + absl::Seconds(4));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(driver.state().step, RotationStep::kAborted);
  EXPECT_NE(driver.state().note.find("the new root is the root in use"), std::string::npos)
      << driver.state().note;
  EXPECT_NE(driver.StatusJson().find("secret:ns/same"), std::string::npos);
}

TEST(RotationDriverTest, FollowerServesThePersistedStateWithoutAdvancing) {
  auto store = FileStore::Open(TempDir());
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  ASSERT_TRUE(rotations.Save(BeginRoot(), kMustNotExist).ok());
  FakeMesh mesh({"a"});
  bool observed = false;
  mesh.on_observe = [&] { observed = true; };
  mesh.bundle = {"root-a", "root-b"};
  mesh.AckAll();
  RotationDriver follower(rotations, mesh, mesh, [] { return false; });
  ASSERT_TRUE(follower.Tick(kStart + absl::Seconds(1)).ok());
  EXPECT_FALSE(observed);
  EXPECT_EQ(follower.state().step, RotationStep::kDistributing);
  EXPECT_EQ(mesh.signer, "signer-a");

  // The leader (another replica) moves; the follower serves what it persisted.
  FakeMesh leader_mesh({"a"});
  leader_mesh.bundle = {"root-a", "root-b"};
  leader_mesh.AckAll();
  RotationDriver leader(rotations, leader_mesh, leader_mesh, [] { return true; });
  ASSERT_TRUE(leader.Tick(kStart + absl::Seconds(2)).ok());
  ASSERT_TRUE(follower.Tick(kStart + absl::Seconds(3)).ok());
  EXPECT_EQ(follower.state().step, RotationStep::kReissuing);
  EXPECT_EQ(mesh.signer, "signer-b");
}

TEST(RotationDriverTest, LosingTheStoreRaceActsOnNothing) {
  auto store = FileStore::Open(TempDir());
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  auto revision = rotations.Save(BeginRoot(), kMustNotExist);
  ASSERT_TRUE(revision.ok());
  FakeMesh mesh({"a"});
  mesh.bundle = {"root-a", "root-b"};
  mesh.AckAll();
  mesh.signer = "none yet";
  // Another replica aborts between our Load and our Save.
  mesh.on_observe = [&] {
    Rotation other(BeginRoot());
    ASSERT_TRUE(other.Abort(kStart, "operator").ok());
    ASSERT_TRUE(rotations.Save(other.state(), *revision).ok());
  };
  RotationDriver driver(rotations, mesh, mesh, [] { return true; });
  auto d = driver.Tick(kStart + absl::Seconds(1));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(mesh.signer, "none yet") << "acted on a state it could not persist";
  EXPECT_EQ(driver.counters().save_conflicts, 1u);
  mesh.on_observe = nullptr;
  ASSERT_TRUE(driver.Tick(kStart + absl::Seconds(2)).ok());
  EXPECT_EQ(driver.state().step, RotationStep::kAborted);
  EXPECT_EQ(mesh.bundle, (std::vector<std::string>{"root-a"}));
  EXPECT_EQ(mesh.signer, "signer-a");
}

TEST(RotationDriverTest, ARestartedControlPlaneResumesFromTheStore) {
  const std::string dir = TempDir();
  {
    auto store = FileStore::Open(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    RotationStore rotations(**store);
    ASSERT_TRUE(rotations.Save(BeginRoot(), kMustNotExist).ok());
    FakeMesh mesh({"a", "b"});
    mesh.bundle = {"root-a", "root-b"};
    mesh.AckAll();
    RotationDriver driver(rotations, mesh, mesh, [] { return true; });
    ASSERT_TRUE(driver.Tick(kStart + absl::Seconds(1)).ok());
    ASSERT_EQ(driver.state().step, RotationStep::kReissuing);
  }  // the control plane stops mid-rotation
  auto store = FileStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  RotationStore rotations(**store);
  FakeMesh mesh({"a", "b"});
  mesh.bundle = {"root-a", "root-b"};
  mesh.AckAll();
  RotationDriver driver(rotations, mesh, mesh, [] { return true; });
  auto d = driver.Tick(kStart + absl::Seconds(10));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(mesh.signer, "signer-b");
  EXPECT_EQ(mesh.bundle, (std::vector<std::string>{"root-a", "root-b"}));
  // Step 4 resumes: both still hold old-root certificates.
  ASSERT_TRUE(mesh.renewal.has_value());
  EXPECT_EQ(driver.state().renewals_requested, 2u);
}

}  // namespace
}  // namespace meshlet::controlplane::ca
