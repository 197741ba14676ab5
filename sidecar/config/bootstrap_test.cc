#include "sidecar/config/bootstrap.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/fake_random.h"
#include "common/base/status.h"
#include "common/base/version.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"
#include "sidecar/route/route_table.h"
#include "xds/capabilities.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// How `./dev demo` starts a sidecar, and how Kubernetes injection will: the control plane and the
// node by flags, no xds block in the file (or no file at all).
BootstrapFlags ByFlags() {
  BootstrapFlags flags;
  flags.xds_address = "cp.mesh:15012";
  flags.xds_plaintext = true;
  flags.node_id = "web-0";
  flags.node_service = "web";
  flags.node_namespace = "shop";
  return flags;
}

absl::StatusOr<BootstrapConfig> Complete(const std::string& yaml, const BootstrapFlags& flags) {
  ASSIGN_OR_RETURN(BootstrapConfig parsed, ParseBootstrap(yaml, "b.yaml", ""));
  return CompleteBootstrap(std::move(parsed), flags);
}

constexpr char kTracing[] = "tracing: {collector_address: \"collector:4318\"}\n";

TEST(CompleteBootstrapTest, FlagsReplaceTheFilesSettings) {
  BootstrapFlags flags = ByFlags();
  flags.xds_ca_file = "/etc/meshlet/ca.pem";
  flags.xds_plaintext = false;
  flags.xds_server_name = "cp.mesh.svc";
  flags.data_dir = "/var/lib/meshlet";
  flags.node_service_account = "web-sa";
  flags.node_labels = {{"version", "v2"}};
  flags.node_addresses = {"10.0.0.5"};
  flags.node_ports = {8080};
  absl::StatusOr<BootstrapConfig> config = Complete(
      "node: {id: file-0, service: file, labels: {version: v1, app: web}, ports: [9090]}\n"
      "xds: {address: \"old.mesh:15012\", ca_file: /old/ca.pem, server_name: old}\n"
      "data_dir: /old\n",
      flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->xds.address, "cp.mesh:15012");
  EXPECT_EQ(config->xds.ca_file, "/etc/meshlet/ca.pem");
  EXPECT_EQ(config->xds.server_name, "cp.mesh.svc");
  EXPECT_EQ(config->data_dir, "/var/lib/meshlet");
  EXPECT_EQ(config->node.id(), "web-0");
  EXPECT_EQ(config->node.service(), "web");
  EXPECT_EQ(config->node.namespace_(), "shop");
  EXPECT_EQ(config->node.service_account(), "web-sa");
  EXPECT_EQ(config->node.labels().at("version"), "v2");
  EXPECT_EQ(config->node.labels().at("app"), "web");
  ASSERT_EQ(config->node.addresses_size(), 1);
  EXPECT_EQ(config->node.addresses(0), "10.0.0.5");
  ASSERT_EQ(config->node.ports_size(), 2);
  EXPECT_EQ(config->node.ports(1), 8080u);
  EXPECT_EQ(config->node.sidecar_version(), absl::StrCat("meshlet-sidecar ", kMeshletVersion));
  // It announces every capability it reads, so the control plane holds nothing back.
  EXPECT_TRUE(xds::CapabilitiesOf(config->node).all());
  EXPECT_EQ(config->node.capabilities_size(), static_cast<int>(xds::kCapabilityCount));
}

// A file listing capabilities narrows what the sidecar announces (the control plane then sends
// the older form of the others); names of later releases are dropped.
TEST(CompleteBootstrapTest, AFileNarrowsTheCapabilitiesAnnounced) {
  absl::StatusOr<BootstrapConfig> config =
      Complete("node: {id: a, capabilities: [overload, warp-drive]}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->node.capabilities(), ::testing::ElementsAre("overload"));
}

// --trace-collector turns tracing on (OTLP/HTTP protobuf) or replaces the file's collector;
// --trace-sampling replaces the rate and needs tracing.

TEST(CompleteBootstrapTest, TraceFlagsTurnTracingOnOrReplaceTheFilesSettings) {
  BootstrapFlags flags = ByFlags();
  flags.trace_collector = "cp.mesh:4318";
  absl::StatusOr<BootstrapConfig> config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->tracing.enabled);
  EXPECT_EQ(config->tracing.collector_address, "cp.mesh:4318");
  EXPECT_EQ(config->tracing.protocol, tracing::ExportProtocol::kOtlpProto);
  EXPECT_EQ(config->tracing.EffectiveCollectorPath(), "/v1/traces");
  EXPECT_EQ(config->tracing.sampling_percent, 1.0);
  EXPECT_EQ(config->tracing.service_name, "web.shop");

  flags.trace_sampling = 100;
  config = Complete(
      "tracing: {sampling_percent: 5, collector_address: \"zipkin:9411\", protocol: ZIPKIN}\n",
      flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.collector_address, "cp.mesh:4318");
  EXPECT_EQ(config->tracing.protocol, tracing::ExportProtocol::kOtlpProto);
  EXPECT_EQ(config->tracing.EffectiveCollectorPath(), "/v1/traces");
  EXPECT_EQ(config->tracing.sampling_percent, 100.0);

  // The file's collector, the flag's rate.
  BootstrapFlags rate_only = ByFlags();
  rate_only.trace_sampling = 50;
  config = Complete("tracing: {collector_address: \"zipkin:9411\", protocol: ZIPKIN}\n", rate_only);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.collector_address, "zipkin:9411");
  EXPECT_EQ(config->tracing.sampling_percent, 50.0);

  // A rate without any collector is an error naming both ways to give one.
  config = Complete("", rate_only);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "--trace-sampling needs tracing: --trace-collector, or a tracing section in --config");
}

// --trace-collector=control-plane: OTLP/gRPC to the xDS server over its channel's TLS settings,
// naming the node in every export.
TEST(CompleteBootstrapTest, TracesToTheControlPlaneOverTheXdsChannel) {
  BootstrapFlags flags = ByFlags();
  flags.trace_collector = "control-plane";
  flags.xds_plaintext = false;
  flags.xds_ca_file = "/etc/meshlet/ca.pem";
  flags.xds_server_name = "meshlet-control-plane.meshlet-system.svc";
  absl::StatusOr<BootstrapConfig> config = Complete(kTracing, flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->tracing.enabled);
  EXPECT_EQ(config->tracing.protocol, tracing::ExportProtocol::kOtlpGrpc);
  EXPECT_EQ(config->tracing.collector_address, "cp.mesh:15012");
  EXPECT_EQ(config->tracing.service_instance_id, "web-0");
  EXPECT_TRUE(config->trace_channel.tls);
  EXPECT_EQ(config->trace_channel.authority, "meshlet-control-plane.meshlet-system.svc");

  // A plaintext xDS server (local tests): h2c.
  flags.xds_plaintext = true;
  config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->trace_channel.tls);
  EXPECT_EQ(config->trace_channel.authority, "cp.mesh:15012");

  // No xDS server: nowhere to send them.
  BootstrapFlags alone;
  alone.node_id = "web-0";
  alone.trace_collector = "control-plane";
  config = Complete("", alone);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("needs the xDS server"), std::string::npos)
      << config.status();
  // A collector named in the file, without TLS settings: refused unless plaintext.
  alone.trace_collector.clear();
  config = Complete("tracing: {protocol: OTLP_GRPC, collector_address: \"cp:15012\"}\n", alone);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("--xds-ca"), std::string::npos) << config.status();
  alone.xds_plaintext = true;
  config = Complete("tracing: {protocol: OTLP_GRPC, collector_address: \"cp:15012\"}\n", alone);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.collector_address, "cp:15012");
}

// metrics_report.address: the file's, else xds.address — from --xds when the flag is given.

TEST(CompleteBootstrapTest, MetricsReportGoesToTheXdsServerGivenByFlag) {
  absl::StatusOr<BootstrapConfig> config = Complete("", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "cp.mesh:15012");
  EXPECT_EQ(config->metrics_report.authority, "cp.mesh:15012");
  EXPECT_FALSE(config->metrics_report.xds_tls);  // --xds-plaintext
  EXPECT_EQ(config->metrics_report.interval, 10s);

  // A file that sets only the interval (the demo's) keeps it.
  config = Complete("metrics_report: {interval: 2s}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "cp.mesh:15012");
  EXPECT_EQ(config->metrics_report.interval, 2s);

  // Without any xDS server and no address there are no reports.
  config = Complete("metrics_report: {interval: 2s}\n", BootstrapFlags{});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "");
}

// Several replicas: reports and CA calls go to each in turn, and name the first as :authority (a
// list is no authority: servers refuse it).
TEST(CompleteBootstrapTest, SeveralReplicasGiveTheFirstAsAuthority) {
  BootstrapFlags flags = ByFlags();
  flags.xds_address = "10.0.0.1:15012,10.0.0.2:15012";
  absl::StatusOr<BootstrapConfig> config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "10.0.0.1:15012,10.0.0.2:15012");
  EXPECT_EQ(config->metrics_report.authority, "10.0.0.1:15012");
  EXPECT_EQ(config->ca.address, "10.0.0.1:15012,10.0.0.2:15012");
  EXPECT_EQ(config->ca.authority, "10.0.0.1:15012");
}

TEST(CompleteBootstrapTest, MetricsReportFollowsTheXdsFlagOverTheFilesXds) {
  absl::StatusOr<BootstrapConfig> config =
      Complete("node: {id: web-0}\nxds: {address: \"old.mesh:15012\"}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "cp.mesh:15012");

  // The file's own xds block, no flag: the same default.
  BootstrapFlags plaintext;
  plaintext.xds_plaintext = true;
  config = Complete("node: {id: web-0}\nxds: {address: \"old.mesh:15012\"}\n", plaintext);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "old.mesh:15012");
}

TEST(CompleteBootstrapTest, MetricsReportAddressInTheFileWins) {
  absl::StatusOr<BootstrapConfig> config =
      Complete("metrics_report: {address: \"telemetry.mesh:15012\"}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "telemetry.mesh:15012");
  EXPECT_EQ(config->metrics_report.authority, "telemetry.mesh:15012");
}

TEST(CompleteBootstrapTest, MetricsReportDisabledStaysOffWithXds) {
  absl::StatusOr<BootstrapConfig> config =
      Complete("metrics_report: {disabled: true}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "");
}

TEST(CompleteBootstrapTest, MetricsReportUsesTheXdsChannelsTlsFromFlags) {
  BootstrapFlags flags = ByFlags();
  flags.xds_plaintext = false;
  flags.xds_ca_file = "ca.pem";
  flags.xds_server_name = "cp.mesh.svc";
  absl::StatusOr<BootstrapConfig> config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->metrics_report.xds_tls);
  EXPECT_EQ(config->metrics_report.authority, "cp.mesh.svc");

  // No xDS: plaintext to the address the file names.
  config = Complete("metrics_report: {address: \"127.0.0.1:15012\"}\n", BootstrapFlags{});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->metrics_report.xds_tls);
  EXPECT_EQ(config->metrics_report.authority, "127.0.0.1:15012");
}

TEST(CompleteBootstrapTest, MetricsReportServiceFromTheNodeFlags) {
  absl::StatusOr<BootstrapConfig> config =
      Complete("node: {id: file-0, service: file}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.service, "web");

  // No service: the tracing service name, else the node id (--node-id).
  BootstrapFlags id_only = ByFlags();
  id_only.node_service.clear();
  config = Complete("tracing: {collector_address: \"c:4318\", service_name: traced}\n", id_only);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.service, "traced");
  config = Complete("", id_only);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.service, "web-0");
}

// tracing.service_name: the file's, else node.service with its namespace (as golden metrics name
// it), else node.id (after --node-*), else "meshlet".

TEST(CompleteBootstrapTest, TracingServiceNameFromTheNodeFlags) {
  absl::StatusOr<BootstrapConfig> config = Complete(kTracing, ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "web.shop");
  BootstrapFlags no_namespace = ByFlags();
  no_namespace.node_namespace.clear();
  config = Complete(kTracing, no_namespace);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "web");

  BootstrapFlags id_only = ByFlags();
  id_only.node_service.clear();
  config = Complete(std::string("node: {id: file-0}\n") + kTracing, id_only);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "web-0");

  config = Complete(kTracing, BootstrapFlags{});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "meshlet");

  config = Complete("tracing: {collector_address: \"c:4318\", service_name: front}\n", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "front");

  // Without a tracing section there is nothing to name.
  config = Complete("", ByFlags());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->tracing.enabled);
  EXPECT_EQ(config->tracing.service_name, "");
}

// A gateway proxy (--gateway NAMESPACE/NAME: no service, the label meshlet.io/gateway) is named
// after its Gateway in traces and golden metrics: "gateway:NAME" in NAMESPACE.
TEST(CompleteBootstrapTest, GatewayProxyIsNamedAfterItsGateway) {
  BootstrapFlags gateway = ByFlags();
  gateway.node_service.clear();
  gateway.node_id = "bookinfo-meshlet-0";
  gateway.node_namespace = "default";
  gateway.node_labels = {{"meshlet.io/gateway", "default/bookinfo"}};
  absl::StatusOr<BootstrapConfig> config = Complete(kTracing, gateway);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "gateway:bookinfo.default");
  EXPECT_EQ(config->metrics_report.service, "gateway:bookinfo");
  // A label that is not NAMESPACE/NAME names nothing: the node id stands in, as for any proxy.
  gateway.node_labels = {{"meshlet.io/gateway", "bookinfo"}};
  config = Complete(kTracing, gateway);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tracing.service_name, "bookinfo-meshlet-0");
}

// The CA: --ca-address, else the xDS server (from --xds or the file).

TEST(CompleteBootstrapTest, CaIsTheXdsServerGivenByFlag) {
  BootstrapFlags flags = ByFlags();
  flags.node_service_account = "web";
  flags.workload_certificate = true;
  absl::StatusOr<BootstrapConfig> config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca.address, "cp.mesh:15012");
  EXPECT_EQ(config->ca.authority, "cp.mesh:15012");

  flags.xds_server_name = "cp.mesh.svc";
  config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca.address, "cp.mesh:15012");
  EXPECT_EQ(config->ca.authority, "cp.mesh.svc");

  flags.ca_address = "ca.mesh:15012";
  config = Complete("", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca.address, "ca.mesh:15012");
  EXPECT_EQ(config->ca.authority, "ca.mesh:15012");
}

TEST(CompleteBootstrapTest, WorkloadCertificateNeedsAnIdentityAndACa) {
  BootstrapFlags flags;
  flags.workload_certificate = true;
  flags.node_namespace = "shop";
  absl::StatusOr<BootstrapConfig> config = Complete("", flags);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "the workload certificate needs an identity: --node-namespace and "
            "--node-service-account (or node.namespace and node.service_account in --config)");

  // The service account from the file, the namespace from the flag.
  config = Complete("node: {service_account: web}\n", flags);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "the workload certificate needs a CA: --ca-address HOST:PORT, or --xds HOST:PORT");
  flags.ca_address = "127.0.0.1:15012";
  config = Complete("node: {service_account: web}\n", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca.address, "127.0.0.1:15012");
}

// Validation sees the result of file and flags together.

TEST(CompleteBootstrapTest, NodeIdByFlagCompletesTheFilesXds) {
  BootstrapFlags flags;
  flags.xds_plaintext = true;
  const std::string file = "xds: {address: \"cp.mesh:15012\"}\n";
  absl::StatusOr<BootstrapConfig> config = Complete(file, flags);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "xDS needs a node id: --node-id or node.id in --config");
  flags.node_id = "web-0";
  config = Complete(file, flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_report.address, "cp.mesh:15012");
}

TEST(CompleteBootstrapTest, XdsNeedsTlsSettingsOrPlaintext) {
  BootstrapFlags flags = ByFlags();
  flags.xds_plaintext = false;
  absl::StatusOr<BootstrapConfig> config = Complete("", flags);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "xDS needs TLS settings: --xds-ca FILE (or xds.ca_file), or --xds-plaintext=true for "
            "a local control plane without TLS");
  config = Complete("xds: {ca_file: /etc/meshlet/ca.pem}\n", flags);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->metrics_report.xds_tls);
}

// ---------------------------------------------------------------------------------------------
// The sample static file, end to end.

TEST(BootstrapTest, SampleFileTranslates) {
  absl::StatusOr<BootstrapConfig> bootstrap = LoadBootstrapFile(kSamplePath);
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  EXPECT_EQ(bootstrap->node.id(), "frontend-0.default");
  EXPECT_FALSE(bootstrap->has_xds());
  absl::StatusOr<std::shared_ptr<const Snapshot>> built = BuildSnapshot(bootstrap->resources);
  ASSERT_TRUE(built.ok()) << built.status();
  const Snapshot& s = **built;

  ASSERT_EQ(s.listeners.size(), 3u);
  const ListenerConfig& outbound = s.listeners[0];
  EXPECT_EQ(outbound.name, "outbound");
  EXPECT_EQ(outbound.address.ToString(), "127.0.0.1:15001");
  EXPECT_EQ(outbound.protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(outbound.route_config_name, "outbound-routes");
  EXPECT_EQ(outbound.http.request_headers_timeout, 5s);
  EXPECT_EQ(outbound.http.max_request_body_buffer_bytes, 128u * 1024);
  EXPECT_EQ(outbound.access_log_path, "/dev/stdout");
  const ListenerConfig& inbound = s.listeners[1];
  EXPECT_EQ(inbound.direction, TrafficDirection::kInbound);
  EXPECT_EQ(inbound.protocol, ListenerProtocol::kAuto);
  EXPECT_EQ(inbound.tcp_cluster, "local-app");
  EXPECT_EQ(inbound.detect_timeout, 500ms);
  EXPECT_EQ(inbound.max_connections, 4096u);
  const ListenerConfig& redis = s.listeners[2];
  EXPECT_EQ(redis.protocol, ListenerProtocol::kTcp);
  EXPECT_EQ(redis.tcp_cluster, "redis");

  // Clusters, with the EDS one filled from its load assignment.
  ASSERT_EQ(s.clusters.size(), 4u);
  const cluster::ClusterConfig* v1 = s.FindCluster("backend-v1");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(v1->connect_timeout, 250ms);
  ASSERT_EQ(v1->endpoints.size(), 2u);
  EXPECT_EQ(v1->endpoints[1].address.ToString(), "127.0.0.1:18082");
  EXPECT_EQ(v1->endpoints[1].weight, 2u);
  EXPECT_EQ(v1->circuit_breakers.max_requests, 512u);
  EXPECT_EQ(v1->circuit_breakers.max_connections, 1024u);
  EXPECT_EQ(v1->outlier_detection->consecutive_5xx, 3u);
  const cluster::ClusterConfig* v2 = s.FindCluster("backend-v2");
  ASSERT_NE(v2, nullptr);
  EXPECT_TRUE(v2->eds);
  EXPECT_EQ(v2->protocol, cluster::UpstreamProtocol::kHttp2);
  ASSERT_EQ(v2->endpoints.size(), 1u);
  EXPECT_EQ(v2->endpoints[0].address.ToString(), "127.0.0.1:18083");
  const cluster::ClusterConfig* redis_cluster = s.FindCluster("redis");
  EXPECT_EQ(redis_cluster->lb_policy, cluster::LbPolicy::kRoundRobin);
  EXPECT_EQ(redis_cluster->health_check->kind, cluster::HealthCheckConfig::Kind::kTcp);
  EXPECT_EQ(redis_cluster->health_check->interval, 5s);

  // Routing by host and path prefix, with the 90/10 split.
  const route::RouteTable* routes = s.FindRouteTable("outbound-routes");
  ASSERT_NE(routes, nullptr);
  const route::RouteEntry* api = routes->Match(Request("backend:8080", "/api/users"));
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->name, "api");
  const route::RouteAction* action = api->route_action();
  ASSERT_NE(action, nullptr);
  EXPECT_EQ(action->total_weight, 100u);
  EXPECT_EQ(action->timeout, 5s);
  EXPECT_EQ(action->retry_policy.num_retries, 3u);  // from the virtual host
  FakeRandom random;
  std::map<std::string, int> picks;
  for (int i = 0; i < 100; ++i) random.PushDouble(i / 100.0);
  for (int i = 0; i < 100; ++i) ++picks[route::PickCluster(*action, random)];
  EXPECT_EQ(picks["backend-v1"], 90);
  EXPECT_EQ(picks["backend-v2"], 10);

  const route::RouteEntry* assets =
      routes->Match(Request("x.backend.example.com", "/ASSETS/app.js"));
  ASSERT_NE(assets, nullptr);
  EXPECT_EQ(assets->name, "assets");
  EXPECT_EQ(route::RewritePath(*assets, "/ASSETS/app.js"), "/static/app.js");
  ASSERT_TRUE(assets->extras->rate_limit.has_value());
  EXPECT_EQ(assets->extras->rate_limit->burst, 200u);

  const route::RouteEntry* legacy = routes->Match(Request("backend", "/old?x=1"));
  ASSERT_NE(legacy, nullptr);
  ASSERT_NE(legacy->redirect(), nullptr);
  EXPECT_EQ(legacy->redirect()->response_code, 308u);
  EXPECT_EQ(route::RedirectLocation(*legacy->redirect(), Request("backend", "/old?x=1")),
            "http://backend/api/?x=1");

  const route::RouteEntry* other = routes->Match(Request("elsewhere", "/"));
  ASSERT_NE(other, nullptr);
  ASSERT_NE(other->direct_response(), nullptr);
  EXPECT_EQ(other->direct_response()->status, 404u);

  http::HeaderMap upstream = Request("backend", "/api/x");
  route::ApplyRequestHeaderMutations(*api, upstream);
  EXPECT_EQ(upstream.Get("x-meshlet-source"), "frontend");

  const route::RouteEntry* app = s.FindRouteTable("inbound-routes")->Match(Request("a", "/"));
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->route_action()->timeout, Duration::zero());
}

TEST(BootstrapTest, JsonIsAccepted) {
  absl::StatusOr<BootstrapConfig> bootstrap = ParseBootstrap(
      R"({"node": {"id": "n1"}, "xds": {"address": "cp.mesh:15012"},
          "data_dir": "state",
          "static_resources": {"clusters": [{"name": "c", "type": "EDS"}]}})",
      "boot.json", "/etc/meshlet");
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  EXPECT_TRUE(bootstrap->has_xds());
  EXPECT_EQ(bootstrap->xds.address, "cp.mesh:15012");
  EXPECT_EQ(bootstrap->data_dir, "/etc/meshlet/state");
  ASSERT_EQ(bootstrap->resources.clusters.size(), 1u);
  EXPECT_TRUE(BuildSnapshot(bootstrap->resources).ok());
}

TEST(BootstrapTest, ParseErrorsNameFileLineAndField) {
  absl::StatusOr<BootstrapConfig> bootstrap = ParseBootstrap(
      "static_resources:\n  listeners:\n  - name: a\n    adress: 1.2.3.4:5\n", "sidecar.yaml", "");
  ASSERT_FALSE(bootstrap.ok());
  EXPECT_THAT(std::string(bootstrap.status().message()),
              HasSubstr("sidecar.yaml:4:5: static_resources.listeners[0].adress: unknown field"));
}

TEST(BootstrapTest, XdsSettingsValidated) {
  auto no_port = ParseBootstrap("node: {id: n}\nxds: {address: cp.mesh}\n", "b.yaml", "");
  ASSERT_FALSE(no_port.ok());
  EXPECT_EQ(no_port.status().message(),
            "b.yaml: xds.address: \"cp.mesh\" is not host:port[,host:port...]");
  // A missing node.id is CompleteBootstrap's to refuse: --node-id may give it.
  EXPECT_TRUE(ParseBootstrap("xds: {address: \"cp.mesh:15012\"}\n", "b.yaml", "").ok());
  // Replicas.
  EXPECT_TRUE(ParseBootstrap("xds: {address: \"cp-a:15012,cp-b:15012\"}\n", "b.yaml", "").ok());
  EXPECT_FALSE(ParseBootstrap("xds: {address: \"cp-a:15012,\"}\n", "b.yaml", "").ok());
}

TEST(BootstrapTest, RelativeSecretFilesResolveAgainstTheFile) {
  const std::string dir = TestTmpDir();
  WriteFile(dir + "/ca.pem", kPem);
  WriteFile(dir + "/boot.yaml",
            "static_resources:\n"
            "  secrets:\n"
            "  - name: bundle\n"
            "    trust_bundle_file: ca.pem\n");
  absl::StatusOr<BootstrapConfig> bootstrap = LoadBootstrapFile(dir + "/boot.yaml");
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  EXPECT_EQ(bootstrap->resources.secrets[0].trust_bundle_file(), dir + "/ca.pem");
  auto snapshot = BuildSnapshot(bootstrap->resources);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->FindSecret("bundle")->trust_bundle_pem, kPem);
}

TEST(BootstrapTest, MissingFile) {
  absl::StatusOr<BootstrapConfig> bootstrap = LoadBootstrapFile("/nonexistent/sidecar.yaml");
  ASSERT_FALSE(bootstrap.ok());
  EXPECT_THAT(std::string(bootstrap.status().message()),
              HasSubstr("cannot read \"/nonexistent/sidecar.yaml\""));
}

}  // namespace
}  // namespace meshlet::sidecar::config
