#include "sidecar/cluster/load_balancer.h"

#include <algorithm>

namespace meshlet::sidecar::cluster {

LoadBalancer::LoadBalancer(const HostSet& hosts, Random& random, uint32_t panic_threshold_percent,
                           const Clock* clock)
    : random_(random),
      clock_(clock),
      hosts_(hosts),
      panic_threshold_percent_(static_cast<uint16_t>(std::min(panic_threshold_percent, 101u))) {}

std::pair<double, double> LoadBalancer::Penalties(Host& a, Host& b) const {
  if (clock_ == nullptr || (!a.penalized() && !b.penalized())) return {1, 1};
  const MonotonicTime now = clock_->Now();
  return {a.PenaltyAt(now), b.PenaltyAt(now)};
}

void LoadBalancer::EnableLocality(const LocalityLbConfig& config, Duration latency_decay) {
  if (!config.enabled) {
    locality_.reset();
  } else {
    if (locality_ == nullptr) locality_ = std::make_unique<Locality>();
    locality_->config = config;
    locality_->latency_decay = latency_decay;
  }
  seen_version_ = 0;  // rebuild the candidates on the next pick
}

void LoadBalancer::RecordLocalityLatency(uint8_t level, Duration latency, MonotonicTime now) {
  if (locality_ == nullptr || level >= kLocalityLevels) return;
  Locality& l = *locality_;
  const double sample = static_cast<double>(latency.count());
  double& ewma = l.latency_ewma_ns[level];
  if (ewma == 0) {
    ewma = sample;
  } else {
    // Time-weighted: a sample after a longer gap moves the value more; at least 5% per sample.
    const double decay_ns = static_cast<double>(std::max<int64_t>(l.latency_decay.count(), 1));
    const double gap_ns =
        static_cast<double>(std::max<int64_t>((now - l.latency_updated[level]).count(), 0));
    ewma += (sample - ewma) * std::min(1.0, std::max(gap_ns / decay_ns, 0.05));
  }
  l.latency_updated[level] = now;
}

namespace {
int LevelOf(const Host& host) {
  return std::min<int>(host.endpoint().locality_level, kLocalityLevels - 1);
}
}  // namespace

void LoadBalancer::RefreshLocality() {
  Locality& l = *locality_;
  l.counts = {};
  for (const HostSharedPtr& host : hosts_.hosts()) {
    const int level = LevelOf(*host);
    ++l.counts[level].total;
    if (host->healthy()) ++l.counts[level].healthy;
  }
  l.load = ComputeLocalityLoad(l.counts, l.config.overprovisioning_percent);
  // Panic only when nothing is healthy anywhere: the load then spreads by host count.
  panic_ = hosts_.size() > 0 && hosts_.healthy_count() == 0;
  l.all_count = 0;
  for (int i = 0; i < kLocalityLevels; ++i) {
    l.all_count += panic_ ? l.counts[i].total : l.counts[i].healthy;
  }
  l.list.reset();
  cumulative_weights_.reset();
  if (l.all_count > 0) l.list = std::make_unique<HostSharedPtr[]>(l.all_count);
  size_t n = 0;
  for (int i = 0; i < kLocalityLevels; ++i) {
    l.begin[i] = n;
    for (const HostSharedPtr& host : hosts_.hosts()) {
      if (LevelOf(*host) == i && (panic_ || host->healthy()) && n < l.all_count) {
        l.list[n++] = host;
      }
    }
    l.count[i] = n - l.begin[i];
  }
  equal_weights_ = true;
  for (size_t j = 0; j < l.all_count; ++j) {
    if (l.list[j]->weight() != l.list[0]->weight()) equal_weights_ = false;
  }
  if (!equal_weights_)
    cumulative_weights_ = std::make_unique_for_overwrite<uint64_t[]>(l.all_count);
  for (int i = 0; i < kLocalityLevels; ++i) {
    uint64_t sum = 0;
    for (size_t j = l.begin[i]; j < l.begin[i] + l.count[i]; ++j) {
      sum += l.list[j]->weight();
      if (!equal_weights_) cumulative_weights_[j] = sum;
    }
    l.weight[i] = sum;
  }
  // Until the first draw: the whole list.
  every_host_ = l.list.get();
  candidate_count_ = static_cast<uint32_t>(l.all_count);
  l.range_begin = 0;
  total_weight_ = l.weight[0];
}

void LoadBalancer::RefreshIfNeeded() {
  if (seen_version_ == hosts_.version()) return;
  seen_version_ = hosts_.version();
  candidates_.reset();
  if (locality_ != nullptr) {
    RefreshLocality();
    OnRefresh();
    return;
  }
  const size_t total = hosts_.size();
  const size_t healthy = hosts_.healthy_count();
  panic_ = total > 0 && healthy * 100 < total * panic_threshold_percent_;
  if (panic_ || healthy == total) {
    // Every host: read from the set, no list of our own.
    every_host_ = hosts_.hosts().data();
    candidate_count_ = static_cast<uint32_t>(total);
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

bool LoadBalancer::LocalOverloaded() const {
  const Locality& l = *locality_;
  const LocalityLbConfig& c = l.config;
  if (l.count[0] == 0 || (c.max_inflight_per_host == 0 && c.max_latency.count() <= 0)) {
    return false;
  }
  uint32_t inflight = 0;
  if (c.max_inflight_per_host > 0) {
    for (size_t j = l.begin[0]; j < l.begin[0] + l.count[0]; ++j) {
      inflight += l.list[j]->active_requests();
    }
  }
  uint32_t latency_ms = 0;
  if (c.max_latency.count() > 0 && clock_ != nullptr && l.latency_ewma_ns[0] > 0 &&
      clock_->Now() - l.latency_updated[0] < l.latency_decay) {
    // A level without a sample within the EWMA's time constant reads as recovered: spilled picks
    // send it nothing new to measure, so a stale value would keep it spilled for good.
    latency_ms = static_cast<uint32_t>(std::min(l.latency_ewma_ns[0] / 1e6, 4e9));
  }
  const LocalitySpillThresholds thresholds{
      .max_inflight_per_host = c.max_inflight_per_host,
      .max_latency_ms = static_cast<uint32_t>(std::min<int64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(c.max_latency).count(),
          UINT32_MAX))};
  return LocalLevelOverloaded(inflight, l.counts[0].healthy, latency_ms, thresholds);
}

void LoadBalancer::ChooseLevel() {
  Locality& l = *locality_;
  LocalityPick pick = PickLocality(l.load, static_cast<uint32_t>(random_.Uniform(100)),
                                   LocalOverloaded(), l.counts);
  if (l.count[pick.level] == 0) {
    // Only rounding can draw a level without candidates: take the most local one with some.
    for (int i = 0; i < kLocalityLevels; ++i) {
      if (l.count[i] > 0) {
        pick.level = i;
        break;
      }
    }
    pick.decision = pick.level == 0 ? LocalityDecision::kLocal : LocalityDecision::kFailover;
  }
  ++l.picks[static_cast<int>(pick.decision)];
  l.last = pick;
  l.picked = true;
  l.range_begin = l.begin[pick.level];
  every_host_ = l.list.get() + l.range_begin;
  candidate_count_ = static_cast<uint32_t>(l.count[pick.level]);
  total_weight_ = l.weight[pick.level];
}

Host* LoadBalancer::Choose(const LbContext& context) {
  RefreshIfNeeded();
  if (candidate_count_ == 0) return nullptr;
  if (locality_ != nullptr) ChooseLevel();
  if (panic_) ++panic_picks_;
  Host* host = Pick();
  for (int i = 0; i < kMaxAvoidAttempts && Contains(context.hosts_to_avoid, host); ++i) {
    host = Pick();
  }
  if (Contains(context.hosts_to_avoid, host)) {
    // The policy keeps choosing tried hosts (least request favours one that fails fast: it never
    // has requests in flight). Any untried candidate beats them; with locality, of the drawn
    // level first, then of any level.
    const size_t n = candidate_count_;
    const size_t start = random_.Uniform(n);
    for (size_t i = 0; i < n; ++i) {
      Host* untried = candidate((start + i) % n);
      if (!Contains(context.hosts_to_avoid, untried)) return untried;
    }
    for (size_t i = 0; locality_ != nullptr && i < locality_->all_count; ++i) {
      Host* untried = locality_->list[i].get();
      if (!Contains(context.hosts_to_avoid, untried)) return untried;
    }
  }
  return host;
}

bool LoadBalancer::Contains(absl::Span<const Host* const> list, const Host* host) {
  return std::find(list.begin(), list.end(), host) != list.end();
}

Host* LoadBalancer::WeightedRandom() {
  if (equal_weights_) return candidate(random_.Uniform(candidate_count_));
  const uint64_t r = random_.Uniform(total_weight_);
  const uint64_t* begin = cumulative_weights_.get() + range_begin();
  const uint64_t* it = std::upper_bound(begin, begin + candidate_count_, r);
  return candidate(static_cast<size_t>(it - begin));
}

void RoundRobinLoadBalancer::OnRefresh() {
  if (equal_weights_) {
    current_.clear();
    current_.shrink_to_fit();
  } else {
    current_.assign(all_candidates(), 0);
  }
}

Host* RoundRobinLoadBalancer::Pick() {
  if (equal_weights_) {
    size_t& next = next_[active_level()];
    if (next >= candidate_count_) next %= candidate_count_;
    Host* host = candidate(next);
    next = (next + 1) % candidate_count_;
    return host;
  }
  // Smooth weighted round robin: every host gains its weight, the richest is picked and pays the
  // total. Over total_weight picks each host is chosen exactly weight times, interleaved.
  // With locality, over the drawn level's range of the state.
  int64_t* current = current_.data() + range_begin();
  size_t best = 0;
  for (size_t i = 0; i < candidate_count_; ++i) {
    current[i] += candidate(i)->weight();
    if (current[i] > current[best]) best = i;
  }
  current[best] -= static_cast<int64_t>(total_weight_);
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
