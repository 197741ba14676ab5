#include "sidecar/listener/http_connection_manager.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/filters/authorization_filter.h"
#include "sidecar/filters/breaker_filter.h"
#include "sidecar/filters/fault_filter.h"
#include "sidecar/filters/rate_limit_filter.h"
#include "sidecar/router/router.h"
#include "sidecar/stream/filter.h"
#include "sidecar/stream/local_reply.h"
#include "sidecar/stream/stream_info.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::listener {
namespace {

using tracing::kRequestIdHeader;
constexpr absl::string_view kForwardedForHeader = "x-forwarded-for";
constexpr absl::string_view kForwardedProtoHeader = "x-forwarded-proto";
constexpr absl::string_view kPeerIdentityHeader = "x-meshlet-peer-identity";

// A random (version 4) UUID, formatted into `out` (36 bytes) without allocating.
void FormatRequestId(Random& random, char out[36]) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t hi = random.Next();
  uint64_t lo = random.Next();
  hi = (hi & ~0xf000ULL) | 0x4000ULL;              // version 4
  lo = (lo & ~(0xc0ULL << 56)) | (0x80ULL << 56);  // RFC 4122 variant
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out[pos++] = '-';
    const uint64_t word = i < 16 ? hi : lo;
    const int shift = 60 - 4 * (i % 16);
    out[pos++] = kHex[(word >> shift) & 0xf];
  }
}

http::h1::CodecOptions H1Options(const config::HttpOptionsConfig& http, bool tls) {
  http::h1::CodecOptions options;
  options.limits.max_start_line_bytes = http.max_request_line_bytes;
  options.limits.max_uri_bytes =
      std::min<size_t>(options.limits.max_uri_bytes, http.max_request_line_bytes);
  options.limits.max_header_bytes = static_cast<size_t>(http.max_request_headers_kb) * 1024;
  options.limits.max_header_count = http.max_headers_count;
  options.scheme = tls ? "https" : "http";
  // The proxy reads the body as soon as it routes, so it can promise it at once.
  options.auto_continue = true;
  // Off: the codec answers CONNECT with 403 itself. On: the router tunnels it (router.h).
  options.allow_connect = http.allow_connect;
  return options;
}

bool HasConnectionToken(const http::HeaderMap& headers, absl::string_view token) {
  for (absl::string_view element : absl::StrSplit(headers.GetJoined("connection"), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(element), token)) return true;
  }
  return false;
}

http::h2::Http2Options H2Options(const config::HttpOptionsConfig& http) {
  http::h2::Http2Options options;
  options.max_concurrent_streams = std::max<uint32_t>(http.max_concurrent_streams, 1);
  options.max_header_list_size = http.max_request_headers_kb * 1024;
  options.max_outbound_control_frames = http.max_outbound_control_frames;
  options.max_inbound_window_update_frames_per_data_frame_sent =
      http.max_inbound_window_update_frames_per_data_frame_sent;
  options.stream_reset_burst = http.stream_reset_burst;
  options.stream_resets_per_second = http.stream_resets_per_second;
  options.max_inbound_priority_frames_per_stream = http.max_inbound_priority_frames_per_stream;
  options.max_consecutive_inbound_empty_frames = http.max_consecutive_inbound_empty_frames;
  options.max_continuation_frames = http.max_continuation_frames;
  options.connection_buffer_limit = http.connection_buffer_kb * 1024;
  options.control_frame_burst = http.control_frame_burst;
  options.control_frames_per_second = http.control_frames_per_second;
  return options;
}

}  // namespace

// One request stream: the codec's decoder for the request, the filter chain's callbacks (the
// router's downstream side for the response), and the bookkeeping for stats and the access log.
class HttpConnectionManager::ActiveStream final : public http::StreamDecoder,
                                                  public http::StreamCallbacks,
                                                  public stream::FilterCallbacks,
                                                  public ThreadRecycled<ActiveStream> {
 public:
  ActiveStream(HttpConnectionManager& hcm, http::StreamEncoder& encoder)
      : hcm_(hcm),
        encoder_(&encoder),
        active_(hcm.stats_.downstream_rq_active),
        authorization_(*this, hcm.policy_),
        listener_rate_limit_(filters::RateLimitFilter::Scope::kListener, *this, hcm.policy_,
                             hcm.context_.clock),
        fault_(*this, hcm.context_.loop, hcm.context_.random),
        route_rate_limit_(filters::RateLimitFilter::Scope::kRoute, *this, hcm.policy_,
                          hcm.context_.clock),
        breaker_(*this),
        router_(hcm.context_, *this) {
    route_.table = hcm.CurrentRouteTable();
    // The codecs create the stream once its headers are decoded. Its start and end are read
    // exactly, not from the turn's shared reading: a request answered within the turn (a direct
    // response, a local reply) would measure zero.
    info_.start = hcm.context_.clock.ExactNow();
    info_.protocol = hcm.codec_->protocol();
    if (hcm.context_.access_log != nullptr) info_.start_wall = hcm.context_.clock.WallNow();
    last_activity_ = hcm.context_.loop.Now();
    ++overload_->active_requests;
  }
  // The worker's context (and its overload state) outlives every connection and stream.
  ~ActiveStream() { --overload_->active_requests; }

  StreamList::iterator pos_;

  // The connection closed under the stream (its codec stream may still exist, so detach first).
  void OnConnectionClosed() {
    if (done_) return;
    encoder_->GetStream().RemoveCallbacks(*this);
    Terminate(http::StreamResetReason::kConnectionTermination);
  }

  // http::StreamDecoder
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
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
    // The virtual host depends only on the host, which preparing the request leaves alone: the
    // listener-level filters (authorization's destination port) and the route share one match.
    if (route_.table != nullptr) {
      route_.virtual_host = route_.table->MatchVirtualHost(route::RequestHost(*request_headers_));
    }
    if (!end_stream && !connect_ && hcm_.http_options_.request_body_timeout.count() > 0) {
      body_clock_ = true;
      body_start_ = hcm_.context_.loop.Now();
      hcm_.ArmStreamTimer(hcm_.http_options_.request_body_timeout);
    }
    DecodeHeadersFrom(0);
  }

  // The method and path as the client sent them, for the access log (the router may rewrite the
  // path later); nothing without an access log.
  void RememberRequestLine(const http::HeaderMap& headers) {
    if (hcm_.context_.access_log == nullptr) return;
    const absl::string_view method = headers.Get(":method").value_or("");
    method_.assign(method.data(), method.size());
    const absl::string_view path = headers.Get(":path").value_or("");
    path_.assign(path.data(), path.size());
  }

  // Load shedding: a fast local 503 before any filter or upstream work.
  void Shed(stream::OverloadState::Reason reason) {
    hcm_.stats_
        .downstream_rq_overload_shed[reason == stream::OverloadState::Reason::kMemory ? 0 : 1]
        .Inc();
    RememberRequestLine(*request_headers_);
    info_.SetFlag(stream::ResponseFlag::kOverloaded);
    SendLocalReply({.http_status = 503,
                    .grpc_status = http::grpc::StatusCode::kUnavailable,
                    .message = "overloaded",
                    .overloaded = true});
  }

  // A capture listener's connection to a destination the mesh does not know (Options::refuse).
  void Refuse() {
    RememberRequestLine(*request_headers_);
    info_.SetFlag(stream::ResponseFlag::kNotInRegistry);
    SendLocalReply({502, http::grpc::StatusCode::kUnavailable, hcm_.refusal_message_});
  }

  // stream::FilterCallbacks
  void ContinueDecoding() override {
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
  void SendLocalReply(const stream::LocalReply& reply) override {
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
    info_.response_code = stream::LocalReplyStatus(reply, grpc_);
    EncodeHeaders(headers, /*end_stream=*/!has_body);
    if (has_body) EncodeData(body, /*end_stream=*/true);
  }
  const stream::Route& route() const override { return route_; }
  bool grpc() const override { return grpc_; }

  // How long the stream may stay idle from `now` before it times out (zero or less: it has);
  // Duration::max() without an idle timeout.
  Duration IdleTimeLeft(MonotonicTime now) const {
    if (hcm_.http_options_.stream_idle_timeout.count() <= 0) return Duration::max();
    return hcm_.http_options_.stream_idle_timeout - (now - last_activity_);
  }

  // Minimum request body rate (HttpOptionsConfig::request_body_timeout): from the headers on, the
  // body may take request_body_timeout plus one second per min_request_body_bytes_per_second
  // bytes received. Time during which the sidecar itself does not read it (the upstream pushes
  // back, a filter holds the request) does not count. Duration::max(): no clock running.
  Duration BodyTimeLeft(MonotonicTime now) const {
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

  // The body came too slowly: 408 before the response started, else a reset.
  void OnBodyTimeout() {
    if (done_) return;
    body_clock_ = false;
    hcm_.stats_.downstream_rq_body_timeout.Inc();
    EndFilters();
    SendLocalReply({408, http::grpc::StatusCode::kDeadlineExceeded, "request body too slow"});
  }

  // The stream idle timeout expired (HttpConnectionManager::OnStreamIdleTimer): 408 before the
  // response started, else a reset.
  void OnIdleTimeout() {
    if (done_) return;
    info_.SetFlag(stream::ResponseFlag::kStreamIdleTimeout);
    EndFilters();
    SendLocalReply({408, http::grpc::StatusCode::kDeadlineExceeded, "stream idle timeout"});
  }

  // The stream carries an open tunnel (Upgrade or CONNECT).
  bool tunnel() const { return !done_ && router_.tunnel(); }
  void DecodeData(net::Buffer& data, bool end_stream) override {
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
  void DecodeTrailers(http::HeaderMapPtr trailers) override {
    if (done_) return;
    Touch();
    body_clock_ = false;
    request_trailers_ = std::move(trailers);
    if (!holding_) DecodeTrailersFrom(*request_trailers_);
  }

  // http::StreamCallbacks (the downstream stream)
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override {
    if (done_) return;
    LOG(DEBUG) << "downstream stream reset: " << http::ResetReasonName(reason) << " " << details;
    Terminate(reason);
  }
  void OnAboveWriteBufferHighWatermark() override {
    if (!done_) router_.OnDownstreamAboveWriteBufferHighWatermark();
  }
  void OnBelowWriteBufferLowWatermark() override {
    if (!done_) router_.OnDownstreamBelowWriteBufferLowWatermark();
  }

  // stream::FilterCallbacks: the response side
  void EncodeHeaders(http::HeaderMap& headers, bool end_stream) override {
    if (done_) return;
    Touch();
    if (hcm_.context_.draining && !hcm_.draining_) hcm_.BeginDrain();
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
  void NoteGrpcStatus(const http::HeaderMap& fields) {
    const std::optional<absl::string_view> status = fields.Get("grpc-status");
    info_.grpc_failure = status.has_value() && *status != "0";
  }
  void EncodeData(net::Buffer& data, bool end_stream) override {
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
  void EncodeTrailers(const http::HeaderMap& trailers) override {
    if (done_) return;
    NoteGrpcStatus(trailers);
    Complete([&] { encoder_->EncodeTrailers(trailers); });
  }
  void ResetDownstream() override {
    if (done_) return;
    // Detached first: the reset reports back to the callbacks, and this end is already known.
    http::Stream& stream = encoder_->GetStream();
    stream.RemoveCallbacks(*this);
    info_.SetFlag(stream::ResponseFlag::kLocalReset);
    reset_reason_ = http::StreamResetReason::kLocalReset;
    Finish();
    stream.ResetStream(http::StreamResetReason::kLocalReset);
  }
  void ReadDisableDownstream(bool disable) override {
    if (!done_) SetReadDisabled(disable);
  }
  // Every ReadDisable of the downstream stream goes through here: the body clock stops meanwhile.
  void SetReadDisabled(bool disable) {
    const MonotonicTime now = hcm_.context_.loop.Now();
    if (disable) {
      if (read_disables_++ == 0) paused_since_ = now;
    } else if (read_disables_ > 0 && --read_disables_ == 0) {
      body_paused_ += now - paused_since_;
    }
    encoder_->GetStream().ReadDisable(disable);
  }
  uint32_t DownstreamBufferLimit() const override {
    return done_ ? 0 : encoder_->GetStream().BufferLimit();
  }
  uint64_t RetryBufferLimit() const override {
    return hcm_.http_options_.max_request_body_buffer_bytes;
  }
  stream::StreamInfo& stream_info() override { return info_; }

 private:
  // The chain (stream/filter.h), in order. The listener-level filters see the request as the
  // client sent it; the route stage begins with the connection manager preparing the request
  // (PrepareRequest, the trace), resolving the route once and letting the router route it.
  static constexpr size_t kChainLength = 6;
  static constexpr size_t kFirstRouteFilter = 2;  // fault injection

  void Touch() { last_activity_ = hcm_.context_.loop.Now(); }

  // Calls `call` with the filter at `index` of the chain. The filters are members of known type:
  // no virtual call, and their inline fast paths (a listener without policies, a route without
  // faults) inline here.
  template <typename Call>
  stream::FilterStatus ForFilter(size_t index, Call&& call) {
    switch (index) {
      case 0:
        return call(authorization_);
      case 1:
        return call(listener_rate_limit_);
      case 2:
        return call(fault_);
      case 3:
        return call(route_rate_limit_);
      case 4:
        return call(breaker_);
      default:
        return call(router_);
    }
  }

  void DecodeHeadersFrom(size_t index) {
    for (; index < kChainLength; ++index) {
      if (index == kFirstRouteFilter && !BeginRouteStage()) return;
      const stream::FilterStatus status = ForFilter(index, [&](auto& filter) {
        return filter.DecodeHeaders(*request_headers_, request_end_);
      });
      if (done_) return;
      if (status == stream::FilterStatus::kStopIteration && index + 1 < kChainLength) {
        // A filter holds the request (a fault delay) until it calls ContinueDecoding().
        holding_ = true;
        resume_at_ = index + 1;
        return;
      }
    }
  }

  bool BeginRouteStage() {
    PrepareRequest(*request_headers_);
    if (hcm_.context_.tracer != nullptr) BeginServerSpan(*request_headers_);
    ResolveRoute(*request_headers_);
    return router_.Route(*request_headers_, request_end_);
  }

  // The route, matched once in the virtual host found for the listener-level filters, and the
  // cluster it names (weighted clusters: one drawn now).
  void ResolveRoute(http::HeaderMap& headers) {
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
    const std::string& cluster_name = route::PickCluster(*action, hcm_.context_.random);
    route_.cluster_name = cluster_name;
    cluster::ClusterRef cluster = hcm_.context_.clusters.Get(cluster_name);
    route_.cluster = std::move(cluster.cluster);
    route_.cluster_stats = cluster.stats;
  }

  void DecodeDataFrom(net::Buffer& data, bool end_stream) {
    for (size_t index = 0; index < kChainLength; ++index) {
      const stream::FilterStatus status =
          ForFilter(index, [&](auto& filter) { return filter.DecodeData(data, end_stream); });
      if (status == stream::FilterStatus::kStopIteration || done_) return;
    }
  }
  void DecodeTrailersFrom(http::HeaderMap& trailers) {
    for (size_t index = 0; index < kChainLength; ++index) {
      const stream::FilterStatus status =
          ForFilter(index, [&](auto& filter) { return filter.DecodeTrailers(trailers); });
      if (status == stream::FilterStatus::kStopIteration || done_) return;
    }
  }

  // Body that arrives while a filter holds the request waits here, up to the stream's buffer
  // limit; beyond it the stream stops reading until the filter lets the request go.
  void Hold(net::Buffer& data, bool end_stream) {
    held_body_.Move(data);
    held_end_ = held_end_ || end_stream;
    if (!held_reads_disabled_ && held_body_.length() > DownstreamBufferLimit()) {
      held_reads_disabled_ = true;
      SetReadDisabled(true);
    }
  }
  void ReleaseHeldReads() {
    if (!held_reads_disabled_) return;
    held_reads_disabled_ = false;
    if (!done_) SetReadDisabled(false);
  }

  // Every filter's OnStreamEnd(), once.
  void EndFilters() {
    if (filters_ended_) return;
    filters_ended_ = true;
    for (size_t index = 0; index < kChainLength; ++index) {
      ForFilter(index, [](auto& filter) {
        filter.OnStreamEnd();
        return stream::FilterStatus::kContinue;
      });
    }
  }

  void PrepareRequest(http::HeaderMap& headers) {
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

  // Trace context and sampling (docs/tracing.md); a sampled request gets its server span here.
  void BeginServerSpan(http::HeaderMap& headers) {
    hcm_.context_.tracer->BeginServer(headers, info_.trace, server_span_, info_.start);
    if (server_span_ != nullptr) DescribeServerSpan(headers);
  }

  // A sampled request's server span: what the request asked for. Out of line, so the unsampled
  // path above stays a call and a test.
  [[gnu::noinline]] void DescribeServerSpan(const http::HeaderMap& headers) {
    info_.server_span = server_span_.get();
    tracing::Span& span = *server_span_;
    // One pass for both (a Get each would walk the headers twice).
    absl::string_view method, path;
    headers.ForEachPseudo([&](const http::HeaderView header) {
      if (header.name == ":method" && method.data() == nullptr) method = header.value;
      if (header.name == ":path" && path.data() == nullptr) path = header.value;
    });
    // Bounded, without the query (memchr: absl's find is an out-of-line call before it).
    path = path.substr(0, tracing::Span::kMaxPathBytes);
    if (const void* query = path.empty() ? nullptr : std::memchr(path.data(), '?', path.size())) {
      path = path.substr(0, static_cast<size_t>(static_cast<const char*>(query) - path.data()));
    }
    tracing::SetText(span.method, method);
    tracing::SetText(span.path, path);
    span.protocol = http::ProtocolName(info_.protocol);
    span.peer_identity = hcm_.options_.peer_identity;
  }

  // Encodes the last piece of the response with the stream settled first: the codec may complete
  // (and recycle) its stream inside the call.
  template <typename EncodeLast>
  void Complete(EncodeLast&& encode_last) {
    http::StreamEncoder* encoder = encoder_;
    Finish();
    encoder_ = encoder;
    encode_last();
    encoder_ = nullptr;
  }

  // The stream ended abnormally under us.
  void Terminate(http::StreamResetReason reason) {
    reset_reason_ = reason;
    info_.SetFlag(reason == http::StreamResetReason::kLocalReset
                      ? stream::ResponseFlag::kLocalReset
                      : stream::ResponseFlag::kDownstreamClosed);
    Finish();
  }

  // The stream is over for us: the router stops, stats and the access log are written, and the
  // connection manager lets go of the stream. The encoder is not touched after this.
  void Finish() {
    done_ = true;
    encoder_ = nullptr;
    EndFilters();
    tunnel_active_.reset();
    const MonotonicTime now = hcm_.context_.clock.ExactNow();
    const uint64_t duration_us = MicrosRoundedUp(now - info_.start);
    if (server_span_ != nullptr) {
      info_.server_span = nullptr;
      server_span_->end_ns = hcm_.context_.tracer->WallNanosAt(now);
      stream::FillServerSpan(info_, *server_span_);
      if (info_.held_attempt_span != nullptr) {
        // One attempt: this span describes it and takes its id, the upstream's parent.
        tracing::FoldSingleAttempt(*server_span_, *info_.held_attempt_span);
        hcm_.context_.tracer->Discard(info_.held_attempt_span);
      }
      hcm_.context_.tracer->End(server_span_);
    }
    hcm_.stats_.RecordRequest(info_, duration_us);
    if (route_.cluster != nullptr && route_.cluster_stats != nullptr) {
      // The golden metrics of the cluster the request was routed to.
      route_.cluster_stats->RecordCompletion(info_.response_code, info_.grpc_failure,
                                             reset_reason_.has_value(), duration_us,
                                             info_.bytes_received, info_.bytes_sent);
    }
    if (reset_reason_.has_value()) {
      hcm_.stats_.downstream_rq_reset[static_cast<size_t>(*reset_reason_)].Inc();
    }
    if (hcm_.context_.access_log != nullptr) WriteAccessLog(duration_us);
    active_.reset();
    hcm_.OnStreamDone(*this);
  }

  void WriteAccessLog(uint64_t duration_us) {
    std::string line;
    line.reserve(512);
    line.append("{\"start_time\":");
    AppendJsonString(
        &line, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", info_.start_wall, absl::UTCTimeZone()));
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
    line.append(",\"upstream_cluster\":");
    AppendJsonString(&line, info_.cluster_name);
    line.append(",\"route_name\":");
    AppendJsonString(&line, info_.route_name);
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

  HttpConnectionManager& hcm_;
  http::StreamEncoder* encoder_;  // null once done
  stream::StreamInfo info_;
  std::optional<GaugeGuard> active_;
  std::optional<GaugeGuard> tunnel_active_;  // while a tunnel is open
  // Before the filters: they read it, and the route keeps the cluster of the router's attempt
  // alive (members are destroyed in reverse order).
  stream::Route route_;
  http::HeaderMapPtr request_headers_;
  http::HeaderMapPtr request_trailers_;
  filters::AuthorizationFilter authorization_;
  filters::RateLimitFilter listener_rate_limit_;
  filters::FaultFilter fault_;
  filters::RateLimitFilter route_rate_limit_;
  filters::BreakerFilter breaker_;
  router::Router router_;
  net::Buffer held_body_;  // while holding_
  size_t resume_at_ = 0;
  bool holding_ = false;
  bool held_end_ = false;
  bool held_reads_disabled_ = false;
  bool filters_ended_ = false;
  bool grpc_ = false;
  bool connect_ = false;
  bool request_end_ = false;  // the request ended with its headers
  MonotonicTime last_activity_{};
  // The body clock (BodyTimeLeft).
  bool body_clock_ = false;
  MonotonicTime body_start_{};
  Duration body_paused_{0};
  MonotonicTime paused_since_{};
  int read_disables_ = 0;
  stream::OverloadState* const overload_ = &hcm_.context_.overload;
  std::optional<http::StreamResetReason> reset_reason_;
  bool done_ = false;
  // Access log only.
  std::string method_;
  std::string path_;
  std::string request_id_;
  tracing::SpanPtr server_span_;  // sampled requests only
};

HttpConnectionManager::HttpConnectionManager(WorkerContext& context, const HttpStats& stats,
                                             const config::ListenerConfig& listener,
                                             std::unique_ptr<net::Connection> connection,
                                             net::Buffer initial_data, Options options,
                                             CloseCallback on_close)
    : context_(context),
      stats_(stats),
      route_config_name_(options.route_config_name.empty() ? listener.route_config_name
                                                           : options.route_config_name),
      http_options_(listener.http),
      listener_name_(listener.name),
      options_(options),
      connection_(std::move(connection)),
      initial_data_(std::move(initial_data)),
      on_close_(std::move(on_close)),
      cx_active_(stats.downstream_cx_active),
      idle_timer_(context.loop, [this] { OnIdleTimeout(); }),
      request_headers_timer_(context.loop, [this] { OnRequestHeadersTimeout(); }),
      stream_idle_timer_(context.loop, [this] { OnStreamIdleTimer(); }),
      drain_close_timer_(context.loop, [this] { CheckIdle(); }) {
  CHECK(connection_ != nullptr);
  listener_destination_port_ = listener.destination_port;
  if (options_.refuse) {
    refusal_message_ =
        absl::StrCat("destination ", options_.original_destination, " is not in the mesh registry");
  }
  policy_ = {
      .authorizer = listener.authorizer,
      .rate_limiter = listener.rate_limiter,
      .destination_port = DestinationPort(),
      .peer_identity = options_.peer_identity,
      .rbac_allowed = stats.rbac_allowed,
      .rbac_denied = stats.rbac_denied,
  };
  connection_->SetCallbacks(this);
  if (options_.protocol == http::Protocol::kHttp2) {
    auto codec = std::make_unique<http::h2::ServerCodec>(*this, *this, H2Options(http_options_));
    h2_codec_ = codec.get();
    codec_ = std::move(codec);
  } else {
    auto codec = std::make_unique<http::h1::ServerCodec>(context.loop, *this, *this,
                                                         H1Options(http_options_, options_.tls));
    h1_codec_ = codec.get();
    codec_ = std::move(codec);
  }
  stats_.downstream_cx_total[ProtocolIndex(codec_->protocol())].Inc();
}

HttpConnectionManager::~HttpConnectionManager() {
  destroying_ = true;
  idle_timer_.Disable();
  request_headers_timer_.Disable();
  stream_idle_timer_.Disable();
  drain_close_timer_.Disable();
  if (!closed_) {
    closed_ = true;
    connection_->SetCallbacks(nullptr);
    connection_->Close(net::CloseMode::kNoFlush);
    codec_->OnConnectionClosed();
  }
  // Streams leave the codec's streams first, so the codec's destructor reports to nobody.
  for (auto& stream : streams_) stream->OnConnectionClosed();
  codec_.reset();
  streams_.clear();
}

void HttpConnectionManager::Start() {
  CHECK(!started_);
  started_ = true;
  if (initial_data_.length() > 0) {
    OnData(initial_data_, false);
  } else {
    CheckIdle();
  }
}

uint32_t HttpConnectionManager::DestinationPort() const {
  if (options_.destination_port != 0) return options_.destination_port;
  return listener_destination_port_ != 0 ? listener_destination_port_
                                         : connection_->local_address().port();
}

std::shared_ptr<const route::RouteTable> HttpConnectionManager::CurrentRouteTable() {
  const config::Snapshot* snapshot = context_.snapshot.get();
  if (snapshot != cached_snapshot_) {
    cached_snapshot_ = snapshot;
    cached_route_table_.reset();
    if (snapshot != nullptr) {
      auto it = snapshot->route_tables.find(route_config_name_);
      if (it != snapshot->route_tables.end()) cached_route_table_ = it->second;
      // A listener the snapshot no longer has is draining: it keeps the policies it had.
      for (const config::ListenerConfig& listener : snapshot->listeners) {
        if (listener.name != listener_name_) continue;
        policy_.authorizer = listener.authorizer;
        policy_.rate_limiter = listener.rate_limiter;
        listener_destination_port_ = listener.destination_port;
        policy_.destination_port = DestinationPort();
        break;
      }
    }
  }
  return cached_route_table_;
}

void HttpConnectionManager::OnData(net::Buffer& data, bool end_stream) {
  if (closed_) {
    data.Drain(data.length());
    return;
  }
  if (data.length() > 0) {
    absl::Status status = codec_->Dispatch(data);
    // Counted before the closed_ check: the codec may already have closed the connection itself.
    if (!status.ok()) CountDispatchError(status);
    if (closed_) return;
    if (!status.ok()) {
      // The codec queued its error reply (400/431, 403, GOAWAY) and reset the streams.
      LOG(DEBUG) << "downstream " << connection_->remote_address().ToString()
                 << " protocol error: " << status.message();
      // A flood of replies (acknowledgements, resets): what is queued is mostly those, so it is
      // dropped, beyond what the socket already took (the GOAWAY, if there was room for it), and
      // the flooder is held unread until the close timeout rather than closed at once, which
      // would let it reconnect and flood again at once. Other abuse (rapid reset, PRIORITY,
      // empty frames, CONTINUATION) comes from clients that may read: the GOAWAY is flushed,
      // like any protocol error's, but one that floods on meanwhile is read no more after
      // brief_linger_bytes (held unread until the close timeout) instead of being read for the
      // whole flush_close_timeout.
      const http::h2::Http2Flood flood =
          h2_codec_ != nullptr ? h2_codec_->flood() : http::h2::Http2Flood::kNone;
      const bool unread = flood == http::h2::Http2Flood::kControlFrames ||
                          flood == http::h2::Http2Flood::kPingSettings;
      CloseConnection(unread                                 ? net::CloseMode::kDropAndHold
                      : flood != http::h2::Http2Flood::kNone ? net::CloseMode::kFlushBriefly
                                                             : net::CloseMode::kFlush);
      return;
    }
  }
  if (end_stream) {
    (void)codec_->OnEndOfStream();
    if (closed_) return;
    // A tunnel's client finished sending: the tunnel decides when the connection ends (a CONNECT
    // upstream may still answer); the stream's end then closes it (OnStreamDone).
    for (const auto& stream : streams_) {
      if (stream->tunnel()) return;
    }
    // A client that stops sending has gone away as far as a proxy can tell (HTTP/1 clients do
    // not half-close to wait for a response; HTTP/2 has no half-closed connection): requests in
    // flight end as downstream-closed and their upstream streams are released now, rather than
    // when a response would fail to write.
    CloseConnection(net::CloseMode::kFlush);
    return;
  }
  MaybeArmRequestHeadersTimer();
  if (streams_.empty()) CheckIdle();
}

void HttpConnectionManager::CountDispatchError(const absl::Status& status) {
  if (absl::IsPermissionDenied(status)) {
    stats_.downstream_rq_connect_refused.Inc();  // the HTTP/1 codec answered CONNECT with 403
    return;
  }
  if (absl::IsResourceExhausted(status)) {
    // Only the HTTP/2 codec says this: it sent GOAWAY(ENHANCE_YOUR_CALM) for a limit it names.
    if (h2_codec_ != nullptr)
      stats_.downstream_cx_flood[static_cast<size_t>(h2_codec_->flood())].Inc();
    return;
  }
  stats_.downstream_cx_protocol_error.Inc();
}

bool HttpConnectionManager::RequestHeadersInProgress() const {
  if (h2_codec_ != nullptr) return h2_codec_->request_headers_in_progress();
  // HTTP/1: a stream in progress owns the connection; the next head is read after it.
  return h1_codec_ != nullptr && streams_.empty() && h1_codec_->request_head_in_progress();
}

void HttpConnectionManager::MaybeArmRequestHeadersTimer() {
  const Duration timeout = http_options_.request_headers_timeout;
  if (timeout.count() <= 0) return;
  if (!RequestHeadersInProgress()) {
    // HTTP/2 streams that are running do not stop it: only the partial header block does, so
    // a long stream cannot shelter a stalled one.
    request_headers_timer_.Disable();
    return;
  }
  // Counted from the first byte of the head, so a slow trickle cannot keep it alive.
  if (!request_headers_timer_.enabled()) request_headers_timer_.Enable(timeout);
}

void HttpConnectionManager::OnRequestHeadersTimeout() {
  if (closed_ || !RequestHeadersInProgress()) return;
  stats_.downstream_rq_header_timeout.Inc();
  if (h2_codec_ != nullptr) {
    // A stream without its headers cannot be answered (no 408): end the connection. The first
    // GoAway() is the graceful notice, the second the final GOAWAY naming the last stream.
    codec_->GoAway();
    codec_->GoAway();
    CloseConnection(net::CloseMode::kFlush);
    return;
  }
  connection_->Write(
      "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\n"
      "content-length: 24\r\n\r\nrequest header timeout\r\n");
  CloseConnection(net::CloseMode::kFlush);
}

void HttpConnectionManager::OnWriteHighWatermark() {
  if (!closed_) codec_->OnUnderlyingWriteHighWatermark();
}

void HttpConnectionManager::OnWriteLowWatermark() {
  if (closed_) return;
  codec_->OnUnderlyingWriteLowWatermark();
  // The codec may just have written the last frames a draining connection waited for.
  if (draining_ && streams_.empty() && !closed_) CheckIdle();
}

void HttpConnectionManager::OnClose(net::CloseReason reason, const absl::Status& detail) {
  if (closed_) return;
  closed_ = true;
  LOG(DEBUG) << "downstream " << connection_->remote_address().ToString()
             << " closed: " << net::CloseReasonName(reason) << " " << detail;
  idle_timer_.Disable();
  request_headers_timer_.Disable();
  stream_idle_timer_.Disable();
  drain_close_timer_.Disable();
  codec_->OnConnectionClosed();
  // HTTP/2 streams survive OnConnectionClosed until the codec goes; end them now.
  std::vector<ActiveStream*> open;
  open.reserve(streams_.size());
  for (auto& stream : streams_) open.push_back(stream.get());
  for (ActiveStream* stream : open) stream->OnConnectionClosed();
  if (on_close_) {
    CloseCallback callback = std::move(on_close_);
    on_close_ = nullptr;
    callback(*this);
  }
}

void HttpConnectionManager::Write(net::Buffer& data) {
  if (closed_) {
    data.Drain(data.length());
    return;
  }
  connection_->Write(data);
}

size_t HttpConnectionManager::UnsentBytes() const { return connection_->buffered_write_bytes(); }

void HttpConnectionManager::ReadDisable(bool disable) {
  if (closed_) return;
  if (disable) {
    connection_->ReadDisable();
  } else {
    connection_->ReadEnable();
  }
}

void HttpConnectionManager::Close(bool flush) {
  CloseConnection(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
}

void HttpConnectionManager::CloseConnection(net::CloseMode mode) {
  if (closed_) return;
  idle_timer_.Disable();
  request_headers_timer_.Disable();
  connection_->Close(mode);
}

http::StreamDecoder& HttpConnectionManager::NewStream(http::StreamEncoder& response_encoder) {
  idle_timer_.Disable();
  request_headers_timer_.Disable();
  if (context_.draining && !draining_) BeginDrain();
  auto stream = std::make_unique<ActiveStream>(*this, response_encoder);
  ActiveStream& ref = *stream;
  streams_.push_back(std::move(stream));
  ref.pos_ = std::prev(streams_.end());
  response_encoder.GetStream().AddCallbacks(ref);
  // Every arming is for at most max(idle, body timeout) from then: while the body timeout is no
  // longer than the idle one, an armed timer is due no later than this stream's idle timeout.
  const Duration idle = http_options_.stream_idle_timeout;
  if (idle.count() > 0 &&
      !(stream_idle_timer_.enabled() && http_options_.request_body_timeout <= idle)) {
    ArmStreamTimer(idle);
  }
  return ref;
}

void HttpConnectionManager::ArmStreamTimer(Duration within) {
  const MonotonicTime due = context_.loop.Now() + within;
  // An armed timer due sooner stays: its scan re-arms for whatever is next.
  if (stream_idle_timer_.enabled() && stream_timer_due_.has_value() && *stream_timer_due_ <= due) {
    return;
  }
  stream_timer_due_ = due;
  stream_idle_timer_.Enable(within);
}

void HttpConnectionManager::OnStreamIdleTimer() {
  if (closed_) return;
  const MonotonicTime now = context_.loop.Now();
  // Timing a stream out ends it (and may close the connection); streams are deleted only at the
  // end of the loop turn, so the pointers stay valid meanwhile.
  std::vector<ActiveStream*> expired;
  std::vector<ActiveStream*> too_slow;
  std::optional<Duration> next;
  for (const auto& stream : streams_) {
    const Duration idle = stream->IdleTimeLeft(now);
    const Duration body = stream->BodyTimeLeft(now);
    if (idle <= Duration::zero()) {
      expired.push_back(stream.get());
    } else if (body <= Duration::zero()) {
      too_slow.push_back(stream.get());
    } else if (const Duration left = std::min(idle, body);
               left != Duration::max() && (!next.has_value() || left < *next)) {
      next = left;
    }
  }
  for (ActiveStream* stream : expired) stream->OnIdleTimeout();
  for (ActiveStream* stream : too_slow) stream->OnBodyTimeout();
  stream_timer_due_.reset();
  if (next.has_value() && !closed_) ArmStreamTimer(*next);
}

void HttpConnectionManager::OnStreamDone(ActiveStream& stream) {
  if (destroying_) return;  // the destructor frees the streams itself
  std::unique_ptr<ActiveStream> owned = std::move(*stream.pos_);
  streams_.erase(stream.pos_);
  context_.loop.DeferDelete(std::move(owned));
  if (!streams_.empty() || closed_) return;
  if (draining_ || connection_->remote_closed()) {
    // Closed on a later turn, once the codec has written the response's last frames.
    if (!drain_close_timer_.enabled()) drain_close_timer_.Enable(Duration(0));
    return;
  }
  CheckIdle();
}

void HttpConnectionManager::CheckIdle() {
  if (closed_ || !streams_.empty()) return;
  if (connection_->remote_closed()) {
    // The client finished sending and every response is out.
    CloseConnection(net::CloseMode::kFlush);
    return;
  }
  if (peer_goaway_ && h2_codec_ != nullptr && h2_codec_->WantsClose()) {
    // The client sent GOAWAY and no stream is left: the HTTP/2 session is over (nghttp2 reads
    // nothing more, so a PING would go unanswered). RFC 9113 6.8 keeps a connection working
    // for streams still open; with none, it closes.
    CloseConnection(net::CloseMode::kFlush);
    return;
  }
  if (draining_) {
    // HTTP/2 responses whose last DATA frames wait for the client's window are not out yet:
    // closing now would cut them short. The client's WINDOW_UPDATEs (OnData) and the socket
    // draining (OnWriteLowWatermark) check again; the process's drain time bounds the wait.
    if (codec_->HasUnsentOutput()) return;
    stats_.downstream_cx_drain_close.Inc();
    // HTTP/2: the second GOAWAY names the last stream processed. The client may still be reading
    // the last responses, and it answers what it reads with WINDOW_UPDATEs: a close() before it
    // is done would reset the connection and destroy what it has not read yet.
    codec_->GoAway();
    CloseConnection(h2_codec_ != nullptr ? net::CloseMode::kFlushThenAwaitPeer
                                         : net::CloseMode::kFlush);
    return;
  }
  const Duration idle = http_options_.idle_timeout;
  if (idle.count() > 0 && !idle_timer_.enabled()) idle_timer_.Enable(idle);
}

void HttpConnectionManager::OnIdleTimeout() {
  if (closed_ || !streams_.empty()) return;
  stats_.downstream_cx_idle_timeout.Inc();
  codec_->GoAway();
  CloseConnection(net::CloseMode::kFlush);
}

void HttpConnectionManager::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  codec_->GoAway();
}

void HttpConnectionManager::Drain() {
  if (closed_) return;
  BeginDrain();
  if (streams_.empty() && !drain_close_timer_.enabled()) drain_close_timer_.Enable(Duration(0));
}

}  // namespace meshlet::sidecar::listener
