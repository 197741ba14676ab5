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
// Ownership and threading: a balancer belongs to one worker's Cluster and reads (never owns) its
// HostSet and Random, which must outlive it. It rebuilds its internal lists only when the set's
// version() changes; a pick does not allocate.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/host.h"

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

  // The hosts the policy picks from (the healthy ones, or all in panic): how many, and the i-th
  // (i < candidate_count()).
  size_t candidate_count() const { return candidate_count_; }
  Host* candidate(size_t i) const {
    return every_host_ != nullptr ? every_host_[i].get() : candidates_[i];
  }

  Random& random_;
  const Clock* const clock_;
  // When the candidates are every host of the set (all healthy, the common case, or panic) they
  // are read from the set itself (its hosts, valid until its version changes) and candidates_
  // holds nothing: a built cluster's balancer keeps no list of its own (ADR 0091). Otherwise
  // null, and candidates_ lists the healthy hosts (candidate_count_ of them; arrays, not vectors:
  // 8 bytes each in every balancer where a vector took 24).
  const HostSharedPtr* every_host_ = nullptr;
  std::unique_ptr<Host*[]> candidates_;
  size_t candidate_count_ = 0;
  // cumulative_weights_[i] = sum of candidate(0..i) weights; kept only while the weights differ
  // (equal weights, the common case, need no per-candidate state; ADR 0091).
  std::unique_ptr<uint64_t[]> cumulative_weights_;
  uint64_t total_weight_ = 0;  // sum of the candidates' weights

 private:
  void RefreshIfNeeded();
  static bool Contains(absl::Span<const Host* const> list, const Host* host);

  const HostSet& hosts_;
  const uint32_t panic_threshold_percent_;

 protected:
  bool equal_weights_ = true;

 private:
  bool panic_ = false;
  uint64_t seen_version_ = 0;
  uint64_t panic_picks_ = 0;
};

class RoundRobinLoadBalancer final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;

 protected:
  Host* Pick() override;
  void OnRefresh() override;

 private:
  // Smooth WRR state, parallel to the candidates; empty while the weights are equal.
  std::vector<int64_t> current_;
  size_t next_ = 0;  // equal weights: plain rotation
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
