#include "control-plane/telemetry/golden_common.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"

namespace meshlet::controlplane::telemetry {

std::string GoldenJsonNumber(double v) {
  if (std::isnan(v)) return "null";
  return absl::StrCat(std::round(v * 1000) / 1000);
}

http::ServerResponse GoldenQueryError(int status, absl::string_view message) {
  return http::ServerResponse::Json(
      status,
      absl::StrCat(R"({"kind":"Status","apiVersion":"v1","status":"Failure","code":)", status,
                   R"(,"reason":"BadRequest","message":)", JsonQuote(message), "}\n"));
}

double NearestRankMs(const std::map<uint32_t, uint64_t>& counts, uint64_t total, double q,
                     double (*midpoint_ms)(uint32_t bucket)) {
  if (total == 0 || counts.empty()) return std::numeric_limits<double>::quiet_NaN();
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * total)));
  uint64_t seen = 0;
  for (const auto& [bucket, count] : counts) {
    seen += count;
    if (seen >= rank) return midpoint_ms(bucket);
  }
  return midpoint_ms(counts.rbegin()->first);
}

}  // namespace meshlet::controlplane::telemetry
