#pragma once

// HTTP/2 codec over nghttp2: ServerCodec and ClientCodec implement http::ServerConnection and
// http::ClientConnection (common/http/codec.h) for one network connection each. The codec is
// transport-agnostic: it gets wire bytes through Dispatch() and writes through CodecIo, so it
// serves h2c with prior knowledge and h2 over TLS (ALPN "h2") alike.
//
// Ownership: the owner of the network connection owns the codec; the codec owns its streams
// (each StreamEncoder/Stream stays valid until the stream completes or OnResetStream fires, and
// its memory is released at the end of the codec call during which it ended). CodecIo and the
// connection callbacks are not owned and must outlive the codec.
// A stream completes for its user when the user has ended its own message and, on a client
// stream, the whole response has been delivered; a server stream completes with its response.
// From then on no callback reaches the user, which may be gone: frames that flow control still
// holds back are sent by the codec alone, and what happens to them (a reset, the connection
// closing) is not reported.
//
// When callbacks fire (all on the connection's thread):
// - Decoding callbacks (NewStream, Decode*, OnGoAway, remote resets) fire from inside
//   Dispatch(). Encoding calls made from inside them are queued and written once Dispatch's
//   input is consumed, so one read produces one batched write.
// - Stream watermarks, and resets the codec finds while writing (e.g. a request refused by a
//   GOAWAY before it was sent), fire after the write path finishes, never from inside nghttp2.
// - Stream::ReadDisable(false) may deliver the stream's buffered data before it returns.
// - EncodeHeaders on a client stream may call OnResetStream(kRemoteRefusedStream) before it
//   returns if no new stream can be started (GOAWAY received, stream ids exhausted).
// - OnFloodDrain fires from inside Dispatch, once its input is consumed (Http2Options::
//   drain_on_flood).
// - Destroying the codec resets every stream that has not ended with kConnectionTermination.
// - A server stream whose response completes before its request ends for its user with the
//   response; the rest of the request is dropped, its stream window kept. The stream stays
//   half-closed (local) in the codec, so what the client still sends on it is judged as on any
//   open stream (RFC 9113 5.1, 8.1.1: content-length, trailers, WINDOW_UPDATE overflow; after its
//   END_STREAM, frames on a closed stream), until the request ends or the client runs out of
//   stream window; then RST_STREAM(NO_ERROR) asks it to stop (RFC 9113 8.1). A request the codec
//   answers itself (431) is told to stop at once.
// - Server: HEADERS or DATA on a client stream that is gone (RFC 9113 5.1) end the connection
//   (GOAWAY STREAM_CLOSED, or PROTOCOL_ERROR for a skipped id) unless the client reset that
//   stream (RST_STREAM(STREAM_CLOSED) for it) or this side did (ignored); Dispatch then returns
//   the connection error like any other. A request whose :path holds bytes no URI holds is reset
//   with PROTOCOL_ERROR before the user sees it.
//
// Output the peer does not read: while the underlying connection is above its write high watermark
// the codec stops reading it (CodecIo::ReadDisable), so a peer that sends without reading gets no
// more replies queued than one read's worth; control frames it asks for and leaves unread past
// max_outbound_control_frames end the connection (flood protection, Http2Options).
//
// Flow control: automatic WINDOW_UPDATE is off. Connection-level window is returned as bytes
// arrive (so one slow stream cannot stall the others), stream-level window only as the stream's
// decoder receives them: a read-disabled stream stops its peer after one stream window
// (initial_stream_window_size), while other streams keep flowing. On the sending side, each
// stream's unsent bytes above stream_buffer_limit raise OnAboveWriteBufferHighWatermark, and the
// peer's window draining them below half of it raises OnBelowWriteBufferLowWatermark; the
// underlying connection's watermarks are forwarded to every open stream, and so is the crossing of
// connection_buffer_limit by all streams' unsent bytes together.

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/http/codec.h"
#include "common/stats/stats.h"

namespace meshlet::event {
class Loop;
}

namespace meshlet::http::h2 {

struct Http2Stats;

struct Http2Options {
  // SETTINGS_MAX_CONCURRENT_STREAMS we advertise; streams beyond it are refused.
  uint32_t max_concurrent_streams = 1024;
  // SETTINGS_INITIAL_WINDOW_SIZE: bytes a peer may send on one stream before we consume them.
  uint32_t initial_stream_window_size = 256 * 1024;
  // Connection-level receive window.
  uint32_t initial_connection_window_size = 1024 * 1024;
  // SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 6.5.2 accounting: name + value + 32 per field).
  // Larger request headers get a 431 response; larger response headers or trailers reset the
  // stream with kOverflow.
  uint32_t max_header_list_size = 60 * 1024;
  // SETTINGS_MAX_FRAME_SIZE: the largest frame payload we accept (16 KiB .. 16 MiB - 1).
  uint32_t max_frame_size = 16 * 1024;
  // Unsent bytes per stream above which the stream reports its high watermark.
  uint32_t stream_buffer_limit = 256 * 1024;
  // Unsent bytes of all streams together above which every stream reports its high watermark
  // (and streams opened meanwhile start above it), until they drain below half. A peer that opens
  // many streams and gives them no window (window abuse) holds about this much, not
  // max_concurrent_streams × stream_buffer_limit.
  uint32_t connection_buffer_limit = 4 * 1024 * 1024;
  // Client only: the peer's stream limit assumed until its SETTINGS arrive.
  uint32_t assumed_peer_max_concurrent_streams = 100;
  // Client only: :scheme sent when a request has none (e.g. translated from HTTP/1).
  std::string default_scheme = "http";
  // Needs a Loop (either side): send a PING once nothing has been received for
  // `keepalive_interval` (zero: never) and close the connection if its ACK does not arrive
  // within `keepalive_timeout`. A peer whose host vanished, or whose process stopped, without
  // closing its connections is noticed this way.
  Duration keepalive_interval{0};
  Duration keepalive_timeout = std::chrono::seconds(20);
  // Client only, needs a Loop: once the server has sent GOAWAY it is going away, and it may vanish
  // with its network (its pod torn down, its host shut down) before the streams it still owes
  // answers get them, with no FIN or RST ever arriving. While such streams are in flight, a PING
  // goes out whenever nothing has been received for `goaway_keepalive_interval`, and the
  // connection closes if its ACK does not arrive within `goaway_keepalive_timeout`: the streams
  // end with kConnectionTermination, which the caller may retry elsewhere, instead of waiting for
  // their own timeouts. A server that is merely slow to answer still acknowledges PINGs at once.
  // Zero interval: off (then only keepalive_interval applies).
  Duration goaway_keepalive_interval = std::chrono::seconds(1);
  Duration goaway_keepalive_timeout = std::chrono::seconds(1);
  // Flood protection. Past either limit the connection ends with GOAWAY(ENHANCE_YOUR_CALM) and
  // Dispatch() fails with a ResourceExhausted status (Http2Counters::floods).
  // Replies owed to the peer (PING and SETTINGS acknowledgements, RST_STREAM) that it has not
  // taken yet: written, but still in the connection's write buffer (CodecIo::UnsentBytes). A
  // peer that keeps asking without reading passes it; one that reads never does.
  uint32_t max_outbound_control_frames = 1000;
  // WINDOW_UPDATE frames received may be at most 5 + 2 × (HEADERS frames received + this ×
  // DATA frames sent): a window is only worth updating for data this side sends.
  uint32_t max_inbound_window_update_frames_per_data_frame_sent = 10;
  // Server only. Rapid reset (CVE-2023-44487): a premature reset — a stream the client resets
  // before any response headers and less than `stream_reset_min_lifetime` after its HEADERS
  // arrived, or a stream this side refuses (beyond max_concurrent_streams) — takes a token from a
  // bucket of `stream_reset_burst` tokens. Every other stream that ends gives one back: a response
  // that completes, and a stream the client resets later (a caller's timeout: it held its
  // concurrency slot for that long) or after the response began; so does every second that
  // passes (`stream_resets_per_second`). A client that finds the bucket empty — more premature
  // resets than other stream ends, by more than the burst — has its connection ended. Zero
  // burst: no limit of our own (nghttp2's default then applies). Zero lifetime: only resets after
  // the response began, are late: no reset is premature (refusals still are). docs/security.md,
  // ADR 0078.
  uint32_t stream_reset_burst = 200;
  uint32_t stream_resets_per_second = 20;
  Duration stream_reset_min_lifetime = std::chrono::milliseconds(10);
  // Server only. PRIORITY frames (deprecated by RFC 9113) received may be at most this × (1 +
  // streams the client opened).
  uint32_t max_inbound_priority_frames_per_stream = 100;
  // Server only. Frames that carry nothing and end nothing — DATA without payload (padding
  // aside) or END_STREAM, HEADERS or CONTINUATION with an empty block fragment — at most this
  // many in a row.
  uint32_t max_consecutive_inbound_empty_frames = 1;
  // CONTINUATION frames after one HEADERS frame (CONTINUATION flood, 2024). A header block is
  // bounded by max_header_list_size besides; nghttp2 refuses a single field above 64 KiB.
  uint32_t max_continuation_frames = 8;
  // Server only. PING and SETTINGS frames (not acknowledgements) take a token each from a bucket
  // of `control_frame_burst`, refilled at `control_frames_per_second`: a client that reads its
  // acknowledgements may still not make the sidecar answer at line rate (gRPC servers allow a
  // ping every few minutes; keepalive and BDP probes send a few a second at most). Zero burst:
  // no limit.
  uint32_t control_frame_burst = 1000;
  uint32_t control_frames_per_second = 100;
  // Server only. Past a flood limit that leaves the connection usable — rapid reset, PRIORITY,
  // empty DATA frames, PING/SETTINGS rate — while streams the user accepted are in flight, the
  // connection drains instead of ending: GOAWAY(ENHANCE_YOUR_CALM) names the last stream
  // accepted, later streams are refused (not handed to the user; RFC 9113 6.8), the streams in
  // flight may finish, and ServerConnectionCallbacks::OnFloodDrain fires (after the read that
  // found it). The limits stay in force meanwhile, and a rapid reset leaves its bucket empty:
  // a client that goes on (a premature reset, a stream it opens and resets in one read, more
  // refused streams than max_concurrent_streams, any limit passed) has the connection ended as
  // below, in the read that carries it. Resets of refused streams in a later read (a client that
  // read the GOAWAY cancelling them) are not charged. The codec has no timer: the owner bounds
  // the drain. Off, or with nothing in flight, or past the other limits (replies left unread,
  // WINDOW_UPDATEs, CONTINUATION), the connection ends at once.
  bool drain_on_flood = false;
  // Where the codec counts what it does besides its own Http2Counters (a worker's stats shard);
  // not owned, must outlive the codec. Null: counted only in Http2Counters.
  const Http2Stats* stats = nullptr;
  // The time a stream's lifetime and the abuse buckets are measured on: a worker's
  // event::TurnClock, one reading per loop turn (ADR 0027). Not owned, must outlive the codec.
  // Null: the loop's time, or steady_clock without a loop.
  const Clock* clock = nullptr;
};

// Checks ranges RFC 9113 imposes (window sizes, frame size) and basic sanity.
absl::Status ValidateOptions(const Http2Options& options);

// HTTP/2 error codes (RFC 9113 section 7) have one counter slot each; unknown codes share the
// last slot.
inline constexpr size_t kErrorCodeSlots = 15;
size_t ErrorCodeSlot(uint32_t error_code);
// "NO_ERROR", "PROTOCOL_ERROR", ..., "HTTP_1_1_REQUIRED"; "UNKNOWN" for the last slot.
absl::string_view ErrorCodeSlotName(size_t slot);

// The Http2Options limit that ended a connection with ENHANCE_YOUR_CALM.
enum class Http2Flood {
  kNone,
  kControlFrames,  // replies owed and left unread; WINDOW_UPDATEs out of proportion
  kResets,         // stream_reset_burst
  kPriority,       // max_inbound_priority_frames_per_stream
  kEmptyFrames,    // max_consecutive_inbound_empty_frames
  kContinuation,   // max_continuation_frames
  kPingSettings,   // control_frame_burst
};
inline constexpr size_t kHttp2FloodKinds = 7;
// "control_frames", "resets", "priority", "empty_frames", "continuation", "ping_settings"
// ("none" for kNone).
absl::string_view Http2FloodName(Http2Flood flood);

// Per-codec counters; the sidecar folds them into its stats.
struct Http2Counters {
  std::array<uint64_t, kErrorCodeSlots> rst_stream_sent{};      // by error code slot
  std::array<uint64_t, kErrorCodeSlots> rst_stream_received{};  // by error code slot
  uint64_t goaway_sent = 0;
  uint64_t goaway_received = 0;
  uint64_t header_overflow = 0;             // header lists over max_header_list_size
  uint64_t stream_protocol_errors = 0;      // malformed messages (stream reset)
  uint64_t connection_protocol_errors = 0;  // Dispatch() failures
  uint64_t streams_refused_by_goaway = 0;   // client streams the peer's GOAWAY refused
  uint64_t keepalive_timeouts = 0;  // either keepalive (after a GOAWAY too) closed the connection
  uint64_t streams_started = 0;
  // Connections ended or drained with ENHANCE_YOUR_CALM (Http2Options limits): at most one.
  uint64_t floods = 0;
  // Server: client resets before the response was complete, told apart as in Http2Options'
  // rapid-reset limit (refused streams are counted in rst_stream_sent). A stream refused after a
  // flood's GOAWAY that the client then resets is premature too.
  uint64_t premature_resets = 0;
  uint64_t late_resets = 0;
  // Server: new streams after this side's GOAWAY (the final one of a drain, or a flood's), which
  // never reach the user (RFC 9113 6.8: ignored, the client retries them elsewhere).
  uint64_t streams_refused_after_goaway = 0;
};

// Counter handles (common/stats) the server codec adds to where it counts in Http2Counters, so
// that its owner exports totals over every connection while they run (the sidecar: HttpStats,
// docs/stats.md). Default handles count nothing. Used on the codec's thread only, like any
// handle of a worker's shard; the codec keeps a pointer (Http2Options::stats).
struct Http2Stats {
  std::array<Counter, kErrorCodeSlots> rst_stream_sent;      // by error code slot
  std::array<Counter, kErrorCodeSlots> rst_stream_received;  // by error code slot
  // GOAWAY frames, by error code slot (a graceful drain sends two: the notice and the final one).
  std::array<Counter, kErrorCodeSlots> goaway_sent;
  std::array<Counter, kErrorCodeSlots> goaway_received;
  Counter premature_resets;
  Counter late_resets;
  Counter streams_refused_after_goaway;
  // Streams refused (REFUSED_STREAM) beyond max_concurrent_streams.
  Counter streams_refused_over_limit;
  // Server: requests the codec answered 431 itself (header list over max_header_list_size);
  // they never reach the user, whose count of answered requests this belongs to.
  Counter requests_answered_431;
};

namespace codec_internal {
class ConnectionImpl;  // connection.h
}

// Server side of one connection: expects the client preface and sends SETTINGS at once.
class ServerCodec final : public ServerConnection {
 public:
  // `loop` (optional) runs the keepalive timers.
  ServerCodec(CodecIo& io, ServerConnectionCallbacks& callbacks, const Http2Options& options = {},
              event::Loop* loop = nullptr);
  ~ServerCodec() override;

  absl::Status Dispatch(net::Buffer& data) override;
  // Graceful: GOAWAY with the maximum stream id plus a PING; the final GOAWAY (last stream
  // processed) goes out when the PING is acknowledged, or on a second GoAway() call. Every stream
  // that reached the user is at or below the final GOAWAY's last-stream-id (the ACK's GOAWAY
  // waits for the end of the read that carried it); the streams above it never reach the user.
  void GoAway() override;
  Protocol protocol() const override { return Protocol::kHttp2; }
  size_t ActiveStreams() const override;
  // A stream complete for its user whose last DATA frames wait for the peer's window.
  bool HasUnsentOutput() const override;
  void OnUnderlyingWriteHighWatermark() override;
  void OnUnderlyingWriteLowWatermark() override;

  const Http2Counters& counters() const;
  // The limit that ended the connection (Dispatch returned ResourceExhausted), or while it drains
  // (Http2Options::drain_on_flood), the one that made it drain. kNone before.
  Http2Flood flood() const;
  // A flood's GOAWAY went out and the streams in flight finish: no new stream reaches the user.
  // False again once the connection ended (Dispatch failed).
  bool flood_draining() const;
  // Neither side will send or accept anything more (GOAWAY done, no streams): close it.
  bool WantsClose() const;
  // A request's HEADERS arrived without END_HEADERS and its CONTINUATION frames have not ended
  // the block yet. Nothing else may arrive on the connection meanwhile, and the stream reaches
  // the user only once the block is complete, so the owner bounds it with a timer (polled after
  // each Dispatch). Header blocks nghttp2 ignores (refused streams) are not reported.
  bool request_headers_in_progress() const;
  // Open streams end with kConnectionTermination: at the peer's EOF, or when the connection is
  // gone (then nothing more is written).
  absl::Status OnEndOfStream() override;
  void OnConnectionClosed() override;

 private:
  std::unique_ptr<codec_internal::ConnectionImpl> impl_;
};

// Client side of one connection: sends the preface and SETTINGS at once. `loop` (optional) runs
// the keepalive timers.
class ClientCodec final : public ClientConnection {
 public:
  ClientCodec(CodecIo& io, ConnectionCallbacks& callbacks, const Http2Options& options = {},
              event::Loop* loop = nullptr);
  ~ClientCodec() override;

  absl::Status Dispatch(net::Buffer& data) override;
  // Sends GOAWAY: this client opens no more streams; the ones in flight finish.
  void GoAway() override;
  Protocol protocol() const override { return Protocol::kHttp2; }
  size_t ActiveStreams() const override;
  void OnUnderlyingWriteHighWatermark() override;
  void OnUnderlyingWriteLowWatermark() override;

  StreamEncoder& NewStream(StreamDecoder& response_decoder) override;
  bool CanOpenStream() const override;

  const Http2Counters& counters() const;
  bool WantsClose() const;
  // Open streams end with kConnectionTermination: at the peer's EOF, or when the connection is
  // gone (then nothing more is written).
  absl::Status OnEndOfStream() override;
  void OnConnectionClosed() override;

 private:
  std::unique_ptr<codec_internal::ConnectionImpl> impl_;
};

}  // namespace meshlet::http::h2
