#pragma once

// WorkerClusterManager: one worker's clusters, built from the configuration snapshot. It is the
// concrete ClusterManager (sidecar/listener/worker_context.h) the router looks clusters up in.
//
// Update(snapshot) keeps the Cluster object (hosts, pools, outlier state) of every cluster that
// is still present, passing it the new config (Cluster::Update keeps what did not change), creates
// new ones, and drains removed ones: their pools stop taking requests and close once their
// streams end. A cluster whose TLS settings (UpstreamTlsConfig) changed is replaced the same way,
// since its pools keep the transport factory they were made with. A removed cluster stays alive for
// as long as a request in flight holds its ClusterRef, so nothing is pulled out from under a
// request.
//
// Per-cluster stats (UpstreamStats) are registered on the worker's StatsShard when a cluster is
// first created; the codec factories count every upstream connection they make.
//
// Circuit-breaker limits are per cluster for the whole process, not per worker (see
// resilience/circuit_breaker.h), so every worker's manager takes its thresholds from one
// SharedClusterLimits, which the server owns.
//
// Threading: a WorkerClusterManager and everything it returns belong to one worker's loop thread.
// SharedClusterLimits is thread-safe (a mutex, taken only when clusters are created or updated).
// Destroy the manager after the connections that use it, and after the loop ran the deferred
// deletions they left (Loop::RunUntilIdle), so no request still refers to a cluster.

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/listener/worker_context.h"
#include "sidecar/resilience/circuit_breaker.h"

namespace meshlet::sidecar {

// Circuit-breaker thresholds shared by every worker's Cluster of the same name.
class SharedClusterLimits {
 public:
  // The thresholds of `config.name`, created on first use; their limits follow `config`.
  std::shared_ptr<resilience::CircuitBreakerThresholds> For(const ClusterConfig& config);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<resilience::CircuitBreakerThresholds>> by_name_
      ABSL_GUARDED_BY(mu_);
};

struct ClusterManagerOptions {
  // The transport for a cluster's upstream connections (TLS); unset, or returning null, means
  // plaintext.
  std::function<net::TransportFactory(const ClusterConfig&)> transport_factory;
  http::h1::CodecOptions http1;
  http::h2::Http2Options http2;
};

class WorkerClusterManager final : public ClusterManager {
 public:
  // `loop`, `random`, `clock`, `stats` and `limits` must outlive the manager.
  WorkerClusterManager(event::Loop& loop, Random& random, const Clock& clock, StatsShard& stats,
                       SharedClusterLimits& limits, ClusterManagerOptions options = {});
  ~WorkerClusterManager() override;
  WorkerClusterManager(const WorkerClusterManager&) = delete;
  WorkerClusterManager& operator=(const WorkerClusterManager&) = delete;

  // Applies the snapshot's clusters (see the header comment). Call on the worker's thread.
  void Update(const config::Snapshot& snapshot);

  // ClusterManager
  Cluster* Find(absl::string_view name) override;
  ClusterRef Get(absl::string_view name) override;

  size_t size() const { return clusters_.size(); }
  // The stats of a cluster currently configured; null if absent.
  const UpstreamStats* FindStats(absl::string_view name) const;

 private:
  // A cluster with its stats, held by shared_ptr so requests can keep it alive after removal.
  struct Entry;

  std::shared_ptr<Entry> Create(const std::shared_ptr<const ClusterConfig>& config);
  CodecFactories MakeCodecFactories(const UpstreamStats& stats) const;

  event::Loop& loop_;
  Random& random_;
  const Clock& clock_;
  StatsShard& stats_;
  SharedClusterLimits& limits_;
  const ClusterManagerOptions options_;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> clusters_;
};

}  // namespace meshlet::sidecar
