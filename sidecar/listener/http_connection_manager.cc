#include "sidecar/listener/http_connection_manager.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/listener/active_stream.h"

namespace meshlet::sidecar::listener {
namespace {

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

http::h2::Http2Options H2Options(const config::HttpOptionsConfig& http, const HttpStats& stats,
                                 const Clock& clock) {
  http::h2::Http2Options options;
  options.clock = &clock;  // the worker's turn clock: no clock reading of its own per request
  options.max_concurrent_streams = std::max<uint32_t>(http.max_concurrent_streams, 1);
  options.max_header_list_size = http.max_request_headers_kb * 1024;
  options.max_outbound_control_frames = http.max_outbound_control_frames;
  options.max_inbound_window_update_frames_per_data_frame_sent =
      http.max_inbound_window_update_frames_per_data_frame_sent;
  options.stream_reset_burst = http.stream_reset_burst;
  options.stream_resets_per_second = http.stream_resets_per_second;
  options.stream_reset_min_lifetime = http.stream_reset_min_lifetime;
  options.max_inbound_priority_frames_per_stream = http.max_inbound_priority_frames_per_stream;
  options.max_consecutive_inbound_empty_frames = http.max_consecutive_inbound_empty_frames;
  options.max_continuation_frames = http.max_continuation_frames;
  options.connection_buffer_limit = http.connection_buffer_kb * 1024;
  options.control_frame_burst = http.control_frame_burst;
  options.control_frames_per_second = http.control_frames_per_second;
  options.drain_on_flood = http.flood_drain_timeout > Duration::zero();
  options.stats = &stats.h2;
  return options;
}

}  // namespace

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
      inbound_(listener.direction == config::TrafficDirection::kInbound),
      options_(options),
      connection_(std::move(connection)),
      initial_data_(std::move(initial_data)),
      on_close_(std::move(on_close)),
      cx_active_(stats.downstream_cx_active),
      idle_timer_(context.loop, [this] { OnIdleTimeout(); }),
      request_headers_timer_(context.loop, [this] { OnRequestHeadersTimeout(); }),
      stream_idle_timer_(context.loop, [this] { OnStreamIdleTimer(); }),
      drain_close_timer_(context.loop, [this] { CheckIdle(); }),
      flood_drain_timer_(context.loop, [this] { OnFloodDrainTimeout(); }) {
  CHECK(connection_ != nullptr);
  listener_destination_port_ = listener.destination_port;
  if (listener.on_demand.has_value() && listener.on_demand->hosts) {
    host_lookup_timeout_ = listener.on_demand->timeout;
  }
  if (options_.refuse) {
    refusal_message_ =
        absl::StrCat("destination ", options_.original_destination, " is not in the mesh registry");
    refusal_source_ = listener.unmatched_destination_source;
  }
  policy_ = {
      .authorizer = listener.authorizer,
      .rate_limiter = listener.rate_limiter,
      .destination_port = DestinationPort(),
      .peer_identity = options_.peer_identity,
      .rbac_allowed = stats.rbac_allowed,
      .rbac_denied = stats.rbac_denied,
      .jwt = listener.jwt,
      .jwt_outcomes = stats.jwt_outcomes,
  };
  connection_->SetCallbacks(this);
  if (options_.protocol == http::Protocol::kHttp2) {
    auto codec = std::make_unique<http::h2::ServerCodec>(
        *this, *this, H2Options(http_options_, stats, context.clock));
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
  flood_drain_timer_.Disable();
  if (flood_state_ == FloodState::kDraining) --context_.flood_drains;  // never counted as ended
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
    destination_virtual_host_ = nullptr;
    if (snapshot != nullptr) {
      auto it = snapshot->route_tables.find(route_config_name_);
      if (it != snapshot->route_tables.end()) cached_route_table_ = it->second;
      if (cached_route_table_ != nullptr && !options_.original_destination.empty()) {
        destination_virtual_host_ =
            cached_route_table_->MatchDestination(options_.original_destination);
      }
      // A listener the snapshot no longer has is draining: it keeps the policies it had.
      for (const config::ListenerConfig& listener : snapshot->listeners) {
        if (listener.name != listener_name_) continue;
        policy_.authorizer = listener.authorizer;
        policy_.jwt = listener.jwt;
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
  if (h1_codec_ != nullptr && h1_codec_->local_reply_status() != 0) {
    // The codec answered the request itself (no stream reached us): counted like any reply.
    const int code = h1_codec_->local_reply_status();
    stats_.downstream_rq[ProtocolIndex(codec_->protocol())][cluster::StatusClassIndex(code)].Inc();
  }
  if (absl::IsPermissionDenied(status)) {
    stats_.downstream_rq_connect_refused.Inc();  // the HTTP/1 codec answered CONNECT with 403
    return;
  }
  if (absl::IsResourceExhausted(status)) {
    // Only the HTTP/2 codec says this: it sent GOAWAY(ENHANCE_YOUR_CALM) for a limit it names,
    // now, or when the drain began (OnFloodDrain, counted there).
    if (h2_codec_ == nullptr) return;
    if (flood_state_ == FloodState::kNone) {
      stats_.downstream_cx_flood[static_cast<size_t>(h2_codec_->flood())].Inc();
      EndFlood(FloodEnd::kAtOnce);
    } else {
      EndFlood(FloodEnd::kFloodedOn);
    }
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
  // A flood's drain that ended otherwise was counted before the close.
  EndFlood(FloodEnd::kPeerClosed);
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
    // draining (OnWriteLowWatermark) check again; the process's drain time (a flood's:
    // flood_drain_timeout) bounds the wait.
    if (codec_->HasUnsentOutput()) return;
    if (flood_state_ == FloodState::kDraining) {
      // Every request in flight when the flood's GOAWAY went out is answered. The client read
      // that GOAWAY long ago; one that floods on meanwhile is read no more after a little.
      EndFlood(FloodEnd::kDrained);
      CloseConnection(net::CloseMode::kFlushBriefly);
      return;
    }
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

void HttpConnectionManager::OnFloodDrain() {
  if (h2_codec_ == nullptr || flood_state_ != FloodState::kNone) return;
  flood_state_ = FloodState::kDraining;
  stats_.downstream_cx_flood[static_cast<size_t>(h2_codec_->flood())].Inc();
  if (context_.flood_drains >= http_options_.max_flood_drains) {
    // Flooders each holding a request of their own in flight would otherwise keep that many
    // connections for flood_drain_timeout each: past the worker's cap, cut off as without a
    // drain (the GOAWAY is queued already).
    LOG_EVERY_N_SEC(INFO, 1) << "downstream " << connection_->remote_address().ToString()
                             << " http2 flood (" << http::h2::Http2FloodName(h2_codec_->flood())
                             << "): cut off with " << streams_.size() << " streams in flight, "
                             << context_.flood_drains
                             << " connections draining already (http.max_flood_drains)";
    flood_state_ = FloodState::kEnded;
    stats_.downstream_cx_flood_end[static_cast<size_t>(FloodEnd::kDrainLimit)].Inc();
    CloseConnection(net::CloseMode::kFlushBriefly);
    return;
  }
  ++context_.flood_drains;
  LOG(DEBUG) << "downstream " << connection_->remote_address().ToString() << " http2 flood ("
             << http::h2::Http2FloodName(h2_codec_->flood()) << "): draining " << streams_.size()
             << " streams";
  // The codec already sent its GOAWAY; the connection closes once the streams are done
  // (OnStreamDone, CheckIdle), or when the timer fires.
  draining_ = true;
  flood_drain_timer_.Enable(http_options_.flood_drain_timeout);
  if (streams_.empty() && !drain_close_timer_.enabled()) drain_close_timer_.Enable(Duration(0));
}

void HttpConnectionManager::OnFloodDrainTimeout() {
  if (closed_ || flood_state_ != FloodState::kDraining) return;
  LOG(DEBUG) << "downstream " << connection_->remote_address().ToString()
             << " http2 flood: drain timeout with " << streams_.size() << " streams in flight";
  EndFlood(FloodEnd::kDrainTimeout);
  CloseConnection(net::CloseMode::kFlushBriefly);
}

void HttpConnectionManager::EndFlood(FloodEnd how) {
  if (flood_state_ == FloodState::kEnded) return;
  if (flood_state_ == FloodState::kNone && how != FloodEnd::kAtOnce) return;  // no flood
  if (flood_state_ == FloodState::kDraining) --context_.flood_drains;
  flood_state_ = FloodState::kEnded;
  flood_drain_timer_.Disable();
  stats_.downstream_cx_flood_end[static_cast<size_t>(how)].Inc();
}

void HttpConnectionManager::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  codec_->GoAway();
}

void HttpConnectionManager::Drain(bool keep_idle_http1) {
  if (closed_) return;
  BeginDrain();
  if (keep_idle_http1 && codec_->protocol() == http::Protocol::kHttp11) return;
  if (streams_.empty() && !drain_close_timer_.enabled()) drain_close_timer_.Enable(Duration(0));
}

}  // namespace meshlet::sidecar::listener
