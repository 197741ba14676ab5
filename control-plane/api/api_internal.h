#pragma once

// What the files of PolicyApi share, private to this library: its counters (api_server.cc makes
// them; the resource handlers of resources.cc count into them) and two small formatters.
// The counters are handles of the registry's shared shard: any thread may count.

#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/stats/stats.h"
#include "control-plane/api/api_server.h"

namespace meshlet::controlplane::api {

struct PolicyApi::Stats {
  explicit Stats(StatsRegistry& registry);

  std::map<std::string, Counter> requests;  // by status class: "2xx", "4xx", "5xx"
  std::map<std::string, Counter> writes;    // by result: "created", "updated", ...
  // meshlet_cp_api_request_seconds, by operation (PolicyApi::Operation).
  std::map<std::string, Histogram, std::less<>> durations;
  Counter invalid, conflicts, store_errors;
  Counter forged_mirror_header;  // a network request carrying kMirrorHeader
};

// `bytes` random bytes (BoringSSL's RAND_bytes), hex-encoded.
std::string RandomHex(size_t bytes);

// "2024-05-01T12:00:00Z".
std::string Rfc3339(absl::Time t);

}  // namespace meshlet::controlplane::api
