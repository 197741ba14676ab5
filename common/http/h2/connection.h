#pragma once

// Internal to the HTTP/2 codec (codec.h is the interface and states the contracts): ConnectionImpl,
// the nghttp2 session and everything the streams of one connection share, and StreamImpl, one
// stream. ServerCodec and ClientCodec each own one ConnectionImpl, which owns its streams.
// Everything runs on the connection's thread. Their members are defined by concern:
//   codec.cc          options, the connection's core (Dispatch, Flush, streams' lifecycle, GOAWAY,
//                     watermarks) and the public ServerCodec / ClientCodec
//   keepalive.cc      keepalive PINGs, and the closer watch of a server that sent GOAWAY
//   callbacks.cc      nghttp2's session callbacks: frames and fields received, frames sent
//   frame_scanner.cc  server: frame boundaries in the client's bytes before nghttp2 reads them, and
//                     frames on streams that are gone (RFC 9113 5.1)
//   flood.cc          flood and abuse accounting (Http2Options' flood limits, Http2Flood)
//   stream.cc         StreamImpl: encoding, resets, read-disable, delivery to the decoder
// with header_conversion.h (HeaderMap <-> nghttp2 fields) and abuse_bucket.h beside them.

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/free_list.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/h2/abuse_bucket.h"
#include "common/http/h2/codec.h"
#include "common/http/h2/header_conversion.h"
#include "common/net/buffer.h"

namespace meshlet::http::h2::codec_internal {

// PING payloads that tell our own PINGs apart.
inline constexpr uint8_t kGoAwayPing[8] = {'g', 'o', 'a', 'w', 'a', 'y', '0', '1'};
inline constexpr uint8_t kKeepalivePing[8] = {'k', 'e', 'e', 'p', 'a', 'l', 'v', '1'};

class StreamImpl;
// Streams and their list nodes come from the thread's free lists (common/base/free_list.h).
using StreamList =
    std::list<std::unique_ptr<StreamImpl>, RecyclingAllocator<std::unique_ptr<StreamImpl>>>;

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
  bool FloodDraining() const { return flood_draining_ && !dead_; }
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
  // The client passed a server abuse limit, found inside nghttp2's callbacks. Drains the
  // connection (StartFloodDrain) when Http2Options::drain_on_flood allows it, `may_drain` (the
  // connection can go on after the frame that passed it) and streams other than `closing` are in
  // flight; returns true then. Otherwise (and during a drain) sets abuse_ and returns false: the
  // callback stops the read and Dispatch ends the connection.
  bool FloodFound(Http2Flood kind, const char* what, bool may_drain,
                  const StreamImpl* closing = nullptr);
  // FloodFound from a callback; returns the callback's result (0 while draining).
  int Abuse(Http2Flood kind, const char* what, bool may_drain = true);
  // GOAWAY(ENHANCE_YOUR_CALM) naming the last stream accepted; later streams are refused.
  void StartFloodDrain(Http2Flood kind, const char* what);
  // Server: a new stream (`id`) after this side's GOAWAY, which the user never sees. Counted once
  // per stream; during a flood's drain, more than max_concurrent_streams of them end the
  // connection. Returns the callback's result.
  int RefuseAfterGoAway(int32_t id);
  // A DATA, HEADERS or CONTINUATION frame arrived, with or without payload (padding aside) and
  // END_STREAM: counts frames that carry nothing, one after another
  // (max_consecutive_inbound_empty_frames). `in_header_block`: HEADERS or CONTINUATION, after
  // which no other frame may come (the connection cannot drain). Returns the callback's result.
  int CountEmptyFrame(bool has_payload, bool end_stream, bool in_header_block = false);
  // Server: the client reset `s` before its response was complete. Premature (within
  // stream_reset_min_lifetime of its HEADERS, no response headers yet): takes a token
  // (stream_reset_burst), like a refused stream (ChargeReset); otherwise gives one back, like a
  // completed response (resets_.Credit()).
  void JudgeReset(const StreamImpl& s);
  // A premature reset (of `s`; null: a stream refused after a flood's GOAWAY), counted and
  // charged.
  void PrematureReset(const StreamImpl* s);
  // A premature reset or a refusal takes a token; with none left, a flood (FloodFound, `closing`
  // the stream being reset).
  void ChargeReset(const StreamImpl* closing = nullptr);
  void CountRstSent(uint32_t error_code);
  // Server, for a stream whose response is out and whose request is not: once the client has
  // no stream window left for the rest of it (nobody reads it), RST_STREAM(NO_ERROR) asks it to
  // stop (RFC 9113 8.1) instead of leaving it blocked. Until then the stream stays half-closed
  // (local) and its frames are judged as on any open stream (RFC 9113 5.1, 8.1.1). `at_once`:
  // whatever the window.
  void DeclineRestOnceOutOfWindow(StreamImpl& s, bool at_once = false);
  void CountGoAway(bool sent, uint32_t error_code);
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
  const Http2Stats& stats_;  // Http2Options::stats, or handles that count nothing

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
  // A flood's GOAWAY is queued or sent (Http2Options::drain_on_flood): new streams are refused,
  // those up to flood_last_stream_ go on. OnFloodDrain is due after the current read.
  bool flood_draining_ = false;
  bool flood_drain_due_ = false;
  int32_t flood_last_stream_ = 0;
  // Server: the highest new stream refused after a GOAWAY (each is counted once), the first one
  // refused in the current read (a reset of it in that read is premature), the lowest
  // last-stream-id of the GOAWAYs sent (nghttp2 ignores new streams above it), and the streams
  // refused during a flood's drain.
  int32_t refused_max_stream_ = 0;
  int32_t refused_this_read_ = 0;  // the first new stream refused during this Dispatch; 0: none
  int32_t goaway_sent_last_stream_ = INT32_MAX;
  uint64_t refused_in_flood_drain_ = 0;
  AbuseBucket resets_;
  AbuseBucket control_frames_;
  MonotonicTime Now() const {
    if (options_.clock != nullptr) return options_.clock->Now();
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
  NvArray nv_;                  // reused for every HEADERS we submit
  VaryingNames varying_names_;  // which per-message field names to index next (BuildNv)

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
  // Server: the response's END_STREAM went out. Until the request ends too the stream is
  // half-closed (local) and what the client sends on it is still read and checked.
  bool tx_end_sent_ = false;
  bool rst_no_error_sent_ = false;  // server: the rest of the request declined (RFC 9113 8.1)

  // Lifecycle.
  MonotonicTime opened_{};      // server: when its HEADERS began (the loop's turn clock)
  bool done_ = false;           // completed or reset, as far as the user is concerned
  bool closed_ = false;         // nghttp2 no longer knows it
  bool rst_received_ = false;   // the peer sent RST_STREAM
  bool reset_pending_ = false;  // OnResetStream queued until writing finishes
  bool low_pending_ = false;    // low watermark queued until writing finishes
  StreamResetReason reset_reason_ = StreamResetReason::kLocalReset;
  std::string reset_details_;
};

}  // namespace meshlet::http::h2::codec_internal
