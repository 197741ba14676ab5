#include "sidecar/tracing/exporter.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/logging.h"
#include "common/http/h1/parser.h"
#include "sidecar/tracing/span_encoding.h"

namespace meshlet::sidecar::tracing {
namespace {

Counter SharedCounter(StatsRegistry& stats, absl::string_view name, absl::string_view help,
                      const LabelSet& labels = {}) {
  absl::StatusOr<Counter> counter = stats.shared_shard().RegisterCounter(name, help, labels);
  if (!counter.ok()) {
    LOG(ERROR) << name << ": " << counter.status();
    return Counter();
  }
  return *counter;
}

int64_t MillisLeft(absl::Time deadline) {
  return std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
}

// A connected, non-blocking socket to `address` ("host:port", the host a name or an IP literal,
// IPv6 in brackets), or -1 with `error` set.
int Connect(const std::string& address, absl::Time deadline, std::string* error) {
  const size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &result); rc != 0) {
    *error = absl::StrCat("resolve ", address, ": ", gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = result; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      ::close(fd);
      fd = -1;
      continue;
    }
    pollfd pfd{fd, POLLOUT, 0};
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (::poll(&pfd, 1, static_cast<int>(MillisLeft(deadline))) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(result);
  if (fd < 0) *error = absl::StrCat("connect ", address, " failed");
  return fd;
}

// Writes `head` then `body` (one sendmsg each round, without copying the body behind the head).
bool SendAll(int fd, absl::string_view head, absl::string_view body, absl::Time deadline) {
  const size_t total = head.size() + body.size();
  size_t sent = 0;
  while (sent < total) {
    iovec iov[2];
    int count = 0;
    if (sent < head.size()) {
      iov[count++] = {const_cast<char*>(head.data()) + sent, head.size() - sent};
    }
    const size_t body_sent = sent > head.size() ? sent - head.size() : 0;
    if (body_sent < body.size()) {
      iov[count++] = {const_cast<char*>(body.data()) + body_sent, body.size() - body_sent};
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = static_cast<size_t>(count);
    const ssize_t n = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, static_cast<int>(MillisLeft(deadline))) == 1) continue;
    }
    return false;
  }
  return true;
}

// Collectors answer with a short body or none; a longer one is not read to keep the connection.
constexpr uint64_t kMaxDrainedBody = 64 * 1024;

struct CollectorAnswer {
  int status = 0;         // 0: no complete response head arrived
  bool any_byte = false;  // something arrived (a reused connection that answered nothing died idle)
  bool reusable = false;  // the response was read to its end and the connection may carry another
};

// What ReadAnswer needs of one response; the body is counted and dropped.
class AnswerVisitor final : public http::h1::ParserVisitor {
 public:
  Action OnStatusLine(int, int, int status_code, absl::string_view) override {
    status = status_code;
    return Action::kContinue;
  }
  Action OnHeader(absl::string_view, absl::string_view) override { return Action::kContinue; }
  Action OnHeadersComplete(const http::h1::MessageInfo& info) override {
    head_complete = true;
    keep_alive = info.keep_alive;
    // A body delimited by the connection's end, or longer than is worth reading, is not read:
    // the connection closes instead.
    const bool too_long = info.framing == http::h1::BodyFraming::kContentLength &&
                          info.content_length > kMaxDrainedBody;
    return info.framing == http::h1::BodyFraming::kUntilClose || too_long ? Action::kPause
                                                                          : Action::kContinue;
  }
  Action OnBody(absl::string_view data) override {
    body_bytes += data.size();
    return body_bytes > kMaxDrainedBody ? Action::kPause : Action::kContinue;
  }
  Action OnMessageComplete() override {
    message_complete = true;
    return Action::kPause;
  }

  int status = 0;
  bool head_complete = false;
  bool keep_alive = false;
  bool message_complete = false;
  uint64_t body_bytes = 0;
};

// Reads one HTTP/1.x response with the proxy's own parser: its head, and its body when it ends
// before the connection does.
CollectorAnswer ReadAnswer(int fd, absl::Time deadline) {
  CollectorAnswer answer;
  AnswerVisitor visitor;
  http::h1::Parser parser(http::h1::Parser::Type::kResponse, &visitor);
  parser.SetRequestMethod("POST");
  bool bytes_after_answer = false;
  char buffer[4096];
  pollfd pfd{fd, POLLIN, 0};
  while (parser.status() == http::h1::Parser::Status::kOk) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      answer.any_byte = true;
      const size_t consumed = parser.Execute(buffer, static_cast<size_t>(n));
      bytes_after_answer = visitor.message_complete && consumed < static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      parser.Finish();  // completes a body delimited by the end of the connection
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN || ::poll(&pfd, 1, static_cast<int>(MillisLeft(deadline))) != 1) break;
  }
  if (!visitor.head_complete) return answer;
  answer.status = visitor.status;
  answer.reusable = visitor.message_complete && visitor.keep_alive && !bytes_after_answer &&
                    visitor.status >= 200;
  return answer;
}

// True when the kept connection was closed by the collector (or sent something unasked): it is
// readable before a request was sent.
bool ClosedWhileIdle(int fd) {
  pollfd pfd{fd, POLLIN, 0};
  return ::poll(&pfd, 1, 0) != 0;
}

}  // namespace

void SpanExporter::CloseCollectorConnection() {
  if (collector_fd_ >= 0) ::close(collector_fd_);
  collector_fd_ = -1;
}

bool SpanExporter::Post(absl::string_view content_type, absl::string_view body,
                        std::string* error) {
  const absl::Time deadline = absl::Now() + absl::FromChrono(config_.export_timeout);
  const std::string& address = config_.collector_address;
  const std::string head = absl::StrCat("POST ", path_, " HTTP/1.1\r\nhost: ", address,
                                        "\r\ncontent-type: ", content_type,
                                        "\r\ncontent-length: ", body.size(), "\r\n\r\n");
  // A connection idle for long may have been dropped silently on the way
  // (collector_idle_limit).
  if (collector_fd_ >= 0 &&
      (ClosedWhileIdle(collector_fd_) ||
       absl::Now() - collector_last_used_ > absl::FromChrono(config_.collector_idle_limit))) {
    CloseCollectorConnection();
  }
  // A kept connection can still have been closed by the collector just now: when it fails before
  // any answer, the request goes once more over a new connection.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = collector_fd_ >= 0;
    if (!reused) {
      collector_fd_ = Connect(address, deadline, error);
      if (collector_fd_ < 0) return false;
      ++collector_connections_;
    }
    CollectorAnswer answer;
    if (SendAll(collector_fd_, head, body, deadline)) answer = ReadAnswer(collector_fd_, deadline);
    if (!answer.reusable) CloseCollectorConnection();
    collector_last_used_ = absl::Now();
    if (answer.status == 0) {
      if (reused && !answer.any_byte && absl::Now() < deadline) continue;
      *error = answer.any_byte ? absl::StrCat("no HTTP answer from ", address)
                               : absl::StrCat("send to ", address, " failed or no answer");
      return false;
    }
    if (answer.status < 200 || answer.status > 299) {
      *error = absl::StrCat(address, path_, " answered ", answer.status);
      return false;
    }
    return true;
  }
  return false;
}

SpanExporter::SpanExporter(TracingConfig config, std::string service_name, StatsRegistry& stats)
    : config_(std::move(config)),
      service_name_(std::move(service_name)),
      path_(config_.EffectiveCollectorPath()),
      queue_(config_.queue_limit),
      exported_(SharedCounter(stats, "meshlet_tracing_spans_exported_total",
                              "Spans the collector accepted.")),
      export_errors_(SharedCounter(stats, "meshlet_tracing_export_errors_total",
                                   "Export requests that failed (connect, send, or a non-2xx "
                                   "answer).")),
      dropped_failed_(SharedCounter(stats, "meshlet_tracing_spans_dropped_total",
                                    "Recorded spans that were never exported.",
                                    {{"reason", "export_failed"}})),
      dropped_shutdown_(SharedCounter(stats, "meshlet_tracing_spans_dropped_total",
                                      "Recorded spans that were never exported.",
                                      {{"reason", "shutdown"}})) {}

SpanExporter::~SpanExporter() {
  stop_.store(true);
  queue_.Interrupt();
  if (thread_.joinable()) thread_.join();
  CloseCollectorConnection();
}

void SpanExporter::Start() {
  CHECK(!thread_.joinable());
  thread_ = std::thread([this] { Run(); });
}

size_t SpanExporter::Fill() {
  while (batch_.size() < config_.batch_size) {
    SpanPtr span = queue_.TryPop();
    if (span == nullptr) break;
    batch_.push_back(std::move(span));
  }
  return batch_.size();
}

void SpanExporter::SendBatch() {
  if (batch_.empty()) return;
  batch_view_.clear();
  for (const SpanPtr& span : batch_) batch_view_.push_back(span.get());
  if (Export(batch_view_)) {
    exported_.Inc(batch_.size());
  } else {
    dropped_failed_.Inc(batch_.size());
  }
  for (SpanPtr& span : batch_) queue_.Recycle(std::move(span));
  batch_.clear();
}

bool SpanExporter::Export(SpanBatch batch) {
  json_body_.clear();
  absl::string_view body;
  absl::string_view content_type = "application/json";
  switch (config_.protocol) {
    case ExportProtocol::kOtlpJson:
      EncodeOtlpJson(batch, service_name_, &json_body_);
      body = json_body_;
      break;
    case ExportProtocol::kOtlpProto: {
      const size_t size = proto_encoder_.Size(batch, service_name_);
      if (size > proto_capacity_) {
        proto_capacity_ = std::max(size, 2 * proto_capacity_);
        proto_body_.reset(new char[proto_capacity_]);  // uninitialised: Write fills it
      }
      char* const end = proto_encoder_.Write(batch, proto_body_.get());
      body = absl::string_view(proto_body_.get(), static_cast<size_t>(end - proto_body_.get()));
      content_type = "application/x-protobuf";
      break;
    }
    case ExportProtocol::kZipkin:
      EncodeZipkinJson(batch, service_name_, &json_body_);
      body = json_body_;
      break;
  }
  std::string error;
  if (Post(content_type, body, &error)) {
    return true;
  }
  export_errors_.Inc();
  LOG_EVERY_N_SEC(WARN, 10) << "tracing export of " << batch.size() << " spans: " << error;
  return false;
}

void SpanExporter::Run() {
  batch_.reserve(config_.batch_size);
  batch_view_.reserve(config_.batch_size);
  absl::Time last_flush = absl::Now();
  const absl::Duration flush_interval = absl::FromChrono(config_.flush_interval);
  while (true) {
    if (batch_.empty() && queue_.SizeApprox() == 0) {
      queue_.Wait(1, absl::InfiniteFuture());  // idle: until the first span
    } else if (batch_.size() < config_.batch_size) {
      // A partial batch: until it fills or its flush is due.
      queue_.Wait(config_.batch_size - batch_.size(), last_flush + flush_interval);
    }
    if (stop_.load()) {
      // One last batch, best effort (bounded by export_timeout), so shutdown stays prompt even
      // with the collector down; what is left is counted as dropped.
      Fill();
      SendBatch();
      uint64_t left = 0;
      while (queue_.TryPop() != nullptr) ++left;
      if (left > 0) dropped_shutdown_.Inc(left);
      return;
    }
    // Full batches go at once; a partial one waits for the flush interval.
    while (Fill() == config_.batch_size) {
      SendBatch();
      last_flush = absl::Now();
      if (stop_.load()) break;
    }
    if (!batch_.empty() && absl::Now() - last_flush >= flush_interval) {
      SendBatch();
      last_flush = absl::Now();
    }
  }
}

}  // namespace meshlet::sidecar::tracing
