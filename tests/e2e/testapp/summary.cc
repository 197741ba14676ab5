#include "tests/e2e/testapp/summary.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace meshlet::testapp {
namespace {

// The value at fraction q (0..1) of sorted `v` (nearest rank); 0 for none.
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

}  // namespace

std::string FailureRecord::ToJson() const {
  std::string out = absl::StrCat("{\"at\":", SecondsJson(at_seconds));
  if (error.empty()) {
    absl::StrAppend(&out, ",\"status\":", status);
  } else {
    absl::StrAppend(&out, ",\"error\":", JsonString(error));
  }
  if (!pod.empty()) absl::StrAppend(&out, ",\"pod\":", JsonString(pod));
  if (!trace.empty()) absl::StrAppend(&out, ",\"trace\":", JsonString(trace));
  if (!proxy_error.empty()) absl::StrAppend(&out, ",\"proxy_error\":", JsonString(proxy_error));
  if (!request_id.empty()) absl::StrAppend(&out, ",\"request_id\":", JsonString(request_id));
  absl::StrAppendFormat(&out, ",\"ms\":%.2f}", ms);
  return out;
}

std::string LatencyJson(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return absl::StrFormat("{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"max\":%.2f}",
                         Percentile(ms, 0.5), Percentile(ms, 0.9), Percentile(ms, 0.99),
                         ms.empty() ? 0.0 : ms.back());
}

std::string FailuresJson(const std::vector<FailureRecord>& failures) {
  std::string out = "[";
  for (size_t i = 0; i < failures.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", failures[i].ToJson());
  }
  out += "]";
  return out;
}

std::string SecondsJson(double seconds) { return absl::StrFormat("%.3f", seconds); }

}  // namespace meshlet::testapp
