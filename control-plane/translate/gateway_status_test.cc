// Gateways of meshlet's class (gateway_status.h): hostname intersection, the status of
// GatewayClasses, Gateways and listeners with every reason, conflicts, attachedRoutes, and the
// route status of parentRefs naming a Gateway (route_status.h) with every Accepted reason.

#include "control-plane/translate/gateway_status.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/route_status.h"

namespace meshlet::controlplane::translate {
namespace {

// "<type>=<status>/<reason>" for each condition, ',' between them.
std::string Conditions(const google::protobuf::RepeatedPtrField<gw::Condition>& conditions) {
  std::vector<std::string> out;
  for (const gw::Condition& c : conditions) {
    out.push_back(absl::StrCat(c.type(), "=", c.status(), "/", c.reason()));
  }
  return absl::StrJoin(out, ",");
}

std::string MessageOf(const google::protobuf::RepeatedPtrField<gw::Condition>& conditions,
                      absl::string_view type) {
  for (const gw::Condition& c : conditions) {
    if (c.type() == type) return c.message();
  }
  return "<none>";
}

TEST(HostnamesIntersectTest, ExactWildcardAndEmpty) {
  EXPECT_TRUE(HostnamesIntersect("", "a.example.com"));
  EXPECT_TRUE(HostnamesIntersect("a.example.com", ""));
  EXPECT_TRUE(HostnamesIntersect("a.example.com", "A.Example.com"));
  EXPECT_FALSE(HostnamesIntersect("a.example.com", "b.example.com"));
  EXPECT_TRUE(HostnamesIntersect("*.example.com", "a.example.com"));
  EXPECT_TRUE(HostnamesIntersect("*.example.com", "a.b.example.com"));
  EXPECT_FALSE(HostnamesIntersect("*.example.com", "example.com"));
  EXPECT_FALSE(HostnamesIntersect("*.example.com", "a.example.org"));
  EXPECT_FALSE(HostnamesIntersect("*.example.com", "aexample.com"));
  EXPECT_TRUE(HostnamesIntersect("a.example.com", "*.example.com"));
  EXPECT_TRUE(HostnamesIntersect("*.example.com", "*.example.com"));
  EXPECT_TRUE(HostnamesIntersect("*.example.com", "*.a.example.com"));
  EXPECT_TRUE(HostnamesIntersect("*.a.example.com", "*.example.com"));
  EXPECT_FALSE(HostnamesIntersect("*.example.com", "*.example.org"));
}

class GatewayStatusTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    AddClass("meshlet", "meshlet.io/gateway-controller");
    AddClass("theirs", "example.com/gateway");
  }
  void AddClass(const std::string& name, const std::string& controller) {
    gw::GatewayClass c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_generation(2);
    c.mutable_spec()->set_controller_name(controller);
    policy_.gateway_classes.push_back(c);
  }
  void AddGateway(const std::string& yaml) {
    policy_.gateways.push_back(ParseGateway<gw::Gateway>(yaml));
  }
  // A Gateway "edge" in namespace "default" of class meshlet with these listeners.
  void AddEdge(const std::string& listeners) {
    AddGateway(
        absl::StrCat("kind: Gateway\nmetadata: {name: edge, generation: 3}\n"
                     "spec:\n  gatewayClassName: meshlet\n  listeners:\n",
                     listeners));
  }
  // Namespace certs lets Gateways of namespace default refer to its Secret "granted".
  void GrantSecretGranted() {
    policy_.reference_grants.push_back(ParseGateway<gw::ReferenceGrant>(R"(
kind: ReferenceGrant
metadata: {name: certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]
  to: [{group: "", kind: Secret, name: granted}]
)"));
  }
  GatewayStatuses Statuses() { return ComputeGatewayStatuses(policy_, env_); }
  GatewayStatusUpdate Edge() {
    for (GatewayStatusUpdate& u : Statuses().gateways) {
      if (u.name == "edge") return u;
    }
    ADD_FAILURE() << "no status for Gateway edge";
    return {};
  }
  // The route status of the only route, its first parent's conditions.
  gw::RouteParentStatus RouteParent() {
    std::vector<policy::RouteStatusUpdate> all = ComputeRouteStatuses(policy_, registry_, env_);
    if (all.size() != 1 || all[0].status.parents_size() == 0) {
      ADD_FAILURE() << "expected one route with a parent";
      return {};
    }
    return all[0].status.parents(0);
  }

  GatewayEnvironment env_;
};

constexpr char kHttp[] = "  - {name: http, port: 80, protocol: HTTP}\n";

TEST_F(GatewayStatusTest, OnlyMeshletClassesAndTheirGatewaysGetStatus) {
  AddEdge(kHttp);
  AddGateway(R"(
kind: Gateway
metadata: {name: other}
spec: {gatewayClassName: theirs, listeners: [{name: http, port: 80, protocol: HTTP}]}
)");
  AddGateway(R"(
kind: Gateway
metadata: {name: orphan}
spec: {gatewayClassName: missing, listeners: [{name: http, port: 80, protocol: HTTP}]}
)");
  const GatewayStatuses s = Statuses();
  ASSERT_EQ(s.classes.size(), 1u);
  EXPECT_EQ(s.classes[0].name, "meshlet");
  EXPECT_EQ(Conditions(s.classes[0].status.conditions()), "Accepted=True/Accepted");
  EXPECT_EQ(s.classes[0].status.conditions(0).observed_generation(), 2);
  ASSERT_EQ(s.gateways.size(), 1u);
  EXPECT_EQ(s.gateways[0].name, "edge");
}

TEST_F(GatewayStatusTest, AcceptedPendingWithoutProxyProgrammedWithOne) {
  AddEdge(absl::StrCat(kHttp, "  - {name: other, port: 8080, protocol: HTTP}\n"));
  GatewayStatusUpdate u = Edge();
  EXPECT_EQ(u.namespace_, "default");
  EXPECT_EQ(u.generation, 3);
  EXPECT_EQ(Conditions(u.status.conditions()), "Accepted=True/Accepted,Programmed=False/Pending");
  EXPECT_EQ(u.status.addresses_size(), 0);
  ASSERT_EQ(u.status.listeners_size(), 2);
  EXPECT_EQ(u.status.listeners(0).name(), "http");
  EXPECT_EQ(Conditions(u.status.listeners(0).conditions()),
            "Accepted=True/Accepted,Programmed=False/Pending,ResolvedRefs=True/ResolvedRefs,"
            "Conflicted=False/NoConflicts");
  ASSERT_EQ(u.status.listeners(0).supported_kinds_size(), 2);
  EXPECT_EQ(u.status.listeners(0).supported_kinds(0).kind(), "HTTPRoute");
  EXPECT_EQ(u.status.listeners(0).supported_kinds(1).kind(), "GRPCRoute");
  for (const gw::Condition& c : u.status.listeners(1).conditions()) {
    EXPECT_EQ(c.observed_generation(), 3);
  }

  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1"};
  u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()), "Accepted=True/Accepted,Programmed=True/Programmed");
  ASSERT_EQ(u.status.addresses_size(), 1);
  EXPECT_EQ(u.status.addresses(0).value(), "10.0.5.1");
  EXPECT_EQ(u.status.addresses(0).type(), "IPAddress");
  EXPECT_EQ(Conditions(u.status.listeners(1).conditions()),
            "Accepted=True/Accepted,Programmed=True/Programmed,ResolvedRefs=True/ResolvedRefs,"
            "Conflicted=False/NoConflicts");
}

TEST_F(GatewayStatusTest, AnAddressTypeOtherThanIPAddressIsNotAccepted) {
  AddGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  addresses: [{type: Hostname, value: edge.example.com}, {type: IPAddress, value: 192.0.2.1}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)");
  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1"};
  const GatewayStatusUpdate u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=False/UnsupportedAddress,Programmed=False/Invalid");
  EXPECT_TRUE(absl::StrContains(MessageOf(u.status.conditions(), "Accepted"), "\"Hostname\""));
  EXPECT_EQ(u.status.addresses_size(), 0);
}

TEST_F(GatewayStatusTest, AStaticAddressOutsideTheRangesIsNotUsable) {
  AddGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  addresses: [{type: IPAddress, value: 192.0.2.1}, {value: not-an-address}, {value: 203.0.113.3}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)");
  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1"};
  GatewayStatusUpdate u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=True/Accepted,Programmed=False/AddressNotUsable");
  EXPECT_TRUE(absl::StrContains(MessageOf(u.status.conditions(), "Programmed"), "none configured"))
      << MessageOf(u.status.conditions(), "Programmed");
  EXPECT_EQ(u.status.addresses_size(), 0);
  EXPECT_EQ(Conditions(u.status.listeners(0).conditions()),
            "Accepted=True/Accepted,Programmed=False/Invalid,ResolvedRefs=True/ResolvedRefs,"
            "Conflicted=False/NoConflicts");

  env_.address_ranges = {*net::IpPrefix::Parse("203.0.113.0/29")};
  u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=True/Accepted,Programmed=False/AddressNotUsable");
  const std::string message = MessageOf(u.status.conditions(), "Programmed");
  EXPECT_TRUE(absl::StrContains(message,
                                "192.0.2.1 is not in the control plane's "
                                "--gateway-addresses (203.0.113.0/29)"))
      << message;
  EXPECT_TRUE(absl::StrContains(message, "\"not-an-address\" is not an IP address")) << message;
  EXPECT_FALSE(absl::StrContains(message, "203.0.113.3")) << message;
}

TEST_F(GatewayStatusTest, AUsableStaticAddressIsTheGatewaysOnceServed) {
  AddGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  addresses: [{value: 203.0.113.3}, {type: IPAddress, value: 203.0.113.3}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)");
  env_.address_ranges = {*net::IpPrefix::Parse("10.0.0.0/8"),
                         *net::IpPrefix::Parse("203.0.113.0/29")};
  EXPECT_EQ(Conditions(Edge().status.conditions()),
            "Accepted=True/Accepted,Programmed=False/Pending");
  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1"};
  const GatewayStatusUpdate u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()), "Accepted=True/Accepted,Programmed=True/Programmed");
  ASSERT_EQ(u.status.addresses_size(), 1) << "the static address only, once";
  EXPECT_EQ(u.status.addresses(0).value(), "203.0.113.3");
  EXPECT_EQ(u.status.addresses(0).type(), "IPAddress");
}

TEST_F(GatewayStatusTest, AnAddressAnotherGatewayAskedForFirstIsNotUsable) {
  // "edge" is the younger: "older" (created first) holds 203.0.113.3; a Gateway of another class
  // asking for 203.0.113.4 takes nothing from it.
  for (const char* yaml : {R"(
kind: Gateway
metadata: {name: edge, creationTimestamp: "2026-01-01T00:00:05Z"}
spec:
  gatewayClassName: meshlet
  addresses: [{value: 203.0.113.3}, {value: 203.0.113.4}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)",
                           R"(
kind: Gateway
metadata: {name: older, namespace: shop, creationTimestamp: "2026-01-01T00:00:01Z"}
spec:
  gatewayClassName: meshlet
  addresses: [{value: 203.0.113.3}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)",
                           R"(
kind: Gateway
metadata: {name: theirs, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  gatewayClassName: other
  addresses: [{value: 203.0.113.4}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)"}) {
    AddGateway(yaml);
  }
  env_.address_ranges = {*net::IpPrefix::Parse("203.0.113.0/29")};
  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1"};
  env_.proxy_addresses[{"shop", "older"}] = {"10.0.5.2"};
  GatewayStatusUpdate u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=True/Accepted,Programmed=False/AddressNotUsable");
  EXPECT_EQ(MessageOf(u.status.conditions(), "Programmed"),
            "spec.addresses: 203.0.113.3 is in use by Gateway shop/older");
  for (const GatewayStatusUpdate& g : Statuses().gateways) {
    if (g.name != "older") continue;
    EXPECT_EQ(Conditions(g.status.conditions()),
              "Accepted=True/Accepted,Programmed=True/Programmed");
    ASSERT_EQ(g.status.addresses_size(), 1);
    EXPECT_EQ(g.status.addresses(0).value(), "203.0.113.3");
  }
  // What the deployer gives the Service and the proxy's translation use alike.
  const GatewayAddresses judged =
      JudgeGatewayAddresses(policy_, std::as_const(policy_.gateways)[0], env_.address_ranges);
  EXPECT_EQ(judged.usable, std::vector<std::string>{"203.0.113.4"});

  // Once the older Gateway lets it go, the address is edge's.
  policy_.gateways[1].mutable_spec()->clear_addresses();
  u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()), "Accepted=True/Accepted,Programmed=True/Programmed");
  EXPECT_EQ(u.status.addresses_size(), 2);
}

TEST_F(GatewayStatusTest, AnAddressWithoutAValueIsTheProxiesOwn) {
  AddGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  addresses: [{type: IPAddress}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
)");
  EXPECT_EQ(Conditions(Edge().status.conditions()),
            "Accepted=True/Accepted,Programmed=False/Pending");
  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1", "10.0.5.2"};
  GatewayStatusUpdate u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()), "Accepted=True/Accepted,Programmed=True/Programmed");
  ASSERT_EQ(u.status.addresses_size(), 2);
  EXPECT_EQ(u.status.addresses(0).value(), "10.0.5.1");
  EXPECT_EQ(u.status.addresses(1).value(), "10.0.5.2");

  // With a static address too: it first, then the proxies'.
  policy_.gateways.back().mutable_spec()->add_addresses()->set_value("203.0.113.3");
  env_.address_ranges = {*net::IpPrefix::Parse("203.0.113.3")};
  u = Edge();
  ASSERT_EQ(u.status.addresses_size(), 3);
  EXPECT_EQ(u.status.addresses(0).value(), "203.0.113.3");
  EXPECT_EQ(u.status.addresses(2).value(), "10.0.5.2");
}

TEST_F(GatewayStatusTest, InfrastructureParametersRefAndReservedKeysAreInvalidParameters) {
  AddGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  infrastructure:
    labels: {team: shop}
    annotations: {example.com/cost-center: "42"}
  listeners: [{name: http, port: 80, protocol: HTTP}]
)");
  env_.proxy_addresses[{"default", "edge"}] = {"10.0.5.1"};
  EXPECT_EQ(Conditions(Edge().status.conditions()),
            "Accepted=True/Accepted,Programmed=True/Programmed");

  gw::GatewayInfrastructure* infra =
      policy_.gateways.back().mutable_spec()->mutable_infrastructure();
  (*infra->mutable_labels())["meshlet.io/rev"] = "canary";
  GatewayStatusUpdate u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=False/InvalidParameters,Programmed=False/Invalid");
  EXPECT_TRUE(absl::StrContains(MessageOf(u.status.conditions(), "Accepted"),
                                "spec.infrastructure.labels[meshlet.io/rev]"));

  infra->mutable_labels()->erase("meshlet.io/rev");
  infra->mutable_parameters_ref()->set_group("example.com");
  infra->mutable_parameters_ref()->set_kind("Config");
  infra->mutable_parameters_ref()->set_name("big");
  u = Edge();
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=False/InvalidParameters,Programmed=False/Invalid");
  EXPECT_TRUE(absl::StrContains(MessageOf(u.status.conditions(), "Accepted"),
                                "spec.infrastructure.parametersRef: example.com/Config big"));
}

TEST_F(GatewayStatusTest, ListenerReasons) {
  GrantSecretGranted();
  const GatewayEnvironment::Secret tls{.type = "kubernetes.io/tls"};
  env_.secrets = std::map<GatewayEnvironment::Key, GatewayEnvironment::Secret>{
      {{"default", "tls"}, tls},
      {{"default", "opaque"}, {.type = "Opaque"}},
      {{"default", "broken"}, {.type = "kubernetes.io/tls", .error = "the key does not match"}},
      {{"certs", "granted"}, tls},
      {{"certs", "ungranted"}, tls}};
  AddEdge(R"(  - {name: tcp, port: 1, protocol: TCP}
  - {name: badport, port: 0, protocol: HTTP}
  - {name: passthrough, port: 2, protocol: HTTPS, tls: {mode: Passthrough}}
  - {name: kinds, port: 3, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}, {kind: HTTPRoute}]}}
  - {name: nocert, port: 4, protocol: HTTPS}
  - {name: notsecret, port: 5, protocol: HTTPS, tls: {certificateRefs: [{kind: ConfigMap, name: tls}]}}
  - {name: missing, port: 6, protocol: HTTPS, tls: {certificateRefs: [{name: nope}]}}
  - {name: opaque, port: 7, protocol: HTTPS, tls: {certificateRefs: [{name: opaque}]}}
  - {name: ungranted, port: 8, protocol: HTTPS, tls: {certificateRefs: [{name: ungranted, namespace: certs}]}}
  - {name: granted, port: 9, protocol: HTTPS, tls: {certificateRefs: [{name: granted, namespace: certs}]}}
  - {name: https, port: 10, protocol: HTTPS, tls: {mode: Terminate, certificateRefs: [{group: "", kind: Secret, name: tls}]}}
  - {name: broken, port: 11, protocol: HTTPS, tls: {certificateRefs: [{name: broken}]}}
)");
  const GatewayStatusUpdate u = Edge();
  std::map<std::string, std::string> got;
  for (const gw::ListenerStatus& l : u.status.listeners()) {
    std::vector<std::string> bad;
    for (const gw::Condition& c : l.conditions()) {
      if (c.type() == "Accepted" || c.type() == "ResolvedRefs") {
        bad.push_back(absl::StrCat(c.type(), "=", c.status(), "/", c.reason()));
      }
    }
    got[l.name()] = absl::StrJoin(bad, ",");
  }
  const std::map<std::string, std::string> want = {
      {"tcp", "Accepted=False/UnsupportedProtocol,ResolvedRefs=True/ResolvedRefs"},
      {"badport", "Accepted=False/PortUnavailable,ResolvedRefs=True/ResolvedRefs"},
      {"passthrough",
       "Accepted=False/UnsupportedProtocol,ResolvedRefs=False/InvalidCertificateRef"},
      {"kinds", "Accepted=True/Accepted,ResolvedRefs=False/InvalidRouteKinds"},
      {"nocert", "Accepted=True/Accepted,ResolvedRefs=False/InvalidCertificateRef"},
      {"notsecret", "Accepted=True/Accepted,ResolvedRefs=False/InvalidCertificateRef"},
      {"missing", "Accepted=True/Accepted,ResolvedRefs=False/InvalidCertificateRef"},
      {"opaque", "Accepted=True/Accepted,ResolvedRefs=False/InvalidCertificateRef"},
      {"ungranted", "Accepted=True/Accepted,ResolvedRefs=False/RefNotPermitted"},
      {"granted", "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs"},
      {"https", "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs"},
      {"broken", "Accepted=True/Accepted,ResolvedRefs=False/InvalidCertificateRef"},
  };
  EXPECT_EQ(got, want);
  // The kinds listener takes the valid kind it names.
  ASSERT_EQ(u.status.listeners(3).supported_kinds_size(), 1);
  EXPECT_EQ(u.status.listeners(3).supported_kinds(0).kind(), "HTTPRoute");
  EXPECT_EQ(MessageOf(u.status.listeners(6).conditions(), "ResolvedRefs"),
            "tls.certificateRefs[0]: Secret default/nope does not exist");
  EXPECT_EQ(MessageOf(u.status.listeners(7).conditions(), "ResolvedRefs"),
            "tls.certificateRefs[0]: Secret default/opaque is of type \"Opaque\", not "
            "kubernetes.io/tls");
  EXPECT_EQ(MessageOf(u.status.listeners(11).conditions(), "ResolvedRefs"),
            "tls.certificateRefs[0]: Secret default/broken cannot be served: the key does not "
            "match");
  // Unusable listeners are not programmed; the Gateway is accepted with the others.
  EXPECT_EQ(Conditions(u.status.listeners(0).conditions()).find("Programmed=False/Invalid") !=
                std::string::npos,
            true);
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=True/ListenersNotValid,Programmed=False/Pending");
  EXPECT_EQ(MessageOf(u.status.conditions(), "Accepted"), "10 of 12 listeners are not usable");
}

TEST_F(GatewayStatusTest, UnknownSecretsCheckOnlyTheReference) {
  AddEdge("  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: x}]}}\n");
  EXPECT_EQ(Conditions(Edge().status.listeners(0).conditions()),
            "Accepted=True/Accepted,Programmed=False/Pending,ResolvedRefs=True/ResolvedRefs,"
            "Conflicted=False/NoConflicts");
}

// The Secrets read are those meshlet's HTTPS listeners could serve: kind Secret, in the Gateway's
// namespace or granted; not another class's, an HTTP listener's, a ConfigMap or an ungranted one.
TEST_F(GatewayStatusTest, SecretRefsReadAreTheServableOnes) {
  GrantSecretGranted();
  AddEdge(
      R"(  - {name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: a}, {kind: Secret, group: core, name: b}]}}
  - {name: c, port: 444, protocol: HTTPS, tls: {certificateRefs: [{kind: ConfigMap, name: c}]}}
  - {name: d, port: 445, protocol: HTTPS, tls: {certificateRefs: [{name: granted, namespace: certs}, {name: ungranted, namespace: certs}]}}
  - {name: e, port: 80, protocol: HTTP, tls: {certificateRefs: [{name: e}]}}
)");
  AddGateway(R"(kind: Gateway
metadata: {name: other, namespace: default}
spec:
  gatewayClassName: theirs
  listeners: [{name: x, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: x}]}}]
)");
  EXPECT_EQ(GatewaySecretRefs(policy_),
            (std::set<GatewayEnvironment::Key>{
                {"certs", "granted"}, {"default", "a"}, {"default", "b"}}));
}

TEST_F(GatewayStatusTest, ProtocolAndHostnameConflicts) {
  AddEdge(R"(  - {name: a, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: b, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: c, port: 80, protocol: HTTP, hostname: c.example.com}
  - {name: d, port: 443, protocol: HTTP}
  - {name: e, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: x}]}}
)");
  const GatewayStatusUpdate u = Edge();
  std::vector<std::string> conflicted;
  for (const gw::ListenerStatus& l : u.status.listeners()) {
    conflicted.push_back(
        Conditions(l.conditions()).substr(Conditions(l.conditions()).find("Conflicted=")));
  }
  EXPECT_EQ(conflicted, (std::vector<std::string>{
                            "Conflicted=True/HostnameConflict", "Conflicted=True/HostnameConflict",
                            "Conflicted=False/NoConflicts", "Conflicted=True/ProtocolConflict",
                            "Conflicted=True/ProtocolConflict"}));
  EXPECT_EQ(MessageOf(u.status.listeners(3).conditions(), "Conflicted"),
            "listener \"e\" serves port 443 with protocol HTTPS");
  EXPECT_EQ(Conditions(u.status.conditions()),
            "Accepted=True/ListenersNotValid,Programmed=False/Pending");
}

TEST_F(GatewayStatusTest, RouteAttachesAndIsCounted) {
  AddEdge(R"(  - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: grpc-only, port: 81, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}
  - {name: all, port: 82, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
)");
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: web, generation: 4}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: echo, port: 80}]}]
)");
  const gw::RouteParentStatus p = RouteParent();
  EXPECT_EQ(p.controller_name(), "meshlet.io/gateway-controller");
  EXPECT_EQ(p.parent_ref().name(), "edge");
  EXPECT_EQ(Conditions(p.conditions()), "Accepted=True/Accepted,ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(p.conditions(0).observed_generation(), 4);
  const GatewayStatusUpdate u = Edge();
  // http (hostname intersects) and all; not grpc-only (kind).
  EXPECT_EQ(u.status.listeners(0).attached_routes(), 1);
  EXPECT_EQ(u.status.listeners(1).attached_routes(), 0);
  EXPECT_EQ(u.status.listeners(2).attached_routes(), 1);
}

TEST_F(GatewayStatusTest, RouteAcceptedReasons) {
  AddEdge(R"(  - {name: http, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: grpc, port: 81, protocol: HTTP, hostname: a.example.com, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}
  - {name: selected, port: 82, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: shop}}}}}
  - {name: broken, port: 83, protocol: TCP}
)");
  env_.namespace_labels["shop"] = {{"team", "shop"}};
  struct Case {
    std::string route_ns, parent, hostnames, want, message;
  };
  const std::vector<Case> cases = {
      {"default", "{name: edge}", "[a.example.com]", "Accepted=True/Accepted", ""},
      {"default", "{name: edge, sectionName: nope}", "[]", "Accepted=False/NoMatchingParent",
       "Gateway default/edge has no listener \"nope\""},
      {"default", "{name: edge, port: 9999}", "[]", "Accepted=False/NoMatchingParent",
       "Gateway default/edge has no a listener on port 9999"},
      {"default", "{name: edge, sectionName: broken}", "[]", "Accepted=False/NoMatchingParent",
       "Gateway default/edge: listener \"broken\" is not usable (see the Gateway's listener "
       "status)"},
      {"default", "{name: edge, sectionName: grpc}", "[]", "Accepted=False/NotAllowedByListeners",
       ""},
      {"other", "{name: edge, namespace: default, sectionName: http}", "[]",
       "Accepted=False/NotAllowedByListeners",
       "Gateway default/edge: no listener the parentRef names allows HTTPRoutes of namespace "
       "\"other\""},
      {"other", "{name: edge, namespace: default, sectionName: selected}", "[]",
       "Accepted=False/NotAllowedByListeners", ""},
      {"shop", "{name: edge, namespace: default, sectionName: selected}", "[]",
       "Accepted=True/Accepted", ""},
      {"default", "{name: edge, sectionName: http}", "[b.example.com, \"*.example.org\"]",
       "Accepted=False/NoMatchingListenerHostname",
       "Gateway default/edge: no listener's hostname intersects the route's (b.example.com, "
       "*.example.org)"},
      {"default", "{name: edge, sectionName: http}", "[\"*.example.com\"]",
       "Accepted=True/Accepted", ""},
  };
  for (const Case& c : cases) {
    policy_.gateway_http_routes.clear();
    AddHttp(
        absl::StrCat("kind: HTTPRoute\nmetadata: {name: r, namespace: ", c.route_ns,
                     "}\nspec:\n  parentRefs: [", c.parent, "]\n  hostnames: ", c.hostnames,
                     "\n  rules: [{backendRefs: [{name: echo, namespace: default, port: 80}]}]\n"));
    const gw::RouteParentStatus p = RouteParent();
    ASSERT_GE(p.conditions_size(), 1) << c.parent;
    EXPECT_EQ(absl::StrCat(p.conditions(0).type(), "=", p.conditions(0).status(), "/",
                           p.conditions(0).reason()),
              c.want)
        << c.route_ns << " " << c.parent << " " << c.hostnames;
    if (!c.message.empty()) {
      EXPECT_EQ(p.conditions(0).message(), c.message) << c.parent;
    }
  }
}

TEST_F(GatewayStatusTest, RouteOfAnotherControllersGatewayGetsNoParent) {
  AddGateway(R"(
kind: Gateway
metadata: {name: other}
spec: {gatewayClassName: theirs, listeners: [{name: http, port: 80, protocol: HTTP}]}
)");
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: other}, {name: ghost}]
  rules: [{backendRefs: [{name: echo, port: 80}]}]
)");
  std::vector<policy::RouteStatusUpdate> all = ComputeRouteStatuses(policy_, registry_, env_);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status.parents_size(), 0);
}

TEST_F(GatewayStatusTest, GatewayParentCarriesResolvedRefsAndUnsupportedValue) {
  AddEdge(kHttp);
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: edge}]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: x.io, kind: F, name: f}}]
    backendRefs: [{name: ghost, port: 80}]
)");
  EXPECT_EQ(Conditions(RouteParent().conditions()),
            "Accepted=False/UnsupportedValue,ResolvedRefs=False/BackendNotFound");
}

}  // namespace
}  // namespace meshlet::controlplane::translate
