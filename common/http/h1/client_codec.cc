// ClientCodec, the HTTP/1.1 codec's client side: the request head written from HTTP/2-style
// pseudo-header fields, responses decoded (interim, final, close-delimited, tunnels), and what
// tells the owner the connection cannot be reused (OnGoAway) or how far a failed request got.

#include <optional>
#include <utility>

#include "common/base/logging.h"
#include "common/http/h1/codec.h"
#include "common/http/h1/head_encoding.h"

namespace meshlet::http::h1 {
namespace {

using Action = ParserVisitor::Action;
using codec_internal::ContentLengthOf;
using codec_internal::EmitFields;
using codec_internal::EstimateBlock;
using codec_internal::FormatDecimal;
using codec_internal::IsManagedField;
using codec_internal::kBlockOverhead;
using codec_internal::MethodExpectsBody;
using codec_internal::SafeField;
using codec_internal::WriteBlock;

}  // namespace

ClientCodec::ClientCodec(event::Loop& loop, CodecIo& io, ConnectionCallbacks& callbacks,
                         const CodecOptions& options)
    : CodecBase(loop, io, Parser::Type::kResponse, options), callbacks_(callbacks) {}

bool ClientCodec::CanOpenStream() const {
  return !closed_ && !stream_active_ && keep_alive_ && !goaway_ && !remote_eof_;
}

StreamEncoder& ClientCodec::NewStream(StreamDecoder& response_decoder) {
  CHECK(CanOpenStream()) << "h1 client: NewStream while the connection cannot take a request";
  BeginStream(&response_decoder);
  upgrade_request_ = false;
  connect_request_ = false;
  response_started_ = false;
  return stream_;
}

absl::string_view ClientCodec::TerminationDetail() const {
  if (out_bytes_written_ == 0) return kResetDetailRequestNotSent;
  if (!response_started_) return kResetDetailNoResponse;
  return kResetDetailResponseIncomplete;
}

void ClientCodec::NotifyGoAway() {
  if (goaway_notified_) return;
  goaway_notified_ = true;
  callbacks_.OnGoAway();
}

void ClientCodec::Encode1xx(const HeaderMap&) {
  LOG_EVERY_N_SEC(WARN, 1) << "h1 client: Encode1xxHeaders is for responses; ignored";
}

void ClientCodec::EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) {
  if (!stream_active_ || out_headers_sent_) return;
  std::optional<absl::string_view> method = headers.Get(":method");
  std::optional<absl::string_view> path = headers.Get(":path");
  std::optional<absl::string_view> authority = headers.Get(":authority");
  if (!method.has_value() || method->empty() || !SafeField(*method, "")) {
    ResetActiveStream(StreamResetReason::kLocalReset, "request without a valid :method");
    return;
  }
  connect_request_ = *method == "CONNECT";
  absl::string_view target =
      connect_request_ ? authority.value_or(absl::string_view()) : path.value_or("");
  if (target.empty() || !SafeField("t", target) || target.find(' ') != absl::string_view::npos) {
    ResetActiveStream(StreamResetReason::kLocalReset, "request without a valid target");
    return;
  }
  upgrade_request_ = connect_request_ || headers.Has("upgrade");
  parser_.SetRequestMethod(*method);
  out_headers_sent_ = true;
  ++counters_->requests;

  uint64_t content_length = 0;
  bool has_content_length = ContentLengthOf(headers, &content_length);
  bool emit_length = false;
  uint64_t length_value = 0;
  if (upgrade_request_) {
    out_framing_ = OutFraming::kRaw;  // what follows the head is tunnel bytes
  } else if (end_stream) {
    out_framing_ = OutFraming::kNone;
    // RFC 9110 8.6: state the (empty) length when the method gives content a meaning.
    emit_length = has_content_length || MethodExpectsBody(*method);
  } else if (has_content_length) {
    out_framing_ = OutFraming::kContentLength;
    out_remaining_ = content_length;
    emit_length = true;
    length_value = content_length;
  } else {
    out_framing_ = OutFraming::kChunked;
  }
  if (goaway_) keep_alive_ = false;
  bool websocket_style = upgrade_request_ && !connect_request_;
  std::optional<absl::string_view> upgrade;
  if (websocket_style) upgrade = headers.Get("upgrade");
  std::optional<absl::string_view> host = authority.has_value() ? authority : headers.Get("host");
  if (host.has_value() && !SafeField("host", *host)) host.reset();

  const size_t estimate = EstimateBlock(headers, kBlockOverhead + method->size() + target.size() +
                                                     (host.has_value() ? host->size() : 0) +
                                                     (upgrade.has_value() ? upgrade->size() : 0));
  WriteBlock(out_, estimate, [&](auto& sink) {
    sink(*method);
    sink(" ");
    sink(target);
    sink(" HTTP/1.1\r\n");
    // HTTP/1.1 requires exactly one Host, empty if there is no authority (RFC 9112 3.2).
    sink("host: ");
    if (host.has_value()) sink(*host);
    sink("\r\n");
    EmitFields(
        headers, [](absl::string_view name) { return IsManagedField(name) || name == "host"; },
        sink);
    if (emit_length) {
      char buf[20];
      sink("content-length: ");
      sink(FormatDecimal(length_value, buf));
      sink("\r\n");
    }
    if (out_framing_ == OutFraming::kChunked) sink("transfer-encoding: chunked\r\n");
    if (websocket_style) {
      sink("connection: upgrade\r\n");
      if (upgrade.has_value() && SafeField("upgrade", *upgrade)) {
        sink("upgrade: ");
        sink(*upgrade);
        sink("\r\n");
      }
    } else if (!keep_alive_) {
      sink("connection: close\r\n");
    }
    sink("\r\n");
  });
  WriteOut();
  if (end_stream) FinishLocalMessage();
}

Action ClientCodec::OnMessageBegin() {
  if (!stream_active_) return Action::kAbort;  // a response nobody asked for
  response_started_ = true;
  head_in_progress_ = true;
  have_trailers_ = false;
  scratch_.Clear();
  return Action::kContinue;
}

Action ClientCodec::OnStatusLine(int, int, int status_code, absl::string_view) {
  char digits[3] = {static_cast<char>('0' + status_code / 100),
                    static_cast<char>('0' + status_code / 10 % 10),
                    static_cast<char>('0' + status_code % 10)};
  scratch_.Add(":status", absl::string_view(digits, 3));
  return Action::kContinue;
}

absl::Status ClientCodec::OnHeadersEvent() {
  const MessageInfo& info = parser_.message_info();
  int status = info.status_code;
  HeaderMapPtr headers = TakeHeaders();
  if (status < 200) {
    if (status != 101) {
      ++counters_->informational;
      decoder_->Decode1xxHeaders(std::move(headers));
      return absl::OkStatus();
    }
    if (!upgrade_request_ || connect_request_) {
      ++counters_->protocol_errors;
      error_ = absl::InvalidArgumentError("101 Switching Protocols without an upgrade request");
      ResetStreamCallbacks(StreamResetReason::kProtocolError, "unexpected 101");
      CloseConnection(/*flush=*/false);
      return error_;
    }
  }
  ++counters_->responses;
  bool open_tunnel = upgrade_request_ && (connect_request_ ? status < 300 : status == 101);
  if (open_tunnel) {
    tunnel_ = true;
    keep_alive_ = false;
    ++counters_->upgrades;
    decoder_->DecodeHeaders(std::move(headers), false);
    return absl::OkStatus();
  }
  if (!info.keep_alive || upgrade_request_) {
    // A refused upgrade may have been followed by tunnel bytes: do not reuse either way.
    keep_alive_ = false;
    NotifyGoAway();
    if (!stream_active_) return absl::OkStatus();
  }
  bool end_stream = info.framing == BodyFraming::kNone ||
                    (info.framing == BodyFraming::kContentLength && info.content_length == 0);
  if (end_stream) {
    DeliverLast([&](StreamDecoder& decoder) { decoder.DecodeHeaders(std::move(headers), true); });
  } else {
    decoder_->DecodeHeaders(std::move(headers), false);
  }
  return absl::OkStatus();
}

void ClientCodec::OnMessageCompleteEvent() {
  const MessageInfo& info = parser_.message_info();
  if (!tunnel_ && info.status_code < 200) return;  // an interim response; the final one follows
  in_message_done_ = true;
  if (tunnel_) return;
  DeliverMessageEnd();
}

void ClientCodec::OnInputEnded() {
  if (!out_complete_) {
    // The response finished before the request: the rest of the request is never sent, so the
    // connection cannot carry another one.
    keep_alive_ = false;
    NotifyGoAway();
    if (!stream_active_) return;
  }
  CompleteStream();
}

void ClientCodec::OnLocalMessageComplete() {
  if (tunnel_) {
    CompleteStream();
    return;
  }
  if (in_end_delivered_) CompleteStream();
}

absl::Status ClientCodec::OnParseError(ParserError error) {
  CountProtocolError(error);
  error_ = error == ParserError::kCallbackAborted
               ? absl::InvalidArgumentError("response bytes without a request")
               : parser_.ToStatus();
  ResetStreamCallbacks(StreamResetReason::kProtocolError, ParserErrorName(error));
  CloseConnection(/*flush=*/false);
  return error_;
}

absl::Status ClientCodec::OnEofEvent() {
  if (stream_active_ && tunnel_) {
    in_end_delivered_ = true;
    body_buffer_.Clear();
    decoder_->DecodeData(body_buffer_, true);
    if (stream_active_ && out_complete_) CompleteStream();
    return absl::OkStatus();
  }
  if (!stream_active_) {
    // The upstream closed an idle connection.
    keep_alive_ = false;
    NotifyGoAway();
    CloseConnection(/*flush=*/true);
    return absl::OkStatus();
  }
  // A close-delimited body ends here; anything else was cut short.
  event_ = Event::kNone;
  ParserError error = parser_.Finish();
  if (error == ParserError::kOk && event_ == Event::kMessageComplete) {
    keep_alive_ = false;
    OnMessageCompleteEvent();
    if (stream_active_) {
      // The request was still being sent; its stream ends with the response.
      CompleteStream();
    }
    CloseConnection(/*flush=*/true);
    return absl::OkStatus();
  }
  keep_alive_ = false;
  NotifyGoAway();
  ResetStreamCallbacks(StreamResetReason::kConnectionTermination, TerminationDetail());
  CloseConnection(/*flush=*/false);
  return absl::UnavailableError("upstream closed the connection before the response completed");
}

}  // namespace meshlet::http::h1
