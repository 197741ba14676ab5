#pragma once

#include <array>
#include <cstdint>

namespace meshlet::sidecar::cluster {

// Locality priority levels and the share of requests each receives.
//
// Level 0 is the caller's zone, 1 its region (other zones), 2 everything else.
// A level's load is min(100, healthy% * overprovisioning / 100); what the
// levels above leave spills to the next one (Envoy's priority semantics with
// the default overprovisioning factor of 140). Hosts ejected by outlier
// detection, failing health checks or behind an open breaker count as
// unhealthy in `healthy`. When no level is healthy at all the load is spread
// by host count so requests still go somewhere (panic).
//
// Pure function: no allocation, no state; callable from any thread.
inline constexpr int kLocalityLevels = 3;
inline constexpr uint32_t kDefaultOverprovisioningPercent = 140;

struct LocalityLevelCounts {
  uint32_t total = 0;
  uint32_t healthy = 0;
};

// Per-level load in percent; the entries sum to 100 (or 0 when no hosts).
using LocalityLoad = std::array<uint32_t, kLocalityLevels>;

LocalityLoad ComputeLocalityLoad(
    const std::array<LocalityLevelCounts, kLocalityLevels>& levels,
    uint32_t overprovisioning_percent = kDefaultOverprovisioningPercent);

// Picks a level for `random_percent` in [0, 100) from a computed load.
int PickLocalityLevel(const LocalityLoad& load, uint32_t random_percent);

// Spill-over (HAZL-style): the local level is overloaded when its in-flight
// requests per healthy host or its recent latency exceed a threshold; a
// threshold of 0 disables that test.
struct LocalitySpillThresholds {
  uint32_t max_inflight_per_host = 0;
  uint32_t max_latency_ms = 0;
};

bool LocalLevelOverloaded(uint32_t inflight, uint32_t healthy_hosts, uint32_t latency_ms,
                          const LocalitySpillThresholds& thresholds);

enum class LocalityDecision { kLocal, kFailover, kSpillover };

struct LocalityPick {
  int level = 0;
  LocalityDecision decision = LocalityDecision::kLocal;
};

// Picks a level and names why: level 0 is kLocal unless it is overloaded, in
// which case the pick moves to the next level with healthy hosts (kSpillover);
// any other level is kFailover.
LocalityPick PickLocality(const LocalityLoad& load, uint32_t random_percent, bool local_overloaded,
                          const std::array<LocalityLevelCounts, kLocalityLevels>& levels);

}  // namespace meshlet::sidecar::cluster
