#include "control-plane/ca/rotation_driver.h"

#include <utility>

#include "absl/strings/str_cat.h"

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
  if (RotationRunning(before) && is_leader_()) {
    if (before == RotationStep::kRequested) {
      // Step 0: the new material, read where the request named it, decides how to begin.
      absl::StatusOr<MaterialFingerprints> material = observer_.Material(rotation.state());
      absl::StatusOr<RotationState> begun = absl::UnavailableError("");
      if (material.ok()) {
        begun = Rotation::Begin(rotation.state(), rotation.state().kind, material->old_root,
                                material->new_root, material->old_signer, material->new_signer,
                                rotation.state().source, rotation.state().limits, now);
      } else if (material.status().code() == absl::StatusCode::kUnavailable) {
        decision.message = absl::StrCat("reading the new material: ", material.status().message());
      } else {
        begun = material.status();
      }
      if (begun.ok()) {
        rotation = Rotation(*std::move(begun));
        decision.changed = true;
        decision.message = rotation.state().step == RotationStep::kDistributing
                               ? "step 1: the trust bundle holds the old and the new root"
                               : "step 3: signing switched to the new intermediate";
      } else if (begun.status().code() != absl::StatusCode::kUnavailable) {
        (void)rotation.Abort(now, absl::StrCat("the new material (", rotation.state().source,
                                               ") was refused: ", begun.status().message()));
        decision.changed = true;
        decision.message = rotation.state().note;
      }
    } else {
      observations_ = observer_.Observe();
      decision = rotation.Advance(observations_, now);
    }
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
      if (decision.renewal_round_started) ++counters_.renewal_rounds;
    }
  }
  state_ = rotation.state();
  actuator_.Serve(rotation);
  return decision;
}

}  // namespace meshlet::controlplane::ca
