#include "control-plane/xds/xds_service.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flags/flags.h"
#include "common/http/grpc/client.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "control-plane/server/control_plane.h"
#include "gtest/gtest.h"
#include "xds/capabilities.h"
#include "xds/discovery.pb.h"
#include "xds/node.pb.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {
namespace {

// The discovery flags of `args`, checked as the control plane's command line checks them.
absl::StatusOr<XdsServiceOptions> ParseXdsFlags(const std::vector<std::string>& args) {
  XdsServiceOptions options;
  absl::StatusOr<flags::ParsedArgs> parsed = flags::Parse(XdsFlags(options), args);
  if (!parsed.ok()) return parsed.status();
  if (absl::Status checked = CheckXdsFlags(options); !checked.ok()) return checked;
  return options;
}

TEST(XdsFlagsTest, EveryFlag) {
  std::vector<std::string> args = {"--xds-address",
                                   "127.0.0.1:15012",
                                   "--xds-tls-cert=c.pem",
                                   "--xds-tls-key",
                                   "k.pem",
                                   "--xds-max-concurrent-pushes=7",
                                   "--xds-debounce=50ms",
                                   "--xds-keepalive-interval=2s",
                                   "--xds-keepalive-timeout",
                                   "500ms",
                                   "--xds-listen-host=127.0.0.1",
                                   "--xds-on-demand-max-keys=64",
                                   "--xds-on-demand-rate=10",
                                   "--xds-on-demand-burst=20"};
  absl::StatusOr<XdsServiceOptions> options = ParseXdsFlags(args);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->address, "127.0.0.1:15012");
  EXPECT_EQ(options->tls_cert_file, "c.pem");
  EXPECT_EQ(options->tls_key_file, "k.pem");
  EXPECT_FALSE(options->plaintext);
  EXPECT_FALSE(options->self_issued());
  EXPECT_EQ(options->ads.max_concurrent_pushes, 7u);
  EXPECT_EQ(options->ads.debounce_quiet, std::chrono::milliseconds(50));
  EXPECT_EQ(options->translate.listen_host, "127.0.0.1");
  EXPECT_EQ(options->keepalive_interval, std::chrono::seconds(2));
  EXPECT_EQ(options->keepalive_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(options->ads.on_demand_max_keys, 64u);
  EXPECT_EQ(options->ads.on_demand_rate, 10u);
  EXPECT_EQ(options->ads.on_demand_burst, 20u);
}

TEST(XdsFlagsTest, SelfIssuedUnlessTlsFilesOrPlaintextAreGiven) {
  absl::StatusOr<XdsServiceOptions> options = ParseXdsFlags({"--xds-debounce=1s"});
  ASSERT_TRUE(options.ok());
  EXPECT_TRUE(options->self_issued());
  options = ParseXdsFlags({"--xds-plaintext"});
  ASSERT_TRUE(options.ok());
  EXPECT_TRUE(options->plaintext);
  EXPECT_FALSE(options->self_issued());
  options = ParseXdsFlags({"--xds-plaintext=false"});
  ASSERT_TRUE(options.ok());
  EXPECT_TRUE(options->self_issued());
  options = ParseXdsFlags({"--xds-tls-cert=c.pem", "--xds-tls-key=k.pem"});
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->self_issued());
}

TEST(XdsFlagsTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--xds-address=cp:15012"}, "--xds-address=\"cp:15012\": must be IP:PORT"},
           {{"--xds-tls-cert=c.pem"}, "--xds-tls-cert and --xds-tls-key go together"},
           {{"--xds-plaintext", "--xds-tls-cert=c", "--xds-tls-key=k"}, "exclude each other"},
           {{"--xds-plaintext=maybe"}, "--xds-plaintext=\"maybe\""},
           {{"--xds-max-concurrent-pushes=0"}, "--xds-max-concurrent-pushes"},
           {{"--xds-debounce=soon"}, "--xds-debounce"},
           {{"--xds-on-demand-burst=0"}, "--xds-on-demand-burst=\"0\": must be a positive integer"},
           {{"--xds-keepalive-interval=-1s"}, "--xds-keepalive-interval"},
           {{"--xds-keepalive-timeout=0s"},
            "--xds-keepalive-timeout=\"0s\": must be a positive duration"},
           {{"--xds-colour=red"}, "unknown flag --xds-colour"},
           {{"--xds-address"}, "--xds-address needs a value"},
       }) {
    absl::StatusOr<XdsServiceOptions> options = ParseXdsFlags(c.args);
    ASSERT_FALSE(options.ok()) << c.expected;
    EXPECT_NE(options.status().message().find(c.expected), absl::string_view::npos)
        << options.status();
  }
}

// The discovery port with a certificate handed in, as the CA's ServingCertificate does: swapped
// for new connections while open ones keep theirs.
class XdsServiceTlsTest : public ::testing::Test {
 protected:
  static constexpr char kFirst[] = "spiffe://cluster.local/ns/meshlet-system/sa/first";
  static constexpr char kSecond[] = "spiffe://cluster.local/ns/meshlet-system/sa/second";

  void SetUp() override {
    std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/cp.XXXXXX");
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    control_plane_ = std::make_unique<ControlPlane>(
        ControlPlaneOptions{.data_dir = dir, .api_address = "127.0.0.1:0"});
    ASSERT_TRUE(control_plane_->Init().ok());
    auto ca = tls::testing::TestCa::Create();
    ASSERT_TRUE(ca.ok());
    ca_ = std::make_unique<tls::testing::TestCa>(*std::move(ca));
    for (const char* id : {kFirst, kSecond}) {
      auto leaf = ca_->Issue({.spiffe_id = id, .dns_names = {"meshlet-control-plane"}});
      ASSERT_TRUE(leaf.ok()) << leaf.status();
      leaves_.push_back(*std::move(leaf));
    }
  }

  event::Loop& loop() { return control_plane_->loop(); }

  // A channel that accepts only a server certificate for `expected_id`, presenting `client`
  // when given.
  std::unique_ptr<http::grpc::Channel> Connect(
      const net::Address& address, const std::string& expected_id,
      const tls::testing::TestCertificate* client = nullptr) {
    auto context = tls::TlsContext::CreateClient(
        {.certificate_chain_pem = client != nullptr ? client->chain_pem : "",
         .private_key_pem = client != nullptr ? client->key_pem : "",
         .trust_bundle_pem = ca_->cert_pem(),
         .alpn_protocols = {"h2"},
         .peer_identity = *tls::SpiffeIdMatcher::Create({expected_id}, {})});
    EXPECT_TRUE(context.ok()) << context.status();
    return std::make_unique<http::grpc::Channel>(
        loop(), address,
        http::grpc::ChannelOptions{.transport_factory = tls::TlsTransport::Factory(
                                       std::make_shared<tls::TlsContextProvider>(*context))});
  }

  // The status of a call to a method nobody serves: UNIMPLEMENTED once the handshake passed.
  http::grpc::StatusCode Call(http::grpc::Channel& channel) {
    std::optional<http::grpc::StatusCode> code;
    channel.Unary("/test.Nobody/Serves", "", {.timeout = std::chrono::seconds(5)},
                  [&](http::grpc::StatusCode c, const std::string&, std::string) { code = c; });
    EXPECT_TRUE(loop().RunUntil([&] { return code.has_value(); }, std::chrono::seconds(10)));
    return code.value_or(http::grpc::StatusCode::kUnknown);
  }

  std::unique_ptr<ControlPlane> control_plane_;
  std::unique_ptr<tls::testing::TestCa> ca_;
  std::vector<tls::testing::TestCertificate> leaves_;
};

TEST_F(XdsServiceTlsTest, ASelfIssuedCertificateIsSwappedForNewConnectionsOnly) {
  XdsServiceOptions options;
  options.address = "127.0.0.1:0";
  XdsService xds(*control_plane_, options);
  // Self-issued, but no certificate yet: the port does not open.
  absl::Status status = xds.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("has no certificate"), std::string::npos) << status;
  EXPECT_EQ(xds.grpc_server(), nullptr);

  ASSERT_TRUE(xds.SetServingCertificate(leaves_[0].chain_pem, leaves_[0].key_pem).ok());
  ASSERT_TRUE(xds.Start().ok());
  const net::Address address = xds.address();
  auto open = Connect(address, kFirst);
  EXPECT_EQ(Call(*open), http::grpc::StatusCode::kUnimplemented);

  ASSERT_TRUE(xds.SetServingCertificate(leaves_[1].chain_pem, leaves_[1].key_pem).ok());
  // New connections get the second certificate...
  EXPECT_EQ(Call(*Connect(address, kSecond)), http::grpc::StatusCode::kUnimplemented);
  EXPECT_EQ(Call(*Connect(address, kFirst)), http::grpc::StatusCode::kUnavailable);
  // ...while the connection made before goes on with the first.
  EXPECT_EQ(Call(*open), http::grpc::StatusCode::kUnimplemented);

  // A certificate that does not load changes nothing.
  status = xds.SetServingCertificate(leaves_[0].chain_pem, leaves_[1].key_pem);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Call(*Connect(address, kSecond)), http::grpc::StatusCode::kUnimplemented);

  // With the trust bundle the port verifies client certificates (workload renewals over mTLS),
  // and a renewal keeps doing so: a client certificate from another CA is refused.
  auto other_ca = tls::testing::TestCa::Create("another CA");
  ASSERT_TRUE(other_ca.ok());
  auto stranger = other_ca->Issue({.spiffe_id = "spiffe://cluster.local/ns/a/sa/stranger"});
  auto workload = ca_->Issue({.spiffe_id = "spiffe://cluster.local/ns/a/sa/workload"});
  ASSERT_TRUE(stranger.ok() && workload.ok());
  ASSERT_TRUE(xds.SetTrustBundle(ca_->cert_pem()).ok());
  ASSERT_TRUE(xds.SetServingCertificate(leaves_[0].chain_pem, leaves_[0].key_pem).ok());
  EXPECT_EQ(Call(*Connect(address, kFirst, &*workload)), http::grpc::StatusCode::kUnimplemented);
  EXPECT_EQ(Call(*Connect(address, kFirst, &*stranger)), http::grpc::StatusCode::kUnavailable);
  EXPECT_EQ(Call(*Connect(address, kFirst)), http::grpc::StatusCode::kUnimplemented);
}

TEST_F(XdsServiceTlsTest, CertificateFilesOrPlaintextTakeNoSelfIssuedCertificate) {
  XdsServiceOptions plaintext;
  plaintext.plaintext = true;
  XdsService xds(*control_plane_, plaintext);
  EXPECT_EQ(xds.SetServingCertificate(leaves_[0].chain_pem, leaves_[0].key_pem).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The observer side of readiness reports, against a real registry (the ADS server's part is in
// ads_server_test).
// A control plane's options on a fresh data directory named `name`, its API on an ephemeral port.
ControlPlaneOptions FreshControlPlaneOptions(const std::string& name) {
  ControlPlaneOptions options;
  options.data_dir = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(options.data_dir);  // nothing saved by an earlier run
  options.api_address = "127.0.0.1:0";
  return options;
}

// A plaintext discovery port on an ephemeral port.
XdsServiceOptions PlaintextXdsOptions() {
  XdsServiceOptions options;
  options.address = "127.0.0.1:0";
  options.plaintext = true;
  return options;
}

TEST(XdsServiceTest, ReadinessReportsSetTheRegistryAndAStreamsFirstReportOverridesWhatItKept) {
  ControlPlaneOptions options = FreshControlPlaneOptions("xds_service_test_readiness");
  ControlPlane control_plane(options);
  ASSERT_TRUE(control_plane.Init().ok());
  XdsService service(control_plane, XdsServiceOptions{});
  auto ready = [&] { return control_plane.registry().Snapshot()->Find("reviews-0")->ready; };
  xds::Node node;
  node.set_id("reviews-0");
  node.set_service("reviews");
  node.add_addresses("10.0.0.7");
  service.OnProxyConnected(node);
  service.OnProxyReadiness("reviews-0", true, "");
  EXPECT_TRUE(ready());
  const uint64_t version = control_plane.registry().version();
  service.OnProxyReadiness("reviews-0", false, "draining");
  EXPECT_FALSE(ready());
  EXPECT_EQ(control_plane.registry().version(), version + 1);  // a change: a push follows

  // The sidecar restarts under the same id: the registry keeps "not ready" across the reconnect
  // until the new stream's first request reports it ready.
  service.OnProxyDisconnected("reviews-0");
  service.OnProxyConnected(node);
  EXPECT_FALSE(ready());
  service.OnProxyReadiness("reviews-0", true, "");
  EXPECT_TRUE(ready());

  // A report for an id the registry does not hold is counted.
  service.OnProxyReadiness("nobody", false, "draining");
  const StatsSnapshot stats = control_plane.stats().Snapshot();
  const SeriesSnapshot* unregistered =
      stats.Find("meshlet_cp_registry_readiness_unregistered_total", {});
  ASSERT_NE(unregistered, nullptr);
  EXPECT_EQ(unregistered->counter, 1u);
}

// A node that lists no capabilities and names no release is counted (it is sent the oldest
// supported release's forms); one naming its release, or listing capabilities, is not.
TEST(XdsServiceTest, NodesThatSayNothingAboutTheirReleaseAreCounted) {
  ControlPlaneOptions options = FreshControlPlaneOptions("xds_service_test_unversioned");
  ControlPlane control_plane(options);
  ASSERT_TRUE(control_plane.Init().ok());
  XdsService service(control_plane, XdsServiceOptions{});
  auto counted = [&]() -> uint64_t {
    const StatsSnapshot stats = control_plane.stats().Snapshot();
    const SeriesSnapshot* s = stats.Find("meshlet_cp_xds_nodes_unversioned_total", {});
    return s == nullptr ? ~uint64_t{0} : s->counter;
  };
  EXPECT_EQ(counted(), 0u);
  xds::Node node;
  node.set_id("reviews-0");
  node.set_service("reviews");
  node.add_addresses("10.0.0.7");
  node.set_sidecar_version("my-build");
  service.OnProxyConnected(node);
  EXPECT_EQ(counted(), 1u);
  node.set_sidecar_version("meshlet-sidecar 0.1.0");
  service.OnProxyConnected(node);
  node.set_sidecar_version("my-build");
  node.add_capabilities("mesh-http2");
  service.OnProxyConnected(node);
  EXPECT_EQ(counted(), 1u);
}

// Each policy write reaches the policy translation uses as that one change: the store is read
// once, at start, not again after every write (a write cost a read and parse of the whole store,
// 600 ms at 15 000 resources).
TEST(XdsServiceTest, PolicyWritesAreAppliedWithoutReadingTheWholeStoreAgain) {
  ControlPlaneOptions options = FreshControlPlaneOptions("xds_service_test_policy_writes");
  ControlPlane control_plane(options);
  ASSERT_TRUE(control_plane.Init().ok());
  XdsService service(control_plane, PlaintextXdsOptions());
  ASSERT_TRUE(service.Start().ok());
  std::shared_ptr<const policy::PolicySnapshot> seen;
  service.AddPolicyListener([&](std::shared_ptr<const policy::PolicySnapshot> p) { seen = p; });
  auto counter = [&](absl::string_view name, const LabelSet& labels) -> uint64_t {
    const StatsSnapshot stats = control_plane.stats().Snapshot();
    const SeriesSnapshot* s = stats.Find(name, labels);
    return s == nullptr ? ~uint64_t{0} : s->counter;
  };
  constexpr int kWrites = 200;
  for (int i = 0; i < kWrites; ++i) {
    const std::string name = absl::StrCat("svc-", i);
    absl::StatusOr<int64_t> revision = control_plane.store().Put(
        {"TrafficPolicy", "default", name},
        absl::StrCat(R"({"apiVersion":"meshlet.io/v1","kind":"TrafficPolicy","metadata":)",
                     R"({"name":")", name, R"(","namespace":"default"},"spec":{"target":")", name,
                     R"("}})"),
        kMustNotExist);
    ASSERT_TRUE(revision.ok()) << revision.status();
    // Each write pushed before the next: no two writes coalesce into one reload.
    ASSERT_TRUE(control_plane.loop().RunUntil(
        [&] { return seen != nullptr && seen->revision >= *revision; }, std::chrono::seconds(10)))
        << "write " << i;
  }
  EXPECT_EQ(seen->traffic_policies.size(), static_cast<size_t>(kWrites));
  EXPECT_EQ(counter("meshlet_cp_policy_reloads_total", {{"result", "ok"}}), 1u);
  EXPECT_EQ(counter("meshlet_cp_policy_changes_applied_total", {}), static_cast<uint64_t>(kWrites));
  std::filesystem::remove_all(options.data_dir);
}

// With the Secrets of Gateways to be read (main.cc, on Kubernetes), a gateway proxy is answered
// Unavailable until the first read, so it keeps its HTTPS listeners across a control-plane
// restart; a sidecar is not held back.
TEST(XdsServiceTest, GatewayProxiesWaitForTheFirstReadOfTheSecrets) {
  ControlPlaneOptions options = FreshControlPlaneOptions("xds_service_test_gateway_secrets");
  ControlPlane control_plane(options);
  ASSERT_TRUE(control_plane.Init().ok());
  XdsService service(control_plane, PlaintextXdsOptions());
  service.ExpectGatewayCertificates();
  ASSERT_TRUE(service.Start().ok());
  std::shared_ptr<const policy::PolicySnapshot> seen;
  service.AddPolicyListener([&](std::shared_ptr<const policy::PolicySnapshot> p) { seen = p; });
  ASSERT_TRUE(
      control_plane.loop().RunUntil([&] { return seen != nullptr; }, std::chrono::seconds(10)));
  xds::Node sidecar;
  sidecar.set_id("reviews-0");
  sidecar.set_service("reviews");
  xds::Node gateway;
  gateway.set_id("edge-0");
  (*gateway.mutable_labels())["meshlet.io/gateway"] = "default/edge";
  EXPECT_TRUE(service.Generate({.node = sidecar}).ok());
  absl::StatusOr<NodeResourceSet> held = service.Generate({.node = gateway});
  EXPECT_EQ(held.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(held.status().message(),
            "waiting for the first read of the Gateways' certificate Secrets");
  service.SetGatewayCertificates(translate::GatewayCertificates{});
  EXPECT_TRUE(service.Generate({.node = gateway}).ok());
  std::filesystem::remove_all(options.data_dir);
}

// A lookup key subscribed on a delta stream goes through the ADS server to the translator and
// back on the wire: named in the ServiceRoute response's removed_resources when nothing answers
// it, and shown in proxy-status.
TEST(XdsServiceTest, LookupKeysOnTheDeltaStreamAreAnswered) {
  ControlPlaneOptions options = FreshControlPlaneOptions("xds_service_test_lookups");
  ControlPlane control_plane(options);
  ASSERT_TRUE(control_plane.Init().ok());
  XdsService service(control_plane, PlaintextXdsOptions());
  ASSERT_TRUE(service.Start().ok());
  event::Loop& loop = control_plane.loop();
  {
    http::grpc::Channel channel(loop, service.address());
    std::shared_ptr<http::grpc::ClientCall> call = channel.StartCall(xds::kDeltaMethod);
    std::vector<xds::DeltaDiscoveryResponse> responses;
    call->OnProtoMessage<xds::DeltaDiscoveryResponse>(
        [&](xds::DeltaDiscoveryResponse r) { responses.push_back(std::move(r)); });
    xds::DeltaDiscoveryRequest request;
    request.mutable_node()->set_id("reviews-0");
    request.mutable_node()->set_service("reviews");
    request.mutable_node()->add_addresses("10.0.0.7");
    for (const std::string& name : xds::CapabilitySet::All().Names()) {
      request.mutable_node()->add_capabilities(name);
    }
    request.set_type_url(std::string(TypeUrl(ResourceType::kServiceRoute)));
    request.add_resource_names_subscribe("*");
    request.add_resource_names_subscribe("host:nothing.default");
    call->SendProto(request);
    ASSERT_TRUE(loop.RunUntil(
        [&] {
          for (const auto& response : responses) {
            for (const std::string& removed : response.removed_resources()) {
              if (removed == "host:nothing.default") return true;
            }
          }
          return false;
        },
        std::chrono::seconds(10)));
    const std::vector<ProxyStatus> statuses = service.ads()->ProxyStatuses();
    ASSERT_EQ(statuses.size(), 1u);
    EXPECT_EQ(statuses[0].on_demand.keys, 1u);
    EXPECT_EQ(statuses[0].on_demand.missing, 1u);
    EXPECT_NE(service.ProxiesJson().find(R"("onDemand":{"keys":1,"found":0,"missing":1})"),
              std::string::npos)
        << service.ProxiesJson();
    call->Cancel();
    loop.RunUntil([&] { return service.ads()->connected_proxies() == 0; }, std::chrono::seconds(5));
  }
  std::filesystem::remove_all(options.data_dir);
}

}  // namespace
}  // namespace meshlet::controlplane::ads
