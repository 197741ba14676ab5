#pragma once

// What a request sees of the worker's clusters: ClusterManager looks a cluster up by name and
// ClusterRef keeps it alive for the request. WorkerClusterManager (cluster_manager.h) is the
// implementation; tests substitute their own. Everything here belongs to one worker's thread.

#include <memory>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::cluster {

class Cluster;
struct UpstreamStats;

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
  // Null when the configuration has no such cluster.
  virtual Cluster* Find(absl::string_view name) = 0;
  // What the router uses. The default wraps Find() without ownership (for managers whose
  // clusters outlive every request, e.g. test fakes).
  virtual ClusterRef Get(absl::string_view name) {
    return {std::shared_ptr<Cluster>(std::shared_ptr<Cluster>(), Find(name)), nullptr};
  }
};

}  // namespace meshlet::sidecar::cluster
