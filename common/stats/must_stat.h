#pragma once

// Stat handles for registrations that cannot fail unless the code itself is wrong: names and
// labels fixed at compile time, registered once when a component starts. A failure (a name or
// label that clashes with an earlier registration) is a programming error and stops the process
// with the registry's message. For names that come from configuration use OrDiscard
// (common/stats/or_discard.h), which keeps running.

#include <utility>

#include "absl/status/statusor.h"
#include "common/base/logging.h"

namespace meshlet {

// `handle`'s value; CHECK-fails with its error otherwise.
template <typename T>
T MustStat(absl::StatusOr<T> handle) {
  CHECK_OK(handle.status());
  return *std::move(handle);
}

}  // namespace meshlet
