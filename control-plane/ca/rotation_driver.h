#pragma once

// RotationDriver: drives the rotation state machine (rotation.h) on the control plane's timer.
// Each Tick() reads the persisted state from the store, and
//   - on the replica holding the leader lease (`is_leader`): for a requested rotation, asks the
//     observer for the fingerprints of the material in use and of the new material, and begins
//     the rotation (or aborts it with the reason the new material was refused); for a running one,
//     gathers the observations (the roots each sidecar's trust bundle holds, the signer of its
//     live certificate), advances the state at most one step, and persists the new state with the
//     store's optimistic concurrency BEFORE acting on it; a replica that loses the race acts on
//     nothing this tick and reads the winner's state on the next;
//   - on every replica, hands the persisted state to the actuator, which serves what it says: the
//     trust-bundle roots, the signing certificate and step 4's renewal round (so replicas agree,
//     and a restarted control plane resumes from the store with no state of its own).
// An idle state serves nothing: the CA's configured material stands.
//
// Ownership: the store, observer and actuator are not owned and must outlive the driver.
// Threading: not thread-safe; call Tick() from one thread (the control plane's timer). The
// observer and actuator are called synchronously from Tick().

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "control-plane/ca/rotation.h"

namespace meshlet::controlplane::ca {

// The fingerprints (SHA-256 hex) of the material in use and of a rotation's new material.
struct MaterialFingerprints {
  std::string old_root, new_root, old_signer, new_signer;
};

// Where the observations come from (the sidecars' reports of their trust bundle and
// certificate; the CA's material).
class RotationObserver {
 public:
  virtual ~RotationObserver() = default;
  virtual std::vector<SidecarObservation> Observe() = 0;
  // For a requested rotation: the material in use and the new material `requested.source`
  // names, checked for `requested.kind`. Unavailable while the new material is still being read
  // (asked again next tick); any other error aborts the rotation with that reason.
  virtual absl::StatusOr<MaterialFingerprints> Material(const RotationState& requested) = 0;
};

// What the driver changes in the control plane.
class RotationActuator {
 public:
  virtual ~RotationActuator() = default;
  // Serves what `rotation` says (Rotation::BundleRoots, Signer, Renewal). Called on every tick
  // with the persisted state, idle included (serve the configured material then);
  // implementations treat an unchanged state as a no-op.
  virtual void Serve(const Rotation& rotation) = 0;
};

struct RotationDriverCounters {
  uint64_t ticks = 0;
  uint64_t steps = 0;           // transitions persisted by this replica
  uint64_t save_conflicts = 0;  // another replica wrote first
  uint64_t store_errors = 0;    // Load/Save failed otherwise
  uint64_t renewal_rounds = 0;  // step-4 rounds this replica started
};

class RotationDriver {
 public:
  // `is_leader` says whether this replica holds the control plane's leader lease now.
  RotationDriver(RotationStore& store, RotationObserver& observer, RotationActuator& actuator,
                 std::function<bool()> is_leader);

  // One evaluation at `now`. Returns the decision (empty on a follower or an idle rotation), or
  // the store error (also counted).
  absl::StatusOr<RotationDecision> Tick(absl::Time now);

  // The state as of the last tick, and the observations it was judged on (for status).
  const RotationState& state() const { return state_; }
  const std::vector<SidecarObservation>& observations() const { return observations_; }
  const RotationDriverCounters& counters() const { return counters_; }
  // What `meshctl ca status` shows of the rotation (RotationStatusJson): the state, the last
  // leader decision (step message, who holds it back) and the observations it was made on.
  std::string StatusJson() const { return RotationStatusJson(state_, last_, observations_); }

 private:
  RotationStore& store_;
  RotationObserver& observer_;
  RotationActuator& actuator_;
  std::function<bool()> is_leader_;
  RotationState state_;
  std::vector<SidecarObservation> observations_;
  RotationDecision last_;  // the last decision taken as leader
  RotationDriverCounters counters_;
};

}  // namespace meshlet::controlplane::ca
