#pragma once

// Active health checking: probes every endpoint of a cluster that configures a health check
// (ClusterConfig::health_check) and marks the ones that fail as kFailedActiveHealthCheck on every
// worker, so load balancers skip them until they pass again.
//
//   HTTP  a GET of `http_path` with `Host: http_host` (the endpoint's address when empty) and
//         `Connection: close`; healthy when the status is one of `expected_statuses`.
//   TCP   a connect; healthy when it succeeds.
// A check that has no answer within `timeout` fails. Each host is checked every `interval`, with
// ±10 % jitter so the checks of many hosts (and many sidecars) do not line up; the first check of
// a host runs within the first tenth of an interval after it appears. `unhealthy_threshold`
// failures in a row mark a healthy host unhealthy; `healthy_threshold` successes in a row mark an
// unhealthy host healthy again. A host starts healthy (see docs/resilience.md: traffic is not
// held back waiting for the first check; outlier detection and retries cover a host that is
// already down).
//
// Where the checks run (docs/adr/0011): one HealthCheckManager on the main thread checks each
// endpoint once for the whole process, and publishes the results in SharedHostHealth. Every
// worker's cluster manager subscribes to it: a change is posted to each worker's loop, which sets
// or clears the host flag in its own HostSet. So probe traffic does not grow with --concurrency,
// and every worker routes on the same view. Active health and outlier ejection are separate flags
// on the host: a host is routable only when neither is set.
//
// Ownership and threading: SharedHostHealth is thread-safe (a mutex, taken when a result changes
// and when a worker applies configuration, never per request). HealthCheckManager and its checkers
// belong to the loop they were created with (the main loop); the Loop, Random, Clock, stats shard
// and SharedHostHealth must outlive the manager. Destroying the manager stops every check; results
// stay published until the next Update() clears them.

#include <cstdint>
#include <functional>
#include <map>
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
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster_config.h"

namespace meshlet::sidecar::cluster {

// Active health-check results by cluster and address, shared by the checker and every worker.
class SharedHostHealth {
 public:
  // Called on the subscriber's loop with the name of a cluster whose results changed.
  using Listener = std::function<void(const std::string& cluster)>;

  // Returns an id for Unsubscribe(). After Unsubscribe() returns nothing new is posted to `loop`
  // (a call already posted still runs: the listener must check that its target is alive).
  uint64_t Subscribe(event::Loop& loop, Listener listener);
  void Unsubscribe(uint64_t id);

  // Records whether `address` of `cluster` passes its checks; notifies subscribers on a change.
  void Set(const std::string& cluster, const net::Address& address, bool healthy);
  // Forgets every result of `cluster` (checks removed) and notifies subscribers if any was set.
  void Clear(const std::string& cluster);
  // Forgets results of `cluster` for addresses not in `keep` (endpoints removed).
  void Retain(const std::string& cluster, const absl::flat_hash_set<net::Address>& keep);

  bool IsUnhealthy(absl::string_view cluster, const net::Address& address) const;
  // The addresses of `cluster` that failed their checks.
  absl::flat_hash_set<net::Address> Unhealthy(absl::string_view cluster) const;

 private:
  struct Subscriber {
    event::Loop* loop;
    Listener listener;
  };
  void NotifyLocked(const std::string& cluster) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::map<std::string, absl::flat_hash_set<net::Address>, std::less<>> unhealthy_
      ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

// Stat handles of one cluster's checks (registered on the main thread's shard).
struct HealthCheckStats {
  Counter checks;       // meshlet_upstream_health_check_total{cluster}
  Counter failures;     // meshlet_upstream_health_check_failure_total{cluster}
  Gauge hosts_healthy;  // meshlet_upstream_health_check_hosts_healthy{cluster}
  Counter transitions;  // meshlet_upstream_health_check_transitions_total{cluster}
};

// The checks of one cluster's endpoints.
class HealthChecker {
 public:
  // One host's state, for the admin API and tests.
  struct HostState {
    net::Address address;
    bool healthy = true;
    uint32_t consecutive_successes = 0;
    uint32_t consecutive_failures = 0;
    uint64_t checks = 0;
    uint64_t failures = 0;
    std::string last_failure;  // why the last failed check failed; empty if none yet
  };

  // `config.health_check.kind` must not be kNone.
  HealthChecker(event::Loop& loop, const ClusterConfig& config, Random& random, const Clock& clock,
                SharedHostHealth& results, HealthCheckStats stats,
                EndpointTransportFactory transport_factory = nullptr);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // New endpoints (same check settings): hosts that remain keep their state and schedule.
  void UpdateEndpoints(const std::vector<EndpointConfig>& endpoints);

  const HealthCheckConfig& config() const { return config_; }
  std::vector<HostState> hosts() const;

 private:
  class HostCheck;
  friend class HostCheck;

  void OnHostHealthChanged(HostCheck& host);
  void PublishHealthyCount();
  // The delay before the next check: interval ± 10 %.
  Duration NextInterval();

  event::Loop& loop_;
  const std::string cluster_;
  const HealthCheckConfig config_;
  Random& random_;
  const Clock& clock_;
  SharedHostHealth& results_;
  const HealthCheckStats stats_;
  const EndpointTransportFactory transport_factory_;
  absl::flat_hash_map<net::Address, std::unique_ptr<HostCheck>> hosts_;
};

// Every cluster's checker, kept in step with the configured clusters.
class HealthCheckManager {
 public:
  // The transports for a cluster's checks, per endpoint as for its requests (TLS clusters); null
  // or returning null: plaintext.
  using TransportFactoryFor = std::function<EndpointTransportFactory(const ClusterConfig&)>;

  HealthCheckManager(event::Loop& loop, Random& random, const Clock& clock, StatsShard& stats,
                     SharedHostHealth& results, TransportFactoryFor transport_factory = nullptr);
  ~HealthCheckManager();

  // Starts, changes or stops checkers to match `clusters` (the configuration's whole set).
  void Update(const ClusterSet& clusters);
  // The same for a set that differs from the last one given only by the clusters `changed`
  // names (added or replaced, none removed): costs per changed name.
  void Update(const ClusterSet& clusters, absl::Span<const std::string> changed);

  // Null when the cluster has no checks.
  const HealthChecker* Find(absl::string_view cluster) const;

 private:
  event::Loop& loop_;
  Random& random_;
  const Clock& clock_;
  StatsShard& stats_;
  SharedHostHealth& results_;
  // Starts or changes the checker of `name`, which has checks.
  void UpdateChecker(const std::string& name, const ClusterConfig& config);
  // Stops the checker of `name`, if any.
  void StopChecker(const std::string& name);

  const TransportFactoryFor transport_factory_;
  std::map<std::string, std::unique_ptr<HealthChecker>, std::less<>> checkers_;
  // The TLS settings each checker's transport was made from.
  std::map<std::string, UpstreamTlsConfig, std::less<>> tls_seen_;
};

// "http", "tcp" or "none".
absl::string_view HealthCheckKindName(HealthCheckConfig::Kind kind);

// Appends `"health_check":{...}` (kind, and per host: healthy, checks, failures, last failure) for
// the admin /clusters endpoint; `"health_check":null` when `checker` is null.
void AppendHealthCheckJson(std::string& out, const HealthChecker* checker);

}  // namespace meshlet::sidecar::cluster
