// The HTTP/1.1 codec's shared stream (CodecBase): the stream handed to users, what they encode
// into the message body (content-length, chunked, until close, tunnel bytes) and its trailers,
// the stream's end, resets and the connection's close, read-disable and watermarks. The input
// side is codec_input.cc; the two sides are server_codec.cc and client_codec.cc; message heads
// are written by head_encoding.h.
#include "common/http/h1/codec.h"

#include <algorithm>

#include "common/base/logging.h"
#include "common/http/h1/head_encoding.h"

namespace meshlet::http::h1 {

uint64_t CodecCounters::ProtocolErrorsWithStatus(int status) const {
  uint64_t total = 0;
  for (size_t i = 1; i < kParserErrorCount; ++i) {
    if (HttpStatusForError(static_cast<ParserError>(i)) == status) {
      total += protocol_errors_by_error[i];
    }
  }
  return total;
}

namespace codec_internal {

CodecBase::CodecBase(event::Loop& loop, CodecIo& io, Parser::Type type, const CodecOptions& options)
    : loop_(loop),
      io_(io),
      options_(options),
      counters_(options.counters != nullptr ? options.counters : &own_counters_),
      parser_(type, this, options.limits),
      stream_(*this),
      resume_timer_(loop, [this] { OnResumeTimer(); }) {}

CodecBase::~CodecBase() = default;

void CodecBase::ActiveStream::AddCallbacks(StreamCallbacks& callbacks) {
  codec_.callbacks_.push_back(&callbacks);
  // A stream born while the connection is backed up starts out paused.
  if (codec_.above_high_watermark_ && codec_.stream_active_) {
    callbacks.OnAboveWriteBufferHighWatermark();
  }
}

void CodecBase::ActiveStream::RemoveCallbacks(StreamCallbacks& callbacks) {
  auto& list = codec_.callbacks_;
  auto it = std::find(list.begin(), list.end(), &callbacks);
  if (it != list.end()) list.erase(it);
}

void CodecBase::BeginStream(StreamDecoder* decoder) {
  stream_active_ = true;
  decoder_ = decoder;
  callbacks_.clear();
  stream_read_disabled_ = 0;
  tunnel_ = false;
  in_message_done_ = false;
  in_end_delivered_ = false;
  in_body_received_ = 0;
  out_headers_sent_ = false;
  out_complete_ = false;
  out_framing_ = OutFraming::kNone;
  out_remaining_ = 0;
  out_bytes_written_ = 0;
}

void CodecBase::WriteOut() {
  if (out_.empty()) return;
  out_bytes_written_ += out_.length();
  if (io_closed_) {
    out_.Clear();
    return;
  }
  io_.Write(out_);
}

void CodecBase::EncodeDataImpl(net::Buffer& data, bool end_stream) {
  if (!stream_active_ || !out_headers_sent_ || out_complete_) {
    data.Clear();
    return;
  }
  switch (out_framing_) {
    case OutFraming::kNone:
      data.Clear();
      break;
    case OutFraming::kContentLength: {
      uint64_t n = data.length();
      if (n > out_remaining_) {
        LOG_EVERY_N_SEC(WARN, 1) << "h1: body longer than its content-length; excess dropped";
        n = out_remaining_;
      }
      out_.Move(data, static_cast<size_t>(n));
      data.Clear();
      out_remaining_ -= n;
      break;
    }
    case OutFraming::kChunked:
      if (!data.empty()) {
        char buf[20];
        absl::string_view size = FormatHex(data.length(), buf);
        out_.Append(size);
        out_.Append("\r\n");
        out_.Move(data);
        out_.Append("\r\n");
      }
      if (end_stream) out_.Append("0\r\n\r\n");
      break;
    case OutFraming::kUntilClose:
    case OutFraming::kRaw:
      out_.Move(data);
      break;
  }
  WriteOut();
  if (end_stream) FinishLocalMessage();
}

void CodecBase::EncodeTrailersImpl(const HeaderMap& trailers) {
  if (!stream_active_ || !out_headers_sent_ || out_complete_) return;
  if (out_framing_ == OutFraming::kChunked) {
    WriteBlock(out_, EstimateBlock(trailers, kBlockOverhead), [&](auto& sink) {
      sink("0\r\n");
      EmitFields(trailers, SkipInTrailers, sink);
      sink("\r\n");
    });
    WriteOut();
  }
  FinishLocalMessage();
}

void CodecBase::FinishLocalMessage() {
  out_complete_ = true;
  if (out_framing_ == OutFraming::kContentLength && out_remaining_ > 0) {
    // The peer would wait for bytes that never come, or read the next message as body.
    LOG_EVERY_N_SEC(WARN, 1) << "h1: message ended " << out_remaining_
                             << " bytes short of its content-length; closing";
    ResetActiveStream(StreamResetReason::kLocalReset, "body shorter than content-length");
    return;
  }
  OnLocalMessageComplete();
}

void CodecBase::CompleteStream() {
  if (!stream_active_) return;
  if (!in_message_done_ && !tunnel_) swallow_message_complete_ = true;
  stream_active_ = false;
  decoder_ = nullptr;
  callbacks_.clear();
  if (stream_read_disabled_ > 0) {
    stream_read_disabled_ = 0;
    if (!io_closed_) io_.ReadDisable(false);
  }
  if (!keep_alive_ || goaway_ || tunnel_) {
    CloseConnection(/*flush=*/true);
    return;
  }
  if (!processing_ && (!pending_input_.empty() || (remote_eof_ && !eof_handled_))) {
    ScheduleResume();
  }
}

void CodecBase::ResetStreamCallbacks(StreamResetReason reason, absl::string_view details) {
  if (!stream_active_) return;
  stream_active_ = false;
  decoder_ = nullptr;
  if (stream_read_disabled_ > 0) {
    stream_read_disabled_ = 0;
    if (!io_closed_) io_.ReadDisable(false);
  }
  absl::InlinedVector<StreamCallbacks*, 2> callbacks;
  callbacks.swap(callbacks_);
  for (StreamCallbacks* cb : callbacks) cb->OnResetStream(reason, details);
}

void CodecBase::ResetActiveStream(StreamResetReason reason, absl::string_view details) {
  if (!stream_active_) return;
  ResetStreamCallbacks(reason, details);
  CloseConnection(/*flush=*/false);
}

void CodecBase::CloseConnection(bool flush) {
  closed_ = true;
  keep_alive_ = false;
  resume_timer_.Disable();
  pending_input_.Clear();
  if (io_closed_) return;
  io_closed_ = true;
  if (input_hold_) {
    input_hold_ = false;
    io_.ReadDisable(false);
  }
  io_.Close(flush);
}

void CodecBase::CountProtocolError(ParserError error) {
  ++counters_->protocol_errors;
  ++counters_->protocol_errors_by_error[static_cast<size_t>(error)];
}

void CodecBase::StreamReadDisable(bool disable) {
  if (!stream_active_) return;
  if (disable) {
    if (stream_read_disabled_++ == 0 && !io_closed_) io_.ReadDisable(true);
    return;
  }
  if (stream_read_disabled_ == 0) return;
  if (--stream_read_disabled_ > 0) return;
  if (!io_closed_) io_.ReadDisable(false);
  OnReadEnabled();
  if (!pending_input_.empty() || (remote_eof_ && !eof_handled_)) ScheduleResume();
}

void CodecBase::OnHighWatermarkImpl() {
  above_high_watermark_ = true;
  absl::InlinedVector<StreamCallbacks*, 2> callbacks = callbacks_;
  for (StreamCallbacks* cb : callbacks) {
    if (!stream_active_) break;
    cb->OnAboveWriteBufferHighWatermark();
  }
}

void CodecBase::OnLowWatermarkImpl() {
  above_high_watermark_ = false;
  // Input held while the client was not reading its responses (ServerCodec::ReadyForInput).
  if (!stream_active_ && !processing_ && !pending_input_.empty()) ScheduleResume();
  absl::InlinedVector<StreamCallbacks*, 2> callbacks = callbacks_;
  for (StreamCallbacks* cb : callbacks) {
    if (!stream_active_) break;
    cb->OnBelowWriteBufferLowWatermark();
  }
}

}  // namespace codec_internal

}  // namespace meshlet::http::h1
