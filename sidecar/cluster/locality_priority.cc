#include "sidecar/cluster/locality_priority.h"

#include <algorithm>

namespace meshlet::sidecar::cluster {

LocalityLoad ComputeLocalityLoad(const std::array<LocalityLevelCounts, kLocalityLevels>& levels,
                                 uint32_t overprovisioning_percent) {
  LocalityLoad load{};
  uint32_t all_hosts = 0;
  uint32_t remaining = 100;
  for (int i = 0; i < kLocalityLevels; ++i) {
    const LocalityLevelCounts& l = levels[i];
    all_hosts += l.total;
    if (l.total == 0 || remaining == 0) continue;
    const uint64_t healthy = std::min(l.healthy, l.total);
    const uint64_t share = std::min<uint64_t>(100, healthy * overprovisioning_percent / l.total);
    const uint32_t take = std::min<uint32_t>(remaining, static_cast<uint32_t>(share));
    load[i] = take;
    remaining -= take;
  }
  if (all_hosts == 0) return LocalityLoad{};
  if (remaining == 100) {
    // Panic: nothing healthy anywhere; spread by host count.
    uint32_t given = 0;
    int last = 0;
    for (int i = 0; i < kLocalityLevels; ++i) {
      load[i] = static_cast<uint32_t>(uint64_t{levels[i].total} * 100 / all_hosts);
      given += load[i];
      if (levels[i].total > 0) last = i;
    }
    load[last] += 100 - given;
    return load;
  }
  if (remaining > 0) {
    // Degraded everywhere: scale the healthy shares up to 100 proportionally,
    // rounding leftovers to the most local level that has load.
    const uint32_t used = 100 - remaining;
    uint32_t given = 0;
    int first = -1;
    for (int i = 0; i < kLocalityLevels; ++i) {
      load[i] = load[i] * 100 / used;
      given += load[i];
      if (first < 0 && load[i] > 0) first = i;
    }
    load[first] += 100 - given;
  }
  return load;
}

int PickLocalityLevel(const LocalityLoad& load, uint32_t random_percent) {
  uint32_t acc = 0;
  int last = 0;
  for (int i = 0; i < kLocalityLevels; ++i) {
    if (load[i] == 0) continue;
    acc += load[i];
    last = i;
    if (random_percent < acc) return i;
  }
  return last;
}

bool LocalLevelOverloaded(uint32_t inflight, uint32_t healthy_hosts, uint32_t latency_ms,
                          const LocalitySpillThresholds& thresholds) {
  if (thresholds.max_inflight_per_host > 0 &&
      uint64_t{inflight} >
          uint64_t{thresholds.max_inflight_per_host} * std::max(healthy_hosts, 1u)) {
    return true;
  }
  return thresholds.max_latency_ms > 0 && latency_ms > thresholds.max_latency_ms;
}

LocalityPick PickLocality(const LocalityLoad& load, uint32_t random_percent, bool local_overloaded,
                          const std::array<LocalityLevelCounts, kLocalityLevels>& levels) {
  LocalityPick pick;
  pick.level = PickLocalityLevel(load, random_percent);
  if (pick.level != 0) {
    pick.decision = LocalityDecision::kFailover;
    return pick;
  }
  if (local_overloaded) {
    for (int i = 1; i < kLocalityLevels; ++i) {
      if (levels[i].healthy > 0) {
        pick.level = i;
        pick.decision = LocalityDecision::kSpillover;
        return pick;
      }
    }
  }
  return pick;
}

}  // namespace meshlet::sidecar::cluster
