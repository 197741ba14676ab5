#pragma once

// Text views of the trace collector's query API for meshctl: the trace list as a table and one
// trace as a waterfall (an indented span tree with offsets, durations and bars, each span's
// attributes and status under it).

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::cli {

// `json` is a GET /api/v1/traces reply.
absl::StatusOr<std::string> FormatTraceList(absl::string_view json);
// `json` is a GET /api/v1/traces/{id} reply. `bar_width` columns for the timeline.
absl::StatusOr<std::string> FormatTraceWaterfall(absl::string_view json, int bar_width = 40);
// `json` is a GET /api/v1/stat reply (golden metrics). `top`: busiest paths first (by RPS) with
// at most `limit` rows (0: all); otherwise sorted by source and destination.
absl::StatusOr<std::string> FormatStatTable(absl::string_view json, bool top = false,
                                            size_t limit = 0);
// `json` is a GET /api/v1/stat/history reply: one row per point, oldest first (times UTC), under
// a line naming the edge or service and the step.
absl::StatusOr<std::string> FormatStatHistory(absl::string_view json);

// One line of GET /api/v1/tap (newline-delimited JSON) as meshctl tap prints it: a TapEvent as
// one line on `out` ("inbound  web-1.shop GET reviews:9080/r/1 status=200 latency=1.2ms
// caller=... route=HTTPRoute/shop/r#0"), the other kinds as notes on `note`; each ends in a
// newline when not empty. An error for a line that is not a JSON object.
struct TapLineView {
  std::string out;
  std::string note;
};
absl::StatusOr<TapLineView> FormatTapLine(absl::string_view json_line);

// `json` is a GET /api/v1/stat/routes reply: one row per route rule, by route and rule.
absl::StatusOr<std::string> FormatStatRoutes(absl::string_view json);
// `json` is a GET /api/v1/traces/{id}/explain reply (control-plane/telemetry/explain.h): the
// chain of hops, each with the route and the policy objects that decided it, its cluster, timeouts,
// attempts, authorization and error, the hop that failed first marked, then the verdict.
// `applied_from` maps a policy object ("Kind/ns/name") to the file it was applied from (the
// meshlet.io/applied-from annotation), shown beside it.
absl::StatusOr<std::string> FormatExplanation(
    absl::string_view json, const std::map<std::string, std::string>& applied_from = {});
// 1.234s, 12.3ms, 456us: three significant-ish digits, for humans.
std::string FormatNanos(int64_t nanos);

}  // namespace meshlet::controlplane::cli
