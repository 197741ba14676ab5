// Multicluster (ADR 0106): an east-west gateway's listener and clusters for the exported
// Services, and a linked cluster's endpoints joining the Services of the same name behind its
// gateway (mesh_index.cc, clusters.cc, tls.cc, gateway_proxy.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "control-plane/translate/exports.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

std::vector<std::string> Addresses(const xds::ClusterLoadAssignment* a) {
  std::vector<std::string> out;
  if (a == nullptr) return {"<no assignment>"};
  for (const xds::Endpoint& e : a->endpoints()) out.push_back(e.address());
  return out;
}

// The proxy "ew-0" of Gateway default/east-west, registered (the registry stays ordered by id).
void RegisterEastWestProxy(RegistrySnapshot& registry) {
  registry::Workload proxy =
      MakeWorkload("ew-0", "", "10.0.7.5", {{"meshlet.io/gateway", "default/east-west"}});
  proxy.ports.clear();
  proxy.service_account = "east-west-meshlet";
  registry.workloads.push_back(proxy);
  std::sort(registry.workloads.begin(), registry.workloads.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
}

class EastWestGatewayTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    // echo is exported; echo-v1 is not.
    for (pb::Service& s : policy_.services) {
      if (s.metadata().name() == "echo") {
        (*s.mutable_metadata()->mutable_labels())[std::string(kExportLabel)] = "true";
      }
    }
    for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
    // A member that cannot answer mTLS: nothing passed through could reach it.
    registry::Workload plain = MakeWorkload("echo-plain", "echo", "10.0.1.9");
    registry_.workloads.push_back(plain);
    AddMeshletGateway(R"(
kind: Gateway
metadata: {name: east-west}
spec:
  gatewayClassName: meshlet
  listeners:
  - {name: mesh, port: 15443, protocol: meshlet.io/east-west}
)");
    RegisterEastWestProxy(registry_);
  }
};

TEST_F(EastWestGatewayTest, ExportedServicesAreRoutedByServerNameToTheirMembersHere) {
  EXPECT_EQ(EastWestServerName("default", "echo", 80), "80.echo.default.meshlet.internal");
  EXPECT_EQ(UsableListeners(policy_, {}, policy_.gateways.back()), std::vector<bool>{true});

  const NodeResources& r = For("ew-0");
  ASSERT_EQ(r.listeners.size(), 1u) << r.listeners.size();
  const xds::Listener& l = r.listeners[0];
  EXPECT_EQ(l.name(), "gateway|15443");
  EXPECT_EQ(l.address(), "0.0.0.0:15443");
  EXPECT_EQ(l.protocol(), xds::PROTOCOL_TCP);
  EXPECT_FALSE(l.use_original_destination());
  EXPECT_TRUE(l.tcp_cluster().empty());  // what no name matches is closed
  EXPECT_FALSE(l.has_tls());             // passed through, never terminated
  // One destination per port of each exported Service; echo-v1 and the others are not exported.
  ASSERT_EQ(l.destinations_size(), 2);
  EXPECT_EQ(l.destinations(0).name(), "echo.default:80");
  EXPECT_EQ(l.destinations(0).server_names(0), "80.echo.default.meshlet.internal");
  EXPECT_EQ(l.destinations(0).tcp_cluster(), "eastwest|80||echo.default");
  EXPECT_EQ(l.destinations(0).protocol(), xds::PROTOCOL_TCP);
  EXPECT_EQ(l.destinations(1).server_names(0), "9090.echo.default.meshlet.internal");

  const xds::Cluster* cluster = Named(r.clusters, "eastwest|80||echo.default");
  ASSERT_NE(cluster, nullptr);
  EXPECT_FALSE(cluster->has_tls());  // the caller's mTLS is inside
  // The members that answer mTLS, at their inbound ports; no identity (the caller checks it).
  const xds::ClusterLoadAssignment* a = Assignment(r, "eastwest|80||echo.default");
  EXPECT_EQ(Addresses(a), std::vector<std::string>{"10.0.1.1:15006"});
  EXPECT_TRUE(a->endpoints(0).identity().empty());
  EXPECT_FALSE(a->endpoints(0).plaintext());
}

// What a linked cluster reads (exports.h): the exported Services with their members here that
// answer mTLS, and the gateway's listener port at its proxies' addresses, where they run.
TEST_F(EastWestGatewayTest, ExportsNameTheServicesMembersAndGateways) {
  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "ew-0") {
      w.locality.set_region("eu");
      w.locality.set_zone("eu-b");
    }
  }
  MeshExports exports = ComputeExports(policy_, registry_, "east.example");
  ASSERT_EQ(exports.services.size(), 1u);
  const ExportedService& echo = exports.services[0];
  EXPECT_EQ(echo.namespace_, "default");
  EXPECT_EQ(echo.name, "echo");
  EXPECT_EQ(echo.ports, (std::vector<uint32_t>{80, 9090}));
  EXPECT_EQ(echo.members, 1u);  // echo-plain cannot answer mTLS
  EXPECT_EQ(echo.identities, std::vector<std::string>{"spiffe://east.example/ns/default/sa/echo"});
  ASSERT_EQ(exports.gateways.size(), 1u);
  EXPECT_EQ(exports.gateways[0].gateway, "default/east-west");
  EXPECT_EQ(exports.gateways[0].address, "10.0.7.5");
  EXPECT_EQ(exports.gateways[0].port, 15443u);
  EXPECT_EQ(exports.gateways[0].zone, "eu-b");
  // Static addresses win over the proxies'; a not-ready member is not counted.
  policy_.gateways.back().mutable_spec()->add_addresses()->set_value("198.18.5.1");
  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "echo-0") w.ready = false;
  }
  exports = ComputeExports(policy_, registry_, "east.example");
  ASSERT_EQ(exports.gateways.size(), 1u);
  EXPECT_EQ(exports.gateways[0].address, "198.18.5.1");
  EXPECT_EQ(exports.services[0].members, 0u);
}

TEST_F(EastWestGatewayTest, AProxyThatCannotRouteByServerNameServesNothing) {
  xds::Node node;
  node.set_id("ew-0");
  for (const std::string& name : xds::CapabilitySet::All().Names()) {
    if (name != "server-names") node.add_capabilities(name);
  }
  const NodeResources r = Translate(policy_, registry_, node);
  EXPECT_TRUE(r.listeners.empty());
  EXPECT_TRUE(HasWarning(r,
                         "listener \"mesh\": this proxy's release cannot route TLS by server "
                         "name (capability server-names); not served"));
}

TEST_F(EastWestGatewayTest, RoutesCannotAttachToAnEastWestListener) {
  policy_.gateways.back()
      .mutable_spec()
      ->mutable_listeners(0)
      ->mutable_allowed_routes()
      ->add_kinds()
      ->set_kind("HTTPRoute");
  EXPECT_EQ(UsableListeners(policy_, {}, policy_.gateways.back()), std::vector<bool>{false});
  EXPECT_TRUE(For("ew-0").listeners.empty());
}

// A linked cluster "east" has 3 ready reviews members behind its gateway 198.18.1.5:15443.
class RemoteEndpointsTest : public TranslatorTest {
 protected:
  void SetUp() override {
    TranslatorTest::SetUp();
    for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
    SetRemote(3);
  }
  void SetRemote(uint32_t members) {
    auto e = std::make_shared<registry::RemoteEndpoint>();
    e->cluster = "east";
    e->host = "198.18.1.5";
    e->port = 15443;
    e->locality.set_region("eu");
    e->locality.set_zone("eu-b");
    e->locality.set_cluster("east");
    e->identities = {"spiffe://east.example/ns/default/sa/reviews"};
    e->members = members;
    auto remote = std::make_shared<registry::RemoteServices>();
    remote->services[{"default", "reviews"}] = {e};
    // A Service this cluster does not have: not made up.
    remote->services[{"default", "elsewhere"}] = {e};
    registry_.remote = remote;
  }
};

TEST_F(RemoteEndpointsTest, ALinkedClustersMembersAreItsGatewayTheFarthestLevel) {
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Cluster* cluster = Named(r.clusters, "outbound|9080||reviews.default");
  ASSERT_NE(cluster, nullptr);
  // mTLS named for the gateway, accepting the linked cluster's ids besides the local ones.
  EXPECT_EQ(cluster->tls().sni(), "9080.reviews.default.meshlet.internal");
  const auto& ids = cluster->tls().expected_peer_ids();
  EXPECT_NE(std::find(ids.begin(), ids.end(), "spiffe://east.example/ns/default/sa/reviews"),
            ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), "spiffe://cluster.local/ns/default/sa/reviews"),
            ids.end());
  // Called while the local members are healthy: locality-aware balancing is on.
  EXPECT_TRUE(cluster->locality_lb().enabled());

  const xds::ClusterLoadAssignment* a = Assignment(r, "outbound|9080||reviews.default");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(Addresses(a), (std::vector<std::string>{"10.0.1.1:15006", "10.0.1.2:15006",
                                                    "10.0.2.1:15006", "198.18.1.5:15443"}));
  const xds::Endpoint& gateway = a->endpoints(3);
  EXPECT_EQ(gateway.locality().cluster(), "east");
  EXPECT_EQ(gateway.locality().zone(), "eu-b");
  EXPECT_EQ(gateway.weight(), 3u);
  EXPECT_TRUE(gateway.identity().empty());  // any of the cluster's ids
  EXPECT_FALSE(gateway.plaintext());
  EXPECT_EQ(a->endpoints(0).identity(), "spiffe://cluster.local/ns/default/sa/reviews");

  // A subset names labels the gateway does not carry; other Services are untouched.
  for (const xds::ClusterLoadAssignment& other : r.endpoints) {
    if (other.cluster_name() == "outbound|9080||reviews.default") continue;
    for (const xds::Endpoint& e : other.endpoints()) {
      EXPECT_NE(e.address(), "198.18.1.5:15443") << other.cluster_name();
    }
  }
  EXPECT_EQ(Named(r.clusters, "outbound|9080||elsewhere.default"), nullptr);
  for (const xds::Cluster& other : r.clusters) {
    if (other.name() == "outbound|9080||reviews.default") continue;
    EXPECT_TRUE(other.tls().sni().empty()) << other.name();
  }
}

TEST_F(RemoteEndpointsTest, NoGatewayWithoutMtlsOrReadyMembers) {
  // A caller without a workload certificate cannot speak mesh mTLS: the gateway would refuse it.
  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "frontend-0") w.workload_certificate = false;
  }
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Addresses(Assignment(r, "outbound|9080||reviews.default")),
            (std::vector<std::string>{"10.0.1.1:15006", "10.0.1.2:15006", "10.0.2.1:15006"}));
  // No ready member there.
  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  SetRemote(0);
  r = Translate(policy_, registry_, node_);
  EXPECT_EQ(Addresses(Assignment(r, "outbound|9080||reviews.default")),
            (std::vector<std::string>{"10.0.1.1:15006", "10.0.1.2:15006", "10.0.2.1:15006"}));
  EXPECT_TRUE(Named(r.clusters, "outbound|9080||reviews.default")->tls().sni().empty());
}

// The gateways of a linked cluster are never forwarded to by this cluster's east-west gateway.
TEST_F(RemoteEndpointsTest, AnEastWestGatewayForwardsToLocalMembersOnly) {
  (*policy_.services[0].mutable_metadata()->mutable_labels())[std::string(kExportLabel)] = "true";
  gw::GatewayClass c;
  c.mutable_metadata()->set_name("meshlet");
  c.mutable_spec()->set_controller_name("meshlet.io/gateway-controller");
  policy_.gateway_classes.push_back(c);
  policy_.gateways.push_back(ParseGateway<gw::Gateway>(R"(
kind: Gateway
metadata: {name: east-west}
spec:
  gatewayClassName: meshlet
  listeners: [{name: mesh, port: 15443, protocol: meshlet.io/east-west}]
)"));
  RegisterEastWestProxy(registry_);
  xds::Node node;
  node.set_id("ew-0");
  for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
  const NodeResources r = Translate(policy_, registry_, node);
  EXPECT_EQ(Addresses(Assignment(r, "eastwest|9080||reviews.default")),
            (std::vector<std::string>{"10.0.1.1:15006", "10.0.1.2:15006", "10.0.2.1:15006"}));
}

// A Kubernetes Service's view is shared with the next index only while its linked clusters'
// endpoints are unchanged.
TEST_F(KubernetesServicesTest, ALinkedClustersChangeBuildsTheServiceAgain) {
  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  const RegistrySnapshot before = registry_;
  const MeshIndex first = BuildIndex(policy_, before);
  const PreviousIndex previous{&first, &policy_, &before};
  RegistrySnapshot linked = before;
  auto e = std::make_shared<registry::RemoteEndpoint>();
  e->cluster = "east";
  e->host = "198.18.1.5";
  e->port = 15443;
  e->locality.set_cluster("east");
  e->members = 1;
  auto remote = std::make_shared<registry::RemoteServices>();
  remote->services[{"shop", "ratings"}] = {e};
  linked.remote = remote;
  const MeshIndex after = BuildIndex(policy_, linked, previous);
  EXPECT_NE(after.services.at({"shop", "ratings"}).get(),
            first.services.at({"shop", "ratings"}).get());
  EXPECT_EQ(after.services.at({"default", "reviews"}).get(),
            first.services.at({"default", "reviews"}).get());
  const auto& members = after.services.at({"shop", "ratings"})->members;
  ASSERT_FALSE(members.empty());
  EXPECT_EQ(members.back()->id, "remote/east/198.18.1.5:15443");
  EXPECT_NE(members.back()->remote, nullptr);
  // The same endpoints again (other objects, equal values): shared.
  RegistrySnapshot again = linked;
  auto copy = std::make_shared<registry::RemoteServices>(*remote);
  copy->services[{"shop", "ratings"}] = {std::make_shared<registry::RemoteEndpoint>(*e)};
  again.remote = copy;
  const PreviousIndex second{&after, &policy_, &linked};
  const MeshIndex unchanged = BuildIndex(policy_, again, second);
  EXPECT_EQ(unchanged.services.at({"shop", "ratings"}).get(),
            after.services.at({"shop", "ratings"}).get());
}

}  // namespace
}  // namespace meshlet::controlplane::translate
