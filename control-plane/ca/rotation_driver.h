#pragma once

// RotationDriver: drives the rotation state machine (rotation.h) on the control plane's timer.
// Each Tick() reads the persisted state from the store, and
//   - on the replica holding the leader lease (`is_leader`), gathers the observations (which
//     sidecars ACKed a bundle with the new root, which root and signer their live certificate
//     chains to), advances the state at most one step, and persists the new state with the
//     store's optimistic concurrency BEFORE acting on it; a replica that loses the race acts on
//     nothing this tick and reads the winner's state on the next;
//   - on every replica, serves what the persisted state says: the trust-bundle roots and the
//     signing certificate (so replicas agree, and a restarted control plane resumes from the
//     store with no state of its own);
//   - on the leader in step 4, hands the early-renewal requests (node, jittered delay) to the
//     actuator, at the rate the state's limits allow, and remembers when it asked each sidecar
//     (in memory: after a restart a sidecar is asked again, which is harmless).
// An idle state serves nothing: the CA's configured material stands.
//
// Ownership: the store, observer and actuator are not owned and must outlive the driver.
// Threading: not thread-safe; call Tick() from one thread (the control plane's timer). The
// observer and actuator are called synchronously from Tick().

#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "control-plane/ca/rotation.h"

namespace meshlet::controlplane::ca {

// Where the observations come from (the xDS server's ACKed trust-bundle versions, the
// certificate service's record of what it issued). `renewal_requested` is filled by the driver.
class RotationObserver {
 public:
  virtual ~RotationObserver() = default;
  virtual std::vector<SidecarObservation> Observe() = 0;
};

// What the driver changes in the control plane.
class RotationActuator {
 public:
  virtual ~RotationActuator() = default;
  // The trust bundle to push (roots, fingerprints) and the signing certificate to issue with.
  // Called on every tick of a non-idle rotation with the same values until the step changes;
  // implementations treat an unchanged call as a no-op.
  virtual void Serve(const std::vector<std::string>& bundle_roots, const std::string& signer) = 0;
  // Step 4: ask `node` to renew its certificate after `delay` (over its ADS stream).
  virtual void RequestRenewal(const std::string& node, absl::Duration delay) = 0;
};

struct RotationDriverCounters {
  uint64_t ticks = 0;
  uint64_t steps = 0;           // transitions persisted by this replica
  uint64_t save_conflicts = 0;  // another replica wrote first
  uint64_t store_errors = 0;    // Load/Save failed otherwise
  uint64_t renewals_requested = 0;
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
  RotationDecision last_;                               // the last decision taken as leader
  absl::flat_hash_map<std::string, absl::Time> asked_;  // node → when step 4 last asked it
  RotationDriverCounters counters_;
};

}  // namespace meshlet::controlplane::ca
