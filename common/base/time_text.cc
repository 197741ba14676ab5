#include "common/base/time_text.h"

namespace meshlet {

std::string Rfc3339Text(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

}  // namespace meshlet
