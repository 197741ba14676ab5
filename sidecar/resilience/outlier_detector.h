#pragma once

// Outlier detection for one cluster: finds endpoints ("hosts") that fail while their peers do
// not, takes them out of load balancing for a while, and lets them back in through a single
// probe request.
//
// Per host, from request results (O(1) each):
//   - `consecutive_5xx` 5xx-class failures in a row (default 5) eject it;
//   - `consecutive_gateway_failure` gateway-class failures in a row (502/503/504, connect
//     failure, reset, timeout; default 5) eject it. A gateway failure also counts as a 5xx; any
//     other 5xx resets the gateway count; a success resets both.
// Each interval (Tick(), O(hosts)), when success_rate_minimum_hosts > 0:
//   - among healthy hosts with at least success_rate_request_volume results in the interval, if
//     there are at least success_rate_minimum_hosts of them, a host whose success rate is below
//     mean - success_rate_stdev_factor * stdev (population) is ejected.
//
// Ejection lasts base_ejection_time x times_ejected (30 s, 60 s, 90 s, ...), capped at
// max(max_ejection_time, base_ejection_time). When it expires the host is half-open: the load
// balancer may send it exactly one probe request (TryAdmit() says kAdmitProbe once). A probe
// success makes it healthy again; a probe failure re-ejects it with times_ejected + 1. If a
// probe's result never arrives, another probe is allowed after base_ejection_time.
// times_ejected drops by one for every full `interval` the host then stays healthy, so a host
// that recovered for good is eventually treated as new.
//
// Limits:
//   - At most MaxEjected() hosts are ejected or half-open at once:
//     floor(hosts * max_ejection_percent / 100), but at least 1 when the cluster has 2 or more
//     hosts and max_ejection_percent > 0 (10 % of a small cluster rounds to 0, which would turn
//     detection off exactly where one bad host hurts most; a 1-host cluster is never ejected
//     because there is nowhere else to send the traffic). An ejection over the limit is skipped
//     and reported (kEjectionSkippedMaxPercent); the host keeps its failure count, so the next
//     failure tries again.
//   - Panic: when healthy hosts (neither ejected nor half-open) are fewer than
//     panic_threshold_percent % of all hosts (default 50; 0 = never), IsPanic() is true, the
//     routable set is every host and TryAdmit() admits every host: spreading load over all hosts,
//     some failing, beats crushing the few healthy ones.
//
// The load balancer reads RoutableHosts() (healthy hosts plus half-open hosts awaiting their
// probe, or all hosts in panic) and re-reads it when version() changes; it calls TryAdmit()
// on the host it picked, which can refuse a half-open host whose probe is already out.
//
// Time: ejections expire in Tick() (and lazily in TryAdmit() for the host asked about). The
// owner calls Tick() every `interval` and at NextExpiry() for precise ejection times.
//
// Ownership: holds references to the Clock and to its config (not a copy: every cluster a worker
// built whose calls failed has a detector), which must outlive it; an owner replacing its config
// with an equal one hands the detector the new one (UseConfig). Threading: single-threaded;
// each worker owns its own detector for each cluster (detection follows the results that worker
// sees, which SO_REUSEPORT spreads evenly). Only SetHosts() allocates.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/clock.h"

namespace meshlet::sidecar::resilience {

struct OutlierDetectionConfig {
  uint32_t consecutive_5xx = 5;              // OutlierDetection.consecutive_5xx; 0 = off
  uint32_t consecutive_gateway_failure = 5;  // ...consecutive_gateway_failure; 0 = off
  Duration interval = std::chrono::seconds(10);
  Duration base_ejection_time = std::chrono::seconds(30);
  Duration max_ejection_time = std::chrono::seconds(300);
  uint32_t max_ejection_percent = 10;
  uint32_t success_rate_minimum_hosts = 0;  // 0 = success-rate detection off
  uint32_t success_rate_request_volume = 100;
  double success_rate_stdev_factor = 1.9;
  uint32_t panic_threshold_percent = 50;
};

absl::Status ValidateOutlierDetectionConfig(const OutlierDetectionConfig& config);

// How a request to a host ended, from the host's point of view.
enum class HostResult {
  kSuccess,       // any non-5xx response
  kServerError,   // 5xx other than 502/503/504
  kGatewayError,  // 502/503/504, connect failure, reset before response, timeout
};
// 5xx → kServerError or kGatewayError; anything else → kSuccess.
HostResult ClassifyHttpStatus(uint32_t status);

class OutlierDetector {
 public:
  enum class HostState : uint8_t { kHealthy = 0, kEjected = 1, kHalfOpen = 2 };
  enum class Admission { kAdmit, kAdmitProbe, kReject };
  enum class Event {
    kNone,
    kEjectedConsecutive5xx,
    kEjectedConsecutiveGatewayFailure,
    kEjectionSkippedMaxPercent,
    kProbeSucceeded,  // half-open → healthy
    kProbeFailed,     // half-open → ejected again, longer
    kIgnored,         // unknown host, or a result from before the host's current state
  };
  struct TickSummary {
    uint32_t half_opened = 0;  // ejections that expired
    uint32_t ejected_success_rate = 0;
    uint32_t skipped_max_percent = 0;  // success-rate ejections refused by the limit
    bool evaluated_interval = false;   // the interval work ran on this tick
  };

  // `config` (not null) and `clock` must outlive the detector (see the header comment).
  OutlierDetector(const OutlierDetectionConfig* config, const Clock& clock);
  OutlierDetector(const OutlierDetector&) = delete;
  OutlierDetector& operator=(const OutlierDetector&) = delete;

  // The config to read from now on, equal to the current one (its owner's config moved to a new
  // object); it must outlive the detector in turn.
  void UseConfig(const OutlierDetectionConfig* config);

  // Replaces the host set; hosts that stay keep their state, new ones start healthy. O(hosts).
  void SetHosts(absl::Span<const uint64_t> host_ids);

  // Asked for the host the load balancer picked. Unknown hosts are admitted (the detector has no
  // opinion on them).
  Admission TryAdmit(uint64_t host_id);
  // A probe admitted by TryAdmit() was abandoned without a result: allow another one.
  void CancelProbe(uint64_t host_id);
  // The result of a request to `host_id`; `probe` is true when TryAdmit() said kAdmitProbe.
  Event RecordResult(uint64_t host_id, HostResult result, bool probe = false);

  // Expires ejections; every `interval`, runs success-rate detection and decay.
  TickSummary Tick();
  // The earliest ejection expiry, for the owner's timer; nullopt when nothing is ejected.
  std::optional<MonotonicTime> NextExpiry() const;
  // Whether Tick() can change anything: false with success-rate detection off while every host
  // held is healthy, never ejected (nothing to decay) and in a failure streak (nothing to let go:
  // only a result ends it). The owner's timer may then stop until the next RecordResult().
  bool NeedsTick() const;

  bool IsPanic() const;
  // Appends to `out` (cleared first), in id order: see the header comment.
  void RoutableHosts(std::vector<uint64_t>* out) const;
  // Changes whenever RoutableHosts() or IsPanic() may have changed.
  uint64_t version() const { return version_; }

  size_t host_count() const { return ids_.size(); }
  // Ejected or half-open.
  size_t ejected_count() const { return ejected_count_; }
  size_t healthy_count() const { return ids_.size() - ejected_count_; }
  size_t MaxEjected() const;
  // What the detector holds per host (every built cluster holds it for each of its hosts): its
  // id, in one sorted array (no second index, no second allocation). A host's state
  // (kBytesPerTrackedHost) is held only from its first failure (with success-rate detection: its
  // first result) until it is healthy again with nothing counted and nothing to decay (ADR 0091).
  static constexpr size_t kBytesPerHost = sizeof(uint64_t);
  static constexpr size_t kBytesPerTrackedHost = 48;
  // Hosts whose state is held now.
  size_t tracked_count() const { return tracked_.size(); }
  // Records the tracked state has room for: never more than the members, and at most a quarter
  // more than tracked_count() after growing (vectors doubling left half of it unused).
  size_t tracked_capacity() const { return tracked_.capacity(); }
  std::optional<HostState> state(uint64_t host_id) const;
  uint32_t times_ejected(uint64_t host_id) const;
  // When the host's current ejection ends; nullopt unless ejected.
  std::optional<MonotonicTime> ejected_until(uint64_t host_id) const;

 private:
  // One per tracked host: kept small (48 bytes), widest fields first.
  struct Host {
    uint64_t id = 0;  // Host::id() of sidecar/cluster/host.h
    // kEjected: when the ejection ends. kHalfOpen with probe_in_flight: when the probe started.
    // (A host is never both, so the two share one field.)
    MonotonicTime until_or_probe{};
    MonotonicTime last_decay{};  // last un-ejection or decay step
    // Results in the current interval, saturating (an interval would need 4e9 requests to one
    // host to reach the cap).
    uint32_t interval_successes = 0;
    uint32_t interval_total = 0;
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    uint32_t times_ejected = 0;
    HostState state = HostState::kHealthy;
    bool probe_in_flight = false;
  };

  bool IsMember(uint64_t host_id) const;
  // The tracked state of `host_id`; null for a host not tracked (or not a member).
  Host* Find(uint64_t host_id);
  const Host* Find(uint64_t host_id) const;
  // Find(), adding fresh state for a member not tracked yet; null for a non-member. Invalidates
  // pointers to other hosts' state.
  Host* Track(uint64_t host_id, MonotonicTime now);
  // Drops the state of hosts back where a fresh one starts (Tick, without success-rate detection).
  void Untrack();
  // Ejects if the limit allows; false when skipped.
  bool Eject(Host& host, MonotonicTime now);
  void ExpireIfDue(Host& host, MonotonicTime now);
  Duration EjectionDuration(uint32_t times_ejected) const;
  void EvaluateSuccessRate(MonotonicTime now, TickSummary& summary);

  const OutlierDetectionConfig* config_;  // never null
  const Clock& clock_;
  // The members, ordered by id (duplicates dropped), for IsMember()'s binary search: 8 bytes per
  // host where a hash index cost about 33 (ADR 0091).
  std::vector<uint64_t> ids_;
  // The tracked hosts' state, ordered by id; a member without state is healthy with nothing
  // counted, as a fresh one starts.
  std::vector<Host> tracked_;
  static_assert(sizeof(Host) <= kBytesPerTrackedHost);
  size_t ejected_count_ = 0;
  MonotonicTime last_interval_;
  uint64_t version_ = 0;
};

absl::string_view OutlierEventName(OutlierDetector::Event event);

}  // namespace meshlet::sidecar::resilience
