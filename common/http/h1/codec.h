#pragma once

// The HTTP/1.1 codec: http::ServerConnection (ServerCodec) and http::ClientConnection
// (ClientCodec) over the strict incremental parser in parser.h. One codec per network connection;
// a request decoded here can be re-encoded by the HTTP/2 codec and vice versa, because both speak
// only the interfaces in common/http/codec.h.
//
// Ownership: whoever owns the network connection owns the codec, implements CodecIo for it, and
// feeds it bytes (Dispatch), end of input (OnEndOfStream) and the connection's end
// (OnConnectionClosed). The codec owns at most one stream at a time (HTTP/1 has no multiplexing;
// pipelined requests are parsed one after another) and reuses that stream object, its buffers and
// its header scratch space across the requests of a keep-alive connection. The StreamEncoder
// handed out is valid until the stream completes or is reset, as codec.h says; after that the
// same object may serve the next request, so a stale reference must not be used.
//
// When callbacks fire (all on the loop thread):
// - Decoding callbacks (ServerConnectionCallbacks::NewStream, StreamDecoder::Decode*) fire from
//   Dispatch() and OnEndOfStream(), or from a zero-delay timer on the Loop when the codec resumes
//   input it had to hold back (a pipelined request waiting for the previous response, or data
//   that arrived while the stream was read-disabled). They never fire from inside an Encode*,
//   ReadDisable or ResetStream call, so users may call those from anywhere without re-entrancy.
// - The server calls NewStream when a request's header section is complete, right before
//   DecodeHeaders: an owner's request-header read timeout is cancelled there.
//   request_head_in_progress() tells whether a partial request head is buffered (408 vs. idle).
// - StreamCallbacks::OnResetStream fires from ResetStream(), from Dispatch() on a protocol error,
//   and from OnEndOfStream()/OnConnectionClosed() when the connection ends under the stream.
// - Watermark callbacks fire from OnUnderlyingWriteHigh/LowWatermark, and once from AddCallbacks
//   if the connection is above its high watermark when a callback registers. Between requests the
//   server reads no new request while above it (a pipelining client that does not read its
//   responses stops being read), and resumes from the timer below the low watermark.
// - ClientCodec's ConnectionCallbacks::OnGoAway fires (at most once) when a response says the
//   connection will not be reused: `Connection: close`, HTTP/1.0 without keep-alive, a
//   close-delimited body, or the upstream closing an idle connection.
//
// Closing: when the connection must end (keep-alive over, protocol error, local reset, tunnel
// done) the codec calls CodecIo::Close itself (flush for orderly ends, no flush for resets);
// owners may close again, which must be harmless. Protocol errors are also returned from
// Dispatch(). A server protocol error gets the mapped reply (400/414/431/501/505) with
// `Connection: close` and a one-line body naming the error.
//
// Tunnels (Upgrade/WebSocket after a 101, CONNECT after a 2xx): the stream then carries raw bytes
// in both directions through DecodeData/EncodeData. CodecIo has no half-close, so the end of the
// local direction (EncodeData with end_stream) closes the connection after flushing; the peer's
// end arrives as DecodeData(empty, end_stream = true) from OnEndOfStream().

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/h1/parser.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::http::h1 {

inline constexpr size_t kParserErrorCount = static_cast<size_t>(ParserError::kCallbackAborted) + 1;

// Counts for the sidecar's stats. Plain integers on one worker thread: a codec either keeps its
// own or, through CodecOptions::counters, adds into a struct shared by the worker's connections.
struct CodecCounters {
  uint64_t requests = 0;         // server: requests decoded; client: requests encoded
  uint64_t responses = 0;        // final responses; server: encoded, client: decoded
  uint64_t informational = 0;    // 1xx responses other than a tunnel-opening 101
  uint64_t upgrades = 0;         // tunnels opened (101 Switching Protocols, CONNECT 2xx)
  uint64_t connect_refused = 0;  // server: CONNECT answered 403 because it is not allowed
  // The peer broke HTTP/1: parser errors (also counted per error below) plus responses that
  // parse but make no sense (a 101 nobody asked for).
  uint64_t protocol_errors = 0;
  std::array<uint64_t, kParserErrorCount> protocol_errors_by_error{};

  uint64_t ProtocolErrors(ParserError error) const {
    return protocol_errors_by_error[static_cast<size_t>(error)];
  }
  // Server errors by the status they were answered with (400, 414, 431, 501, 505).
  uint64_t ProtocolErrorsWithStatus(int status) const;
};

struct CodecOptions {
  // Start line, URI, header section and header count limits (431/414 on the server side).
  ParserLimits limits;
  // Server: the :scheme given to origin-form requests ("https" behind TLS). Absolute-form targets
  // carry their own scheme.
  std::string scheme = "http";
  // Server: answer "Expect: 100-continue" with "100 Continue" as soon as the user is reading the
  // body (after DecodeHeaders, once the stream is not read-disabled), and remove the Expect
  // header from the decoded request. Off: the header stays and the user calls Encode1xxHeaders.
  bool auto_continue = false;
  // Server: deliver CONNECT requests as streams, so the user decides (answers 2xx to open the
  // tunnel, anything else to refuse). Off: the codec answers 403 itself, counts connect_refused
  // and Dispatch() returns PermissionDenied.
  bool allow_connect = false;
  // Reported by Stream::BufferLimit().
  uint32_t stream_buffer_limit = 1 << 20;
  // Messages begun in one pass over the input; the rest of a pipelined burst waits for the next
  // loop turn (reading held meanwhile), so one client cannot keep a worker busy for a whole read
  // of tiny requests, and the streams its answered requests leave for deferred deletion stay few.
  uint32_t max_messages_per_pass = 32;
  // Not owned; null means the codec's own counters.
  CodecCounters* counters = nullptr;
};

// ClientCodec reset details when the connection ends before the response completes, so a pool or
// router can tell whether the request may have reached the upstream.
inline constexpr absl::string_view kResetDetailRequestNotSent = "request_not_sent";
inline constexpr absl::string_view kResetDetailNoResponse = "request_sent_no_response";
inline constexpr absl::string_view kResetDetailResponseIncomplete = "response_incomplete";

namespace codec_internal {

// What ServerCodec and ClientCodec share: input handling (holding back, resuming, zero-copy body
// delivery), the stream's callbacks, read-disable and watermark bookkeeping.
class CodecBase : public ParserVisitor {
 public:
  CodecBase(const CodecBase&) = delete;
  CodecBase& operator=(const CodecBase&) = delete;
  ~CodecBase() override;

  // The peer finished sending (the connection's end_stream). Completes a close-delimited response
  // or delivers the end of a tunnel; a message cut short resets the stream
  // (kConnectionTermination). Returns the error, if any, for the owner's logs.
  absl::Status EndOfStreamImpl();
  // The connection is gone: resets the active stream with kConnectionTermination. No CodecIo call
  // is made afterwards.
  void ConnectionClosedImpl();

  const CodecCounters& counters() const { return *counters_; }
  // True while a request/response head has started arriving but is not complete.
  bool head_in_progress() const { return head_in_progress_; }
  // The codec will produce no further streams (closed, failed, or keep-alive over).
  bool closed() const { return closed_; }

 protected:
  enum class Event : uint8_t { kNone, kHeaders, kBody, kMessageComplete };
  // How the outgoing message's body is delimited.
  enum class OutFraming : uint8_t { kNone, kContentLength, kChunked, kUntilClose, kRaw };

  // The stream handed to users. Forwards to the codec, which holds the per-message state.
  class ActiveStream final : public StreamEncoder, public Stream {
   public:
    explicit ActiveStream(CodecBase& codec) : codec_(codec) {}
    // StreamEncoder
    void Encode1xxHeaders(const HeaderMap& headers) override { codec_.Encode1xx(headers); }
    void EncodeHeaders(const HeaderMap& headers, bool end_stream) override {
      codec_.EncodeHeadersImpl(headers, end_stream);
    }
    void EncodeData(net::Buffer& data, bool end_stream) override {
      codec_.EncodeDataImpl(data, end_stream);
    }
    void EncodeTrailers(const HeaderMap& trailers) override { codec_.EncodeTrailersImpl(trailers); }
    Stream& GetStream() override { return *this; }
    // Stream
    void AddCallbacks(StreamCallbacks& callbacks) override;
    void RemoveCallbacks(StreamCallbacks& callbacks) override;
    void ResetStream(StreamResetReason reason) override {
      codec_.ResetActiveStream(reason, "local reset");
    }
    void ReadDisable(bool disable) override { codec_.StreamReadDisable(disable); }
    uint32_t BufferLimit() const override { return codec_.options_.stream_buffer_limit; }

   private:
    CodecBase& codec_;
  };

  CodecBase(event::Loop& loop, CodecIo& io, Parser::Type type, const CodecOptions& options);

  absl::Status DispatchImpl(net::Buffer& data);
  void GoAwayImpl() { goaway_ = true; }
  void OnHighWatermarkImpl();
  void OnLowWatermarkImpl();

  // Hooks for the two sides.
  virtual void Encode1xx(const HeaderMap& headers) = 0;
  virtual void EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) = 0;
  // Whether parsed input may be delivered now (besides the stream's read-disable count).
  virtual bool ReadyForInput() const = 0;
  virtual absl::Status OnHeadersEvent() = 0;
  // The parser completed a message that belongs to the active stream.
  virtual void OnMessageCompleteEvent() = 0;
  // The decoder got the end of the incoming message.
  virtual void OnInputEnded() = 0;
  // The parser failed; answer/reset as the side requires, then return the error for Dispatch.
  virtual absl::Status OnParseError(ParserError error) = 0;
  // The local message ended (EncodeData/EncodeTrailers with end_stream).
  virtual void OnLocalMessageComplete() = 0;
  // The peer's end of input, with no held input left to process.
  virtual absl::Status OnEofEvent() = 0;
  // The stream's read-disable count went back to zero.
  virtual void OnReadEnabled() {}
  // Detail for a kConnectionTermination reset.
  virtual absl::string_view TerminationDetail() const { return "connection closed"; }

  // ParserVisitor parts common to both sides.
  Action OnHeader(absl::string_view name, absl::string_view value) override;
  Action OnHeadersComplete(const MessageInfo& info) override;
  Action OnBody(absl::string_view data) override;
  Action OnTrailer(absl::string_view name, absl::string_view value) override;
  Action OnMessageComplete() override;

  // Runs the parser over `in` and delivers events until input runs out or delivery must wait.
  absl::Status Process(net::Buffer& in);
  absl::Status ProcessLoop(net::Buffer& in);
  void OnResumeTimer();
  // Keeps CodecIo reading disabled exactly while input is held back.
  void UpdateInputHold();
  absl::Status MaybeHandleEof();
  void DeliverBody();

  // Starts a new stream (per-message state reset, the object reused).
  void BeginStream(StreamDecoder* decoder);
  // Writes data with the outgoing framing; shared by both sides.
  void EncodeDataImpl(net::Buffer& data, bool end_stream);
  // A chunked message's trailers go in its last chunk; other framings drop them.
  void EncodeTrailersImpl(const HeaderMap& trailers);
  void FinishLocalMessage();
  // Hands out_ to CodecIo in one Write.
  void WriteOut();
  // Delivers the end of the incoming message: trailers if any, else an empty end_stream.
  void DeliverMessageEnd();
  // Delivers the incoming message's last event through `deliver(decoder)`. If the local message
  // is already complete the stream completes first, so the decoder's owner may start the next
  // stream (reuse the connection) from inside that call.
  template <typename Deliver>
  void DeliverLast(Deliver&& deliver) {
    in_end_delivered_ = true;
    StreamDecoder* decoder = decoder_;
    if (out_complete_) {
      if (!keep_alive_ || goaway_ || tunnel_) {
        // The connection ends with this message: the owner hears the end before the close, or
        // the close would reset a stream that actually completed.
        deliver(*decoder);
        CompleteStream();
        return;
      }
      CompleteStream();
      deliver(*decoder);
      return;
    }
    deliver(*decoder);
    if (stream_active_) OnInputEnded();
  }
  // Both directions done: the stream leaves; keep-alive continues or the connection closes.
  void CompleteStream();
  // Resets the active stream's callbacks (no CodecIo call besides releasing read-disable).
  void ResetStreamCallbacks(StreamResetReason reason, absl::string_view details);
  // Ends the stream abnormally and closes the connection without flushing.
  void ResetActiveStream(StreamResetReason reason, absl::string_view details);
  // The connection is finished: releases holds, stops the timer, asks CodecIo to close.
  void CloseConnection(bool flush);
  void CountProtocolError(ParserError error);
  void StreamReadDisable(bool disable);
  // Processes held input later (from the loop), never from inside a user's call.
  void ScheduleResume();
  HeaderMapPtr TakeHeaders();

  event::Loop& loop_;
  CodecIo& io_;
  const CodecOptions options_;
  CodecCounters own_counters_;
  CodecCounters* const counters_;
  Parser parser_;
  ActiveStream stream_;

  // Connection state.
  bool closed_ = false;
  bool io_closed_ = false;  // CodecIo::Close was called, or the connection is gone
  absl::Status error_;
  bool goaway_ = false;
  bool keep_alive_ = true;   // the connection may carry another message after this one
  bool remote_eof_ = false;  // OnEndOfStream was called
  bool eof_handled_ = false;
  bool above_high_watermark_ = false;
  bool head_in_progress_ = false;
  bool processing_ = false;  // inside Process(): resumption happens there, not via the timer
  uint32_t messages_this_pass_ = 0;  // messages begun since Process() started

  // Input held back while the codec may not deliver (pipelining, upgrade decision, read-disable);
  // reading is disabled on CodecIo while it is non-empty, so it is bounded by one read.
  net::Buffer pending_input_;
  bool input_hold_ = false;  // CodecIo::ReadDisable(true) issued for pending_input_
  event::Timer resume_timer_;

  // The event the last Execute() stopped at, and where a body piece sits in the slice.
  Event event_ = Event::kNone;
  const char* slice_begin_ = nullptr;
  size_t body_offset_ = 0;
  size_t body_length_ = 0;
  net::Buffer body_buffer_;  // body pieces handed to DecodeData (relinked, not copied)

  // Headers or trailers being collected, reused across messages (its capacity stays warm).
  HeaderMap scratch_;
  bool have_trailers_ = false;

  // Per-stream state.
  bool stream_active_ = false;
  StreamDecoder* decoder_ = nullptr;
  absl::InlinedVector<StreamCallbacks*, 2> callbacks_;
  int stream_read_disabled_ = 0;
  bool tunnel_ = false;           // raw bytes in both directions
  bool in_message_done_ = false;  // the parser completed the incoming message
  // A stream completed before the parser reported its message complete: skip that report.
  bool swallow_message_complete_ = false;
  bool in_end_delivered_ = false;  // the decoder got end_stream (or trailers)
  uint64_t in_body_received_ = 0;
  bool out_headers_sent_ = false;
  bool out_complete_ = false;
  OutFraming out_framing_ = OutFraming::kNone;
  uint64_t out_remaining_ = 0;  // kContentLength bytes still owed
  uint64_t out_bytes_written_ = 0;
  net::Buffer out_;  // assembled output, handed to CodecIo::Write in one call
};

}  // namespace codec_internal

// Server side: decodes requests, encodes responses. One request at a time; a pipelined request
// is parsed only once the previous response is complete (its bytes are held, reading paused).
class ServerCodec final : public ServerConnection, public codec_internal::CodecBase {
 public:
  // `loop`, `io` and `callbacks` must outlive the codec.
  ServerCodec(event::Loop& loop, CodecIo& io, ServerConnectionCallbacks& callbacks,
              const CodecOptions& options = CodecOptions());

  absl::Status Dispatch(net::Buffer& data) override { return DispatchImpl(data); }
  // Keep-alive ends: the current response says `Connection: close` if its headers are not out
  // yet, and the connection closes once it completes. An idle connection is the owner's to close
  // (ActiveStreams() == 0).
  void GoAway() override { GoAwayImpl(); }
  // The version of the last request (responses are always sent as HTTP/1.1, RFC 9110 2.5).
  Protocol protocol() const override { return protocol_; }
  size_t ActiveStreams() const override { return stream_active_ ? 1 : 0; }
  void OnUnderlyingWriteHighWatermark() override { OnHighWatermarkImpl(); }
  void OnUnderlyingWriteLowWatermark() override { OnLowWatermarkImpl(); }
  absl::Status OnEndOfStream() override { return EndOfStreamImpl(); }
  void OnConnectionClosed() override { ConnectionClosedImpl(); }

  // A partial request head is buffered (a header-read timeout then answers 408; otherwise the
  // connection was idle).
  bool request_head_in_progress() const { return head_in_progress(); }
  // The status of the reply the codec wrote itself (a protocol error's 400/414/431/501/505, a
  // refused CONNECT's 403; Dispatch() then returned the error); 0 while it wrote none.
  int local_reply_status() const { return local_reply_status_; }

 private:
  void Encode1xx(const HeaderMap& headers) override;
  void EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) override;
  bool ReadyForInput() const override;
  absl::Status OnHeadersEvent() override;
  void OnMessageCompleteEvent() override;
  void OnInputEnded() override;
  absl::Status OnParseError(ParserError error) override;
  void OnLocalMessageComplete() override;
  absl::Status OnEofEvent() override;
  void OnReadEnabled() override { MaybeSendAutoContinue(); }

  Action OnMessageBegin() override;
  Action OnRequestLine(absl::string_view method, absl::string_view target, int version_major,
                       int version_minor) override;
  Action OnHeader(absl::string_view name, absl::string_view value) override;

  // Writes a complete local reply (errors, refused CONNECT) with `Connection: close`.
  void WriteLocalReply(int status, absl::string_view body);
  void MaybeSendAutoContinue();

  ServerConnectionCallbacks& callbacks_;
  Protocol protocol_ = Protocol::kHttp11;
  int local_reply_status_ = 0;

  // Per-request state.
  bool authority_set_ = false;
  bool head_request_ = false;
  bool connect_request_ = false;
  bool upgrade_request_ = false;
  bool request_keep_alive_ = true;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  bool auto_continue_pending_ = false;
  // Absolute-form targets: a path that needs a leading '/'.
  std::string path_scratch_;
};

// Client side: encodes requests, decodes responses. One request at a time; CanOpenStream() says
// when the next may start. A response that ends the connection's reuse fires OnGoAway.
class ClientCodec final : public ClientConnection, public codec_internal::CodecBase {
 public:
  // `loop`, `io` and `callbacks` must outlive the codec.
  ClientCodec(event::Loop& loop, CodecIo& io, ConnectionCallbacks& callbacks,
              const CodecOptions& options = CodecOptions());

  absl::Status Dispatch(net::Buffer& data) override { return DispatchImpl(data); }
  // The next request says `Connection: close`; no stream may start after the current one.
  void GoAway() override { GoAwayImpl(); }
  Protocol protocol() const override { return Protocol::kHttp11; }
  size_t ActiveStreams() const override { return stream_active_ ? 1 : 0; }
  void OnUnderlyingWriteHighWatermark() override { OnHighWatermarkImpl(); }
  void OnUnderlyingWriteLowWatermark() override { OnLowWatermarkImpl(); }
  absl::Status OnEndOfStream() override { return EndOfStreamImpl(); }
  void OnConnectionClosed() override { ConnectionClosedImpl(); }

  // Precondition: CanOpenStream().
  StreamEncoder& NewStream(StreamDecoder& response_decoder) override;
  bool CanOpenStream() const override;

  // Bytes of the current request handed to CodecIo so far.
  uint64_t request_bytes_written() const { return out_bytes_written_; }

 private:
  void Encode1xx(const HeaderMap& headers) override;
  void EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) override;
  bool ReadyForInput() const override { return true; }
  absl::Status OnHeadersEvent() override;
  void OnMessageCompleteEvent() override;
  void OnInputEnded() override;
  absl::Status OnParseError(ParserError error) override;
  void OnLocalMessageComplete() override;
  absl::Status OnEofEvent() override;
  absl::string_view TerminationDetail() const override;

  Action OnMessageBegin() override;
  Action OnStatusLine(int version_major, int version_minor, int status_code,
                      absl::string_view reason) override;

  void NotifyGoAway();

  ConnectionCallbacks& callbacks_;
  bool goaway_notified_ = false;

  // Per-request state.
  bool upgrade_request_ = false;
  bool connect_request_ = false;
  bool response_started_ = false;
};

}  // namespace meshlet::http::h1
