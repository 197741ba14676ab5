#pragma once

// Stat handles for code that must keep working when a registration fails (a name or label that
// clashes with an earlier registration): the error is logged, at most once a second, and the
// handle discards what it is given.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/logging.h"

namespace meshlet {

// `handle`'s value, or a default (discarding) handle of type T after logging `name`'s error.
template <typename T>
T OrDiscard(absl::StatusOr<T> handle, absl::string_view name) {
  if (handle.ok()) return *std::move(handle);
  LOG_EVERY_N_SEC(ERROR, 1) << "stat " << name << ": " << handle.status();
  return T();
}

}  // namespace meshlet
