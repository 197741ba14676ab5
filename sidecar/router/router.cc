// Router (router.h): one request's upstream side, from the route's cluster to the response,
// CONNECT and Upgrade tunnels included. Retries and their decisions are in router_retry.cc,
// mirroring in mirror.cc, an attempt's stream in upstream_request.cc; what stays here is one state
// machine whose handlers share its fields, so it stays one file.

#include "sidecar/router/router.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "sidecar/resilience/deadline.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/route/cors.h"
#include "sidecar/route/session.h"
#include "sidecar/router/cors_stats.h"
#include "sidecar/router/deadline_headers.h"
#include "sidecar/router/mirror.h"
#include "sidecar/router/tcp_upstream.h"
#include "sidecar/router/upstream_request.h"
#include "sidecar/stream/decision_ring.h"

namespace meshlet::sidecar::router {

using cluster::Cluster;
using cluster::ConnPool;
using cluster::Host;
using cluster::LbContext;
using cluster::PoolFailureReason;
using cluster::UpstreamStats;
using route::DirectResponseAction;
using route::RedirectAction;
using route::RouteAction;
using route::RouteEntry;
using stream::LocalReply;
using stream::ResponseFlag;
using stream::TunnelKind;

namespace {

using http::grpc::StatusCode;

// Handles that count nothing, for clusters without registered stats.
const UpstreamStats& NoStats() {
  static const UpstreamStats* const stats = new UpstreamStats();
  return *stats;
}

constexpr LocalReply kNoRoute{404, StatusCode::kUnimplemented, "no route"};
constexpr LocalReply kNoCluster{503, StatusCode::kUnavailable, "route cluster not found"};
// The share of backends the control plane could not resolve (route::kMissingBackendCluster), as
// Gateway API asks: 500.
constexpr LocalReply kMissingBackend{500, StatusCode::kInternal, "route backend does not exist"};
constexpr LocalReply kNoHealthyUpstream{503, StatusCode::kUnavailable, "no healthy upstream"};
constexpr LocalReply kConnectFailure{503, StatusCode::kUnavailable, "upstream connect error"};
constexpr LocalReply kTlsFailure{503, StatusCode::kUnavailable, "upstream TLS handshake failed"};
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

int64_t ToMillis(Duration d) {
  return std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

// How long a mirror copy may take when its route has no timeout.
constexpr Duration kMirrorTimeoutWithoutRouteTimeout = std::chrono::seconds(15);

}  // namespace

struct Router::MirrorCopy {
  // One reserved slot of the worker's Mirrors each.
  absl::InlinedVector<cluster::ClusterRef, 2> targets;
  http::HeaderMapPtr headers;
  net::Buffer body;
  http::HeaderMapPtr trailers;
  uint64_t body_limit = 0;
};

Router::Router(stream::StreamContext& context, stream::FilterCallbacks& callbacks, Mirrors* mirrors)
    : context_(context),
      callbacks_(callbacks),
      info_(callbacks.stream_info()),
      stats_(&NoStats()),
      timeout_timer_(context.loop, [this] { OnTimeout(); }),
      mirrors_(mirrors) {}

Router::~Router() {
  // The attempt goes before the stream's route, which keeps its cluster alive.
  upstream_.reset();
  tcp_upstream_.reset();
  if (mirror_ != nullptr) DropMirrors(cluster::MirrorSkip::kIncomplete);
}

stream::FilterStatus Router::Route(http::HeaderMap& headers, bool end_stream) {
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
    return stream::FilterStatus::kStopIteration;
  }
  if (route_ == nullptr) {
    Fail(ResponseFlag::kNoRoute, kNoRoute);
    return stream::FilterStatus::kStopIteration;
  }
  info_.route_name = route_->name;
  stream::DecisionRecord& decision = info_.decision;
  decision.policy_route = route_->source;
  if (resolved.virtual_host != nullptr) {
    decision.gateway_listener = resolved.virtual_host->extras->gateway_listener;
  }
  decision.route_rule = route_->source_rule;
  decision.route_match = route_->source_match;
  if (const route::CorsPolicy* cors = route_->extras->cors.get(); cors != nullptr) [[unlikely]] {
    if (CheckCors(*cors, headers)) return stream::FilterStatus::kStopIteration;
  }
  if (route_->direct_response() != nullptr) {
    SendDirectResponse(*route_);
    return stream::FilterStatus::kStopIteration;
  }
  if (route_->redirect() != nullptr) {
    SendRedirect(*route_);
    return stream::FilterStatus::kStopIteration;
  }
  const RouteAction& action = *route_->route_action();
  info_.cluster_name = resolved.cluster_name;
  if (resolved.cluster == nullptr) {
    Fail(ResponseFlag::kNoClusterFound,
         resolved.cluster_name == route::kMissingBackendCluster ? kMissingBackend : kNoCluster);
    return stream::FilterStatus::kStopIteration;
  }
  cluster_ = resolved.cluster.get();
  if (resolved.cluster_stats != nullptr) stats_ = resolved.cluster_stats;
  decision.subset = cluster_->config().subset;
  decision.policy_traffic = cluster_->config().traffic_policy;
  if (action.session != nullptr && !connect_request_) session_ = action.session.get();

  backend_headers_ = route::BackendHeaders(action, resolved.cluster_name);
  if (ApplyRequestHeaderMutations(*route_, headers, backend_headers_)) {
    info_.trace.traceparent_maybe_present = true;
  }
  const route::RouteActionExtras& extras = action.extras.get();
  if ((!extras.prefix_rewrite.empty() || !extras.path_rewrite.empty()) &&
      headers.Get(":path") != "*") {  // "*": not a path
    std::string path = RewritePath(*route_, headers.Get(":path").value_or("/"));
    headers.Set(":path", path);
  }
  if (!extras.host_rewrite.empty()) headers.Set(":authority", extras.host_rewrite);

  // The route timeout (retries and backoff included), shortened by what the caller has left.
  const CallerDeadline caller = ParseCallerDeadline(
      grpc_ ? headers.Get(kGrpcTimeoutHeader) : std::nullopt, headers.Get(kMeshletDeadlineHeader));
  if (caller.grpc_timeout_invalid) stats_->rq_deadline_header_invalid[0].Inc();
  if (caller.meshlet_deadline_invalid) stats_->rq_deadline_header_invalid[1].Inc();
  deadline_.emplace(context_.clock, action.timeout, caller.remaining);
  if (action.retry_policy.per_try_timeout > Duration::zero()) {
    decision.timeout_per_try_ms = ToMillis(action.retry_policy.per_try_timeout);
    decision.policy_per_try = action.per_try_timeout_source;
  }
  if (!deadline_->infinite()) {
    const Duration remaining = deadline_->Remaining();
    decision.timeout_request_ms = ToMillis(remaining);
    decision.timeout_from_caller = deadline_->source() == resilience::Deadline::Source::kCaller;
    if (action.timeout > Duration::zero()) decision.policy_timeout = action.timeout_source;
    if (remaining <= Duration(0)) {
      stats_->rq_timeout.Inc();
      Fail(ResponseFlag::kUpstreamRequestTimeout, kTimeout);
      return stream::FilterStatus::kStopIteration;
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
  return stream::FilterStatus::kContinue;
}

void Router::Forward(bool end_stream) {
  // The filters before the router may have held the request: the end may have come meanwhile.
  downstream_end_ = downstream_end_ || end_stream;
  if (done_) return;
  // Only requests that go upstream fund the cluster's retry budget: not those a filter answered
  // (rate-limited, fault-aborted, breaker open), and never retries.
  cluster_->retry_budget().RecordRequest();
  if (!route_->route_action()->extras->mirrors.empty() && !connect_request_ && !upgrade_request_) {
    StartMirrors();
  }
  StartAttempt();
}

void Router::StartMirrors() {
  const RouteAction& action = *route_->route_action();
  std::unique_ptr<MirrorCopy> copy;
  for (const route::RequestMirrorPolicy& policy : action.extras->mirrors) {
    if (policy.fraction < 1.0 && !context_.random.Bernoulli(policy.fraction)) continue;
    cluster::ClusterRef target =
        mirrors_ != nullptr ? mirrors_->clusters().Get(policy.cluster) : cluster::ClusterRef{};
    if (target.cluster == nullptr) {
      // The worker lacks it (the configuration names only clusters it has).
      stats_->rq_mirror_skipped[static_cast<size_t>(cluster::MirrorSkip::kNoCluster)].Inc();
      continue;
    }
    if (target.stats == nullptr) target.stats = &NoStats();
    if (!mirrors_->Reserve()) {
      target.stats->rq_mirror_skipped[static_cast<size_t>(cluster::MirrorSkip::kInFlightLimit)]
          .Inc();
      continue;
    }
    if (copy == nullptr) copy = std::make_unique<MirrorCopy>();
    copy->targets.push_back(std::move(target));
  }
  if (copy == nullptr) return;
  copy->headers = std::make_unique<http::HeaderMap>(*request_headers_);
  copy->body_limit = callbacks_.RetryBufferLimit();
  mirror_ = std::move(copy);
  // Body that came while the route-level filters held the request.
  if (!pending_body_.empty()) CopyBodyForMirrors(pending_body_);
  if (mirror_ != nullptr && downstream_end_) SendMirrors();
}

void Router::CopyBodyForMirrors(const net::Buffer& data) {
  MirrorCopy& copy = *mirror_;
  if (copy.body.length() + data.length() > copy.body_limit) {
    DropMirrors(cluster::MirrorSkip::kBodyTooLarge);
    return;
  }
  // The one copy a mirror costs, bounded like the replay buffer.
  data.ForEachSlice([&copy](absl::string_view slice) { copy.body.Append(slice); });
}

void Router::SendMirrors() {
  std::unique_ptr<MirrorCopy> copy = std::move(mirror_);
  const Duration route_timeout = route_->route_action()->timeout;
  const Duration timeout =
      route_timeout > Duration::zero() ? route_timeout : kMirrorTimeoutWithoutRouteTimeout;
  const size_t count = copy->targets.size();
  for (size_t i = 0; i < count; ++i) {
    const bool last = i + 1 == count;
    http::HeaderMapPtr headers =
        last ? std::move(copy->headers) : std::make_unique<http::HeaderMap>(*copy->headers);
    http::HeaderMapPtr trailers;
    if (copy->trailers != nullptr) {
      trailers =
          last ? std::move(copy->trailers) : std::make_unique<http::HeaderMap>(*copy->trailers);
    }
    net::Buffer body;
    if (last) {
      body.Move(copy->body);
    } else {
      copy->body.ForEachSlice([&body](absl::string_view slice) { body.Append(slice); });
    }
    mirrors_->Send(std::move(copy->targets[i]), std::move(headers), body, std::move(trailers),
                   info_.protocol, timeout);
  }
}

void Router::DropMirrors(cluster::MirrorSkip reason) {
  std::unique_ptr<MirrorCopy> copy = std::move(mirror_);
  for (const cluster::ClusterRef& target : copy->targets) {
    target.stats->rq_mirror_skipped[static_cast<size_t>(reason)].Inc();
    mirrors_->Release();
  }
}

bool Router::CheckCors(const route::CorsPolicy& policy, const http::HeaderMap& headers) {
  const std::optional<absl::string_view> origin = headers.Get("origin");
  if (!origin.has_value()) return false;  // not a cross-origin request
  const bool allowed = route::CorsOriginAllowed(policy, *origin);
  const CorsStats* stats = context_.cors;
  if (!route::IsPreflight(headers)) {
    if (stats != nullptr) (allowed ? stats->allowed : stats->refused).Inc();
    if (allowed) cors_ = &policy;
    return false;
  }
  if (stats != nullptr) (allowed ? stats->preflight_allowed : stats->preflight_refused).Inc();
  done_ = true;
  info_.response_code = allowed ? 200 : 403;
  http::HeaderMap response;
  response.Add(":status", allowed ? "200" : "403");
  if (allowed) route::AddPreflightHeaders(policy, headers, *origin, response);
  ApplyResponseHeaderMutations(*route_, response);
  callbacks_.EncodeHeaders(response, /*end_stream=*/true);
  return true;
}

void Router::AddCorsHeaders(http::HeaderMap& response_headers) {
  // A request header change of the route may have removed it since.
  if (std::optional<absl::string_view> origin = request_headers_->Get("origin")) {
    route::AddResponseHeaders(*cors_, *origin, response_headers);
  }
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
  if (cors_ != nullptr) AddCorsHeaders(headers);
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
  headers.Add("location", RedirectLocation(redirect, *request_headers_, &route.match));
  ApplyResponseHeaderMutations(route, headers);
  if (cors_ != nullptr) AddCorsHeaders(headers);
  callbacks_.EncodeHeaders(headers, /*end_stream=*/true);
}

void Router::StartAttempt() {
  Cluster& cluster = *cluster_;
  LbContext lb_context;
  lb_context.hosts_to_avoid = absl::MakeConstSpan(tried_hosts_);
  // Sticky sessions steer the first attempt only; a retry balances (and re-issues the token).
  const bool first_sticky_attempt = session_ != nullptr && !session_looked_up_;
  if (first_sticky_attempt) {
    session_looked_up_ = true;
    const route::SessionLookup& lookup = callbacks_.route().session;
    if (lookup.result == route::SessionLookup::Result::kFound) {
      lb_context.preferred_host = cluster.host_set().FindBySessionKey(lookup.host_key);
    }
  }
  const Cluster::HostSelection selection = cluster.ChooseHost(lb_context);
  if (first_sticky_attempt) CountSession(selection.host, lb_context.preferred_host);
  if (selection.host == nullptr) {
    stats_->rq_no_healthy_host.Inc();
    Fail(ResponseFlag::kNoHealthyUpstream, kNoHealthyUpstream);
    return;
  }
  info_.upstream_host = selection.host->address();
  info_.upstream_locality = absl::string_view();
  if (selection.locality.has_value()) {
    const size_t decision = static_cast<size_t>(*selection.locality);
    info_.upstream_locality = cluster::kLocalityDecisionNames[decision];
    stats_->rq_locality[decision].Inc();
  }
  if (!info_.decision.BeginAttempt(selection.host->address(), context_.clock.Now()) &&
      context_.decisions != nullptr) {
    context_.decisions->CountDroppedAttempt();
  }
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
  const Duration per_try_timeout = PrepareAttempt();
  ConnPool& pool = cluster.PoolFor(*selection.host, info_.protocol, upgrade_request_);
  upstream_ = std::make_unique<UpstreamRequest>(*this, cluster, *selection.host, selection.probe);
  if (context_.tracer != nullptr && info_.trace.active()) {
    upstream_->BeginClientSpan(*selection.host);
  }
  upstream_->Start(pool, per_try_timeout);
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
  EndAttempt(stream::AttemptOutcome::kResponse, 200);
  info_.decision.SetNext(stream::AttemptNext::kDone);
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
  EndAttempt(stream::AttemptOutcome::kConnectFailure);
  info_.decision.SetNext(stream::AttemptNext::kNoRetry,
                         static_cast<uint8_t>(stream::NoRetryCause::kAttemptsExhausted));
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
  SetDeadlineHeaders();
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
  if (mirror_ != nullptr) {
    CopyBodyForMirrors(data);
    if (mirror_ != nullptr && end_stream) SendMirrors();
  }
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
  if (mirror_ != nullptr) {
    mirror_->trailers = std::make_unique<http::HeaderMap>(trailers);
    SendMirrors();
  }
  if (upstream_ != nullptr && upstream_->ready()) upstream_->EncodeTrailers(*request_trailers_);
  return stream::FilterStatus::kStopIteration;
}

void Router::OnUpstreamPoolFailure(PoolFailureReason reason, const Host& host) {
  if (done_) return;
  if (reason == PoolFailureReason::kOverflow) {
    EndAttempt(stream::AttemptOutcome::kOverflow);
    info_.decision.SetNext(stream::AttemptNext::kNoRetry,
                           static_cast<uint8_t>(stream::NoRetryCause::kBreaker));
    stats_->rq_overflow.Inc();
    Fail(ResponseFlag::kUpstreamOverflow, kOverflow);
    return;
  }
  // Nothing reached the host (refused, timed out, waited too long, or the pool is draining).
  info_.decision.SetConnectFailure(
      reason == PoolFailureReason::kConnectRefused ? stream::ConnectFailure::kRefused
      : reason == PoolFailureReason::kTimeout      ? stream::ConnectFailure::kTimeout
      : reason == PoolFailureReason::kRemoteClose  ? stream::ConnectFailure::kClosed
                                                   : stream::ConnectFailure::kOther);
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
  // The answer (a failure not retried says why already).
  EndAttempt(stream::AttemptOutcome::kResponse, status);
  info_.decision.SetNext(stream::AttemptNext::kDone);
  upstream_->DisablePerTryTimeout();  // the per-try timeout is over
  response_started_ = true;
  info_.response_code = status;
  // Another proxy's own error (a 5xx, or a gRPC trailers-only reply, naming it in the error
  // attribution field): this hop fails the request too, and explains it (tracer.h error spans).
  if ((status >= 500 || (grpc_ && end_stream)) && !context_.error_header.empty() &&
      headers->Has(context_.error_header)) [[unlikely]] {
    info_.upstream_error_attributed = true;
  }
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
  ApplyResponseHeaderMutations(*route_, *headers, backend_headers_);
  if (cors_ != nullptr) [[unlikely]]
    AddCorsHeaders(*headers);
  if (session_ != nullptr && !tunnel_) AddSessionToken(*headers);
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

void Router::CountSession(const Host* chosen, const Host* preferred) {
  using Result = route::SessionLookup::Result;
  cluster::SessionResult result = cluster::SessionResult::kMiss;
  switch (callbacks_.route().session.result) {
    case Result::kNone:
      return;
    case Result::kFound:
      if (chosen != nullptr && chosen == preferred) {
        session_host_ = chosen;
        result = cluster::SessionResult::kHit;
      } else {
        result = cluster::SessionResult::kMiss;
      }
      break;
    case Result::kMiss:
      result = cluster::SessionResult::kMiss;
      break;
    case Result::kExpired:
      result = cluster::SessionResult::kExpired;
      break;
    case Result::kInvalid:
      result = cluster::SessionResult::kInvalid;
      break;
  }
  stats_->rq_session[static_cast<size_t>(result)].Inc();
}

void Router::AddSessionToken(http::HeaderMap& response_headers) {
  const Host* host = upstream_ != nullptr ? upstream_->host() : nullptr;
  if (host == nullptr) return;
  const bool same_session = host == session_host_;
  // The client holds a token for this host already; only an idle timeout asks for a new one.
  if (same_session && session_->idle_timeout <= Duration::zero()) return;
  const absl::Time now = context_.clock.WallNow();
  const int64_t now_s = absl::ToUnixSeconds(now);
  route::SessionToken token;
  token.cluster_key = cluster::SessionKey(cluster_->name());
  token.host_key = host->session_key();
  token.created_s = same_session ? callbacks_.route().session.created_s : now_s;
  token.last_used_s = now_s;
  route::AddSessionToken(*session_, token, now, response_headers);
}

void Router::OnResponseComplete() {
  // The response is whole; a request still being sent (an early response) is not needed any
  // more, and the upstream stream cannot end until it is, so reset it.
  if (upstream_ != nullptr && upstream_->ready() && !upstream_->request_complete()) {
    upstream_->Reset();
  }
  Finish();
}

void Router::OnUpstreamReset(http::StreamResetReason reason, bool tls_failure,
                             absl::string_view details) {
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
    if (!tls_failure) {
      Fail(ResponseFlag::kUpstreamConnectFailure, kConnectFailure);
      return;
    }
    // The pool's details: "transport_error: transport: <what the handshake refused>".
    absl::ConsumePrefix(&details, net::CloseReasonName(net::CloseReason::kTransportError));
    absl::ConsumePrefix(&details, ": ");
    absl::ConsumePrefix(&details, "transport: ");
    tls_failure_detail_.assign(details.data(), details.size());
    LocalReply reply = kTlsFailure;
    reply.detail = tls_failure_detail_;
    Fail(ResponseFlag::kUpstreamConnectFailure, reply);
    return;
  }
  stats_->rq_reset.Inc();
  Fail(ResponseFlag::kUpstreamReset, kResetBeforeResponse);
}

void Router::OnTimeout() {
  if (done_) return;
  EndAttempt(stream::AttemptOutcome::kRouteTimeout);
  info_.decision.SetNext(stream::AttemptNext::kNoRetry,
                         static_cast<uint8_t>(stream::NoRetryCause::kDeadline));
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
  if (backoff_timer_.has_value()) backoff_timer_->Disable();
  // Gives back a concurrent-retry slot at once rather than when the stream is destroyed.
  if (retry_state_.has_value()) retry_state_->OnSucceeded();
  replay_body_.Clear();
  // Copies still waiting for the rest of the request will not get it.
  if (mirror_ != nullptr) DropMirrors(cluster::MirrorSkip::kIncomplete);
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

void Router::Abandon() {
  // An attempt still running ends with the request.
  EndAttempt(stream::AttemptOutcome::kCancelled);
  info_.decision.SetNext(stream::AttemptNext::kNoRetry,
                         static_cast<uint8_t>(stream::NoRetryCause::kCancelled));
  Finish();
}

void Router::EndAttempt(stream::AttemptOutcome outcome, int status) {
  // Most calls find the attempt ended already (Abandon after the response): no clock read then.
  const stream::AttemptRecord* current = info_.decision.current();
  if (current == nullptr || current->outcome != stream::AttemptOutcome::kPending) return;
  info_.decision.EndAttempt(outcome, status, context_.clock.Now());
}

Duration Router::PrepareAttempt() {
  std::optional<Duration> attempt_timeout;
  if (retry_state_.has_value()) {
    attempt_timeout = retry_state_->NextAttemptTimeout();
  } else if (deadline_.has_value()) {
    attempt_timeout = deadline_->PerTryTimeout(std::nullopt);
  }
  // An Upgrade outlives the route timeout once it succeeds: no deadline to pass on.
  if (!attempt_timeout.has_value() || upgrade_request_) {
    attempt_budget_.reset();
    return Duration::zero();
  }
  attempt_budget_ = *attempt_timeout;
  attempt_turn_ = context_.loop.turn();
  // A per-try timeout shorter than what the route timeout leaves gets its own timer.
  const Duration per_try = route_->route_action()->retry_policy.per_try_timeout;
  if (per_try > Duration::zero() && per_try < deadline_->Remaining()) return per_try;
  return Duration::zero();
}

void Router::SetDeadlineHeaders() {
  if (!attempt_budget_.has_value()) return;
  // The next hop gets no more time than this attempt has left as its headers leave: the time
  // spent connecting (a TLS handshake) or waiting in the pool is gone too, and must not eat the
  // margin NextHopBudget keeps. A stream ready in the turn the attempt began (a pooled
  // connection) took no time by the turn's clock (ADR 0027): no reading then. grpc-timeout for
  // gRPC, meshlet's own header otherwise (and both rewritten when the caller sent them).
  Duration left = *attempt_budget_;
  if (context_.loop.turn() != attempt_turn_) left -= upstream_->elapsed();
  const Duration next_hop_budget = resilience::NextHopBudget(left);
  http::HeaderMap& headers = *request_headers_;
  if (grpc_ || headers.Has(kGrpcTimeoutHeader)) {
    headers.Set(kGrpcTimeoutHeader, FormatGrpcTimeout(next_hop_budget).view());
  }
  if (!grpc_ || headers.Has(kMeshletDeadlineHeader)) {
    headers.Set(kMeshletDeadlineHeader, FormatMeshletDeadline(next_hop_budget).view());
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

void Router::OnPerTryTimeout() {
  if (done_) return;
  // The attempt had no response headers in time.
  stats_->rq_per_try_timeout.Inc();
  info_.SetFlag(ResponseFlag::kUpstreamPerTryTimeout);
  if (upstream_ != nullptr) {
    upstream_->RecordResult(resilience::HostResult::kGatewayError, std::nullopt);
  }
  if (MaybeRetry(AttemptResult{AttemptResult::Kind::kPerTryTimeout})) return;
  Fail(ResponseFlag::kUpstreamPerTryTimeout, kPerTryTimeout);
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
