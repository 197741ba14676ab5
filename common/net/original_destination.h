#pragma once

// The original destination of a TCP connection the packet filter redirected to this socket
// (iptables REDIRECT or DNAT: the pod's traffic capture, sidecar/capture): the address and port
// the client connected to before the rewrite, as connection tracking remembers it
// (SO_ORIGINAL_DST on SOL_IP for IPv4, IP6T_SO_ORIGINAL_DST on SOL_IPV6 for IPv6).
//
// ReadOriginalDestination returns
// - the original destination when the connection was redirected;
// - nullopt when it was not: the socket is not an IP socket (unix), connection tracking has no
//   entry for it (ENOENT) or the kernel has no such option (ENOPROTOOPT: no conntrack), or the
//   original destination is the socket's own local address (once conntrack runs it tracks
//   every connection, redirected or not);
// - an error otherwise (not a socket, a closed connection, getsockname failing).
// An IPv4 connection accepted on a dual-stack IPv6 socket (local ::ffff:a.b.c.d) is asked with
// the IPv4 option and its original destination is IPv4.
//
// Two system calls, no allocation, any thread. Read it on accept: the conntrack entry goes with
// the connection.

#include <optional>

#include "absl/status/statusor.h"
#include "common/net/address.h"
#include "common/net/connection.h"

namespace meshlet::net {

// `fd`: a connected (accepted) stream socket; it is only asked, never changed.
absl::StatusOr<std::optional<Address>> ReadOriginalDestination(int fd);
// The same for a Connection's socket; an error once it is closed.
absl::StatusOr<std::optional<Address>> ReadOriginalDestination(const Connection& connection);

}  // namespace meshlet::net
