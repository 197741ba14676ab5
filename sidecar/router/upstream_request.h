#pragma once

// UpstreamRequest: one attempt of a request at one upstream host, for the Router (router.h). It
// asks the host's connection pool for a stream (sidecar/cluster/conn_pool.h), encodes what the
// router gives it onto that stream, hands the response (headers with their parsed :status, body,
// trailers) or the stream's reset back to the router, enforces the attempt's per-try timeout,
// reports how the host did to the cluster's outlier detection once (and an overload answer to its
// overload handling), and keeps the attempt's client
// span (docs/tracing.md). It keeps nothing of the request but what the stream needs, so a retry
// is another UpstreamRequest over the same router state.
//
// Ownership and callbacks: the router owns it and outlives it. Every call back into the router
// (Router::OnUpstream*) happens from the pool's or the stream's callbacks or from the per-try
// timer, on the worker's loop thread; the pool may answer from inside Start(). After Reset() no
// callback follows. A router that drops an attempt whose callback may be on the stack destroys it
// through Loop::DeferDelete. Objects come from the worker's free list (ThreadRecycled), so an
// attempt allocates none.

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/free_list.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/router/router.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::router {

class UpstreamRequest final : public cluster::ConnPoolCallbacks,
                              public http::StreamDecoder,
                              public http::StreamCallbacks,
                              public ThreadRecycled<UpstreamRequest> {
 public:
  // An attempt at `host` of `cluster` (`probe`: the outlier detector's probe of an ejected host,
  // settled when the attempt ends without a result).
  UpstreamRequest(Router& router, cluster::Cluster& cluster, cluster::Host& host, bool probe)
      : router_(router),
        cluster_(cluster),
        host_(&host),
        host_id_(host.id()),
        probe_(probe),
        active_(router.stats_->rq_active) {}
  ~UpstreamRequest() override { Reset(); }
  UpstreamRequest(const UpstreamRequest&) = delete;
  UpstreamRequest& operator=(const UpstreamRequest&) = delete;

  // Asks `pool` for a stream; with a non-zero `per_try_timeout`, the attempt has that long for
  // its response headers (then Router::OnPerTryTimeout).
  // Inline (with the constructor): made and started on every request.
  void Start(cluster::ConnPool& pool, Duration per_try_timeout) {
    if (per_try_timeout > Duration::zero()) {
      if (!per_try_timer_.has_value()) {
        per_try_timer_.emplace(router_.context_.loop, [this] { router_.OnPerTryTimeout(); });
      }
      per_try_timer_->Enable(per_try_timeout);
    }
    start_ = router_.context_.clock.Now();
    cluster::Cancellable* handle = pool.NewStream(*this, *this);
    // The pool may have answered already (OnPoolReady or OnPoolFailure from inside NewStream).
    if (!answered_) handle_ = handle;
  }

  // Withdraws the attempt: cancels the pool request or resets the stream. No callback follows.
  void Reset();

  // The per-try timeout is over (the response headers came).
  void DisablePerTryTimeout() {
    if (per_try_timer_.has_value()) per_try_timer_->Disable();
  }

  // Reports how the host did (once per attempt).
  void RecordResult(resilience::HostResult result, std::optional<Duration> latency);

  bool ready() const { return encoder_ != nullptr; }
  // The attempt's host; null once the attempt is over.
  const cluster::Host* host() const { return host_; }
  bool request_complete() const { return request_complete_; }
  Duration elapsed() const;

  // The request, onto the stream once it is ready (ignored before and after).
  void EncodeHeaders(const http::HeaderMap& headers, bool end_stream) {
    if (encoder_ == nullptr) return;
    if (end_stream) request_complete_ = true;
    encoder_->EncodeHeaders(headers, end_stream);
    MaybeDone();
  }
  void EncodeData(net::Buffer& data, bool end_stream) {
    if (encoder_ == nullptr) {
      data.Drain(data.length());
      return;
    }
    if (end_stream) request_complete_ = true;
    if (span_ != nullptr) span_->bytes_out += data.length();
    encoder_->EncodeData(data, end_stream);
    MaybeDone();
  }
  void EncodeTrailers(const http::HeaderMap& trailers) {
    if (encoder_ == nullptr) return;
    request_complete_ = true;
    encoder_->EncodeTrailers(trailers);
    MaybeDone();
  }
  void ReadDisable(bool disable) {
    if (encoder_ == nullptr) return;
    encoder_->GetStream().ReadDisable(disable);
  }

  // The tunnel is over: ends our direction if it has not ended (the HTTP/1 codec then completes
  // the stream and closes its connection after flushing, with no callback) and lets the stream go.
  void EndTunnel();

  // Tracing: the attempt's client span (sampled requests only) and its traceparent (and B3) on the
  // router's request headers; a first attempt held for folding is exported first (another
  // attempt follows it).
  void BeginClientSpan(const cluster::Host& host);

  // cluster::ConnPoolCallbacks
  void OnPoolReady(http::StreamEncoder& encoder, cluster::Host& host) override;
  void OnPoolFailure(cluster::PoolFailureReason reason, absl::string_view details,
                     cluster::Host& host) override;

  // http::StreamDecoder (the response). The stream is settled before the router hears of the
  // end, so nothing the router does then can touch a finished stream.
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;

  // http::StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;

 private:
  // Both directions ended: the pool takes the stream back and the encoder is no longer ours.
  void MaybeDone() {
    if (encoder_ == nullptr || !request_complete_ || !response_complete_) return;
    encoder_ = nullptr;
    host_ = nullptr;
    active_.reset();
  }
  void ResponseEnded();
  // The attempt is over: its span (if sampled) goes to the exporter. `error` says why it failed.
  void EndSpan(absl::string_view error);
  void CancelProbeIfUnreported();
  // A 429, or a gRPC status RESOURCE_EXHAUSTED in `headers` (trailers, or a trailers-only
  // response's headers): reported to the cluster with its retry-after; true if it was one.
  [[gnu::noinline]] bool ReportOverload(const http::HeaderMap& headers, int status);

  // Out of line (only sampled requests and retries get here), so the unsampled path stays short.
  [[gnu::noinline]] void ExportHeldAttemptSpan();
  [[gnu::noinline]] void DescribeClientSpan(tracing::Span& span, const cluster::Host& host);
  // The attempt now beginning (or ending) is the request's first and, with span_per_attempt
  // false, will be folded into the server span if no other follows (tracing::FoldSingleAttempt).
  bool AttemptMayBeFolded() const;
  // A client span's text attributes but its endpoint (the caller sets it): method, route, cluster,
  // peer and trace state. A span that may be folded gets them only once it is to be exported.
  void FillClientSpanText(tracing::Span& span) const;

  Router& router_;
  cluster::Cluster& cluster_;
  cluster::Host* host_;  // valid while the pool request or stream is alive
  const uint64_t host_id_;
  const bool probe_;
  std::optional<GaugeGuard> active_;
  cluster::Cancellable* handle_ = nullptr;
  http::StreamEncoder* encoder_ = nullptr;  // null once the stream is done or reset
  MonotonicTime start_{};
  // Made only for an attempt with a per-try timeout shorter than what the route timeout leaves.
  std::optional<event::Timer> per_try_timer_;
  bool answered_ = false;
  bool withdrawn_ = false;  // Reset() ran: decoder events are dropped
  bool request_complete_ = false;
  bool response_complete_ = false;
  bool result_recorded_ = false;
  tracing::SpanPtr span_;  // sampled requests only
};

}  // namespace meshlet::sidecar::router
