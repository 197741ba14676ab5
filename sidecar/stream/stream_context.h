#pragma once

// StreamContext: the services of one worker thread that a request uses while it runs — the
// worker's loop, randomness and clock, its stats shard, the tracer and the access log — without
// any configuration (the connection manager, which knows the snapshot, extends it:
// sidecar/listener/worker_context.h).
//
// Ownership and threading: one per worker, owned by the worker (sidecar/server), outliving every
// request on it; used only on that worker's loop thread (design.md §3), so nothing here locks.
// The worker may change `access_log`, `tracer` and `draining` between loop turns; a request reads
// them when it needs them.

#include <atomic>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"

namespace meshlet {
class StatsShard;
}

namespace meshlet::sidecar::tracing {
class Tracer;
}

namespace meshlet::sidecar::route {
class RouteStats;
}

namespace meshlet::sidecar::router {
struct CorsStats;
}

namespace meshlet::sidecar::stream {

class DecisionRing;
class WorkerTap;

// Writes one JSON line per finished request or connection when enabled.
class AccessLogSink {
 public:
  virtual ~AccessLogSink() = default;
  virtual void Write(absl::string_view json_line) = 0;
};

// Load shedding (docs/operations.md "Overload"): a request that starts while this says so gets a
// local 503 with `x-meshlet-overloaded: true` and the OL flag, before any filter runs.
struct OverloadState {
  // Set by the server's monitor (another thread) while the process's RSS is above
  // --overload-max-rss-mb; read with relaxed loads. Null: no memory limit.
  const std::atomic<bool>* memory_pressure = nullptr;
  // Requests in flight on this worker, and the most it takes (--overload-max-active-requests
  // divided over the workers); 0: no limit.
  uint64_t active_requests = 0;
  uint64_t max_active_requests = 0;
  // The settings behind the limits, which a shed request's decision record names:
  // --overload-max-active-requests (the whole sidecar's; max_active_requests is this worker's
  // share) and --overload-max-rss-mb. 0: off.
  uint64_t max_active_requests_setting = 0;
  uint64_t max_rss_mb = 0;

  enum class Reason { kNone, kMemory, kActiveRequests };
  Reason ShouldShed() const {
    if (memory_pressure != nullptr && memory_pressure->load(std::memory_order_relaxed)) {
      return Reason::kMemory;
    }
    if (max_active_requests != 0 && active_requests > max_active_requests) {
      return Reason::kActiveRequests;
    }
    return Reason::kNone;
  }
};

struct StreamContext {
  event::Loop& loop;
  Random& random;
  const Clock& clock;
  StatsShard& stats;
  AccessLogSink* access_log = nullptr;  // null: off
  tracing::Tracer* tracer = nullptr;    // null: tracing off (trace headers pass through)
  bool draining = false;                // set on SIGTERM / POST /drain
  int worker_index = 0;
  OverloadState overload;
  // Error attribution (docs/operations.md "Why a request failed"): the field every local reply
  // carries, "<node>; flag=<FLAGS>; reason=<message>" (empty name: none), and this proxy's node
  // name in it. Both point into the server's options, which outlive every worker.
  absl::string_view error_header;
  absl::string_view node_name;
  // The worker's decision records of failed and sampled requests (decision_ring.h); null: none
  // kept (--decision-ring-size 0).
  DecisionRing* decisions = nullptr;
  // The worker's live taps (tap.h) while it runs at least one; null otherwise, and the request
  // path pays that test alone.
  WorkerTap* tap = nullptr;
  // The worker's route-rule series (route/route_stats.h); null: none counted.
  route::RouteStats* route_stats = nullptr;
  // The worker's CORS counts (router/cors_stats.h); null: none counted.
  const router::CorsStats* cors = nullptr;
};

}  // namespace meshlet::sidecar::stream
