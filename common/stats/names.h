#pragma once

// Validation of metric names, label names and text, applied at registration so that everything
// the registry holds can be exposed as valid, lint-clean Prometheus text. Stateless; thread-safe.
//
// Rules (stricter than the Prometheus grammar, matching its naming conventions):
// - metric names: lower snake_case `[a-z_][a-z0-9_]*`, starting with the registry's prefix;
//   counters end in `_total`, other types do not; no `_bucket`, `_sum` or `_count` suffix (they
//   would clash with histogram samples); the type's own name ("counter", "gauge", "histogram")
//   does not appear in the name; `:` is reserved for recording rules.
// - label names: lower snake_case, not starting with `__` (reserved), no duplicates, and `le`
//   is reserved for histogram buckets.
// - help text and label values: valid UTF-8 (escaped when exposed, by the helpers below).

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/utf8.h"
#include "common/stats/stats.h"

namespace meshlet::stats_internal {

absl::Status ValidateMetricName(absl::string_view name, MetricType type,
                                absl::string_view required_prefix);
absl::Status ValidateLabelName(absl::string_view name, MetricType type);
absl::Status ValidateHelp(absl::string_view help);
using ::meshlet::IsValidUtf8;

// Prometheus text format escaping: label values escape `\`, `"` and newline; HELP text escapes
// `\` and newline.
void AppendEscapedLabelValue(std::string* out, absl::string_view value);
void AppendEscapedHelp(std::string* out, absl::string_view help);

}  // namespace meshlet::stats_internal
