#include "control-plane/ca/rotation_driver.h"

#include <utility>

namespace meshlet::controlplane::ca {

RotationDriver::RotationDriver(RotationStore& store, RotationObserver& observer,
                               RotationActuator& actuator, std::function<bool()> is_leader)
    : store_(store), observer_(observer), actuator_(actuator), is_leader_(std::move(is_leader)) {}

absl::StatusOr<RotationDecision> RotationDriver::Tick(absl::Time now) {
  ++counters_.ticks;
  absl::StatusOr<RotationStore::Loaded> loaded = store_.Load();
  if (!loaded.ok()) {
    ++counters_.store_errors;
    return loaded.status();
  }
  Rotation rotation(std::move(loaded->state));
  const RotationStep before = rotation.state().step;
  RotationDecision decision;
  const bool running = rotation.state().step == RotationStep::kDistributing ||
                       rotation.state().step == RotationStep::kReissuing;
  if (running && is_leader_()) {
    observations_ = observer_.Observe();
    for (SidecarObservation& s : observations_) {
      auto it = asked_.find(s.node);
      if (it != asked_.end()) s.renewal_requested = it->second;
    }
    decision = rotation.Advance(observations_, now);
    last_ = decision;
    if (decision.changed) {
      absl::StatusOr<int64_t> saved = store_.Save(rotation.state(), loaded->revision);
      if (!saved.ok()) {
        // Act on nothing we could not persist: the next tick reads whoever won.
        if (saved.status().code() == absl::StatusCode::kFailedPrecondition) {
          ++counters_.save_conflicts;
        } else {
          ++counters_.store_errors;
        }
        return saved.status();
      }
      if (rotation.state().step != before) ++counters_.steps;
    }
  }
  state_ = rotation.state();
  if (state_.step == RotationStep::kIdle) return decision;
  actuator_.Serve(rotation.BundleRoots(), rotation.Signer());
  for (const RotationDecision::Renewal& r : decision.renew) {
    actuator_.RequestRenewal(r.node, r.delay);
    asked_[r.node] = now;
    ++counters_.renewals_requested;
  }
  if (state_.step != RotationStep::kReissuing) asked_.clear();
  return decision;
}

}  // namespace meshlet::controlplane::ca
