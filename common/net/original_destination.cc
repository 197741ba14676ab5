#include "common/net/original_destination.h"

#include <errno.h>
#include <linux/netfilter_ipv4.h>  // SO_ORIGINAL_DST
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshlet::net {
namespace {

// linux/netfilter_ipv6/ip6_tables.h defines it too, but that header does not compile as C++.
constexpr int kIp6tSoOriginalDst = 80;

bool IsV4Mapped(const sockaddr_in6& address) { return IN6_IS_ADDR_V4MAPPED(&address.sin6_addr); }

// Whether `original` is `local` itself (an IPv4 original against a v4-mapped local address too).
bool SameEndpoint(const sockaddr_storage& original, const sockaddr_storage& local) {
  if (original.ss_family == AF_INET) {
    const auto& o = reinterpret_cast<const sockaddr_in&>(original);
    if (local.ss_family == AF_INET) {
      const auto& l = reinterpret_cast<const sockaddr_in&>(local);
      return o.sin_port == l.sin_port && o.sin_addr.s_addr == l.sin_addr.s_addr;
    }
    const auto& l = reinterpret_cast<const sockaddr_in6&>(local);
    return local.ss_family == AF_INET6 && IsV4Mapped(l) && o.sin_port == l.sin6_port &&
           memcmp(&o.sin_addr, &l.sin6_addr.s6_addr[12], 4) == 0;
  }
  if (original.ss_family != AF_INET6 || local.ss_family != AF_INET6) return false;
  const auto& o = reinterpret_cast<const sockaddr_in6&>(original);
  const auto& l = reinterpret_cast<const sockaddr_in6&>(local);
  return o.sin6_port == l.sin6_port && memcmp(&o.sin6_addr, &l.sin6_addr, sizeof(in6_addr)) == 0;
}

absl::Status SocketError(absl::string_view call, int error) {
  return absl::InternalError(absl::StrCat(call, ": ", strerror(error)));
}

}  // namespace

absl::StatusOr<std::optional<Address>> ReadOriginalDestination(int fd) {
  sockaddr_storage local;
  socklen_t local_len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
    return SocketError("getsockname", errno);
  }
  int level = 0;
  int option = 0;
  if (local.ss_family == AF_INET) {
    level = SOL_IP;
    option = SO_ORIGINAL_DST;
  } else if (local.ss_family == AF_INET6) {
    if (IsV4Mapped(reinterpret_cast<const sockaddr_in6&>(local))) {
      level = SOL_IP;
      option = SO_ORIGINAL_DST;
    } else {
      level = SOL_IPV6;
      option = kIp6tSoOriginalDst;
    }
  } else {
    return std::nullopt;  // unix sockets are never redirected
  }
  sockaddr_storage original;
  memset(&original, 0, sizeof(original));
  socklen_t original_len = sizeof(original);
  if (getsockopt(fd, level, option, &original, &original_len) != 0) {
    const int error = errno;
    if (error == ENOENT || error == ENOPROTOOPT) return std::nullopt;
    return SocketError(
        level == SOL_IP ? "getsockopt(SO_ORIGINAL_DST)" : "getsockopt(IP6T_SO_ORIGINAL_DST)",
        error);
  }
  if (SameEndpoint(original, local)) return std::nullopt;
  absl::StatusOr<Address> destination =
      Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&original), original_len);
  if (!destination.ok()) return destination.status();
  return *std::move(destination);
}

absl::StatusOr<std::optional<Address>> ReadOriginalDestination(const Connection& connection) {
  const int fd = connection.socket_fd();
  if (fd < 0) return absl::FailedPreconditionError("the connection is closed");
  return ReadOriginalDestination(fd);
}

}  // namespace meshlet::net
