#pragma once

// Renders a StatsSnapshot for people and scrapers. Pure functions of the snapshot: no locks, no
// shared state; call them on the admin thread after StatsRegistry::Snapshot().
//
// - FormatPrometheus: Prometheus text exposition format 0.0.4 (Content-Type
//   `text/plain; version=0.0.4; charset=utf-8`). One `# HELP` and `# TYPE` per metric, series
//   in snapshot order (name, then label values), histograms as cumulative `_bucket{le=...}`,
//   `_sum` and `_count`, values in exposed units (recorded / exposition_divisor).
// - FormatText: the admin `/stats` listing, one `name{labels}: value` line per series;
//   histograms show count, sum and percentiles.
// - FormatJson: the same listing as one JSON object.
//
// Output is deterministic for a given snapshot, which golden tests rely on.

#include <string>

#include "absl/strings/string_view.h"
#include "common/stats/stats.h"

namespace meshlet {

inline constexpr absl::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

std::string FormatPrometheus(const StatsSnapshot& snapshot);

// Appends `value` as FormatPrometheus writes sample values: the shortest text that reads back as
// the same double, in Go's 'g' layout as Prometheus' own clients write it; NaN, +Inf, -Inf.
void AppendPrometheusValue(std::string& out, double value);

// Series whose name contains `name_filter` (all when empty).
std::string FormatText(const StatsSnapshot& snapshot, absl::string_view name_filter = "");
std::string FormatJson(const StatsSnapshot& snapshot, absl::string_view name_filter = "");

}  // namespace meshlet
