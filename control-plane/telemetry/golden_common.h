#pragma once

// What the golden-metrics answers (golden_metrics.h, golden_history.h) share: their numbers,
// errors and percentiles. Plain functions; any thread.

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "common/http/server.h"

namespace meshlet::controlplane::telemetry {

// `v` rounded to three decimals as JSON; NaN is null.
std::string GoldenJsonNumber(double v);

// A Status object with reason BadRequest and `message` (what was wrong), as JSON.
http::ServerResponse GoldenQueryError(int status, absl::string_view message);

// Nearest-rank percentile `q` (0..1) of `total` samples counted per bucket (ascending), as
// `midpoint_ms` of the bucket holding it; NaN when `total` is 0.
double NearestRankMs(const std::map<uint32_t, uint64_t>& counts, uint64_t total, double q,
                     double (*midpoint_ms)(uint32_t bucket));

}  // namespace meshlet::controlplane::telemetry
