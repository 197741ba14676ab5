#pragma once

// What a worker thread gives the connections it accepts: its loop, randomness and clock, the
// configuration snapshot current for new requests, its clusters, its stats shard and the access
// log. One per worker; everything in it is used only on that worker's thread (design.md §3), so
// nothing here takes a lock. The server (sidecar/server) owns it and replaces `snapshot` and
// updates `clusters` when configuration changes; a request keeps the snapshot it started with.

#include <memory>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "sidecar/cluster/cluster_ref.h"

namespace meshlet {
class StatsShard;
}

namespace meshlet::sidecar {

namespace config {
struct Snapshot;
}

namespace tracing {
class Tracer;
}

// Writes one JSON line per finished request or connection when enabled.
class AccessLogSink {
 public:
  virtual ~AccessLogSink() = default;
  virtual void Write(absl::string_view json_line) = 0;
};

struct WorkerContext {
  event::Loop& loop;
  Random& random;
  const Clock& clock;
  StatsShard& stats;
  cluster::ClusterManager& clusters;
  std::shared_ptr<const config::Snapshot> snapshot;
  AccessLogSink* access_log = nullptr;  // null: off
  tracing::Tracer* tracer = nullptr;    // null: tracing off (trace headers pass through)
  bool draining = false;                // set on SIGTERM / POST /drain
  int worker_index = 0;
};

}  // namespace meshlet::sidecar
