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

namespace meshlet {
class StatsShard;
}

namespace meshlet::sidecar {

class Cluster;
struct UpstreamStats;

namespace config {
struct Snapshot;
}

namespace tracing {
class Tracer;
}

// A cluster as one request holds it: `cluster` keeps the Cluster (and `stats`) alive while the
// request uses it, even if a configuration change removes the cluster meanwhile.
struct ClusterRef {
  std::shared_ptr<Cluster> cluster;      // null: no such cluster
  const UpstreamStats* stats = nullptr;  // null: none registered (the router then counts nothing)
};

// The worker's clusters by name. The router looks clusters up per request.
class ClusterManager {
 public:
  virtual ~ClusterManager() = default;
  // Null when the snapshot has no such cluster.
  virtual Cluster* Find(absl::string_view name) = 0;
  // What the router uses. The default wraps Find() without ownership (for managers whose
  // clusters outlive every request, e.g. test fakes).
  virtual ClusterRef Get(absl::string_view name) {
    return {std::shared_ptr<Cluster>(std::shared_ptr<Cluster>(), Find(name)), nullptr};
  }
};

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
  ClusterManager& clusters;
  std::shared_ptr<const config::Snapshot> snapshot;
  AccessLogSink* access_log = nullptr;  // null: off
  tracing::Tracer* tracer = nullptr;    // null: tracing off (trace headers pass through)
  bool draining = false;                // set on SIGTERM / POST /drain
  int worker_index = 0;
};

}  // namespace meshlet::sidecar
