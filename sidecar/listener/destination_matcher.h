#pragma once

// DestinationMatcher: how a capture listener (ListenerConfig::use_original_destination) serves
// one accepted connection, decided from the connection's original destination
// (net/original_destination.h), as docs/xds.md ("Capture listeners") says:
//
//   not redirected (no original destination, or one on the listener's own port)
//                                  → kListener: the listener's protocol, routes and tcp_cluster
//   the first of `destinations` whose addresses (empty: any) contain the original address and
//   whose port (0: any) is the original port
//                                  → kDestination
//   none                           → kPassthrough (opaque TCP to `upstream`: the original
//                                    destination, or passthrough_host on its port) or kRefuse
//
// Built once per listener configuration (it indexes the destinations by port); Match() is a pure
// function of its arguments that allocates nothing. The ListenerConfig must outlive the matcher
// and stay where it is: results point into it. Immutable after construction; any thread.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/net/address.h"
#include "sidecar/config/listener_config.h"

namespace meshlet::sidecar::listener {

struct CaptureDecision {
  enum class Action {
    kListener,     // not redirected: served by the listener's own fields, as without capture
    kDestination,  // served by `destination`
    kPassthrough,  // proxied as opaque TCP, without detection, to `upstream`
    kRefuse,       // HTTP clients get a local 502, anything else is closed
  };
  Action action = Action::kListener;
  // kDestination: the matched entry of ListenerConfig::destinations.
  const config::ListenerDestinationConfig* destination = nullptr;
  // kPassthrough: where to connect.
  net::Address upstream;
  // The port connection-level authorization sees (and requests whose virtual host names none):
  // kListener: the listener's destination_port, else its own port; kDestination: the
  // destination's destination_port, else the original port; kPassthrough, kRefuse: the original
  // port.
  uint32_t authorization_port = 0;
};

// "not_redirected", "matched", "passthrough", "refused" (the stats' `result` label).
const char* CaptureActionName(CaptureDecision::Action action);

class DestinationMatcher {
 public:
  explicit DestinationMatcher(const config::ListenerConfig& listener);

  // `original`: what ReadOriginalDestination returned for the connection (nullopt: not
  // redirected); `local_port`: the port the connection was accepted on (the listener's bound
  // port, which differs from the configured one when that is 0). A listener without
  // use_original_destination always gets kListener.
  CaptureDecision Match(const std::optional<net::Address>& original, uint16_t local_port) const;
  // Whether a connection to `original` that no destination serves (kPassthrough, kRefuse) waits
  // for a lookup of its address first: the listener has on_demand and `original` is inside its
  // address_ranges (ADR 0086).
  bool WaitsForLookup(const net::Address& original) const;

 private:
  // Whether destination `index` covers `address` (its port already matched).
  bool AddressMatches(uint32_t index, const net::Address& address) const;

  const config::ListenerConfig& listener_;
  // Indexes into listener_.destinations, ascending: those with a port, by port; those with any.
  absl::flat_hash_map<uint16_t, std::vector<uint32_t>> by_port_;
  std::vector<uint32_t> any_port_;
};

}  // namespace meshlet::sidecar::listener
