#pragma once

// Address: a socket address, value type. IPv4 ("10.0.0.1:8080"), IPv6 ("[::1]:443", optionally
// with a zone: "[fe80::1%eth0]:80") or a unix-domain socket path ("unix:/run/meshlet.sock").
// Parse() accepts numeric addresses only: resolving names is the caller's job (DNS is
// asynchronous and belongs to the cluster layer), so bad input fails fast with a message that
// says what was wrong. ToString() produces text that Parse() reads back.

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::net {

class Address {
 public:
  enum class Family { kIPv4, kIPv6, kUnix };

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

  // For bind/connect and libuv calls.
  const struct sockaddr* as_sockaddr() const {
    return reinterpret_cast<const struct sockaddr*>(&storage_);
  }
  socklen_t sockaddr_len() const { return len_; }
  const sockaddr_storage& storage() const { return storage_; }

  friend bool operator==(const Address& a, const Address& b);
  friend bool operator!=(const Address& a, const Address& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const Address& a) {
    return H::combine(std::move(h), a.ToString());
  }

 private:
  sockaddr_storage storage_;
  socklen_t len_;
  Family family_;
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
