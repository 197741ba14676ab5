#include "sidecar/router/router.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/free_list.h"
#include "common/base/logging.h"
#include "common/net/connection.h"
#include "sidecar/resilience/deadline.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/router/deadline_headers.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::router {

using cluster::Cancellable;
using cluster::Cluster;
using cluster::ConnPool;
using cluster::ConnPoolCallbacks;
using cluster::Host;
using cluster::HostSharedPtr;
using cluster::LbContext;
using cluster::PoolFailureReason;
using cluster::PoolFailureReasonName;
using cluster::UpstreamStats;
using route::DirectResponseAction;
using route::RedirectAction;
using route::RouteAction;
using route::RouteEntry;
using stream::LocalReply;
using stream::ResponseFlag;
using stream::StreamInfo;
using stream::TunnelKind;

namespace {

using http::grpc::StatusCode;

// Handles that count nothing, for clusters without registered stats.
const UpstreamStats& NoStats() {
  static const UpstreamStats* const stats = new UpstreamStats();
  return *stats;
}

int StatusOf(const http::HeaderMap& headers) {
  int status = 0;
  std::optional<absl::string_view> value = headers.Get(":status");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &status)) return 0;
  return status;
}

constexpr LocalReply kNoRoute{404, StatusCode::kUnimplemented, "no route"};
constexpr LocalReply kNoCluster{503, StatusCode::kUnavailable, "route cluster not found"};
constexpr LocalReply kNoHealthyUpstream{503, StatusCode::kUnavailable, "no healthy upstream"};
constexpr LocalReply kConnectFailure{503, StatusCode::kUnavailable, "upstream connect error"};
constexpr LocalReply kOverflow{
    .http_status = 503, .message = "upstream overloaded", .overloaded = true};
// 503, as a reset is retriable: a caller's sidecar retries it like the reset itself (its
// default retriable status), an idempotent request only (ADR 0045).
constexpr LocalReply kResetBeforeResponse{503, StatusCode::kUnavailable,
                                          "upstream reset before response"};
constexpr LocalReply kTimeout{504, StatusCode::kDeadlineExceeded, "upstream request timeout"};
constexpr LocalReply kPerTryTimeout{504, StatusCode::kDeadlineExceeded, "upstream per-try timeout"};
constexpr LocalReply kConnectNotRoutable{404, StatusCode::kUnimplemented,
                                         "no cluster route for CONNECT"};
constexpr LocalReply kConnectToTlsCluster{503, StatusCode::kUnavailable,
                                          "CONNECT to a TLS cluster is not supported"};

using resilience::AttemptResult;
using resilience::NoRetryReason;

std::optional<uint32_t> GrpcStatusOf(const http::HeaderMap& headers) {
  uint32_t status = 0;
  std::optional<absl::string_view> value = headers.Get("grpc-status");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &status)) return std::nullopt;
  return status;
}

// Retry-After in delay-seconds (RFC 9110 §10.2.3); an HTTP-date is ignored.
std::optional<Duration> RetryAfterOf(const http::HeaderMap& headers) {
  uint32_t seconds = 0;
  std::optional<absl::string_view> value = headers.Get("retry-after");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &seconds)) return std::nullopt;
  return std::chrono::seconds(seconds);
}

size_t RetryReasonIndex(AttemptResult::Kind kind) {
  switch (kind) {
    case AttemptResult::Kind::kConnectFailure:
      return 0;
    case AttemptResult::Kind::kRefusedStream:
      return 1;
    case AttemptResult::Kind::kResetBeforeHeaders:
    case AttemptResult::Kind::kResetAfterHeaders:
      return 2;
    case AttemptResult::Kind::kPerTryTimeout:
      return 3;
    case AttemptResult::Kind::kResponse:
      return 4;
  }
  return 4;
}

}  // namespace

// One attempt at one upstream host: the pool request, then the upstream stream. It reports to the
// router and keeps nothing of the request but what the stream needs, so a retry is another
// UpstreamRequest over the same router state.
class Router::UpstreamRequest final : public ConnPoolCallbacks,
                                      public http::StreamDecoder,
                                      public http::StreamCallbacks,
                                      public ThreadRecycled<UpstreamRequest> {
 public:
  UpstreamRequest(Router& router, Cluster& cluster, Host& host, bool probe)
      : router_(router),
        cluster_(cluster),
        host_(&host),
        host_id_(host.id()),
        probe_(probe),
        active_(router.stats_->rq_active) {}

  ~UpstreamRequest() override { Reset(); }

  void Start(ConnPool& pool) {
    start_ = router_.context_.clock.Now();
    Cancellable* handle = pool.NewStream(*this, *this);
    // The pool may have answered already (OnPoolReady or OnPoolFailure from inside NewStream).
    if (!answered_) handle_ = handle;
  }

  // Withdraws the attempt: cancels the pool request or resets the stream. No callback follows.
  void Reset() {
    // The reset may happen inside the codec's Dispatch that delivered the headers (a discarded
    // retriable response). The codecs stop delivering on reset; this makes it independent of them,
    // since the rest of such a response reaching the router would go to the client.
    withdrawn_ = true;
    if (handle_ != nullptr) {
      Cancellable* handle = handle_;
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

  // The attempt's client span (sampled requests only; docs/tracing.md).
  tracing::SpanPtr& span() { return span_; }

  // Reports how the host did (once per attempt).
  void RecordResult(resilience::HostResult result, std::optional<Duration> latency) {
    if (result_recorded_ || host_ == nullptr) return;
    result_recorded_ = true;
    cluster_.RecordResult(*host_, result, probe_, latency);
  }

  bool ready() const { return encoder_ != nullptr; }
  bool request_complete() const { return request_complete_; }
  Duration elapsed() const { return router_.context_.clock.Now() - start_; }

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
  void EndTunnel() {
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

  // ConnPoolCallbacks
  void OnPoolReady(http::StreamEncoder& encoder, Host& host) override {
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
  void OnPoolFailure(PoolFailureReason reason, absl::string_view details, Host& host) override {
    answered_ = true;
    handle_ = nullptr;
    host_ = &host;
    LOG(DEBUG) << "upstream " << host.address().ToString()
               << ": no stream: " << PoolFailureReasonName(reason) << " " << details;
    if (reason != PoolFailureReason::kOverflow) {
      // Nothing reached the host; as far as outlier detection goes, it failed us.
      RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
    }
    host_ = nullptr;
    CancelProbeIfUnreported();
    active_.reset();
    EndSpan(PoolFailureReasonName(reason));
    router_.OnUpstreamPoolFailure(reason, host);
  }

  // http::StreamDecoder (the response). The stream is settled before the router hears of the
  // end, so nothing the router does then can touch a finished stream.
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    if (withdrawn_) return;
    const int status = StatusOf(*headers);
    RecordResult(resilience::ClassifyHttpStatus(static_cast<uint32_t>(status)), elapsed());
    if (span_ != nullptr) span_->status_code = status;
    if (end_stream) ResponseEnded();
    router_.OnUpstreamHeaders(std::move(headers), end_stream, status);
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    if (withdrawn_) {
      data.Drain(data.length());
      return;
    }
    if (span_ != nullptr) span_->bytes_in += data.length();
    if (end_stream) ResponseEnded();
    router_.OnUpstreamData(data, end_stream);
  }
  void DecodeTrailers(http::HeaderMapPtr trailers) override {
    if (withdrawn_) return;
    ResponseEnded();
    router_.OnUpstreamTrailers(std::move(trailers));
  }

  // http::StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override {
    if (encoder_ == nullptr) return;
    encoder_ = nullptr;
    LOG(DEBUG) << "upstream stream reset: " << http::ResetReasonName(reason) << " " << details;
    RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
    host_ = nullptr;
    CancelProbeIfUnreported();
    active_.reset();
    EndSpan(http::ResetReasonName(reason));
    router_.OnUpstreamReset(reason);
  }
  void OnAboveWriteBufferHighWatermark() override {
    router_.OnUpstreamAboveWriteBufferHighWatermark();
  }
  void OnBelowWriteBufferLowWatermark() override {
    router_.OnUpstreamBelowWriteBufferLowWatermark();
  }

 private:
  // Both directions ended: the pool takes the stream back and the encoder is no longer ours.
  void MaybeDone() {
    if (encoder_ == nullptr || !request_complete_ || !response_complete_) return;
    encoder_ = nullptr;
    host_ = nullptr;
    active_.reset();
  }

  void ResponseEnded() {
    response_complete_ = true;
    EndSpan({});
    MaybeDone();
  }

  // The attempt is over: its span (if sampled) goes to the exporter. `error` says why it failed.
  void EndSpan(absl::string_view error) {
    if (span_ == nullptr) return;
    if (!error.empty()) {
      span_->error = true;
      span_->status_message.assign(error.data(), error.size());
    } else if (span_->status_code >= 500) {
      span_->error = true;
      span_->status_message = absl::StrCat("HTTP ", span_->status_code);
    }
    tracing::Tracer& tracer = *router_.context_.tracer;
    if (router_.AttemptMayBeFolded()) {
      // The only attempt so far: kept, exported only if another follows (BeginClientSpan).
      span_->end_ns = tracer.WallNanos();
      router_.info_.held_attempt_span = std::move(span_);
      return;
    }
    tracer.End(span_);
  }

  void CancelProbeIfUnreported() {
    if (!probe_ || result_recorded_) return;
    result_recorded_ = true;
    // The host may have left the set since; then the detector forgot it too.
    if (Host* host = cluster_.host_set().FindById(host_id_)) cluster_.CancelProbe(*host);
  }

  Router& router_;
  Cluster& cluster_;
  Host* host_;  // valid while the pool request or stream is alive
  const uint64_t host_id_;
  const bool probe_;
  std::optional<GaugeGuard> active_;
  Cancellable* handle_ = nullptr;
  http::StreamEncoder* encoder_ = nullptr;  // null once the stream is done or reset
  MonotonicTime start_{};
  bool answered_ = false;
  bool withdrawn_ = false;  // Reset() ran: decoder events are dropped
  bool request_complete_ = false;
  bool response_complete_ = false;
  bool result_recorded_ = false;
  tracing::SpanPtr span_;  // sampled requests only
};

// CONNECT's upstream: one TCP connection to one host of the route's cluster, owned by the router
// (no pool: a tunnel is never reused). Bytes go straight between it and the downstream stream.
// A tunnel may outlive its host's place in the cluster (a configuration update), so it holds a
// reference to the host, as the TCP proxy does.
class Router::TcpUpstream final : public net::ConnectionCallbacks {
 public:
  TcpUpstream(Router& router, Cluster& cluster, Host& host, bool probe)
      : router_(router),
        cluster_(cluster),
        host_(SharedHost(cluster, host)),
        host_id_(host.id()),
        probe_(probe),
        active_(router.stats_->rq_active),
        host_request_(host) {}

  ~TcpUpstream() override { Reset(); }

  void Start() {
    start_ = router_.context_.clock.Now();
    ++host_->stats().rq_total;
    connection_ = net::Connection::Connect(router_.context_.loop, host_->address(),
                                           cluster_.config().connect_timeout);
    connection_->SetCallbacks(this);
  }

  bool connected() const { return connected_; }

  // Bytes for the upstream; `end_stream` half-closes towards it (the answer may still come).
  void Write(net::Buffer& data, bool end_stream) {
    if (connection_ == nullptr) {
      data.Drain(data.length());
      return;
    }
    if (data.length() > 0) connection_->Write(data);
    if (end_stream) connection_->ShutdownWrite();
  }

  void ReadDisable(bool disable) {
    if (connection_ == nullptr) return;
    if (disable) {
      connection_->ReadDisable();
    } else {
      connection_->ReadEnable();
    }
  }

  // Lets the connection go (flushing what was written, as far as this loop turn allows); no
  // callback follows.
  void Reset() {
    ReportOnce(resilience::HostResult::kGatewayError, /*report=*/false);
    if (connection_ == nullptr) return;
    connection_->SetCallbacks(nullptr);
    connection_->Close(net::CloseMode::kFlush);
    router_.context_.loop.DeferDelete(std::move(connection_));
    host_request_.Release();
    active_.reset();
  }

  // net::ConnectionCallbacks
  void OnConnected() override {
    connected_ = true;
    ReportOnce(resilience::HostResult::kSuccess, /*report=*/true);
    router_.OnTcpUpstreamConnected();
  }
  void OnData(net::Buffer& data, bool end_stream) override {
    router_.OnUpstreamData(data, end_stream);
  }
  void OnWriteHighWatermark() override { router_.OnUpstreamAboveWriteBufferHighWatermark(); }
  void OnWriteLowWatermark() override { router_.OnUpstreamBelowWriteBufferLowWatermark(); }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    LOG(DEBUG) << "CONNECT upstream " << router_.info_.upstream_host->ToString()
               << " closed: " << net::CloseReasonName(reason) << " " << detail;
    connection_->SetCallbacks(nullptr);
    router_.context_.loop.DeferDelete(std::move(connection_));
    host_request_.Release();
    active_.reset();
    if (!connected_) {
      ++host_->stats().cx_connect_fail;
      ReportOnce(resilience::HostResult::kGatewayError, /*report=*/true);
      router_.OnTcpUpstreamConnectFailed();
      return;
    }
    if (reason == net::CloseReason::kEndOfStream) return;  // both directions ended normally
    router_.OnUpstreamReset(http::StreamResetReason::kConnectionTermination);
  }

 private:
  static HostSharedPtr SharedHost(Cluster& cluster, Host& host) {
    for (const HostSharedPtr& candidate : cluster.host_set().hosts()) {
      if (candidate.get() == &host) return candidate;
    }
    CHECK(false) << "the chosen host is not in its cluster";
    return nullptr;
  }

  // The connect outcome goes to outlier detection once; `report` false only settles a probe.
  void ReportOnce(resilience::HostResult result, bool report) {
    if (reported_) return;
    reported_ = true;
    // A host the cluster dropped meanwhile no longer feeds its outlier detector.
    Host* host = cluster_.host_set().FindById(host_id_);
    if (host == nullptr) return;
    if (report) {
      cluster_.RecordResult(*host, result, probe_, router_.context_.clock.Now() - start_);
    } else if (probe_) {
      cluster_.CancelProbe(*host);
    }
  }

  Router& router_;
  Cluster& cluster_;
  const HostSharedPtr host_;  // before host_request_, which points into it
  const uint64_t host_id_;
  const bool probe_;
  std::optional<GaugeGuard> active_;
  Host::RequestGuard host_request_;
  std::unique_ptr<net::Connection> connection_;
  MonotonicTime start_{};
  bool connected_ = false;
  bool reported_ = false;
};

Router::Router(stream::StreamContext& context, stream::FilterCallbacks& callbacks)
    : context_(context),
      callbacks_(callbacks),
      info_(callbacks.stream_info()),
      stats_(&NoStats()),
      timeout_timer_(context.loop, [this] { OnTimeout(); }) {}

Router::~Router() {
  // The attempt goes before the stream's route, which keeps its cluster alive.
  upstream_.reset();
  tcp_upstream_.reset();
}

bool Router::Route(http::HeaderMap& headers, bool end_stream) {
  request_headers_ = &headers;
  downstream_end_ = end_stream;
  grpc_ = callbacks_.grpc();
  connect_request_ = headers.Get(":method") == absl::string_view("CONNECT");
  upgrade_request_ = !connect_request_ && headers.Has("upgrade");
  const stream::Route& resolved = callbacks_.route();
  route_ = resolved.entry;
  if (connect_request_ && route_ != nullptr && route_->route_action() == nullptr) {
    // CONNECT goes to a cluster or nowhere.
    info_.route_name = route_->name;
    route_ = nullptr;
    Fail(ResponseFlag::kNoRoute, kConnectNotRoutable);
    return false;
  }
  if (route_ == nullptr) {
    Fail(ResponseFlag::kNoRoute, kNoRoute);
    return false;
  }
  info_.route_name = route_->name;
  if (route_->direct_response() != nullptr) {
    SendDirectResponse(*route_);
    return false;
  }
  if (route_->redirect() != nullptr) {
    SendRedirect(*route_);
    return false;
  }
  const RouteAction& action = *route_->route_action();
  info_.cluster_name = resolved.cluster_name;
  if (resolved.cluster == nullptr) {
    Fail(ResponseFlag::kNoClusterFound, kNoCluster);
    return false;
  }
  cluster_ = resolved.cluster.get();
  if (resolved.cluster_stats != nullptr) stats_ = resolved.cluster_stats;

  if (ApplyRequestHeaderMutations(*route_, headers)) info_.trace.traceparent_maybe_present = true;
  if (!action.prefix_rewrite.empty() && headers.Get(":path") != "*") {  // "*": not a path
    std::string path = RewritePath(*route_, headers.Get(":path").value_or("/"));
    headers.Set(":path", path);
  }
  if (!action.host_rewrite.empty()) headers.Set(":authority", action.host_rewrite);

  // The route timeout (retries and backoff included), shortened by what the caller has left.
  const CallerDeadline caller = ParseCallerDeadline(
      grpc_ ? headers.Get(kGrpcTimeoutHeader) : std::nullopt, headers.Get(kMeshletDeadlineHeader));
  if (caller.grpc_timeout_invalid) stats_->rq_deadline_header_invalid[0].Inc();
  if (caller.meshlet_deadline_invalid) stats_->rq_deadline_header_invalid[1].Inc();
  deadline_.emplace(context_.clock, action.timeout, caller.remaining);
  if (!deadline_->infinite()) {
    const Duration remaining = deadline_->Remaining();
    if (remaining <= Duration(0)) {
      stats_->rq_timeout.Inc();
      Fail(ResponseFlag::kUpstreamRequestTimeout, kTimeout);
      return false;
    }
    timeout_timer_.Enable(remaining);
  }

  Cluster& cluster = *cluster_;
  const resilience::RetryPolicyConfig& policy = action.retry_policy;
  if (policy.num_retries > 0 && !connect_request_ && !upgrade_request_) {
    const bool idempotent =
        resilience::IsIdempotentMethod(headers.Get(":method").value_or(absl::string_view()));
    retry_state_.emplace(policy, idempotent, context_.random, &*deadline_, &cluster.retry_budget(),
                         &cluster.thresholds());
    retry_state_->SetMaxBufferedBodyBytes(callbacks_.RetryBufferLimit());
    // gRPC calls are POSTs that may be retried on the gRPC statuses retry_on names.
    constexpr uint32_t kGrpcClasses =
        resilience::RetryOn::kGrpcCancelled | resilience::RetryOn::kGrpcDeadlineExceeded |
        resilience::RetryOn::kGrpcInternal | resilience::RetryOn::kGrpcResourceExhausted |
        resilience::RetryOn::kGrpcUnavailable;
    // An HTTP/2 upstream may refuse a stream after its body left (REFUSED_STREAM, or a GOAWAY
    // below its id): the request never reached the app, so even a POST is retried, which needs
    // its body.
    const bool refusable =
        cluster.UpstreamProtocol(info_.protocol) == http::Protocol::kHttp2 &&
        (policy.retry_on & (resilience::RetryOn::kRefusedStream | resilience::RetryOn::k5xx)) != 0;
    replay_buffering_ = idempotent || policy.retry_non_idempotent || refusable ||
                        (grpc_ && (policy.retry_on & kGrpcClasses) != 0);
  }
  return true;
}

stream::FilterStatus Router::DecodeHeaders(http::HeaderMap&, bool end_stream) {
  // The filters before the router may have held the request: the end may have come meanwhile.
  downstream_end_ = downstream_end_ || end_stream;
  if (!done_) StartFirstAttempt();
  return stream::FilterStatus::kStopIteration;
}

void Router::StartFirstAttempt() {
  // Only requests that go upstream fund the cluster's retry budget: not those a filter answered
  // (rate-limited, fault-aborted, breaker open), and never retries.
  cluster_->retry_budget().RecordRequest();
  StartAttempt();
}

void Router::SendDirectResponse(const RouteEntry& route) {
  const DirectResponseAction& direct = *route.direct_response();
  done_ = true;
  info_.response_code = static_cast<int>(direct.status);
  http::HeaderMap headers;
  headers.Add(":status", absl::StrCat(direct.status));
  if (!direct.body.empty()) {
    headers.Add("content-type", "text/plain");
    headers.Add("content-length", absl::StrCat(direct.body.size()));
  }
  ApplyResponseHeaderMutations(route, headers);
  if (direct.body.empty()) {
    callbacks_.EncodeHeaders(headers, /*end_stream=*/true);
    return;
  }
  callbacks_.EncodeHeaders(headers, /*end_stream=*/false);
  net::Buffer body(direct.body);
  callbacks_.EncodeData(body, /*end_stream=*/true);
}

void Router::SendRedirect(const RouteEntry& route) {
  const RedirectAction& redirect = *route.redirect();
  done_ = true;
  info_.response_code = static_cast<int>(redirect.response_code);
  http::HeaderMap headers;
  headers.Add(":status", absl::StrCat(redirect.response_code));
  headers.Add("location", RedirectLocation(redirect, *request_headers_));
  ApplyResponseHeaderMutations(route, headers);
  callbacks_.EncodeHeaders(headers, /*end_stream=*/true);
}

void Router::StartAttempt() {
  Cluster& cluster = *cluster_;
  LbContext lb_context;
  lb_context.hosts_to_avoid = absl::MakeConstSpan(tried_hosts_);
  const Cluster::HostSelection selection = cluster.ChooseHost(lb_context);
  if (selection.host == nullptr) {
    stats_->rq_no_healthy_host.Inc();
    Fail(ResponseFlag::kNoHealthyUpstream, kNoHealthyUpstream);
    return;
  }
  info_.upstream_host = selection.host->address();
  if (connect_request_) {
    StartConnectAttempt(selection);
    return;
  }
  if (upgrade_request_ && cluster.UpstreamProtocol(info_.protocol, selection.host,
                                                   /*upgrade=*/true) == http::Protocol::kHttp2) {
    // HTTP/2 has no Upgrade (RFC 8441's extended CONNECT is not supported): the request goes as
    // an ordinary one and the upstream answers it as such.
    request_headers_->Remove("upgrade");
    upgrade_request_ = false;
  }
  if (retry_state_.has_value()) {
    retry_state_->OnAttemptStarted(selection.host->id());
    if (std::find(tried_hosts_.begin(), tried_hosts_.end(), selection.host) == tried_hosts_.end()) {
      tried_hosts_.push_back(selection.host);
    }
  }
  PrepareAttempt();
  ConnPool& pool = cluster.PoolFor(*selection.host, info_.protocol, upgrade_request_);
  upstream_ = std::make_unique<UpstreamRequest>(*this, cluster, *selection.host, selection.probe);
  if (context_.tracer != nullptr && info_.trace.active()) BeginClientSpan(*selection.host);
  upstream_->Start(pool);
}

void Router::BeginClientSpan(const Host& host) {
  // Every attempt is its own client span and carries its own traceparent (a retry included).
  if (info_.held_attempt_span != nullptr) ExportHeldAttemptSpan();
  tracing::SpanPtr& span = upstream_->span();
  context_.tracer->BeginClient(*request_headers_, info_.trace, span);
  if (span != nullptr) DescribeClientSpan(*span, host);
}

void Router::ExportHeldAttemptSpan() {
  // A first attempt kept in case it stayed the only one is exported now that it is not, with the
  // text it was spared (the server span still names its host).
  const tracing::Span* const server = info_.server_span;
  FillClientSpanText(*info_.held_attempt_span, server != nullptr ? server->endpoint : "");
  context_.tracer->End(info_.held_attempt_span);
}

void Router::DescribeClientSpan(tracing::Span& span, const Host& host) {
  // The server span names the host of the last attempt: this one, so far.
  if (info_.server_span != nullptr) {
    tracing::SetText(info_.server_span->endpoint, host.address_text());
    // The server span starts at an exact reading (the connection manager's), the attempt at the
    // loop turn's shared one, which may be earlier: an attempt begun in the turn its request
    // arrived must not start before its parent.
    span.start_ns = std::max(span.start_ns, info_.server_span->start_ns);
  }
  if (!AttemptMayBeFolded()) FillClientSpanText(span, host.address_text());
}

bool Router::AttemptMayBeFolded() const {
  // Not for a B3 caller: the X-B3-ParentSpanId sent upstream names the server span's own id,
  // which a fold would replace (and B3 peers may share the client span's id for their own).
  const bool b3 = info_.trace.b3_single || info_.trace.b3_multi;
  return !context_.tracer->span_per_attempt() && !b3 && info_.trace.attempts == 1 &&
         info_.server_span != nullptr;
}

void Router::FillClientSpanText(tracing::Span& span, absl::string_view endpoint) const {
  const tracing::Span* const server = info_.server_span;
  // The request's method, as the server span has it (one lookup less).
  tracing::SetText(span.method, server != nullptr ? absl::string_view(server->method)
                                                  : request_headers_->Get(":method").value_or(""));
  span.route = info_.route_name;
  span.cluster = info_.cluster_name;
  tracing::SetText(span.endpoint, endpoint);
  // The attempt passes on the tracestate its server span received.
  if (server != nullptr) tracing::SetText(span.trace_state, server->trace_state);
}

void Router::StartConnectAttempt(const Cluster::HostSelection& selection) {
  Cluster& cluster = *cluster_;
  if (cluster.config().tls.enabled) {
    // Plaintext to a TLS upstream would leak what the configuration meant to protect.
    if (selection.probe) cluster.CancelProbe(*selection.host);
    stats_->rq_connect_fail.Inc();
    Fail(ResponseFlag::kUpstreamConnectFailure, kConnectToTlsCluster);
    return;
  }
  tcp_upstream_ = std::make_unique<TcpUpstream>(*this, cluster, *selection.host, selection.probe);
  tcp_upstream_->Start();
}

void Router::OnTcpUpstreamConnected() {
  if (done_) return;
  timeout_timer_.Disable();
  tunnel_ = true;
  response_started_ = true;
  stats_->RecordStatus(200);
  info_.response_code = 200;
  info_.tunnel = TunnelKind::kConnect;
  http::HeaderMap headers;
  headers.Add(":status", "200");
  callbacks_.EncodeHeaders(headers, /*end_stream=*/false);
  if (done_) return;
  // Bytes that came with the request (an HTTP/1 client waits for the 200; be lenient).
  if (!pending_body_.empty() || downstream_end_) {
    const bool end = downstream_end_;
    tcp_upstream_->Write(pending_body_, end);
    if (pending_body_over_limit_) {
      pending_body_over_limit_ = false;
      DisableDownstreamReads(false);
    }
  }
}

void Router::OnTcpUpstreamConnectFailed() {
  if (done_) return;
  stats_->rq_connect_fail.Inc();
  Fail(ResponseFlag::kUpstreamConnectFailure, kConnectFailure);
}

void Router::EndTunnel(net::Buffer& last_data) {
  if (upstream_ != nullptr) upstream_->EndTunnel();
  if (done_) return;
  Finish();
  callbacks_.EncodeData(last_data, /*end_stream=*/true);
}

void Router::OnUpstreamReady() {
  if (done_) return;
  const bool end_with_headers =
      downstream_end_ && pending_body_.empty() && request_trailers_ == nullptr;
  upstream_->EncodeHeaders(*request_headers_, end_with_headers);
  // Any encode may end the attempt at once (a refused HTTP/2 stream resets synchronously).
  if (end_with_headers || done_) return;
  if (!pending_body_.empty()) {
    SendBody(pending_body_, downstream_end_ && request_trailers_ == nullptr);
    if (done_) return;
  }
  if (request_trailers_ != nullptr) upstream_->EncodeTrailers(*request_trailers_);
  if (done_) return;
  if (pending_body_over_limit_) {
    pending_body_over_limit_ = false;
    DisableDownstreamReads(false);
  }
}

stream::FilterStatus Router::DecodeData(net::Buffer& data, bool end_stream) {
  DecodeBody(data, end_stream);
  return stream::FilterStatus::kStopIteration;
}

void Router::DecodeBody(net::Buffer& data, bool end_stream) {
  if (done_) {
    data.Drain(data.length());
    return;
  }
  downstream_end_ = end_stream;
  if (retry_state_.has_value() && !retry_state_->OnRequestBodyBytes(data.length()) &&
      replay_buffering_) {
    // Too long to replay: this request will not be retried (counted if a retry is wanted).
    replay_buffering_ = false;
    replay_body_.Clear();
  }
  if (tcp_upstream_ != nullptr && tcp_upstream_->connected()) {
    // CONNECT: a real half-close towards the upstream; the tunnel ends with the upstream's end.
    tcp_upstream_->Write(data, end_stream);
    return;
  }
  if (upstream_ != nullptr && upstream_->ready()) {
    if (tunnel_ && end_stream) {
      // The HTTP/1 upstream connection closes with our end, so nothing more will come back: the
      // end goes through EndTunnel, which lets go of the stream before that close.
      if (data.length() > 0) upstream_->EncodeData(data, /*end_stream=*/false);
      if (done_) return;
      net::Buffer empty;
      EndTunnel(empty);
      return;
    }
    SendBody(data, end_stream);
    return;
  }
  pending_body_.Move(data);
  if (!pending_body_over_limit_ && pending_body_.length() > callbacks_.DownstreamBufferLimit()) {
    pending_body_over_limit_ = true;
    DisableDownstreamReads(true);
  }
}

stream::FilterStatus Router::DecodeTrailers(http::HeaderMap& trailers) {
  if (done_) return stream::FilterStatus::kStopIteration;
  downstream_end_ = true;
  if (tcp_upstream_ != nullptr) {
    net::Buffer empty;
    tcp_upstream_->Write(empty, /*end_stream=*/true);
    return stream::FilterStatus::kStopIteration;
  }
  // Kept either way (the stream keeps them alive): a retry sends them again.
  request_trailers_ = &trailers;
  if (upstream_ != nullptr && upstream_->ready()) upstream_->EncodeTrailers(*request_trailers_);
  return stream::FilterStatus::kStopIteration;
}

void Router::OnUpstreamPoolFailure(PoolFailureReason reason, const Host& host) {
  if (done_) return;
  if (reason == PoolFailureReason::kOverflow) {
    stats_->rq_overflow.Inc();
    Fail(ResponseFlag::kUpstreamOverflow, kOverflow);
    return;
  }
  // Nothing reached the host (refused, timed out, waited too long, or the pool is draining).
  AttemptResult result{.kind = AttemptResult::Kind::kConnectFailure};
  // The app behind this sidecar is not listening (stopped, restarting): nothing on this
  // machine will answer the retry either.
  result.refused_by_only_local_host = reason == PoolFailureReason::kConnectRefused &&
                                      host.address().IsLoopback() &&
                                      cluster_->host_set().size() == 1;
  if (MaybeRetry(result)) return;
  stats_->rq_connect_fail.Inc();
  Fail(ResponseFlag::kUpstreamConnectFailure, kConnectFailure);
}

void Router::OnUpstreamHeaders(http::HeaderMapPtr headers, bool end_stream, int status) {
  if (done_) return;
  stats_->RecordStatus(status);
  if (retry_state_.has_value() && MaybeRetryResponse(*headers, end_stream, status)) return;
  if (attempt_timer_.has_value()) attempt_timer_->Disable();  // the per-try timeout is over
  response_started_ = true;
  info_.response_code = status;
  if (upgrade_request_ && status == 101 && !end_stream) {
    // The upstream switched protocols: bytes from now on, in both directions. The downstream
    // codec writes `Connection: upgrade` itself; the protocol name must survive.
    tunnel_ = true;
    info_.tunnel = TunnelKind::kUpgrade;
    timeout_timer_.Disable();
    std::optional<absl::string_view> upgrade = headers->Get("upgrade");
    std::string protocol(upgrade.value_or(""));
    headers->RemoveHopByHopHeaders();
    if (!protocol.empty()) headers->Add("upgrade", protocol);
  } else {
    headers->RemoveHopByHopHeaders();
  }
  ApplyResponseHeaderMutations(*route_, *headers);
  if (end_stream) {
    // Settle first: encoding the end may complete (and start tearing down) the stream.
    OnResponseComplete();
    callbacks_.EncodeHeaders(*headers, true);
    return;
  }
  callbacks_.EncodeHeaders(*headers, false);
}

void Router::OnUpstreamData(net::Buffer& data, bool end_stream) {
  if (done_) {
    data.Drain(data.length());
    return;
  }
  if (tunnel_ && end_stream) {
    // The upstream finished sending: the tunnel ends once its last bytes are out downstream.
    EndTunnel(data);
    return;
  }
  if (end_stream) OnResponseComplete();
  callbacks_.EncodeData(data, end_stream);
}

void Router::OnUpstreamTrailers(http::HeaderMapPtr trailers) {
  if (done_) return;
  OnResponseComplete();
  callbacks_.EncodeTrailers(*trailers);
}

void Router::OnResponseComplete() {
  // The response is whole; a request still being sent (an early response) is not needed any
  // more, and the upstream stream cannot end until it is, so reset it.
  if (upstream_ != nullptr && upstream_->ready() && !upstream_->request_complete()) {
    upstream_->Reset();
  }
  Finish();
}

void Router::OnUpstreamReset(http::StreamResetReason reason) {
  if (done_) return;
  if (!response_started_) {
    AttemptResult result;
    switch (reason) {
      case http::StreamResetReason::kConnectionFailure:
        result.kind = AttemptResult::Kind::kConnectFailure;
        break;
      case http::StreamResetReason::kRemoteRefusedStream:
        result.kind = AttemptResult::Kind::kRefusedStream;
        break;
      default:
        result.kind = AttemptResult::Kind::kResetBeforeHeaders;
        break;
    }
    if (MaybeRetry(result)) return;
  }
  if (reason == http::StreamResetReason::kConnectionFailure) {
    // The connection died before it could carry the request (e.g. a failed TLS handshake).
    stats_->rq_connect_fail.Inc();
    Fail(ResponseFlag::kUpstreamConnectFailure, kConnectFailure);
    return;
  }
  stats_->rq_reset.Inc();
  Fail(ResponseFlag::kUpstreamReset, kResetBeforeResponse);
}

void Router::OnTimeout() {
  if (done_) return;
  stats_->rq_timeout.Inc();
  if (upstream_ != nullptr) {
    upstream_->RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
  }
  Fail(ResponseFlag::kUpstreamRequestTimeout, kTimeout);
}

void Router::Fail(ResponseFlag flag, const LocalReply& reply) {
  info_.SetFlag(flag);
  const bool started = response_started_;
  Finish();
  if (started) {
    callbacks_.ResetDownstream();
    return;
  }
  callbacks_.SendLocalReply(reply);
}

void Router::Finish() {
  done_ = true;
  timeout_timer_.Disable();
  if (attempt_timer_.has_value()) attempt_timer_->Disable();
  // Gives back a concurrent-retry slot at once rather than when the stream is destroyed.
  if (retry_state_.has_value()) retry_state_->OnSucceeded();
  replay_body_.Clear();
  if (upstream_ != nullptr) upstream_->Reset();
  if (tcp_upstream_ != nullptr) tcp_upstream_->Reset();
  pending_body_.Clear();
  if (downstream_reads_disabled_ > 0) {
    // What this router paused it resumes, so a keep-alive connection reads the next request.
    while (downstream_reads_disabled_ > 0) DisableDownstreamReads(false);
  }
  pending_body_over_limit_ = false;
  upstream_above_high_watermark_ = false;
}

void Router::Abandon() { Finish(); }

event::Timer& Router::attempt_timer() {
  if (!attempt_timer_.has_value())
    attempt_timer_.emplace(context_.loop, [this] { OnAttemptTimer(); });
  return *attempt_timer_;
}

void Router::PrepareAttempt() {
  std::optional<Duration> attempt_timeout;
  if (retry_state_.has_value()) {
    attempt_timeout = retry_state_->NextAttemptTimeout();
  } else if (deadline_.has_value()) {
    attempt_timeout = deadline_->PerTryTimeout(std::nullopt);
  }
  // An Upgrade outlives the route timeout once it succeeds: no deadline to pass on.
  if (!attempt_timeout.has_value() || upgrade_request_) return;
  // The next hop gets no more time than this attempt has: grpc-timeout for gRPC, meshlet's own
  // header otherwise (and both rewritten when the caller sent them).
  http::HeaderMap& headers = *request_headers_;
  const Duration next_hop_budget = resilience::NextHopBudget(*attempt_timeout);
  if (grpc_ || headers.Has(kGrpcTimeoutHeader)) {
    headers.Set(kGrpcTimeoutHeader, FormatGrpcTimeout(next_hop_budget).view());
  }
  if (!grpc_ || headers.Has(kMeshletDeadlineHeader)) {
    headers.Set(kMeshletDeadlineHeader, FormatMeshletDeadline(next_hop_budget).view());
  }
  // A per-try timeout shorter than what the route timeout leaves gets its own timer.
  const Duration per_try = route_->route_action()->retry_policy.per_try_timeout;
  if (per_try > Duration::zero() && per_try < deadline_->Remaining()) {
    attempt_timer_backoff_ = false;
    attempt_timer().Enable(per_try);
  }
}

void Router::SendBody(net::Buffer& data, bool end_stream) {
  if (data.length() > 0) {
    body_sent_ = true;
    if (replay_buffering_) {
      // The one copy retries cost: bounded by RetryBufferLimit(), and only while a retry of this
      // request remains possible.
      data.ForEachSlice([this](absl::string_view slice) { replay_body_.Append(slice); });
    }
  }
  upstream_->EncodeData(data, end_stream);
}

void Router::OnAttemptTimer() {
  if (done_) return;
  if (attempt_timer_backoff_) {
    attempt_timer_backoff_ = false;
    StartAttempt();
    return;
  }
  // The per-try timeout: the attempt had no response headers in time.
  stats_->rq_per_try_timeout.Inc();
  info_.SetFlag(ResponseFlag::kUpstreamPerTryTimeout);
  if (upstream_ != nullptr) {
    upstream_->RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
  }
  if (MaybeRetry(AttemptResult{AttemptResult::Kind::kPerTryTimeout})) return;
  Fail(ResponseFlag::kUpstreamPerTryTimeout, kPerTryTimeout);
}

bool Router::MaybeRetryResponse(const http::HeaderMap& headers, bool end_stream, int status) {
  const resilience::RetryPolicyConfig& policy = route_->route_action()->retry_policy;
  // Only a trailers-only gRPC response carries its status in the headers.
  const std::optional<uint32_t> grpc_status =
      grpc_ && end_stream ? GrpcStatusOf(headers) : std::nullopt;
  const bool listed =
      std::find(policy.retriable_status_codes.begin(), policy.retriable_status_codes.end(),
                static_cast<uint32_t>(status)) != policy.retriable_status_codes.end();
  if (status < 500 && !listed && grpc_status.value_or(0) == 0) {
    // Final: the request succeeded as far as retries go.
    if (retry_state_->attempts() > 1) stats_->rq_retry_success.Inc();
    retry_state_->OnSucceeded();
    return false;
  }
  AttemptResult result;
  result.kind = AttemptResult::Kind::kResponse;
  result.http_status = static_cast<uint32_t>(status);
  result.grpc_status = grpc_status;
  result.retry_after = RetryAfterOf(headers);
  return MaybeRetry(result);
}

bool Router::MaybeRetry(const AttemptResult& result) {
  if (!retry_state_.has_value() || response_started_ || done_) return false;
  resilience::RetryDecision decision = retry_state_->OnAttemptFailed(result);
  if (decision.retry && body_sent_ && !replay_buffering_) {
    // The body that reached this attempt was not kept (a non-idempotent request, or one too long
    // to replay): it cannot be sent again.
    retry_state_->OnSucceeded();  // gives back the slot the decision took
    decision = resilience::RetryDecision::NoRetry(retry_state_->body_replayable()
                                                      ? NoRetryReason::kNonIdempotent
                                                      : NoRetryReason::kBodyTooLarge);
  }
  if (!decision.retry) {
    CountNoRetry(decision.reason);
    return false;
  }
  stats_->rq_retry[RetryReasonIndex(result.kind)].Inc();
  LOG(DEBUG) << "retrying after " << absl::FormatDuration(absl::FromChrono(decision.delay))
             << " (attempt " << retry_state_->attempts() << " failed)";
  // The failed attempt goes (its callbacks may be on the stack: destroyed after this turn).
  if (upstream_ != nullptr) {
    upstream_->Reset();
    context_.loop.DeferDelete(std::move(upstream_));
  }
  if (upstream_above_high_watermark_) {
    upstream_above_high_watermark_ = false;
    DisableDownstreamReads(false);
  }
  // The next attempt resends the kept body, then what arrived since.
  if (!replay_body_.empty()) {
    net::Buffer body;
    body.Move(replay_body_);
    body.Move(pending_body_);
    pending_body_ = std::move(body);
  }
  body_sent_ = false;
  attempt_timer_backoff_ = true;
  attempt_timer().Enable(decision.delay);
  return true;
}

void Router::CountNoRetry(NoRetryReason reason) {
  switch (reason) {
    case NoRetryReason::kNone:
    case NoRetryReason::kPolicyNoMatch:
    case NoRetryReason::kResponseStarted:
      return;
    case NoRetryReason::kAttemptsExhausted:
      stats_->rq_retry_skipped[0].Inc();
      break;
    case NoRetryReason::kNonIdempotent:
      stats_->rq_retry_skipped[1].Inc();
      break;
    case NoRetryReason::kBodyTooLarge:
      stats_->rq_retry_skipped[2].Inc();
      break;
    case NoRetryReason::kDeadlineTooClose:
      stats_->rq_retry_skipped[3].Inc();
      break;
    case NoRetryReason::kLocalConnectRefused:
      stats_->rq_retry_skipped[4].Inc();
      break;
    case NoRetryReason::kBudgetExhausted:
      stats_->rq_retry_overflow[0].Inc();
      break;
    case NoRetryReason::kConcurrentRetriesExceeded:
      stats_->rq_retry_overflow[1].Inc();
      break;
  }
  info_.SetFlag(ResponseFlag::kRetryLimitExceeded);
}

void Router::DisableDownstreamReads(bool disable) {
  if (disable) {
    ++downstream_reads_disabled_;
  } else {
    if (downstream_reads_disabled_ == 0) return;
    --downstream_reads_disabled_;
  }
  callbacks_.ReadDisableDownstream(disable);
}

void Router::OnUpstreamAboveWriteBufferHighWatermark() {
  if (done_ || upstream_above_high_watermark_) return;
  upstream_above_high_watermark_ = true;
  DisableDownstreamReads(true);
}

void Router::OnUpstreamBelowWriteBufferLowWatermark() {
  if (done_ || !upstream_above_high_watermark_) return;
  upstream_above_high_watermark_ = false;
  DisableDownstreamReads(false);
}

void Router::OnDownstreamAboveWriteBufferHighWatermark() {
  if (downstream_above_high_watermark_) return;
  downstream_above_high_watermark_ = true;
  if (!done_ && upstream_ != nullptr) upstream_->ReadDisable(true);
  if (!done_ && tcp_upstream_ != nullptr) tcp_upstream_->ReadDisable(true);
}

void Router::OnDownstreamBelowWriteBufferLowWatermark() {
  if (!downstream_above_high_watermark_) return;
  downstream_above_high_watermark_ = false;
  if (!done_ && upstream_ != nullptr) upstream_->ReadDisable(false);
  if (!done_ && tcp_upstream_ != nullptr) tcp_upstream_->ReadDisable(false);
}

}  // namespace meshlet::sidecar::router
