#pragma once

// Load balancers: pick the Host for one request from a HostSet.
//
//   kRoundRobin    smooth weighted round robin: with weights {a:5, b:1, c:1} the order is
//                  a a b a c a a, so a heavy host never receives a burst.
//   kLeastRequest  power of two choices (the default): two weighted-random picks, keep the one
//                  with fewer requests in flight per unit of weight.
//   kRandom        weighted random.
//   kPeakEwma      two weighted-random picks, keep the lower peak-EWMA latency x (active + 1).
//
// Least request and peak EWMA multiply the load of a host with an overload penalty
// (Host::PenaltyAt, from a 429 or RESOURCE_EXHAUSTED) by it: least request then compares
// (active + 1) x penalty / weight, so even an idle penalized host looks busy. Only a pick with a
// penalized candidate reads the clock (the one the balancer was made with; without one,
// penalties are ignored).
//
// Every policy skips hosts that are not healthy (EDS, active health check, outlier ejection,
// draining), except in panic mode: when healthy hosts are fewer than panic_threshold_percent of
// all hosts, it balances over all hosts (spreading load over some failing hosts beats crushing
// the few healthy ones). Choose() returns null only when the set is empty, or when no host is
// healthy and panic is off (threshold 0).
//
// A retry passes the hosts it already tried in LbContext::hosts_to_avoid: the balancer re-picks
// up to kMaxAvoidAttempts times to find another host, then takes the first untried candidate
// from a random position (re-picking alone is not enough: least request keeps choosing a host
// that fails fast, as it never has requests in flight), and only when every candidate was tried
// one tried before (an endpoint tried before beats no endpoint).
//
// Locality (EnableLocality, cluster_config.h LocalityLbConfig, ADR 0103/0104): the candidates
// are the hosts of three priority levels by EndpointConfig::locality_level (the caller's zone, its
// region, the rest). A pick first draws the level from the shares ComputeLocalityLoad gives the
// levels' healthy counts (failover: a level short of healthy hosts passes its share on), then
// moves a local pick to the next level with healthy hosts while the local level is overloaded
// (spill-over: in flight per healthy host, or the level's latency EWMA, above the thresholds),
// then lets the policy pick within the level. Each pick counts as local, failover or spillover
// (locality_picks()) and last_locality() names the last one. A level's candidates are its
// healthy hosts; panic is only when no host of any level is healthy (then every host of the
// drawn level). Avoided hosts (retries) fall back to untried hosts of any level.
//
// Ownership and threading: a balancer belongs to one worker's Cluster and reads (never owns) its
// HostSet and Random, which must outlive it. It rebuilds its internal lists only when the set's
// version() changes; a pick does not allocate.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/host.h"
#include "sidecar/cluster/locality_priority.h"

namespace meshlet::sidecar::cluster {

struct LbContext {
  // Hosts earlier attempts of this request used.
  absl::Span<const Host* const> hosts_to_avoid;
  // A sticky session's host (route/session.h): Cluster::ChooseHost() takes it instead of a
  // balancer's pick when it is a healthy member of the set, not to be avoided, and admitted by
  // the outlier detector and breaker; else it balances as usual. The balancer ignores it.
  Host* preferred_host = nullptr;
};

class LoadBalancer {
 public:
  static constexpr int kMaxAvoidAttempts = 3;

  LoadBalancer(const HostSet& hosts, Random& random, uint32_t panic_threshold_percent,
               const Clock* clock = nullptr);
  virtual ~LoadBalancer() = default;
  LoadBalancer(const LoadBalancer&) = delete;
  LoadBalancer& operator=(const LoadBalancer&) = delete;

  // The host for one request, or null when none is available.
  Host* Choose(const LbContext& context = {});

  // Whether the last refresh found the set in panic (for a gauge).
  bool panic() const { return panic_; }
  // Picks made in panic mode (counter).
  uint64_t panic_picks() const { return panic_picks_; }

  // Balances by locality level from now on (config.enabled; otherwise turns it off), the levels'
  // latency EWMA decaying with `latency_decay` (a level's value older than that reads as
  // recovered). Allocates the level state once; the next pick rebuilds the candidates.
  void EnableLocality(const LocalityLbConfig& config,
                      Duration latency_decay = std::chrono::seconds(10));
  bool locality_enabled() const { return locality_ != nullptr; }
  // Feeds one response latency of a host of `level` into that level's latency EWMA (only read
  // with a max_latency threshold); `now` from the worker's clock. No-op without locality.
  void RecordLocalityLatency(uint8_t level, Duration latency, MonotonicTime now);
  // Picks per decision since the balancer was made (kLocal, kFailover, kSpillover order).
  uint64_t locality_picks(LocalityDecision decision) const {
    return locality_ != nullptr ? locality_->picks[static_cast<int>(decision)] : 0;
  }
  // The last Choose()'s level and decision; nullopt without locality or before a pick.
  std::optional<LocalityPick> last_locality() const {
    if (locality_ == nullptr || !locality_->picked) return std::nullopt;
    return locality_->last;
  }
  // The shares the levels get now (refreshed on the next pick after a health change).
  LocalityLoad locality_load() const {
    return locality_ != nullptr ? locality_->load : LocalityLoad{};
  }

 protected:
  // One pick from the current candidates (never empty when called).
  virtual Host* Pick() = 0;
  // The candidate list changed.
  virtual void OnRefresh() {}

  // A weighted-random candidate: binary search over cumulative weights.
  Host* WeightedRandom();

  // The load multipliers of two candidates at once (1 without penalties); reads the clock only
  // when one of them is penalized.
  std::pair<double, double> Penalties(Host& a, Host& b) const;

  // The hosts the policy picks from (the healthy ones, or all in panic; with locality, those of
  // the drawn level): how many, and the i-th (i < candidate_count()).
  size_t candidate_count() const { return candidate_count_; }
  Host* candidate(size_t i) const {
    return every_host_ != nullptr ? every_host_[i].get() : candidates_[i];
  }
  // With locality, the drawn level's candidates are a range of a list of every level's: where it
  // starts and the size of the whole list. Without, 0 and candidate_count().
  size_t range_begin() const { return locality_ != nullptr ? locality_->range_begin : 0; }
  size_t all_candidates() const {
    return locality_ != nullptr ? locality_->all_count : candidate_count_;
  }
  int active_level() const { return locality_ != nullptr ? locality_->last.level : 0; }

  Random& random_;
  const Clock* const clock_;
  // When the candidates are every host of the set (all healthy, the common case, or panic) they
  // are read from the set itself (its hosts, valid until its version changes) and candidates_
  // holds nothing: a built cluster's balancer keeps no list of its own (ADR 0091). With locality
  // they are read from the drawn level's range of the balancer's own list. Otherwise null, and
  // candidates_ lists the healthy hosts (candidate_count_ of them; arrays, not vectors: 8 bytes
  // each in every balancer where a vector took 24).
  const HostSharedPtr* every_host_ = nullptr;
  std::unique_ptr<Host*[]> candidates_;
  // cumulative_weights_[i] = sum of candidate(0..i) weights; kept only while the weights differ
  // (equal weights, the common case, need no per-candidate state; ADR 0091). With locality, over
  // the whole list, restarting at each level's first candidate (read from range_begin()).
  std::unique_ptr<uint64_t[]> cumulative_weights_;
  uint64_t total_weight_ = 0;  // sum of the candidates' weights

 private:
  // What only a locality-aware balancer needs (made by EnableLocality).
  struct Locality {
    LocalityLbConfig config;
    Duration latency_decay{};
    // Every level's candidates, level by level (holders: valid until the next refresh).
    std::unique_ptr<HostSharedPtr[]> list;
    size_t all_count = 0;
    size_t range_begin = 0;  // the drawn level's first candidate
    std::array<LocalityLevelCounts, kLocalityLevels> counts{};
    LocalityLoad load{};
    std::array<size_t, kLocalityLevels> begin{};
    std::array<size_t, kLocalityLevels> count{};
    std::array<uint64_t, kLocalityLevels> weight{};
    std::array<double, kLocalityLevels> latency_ewma_ns{};
    std::array<MonotonicTime, kLocalityLevels> latency_updated{};
    std::array<uint64_t, 3> picks{};
    LocalityPick last;
    bool picked = false;
  };

  void RefreshIfNeeded();
  void RefreshLocality();
  // Draws the level of one pick and narrows the candidates to it.
  void ChooseLevel();
  bool LocalOverloaded() const;
  static bool Contains(absl::Span<const Host* const> list, const Host* host);

  const HostSet& hosts_;
  uint64_t seen_version_ = 0;
  uint64_t panic_picks_ = 0;
  std::unique_ptr<Locality> locality_;  // null unless EnableLocality'd

 protected:
  uint32_t candidate_count_ = 0;

 private:
  // Percent; values above 101 behave as 101 (always panic), so it is kept clamped there.
  const uint16_t panic_threshold_percent_;

 protected:
  bool equal_weights_ = true;

 private:
  bool panic_ = false;
};

class RoundRobinLoadBalancer final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;

 protected:
  Host* Pick() override;
  void OnRefresh() override;

 private:
  // Smooth WRR state, parallel to every candidate; empty while the weights are equal.
  std::vector<int64_t> current_;
  // Equal weights: plain rotation, one position per locality level (the first without).
  std::array<size_t, kLocalityLevels> next_{};
};

class LeastRequestLoadBalancer final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;

 protected:
  Host* Pick() override;
};

class RandomLoadBalancer final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;

 protected:
  Host* Pick() override { return WeightedRandom(); }
};

class PeakEwmaLoadBalancer final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;

 protected:
  Host* Pick() override;
};

std::unique_ptr<LoadBalancer> CreateLoadBalancer(LbPolicy policy, const HostSet& hosts,
                                                 Random& random, uint32_t panic_threshold_percent,
                                                 const Clock* clock = nullptr);

}  // namespace meshlet::sidecar::cluster
