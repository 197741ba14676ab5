// ServerCodec, the HTTP/1.1 codec's server side: a request line and Host turned into HTTP/2-style
// pseudo-header fields, one request at a time (pipelined ones wait), the response head and its
// framing, 100-continue, CONNECT and upgrades, and the local replies to protocol errors.

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/ascii_case.h"
#include "common/http/h1/codec.h"
#include "common/http/h1/head_encoding.h"

namespace meshlet::http::h1 {
namespace {

using Action = ParserVisitor::Action;
using codec_internal::ContentLengthOf;
using codec_internal::EmitFields;
using codec_internal::EmitStatusLine;
using codec_internal::EstimateBlock;
using codec_internal::FormatDecimal;
using codec_internal::HasConnectionToken;
using codec_internal::kBlockOverhead;
using codec_internal::SafeField;
using codec_internal::SkipInResponse;
using codec_internal::StatusOf;
using codec_internal::WriteBlock;

}  // namespace

ServerCodec::ServerCodec(event::Loop& loop, CodecIo& io, ServerConnectionCallbacks& callbacks,
                         const CodecOptions& options)
    : CodecBase(loop, io, Parser::Type::kRequest, options), callbacks_(callbacks) {}

bool ServerCodec::ReadyForInput() const {
  // One request at a time: once a request is fully parsed, the next (pipelined) one waits for the
  // response to complete, and bytes after an upgrade request wait for the 101 (or a refusal).
  // A client that is not reading its responses gets no new request read until the connection's
  // write buffer falls to its low watermark: held input disables reading, so what it pipelines
  // cannot pile up replies.
  if (!stream_active_) return !above_high_watermark_;
  return tunnel_ || !in_message_done_;
}

Action ServerCodec::OnMessageBegin() {
  head_in_progress_ = true;
  ++messages_this_pass_;
  have_trailers_ = false;
  scratch_.Clear();
  authority_set_ = false;
  head_request_ = false;
  connect_request_ = false;
  upgrade_request_ = false;
  request_keep_alive_ = true;
  expect_continue_ = false;
  continue_sent_ = false;
  return Action::kContinue;
}

Action ServerCodec::OnRequestLine(absl::string_view method, absl::string_view target, int, int) {
  head_request_ = method == "HEAD";
  connect_request_ = method == "CONNECT";
  scratch_.Add(":method", method);
  if (connect_request_) {
    // authority-form: the tunnel's destination; CONNECT has no :scheme or :path (RFC 9113 8.5).
    scratch_.Add(":authority", target);
    authority_set_ = true;
  } else if (target[0] == '/' || target == "*") {
    scratch_.Add(":scheme", options_.scheme);
    scratch_.Add(":path", target);
  } else {
    // absolute-form (RFC 9112 3.2.2), which the parser accepts only as "http://" or "https://"
    // (any case), a valid non-empty authority without userinfo, then path-abempty [ "?" query ].
    // Its authority replaces Host.
    const bool https = target[4] != ':';
    scratch_.Add(":scheme", https ? "https" : "http");
    absl::string_view rest = target.substr(https ? 8 : 7);
    const size_t end = rest.find_first_of("/?");
    scratch_.Add(":authority", rest.substr(0, end));
    authority_set_ = true;
    absl::string_view path =
        end == absl::string_view::npos ? absl::string_view() : rest.substr(end);
    if (path.empty() || path[0] != '/') {
      path_scratch_.assign("/");
      path_scratch_.append(path.data(), path.size());
      path = path_scratch_;
    }
    scratch_.Add(":path", path);
  }
  return Action::kContinue;
}

Action ServerCodec::OnHeader(absl::string_view name, absl::string_view value) {
  if (name.size() == 4 && ascii_case::EqualsLowercase(name, "host")) {
    // Host becomes :authority, as HTTP/2 carries it.
    if (!authority_set_) {
      scratch_.Add(":authority", value);
      authority_set_ = true;
    }
    return Action::kContinue;
  }
  if (options_.auto_continue && name.size() == 6 && ascii_case::EqualsLowercase(name, "expect") &&
      ascii_case::EqualsLowercase(value, "100-continue")) {
    return Action::kContinue;  // the codec answers it
  }
  return CodecBase::OnHeader(name, value);
}

absl::Status ServerCodec::OnHeadersEvent() {
  const MessageInfo& info = parser_.message_info();
  protocol_ = info.version_minor == 0 ? Protocol::kHttp10 : Protocol::kHttp11;
  if (connect_request_ && !options_.allow_connect) {
    ++counters_->connect_refused;
    scratch_.Clear();
    WriteLocalReply(403, "CONNECT is not allowed\n");
    error_ = absl::PermissionDeniedError("CONNECT is not allowed");
    CloseConnection(/*flush=*/true);
    return error_;
  }
  BeginStream(nullptr);
  request_keep_alive_ = info.keep_alive;
  upgrade_request_ = info.upgrade;
  bool end_stream = !upgrade_request_ &&
                    (info.framing == BodyFraming::kNone ||
                     (info.framing == BodyFraming::kContentLength && info.content_length == 0));
  // RFC 9110 10.1.1: 100-continue from an HTTP/1.0 client is ignored.
  expect_continue_ = info.expect_continue && info.version_minor == 1 && !end_stream;
  // Marked before DecodeHeaders so a response completed inside it finds the request complete.
  in_end_delivered_ = end_stream;
  ++counters_->requests;
  HeaderMapPtr headers = TakeHeaders();
  StreamDecoder& decoder = callbacks_.NewStream(stream_);
  if (!stream_active_) return error_;
  decoder_ = &decoder;
  decoder.DecodeHeaders(std::move(headers), end_stream);
  MaybeSendAutoContinue();
  return absl::OkStatus();
}

void ServerCodec::MaybeSendAutoContinue() {
  if (!options_.auto_continue || !expect_continue_ || continue_sent_ || !stream_active_ ||
      out_headers_sent_ || in_end_delivered_ || stream_read_disabled_ > 0) {
    return;
  }
  continue_sent_ = true;
  ++counters_->informational;
  out_.Append("HTTP/1.1 100 Continue\r\n\r\n");
  WriteOut();
}

void ServerCodec::OnMessageCompleteEvent() {
  in_message_done_ = true;
  // An upgrade request's stream stays open for the tunnel; ReadyForInput() holds what follows
  // until the response decides.
  if (upgrade_request_) return;
  DeliverMessageEnd();
}

void ServerCodec::OnInputEnded() {
  if (out_complete_ && !tunnel_) CompleteStream();
}

void ServerCodec::Encode1xx(const HeaderMap& headers) {
  // RFC 9110 15.2: no 1xx to an HTTP/1.0 client; none after the final response started.
  if (!stream_active_ || out_headers_sent_ || protocol_ == Protocol::kHttp10) return;
  int status = StatusOf(headers);
  if (status < 100 || status > 199 || status == 101) return;
  if (status == 100) {
    if (continue_sent_) return;
    continue_sent_ = true;
  }
  ++counters_->informational;
  WriteBlock(out_, EstimateBlock(headers, kBlockOverhead), [&](auto& sink) {
    EmitStatusLine(status, sink);
    EmitFields(headers, SkipInResponse, sink);
    sink("\r\n");
  });
  WriteOut();
}

void ServerCodec::EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) {
  if (!stream_active_ || out_headers_sent_) return;
  int status = StatusOf(headers);
  if (status == 0 || status > 599) {
    LOG_EVERY_N_SEC(ERROR, 1) << "h1: response without a valid :status; resetting";
    ResetActiveStream(StreamResetReason::kLocalReset, "invalid :status");
    return;
  }
  if (status < 200 && status != 101) {
    Encode1xx(headers);
    return;
  }
  bool open_tunnel = false;
  if (upgrade_request_) {
    open_tunnel = connect_request_ ? status < 300 : status == 101;
  }
  if (status == 101 && !open_tunnel) {
    LOG_EVERY_N_SEC(ERROR, 1) << "h1: 101 without an upgrade request; resetting";
    ResetActiveStream(StreamResetReason::kLocalReset, "101 without an upgrade request");
    return;
  }
  out_headers_sent_ = true;
  ++counters_->responses;

  bool no_body = head_request_ || status == 204 || status == 304 || open_tunnel;
  uint64_t content_length = 0;
  bool has_content_length = ContentLengthOf(headers, &content_length);
  // The connection ends after this response when anyone asked for it, or when the rest of the
  // request cannot be found reliably (a refused upgrade, an unanswered 100-continue, a response
  // that finishes before its request).
  bool close = goaway_ || !keep_alive_ || !request_keep_alive_ || remote_eof_ ||
               HasConnectionToken(headers, "close") || (upgrade_request_ && !open_tunnel) ||
               (expect_continue_ && !continue_sent_ && !in_end_delivered_) ||
               (end_stream && !in_end_delivered_);
  bool emit_length = false;
  uint64_t length_value = 0;
  if (open_tunnel) {
    out_framing_ = OutFraming::kRaw;
  } else if (no_body) {
    out_framing_ = OutFraming::kNone;
    // HEAD and 304 may state the length the body would have; 204 never carries one.
    if (has_content_length && status != 204) {
      emit_length = true;
      length_value = content_length;
    }
  } else if (end_stream) {
    out_framing_ = OutFraming::kNone;
    emit_length = true;  // without it the response would be delimited by close
  } else if (has_content_length) {
    out_framing_ = OutFraming::kContentLength;
    out_remaining_ = content_length;
    emit_length = true;
    length_value = content_length;
  } else if (protocol_ == Protocol::kHttp11) {
    out_framing_ = OutFraming::kChunked;
  } else {
    out_framing_ = OutFraming::kUntilClose;  // HTTP/1.0 has no chunked coding
    close = true;
  }
  if (close) keep_alive_ = false;
  std::optional<absl::string_view> upgrade;
  if (status == 101) upgrade = headers.Get("upgrade");

  const size_t estimate =
      EstimateBlock(headers, kBlockOverhead + (upgrade.has_value() ? upgrade->size() : 0));
  WriteBlock(out_, estimate, [&](auto& sink) {
    EmitStatusLine(status, sink);
    EmitFields(headers, SkipInResponse, sink);
    if (emit_length) {
      char buf[20];
      sink("content-length: ");
      sink(FormatDecimal(length_value, buf));
      sink("\r\n");
    }
    if (out_framing_ == OutFraming::kChunked) sink("transfer-encoding: chunked\r\n");
    if (status == 101) {
      sink("connection: upgrade\r\n");
      if (upgrade.has_value() && SafeField("upgrade", *upgrade)) {
        sink("upgrade: ");
        sink(*upgrade);
        sink("\r\n");
      }
    } else if (!keep_alive_ && !open_tunnel) {
      sink("connection: close\r\n");
    } else if (protocol_ == Protocol::kHttp10 && !open_tunnel) {
      sink("connection: keep-alive\r\n");
    }
    sink("\r\n");
  });
  WriteOut();
  if (open_tunnel) {
    tunnel_ = true;
    keep_alive_ = false;
    ++counters_->upgrades;
    if (!processing_ && !pending_input_.empty()) ScheduleResume();
  }
  if (end_stream) FinishLocalMessage();
}

void ServerCodec::OnLocalMessageComplete() {
  if (tunnel_) {
    // No half-close in CodecIo: ending our direction of a tunnel ends the connection.
    CompleteStream();
    return;
  }
  if (upgrade_request_ || !in_end_delivered_) {
    // The request's end will not be read (refused upgrade, early response): it cannot be
    // reused, so the stream completes here and the connection closes.
    keep_alive_ = false;
    in_end_delivered_ = true;
  }
  if (out_framing_ == OutFraming::kUntilClose) keep_alive_ = false;
  if (in_end_delivered_) CompleteStream();
}

void ServerCodec::WriteLocalReply(int status, absl::string_view body) {
  ++counters_->responses;
  local_reply_status_ = status;
  out_headers_sent_ = true;
  WriteBlock(out_, body.size() + kBlockOverhead, [&](auto& sink) {
    char buf[20];
    EmitStatusLine(status, sink);
    sink("connection: close\r\ncontent-type: text/plain\r\ncontent-length: ");
    sink(FormatDecimal(body.size(), buf));
    sink("\r\n\r\n");
    sink(body);
  });
  WriteOut();
}

absl::Status ServerCodec::OnParseError(ParserError error) {
  CountProtocolError(error);
  if (!stream_active_ || !out_headers_sent_) {
    WriteLocalReply(HttpStatusForError(error), absl::StrCat(ParserErrorMessage(error), "\n"));
  }
  error_ = parser_.ToStatus();
  ResetStreamCallbacks(StreamResetReason::kProtocolError, ParserErrorName(error));
  CloseConnection(/*flush=*/true);
  return error_;
}

absl::Status ServerCodec::OnEofEvent() {
  if (stream_active_ && tunnel_) {
    // The peer's direction of the tunnel ended.
    in_end_delivered_ = true;
    body_buffer_.Clear();
    decoder_->DecodeData(body_buffer_, true);
    return absl::OkStatus();
  }
  if (stream_active_ && !in_end_delivered_ && !upgrade_request_) {
    ResetStreamCallbacks(StreamResetReason::kConnectionTermination, "peer closed mid-request");
    CloseConnection(/*flush=*/false);
    return absl::InvalidArgumentError(
        absl::StrCat(ParserErrorName(ParserError::kIncompleteMessage), ": ",
                     ParserErrorMessage(ParserError::kIncompleteMessage)));
  }
  if (stream_active_) {
    // The request is in; a half-closed client still gets its response, then the connection ends.
    keep_alive_ = false;
    return absl::OkStatus();
  }
  CloseConnection(/*flush=*/true);
  return absl::OkStatus();
}

}  // namespace meshlet::http::h1
