// The HTTP/1.1 codec's input side (CodecBase): Dispatch and the parser loop, the ParserVisitor
// callbacks both sides share, input held back and resumed from the Loop (pipelining,
// read-disable, a client not reading its responses, max_messages_per_pass), the peer's end of
// input, and delivery of heads, body pieces (relinked, not copied) and message ends to the
// stream's decoder.

#include <memory>
#include <utility>

#include "common/http/h1/codec.h"

namespace meshlet::http::h1::codec_internal {

namespace {

using Action = ParserVisitor::Action;

constexpr char kNoBytes[1] = "";

}  // namespace

absl::Status CodecBase::DispatchImpl(net::Buffer& data) {
  if (closed_) {
    data.Clear();
    return error_;
  }
  absl::Status status;
  if (pending_input_.empty()) {
    status = Process(data);
    if (!data.empty()) {
      if (closed_) {
        data.Clear();
      } else {
        pending_input_.Move(data);
      }
    }
  } else {
    pending_input_.Move(data);
    status = Process(pending_input_);
  }
  UpdateInputHold();
  return status;
}

absl::Status CodecBase::Process(net::Buffer& in) {
  processing_ = true;
  messages_this_pass_ = 0;
  absl::Status status = ProcessLoop(in);
  processing_ = false;
  if (closed_) in.Clear();
  return status;
}

absl::Status CodecBase::ProcessLoop(net::Buffer& in) {
  while (!closed_) {
    if (stream_read_disabled_ > 0 || !ReadyForInput()) break;
    if (!stream_active_ && !head_in_progress_ && !in.empty() &&
        messages_this_pass_ >= options_.max_messages_per_pass) {
      ScheduleResume();  // the rest of the burst next turn; held input stops reading meanwhile
      break;
    }
    if (tunnel_ && parser_.status() == Parser::Status::kUpgraded) {
      if (in.empty() || !stream_active_) break;
      body_buffer_.Move(in);
      decoder_->DecodeData(body_buffer_, false);
      body_buffer_.Clear();
      continue;
    }
    switch (parser_.status()) {
      case Parser::Status::kOk:
        break;
      case Parser::Status::kPaused:
        parser_.Resume();
        break;
      case Parser::Status::kClosed:
        // The last message said the connection ends: whatever follows is not read.
        in.Clear();
        return absl::OkStatus();
      case Parser::Status::kUpgraded:
        // A tunnel that is not (or no longer) open: the input stays held.
        return absl::OkStatus();
      case Parser::Status::kError:
        return error_;
    }
    absl::string_view slice = in.FrontSlice();
    // Resuming after a pause may have no bytes left; the parser's scans still want a real
    // pointer (memchr on null is undefined even for length 0).
    if (slice.data() == nullptr) slice = absl::string_view(kNoBytes, 0);
    event_ = Event::kNone;
    slice_begin_ = slice.data();
    size_t consumed = parser_.Execute(slice);
    if (event_ == Event::kBody) {
      // Body bytes are relinked out of the input, not copied: the parser stopped right after
      // them, so nothing points into the moved blocks any more.
      in.Drain(body_offset_);
      body_buffer_.Move(in, body_length_);
      in.Drain(consumed - body_offset_ - body_length_);
    } else {
      in.Drain(consumed);
    }
    if (parser_.status() == Parser::Status::kError) return OnParseError(parser_.error());
    switch (event_) {
      case Event::kNone:
        if (in.empty() || consumed == 0) return absl::OkStatus();
        break;
      case Event::kHeaders: {
        absl::Status status = OnHeadersEvent();
        if (!status.ok()) return status;
        break;
      }
      case Event::kBody:
        DeliverBody();
        break;
      case Event::kMessageComplete:
        if (swallow_message_complete_) {
          swallow_message_complete_ = false;
        } else if (stream_active_) {
          OnMessageCompleteEvent();
        }
        break;
    }
  }
  return closed_ ? error_ : absl::OkStatus();
}

void CodecBase::OnResumeTimer() {
  if (closed_) return;
  absl::Status status = Process(pending_input_);
  UpdateInputHold();
  if (status.ok() && pending_input_.empty()) (void)MaybeHandleEof();
}

void CodecBase::ScheduleResume() {
  if (closed_ || resume_timer_.enabled()) return;
  resume_timer_.Enable(Duration::zero());
}

void CodecBase::UpdateInputHold() {
  if (io_closed_) return;
  bool hold = !pending_input_.empty();
  if (hold == input_hold_) return;
  input_hold_ = hold;
  io_.ReadDisable(hold);
}

absl::Status CodecBase::EndOfStreamImpl() {
  if (closed_ || remote_eof_) return error_;
  remote_eof_ = true;
  // Held input goes first; the end is handled once it has been delivered.
  if (!pending_input_.empty() || processing_) return absl::OkStatus();
  return MaybeHandleEof();
}

absl::Status CodecBase::MaybeHandleEof() {
  if (!remote_eof_ || eof_handled_ || closed_ || !pending_input_.empty()) {
    return absl::OkStatus();
  }
  if (stream_read_disabled_ > 0) return absl::OkStatus();
  eof_handled_ = true;
  return OnEofEvent();
}

void CodecBase::ConnectionClosedImpl() {
  closed_ = true;
  io_closed_ = true;
  input_hold_ = false;
  resume_timer_.Disable();
  pending_input_.Clear();
  ResetStreamCallbacks(StreamResetReason::kConnectionTermination, TerminationDetail());
}

Action CodecBase::OnHeader(absl::string_view name, absl::string_view value) {
  scratch_.Add(name, value);
  return Action::kContinue;
}

Action CodecBase::OnHeadersComplete(const MessageInfo&) {
  head_in_progress_ = false;
  event_ = Event::kHeaders;
  return Action::kPause;
}

Action CodecBase::OnBody(absl::string_view data) {
  event_ = Event::kBody;
  body_offset_ = static_cast<size_t>(data.data() - slice_begin_);
  body_length_ = data.size();
  return Action::kPause;
}

Action CodecBase::OnTrailer(absl::string_view name, absl::string_view value) {
  have_trailers_ = true;
  scratch_.Add(name, value);
  return Action::kContinue;
}

Action CodecBase::OnMessageComplete() {
  event_ = Event::kMessageComplete;
  return Action::kPause;
}

HeaderMapPtr CodecBase::TakeHeaders() {
  // Copying the warm scratch map sizes the new map's storage in one allocation instead of growing
  // it field by field; the scratch keeps its capacity. The spare room takes what a proxy adds
  // (x-request-id, x-forwarded-for/-proto, ...) without a second allocation.
  constexpr size_t kSpareBytes = 160;
  auto map = std::make_unique<HeaderMap>();
  map->ReserveBytes(scratch_.ByteSize() + kSpareBytes);
  *map = scratch_;
  scratch_.Clear();
  return map;
}

void CodecBase::DeliverBody() {
  in_body_received_ += body_length_;
  const MessageInfo& info = parser_.message_info();
  bool end = info.framing == BodyFraming::kContentLength &&
             in_body_received_ == info.content_length && !tunnel_;
  if (stream_active_ && !in_end_delivered_) {
    if (end) {
      DeliverLast([this](StreamDecoder& decoder) { decoder.DecodeData(body_buffer_, true); });
    } else {
      decoder_->DecodeData(body_buffer_, false);
    }
  }
  body_buffer_.Clear();
}

void CodecBase::DeliverMessageEnd() {
  if (!stream_active_ || in_end_delivered_) return;
  if (have_trailers_) {
    have_trailers_ = false;
    HeaderMapPtr trailers = TakeHeaders();
    DeliverLast([&](StreamDecoder& decoder) { decoder.DecodeTrailers(std::move(trailers)); });
  } else {
    body_buffer_.Clear();
    DeliverLast([this](StreamDecoder& decoder) { decoder.DecodeData(body_buffer_, true); });
  }
}

}  // namespace meshlet::http::h1::codec_internal
