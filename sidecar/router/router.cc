#include "sidecar/router/router.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/net/connection.h"
#include "sidecar/resilience/deadline.h"
#include "sidecar/resilience/outlier_detector.h"

namespace meshlet::sidecar::router {
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
constexpr LocalReply kOverflow{503, StatusCode::kUnavailable, "upstream overloaded", true};
constexpr LocalReply kResetBeforeResponse{502, StatusCode::kUnavailable,
                                          "upstream reset before response"};
constexpr LocalReply kTimeout{504, StatusCode::kDeadlineExceeded, "upstream request timeout"};
constexpr LocalReply kConnectNotRoutable{404, StatusCode::kUnimplemented,
                                         "no cluster route for CONNECT"};
constexpr LocalReply kConnectToTlsCluster{503, StatusCode::kUnavailable,
                                          "CONNECT to a TLS cluster is not supported"};

}  // namespace

void SendLocalReply(RouterCallbacks& callbacks, bool grpc, const LocalReply& reply) {
  callbacks.stream_info().response_code = grpc ? 200 : reply.http_status;
  if (grpc) {
    http::HeaderMap headers = http::grpc::LocalReplyHeaders(reply.grpc_status, reply.message);
    if (reply.overloaded) headers.Add("x-meshlet-overloaded", "true");
    callbacks.EncodeHeaders(headers, /*end_stream=*/true);
    return;
  }
  net::Buffer body;
  body.Append(reply.message);
  body.Append("\n");
  http::HeaderMap headers;
  headers.Add(":status", absl::StrCat(reply.http_status));
  headers.Add("content-type", "text/plain");
  headers.Add("content-length", absl::StrCat(body.length()));
  if (reply.overloaded) headers.Add("x-meshlet-overloaded", "true");
  callbacks.EncodeHeaders(headers, /*end_stream=*/false);
  callbacks.EncodeData(body, /*end_stream=*/true);
}

// One attempt at one upstream host: the pool request, then the upstream stream. It reports to the
// router and keeps nothing of the request but what the stream needs, so a retry is another
// UpstreamRequest over the same router state.
class Router::UpstreamRequest final : public ConnPoolCallbacks,
                                      public http::StreamDecoder,
                                      public http::StreamCallbacks {
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
  }

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
    router_.OnUpstreamPoolFailure(reason);
  }

  // http::StreamDecoder (the response). The stream is settled before the router hears of the
  // end, so nothing the router does then can touch a finished stream.
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    RecordResult(resilience::ClassifyHttpStatus(static_cast<uint32_t>(StatusOf(*headers))),
                 elapsed());
    if (end_stream) ResponseEnded();
    router_.OnUpstreamHeaders(std::move(headers), end_stream);
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    if (end_stream) ResponseEnded();
    router_.OnUpstreamData(data, end_stream);
  }
  void DecodeTrailers(http::HeaderMapPtr trailers) override {
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
    MaybeDone();
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
  bool request_complete_ = false;
  bool response_complete_ = false;
  bool result_recorded_ = false;
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

Router::Router(WorkerContext& context, std::shared_ptr<const RouteTable> route_table,
               RouterCallbacks& callbacks)
    : context_(context),
      route_table_(std::move(route_table)),
      callbacks_(callbacks),
      info_(callbacks.stream_info()),
      stats_(&NoStats()),
      timeout_timer_(context.loop, [this] { OnTimeout(); }) {}

Router::~Router() {
  // The attempt goes before the cluster reference that keeps its cluster alive.
  upstream_.reset();
  tcp_upstream_.reset();
}

void Router::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  request_headers_ = std::move(headers);
  downstream_end_ = end_stream;
  grpc_ = http::grpc::IsGrpcRequest(*request_headers_);
  connect_request_ = request_headers_->Get(":method") == absl::string_view("CONNECT");
  upgrade_request_ = !connect_request_ && request_headers_->Has("upgrade");
  RouteRequest();
}

void Router::RouteRequest() {
  if (connect_request_) {
    // CONNECT has no path: it is routed by :authority, as if its path were "/".
    request_headers_->Set(":path", "/");
    route_ = route_table_ != nullptr ? route_table_->Match(*request_headers_) : nullptr;
    request_headers_->Remove(":path");
    if (route_ != nullptr && route_->route_action() == nullptr) {
      info_.route_name = route_->name;
      route_ = nullptr;
      Fail(ResponseFlag::kNoRoute, kConnectNotRoutable);
      return;
    }
  } else {
    route_ = route_table_ != nullptr ? route_table_->Match(*request_headers_) : nullptr;
  }
  if (route_ == nullptr) {
    Fail(ResponseFlag::kNoRoute, kNoRoute);
    return;
  }
  info_.route_name = route_->name;
  if (route_->direct_response() != nullptr) {
    SendDirectResponse(*route_);
    return;
  }
  if (route_->redirect() != nullptr) {
    SendRedirect(*route_);
    return;
  }
  const RouteAction& action = *route_->route_action();
  const std::string& cluster_name = PickCluster(action, context_.random);
  info_.cluster_name = cluster_name;
  cluster_ = context_.clusters.Get(cluster_name);
  if (cluster_.cluster == nullptr) {
    Fail(ResponseFlag::kNoClusterFound, kNoCluster);
    return;
  }
  if (cluster_.stats != nullptr) stats_ = cluster_.stats;

  http::HeaderMap& headers = *request_headers_;
  ApplyRequestHeaderMutations(*route_, headers);
  if (!action.prefix_rewrite.empty()) {
    std::string path = RewritePath(*route_, headers.Get(":path").value_or("/"));
    headers.Set(":path", path);
  }
  if (!action.host_rewrite.empty()) headers.Set(":authority", action.host_rewrite);

  // The route timeout, shortened by what the caller says it has left.
  const resilience::CallerDeadline caller = resilience::ParseCallerDeadline(
      grpc_ ? headers.Get(resilience::kGrpcTimeoutHeader) : std::nullopt,
      headers.Get(resilience::kMeshletDeadlineHeader));
  const resilience::Deadline deadline(context_.clock, action.timeout, caller.remaining);
  if (!deadline.infinite()) {
    const Duration remaining = deadline.Remaining();
    if (remaining <= Duration(0)) {
      stats_->rq_timeout.Inc();
      Fail(ResponseFlag::kUpstreamRequestTimeout, kTimeout);
      return;
    }
    timeout_timer_.Enable(remaining);
    // The next hop gets no more time than we have.
    if (caller.remaining.has_value()) {
      if (headers.Has(resilience::kGrpcTimeoutHeader)) {
        headers.Set(resilience::kGrpcTimeoutHeader,
                    resilience::FormatGrpcTimeout(remaining).view());
      }
      if (headers.Has(resilience::kMeshletDeadlineHeader)) {
        headers.Set(resilience::kMeshletDeadlineHeader,
                    resilience::FormatMeshletDeadline(remaining).view());
      }
    }
  }
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
  Cluster& cluster = *cluster_.cluster;
  const Cluster::HostSelection selection = cluster.ChooseHost();
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
  if (upgrade_request_ && cluster.UpstreamProtocol(info_.protocol) == http::Protocol::kHttp2) {
    // HTTP/2 has no Upgrade (RFC 8441's extended CONNECT is not supported): the request goes as
    // an ordinary one and the upstream answers it as such.
    request_headers_->Remove("upgrade");
    upgrade_request_ = false;
  }
  ConnPool& pool = cluster.PoolFor(*selection.host, info_.protocol);
  upstream_ = std::make_unique<UpstreamRequest>(*this, cluster, *selection.host, selection.probe);
  upstream_->Start(pool);
}

void Router::StartConnectAttempt(const Cluster::HostSelection& selection) {
  Cluster& cluster = *cluster_.cluster;
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
    upstream_->EncodeData(pending_body_, downstream_end_ && request_trailers_ == nullptr);
    if (done_) return;
  }
  if (request_trailers_ != nullptr) upstream_->EncodeTrailers(*request_trailers_);
  if (done_) return;
  if (pending_body_over_limit_) {
    pending_body_over_limit_ = false;
    DisableDownstreamReads(false);
  }
}

void Router::DecodeData(net::Buffer& data, bool end_stream) {
  if (done_) {
    data.Drain(data.length());
    return;
  }
  downstream_end_ = end_stream;
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
    upstream_->EncodeData(data, end_stream);
    return;
  }
  pending_body_.Move(data);
  if (!pending_body_over_limit_ && pending_body_.length() > callbacks_.DownstreamBufferLimit()) {
    pending_body_over_limit_ = true;
    DisableDownstreamReads(true);
  }
}

void Router::DecodeTrailers(http::HeaderMapPtr trailers) {
  if (done_) return;
  downstream_end_ = true;
  if (tcp_upstream_ != nullptr) {
    net::Buffer empty;
    tcp_upstream_->Write(empty, /*end_stream=*/true);
    return;
  }
  if (upstream_ != nullptr && upstream_->ready()) {
    upstream_->EncodeTrailers(*trailers);
    return;
  }
  request_trailers_ = std::move(trailers);
}

void Router::OnUpstreamPoolFailure(PoolFailureReason reason) {
  if (done_) return;
  if (reason == PoolFailureReason::kOverflow) {
    stats_->rq_overflow.Inc();
    Fail(ResponseFlag::kUpstreamOverflow, kOverflow);
    return;
  }
  stats_->rq_connect_fail.Inc();
  Fail(ResponseFlag::kUpstreamConnectFailure, kConnectFailure);
}

void Router::OnUpstreamHeaders(http::HeaderMapPtr headers, bool end_stream) {
  if (done_) return;
  response_started_ = true;
  const int status = StatusOf(*headers);
  stats_->RecordStatus(status);
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
  SendLocalReply(callbacks_, grpc_, reply);
}

void Router::Finish() {
  done_ = true;
  timeout_timer_.Disable();
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
