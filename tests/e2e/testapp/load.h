#pragma once

// `testapp get`: sends a number of requests, some at a time, and sums up what came back. The
// end-to-end tests run it inside a pod (podman exec) as the mesh's client.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/event/loop.h"
#include "tests/e2e/testapp/client.h"
#include "tests/e2e/testapp/options.h"

namespace meshlet::testapp {

struct LoadSummary {
  uint64_t requests = 0;
  std::map<int, uint64_t> statuses;        // answers by status
  std::map<std::string, uint64_t> errors;  // no answer, by status code name (UNAVAILABLE, ...)
  std::map<std::string, uint64_t> pods;    // answers by x-testapp-pod
  std::vector<double> latencies_ms;        // of the answers, in completion order
  FetchResult last;                        // the last one to complete

  bool all_succeeded() const;
  // One line of JSON: {"requests":N,"statuses":{"200":N},"errors":{},"pods":{},
  // "latency_ms":{"p50":..,"p90":..,"p99":..,"max":..}}.
  std::string ToJson() const;
};

// Sends `options.count` requests, `options.concurrency` at a time, on `loop` (which this runs
// until they are all done).
LoadSummary RunLoad(event::Loop& loop, const GetOptions& options);

}  // namespace meshlet::testapp
