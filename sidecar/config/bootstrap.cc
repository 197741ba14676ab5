#include "sidecar/config/bootstrap.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/version.h"
#include "common/config/yaml_proto.h"
#include "common/net/address.h"
#include "xds/capabilities.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  return absl::StrCat(base_dir, base_dir.back() == '/' ? "" : "/", path);
}

void ResolveInPlace(const std::string& base_dir, std::string* path) {
  *path = Resolve(base_dir, *path);
}

// "host:port" or "[v6]:port" with a numeric port in 1..65535.
bool ValidHostPort(absl::string_view address) { return net::SplitHostPort(address).ok(); }

// "host:port[,host:port...]": the control plane's replicas.
bool ValidHostPorts(absl::string_view addresses) {
  for (absl::string_view entry : absl::StrSplit(addresses, ',')) {
    if (!ValidHostPort(entry)) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<BootstrapConfig> ParseBootstrap(absl::string_view text,
                                               const std::string& source_name,
                                               const std::string& base_dir) {
  xds::Bootstrap bootstrap;
  meshlet::config::YamlParseOptions options;
  options.source_name = source_name;
  RETURN_IF_ERROR(meshlet::config::YamlToProto(text, bootstrap, options));

  const std::string lead = source_name.empty() ? "bootstrap" : source_name;
  BootstrapConfig out;
  if (!bootstrap.xds().address().empty() && !ValidHostPorts(bootstrap.xds().address())) {
    return absl::InvalidArgumentError(absl::StrCat(lead, ": xds.address: \"",
                                                   bootstrap.xds().address(),
                                                   "\" is not host:port[,host:port...]"));
  }
  out.node = bootstrap.node();
  out.xds.address = bootstrap.xds().address();
  out.xds.ca_file = Resolve(base_dir, bootstrap.xds().ca_file());
  out.xds.server_name = bootstrap.xds().server_name();
  out.data_dir = Resolve(base_dir, bootstrap.data_dir());
  if (bootstrap.has_tracing()) {
    absl::StatusOr<tracing::TracingConfig> tracing = TranslateTracing(bootstrap.tracing());
    if (!tracing.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(lead, ": ", tracing.status().message()));
    }
    out.tracing = *std::move(tracing);
  }

  const auto& report = bootstrap.metrics_report();
  out.metrics_report.disabled = report.disabled();
  if (!report.disabled()) {
    out.metrics_report.address = report.address();
    if (!report.address().empty() && !ValidHostPort(report.address())) {
      return absl::InvalidArgumentError(absl::StrCat(lead, ": metrics_report.address: \"",
                                                     report.address(), "\" is not host:port"));
    }
    if (report.has_interval()) {
      const int64_t ms = report.interval().seconds() * 1000 + report.interval().nanos() / 1000000;
      if (ms < 100) {
        return absl::InvalidArgumentError(
            absl::StrCat(lead, ": metrics_report.interval: must be at least 100ms"));
      }
      out.metrics_report.interval = std::chrono::milliseconds(ms);
    }
  }

  xds::Bootstrap::StaticResources* resources = bootstrap.mutable_static_resources();
  for (xds::Secret& secret : *resources->mutable_secrets()) {
    ResolveInPlace(base_dir, secret.mutable_certificate_chain_file());
    ResolveInPlace(base_dir, secret.mutable_private_key_file());
    ResolveInPlace(base_dir, secret.mutable_trust_bundle_file());
  }
  for (xds::Cluster& cluster : *resources->mutable_clusters()) {
    if (cluster.has_tls()) ResolveInPlace(base_dir, cluster.mutable_tls()->mutable_ca_file());
  }
  out.resources.listeners.assign(resources->listeners().begin(), resources->listeners().end());
  out.resources.routes.assign(resources->routes().begin(), resources->routes().end());
  out.resources.service_routes.assign(resources->service_routes().begin(),
                                      resources->service_routes().end());
  out.resources.clusters.assign(resources->clusters().begin(), resources->clusters().end());
  out.resources.endpoints.assign(resources->endpoints().begin(), resources->endpoints().end());
  out.resources.secrets.assign(resources->secrets().begin(), resources->secrets().end());
  return out;
}

absl::StatusOr<BootstrapConfig> LoadBootstrapFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) return content.status();
  size_t slash = path.rfind('/');
  std::string base_dir = slash == std::string::npos ? "" : path.substr(0, slash);
  if (slash == 0) base_dir = "/";
  return ParseBootstrap(*content, path, base_dir);
}

std::string FirstHostPort(absl::string_view host_ports) {
  return std::string(host_ports.substr(0, host_ports.find(',')));
}

absl::StatusOr<BootstrapConfig> CompleteBootstrap(BootstrapConfig config,
                                                  const BootstrapFlags& flags) {
  // 1. The flags replace what they set.
  if (!flags.xds_address.empty()) config.xds.address = flags.xds_address;
  if (!flags.xds_ca_file.empty()) config.xds.ca_file = flags.xds_ca_file;
  if (!flags.xds_server_name.empty()) config.xds.server_name = flags.xds_server_name;
  if (!flags.data_dir.empty()) config.data_dir = flags.data_dir;
  xds::Node& node = config.node;
  if (!flags.node_id.empty()) node.set_id(flags.node_id);
  if (!flags.node_service.empty()) node.set_service(flags.node_service);
  if (!flags.node_namespace.empty()) node.set_namespace_(flags.node_namespace);
  if (!flags.node_service_account.empty()) node.set_service_account(flags.node_service_account);
  if (flags.node_locality.size() >= 2) {
    xds::Locality& locality = *node.mutable_locality();
    locality.set_region(flags.node_locality[0]);
    locality.set_zone(flags.node_locality[1]);
    if (flags.node_locality.size() > 2) locality.set_node(flags.node_locality[2]);
  }
  for (const auto& [key, value] : flags.node_labels) (*node.mutable_labels())[key] = value;
  for (const std::string& address : flags.node_addresses) node.add_addresses(address);
  for (uint32_t port : flags.node_ports) node.add_ports(port);
  if (!flags.trace_collector.empty()) {
    config.tracing.enabled = true;
    config.tracing.collector_path.clear();
    if (flags.trace_collector == kTraceCollectorControlPlane) {
      config.tracing.collector_address.clear();  // the xDS server's, derived below
      config.tracing.protocol = tracing::ExportProtocol::kOtlpGrpc;
    } else {
      config.tracing.collector_address = flags.trace_collector;
      config.tracing.protocol = tracing::ExportProtocol::kOtlpProto;
    }
  }
  if (flags.trace_sampling.has_value()) {
    if (!config.tracing.enabled) {
      return absl::InvalidArgumentError(
          "--trace-sampling needs tracing: --trace-collector, or a tracing section in --config");
    }
    config.tracing.sampling_percent = *flags.trace_sampling;
  }

  // 2. Defaults that depend on other settings, from the result.
  if (node.sidecar_version().empty())
    node.set_sidecar_version(absl::StrCat(xds::kSidecarVersionPrefix, kMeshletVersion));
  // What this sidecar reads, so the control plane gates nothing it understands; a file listing
  // capabilities narrows them (those of a later release mean nothing here).
  xds::CapabilitySet capabilities = xds::CapabilitySet::All();
  if (node.capabilities_size() > 0) {
    capabilities = xds::CapabilitiesOf(node);
    for (const std::string& name : node.capabilities()) {
      if (!xds::CapabilityNamed(name).has_value()) {
        LOG(WARN) << "node.capabilities: \"" << name
                  << "\" is not a capability this sidecar knows; ignored";
      }
    }
  }
  node.clear_capabilities();
  for (const std::string& name : capabilities.Names()) node.add_capabilities(name);
  const bool xds_tls = config.has_xds() && !flags.xds_plaintext;
  // A gateway proxy has no service: it is named after its Gateway (xds/protocol.h),
  // "gateway:<name>", in namespace <namespace> (--gateway sets the node's).
  std::string gateway_service, gateway_namespace;
  if (auto it = node.labels().find(std::string(xds::kGatewayNodeLabel));
      node.service().empty() && it != node.labels().end()) {
    xds::GatewayProxyService(it->second, &gateway_service, &gateway_namespace);
  }
  if (config.tracing.enabled && config.tracing.service_name.empty()) {
    // "<service>.<namespace>", the name golden metrics and cluster names give the service, so a
    // trace's services and the metrics' edges name the same thing.
    config.tracing.service_name =
        !gateway_service.empty() ? absl::StrCat(gateway_service, ".", gateway_namespace)
        : !node.service().empty()
            ? (node.namespace_().empty() ? node.service()
                                         : absl::StrCat(node.service(), ".", node.namespace_()))
        : !node.id().empty() ? node.id()
                             : "meshlet";
  }
  if (config.tracing.enabled) config.tracing.service_instance_id = node.id();
  const bool trace_grpc =
      config.tracing.enabled && config.tracing.protocol == tracing::ExportProtocol::kOtlpGrpc;
  if (trace_grpc) {
    if (config.tracing.collector_address.empty()) {
      config.tracing.collector_address = config.xds.address;
    }
    config.trace_channel.tls = !flags.xds_plaintext;
    config.trace_channel.authority = config.trace_channel.tls && !config.xds.server_name.empty()
                                         ? config.xds.server_name
                                         : FirstHostPort(config.tracing.collector_address);
  }
  MetricsReportConfig& report = config.metrics_report;
  if (!report.disabled) {
    if (report.address.empty()) report.address = config.xds.address;
    report.xds_tls = xds_tls;
    report.authority = xds_tls && !config.xds.server_name.empty() ? config.xds.server_name
                                                                  : FirstHostPort(report.address);
    report.service = node.service();
    if (report.service.empty()) report.service = gateway_service;
    if (report.service.empty() && config.tracing.enabled) {
      report.service = config.tracing.service_name;
    }
    if (report.service.empty()) report.service = node.id();
  }
  config.ca.address = flags.ca_address.empty() ? config.xds.address : flags.ca_address;
  config.ca.authority = flags.ca_address.empty() && !config.xds.server_name.empty()
                            ? config.xds.server_name
                            : FirstHostPort(config.ca.address);

  // 3. The whole.
  if (config.has_xds()) {
    if (node.id().empty()) {
      return absl::InvalidArgumentError("xDS needs a node id: --node-id or node.id in --config");
    }
    if (config.xds.ca_file.empty() && !flags.xds_plaintext) {
      return absl::InvalidArgumentError(
          "xDS needs TLS settings: --xds-ca FILE (or xds.ca_file), or --xds-plaintext=true for "
          "a local control plane without TLS");
    }
  }
  if (trace_grpc) {
    if (config.tracing.collector_address.empty()) {
      return absl::InvalidArgumentError(
          "tracing over OTLP_GRPC (--trace-collector=control-plane) sends spans to the control "
          "plane: it needs the xDS server (--xds or xds.address) or tracing.collector_address");
    }
    if (config.trace_channel.tls && config.xds.ca_file.empty()) {
      return absl::InvalidArgumentError(
          "tracing over OTLP_GRPC uses the xDS channel's TLS settings: --xds-ca FILE (or "
          "xds.ca_file), or --xds-plaintext=true for a local control plane without TLS");
    }
  }
  if (flags.workload_certificate) {
    if (node.namespace_().empty() || node.service_account().empty()) {
      return absl::InvalidArgumentError(
          "the workload certificate needs an identity: --node-namespace and "
          "--node-service-account (or node.namespace and node.service_account in --config)");
    }
    if (config.ca.address.empty()) {
      return absl::InvalidArgumentError(
          "the workload certificate needs a CA: --ca-address HOST:PORT, or --xds HOST:PORT");
    }
  }
  return config;
}

absl::StatusOr<BootstrapConfig> LoadBootstrap(const std::string& path,
                                              const BootstrapFlags& flags) {
  BootstrapConfig parsed;
  if (!path.empty()) {
    ASSIGN_OR_RETURN(parsed, LoadBootstrapFile(path));
  }
  return CompleteBootstrap(std::move(parsed), flags);
}

}  // namespace meshlet::sidecar::config
