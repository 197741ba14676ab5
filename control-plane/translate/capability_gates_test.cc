// A node's capabilities decide the form of its configuration: a sidecar of an older release gets
// the fields it cannot read left out or in their older form, and nothing else differs.

#include "control-plane/translate/capability_gates.h"

#include <gtest/gtest.h>

#include "control-plane/translate/translator_test_util.h"
#include "google/protobuf/descriptor.h"

namespace meshlet::controlplane::translate {
namespace {

TEST(CapabilityGatesTableTest, EveryGateNamesAFieldOfTheResources) {
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const CapabilityGate& gate : Gates()) {
    const google::protobuf::FieldDescriptor* field = pool->FindFieldByName(std::string(gate.field));
    ASSERT_NE(field, nullptr) << gate.field;
    if (gate.fallback == CapabilityGate::Fallback::kEnumValue) {
      ASSERT_EQ(field->cpp_type(), google::protobuf::FieldDescriptor::CPPTYPE_ENUM) << gate.field;
      EXPECT_NE(field->enum_type()->FindValueByNumber(gate.from), nullptr) << gate.field;
      EXPECT_NE(field->enum_type()->FindValueByNumber(gate.to), nullptr) << gate.field;
    }
  }
}

// The capture fixture with mesh mTLS where every member but reviews-v1-1 has a workload
// certificate (its endpoint is plaintext), frontend-0 captured (virtual hosts with
// destinations), an AuthorizationPolicy on frontend (a source on its listener's policy), and
// discovery OnDemand, frontend-0 declaring every other Service (a node that can look Services up
// over its delta stream gets Listener.on_demand and the same Services as the others).
class CapabilityGatesTest : public CaptureTest {
 protected:
  void SetUp() override {
    CaptureTest::SetUp();
    for (registry::Workload& w : registry_.workloads) {
      w.workload_certificate = w.id != "reviews-v1-1";
    }
    ASSERT_EQ(registry_.workloads[0].id, "frontend-0");
    Capture(registry_.workloads[0]);
    policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: frontend-callers}
spec:
  target: frontend
  rules:
  - from: [{principals: ["spiffe://cluster.local/ns/default/sa/reviews"]}]
)"));
    policy_.mesh_config.emplace();
    policy_.mesh_config->mutable_metadata()->set_name("mesh");
    policy_.mesh_config->mutable_spec()->mutable_discovery()->set_mode("OnDemand");
    registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews, db";
  }

  NodeResources For(const std::string& sidecar_version,
                    const std::vector<std::string>& capabilities = {}) {
    xds::Node node = node_;
    node.set_sidecar_version(sidecar_version);
    node.clear_capabilities();
    for (const std::string& c : capabilities) node.add_capabilities(c);
    return Translate(policy_, registry_, NodeInput(node, /*delta=*/true));
  }

  static int Count(const NodeResources& r, absl::string_view what) {
    int n = 0;
    for (const xds::Cluster& c : r.clusters) {
      n += what == "mesh-http2" && c.protocol() == xds::UPSTREAM_MESH_HTTP2;
      n += what == "overload" && c.has_overload();
      n += what == "policy-source" && (c.has_traffic_policy() || !c.subset().empty());
    }
    for (const xds::ClusterLoadAssignment& a : r.endpoints) {
      for (const xds::Endpoint& e : a.endpoints()) {
        n += what == "endpoint-plaintext" && e.plaintext();
      }
    }
    for (const xds::VirtualHost* vh : JoinedHosts(r, "outbound")) {
      n += what == "virtual-host-destinations" && vh->destinations_size() > 0;
      for (const xds::Route& route : vh->routes()) {
        n += what == "policy-source" &&
             (route.has_source() || route.route().has_timeout_source() ||
              route.route().has_per_try_timeout_source() || route.rate_limit().has_source());
      }
    }
    for (const xds::Listener& l : r.listeners) {
      n += what == "stream-reset-lifetime" && l.http().has_stream_reset_min_lifetime();
      n += what == "flood-drain" && l.http().has_flood_drain_timeout();
      n += what == "flood-drain" && l.http().has_max_flood_drains();
      n += what == "policy-source" && l.has_unmatched_destination_source();
      n += what == "on-demand" && l.has_on_demand();
      for (const xds::AuthorizationPolicy& p : l.authorization().policies()) {
        n += what == "policy-source" && p.has_source();
      }
    }
    return n;
  }

  static int Endpoints(const NodeResources& r) {
    int n = 0;
    for (const xds::ClusterLoadAssignment& a : r.endpoints) n += a.endpoints_size();
    return n;
  }
};

TEST_F(CapabilityGatesTest, ACurrentSidecarGetsEveryFeature) {
  const NodeResources all = For("meshlet-sidecar 9.0.0");
  for (const xds::CapabilityInfo& info : xds::Capabilities()) {
    // The translator sets no HttpOptions: only static configurations and bootstraps do
    // (GatedHttpOptionsAreClearedForOlderSidecars sets them by hand).
    if (info.capability == xds::Capability::kStreamResetLifetime ||
        info.capability == xds::Capability::kFloodDrain) {
      continue;
    }
    // A limit of the stream (the ADS server's), not a field of any resource.
    if (info.capability == xds::Capability::kLargeXdsMessages) continue;
    // A resource type, not a field: the translator switches to it (ADR 0086), no gate.
    if (info.capability == xds::Capability::kServiceRoutes) continue;
    // The fixture has no RequestAuthentication (ListenerJwtFailsClosedForOlderSidecars and
    // EndUserRulesDecideAlikeOnOlderSidecars set the fields by hand).
    if (info.capability == xds::Capability::kJwt) continue;
    // Fields of the trust-bundle Secret, sent with a CA's bundle only
    // (TrustBundleSecretFieldsAreClearedForOlderSidecars).
    if (info.capability == xds::Capability::kCaRotation ||
        info.capability == xds::Capability::kFederation) {
      continue;
    }
    // The fixture has no gateway proxy (GatewayTlsFieldsFailClosedForOlderSidecars sets them).
    if (info.capability == xds::Capability::kGateway) continue;
    // The fixture balances without locality (LocalityFieldsAreClearedForOlderSidecars sets them).
    if (info.capability == xds::Capability::kLocality) continue;
    // Nor subjectAltNames (SubjectAltNamesAreClearedForOlderSidecars sets them).
    if (info.capability == xds::Capability::kBackendTls) continue;
    // The fixture's routes have no CORS filter (CorsPolicyIsClearedForOlderSidecars sets one).
    if (info.capability == xds::Capability::kCors) continue;
    // Nor an east-west gateway (ServerNameDestinationsAreDroppedForOlderSidecars has one).
    if (info.capability == xds::Capability::kServerNames) continue;
    // Nor a DNS cluster (DnsClustersAreDroppedForOlderSidecars has one).
    if (info.capability == xds::Capability::kExternalServices) continue;
    EXPECT_GT(Count(all, info.name), 0) << info.name << ": the fixture does not exercise it";
  }
  // Listing every capability is the same as a release that has them all.
  std::vector<std::string> names = xds::CapabilitySet::All().Names();
  EXPECT_EQ(Bytes(For("meshlet-sidecar 0.2.0-dev", names)), Bytes(all));
}

// A 0.1.0 sidecar (it reports no capabilities) gets exactly the newest configuration without the
// fields 0.1.0 does not read: cleared here by hand, the bytes are the same.
TEST_F(CapabilityGatesTest, A010SidecarGetsTheNewestFormWithoutWhatItCannotRead) {
  // The newest form of the table 0.1.0 reads: inline, not split into ServiceRoutes.
  xds::CapabilitySet inline_table = xds::CapabilitySet::All();
  inline_table.Remove(xds::Capability::kServiceRoutes);
  NodeResources expected = For("meshlet-sidecar 0.2.0", inline_table.Names());
  for (xds::Cluster& c : expected.clusters) {
    c.clear_overload();
    c.clear_traffic_policy();
    c.clear_subset();
  }
  for (xds::RouteConfiguration& rc : expected.routes) {
    for (xds::VirtualHost& vh : *rc.mutable_virtual_hosts()) {
      for (xds::Route& route : *vh.mutable_routes()) {
        route.clear_source();
        if (route.has_route()) {
          route.mutable_route()->clear_timeout_source();
          route.mutable_route()->clear_per_try_timeout_source();
        }
        if (route.has_rate_limit()) route.mutable_rate_limit()->clear_source();
      }
    }
  }
  for (xds::Listener& l : expected.listeners) {
    l.clear_unmatched_destination_source();
    if (l.has_rate_limit()) l.mutable_rate_limit()->clear_source();
    if (!l.has_authorization()) continue;
    for (xds::AuthorizationPolicy& p : *l.mutable_authorization()->mutable_policies()) {
      p.clear_source();
    }
  }
  const NodeResources old = For("meshlet-sidecar 0.1.0");
  EXPECT_EQ(Bytes(old), Bytes(expected));
  EXPECT_EQ(Count(old, "overload"), 0);
  EXPECT_EQ(Count(old, "policy-source"), 0);
  // What 0.1.0 reads stays.
  EXPECT_GT(Count(old, "mesh-http2"), 0);
  EXPECT_GT(Count(old, "endpoint-plaintext"), 0);
  EXPECT_GT(Count(old, "virtual-host-destinations"), 0);
}

// Older than every capability: HTTP/1.1 between sidecars, the plaintext member left out (the
// others stay, over mTLS), routing by Host only.
TEST_F(CapabilityGatesTest, ASidecarOlderThanEveryCapabilityGetsTheOldestForms) {
  const NodeResources all = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
  const NodeResources oldest = For("meshlet-sidecar 0.0.9");
  for (const xds::CapabilityInfo& info : xds::Capabilities()) {
    EXPECT_EQ(Count(oldest, info.name), 0) << info.name;
  }
  const xds::Cluster* reviews = Named(oldest.clusters, "outbound|9080||reviews.default");
  ASSERT_NE(reviews, nullptr);
  EXPECT_EQ(reviews->protocol(), xds::UPSTREAM_HTTP1);
  EXPECT_TRUE(reviews->tls().enabled());
  const xds::ClusterLoadAssignment* members = Assignment(oldest, "outbound|9080||reviews.default");
  ASSERT_NE(members, nullptr);
  ASSERT_EQ(members->endpoints_size(), 2);  // reviews-v1-1 (no certificate) left out
  for (const xds::Endpoint& e : members->endpoints()) EXPECT_FALSE(e.identity().empty());
  EXPECT_EQ(Endpoints(oldest), Endpoints(all) - Count(all, "endpoint-plaintext"));
  // Same resources by name: only their contents differ.
  ASSERT_EQ(oldest.clusters.size(), all.clusters.size());
  ASSERT_EQ(oldest.routes.size(), all.routes.size());
  ASSERT_EQ(oldest.listeners.size(), all.listeners.size());
}

// A node that lists nothing and names no release (a bootstrap's own sidecar_version, another
// client) gets what the oldest supported release reads, not everything.
TEST_F(CapabilityGatesTest, ANodeNamingNoReleaseGetsWhatTheOldestSupportedReleaseReads) {
  const NodeResources oldest =
      For(absl::StrCat(xds::kSidecarVersionPrefix, xds::kOldestSupportedRelease));
  for (const std::string version : {"", "my-build", "meshlet-sidecar 0.2"}) {
    SCOPED_TRACE(version);
    const NodeResources r = For(version);
    EXPECT_EQ(Bytes(r), Bytes(oldest));
    EXPECT_EQ(Count(r, "overload"), 0);
    EXPECT_EQ(Count(r, "policy-source"), 0);
    EXPECT_GT(Count(r, "mesh-http2"), 0);
  }
}

TEST_F(CapabilityGatesTest, ANodeListingCapabilitiesGetsWhatItLists) {
  std::vector<std::string> names;
  for (const std::string& name : xds::CapabilitySet::All().Names()) {
    if (name != "overload") names.push_back(name);
  }
  const NodeResources r = For("meshlet-sidecar 0.2.0", names);
  EXPECT_EQ(Count(r, "overload"), 0);
  EXPECT_GT(Count(r, "policy-source"), 0);
  EXPECT_GT(Count(r, "mesh-http2"), 0);
}

// HttpOptions the translator does not set (static configurations and bootstraps do): set by hand
// on every listener, each is left out for a 0.1.0 sidecar, the others kept.
// A sidecar that cannot verify JWTs is not sent a listener that needs it (rather than one that
// would let every token through); other listeners still go.
TEST_F(CapabilityGatesTest, ListenerJwtFailsClosedForOlderSidecars) {
  auto with_jwt = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    for (xds::Listener& l : r.listeners) {
      if (l.direction() == xds::INBOUND) l.mutable_jwt()->add_issuers()->set_issuer("https://idp");
    }
    ApplyCapabilityGates(reads, r);
    return r;
  };
  const NodeResources current = with_jwt(xds::CapabilitySet::All());
  xds::CapabilitySet without = xds::CapabilitySet::All();
  without.Remove(xds::Capability::kJwt);
  const NodeResources old = with_jwt(without);
  int inbound_current = 0, inbound_old = 0;
  for (const xds::Listener& l : current.listeners) inbound_current += l.has_jwt();
  for (const xds::Listener& l : old.listeners) inbound_old += l.direction() == xds::INBOUND;
  EXPECT_GT(inbound_current, 0);
  EXPECT_EQ(inbound_old, 0);
  EXPECT_EQ(old.listeners.size(), current.listeners.size() - inbound_current);
}

// Rules on the request's JWT, for a sidecar that verifies no token, decide every request and
// connection as a current sidecar does where no request has a token: ALLOW on principals or claims
// left out (never matches); DENY on them matching connections only (a method no request uses);
// not_request_principals cleared (always holds for a request), with paths "*" on an ALLOW rule
// (never a connection). The policies' other rules and the listener stay.
TEST_F(CapabilityGatesTest, EndUserRulesDecideAlikeOnOlderSidecars) {
  auto with_rules = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    for (xds::Listener& l : r.listeners) {
      if (l.direction() != xds::INBOUND) continue;
      xds::AuthorizationPolicy* p = l.mutable_authorization()->add_policies();
      p->set_name("default/users");
      p->add_rules()->add_request_principals("https://idp/alice");
      xds::ClaimMatch* claim = p->add_rules()->add_claims();
      claim->set_name("groups");
      claim->add_values("admins");
      p->add_rules()->add_paths("/public");
      xds::AuthorizationRule* not_bob = p->add_rules();
      not_bob->add_not_request_principals("https://idp/bob");
      not_bob->add_paths("/open");
      p->add_rules()->add_not_request_principals("https://idp/carol");
      xds::AuthorizationPolicy* deny = l.mutable_authorization()->add_policies();
      deny->set_name("default/no-alice");
      deny->set_action(xds::AuthorizationPolicy::DENY);
      xds::AuthorizationRule* alice = deny->add_rules();
      alice->add_request_principals("https://idp/alice");
      alice->add_methods("POST");
      alice->add_ports(5432);
      deny->add_rules()->add_not_request_principals("*");
    }
    ApplyCapabilityGates(reads, r);
    return r;
  };
  xds::CapabilitySet without = xds::CapabilitySet::All();
  without.Remove(xds::Capability::kJwt);
  int checked = 0;
  const NodeResources current = with_rules(xds::CapabilitySet::All());
  const NodeResources old = with_rules(without);
  ASSERT_EQ(old.listeners.size(), current.listeners.size());
  for (size_t i = 0; i < old.listeners.size(); ++i) {
    if (old.listeners[i].direction() != xds::INBOUND) continue;
    ++checked;
    // The two policies added last (the fixture's own come first).
    const xds::Authorization& now = current.listeners[i].authorization();
    const int n = now.policies_size();
    EXPECT_EQ(now.policies(n - 2).rules_size(), 5);
    EXPECT_EQ(now.policies(n - 1).rules(0).request_principals_size(), 1);
    const xds::Authorization& before = old.listeners[i].authorization();
    ASSERT_EQ(before.policies_size(), n);
    const xds::AuthorizationPolicy& allow = before.policies(n - 2);
    EXPECT_EQ(allow.name(), "default/users");
    ASSERT_EQ(allow.rules_size(), 3);
    EXPECT_EQ(allow.rules(0).paths(0), "/public");
    EXPECT_EQ(allow.rules(1).not_request_principals_size(), 0);
    ASSERT_EQ(allow.rules(1).paths_size(), 1);
    EXPECT_EQ(allow.rules(1).paths(0), "/open");
    EXPECT_EQ(allow.rules(2).not_request_principals_size(), 0);
    ASSERT_EQ(allow.rules(2).paths_size(), 1);
    EXPECT_EQ(allow.rules(2).paths(0), "*");
    const xds::AuthorizationPolicy& deny = before.policies(n - 1);
    EXPECT_EQ(deny.name(), "default/no-alice");
    ASSERT_EQ(deny.rules_size(), 2);
    EXPECT_EQ(deny.rules(0).request_principals_size(), 0);
    ASSERT_EQ(deny.rules(0).methods_size(), 1);
    EXPECT_EQ(deny.rules(0).methods(0), kNoRequestMethod);
    EXPECT_EQ(deny.rules(0).ports(0), 5432u);
    EXPECT_EQ(deny.rules(1).not_request_principals_size(), 0);
    EXPECT_EQ(deny.rules(1).methods_size(), 0);
    EXPECT_EQ(deny.rules(1).paths_size(), 0);
  }
  EXPECT_GT(checked, 0);
}

// A CA rotation's renewal round and SPIFFE federation on the trust-bundle Secret: a sidecar
// without the capability gets the Secret without them (it renews at its own time; it trusts the
// mesh roots only, refusing foreign and alias ids), the bundle itself unchanged.
TEST_F(CapabilityGatesTest, TrustBundleSecretFieldsAreClearedForOlderSidecars) {
  auto with_secret = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Secret secret;
    secret.set_name("mesh-trust-bundle");
    secret.set_trust_bundle_pem("roots");
    secret.mutable_renewal()->set_signer("sha256:ab");
    secret.mutable_renewal()->set_round(1);
    (*secret.mutable_federated_bundles())["other.example"] = "other roots";
    secret.add_trust_domain_aliases("old.example");
    r.secrets.push_back(secret);
    ApplyCapabilityGates(reads, r);
    return r.secrets.back();
  };
  const xds::Secret current = with_secret(xds::CapabilitySet::All());
  EXPECT_TRUE(current.has_renewal());
  EXPECT_EQ(current.federated_bundles_size(), 1);
  EXPECT_EQ(current.trust_domain_aliases_size(), 1);
  const xds::Secret old = with_secret(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_FALSE(old.has_renewal());
  EXPECT_EQ(old.federated_bundles_size(), 0);
  EXPECT_EQ(old.trust_domain_aliases_size(), 0);
  EXPECT_EQ(old.trust_bundle_pem(), "roots");
}

// A gateway's HTTPS listener on an older proxy: the default certificate only, client
// certificates asked for (fails closed, never plaintext).
TEST_F(CapabilityGatesTest, GatewayTlsFieldsFailClosedForOlderSidecars) {
  auto with_tls = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Listener listener;
    listener.set_name("gateway|443");
    listener.mutable_tls()->set_mode(xds::DownstreamTls::TLS);
    listener.mutable_tls()->set_secret_name("gateway-cert:default/shop");
    xds::ServerCertificate* other = listener.mutable_tls()->add_server_certificates();
    other->add_server_names("api.example.com");
    other->set_secret_name("gateway-cert:default/api");
    r.listeners.push_back(listener);
    ApplyCapabilityGates(reads, r);
    return r.listeners.back();
  };
  const xds::Listener current = with_tls(xds::CapabilitySet::All());
  EXPECT_EQ(current.tls().mode(), xds::DownstreamTls::TLS);
  EXPECT_EQ(current.tls().server_certificates_size(), 1);
  const xds::Listener old = with_tls(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_EQ(old.tls().mode(), xds::DownstreamTls::STRICT);
  EXPECT_EQ(old.tls().server_certificates_size(), 0);
  EXPECT_EQ(old.tls().secret_name(), "gateway-cert:default/shop");
}

TEST_F(CapabilityGatesTest, LocalityFieldsAreClearedForOlderSidecars) {
  auto with_locality = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Cluster& cluster = r.clusters.emplace_back();
    cluster.set_name("outbound|80||zoned.default");
    cluster.mutable_locality_lb()->set_enabled(true);
    xds::ClusterLoadAssignment& cla = r.endpoints.emplace_back();
    cla.set_cluster_name(cluster.name());
    xds::Endpoint* endpoint = cla.add_endpoints();
    endpoint->set_address("10.0.0.7:80");
    endpoint->mutable_locality()->set_zone("eu-a");
    ApplyCapabilityGates(reads, r);
    return r;
  };
  const NodeResources current = with_locality(xds::CapabilitySet::All());
  EXPECT_TRUE(current.clusters.back().has_locality_lb());
  EXPECT_EQ(current.endpoints.back().endpoints(0).locality().zone(), "eu-a");
  const NodeResources old =
      with_locality(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_FALSE(old.clusters.back().has_locality_lb());
  EXPECT_FALSE(old.endpoints.back().endpoints(0).has_locality());
  EXPECT_EQ(old.endpoints.back().endpoints(0).address(), "10.0.0.7:80");
}

TEST_F(CapabilityGatesTest, CorsPolicyIsClearedForOlderSidecars) {
  auto with_cors = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::RouteConfiguration& rc = r.routes.emplace_back();
    rc.set_name("gateway-80");
    xds::Route* route = rc.add_virtual_hosts()->add_routes();
    route->set_name("cors");
    route->mutable_route()->set_cluster("outbound|80||web.default");
    route->mutable_cors()->add_allow_origins("https://*.example.com");
    ApplyCapabilityGates(reads, r);
    return r.routes.back().virtual_hosts(0).routes(0);
  };
  const xds::Route current = with_cors(xds::CapabilitySet::All());
  EXPECT_EQ(current.cors().allow_origins(0), "https://*.example.com");
  const xds::Route old = with_cors(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_FALSE(old.has_cors());
  EXPECT_EQ(old.route().cluster(), "outbound|80||web.default");
}

TEST_F(CapabilityGatesTest, ServerNameDestinationsAreDroppedForOlderSidecars) {
  auto with_names = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Listener& l = r.listeners.emplace_back();
    l.set_name("gateway|15443");
    l.set_protocol(xds::PROTOCOL_TCP);
    xds::ListenerDestination* named = l.add_destinations();
    named->set_name("web.default:80");
    named->set_tcp_cluster("eastwest|80||web.default");
    named->add_server_names("80.web.default.meshlet.internal");
    ApplyCapabilityGates(reads, r);
    return r.listeners.back();
  };
  const xds::Listener current = with_names(xds::CapabilitySet::All());
  ASSERT_EQ(current.destinations_size(), 1);
  EXPECT_EQ(current.destinations(0).server_names(0), "80.web.default.meshlet.internal");
  // Without the name the destination would take every connection: left out instead.
  const xds::Listener old =
      with_names(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_EQ(old.destinations_size(), 0);
}

TEST_F(CapabilityGatesTest, DnsClustersAreDroppedForOlderSidecars) {
  auto with_dns = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Cluster& c = r.clusters.emplace_back();
    c.set_name("outbound|443||api.partner.example");
    c.set_type(xds::Cluster::DNS);
    c.mutable_dns()->set_hostname("api.partner.example");
    c.mutable_dns()->set_port(443);
    const size_t before = r.clusters.size();
    ApplyCapabilityGates(reads, r);
    return std::make_pair(before, r.clusters);
  };
  auto [before, current] = with_dns(xds::CapabilitySet::All());
  ASSERT_EQ(current.size(), before);
  EXPECT_EQ(current.back().dns().hostname(), "api.partner.example");
  // An older sidecar would refuse the unknown type, and with it the whole update: left out.
  auto [before_old, old] = with_dns(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_EQ(old.size(), before_old - 1);
  for (const xds::Cluster& c : old) EXPECT_FALSE(c.has_dns()) << c.name();
}

TEST_F(CapabilityGatesTest, HttpHostDestinationsAreDroppedForOlderSidecars) {
  auto with_hosts = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::ListenerDestination* d = r.listeners.front().add_destinations();
    d->set_name("external|80||api.partner.example");
    d->set_port(80);
    d->set_protocol(xds::PROTOCOL_HTTP1);
    d->set_route_config_name("external|80");
    d->add_http_hosts("api.partner.example");
    ApplyCapabilityGates(reads, r);
    return r.listeners.front();
  };
  const xds::Listener current = with_hosts(xds::CapabilitySet::All());
  ASSERT_GT(current.destinations_size(), 0);
  EXPECT_EQ(current.destinations(current.destinations_size() - 1).http_hosts(0),
            "api.partner.example");
  // Without the field the destination would take every connection to port 80: left out.
  const xds::Listener old =
      with_hosts(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_EQ(old.destinations_size(), current.destinations_size() - 1);
  for (const xds::ListenerDestination& d : old.destinations()) {
    EXPECT_EQ(d.http_hosts_size(), 0) << d.name();
  }
}

// An older sidecar would ignore the hosts: an ALLOW rule naming them is left out, a DENY one
// denies every host.
TEST_F(CapabilityGatesTest, HostRulesFailClosedForOlderSidecars) {
  auto with_rules = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Authorization* authorization = r.listeners.front().mutable_authorization();
    authorization->clear_policies();
    xds::AuthorizationPolicy* deny = authorization->add_policies();
    deny->set_action(xds::AuthorizationPolicy::DENY);
    xds::AuthorizationRule* denied = deny->add_rules();
    denied->add_principals("spiffe://cluster.local/ns/shop/sa/web");
    denied->add_hosts("evil.example");
    xds::AuthorizationPolicy* allow = authorization->add_policies();
    allow->add_rules()->add_hosts("api.partner.example");
    allow->add_rules()->add_principals("*");
    ApplyCapabilityGates(reads, r);
    return r.listeners.front().authorization();
  };
  const xds::Authorization current = with_rules(xds::CapabilitySet::All());
  EXPECT_EQ(current.policies(0).rules(0).hosts(0), "evil.example");
  EXPECT_EQ(current.policies(1).rules_size(), 2);
  const xds::Authorization old =
      with_rules(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  ASSERT_EQ(old.policies(0).rules_size(), 1);
  EXPECT_EQ(old.policies(0).rules(0).hosts_size(), 0);  // denies web whatever the host
  EXPECT_EQ(old.policies(0).rules(0).principals(0), "spiffe://cluster.local/ns/shop/sa/web");
  ASSERT_EQ(old.policies(1).rules_size(), 1);  // the ALLOW rule on a host is left out
  EXPECT_EQ(old.policies(1).rules(0).principals(0), "*");
}

TEST_F(CapabilityGatesTest, GatedHttpOptionsAreClearedForOlderSidecars) {
  auto with_options = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    for (xds::Listener& l : r.listeners) {
      l.mutable_http()->mutable_stream_reset_min_lifetime()->set_seconds(1);
      l.mutable_http()->mutable_flood_drain_timeout()->set_seconds(3);
      l.mutable_http()->mutable_max_flood_drains()->set_value(8);
      l.mutable_http()->mutable_stream_reset_burst()->set_value(50);
    }
    ApplyCapabilityGates(reads, r);
    return r;
  };
  const NodeResources current = with_options(xds::CapabilitySet::All());
  ASSERT_FALSE(current.listeners.empty());
  const NodeResources old =
      with_options(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  for (const char* capability : {"stream-reset-lifetime", "flood-drain"}) {
    const int per_listener = absl::string_view(capability) == "flood-drain" ? 2 : 1;
    EXPECT_EQ(Count(current, capability), per_listener * static_cast<int>(current.listeners.size()))
        << capability;
    EXPECT_EQ(Count(old, capability), 0) << capability;
  }
  for (const xds::Listener& l : old.listeners)
    EXPECT_EQ(l.http().stream_reset_burst().value(), 50u);
}

// The outbound part shared between nodes is shared only between nodes that read the same.
TEST_F(CapabilityGatesTest, SharedOutboundPartsAreKeyedByCapabilities) {
  MeshTranslator mesh(std::make_shared<policy::PolicySnapshot>(policy_),
                      std::make_shared<registry::RegistrySnapshot>(registry_), TranslateOptions{});
  xds::Node current = node_, old = node_, also_old = node_;
  old.clear_capabilities();
  also_old.clear_capabilities();
  old.set_sidecar_version("meshlet-sidecar 0.1.0");
  also_old.set_sidecar_version("meshlet-sidecar 0.1.3");
  EXPECT_NE(mesh.OutboundKey(current), mesh.OutboundKey(old));
  EXPECT_EQ(mesh.OutboundKey(old), mesh.OutboundKey(also_old));
  EXPECT_EQ(Count(mesh.TranslateOutbound(old), "overload"), 0);
  EXPECT_GT(Count(mesh.TranslateOutbound(current), "overload"), 0);
  // And a cache shared by both serves each its own.
  TranslationCache cache;
  EXPECT_GT(Count(Translate(policy_, registry_, current, kDefaultOptions, &cache), "overload"), 0);
  EXPECT_EQ(Count(Translate(policy_, registry_, old, kDefaultOptions, &cache), "overload"), 0);
  EXPECT_GT(Count(Translate(policy_, registry_, current, kDefaultOptions, &cache), "overload"), 0);
}

TEST_F(CapabilityGatesTest, SubjectAltNamesAreClearedForOlderSidecars) {
  auto with_sans = [&](const xds::CapabilitySet& reads) {
    NodeResources r = For("meshlet-sidecar 0.2.0", xds::CapabilitySet::All().Names());
    xds::Cluster& cluster = r.clusters.emplace_back();
    cluster.set_name("outbound|443||tls-backend.default");
    xds::UpstreamTls* tls = cluster.mutable_tls();
    tls->set_enabled(true);
    tls->set_sni("abc.example.com");
    tls->add_subject_alt_names()->set_dns("backend.example.com");
    tls->add_subject_alt_names()->set_uri("spiffe://example/backend");
    ApplyCapabilityGates(reads, r);
    return r;
  };
  const NodeResources current = with_sans(xds::CapabilitySet::All());
  ASSERT_EQ(current.clusters.back().tls().subject_alt_names_size(), 2);
  EXPECT_EQ(current.clusters.back().tls().subject_alt_names(1).uri(), "spiffe://example/backend");
  const NodeResources old = with_sans(xds::CapabilitySet::OfRelease(*xds::Release::Parse("0.1.0")));
  EXPECT_EQ(old.clusters.back().tls().subject_alt_names_size(), 0);
  // Still TLS to the same name: the older sidecar verifies the certificate against it.
  EXPECT_TRUE(old.clusters.back().tls().enabled());
  EXPECT_EQ(old.clusters.back().tls().sni(), "abc.example.com");
}

}  // namespace
}  // namespace meshlet::controlplane::translate
