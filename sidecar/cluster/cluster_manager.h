#pragma once

// WorkerClusterManager: one worker's clusters, built from the configured cluster set. It is the
// concrete ClusterManager (cluster_ref.h) the router looks clusters up in.
//
// Update(clusters) keeps the Cluster object (hosts, pools, outlier state) of every cluster that
// is still present, passing it the new config (Cluster::Update keeps what did not change), creates
// new ones, and drains removed ones: their pools stop taking requests and close once their
// streams end. A cluster whose TLS settings (UpstreamTlsConfig) changed is replaced the same way,
// since its pools keep the transport factory they were made with; a change to one endpoint's TLS
// settings (EndpointTlsConfig) only renews that host's pools (Cluster::Update). A removed cluster
// stays alive for as long as a request in flight holds its ClusterRef, so nothing is pulled out
// from under a request.
//
// Per-cluster stats (UpstreamStats) are registered on the worker's StatsShard when the cluster
// carries its first request on that worker (Get()), not when it is configured: an idle cluster
// costs no series, no cells and no histogram buckets on any worker (docs/stats.md). That first
// Get() takes the registry's mutex and allocates once; later ones test one flag. The codec
// factories count every upstream connection they make.
// The HTTP/2 client codecs of every pool count their frames in the worker's
// meshlet_http2_upstream_* series (http2_stats.h), registered with the manager.
//
// Circuit-breaker limits are per cluster for the whole process, not per worker (see
// resilience/circuit_breaker.h), so every worker's manager takes its thresholds from one
// SharedClusterLimits, which the server owns. It also carries the active health-check results
// (SharedHostHealth, health_checker.h): each manager subscribes to them and mirrors them onto its
// hosts as kFailedActiveHealthCheck, when a result changes and whenever it (re)builds a cluster.
//
// Threading: a WorkerClusterManager and everything it returns belong to one worker's loop thread.
// SharedClusterLimits is thread-safe (a mutex, taken only when clusters are created or updated).
// Destroy the manager after the connections that use it, and after the loop ran the deferred
// deletions they left (Loop::RunUntilIdle), so no request still refers to a cluster.

#include <array>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/base/sync.h"
#include "common/event/loop.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/cluster_ref.h"
#include "sidecar/cluster/health_checker.h"
#include "sidecar/cluster/http2_stats.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/resilience/circuit_breaker.h"

namespace meshlet::sidecar::cluster {

// Circuit-breaker thresholds shared by every worker's Cluster of the same name.
class SharedClusterLimits {
 public:
  // The thresholds of `config.name`, created on first use; their limits follow `config`.
  std::shared_ptr<resilience::CircuitBreakerThresholds> For(const ClusterConfig& config);

  // Publishes, on `shard` (a shard any thread may use), each cluster's remaining capacity per
  // threshold (meshlet_upstream_cb_remaining{cluster,threshold}) and the overflows counted since
  // the last call (meshlet_upstream_cb_overflow_total{cluster,threshold}), for the clusters that
  // carried traffic (MarkActive) only. The admin API calls it before it reads stats, so a scrape
  // sees current values without any per-request stats work.
  void PublishStats(StatsShard& shard);
  // `cluster` carried a request on some worker: PublishStats includes it from now on.
  void MarkActive(absl::string_view cluster);

  SharedHostHealth& host_health() { return host_health_; }

  // Appends `"circuit_breakers":{"max_requests":{"limit":N,"remaining":N},...}` for the admin
  // /clusters endpoint (`null` for a cluster never configured).
  void AppendJson(std::string& out, absl::string_view cluster);

 private:
  struct Published {
    std::array<Gauge, resilience::kResourceKindCount> remaining;
    std::array<Counter, resilience::kResourceKindCount> overflow;
    std::array<uint64_t, resilience::kResourceKindCount> overflow_seen{};
    bool registered = false;
  };

  Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<resilience::CircuitBreakerThresholds>> by_name_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Published> published_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ ABSL_GUARDED_BY(mu_);
  SharedHostHealth host_health_;
};

// "max_connections", "max_pending_requests", "max_requests", "max_retries": the `threshold` label.
absl::string_view ThresholdName(resilience::ResourceKind kind);

struct ClusterManagerOptions {
  // The transports of a cluster's upstream connections, per endpoint (TLS, or plaintext for an
  // endpoint that says so); unset, or returning null, means plaintext. Called once per cluster.
  std::function<EndpointTransportFactory(const ClusterConfig&)> transport_factory;
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

  // Applies the configuration's clusters, the whole set (see the header comment). Call on the
  // worker's thread.
  void Update(const ClusterSet& clusters);

  // Labels this manager's per-worker series ({worker="N"}); call before the first Update().
  void SetWorkerIndex(int index) { worker_label_ = std::to_string(index); }

  // Mirrors the shared active health-check results of `cluster` onto its hosts.
  void ApplyActiveHealth(absl::string_view cluster);

  // ClusterManager. Get() registers the cluster's stats on its first call for that cluster.
  Cluster* Find(absl::string_view name) override;
  ClusterRef Get(absl::string_view name) override;

  size_t size() const { return clusters_.size(); }
  // The stats of a cluster currently configured; null if absent, or if it never carried a request
  // on this worker.
  const UpstreamStats* FindStats(absl::string_view name) const;

 private:
  // A cluster with its stats, held by shared_ptr so requests can keep it alive after removal.
  struct Entry;

  std::shared_ptr<Entry> Create(const std::shared_ptr<const ClusterConfig>& config);
  // Factories counting connections in `entry`'s stats (once it has them).
  CodecFactories MakeCodecFactories(const Entry& entry) const;
  void InitStats(Entry& entry);
  // options_.http2, counting in http2_stats_.
  http::h2::Http2Options Http2Options() const;

  event::Loop& loop_;
  Random& random_;
  const Clock& clock_;
  StatsShard& stats_;
  SharedClusterLimits& limits_;
  const ClusterManagerOptions options_;
  // The upstream HTTP/2 codecs' counters (meshlet_http2_upstream_*), which the codecs of every
  // cluster's pools point at: they live no longer than the manager.
  http::h2::Http2Stats http2_stats_;
  std::string worker_label_ = "0";
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> clusters_;
  // Health-check notifications posted to this loop reach the manager only while it lives.
  std::shared_ptr<WorkerClusterManager*> alive_;
  uint64_t health_subscription_ = 0;
};

}  // namespace meshlet::sidecar::cluster
