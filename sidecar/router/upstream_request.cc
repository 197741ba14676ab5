#include "sidecar/router/upstream_request.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/net/connection.h"
#include "sidecar/router/router.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::router {
namespace {

int StatusOf(const http::HeaderMap& headers) {
  int status = 0;
  std::optional<absl::string_view> value = headers.Get(":status");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &status)) return 0;
  return status;
}

}  // namespace

void UpstreamRequest::Reset() {
  // The reset may happen inside the codec's Dispatch that delivered the headers (a discarded
  // retriable response). The codecs stop delivering on reset; this makes it independent of them,
  // since the rest of such a response reaching the router would go to the client.
  withdrawn_ = true;
  DisablePerTryTimeout();
  if (handle_ != nullptr) {
    cluster::Cancellable* handle = handle_;
    handle_ = nullptr;
    handle->Cancel();
  }
  if (encoder_ != nullptr) {
    http::StreamEncoder* encoder = encoder_;
    encoder_ = nullptr;
    encoder->GetStream().RemoveCallbacks(*this);
    encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  }
  host_ = nullptr;
  CancelProbeIfUnreported();
  active_.reset();
  // Withdrawn: a response was discarded for a retry, or the request ended without one.
  const bool answered = response_complete_ || (span_ != nullptr && span_->status_code != 0);
  EndSpan(answered ? absl::string_view() : "cancelled");
}

void UpstreamRequest::RecordResult(resilience::HostResult result, std::optional<Duration> latency) {
  if (result_recorded_ || host_ == nullptr) return;
  result_recorded_ = true;
  cluster_.RecordResult(*host_, result, probe_, latency);
}

Duration UpstreamRequest::elapsed() const { return router_.context_.clock.Now() - start_; }

void UpstreamRequest::EndTunnel() {
  if (encoder_ == nullptr) return;
  // Detached first: ending the stream closes its connection, which must not report back.
  http::StreamEncoder* encoder = encoder_;
  encoder_ = nullptr;
  encoder->GetStream().RemoveCallbacks(*this);
  host_ = nullptr;
  active_.reset();
  if (!request_complete_) {
    request_complete_ = true;
    net::Buffer empty;
    encoder->EncodeData(empty, /*end_stream=*/true);
  }
}

void UpstreamRequest::OnPoolReady(http::StreamEncoder& encoder, cluster::Host& host) {
  answered_ = true;
  handle_ = nullptr;
  host_ = &host;
  encoder_ = &encoder;
  if (span_ != nullptr) {
    span_->upstream_ready_us =
        std::chrono::duration_cast<std::chrono::microseconds>(elapsed()).count();
  }
  encoder.GetStream().AddCallbacks(*this);
  if (router_.downstream_above_high_watermark_) encoder.GetStream().ReadDisable(true);
  router_.OnUpstreamReady();
}

void UpstreamRequest::OnPoolFailure(cluster::PoolFailureReason reason, absl::string_view details,
                                    cluster::Host& host) {
  answered_ = true;
  handle_ = nullptr;
  host_ = &host;
  LOG(DEBUG) << "upstream " << host.address().ToString()
             << ": no stream: " << cluster::PoolFailureReasonName(reason) << " " << details;
  if (reason != cluster::PoolFailureReason::kOverflow) {
    // Nothing reached the host; as far as outlier detection goes, it failed us.
    RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
  }
  host_ = nullptr;
  CancelProbeIfUnreported();
  active_.reset();
  EndSpan(cluster::PoolFailureReasonName(reason));
  router_.OnUpstreamPoolFailure(reason, host);
}

void UpstreamRequest::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  if (withdrawn_) return;
  const int status = StatusOf(*headers);
  if ((status == 429 || (end_stream && router_.grpc_)) && ReportOverload(*headers, status)) {
    // An overload answer is quick and says nothing of the host's speed: no latency sample.
    RecordResult(resilience::HostResult::kSuccess, std::nullopt);
  } else {
    RecordResult(resilience::ClassifyHttpStatus(static_cast<uint32_t>(status)), elapsed());
  }
  if (span_ != nullptr) span_->status_code = status;
  if (end_stream) ResponseEnded();
  router_.OnUpstreamHeaders(std::move(headers), end_stream, status);
}

void UpstreamRequest::DecodeData(net::Buffer& data, bool end_stream) {
  if (withdrawn_) {
    data.Drain(data.length());
    return;
  }
  if (span_ != nullptr) span_->bytes_in += data.length();
  if (end_stream) ResponseEnded();
  router_.OnUpstreamData(data, end_stream);
}

void UpstreamRequest::DecodeTrailers(http::HeaderMapPtr trailers) {
  if (withdrawn_) return;
  if (router_.grpc_) ReportOverload(*trailers, 0);
  ResponseEnded();
  router_.OnUpstreamTrailers(std::move(trailers));
}

void UpstreamRequest::OnResetStream(http::StreamResetReason reason, absl::string_view details) {
  if (encoder_ == nullptr) return;
  encoder_ = nullptr;
  LOG(DEBUG) << "upstream stream reset: " << http::ResetReasonName(reason) << " " << details;
  RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
  host_ = nullptr;
  CancelProbeIfUnreported();
  active_.reset();
  EndSpan(http::ResetReasonName(reason));
  // The pool's details start with the connection's close reason: a transport error before the
  // handshake finished is a failed TLS handshake (cluster/conn_pool.cc).
  router_.OnUpstreamReset(
      reason,
      reason == http::StreamResetReason::kConnectionFailure &&
          absl::StartsWith(details, net::CloseReasonName(net::CloseReason::kTransportError)),
      details);
}

void UpstreamRequest::OnAboveWriteBufferHighWatermark() {
  router_.OnUpstreamAboveWriteBufferHighWatermark();
}

void UpstreamRequest::OnBelowWriteBufferLowWatermark() {
  router_.OnUpstreamBelowWriteBufferLowWatermark();
}

inline void UpstreamRequest::ResponseEnded() {
  response_complete_ = true;
  EndSpan({});
  MaybeDone();
}

inline void UpstreamRequest::EndSpan(absl::string_view error) {
  if (span_ == nullptr) return;
  if (!error.empty()) {
    span_->error = true;
    span_->status_message.assign(error.data(), error.size());
  } else if (span_->status_code >= 500) {
    span_->error = true;
    span_->status_message = absl::StrCat("HTTP ", span_->status_code);
  }
  tracing::Tracer& tracer = *router_.context_.tracer;
  if (AttemptMayBeFolded()) {
    // The only attempt so far: kept, exported only if another follows (BeginClientSpan).
    span_->end_ns = tracer.WallNanos();
    router_.info_.held_attempt_span = std::move(span_);
    return;
  }
  tracer.End(span_);
}

bool UpstreamRequest::ReportOverload(const http::HeaderMap& headers, int status) {
  if (host_ == nullptr) return false;
  if (status != 429) {
    uint32_t grpc_status = 0;
    std::optional<absl::string_view> value = headers.Get("grpc-status");
    if (!value.has_value() || !absl::SimpleAtoi(*value, &grpc_status) ||
        grpc_status != cluster::kGrpcResourceExhausted) {
      return false;
    }
  }
  std::optional<absl::string_view> retry_after = headers.Get("retry-after");
  cluster_.RecordOverload(
      *host_, retry_after.has_value() ? cluster::ParseRetryAfter(*retry_after) : std::nullopt);
  return true;
}

inline void UpstreamRequest::CancelProbeIfUnreported() {
  if (!probe_ || result_recorded_) return;
  result_recorded_ = true;
  // The host may have left the set since; then the detector forgot it too.
  if (cluster::Host* host = cluster_.host_set().FindById(host_id_)) cluster_.CancelProbe(*host);
}

void UpstreamRequest::BeginClientSpan(const cluster::Host& host) {
  // Every attempt is its own client span and carries its own traceparent (a retry included).
  if (router_.info_.held_attempt_span != nullptr) ExportHeldAttemptSpan();
  // The id goes into the attempt's record, sampled or not: an error span lists it, and the next
  // hop's span names it as its parent.
  router_.info_.decision.SetAttemptSpan(
      router_.context_.tracer->BeginClient(*router_.request_headers_, router_.info_.trace, span_));
  if (span_ != nullptr) DescribeClientSpan(*span_, host);
}

void UpstreamRequest::ExportHeldAttemptSpan() {
  // A first attempt kept in case it stayed the only one is exported now that it is not, with the
  // text it was spared (the server span still names its host).
  stream::StreamInfo& info = router_.info_;
  const tracing::Span* const server = info.server_span;
  FillClientSpanText(*info.held_attempt_span);
  tracing::SetText(info.held_attempt_span->endpoint,
                   server != nullptr ? absl::string_view(server->endpoint) : "");
  router_.context_.tracer->End(info.held_attempt_span);
}

void UpstreamRequest::DescribeClientSpan(tracing::Span& span, const cluster::Host& host) {
  tracing::Span* const server = router_.info_.server_span;
  // The server span names the host of the last attempt: this one, so far.
  if (server != nullptr) {
    host.address().FormatTo(server->endpoint);
    // The server span starts at an exact reading (the connection manager's), the attempt at the
    // loop turn's shared one, which may be earlier: an attempt begun in the turn its request
    // arrived must not start before its parent.
    span.start_ns = std::max(span.start_ns, server->start_ns);
  }
  if (!AttemptMayBeFolded()) {
    FillClientSpanText(span);
    host.address().FormatTo(span.endpoint);
  }
}

inline bool UpstreamRequest::AttemptMayBeFolded() const {
  const stream::StreamInfo& info = router_.info_;
  // Not for a B3 caller: the X-B3-ParentSpanId sent upstream names the server span's own id,
  // which a fold would replace (and B3 peers may share the client span's id for their own).
  const bool b3 = info.trace.b3_single || info.trace.b3_multi;
  return !router_.context_.tracer->span_per_attempt() && !b3 && info.trace.attempts == 1 &&
         info.server_span != nullptr;
}

inline void UpstreamRequest::FillClientSpanText(tracing::Span& span) const {
  const stream::StreamInfo& info = router_.info_;
  const tracing::Span* const server = info.server_span;
  // The request's method, as the server span has it (one lookup less).
  tracing::SetText(span.method, server != nullptr
                                    ? absl::string_view(server->method)
                                    : router_.request_headers_->Get(":method").value_or(""));
  span.route = info.route_name;
  span.cluster = info.cluster_name;
  span.peer_service =
      tracing::PeerService(info.cluster_name, router_.context_.tracer->service_name());
  // The attempt passes on the tracestate its server span received, to the same authority.
  if (server != nullptr) {
    tracing::SetText(span.trace_state, server->trace_state);
    tracing::SetText(span.server_host, server->server_host);
    span.server_port = server->server_port;
  }
}

}  // namespace meshlet::sidecar::router
