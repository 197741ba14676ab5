#include "sidecar/tracing/collector_client.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/thread_name.h"

namespace meshlet::sidecar::tracing {
namespace {

// Collectors answer with a short body or none; a longer one is not read to keep the connection.
constexpr uint64_t kMaxDrainedBody = 64 * 1024;

// 1xx but 101 (which would switch protocols: a final answer here, and not a 2xx).
bool IsInterim(int status) { return status >= 100 && status < 200 && status != 101; }

}  // namespace

absl::StatusOr<std::shared_ptr<CollectorAddress>> CollectorAddress::Create(std::string host_port) {
  absl::StatusOr<net::HostPort> split = net::SplitHostPort(host_port);
  if (!split.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("collector address: ", split.status().message()));
  if (split->unbracketed_ipv6()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collector address \"", host_port, "\": an IPv6 address goes in brackets, [addr]:port"));
  }
  absl::StatusOr<net::Address> numeric = net::Address::FromIp(split->host, split->port);
  std::shared_ptr<CollectorAddress> address(new CollectorAddress(
      std::move(host_port), std::move(split->host), split->port, !numeric.ok()));
  if (numeric.ok()) {
    MutexLock lock(&address->mu_);
    address->addresses_ = {*numeric};
  }
  return address;
}

std::shared_ptr<CollectorAddress> CollectorAddress::Resolved(std::string text,
                                                             std::vector<net::Address> addresses) {
  std::shared_ptr<CollectorAddress> address(
      new CollectorAddress(std::move(text), "", 0, /*needs_resolving=*/false));
  MutexLock lock(&address->mu_);
  address->addresses_ = std::move(addresses);
  return address;
}

CollectorAddress::CollectorAddress(std::string text, std::string host, uint16_t port,
                                   bool needs_resolving)
    : text_(std::move(text)),
      host_(std::move(host)),
      port_(port),
      needs_resolving_(needs_resolving) {}

absl::Status CollectorAddress::Resolve() {
  if (!needs_resolving_) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<net::Address> found, net::ResolveAll(host_, port_));
  MutexLock lock(&mu_);
  addresses_ = std::move(found);
  return absl::OkStatus();
}

void CollectorAddress::ResolveInBackground() {
  if (!needs_resolving_ || resolving_.exchange(true)) return;
  // Detached: a resolver that hangs (DNS unreachable) delays nothing, not even the exit; the
  // thread keeps this object alive until it is done.
  std::thread([self = shared_from_this()] {
    SetThreadName("otlp-resolve");
    if (absl::Status status = self->Resolve(); !status.ok()) {
      LOG_EVERY_N_SEC(WARN, 60) << "tracing collector: " << status;
    }
    self->resolving_.store(false);
  }).detach();
}

std::vector<net::Address> CollectorAddress::Get() const {
  MutexLock lock(&mu_);
  return addresses_;
}

CollectorClient::CollectorClient(event::Loop& loop, std::shared_ptr<const CollectorAddress> address,
                                 Options options, const Clock& clock)
    : loop_(loop),
      address_(std::move(address)),
      options_(std::move(options)),
      clock_(clock),
      timeout_timer_(loop,
                     [this] {
                       Finish(Result{.error = absl::StrCat(
                                         "no answer from ", address_->text(), " within ",
                                         absl::FormatDuration(absl::FromChrono(options_.timeout)))},
                              /*keep=*/false);
                     }),
      failure_timer_(loop, [this] { Finish(std::move(failure_), /*keep=*/false); }) {}

CollectorClient::~CollectorClient() { DropConnection(); }

void CollectorClient::DropConnection() {
  if (socket_ == nullptr) return;
  Socket* const socket = socket_;
  socket_ = nullptr;
  socket->owner = nullptr;
  // libuv writes nothing more once the handle closes; pending requests call back cancelled.
  uv_close(reinterpret_cast<uv_handle_t*>(&socket->tcp),
           [](uv_handle_t* handle) { delete static_cast<Socket*>(handle->data); });
}

void CollectorClient::Post(absl::string_view content_type,
                           std::initializer_list<absl::string_view> body, Done done) {
  CHECK(!busy());
  CHECK(body.size() <= kMaxBodyPieces);
  busy_ = true;
  done_ = std::move(done);
  size_t length = 0;
  for (absl::string_view piece : body) length += piece.size();
  if (socket_ != nullptr &&
      (socket_->peer_closed || clock_.Now() - last_used_ > options_.idle_limit)) {
    DropConnection();
  }
  reused_ = socket_ != nullptr;
  answer_byte_ = false;
  status_ = 0;
  head_complete_ = false;
  keep_alive_ = false;
  message_complete_ = false;
  body_bytes_ = 0;
  parser_.emplace(http::h1::Parser::Type::kResponse, static_cast<http::h1::ParserVisitor*>(this));
  parser_->SetRequestMethod("POST");
  timeout_timer_.Enable(options_.timeout);

  head_.clear();
  absl::StrAppend(&head_, "POST ", options_.path, " HTTP/1.1\r\nhost: ", address_->text(),
                  "\r\ncontent-type: ", content_type, "\r\ncontent-length: ", length, "\r\n\r\n");
  request_pieces_ = 0;
  request_[request_pieces_++] = uv_buf_init(head_.data(), static_cast<unsigned>(head_.size()));
  for (absl::string_view piece : body) {
    if (piece.empty()) continue;
    request_[request_pieces_++] =
        uv_buf_init(const_cast<char*>(piece.data()), static_cast<unsigned>(piece.size()));
  }

  if (socket_ == nullptr) {
    candidates_ = address_->Get();
    next_candidate_ = 0;
    if (candidates_.empty()) {
      failure_ = Result{.error = absl::StrCat(address_->text(), " has not resolved")};
      failure_timer_.Enable(Duration::zero());
      return;
    }
    if (!ConnectNext()) failure_timer_.Enable(Duration::zero());
    return;  // the request goes once connected
  }
  StartWrite();
}

bool CollectorClient::ConnectNext() {
  while (next_candidate_ < candidates_.size()) {
    const net::Address& address = candidates_[next_candidate_++];
    socket_ = new Socket;
    socket_->owner = this;
    socket_->tcp.data = socket_;
    socket_->connect.data = socket_;
    socket_->write.data = socket_;
    CHECK(uv_tcp_init(loop_.uv_loop(), &socket_->tcp) == 0);
    ++connections_opened_;
    const int rc = uv_tcp_connect(&socket_->connect, &socket_->tcp, address.as_sockaddr(),
                                  &CollectorClient::OnConnect);
    if (rc == 0) return true;
    failure_ = Result{.error = absl::StrCat("connect ", address_->text(), " (", address.ToString(),
                                            "): ", uv_strerror(rc))};
    DropConnection();
  }
  return false;
}

void CollectorClient::StartWrite() {
  socket_->writing = true;
  const int rc = uv_write(&socket_->write, reinterpret_cast<uv_stream_t*>(&socket_->tcp), request_,
                          request_pieces_, &CollectorClient::OnWrite);
  if (rc != 0) {
    socket_->writing = false;
    failure_ = Result{.may_resend = reused_,
                      .error = absl::StrCat("send to ", address_->text(), ": ", uv_strerror(rc))};
    DropConnection();
    failure_timer_.Enable(Duration::zero());
  }
}

void CollectorClient::OnConnect(uv_connect_t* request, int status) {
  Socket* const socket = static_cast<Socket*>(request->data);
  CollectorClient* const self = socket->owner;
  if (self == nullptr) return;  // let go of (closing)
  if (status != 0) {
    // Refused or unreachable: the name's next address, if it has one (IPv6 and IPv4, say).
    if (self->busy() && self->next_candidate_ < self->candidates_.size()) {
      self->DropConnection();
      if (self->ConnectNext()) return;
      self->Finish(std::move(self->failure_), /*keep=*/false);
      return;
    }
    self->OnSocketError("connect", status);
    return;
  }
  socket->connected = true;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&socket->tcp),
      [](uv_handle_t* handle, size_t, uv_buf_t* buf) {
        CollectorClient* const owner = static_cast<Socket*>(handle->data)->owner;
        if (owner == nullptr) {
          *buf = uv_buf_init(nullptr, 0);
          return;
        }
        *buf = uv_buf_init(owner->read_buffer_, sizeof(owner->read_buffer_));
      },
      &CollectorClient::OnRead);
  if (self->busy()) self->StartWrite();
}

void CollectorClient::OnWrite(uv_write_t* request, int status) {
  Socket* const socket = static_cast<Socket*>(request->data);
  socket->writing = false;
  CollectorClient* const self = socket->owner;
  if (self == nullptr || status == 0) return;
  self->OnSocketError("send", status);
}

void CollectorClient::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  Socket* const socket = static_cast<Socket*>(stream->data);
  CollectorClient* const self = socket->owner;
  if (self == nullptr) return;
  if (nread > 0) {
    self->OnData(absl::string_view(buf->base, static_cast<size_t>(nread)), false);
  } else if (nread == UV_EOF) {
    socket->peer_closed = true;
    self->OnData({}, true);
  } else if (nread < 0) {
    self->OnSocketError("read", static_cast<int>(nread));
  }
}

void CollectorClient::OnSocketError(absl::string_view what, int status) {
  if (!busy()) {
    DropConnection();  // an idle connection that failed is simply gone
    return;
  }
  Result result;
  // Over a kept connection, before any byte of answer: usually the collector closing it as idle
  // just as the request went out.
  result.may_resend = reused_ && !answer_byte_;
  result.error = absl::StrCat(what, " ", address_->text(), ": ", uv_strerror(status));
  Finish(std::move(result), /*keep=*/false);
}

void CollectorClient::OnData(absl::string_view data, bool end_stream) {
  if (!busy()) {
    // Nothing was asked: a collector that closes or talks out of turn loses the connection.
    DropConnection();
    return;
  }
  answer_byte_ = answer_byte_ || !data.empty();
  size_t consumed = 0;
  if (!data.empty() && parser_->status() == http::h1::Parser::Status::kOk) {
    consumed = parser_->Execute(data);
  }
  // Bytes past the answer: the collector is out of step, the connection cannot be trusted.
  const bool bytes_after_answer = message_complete_ && consumed < data.size();
  if (end_stream && !message_complete_) parser_->Finish();  // a body that ends with the connection
  if (message_complete_ || (head_complete_ && parser_->status() != http::h1::Parser::Status::kOk)) {
    const bool keep =
        message_complete_ && keep_alive_ && !bytes_after_answer && !end_stream && status_ >= 200;
    Result result;
    result.ok = status_ >= 200 && status_ <= 299;
    if (!result.ok)
      result.error = absl::StrCat(address_->text(), options_.path, " answered ", status_);
    Finish(std::move(result), keep);
    return;
  }
  if (parser_->status() != http::h1::Parser::Status::kOk || end_stream) {
    Result result;
    // Closed without a byte of answer over a kept connection: usually the collector closing it
    // as idle just as the request went out.
    result.may_resend = reused_ && !answer_byte_;
    result.error = absl::StrCat(answer_byte_ ? "no HTTP answer from " : "closed unanswered by ",
                                address_->text());
    Finish(std::move(result), /*keep=*/false);
  }
}

void CollectorClient::Finish(Result result, bool keep) {
  timeout_timer_.Disable();
  failure_timer_.Disable();
  // An answer that came before the request was all written leaves the connection mid-request.
  if (keep && socket_ != nullptr && !socket_->writing) {
    last_used_ = clock_.Now();
  } else {
    DropConnection();
  }
  Done done = std::move(done_);
  done_ = nullptr;
  busy_ = false;
  if (done) done(std::move(result));
}

http::h1::ParserVisitor::Action CollectorClient::OnStatusLine(int, int, int status_code,
                                                              absl::string_view) {
  status_ = status_code;
  return Action::kContinue;
}

http::h1::ParserVisitor::Action CollectorClient::OnHeadersComplete(
    const http::h1::MessageInfo& info) {
  if (IsInterim(status_)) return Action::kContinue;  // the final answer follows
  head_complete_ = true;
  keep_alive_ = info.keep_alive;
  // A body delimited by the connection's end, or longer than is worth reading, is not read: the
  // connection closes instead.
  const bool too_long = info.framing == http::h1::BodyFraming::kContentLength &&
                        info.content_length > kMaxDrainedBody;
  if (info.framing == http::h1::BodyFraming::kUntilClose || too_long) {
    keep_alive_ = false;
    message_complete_ = true;  // the status is what matters
    return Action::kPause;
  }
  return Action::kContinue;
}

http::h1::ParserVisitor::Action CollectorClient::OnBody(absl::string_view data) {
  body_bytes_ += data.size();
  if (body_bytes_ > kMaxDrainedBody) {
    keep_alive_ = false;
    message_complete_ = true;
    return Action::kPause;
  }
  return Action::kContinue;
}

http::h1::ParserVisitor::Action CollectorClient::OnMessageComplete() {
  if (IsInterim(status_)) {
    // An interim answer (100 Continue, 103 Early Hints): the final one comes next.
    status_ = 0;
    return Action::kContinue;
  }
  message_complete_ = true;
  return Action::kPause;
}

}  // namespace meshlet::sidecar::tracing
