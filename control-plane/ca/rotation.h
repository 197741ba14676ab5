#pragma once

// Rotation: the state machine behind `meshctl ca rotate` (certs/README.md#rotating-the-root,
// ADR 0097 "Amended: orchestrated rotation"). A root rotation walks
//
//   kIdle → kRequested      `meshctl ca rotate` asked for it: the new material named by `source`
//                           is read and checked by the leader, which then begins the rotation
//                           (or aborts it naming why the material was refused).
//         → kDistributing   step 1: the trust bundle is {old root, new root}; signing stays on
//                           the old material. Step 2 waits until every connected sidecar has
//                           ACKed a bundle holding the new root.
//         → kReissuing      step 3: signing switches to the new material; step 4 asks sidecars
//                           whose certificate still chains to the old root to renew early:
//                           the trust-bundle Secret names the new signer and a renewal window
//                           (RenewalRound), and each sidecar holding a leaf from another signer
//                           renews at a random point in it, the window sized so the mesh renews
//                           at most `renewals_per_second`; a round that leaves sidecars behind
//                           past window + renewal_retry starts another. Step 5 waits until no
//                           live workload certificate chains to the old root.
//         → kComplete       step 6: the bundle is {new root}.
//
// An intermediate rotation (same root, new signing certificate) starts at kReissuing: the
// bundle does not change, and step 5 waits for no certificate issued by the old signer.
// Each transition checks the previous step's condition from the observations it is handed;
// Abort() is allowed only in kRequested and kDistributing (signing has not switched) and returns
// to the old bundle. The state is plain data, serialised to text (ToText/FromText) and kept in the
// store under kRotationKey with optimistic concurrency (RotationStore), so a restarted control
// plane resumes where the last one stopped and replicas act on one state.
//
// Threading: Rotation and its functions are pure (no clock, no I/O, no locks): the caller passes
// `now` and the observations. RotationStore may be called from any thread the Store allows.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "control-plane/store/store.h"

namespace meshlet::controlplane::ca {

enum class RotationKind { kRoot, kIntermediate };
enum class RotationStep { kIdle, kRequested, kDistributing, kReissuing, kComplete, kAborted };
absl::string_view RotationKindName(RotationKind kind);  // "root", "intermediate"
absl::string_view RotationStepName(RotationStep step);  // "idle", "requested", ...
// Whether a rotation is under way (requested, distributing or reissuing): another cannot start.
bool RotationRunning(RotationStep step);

// The limits of a rotation; all configurable (meshctl ca rotate flags).
struct RotationLimits {
  // Step 2 reports the sidecars still missing the new root after this; it keeps waiting (the
  // operator aborts or fixes them), it never switches signing without every ACK.
  absl::Duration bundle_ack_timeout = absl::Minutes(10);
  // Step 4: early renewals per second across the mesh, and the shortest renewal window (each
  // sidecar renews at a random point in [0, window), window = max(renewal_jitter, sidecars to
  // renew / renewals_per_second)).
  double renewals_per_second = 10;
  absl::Duration renewal_jitter = absl::Seconds(30);
  // Step 4 starts another round for the sidecars still behind this long after a window closed.
  absl::Duration renewal_retry = absl::Minutes(2);
};

// The persisted state. Fingerprints are SHA-256 hex of the DER certificate.
struct RotationState {
  RotationKind kind = RotationKind::kRoot;
  RotationStep step = RotationStep::kIdle;
  std::string old_root, new_root;      // equal for an intermediate rotation
  std::string old_signer, new_signer;  // the signing certificates
  // Where the new material is read from: "secret:NAMESPACE/NAME" or "files:CHAIN,KEY[,ROOTS]"
  // (paths on the control plane's host).
  std::string source;
  // The material in use when the rotation was requested, when the configured source did not
  // hold it (a rotation complete before this one whose material was not put there): read like
  // `source`, it is the "old" side. "": the configured material.
  std::string base_source;
  std::string note;  // why the rotation was aborted ("" otherwise); one line
  absl::Time started = absl::InfinitePast();
  absl::Time step_since = absl::InfinitePast();
  RotationLimits limits;
  // Sidecars asked to renew so far (summed over the rounds), and step 4's current round: its
  // number (0: none yet), start and window.
  uint64_t renewals_requested = 0;
  uint32_t renewal_round = 0;
  absl::Time renewal_round_since = absl::InfinitePast();
  absl::Duration renewal_window = absl::ZeroDuration();

  std::string ToText() const;
  static absl::StatusOr<RotationState> FromText(absl::string_view text);
};

// What the control plane knows of one connected sidecar.
struct SidecarObservation {
  std::string node;                      // xDS node id
  std::vector<std::string> acked_roots;  // roots in the last trust bundle the sidecar ACKed
  std::string leaf_root;                 // root its live certificate chains to ("": none)
  std::string leaf_issuer;               // signing certificate that issued it
};

// Step 4's request to the sidecars, carried in the trust-bundle Secret (xds::Secret.renewal):
// a sidecar whose leaf was issued by another signer than `signer` renews at a random point in
// [0, window) after it first sees `round`.
struct RenewalRound {
  std::string signer;
  uint32_t round = 0;
  absl::Duration window;
  bool operator==(const RenewalRound&) const = default;
};

// One evaluation: what the state became and what the caller must do now.
struct RotationDecision {
  bool changed = false;                // state differs: persist it before acting
  std::vector<std::string> waiting;    // sidecars holding the step back (sorted)
  bool ack_timed_out = false;          // step 2 has waited longer than bundle_ack_timeout
  bool renewal_round_started = false;  // step 4 started a round (its sidecars are `waiting`)
  std::string message;                 // one line for status and logs
};

class Rotation {
 public:
  explicit Rotation(RotationState state) : state_(std::move(state)) {}

  // Records the operator's request (kRequested) from kIdle, kComplete or kAborted:
  // FailedPrecondition while one runs; InvalidArgument for limits out of range or no source.
  static absl::StatusOr<RotationState> Request(const RotationState& current, RotationKind kind,
                                               std::string source, RotationLimits limits,
                                               absl::Time now, std::string base_source = "");
  // Starts a rotation from kRequested (or kIdle, kComplete, kAborted) once the new material's
  // fingerprints are known. FailedPrecondition while one is past kRequested; InvalidArgument
  // when a root rotation's roots are equal or an intermediate's differ, or the signers are equal.
  static absl::StatusOr<RotationState> Begin(const RotationState& current, RotationKind kind,
                                             std::string old_root, std::string new_root,
                                             std::string old_signer, std::string new_signer,
                                             std::string source, RotationLimits limits,
                                             absl::Time now);

  // Steps forward as far as the observations allow (at most one step per call).
  RotationDecision Advance(const std::vector<SidecarObservation>& sidecars, absl::Time now);
  // kRequested or kDistributing → kAborted, with `note` saying why; FailedPrecondition once
  // signing switched.
  absl::Status Abort(absl::Time now, std::string note);

  // What the control plane serves in this state: the trust bundle's roots and the signer.
  std::vector<std::string> BundleRoots() const;
  std::string Signer() const;
  // Step 4's round while one runs (kReissuing, round > 0); nullopt otherwise.
  std::optional<RenewalRound> Renewal() const;

  const RotationState& state() const { return state_; }

 private:
  void Enter(RotationStep step, absl::Time now);
  RotationDecision Distributing(const std::vector<SidecarObservation>& sidecars, absl::Time now);
  RotationDecision Reissuing(const std::vector<SidecarObservation>& sidecars, absl::Time now);

  RotationState state_;
};

// What `meshctl ca rotate --status` shows: the state, the last decision's message and waiting
// list, and per sidecar the roots of the bundle it ACKed and the root and signer of its live
// certificate. JSON, one object; `sidecars` in the order given.
std::string RotationStatusJson(const RotationState& state, const RotationDecision& decision,
                               const std::vector<SidecarObservation>& sidecars);

// The state in the store: ResourceKey{"CaRotation", "", "current"}.
inline const ResourceKey kRotationKey{"CaRotation", "", "current"};

class RotationStore {
 public:
  explicit RotationStore(Store& store) : store_(store) {}  // not owned; must outlive this

  // The stored state and its revision; an idle state and kMustNotExist when none is stored.
  struct Loaded {
    RotationState state;
    int64_t revision = kMustNotExist;
  };
  absl::StatusOr<Loaded> Load() const;
  // Writes `state` if the stored revision is still `revision` (FailedPrecondition otherwise:
  // another replica moved first; Load again). Returns the new revision.
  absl::StatusOr<int64_t> Save(const RotationState& state, int64_t revision);

 private:
  Store& store_;
};

}  // namespace meshlet::controlplane::ca
