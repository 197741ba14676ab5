#include "sidecar/cluster/cluster_manager.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::cluster {
namespace {

// The settings the transport factory was made from; certificates inside the named secret are not
// among them (they rotate through the TLS context provider).
bool SameTransport(const UpstreamTlsConfig& a, const UpstreamTlsConfig& b) {
  return a.enabled == b.enabled && a.secret_name == b.secret_name && a.sni == b.sni &&
         a.alpn == b.alpn && a.expected_peer_ids == b.expected_peer_ids && a.ca_file == b.ca_file &&
         a.workload_certificate == b.workload_certificate &&
         *a.subject_alt_names == *b.subject_alt_names;
}

}  // namespace

std::shared_ptr<resilience::CircuitBreakerThresholds> SharedClusterLimits::For(
    const ClusterConfig& config) {
  MutexLock lock(&mu_);
  std::shared_ptr<resilience::CircuitBreakerThresholds>& slot = by_name_[config.name].thresholds;
  if (slot == nullptr) {
    slot = std::make_shared<resilience::CircuitBreakerThresholds>(config.circuit_breakers);
  } else {
    slot->SetLimits(config.circuit_breakers);
  }
  return slot;
}

void SharedClusterLimits::Update(const ClusterSet& clusters) {
  MutexLock lock(&mu_);
  configured_ = clusters;  // shares the set's nodes: one pointer, whatever its size
  // Only clusters some worker built hold thresholds; removed ones keep theirs (requests may still
  // hold them) and their series.
  for (auto& [name, limits] : by_name_) {
    if (limits.thresholds == nullptr) continue;
    auto it = configured_.find(name);
    if (it != configured_.end() && it->second != nullptr) {
      limits.thresholds->SetLimits(it->second->circuit_breakers);
    }
  }
}

void SharedClusterLimits::Update(const ClusterSet& clusters,
                                 absl::Span<const std::string> changed) {
  MutexLock lock(&mu_);
  configured_ = clusters;
  for (const std::string& name : changed) {
    auto limits = by_name_.find(name);
    if (limits == by_name_.end() || limits->second.thresholds == nullptr) continue;
    auto it = configured_.find(name);
    if (it != configured_.end() && it->second != nullptr) {
      limits->second.thresholds->SetLimits(it->second->circuit_breakers);
    }
  }
}

absl::string_view ThresholdName(resilience::ResourceKind kind) {
  switch (kind) {
    case resilience::ResourceKind::kConnection:
      return "max_connections";
    case resilience::ResourceKind::kPendingRequest:
      return "max_pending_requests";
    case resilience::ResourceKind::kRequest:
      return "max_requests";
    case resilience::ResourceKind::kRetry:
      return "max_retries";
  }
  return "unknown";
}

void SharedClusterLimits::PublishStats(StatsShard& shard) {
  {
    MutexLock lock(&collector_mu_);
    if (!collector_.active()) {
      absl::StatusOr<StatsRegistry::CollectorHandle> collector = shard.registry().AddGaugeCollector(
          "meshlet_upstream_cb_remaining",
          "Circuit-breaker capacity left per cluster and threshold (limit minus in use).",
          {"cluster", "threshold"}, [this](GaugeRows& rows) { CollectRemaining(rows); });
      if (collector.ok()) {
        collector_ = *std::move(collector);
      } else {
        LOG_EVERY_N_SEC(ERROR, 60) << "circuit-breaker stats: " << collector.status();
      }
    }
  }
  MutexLock lock(&mu_);
  for (const auto& [name, limits] : by_name_) {
    // Idle clusters get no series (docs/stats.md): their capacity is their configured limit.
    // Active ones were built (MarkActive follows For), so they have thresholds.
    if (limits.published == nullptr || limits.thresholds == nullptr) continue;
    const resilience::CircuitBreakerThresholds* thresholds = limits.thresholds.get();
    Published& published = *limits.published;
    for (size_t i = 0; i < resilience::kResourceKindCount; ++i) {
      const auto kind = static_cast<resilience::ResourceKind>(i);
      // The overflow counter registers with the threshold's first refusal: most clusters never
      // overflow, and a series costs the registry about 100 bytes (docs/stats.md).
      const uint64_t overflows = thresholds->Overflows(kind);
      if (overflows == 0 && published.overflow == nullptr) continue;
      if (published.overflow == nullptr) published.overflow = std::make_unique<Overflow>();
      Overflow& overflow = *published.overflow;
      if (overflows == overflow.seen[i]) continue;
      if (!overflow.registered[i]) {
        overflow.registered[i] = true;
        absl::StatusOr<Counter> counter = shard.RegisterCounter(
            "meshlet_upstream_cb_overflow_total",
            "Acquires refused by a circuit-breaker threshold, per cluster and threshold.",
            {{"cluster", name}, {"threshold", std::string(ThresholdName(kind))}});
        if (!counter.ok()) {
          LOG_EVERY_N_SEC(ERROR, 60)
              << "cluster " << name << ": circuit-breaker stats: " << counter.status();
        } else {
          overflow.counter[i] = *counter;
        }
      }
      overflow.counter[i].Inc(overflows - overflow.seen[i]);
      overflow.seen[i] = overflows;
    }
  }
}

void SharedClusterLimits::CollectRemaining(GaugeRows& rows) {
  MutexLock lock(&mu_);
  for (const auto& [name, limits] : by_name_) {
    // The clusters PublishStats covers: those that carried traffic.
    if (limits.published == nullptr || limits.thresholds == nullptr) continue;
    for (size_t i = 0; i < resilience::kResourceKindCount; ++i) {
      const auto kind = static_cast<resilience::ResourceKind>(i);
      rows.Add({name, ThresholdName(kind)}, limits.thresholds->Remaining(kind));
    }
  }
}

void SharedClusterLimits::MarkActive(absl::string_view cluster) {
  MutexLock lock(&mu_);
  std::unique_ptr<Published>& published = by_name_[cluster].published;
  if (published == nullptr) published = std::make_unique<Published>();
}

size_t SharedClusterLimits::entries_count() {
  MutexLock lock(&mu_);
  return by_name_.size();
}

size_t SharedClusterLimits::thresholds_count() {
  MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [name, limits] : by_name_) n += limits.thresholds != nullptr;
  return n;
}

void SharedClusterLimits::AppendJson(std::string& out, absl::string_view cluster) {
  out += "\"circuit_breakers\":";
  std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds;
  std::shared_ptr<const ClusterConfig> applied;
  {
    MutexLock lock(&mu_);
    auto it = by_name_.find(cluster);
    if (it != by_name_.end()) thresholds = it->second.thresholds;
    if (thresholds == nullptr) {
      auto configured = configured_.find(cluster);
      if (configured != configured_.end()) applied = configured->second;
    }
  }
  if (thresholds == nullptr && applied != nullptr) {
    // Configured, never built: nothing in use, nothing refused.
    thresholds = std::make_shared<resilience::CircuitBreakerThresholds>(applied->circuit_breakers);
  }
  if (thresholds == nullptr) {
    out += "null";
    return;
  }
  out += "{";
  for (size_t i = 0; i < resilience::kResourceKindCount; ++i) {
    const auto kind = static_cast<resilience::ResourceKind>(i);
    absl::StrAppend(&out, i == 0 ? "" : ",", "\"", ThresholdName(kind),
                    "\":{\"limit\":", thresholds->Limit(kind),
                    ",\"remaining\":", thresholds->Remaining(kind),
                    ",\"overflows\":", thresholds->Overflows(kind), "}");
  }
  out += "}";
}

struct WorkerClusterManager::Entry {
  Entry(WorkerClusterManager& manager, std::shared_ptr<const ClusterConfig> config,
        EndpointTransportFactory transport)
      : cluster(manager.loop_, config, manager.limits_.For(*config), manager.random_,
                manager.clock_, manager.MakeCodecFactories(*this), std::move(transport)) {}

  // The config is the cluster's (Cluster::config()): the entry keeps no second reference.
  // Registered by the first request (InitStats); null before, and when the registry refused it.
  std::unique_ptr<const UpstreamStats> stats;
  bool stats_initialized = false;
  Cluster cluster;
};

WorkerClusterManager::WorkerClusterManager(event::Loop& loop, Random& random, const Clock& clock,
                                           StatsShard& stats, SharedClusterLimits& limits,
                                           ClusterManagerOptions options)
    : loop_(loop),
      random_(random),
      clock_(clock),
      stats_(stats),
      limits_(limits),
      options_(std::move(options)),
      codec_settings_(CodecSettings{.loop = &loop_,
                                    .http1 = options_.http1,
                                    .http2 =
                                        [this] {
                                          http::h2::Http2Options http2 = options_.http2;
                                          http2.stats = &http2_stats_;
                                          return http2;
                                        }()}),
      alive_(std::make_shared<WorkerClusterManager*>(this)) {
  if (absl::Status registered = RegisterHttp2Stats(stats_, Http2Side::kUpstream, http2_stats_);
      !registered.ok()) {
    // Only the series limit can refuse registration; the codecs still work, uncounted.
    LOG(ERROR) << "upstream HTTP/2 stats not registered: " << registered;
    http2_stats_ = http::h2::Http2Stats();
  }
  health_subscription_ = limits_.host_health().Subscribe(
      loop_, [alive = std::weak_ptr<WorkerClusterManager*>(alive_)](const std::string& cluster) {
        // Runs on this manager's loop, where it is also destroyed: no race with the check.
        if (std::shared_ptr<WorkerClusterManager*> self = alive.lock()) {
          (*self)->ApplyActiveHealth(cluster);
        }
      });
}

WorkerClusterManager::~WorkerClusterManager() {
  limits_.host_health().Unsubscribe(health_subscription_);
  alive_.reset();
}

void WorkerClusterManager::ApplyActiveHealth(absl::string_view name) {
  auto it = built_.find(name);
  if (it == built_.end()) return;
  Cluster& cluster = it->second->cluster;
  const absl::flat_hash_set<net::Address> unhealthy = limits_.host_health().Unhealthy(name);
  for (const HostSharedPtr& host : cluster.host_set().hosts()) {
    cluster.SetActiveHealth(*host, !unhealthy.contains(host->address()));
  }
}

CodecFactories WorkerClusterManager::MakeCodecFactories(const Entry& entry) const {
  const CodecSettings* settings = &codec_settings_;
  const Entry* counted = &entry;  // owns the cluster that owns these factories
  // The pool calls a factory once per upstream connection it opens: the place to count them.
  // Pools open connections for requests, so the cluster's stats exist by then.
  return CodecFactories{
      .http1 = [settings, counted](http::CodecIo& io, http::ConnectionCallbacks& callbacks)
          -> std::unique_ptr<http::ClientConnection> {
        if (counted->stats != nullptr) counted->stats->cx_total.Inc();
        return std::make_unique<http::h1::ClientCodec>(*settings->loop, io, callbacks,
                                                       settings->http1);
      },
      .http2 = [settings, counted](http::CodecIo& io, http::ConnectionCallbacks& callbacks)
          -> std::unique_ptr<http::ClientConnection> {
        if (counted->stats != nullptr) counted->stats->cx_total.Inc();
        return std::make_unique<http::h2::ClientCodec>(io, callbacks, settings->http2,
                                                       settings->loop);
      },
  };
}

const std::shared_ptr<WorkerClusterManager::Entry>* WorkerClusterManager::FindOrBuild(
    absl::string_view name) {
  if (auto it = built_.find(name); it != built_.end()) return &it->second;
  // The cluster's first use on this worker (or no such cluster): one lookup in the shared set.
  auto configured = configured_->find(name);
  if (configured == configured_->end() || configured->second == nullptr) return nullptr;
  const std::shared_ptr<const ClusterConfig>& config = configured->second;
  EndpointTransportFactory transport;
  if (options_.transport_factory) transport = options_.transport_factory(*config);
  std::shared_ptr<Entry>& slot = built_[configured->first];
  slot = std::make_shared<Entry>(*this, config, std::move(transport));
  ApplyActiveHealth(configured->first);
  PublishBuilt();
  return &slot;
}

void WorkerClusterManager::Retire(std::shared_ptr<Entry> entry) {
  // Without endpoints every pool drains: idle connections close now, busy ones when their
  // requests end. Requests still holding the cluster keep it alive until then.
  ClusterConfig empty = entry->cluster.config();
  empty.endpoints.clear();
  entry->cluster.Update(empty);
  // Destroyed at the end of the loop turn at the earliest, never inside the caller's stack.
  loop_.DeferDelete(std::make_unique<std::shared_ptr<Entry>>(std::move(entry)));
}

void WorkerClusterManager::PublishBuilt() { built_gauge_.Set(static_cast<int64_t>(built_.size())); }

void WorkerClusterManager::InitStats(Entry& entry) {
  entry.stats_initialized = true;
  limits_.MarkActive(entry.cluster.name());
  absl::StatusOr<UpstreamStats> stats =
      UpstreamStats::Create(stats_, entry.cluster.name(), worker_label_);
  if (!stats.ok()) {
    // Only the series limit can refuse registration (counted in
    // meshlet_stats_series_refused_total); the cluster still serves, uncounted.
    LOG_EVERY_N_SEC(ERROR, 60) << "cluster " << entry.cluster.name()
                               << ": stats not registered: " << stats.status();
    return;
  }
  entry.stats = std::make_unique<const UpstreamStats>(*std::move(stats));
  entry.cluster.SetStatHandles(Cluster::StatHandles{
      .breaker_state = entry.stats->cf_breaker_state,
      .breaker_opened = entry.stats->cf_breaker_opened,
      .ejections_active = entry.stats->outlier_ejections_active,
      .ejections_total = entry.stats->outlier_ejections,
      .tls_handshake_failures = entry.stats->cx_tls_handshake_fail,
      .overload_responses = entry.stats->overload_responses,
      .overload_ejections = entry.stats->overload_ejections,
      .overload_ejections_skipped = entry.stats->overload_ejections_skipped,
      .overload_ejections_active = entry.stats->overload_ejections_active,
  });
}

void WorkerClusterManager::Update(const ClusterSet& clusters) {
  Update(std::make_shared<const ClusterSet>(clusters));
}

void WorkerClusterManager::Update(std::shared_ptr<const ClusterSet> clusters,
                                  const std::vector<std::string>* changed) {
  CHECK(clusters != nullptr);
  if (!built_gauge_registered_) {
    built_gauge_registered_ = true;
    absl::StatusOr<Gauge> gauge = stats_.RegisterGauge(
        "meshlet_worker_clusters_built",
        "Configured clusters a worker built (hosts, load balancer, pools) because a request used "
        "them, by worker thread.",
        {{"worker", worker_label_}});
    if (gauge.ok()) {
      built_gauge_ = *gauge;
    } else {
      LOG(ERROR) << "meshlet_worker_clusters_built not registered: " << gauge.status();
    }
  }
  configured_ = std::move(clusters);
  // Only the clusters built here have anything to update; the others are read from the shared
  // set when first used.
  std::vector<std::string> retired;
  last_update_examined_ = 0;
  auto examine = [&](const std::string& name, Entry& entry) {
    ++last_update_examined_;
    auto it = configured_->find(name);
    if (it == configured_->end() || (it->second != nullptr && options_.transport_factory &&
                                     !SameTransport(entry.cluster.config().tls, it->second->tls))) {
      // Removed; or its TLS settings changed, and pools keep the transport factory they were
      // made with: replaced (the old one drains) rather than updated in place.
      retired.push_back(name);
      return;
    }
    const std::shared_ptr<const ClusterConfig>& config = it->second;
    // Configurations share unchanged cluster configs; a new object may still hold equal settings,
    // which Cluster::Update recognises (hosts and pools are kept).
    if (config == nullptr || &entry.cluster.config() == config.get()) return;
    limits_.For(*config);
    entry.cluster.Update(config);
    // New hosts start without the flag; they take the checker's current view.
    ApplyActiveHealth(name);
  };
  if (changed != nullptr) {
    // Every other built cluster keeps its config object: nothing to do for it.
    for (const std::string& name : *changed) {
      auto built = built_.find(name);
      if (built != built_.end()) examine(built->first, *built->second);
    }
  } else {
    for (auto& [name, entry] : built_) examine(name, *entry);
  }
  for (const std::string& name : retired) {
    auto node = built_.extract(name);
    Retire(std::move(node.mapped()));
  }
  PublishBuilt();
}

Cluster* WorkerClusterManager::Find(absl::string_view name) {
  const std::shared_ptr<Entry>* entry = FindOrBuild(name);
  return entry == nullptr ? nullptr : &(*entry)->cluster;
}

Cluster* WorkerClusterManager::FindBuilt(absl::string_view name) const {
  auto it = built_.find(name);
  return it == built_.end() ? nullptr : &it->second->cluster;
}

ClusterRef WorkerClusterManager::Get(absl::string_view name) {
  const std::shared_ptr<Entry>* slot = FindOrBuild(name);
  if (slot == nullptr) return {};
  const std::shared_ptr<Entry>& entry = *slot;
  // The cluster's first request on this worker registers its stats; later ones pay one branch.
  if (!entry->stats_initialized) [[unlikely]]
    InitStats(*entry);
  // Aliasing: the reference owns the whole entry, so `stats` lives as long as `cluster`.
  return {std::shared_ptr<Cluster>(entry, &entry->cluster), entry->stats.get()};
}

const UpstreamStats* WorkerClusterManager::FindStats(absl::string_view name) const {
  auto it = built_.find(name);
  return it == built_.end() ? nullptr : it->second->stats.get();
}

}  // namespace meshlet::sidecar::cluster
