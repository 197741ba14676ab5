#include "sidecar/listener/destination_matcher.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/types/span.h"
#include "common/base/logging.h"
#include "common/net/ip_prefix.h"

namespace meshlet::sidecar::listener {
namespace {

using Action = CaptureDecision::Action;

// The IP of an IP address (unix addresses never reach here).
net::IpAddress IpOf(const net::Address& address) {
  if (const sockaddr_in6* in6 = address.in6(); in6 != nullptr) {
    return net::IpAddress::FromV6Bytes(&in6->sin6_addr);
  }
  return net::IpAddress::FromV4Bytes(&address.in4()->sin_addr);
}

// `host` on `port`, without going through text.
net::Address AddressOf(const net::IpAddress& host, uint16_t port) {
  sockaddr_storage storage;
  memset(&storage, 0, sizeof(storage));
  socklen_t len;
  if (host.is_v4()) {
    auto& v4 = reinterpret_cast<sockaddr_in&>(storage);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    memcpy(&v4.sin_addr, host.bytes().data(), 4);
    len = sizeof(v4);
  } else {
    auto& v6 = reinterpret_cast<sockaddr_in6&>(storage);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    memcpy(&v6.sin6_addr, host.bytes().data(), 16);
    len = sizeof(v6);
  }
  absl::StatusOr<net::Address> address =
      net::Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&storage), len);
  CHECK(address.ok()) << address.status();
  return *address;
}

}  // namespace

const char* CaptureActionName(Action action) {
  switch (action) {
    case Action::kListener:
      return "not_redirected";
    case Action::kDestination:
      return "matched";
    case Action::kPassthrough:
      return "passthrough";
    case Action::kRefuse:
      return "refused";
  }
  return "unknown";
}

bool ServerNameMatches(const std::vector<std::string>& names, absl::string_view server_name) {
  if (server_name.empty()) return false;
  for (const std::string& name : names) {
    if (absl::StartsWith(name, "*.")) {
      const absl::string_view suffix = absl::string_view(name).substr(1);  // ".example.com"
      if (server_name.size() > suffix.size() && absl::EndsWith(server_name, suffix)) return true;
    } else if (server_name == name) {
      return true;
    }
  }
  return false;
}

DestinationMatcher::DestinationMatcher(const config::ListenerConfig& listener)
    : listener_(listener) {
  CHECK(listener.destinations.size() < std::numeric_limits<uint32_t>::max());
  for (uint32_t i = 0; i < listener.destinations.size(); ++i) {
    reads_server_names_ |= !listener.destinations[i].server_names.empty();
    reads_http_hosts_ |= !listener.destinations[i].http_hosts.empty();
    const uint16_t port = listener.destinations[i].port;
    if (port == 0) {
      any_port_.push_back(i);
    } else {
      by_port_[port].push_back(i);
    }
  }
}

bool DestinationMatcher::WaitsForLookup(const net::Address& original) const {
  if (!listener_.on_demand.has_value() || !original.is_ip()) return false;
  return listener_.on_demand->WaitsFor(IpOf(original));
}

bool DestinationMatcher::AddressMatches(uint32_t index, const net::Address& address) const {
  const std::vector<net::IpPrefix>& prefixes = listener_.destinations[index].addresses;
  if (prefixes.empty()) return true;
  const net::IpAddress ip = IpOf(address);
  for (const net::IpPrefix& prefix : prefixes) {
    if (prefix.Contains(ip)) return true;
  }
  return false;
}

template <typename Visit>
bool DestinationMatcher::ForEachCandidate(const net::Address& original, Visit visit) const {
  // Configuration order: walk the port's entries and the any-port entries together, both
  // ascending.
  auto it = by_port_.find(original.port());
  const absl::Span<const uint32_t> with_port =
      it != by_port_.end() ? absl::MakeConstSpan(it->second) : absl::Span<const uint32_t>();
  size_t a = 0;
  size_t b = 0;
  while (a < with_port.size() || b < any_port_.size()) {
    uint32_t index;
    if (b == any_port_.size() || (a < with_port.size() && with_port[a] < any_port_[b])) {
      index = with_port[a++];
    } else {
      index = any_port_[b++];
    }
    if (AddressMatches(index, original) && visit(index)) return true;
  }
  return false;
}

bool DestinationMatcher::Redirected(const std::optional<net::Address>& original,
                                    uint16_t local_port) const {
  return original.has_value() && original->is_ip() && original->port() != local_port;
}

DestinationMatcher::NameSource DestinationMatcher::NameNeeded(
    const std::optional<net::Address>& original, uint16_t local_port) const {
  if (!reads_server_names_ && !reads_http_hosts_) return NameSource::kNone;
  if (!listener_.use_original_destination) {
    return reads_server_names_ ? NameSource::kClientHello : NameSource::kNone;
  }
  if (!Redirected(original, local_port)) return NameSource::kNone;
  // The first candidate decides: one with names needs its kind of name, one without serves any.
  NameSource needs = NameSource::kNone;
  ForEachCandidate(*original, [&](uint32_t index) {
    const config::ListenerDestinationConfig& destination = listener_.destinations[index];
    if (!destination.server_names.empty()) {
      needs = NameSource::kClientHello;
    } else if (!destination.http_hosts.empty()) {
      needs = NameSource::kHttpHost;
    }
    return true;
  });
  return needs;
}

CaptureDecision DestinationMatcher::Match(const std::optional<net::Address>& original,
                                          uint16_t local_port, const std::string* server_name,
                                          const std::string* http_host) const {
  CaptureDecision decision;
  const absl::string_view name = server_name != nullptr ? *server_name : absl::string_view();
  const absl::string_view host = http_host != nullptr ? *http_host : absl::string_view();
  auto take = [&](uint32_t index) {
    const config::ListenerDestinationConfig& destination = listener_.destinations[index];
    if (!destination.server_names.empty() && !ServerNameMatches(destination.server_names, name)) {
      return false;
    }
    if (!destination.http_hosts.empty() && !ServerNameMatches(destination.http_hosts, host)) {
      return false;
    }
    decision.action = Action::kDestination;
    decision.destination = &destination;
    if (destination.passthrough && original.has_value()) {
      decision.action = Action::kPassthrough;
      decision.upstream = listener_.passthrough_host.has_value()
                              ? AddressOf(*listener_.passthrough_host, original->port())
                              : *original;
    }
    if (destination.destination_port != 0) {
      decision.authorization_port = destination.destination_port;
    }
    return true;
  };
  if (!listener_.use_original_destination || !Redirected(original, local_port)) {
    decision.authorization_port =
        listener_.destination_port != 0 ? listener_.destination_port : local_port;
    if (!listener_.use_original_destination) {
      // Destinations by server name alone (each has some).
      for (uint32_t i = 0; i < listener_.destinations.size(); ++i) {
        if (!listener_.destinations[i].server_names.empty() && take(i)) break;
      }
    }
    return decision;
  }
  const uint16_t port = original->port();
  decision.authorization_port = port;
  if (ForEachCandidate(*original, take)) return decision;
  if (listener_.unmatched_destination == config::UnmatchedDestination::kRefuse ||
      std::binary_search(listener_.sidecar_ports.begin(), listener_.sidecar_ports.end(), port)) {
    decision.action = Action::kRefuse;
    return decision;
  }
  decision.action = Action::kPassthrough;
  decision.upstream = listener_.passthrough_host.has_value()
                          ? AddressOf(*listener_.passthrough_host, port)
                          : *original;
  return decision;
}

}  // namespace meshlet::sidecar::listener
