#include "common/http/client.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/logging.h"

namespace meshlet::http {

absl::string_view ClientErrorName(ClientError error) {
  switch (error) {
    case ClientError::kNone:
      return "ok";
    case ClientError::kBadRequest:
      return "bad_request";
    case ClientError::kConnectFailed:
      return "connect_failed";
    case ClientError::kTlsFailed:
      return "tls_failed";
    case ClientError::kTimeout:
      return "timeout";
    case ClientError::kMalformed:
      return "malformed";
    case ClientError::kTooLarge:
      return "too_large";
    case ClientError::kClosed:
      return "closed";
  }
  return "unknown";
}

std::unique_ptr<HttpFetch> HttpFetch::Start(event::Loop& loop, std::vector<net::Address> addresses,
                                            ClientRequest request, ClientOptions options,
                                            Done done) {
  std::unique_ptr<HttpFetch> fetch(new HttpFetch(loop, std::move(addresses), std::move(request),
                                                 std::move(options), std::move(done)));
  if (fetch->addresses_.empty()) {
    fetch->Finish(ClientError::kConnectFailed, "no address to connect to");
  } else {
    fetch->Attempt();
  }
  return fetch;
}

HttpFetch::HttpFetch(event::Loop& loop, std::vector<net::Address> addresses, ClientRequest request,
                     ClientOptions options, Done done)
    : loop_(loop),
      addresses_(std::move(addresses)),
      request_(std::move(request)),
      options_(std::move(options)),
      done_(std::move(done)),
      deadline_(std::chrono::steady_clock::now() + options_.timeout),
      timeout_timer_(loop,
                     [this] {
                       Finish(
                           ClientError::kTimeout,
                           absl::StrCat("no answer within ",
                                        absl::FormatDuration(absl::FromChrono(options_.timeout))));
                     }),
      report_timer_(loop, [this] {
        Done done = std::move(done_);
        done_ = nullptr;
        done(std::move(result_));  // may destroy this
      }) {
  timeout_timer_.Enable(options_.timeout);
}

HttpFetch::~HttpFetch() { DropConnection(); }

void HttpFetch::Attempt() {
  const net::Address& address = addresses_[next_address_++];
  // The connect gets what is left of the timeout (at least a millisecond: zero means none).
  const Duration left = std::max<Duration>(deadline_ - std::chrono::steady_clock::now(),
                                           std::chrono::milliseconds(1));
  connection_ = net::Connection::Connect(loop_, address, left, options_.transport_factory);
  connection_->SetCallbacks(this);
  io_ = std::make_unique<ConnectionIo>(*connection_);
  codec_ = std::make_unique<h1::ClientCodec>(loop_, *io_,
                                             static_cast<http::ConnectionCallbacks&>(*this));
  reset_ = false;
  received_ = 0;
  head_received_ = false;
  streaming_ = false;

  HeaderMap headers;
  headers.Add(":method", request_.method);
  headers.Add(":path", request_.path);
  headers.Add(":authority", request_.authority);
  for (const HeaderView h : request_.headers) {
    if (!h.name.empty() && h.name[0] != ':') headers.Add(h.name, h.value);
  }
  if (!request_.body.empty()) headers.Set("content-length", absl::StrCat(request_.body.size()));
  encoder_ = &codec_->NewStream(*this);
  encoder_->GetStream().AddCallbacks(*this);
  codec_->GoAway();  // one request: it says `connection: close`
  // Written as soon as the connection is up (a Connection buffers what is written meanwhile).
  encoder_->EncodeHeaders(headers, request_.body.empty());
  if (!reset_ && !request_.body.empty()) {
    net::Buffer body(request_.body);
    encoder_->EncodeData(body, true);
  }
  if (reset_) Finish(ClientError::kBadRequest, reset_details_);
}

void HttpFetch::DropConnection() {
  if (encoder_ != nullptr && codec_ != nullptr && codec_->ActiveStreams() > 0) {
    encoder_->GetStream().RemoveCallbacks(*this);
  }
  encoder_ = nullptr;
  if (connection_ != nullptr) {
    connection_->SetCallbacks(nullptr);
    if (!connection_->closed()) connection_->Close(net::CloseMode::kNoFlush);
  }
  // This may run inside the connection's or the codec's own callbacks: they go at the end of the
  // loop turn, the codec first (it refers to the CodecIo, which refers to the connection).
  loop_.DeferDelete(std::move(codec_));
  loop_.DeferDelete(std::move(io_));
  loop_.DeferDelete(std::move(connection_));
}

void HttpFetch::Finish(ClientError error, std::string detail) {
  if (finished_) return;
  finished_ = true;
  timeout_timer_.Disable();
  DropConnection();
  if (error != ClientError::kNone) {
    const net::CloseReason close_reason = result_.close_reason;
    result_ = ClientResult();
    result_.error = error;
    result_.detail = std::move(detail);
    result_.close_reason = close_reason;
  }
  report_timer_.Enable(Duration::zero());
}

std::string HttpFetch::ClosedDetail() const {
  return head_received_ ? "the connection closed before the answer was complete"
                        : "the connection closed without an answer";
}

void HttpFetch::OnData(net::Buffer& data, bool end_stream) {
  if (finished_) return;
  if (!streaming_) received_ += data.length();
  if (received_ > options_.max_response_bytes) {
    Finish(ClientError::kTooLarge,
           absl::StrCat("the answer is larger than ", options_.max_response_bytes, " bytes"));
    return;
  }
  absl::Status status = codec_->Dispatch(data);
  if (finished_) return;
  if (!status.ok()) {
    Finish(ClientError::kMalformed, std::string(status.message()));
    return;
  }
  if (end_stream) {
    // A body delimited by the connection's end completes here; anything else was cut short.
    (void)codec_->OnEndOfStream();
    if (finished_) return;
    result_.close_reason = net::CloseReason::kEndOfStream;
    Finish(ClientError::kClosed, ClosedDetail());
    return;
  }
  if (reset_) Finish(ClientError::kClosed, reset_details_);
}

void HttpFetch::OnClose(net::CloseReason reason, const absl::Status& detail) {
  if (finished_) return;
  // The codec closes the connection from inside the calls this object makes, after a reset that
  // the caller of that call judges.
  if (reason == net::CloseReason::kLocalClose && reset_) return;
  result_.close_reason = reason;
  const std::string why =
      detail.ok() ? std::string(net::CloseReasonName(reason)) : std::string(detail.message());
  switch (reason) {
    case net::CloseReason::kConnectFailed:
    case net::CloseReason::kConnectTimeout:
      if (next_address_ < addresses_.size() && std::chrono::steady_clock::now() < deadline_) {
        DropConnection();
        Attempt();
        return;
      }
      Finish(ClientError::kConnectFailed, why);
      return;
    case net::CloseReason::kTransportError:
      Finish(ClientError::kTlsFailed, why);
      return;
    default:
      Finish(ClientError::kClosed, detail.ok() ? ClosedDetail() : why);
      return;
  }
}

void HttpFetch::DecodeHeaders(HeaderMapPtr headers, bool end_stream) {
  head_received_ = true;
  (void)absl::SimpleAtoi(headers->Get(":status").value_or("0"), &result_.status);
  for (const HeaderView h : *headers) {
    if (!h.name.empty() && h.name[0] != ':') result_.headers.Add(h.name, h.value);
  }
  if (end_stream || !options_.read_body) {
    Finish(ClientError::kNone);
    return;
  }
  streaming_ = options_.on_body_data != nullptr && result_.status >= 200 && result_.status <= 299;
}

void HttpFetch::DecodeData(net::Buffer& data, bool end_stream) {
  if (finished_) return;
  if (streaming_) {
    bool more = true;
    data.ForEachSlice([this, &more](absl::string_view slice) {
      if (more && !finished_) more = options_.on_body_data(slice);
    });
    data.Clear();
    if (!more) Finish(ClientError::kNone);
  } else {
    data.ForEachSlice(
        [this](absl::string_view slice) { result_.body.append(slice.data(), slice.size()); });
    data.Clear();
  }
  if (end_stream) Finish(ClientError::kNone);
}

void HttpFetch::DecodeTrailers(HeaderMapPtr) { Finish(ClientError::kNone); }

void HttpFetch::OnResetStream(StreamResetReason, absl::string_view details) {
  encoder_ = nullptr;
  reset_ = true;
  reset_details_ = std::string(details);
}

std::string QueryEscape(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

ClientResult FetchBlocking(std::vector<net::Address> addresses, ClientRequest request,
                           ClientOptions options) {
  event::Loop loop;
  std::optional<ClientResult> result;
  const Duration timeout = options.timeout;
  std::unique_ptr<HttpFetch> fetch =
      HttpFetch::Start(loop, std::move(addresses), std::move(request), std::move(options),
                       [&result](ClientResult r) { result = std::move(r); });
  // The fetch's own timeout ends it; the margin only covers the report's extra turn.
  loop.RunUntil([&result] { return result.has_value(); }, timeout + std::chrono::seconds(1));
  fetch.reset();
  loop.RunUntilIdle();
  if (!result.has_value()) {
    result = ClientResult{.error = ClientError::kTimeout, .detail = "no answer in time"};
  }
  return *std::move(result);
}

}  // namespace meshlet::http
