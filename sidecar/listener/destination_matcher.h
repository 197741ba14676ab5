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
// A destination with server_names (ADR 0106) also needs the connection's TLS ClientHello to name
// one of them (common/tls/client_hello.h): the connection reads it first when NeedsServerName()
// says the decision depends on it. On a listener without use_original_destination the
// destinations are matched by server name alone (they all have some):
//
//   the first of `destinations` one of whose server_names is the ClientHello's
//                                  → kDestination
//   none (no TLS, no name, another name)
//                                  → kListener: the listener's own fields (closed when it has
//                                    no tcp_cluster: rejected as unmatched_destination)
//
// Built once per listener configuration (it indexes the destinations by port); Match() is a pure
// function of its arguments that allocates nothing. The ListenerConfig must outlive the matcher
// and stay where it is: results point into it. Immutable after construction; any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
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
  // `server_name`: the ClientHello's server name when the connection read one (null: not read,
  // not TLS, or none sent), which destinations with server_names need.
  CaptureDecision Match(const std::optional<net::Address>& original, uint16_t local_port,
                        const std::string* server_name = nullptr) const;
  // Whether Match() for this connection may depend on its server name: some destination that
  // could serve it (before any that serves it without a name) has server_names. The connection
  // then reads its ClientHello before it is matched.
  bool NeedsServerName(const std::optional<net::Address>& original, uint16_t local_port) const;
  // Whether any destination has server_names.
  bool reads_server_names() const { return reads_server_names_; }
  // Whether a connection to `original` that no destination serves (kPassthrough, kRefuse) waits
  // for a lookup of its address first: the listener has on_demand and `original` is inside its
  // address_ranges (ADR 0086).
  bool WaitsForLookup(const net::Address& original) const;

 private:
  // Whether destination `index` covers `address` (its port already matched).
  bool AddressMatches(uint32_t index, const net::Address& address) const;
  // Calls `visit(index)` for the destinations whose port and addresses cover `original`, in
  // configuration order, until it returns true; returns whether one did.
  template <typename Visit>
  bool ForEachCandidate(const net::Address& original, Visit visit) const;
  // Whether a capture listener's connection to `original` counts as redirected (Match's first
  // test).
  bool Redirected(const std::optional<net::Address>& original, uint16_t local_port) const;

  const config::ListenerConfig& listener_;
  // Indexes into listener_.destinations, ascending: those with a port, by port; those with any.
  absl::flat_hash_map<uint16_t, std::vector<uint32_t>> by_port_;
  std::vector<uint32_t> any_port_;
  bool reads_server_names_ = false;
};

// Whether `server_name` (lower case) is one of `names`: equal to one, or under one's "*.suffix"
// (any number of labels in front of the suffix).
bool ServerNameMatches(const std::vector<std::string>& names, absl::string_view server_name);

}  // namespace meshlet::sidecar::listener
