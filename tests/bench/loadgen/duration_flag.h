#pragma once

// DurationFlag: a flags::Flag (common/flags) taking a non-negative duration as absl writes it
// ("10s", "500ms", "1m30s"), for the load generator's and the delay server's command lines.

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/flags/flags.h"

namespace meshlet::loadgen {

inline flags::Flag DurationFlag(std::string name, Duration* out, std::string help) {
  return {.name = std::move(name),
          .value = "DURATION",
          .help = std::move(help),
          .set = [out](absl::string_view v) {
            absl::Duration d;
            if (!absl::ParseDuration(v, &d) || d < absl::ZeroDuration() ||
                d == absl::InfiniteDuration()) {
              return absl::InvalidArgumentError("must be a duration such as 10s, 500ms or 1m30s");
            }
            *out = absl::ToChronoNanoseconds(d);
            return absl::OkStatus();
          }};
}

}  // namespace meshlet::loadgen
