#include "sidecar/config/bootstrap.h"

#include <string>

#include "common/base/status.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::config {
namespace {

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
  EXPECT_EQ(config->node.sidecar_version(), "meshlet-sidecar 0.1.0");
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

// tracing.service_name: the file's, else node.service, else node.id (after --node-*), else
// "meshlet".

TEST(CompleteBootstrapTest, TracingServiceNameFromTheNodeFlags) {
  absl::StatusOr<BootstrapConfig> config = Complete(kTracing, ByFlags());
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

}  // namespace
}  // namespace meshlet::sidecar::config
