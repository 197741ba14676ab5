#pragma once

// WorkerClusterManager: one worker's clusters, built from the configured cluster set. It is the
// concrete ClusterManager (cluster_ref.h) the router looks clusters up in.
//
// Clusters are built on this worker's first use (ADR 0091). Update(clusters) takes the
// configuration's ClusterSet by shared pointer, the one the snapshot holds, and keeps nothing
// else per cluster: the configs and their endpoint lists are shared read-only by every worker
// and the main thread. A worker's Cluster object (hosts, load balancer, pools, outlier and breaker
// state) is built by the first Get() (or Find()) of that cluster on this worker, from the config
// current then; a cluster no request on this worker ever used costs this worker nothing, and an
// Update that changes or removes only such clusters costs one pointer swap. Built clusters follow
// Update as before: the Cluster of every built cluster still present is kept and given the new
// config (Cluster::Update keeps what did not change), removed ones drain: their pools stop taking
// requests and close once their streams end. A built cluster whose TLS settings
// (UpstreamTlsConfig) changed is replaced the same way, since its pools keep the transport factory
// they were made with (the next use builds the new one); a change to one endpoint's TLS settings
// (EndpointTlsConfig) only renews that host's pools (Cluster::Update). A removed cluster stays
// alive for as long as a request in flight holds its ClusterRef, so nothing is pulled out from
// under a request. The number of built clusters is the gauge meshlet_worker_clusters_built{worker}.
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
// (SharedHostHealth, health_checker.h): each manager subscribes to them and mirrors them onto the
// hosts of its built clusters as kFailedActiveHealthCheck, when a result changes and whenever it
// builds or updates a cluster, so a cluster built late starts with the current results. The
// server applies each configuration's limits to SharedClusterLimits once (Update), so they hold
// for clusters no worker built yet (admin /clusters); a worker building a cluster applies the
// limits of the config it builds from.
//
// Threading: a WorkerClusterManager and everything it returns belong to one worker's loop thread.
// SharedClusterLimits is thread-safe (a mutex, taken only when clusters are built or updated).
// Destroy the manager after the connections that use it, and after the loop ran the deferred
// deletions they left (Loop::RunUntilIdle), so no request still refers to a cluster.

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
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
  // Takes a configuration's clusters: the thresholds some worker built follow their new limits,
  // and the others are read from the set when asked (AppendJson). The set is shared, not copied
  // (one pointer), and nothing is kept per configured cluster: an entry exists only for a
  // cluster some worker built (For) or that carried traffic (MarkActive). The server calls it
  // once per configuration, on the main thread; costs per built cluster.
  void Update(const ClusterSet& clusters);
  // The same for a configuration that differs from the last one applied only by the clusters
  // `changed` names (added or replaced, none removed): costs per changed name.
  void Update(const ClusterSet& clusters, absl::Span<const std::string> changed);

  // Publishes, on `shard` (a shard any thread may use), the overflows counted since the last call
  // (meshlet_upstream_cb_overflow_total{cluster,threshold}, registered with the threshold's first
  // overflow), for the clusters that carried traffic (MarkActive) only. The admin API calls it
  // before it reads stats, so a scrape sees current values without any per-request stats work.
  // The first call also makes each such cluster's remaining capacity per threshold
  // (meshlet_upstream_cb_remaining{cluster,threshold}) part of every read of the shard's
  // registry: computed from the thresholds when read (StatsRegistry::AddGaugeCollector), it holds
  // no series. The registry may be destroyed before or after this object.
  void PublishStats(StatsShard& shard);
  // `cluster` carried a request on some worker: PublishStats includes it from now on.
  void MarkActive(absl::string_view cluster);

  SharedHostHealth& host_health() { return host_health_; }

  // Appends `"circuit_breakers":{"max_requests":{"limit":N,"remaining":N},...}` for the admin
  // /clusters endpoint (`null` for a cluster never configured). A configured cluster no worker
  // built holds nothing: its limits are its config's, all of them remaining.
  void AppendJson(std::string& out, absl::string_view cluster);

  // Clusters whose thresholds exist (a worker built them; tests).
  size_t thresholds_count();
  // Clusters with an entry: built by some worker, or active (tests: none for configured ones).
  size_t entries_count();

 private:
  // The overflow counters, made with a cluster's first refusal (most never refuse).
  struct Overflow {
    std::array<Counter, resilience::kResourceKindCount> counter;
    std::array<uint64_t, resilience::kResourceKindCount> seen{};
    std::array<bool, resilience::kResourceKindCount> registered{};
  };
  struct Published {
    std::unique_ptr<Overflow> overflow;  // null until the first overflow
  };
  // Everything kept per built or active cluster, in one entry (one copy of the name).
  struct Limits {
    // Made by the first For() (a worker builds the cluster), kept after removal while requests
    // hold it; null for a cluster only active (MarkActive before For, tests).
    std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds;
    // The series PublishStats registered; made by MarkActive (the cluster carried traffic).
    std::unique_ptr<Published> published;
  };

  // meshlet_upstream_cb_remaining's rows, at a stats read (the registry calls it).
  void CollectRemaining(GaugeRows& rows);

  Mutex mu_;
  absl::flat_hash_map<std::string, Limits> by_name_ ABSL_GUARDED_BY(mu_);
  // The configuration Update() last took (shared with the snapshot): the limits of clusters no
  // worker built, for AppendJson.
  ClusterSet configured_ ABSL_GUARDED_BY(mu_);
  SharedHostHealth host_health_;
  // Last, so it is destroyed (and the registry stops calling CollectRemaining) first.
  Mutex collector_mu_;
  StatsRegistry::CollectorHandle collector_ ABSL_GUARDED_BY(collector_mu_);
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

  // Applies the configuration's clusters, the whole set (see the header comment): shared, not
  // copied; the set must not change while the manager holds it. Call on the worker's thread.
  // `changed`, when not null, names every cluster whose config differs from the set the manager
  // holds now (added or replaced, none removed; config::ChangedClusters): only the built ones
  // among them are looked at, so an update costs per changed name, not per cluster built here.
  // Null: every built cluster is compared with the new set.
  void Update(std::shared_ptr<const ClusterSet> clusters,
              const std::vector<std::string>* changed = nullptr);
  // The same for a set the caller does not share (tests): the map is copied, the configs shared.
  void Update(const ClusterSet& clusters);

  // Labels this manager's per-worker series ({worker="N"}); call before the first Update().
  void SetWorkerIndex(int index) { worker_label_ = std::to_string(index); }

  // Mirrors the shared active health-check results of `cluster` onto its hosts, if built here.
  void ApplyActiveHealth(absl::string_view cluster);

  // ClusterManager. Both build the cluster on its first use on this worker; Get() also registers
  // its stats on its first call for that cluster.
  Cluster* Find(absl::string_view name) override;
  ClusterRef Get(absl::string_view name) override;

  // The cluster as this worker runs it, without building it: null if not configured, or if no
  // request on this worker used it yet (admin, tests).
  Cluster* FindBuilt(absl::string_view name) const;
  // Clusters configured, and those of them built on this worker.
  size_t size() const { return configured_->size(); }
  size_t built_count() const { return built_.size(); }
  // The built clusters the last Update() compared with the new set (tests: an update's cost).
  size_t last_update_examined() const { return last_update_examined_; }
  // The stats of a cluster currently configured; null if absent, or if it never carried a request
  // on this worker.
  const UpstreamStats* FindStats(absl::string_view name) const;

 private:
  // A cluster with its stats, held by shared_ptr so requests can keep it alive after removal.
  struct Entry;

  // The entry of a configured cluster, built on its first use here from the current config, with
  // the current health results mirrored onto its hosts; null if not configured.
  const std::shared_ptr<Entry>* FindOrBuild(absl::string_view name);
  // Takes `entry` out of service: its pools drain, and it is freed once no request holds it.
  void Retire(std::shared_ptr<Entry> entry);
  void PublishBuilt();
  // Factories counting connections in `entry`'s stats (once it has them).
  CodecFactories MakeCodecFactories(const Entry& entry) const;
  void InitStats(Entry& entry);
  // What the codec factories of every cluster built here share: they hold a pointer to it (two
  // pointers fit std::function's inline storage, so a built cluster's factories allocate
  // nothing), not copies of the options.
  struct CodecSettings {
    event::Loop* loop;
    http::h1::CodecOptions http1;
    http::h2::Http2Options http2;  // options_.http2, counting in http2_stats_
  };

  event::Loop& loop_;
  Random& random_;
  const Clock& clock_;
  StatsShard& stats_;
  SharedClusterLimits& limits_;
  const ClusterManagerOptions options_;
  // The upstream HTTP/2 codecs' counters (meshlet_http2_upstream_*), which the codecs of every
  // cluster's pools point at: they live no longer than the manager.
  http::h2::Http2Stats http2_stats_;
  // Points at loop_ and http2_stats_; lives as long as the manager, like them.
  const CodecSettings codec_settings_;
  std::string worker_label_ = "0";
  // The configuration's clusters, shared with the snapshot (never null).
  std::shared_ptr<const ClusterSet> configured_ = std::make_shared<const ClusterSet>();
  // The clusters built on this worker, each still configured.
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> built_;
  size_t last_update_examined_ = 0;
  Gauge built_gauge_;  // meshlet_worker_clusters_built{worker}; registered by the first Update
  bool built_gauge_registered_ = false;
  // Health-check notifications posted to this loop reach the manager only while it lives.
  std::shared_ptr<WorkerClusterManager*> alive_;
  uint64_t health_subscription_ = 0;
};

}  // namespace meshlet::sidecar::cluster
