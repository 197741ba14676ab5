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
// one of them (common/tls/client_hello.h); one with http_hosts (ADR 0108) needs the Host of the
// connection's first HTTP/1 request to name one of those (http1_host.h). A destination with
// neither serves any connection its addresses and port cover. The connection reads the name first
// when NameNeeded() says the decision depends on it: the first destination that covers the
// original destination decides what is read (the ClientHello, the first request's head, or
// nothing), and every later one that needs the other kind of name is passed over. On a listener
// without use_original_destination the destinations are matched by server name alone (they all
// have some):
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

  // What a connection reads before it is matched (NameNeeded).
  enum class NameSource {
    kNone,         // nothing: matched at once
    kClientHello,  // its TLS ClientHello's server name
    kHttpHost,     // the Host of its first HTTP/1 request
  };

  // `original`: what ReadOriginalDestination returned for the connection (nullopt: not
  // redirected); `local_port`: the port the connection was accepted on (the listener's bound
  // port, which differs from the configured one when that is 0). A listener without
  // use_original_destination always gets kListener.
  // `server_name`: the ClientHello's server name when the connection read one (null: not read,
  // not TLS, or none sent), which destinations with server_names need; `http_host`: the Host of
  // its first HTTP/1 request when it read one (Http1Host::Status::kOk; null otherwise), which
  // destinations with http_hosts need. Each kind of destination matches only its own kind of
  // name, under ServerNameMatches.
  CaptureDecision Match(const std::optional<net::Address>& original, uint16_t local_port,
                        const std::string* server_name = nullptr,
                        const std::string* http_host = nullptr) const;
  // What Match() for this connection may depend on: the first destination that could serve it
  // has server_names (kClientHello) or http_hosts (kHttpHost); kNone when it has neither, there
  // is none, or the connection was not redirected. On a listener without
  // use_original_destination: kClientHello when it has destinations (all by server name).
  NameSource NameNeeded(const std::optional<net::Address>& original, uint16_t local_port) const;
  // Whether any destination has server_names.
  bool reads_server_names() const { return reads_server_names_; }
  // Whether any destination has http_hosts.
  bool reads_http_hosts() const { return reads_http_hosts_; }
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
  bool reads_http_hosts_ = false;
};

// Whether `server_name` (lower case) is one of `names`: equal to one, or under one's "*.suffix"
// (any number of labels in front of the suffix).
bool ServerNameMatches(const std::vector<std::string>& names, absl::string_view server_name);

}  // namespace meshlet::sidecar::listener
