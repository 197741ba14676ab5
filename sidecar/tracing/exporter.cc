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

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/logging.h"
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

// One HTTP/1.1 POST; true on a 2xx answer. `error` says what went wrong otherwise.
bool Post(const std::string& address, const std::string& path, absl::string_view content_type,
          absl::string_view body, Duration timeout, std::string* error) {
  const absl::Time deadline = absl::Now() + absl::FromChrono(timeout);
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
    return false;
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
  if (fd < 0) {
    *error = absl::StrCat("connect ", address, " failed");
    return false;
  }
  // The head and the body go out as they are (one sendmsg each round), without copying the
  // body behind the head.
  const std::string head = absl::StrCat(
      "POST ", path, " HTTP/1.1\r\nhost: ", address, "\r\ncontent-type: ", content_type,
      "\r\ncontent-length: ", body.size(), "\r\nconnection: close\r\n\r\n");
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
    ::close(fd);
    *error = absl::StrCat("send to ", address, " failed");
    return false;
  }
  // The status line is all that matters; the collector closes after answering.
  std::string response;
  char buffer[1024];
  while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(MillisLeft(deadline))) != 1) break;
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  int status = 0;
  const size_t space = response.find(' ');
  if (!absl::StartsWith(response, "HTTP/1.") || space == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(response).substr(space + 1, 3), &status)) {
    *error = absl::StrCat("no HTTP answer from ", address);
    return false;
  }
  if (status < 200 || status > 299) {
    *error = absl::StrCat(address, path, " answered ", status);
    return false;
  }
  return true;
}

}  // namespace

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
  if (Post(config_.collector_address, path_, content_type, body, config_.export_timeout, &error)) {
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
