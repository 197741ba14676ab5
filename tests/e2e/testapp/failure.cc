#include "tests/e2e/testapp/failure.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace meshlet::testapp {

absl::StatusOr<FailurePlan> FailurePlan::Create(absl::string_view pattern, double fraction) {
  if (!(fraction >= 0 && fraction <= 1)) {  // also refuses NaN
    return absl::InvalidArgumentError(
        absl::StrCat("failure fraction ", fraction, " is not between 0 and 1"));
  }
  FailurePlan plan;
  plan.fraction_ = fraction;
  plan.pattern_text_ = std::string(pattern);
  uint64_t count = 0;
  bool has_count = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (absl::ascii_isdigit(c)) {
      count = count * 10 + static_cast<uint64_t>(c - '0');
      has_count = true;
      if (count > kMaxPatternLength) {
        return absl::InvalidArgumentError(absl::StrCat(
            "failure pattern \"", pattern, "\" is longer than ", kMaxPatternLength, " requests"));
      }
      continue;
    }
    if (c != 'x' && c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat("failure pattern \"", pattern, "\": unexpected '", std::string(1, c),
                       "' at ", i + 1, "; use x (fail), . (succeed) and counts, as in 3x17."));
    }
    if (has_count && count == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("failure pattern \"", pattern, "\": a count of 0 at ", i + 1));
    }
    uint64_t n = has_count ? count : 1;
    if (plan.pattern_.size() + n > kMaxPatternLength) {
      return absl::InvalidArgumentError(absl::StrCat(
          "failure pattern \"", pattern, "\" is longer than ", kMaxPatternLength, " requests"));
    }
    plan.pattern_.insert(plan.pattern_.end(), n, c == 'x');
    count = 0;
    has_count = false;
  }
  if (has_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("failure pattern \"", pattern, "\" ends with a count; add x or ."));
  }
  return plan;
}

bool FailurePlan::NextFails(Random& random) {
  bool fail = false;
  if (!pattern_.empty()) {
    fail = pattern_[next_ % pattern_.size()];
    ++next_;
  }
  if (fraction_ > 0 && random.Bernoulli(fraction_)) fail = true;
  return fail;
}

std::string FailurePlan::Describe() const {
  if (never_fails()) return "never";
  std::string out;
  if (!pattern_.empty()) out = absl::StrCat("pattern ", pattern_text_);
  if (fraction_ > 0) absl::StrAppend(&out, out.empty() ? "" : ", ", "fraction ", fraction_);
  return out;
}

}  // namespace meshlet::testapp
