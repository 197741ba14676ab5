#include "sidecar/cluster/upstream_stats.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "common/base/logging.h"
#include "common/base/status.h"

namespace meshlet::sidecar::cluster {
namespace {

// One LazySeries per value of `label` in `values`, all of metric `name`.
template <size_t N>
constexpr std::array<LazySeries, N> SeriesPerValue(absl::string_view name, absl::string_view help,
                                                   absl::string_view label,
                                                   const std::array<absl::string_view, N>& values) {
  std::array<LazySeries, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = LazySeries{name, help, label, values[i]};
  return out;
}

constexpr auto kByClassSeries =
    SeriesPerValue("meshlet_upstream_rq_total", "Responses received from upstream hosts.",
                   "code_class", kStatusClassNames);
constexpr LazySeries kConnectFailSeries{
    "meshlet_upstream_rq_connect_fail_total",
    "Requests that failed because no upstream connection could be made.", "", ""};
constexpr LazySeries kOverflowSeries{
    "meshlet_upstream_rq_overflow_total",
    "Requests refused at once by the cluster's circuit breaker limits.", "", ""};
constexpr LazySeries kTimeoutSeries{"meshlet_upstream_rq_timeout_total",
                                    "Requests that hit their route timeout.", "", ""};
constexpr LazySeries kResetSeries{"meshlet_upstream_rq_reset_total",
                                  "Upstream streams that ended with a reset.", "", ""};
constexpr LazySeries kNoHealthyHostSeries{"meshlet_upstream_rq_no_healthy_host_total",
                                          "Requests with no healthy host to send them to.", "", ""};
constexpr LazySeries kBreakerOpenSeries{
    "meshlet_upstream_rq_breaker_open_total",
    "Requests refused because the cluster's consecutive-failure breaker was open (or half-open "
    "with its probe out).",
    "", ""};
// Microseconds, exposed in seconds (LazyHistogram).
// What the Cluster counts (Cluster::StatHandles): zero for most clusters, so registered with
// their first count.
constexpr LazySeries kBreakerOpenedSeries{"meshlet_upstream_cf_breaker_opened_total",
                                          "Times the consecutive-failure breaker opened.", "", ""};
constexpr LazySeries kOutlierEjectionsSeries{"meshlet_upstream_outlier_ejections_total",
                                             "Hosts ejected by outlier detection.", "", ""};
constexpr LazySeries kOverloadResponsesSeries{
    "meshlet_upstream_overload_responses_total",
    "Responses 429 or gRPC RESOURCE_EXHAUSTED from the cluster's hosts (overload signals).", "",
    ""};
constexpr LazySeries kOverloadEjectionsSeries{"meshlet_upstream_overload_ejections_total",
                                              "Hosts ejected because they answered overloaded.", "",
                                              ""};
constexpr LazySeries kOverloadEjectionsSkippedSeries{
    "meshlet_upstream_overload_ejections_skipped_total",
    "Overload ejections refused by max_ejection_percent or because no other healthy host was "
    "left.",
    "", ""};
constexpr auto kDurationSeries = SeriesPerValue(
    "meshlet_upstream_rq_duration_seconds",
    "Requests routed to the cluster, from start to end of the response, by outcome (failure: "
    "5xx or no complete response).",
    "outcome", kOutcomeNames);
constexpr auto kRetrySeries = SeriesPerValue("meshlet_upstream_rq_retry_total",
                                             "Retries sent, by what the failed attempt ran into.",
                                             "reason", kRetryReasonNames);
constexpr auto kRetrySkippedSeries = SeriesPerValue(
    "meshlet_upstream_rq_retry_skipped_total",
    "Retries the policy asked for but did not send, by reason.", "reason", kRetrySkipReasonNames);
constexpr auto kRetryOverflowSeries =
    SeriesPerValue("meshlet_upstream_rq_retry_overflow_total",
                   "Retries refused by the retry budget or the concurrent-retry limit.", "limit",
                   kRetryOverflowNames);
constexpr LazySeries kRetrySuccessSeries{
    "meshlet_upstream_rq_retry_success_total",
    "Requests whose final response came from a retry and was not 5xx.", "", ""};
constexpr LazySeries kPerTryTimeoutSeries{"meshlet_upstream_rq_per_try_timeout_total",
                                          "Attempts that hit the retry policy's per-try timeout.",
                                          "", ""};
constexpr auto kDeadlineHeaderInvalidSeries =
    SeriesPerValue("meshlet_upstream_rq_deadline_header_invalid_total",
                   "Requests whose caller deadline header was malformed (and ignored).", "header",
                   std::array<absl::string_view, 2>{"grpc-timeout", "x-meshlet-deadline"});
constexpr LazySeries kMirrorSeries{"meshlet_upstream_rq_mirror_total",
                                   "Mirror copies of requests sent to the cluster.", "", ""};
constexpr LazySeries kMirrorFailedSeries{
    "meshlet_upstream_rq_mirror_failed_total",
    "Mirror copies that got no complete answer (no host, connect failure, reset, timeout) or a "
    "5xx; the original requests are unaffected.",
    "", ""};
constexpr auto kMirrorSkippedSeries = SeriesPerValue(
    "meshlet_upstream_rq_mirror_skipped_total",
    "Mirror copies not sent: the worker's mirror limit, a body over the replay buffer, a request "
    "that did not complete, or a mirror cluster the worker lacks.",
    "reason", kMirrorSkipReasonNames);
constexpr auto kSessionSeries = SeriesPerValue(
    "meshlet_upstream_rq_session_total",
    "Requests that brought a sticky-session token, by what it did: hit (sent to its endpoint), "
    "miss (its endpoint gone, unhealthy or refused), expired, invalid.",
    "result", kSessionResultNames);
constexpr auto kLocalitySeries = SeriesPerValue(
    "meshlet_upstream_rq_locality_total",
    "Endpoint picks of a locality-aware balancer by decision: local (the caller's zone), failover "
    "(another level because the nearer ones lack healthy hosts), spillover (the caller's zone "
    "overloaded).",
    "decision", kLocalityDecisionNames);

// The lazy counters' series, in one table: a LazyCounter names its series by index. Create()
// wires the handles in this order (a test checks each handle's series).
template <size_t... N>
constexpr auto Concat(const std::array<LazySeries, N>&... parts) {
  std::array<LazySeries, (N + ...)> out{};
  size_t i = 0;
  ((std::copy(parts.begin(), parts.end(), out.begin() + i), i += N), ...);
  return out;
}
constexpr auto kLazyCounterSeries =
    Concat(kByClassSeries,
           std::array{kConnectFailSeries, kOverflowSeries, kTimeoutSeries, kResetSeries,
                      kNoHealthyHostSeries, kBreakerOpenSeries},
           kRetrySeries, kRetrySkippedSeries, kRetryOverflowSeries,
           std::array{kRetrySuccessSeries, kPerTryTimeoutSeries}, kDeadlineHeaderInvalidSeries,
           std::array{kMirrorSeries, kMirrorFailedSeries}, kMirrorSkippedSeries, kSessionSeries,
           std::array{kBreakerOpenedSeries, kOutlierEjectionsSeries, kOverloadResponsesSeries,
                      kOverloadEjectionsSeries, kOverloadEjectionsSkippedSeries},
           kLocalitySeries);
static_assert(kLazyCounterSeries.size() <= UINT16_MAX);

// The lazy gauges' series (LazyGauge), in the order Create() wires them.
constexpr std::array<LazySeries, 3> kLazyGaugeSeries = {
    LazySeries{"meshlet_upstream_cf_breaker_state",
               "Consecutive-failure breaker state on this worker as of its last decision: 0 "
               "closed, 1 open, 2 half-open.",
               "worker", ""},
    LazySeries{"meshlet_upstream_outlier_ejections_active",
               "Hosts ejected by outlier detection now, summed over workers.", "", ""},
    LazySeries{"meshlet_upstream_overload_ejections_active",
               "Hosts ejected for overload now, summed over workers.", "", ""},
};

// Wires lazy handles of one type to the next series of `Table`, in order.
template <typename Lazy, const auto& Table>
class LazyWiring {
 public:
  explicit LazyWiring(const LazySource* source) : source_(source) {}
  void Wire(Lazy& handle) {
    CHECK(next_ < Table.size());
    handle = Lazy(source_, next_++);
  }
  template <size_t N>
  void Wire(std::array<Lazy, N>& handles) {
    for (Lazy& handle : handles) Wire(handle);
  }
  bool done() const { return next_ == Table.size(); }

 private:
  const LazySource* const source_;
  uint16_t next_ = 0;
};

// One lazy histogram per series of `series`, into `handles` (the same order).
template <size_t N>
void MakeLazy(std::array<LazyHistogram, N>& handles, const LazySource* source,
              const std::array<LazySeries, N>& series) {
  for (size_t i = 0; i < N; ++i) handles[i] = LazyHistogram(source, &series[i]);
}

LabelSet LazyLabels(const LazySource& source, const LazySeries& series) {
  LabelSet labels = {{"cluster", source.cluster}};
  if (!series.label.empty()) {
    labels.emplace_back(std::string(series.label),
                        series.value.empty() ? source.worker : std::string(series.value));
  }
  return labels;
}

// The pending word's source and series (LazyWord).
const LazySource& SourceOf(uint64_t pending, int series_shift) {
  return *reinterpret_cast<const LazySource*>(pending & ((uint64_t{1} << series_shift) - 1) &
                                              ~uint64_t{7});
}

}  // namespace

// Only the series budget refuses (counted in meshlet_stats_series_refused_total): the handle then
// stays one that counts nothing.
template <>
uint64_t LazyWord<Counter>::Register() const {
  const LazySource& source = SourceOf(word_, kSeriesShift);
  const LazySeries& series = kLazyCounterSeries[word_ >> kSeriesShift];
  absl::StatusOr<Counter> counter =
      source.shard->RegisterCounter(series.name, series.help, LazyLabels(source, series));
  word_ = counter.ok() ? counter->word() : Counter().word();
  return word_;
}

template <>
uint64_t LazyWord<Gauge>::Register() const {
  const LazySource& source = SourceOf(word_, kSeriesShift);
  const LazySeries& series = kLazyGaugeSeries[word_ >> kSeriesShift];
  absl::StatusOr<Gauge> gauge =
      source.shard->RegisterGauge(series.name, series.help, LazyLabels(source, series));
  word_ = gauge.ok() ? gauge->word() : Gauge().word();
  return word_;
}

void LazyHistogram::Register() const {
  const Pending pending = pending_;
  HistogramOptions seconds;
  seconds.exposition_divisor = 1e6;
  absl::StatusOr<Histogram> histogram = pending.source->shard->RegisterHistogram(
      pending.series->name, pending.series->help, LazyLabels(*pending.source, *pending.series),
      seconds);
  handle_ = histogram.ok() ? *histogram : Histogram();
  state_ = histogram.ok() ? State::kRegistered : State::kNone;
}

absl::StatusOr<UpstreamStats> UpstreamStats::Create(StatsShard& shard, absl::string_view cluster,
                                                    absl::string_view worker) {
  UpstreamStats s;
  const std::string name(cluster);
  const LabelSet labels = {{"cluster", name}};
  ASSIGN_OR_RETURN(s.cx_total, shard.RegisterCounter("meshlet_upstream_cx_total",
                                                     "Upstream connections opened.", labels));
  ASSIGN_OR_RETURN(
      s.cx_tls_handshake_fail,
      shard.RegisterCounter("meshlet_upstream_cx_tls_handshake_fail_total",
                            "Upstream connections whose TLS handshake failed: the peer's "
                            "certificate or identity was refused, or the peer refused ours.",
                            labels));
  ASSIGN_OR_RETURN(
      s.rq_active,
      shard.RegisterGauge("meshlet_upstream_rq_active",
                          "Requests in flight to the cluster (pending or started).", labels));
  s.lazy_source = std::make_shared<const LazySource>(
      LazySource{.shard = &shard, .cluster = name, .worker = std::string(worker)});
  const LazySource* source = s.lazy_source.get();
  LazyWiring<LazyCounter, kLazyCounterSeries> lazy(source);
  lazy.Wire(s.rq_by_class);
  lazy.Wire(s.rq_connect_fail);
  lazy.Wire(s.rq_overflow);
  lazy.Wire(s.rq_timeout);
  lazy.Wire(s.rq_reset);
  lazy.Wire(s.rq_no_healthy_host);
  lazy.Wire(s.rq_breaker_open);
  lazy.Wire(s.rq_retry);
  lazy.Wire(s.rq_retry_skipped);
  lazy.Wire(s.rq_retry_overflow);
  lazy.Wire(s.rq_retry_success);
  lazy.Wire(s.rq_per_try_timeout);
  lazy.Wire(s.rq_deadline_header_invalid);
  lazy.Wire(s.rq_mirror);
  lazy.Wire(s.rq_mirror_failed);
  lazy.Wire(s.rq_mirror_skipped);
  lazy.Wire(s.rq_session);
  lazy.Wire(s.cf_breaker_opened);
  lazy.Wire(s.outlier_ejections);
  lazy.Wire(s.overload_responses);
  lazy.Wire(s.overload_ejections);
  lazy.Wire(s.overload_ejections_skipped);
  lazy.Wire(s.rq_locality);
  CHECK(lazy.done());
  LazyWiring<LazyGauge, kLazyGaugeSeries> gauges(source);
  gauges.Wire(s.cf_breaker_state);
  gauges.Wire(s.outlier_ejections_active);
  gauges.Wire(s.overload_ejections_active);
  CHECK(gauges.done());
  MakeLazy(s.rq_duration, source, kDurationSeries);
  ASSIGN_OR_RETURN(s.tx_bytes, shard.RegisterCounter(
                                   "meshlet_upstream_tx_bytes_total",
                                   "Request body and tunnel bytes sent to the cluster.", labels));
  ASSIGN_OR_RETURN(
      s.rx_bytes,
      shard.RegisterCounter("meshlet_upstream_rx_bytes_total",
                            "Response body and tunnel bytes received from the cluster.", labels));
  return s;
}

}  // namespace meshlet::sidecar::cluster
