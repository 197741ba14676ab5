#include "common/net/interfaces.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace meshlet::net {
namespace {

bool IsLinkLocal(const struct sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr);
    return (ip & 0xffff0000u) == 0xa9fe0000u;  // 169.254.0.0/16
  }
  const uint8_t* ip = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
  return ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80;  // fe80::/10
}

}  // namespace

absl::StatusOr<std::vector<Address>> InterfaceAddresses() {
  struct ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot list the network interfaces: ", std::strerror(errno)));
  }
  std::vector<Address> v4, v6;
  for (const struct ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    const struct sockaddr* sa = it->ifa_addr;
    if (sa == nullptr || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) continue;
    if ((it->ifa_flags & IFF_UP) == 0 || (it->ifa_flags & IFF_LOOPBACK) != 0 || IsLinkLocal(sa)) {
      continue;
    }
    const socklen_t len = sa->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    absl::StatusOr<Address> address = Address::FromSockaddr(sa, len);
    if (!address.ok() || address->IsLoopback()) continue;
    std::vector<Address>& out = sa->sa_family == AF_INET ? v4 : v6;
    const Address bare = address->WithPort(0);
    if (std::find(out.begin(), out.end(), bare) == out.end()) out.push_back(bare);
  }
  ::freeifaddrs(list);
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

}  // namespace meshlet::net
