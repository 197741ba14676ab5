#pragma once

// RepeatedFailure: when a failure that recurs (a source read again on a timer) is worth a log
// line: when its message differs from the one logged last, and again once `every` has passed
// while it lasts; Clear() after a success, so the next failure is logged at once. One per source:
// unlike LOG_EVERY_N_SEC, which limits a call site, one source's failure never hides another's.
// Not thread-safe; the owner's thread.

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshlet {

class RepeatedFailure {
 public:
  explicit RepeatedFailure(absl::Duration every = absl::Minutes(1)) : every_(every) {}

  // True when `message` should be logged now (and then remembers it as logged at `now`).
  bool ShouldLog(absl::string_view message, absl::Time now) {
    if (message == logged_ && now - logged_at_ < every_) return false;
    logged_ = std::string(message);
    logged_at_ = now;
    return true;
  }
  void Clear() { logged_.clear(); }

 private:
  absl::Duration every_;
  std::string logged_;
  absl::Time logged_at_ = absl::InfinitePast();
};

}  // namespace meshlet
