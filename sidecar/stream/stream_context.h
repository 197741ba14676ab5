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

namespace meshlet::sidecar::stream {

// Writes one JSON line per finished request or connection when enabled.
class AccessLogSink {
 public:
  virtual ~AccessLogSink() = default;
  virtual void Write(absl::string_view json_line) = 0;
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
};

}  // namespace meshlet::sidecar::stream
