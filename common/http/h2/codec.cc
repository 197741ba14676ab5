// The HTTP/2 codec's core: options, the connection (its nghttp2 session's setup, Dispatch and
// Flush, streams' lifecycle, GOAWAY, watermarks) and the public ServerCodec / ClientCodec over it.
// The rest of ConnectionImpl lives beside it by concern (connection.h lists the files).
#include "common/http/h2/codec.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http/h2/connection.h"
#include "common/http/h2/session_memory.h"

namespace meshlet::http::h2 {

namespace {

constexpr uint32_t kMaxWindow = (1u << 31) - 1;

const Http2Stats& NoStats() {
  static const Http2Stats* const stats = new Http2Stats();
  return *stats;
}

}  // namespace

absl::Status ValidateOptions(const Http2Options& o) {
  if (o.max_concurrent_streams == 0) {
    return absl::InvalidArgumentError("max_concurrent_streams must be positive");
  }
  if (o.initial_stream_window_size < 65535 || o.initial_stream_window_size > kMaxWindow) {
    return absl::InvalidArgumentError("initial_stream_window_size must be in [65535, 2^31-1]");
  }
  if (o.initial_connection_window_size < 65535 || o.initial_connection_window_size > kMaxWindow) {
    return absl::InvalidArgumentError("initial_connection_window_size must be in [65535, 2^31-1]");
  }
  if (o.max_frame_size < (1u << 14) || o.max_frame_size > (1u << 24) - 1) {
    return absl::InvalidArgumentError("max_frame_size must be in [16384, 16777215]");
  }
  if (o.max_header_list_size < 1024) {
    return absl::InvalidArgumentError("max_header_list_size must be at least 1024");
  }
  if (o.stream_buffer_limit == 0) {
    return absl::InvalidArgumentError("stream_buffer_limit must be positive");
  }
  if (o.connection_buffer_limit == 0) {
    return absl::InvalidArgumentError("connection_buffer_limit must be positive");
  }
  if (o.max_outbound_control_frames == 0) {
    return absl::InvalidArgumentError("max_outbound_control_frames must be positive");
  }
  if (o.max_inbound_window_update_frames_per_data_frame_sent == 0) {
    return absl::InvalidArgumentError(
        "max_inbound_window_update_frames_per_data_frame_sent must be positive");
  }
  if (o.stream_reset_min_lifetime < Duration::zero()) {
    return absl::InvalidArgumentError("stream_reset_min_lifetime must not be negative");
  }
  if (o.max_inbound_priority_frames_per_stream == 0) {
    return absl::InvalidArgumentError("max_inbound_priority_frames_per_stream must be positive");
  }
  if (o.max_continuation_frames == 0) {
    return absl::InvalidArgumentError("max_continuation_frames must be positive");
  }
  if (o.keepalive_interval.count() > 0 && o.keepalive_timeout.count() <= 0) {
    return absl::InvalidArgumentError("keepalive_timeout must be positive with keepalive");
  }
  if (o.goaway_keepalive_interval.count() > 0 && o.goaway_keepalive_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "goaway_keepalive_timeout must be positive with goaway_keepalive_interval");
  }
  return absl::OkStatus();
}

size_t ErrorCodeSlot(uint32_t error_code) {
  return error_code < kErrorCodeSlots - 1 ? error_code : kErrorCodeSlots - 1;
}

absl::string_view ErrorCodeSlotName(size_t slot) {
  static constexpr absl::string_view kNames[kErrorCodeSlots] = {"NO_ERROR",
                                                                "PROTOCOL_ERROR",
                                                                "INTERNAL_ERROR",
                                                                "FLOW_CONTROL_ERROR",
                                                                "SETTINGS_TIMEOUT",
                                                                "STREAM_CLOSED",
                                                                "FRAME_SIZE_ERROR",
                                                                "REFUSED_STREAM",
                                                                "CANCEL",
                                                                "COMPRESSION_ERROR",
                                                                "CONNECT_ERROR",
                                                                "ENHANCE_YOUR_CALM",
                                                                "INADEQUATE_SECURITY",
                                                                "HTTP_1_1_REQUIRED",
                                                                "UNKNOWN"};
  return slot < kErrorCodeSlots ? kNames[slot] : "UNKNOWN";
}

namespace codec_internal {

// ----- ConnectionImpl -------------------------------------------------------------------------

ConnectionImpl::ConnectionImpl(bool server, CodecIo& io, ConnectionCallbacks& callbacks,
                               ServerConnectionCallbacks* server_callbacks,
                               const Http2Options& options, event::Loop* loop)
    : server_(server),
      io_(io),
      callbacks_(callbacks),
      server_callbacks_(server_callbacks),
      options_(options),
      loop_(loop),
      stats_(options.stats != nullptr ? *options.stats : NoStats()) {
  CHECK_OK(ValidateOptions(options_));
  nghttp2_session_callbacks* cbs;
  CHECK(nghttp2_session_callbacks_new(&cbs) == 0);
  nghttp2_session_callbacks_set_send_callback(cbs, &OnSend);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &OnSendData);
  if (server) nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, &OnBeginFrame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &OnFrameRecv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &OnFrameSend);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, &OnFrameNotSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, &OnInvalidFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &OnStreamClose);
  nghttp2_session_callbacks_set_error_callback2(cbs, &OnError);

  nghttp2_option* opt;
  CHECK(nghttp2_option_new(&opt) == 0);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Priorities are deprecated (RFC 9113); keeping closed streams for them only costs memory.
  nghttp2_option_set_no_closed_streams(opt, 1);
  // nghttp2's own bound on acknowledgements queued while one read is processed: the same limit.
  nghttp2_option_set_max_outbound_ack(opt, options_.max_outbound_control_frames);
  nghttp2_option_set_max_continuations(opt, options_.max_continuation_frames);
  if (server_ && options_.stream_reset_burst > 0) {
    // Ours (ChargeReset) decides; nghttp2's counts every RST_STREAM, even after a response.
    nghttp2_option_set_stream_reset_rate_limit(opt, UINT32_MAX, UINT32_MAX);
  }
  if (server_) {
    resets_.Start(options_.stream_reset_burst, options_.stream_resets_per_second, Now());
    control_frames_.Start(options_.control_frame_burst, options_.control_frames_per_second, Now());
  }
  if (!server_) {
    nghttp2_option_set_peer_max_concurrent_streams(opt,
                                                   options_.assumed_peer_max_concurrent_streams);
  }
  // Per-stream and per-frame blocks from the thread's free lists (session_memory.h).
  nghttp2_mem* mem = RecyclingSessionMemory();
  int rv = server_ ? nghttp2_session_server_new3(&session_, cbs, this, opt, mem)
                   : nghttp2_session_client_new3(&session_, cbs, this, opt, mem);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  CHECK(rv == 0) << nghttp2_strerror(rv);

  absl::InlinedVector<nghttp2_settings_entry, 5> iv = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_stream_window_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, options_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_size},
  };
  if (!server_) iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  Entry entry(*this);
  CHECK(nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size()) == 0);
  CHECK(nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                              options_.initial_connection_window_size) == 0);

  if (loop_ != nullptr && options_.keepalive_interval.count() > 0) {
    CreateKeepaliveTimers();
    keepalive_timer_->Enable(options_.keepalive_interval);
  }
}

void ConnectionImpl::EndStreams(absl::string_view details, bool can_write) {
  if (can_write) {
    Entry entry(*this);
    ResetAll(StreamResetReason::kConnectionTermination, details);
    return;
  }
  ++depth_;
  ResetAll(StreamResetReason::kConnectionTermination, details);
  if (--depth_ == 0) retired_.clear();
}

ConnectionImpl::~ConnectionImpl() {
  // Streams still open end with the connection; their users hear about it once.
  ++depth_;
  ResetAll(StreamResetReason::kConnectionTermination, "connection closed");
  destroying_ = true;
  keepalive_timer_.reset();
  keepalive_timeout_timer_.reset();
  nghttp2_session_del(session_);
  retired_.clear();
  streams_.clear();
}

StreamImpl& ConnectionImpl::CreateStream(StreamDecoder* decoder) {
  streams_.push_back(std::make_unique<StreamImpl>(*this, decoder));
  StreamImpl& s = *streams_.back();
  s.self_ = std::prev(streams_.end());
  return s;
}

void ConnectionImpl::Register(StreamImpl& s, int32_t id) {
  s.id_ = id;
  by_id_[id] = &s;
}

void ConnectionImpl::MarkDone(StreamImpl& s) {
  if (s.done_) return;
  s.done_ = true;
  if (s.surfaced_) {
    CHECK(active_streams_ > 0);
    --active_streams_;
  }
  MaybeRetire(s);
}

bool ConnectionImpl::HasUnsentOutput() const {
  if (dead_) return false;
  for (const auto& s : streams_) {
    // (A stream whose response is out and whose request is not has nothing more to send.)
    if (s->done_ && s->id_ != 0 && !s->closed_ && !s->tx_end_sent_) return true;
  }
  return false;
}

void ConnectionImpl::MaybeRetire(StreamImpl& s) {
  if (!s.done_ || (s.id_ != 0 && !s.closed_) || s.reset_pending_ || s.low_pending_) return;
  tx_buffered_ -= s.tx_data_.length();
  if (s.id_ != 0) by_id_.erase(s.id_);
  retired_.splice(retired_.end(), streams_, s.self_);
}

void ConnectionImpl::NotifyReset(StreamImpl& s, StreamResetReason reason,
                                 absl::string_view details) {
  if (s.done_) return;
  s.reset_reason_ = reason;
  s.reset_details_ = std::string(details);
  if (!s.surfaced_) {
    MarkDone(s);
    return;
  }
  if (in_send_) {
    // Never call users from inside nghttp2_session_send: they may submit frames.
    s.reset_pending_ = true;
    pending_events_.push_back({&s, Event::kReset});
    MarkDone(s);
    return;
  }
  MarkDone(s);
  s.FireReset();
}

void ConnectionImpl::ResetAll(StreamResetReason reason, absl::string_view details) {
  std::vector<StreamImpl*> open;
  for (auto& s : streams_) {
    if (!s->done_) open.push_back(s.get());
  }
  for (StreamImpl* s : open) NotifyReset(*s, reason, details);
}

void ConnectionImpl::Flush() {
  // Events fired below may queue more frames; bounded so a misbehaving user cannot spin here.
  for (int round = 0; round < 64 && !dead_; ++round) {
    if (!in_recv_) {
      in_send_ = true;
      int rv = nghttp2_session_send(session_);
      in_send_ = false;
      if (rv != 0) {
        if (rv != NGHTTP2_ERR_EOF) {
          LOG_EVERY_N_SEC(WARN, 1) << "http2 send failed: " << nghttp2_strerror(rv);
        }
        dead_ = true;
      }
    }
    if (!out_.empty()) WriteOut();
    if (buffered_above_) CheckBufferedBelow();
    if (pending_events_.empty()) {
      // Callbacks run by io_.Write() (connection watermarks) may have queued frames.
      if (in_recv_ || !nghttp2_session_want_write(session_)) break;
      continue;
    }
    // Swapped with a member so both vectors keep their capacity (no allocation per event).
    std::vector<PendingEvent>& events = events_scratch_;
    events.swap(pending_events_);
    for (const PendingEvent& e : events) {
      StreamImpl& s = *e.stream;
      if (e.event == Event::kReset) {
        s.reset_pending_ = false;
        s.FireReset();
      } else {
        s.low_pending_ = false;
        if (!s.done_) s.LowerWatermark();
      }
      MaybeRetire(s);
    }
    events.clear();
    if (in_recv_ || !nghttp2_session_want_write(session_)) break;
  }
  // Anything queued by the events above that could not go out now waits for the next call.
  if (dead_) {
    for (const PendingEvent& e : pending_events_) {
      e.stream->reset_pending_ = e.stream->low_pending_ = false;
      if (e.event == Event::kReset) e.stream->FireReset();
    }
    pending_events_.clear();
  }
}

void ConnectionImpl::WriteOut() {
  bytes_out_ += out_.length();
  io_.Write(out_);
  ForgetTakenControlFrames();
}

absl::Status ConnectionImpl::Dispatch(net::Buffer& data) {
  if (dead_) {
    data.Drain(data.length());
    return absl::FailedPreconditionError("http2 connection already failed");
  }
  int fatal = 0;
  refused_this_read_ = 0;
  {
    Entry entry(*this);
    in_recv_ = true;
    data.ForEachSlice([&](absl::string_view slice) {
      if (fatal == 0) fatal = Receive(slice);
    });
    in_recv_ = false;
    data.Drain(data.length());
    if (goaway_final_due_ && fatal == 0) {
      // Not from inside the read: frames after the ACK in the same read may open streams, which
      // reach the user as they are parsed. Submitted there, the GOAWAY would name the last stream
      // before them, and nghttp2 would refuse them once it went out, after the user had started
      // on them: a request both processed and refused, which a caller retries elsewhere (even
      // a POST). Named after the read, every stream the user saw is covered.
      goaway_final_due_ = false;
      SendFinalGoAway();
    }
    if (fatal == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
      Abuse(Http2Flood::kContinuation, "more CONTINUATION frames than max_continuation_frames");
    }
    if (fatal != 0 && fatal != NGHTTP2_ERR_FLOODED && abuse_ == Http2Flood::kNone) {
      // Owe the peer a GOAWAY; nghttp2 queues it unless the session is beyond repair.
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    }
  }  // flushed here: a GOAWAY nghttp2 queued for a connection error is now sent
  if (fatal == NGHTTP2_ERR_FLOODED) {
    // nghttp2's own count of acknowledgements queued during this read passed the limit.
    return EndFlood(Http2Flood::kControlFrames, "control frames the peer does not read");
  }
  if (abuse_ != Http2Flood::kNone || (fatal == 0 && sent_goaway_error_ == NGHTTP2_NO_ERROR)) {
    auto [kind, what] = FindFlood();
    if (kind != Http2Flood::kNone) return EndFlood(kind, what);
    if (flood_drain_due_) {
      flood_drain_due_ = false;
      server_callbacks_->OnFloodDrain();
    }
    return absl::OkStatus();
  }
  Entry entry(*this);
  ++counters_.connection_protocol_errors;
  dead_ = true;
  std::string message = absl::StrCat(
      "http2 protocol error: ",
      fatal != 0
          ? nghttp2_strerror(fatal)
          : (last_error_.empty() ? std::string(ErrorCodeSlotName(ErrorCodeSlot(sent_goaway_error_)))
                                 : last_error_));
  ResetAll(StreamResetReason::kProtocolError, message);
  return absl::InvalidArgumentError(message);
}

bool ConnectionImpl::RequestHeadersInProgress() const {
  if (dead_ || rx_request_headers_id_ == 0) return false;
  auto it = by_id_.find(rx_request_headers_id_);
  if (it == by_id_.end()) return false;
  const StreamImpl& s = *it->second;
  // HandleHeadersFrame takes rx_headers_ at END_HEADERS; a refused or reset stream is done.
  return !s.done_ && !s.surfaced_ && s.rx_headers_ != nullptr;
}

void ConnectionImpl::GoAway() {
  if (dead_) return;
  Entry entry(*this);
  if (!server_) {
    if (goaway_started_) return;
    goaway_started_ = true;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    return;
  }
  if (!goaway_started_) {
    goaway_started_ = true;
    // The final GOAWAY follows one round trip later (the PING's ACK), so requests already on
    // the wire when the notice left are not refused (RFC 9113 6.8).
    nghttp2_submit_shutdown_notice(session_);
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kGoAwayPing);
    return;
  }
  SendFinalGoAway();
}

void ConnectionImpl::SendFinalGoAway() {
  if (goaway_final_sent_) return;
  goaway_final_sent_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void ConnectionImpl::OnUnderlyingWriteHighWatermark() {
  if (underlying_above_) return;
  Entry entry(*this);
  underlying_above_ = true;
  // Stop taking requests (and PINGs, SETTINGS...) from a peer that is not reading the replies.
  if (!reads_held_ && !dead_) {
    reads_held_ = true;
    io_.ReadDisable(true);
  }
  RaiseAll(&StreamImpl::conn_above_);
}

void ConnectionImpl::OnUnderlyingWriteLowWatermark() {
  if (!underlying_above_) return;
  Entry entry(*this);
  underlying_above_ = false;
  if (reads_held_) {
    reads_held_ = false;
    io_.ReadDisable(false);
  }
  LowerAll(&StreamImpl::conn_above_);
}

void ConnectionImpl::CheckBufferedAbove() {
  if (buffered_above_ || tx_buffered_ <= options_.connection_buffer_limit) return;
  buffered_above_ = true;
  RaiseAll(&StreamImpl::buffered_above_);
}

void ConnectionImpl::CheckBufferedBelow() {
  if (!buffered_above_ || tx_buffered_ > options_.connection_buffer_limit / 2) return;
  buffered_above_ = false;
  LowerAll(&StreamImpl::buffered_above_);
}

void ConnectionImpl::RaiseAll(bool StreamImpl::*counted) {
  // Collected first: a watermark callback may end streams.
  std::vector<StreamImpl*> open;
  for (auto& s : streams_) {
    if (!s->done_ && s->surfaced_ && !(s.get()->*counted)) open.push_back(s.get());
  }
  for (StreamImpl* s : open) {
    if (s->done_) continue;
    s->*counted = true;
    s->RaiseWatermark();
  }
}

void ConnectionImpl::LowerAll(bool StreamImpl::*counted) {
  std::vector<StreamImpl*> open;
  for (auto& s : streams_) {
    if (s.get()->*counted) open.push_back(s.get());
  }
  for (StreamImpl* s : open) {
    s->*counted = false;
    if (!s->done_) s->LowerWatermark();
  }
}

StreamEncoder& ConnectionImpl::NewClientStream(StreamDecoder& decoder) {
  CHECK(!server_);
  StreamImpl& s = CreateStream(&decoder);
  s.surfaced_ = true;
  ++active_streams_;
  ++counters_.streams_started;
  return s;
}

bool ConnectionImpl::CanOpenStream() const {
  if (dead_ || goaway_received_ || goaway_started_) return false;
  if (nghttp2_session_get_next_stream_id(session_) > static_cast<uint32_t>(INT32_MAX)) {
    return false;
  }
  uint32_t limit =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return active_streams_ < limit;
}

}  // namespace codec_internal

using codec_internal::ConnectionImpl;

// ----- public wrappers ------------------------------------------------------------------------

ServerCodec::ServerCodec(CodecIo& io, ServerConnectionCallbacks& callbacks,
                         const Http2Options& options, event::Loop* loop)
    : impl_(std::make_unique<ConnectionImpl>(true, io, callbacks, &callbacks, options, loop)) {}
ServerCodec::~ServerCodec() = default;
absl::Status ServerCodec::Dispatch(net::Buffer& data) { return impl_->Dispatch(data); }
void ServerCodec::GoAway() { impl_->GoAway(); }
size_t ServerCodec::ActiveStreams() const { return impl_->ActiveStreams(); }
bool ServerCodec::HasUnsentOutput() const { return impl_->HasUnsentOutput(); }
void ServerCodec::OnUnderlyingWriteHighWatermark() { impl_->OnUnderlyingWriteHighWatermark(); }
void ServerCodec::OnUnderlyingWriteLowWatermark() { impl_->OnUnderlyingWriteLowWatermark(); }
const Http2Counters& ServerCodec::counters() const { return impl_->counters(); }
Http2Flood ServerCodec::flood() const { return impl_->flood(); }
bool ServerCodec::flood_draining() const { return impl_->FloodDraining(); }
bool ServerCodec::WantsClose() const { return impl_->WantsClose(); }
bool ServerCodec::request_headers_in_progress() const { return impl_->RequestHeadersInProgress(); }
absl::Status ServerCodec::OnEndOfStream() {
  impl_->EndStreams("peer closed the connection", /*can_write=*/true);
  return absl::OkStatus();
}
void ServerCodec::OnConnectionClosed() { impl_->EndStreams("connection closed", false); }

ClientCodec::ClientCodec(CodecIo& io, ConnectionCallbacks& callbacks, const Http2Options& options,
                         event::Loop* loop)
    : impl_(std::make_unique<ConnectionImpl>(false, io, callbacks, nullptr, options, loop)) {}
ClientCodec::~ClientCodec() = default;
absl::Status ClientCodec::Dispatch(net::Buffer& data) { return impl_->Dispatch(data); }
void ClientCodec::GoAway() { impl_->GoAway(); }
size_t ClientCodec::ActiveStreams() const { return impl_->ActiveStreams(); }
void ClientCodec::OnUnderlyingWriteHighWatermark() { impl_->OnUnderlyingWriteHighWatermark(); }
void ClientCodec::OnUnderlyingWriteLowWatermark() { impl_->OnUnderlyingWriteLowWatermark(); }
StreamEncoder& ClientCodec::NewStream(StreamDecoder& decoder) {
  return impl_->NewClientStream(decoder);
}
bool ClientCodec::CanOpenStream() const { return impl_->CanOpenStream(); }
const Http2Counters& ClientCodec::counters() const { return impl_->counters(); }
bool ClientCodec::WantsClose() const { return impl_->WantsClose(); }
absl::Status ClientCodec::OnEndOfStream() {
  impl_->EndStreams("peer closed the connection", /*can_write=*/true);
  return absl::OkStatus();
}
void ClientCodec::OnConnectionClosed() { impl_->EndStreams("connection closed", false); }

}  // namespace meshlet::http::h2
