#pragma once

// Address: a socket address, value type. IPv4 ("10.0.0.1:8080"), IPv6 ("[::1]:443", optionally
// with a zone: "[fe80::1%eth0]:80") or a unix-domain socket path ("unix:/run/meshlet.sock").
// Parse() accepts numeric addresses only: resolving names is the caller's job (DNS is
// asynchronous and belongs to the cluster layer), so bad input fails fast with a message that
// says what was wrong. ToString() produces text that Parse() reads back.
//
// Size: an IP address is held inline (a sockaddr_in or sockaddr_in6, 28 bytes); a unix socket's
// sockaddr_un (110 bytes) is allocated once and shared, immutable, by the copies of the address.
// The whole value is 48 bytes where a sockaddr_storage alone is 128: every endpoint of every
// cluster a sidecar holds carries one (ADR 0091, "an endpoint's address in 48 bytes"). Copying an
// IP address allocates nothing; copying a unix one increments a reference count.

#include <sys/socket.h>

#include <netinet/in.h>
#include <sys/un.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::net {

class Address {
 public:
  enum class Family : uint8_t { kIPv4, kIPv6, kUnix };

  // "a.b.c.d:port", "[v6]:port", "unix:/path". Ports are 0..65535 (0: any free port).
  static absl::StatusOr<Address> Parse(absl::string_view text);
  // An IP literal without brackets ("10.0.0.1", "::1") and a port.
  static absl::StatusOr<Address> FromIp(absl::string_view ip, uint16_t port);
  static absl::StatusOr<Address> FromUnixPath(absl::string_view path);
  // From a kernel-filled sockaddr (accept, getsockname). Fails for families other than
  // AF_INET, AF_INET6 and AF_UNIX, or a length too short for the family.
  static absl::StatusOr<Address> FromSockaddr(const struct sockaddr* sa, socklen_t len);

  // 0.0.0.0:0 — a placeholder for "no address".
  Address();

  Family family() const { return family_; }
  bool is_ip() const { return family_ != Family::kUnix; }
  // Port for IP addresses; 0 for unix sockets.
  uint16_t port() const;
  // The numeric IP without brackets or port ("::1"); the path for unix sockets.
  std::string ip() const;
  // "unix:" path; empty for IP addresses.
  std::string unix_path() const;
  // Same address with another port (IP only; unix addresses are returned unchanged).
  Address WithPort(uint16_t port) const;
  bool IsLoopback() const;

  std::string ToString() const;
  // ToString()'s text into `out` (replaced); reuses out's capacity, so an IPv4 address formatted
  // into a string that already has room allocates nothing.
  void FormatTo(std::string& out) const;

  // For bind/connect and libuv calls: valid while this Address (or a copy) lives.
  const struct sockaddr* as_sockaddr() const {
    return unix_ != nullptr ? reinterpret_cast<const struct sockaddr*>(unix_.get()) : &ip_.sa;
  }
  socklen_t sockaddr_len() const { return len_; }
  // The IPv4 or IPv6 socket address; null for another family.
  const sockaddr_in* in4() const { return family_ == Family::kIPv4 ? &ip_.in4 : nullptr; }
  const sockaddr_in6* in6() const { return family_ == Family::kIPv6 ? &ip_.in6 : nullptr; }

  friend bool operator==(const Address& a, const Address& b);
  friend bool operator!=(const Address& a, const Address& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const Address& a) {
    return H::combine(std::move(h), a.ToString());
  }

 private:
  union Ip {
    sockaddr sa;
    sockaddr_in in4;
    sockaddr_in6 in6;
  };
  Ip ip_;  // IPv4 and IPv6; zeroed for unix sockets
  Family family_;
  uint8_t len_;  // of the sockaddr as_sockaddr() points at (at most 110)
  std::shared_ptr<const sockaddr_un> unix_;  // unix sockets only; null otherwise
};

// "host:port" in its parts, for addresses that may name a host (configuration: the xDS server,
// the trace collector). The host is what precedes the last colon, without the brackets of an
// IPv6 literal; the port is 1..65535.
struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool bracketed = false;  // the host was written in brackets
  // An IPv6 literal written without brackets ("fd00::5:4318"): ambiguous to a reader.
  bool unbracketed_ipv6() const { return !bracketed && host.find(':') != std::string::npos; }
};
// Fails with `"TEXT" is not host:port`.
absl::StatusOr<HostPort> SplitHostPort(absl::string_view text);

// Every address `host` (a name or an IP literal) stands for, in the resolver's order. Blocking
// (getaddrinfo): never on a worker or an event loop that must stay responsive.
absl::StatusOr<std::vector<Address>> ResolveAll(const std::string& host, uint16_t port);

}  // namespace meshlet::net
