#pragma once

// What the one-line JSON summaries of `testapp get` (load.h) and `testapp tcp` (tcp_client.h)
// share: counts by key, latency percentiles, and the first failures with when they happened, so
// a test that expects none can say which ones failed.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tests/e2e/testapp/json.h"

namespace meshlet::testapp {

// Failures (and trace ids) a summary lists at most; the counts cover them all.
inline constexpr size_t kMaxListed = 20;

// Headers of a mesh proxy's own answers that a failure reports (docs/operations.md, "Why a
// request failed").
inline constexpr absl::string_view kProxyErrorHeader = "x-meshlet-error";
inline constexpr absl::string_view kRequestIdHeader = "x-request-id";

// One failed request or connection.
struct FailureRecord {
  double at_seconds = 0;  // when it started, from the start of the run
  double ms = 0;          // how long it took
  int status = 0;         // the answer's status, 0 when none came
  std::string error;      // why none came (a Status's text), "" when one did
  std::string pod;        // the answer's x-testapp-pod header, "" when none
  std::string trace;      // the trace id it was sent with, "" when none
  // A proxy's own answer: its x-meshlet-error (which proxy, flags, reason) and the request's
  // x-request-id, which `meshctl explain` takes; "" when the answer had none.
  std::string proxy_error;
  std::string request_id;

  // {"at":0.105,"status":503,"pod":"reviews-v1-0","ms":1.25} or
  // {"at":0.105,"error":"UNAVAILABLE: ...","ms":1.25}, with "trace", "proxy_error" and
  // "request_id" when there are.
  std::string ToJson() const;
};

// Appends {"key":n,...} (keys as JSON strings, in the map's order).
template <typename Key>
void AppendCountsJson(std::string& out, const std::map<Key, uint64_t>& counts) {
  out += "{";
  bool first = true;
  for (const auto& [key, n] : counts) {
    absl::StrAppend(&out, first ? "" : ",", JsonString(absl::StrCat(key)), ":", n);
    first = false;
  }
  out += "}";
}

// {"p50":..,"p90":..,"p99":..,"max":..} of `ms` (nearest rank; all 0 for none), two decimals.
std::string LatencyJson(std::vector<double> ms);

// [{...},...]
std::string FailuresJson(const std::vector<FailureRecord>& failures);

// Seconds with millisecond precision ("1.234").
std::string SecondsJson(double seconds);

}  // namespace meshlet::testapp
