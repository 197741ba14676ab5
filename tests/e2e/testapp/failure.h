#pragma once

// FailurePlan: which requests a flaky test service answers with an error status instead of
// serving them, so that the mesh's retries, circuit breakers and outlier detection have
// something to do.
//
//   pattern   a cycle of outcomes, "x" fails and "." succeeds; a count repeats the next
//             character: "3x17." fails the first 3 of every 20 requests, "x." every other one,
//             starting with the first. Request i (counted from 0) follows pattern[i % length].
//   fraction  each request fails independently with this probability (0 to 1).
// With both, a request fails when either says so. The default plan never fails.
//
// Not thread-safe: one plan belongs to one event loop.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/random.h"

namespace meshlet::testapp {

class FailurePlan {
 public:
  // The longest cycle a pattern may expand to.
  static constexpr size_t kMaxPatternLength = 100000;

  FailurePlan() = default;
  // Fails with a message saying what is wrong with `pattern` or `fraction`. An empty pattern
  // means none.
  static absl::StatusOr<FailurePlan> Create(absl::string_view pattern, double fraction);

  // Decides the next request: true means answer it with the failure status.
  bool NextFails(Random& random);

  bool never_fails() const { return pattern_.empty() && fraction_ <= 0; }
  // The plan as it was given ("3x17.", "fraction 0.1", "never"), for logs and answers.
  std::string Describe() const;

 private:
  std::string pattern_text_;
  std::vector<bool> pattern_;  // true: fail
  double fraction_ = 0;
  uint64_t next_ = 0;
};

}  // namespace meshlet::testapp
