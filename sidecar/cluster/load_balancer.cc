#include "sidecar/cluster/load_balancer.h"

#include <algorithm>

namespace meshlet::sidecar::cluster {

LoadBalancer::LoadBalancer(const HostSet& hosts, Random& random, uint32_t panic_threshold_percent,
                           const Clock* clock)
    : random_(random),
      clock_(clock),
      hosts_(hosts),
      panic_threshold_percent_(panic_threshold_percent) {}

std::pair<double, double> LoadBalancer::Penalties(Host& a, Host& b) const {
  if (clock_ == nullptr || (!a.penalized() && !b.penalized())) return {1, 1};
  const MonotonicTime now = clock_->Now();
  return {a.PenaltyAt(now), b.PenaltyAt(now)};
}

void LoadBalancer::RefreshIfNeeded() {
  if (seen_version_ == hosts_.version()) return;
  seen_version_ = hosts_.version();
  const size_t total = hosts_.size();
  const size_t healthy = hosts_.healthy_count();
  panic_ = total > 0 && healthy * 100 < total * panic_threshold_percent_;
  candidates_.reset();
  if (panic_ || healthy == total) {
    // Every host: read from the set, no list of our own.
    every_host_ = hosts_.hosts().data();
    candidate_count_ = total;
  } else {
    // Sized exactly: a set's candidates change rarely.
    every_host_ = nullptr;
    candidate_count_ = 0;
    if (healthy > 0) candidates_ = std::make_unique_for_overwrite<Host*[]>(healthy);
    for (const HostSharedPtr& host : hosts_.hosts()) {
      if (host->healthy() && candidate_count_ < healthy) {
        candidates_[candidate_count_++] = host.get();
      }
    }
  }
  total_weight_ = 0;
  equal_weights_ = true;
  for (size_t i = 0; i < candidate_count_; ++i) {
    total_weight_ += candidate(i)->weight();
    if (candidate(i)->weight() != candidate(0)->weight()) equal_weights_ = false;
  }
  cumulative_weights_.reset();
  if (!equal_weights_) {
    cumulative_weights_ = std::make_unique_for_overwrite<uint64_t[]>(candidate_count_);
    uint64_t sum = 0;
    for (size_t i = 0; i < candidate_count_; ++i) {
      cumulative_weights_[i] = sum += candidate(i)->weight();
    }
  }
  OnRefresh();
}

bool LoadBalancer::Contains(absl::Span<const Host* const> list, const Host* host) {
  return std::find(list.begin(), list.end(), host) != list.end();
}

Host* LoadBalancer::Choose(const LbContext& context) {
  RefreshIfNeeded();
  if (candidate_count_ == 0) return nullptr;
  if (panic_) ++panic_picks_;
  Host* host = Pick();
  for (int i = 0; i < kMaxAvoidAttempts && Contains(context.hosts_to_avoid, host); ++i) {
    host = Pick();
  }
  if (Contains(context.hosts_to_avoid, host)) {
    // The policy keeps choosing tried hosts (least request favours one that fails fast: it never
    // has requests in flight). Any untried candidate beats them.
    const size_t n = candidate_count_;
    const size_t start = random_.Uniform(n);
    for (size_t i = 0; i < n; ++i) {
      Host* untried = candidate((start + i) % n);
      if (!Contains(context.hosts_to_avoid, untried)) return untried;
    }
  }
  return host;
}

Host* LoadBalancer::WeightedRandom() {
  if (equal_weights_) return candidate(random_.Uniform(candidate_count_));
  const uint64_t r = random_.Uniform(total_weight_);
  const uint64_t* begin = cumulative_weights_.get();
  const uint64_t* it = std::upper_bound(begin, begin + candidate_count_, r);
  return candidate(static_cast<size_t>(it - begin));
}

void RoundRobinLoadBalancer::OnRefresh() {
  if (equal_weights_) {
    current_.clear();
    current_.shrink_to_fit();
  } else {
    current_.assign(candidate_count_, 0);
  }
  if (candidate_count_ != 0) next_ %= candidate_count_;
}

Host* RoundRobinLoadBalancer::Pick() {
  if (equal_weights_) {
    Host* host = candidate(next_);
    next_ = (next_ + 1) % candidate_count_;
    return host;
  }
  // Smooth weighted round robin: every host gains its weight, the richest is picked and pays the
  // total. Over total_weight picks each host is chosen exactly weight times, interleaved.
  size_t best = 0;
  for (size_t i = 0; i < candidate_count_; ++i) {
    current_[i] += candidate(i)->weight();
    if (current_[i] > current_[best]) best = i;
  }
  current_[best] -= static_cast<int64_t>(total_weight_);
  return candidate(best);
}

Host* LeastRequestLoadBalancer::Pick() {
  Host* a = WeightedRandom();
  if (candidate_count_ == 1) return a;
  Host* b = WeightedRandom();
  if (a->penalized() || b->penalized()) {
    const auto [penalty_a, penalty_b] = Penalties(*a, *b);
    if (penalty_a != 1 || penalty_b != 1) {
      // (active + 1): an idle overloaded host must not look free.
      const double cost_a = (a->active_requests() + 1) * penalty_a / a->weight();
      const double cost_b = (b->active_requests() + 1) * penalty_b / b->weight();
      return cost_b < cost_a ? b : a;
    }
  }
  // Fewer requests per unit of weight; compared by cross-multiplying to stay in integers.
  const uint64_t load_a = static_cast<uint64_t>(a->active_requests()) * b->weight();
  const uint64_t load_b = static_cast<uint64_t>(b->active_requests()) * a->weight();
  return load_b < load_a ? b : a;
}

namespace {
// A host without a latency sample yet: free while idle (so it gets traffic and a sample), but
// very expensive once it has requests in flight (so a new, slow host cannot absorb a burst).
constexpr double kUnknownLatencyPenaltyNs = 1e12;

double EwmaCost(const Host& host) {
  const double active = host.active_requests();
  if (host.ewma_latency_ns() == 0) return active == 0 ? 0 : kUnknownLatencyPenaltyNs + active;
  return host.ewma_latency_ns() * (active + 1) / host.weight();
}
}  // namespace

Host* PeakEwmaLoadBalancer::Pick() {
  Host* a = WeightedRandom();
  if (candidate_count_ == 1) return a;
  Host* b = WeightedRandom();
  const auto [penalty_a, penalty_b] = Penalties(*a, *b);
  return EwmaCost(*b) * penalty_b < EwmaCost(*a) * penalty_a ? b : a;
}

std::unique_ptr<LoadBalancer> CreateLoadBalancer(LbPolicy policy, const HostSet& hosts,
                                                 Random& random, uint32_t panic_threshold_percent,
                                                 const Clock* clock) {
  switch (policy) {
    case LbPolicy::kRoundRobin:
      return std::make_unique<RoundRobinLoadBalancer>(hosts, random, panic_threshold_percent,
                                                      clock);
    case LbPolicy::kRandom:
      return std::make_unique<RandomLoadBalancer>(hosts, random, panic_threshold_percent, clock);
    case LbPolicy::kPeakEwma:
      return std::make_unique<PeakEwmaLoadBalancer>(hosts, random, panic_threshold_percent, clock);
    case LbPolicy::kLeastRequest:
      break;
  }
  return std::make_unique<LeastRequestLoadBalancer>(hosts, random, panic_threshold_percent, clock);
}

}  // namespace meshlet::sidecar::cluster
