// ActiveStream (active_stream.h): one request from its decoded headers to its last byte. The
// request preparation, the filter chain's callbacks and the end-of-stream records (stats, golden
// metrics, access log, span) all read and write the same per-stream fields on the hot path, and
// the access-log writer is inlined into the stream's end; so it stays one file.

#include "sidecar/listener/active_stream.h"

#include <array>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/net/connection.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/route/route_stats.h"
#include "sidecar/route/route_table.h"
#include "sidecar/stream/decision_ring.h"
#include "sidecar/stream/tap.h"
#include "sidecar/tracing/tracer.h"
#include "xds/protocol.h"

namespace meshlet::sidecar::listener {
namespace {

using tracing::kRequestIdHeader;
constexpr absl::string_view kForwardedForHeader = "x-forwarded-for";
constexpr absl::string_view kForwardedProtoHeader = "x-forwarded-proto";
constexpr absl::string_view kPeerIdentityHeader = "x-meshlet-peer-identity";

// Two lowercase hex digits for each byte value.
constexpr std::array<char, 512> kHexPairs = [] {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> pairs{};
  for (int b = 0; b < 256; ++b) {
    pairs[2 * b] = kHex[b >> 4];
    pairs[2 * b + 1] = kHex[b & 0xf];
  }
  return pairs;
}();

// A random (version 4) UUID, formatted into `out` (36 bytes) without allocating: a byte at a time
// from a table of digit pairs (a loop over the 32 digits cost about 680 instructions a request).
void FormatRequestId(Random& random, char out[36]) {
  uint64_t hi = random.Next();
  uint64_t lo = random.Next();
  hi = (hi & ~0xf000ULL) | 0x4000ULL;              // version 4
  lo = (lo & ~(0xc0ULL << 56)) | (0x80ULL << 56);  // RFC 4122 variant
  char* p = out;
  for (int i = 0; i < 16; ++i) {
    const uint64_t word = i < 8 ? hi : lo;
    const size_t byte = (word >> (56 - 8 * (i % 8))) & 0xff;
    std::memcpy(p, &kHexPairs[2 * byte], 2);
    p += 2;
    if (i == 3 || i == 5 || i == 7 || i == 9) *p++ = '-';  // 8-4-4-4-12 digits
  }
}

bool HasConnectionToken(const http::HeaderMap& headers, absl::string_view token) {
  for (absl::string_view element : absl::StrSplit(headers.GetJoined("connection"), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(element), token)) return true;
  }
  return false;
}

}  // namespace

ActiveStream::ActiveStream(HttpConnectionManager& hcm, http::StreamEncoder& encoder)
    : hcm_(hcm),
      encoder_(&encoder),
      active_(hcm.stats_.downstream_rq_active),
      jwt_(*this, hcm.policy_),
      authorization_(*this, hcm.policy_),
      listener_rate_limit_(filters::RateLimitFilter::Scope::kListener, *this, hcm.policy_,
                           hcm.context_.clock),
      fault_(*this, hcm.context_.loop, hcm.context_.random),
      route_rate_limit_(filters::RateLimitFilter::Scope::kRoute, *this, hcm.policy_,
                        hcm.context_.clock),
      breaker_(*this),
      router_(hcm.context_, *this, hcm.context_.mirrors) {
  route_.table = hcm.CurrentRouteTable();
  // A connection to a Service address is bound to that Service port's virtual host.
  route_.virtual_host = hcm.destination_virtual_host_;
  // The codecs create the stream once its headers are decoded. Its start and end are read
  // exactly, not from the turn's shared reading: a request answered within the turn (a direct
  // response, a local reply) would measure zero.
  info_.start = hcm.context_.clock.ExactNow();
  info_.protocol = hcm.codec_->protocol();
  if (hcm.context_.access_log != nullptr) info_.start_wall = hcm.context_.clock.WallNow();
  last_activity_ = hcm.context_.loop.Now();
  ++overload_->active_requests;
}

inline void ActiveStream::Touch() { last_activity_ = hcm_.context_.loop.Now(); }

template <typename Call>
inline stream::FilterStatus ActiveStream::ForFilter(size_t index, Call&& call) {
  switch (index) {
    case 0:
      return call(jwt_);
    case 1:
      return call(authorization_);
    case 2:
      return call(listener_rate_limit_);
    case 3:
      return call(fault_);
    case 4:
      return call(route_rate_limit_);
    case 5:
      return call(breaker_);
    default:
      return call(router_);
  }
}

template <typename EncodeLast>
inline void ActiveStream::Complete(EncodeLast&& encode_last) {
  http::StreamEncoder* encoder = encoder_;
  Finish();
  encoder_ = encoder;
  encode_last();
  encoder_ = nullptr;
}

void ActiveStream::OnConnectionClosed() {
  if (done_) return;
  encoder_->GetStream().RemoveCallbacks(*this);
  Terminate(http::StreamResetReason::kConnectionTermination);
}

void ActiveStream::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  if (done_) return;
  Touch();
  connect_ = headers->Get(":method") == absl::string_view("CONNECT");
  if (connect_ && (!hcm_.http_options_.allow_connect || hcm_.h1_codec_ == nullptr)) {
    // The HTTP/1 codec refuses CONNECT itself unless it is allowed; HTTP/2 CONNECT is never
    // tunnelled (docs/operations.md).
    hcm_.stats_.downstream_rq_connect_refused.Inc();
    SendLocalReply({403, http::grpc::StatusCode::kPermissionDenied, "CONNECT is not allowed"});
    return;
  }
  grpc_ = http::grpc::IsGrpcRequest(*headers);
  request_headers_ = std::move(headers);
  request_end_ = end_stream;
  if (const auto reason = overload_->ShouldShed(); reason != stream::OverloadState::Reason::kNone)
      [[unlikely]] {
    Shed(reason);
    return;
  }
  if (hcm_.options_.refuse) {
    Refuse();
    return;
  }
  // The virtual host depends only on the destination or the host, which preparing the request
  // leaves alone: the listener-level filters (authorization's destination port) and the route
  // share one match.
  if (route_.table != nullptr && route_.virtual_host == nullptr) {
    route_.virtual_host = route_.table->MatchVirtualHost(route::RequestHost(*request_headers_));
  }
  NoteHostUse();
  if (hcm_.host_lookup_timeout_.has_value() && route_.table != nullptr && !connect_ &&
      (route_.virtual_host == nullptr || route_.virtual_host == route_.table->catch_all()))
      [[unlikely]] {
    if (StartHostLookup()) return;
  }
  StartBodyClock();
  DecodeHeadersFrom(0);
}

// A discovered host (a ServiceRoute's) stays subscribed while requests use it (ADR 0086).
inline void ActiveStream::NoteHostUse() {
  if (route_.virtual_host != nullptr && route_.virtual_host->usage != nullptr) {
    route_.virtual_host->usage->Touch(hcm_.context_.loop.Now());
  }
}

inline void ActiveStream::StartBodyClock() {
  if (!request_end_ && !connect_ && hcm_.http_options_.request_body_timeout.count() > 0) {
    body_clock_ = true;
    body_start_ = hcm_.context_.loop.Now();
    hcm_.ArmStreamTimer(hcm_.http_options_.request_body_timeout);
  }
}

bool ActiveStream::StartHostLookup() {
  OnDemandWaiters* waiters = hcm_.context_.on_demand;
  if (waiters == nullptr) return false;
  const std::optional<std::string> key =
      xds::LookupKeyForHost(route::RequestHost(*request_headers_));
  if (!key.has_value()) return false;  // no host, or not one a Service could have
  lookup_started_ = hcm_.context_.clock.ExactNow();
  OnDemandWaiters::Started started = waiters->Wait(*key, *this, *hcm_.host_lookup_timeout_);
  if (!started.handle.waiting()) {
    // Known missing, no control plane, or too many waiting: answered as without on_demand.
    info_.decision.discovery = config::LookupOutcomeName(started.outcome);
    info_.decision.discovery_wait_us = 0;
    return false;
  }
  lookup_ = std::move(started.handle);
  holding_ = true;
  resume_at_ = 0;
  return true;
}

void ActiveStream::OnLookupDone(config::LookupOutcome outcome) {
  info_.decision.discovery = config::LookupOutcomeName(outcome);
  info_.decision.discovery_wait_us =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                hcm_.context_.clock.ExactNow() - lookup_started_)
                                .count());
  if (done_) return;
  if (outcome == config::LookupOutcome::kFound) {
    // The worker applied the snapshot carrying the answer before the answer: its table serves
    // the host now.
    route_.table = hcm_.CurrentRouteTable();
    route_.virtual_host =
        route_.table != nullptr
            ? route_.table->MatchVirtualHost(route::RequestHost(*request_headers_))
            : nullptr;
    NoteHostUse();
  }
  StartBodyClock();
  ContinueDecoding();
}

inline void ActiveStream::RememberRequestLine(const http::HeaderMap& headers) {
  if (hcm_.context_.access_log == nullptr) return;
  const absl::string_view method = headers.Get(":method").value_or("");
  method_.assign(method.data(), method.size());
  const absl::string_view path = headers.Get(":path").value_or("");
  path_.assign(path.data(), path.size());
}

inline void ActiveStream::Shed(stream::OverloadState::Reason reason) {
  const bool memory = reason == stream::OverloadState::Reason::kMemory;
  hcm_.stats_.downstream_rq_overload_shed[memory ? 0 : 1].Inc();
  RememberRequestLine(*request_headers_);
  info_.SetFlag(stream::ResponseFlag::kOverloaded);
  // Which limit, and the setting behind it, for `meshctl explain`.
  stream::DecisionRecord& decision = info_.decision;
  decision.shed = memory ? stream::ShedReason::kMemory : stream::ShedReason::kActiveRequests;
  decision.shed_limit = memory ? overload_->max_rss_mb : overload_->max_active_requests_setting;
  decision.shed_worker_limit = memory ? 0 : overload_->max_active_requests;
  SendLocalReply({.http_status = 503,
                  .grpc_status = http::grpc::StatusCode::kUnavailable,
                  .message = "overloaded",
                  .overloaded = true});
}

inline void ActiveStream::Refuse() {
  RememberRequestLine(*request_headers_);
  info_.SetFlag(stream::ResponseFlag::kNotInRegistry);
  info_.decision.policy_destination = hcm_.refusal_source_;
  SendLocalReply({502, http::grpc::StatusCode::kUnavailable, hcm_.refusal_message_});
}

void ActiveStream::ContinueDecoding() {
  if (done_ || !holding_) return;
  holding_ = false;
  DecodeHeadersFrom(resume_at_);
  if (done_ || holding_) return;
  if (held_body_.length() > 0 || held_end_) {
    DecodeDataFrom(held_body_, held_end_);
    if (done_) return;
  }
  ReleaseHeldReads();
  if (request_trailers_ != nullptr) DecodeTrailersFrom(*request_trailers_);
}

void ActiveStream::SendLocalReply(const stream::LocalReply& reply) {
  if (done_) return;
  if (router_.response_started()) {
    ResetDownstream();
    return;
  }
  // Every filter stops first (the router gives back its pauses and disarms its timers).
  EndFilters();
  ReleaseHeldReads();
  http::HeaderMap headers;
  net::Buffer body;
  const bool has_body = stream::BuildLocalReply(reply, grpc_, headers, body);
  router_.AddCorsHeadersToLocalReply(headers);
  info_.response_code = stream::LocalReplyStatus(reply, grpc_);
  info_.local_reply_reason = reply.message;
  if (!hcm_.context_.error_header.empty() && !hcm_.options_.mesh_edge) {
    headers.Add(
        hcm_.context_.error_header,
        stream::ErrorAttribution(hcm_.context_.node_name, info_.response_flags, reply.message));
    // The request id too, which `meshctl explain` takes.
    const absl::string_view id = RequestIdForReply();
    if (!id.empty()) headers.Add(kRequestIdHeader, id);
  }
  // One write for the whole reply, even from a timer (outside the batch a read callback opens):
  // a caller's sidecar reading its head alone could meet its own deadline before its end, and
  // would then have to reset a response it had started forwarding (docs/adr/0077).
  net::Connection::WriteBatch batch(hcm_.context_.loop);
  EncodeHeaders(headers, /*end_stream=*/!has_body);
  if (has_body) EncodeData(body, /*end_stream=*/true);
}

absl::string_view ActiveStream::RequestIdForReply() {
  if (request_headers_ == nullptr) return {};
  if (const std::optional<absl::string_view> id = request_headers_->Get(kRequestIdHeader)) {
    return *id;
  }
  // Refused before the request was prepared (authorization, a listener rate limit, shed, an
  // unknown destination): it gets its id now, for the reply, the span and the log alike.
  if (!hcm_.http_options_.generate_request_id) return {};
  char id[36];
  FormatRequestId(hcm_.context_.random, id);
  request_headers_->Add(kRequestIdHeader, absl::string_view(id, sizeof(id)));
  if (hcm_.context_.access_log != nullptr) request_id_.assign(id, sizeof(id));
  return request_headers_->Get(kRequestIdHeader).value_or("");
}

Duration ActiveStream::IdleTimeLeft(MonotonicTime now) const {
  if (hcm_.http_options_.stream_idle_timeout.count() <= 0) return Duration::max();
  return hcm_.http_options_.stream_idle_timeout - (now - last_activity_);
}

Duration ActiveStream::BodyTimeLeft(MonotonicTime now) const {
  if (!body_clock_) return Duration::max();
  const config::HttpOptionsConfig& http = hcm_.http_options_;
  Duration elapsed = now - body_start_ - body_paused_;
  if (read_disables_ > 0) elapsed -= now - paused_since_;
  Duration allowed = http.request_body_timeout;
  if (http.min_request_body_bytes_per_second > 0) {
    allowed += std::chrono::duration_cast<Duration>(std::chrono::duration<double>(
        static_cast<double>(info_.bytes_received) / http.min_request_body_bytes_per_second));
  }
  return allowed - elapsed;
}

void ActiveStream::OnBodyTimeout() {
  if (done_) return;
  body_clock_ = false;
  hcm_.stats_.downstream_rq_body_timeout.Inc();
  EndFilters();
  SendLocalReply({408, http::grpc::StatusCode::kDeadlineExceeded, "request body too slow"});
}

void ActiveStream::OnIdleTimeout() {
  if (done_) return;
  info_.SetFlag(stream::ResponseFlag::kStreamIdleTimeout);
  EndFilters();
  SendLocalReply({408, http::grpc::StatusCode::kDeadlineExceeded, "stream idle timeout"});
}

void ActiveStream::DecodeData(net::Buffer& data, bool end_stream) {
  if (done_) {
    data.Drain(data.length());
    return;
  }
  Touch();
  info_.bytes_received += data.length();
  if (end_stream) body_clock_ = false;
  if (holding_) {
    Hold(data, end_stream);
    return;
  }
  DecodeDataFrom(data, end_stream);
}

void ActiveStream::DecodeTrailers(http::HeaderMapPtr trailers) {
  if (done_) return;
  Touch();
  body_clock_ = false;
  request_trailers_ = std::move(trailers);
  if (!holding_) DecodeTrailersFrom(*request_trailers_);
}

void ActiveStream::OnResetStream(http::StreamResetReason reason, absl::string_view details) {
  if (done_) return;
  LOG(DEBUG) << "downstream stream reset: " << http::ResetReasonName(reason) << " " << details;
  Terminate(reason);
}

void ActiveStream::OnAboveWriteBufferHighWatermark() {
  if (!done_) router_.OnDownstreamAboveWriteBufferHighWatermark();
}

void ActiveStream::OnBelowWriteBufferLowWatermark() {
  if (!done_) router_.OnDownstreamBelowWriteBufferLowWatermark();
}

void ActiveStream::EncodeHeaders(http::HeaderMap& headers, bool end_stream) {
  if (done_) return;
  Touch();
  // Outside the mesh nobody learns the proxies' names: a hop behind this one may have
  // attributed its error.
  if (hcm_.options_.mesh_edge && !hcm_.context_.error_header.empty()) [[unlikely]] {
    headers.Remove(hcm_.context_.error_header);
  }
  if (hcm_.context_.draining && !hcm_.draining_) hcm_.BeginDrain();
  if (hcm_.context_.tap != nullptr) [[unlikely]]
    NoteTapResponse(headers);
  if (info_.tunnel != stream::TunnelKind::kNone && !tunnel_active_.has_value()) {
    hcm_.stats_.downstream_tunnels[info_.tunnel == stream::TunnelKind::kUpgrade ? 0 : 1].Inc();
    tunnel_active_.emplace(hcm_.stats_.downstream_tunnels_active);
  }
  if (end_stream) {
    NoteGrpcStatus(headers);  // a trailers-only response
    Complete([&] { encoder_->EncodeHeaders(headers, true); });
    return;
  }
  encoder_->EncodeHeaders(headers, false);
}

inline void ActiveStream::NoteGrpcStatus(const http::HeaderMap& fields) {
  const std::optional<absl::string_view> status = fields.Get("grpc-status");
  info_.grpc_failure = status.has_value() && *status != "0";
}

void ActiveStream::EncodeData(net::Buffer& data, bool end_stream) {
  if (done_) {
    data.Drain(data.length());
    return;
  }
  Touch();
  info_.bytes_sent += data.length();
  if (end_stream) {
    Complete([&] { encoder_->EncodeData(data, true); });
    return;
  }
  encoder_->EncodeData(data, false);
}

void ActiveStream::EncodeTrailers(const http::HeaderMap& trailers) {
  if (done_) return;
  NoteGrpcStatus(trailers);
  Complete([&] { encoder_->EncodeTrailers(trailers); });
}

void ActiveStream::ResetDownstream() {
  if (done_) return;
  // Detached first: the reset reports back to the callbacks, and this end is already known.
  http::Stream& stream = encoder_->GetStream();
  stream.RemoveCallbacks(*this);
  info_.SetFlag(stream::ResponseFlag::kLocalReset);
  reset_reason_ = http::StreamResetReason::kLocalReset;
  Finish();
  stream.ResetStream(http::StreamResetReason::kLocalReset);
}

void ActiveStream::ReadDisableDownstream(bool disable) {
  if (!done_) SetReadDisabled(disable);
}

inline void ActiveStream::SetReadDisabled(bool disable) {
  const MonotonicTime now = hcm_.context_.loop.Now();
  if (disable) {
    if (read_disables_++ == 0) paused_since_ = now;
  } else if (read_disables_ > 0 && --read_disables_ == 0) {
    body_paused_ += now - paused_since_;
  }
  encoder_->GetStream().ReadDisable(disable);
}

uint32_t ActiveStream::DownstreamBufferLimit() const {
  return done_ ? 0 : encoder_->GetStream().BufferLimit();
}

uint64_t ActiveStream::RetryBufferLimit() const {
  return hcm_.http_options_.max_request_body_buffer_bytes;
}

inline void ActiveStream::DecodeHeadersFrom(size_t index) {
  for (; index < kChainLength; ++index) {
    if (index == kFirstRouteFilter && !BeginRouteStage()) return;
    const stream::FilterStatus status = ForFilter(
        index, [&](auto& filter) { return filter.DecodeHeaders(*request_headers_, request_end_); });
    if (done_) return;
    if (status == stream::FilterStatus::kStopIteration && index + 1 < kChainLength) {
      // A filter holds the request (a fault delay) until it calls ContinueDecoding().
      holding_ = true;
      resume_at_ = index + 1;
      return;
    }
  }
}

inline bool ActiveStream::BeginRouteStage() {
  PrepareRequest(*request_headers_);
  if (hcm_.context_.tracer != nullptr) BeginServerSpan(*request_headers_);
  ResolveRoute(*request_headers_);
  // The router's route stage (router.h): it answers what needs no upstream, or routes the request
  // for the route-level filters.
  return router_.DecodeHeaders(*request_headers_, request_end_) == stream::FilterStatus::kContinue;
}

inline void ActiveStream::ResolveRoute(http::HeaderMap& headers) {
  if (route_.virtual_host == nullptr) return;
  if (connect_) {
    // CONNECT has no path: it is routed by :authority, as if its path were "/".
    headers.Set(":path", "/");
    route_.entry = route::RouteTable::MatchRoute(*route_.virtual_host, headers);
    headers.Remove(":path");
  } else {
    route_.entry = route::RouteTable::MatchRoute(*route_.virtual_host, headers);
  }
  const route::RouteAction* action =
      route_.entry != nullptr ? route_.entry->route_action() : nullptr;
  if (action == nullptr) return;
  const std::string* cluster_name = nullptr;
  if (action->session != nullptr) {
    // Sticky sessions: a valid token keeps the request on its cluster, whatever the weights say.
    route_.session = route::LookupSession(*action, headers, hcm_.context_.clock.WallNow());
    if (route_.session.result == route::SessionLookup::Result::kFound) {
      cluster_name = &route::ClusterAt(*action, route_.session.cluster_index);
    }
  }
  if (cluster_name == nullptr) cluster_name = &route::PickCluster(*action, hcm_.context_.random);
  route_.cluster_name = *cluster_name;
  cluster::ClusterRef cluster = hcm_.context_.clusters.Get(*cluster_name);
  route_.cluster = std::move(cluster.cluster);
  route_.cluster_stats = cluster.stats;
}

inline void ActiveStream::DecodeDataFrom(net::Buffer& data, bool end_stream) {
  for (size_t index = 0; index < kChainLength; ++index) {
    const stream::FilterStatus status =
        ForFilter(index, [&](auto& filter) { return filter.DecodeData(data, end_stream); });
    if (status == stream::FilterStatus::kStopIteration || done_) return;
  }
}

inline void ActiveStream::DecodeTrailersFrom(http::HeaderMap& trailers) {
  for (size_t index = 0; index < kChainLength; ++index) {
    const stream::FilterStatus status =
        ForFilter(index, [&](auto& filter) { return filter.DecodeTrailers(trailers); });
    if (status == stream::FilterStatus::kStopIteration || done_) return;
  }
}

inline void ActiveStream::Hold(net::Buffer& data, bool end_stream) {
  held_body_.Move(data);
  held_end_ = held_end_ || end_stream;
  if (!held_reads_disabled_ && held_body_.length() > DownstreamBufferLimit()) {
    held_reads_disabled_ = true;
    SetReadDisabled(true);
  }
}

inline void ActiveStream::ReleaseHeldReads() {
  if (!held_reads_disabled_) return;
  held_reads_disabled_ = false;
  if (!done_) SetReadDisabled(false);
}

inline void ActiveStream::EndFilters() {
  if (filters_ended_) return;
  filters_ended_ = true;
  for (size_t index = 0; index < kChainLength; ++index) {
    ForFilter(index, [](auto& filter) {
      filter.OnStreamEnd();
      return stream::FilterStatus::kContinue;
    });
  }
}

inline void ActiveStream::PrepareRequest(http::HeaderMap& headers) {
  const config::HttpOptionsConfig& options = hcm_.http_options_;
  // An HTTP/1.1 Upgrade request (WebSocket) keeps its Upgrade for the upstream, whose HTTP/1
  // codec writes `Connection: upgrade` again; every other hop-by-hop header goes.
  std::string upgrade;
  if (hcm_.h1_codec_ != nullptr && info_.protocol == http::Protocol::kHttp11 &&
      headers.Has("upgrade") && HasConnectionToken(headers, "upgrade") &&
      headers.Get(":method") != absl::string_view("CONNECT")) {
    upgrade = headers.GetJoined("upgrade");
  }
  headers.RemoveHopByHopHeaders();
  if (!upgrade.empty()) headers.Add("upgrade", upgrade);
  if (options.generate_request_id && !headers.Has(kRequestIdHeader)) {
    char id[36];
    FormatRequestId(hcm_.context_.random, id);
    headers.Add(kRequestIdHeader, absl::string_view(id, sizeof(id)));
  }
  const bool tls = hcm_.options_.tls;
  if (options.use_remote_address) {
    const net::Address& peer = hcm_.connection_->remote_address();
    std::string peer_ip = peer.is_ip() ? peer.ip() : "unix";
    std::string forwarded = headers.GetJoined(kForwardedForHeader);
    headers.Set(kForwardedForHeader,
                forwarded.empty() ? peer_ip : absl::StrCat(forwarded, ", ", peer_ip));
    // At the edge the proxy knows the scheme; an inner hop keeps what the edge said.
    headers.Set(kForwardedProtoHeader, tls ? "https" : "http");
  } else if (!headers.Has(kForwardedProtoHeader)) {
    headers.Add(kForwardedProtoHeader, tls ? "https" : "http");
  }
  // Only the proxy vouches for a peer's identity.
  headers.Remove(kPeerIdentityHeader);
  if (!hcm_.options_.peer_identity.empty()) {
    headers.Add(kPeerIdentityHeader, hcm_.options_.peer_identity);
  }
  RememberRequestLine(headers);
  if (hcm_.context_.access_log != nullptr) {
    const absl::string_view id = headers.Get(kRequestIdHeader).value_or("");
    request_id_.assign(id.data(), id.size());
  }
}

inline void ActiveStream::BeginServerSpan(http::HeaderMap& headers) {
  hcm_.context_.tracer->BeginServer(headers, info_.trace, server_span_, info_.start);
  if (server_span_ != nullptr) DescribeServerSpan(headers);
}

void ActiveStream::BeginErrorSpan() {
  // A single attempt's client span id: the parent its upstream saw, which the span takes.
  const stream::DecisionRecord& decision = info_.decision;
  const uint64_t single_attempt = decision.attempt_count == 1 ? decision.attempts[0].span_id : 0;
  server_span_ = hcm_.context_.tracer->BeginErrorSpan(request_headers_.get(), info_.trace,
                                                      info_.start, single_attempt);
  if (server_span_ != nullptr && request_headers_ != nullptr) {
    DescribeServerSpan(*request_headers_);
  }
}

void ActiveStream::DescribeServerSpan(const http::HeaderMap& headers) {
  info_.server_span = server_span_.get();
  tracing::Span& span = *server_span_;
  // One pass for both (a Get each would walk the headers twice).
  absl::string_view method, path, authority;
  headers.ForEachPseudo([&](const http::HeaderView header) {
    if (header.name == ":method" && method.data() == nullptr) method = header.value;
    if (header.name == ":path" && path.data() == nullptr) path = header.value;
    if (header.name == ":authority" && authority.data() == nullptr) authority = header.value;
  });
  if (authority.data() == nullptr) authority = headers.Get("host").value_or("");
  // Bounded, without the query (memchr: absl's find is an out-of-line call before it).
  path = path.substr(0, tracing::Span::kMaxPathBytes);
  if (const void* query = path.empty() ? nullptr : std::memchr(path.data(), '?', path.size())) {
    path = path.substr(0, static_cast<size_t>(static_cast<const char*>(query) - path.data()));
  }
  tracing::SetText(span.method, method);
  tracing::SetText(span.path, path);
  tracing::SetServerAuthority(span, authority);
  span.protocol = http::ProtocolName(info_.protocol);
  span.peer_identity = hcm_.options_.peer_identity;
  span.direction = hcm_.inbound_ ? "inbound" : "outbound";
}

inline void ActiveStream::Terminate(http::StreamResetReason reason) {
  reset_reason_ = reason;
  info_.SetFlag(reason == http::StreamResetReason::kLocalReset
                    ? stream::ResponseFlag::kLocalReset
                    : stream::ResponseFlag::kDownstreamClosed);
  Finish();
}

inline void ActiveStream::Finish() {
  done_ = true;
  encoder_ = nullptr;
  EndFilters();
  tunnel_active_.reset();
  const MonotonicTime now = hcm_.context_.clock.ExactNow();
  const uint64_t duration_us = MicrosRoundedUp(now - info_.start);
  if (server_span_ == nullptr && hcm_.context_.tracer != nullptr && info_.ProxyFailed())
      [[unlikely]] {
    BeginErrorSpan();
  }
  if (server_span_ != nullptr) {
    info_.server_span = nullptr;
    server_span_->end_ns = hcm_.context_.tracer->WallNanosAt(now);
    stream::FillServerSpan(info_, *server_span_);
    // The attempts' own spans went out (a sampled request's, unless its only one is held).
    const bool attempts_exported =
        info_.trace.sampled && info_.trace.attempts > 0 && info_.held_attempt_span == nullptr;
    if (info_.held_attempt_span != nullptr) {
      // One attempt: this span describes it and takes its id, the upstream's parent.
      tracing::FoldSingleAttempt(*server_span_, *info_.held_attempt_span);
      hcm_.context_.tracer->Discard(info_.held_attempt_span);
    }
    server_span_->kind = tracing::RequestSpanKind(!hcm_.inbound_, attempts_exported);
    if (server_span_->kind == tracing::SpanKind::kClient) {
      server_span_->peer_service =
          tracing::PeerService(info_.cluster_name, hcm_.context_.tracer->service_name());
    }
    hcm_.context_.tracer->End(server_span_);
  }
  // Decision records: kept for requests the proxy failed (a local reply, a flag, another proxy's
  // error passed on) or sampled; the unsampled request that succeeded costs this test alone.
  if (hcm_.context_.decisions != nullptr &&
      (info_.response_flags != 0 || !info_.local_reply_reason.empty() || info_.trace.sampled ||
       info_.upstream_error_attributed)) [[unlikely]] {
    // The id is copied only for the access log, and not yet for a request refused before routing.
    absl::string_view id = request_id_;
    if (id.empty() && request_headers_ != nullptr) {
      id = request_headers_->Get(kRequestIdHeader).value_or("");
    }
    if (info_.start_wall == absl::UnixEpoch()) {
      // The wall-clock start is recorded up front only for the access log: from now and the
      // duration, on this path only (a failed or sampled request).
      info_.start_wall = hcm_.context_.clock.WallNow() - absl::Microseconds(duration_us);
    }
    hcm_.context_.decisions->Add(info_, id, hcm_.inbound_ ? "inbound" : "outbound");
  }
  hcm_.stats_.RecordRequest(info_, duration_us);
  if (route_.cluster != nullptr && route_.cluster_stats != nullptr) {
    // The golden metrics of the cluster the request was routed to.
    route_.cluster_stats->RecordCompletion(info_.response_code, info_.grpc_failure,
                                           reset_reason_.has_value(), duration_us,
                                           info_.bytes_received, info_.bytes_sent);
  }
  if (route_.entry != nullptr && hcm_.context_.route_stats != nullptr) {
    // The route rule's (route_stats.h): one lookup in the worker's table.
    const int code = info_.response_code;
    hcm_.context_.route_stats->Record(
        *route_.entry, code,
        code == 0 || code >= 500 || info_.grpc_failure || reset_reason_.has_value(), duration_us);
  }
  if (reset_reason_.has_value()) {
    hcm_.stats_.downstream_rq_reset[static_cast<size_t>(*reset_reason_)].Inc();
  }
  if (hcm_.context_.access_log != nullptr) WriteAccessLog(duration_us);
  if (hcm_.context_.tap != nullptr) [[unlikely]]
    RecordTap(now, duration_us);
  active_.reset();
  hcm_.OnStreamDone(*this);
}

void ActiveStream::NoteTapResponse(const http::HeaderMap& headers) {
  // Kept only when there is something to keep: a response without the proxy's error, to a tap
  // without headers, costs no allocation.
  const absl::string_view error =
      hcm_.context_.error_header.empty()
          ? absl::string_view()
          : headers.Get(hcm_.context_.error_header).value_or(absl::string_view());
  const bool keep_headers = hcm_.context_.tap->wants_headers();
  if (error.empty() && !keep_headers) return;
  if (tap_response_ == nullptr) tap_response_ = std::make_unique<TapResponse>();
  tap_response_->error.assign(error.data(), error.size());
  if (keep_headers) tap_response_->headers.emplace(headers);
}

void ActiveStream::RecordTap(MonotonicTime now, uint64_t duration_us) {
  absl::string_view request_id = request_id_;
  if (request_id.empty() && request_headers_ != nullptr) {
    request_id = request_headers_->Get(kRequestIdHeader).value_or("");
  }
  const stream::TapRequestView view{
      .inbound = hcm_.inbound_,
      .info = &info_,
      .request_headers = request_headers_.get(),
      .response_headers = tap_response_ != nullptr && tap_response_->headers.has_value()
                              ? &*tap_response_->headers
                              : nullptr,
      .request_id = request_id,
      .peer_identity = hcm_.options_.peer_identity,
      .error =
          tap_response_ != nullptr ? absl::string_view(tap_response_->error) : absl::string_view(),
      .reset = reset_reason_.has_value(),
      .duration_us = duration_us,
      .wall = hcm_.context_.clock.WallNow(),
  };
  hcm_.context_.tap->Record(view, now);
}

inline void ActiveStream::WriteAccessLog(uint64_t duration_us) {
  std::string line;
  line.reserve(512);
  line.append("{\"start_time\":");
  AppendJsonString(&line,
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", info_.start_wall, absl::UTCTimeZone()));
  line.append(",\"method\":");
  AppendJsonString(&line, method_);
  line.append(",\"path\":");
  AppendJsonString(&line, path_);
  line.append(",\"protocol\":");
  AppendJsonString(&line, http::ProtocolName(info_.protocol));
  absl::StrAppend(&line, ",\"response_code\":", info_.response_code);
  line.append(",\"response_flags\":\"");
  stream::AppendResponseFlags(&line, info_.response_flags);
  absl::StrAppend(&line, "\",\"bytes_received\":", info_.bytes_received,
                  ",\"bytes_sent\":", info_.bytes_sent, ",\"duration_ms\":", duration_us / 1000,
                  ",\"duration_us\":", duration_us);
  line.append(",\"upstream_host\":");
  AppendJsonString(&line, info_.upstream_host.has_value() ? info_.upstream_host->ToString() : "");
  if (!info_.upstream_locality.empty()) {
    line.append(",\"upstream_locality\":");
    AppendJsonString(&line, info_.upstream_locality);
  }
  line.append(",\"upstream_cluster\":");
  AppendJsonString(&line, info_.cluster_name);
  line.append(",\"route_name\":");
  AppendJsonString(&line, info_.route_name);
  if (!info_.local_reply_reason.empty()) {
    line.append(",\"error_reason\":");
    AppendJsonString(&line, info_.local_reply_reason);
  }
  line.append(",\"request_id\":");
  AppendJsonString(&line, request_id_);
  line.append(",\"downstream_remote_address\":");
  AppendJsonString(&line, hcm_.connection_->remote_address().ToString());
  line.append(",\"downstream_peer_identity\":");
  AppendJsonString(&line, hcm_.options_.peer_identity);
  if (!hcm_.options_.original_destination.empty()) {
    line.append(",\"original_destination\":");
    AppendJsonString(&line, hcm_.options_.original_destination);
  }
  line.append("}");
  hcm_.context_.access_log->Write(line);
}

}  // namespace meshlet::sidecar::listener
