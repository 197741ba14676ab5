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

namespace client_internal {

// A connection with its CodecIo and codec (declared in the order they depend on each other, so
// destroyed in reverse). It is the codec's connection callbacks, and while idle in a
// KeptConnections the connection's too.
struct Kept final : net::ConnectionCallbacks, http::ConnectionCallbacks {
  Kept(event::Loop& loop, std::unique_ptr<net::Connection> c)
      : connection(std::move(c)),
        io(*connection),
        codec(loop, io, static_cast<http::ConnectionCallbacks&>(*this)),
        idle_timer(loop, [this] {
          ++owner->idle_timeouts_;
          owner->Remove(this);
        }) {}
  ~Kept() override {
    connection->SetCallbacks(nullptr);
    if (!connection->closed()) connection->Close(net::CloseMode::kNoFlush);
  }

  // Whether another request may go on it now.
  bool Reusable() const {
    return !goaway && !connection->closed() && !connection->remote_closed() &&
           codec.ActiveStreams() == 0 && codec.CanOpenStream();
  }

  // http::ConnectionCallbacks: the answer said `connection: close`.
  void OnGoAway() override { goaway = true; }
  // net::ConnectionCallbacks, while idle: the server has nothing to say on an idle connection.
  void OnData(net::Buffer& data, bool end_stream) override {
    if (data.length() == 0 && !end_stream) return;
    data.Clear();
    ++owner->closed_by_server_;
    owner->Remove(this);
  }
  void OnClose(net::CloseReason, const absl::Status&) override {
    ++owner->closed_by_server_;
    owner->Remove(this);
  }

  std::unique_ptr<net::Connection> connection;
  ConnectionIo io;
  h1::ClientCodec codec;
  bool goaway = false;
  KeptConnections* owner = nullptr;  // while idle
  event::Timer idle_timer;
};

// Closes the connection now and deletes it at the end of the loop turn (it may be inside one of
// its own callbacks).
void Discard(event::Loop& loop, std::unique_ptr<Kept> kept) {
  if (kept == nullptr) return;
  kept->owner = nullptr;
  kept->idle_timer.Disable();
  kept->connection->SetCallbacks(nullptr);
  if (!kept->connection->closed()) kept->connection->Close(net::CloseMode::kNoFlush);
  loop.DeferDelete(std::move(kept));
}

}  // namespace client_internal

using client_internal::Discard;
using client_internal::Kept;

KeptConnections::KeptConnections(event::Loop& loop) : KeptConnections(loop, Options()) {}

KeptConnections::KeptConnections(event::Loop& loop, Options options)
    : loop_(loop), options_(options) {}

KeptConnections::~KeptConnections() {
  for (std::unique_ptr<Kept>& kept : idle_) Discard(loop_, std::move(kept));
}

std::unique_ptr<Kept> KeptConnections::Take() {
  while (!idle_.empty()) {
    std::unique_ptr<Kept> kept = std::move(idle_.back());
    idle_.pop_back();
    if (kept->Reusable()) {
      kept->owner = nullptr;
      kept->idle_timer.Disable();
      kept->connection->SetCallbacks(nullptr);
      return kept;
    }
    Discard(loop_, std::move(kept));
  }
  return nullptr;
}

void KeptConnections::Give(std::unique_ptr<Kept> kept) {
  if (options_.max_idle == 0 || options_.idle_timeout <= Duration::zero() || !kept->Reusable()) {
    Discard(loop_, std::move(kept));
    return;
  }
  kept->owner = this;
  kept->connection->SetCallbacks(kept.get());
  kept->idle_timer.Enable(options_.idle_timeout);
  idle_.push_back(std::move(kept));
  if (idle_.size() > options_.max_idle) {
    Discard(loop_, std::move(idle_.front()));
    idle_.erase(idle_.begin());
  }
}

void KeptConnections::Remove(Kept* kept) {
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (it->get() != kept) continue;
    std::unique_ptr<Kept> owned = std::move(*it);
    idle_.erase(it);
    Discard(loop_, std::move(owned));
    return;
  }
}

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
  KeptConnections* keep = options_.keep;
  conn_ = keep != nullptr && !retried_ ? keep->Take() : nullptr;
  reused_ = conn_ != nullptr;
  if (reused_) {
    ++keep->reused_;
  } else {
    const net::Address& address = addresses_[next_address_++];
    // The connect gets what is left of the timeout (at least a millisecond: zero means none).
    const Duration left = std::max<Duration>(deadline_ - std::chrono::steady_clock::now(),
                                             std::chrono::milliseconds(1));
    conn_ = std::make_unique<Kept>(
        loop_, net::Connection::Connect(loop_, address, left, options_.transport_factory));
    if (keep != nullptr) ++keep->opened_;
  }
  conn_->connection->SetCallbacks(this);
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
  encoder_ = &conn_->codec.NewStream(*this);
  encoder_->GetStream().AddCallbacks(*this);
  if (keep == nullptr) conn_->codec.GoAway();  // one request: it says `connection: close`
  // Written as soon as the connection is up (a Connection buffers what is written meanwhile).
  encoder_->EncodeHeaders(headers, request_.body.empty());
  if (!reset_ && !request_.body.empty()) {
    net::Buffer body(request_.body);
    encoder_->EncodeData(body, true);
  }
  if (reset_) Finish(ClientError::kBadRequest, reset_details_);
}

void HttpFetch::DropConnection() {
  if (encoder_ != nullptr && conn_ != nullptr && conn_->codec.ActiveStreams() > 0) {
    encoder_->GetStream().RemoveCallbacks(*this);
  }
  encoder_ = nullptr;
  // This may run inside the connection's or the codec's own callbacks: deleted at the end of the
  // loop turn.
  Discard(loop_, std::move(conn_));
}

void HttpFetch::ReleaseConnection(bool may_keep) {
  if (conn_ == nullptr) return;
  if (!may_keep || options_.keep == nullptr || !result_.ok() || !conn_->Reusable()) {
    DropConnection();
    return;
  }
  encoder_ = nullptr;  // the stream is over
  options_.keep->Give(std::move(conn_));
}

bool HttpFetch::RetryOnNewConnection() {
  if (!reused_ || retried_ || !options_.retry_on_reused || received_ > 0 || head_received_ ||
      std::chrono::steady_clock::now() >= deadline_) {
    return false;
  }
  retried_ = true;
  ++options_.keep->retried_;
  DropConnection();
  next_address_ = 0;
  Attempt();
  return true;
}

void HttpFetch::Finish(ClientError error, std::string detail) {
  if (finished_) return;
  if (error == ClientError::kClosed || error == ClientError::kTlsFailed) {
    if (RetryOnNewConnection()) return;
  }
  finished_ = true;
  timeout_timer_.Disable();
  // A complete answer found inside the codec's Dispatch: OnData releases the connection once the
  // codec is done with it.
  if (error != ClientError::kNone || options_.keep == nullptr) DropConnection();
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
  absl::Status status = conn_->codec.Dispatch(data);
  if (finished_) {
    ReleaseConnection(status.ok() && !end_stream);
    return;
  }
  if (!status.ok()) {
    Finish(ClientError::kMalformed, std::string(status.message()));
    return;
  }
  if (end_stream) {
    // A body delimited by the connection's end completes here; anything else was cut short.
    (void)conn_->codec.OnEndOfStream();
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
