// Listeners (listeners.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

TEST_F(TranslatorTest, ListenersForTheNode) {
  NodeResources r = Translate(policy_, registry_, node_);
  ASSERT_EQ(r.listeners.size(), 2u);
  const xds::Listener* outbound = Named(r.listeners, "outbound");
  ASSERT_NE(outbound, nullptr);
  // Without capture, for the app beside it alone: it makes calls with this workload's identity.
  EXPECT_EQ(outbound->address(), "127.0.0.1:15001");
  EXPECT_EQ(outbound->additional_addresses_size(), 0);  // no capture: nothing redirects to it
  EXPECT_EQ(outbound->direction(), xds::OUTBOUND);
  EXPECT_EQ(outbound->route_config_name(), "outbound");
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->address(), "0.0.0.0:15006");
  EXPECT_EQ(inbound->direction(), xds::INBOUND);
  // frontend's Service maps port 8080 to the app's 8081.
  EXPECT_EQ(inbound->tcp_cluster(), "inbound|8081");
  const xds::Cluster* app = Named(r.clusters, "inbound|8081");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->type(), xds::Cluster::STATIC);
  EXPECT_EQ(app->load_assignment().endpoints(0).address(), "127.0.0.1:8081");
  // The inbound hop adds no timeout of its own: the caller's deadline governs. It retries only
  // what never reached the app, so attempts do not multiply across hops.
  const xds::VirtualHost* local = Host(r, "inbound", "inbound:8080");
  ASSERT_NE(local, nullptr);
  ASSERT_EQ(local->routes_size(), 1);
  EXPECT_EQ(local->routes(0).route().timeout().seconds(), 0);
  const xds::RetryPolicy& inbound_retries = local->routes(0).route().retry_policy();
  EXPECT_FALSE(inbound_retries.has_num_retries());  // the default attempts
  EXPECT_EQ(std::vector<std::string>(inbound_retries.retry_on().begin(),
                                     inbound_retries.retry_on().end()),
            (std::vector<std::string>{"connect-failure", "refused-stream"}));
}

TEST_F(TranslatorTest, RegisteredAppPortsWinOverTheServiceTargetPort) {
  // Two reviews instances on one host listen on 19080 and 29080; the Service says 9080.
  registry_.workloads[1].ports = {19080};
  registry_.workloads[3].ports = {29080};
  node_.set_id("reviews-v2-0");
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(r.listeners, "inbound")->tcp_cluster(), "inbound|29080");
  ASSERT_NE(Named(r.clusters, "inbound|29080"), nullptr);
  // Registered ports that include the target port keep it.
  registry_.workloads[3].ports = {9080, 29080};
  r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(r.listeners, "inbound")->tcp_cluster(), "inbound|9080");
}

TEST_F(TranslatorTest, PortsFromTheRegistrationForLoopbackSidecars) {
  registry_.workloads[0].inbound_port = 26006;
  registry_.workloads[0].outbound_port = 26001;
  registry_.workloads[1].inbound_port = 27006;
  TranslateOptions options;
  options.listen_host = "127.0.0.1";
  NodeResources r = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(r.listeners, "outbound")->address(), "127.0.0.1:26001");
  EXPECT_EQ(Named(r.listeners, "inbound")->address(), "127.0.0.1:26006");
  // Listeners on IPv6: the outbound one on both loopback addresses (an app may use either).
  options.listen_host = "::";
  r = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(r.listeners, "outbound")->address(), "127.0.0.1:26001");
  EXPECT_EQ(Named(r.listeners, "outbound")->additional_addresses(0), "[::1]:26001");
  EXPECT_EQ(Named(r.listeners, "inbound")->address(), "[::]:26006");
  const xds::ClusterLoadAssignment* v1 = Assignment(r, "outbound|9080|version=v1|reviews.default");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(v1->endpoints(0).address(), "10.0.1.1:27006");
}

TEST_F(CaptureTest, OutboundListenerMatchesEachServicePortByItsAddresses) {
  Capture(registry_.workloads[0]);  // frontend-0
  TranslateOptions loopback;
  loopback.listen_host = "127.0.0.1";  // captured traffic arrives on every address all the same
  NodeResources r = Translate(policy_, registry_, node_, loopback);
  const xds::Listener* outbound = Named(r.listeners, "outbound");
  ASSERT_NE(outbound, nullptr);
  // Loopback only, where the packet filter redirects the app's connections: a peer that reaches
  // the pod's port 15001 (not captured inbound, by annotation) finds nothing there.
  EXPECT_EQ(outbound->address(), "127.0.0.1:15001");
  EXPECT_TRUE(outbound->use_original_destination());
  // Connections that were not redirected: as without capture.
  EXPECT_EQ(outbound->protocol(), xds::PROTOCOL_HTTP);
  EXPECT_EQ(outbound->route_config_name(), "outbound");
  EXPECT_EQ(
      DestinationSummary(r, "outbound"),
      (std::vector<std::string>{
          "db.default:3306 [10.96.0.20,fd00::20]:3306 PROTOCOL_TCP outbound|3306||db.default 0",
          "db.default:8080 [10.96.0.20,fd00::20]:8080 PROTOCOL_HTTP outbound 0",
          "frontend.default:8080 [240.240.0.2]:8080 PROTOCOL_HTTP outbound 0",
          "reviews.default:9080 [240.240.0.1,fd00:240::1]:9080 PROTOCOL_HTTP outbound 0",
      }));
  EXPECT_EQ(outbound->unmatched_destination(), xds::PASSTHROUGH);  // ALLOW_ANY by default
  EXPECT_EQ(outbound->passthrough_host(), "");
  // IPv6 connections of a pod with IPv6 land on the IPv6 loopback address of the same port.
  EXPECT_EQ(std::vector<std::string>(outbound->additional_addresses().begin(),
                                     outbound->additional_addresses().end()),
            std::vector<std::string>{"[::1]:15001"});
  EXPECT_FALSE(outbound->has_passthrough_connect_timeout());  // the sidecar's 1s
  // The opaque port's cluster exists (the destination names it), and no TCP warning.
  const xds::Cluster* mysql = Named(r.clusters, "outbound|3306||db.default");
  ASSERT_NE(mysql, nullptr);
  EXPECT_EQ(mysql->type(), xds::Cluster::EDS);
  for (const std::string& w : r.warnings) EXPECT_EQ(w.find("TCP"), std::string::npos) << w;
  // The virtual hosts answer to the addresses, bare on the first HTTP port, with the port always.
  const xds::VirtualHost* reviews = Host(r, "outbound", "reviews.default:9080");
  ASSERT_NE(reviews, nullptr);
  std::vector<std::string> domains(reviews->domains().begin(), reviews->domains().end());
  for (const char* d : {"240.240.0.1", "240.240.0.1:9080", "[fd00:240::1]", "[fd00:240::1]:9080",
                        "reviews", "reviews.default.svc.cluster.local:9080"}) {
    EXPECT_NE(std::find(domains.begin(), domains.end(), d), domains.end()) << d;
  }
  const xds::VirtualHost* admin = Host(r, "outbound", "db.default:8080");
  ASSERT_NE(admin, nullptr);
  domains.assign(admin->domains().begin(), admin->domains().end());
  EXPECT_NE(std::find(domains.begin(), domains.end(), "10.96.0.20:8080"), domains.end());
  EXPECT_NE(std::find(domains.begin(), domains.end(), "[fd00::20]"), domains.end());

  // REGISTRY_ONLY: unknown destinations are refused.
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_outbound_traffic_policy("REGISTRY_ONLY");
  policy_.mesh_config = mesh;
  const xds::Listener* refusing = nullptr;
  NodeResources registry_only = Translate(policy_, registry_, node_);
  refusing = Named(registry_only.listeners, "outbound");
  EXPECT_EQ(refusing->unmatched_destination(), xds::REFUSE);
  // Decision records name the object that refuses: the MeshConfig, which has no namespace.
  EXPECT_EQ(refusing->unmatched_destination_source().kind(), "MeshConfig");
  EXPECT_EQ(refusing->unmatched_destination_source().namespace_(), "");
  EXPECT_EQ(refusing->unmatched_destination_source().name(), "mesh");

  // A Namespace's label overrides MeshConfig for its sidecars: ALLOW_ANY here, named as the
  // source when it refuses; another value is a warning and MeshConfig applies.
  TranslateOptions options;
  options.namespace_labels["default"][std::string(kOutboundTrafficPolicyLabel)] = "ALLOW_ANY";
  NodeResources labelled = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(labelled.listeners, "outbound")->unmatched_destination(), xds::PASSTHROUGH);
  options.namespace_labels["shop"][std::string(kOutboundTrafficPolicyLabel)] = "ALLOW_ANY";
  options.namespace_labels["default"][std::string(kOutboundTrafficPolicyLabel)] = "registry-only";
  labelled = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(labelled.listeners, "outbound")->unmatched_destination(), xds::REFUSE);
  EXPECT_EQ(Named(labelled.listeners, "outbound")->unmatched_destination_source().kind(),
            "MeshConfig");
  EXPECT_EQ(std::count(labelled.warnings.begin(), labelled.warnings.end(),
                       "namespace default label meshlet.io/outbound-traffic-policy: "
                       "\"registry-only\" is not ALLOW_ANY or REGISTRY_ONLY and is ignored; "
                       "MeshConfig's outboundTrafficPolicy applies (REGISTRY_ONLY)"),
            1)
      << absl::StrJoin(labelled.warnings, "\n");
  mesh.mutable_spec()->set_outbound_traffic_policy("ALLOW_ANY");
  policy_.mesh_config = mesh;
  options.namespace_labels["default"][std::string(kOutboundTrafficPolicyLabel)] = "REGISTRY_ONLY";
  labelled = Translate(policy_, registry_, node_, options);
  const xds::Listener* by_namespace = Named(labelled.listeners, "outbound");
  EXPECT_EQ(by_namespace->unmatched_destination(), xds::REFUSE);
  EXPECT_EQ(by_namespace->unmatched_destination_source().kind(), "Namespace");
  EXPECT_EQ(by_namespace->unmatched_destination_source().namespace_(), "");
  EXPECT_EQ(by_namespace->unmatched_destination_source().name(), "default");
  for (const std::string& w : labelled.warnings) {
    EXPECT_FALSE(absl::StrContains(w, kOutboundTrafficPolicyLabel)) << w;
  }

  // The mesh's connect timeout bounds passthrough connections too.
  mesh.mutable_spec()->set_outbound_traffic_policy("ALLOW_ANY");
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_connect()->set_seconds(3);
  policy_.mesh_config = mesh;
  NodeResources with_timeout = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(with_timeout.listeners, "outbound")->passthrough_connect_timeout().seconds(), 3);
  EXPECT_EQ(Named(with_timeout.listeners, "inbound")->passthrough_connect_timeout().seconds(), 3);
}

TEST_F(CaptureTest, OnlyReachableServicesWithAddressesAreDestinations) {
  Capture(registry_.workloads[0]);
  registry_.workloads.push_back(MakeWorkload("ratings-0", "ratings", "10.0.3.1"));  // no address
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "db, ratings";
  NodeResources r = Translate(policy_, registry_, node_);
  std::vector<std::string> names;
  for (const auto& d : JoinedDestinations(r, *Named(r.listeners, "outbound"))) {
    names.push_back(d.name());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"db.default:3306", "db.default:8080",
                                             "frontend.default:8080"}));
}

// ExternalServices: after the Services' destinations, TLS ports by server name (one destination
// and DNS cluster per host), TCP ports by address, STATIC endpoints in a cluster of the object's
// name, NONE passed through; a host and port claimed twice goes to the first, with a warning;
// nothing for a node without capture.
TEST_F(CaptureTest, ExternalServicesAreDestinationsOfTheCapturedOutboundListener) {
  Capture(registry_.workloads[0]);  // frontend-0
  for (const char* yaml : {
           R"(
kind: ExternalService
metadata: {name: partner, namespace: shop}
spec:
  hosts: [api.partner.example, auth.partner.example]
  ports: [{number: 443, protocol: TLS}]
)",
           R"(
kind: ExternalService
metadata: {name: cdn, namespace: shop}
spec:
  hosts: ["*.cdn.example"]
  ports: [{number: 443, protocol: HTTPS}]
  resolution: STATIC
  endpoints: [203.0.113.7, "2001:db8::7"]
)",
           R"(
kind: ExternalService
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [db.ledger.example]
  ports: [{number: 5432, protocol: TCP}]
  addresses: [203.0.113.64/28]
)",
           R"(
kind: ExternalService
metadata: {name: wide, namespace: shop}
spec:
  hosts: ["*.partner.example"]
  ports: [{number: 443, protocol: TLS}]
  resolution: NONE
)",
           R"(
kind: ExternalService
metadata: {name: twice, namespace: zoo}
spec:
  hosts: [api.partner.example]
  ports: [{number: 443, protocol: TLS}]
)",
       }) {
    policy_.external_services.Upsert(
        std::make_shared<pb::ExternalService>(Parse<pb::ExternalService>(yaml)));
  }
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Listener* outbound = Named(r.listeners, "outbound");
  ASSERT_NE(outbound, nullptr);
  std::vector<std::string> external;
  for (const xds::ListenerDestination& d : outbound->destinations()) {
    if (!absl::StartsWith(d.name(), "external|")) {
      EXPECT_TRUE(external.empty()) << d.name() << " after an external destination";
      continue;
    }
    external.push_back(absl::StrCat(d.name(), " [", absl::StrJoin(d.addresses(), ","),
                                    "]:", d.port(), " names=", absl::StrJoin(d.server_names(), ","),
                                    " ", d.passthrough() ? "passthrough" : d.tcp_cluster()));
    EXPECT_EQ(d.protocol(), xds::PROTOCOL_TCP) << d.name();
  }
  EXPECT_EQ(external,
            (std::vector<std::string>{
                "external|5432||db.ledger.example [203.0.113.64/28]:5432 names= "
                "external|5432||db.ledger.example",
                "external|443||api.partner.example []:443 names=api.partner.example "
                "external|443||api.partner.example",
                "external|443||auth.partner.example []:443 names=auth.partner.example "
                "external|443||auth.partner.example",
                // Wildcards after exact hosts.
                "external|443||cdn.shop []:443 names=*.cdn.example external|443||cdn.shop",
                "external|443||wide.shop []:443 names=*.partner.example passthrough",
            }));
  const xds::Cluster* api = Named(r.clusters, "external|443||api.partner.example");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->type(), xds::Cluster::DNS);
  EXPECT_EQ(api->dns().hostname(), "api.partner.example");
  EXPECT_EQ(api->dns().port(), 443u);
  const xds::Cluster* cdn = Named(r.clusters, "external|443||cdn.shop");
  ASSERT_NE(cdn, nullptr);
  EXPECT_EQ(cdn->type(), xds::Cluster::STATIC);
  ASSERT_EQ(cdn->load_assignment().endpoints_size(), 2);
  EXPECT_EQ(cdn->load_assignment().endpoints(1).address(), "[2001:db8::7]:443");
  EXPECT_EQ(Named(r.clusters, "external|443||wide.shop"), nullptr);  // passed through
  EXPECT_EQ(std::count_if(r.warnings.begin(), r.warnings.end(),
                          [](const std::string& w) {
                            return w ==
                                   "ExternalService zoo/twice: port 443 of "
                                   "api.partner.example is claimed by an earlier "
                                   "ExternalService; left out";
                          }),
            1)
      << absl::StrJoin(r.warnings, "\n");

  // A sidecar of an older release gets neither the DNS clusters nor the passthrough destination.
  xds::Node old = node_;
  old.clear_capabilities();  // as a 0.1.0 sidecar: it reports none
  NodeResources older = Translate(policy_, registry_, old);
  EXPECT_EQ(Named(older.clusters, "external|443||api.partner.example"), nullptr);
  EXPECT_NE(Named(older.clusters, "external|443||cdn.shop"), nullptr);  // STATIC: read by all
  for (const xds::ListenerDestination& d : Named(older.listeners, "outbound")->destinations()) {
    EXPECT_FALSE(d.passthrough()) << d.name();
  }

  // Without capture: nothing to match them with.
  registry_.workloads[0].capture = false;
  registry_.workloads[0].labels.erase(std::string(registry::kCaptureLabel));
  NodeResources plain = Translate(policy_, registry_, node_);
  EXPECT_EQ(Named(plain.clusters, "external|443||api.partner.example"), nullptr);
}

// ExternalServices' HTTP ports: a destination per host matched by the Host of the first request
// (http_hosts), routed by the route configuration "external|<port>" to a cluster per host (DNS,
// or STATIC), which originates TLS to the target port when the port asks, verified by the CA
// certificates given (else the system's) and presenting the client certificate named; TLS that
// cannot be originated answers 503; NONE passes through by Host; other hosts on a matched
// connection get 502.
TEST_F(CaptureTest, ExternalServiceHttpPortsAreRoutedByHost) {
  Capture(registry_.workloads[0]);  // frontend-0
  for (const char* yaml : {
           R"(
kind: ExternalService
metadata: {name: partner, namespace: shop}
spec:
  hosts: [api.partner.example]
  ports:
  - number: 80
    protocol: HTTP
    targetPort: 443
    tls: {caCertificates: "PARTNER CA", clientCertificateRef: partner-client}
)",
           R"(
kind: ExternalService
metadata: {name: mirrors, namespace: shop}
spec:
  hosts: [a.mirror.example, b.mirror.example]
  ports: [{number: 8080, protocol: HTTP}]
  resolution: STATIC
  endpoints: [203.0.113.9]
)",
           R"(
kind: ExternalService
metadata: {name: system, namespace: shop}
spec:
  hosts: [public.example]
  ports: [{number: 80, protocol: HTTP, targetPort: 443, tls: {}}]
)",
           R"(
kind: ExternalService
metadata: {name: unverifiable, namespace: shop}
spec:
  hosts: [unverifiable.example]
  ports: [{number: 80, protocol: HTTP, targetPort: 443, tls: {caCertificateRefs: [missing]}}]
)",
           R"(
kind: ExternalService
metadata: {name: anything, namespace: shop}
spec:
  hosts: ["*.any.example"]
  ports: [{number: 80, protocol: HTTP}]
  resolution: NONE
)",
       }) {
    policy_.external_services.Upsert(
        std::make_shared<pb::ExternalService>(Parse<pb::ExternalService>(yaml)));
  }
  TranslateOptions options;
  options.backend_ca_bundles = BackendCaBundles{{kSystemCaBundle, {.pem = "SYSTEM CA"}}};
  options.gateway_certificates =
      GatewayCertificates{{{"shop", "partner-client"},
                           {.type = "kubernetes.io/tls", .chain_pem = "CHAIN", .key_pem = "KEY"}}};
  NodeResources r = Translate(policy_, registry_, node_, options);
  const xds::Listener* outbound = Named(r.listeners, "outbound");
  ASSERT_NE(outbound, nullptr);
  std::vector<std::string> external;
  for (const xds::ListenerDestination& d : outbound->destinations()) {
    if (!absl::StartsWith(d.name(), "external|")) continue;
    EXPECT_EQ(d.server_names_size(), 0) << d.name();
    EXPECT_EQ(d.addresses_size(), 0) << d.name();
    external.push_back(absl::StrCat(d.name(), ":", d.port(),
                                    " hosts=", absl::StrJoin(d.http_hosts(), ","), " ",
                                    xds::ListenerProtocol_Name(d.protocol()), " ",
                                    d.passthrough() ? "passthrough" : d.route_config_name()));
  }
  EXPECT_EQ(external, (std::vector<std::string>{
                          "external|8080||a.mirror.example:8080 hosts=a.mirror.example "
                          "PROTOCOL_HTTP1 external|8080",
                          "external|8080||b.mirror.example:8080 hosts=b.mirror.example "
                          "PROTOCOL_HTTP1 external|8080",
                          "external|80||api.partner.example:80 hosts=api.partner.example "
                          "PROTOCOL_HTTP1 external|80",
                          "external|80||public.example:80 hosts=public.example "
                          "PROTOCOL_HTTP1 external|80",
                          "external|80||unverifiable.example:80 hosts=unverifiable.example "
                          "PROTOCOL_HTTP1 external|80",
                          "external|80||anything.shop:80 hosts=*.any.example PROTOCOL_TCP "
                          "passthrough",
                      }));

  const xds::RouteConfiguration* port80 = Named(r.routes, "external|80");
  ASSERT_NE(port80, nullptr);
  std::vector<std::string> hosts;
  for (const xds::VirtualHost& vh : port80->virtual_hosts()) {
    ASSERT_EQ(vh.routes_size(), 1) << vh.name();
    const xds::Route& route = vh.routes(0);
    hosts.push_back(absl::StrCat(
        absl::StrJoin(vh.domains(), ","), " -> ",
        route.has_route()
            ? route.route().cluster()
            : absl::StrCat(route.direct_response().status(), " ", route.direct_response().body())));
  }
  EXPECT_EQ(hosts,
            (std::vector<std::string>{
                "api.partner.example,api.partner.example:80 -> external|80||api.partner.example",
                "public.example,public.example:80 -> external|80||public.example",
                "unverifiable.example,unverifiable.example:80 -> 503 ExternalService "
                "shop/unverifiable: TLS to unverifiable.example cannot be originated: "
                "caCertificateRefs: ConfigMap shop/missing not found",
                "* -> 502 no external service on port 80 has this host (this connection "
                "was matched by the Host of its first request)",
            }));
  EXPECT_EQ(port80->virtual_hosts(0).routes(0).source().kind(), "ExternalService");
  EXPECT_NE(Named(r.routes, "external|8080"), nullptr);

  const xds::Cluster* api = Named(r.clusters, "external|80||api.partner.example");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->type(), xds::Cluster::DNS);
  EXPECT_EQ(api->dns().port(), 443u);  // targetPort
  EXPECT_TRUE(api->tls().enabled());
  EXPECT_EQ(api->tls().sni(), "api.partner.example");
  EXPECT_EQ(api->tls().secret_name(), "external-tls/shop/partner:80");
  const xds::Secret* secret = Named(r.secrets, "external-tls/shop/partner:80");
  ASSERT_NE(secret, nullptr);
  EXPECT_EQ(secret->trust_bundle_pem(), "PARTNER CA");
  EXPECT_EQ(secret->certificate_chain_pem(), "CHAIN");
  EXPECT_EQ(secret->private_key_pem(), "KEY");
  const xds::Secret* system = Named(r.secrets, "external-tls/shop/system:80");
  ASSERT_NE(system, nullptr);
  EXPECT_EQ(system->trust_bundle_pem(), "SYSTEM CA");
  EXPECT_TRUE(system->certificate_chain_pem().empty());
  EXPECT_EQ(Named(r.clusters, "external|80||unverifiable.example"), nullptr);
  EXPECT_EQ(Named(r.secrets, "external-tls/shop/unverifiable:80"), nullptr);
  const xds::Cluster* mirror = Named(r.clusters, "external|8080||b.mirror.example");
  ASSERT_NE(mirror, nullptr);
  EXPECT_EQ(mirror->type(), xds::Cluster::STATIC);
  ASSERT_EQ(mirror->load_assignment().endpoints_size(), 1);
  EXPECT_EQ(mirror->load_assignment().endpoints(0).address(), "203.0.113.9:8080");
  EXPECT_FALSE(mirror->has_tls());
  EXPECT_EQ(std::count_if(r.warnings.begin(), r.warnings.end(),
                          [](const std::string& w) {
                            return absl::StartsWith(w,
                                                    "ExternalService shop/unverifiable: port 80: "
                                                    "TLS cannot be originated");
                          }),
            1)
      << absl::StrJoin(r.warnings, "\n");

  // A TrafficPolicy naming the ExternalService: its clusters' limits and its routes' timeouts.
  policy_.traffic_policies.Upsert(std::make_shared<pb::TrafficPolicy>(Parse<pb::TrafficPolicy>(R"(
kind: TrafficPolicy
metadata: {name: partner-limits, namespace: shop}
spec:
  targetRefs: [{group: meshlet.io, kind: ExternalService, name: partner}]
  timeouts: {request: 3s}
  retries: {attempts: 4}
  circuitBreaker: {maxConnections: 7}
  outlierDetection: {consecutive5xx: 2}
)")));
  NodeResources limited = Translate(policy_, registry_, node_, options);
  const xds::Cluster* partner = Named(limited.clusters, "external|80||api.partner.example");
  ASSERT_NE(partner, nullptr);
  EXPECT_EQ(partner->circuit_breakers().max_connections().value(), 7u);
  EXPECT_TRUE(partner->has_outlier_detection());
  const xds::Route& partner_route =
      Named(limited.routes, "external|80")->virtual_hosts(0).routes(0);
  EXPECT_EQ(partner_route.route().timeout().seconds(), 3);
  EXPECT_EQ(partner_route.route().retry_policy().num_retries().value(), 4u);
  // Not another ExternalService's.
  EXPECT_FALSE(Named(limited.clusters, "external|80||public.example")->has_circuit_breakers());
  policy_.traffic_policies.Erase("shop", "partner-limits");

  // Without a system bundle, TLS without CA certificates of its own cannot be verified.
  options.backend_ca_bundles.reset();
  NodeResources without = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(without.clusters, "external|80||public.example"), nullptr);
  EXPECT_EQ(Named(without.secrets, "external-tls/shop/system:80"), nullptr);

  // An older sidecar gets none of the destinations by Host.
  xds::Node old = node_;
  old.clear_capabilities();
  NodeResources older = Translate(policy_, registry_, old, options);
  for (const xds::ListenerDestination& d : Named(older.listeners, "outbound")->destinations()) {
    EXPECT_EQ(d.http_hosts_size(), 0) << d.name();
  }
}

// Listener.on_demand goes to the outbound listener of a node served OnDemand: configured so,
// reading capabilities on-demand and service-routes, over a delta stream. Its address ranges are
// MeshConfig's when set, else derived from the Service address range and Services' addresses.
TEST_F(CaptureTest, OnDemandOnlyForCapableDeltaNodes) {
  Capture(registry_.workloads[0]);  // frontend-0
  policy_.mesh_config.emplace();
  policy_.mesh_config->mutable_metadata()->set_name("mesh");
  pb::Discovery& discovery = *policy_.mesh_config->mutable_spec()->mutable_discovery();
  discovery.set_mode("OnDemand");
  discovery.mutable_timeout()->set_nanos(250'000'000);
  // The outbound listener `node` is given over a stream of that kind; null when it has none.
  auto outbound = [&](const xds::Node& node, bool delta) {
    const MeshTranslator mesh(std::make_shared<const PolicySnapshot>(policy_),
                              std::make_shared<const RegistrySnapshot>(registry_), kDefaultOptions);
    NodeResources r = mesh.TranslateLocal(NodeInput(node, delta));
    const xds::Listener* listener = Named(r.listeners, "outbound");
    return listener == nullptr ? std::optional<xds::Listener>() : *listener;
  };
  std::optional<xds::Listener> listener = outbound(node_, true);
  ASSERT_TRUE(listener.has_value());
  ASSERT_TRUE(listener->has_on_demand());
  const xds::OnDemand& on_demand = listener->on_demand();
  // The default range (reviews' and frontend's 240.240.0.x are inside it), db's 10.96.0.20 and
  // fd00::20, reviews' fd00:240::1: IPv4 first, each in address order.
  EXPECT_EQ(
      std::vector<std::string>(on_demand.address_ranges().begin(),
                               on_demand.address_ranges().end()),
      (std::vector<std::string>{"10.96.0.0/16", "240.240.0.0/16", "fd00::/48", "fd00:240::/48"}));
  EXPECT_TRUE(on_demand.hosts());
  EXPECT_EQ(on_demand.timeout().nanos(), 250'000'000);
  EXPECT_EQ(on_demand.idle_time().seconds(), 15 * 60);
  EXPECT_EQ(on_demand.missing_ttl().seconds(), 30);

  // Configured ranges replace the derived ones; a configured IPv6 Service range joins them.
  policy_.mesh_config->mutable_spec()->set_service_address_range_v6("fd00:240::/112");
  policy_.mesh_config->mutable_spec()->set_service_address_range("10.96.0.0/12");
  listener = outbound(node_, true);
  EXPECT_EQ(
      std::vector<std::string>(listener->on_demand().address_ranges().begin(),
                               listener->on_demand().address_ranges().end()),
      (std::vector<std::string>{"10.96.0.0/12", "240.240.0.0/16", "fd00::/48", "fd00:240::/48"}));
  discovery.add_address_ranges("10.0.0.0/8");
  discovery.mutable_idle_time()->set_seconds(60);
  listener = outbound(node_, true);
  EXPECT_EQ(std::vector<std::string>(listener->on_demand().address_ranges().begin(),
                                     listener->on_demand().address_ranges().end()),
            (std::vector<std::string>{"10.0.0.0/8"}));
  EXPECT_EQ(listener->on_demand().idle_time().seconds(), 60);

  // An uncaptured node looks up hosts only: it never sees an original destination.
  registry_.workloads[0].capture = false;
  registry_.workloads[0].labels.erase(std::string(registry::kCaptureLabel));
  listener = outbound(node_, true);
  ASSERT_TRUE(listener->has_on_demand());
  EXPECT_EQ(listener->on_demand().address_ranges_size(), 0);
  EXPECT_TRUE(listener->on_demand().hosts());
  Capture(registry_.workloads[0]);

  // Nodes that cannot look up: a state-of-the-world stream, a sidecar without on-demand or
  // without service-routes.
  EXPECT_FALSE(outbound(node_, false)->has_on_demand());
  for (const char* missing : {"on-demand", "service-routes"}) {
    SCOPED_TRACE(missing);
    xds::Node older = node_;
    older.clear_capabilities();
    for (const std::string& name : xds::CapabilitySet::All().Names()) {
      if (name != missing) older.add_capabilities(name);
    }
    EXPECT_FALSE(outbound(older, true)->has_on_demand());
  }
  // Nodes not configured OnDemand.
  for (const char* mode : {"WholeMesh", "Declared"}) {
    SCOPED_TRACE(mode);
    discovery.set_mode(mode);
    EXPECT_FALSE(outbound(node_, true)->has_on_demand());
  }
}

TEST_F(CaptureTest, InboundListenerRoutesByTheAppPortCalled) {
  Capture(registry_.workloads.back());  // store-db-0
  node_.set_id("store-db-0");
  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->address(), "0.0.0.0:15006");
  EXPECT_TRUE(inbound->use_original_destination());
  EXPECT_EQ(DestinationSummary(*inbound),
            (std::vector<std::string>{"inbound|3307 []:3307 PROTOCOL_TCP inbound|3307 3307",
                                      "inbound|8080 []:8080 PROTOCOL_HTTP inbound|8080 8080"}));
  // Other ports reach the app as they are, on loopback (the pod's address would be captured
  // again).
  EXPECT_EQ(inbound->unmatched_destination(), xds::PASSTHROUGH);
  EXPECT_EQ(inbound->passthrough_host(), "127.0.0.1");
  EXPECT_EQ(std::vector<std::string>(inbound->additional_addresses().begin(),
                                     inbound->additional_addresses().end()),
            std::vector<std::string>{"[::]:15006"});
  // mTLS as without capture; the connection-level fields as without capture too.
  EXPECT_TRUE(inbound->tls().workload_certificate());
  EXPECT_EQ(inbound->tcp_cluster(), "inbound|3307");
  EXPECT_EQ(inbound->route_config_name(), "inbound");
  ASSERT_NE(Named(r.routes, "inbound"), nullptr);
  // The HTTP port's own route table: every host to that app port.
  const xds::VirtualHost* admin = Host(r, "inbound|8080", "inbound:8080");
  ASSERT_NE(admin, nullptr);
  EXPECT_EQ(std::vector<std::string>(admin->domains().begin(), admin->domains().end()),
            std::vector<std::string>{"*"});
  EXPECT_EQ(admin->destination_port(), 8080u);
  ASSERT_EQ(admin->routes_size(), 1);
  EXPECT_EQ(admin->routes(0).route().cluster(), "inbound|8080");
  EXPECT_EQ(admin->routes(0).route().timeout().seconds(), 0);
  EXPECT_EQ(Named(r.clusters, "inbound|8080")->load_assignment().endpoints(0).address(),
            "127.0.0.1:8080");
  EXPECT_EQ(Named(r.routes, "inbound|3307"), nullptr);  // opaque: no routes
}

TEST_F(KubernetesServicesTest, APortDeclaringNoProtocolIsDetected) {
  // ratings' port 80 declares nothing (no appProtocol, no name prefix): AUTO.
  MutableService(0).ports[0].name = "web";
  MutableService(0).ports[0].protocol = "AUTO";
  NodeResources r = Translate(policy_, registry_, node_);  // frontend-0, captured
  // Routed as HTTP by Host, like an HTTP port...
  ASSERT_NE(Host(r, "outbound", "ratings.shop:80"), nullptr);
  ASSERT_NE(Named(r.clusters, "outbound|80||ratings.shop"), nullptr);
  // ...and captured connections to the ClusterIP detected: what is not HTTP goes as bytes to
  // the TCP twin, which has the same endpoints and is never HTTP/2 over mTLS.
  std::vector<std::string> destinations = DestinationSummary(r, "outbound");
  EXPECT_TRUE(
      Has(destinations,
          "ratings.shop:80 [10.96.0.30]:80 PROTOCOL_AUTO outboundoutbound|80|tcp|ratings.shop"
          " 0"))
      << absl::StrJoin(destinations, "\n");
  const xds::Cluster* twin = Named(r.clusters, "outbound|80|tcp|ratings.shop");
  ASSERT_NE(twin, nullptr);
  EXPECT_EQ(twin->protocol(), xds::UPSTREAM_HTTP1);
  EXPECT_EQ(Named(r.clusters, "outbound|80||ratings.shop")->protocol(), xds::UPSTREAM_MESH_HTTP2);
  ASSERT_EQ(Assignment(r, "outbound|80|tcp|ratings.shop")->endpoints_size(), 2);
  EXPECT_EQ(Assignment(r, "outbound|80|tcp|ratings.shop")->endpoints(1).address(), "10.1.0.6:9080");

  // The member's own inbound side: connections to the app port detected too, what is not HTTP
  // proxied to the app as bytes.
  node_.set_id("ratings-b.shop");
  r = Translate(policy_, registry_, node_);
  bool found = false;
  for (const xds::ListenerDestination& d : Named(r.listeners, "inbound")->destinations()) {
    if (d.port() != 9080) continue;
    found = true;
    EXPECT_EQ(d.protocol(), xds::PROTOCOL_AUTO);
    EXPECT_EQ(d.route_config_name(), "inbound|9080");
    EXPECT_EQ(d.tcp_cluster(), "inbound|9080");
  }
  EXPECT_TRUE(found);
}

TEST_F(TranslatorTest, AWorkloadServingNoPortsGetsOnlyTheOutboundListener) {
  xds::Node client;
  client.set_id("client-0");
  registry::Workload w = MakeWorkload("client-0", "", "10.0.5.1");
  w.ports.clear();
  registry_.workloads.push_back(w);
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, client, kDefaultOptions);
  TranslationOutput out;
  BuildInbound(ctx, out);
  EXPECT_TRUE(out.resources.listeners.empty());
  EXPECT_TRUE(out.resources.routes.empty());
  EXPECT_TRUE(out.clusters.empty());
  BuildOutboundListener(ctx, out);
  ASSERT_EQ(out.resources.listeners.size(), 1u);
  EXPECT_EQ(out.resources.listeners[0].name(), "outbound");
  EXPECT_EQ(out.resources.listeners[0].destinations_size(), 0);
}

TEST_F(TranslatorTest, ServicePortsSharingAnAppPortShareItsCluster) {
  policy_.services[1] = Parse<pb::Service>(R"(
kind: Service
metadata: {name: frontend}
spec:
  ports:
  - {name: http, port: 8080, targetPort: 8081}
  - {name: alt, port: 80, targetPort: 8081}
  - {name: grpc, port: 9090, protocol: GRPC}
)");
  registry_.workloads[0].ports = {8081, 9090};
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  TranslationOutput out;
  BuildInbound(ctx, out);
  std::vector<std::string> clusters;
  for (const auto& [name, cluster] : out.clusters) clusters.push_back(name);
  EXPECT_EQ(clusters, (std::vector<std::string>{"inbound|8081", "inbound|9090"}));
  EXPECT_EQ(out.clusters.at("inbound|9090").protocol(), xds::UPSTREAM_HTTP2);
  ASSERT_EQ(out.resources.routes.size(), 1u);
  const xds::RouteConfiguration& inbound = out.resources.routes[0];
  // The first (lowest) Service port takes every host; the others their own, first.
  std::vector<std::string> hosts;
  for (const xds::VirtualHost& vh : inbound.virtual_hosts()) {
    hosts.push_back(absl::StrCat(vh.name(), ">", vh.destination_port(), " ", vh.domains(0)));
  }
  EXPECT_EQ(hosts,
            (std::vector<std::string>{"inbound:8080>8081 frontend:8080",
                                      "inbound:9090>9090 frontend:9090", "inbound:80>8081 *"}));
  ASSERT_EQ(out.resources.listeners.size(), 1u);
  EXPECT_EQ(out.resources.listeners[0].tcp_cluster(), "inbound|8081");
  EXPECT_EQ(out.resources.listeners[0].destination_port(), 8081u);
}

}  // namespace
}  // namespace meshlet::controlplane::translate
