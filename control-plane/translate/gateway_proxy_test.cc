// Gateway proxies (gateway_proxy.cc): a node labelled with the Gateway it serves gets that
// Gateway's listeners and the routes attached to them, and nothing a sidecar gets.

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

class GatewayProxyTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    AddMeshletGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  listeners:
  - {name: shop, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: api, port: 8080, protocol: HTTP}
  - {name: tls, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: edge-cert}]}}
)");
    RegisterProxy("edge-gw-0", "10.0.7.1", "default/edge", "edge-meshlet");
  }
  // A gateway proxy `id` at `address` claiming `gateway` (label meshlet.io/gateway) as
  // `service_account`, registered.
  void RegisterProxy(const std::string& id, const std::string& address, const std::string& gateway,
                     const std::string& service_account, bool ready = true) {
    registry::Workload w = MakeWorkload(id, "", address, {{"meshlet.io/gateway", gateway}});
    w.ports.clear();
    w.service_account = service_account;
    w.ready = ready;
    Register(std::move(w));
  }
  // Keeps the registry ordered by id, as RegistrySnapshot::Find expects.
  void Register(registry::Workload w) {
    registry_.workloads.push_back(std::move(w));
    std::sort(registry_.workloads.begin(), registry_.workloads.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
  }
};

TEST_F(GatewayProxyTest, ListenersPerPortWithTheAttachedRoutesByHostname) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: cart}
spec:
  parentRefs: [{name: edge, sectionName: shop}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cart}}]
    backendRefs: [{name: echo-v1, port: 80}]
)");
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: everything}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: echo-v2, port: 80}]
)");
  // The mesh's own route (a Service parent) is not the gateway's.
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mesh}
spec:
  parentRefs: [{kind: Service, group: "", name: echo}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
)");
  const NodeResources& r = For("edge-gw-0");
  std::vector<std::string> listeners;
  for (const xds::Listener& l : r.listeners) listeners.push_back(l.name());
  EXPECT_EQ(listeners, (std::vector<std::string>{"gateway|80", "gateway|8080"}));
  const xds::Listener* shop = Named(r.listeners, "gateway|80");
  EXPECT_EQ(shop->address(), "0.0.0.0:80");
  EXPECT_EQ(shop->protocol(), xds::PROTOCOL_HTTP);
  EXPECT_EQ(shop->route_config_name(), "gateway|80");
  // HTTPS without the Secrets read: that listener is not served.
  EXPECT_TRUE(HasWarning(r,
                         "listener \"tls\": Secret default/edge-cert is not known to the "
                         "control plane; the listener is not served"));

  // Port 80: the listener's wildcard and the route's own name; the exact name's rules first.
  const xds::VirtualHost* exact = TranslatorTest::Host(r, "gateway|80", "shop.example.com");
  ASSERT_NE(exact, nullptr);
  EXPECT_EQ(exact->domains(0), "shop.example.com");
  EXPECT_EQ(RouteNames(exact),
            (std::vector<std::string>{"default/cart/rule-0", "default/everything/rule-0",
                                      "no-matching-route"}));
  EXPECT_EQ(exact->routes(0).route().cluster(), "outbound|80||echo-v1.default");
  EXPECT_EQ(exact->routes(1).route().cluster(), "outbound|80||echo-v2.default");
  EXPECT_EQ(exact->routes(2).direct_response().status(), 404);
  const xds::VirtualHost* wildcard = TranslatorTest::Host(r, "gateway|80", "*.example.com");
  ASSERT_NE(wildcard, nullptr);
  EXPECT_EQ(RouteNames(wildcard),
            (std::vector<std::string>{"default/everything/rule-0", "no-matching-route"}));
  // Port 8080 (no listener hostname): "everything" for any host; "cart" names listener shop.
  const xds::VirtualHost* any = TranslatorTest::Host(r, "gateway|8080", "*");
  ASSERT_NE(any, nullptr);
  EXPECT_EQ(any->domains(0), "*");
  EXPECT_EQ(RouteNames(any),
            (std::vector<std::string>{"default/everything/rule-0", "no-matching-route"}));
  // The backends' clusters with their endpoints; nothing of the sidecar's own.
  EXPECT_NE(Named(r.clusters, "outbound|80||echo-v1.default"), nullptr);
  bool assigned = false;
  for (const xds::ClusterLoadAssignment& a : r.endpoints) {
    assigned |= a.cluster_name() == "outbound|80||echo-v2.default" && a.endpoints_size() > 0;
  }
  EXPECT_TRUE(assigned);
  EXPECT_EQ(Named(r.listeners, "outbound"), nullptr);
  EXPECT_EQ(Named(r.listeners, "inbound"), nullptr);
  EXPECT_EQ(Named(r.clusters, "outbound|80||echo.default"), nullptr);
}

// Policies reach a gateway proxy only by a targetRef naming its Gateway: each served listener
// gets them, ports as the Gateway's; the namespace's own policies and those of another Gateway
// or a Service stay with the sidecars.
TEST_F(GatewayProxyTest, PoliciesNamingTheGatewayInTargetRefsAreItsListeners) {
  const std::string jwks =
      R"({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})";
  for (const std::string& ra :
       {"{kind: RequestAuthentication, metadata: {name: edge-jwt}, spec: {targetRefs: "
        "[{kind: Gateway, group: gateway.networking.k8s.io, name: edge}], jwtRules: [{issuer: "
        "https://idp.example, jwks: '" +
            jwks + "'}]}}",
        "{kind: RequestAuthentication, metadata: {name: namespace-jwt}, spec: {jwtRules: "
        "[{issuer: https://mesh.example, jwks: '" +
            jwks + "'}]}}",
        "{kind: RequestAuthentication, metadata: {name: other-jwt}, spec: {targetRefs: "
        "[{kind: Gateway, group: gateway.networking.k8s.io, name: other}], jwtRules: "
        "[{issuer: https://other.example, jwks: '" +
            jwks + "'}]}}"}) {
    policy_.request_authentications.push_back(Parse<pb::RequestAuthentication>(ra));
  }
  for (const char* ap :
       {"{kind: AuthorizationPolicy, metadata: {name: edge-users}, spec: {targetRefs: [{kind: "
        "Gateway, group: gateway.networking.k8s.io, name: edge}], rules: [{from: "
        "[{requestPrincipals: ['https://idp.example/*']}], to: [{ports: [8080]}]}]}}",
        "{kind: AuthorizationPolicy, metadata: {name: deny-all}, spec: {action: DENY, rules: "
        "[{}]}}",
        "{kind: AuthorizationPolicy, metadata: {name: echo-only}, spec: {targetRefs: [{kind: "
        "Service, name: echo}], rules: [{}]}}"}) {
    policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(ap));
  }
  const NodeResources& r = For("edge-gw-0");
  for (const char* name : {"gateway|80", "gateway|8080"}) {
    const xds::Listener* listener = Named(r.listeners, name);
    ASSERT_NE(listener, nullptr) << name;
    ASSERT_EQ(listener->jwt().issuers_size(), 1) << name;
    EXPECT_EQ(listener->jwt().issuers(0).issuer(), "https://idp.example");
    EXPECT_EQ(listener->jwt().issuers(0).source().name(), "edge-jwt");
    ASSERT_EQ(listener->authorization().policies_size(), 1) << name;
    const xds::AuthorizationPolicy& policy = listener->authorization().policies(0);
    EXPECT_EQ(policy.name(), "default/edge-users");
    ASSERT_EQ(policy.rules_size(), 1);
    EXPECT_EQ(policy.rules(0).ports(0), 8080u);  // the Gateway's port, as written
    EXPECT_EQ(policy.rules(0).request_principals(0), "https://idp.example/*");
  }
  // Without a policy naming it, a gateway listener has neither.
  policy_.request_authentications.erase(policy_.request_authentications.cbegin());
  policy_.authorization_policies.erase(policy_.authorization_policies.cbegin());
  const NodeResources& without = For("edge-gw-0");
  EXPECT_FALSE(Named(without.listeners, "gateway|80")->has_jwt());
  EXPECT_FALSE(Named(without.listeners, "gateway|80")->has_authorization());
}

// An egress gateway (docs/egress.md): its listener takes mesh mTLS only, authorizes with the
// policies naming the Gateway, and routes by host to the ExternalServices that name it, whose
// clusters (and TLS origination) are the gateway's; a captured sidecar with a certificate sends
// those services' HTTP calls to the gateway's proxies over mTLS, expecting their identity, and
// has no cluster of the service itself.
TEST_F(GatewayProxyTest, EgressGatewayCarriesTheHttpCallsOfItsExternalServices) {
  AddMeshletGateway(R"(
kind: Gateway
metadata: {name: egress}
spec:
  gatewayClassName: meshlet
  listeners: [{name: out, port: 15443, protocol: meshlet.io/egress}]
)");
  registry::Workload proxy =
      MakeWorkload("egress-gw-0", "", "10.0.7.9", {{"meshlet.io/gateway", "default/egress"}});
  proxy.ports.clear();
  proxy.service_account = "egress-meshlet";
  proxy.ready = true;
  proxy.workload_certificate = true;
  Register(std::move(proxy));
  policy_.external_services.Upsert(
      std::make_shared<pb::ExternalService>(Parse<pb::ExternalService>(R"(
kind: ExternalService
metadata: {name: partner}
spec:
  hosts: [api.partner.example]
  ports: [{number: 80, protocol: HTTP, targetPort: 443, tls: {caCertificates: "PARTNER CA"}}]
  egressGateway: default/egress
)")));
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(
      "{kind: AuthorizationPolicy, metadata: {name: egress-callers}, spec: {targetRefs: [{kind: "
      "Gateway, group: gateway.networking.k8s.io, name: egress}], rules: [{from: "
      "[{principals: ['spiffe://cluster.local/ns/default/sa/client']}]}]}}"));

  const NodeResources& gateway = For("egress-gw-0");
  const xds::Listener* listener = Named(gateway.listeners, "gateway|15443");
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->tls().mode(), xds::DownstreamTls::STRICT);
  EXPECT_TRUE(listener->tls().require_client_certificate());
  EXPECT_TRUE(listener->tls().workload_certificate());
  ASSERT_EQ(listener->authorization().policies_size(), 1);
  EXPECT_EQ(listener->authorization().policies(0).name(), "default/egress-callers");
  const xds::RouteConfiguration* routes = Named(gateway.routes, "gateway|15443");
  ASSERT_NE(routes, nullptr);
  ASSERT_EQ(routes->virtual_hosts_size(), 2);
  EXPECT_EQ(routes->virtual_hosts(0).domains(0), "api.partner.example");
  EXPECT_EQ(routes->virtual_hosts(0).routes(0).route().cluster(),
            "external|80||api.partner.example");
  EXPECT_EQ(routes->virtual_hosts(1).routes(0).direct_response().status(), 404u);
  const xds::Cluster* service = Named(gateway.clusters, "external|80||api.partner.example");
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->dns().port(), 443u);
  EXPECT_EQ(service->tls().sni(), "api.partner.example");
  EXPECT_NE(Named(gateway.secrets, "external-tls/default/partner:80"), nullptr);

  registry::Workload* client = nullptr;
  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "client-0") client = &w;
  }
  ASSERT_NE(client, nullptr);
  client->labels[registry::kCaptureLabel] = registry::kCaptureIptables;
  client->capture = true;
  client->workload_certificate = true;
  const NodeResources& sidecar = For("client-0");
  const xds::RouteConfiguration* port80 = Named(sidecar.routes, "external|80");
  ASSERT_NE(port80, nullptr);
  EXPECT_EQ(port80->virtual_hosts(0).routes(0).route().cluster(), "egress|default/egress");
  const xds::Cluster* egress = Named(sidecar.clusters, "egress|default/egress");
  ASSERT_NE(egress, nullptr);
  ASSERT_EQ(egress->load_assignment().endpoints_size(), 1);
  EXPECT_EQ(egress->load_assignment().endpoints(0).address(), "10.0.7.9:15443");
  EXPECT_TRUE(egress->tls().workload_certificate());
  ASSERT_EQ(egress->tls().expected_peer_ids_size(), 1);
  EXPECT_EQ(egress->tls().expected_peer_ids(0),
            "spiffe://cluster.local/ns/default/sa/egress-meshlet");
  EXPECT_EQ(egress->protocol(), xds::UPSTREAM_MESH_HTTP2);
  EXPECT_EQ(Named(sidecar.clusters, "external|80||api.partner.example"), nullptr);
  EXPECT_EQ(Named(sidecar.secrets, "external-tls/default/partner:80"), nullptr);

  // Without a certificate the sidecar cannot be let in: 503, saying so.
  client->workload_certificate = false;
  const NodeResources& plain = For("client-0");
  EXPECT_EQ(
      Named(plain.routes, "external|80")->virtual_hosts(0).routes(0).direct_response().status(),
      503u);
  EXPECT_TRUE(HasWarning(plain, "no workload certificate to call the egress gateway"));
}

TEST_F(GatewayProxyTest, ARouteOfAnotherListenerOrHostnameIsNotServed) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: elsewhere}
spec:
  parentRefs: [{name: edge, sectionName: shop}]
  hostnames: [shop.example.org]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
)");
  const NodeResources& r = For("edge-gw-0");
  const xds::RouteConfiguration* port80 = Named(r.routes, "gateway|80");
  ASSERT_NE(port80, nullptr);
  EXPECT_EQ(port80->virtual_hosts_size(), 0);
  EXPECT_EQ(Named(r.clusters, "outbound|80||echo-v1.default"), nullptr);
}

// A CORS filter of a route attached to the Gateway is its routes' policy on the gateway proxy.
TEST_F(GatewayProxyTest, ACorsFilterReachesTheGatewaysRoutes) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: edge, sectionName: api}]
  rules:
  - filters: [{type: CORS, cors: {allowOrigins: ["https://app.example"], allowCredentials: true}}]
    backendRefs: [{name: echo-v1, port: 80}]
)");
  const NodeResources& r = For("edge-gw-0");
  const xds::RouteConfiguration* port8080 = Named(r.routes, "gateway|8080");
  ASSERT_NE(port8080, nullptr);
  ASSERT_EQ(port8080->virtual_hosts_size(), 1);
  ASSERT_GE(port8080->virtual_hosts(0).routes_size(), 1);
  const xds::Route& route = port8080->virtual_hosts(0).routes(0);
  EXPECT_EQ(route.cors().allow_origins(0), "https://app.example");
  EXPECT_TRUE(route.cors().allow_credentials());
  EXPECT_EQ(route.cors().max_age_seconds(), 5u);
}

// Backend protocol selection (HTTPRouteBackendProtocolH2C, HTTPRouteBackendProtocolWebSocket):
// a Service port of appProtocol kubernetes.io/h2c (protocol HTTP2) is reached with HTTP/2 from
// the first byte, by the gateway and by the member's sidecar calling its app (no HTTP/1.1 and no
// Upgrade in between); one of kubernetes.io/ws (HTTP) is an HTTP port like any other, sidecar to
// sidecar over the mesh's HTTP/2 (an Upgrade takes an HTTP/1.1 connection) and HTTP/1.1 to the app.
TEST_F(GatewayProxyTest, H2cBackendPortsAreHttp2AllTheWayAndWebSocketPortsHttp1ToTheApp) {
  policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: protocols}
spec:
  ports:
  - {name: second, port: 8081, targetPort: 3001, protocol: HTTP2}
  - {name: third, port: 8082, targetPort: 8080, protocol: HTTP}
)"));
  registry::Workload member = MakeWorkload("protocols-0", "protocols", "10.0.6.1");
  member.ports = {3001, 8080};
  Register(std::move(member));
  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: backend-protocols}
spec:
  parentRefs: [{name: edge, sectionName: api}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /h2c}}]
    backendRefs: [{name: protocols, port: 8081}]
  - matches: [{path: {type: PathPrefix, value: /ws}}]
    backendRefs: [{name: protocols, port: 8082}]
)");
  const NodeResources& gateway = For("edge-gw-0");
  const xds::Cluster* h2c = Named(gateway.clusters, "outbound|8081||protocols.default");
  const xds::Cluster* ws = Named(gateway.clusters, "outbound|8082||protocols.default");
  ASSERT_NE(h2c, nullptr);
  ASSERT_NE(ws, nullptr);
  EXPECT_TRUE(h2c->tls().enabled());
  EXPECT_EQ(h2c->protocol(), xds::UPSTREAM_HTTP2);
  EXPECT_EQ(ws->protocol(), xds::UPSTREAM_MESH_HTTP2);
  const NodeResources& app = For("protocols-0");
  const xds::Cluster* app_h2c = Named(app.clusters, "inbound|3001");
  const xds::Cluster* app_ws = Named(app.clusters, "inbound|8080");
  ASSERT_NE(app_h2c, nullptr);
  ASSERT_NE(app_ws, nullptr);
  EXPECT_EQ(app_h2c->protocol(), xds::UPSTREAM_HTTP2);
  EXPECT_EQ(app_ws->protocol(), xds::UPSTREAM_HTTP1);
}

// GatewayHTTPListenerIsolation: listeners of one port for any host, *.example.com,
// *.foo.example.com and abc.foo.example.com, a route each: a host takes the routes of its most
// specific listener only, and a host of a listener without routes none of a less specific one's.
TEST_F(GatewayProxyTest, AHostTakesTheRoutesOfItsMostSpecificListenerOnly) {
  policy_.gateways[0] = ParseGateway<gw::Gateway>(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  listeners:
  - {name: empty, port: 80, protocol: HTTP}
  - {name: wildcard, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: wildcard-foo, port: 80, protocol: HTTP, hostname: "*.foo.example.com"}
  - {name: abc, port: 80, protocol: HTTP, hostname: abc.foo.example.com}
  - {name: quiet, port: 80, protocol: HTTP, hostname: "*.quiet.example.com"}
)");
  for (const char* section : {"empty", "wildcard", "wildcard-foo", "abc"}) {
    AddHttp(absl::StrCat(R"(
kind: HTTPRoute
metadata: {name: )",
                         section, R"(}
spec:
  parentRefs: [{name: edge, sectionName: )",
                         section, R"(}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /)",
                         section, R"(}}]
    backendRefs: [{name: echo-v1, port: 80}]
)"));
  }
  const NodeResources& r = For("edge-gw-0");
  auto names = [&](const std::string& host) {
    const xds::VirtualHost* v = TranslatorTest::Host(r, "gateway|80", host);
    return v == nullptr ? std::vector<std::string>{"no virtual host"} : RouteNames(v);
  };
  EXPECT_EQ(names("*"), (std::vector<std::string>{"default/empty/rule-0", "no-matching-route"}));
  EXPECT_EQ(names("*.example.com"),
            (std::vector<std::string>{"default/wildcard/rule-0", "no-matching-route"}));
  EXPECT_EQ(names("*.foo.example.com"),
            (std::vector<std::string>{"default/wildcard-foo/rule-0", "no-matching-route"}));
  EXPECT_EQ(names("abc.foo.example.com"),
            (std::vector<std::string>{"default/abc/rule-0", "no-matching-route"}));
  EXPECT_EQ(names("*.quiet.example.com"), (std::vector<std::string>{"no-matching-route"}));
  // Each host names the listener that took it (decision records, spans, explain).
  for (const auto& [host, listener] :
       std::vector<std::pair<std::string, std::string>>{{"*", "empty"},
                                                        {"*.example.com", "wildcard"},
                                                        {"*.foo.example.com", "wildcard-foo"},
                                                        {"abc.foo.example.com", "abc"},
                                                        {"*.quiet.example.com", "quiet"}}) {
    const xds::VirtualHost* v = TranslatorTest::Host(r, "gateway|80", host);
    ASSERT_NE(v, nullptr) << host;
    EXPECT_EQ(v->gateway_listener(), listener) << host;
  }
}

TEST_F(GatewayProxyTest, AGatewayOfAnotherNamespaceOrClassIsNotServed) {
  RegisterProxy("stranger-0", "10.0.7.2", "other/edge", "");
  const NodeResources& r = For("stranger-0");
  EXPECT_TRUE(r.listeners.empty());
  EXPECT_TRUE(HasWarning(r, "names no Gateway of a meshlet GatewayClass in namespace default"));
  // Another service account than the Gateway's proxies'.
  RegisterProxy("impostor-0", "10.0.7.3", "default/edge", "");
  EXPECT_TRUE(For("impostor-0").listeners.empty());
  EXPECT_FALSE(For("edge-gw-0").listeners.empty());
  policy_.gateway_classes[0].mutable_spec()->set_controller_name("example.com/other");
  EXPECT_TRUE(For("edge-gw-0").listeners.empty());
  EXPECT_EQ(GatewayServiceAccount(policy_.gateways[0]), "edge-meshlet");
}

// A Gateway asking for addresses is served once they are all usable (its proxies answer at the
// static address, ADR 0105); an unsupported type or an unusable address serves nothing.
TEST_F(GatewayProxyTest, AGatewayWithStaticAddressesIsServedWhenTheyAreUsable) {
  xds::Node node;
  node.set_id("edge-gw-0");
  for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
  TranslateOptions options;
  options.gateway_address_ranges = {*net::IpPrefix::Parse("203.0.113.0/29")};
  gw::GatewaySpecAddress* address = policy_.gateways[0].mutable_spec()->add_addresses();
  address->set_value("203.0.113.3");
  EXPECT_NE(Named(Translate(policy_, registry_, node, options).listeners, "gateway|8080"), nullptr);
  address->set_value("192.0.2.1");  // outside the ranges: AddressNotUsable
  EXPECT_TRUE(Translate(policy_, registry_, node, options).listeners.empty());
  address->set_value("");
  address->set_type("Hostname");  // UnsupportedAddress
  EXPECT_TRUE(Translate(policy_, registry_, node, options).listeners.empty());
  address->set_type("IPAddress");  // no value: the proxies' own
  EXPECT_NE(Named(Translate(policy_, registry_, node, options).listeners, "gateway|8080"), nullptr);
}

// HTTPS listeners: one listener per port terminating TLS with each listener's certificate by
// its hostname (SNI), the listener without a hostname's as the default; a certificate that
// cannot be served leaves its listener out; an older proxy gets no HTTPS port.
TEST_F(GatewayProxyTest, HttpsListenersServeTheirCertificatesBySni) {
  policy_.gateways.clear();
  policy_.gateways.push_back(ParseGateway<gw::Gateway>(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  listeners:
  - {name: shop, port: 443, protocol: HTTPS, hostname: shop.example.com, tls: {certificateRefs: [{name: shop-cert}]}}
  - {name: wild, port: 443, protocol: HTTPS, hostname: "*.example.com", tls: {certificateRefs: [{name: wild-cert}]}}
  - {name: any, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: default-cert}]}}
  - {name: broken, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: broken-cert}]}}
)"));
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: cart}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.example.com]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
)");
  TranslateOptions options;
  auto certificate = [](const std::string& name, const std::string& error = "") {
    return GatewayCertificate{.type = "kubernetes.io/tls",
                              .chain_pem = "chain of " + name,
                              .key_pem = "key of " + name,
                              .error = error};
  };
  options.gateway_certificates = GatewayCertificates{
      {{"default", "shop-cert"}, certificate("shop")},
      {{"default", "wild-cert"}, certificate("wild")},
      {{"default", "default-cert"}, certificate("default")},
      {{"default", "broken-cert"}, certificate("broken", "the key does not match")}};
  xds::Node node;
  node.set_id("edge-gw-0");
  for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
  const NodeResources r = Translate(policy_, registry_, node, options);
  const xds::Listener* https = Named(r.listeners, "gateway|443");
  ASSERT_NE(https, nullptr);
  EXPECT_EQ(https->tls().mode(), xds::DownstreamTls::TLS);
  EXPECT_EQ(https->tls().secret_name(), "gateway-cert:default/default-cert");
  ASSERT_EQ(https->tls().server_certificates_size(), 2);
  EXPECT_EQ(https->tls().server_certificates(0).server_names(0), "shop.example.com");
  EXPECT_EQ(https->tls().server_certificates(0).secret_name(), "gateway-cert:default/shop-cert");
  EXPECT_EQ(https->tls().server_certificates(1).server_names(0), "*.example.com");
  const xds::Secret* shop = Named(r.secrets, "gateway-cert:default/shop-cert");
  ASSERT_NE(shop, nullptr);
  EXPECT_EQ(shop->certificate_chain_pem(), "chain of shop");
  EXPECT_EQ(shop->private_key_pem(), "key of shop");
  EXPECT_EQ(Named(r.secrets, "gateway-cert:default/broken-cert"), nullptr);
  EXPECT_EQ(Named(r.listeners, "gateway|8443"), nullptr);
  // The status judges it unusable (ResolvedRefs InvalidCertificateRef), so it is not served.
  EXPECT_TRUE(HasWarning(r, "listener \"broken\" is not usable"));
  // The route, by its hostname, on the HTTPS port.
  const xds::VirtualHost* vhost = TranslatorTest::Host(r, "gateway|443", "shop.example.com");
  ASSERT_NE(vhost, nullptr);
  EXPECT_EQ(vhost->routes(0).route().cluster(), "outbound|80||echo-v1.default");

  // Secrets not read at all: nothing HTTPS is served.
  options.gateway_certificates.reset();
  EXPECT_EQ(Named(Translate(policy_, registry_, node, options).listeners, "gateway|443"), nullptr);
  // An older proxy cannot serve HTTPS: the port is left out.
  options.gateway_certificates =
      GatewayCertificates{{{"default", "default-cert"}, certificate("default")}};
  xds::Node old;
  old.set_id("edge-gw-0");
  old.set_sidecar_version("meshlet-sidecar 0.1.0");
  const NodeResources older = Translate(policy_, registry_, old, options);
  EXPECT_EQ(Named(older.listeners, "gateway|443"), nullptr);
  EXPECT_TRUE(HasWarning(older, "cannot serve HTTPS listeners (capability gateway)"));
}

// The Gateway's status names its ready proxies' addresses (Programmed).
TEST_F(GatewayProxyTest, ReadyProxiesProgramTheGateway) {
  RegisterProxy("edge-gw-1", "10.0.7.9", "default/edge", "edge-meshlet", /*ready=*/false);
  auto addresses = GatewayProxyAddresses(policy_, registry_);
  ASSERT_EQ(addresses.size(), 1u);
  const GatewayEnvironment::Key edge("default", "edge");
  EXPECT_EQ(addresses[edge], (std::vector<std::string>{"10.0.7.1"}));
  GatewayEnvironment env;
  env.proxy_addresses = addresses;
  const GatewayStatuses statuses = ComputeGatewayStatuses(policy_, env);
  ASSERT_EQ(statuses.gateways.size(), 1u);
  const gw::GatewayStatus& status = statuses.gateways[0].status;
  ASSERT_EQ(status.addresses_size(), 1);
  EXPECT_EQ(status.addresses(0).value(), "10.0.7.1");
  bool programmed = false;
  for (const gw::Condition& c : status.conditions()) {
    programmed |= c.type() == "Programmed" && c.status() == "True";
  }
  EXPECT_TRUE(programmed);
}

}  // namespace
}  // namespace meshlet::controlplane::translate
