#include "control-plane/cli/pin.h"

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/net/address.h"
#include "common/tls/certificate.h"
#include "control-plane/cli/http_client.h"

namespace meshlet::controlplane::cli {
namespace {

constexpr size_t kMaxAnswerBytes = 1 << 20;

// A connected socket with `timeout` on each send and receive (connect included), or why not.
absl::StatusOr<int> Connect(const net::Address& address, std::chrono::milliseconds timeout) {
  const int fd = ::socket(address.as_sockaddr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  timeval tv{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
             .tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd, address.as_sockaddr(), address.sockaddr_len()) != 0) {
    const int saved = errno;
    ::close(fd);
    if (saved == EINPROGRESS || saved == EAGAIN) {
      return absl::DeadlineExceededError(
          absl::StrCat("connecting to ", address.ToString(), ": timed out"));
    }
    return absl::UnavailableError(
        absl::StrCat("connecting to ", address.ToString(), ": ", std::strerror(saved)));
  }
  return fd;
}

// The HTTP/1.1 answer `raw` (read until the server closed): its body when the status is 200.
absl::StatusOr<std::string> BodyOf200(absl::string_view raw, absl::string_view server) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (!absl::StartsWith(raw, "HTTP/1.") || head_end == absl::string_view::npos) {
    return absl::UnavailableError(absl::StrCat(server, " did not answer HTTP over TLS"));
  }
  const absl::string_view head = raw.substr(0, head_end);
  absl::string_view body = raw.substr(head_end + 4);
  int status = 0;
  if (head.size() < 12 || !absl::SimpleAtoi(head.substr(9, 3), &status)) {
    return absl::UnavailableError(absl::StrCat(server, " sent a malformed status line"));
  }
  if (status != 200) {
    return absl::FailedPreconditionError(
        absl::StrCat(server, " answered GET /api/v1/trust-bundle with HTTP ", status, ": ",
                     absl::StripAsciiWhitespace(body.substr(0, 300))));
  }
  // The API's server always sends content-length; take what it announced when it did.
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "content-length:")) {
      size_t length = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &length) &&
          length <= body.size()) {
        body = body.substr(0, length);
      }
    }
  }
  return std::string(body);
}

}  // namespace

absl::StatusOr<std::string> FetchTrustBundleUnverified(absl::string_view server,
                                                       std::chrono::milliseconds timeout) {
  absl::StatusOr<ResolvedServer> resolved = ResolveServer(server);
  if (!resolved.ok()) return resolved.status();
  server = resolved->authority;
  const net::HostPort& host_port = resolved->host_port;
  absl::Status last = absl::UnavailableError(absl::StrCat(server, ": no address"));
  for (const net::Address& address : resolved->addresses) {
    absl::StatusOr<int> fd = Connect(address, timeout);
    if (!fd.ok()) {
      last = fd.status();
      continue;
    }
    bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
    bssl::UniquePtr<SSL> ssl(ctx == nullptr ? nullptr : SSL_new(ctx.get()));
    if (ssl == nullptr) {
      ::close(*fd);
      return absl::InternalError("TLS: cannot create a session");
    }
    SSL_set_min_proto_version(ssl.get(), TLS1_2_VERSION);
    // Not verified on purpose: the caller checks the answer against a fingerprint (pin.h).
    SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
    static constexpr uint8_t kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(ssl.get(), kAlpn, sizeof(kAlpn));
    if (!net::Address::FromIp(host_port.host, 0).ok()) {
      SSL_set_tlsext_host_name(ssl.get(), host_port.host.c_str());
    }
    SSL_set_fd(ssl.get(), *fd);
    const std::string request =
        absl::StrCat("GET /api/v1/trust-bundle HTTP/1.1\r\nHost: ", server,
                     "\r\nUser-Agent: meshctl\r\nAccept: application/x-pem-file\r\n"
                     "Connection: close\r\n\r\n");
    std::string raw;
    absl::Status failed;
    if (SSL_connect(ssl.get()) != 1) {
      failed = absl::UnavailableError(
          absl::StrCat("TLS with ", server, " failed: ", tls::DrainBoringSslErrors()));
    } else if (SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) !=
               static_cast<int>(request.size())) {
      failed = absl::UnavailableError(absl::StrCat("sending to ", server, " failed"));
    } else {
      char chunk[16 * 1024];
      for (;;) {
        const int n = SSL_read(ssl.get(), chunk, sizeof(chunk));
        if (n <= 0) {
          const int error = SSL_get_error(ssl.get(), n);
          if (error == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            failed =
                absl::DeadlineExceededError(absl::StrCat("waiting for ", server, ": timed out"));
          }
          break;  // closed (close_notify or EOF): the answer is whole
        }
        raw.append(chunk, static_cast<size_t>(n));
        if (raw.size() > kMaxAnswerBytes) {
          failed = absl::ResourceExhaustedError(
              absl::StrCat("the answer of ", server, " is larger than 1 MiB"));
          break;
        }
      }
    }
    tls::DrainBoringSslErrors();
    ::close(*fd);
    if (!failed.ok()) return failed;
    return BodyOf200(raw, server);
  }
  return last;
}

}  // namespace meshlet::controlplane::cli
