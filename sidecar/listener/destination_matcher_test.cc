#include "sidecar/listener/destination_matcher.h"

#include <optional>
#include <ostream>
#include <string>

#include "common/base/allocation_counter.h"
#include "common/base/logging.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

using Action = CaptureDecision::Action;
using NameSource = DestinationMatcher::NameSource;

net::Address Addr(const std::string& text) {
  absl::StatusOr<net::Address> address = net::Address::Parse(text);
  CHECK(address.ok()) << address.status();
  return *address;
}

config::ListenerDestinationConfig Destination(const std::string& name,
                                              std::vector<std::string> addresses, uint16_t port) {
  config::ListenerDestinationConfig d;
  d.name = name;
  for (const std::string& a : addresses) {
    absl::StatusOr<net::IpPrefix> prefix = net::IpPrefix::Parse(a);
    CHECK(prefix.ok()) << prefix.status();
    d.addresses.push_back(*prefix);
  }
  d.port = port;
  return d;
}

// The outbound capture listener of docs/xds.md, plus an any-address and an any-port entry.
config::ListenerConfig Outbound() {
  config::ListenerConfig l;
  l.name = "outbound";
  l.address = Addr("0.0.0.0:15001");
  l.protocol = config::ListenerProtocol::kHttp;
  l.route_config_name = "outbound";
  l.use_original_destination = true;
  l.destinations.push_back(Destination("db", {"10.96.0.20"}, 3306));
  l.destinations.back().protocol = config::ListenerProtocol::kTcp;
  l.destinations.push_back(Destination("reviews", {"240.240.0.1", "fd00:240::/64"}, 9080));
  l.destinations.back().destination_port = 9081;
  l.destinations.push_back(Destination("pods", {"10.0.0.0/8"}, 0));         // any port
  l.destinations.push_back(Destination("any-9080", {}, 9080));              // any address
  l.destinations.push_back(Destination("shadowed", {"10.96.0.20"}, 3306));  // db comes first
  return l;
}

}  // namespace
}  // namespace meshlet::sidecar::listener

namespace meshlet::net {
// Failures print the address, not its bytes.
void PrintTo(const Address& address, std::ostream* out) { *out << address.ToString(); }
}  // namespace meshlet::net

namespace meshlet::sidecar::listener {
namespace {

const std::string* Name(const CaptureDecision& d) {
  return d.destination == nullptr ? nullptr : &d.destination->name;
}

TEST(DestinationMatcherTest, TheFirstMatchingDestinationWins) {
  const config::ListenerConfig listener = Outbound();
  DestinationMatcher matcher(listener);

  CaptureDecision d = matcher.Match(Addr("10.96.0.20:3306"), 15001);
  EXPECT_EQ(d.action, Action::kDestination);
  ASSERT_NE(Name(d), nullptr);
  EXPECT_EQ(*Name(d), "db");  // not "pods", which is later, nor "shadowed"
  EXPECT_EQ(d.destination, &listener.destinations[0]);
  EXPECT_EQ(d.authorization_port, 3306u);

  d = matcher.Match(Addr("240.240.0.1:9080"), 15001);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "reviews");
  EXPECT_EQ(d.authorization_port, 9081u);  // the destination's destination_port
  d = matcher.Match(Addr("[fd00:240::7]:9080"), 15001);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "reviews");

  // Any port of 10/8, where no earlier entry with that port matches first.
  d = matcher.Match(Addr("10.1.2.3:5432"), 15001);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "pods");
  EXPECT_EQ(d.authorization_port, 5432u);
  // 10.1.2.3:9080: "pods" (index 2) comes before "any-9080" (index 3).
  d = matcher.Match(Addr("10.1.2.3:9080"), 15001);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "pods");
  // Any address on 9080 that neither reviews nor pods covers.
  d = matcher.Match(Addr("192.0.2.1:9080"), 15001);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "any-9080");
  d = matcher.Match(Addr("[2001:db8::1]:9080"), 15001);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "any-9080");
}

TEST(DestinationMatcherTest, AnIPv4AddressNeverMatchesAnIPv6Range) {
  config::ListenerConfig listener = Outbound();
  listener.destinations = {Destination("v6", {"::/0"}, 80)};
  DestinationMatcher matcher(listener);
  EXPECT_EQ(matcher.Match(Addr("10.0.0.1:80"), 15001).action, Action::kPassthrough);
  EXPECT_EQ(matcher.Match(Addr("[::ffff:10.0.0.1]:80"), 15001).action, Action::kDestination);
}

TEST(DestinationMatcherTest, UnmatchedIsPassedThroughToTheOriginalDestination) {
  const config::ListenerConfig listener = Outbound();
  DestinationMatcher matcher(listener);
  CaptureDecision d = matcher.Match(Addr("192.0.2.1:443"), 15001);
  EXPECT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.destination, nullptr);
  EXPECT_EQ(d.upstream, Addr("192.0.2.1:443"));
  EXPECT_EQ(d.authorization_port, 443u);
  // The port of "db", another address (outside 10/8 too).
  d = matcher.Match(Addr("172.16.0.20:3306"), 15001);
  EXPECT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.upstream, Addr("172.16.0.20:3306"));
  d = matcher.Match(Addr("[2001:db8::5]:8443"), 15001);
  EXPECT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.upstream, Addr("[2001:db8::5]:8443"));
}

// Connections addressed to one of the sidecar's own ports are refused: passed to 127.0.0.1 they
// would reach the sidecar itself (another pod calling out through this pod's outbound listener,
// with this pod's identity, or a loop into the inbound listener).
TEST(DestinationMatcherTest, TheSidecarsOwnPortsAreNeverPassedThrough) {
  config::ListenerConfig listener = Outbound();
  listener.sidecar_ports = {15001, 15006};
  DestinationMatcher matcher(listener);
  EXPECT_EQ(matcher.Match(Addr("192.0.2.7:15001"), 15006).action, Action::kRefuse);
  EXPECT_EQ(matcher.Match(Addr("192.0.2.7:15006"), 15001).action, Action::kRefuse);
  EXPECT_EQ(matcher.Match(Addr("192.0.2.7:15002"), 15006).action, Action::kPassthrough);
}

TEST(DestinationMatcherTest, PassthroughHostTakesTheOriginalPort) {
  config::ListenerConfig listener = Outbound();
  listener.destinations.clear();
  listener.passthrough_host = *net::IpAddress::Parse("127.0.0.1");
  DestinationMatcher matcher(listener);
  CaptureDecision d = matcher.Match(Addr("198.18.9.1:8080"), 15006);
  EXPECT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.upstream, Addr("127.0.0.1:8080"));
  d = matcher.Match(Addr("[fd00:9::1]:8080"), 15006);
  EXPECT_EQ(d.upstream, Addr("127.0.0.1:8080"));

  listener.passthrough_host = *net::IpAddress::Parse("::1");
  DestinationMatcher v6(listener);
  EXPECT_EQ(v6.Match(Addr("198.18.9.1:8080"), 15006).upstream, Addr("[::1]:8080"));
}

TEST(DestinationMatcherTest, UnmatchedIsRefusedWhenTheListenerSaysSo) {
  config::ListenerConfig listener = Outbound();
  listener.unmatched_destination = config::UnmatchedDestination::kRefuse;
  DestinationMatcher matcher(listener);
  CaptureDecision d = matcher.Match(Addr("192.0.2.1:443"), 15001);
  EXPECT_EQ(d.action, Action::kRefuse);
  EXPECT_EQ(d.destination, nullptr);
  EXPECT_EQ(d.authorization_port, 443u);
  EXPECT_EQ(matcher.Match(Addr("10.96.0.20:3306"), 15001).action, Action::kDestination);
}

TEST(DestinationMatcherTest, NotRedirectedIsServedByTheListenerItself) {
  config::ListenerConfig listener = Outbound();
  DestinationMatcher matcher(listener);
  CaptureDecision d = matcher.Match(std::nullopt, 15001);
  EXPECT_EQ(d.action, Action::kListener);
  EXPECT_EQ(d.destination, nullptr);
  EXPECT_EQ(d.authorization_port, 15001u);
  // Redirected from the listener's own port (the pod's address on 15001): as not redirected,
  // even where a destination covers any port.
  EXPECT_EQ(matcher.Match(Addr("10.1.2.3:15001"), 15001).action, Action::kListener);
  // The bound port counts, not the configured one (port 0 in tests).
  EXPECT_EQ(matcher.Match(Addr("10.1.2.3:15001"), 40000).action, Action::kDestination);

  listener.destination_port = 8080;
  DestinationMatcher with_port(listener);
  EXPECT_EQ(with_port.Match(std::nullopt, 15001).authorization_port, 8080u);
  // Captured connections see their original port (or the destination's), not the listener's.
  EXPECT_EQ(with_port.Match(Addr("192.0.2.1:443"), 15001).authorization_port, 443u);
}

TEST(DestinationMatcherTest, ListenersWithoutCaptureIgnoreTheOriginalDestination) {
  config::ListenerConfig listener = Outbound();
  listener.use_original_destination = false;
  DestinationMatcher matcher(listener);
  EXPECT_EQ(matcher.Match(Addr("10.96.0.20:3306"), 15001).action, Action::kListener);
}

TEST(DestinationMatcherTest, ServerNamesMatchExactlyOrUnderAWildcard) {
  EXPECT_TRUE(ServerNameMatches({"a.example.com"}, "a.example.com"));
  EXPECT_FALSE(ServerNameMatches({"a.example.com"}, "b.example.com"));
  EXPECT_FALSE(ServerNameMatches({"a.example.com"}, "x.a.example.com"));
  EXPECT_TRUE(ServerNameMatches({"x.org", "*.example.com"}, "a.example.com"));
  EXPECT_TRUE(ServerNameMatches({"*.example.com"}, "a.b.example.com"));  // any labels in front
  EXPECT_FALSE(ServerNameMatches({"*.example.com"}, "example.com"));
  EXPECT_FALSE(ServerNameMatches({"*.example.com"}, "aexample.com"));
  EXPECT_FALSE(ServerNameMatches({"*.example.com"}, ""));
  EXPECT_FALSE(ServerNameMatches({}, "a.example.com"));
}

// An east-west gateway's listener: no capture, destinations by server name alone.
TEST(DestinationMatcherTest, WithoutCaptureDestinationsMatchByServerNameAlone) {
  config::ListenerConfig listener;
  listener.name = "gateway|15443";
  listener.protocol = config::ListenerProtocol::kTcp;
  listener.destinations.push_back(Destination("reviews", {}, 0));
  listener.destinations.back().server_names = {"9080.reviews.default.meshlet.internal"};
  listener.destinations.back().protocol = config::ListenerProtocol::kTcp;
  listener.destinations.push_back(Destination("shop", {}, 0));
  listener.destinations.back().server_names = {"*.shop.meshlet.internal"};
  listener.destinations.back().destination_port = 8443;
  DestinationMatcher matcher(listener);
  EXPECT_TRUE(matcher.reads_server_names());
  EXPECT_FALSE(matcher.reads_http_hosts());
  EXPECT_EQ(matcher.NameNeeded(std::nullopt, 15443), NameSource::kClientHello);

  const std::string reviews = "9080.reviews.default.meshlet.internal";
  CaptureDecision d = matcher.Match(std::nullopt, 15443, &reviews);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "reviews");
  EXPECT_EQ(d.authorization_port, 15443u);
  const std::string cart = "80.cart.shop.meshlet.internal";
  d = matcher.Match(std::nullopt, 15443, &cart);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "shop");
  EXPECT_EQ(d.authorization_port, 8443u);
  // Another name, no name (not TLS): the listener's own fields.
  const std::string other = "9080.ratings.default.meshlet.internal";
  EXPECT_EQ(matcher.Match(std::nullopt, 15443, &other).action, Action::kListener);
  EXPECT_EQ(matcher.Match(std::nullopt, 15443, nullptr).action, Action::kListener);
  // An original destination means nothing here.
  EXPECT_EQ(matcher.Match(Addr("10.0.0.1:9080"), 15443, &reviews).action, Action::kDestination);
}

TEST(DestinationMatcherTest, CaptureDestinationsWithServerNamesNeedTheName) {
  config::ListenerConfig listener = Outbound();
  // Before "any-9080": TLS to 192.0.2.0/24:443 named api.example.com, else passed through.
  auto named = Destination("api", {"192.0.2.0/24"}, 443);
  named.server_names = {"api.example.com"};
  named.protocol = config::ListenerProtocol::kTcp;
  listener.destinations.insert(listener.destinations.begin(), named);
  auto wildcard = Destination("any-tls", {}, 8443);
  wildcard.server_names = {"*.example.com"};
  listener.destinations.insert(listener.destinations.begin() + 1, wildcard);
  DestinationMatcher matcher(listener);

  EXPECT_EQ(matcher.NameNeeded(Addr("192.0.2.1:443"), 15001), NameSource::kClientHello);
  EXPECT_EQ(matcher.NameNeeded(Addr("198.18.0.1:8443"), 15001), NameSource::kClientHello);
  // The first candidate has no names (db), or there is none: no need to read anything.
  EXPECT_EQ(matcher.NameNeeded(Addr("10.96.0.20:3306"), 15001), NameSource::kNone);
  EXPECT_EQ(matcher.NameNeeded(Addr("198.18.0.1:5432"), 15001), NameSource::kNone);
  EXPECT_EQ(matcher.NameNeeded(std::nullopt, 15001), NameSource::kNone);  // not redirected

  const std::string api = "api.example.com";
  const std::string other = "www.example.org";
  CaptureDecision d = matcher.Match(Addr("192.0.2.1:443"), 15001, &api);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "api");
  EXPECT_EQ(matcher.Match(Addr("192.0.2.1:443"), 15001, &other).action, Action::kPassthrough);
  EXPECT_EQ(matcher.Match(Addr("192.0.2.1:443"), 15001, nullptr).action, Action::kPassthrough);
  d = matcher.Match(Addr("198.18.0.1:8443"), 15001, &api);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "any-tls");
  // A later destination without names still serves what the named one did not take.
  auto fallback = Destination("fallback", {"192.0.2.0/24"}, 443);
  listener.destinations.insert(listener.destinations.begin() + 1, fallback);
  DestinationMatcher with_fallback(listener);
  d = with_fallback.Match(Addr("192.0.2.1:443"), 15001, &other);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "fallback");
}

// Plain HTTP to external services (ADR 0108): port 80 of any address, by the Host of the first
// request; TLS on 443 by server name; the rest refused.
config::ListenerConfig ExternalServices() {
  config::ListenerConfig listener = Outbound();
  listener.unmatched_destination = config::UnmatchedDestination::kRefuse;
  auto partner = Destination("partner", {}, 80);
  partner.http_hosts = {"api.partner.example", "*.cdn.example"};
  partner.protocol = config::ListenerProtocol::kHttp1;
  partner.route_config_name = "partner";
  listener.destinations.push_back(partner);
  auto as_is = Destination("as-is", {}, 80);
  as_is.http_hosts = {"c.example"};
  as_is.protocol = config::ListenerProtocol::kTcp;
  as_is.passthrough = true;
  listener.destinations.push_back(as_is);
  auto tls = Destination("partner-tls", {}, 443);
  tls.server_names = {"api.partner.example"};
  tls.protocol = config::ListenerProtocol::kTcp;
  tls.passthrough = true;
  listener.destinations.push_back(tls);
  return listener;
}

TEST(DestinationMatcherTest, CaptureDestinationsWithHttpHostsNeedTheHost) {
  const config::ListenerConfig listener = ExternalServices();
  DestinationMatcher matcher(listener);
  EXPECT_TRUE(matcher.reads_http_hosts());
  EXPECT_TRUE(matcher.reads_server_names());

  const auto original = Addr("203.0.113.7:80");
  EXPECT_EQ(matcher.NameNeeded(original, 15001), NameSource::kHttpHost);
  EXPECT_EQ(matcher.NameNeeded(Addr("203.0.113.7:443"), 15001), NameSource::kClientHello);
  EXPECT_EQ(matcher.NameNeeded(Addr("10.96.0.20:3306"), 15001), NameSource::kNone);
  EXPECT_EQ(matcher.NameNeeded(Addr("203.0.113.7:8080"), 15001), NameSource::kNone);
  EXPECT_EQ(matcher.NameNeeded(std::nullopt, 15001), NameSource::kNone);
  EXPECT_EQ(matcher.NameNeeded(Addr("203.0.113.7:15001"), 15001), NameSource::kNone);

  const std::string api = "api.partner.example";
  const std::string cdn = "img.eu.cdn.example";
  const std::string c = "c.example";
  const std::string other = "api.elsewhere.example";
  CaptureDecision d = matcher.Match(original, 15001, nullptr, &api);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "partner");
  EXPECT_EQ(d.authorization_port, 80u);
  d = matcher.Match(original, 15001, nullptr, &cdn);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "partner");
  // A passthrough destination by host: on to the original destination, whatever the policy.
  d = matcher.Match(original, 15001, nullptr, &c);
  ASSERT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(*Name(d), "as-is");
  EXPECT_EQ(d.upstream, original);
  // Another host, no host: the listener's policy.
  EXPECT_EQ(matcher.Match(original, 15001, nullptr, &other).action, Action::kRefuse);
  EXPECT_EQ(matcher.Match(original, 15001).action, Action::kRefuse);
  // Each kind of destination takes only its own kind of name.
  EXPECT_EQ(matcher.Match(original, 15001, &api, nullptr).action, Action::kRefuse);
  EXPECT_EQ(matcher.Match(Addr("203.0.113.7:443"), 15001, nullptr, &api).action, Action::kRefuse);
  d = matcher.Match(Addr("203.0.113.7:443"), 15001, &api, nullptr);
  ASSERT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(*Name(d), "partner-tls");

  // A later destination without names still serves what the named ones did not take; a later
  // one with server names never takes a connection that read its Host.
  config::ListenerConfig with_fallback = ExternalServices();
  auto tls_80 = Destination("tls-80", {}, 80);
  tls_80.server_names = {"api.elsewhere.example"};
  with_fallback.destinations.push_back(tls_80);
  with_fallback.destinations.push_back(Destination("fallback", {"203.0.113.0/24"}, 80));
  DestinationMatcher fallback(with_fallback);
  EXPECT_EQ(fallback.NameNeeded(original, 15001), NameSource::kHttpHost);
  d = fallback.Match(original, 15001, nullptr, &other);
  ASSERT_EQ(d.action, Action::kDestination);
  EXPECT_EQ(*Name(d), "fallback");
  EXPECT_EQ(fallback.Match(Addr("198.51.100.1:80"), 15001, nullptr, &other).action,
            Action::kRefuse);
  // A destination with neither kind of name before them: nothing to read.
  config::ListenerConfig first_plain = ExternalServices();
  first_plain.destinations.insert(first_plain.destinations.begin(),
                                  Destination("plain", {"203.0.113.0/24"}, 0));
  DestinationMatcher plain(first_plain);
  EXPECT_EQ(plain.NameNeeded(original, 15001), NameSource::kNone);
  EXPECT_EQ(plain.NameNeeded(Addr("198.51.100.1:80"), 15001), NameSource::kHttpHost);
}

TEST(DestinationMatcherTest, PassthroughDestinationsSendToTheOriginalDestination) {
  // An external service allowed through as addressed (TLS to *.partner.example on 443), under a
  // listener that refuses what nothing matches.
  config::ListenerConfig listener = Outbound();
  listener.unmatched_destination = config::UnmatchedDestination::kRefuse;
  auto partner = Destination("partner", {}, 443);
  partner.server_names = {"*.partner.example"};
  partner.protocol = config::ListenerProtocol::kTcp;
  partner.passthrough = true;
  listener.destinations.push_back(partner);
  DestinationMatcher matcher(listener);
  const std::string api = "api.partner.example";
  const std::string other = "api.elsewhere.example";
  CaptureDecision d = matcher.Match(Addr("203.0.113.7:443"), 15001, &api);
  ASSERT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.upstream, Addr("203.0.113.7:443"));
  ASSERT_NE(Name(d), nullptr);
  EXPECT_EQ(*Name(d), "partner");
  EXPECT_EQ(matcher.Match(Addr("203.0.113.7:443"), 15001, &other).action, Action::kRefuse);
  EXPECT_EQ(matcher.Match(Addr("203.0.113.7:443"), 15001, nullptr).action, Action::kRefuse);
  // With a passthrough host: its address, the original port.
  listener.passthrough_host = *net::IpAddress::Parse("127.0.0.1");
  DestinationMatcher local(listener);
  EXPECT_EQ(local.Match(Addr("203.0.113.7:443"), 15001, &api).upstream, Addr("127.0.0.1:443"));
}

TEST(DestinationMatcherTest, NoDestinations) {
  config::ListenerConfig listener = Outbound();
  listener.destinations.clear();
  DestinationMatcher matcher(listener);
  EXPECT_EQ(matcher.Match(Addr("10.96.0.20:3306"), 15001).action, Action::kPassthrough);
}

TEST(DestinationMatcherTest, LookupsAllocateNothing) {
  config::ListenerConfig listener = Outbound();
  listener.passthrough_host = *net::IpAddress::Parse("127.0.0.1");
  DestinationMatcher matcher(listener);
  const std::optional<net::Address> originals[] = {
      Addr("10.96.0.20:3306"), Addr("[fd00:240::7]:9080"), Addr("192.0.2.1:9080"),
      Addr("192.0.2.1:443"),   Addr("10.1.2.3:15001"),     std::nullopt};
  int matched = 0;
  AllocationScope allocations;
  for (const std::optional<net::Address>& original : originals) {
    matched += matcher.Match(original, 15001).action == Action::kDestination;
  }
  EXPECT_EQ(allocations.count(), 0u);
  EXPECT_EQ(matched, 3);
  // By name.
  const config::ListenerConfig external = ExternalServices();
  DestinationMatcher by_name(external);
  const std::string cdn = "img.eu.cdn.example";
  const std::string other = "api.elsewhere.example";
  const std::optional<net::Address> http = Addr("203.0.113.7:80");
  const std::optional<net::Address> tls = Addr("203.0.113.7:443");
  AllocationScope named;
  const bool reads_host = by_name.NameNeeded(http, 15001) == NameSource::kHttpHost;
  const Action to_cdn = by_name.Match(http, 15001, nullptr, &cdn).action;
  const Action to_other = by_name.Match(http, 15001, nullptr, &other).action;
  const Action tls_to_other = by_name.Match(tls, 15001, &other).action;
  EXPECT_EQ(named.count(), 0u);
  EXPECT_TRUE(reads_host);
  EXPECT_EQ(to_cdn, Action::kDestination);
  EXPECT_EQ(to_other, Action::kRefuse);
  EXPECT_EQ(tls_to_other, Action::kRefuse);
}

TEST(DestinationMatcherTest, ActionNames) {
  EXPECT_STREQ(CaptureActionName(Action::kListener), "not_redirected");
  EXPECT_STREQ(CaptureActionName(Action::kDestination), "matched");
  EXPECT_STREQ(CaptureActionName(Action::kPassthrough), "passthrough");
  EXPECT_STREQ(CaptureActionName(Action::kRefuse), "refused");
}

}  // namespace
}  // namespace meshlet::sidecar::listener
