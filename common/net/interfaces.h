#pragma once

// InterfaceAddresses: this network namespace's own addresses, as getifaddrs(3) lists them. In a
// pod that is the pod's address (what Kubernetes calls status.podIP), which is how a sidecar on
// an engine without the downward API finds it (sidecar --node-address=auto), and how a control
// plane replica bound to every address names one its peers can reach.
//
// Plain function; no state; reads the kernel's interface list on every call.

#include <vector>

#include "absl/status/statusor.h"
#include "common/net/address.h"

namespace meshlet::net {

// The IPv4 and IPv6 addresses (port 0) of the interfaces that are up, other than loopback
// interfaces and addresses (127.0.0.0/8, ::1) and link-local ones (169.254.0.0/16, fe80::/10):
// IPv4 ones first, then IPv6, each family in the kernel's order, each address once. Empty when
// there are none; an error when the list cannot be read.
absl::StatusOr<std::vector<Address>> InterfaceAddresses();

}  // namespace meshlet::net
