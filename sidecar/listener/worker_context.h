#pragma once

// What a worker thread gives the HTTP connections it accepts: the services of the stream floor
// (sidecar/stream/stream_context.h: loop, randomness, clock, stats shard, tracer, access log), its
// clusters, and the configuration snapshot current for new requests. One per worker; everything
// in it is used only on that worker's thread (design.md §3), so nothing here takes a lock. The
// server (sidecar/server) owns it and replaces `snapshot` and updates `clusters` when
// configuration changes; a request keeps the snapshot it started with.

#include <memory>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "sidecar/stream/stream_context.h"

namespace meshlet::sidecar {

class Cluster;
struct UpstreamStats;

namespace config {
struct Snapshot;
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

using stream::AccessLogSink;

struct WorkerContext : stream::StreamContext {
  ClusterManager& clusters;
  std::shared_ptr<const config::Snapshot> snapshot;
};

}  // namespace meshlet::sidecar
