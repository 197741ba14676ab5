#include "sidecar/cluster/upstream_stats.h"

#include <string>

#include "common/base/status.h"

namespace meshlet::sidecar::cluster {

absl::StatusOr<UpstreamStats> UpstreamStats::Create(StatsShard& shard, absl::string_view cluster,
                                                    absl::string_view worker) {
  UpstreamStats s;
  const std::string name(cluster);
  for (size_t i = 0; i < s.rq_by_class.size(); ++i) {
    ASSIGN_OR_RETURN(s.rq_by_class[i],
                     shard.RegisterCounter(
                         "meshlet_upstream_rq_total", "Responses received from upstream hosts.",
                         {{"cluster", name}, {"code_class", std::string(kStatusClassNames[i])}}));
  }
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
      s.rq_connect_fail,
      shard.RegisterCounter("meshlet_upstream_rq_connect_fail_total",
                            "Requests that failed because no upstream connection could be made.",
                            labels));
  ASSIGN_OR_RETURN(
      s.rq_overflow,
      shard.RegisterCounter("meshlet_upstream_rq_overflow_total",
                            "Requests refused at once by the cluster's circuit breaker limits.",
                            labels));
  ASSIGN_OR_RETURN(s.rq_timeout,
                   shard.RegisterCounter("meshlet_upstream_rq_timeout_total",
                                         "Requests that hit their route timeout.", labels));
  ASSIGN_OR_RETURN(s.rq_reset,
                   shard.RegisterCounter("meshlet_upstream_rq_reset_total",
                                         "Upstream streams that ended with a reset.", labels));
  ASSIGN_OR_RETURN(s.rq_no_healthy_host,
                   shard.RegisterCounter("meshlet_upstream_rq_no_healthy_host_total",
                                         "Requests with no healthy host to send them to.", labels));
  ASSIGN_OR_RETURN(
      s.rq_active,
      shard.RegisterGauge("meshlet_upstream_rq_active",
                          "Requests in flight to the cluster (pending or started).", labels));
  for (size_t i = 0; i < kRetryReasonNames.size(); ++i) {
    ASSIGN_OR_RETURN(
        s.rq_retry[i],
        shard.RegisterCounter("meshlet_upstream_rq_retry_total",
                              "Retries sent, by what the failed attempt ran into.",
                              {{"cluster", name}, {"reason", std::string(kRetryReasonNames[i])}}));
  }
  ASSIGN_OR_RETURN(s.rq_mirror,
                   shard.RegisterCounter("meshlet_upstream_rq_mirror_total",
                                         "Mirror copies of requests sent to the cluster.", labels));
  ASSIGN_OR_RETURN(
      s.rq_mirror_failed,
      shard.RegisterCounter("meshlet_upstream_rq_mirror_failed_total",
                            "Mirror copies that got no complete answer (no host, connect failure, "
                            "reset, timeout) or a 5xx; the original requests are unaffected.",
                            labels));
  for (size_t i = 0; i < kMirrorSkipReasonNames.size(); ++i) {
    ASSIGN_OR_RETURN(
        s.rq_mirror_skipped[i],
        shard.RegisterCounter(
            "meshlet_upstream_rq_mirror_skipped_total",
            "Mirror copies not sent: the worker's mirror limit, a body over the replay buffer, a "
            "request that did not complete, or a mirror cluster the worker lacks.",
            {{"cluster", name}, {"reason", std::string(kMirrorSkipReasonNames[i])}}));
  }
  for (size_t i = 0; i < kSessionResultNames.size(); ++i) {
    ASSIGN_OR_RETURN(
        s.rq_session[i],
        shard.RegisterCounter(
            "meshlet_upstream_rq_session_total",
            "Requests that brought a sticky-session token, by what it did: hit (sent to its "
            "endpoint), miss (its endpoint gone, unhealthy or refused), expired, invalid.",
            {{"cluster", name}, {"result", std::string(kSessionResultNames[i])}}));
  }
  for (size_t i = 0; i < kRetrySkipReasonNames.size(); ++i) {
    ASSIGN_OR_RETURN(s.rq_retry_skipped[i],
                     shard.RegisterCounter(
                         "meshlet_upstream_rq_retry_skipped_total",
                         "Retries the policy asked for but did not send, by reason.",
                         {{"cluster", name}, {"reason", std::string(kRetrySkipReasonNames[i])}}));
  }
  for (size_t i = 0; i < kRetryOverflowNames.size(); ++i) {
    ASSIGN_OR_RETURN(
        s.rq_retry_overflow[i],
        shard.RegisterCounter("meshlet_upstream_rq_retry_overflow_total",
                              "Retries refused by the retry budget or the concurrent-retry limit.",
                              {{"cluster", name}, {"limit", std::string(kRetryOverflowNames[i])}}));
  }
  ASSIGN_OR_RETURN(s.rq_retry_success,
                   shard.RegisterCounter(
                       "meshlet_upstream_rq_retry_success_total",
                       "Requests whose final response came from a retry and was not 5xx.", labels));
  ASSIGN_OR_RETURN(
      s.rq_per_try_timeout,
      shard.RegisterCounter("meshlet_upstream_rq_per_try_timeout_total",
                            "Attempts that hit the retry policy's per-try timeout.", labels));
  for (size_t i = 0; i < s.rq_deadline_header_invalid.size(); ++i) {
    ASSIGN_OR_RETURN(
        s.rq_deadline_header_invalid[i],
        shard.RegisterCounter(
            "meshlet_upstream_rq_deadline_header_invalid_total",
            "Requests whose caller deadline header was malformed (and ignored).",
            {{"cluster", name}, {"header", i == 0 ? "grpc-timeout" : "x-meshlet-deadline"}}));
  }
  HistogramOptions seconds;
  seconds.exposition_divisor = 1e6;
  for (size_t i = 0; i < kOutcomeNames.size(); ++i) {
    ASSIGN_OR_RETURN(s.rq_duration[i],
                     shard.RegisterHistogram(
                         "meshlet_upstream_rq_duration_seconds",
                         "Requests routed to the cluster, from start to end of the response, by "
                         "outcome (failure: 5xx or no complete response).",
                         {{"cluster", name}, {"outcome", std::string(kOutcomeNames[i])}}, seconds));
  }
  ASSIGN_OR_RETURN(s.tx_bytes, shard.RegisterCounter(
                                   "meshlet_upstream_tx_bytes_total",
                                   "Request body and tunnel bytes sent to the cluster.", labels));
  ASSIGN_OR_RETURN(
      s.rx_bytes,
      shard.RegisterCounter("meshlet_upstream_rx_bytes_total",
                            "Response body and tunnel bytes received from the cluster.", labels));
  ASSIGN_OR_RETURN(
      s.rq_breaker_open,
      shard.RegisterCounter("meshlet_upstream_rq_breaker_open_total",
                            "Requests refused because the cluster's consecutive-failure breaker "
                            "was open (or half-open with its probe out).",
                            labels));
  ASSIGN_OR_RETURN(
      s.cf_breaker_state,
      shard.RegisterGauge("meshlet_upstream_cf_breaker_state",
                          "Consecutive-failure breaker state on this worker as of its last "
                          "decision: 0 closed, 1 open, 2 half-open.",
                          {{"cluster", name}, {"worker", std::string(worker)}}));
  ASSIGN_OR_RETURN(s.cf_breaker_opened,
                   shard.RegisterCounter("meshlet_upstream_cf_breaker_opened_total",
                                         "Times the consecutive-failure breaker opened.", labels));
  ASSIGN_OR_RETURN(
      s.outlier_ejections_active,
      shard.RegisterGauge("meshlet_upstream_outlier_ejections_active",
                          "Hosts ejected by outlier detection now, summed over workers.", labels));
  ASSIGN_OR_RETURN(s.outlier_ejections,
                   shard.RegisterCounter("meshlet_upstream_outlier_ejections_total",
                                         "Hosts ejected by outlier detection.", labels));
  ASSIGN_OR_RETURN(s.overload_responses,
                   shard.RegisterCounter("meshlet_upstream_overload_responses_total",
                                         "Responses 429 or gRPC RESOURCE_EXHAUSTED from the "
                                         "cluster's hosts (overload signals).",
                                         labels));
  ASSIGN_OR_RETURN(
      s.overload_ejections,
      shard.RegisterCounter("meshlet_upstream_overload_ejections_total",
                            "Hosts ejected because they answered overloaded.", labels));
  ASSIGN_OR_RETURN(s.overload_ejections_skipped,
                   shard.RegisterCounter("meshlet_upstream_overload_ejections_skipped_total",
                                         "Overload ejections refused by max_ejection_percent or "
                                         "because no other healthy host was left.",
                                         labels));
  ASSIGN_OR_RETURN(
      s.overload_ejections_active,
      shard.RegisterGauge("meshlet_upstream_overload_ejections_active",
                          "Hosts ejected for overload now, summed over workers.", labels));
  return s;
}

}  // namespace meshlet::sidecar::cluster
