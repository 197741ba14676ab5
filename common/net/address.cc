#include "common/net/address.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshlet::net {
namespace {

// Writes the decimal digits of `value` at `p`; returns the end.
char* PutDecimal(char* p, unsigned value) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) *p++ = digits[--n];
  return p;
}

// The dotted quad of an IPv4 address (at most 15 bytes) at `p`; returns the end. Without
// inet_ntop, which formats through sprintf, and without StrCat's pieces: spans and logs format
// an address per request.
char* PutDottedQuad(char* p, const sockaddr_in& in) {
  const auto* b = reinterpret_cast<const unsigned char*>(&in.sin_addr);
  for (int i = 0; i < 4; ++i) {
    if (i > 0) *p++ = '.';
    p = PutDecimal(p, b[i]);
  }
  return p;
}

constexpr absl::string_view kUnixPrefix = "unix:";

absl::StatusOr<uint16_t> ParsePort(absl::string_view text, absl::string_view whole) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("address '", whole, "' has an empty port"));
  }
  if (text.size() > 5 || !std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", whole, "': port '", text, "' is not a number in 0..65535"));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text, &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", whole, "': port ", text, " is out of range 0..65535"));
  }
  return static_cast<uint16_t>(port);
}

}  // namespace

static_assert(sizeof(sockaddr_un) <= UINT8_MAX, "Address keeps a sockaddr's length in a byte");

Address::Address() : family_(Family::kIPv4), len_(sizeof(sockaddr_in)) {
  std::memset(&ip_, 0, sizeof(ip_));
  ip_.in4.sin_family = AF_INET;
}

absl::StatusOr<Address> Address::FromIp(absl::string_view ip, uint16_t port) {
  if (ip.empty()) return absl::InvalidArgumentError("empty IP address");
  if (ip.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("IP address contains a NUL byte");
  }
  Address a;
  if (ip.find(':') == absl::string_view::npos) {
    std::string text(ip);
    sockaddr_in* sin = &a.ip_.in4;
    if (inet_pton(AF_INET, text.c_str(), &sin->sin_addr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", ip, "' is not a numeric IPv4 address (names are not resolved here)"));
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    a.len_ = sizeof(sockaddr_in);
    a.family_ = Family::kIPv4;
    return a;
  }
  absl::string_view host = ip;
  absl::string_view zone;
  if (size_t pct = ip.find('%'); pct != absl::string_view::npos) {
    host = ip.substr(0, pct);
    zone = ip.substr(pct + 1);
    if (zone.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("IPv6 address '", ip, "' has an empty zone"));
    }
  }
  std::string text(host);
  sockaddr_in6* sin6 = &a.ip_.in6;
  if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", host, "' is not a valid IPv6 address"));
  }
  if (!zone.empty()) {
    uint32_t index = 0;
    if (!absl::SimpleAtoi(zone, &index)) {
      index = if_nametoindex(std::string(zone).c_str());
      if (index == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("IPv6 zone '", zone, "' is not a known interface"));
      }
    }
    sin6->sin6_scope_id = index;
  }
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  a.len_ = sizeof(sockaddr_in6);
  a.family_ = Family::kIPv6;
  return a;
}

absl::StatusOr<Address> Address::FromUnixPath(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("unix socket path is empty");
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("unix socket path contains a NUL byte");
  }
  constexpr size_t kMaxPath = sizeof(sockaddr_un::sun_path) - 1;
  if (path.size() > kMaxPath) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket path is ", path.size(), " bytes; the limit is ", kMaxPath));
  }
  auto sun = std::make_shared<sockaddr_un>();
  std::memset(sun.get(), 0, sizeof(sockaddr_un));
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, path.data(), path.size());
  Address a;
  a.len_ = static_cast<uint8_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  a.family_ = Family::kUnix;
  a.unix_ = std::move(sun);
  return a;
}

absl::StatusOr<Address> Address::Parse(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("address is empty");
  if (absl::StartsWith(text, kUnixPrefix)) {
    absl::StatusOr<Address> a = FromUnixPath(text.substr(kUnixPrefix.size()));
    if (!a.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", text, "': ", a.status().message()));
    }
    return a;
  }
  absl::string_view host;
  absl::string_view port_text;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("address '", text, "' is missing ']'"));
    }
    host = text.substr(1, close - 1);
    absl::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", text, "' needs ':port' after ']'"));
    }
    port_text = rest.substr(1);
    if (!host.empty() && host.find(':') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", text, "': brackets are only for IPv6"));
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("address '", text, "' is missing ':port'"));
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", text, "': IPv6 addresses need brackets, as in [::1]:443"));
    }
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("address '", text, "' has an empty host"));
  }
  absl::StatusOr<uint16_t> port = ParsePort(port_text, text);
  if (!port.ok()) return port.status();
  absl::StatusOr<Address> a = FromIp(host, *port);
  if (!a.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("address '", text, "': ", a.status().message()));
  }
  return a;
}

absl::StatusOr<Address> Address::FromSockaddr(const struct sockaddr* sa, socklen_t len) {
  if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) {
    return absl::InvalidArgumentError("socket address is empty");
  }
  Address a;
  switch (sa->sa_family) {
    case AF_INET:
      if (len < static_cast<socklen_t>(sizeof(sockaddr_in))) break;
      std::memcpy(&a.ip_.in4, sa, sizeof(sockaddr_in));
      a.len_ = sizeof(sockaddr_in);
      a.family_ = Family::kIPv4;
      return a;
    case AF_INET6:
      if (len < static_cast<socklen_t>(sizeof(sockaddr_in6))) break;
      std::memcpy(&a.ip_.in6, sa, sizeof(sockaddr_in6));
      a.len_ = sizeof(sockaddr_in6);
      a.family_ = Family::kIPv6;
      return a;
    case AF_UNIX: {
      // The kernel's length covers the path without (or with) its terminator; an unnamed socket
      // (the client end of a connection) has no path at all.
      if (len > static_cast<socklen_t>(sizeof(sockaddr_un))) break;
      auto sun = std::make_shared<sockaddr_un>();
      std::memset(sun.get(), 0, sizeof(sockaddr_un));
      std::memcpy(sun.get(), sa, len);
      a.len_ = static_cast<uint8_t>(len);
      a.family_ = Family::kUnix;
      a.unix_ = std::move(sun);
      return a;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported socket address family ", sa->sa_family));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("socket address of family ", sa->sa_family, " has bad length ", len));
}

uint16_t Address::port() const {
  switch (family_) {
    case Family::kIPv4:
      return ntohs(ip_.in4.sin_port);
    case Family::kIPv6:
      return ntohs(ip_.in6.sin6_port);
    case Family::kUnix:
      return 0;
  }
  return 0;
}

std::string Address::unix_path() const {
  if (family_ != Family::kUnix || unix_ == nullptr) return "";
  const sockaddr_un* sun = unix_.get();
  size_t max = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
  return std::string(sun->sun_path, strnlen(sun->sun_path, max));
}

std::string Address::ip() const {
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
  switch (family_) {
    case Family::kIPv4: {
      char* const end = PutDottedQuad(text, ip_.in4);
      return std::string(text, static_cast<size_t>(end - text));
    }
    case Family::kIPv6: {
      const sockaddr_in6* sin6 = &ip_.in6;
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
      if (sin6->sin6_scope_id != 0) return absl::StrCat(text, "%", sin6->sin6_scope_id);
      return text;
    }
    case Family::kUnix:
      return unix_path();
  }
  return "";
}

Address Address::WithPort(uint16_t port) const {
  Address a = *this;
  if (family_ == Family::kIPv4) {
    a.ip_.in4.sin_port = htons(port);
  } else if (family_ == Family::kIPv6) {
    a.ip_.in6.sin6_port = htons(port);
  }
  return a;
}

bool Address::IsLoopback() const {
  switch (family_) {
    case Family::kIPv4:
      return (ntohl(ip_.in4.sin_addr.s_addr) >> 24) == 127;
    case Family::kIPv6: {
      const in6_addr& addr = ip_.in6.sin6_addr;
      if (IN6_IS_ADDR_LOOPBACK(&addr)) return true;
      return IN6_IS_ADDR_V4MAPPED(&addr) && addr.s6_addr[12] == 127;
    }
    case Family::kUnix:
      return false;
  }
  return false;
}

std::string Address::ToString() const {
  std::string text;
  FormatTo(text);
  return text;
}

void Address::FormatTo(std::string& out) const {
  switch (family_) {
    case Family::kIPv4: {
      char text[15 + 1 + 5];
      char* end = PutDottedQuad(text, ip_.in4);
      *end++ = ':';
      end = PutDecimal(end, port());
      out.assign(text, static_cast<size_t>(end - text));
      return;
    }
    case Family::kIPv6:
      out = absl::StrCat("[", ip(), "]:", port());
      return;
    case Family::kUnix:
      out = absl::StrCat(kUnixPrefix, unix_path());
      return;
  }
  out.clear();
}

bool operator==(const Address& a, const Address& b) {
  if (a.family_ != b.family_) return false;
  switch (a.family_) {
    case Address::Family::kIPv4: {
      const sockaddr_in* x = &a.ip_.in4;
      const sockaddr_in* y = &b.ip_.in4;
      return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case Address::Family::kIPv6: {
      const sockaddr_in6* x = &a.ip_.in6;
      const sockaddr_in6* y = &b.ip_.in6;
      return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
             std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(in6_addr)) == 0;
    }
    case Address::Family::kUnix:
      return a.unix_ == b.unix_ || a.unix_path() == b.unix_path();
  }
  return false;
}

absl::StatusOr<HostPort> SplitHostPort(absl::string_view text) {
  const size_t colon = text.rfind(':');
  const absl::string_view digits =
      colon == absl::string_view::npos ? absl::string_view() : text.substr(colon + 1);
  uint32_t port = 0;
  const bool numeric =
      !digits.empty() && digits.size() <= 5 &&
      std::all_of(digits.begin(), digits.end(),
                  [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) &&
      absl::SimpleAtoi(digits, &port);
  if (colon == 0 || !numeric || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not host:port"));
  }
  HostPort out;
  out.port = static_cast<uint16_t>(port);
  absl::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    out.bracketed = true;
  }
  out.host = std::string(host);
  return out;
}

absl::StatusOr<std::vector<Address>> ResolveAll(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string service = absl::StrCat(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve \"", host, "\": ", gai_strerror(rc)));
  }
  std::vector<Address> found;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    absl::StatusOr<Address> address = Address::FromSockaddr(ai->ai_addr, ai->ai_addrlen);
    if (address.ok()) found.push_back(*address);
  }
  ::freeaddrinfo(result);
  if (found.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot resolve \"", host, "\": no IP address"));
  }
  return found;
}

}  // namespace meshlet::net
