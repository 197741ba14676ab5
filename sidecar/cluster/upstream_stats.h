#pragma once

// UpstreamStats: the stat handles of one cluster on one worker, registered once when the worker's
// ClusterManager creates the cluster and then incremented lock-free by the router (requests,
// failures) and the cluster's codec factories (connections). Every series carries the label
// `cluster`; docs/stats.md lists them.
//
// Most of a cluster's 52 series are registered on their first use on the worker, not with the
// cluster (LazyCounter, LazyGauge, LazyHistogram): the breaker state and the ejections active
// gauges (when first not 0), the responses by status class and the duration by outcome
// (a cluster whose requests all succeed never has a failure histogram, 312 bytes per worker
// before its first sample), failures (connect failures, overflows, timeouts, resets, no healthy
// host, an open breaker) and the counters of rare events (retries and why they were not sent,
// mirroring, sticky sessions, malformed caller deadlines, per-try timeouts). Each series costs
// the registry 94 bytes, or 214 with a label value of its own (StatsRegistryTest.
// SeriesCostLittleMemory), plus its cells per worker, and most clusters never count most of them. A
// series' first use takes the registry's mutex once; later ones are a flag test and the add.
//
// Ownership: a value of handles into the worker's StatsShard; it must not outlive the shard and
// is used only on the shard's thread. Default-constructed handles count nothing, so code can hold
// an UpstreamStats before stats are wired (tests).

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar::cluster {

// Index of "1xx".."5xx" for an HTTP status; statuses outside 100..599 clamp to the nearest class.
inline size_t StatusClassIndex(int status) {
  if (status < 200) return 0;
  if (status >= 500) return 4;
  return static_cast<size_t>(status / 100 - 1);
}
inline constexpr std::array<absl::string_view, 5> kStatusClassNames = {"1xx", "2xx", "3xx", "4xx",
                                                                       "5xx"};

// Why an attempt was retried (meshlet_upstream_rq_retry_total{reason}): the kinds of
// resilience::AttemptResult, in that order.
inline constexpr std::array<absl::string_view, 5> kRetryReasonNames = {
    "connect_failure", "refused_stream", "reset", "per_try_timeout", "status"};
// Why a retry the policy asked for did not happen
// (meshlet_upstream_rq_retry_skipped_total{reason}).
inline constexpr std::array<absl::string_view, 5> kRetrySkipReasonNames = {
    "attempts_exhausted", "non_idempotent", "body_too_large", "deadline_too_close",
    "local_connect_refused"};
// Which limit refused a retry (meshlet_upstream_rq_retry_overflow_total{limit}).
inline constexpr std::array<absl::string_view, 2> kRetryOverflowNames = {"budget", "concurrent"};
// Why a mirror copy was not sent (meshlet_upstream_rq_mirror_skipped_total{reason}); counted on
// the mirror cluster, except `no_cluster`, counted on the route's cluster.
inline constexpr std::array<absl::string_view, 4> kMirrorSkipReasonNames = {
    "in_flight_limit", "body_too_large", "incomplete", "no_cluster"};
enum class MirrorSkip { kInFlightLimit, kBodyTooLarge, kIncomplete, kNoCluster };
// What a sticky-session token did for a request (meshlet_upstream_rq_session_total{result}):
// honoured; named an endpoint that is gone, unhealthy, refused or of no cluster of the route;
// past its timeout; malformed or stamped in the future. The last three got a balanced pick.
// Locality decisions of the load balancer (locality_priority.h LocalityDecision order).
inline constexpr std::array<absl::string_view, 3> kLocalityDecisionNames = {"local", "failover",
                                                                            "spillover"};
inline constexpr std::array<absl::string_view, 4> kSessionResultNames = {"hit", "miss", "expired",
                                                                         "invalid"};
enum class SessionResult { kHit, kMiss, kExpired, kInvalid };
// How a request ended (meshlet_upstream_rq_duration_seconds{outcome}).
inline constexpr std::array<absl::string_view, 2> kOutcomeNames = {"success", "failure"};

// What a lazily registered series is: its metric, and the one label besides `cluster` with its
// value (empty label: none; an empty value: the source's worker). Static data.
struct LazySeries {
  absl::string_view name;
  absl::string_view help;
  absl::string_view label;
  absl::string_view value;
};

// Where a cluster's lazy series register: its shard and name. Kept by UpstreamStats
// (lazy_source) for the handles it holds.
struct LazySource {
  StatsShard* shard;
  std::string cluster;
  std::string worker;  // the value of `worker` for the per-worker series
};

// A per-cluster histogram registered on its first sample (see the top of the file): until then
// its series and source, then the histogram, in the same bytes (32 with a state). `source` must
// outlive the handle and its copies: UpstreamStats keeps it for its own. Copies share nothing
// mutable: each registers its own handle (the registry returns the same series). A
// default-constructed one counts nothing. Use only on the shard's thread. Microseconds, exposed
// in seconds.
class LazyHistogram {
 public:
  LazyHistogram() : handle_() {}
  LazyHistogram(const LazySource* source, const LazySeries* series)
      : pending_{source, series}, state_(State::kPending) {}

  void Record(uint64_t value) const {
    if (state_ == State::kPending) [[unlikely]]
      Register();
    handle_.Record(value);
  }
  // Whether the series exists yet (tests).
  bool registered() const { return state_ == State::kRegistered; }

 private:
  enum class State : uint8_t {
    kNone,        // never wired, or refused: handle_ counts nothing
    kPending,     // pending_ holds where to register
    kRegistered,  // handle_ is the series'
  };
  struct Pending {
    const LazySource* source;
    const LazySeries* series;
  };

  // Registers the series; on refusal (the series budget, counted by the registry) the handle
  // becomes one that counts nothing, and is not asked again.
  void Register() const;

  // Which member is live is state_'s: both are trivially copyable, so copies copy either.
  union {
    mutable Histogram handle_;
    Pending pending_;
  };
  mutable State state_ = State::kNone;
};

// A per-cluster counter or gauge registered on its first use (see the top of the file), in one
// word (8 bytes): until then its source and the index of its series among the lazy ones of its
// type (upstream_stats.cc), tagged pending; then the handle's stats_internal::CellWord. `source`
// must outlive the handle and its copies: UpstreamStats keeps it for its own. Copies share nothing
// mutable: each registers its own handle (the registry returns the same series). A
// default-constructed one counts nothing. Use only on the shard's thread.
template <typename Handle>
class LazyWord {
 public:
  // Whether the series exists yet (tests).
  bool registered() const { return !pending() && word_ != Handle().word(); }

 protected:
  LazyWord() : word_(Handle().word()) {}
  // One already registered.
  explicit LazyWord(const Handle& handle) : word_(handle.word()) {}
  // `series` indexes the lazy series of Handle's type (UpstreamStats::Create assigns them).
  LazyWord(const LazySource* source, uint16_t series) {
    const uint64_t address = reinterpret_cast<uintptr_t>(source);
    word_ = address | kPending | (uint64_t{series} << kSeriesShift);
    if ((address >> kSeriesShift) != 0) [[unlikely]]
      Register();  // the address needs the index's bits: no pending state
  }

  bool pending() const { return (word_ & kPending) != 0; }
  // The handle's word, registering the series first if it is pending.
  uint64_t word() const {
    if (pending()) [[unlikely]]
      return Register();
    return word_;
  }

 private:
  // Bit 1 is clear in every CellWord; the source's address takes bits 3..47 (user-space addresses
  // on the 64-bit targets built for; a source above that registers at construction), the series
  // index bits 48..63.
  static constexpr uint64_t kPending = 2;
  static constexpr int kSeriesShift = 48;

  // Registers the series and returns the handle's word; on refusal (the series budget, counted
  // by the registry) the handle becomes one that counts nothing, and is not asked again.
  uint64_t Register() const;

  mutable uint64_t word_;
};

template <>
uint64_t LazyWord<Counter>::Register() const;
template <>
uint64_t LazyWord<Gauge>::Register() const;

// A counter registered on its first count: 8 bytes, 42 per cluster per worker that used it.
class LazyCounter : public LazyWord<Counter> {
 public:
  LazyCounter() = default;
  LazyCounter(const LazySource* source, uint16_t series) : LazyWord(source, series) {}

  void Inc(uint64_t n = 1) const {
    const uint64_t w = word();
    stats_internal::AddToCell(stats_internal::WordCell(w), n, stats_internal::WordShared(w));
  }
};

// A gauge registered when it is first set to something other than 0 on the worker: until then
// its series is absent, which reads as 0 (docs/stats.md), so most clusters never hold the series
// of a breaker state, or of ejections, they never had. A Gauge converts to a registered one.
class LazyGauge : public LazyWord<Gauge> {
 public:
  LazyGauge() = default;
  LazyGauge(const LazySource* source, uint16_t series) : LazyWord(source, series) {}
  LazyGauge(Gauge gauge) : LazyWord(gauge) {}  // NOLINT(google-explicit-constructor)

  void Set(int64_t value) const {
    if (value == 0 && pending()) return;  // what the absent series reads
    stats_internal::WordCell(word())->store(static_cast<uint64_t>(value),
                                            std::memory_order_relaxed);
  }
};

struct UpstreamStats {
  // `worker` labels the one per-worker series (the breaker state).
  static absl::StatusOr<UpstreamStats> Create(StatsShard& shard, absl::string_view cluster,
                                              absl::string_view worker = "0");

  // meshlet_upstream_rq_total{cluster,code_class}: responses received from upstream hosts.
  std::array<LazyCounter, 5> rq_by_class;
  Counter cx_total;  // meshlet_upstream_cx_total: connections opened
  // meshlet_upstream_cx_tls_handshake_fail_total: connections whose TLS handshake failed.
  Counter cx_tls_handshake_fail;
  LazyCounter rq_connect_fail;     // meshlet_upstream_rq_connect_fail_total
  LazyCounter rq_overflow;         // meshlet_upstream_rq_overflow_total (circuit breaker)
  LazyCounter rq_timeout;          // meshlet_upstream_rq_timeout_total (route timeout)
  LazyCounter rq_reset;            // meshlet_upstream_rq_reset_total
  LazyCounter rq_no_healthy_host;  // meshlet_upstream_rq_no_healthy_host_total
  Gauge rq_active;                 // meshlet_upstream_rq_active
  // meshlet_upstream_rq_breaker_open_total: refused by the consecutive-failure breaker.
  LazyCounter rq_breaker_open;
  // Handed to the Cluster (Cluster::StatHandles).
  LazyGauge cf_breaker_state;              // meshlet_upstream_cf_breaker_state{cluster,worker}
  LazyCounter cf_breaker_opened;           // meshlet_upstream_cf_breaker_opened_total
  LazyGauge outlier_ejections_active;      // meshlet_upstream_outlier_ejections_active
  LazyCounter outlier_ejections;           // meshlet_upstream_outlier_ejections_total
  LazyCounter overload_responses;          // meshlet_upstream_overload_responses_total
  LazyCounter overload_ejections;          // meshlet_upstream_overload_ejections_total
  LazyCounter overload_ejections_skipped;  // meshlet_upstream_overload_ejections_skipped_total
  LazyGauge overload_ejections_active;     // meshlet_upstream_overload_ejections_active
  // meshlet_upstream_rq_locality_total{decision}: picks of a locality-aware balancer by decision
  // (kLocalityDecisionNames).
  std::array<LazyCounter, kLocalityDecisionNames.size()> rq_locality;
  // Retries and attempt timeouts (the router; docs/resilience.md).
  std::array<LazyCounter, kRetryReasonNames.size()> rq_retry;  // ..._rq_retry_total
  std::array<LazyCounter, kRetrySkipReasonNames.size()>
      rq_retry_skipped;  // ..._rq_retry_skipped_total
  std::array<LazyCounter, kRetryOverflowNames.size()>
      rq_retry_overflow;           // ..._rq_retry_overflow_total
  LazyCounter rq_retry_success;    // meshlet_upstream_rq_retry_success_total
  LazyCounter rq_per_try_timeout;  // meshlet_upstream_rq_per_try_timeout_total
  // meshlet_upstream_rq_deadline_header_invalid_total{header}: malformed caller deadlines
  // (ignored), index 0 grpc-timeout, 1 x-meshlet-deadline.
  std::array<LazyCounter, 2> rq_deadline_header_invalid;
  // Request mirroring (sidecar/router/mirror.h), counted on the mirror cluster.
  LazyCounter rq_mirror;  // meshlet_upstream_rq_mirror_total: copies sent
  LazyCounter
      rq_mirror_failed;  // meshlet_upstream_rq_mirror_failed_total: no complete answer, or 5xx
  // meshlet_upstream_rq_mirror_skipped_total{reason}: copies not sent (kMirrorSkipReasonNames).
  std::array<LazyCounter, kMirrorSkipReasonNames.size()> rq_mirror_skipped;
  // meshlet_upstream_rq_session_total{result}: requests that brought a sticky-session token
  // (kSessionResultNames), counted on the cluster they went to.
  std::array<LazyCounter, kSessionResultNames.size()> rq_session;

  // Golden metrics (docs/golden-metrics.md): each request routed to the cluster, once, when it
  // ends (after its retries). meshlet_upstream_rq_duration_seconds{cluster,outcome}: index 0
  // success, 1 failure (5xx, a gRPC status other than OK, or no complete response).
  std::array<LazyHistogram, 2> rq_duration;
  Counter tx_bytes;  // meshlet_upstream_tx_bytes_total: request body and tunnel bytes sent
  Counter rx_bytes;  // meshlet_upstream_rx_bytes_total: response body and tunnel bytes received

  // Where the lazy handles above register; copies of an UpstreamStats share it.
  std::shared_ptr<const LazySource> lazy_source;

  void RecordStatus(int status) const { rq_by_class[StatusClassIndex(status)].Inc(); }
  // A request to this cluster ended: `response_code` 0 means none was sent, `grpc_failure` that
  // it ended with a gRPC status other than OK, `reset` that the response did not complete.
  void RecordCompletion(int response_code, bool grpc_failure, bool reset, uint64_t duration_us,
                        uint64_t sent_bytes, uint64_t received_bytes) const {
    const bool failure = response_code == 0 || response_code >= 500 || grpc_failure || reset;
    rq_duration[failure ? 1 : 0].Record(duration_us);
    tx_bytes.Inc(sent_bytes);
    rx_bytes.Inc(received_bytes);
  }
};

}  // namespace meshlet::sidecar::cluster
