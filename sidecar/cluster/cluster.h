#pragma once

// Cluster: one worker's runtime for one upstream cluster. It owns the HostSet, the load balancer,
// the outlier detector and one connection pool per host and protocol (created on first use), and
// wires them together: results the router reports feed the detector; ejected hosts get the
// kOutlierEjected flag, which the load balancer skips; a half-open host gets exactly one probe.
// Overload responses the router reports (RecordOverload) penalize their host in the balancer and
// may eject it briefly (kOverloadEjected; cluster_config.h OverloadConfig).
// Each host's connections get the transport its EndpointTlsConfig calls for (the cluster's TLS,
// narrowed to the endpoint's identity, or plaintext), from the EndpointTransportFactory the
// cluster was made with.
//
// Life of a request through it (router's view):
//   HostSelection sel = cluster.ChooseHost({.hosts_to_avoid = tried});   // null host: 503
//   ConnPool& pool = cluster.PoolFor(*sel.host, downstream_protocol);
//   Cancellable* handle = pool.NewStream(response_decoder, pool_callbacks);
//   ... on the response (or failure):
//   cluster.RecordResult(*sel.host, ClassifyHttpStatus(status), sel.probe, latency);
//   ... or, if abandoned without a result while sel.probe: cluster.CancelProbe(*sel.host).
//
// Update() applies a new config: hosts that remain keep their pools and state; pools of removed
// hosts drain (their in-flight requests finish) and are destroyed once idle. A change to the pool
// settings drains every pool, and new requests get pools with the new settings; so does a change
// to one host's TLS settings for that host's pools. The cluster's own TLS settings never change
// (the owner replaces a cluster whose tls changed, see cluster_manager.h).
//
// Ownership and threading: one Cluster per cluster per worker that used it (built on first use,
// cluster_manager.h), on that worker's loop; the Loop, Random and Clock must outlive it. The
// CircuitBreakerThresholds are shared by every worker's Cluster of the same name (limits are per
// cluster, not per worker): the owner that builds clusters from config calls SetLimits() on them.
// Destroying the Cluster destroys its pools without calling anyone (worker shutdown).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/conn_pool.h"
#include "sidecar/cluster/host.h"
#include "sidecar/cluster/load_balancer.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/resilience/circuit_breaker.h"
#include "sidecar/resilience/consecutive_failure_breaker.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/resilience/retry_budget.h"

namespace meshlet::sidecar::cluster {

// The gRPC status an upstream answers when it is out of a resource (often: rate limited).
inline constexpr uint32_t kGrpcResourceExhausted = 8;
// A retry-after value in delta-seconds (RFC 9110 §10.2.3), for RecordOverload(); nullopt for an
// HTTP-date (ignored: the configured ejection_time applies) or anything malformed.
std::optional<Duration> ParseRetryAfter(absl::string_view value);

struct CodecFactories {
  CodecFactory http1;
  CodecFactory http2;
};

// Plain counters of what a cluster decided (tests; the exported series are StatHandles). Made with
// the first count: most built clusters never count one.
struct ClusterStats {
  uint64_t no_healthy_host = 0;         // ChooseHost found nothing
  uint64_t outlier_ejections = 0;       // hosts ejected
  uint64_t outlier_probe_rejected = 0;  // picks refused because a half-open probe was out
  uint64_t breaker_opened = 0;          // consecutive-failure breaker: closed/half-open → open
  uint64_t breaker_rejected = 0;        // picks refused because the breaker was open
  uint64_t overload_responses = 0;      // RecordOverload calls
  uint64_t overload_ejections = 0;      // hosts ejected for overload
  uint64_t overload_ejections_skipped = 0;  // refused by max_ejection_percent / last host
};

class Cluster {
 public:
  struct HostSelection {
    Host* host = nullptr;
    // The request is a single probe (of a half-open host, or of the half-open consecutive-failure
    // breaker): report its result with probe = true.
    bool probe = false;
    // No host because the consecutive-failure breaker is open.
    bool breaker_open = false;
    // With locality balancing, why the balancer picked the host's level; nullopt without (or for
    // a sticky session's host).
    std::optional<LocalityDecision> locality;
  };

  // Tries the load balancer makes when the outlier detector refuses a pick.
  static constexpr int kMaxAdmitAttempts = 3;

  // The config is shared, not copied: the snapshot's, read-only (the same for every worker's
  // Cluster of that name). The overload taking a reference copies it (tests).
  Cluster(event::Loop& loop, std::shared_ptr<const ClusterConfig> config,
          std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds, Random& random,
          const Clock& clock, CodecFactories codecs,
          EndpointTransportFactory transport_factory = nullptr);
  Cluster(event::Loop& loop, const ClusterConfig& config,
          std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds, Random& random,
          const Clock& clock, CodecFactories codecs,
          EndpointTransportFactory transport_factory = nullptr);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Applies a new version of the same cluster's config (shared, as in the constructor). See the
  // header comment.
  void Update(std::shared_ptr<const ClusterConfig> config);
  void Update(const ClusterConfig& config);

  HostSelection ChooseHost(const LbContext& context = {});

  // The upstream protocol for a request that arrived with `downstream` (UpstreamProtocol), going
  // to `host` (null: not chosen yet) and asking for an Upgrade when `upgrade`.
  http::Protocol UpstreamProtocol(http::Protocol downstream, const Host* host = nullptr,
                                  bool upgrade = false) const;
  // The pool for `host` (a host of this cluster) and that upstream protocol, made on first use.
  // A pool left with no connection and no queued request is released at the end of that loop
  // turn (a refused connect, idle_timeout): use the reference at once, never keep it.
  ConnPool& PoolFor(Host& host, http::Protocol downstream, bool upgrade = false);
  // The transport of new connections to `host` (a host in this cluster's set), made once per
  // host; null: plaintext, which is also what a cluster made without a transport factory gets.
  const net::TransportFactory& TransportFor(const Host& host);

  // How a request to `host` ended. `latency` (first byte of the response) feeds peak-EWMA when
  // that is the balancing policy (and is dropped otherwise).
  void RecordResult(Host& host, resilience::HostResult result, bool probe,
                    std::optional<Duration> latency = std::nullopt);
  // `host` answered 429, or gRPC RESOURCE_EXHAUSTED; `retry_after` is the response's retry-after
  // in delta-seconds if it had one (ParseRetryAfter). Counts it; with the cluster's overload
  // handling enabled, penalizes the host and ejects it if the limits allow (OverloadConfig). Does
  // not allocate; on the worker's loop.
  void RecordOverload(Host& host, std::optional<Duration> retry_after);
  // Ends the overload ejections that are due (the cluster's timer does this on its own; tests
  // driving a FakeClock call it directly).
  void TickOverload();
  // Hosts ejected for overload now.
  size_t overload_ejected() const { return rare_ == nullptr ? 0 : rare_->overload_ejected; }

  // A probe request (HostSelection::probe) ended without a result.
  void CancelProbe(Host& host);

  // Expires ejections and runs interval detection now (the cluster's timer does this on its own;
  // tests driving a FakeClock call it directly).
  void TickOutlierDetection();

  // Health from active health checking.
  void SetActiveHealth(Host& host, bool healthy);

  // The consecutive-failure breaker (ClusterConfig::consecutive_failure_breaker), one per cluster
  // per worker. ChooseHost() asks it to admit each pick, RecordResult() feeds it and CancelProbe()
  // frees its probe. BreakerRejects() says whether a request would be refused now without taking
  // the half-open probe, so the request gate can answer before anything else happens.
  bool BreakerRejects();
  bool has_breaker() const { return rare_ != nullptr && rare_->breaker.has_value(); }
  // 0 closed, 1 open, 2 half-open; 0 without a breaker.
  int BreakerState();
  // Where the cluster exports what it decides (docs/stats.md); set once by the owner. Unset
  // handles count nothing. The lazy handles register their series with their first count (a
  // gauge: its first value other than 0), on this worker's loop (copies of UpstreamStats'
  // handles, whose LazySource must outlive them).
  struct StatHandles {
    LazyGauge breaker_state;      // meshlet_upstream_cf_breaker_state{cluster,worker}
    LazyCounter breaker_opened;   // meshlet_upstream_cf_breaker_opened_total{cluster}
    LazyGauge ejections_active;   // meshlet_upstream_outlier_ejections_active{cluster}
    LazyCounter ejections_total;  // meshlet_upstream_outlier_ejections_total{cluster}
    // meshlet_upstream_cx_tls_handshake_fail_total{cluster}, handed to the pools.
    Counter tls_handshake_failures;
    LazyCounter overload_responses;          // meshlet_upstream_overload_responses_total{cluster}
    LazyCounter overload_ejections;          // meshlet_upstream_overload_ejections_total{cluster}
    LazyCounter overload_ejections_skipped;  // ..._overload_ejections_skipped_total{cluster}
    LazyGauge overload_ejections_active;     // meshlet_upstream_overload_ejections_active{cluster}
  };
  void SetStatHandles(const StatHandles& handles);

  const std::string& name() const { return config_->name; }
  const ClusterConfig& config() const { return *config_; }
  HostSet& host_set() { return hosts_; }
  LoadBalancer& load_balancer() { return *lb_; }
  // Null without outlier detection, and with consecutive-failure detection alone until the first
  // failed result (nothing to track before it; ADR 0091). Success-rate detection has one at once.
  resilience::OutlierDetector* outlier_detector() { return outlier_.get(); }
  resilience::CircuitBreakerThresholds& thresholds() { return *thresholds_; }
  // The cluster's retry budget on this worker (the router's retries).
  resilience::RetryBudget& retry_budget() { return retry_budget_; }
  // All zero until the first count.
  const ClusterStats& stats() const;
  // Pools in use plus pools draining.
  size_t pool_count() const;
  // What the cluster holds for each host it sends requests to (its transport and pool pointers),
  // besides the pools themselves. A host without a transport (plaintext) holds it only while it
  // has a pool, and a cluster with no such host holds no table (pool_entries()).
  static constexpr size_t kBytesPerPoolEntry = 56;
  // Hosts with an entry, and the entries the table has room for (tests).
  size_t pool_entries() const { return pools_.size(); }
  size_t pool_entries_capacity() const { return pools_.capacity(); }
  // Timers (libuv handles) the cluster holds now (tests: an idle cluster holds none).
  size_t timers_held() const;

 private:
  // What the cluster keeps per host: its transport and the pools made with it.
  // The transport was made for the host's tls() (ApplyEndpoints drains the entry when that
  // changes, comparing with what the host had before the update): no endpoint is kept here.
  struct HostPools {
    net::TransportFactory transport;
    // kMeshHttp2 with TLS: HTTP/1.1 connections (Upgrades) offer ALPN "http/1.1", made on use
    // (rare: held by pointer, 24 bytes less in every host's entry).
    std::unique_ptr<net::TransportFactory> http1_transport;
    std::unique_ptr<ConnPool> http1;
    std::unique_ptr<ConnPool> http2;
  };

  // Applies config_'s endpoints; hosts keep config_ alive (HostSet::Update).
  void ApplyEndpoints();
  // The entry of `host`, created with its transport on first use.
  HostPools& EntryFor(const Host& host);
  void RebuildLoadBalancer();
  // Mirrors the detector's ejections onto host flags when its version moved.
  void SyncOutlierFlags();
  void ArmOutlierTimer();
  // Makes the outlier detector (config_ has outlier_detection) with no hosts yet.
  void StartOutlierDetection();
  // Hands the detector (not null) the current hosts and syncs flags and timer.
  void SetOutlierHosts();
  // Arms `timer` to call `on_fire`, making it first if needed; Disable: a no-op if never made.
  void EnableTimer(std::optional<event::Timer>& timer, void (Cluster::*on_fire)(),
                   Duration timeout);
  static void DisableTimer(std::optional<event::Timer>& timer);
  // Overload ejection limits: whether one more host may be ejected now.
  bool MayEjectForOverload() const;
  void ArmOverloadTimer(MonotonicTime until);
  // Clears every overload ejection and penalty (the handling was turned off).
  void ClearOverload();
  void PublishOverloadEjected();
  void DrainPool(std::unique_ptr<ConnPool> pool);
  // `pool`, the pool of host `host_id`, has no connection and no queued request (its empty
  // callback): destroyed at the end of the loop turn. A draining pool is done; one in use is made
  // again by the next PoolFor() (the connection that request needs costs far more).
  void ReleaseEmptyPool(uint64_t host_id, ConnPool* pool);
  void DrainAllPools();
  void ResetBreaker();
  void PublishBreakerState();
  // For counting: made on first use (once per cluster, never per request).
  ClusterStats& mutable_stats();

  // What few clusters use: the consecutive-failure breaker (configured per cluster), overload
  // ejections, pools draining after a change. Made on first use (rare()) and kept: a built
  // cluster without them pays one pointer instead of about 190 bytes (ADR 0091).
  struct Rare {
    // Fires at the earliest overload ejection's end (overload_deadline).
    std::optional<event::Timer> overload_timer;
    std::optional<MonotonicTime> overload_deadline;
    size_t overload_ejected = 0;
    // Fires when an open breaker turns half-open, so its gauge changes without traffic too.
    std::optional<event::Timer> breaker_timer;
    std::optional<resilience::ConsecutiveFailureBreaker> breaker;
    // The half-open breaker's probe: its ticket and the host it went to.
    std::optional<resilience::ConsecutiveFailureBreaker::Ticket> breaker_probe;
    uint64_t breaker_probe_host = 0;
    // Pools finishing their streams after their host left (or their settings changed).
    std::vector<std::unique_ptr<ConnPool>> draining_pools;
  };
  Rare& rare();
  // The breaker; null without one.
  resilience::ConsecutiveFailureBreaker* breaker() {
    return rare_ == nullptr || !rare_->breaker.has_value() ? nullptr : &*rare_->breaker;
  }

  event::Loop& loop_;
  std::shared_ptr<const ClusterConfig> config_;  // never null
  std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds_;
  Random& random_;
  const Clock& clock_;
  CodecFactories codecs_;
  // Null for a cluster without TLS (most of them): 8 bytes where the function took 32.
  std::unique_ptr<const EndpointTransportFactory> transport_factory_;

  HostSet hosts_;
  std::unique_ptr<LoadBalancer> lb_;
  std::unique_ptr<resilience::OutlierDetector> outlier_;
  uint64_t outlier_version_seen_ = 0;
  // The timers are made on first use (EnableTimer): most built clusters never arm one, and each
  // holds a libuv handle of about 200 bytes (ADR 0091). The outlier timer is let go again while
  // the detector has nothing to do (ArmOutlierTimer).
  std::optional<event::Timer> outlier_timer_;
  absl::flat_hash_map<uint64_t, HostPools> pools_;  // by host id
  static_assert(sizeof(HostPools) <= kBytesPerPoolEntry);
  std::unique_ptr<Rare> rare_;           // null until rare()
  std::unique_ptr<ClusterStats> stats_;  // null until the first count
  resilience::RetryBudget retry_budget_;
  StatHandles stat_handles_;
  int64_t ejections_active_published_ = 0;
};

}  // namespace meshlet::sidecar::cluster
