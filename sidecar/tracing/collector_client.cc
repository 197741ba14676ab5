#include "sidecar/tracing/collector_client.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::tracing {
namespace {

// Collectors answer with a short body or none; a longer one is not read to keep the connection.
constexpr uint64_t kMaxDrainedBody = 64 * 1024;

}  // namespace

absl::StatusOr<std::shared_ptr<CollectorAddress>> CollectorAddress::Create(std::string host_port) {
  const size_t colon = host_port.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(host_port).substr(colon + 1), &port) || port == 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("collector address \"", host_port, "\": expected host:port"));
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  absl::StatusOr<net::Address> numeric = net::Address::FromIp(host, static_cast<uint16_t>(port));
  std::shared_ptr<CollectorAddress> address(new CollectorAddress(
      host_port, std::move(host), static_cast<uint16_t>(port), !numeric.ok()));
  if (numeric.ok()) {
    absl::MutexLock lock(&address->mu_);
    address->address_ = *numeric;
  }
  return address;
}

CollectorAddress::CollectorAddress(std::string text, std::string host, uint16_t port,
                                   bool needs_resolving)
    : text_(std::move(text)), host_(std::move(host)), port_(port),
      needs_resolving_(needs_resolving) {}

absl::Status CollectorAddress::Resolve() {
  if (!needs_resolving_) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string port = absl::StrCat(port_);
  if (int rc = ::getaddrinfo(host_.c_str(), port.c_str(), &hints, &result); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolve ", text_, ": ", gai_strerror(rc)));
  }
  std::optional<net::Address> found;
  for (addrinfo* ai = result; ai != nullptr && !found; ai = ai->ai_next) {
    absl::StatusOr<net::Address> address = net::Address::FromSockaddr(ai->ai_addr, ai->ai_addrlen);
    if (address.ok()) found = *address;
  }
  ::freeaddrinfo(result);
  if (!found) return absl::UnavailableError(absl::StrCat("resolve ", text_, ": no IP address"));
  absl::MutexLock lock(&mu_);
  address_ = found;
  return absl::OkStatus();
}

std::optional<net::Address> CollectorAddress::Get() const {
  absl::MutexLock lock(&mu_);
  return address_;
}

CollectorClient::CollectorClient(event::Loop& loop,
                                 std::shared_ptr<const CollectorAddress> address, Options options,
                                 const Clock& clock)
    : loop_(loop),
      address_(std::move(address)),
      options_(std::move(options)),
      clock_(clock),
      timeout_timer_(loop, [this] {
        Finish(Result{.error = absl::StrCat("no answer from ", address_->text(), " within ",
                                            absl::FormatDuration(absl::FromChrono(
                                                options_.timeout)))},
               /*keep=*/false);
      }),
      failure_timer_(loop, [this] { Finish(std::move(failure_), /*keep=*/false); }) {}

CollectorClient::~CollectorClient() {
  if (connection_ != nullptr) {
    connection_->SetCallbacks(nullptr);
    connection_->Close(net::CloseMode::kNoFlush);
  }
}

void CollectorClient::DropConnection() {
  if (connection_ == nullptr) return;
  connection_->SetCallbacks(nullptr);
  connection_->Close(net::CloseMode::kNoFlush);
  loop_.DeferDelete(std::move(connection_));
}

void CollectorClient::Post(absl::string_view content_type,
                           std::initializer_list<absl::string_view> body, Done done) {
  CHECK(!busy());
  done_ = std::move(done);
  size_t length = 0;
  for (absl::string_view piece : body) length += piece.size();
  if (connection_ != nullptr &&
      (!connection_->open() || connection_->remote_closed() ||
       clock_.Now() - last_used_ > options_.idle_limit)) {
    DropConnection();
  }
  reused_ = connection_ != nullptr;
  if (connection_ == nullptr) {
    const std::optional<net::Address> address = address_->Get();
    if (!address) {
      failure_ = Result{.error = absl::StrCat(address_->text(), " has not resolved")};
      failure_timer_.Enable(Duration::zero());
      return;
    }
    connection_ = net::Connection::Connect(loop_, *address, options_.timeout);
    connection_->SetCallbacks(this);
    ++connections_opened_;
  }
  head_.clear();
  absl::StrAppend(&head_, "POST ", options_.path, " HTTP/1.1\r\nhost: ", address_->text(),
                  "\r\ncontent-type: ", content_type, "\r\ncontent-length: ", length, "\r\n\r\n");
  net::Buffer request;
  request.Append(head_);
  for (absl::string_view piece : body) request.Append(piece);
  connection_->Write(request);
  answer_byte_ = false;
  status_ = 0;
  head_complete_ = false;
  keep_alive_ = false;
  message_complete_ = false;
  body_bytes_ = 0;
  parser_.emplace(http::h1::Parser::Type::kResponse, static_cast<http::h1::ParserVisitor*>(this));
  parser_->SetRequestMethod("POST");
  timeout_timer_.Enable(options_.timeout);
}

void CollectorClient::OnData(net::Buffer& data, bool end_stream) {
  if (!busy()) {
    // Nothing was asked: a collector that talks out of turn loses the connection.
    data.Clear();
    DropConnection();
    return;
  }
  answer_byte_ = answer_byte_ || !data.empty();
  while (!data.empty() && parser_->status() == http::h1::Parser::Status::kOk) {
    const absl::string_view slice = data.FrontSlice();
    const size_t consumed = parser_->Execute(slice);
    data.Drain(consumed);
    if (consumed < slice.size()) break;
  }
  // Bytes past the answer: the collector is out of step, the connection cannot be trusted.
  const bool bytes_after_answer = message_complete_ && !data.empty();
  data.Clear();
  if (end_stream && !message_complete_) parser_->Finish();  // a body that ends with the connection
  if (message_complete_ || (head_complete_ && parser_->status() != http::h1::Parser::Status::kOk)) {
    const bool keep =
        message_complete_ && keep_alive_ && !bytes_after_answer && !end_stream && status_ >= 200;
    Result result;
    result.ok = status_ >= 200 && status_ <= 299;
    if (!result.ok) result.error = absl::StrCat(address_->text(), options_.path, " answered ", status_);
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

void CollectorClient::OnClose(net::CloseReason, const absl::Status& detail) {
  // The connection is gone (callbacks are not called again): forget it.
  loop_.DeferDelete(std::move(connection_));
  if (!busy()) return;
  Result result;
  result.may_resend = reused_ && !answer_byte_;
  result.error = absl::StrCat("connection to ", address_->text(), " closed before an answer",
                              detail.ok() ? "" : ": ", detail.ok() ? "" : detail.message());
  Finish(std::move(result), /*keep=*/false);
}

void CollectorClient::Finish(Result result, bool keep) {
  timeout_timer_.Disable();
  failure_timer_.Disable();
  if (keep) {
    last_used_ = clock_.Now();
  } else {
    DropConnection();
  }
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(result));
}

http::h1::ParserVisitor::Action CollectorClient::OnStatusLine(int, int, int status_code,
                                                              absl::string_view) {
  status_ = status_code;
  return Action::kContinue;
}

http::h1::ParserVisitor::Action CollectorClient::OnHeadersComplete(
    const http::h1::MessageInfo& info) {
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
  message_complete_ = true;
  return Action::kPause;
}

}  // namespace meshlet::sidecar::tracing
