#include "common/http/h2/codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/base/free_list.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/authority.h"
#include "common/net/buffer.h"

namespace meshlet::http::h2 {

namespace {

constexpr uint32_t kMaxWindow = (1u << 31) - 1;
constexpr size_t kFrameHeaderSize = 9;
// PING payloads that tell our own PINGs apart.
constexpr uint8_t kGoAwayPing[8] = {'g', 'o', 'a', 'w', 'a', 'y', '0', '1'};
constexpr uint8_t kKeepalivePing[8] = {'k', 'e', 'e', 'p', 'a', 'l', 'v', '1'};

using NvArray = absl::InlinedVector<nghttp2_nv, 32>;

nghttp2_nv MakeNv(absl::string_view name, absl::string_view value) {
  // nghttp2 copies names and values when the frame is submitted; the casts only satisfy its
  // non-const signature.
  return nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                    const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 8.2.2); a message translated
// from HTTP/1 may still carry them.
bool IsConnectionSpecific(absl::string_view name, absl::string_view value) {
  if (name == "te") return value != "trailers";
  return HeaderMap::IsHopByHopName(name);
}

// Builds the field list for `headers`. For requests, adds :scheme when missing and turns Host
// into :authority when there is none.
void BuildNv(const HeaderMap& headers, bool request, absl::string_view default_scheme,
             NvArray& nv) {
  nv.clear();
  bool need_scheme = request && !headers.Has(":scheme");
  std::optional<absl::string_view> host;
  if (request && !headers.Has(":authority")) host = headers.Get("host");
  bool pseudo_done = false;
  auto finish_pseudo = [&] {
    if (pseudo_done) return;
    pseudo_done = true;
    if (need_scheme) nv.push_back(MakeNv(":scheme", default_scheme));
    if (host.has_value()) nv.push_back(MakeNv(":authority", *host));
  };
  for (HeaderView h : headers) {
    bool pseudo = !h.name.empty() && h.name[0] == ':';
    if (!pseudo) {
      finish_pseudo();
      if (IsConnectionSpecific(h.name, h.value)) continue;
      if (host.has_value() && h.name == "host") continue;
    }
    nv.push_back(MakeNv(h.name, h.value));
  }
  finish_pseudo();
}

bool Is1xx(const HeaderMap& headers) {
  std::optional<absl::string_view> status = headers.Get(":status");
  return status.has_value() && status->size() == 3 && (*status)[0] == '1' && *status != "101";
}

// RFC 9113 8.3.1: a request whose :authority is not `uri-host [ ":" port ]` (userinfo included)
// is malformed. A Host field sent over HTTP/2 gets the same check, and more than one is refused
// as in HTTP/1 (RFC 9112 3.2), so neither reaches an HTTP/1 upstream. So is a :path with a byte
// a URI cannot hold (outside visible ASCII: raw UTF-8, controls, space) or a fragment ('#'), as
// the HTTP/1 parser refuses in a request-target. What is wrong, or empty.
absl::string_view MalformedRequest(const HeaderMap& headers) {
  if (std::optional<absl::string_view> path = headers.Get(":path"); path.has_value()) {
    for (const char ch : *path) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c < 0x21 || c > 0x7e || c == '#') return "invalid :path";
    }
  }
  std::optional<absl::string_view> authority = headers.Get(":authority");
  if (authority.has_value() && !ParseHostPort(*authority).has_value()) return "invalid :authority";
  std::optional<absl::string_view> host = headers.Get("host");
  if (!host.has_value()) return {};
  if (!ParseHostPort(*host).has_value()) return "invalid host";
  if (headers.Count("host") > 1) return "more than one host";
  return {};
}

uint32_t ResetReasonToErrorCode(StreamResetReason reason) {
  switch (reason) {
    case StreamResetReason::kRemoteRefusedStream:
      return NGHTTP2_REFUSED_STREAM;
    case StreamResetReason::kProtocolError:
      return NGHTTP2_PROTOCOL_ERROR;
    case StreamResetReason::kOverflow:
      return NGHTTP2_INTERNAL_ERROR;
    case StreamResetReason::kConnectionFailure:
      return NGHTTP2_CONNECT_ERROR;
    case StreamResetReason::kLocalReset:
    case StreamResetReason::kRemoteReset:
    case StreamResetReason::kConnectionTermination:
      return NGHTTP2_CANCEL;
  }
  return NGHTTP2_CANCEL;
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

absl::string_view Http2FloodName(Http2Flood flood) {
  switch (flood) {
    case Http2Flood::kNone:
      return "none";
    case Http2Flood::kControlFrames:
      return "control_frames";
    case Http2Flood::kResets:
      return "resets";
    case Http2Flood::kPriority:
      return "priority";
    case Http2Flood::kEmptyFrames:
      return "empty_frames";
    case Http2Flood::kContinuation:
      return "continuation";
    case Http2Flood::kPingSettings:
      return "ping_settings";
  }
  return "none";
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

class StreamImpl;
// Streams and their list nodes come from the thread's free lists (common/base/free_list.h).
using StreamList =
    std::list<std::unique_ptr<StreamImpl>, RecyclingAllocator<std::unique_ptr<StreamImpl>>>;

// A per-connection token bucket for the server's abuse limits: `burst` tokens, refilled at `rate`
// a second, lazily when one is taken (no timer). Zero burst: no limit.
class AbuseBucket {
 public:
  void Start(uint32_t burst, uint32_t rate, MonotonicTime now) {
    burst_ = burst;
    rate_ = rate;
    tokens_ = burst;
    refilled_ = now;
  }
  // Takes a token; false when none is left.
  bool Take(MonotonicTime now) {
    if (burst_ == 0) return true;
    if (now > refilled_) {
      tokens_ = std::min<double>(
          burst_, tokens_ + std::chrono::duration<double>(now - refilled_).count() * rate_);
      refilled_ = now;
    }
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  // Gives a token back (up to the burst).
  void Credit() { tokens_ = std::min<double>(burst_, tokens_ + 1); }

 private:
  uint32_t burst_ = 0;
  uint32_t rate_ = 0;
  double tokens_ = 0;
  MonotonicTime refilled_{};
};

// The nghttp2 session and everything shared by the streams of one connection.
class ConnectionImpl {
 public:
  ConnectionImpl(bool server, CodecIo& io, ConnectionCallbacks& callbacks,
                 ServerConnectionCallbacks* server_callbacks, const Http2Options& options,
                 event::Loop* loop);
  ~ConnectionImpl();
  // The peer stopped sending (EOF) or the connection is gone: no frame can complete an open
  // stream, so each ends now with kConnectionTermination. `can_write` is false once the
  // connection is closed (nothing may be flushed to it).
  void EndStreams(absl::string_view details, bool can_write);
  ConnectionImpl(const ConnectionImpl&) = delete;
  ConnectionImpl& operator=(const ConnectionImpl&) = delete;

  absl::Status Dispatch(net::Buffer& data);
  void GoAway();
  size_t ActiveStreams() const { return active_streams_; }
  // Some stream nghttp2 has not closed yet although its user is done with it: what it sends is
  // still queued (flow control), or its end has not been written.
  bool HasUnsentOutput() const;
  void OnUnderlyingWriteHighWatermark();
  void OnUnderlyingWriteLowWatermark();
  // All streams' unsent bytes crossed connection_buffer_limit upwards, or below half of it.
  void CheckBufferedAbove();
  void CheckBufferedBelow();
  // Raises the high watermark of every open stream not yet counted in `counted` (one of the
  // connection-wide sources: the underlying connection, the connection-wide buffer), or lowers
  // it for every stream counted there.
  void RaiseAll(bool StreamImpl::*counted);
  void LowerAll(bool StreamImpl::*counted);
  StreamEncoder& NewClientStream(StreamDecoder& decoder);
  bool CanOpenStream() const;
  Http2Flood flood() const { return flood_; }
  bool WantsClose() const {
    return dead_ || (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_));
  }
  const Http2Counters& counters() const { return counters_; }
  bool RequestHeadersInProgress() const;

 private:
  friend class StreamImpl;

  // Marks a public entry point. Leaving the outermost one writes what nghttp2 queued, fires
  // events collected while writing, and frees ended streams.
  class Entry {
   public:
    explicit Entry(ConnectionImpl& c) : c_(c) { ++c_.depth_; }
    ~Entry() {
      if (c_.depth_ == 1) c_.Flush();
      if (--c_.depth_ == 0) c_.retired_.clear();
    }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    ConnectionImpl& c_;
  };

  enum class Event { kLowWatermark, kReset };
  struct PendingEvent {
    StreamImpl* stream;
    Event event;
  };

  StreamImpl* Find(int32_t id) {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
  }
  StreamImpl& CreateStream(StreamDecoder* decoder);
  void Register(StreamImpl& s, int32_t id);
  // The stream ended for its user (completed or reset): it stops counting as active.
  void MarkDone(StreamImpl& s);
  // Frees the stream once neither the user nor nghttp2 refers to it any more.
  void MaybeRetire(StreamImpl& s);
  // Ends the stream for its user with OnResetStream (deferred while nghttp2 is writing).
  void NotifyReset(StreamImpl& s, StreamResetReason reason, absl::string_view details);
  void ResetAll(StreamResetReason reason, absl::string_view details);
  void Flush();
  // Hands out_ to CodecIo, then forgets the control frames the socket has taken since.
  void WriteOut();
  void ForgetTakenControlFrames();
  // Which flood limit the peer passed, if any (kNone: none), and what it did.
  std::pair<Http2Flood, absl::string_view> FindFlood();
  // Ends the connection with GOAWAY(ENHANCE_YOUR_CALM); returns Dispatch's error.
  absl::Status EndFlood(Http2Flood kind, absl::string_view what);
  // Server abuse limits found inside nghttp2's callbacks (which then stop the read); Dispatch
  // ends the connection. Returns the callback's result.
  int Abuse(Http2Flood kind, const char* what);
  // A DATA, HEADERS or CONTINUATION frame arrived, with or without payload (padding aside) and
  // END_STREAM: counts frames that carry nothing, one after another
  // (max_consecutive_inbound_empty_frames). Returns the callback's result.
  int CountEmptyFrame(bool has_payload, bool end_stream);
  // A stream ended early (reset by either side, or refused): takes a token (stream_reset_burst);
  // a completed response gives one back (resets_.Credit()).
  void ChargeReset();
  void SendFinalGoAway();
  // The keepalive in force now: after the peer's GOAWAY, with streams in flight, the closer watch
  // of Http2Options::goaway_keepalive_interval; otherwise keepalive_interval. Zero: none.
  Duration KeepaliveInterval() const;
  Duration KeepaliveTimeout() const;
  bool GuardingStreamsAfterGoAway() const;
  // The peer's first GOAWAY arrived (client): its streams in flight are watched from now on.
  void StartGoAwayKeepalive();
  void CreateKeepaliveTimers();
  void OnKeepaliveTimer();
  void OnKeepaliveTimeout();

  // nghttp2 callbacks.
  static ssize_t OnSend(nghttp2_session*, const uint8_t* data, size_t length, int flags,
                        void* user_data);
  static int OnSendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                        size_t length, nghttp2_data_source* source, void* user_data);
  static ssize_t OnReadData(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                            uint32_t* data_flags, nghttp2_data_source* source, void* user_data);
  static int OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data);
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* user_data);
  static int OnDataChunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user_data);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int OnFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int OnFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                            void* user_data);
  static int OnInvalidFrameRecv(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                                void* user_data);
  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                           void* user_data);
  static int OnError(nghttp2_session*, int lib_error_code, const char* msg, size_t len,
                     void* user_data);

  void HandleHeadersFrame(const nghttp2_frame& frame, StreamImpl& s);
  void HandleStreamClose(StreamImpl& s, uint32_t error_code);

  const bool server_;
  CodecIo& io_;
  ConnectionCallbacks& callbacks_;
  ServerConnectionCallbacks* const server_callbacks_;
  const Http2Options options_;
  event::Loop* const loop_;
  nghttp2_session* session_ = nullptr;
  Http2Counters counters_;

  // Every stream object alive; `retired_` holds ended ones until the outermost call returns, so
  // a stream is never freed while a frame of its own call stack still uses it.
  StreamList streams_;
  StreamList retired_;
  absl::flat_hash_map<int32_t, StreamImpl*> by_id_;
  size_t active_streams_ = 0;

  net::Buffer out_;
  uint64_t bytes_out_ = 0;  // bytes handed to CodecIo::Write so far
  // Where each control frame (PING/SETTINGS ACK, RST_STREAM) not yet known to have reached the
  // socket ends, counted like bytes_out_. Oldest first; at most max_outbound_control_frames + a
  // read's worth, since Dispatch ends the connection past the limit.
  absl::InlinedVector<uint64_t, 4> unsent_control_ends_;
  uint64_t window_updates_received_ = 0;
  uint64_t headers_received_ = 0;
  // Server abuse accounting (Http2Options): what the client did that ended the connection, set
  // from callbacks; the rapid-reset and PING/SETTINGS buckets; PRIORITY frames and streams the
  // client opened; frames in a row that carried nothing.
  Http2Flood abuse_ = Http2Flood::kNone;
  const char* abuse_what_ = "";
  Http2Flood flood_ = Http2Flood::kNone;
  AbuseBucket resets_;
  AbuseBucket control_frames_;
  MonotonicTime Now() const {
    return loop_ != nullptr ? loop_->Now() : std::chrono::steady_clock::now();
  }
  uint64_t priority_frames_received_ = 0;
  uint64_t client_streams_opened_ = 0;
  uint32_t consecutive_empty_frames_ = 0;
  uint64_t data_frames_sent_ = 0;
  bool reads_held_ = false;  // ReadDisable(true) issued for the underlying high watermark
  int depth_ = 0;
  bool in_recv_ = false;
  bool in_send_ = false;
  std::vector<PendingEvent> pending_events_;
  std::vector<PendingEvent> events_scratch_;
  NvArray nv_;  // reused for every HEADERS we submit

  bool dead_ = false;              // fatal error; nothing more is read or written
  bool underlying_above_ = false;  // the network connection is above its high watermark
  uint64_t tx_buffered_ = 0;       // unsent bytes of all streams (their tx_data_)
  bool buffered_above_ = false;    // tx_buffered_ passed connection_buffer_limit
  bool goaway_received_ = false;
  bool goaway_started_ = false;  // GoAway() called
  bool goaway_final_sent_ = false;
  // The notice's PING came back during the current read: the final GOAWAY goes once the read is
  // consumed (Dispatch), naming the last stream of the whole read.
  bool goaway_final_due_ = false;
  uint32_t sent_goaway_error_ = NGHTTP2_NO_ERROR;
  std::string last_error_;
  // Server side (RFC 9113 5.1, 5.1.1): what is known of the client's streams that are gone, so
  // that HEADERS (OnBeginFrame) or DATA (Receive) on one is told apart. Client stream ids only
  // grow: the highest opened, the ranges it skipped (implicitly closed), and the streams last reset
  // by either side; each list bounded, empty for a well-behaved client that resets nothing.
  struct RecentIds {
    static constexpr size_t kMax = 256;
    std::vector<int32_t> ids;
    size_t next = 0;
    void Add(int32_t id) {
      if (ids.size() < kMax) {
        ids.push_back(id);
      } else {
        ids[next] = id;
        next = (next + 1) % kMax;
      }
    }
    bool Has(int32_t id) const { return std::find(ids.begin(), ids.end(), id) != ids.end(); }
  };
  int32_t max_client_stream_ = 0;
  std::vector<std::pair<int32_t, int32_t>> skipped_client_streams_;  // [first, last], ≤ 16
  RecentIds reset_by_us_;
  RecentIds reset_by_peer_;
  static constexpr size_t kFrameHeaderBytes = 9;  // RFC 9113 4.1
  // Server: where frames begin in what the client sends (after its 24-byte preface), so that
  // DATA on a stream nghttp2 no longer has is judged before nghttp2 drops it without a callback.
  size_t preface_left_ = NGHTTP2_CLIENT_MAGIC_LEN;
  uint8_t frame_head_[kFrameHeaderBytes] = {};
  size_t frame_head_have_ = 0;
  size_t frame_payload_left_ = 0;
  // Hands `bytes` to nghttp2 (server: frame by frame where a DATA frame needs judging first);
  // nghttp2's error, or 0.
  int Receive(absl::string_view bytes);
  // A client stream the client opened and nghttp2 no longer has (server only).
  bool ClientStreamGone(int32_t id) const;
  // HEADERS or DATA arrived on client stream `id`, which nghttp2 no longer has (RFC 9113 5.1):
  // ignored, a stream error or a connection error, by what is known of it.
  void OnFrameOnGoneStream(int32_t id);
  // Ends the connection with GOAWAY(`error_code`) for `why`, from inside a receive callback; the
  // read that called it then reports the connection error.
  void ConnectionError(uint32_t error_code, absl::string_view why);
  bool destroying_ = false;
  // Server: the stream whose request header block began last (0: none yet). At most one header
  // block is open per connection (RFC 9113 6.10), so this is the only one that can be partial.
  int32_t rx_request_headers_id_ = 0;

  std::unique_ptr<event::Timer> keepalive_timer_;
  std::unique_ptr<event::Timer> keepalive_timeout_timer_;
  MonotonicTime last_frame_received_{};
};

class StreamImpl final : public Stream, public StreamEncoder, public ThreadRecycled<StreamImpl> {
 public:
  StreamImpl(ConnectionImpl& c, StreamDecoder* decoder) : c_(c), decoder_(decoder) {}

  // StreamEncoder
  void Encode1xxHeaders(const HeaderMap& headers) override;
  void EncodeHeaders(const HeaderMap& headers, bool end_stream) override;
  void EncodeData(net::Buffer& data, bool end_stream) override;
  void EncodeTrailers(const HeaderMap& trailers) override;
  Stream& GetStream() override { return *this; }

  // Stream
  void AddCallbacks(StreamCallbacks& callbacks) override { callbacks_.push_back(&callbacks); }
  void RemoveCallbacks(StreamCallbacks& callbacks) override {
    auto it = std::find(callbacks_.begin(), callbacks_.end(), &callbacks);
    if (it != callbacks_.end()) *it = nullptr;  // compacted lazily: may run during iteration
  }
  void ResetStream(StreamResetReason reason) override;
  void ReadDisable(bool disable) override;
  uint32_t BufferLimit() const override { return c_.options_.stream_buffer_limit; }

 private:
  friend class ConnectionImpl;

  template <typename F>
  void ForEachCallback(F&& f) {
    // Index loop: callbacks may be added or removed while we iterate.
    for (size_t i = 0; i < callbacks_.size(); ++i) {
      if (callbacks_[i] != nullptr) f(*callbacks_[i]);
    }
    callbacks_.erase(std::remove(callbacks_.begin(), callbacks_.end(), nullptr), callbacks_.end());
  }
  void RaiseWatermark() {
    if (++high_watermarks_ == 1) {
      ForEachCallback([](StreamCallbacks& cb) { cb.OnAboveWriteBufferHighWatermark(); });
    }
  }
  void LowerWatermark() {
    CHECK(high_watermarks_ > 0);
    if (--high_watermarks_ == 0) {
      ForEachCallback([](StreamCallbacks& cb) { cb.OnBelowWriteBufferLowWatermark(); });
    }
  }
  // Hands buffered data, end of stream and trailers to the decoder while it is not read-disabled.
  void DeliverPending();
  // Ends the stream for its user once the user has nothing more to do with it: it ended its own
  // message and, on a client stream, received the whole response (a server's complete response
  // ends the exchange; the rest of the request is dropped). nghttp2 may keep the stream a while
  // to send what flow control still holds, but the user may be gone by then, so no watermark or
  // reset reaches it any more (codec.h: the stream is valid until it completes).
  void MaybeCompleteForUser() {
    if (!done_ && tx_end_ && (c_.server_ || rx_end_delivered_)) c_.MarkDone(*this);
  }
  void ResumeData();
  void FireReset() {
    StreamResetReason reason = reset_reason_;
    ForEachCallback([&](StreamCallbacks& cb) { cb.OnResetStream(reason, reset_details_); });
  }

  ConnectionImpl& c_;
  StreamDecoder* decoder_;
  absl::InlinedVector<StreamCallbacks*, 2> callbacks_;
  StreamList::iterator self_;
  int32_t id_ = 0;  // 0 until a client stream's HEADERS is submitted

  // Receiving.
  HeaderMapPtr rx_headers_;  // header block being decoded
  size_t rx_header_bytes_ = 0;
  bool rx_header_overflow_ = false;
  bool rx_final_headers_ = false;  // non-1xx headers delivered
  net::Buffer rx_data_;            // received, not yet given to the decoder
  HeaderMapPtr rx_trailers_;       // received, waiting behind rx_data_
  bool rx_end_ = false;            // the peer ended its message
  bool rx_end_delivered_ = false;
  int read_disabled_ = 0;
  bool delivering_ = false;
  bool surfaced_ = false;  // the user knows the stream (client: always; server: after NewStream)

  // Sending.
  net::Buffer tx_data_;
  std::unique_ptr<HeaderMap> tx_trailers_;
  bool tx_headers_ = false;      // EncodeHeaders called
  bool tx_end_ = false;          // the user finished its message
  bool tx_deferred_ = false;     // the data source said "nothing yet"; resume on more data
  bool tx_above_ = false;        // tx_data_ above the limit
  bool conn_above_ = false;      // counted the underlying connection's high watermark
  bool buffered_above_ = false;  // counted the connection-wide buffer's high watermark
  int high_watermarks_ = 0;
  bool rst_no_error_sent_ = false;

  // Lifecycle.
  bool done_ = false;           // completed or reset, as far as the user is concerned
  bool closed_ = false;         // nghttp2 no longer knows it
  bool rst_received_ = false;   // the peer sent RST_STREAM
  bool reset_pending_ = false;  // OnResetStream queued until writing finishes
  bool low_pending_ = false;    // low watermark queued until writing finishes
  StreamResetReason reset_reason_ = StreamResetReason::kLocalReset;
  std::string reset_details_;
};

// ----- ConnectionImpl -------------------------------------------------------------------------

ConnectionImpl::ConnectionImpl(bool server, CodecIo& io, ConnectionCallbacks& callbacks,
                               ServerConnectionCallbacks* server_callbacks,
                               const Http2Options& options, event::Loop* loop)
    : server_(server),
      io_(io),
      callbacks_(callbacks),
      server_callbacks_(server_callbacks),
      options_(options),
      loop_(loop) {
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
  int rv = server_ ? nghttp2_session_server_new2(&session_, cbs, this, opt)
                   : nghttp2_session_client_new2(&session_, cbs, this, opt);
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
    if (s->done_ && s->id_ != 0 && !s->closed_) return true;
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

void ConnectionImpl::ForgetTakenControlFrames() {
  if (unsent_control_ends_.empty()) return;
  const uint64_t taken = bytes_out_ - std::min<uint64_t>(io_.UnsentBytes(), bytes_out_);
  auto first_unsent =
      std::upper_bound(unsent_control_ends_.begin(), unsent_control_ends_.end(), taken);
  unsent_control_ends_.erase(unsent_control_ends_.begin(), first_unsent);
}

std::pair<Http2Flood, absl::string_view> ConnectionImpl::FindFlood() {
  if (abuse_ != Http2Flood::kNone) return {abuse_, abuse_what_};
  ForgetTakenControlFrames();
  if (unsent_control_ends_.size() > options_.max_outbound_control_frames) {
    return {Http2Flood::kControlFrames, "control frames the peer does not read"};
  }
  const uint64_t allowed =
      5 + 2 * (headers_received_ +
               uint64_t{options_.max_inbound_window_update_frames_per_data_frame_sent} *
                   data_frames_sent_);
  if (window_updates_received_ > allowed) {
    return {Http2Flood::kControlFrames, "WINDOW_UPDATE frames without DATA sent"};
  }
  return {Http2Flood::kNone, {}};
}

int ConnectionImpl::Abuse(Http2Flood kind, const char* what) {
  if (abuse_ == Http2Flood::kNone) {
    abuse_ = kind;
    abuse_what_ = what;
  }
  // Stops nghttp2 at once: nothing more of what the client sent is processed.
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

int ConnectionImpl::CountEmptyFrame(bool has_payload, bool end_stream) {
  if (has_payload) {
    consecutive_empty_frames_ = 0;
  } else if (!end_stream &&
             ++consecutive_empty_frames_ > options_.max_consecutive_inbound_empty_frames) {
    return Abuse(Http2Flood::kEmptyFrames, "frames without payload, one after another");
  }
  return 0;
}

void ConnectionImpl::ChargeReset() {
  if (!server_ || abuse_ != Http2Flood::kNone || resets_.Take(Now())) return;
  // Seen while sending (a refusal) or receiving; either way the read stops and Dispatch ends it.
  abuse_ = Http2Flood::kResets;
  abuse_what_ = "streams reset or refused faster than stream_reset_burst allows";
}

absl::Status ConnectionImpl::EndFlood(Http2Flood kind, absl::string_view what) {
  ++counters_.floods;
  flood_ = kind;
  LOG_EVERY_N_SEC(INFO, 1) << "http2 flood (" << what << "): GOAWAY ENHANCE_YOUR_CALM";
  {
    Entry entry(*this);
    // Nothing the peer sends is read any more; the GOAWAY goes behind what it has not read yet.
    nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  }  // flushed here
  Entry entry(*this);
  dead_ = true;
  std::string message = absl::StrCat("http2 flood: ", what);
  ResetAll(StreamResetReason::kProtocolError, message);
  return absl::ResourceExhaustedError(message);
}

absl::Status ConnectionImpl::Dispatch(net::Buffer& data) {
  if (dead_) {
    data.Drain(data.length());
    return absl::FailedPreconditionError("http2 connection already failed");
  }
  int fatal = 0;
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
    return kind == Http2Flood::kNone ? absl::OkStatus() : EndFlood(kind, what);
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

bool ConnectionImpl::GuardingStreamsAfterGoAway() const {
  return !server_ && goaway_received_ && options_.goaway_keepalive_interval.count() > 0 &&
         active_streams_ > 0;
}

Duration ConnectionImpl::KeepaliveInterval() const {
  if (!GuardingStreamsAfterGoAway()) return options_.keepalive_interval;
  if (options_.keepalive_interval.count() <= 0) return options_.goaway_keepalive_interval;
  return std::min(options_.keepalive_interval, options_.goaway_keepalive_interval);
}

Duration ConnectionImpl::KeepaliveTimeout() const {
  return GuardingStreamsAfterGoAway() ? options_.goaway_keepalive_timeout
                                      : options_.keepalive_timeout;
}

void ConnectionImpl::CreateKeepaliveTimers() {
  last_frame_received_ = loop_->Now();
  keepalive_timer_ = std::make_unique<event::Timer>(*loop_, [this] { OnKeepaliveTimer(); });
  keepalive_timeout_timer_ =
      std::make_unique<event::Timer>(*loop_, [this] { OnKeepaliveTimeout(); });
}

void ConnectionImpl::StartGoAwayKeepalive() {
  if (loop_ == nullptr || dead_ || !GuardingStreamsAfterGoAway()) return;
  // Made here, not with every connection: most never see a GOAWAY.
  if (keepalive_timer_ == nullptr) CreateKeepaliveTimers();
  // The GOAWAY itself was just received: the first PING follows one interval of silence (or
  // sooner, when a keepalive of the connection's own is due first).
  last_frame_received_ = loop_->Now();
  if (keepalive_timeout_timer_->enabled()) {
    // A keepalive PING is out already: its ACK now has the shorter wait.
    keepalive_timeout_timer_->Enable(KeepaliveTimeout());
    return;
  }
  keepalive_timer_->Enable(KeepaliveInterval());
}

void ConnectionImpl::OnKeepaliveTimer() {
  if (dead_ || keepalive_timeout_timer_->enabled()) return;
  const Duration interval = KeepaliveInterval();
  // After a GOAWAY whose streams have all ended, and without a keepalive of its own, nothing is
  // left to watch: the owner closes the connection.
  if (interval.count() <= 0) return;
  // Only idle connections are probed: anything received recently proves the peer alive.
  const Duration idle = loop_->Now() - last_frame_received_;
  if (idle < interval) {
    keepalive_timer_->Enable(interval - idle);
    return;
  }
  Entry entry(*this);
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kKeepalivePing);
  keepalive_timeout_timer_->Enable(KeepaliveTimeout());
  keepalive_timer_->Enable(interval);
}

void ConnectionImpl::OnKeepaliveTimeout() {
  ++counters_.keepalive_timeouts;
  if (GuardingStreamsAfterGoAway()) {
    LOG_EVERY_N_SEC(INFO, 1) << "http2: the server went silent after its GOAWAY with "
                             << active_streams_ << " stream(s) in flight; closing the connection";
  } else {
    LOG(DEBUG) << "http2 keepalive timed out; closing";
  }
  keepalive_timer_->Disable();
  dead_ = true;
  io_.Close(/*flush=*/false);
}

// ----- nghttp2 callbacks ----------------------------------------------------------------------

ssize_t ConnectionImpl::OnSend(nghttp2_session*, const uint8_t* data, size_t length, int,
                               void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  c->out_.Append(data, length);
  return static_cast<ssize_t>(length);
}

int ConnectionImpl::OnSendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                               size_t length, nghttp2_data_source*, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr || s->tx_data_.length() < length) {
    LOG(ERROR) << "http2: DATA for stream " << frame->hd.stream_id << " has no source";
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  c->out_.Append(framehd, kFrameHeaderSize);
  size_t padlen = frame->data.padlen;
  if (padlen > 0) {
    uint8_t pad_length = static_cast<uint8_t>(padlen - 1);
    c->out_.Append(&pad_length, 1);
  }
  // Payload blocks are relinked into the output, not copied.
  c->out_.Move(s->tx_data_, length);
  c->tx_buffered_ -= length;
  if (padlen > 1) {
    static constexpr char kZeros[256] = {};
    c->out_.Append(kZeros, padlen - 1);
  }
  if (s->tx_above_ && s->tx_data_.length() <= s->BufferLimit() / 2) {
    s->tx_above_ = false;
    s->low_pending_ = true;
    c->pending_events_.push_back({s, Event::kLowWatermark});
  }
  return 0;
}

ssize_t ConnectionImpl::OnReadData(nghttp2_session* session, int32_t stream_id, uint8_t*,
                                   size_t length, uint32_t* data_flags, nghttp2_data_source*,
                                   void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  StreamImpl* s = c->Find(stream_id);
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = std::min(length, s->tx_data_.length());
  if (n == 0 && !s->tx_end_) {
    s->tx_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == s->tx_data_.length() && s->tx_end_) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->tx_trailers_ != nullptr) {
      NvArray nv;
      BuildNv(*s->tx_trailers_, false, "", nv);
      if (nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size()) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      s->tx_trailers_.reset();
    }
  }
  return static_cast<ssize_t>(n);
}

void ConnectionImpl::ConnectionError(uint32_t error_code, absl::string_view why) {
  if (last_error_.empty()) last_error_ = std::string(why);
  nghttp2_session_terminate_session2(session_, nghttp2_session_get_last_proc_stream_id(session_),
                                     error_code);
}

bool ConnectionImpl::ClientStreamGone(int32_t id) const {
  // New streams, the server's own ids, and streams nghttp2 still has are nghttp2's to judge.
  return server_ && id <= max_client_stream_ && (id & 1) == 1 &&
         nghttp2_session_find_stream(session_, id) == nullptr;
}

void ConnectionImpl::OnFrameOnGoneStream(int32_t id) {
  // A stream this side reset: the client may have sent these before it saw the RST_STREAM.
  if (reset_by_us_.Has(id)) return;
  for (const auto& [first, last] : skipped_client_streams_) {
    if (id >= first && id <= last) {
      ConnectionError(NGHTTP2_PROTOCOL_ERROR,
                      absl::StrCat("a frame on stream ", id,
                                   ", lower than a stream the client already opened"));
      return;
    }
  }
  if (reset_by_peer_.Has(id)) {
    // After receiving RST_STREAM: a stream error (RFC 9113 5.1, "closed").
    ++counters_.stream_protocol_errors;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_STREAM_CLOSED);
    return;
  }
  // Closed after both ends' END_STREAM (or longer ago than the lists above remember).
  ConnectionError(NGHTTP2_STREAM_CLOSED, absl::StrCat("a frame on closed stream ", id));
}

int ConnectionImpl::Receive(absl::string_view bytes) {
  const auto feed = [this](absl::string_view part) -> int {
    if (part.empty()) return 0;
    const ssize_t rv = nghttp2_session_mem_recv(
        session_, reinterpret_cast<const uint8_t*>(part.data()), part.size());
    return rv < 0 ? static_cast<int>(rv) : 0;
  };
  if (!server_) return feed(bytes);
  size_t fed = 0;
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t left = bytes.size() - i;
    if (preface_left_ > 0 || frame_payload_left_ > 0) {
      size_t& skip = preface_left_ > 0 ? preface_left_ : frame_payload_left_;
      const size_t n = std::min(skip, left);
      skip -= n;
      i += n;
      continue;
    }
    // A frame header, perhaps begun in an earlier piece (whose bytes nghttp2 already has).
    const size_t head_start = i;
    const uint8_t* h;
    if (frame_head_have_ == 0 && left >= kFrameHeaderBytes) {
      h = reinterpret_cast<const uint8_t*>(bytes.data()) + i;  // whole here: read in place
      i += kFrameHeaderBytes;
    } else {
      const size_t n = std::min(kFrameHeaderBytes - frame_head_have_, left);
      std::memcpy(frame_head_ + frame_head_have_, bytes.data() + i, n);
      frame_head_have_ += n;
      i += n;
      if (frame_head_have_ < kFrameHeaderBytes) break;
      frame_head_have_ = 0;
      h = frame_head_;
    }
    frame_payload_left_ = (size_t{h[0]} << 16) | (size_t{h[1]} << 8) | h[2];
    const int32_t id = static_cast<int32_t>(((uint32_t{h[5]} & 0x7f) << 24) |
                                            (uint32_t{h[6]} << 16) | (uint32_t{h[7]} << 8) | h[8]);
    if (h[3] != NGHTTP2_DATA) continue;
    // Everything before this frame first, so that nghttp2's view of the stream is current: a
    // HEADERS and a RST_STREAM earlier in these bytes may have opened and closed it (h2spec
    // http2/5.1/8 sends the three in one burst).
    if (int rv = feed(bytes.substr(fed, head_start - fed)); rv != 0) return rv;
    fed = head_start;
    if (id > max_client_stream_) continue;  // an idle stream: nghttp2's to judge
    if (ClientStreamGone(id)) {
      OnFrameOnGoneStream(id);
      // nghttp2 drops these without a callback (OnFrameRecv counts the others): empty ones on a
      // stream this side reset would otherwise be ignored forever.
      if (int rv = CountEmptyFrame(frame_payload_left_ > 0, (h[4] & NGHTTP2_FLAG_END_STREAM) != 0);
          rv != 0) {
        return rv;
      }
    }
  }
  return feed(bytes.substr(fed));
}

int ConnectionImpl::OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data) {
  // Server only.
  auto* c = static_cast<ConnectionImpl*>(user_data);
  const Http2Options& o = c->options_;
  switch (hd->type) {
    case NGHTTP2_HEADERS:
      // HEADERS only: DATA on a stream nghttp2 no longer has is dropped without a callback, and
      // judged in Receive instead.
      if (c->ClientStreamGone(hd->stream_id)) c->OnFrameOnGoneStream(hd->stream_id);
      [[fallthrough]];
    case NGHTTP2_CONTINUATION:
      if (int rv = c->CountEmptyFrame(hd->length > 0, (hd->flags & NGHTTP2_FLAG_END_STREAM) != 0);
          rv != 0) {
        return rv;
      }
      break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
      if ((hd->flags & NGHTTP2_FLAG_ACK) == 0 && !c->control_frames_.Take(c->Now())) {
        return c->Abuse(Http2Flood::kPingSettings, "PING or SETTINGS frames faster than allowed");
      }
      break;
    case NGHTTP2_PRIORITY:
      if (++c->priority_frames_received_ >
          uint64_t{o.max_inbound_priority_frames_per_stream} * (1 + c->client_streams_opened_)) {
        return c->Abuse(Http2Flood::kPriority, "PRIORITY frames out of proportion to streams");
      }
      break;
    default:
      break;
  }
  return c->abuse_ != Http2Flood::kNone ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

int ConnectionImpl::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr) {
    if (!c->server_ || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    const int32_t id = frame->hd.stream_id;
    if (id > c->max_client_stream_ + 2) {
      auto& skipped = c->skipped_client_streams_;
      if (skipped.size() == 16) skipped.erase(skipped.begin());
      skipped.emplace_back(c->max_client_stream_ + 2, id - 2);
    }
    c->max_client_stream_ = std::max(c->max_client_stream_, id);
    ++c->client_streams_opened_;
    s = &c->CreateStream(nullptr);
    c->Register(*s, frame->hd.stream_id);
    c->rx_request_headers_id_ = frame->hd.stream_id;
  }
  s->rx_headers_ = std::make_unique<HeaderMap>();
  s->rx_header_bytes_ = 0;
  s->rx_header_overflow_ = false;
  return 0;
}

int ConnectionImpl::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                             size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                             void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr || s->done_ || s->rx_headers_ == nullptr || s->rx_header_overflow_) return 0;
  s->rx_header_bytes_ += namelen + valuelen + HeaderMap::kHttp2EntryOverhead;
  if (s->rx_header_bytes_ > c->options_.max_header_list_size) {
    // Keep decoding (HPACK state must stay in sync) but stop storing.
    s->rx_header_overflow_ = true;
    s->rx_headers_->Clear();
    return 0;
  }
  s->rx_headers_->Add(absl::string_view(reinterpret_cast<const char*>(name), namelen),
                      absl::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int ConnectionImpl::OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                const uint8_t* data, size_t len, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  // The connection window comes back at once; only the stream's waits for its consumer.
  nghttp2_session_consume_connection(session, len);
  StreamImpl* s = c->Find(stream_id);
  if (s == nullptr || s->done_) return 0;
  s->rx_data_.Append(data, len);
  return 0;
}

int ConnectionImpl::OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                                void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (c->keepalive_timer_ != nullptr) c->last_frame_received_ = c->loop_->Now();
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      ++c->headers_received_;
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s != nullptr && !s->done_) c->HandleHeadersFrame(*frame, *s);
      break;
    }
    case NGHTTP2_WINDOW_UPDATE:
      ++c->window_updates_received_;
      break;
    case NGHTTP2_DATA: {
      if (c->server_) {
        if (int rv = c->CountEmptyFrame(frame->hd.length > frame->data.padlen,
                                        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
            rv != 0) {
          return rv;
        }
      }
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s == nullptr || s->done_) break;
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s->rx_end_ = true;
      s->DeliverPending();
      break;
    }
    case NGHTTP2_RST_STREAM: {
      ++c->counters_.rst_stream_received[ErrorCodeSlot(frame->rst_stream.error_code)];
      if (c->server_) c->reset_by_peer_.Add(frame->hd.stream_id);
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s != nullptr) {
        s->rst_received_ = true;
        // Cancelled before its response was complete: the work it started is wasted.
        if (!s->tx_end_) c->ChargeReset();
      }
      if (c->abuse_ != Http2Flood::kNone) return NGHTTP2_ERR_CALLBACK_FAILURE;
      break;
    }
    case NGHTTP2_GOAWAY: {
      ++c->counters_.goaway_received;
      bool first = !c->goaway_received_;
      c->goaway_received_ = true;
      // Client streams above last_stream_id were never processed: nghttp2 closes them with
      // REFUSED_STREAM right after this callback (HandleStreamClose), so they may be retried.
      // The others are still owed answers by a server that is going away: watched from now on.
      if (first) {
        c->StartGoAwayKeepalive();
        c->callbacks_.OnGoAway();
      }
      break;
    }
    case NGHTTP2_PING: {
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) break;
      if (std::memcmp(frame->ping.opaque_data, kGoAwayPing, 8) == 0) {
        if (c->server_ && c->goaway_started_) c->goaway_final_due_ = true;
      } else if (std::memcmp(frame->ping.opaque_data, kKeepalivePing, 8) == 0) {
        if (c->keepalive_timeout_timer_ != nullptr) c->keepalive_timeout_timer_->Disable();
      }
      break;
    }
    default:
      break;
  }
  (void)session;
  return 0;
}

void ConnectionImpl::HandleHeadersFrame(const nghttp2_frame& frame, StreamImpl& s) {
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  HeaderMapPtr headers = std::move(s.rx_headers_);
  if (headers == nullptr) return;
  if (s.rx_header_overflow_) {
    ++counters_.header_overflow;
    if (server_ && !s.surfaced_) {
      // The request never reaches the user: answer 431 and stop the rest of it (RFC 9113 8.1
      // allows a complete response before the request is complete).
      // OnFrameSend follows the response with RST_STREAM(NO_ERROR) if the request goes on.
      s.rx_end_ = end_stream;
      nghttp2_nv nv[] = {MakeNv(":status", "431")};
      nghttp2_submit_response(session_, s.id_, nv, 1, nullptr);
      MarkDone(s);
      return;
    }
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id_,
                              server_ ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_PROTOCOL_ERROR);
    NotifyReset(s, StreamResetReason::kOverflow, "header list too large");
    return;
  }
  if (server_ && !s.surfaced_) {
    if (absl::string_view problem = MalformedRequest(*headers); !problem.empty()) {
      // A malformed request is a stream error (RFC 9113 8.1.1), counted like the ones nghttp2
      // finds itself; the request never reaches the user.
      ++counters_.stream_protocol_errors;
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id_, NGHTTP2_PROTOCOL_ERROR);
      NotifyReset(s, StreamResetReason::kProtocolError, problem);
      return;
    }
  }
  if (end_stream) s.rx_end_ = true;
  if (server_ && !s.surfaced_) {
    s.surfaced_ = true;
    ++active_streams_;
    ++counters_.streams_started;
    s.decoder_ = &server_callbacks_->NewStream(s);
    if (s.done_) return;
    if (buffered_above_) {
      // Born while the connection holds too much: its response waits like the others'.
      s.buffered_above_ = true;
      s.RaiseWatermark();
    }
    s.rx_final_headers_ = true;
    if (end_stream) s.rx_end_delivered_ = true;
    s.decoder_->DecodeHeaders(std::move(headers), end_stream);
    return;
  }
  if (!s.rx_final_headers_) {
    if (!server_ && Is1xx(*headers)) {
      s.decoder_->Decode1xxHeaders(std::move(headers));
      return;
    }
    s.rx_final_headers_ = true;
    if (end_stream) s.rx_end_delivered_ = true;
    s.decoder_->DecodeHeaders(std::move(headers), end_stream);
    if (end_stream) s.MaybeCompleteForUser();
    return;
  }
  // Trailers: they wait behind any data the decoder has not taken yet.
  s.rx_trailers_ = std::move(headers);
  s.rx_end_ = true;
  s.DeliverPending();
}

int ConnectionImpl::OnFrameSend(nghttp2_session* session, const nghttp2_frame* frame,
                                void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
      ++c->counters_.rst_stream_sent[ErrorCodeSlot(frame->rst_stream.error_code)];
      if (c->server_) c->reset_by_us_.Add(frame->hd.stream_id);
      // A stream refused (beyond max_concurrent_streams) costs like one the client reset.
      if (frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM) c->ChargeReset();
      c->unsent_control_ends_.push_back(c->bytes_out_ + c->out_.length());
      break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
      // The frame is in out_ already (nghttp2 reports a frame sent after handing its bytes over).
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
        c->unsent_control_ends_.push_back(c->bytes_out_ + c->out_.length());
      }
      break;
    case NGHTTP2_GOAWAY:
      ++c->counters_.goaway_sent;
      if (frame->goaway.error_code != NGHTTP2_NO_ERROR) {
        c->sent_goaway_error_ = frame->goaway.error_code;
      }
      break;
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      if (frame->hd.type == NGHTTP2_DATA) ++c->data_frames_sent_;
      if (!c->server_ || (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) break;
      c->resets_.Credit();  // a response completed
      StreamImpl* s = c->Find(frame->hd.stream_id);
      // The response is complete but the request is not: tell the client to stop sending
      // (RFC 9113 8.1) rather than accept a body nobody will read.
      if (s != nullptr && !s->rx_end_ && !s->rst_no_error_sent_ && !s->closed_) {
        s->rst_no_error_sent_ = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_NO_ERROR);
      }
      break;
    }
    default:
      break;
  }
  return 0;
}

int ConnectionImpl::OnFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                                   void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr) return 0;
  // A request that never left: nghttp2 forgets the stream, so must we.
  s->closed_ = true;
  if (lib_error_code == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED) {
    ++c->counters_.streams_refused_by_goaway;
    c->NotifyReset(*s, StreamResetReason::kRemoteRefusedStream,
                   "connection going away before the request was sent");
  } else {
    c->NotifyReset(*s, StreamResetReason::kLocalReset, nghttp2_strerror(lib_error_code));
  }
  c->MaybeRetire(*s);
  return 0;
}

int ConnectionImpl::OnInvalidFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                                       int lib_error_code, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  c->last_error_ = nghttp2_strerror(lib_error_code);
  (void)frame;
  return 0;
}

int ConnectionImpl::OnError(nghttp2_session*, int, const char* msg, size_t len, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  c->last_error_.assign(msg, len);
  return 0;
}

int ConnectionImpl::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                  void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (c->destroying_) return 0;
  StreamImpl* s = c->Find(stream_id);
  if (s == nullptr) return 0;
  c->HandleStreamClose(*s, error_code);
  return 0;
}

void ConnectionImpl::HandleStreamClose(StreamImpl& s, uint32_t error_code) {
  s.closed_ = true;
  if (s.done_) {
    MaybeRetire(s);
    return;
  }
  if (server_ && s.rst_no_error_sent_) {
    // The response completed first; the rest of the request was declined on purpose.
    MarkDone(s);
    return;
  }
  // A server stream the peer reset before our response ended was cancelled, whatever the code
  // (RST_STREAM(NO_ERROR) is only a normal end when the response is complete, RFC 9113 8.1).
  const bool cancelled = server_ && s.rst_received_ && !s.tx_end_;
  if (s.rx_end_ && error_code == NGHTTP2_NO_ERROR && !cancelled) {
    // Normal end; data still waiting for a read-disabled decoder is delivered later.
    if (s.rx_end_delivered_ || s.decoder_ == nullptr) {
      MarkDone(s);
    } else {
      s.DeliverPending();
    }
    return;
  }
  StreamResetReason reason;
  std::string details;
  if (s.rst_received_) {
    reason = error_code == NGHTTP2_REFUSED_STREAM ? StreamResetReason::kRemoteRefusedStream
                                                  : StreamResetReason::kRemoteReset;
    details = absl::StrCat("peer reset: ", ErrorCodeSlotName(ErrorCodeSlot(error_code)));
  } else if (error_code == NGHTTP2_REFUSED_STREAM) {
    reason = StreamResetReason::kRemoteRefusedStream;  // above the peer's GOAWAY last_stream_id
    details = "refused by GOAWAY";
    ++counters_.streams_refused_by_goaway;
  } else if (error_code == NGHTTP2_NO_ERROR || error_code == NGHTTP2_CANCEL) {
    reason = StreamResetReason::kConnectionTermination;
    details = "stream closed before completion";
  } else {
    reason = StreamResetReason::kProtocolError;
    ++counters_.stream_protocol_errors;
    details = absl::StrCat("stream error: ", ErrorCodeSlotName(ErrorCodeSlot(error_code)));
  }
  NotifyReset(s, reason, details);
  MaybeRetire(s);
}

// ----- StreamImpl -----------------------------------------------------------------------------

void StreamImpl::Encode1xxHeaders(const HeaderMap& headers) {
  if (done_ || !c_.server_ || id_ == 0) return;
  ConnectionImpl::Entry entry(c_);
  BuildNv(headers, false, "", c_.nv_);
  nghttp2_submit_headers(c_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, c_.nv_.data(), c_.nv_.size(),
                         nullptr);
}

void StreamImpl::EncodeHeaders(const HeaderMap& headers, bool end_stream) {
  CHECK(!tx_headers_) << "EncodeHeaders called twice";
  tx_headers_ = true;
  tx_end_ = end_stream;
  if (done_) return;
  ConnectionImpl::Entry entry(c_);
  nghttp2_data_provider provider;
  provider.source.ptr = nullptr;
  provider.read_callback = &ConnectionImpl::OnReadData;
  nghttp2_data_provider* prd = end_stream ? nullptr : &provider;
  if (c_.server_) {
    BuildNv(headers, false, "", c_.nv_);
    int rv = nghttp2_submit_response(c_.session_, id_, c_.nv_.data(), c_.nv_.size(), prd);
    if (rv != 0) LOG(DEBUG) << "http2 response on stream " << id_ << ": " << nghttp2_strerror(rv);
    MaybeCompleteForUser();
    return;
  }
  BuildNv(headers, true, c_.options_.default_scheme, c_.nv_);
  int32_t id =
      nghttp2_submit_request(c_.session_, nullptr, c_.nv_.data(), c_.nv_.size(), prd, nullptr);
  if (id < 0) {
    StreamResetReason reason = (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE || c_.goaway_received_)
                                   ? StreamResetReason::kRemoteRefusedStream
                                   : StreamResetReason::kLocalReset;
    c_.NotifyReset(*this, reason, nghttp2_strerror(id));
    return;
  }
  c_.Register(*this, id);
  MaybeCompleteForUser();
}

void StreamImpl::ResumeData() {
  if (id_ != 0 && tx_deferred_ && !closed_) {
    tx_deferred_ = false;
    nghttp2_session_resume_data(c_.session_, id_);
  }
}

void StreamImpl::EncodeData(net::Buffer& data, bool end_stream) {
  CHECK(tx_headers_ && !tx_end_) << "EncodeData outside a message";
  if (done_) {
    data.Drain(data.length());
    return;
  }
  // The entry spans the whole call: the stream may complete while flushing, and must stay
  // allocated until this call returns.
  ConnectionImpl::Entry entry(c_);
  c_.tx_buffered_ += data.length();
  tx_data_.Move(data);
  tx_end_ = end_stream;
  ResumeData();
  // Checked after a write attempt, so bytes the window takes at once never raise it.
  if (c_.depth_ == 1) c_.Flush();
  if (end_stream) MaybeCompleteForUser();
  if (!done_ && !tx_above_ && tx_data_.length() > BufferLimit()) {
    tx_above_ = true;
    RaiseWatermark();
  }
  if (!c_.buffered_above_ && c_.tx_buffered_ > c_.options_.connection_buffer_limit) {
    c_.CheckBufferedAbove();
  }
}

void StreamImpl::EncodeTrailers(const HeaderMap& trailers) {
  CHECK(tx_headers_ && !tx_end_) << "EncodeTrailers outside a message";
  if (trailers.empty()) {
    net::Buffer empty;
    EncodeData(empty, true);
    return;
  }
  tx_end_ = true;
  if (done_) return;
  ConnectionImpl::Entry entry(c_);
  tx_trailers_ = std::make_unique<HeaderMap>(trailers);
  ResumeData();
  MaybeCompleteForUser();
}

void StreamImpl::ResetStream(StreamResetReason reason) {
  if (done_) return;
  ConnectionImpl::Entry entry(c_);
  if (id_ != 0 && !closed_) {
    nghttp2_submit_rst_stream(c_.session_, NGHTTP2_FLAG_NONE, id_, ResetReasonToErrorCode(reason));
  }
  c_.NotifyReset(*this, reason, "local reset");
}

void StreamImpl::ReadDisable(bool disable) {
  if (disable) {
    ++read_disabled_;
    return;
  }
  CHECK(read_disabled_ > 0) << "unbalanced ReadDisable(false)";
  if (--read_disabled_ > 0 || done_) return;
  ConnectionImpl::Entry entry(c_);
  DeliverPending();
}

void StreamImpl::DeliverPending() {
  if (done_ || delivering_ || decoder_ == nullptr || !rx_final_headers_) return;
  delivering_ = true;
  while (read_disabled_ == 0 && !done_ && !rx_end_delivered_) {
    bool end = rx_end_ && rx_trailers_ == nullptr;
    if (!rx_data_.empty() || end) {
      size_t n = rx_data_.length();
      if (n > 0 && !closed_) nghttp2_session_consume_stream(c_.session_, id_, n);
      if (end) rx_end_delivered_ = true;
      decoder_->DecodeData(rx_data_, end);
      rx_data_.Clear();
      continue;
    }
    if (rx_trailers_ != nullptr) {
      rx_end_delivered_ = true;
      decoder_->DecodeTrailers(std::move(rx_trailers_));
      continue;
    }
    break;
  }
  delivering_ = false;
  if (!rx_end_delivered_) return;
  MaybeCompleteForUser();
  // nghttp2 may have closed the stream normally while data waited for this decoder.
  if (closed_ && !done_) c_.MarkDone(*this);
}

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
