#include "control-plane/cli/http_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshlet::controlplane::cli {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

absl::Status WaitFor(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return absl::OkStatus();
    if (n == 0) return absl::DeadlineExceededError("timed out");
    if (errno != EINTR) return absl::InternalError(std::strerror(errno));
  }
}

absl::StatusOr<std::string> DecodeChunked(absl::string_view in) {
  std::string out;
  while (true) {
    size_t eol = in.find("\r\n");
    if (eol == absl::string_view::npos) return absl::DataLossError("truncated chunked body");
    absl::string_view size_text = in.substr(0, eol);
    if (size_t semi = size_text.find(';'); semi != absl::string_view::npos) {
      size_text = size_text.substr(0, semi);
    }
    uint64_t size = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(size_text), &size)) {
      return absl::DataLossError("bad chunk size");
    }
    in.remove_prefix(eol + 2);
    if (size == 0) return out;
    if (in.size() < size + 2) return absl::DataLossError("truncated chunk");
    out.append(in.data(), size);
    in.remove_prefix(size + 2);
  }
}

}  // namespace

std::vector<std::string> HttpResponse::HeaderValues(absl::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers) {
    if (n == name) out.push_back(v);
  }
  return out;
}

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view server, absl::string_view method, absl::string_view path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    const HttpRequestOptions& options) {
  absl::ConsumePrefix(&server, "http://");
  absl::ConsumeSuffix(&server, "/");
  std::string host, port;
  if (absl::StartsWith(server, "[")) {
    size_t close = server.find(']');
    if (close == absl::string_view::npos || close + 1 >= server.size() ||
        server[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("server \"", server, "\": expected [ip]:port"));
    }
    host = std::string(server.substr(1, close - 1));
    port = std::string(server.substr(close + 2));
  } else {
    size_t colon = server.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("server \"", server, "\": expected host:port"));
    }
    host = std::string(server.substr(0, colon));
    port = std::string(server.substr(colon + 1));
  }
  const Clock::time_point deadline = Clock::now() + options.timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* resolved = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &resolved); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  int connected = -1;
  for (addrinfo* ai = resolved; ai != nullptr && connected < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
      absl::Status ready = WaitFor(fd, POLLOUT, deadline);
      int err = 0;
      socklen_t len = sizeof(err);
      if (ready.ok() && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        connected = fd;
        break;
      }
      last_error = ready.ok() ? std::strerror(err) : std::string(ready.message());
    } else {
      last_error = std::strerror(errno);
    }
    ::close(fd);
  }
  ::freeaddrinfo(resolved);
  if (connected < 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", server, ": ", last_error));
  }
  Fd fd(connected);

  std::string request = absl::StrCat(method, " ", path_and_query, " HTTP/1.1\r\nhost: ", server,
                                     "\r\nconnection: close\r\nuser-agent: meshctl\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&request, name, ": ", value, "\r\n");
  if (!body.empty() || method == "PUT" || method == "POST") {
    absl::StrAppend(&request, "content-length: ", body.size(), "\r\n");
  }
  request += "\r\n";
  request.append(body.data(), body.size());
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (absl::Status s = WaitFor(fd.get(), POLLOUT, deadline); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(absl::StrCat("sending to ", server, ": ", std::strerror(errno)));
  }
  std::string raw;
  char buf[16384];
  size_t header_end = std::string::npos;
  int64_t content_length = -1;
  HttpResponse response;
  bool chunked = false;
  for (;;) {
    if (header_end != std::string::npos && content_length >= 0 &&
        raw.size() - header_end >= static_cast<size_t>(content_length)) {
      break;
    }
    if (absl::Status s = WaitFor(fd.get(), POLLIN, deadline); !s.ok()) {
      return absl::DeadlineExceededError(absl::StrCat("waiting for ", server, ": ", s.message()));
    }
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(
          absl::StrCat("reading from ", server, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    raw.append(buf, n);
    if (raw.size() > options.max_response_bytes) {
      return absl::ResourceExhaustedError("response too large");
    }
    if (header_end == std::string::npos) {
      size_t end = raw.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      header_end = end + 4;
      std::vector<absl::string_view> lines =
          absl::StrSplit(absl::string_view(raw).substr(0, end), "\r\n");
      std::vector<absl::string_view> status_parts =
          absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
      if (status_parts.size() < 2 || !absl::StartsWith(status_parts[0], "HTTP/1.") ||
          !absl::SimpleAtoi(status_parts[1], &response.status)) {
        return absl::DataLossError(absl::StrCat("bad status line from ", server));
      }
      for (size_t i = 1; i < lines.size(); ++i) {
        size_t colon = lines[i].find(':');
        if (colon == absl::string_view::npos) continue;
        std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
        std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
        if (name == "content-length") absl::SimpleAtoi(value, &content_length);
        if (name == "transfer-encoding" &&
            absl::StrContains(absl::AsciiStrToLower(value), "chunked")) {
          chunked = true;
        }
        response.headers.emplace_back(std::move(name), std::move(value));
      }
    }
  }
  if (header_end == std::string::npos) {
    return absl::DataLossError(absl::StrCat(server, " closed the connection without a response"));
  }
  absl::string_view payload = absl::string_view(raw).substr(header_end);
  if (chunked) {
    absl::StatusOr<std::string> decoded = DecodeChunked(payload);
    if (!decoded.ok()) return decoded.status();
    response.body = std::move(*decoded);
  } else if (content_length >= 0) {
    if (payload.size() < static_cast<size_t>(content_length)) {
      return absl::DataLossError(absl::StrCat(server, " sent a truncated response"));
    }
    response.body = std::string(payload.substr(0, content_length));
  } else {
    response.body = std::string(payload);
  }
  return response;
}

}  // namespace meshlet::controlplane::cli
