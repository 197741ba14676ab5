#include "sidecar/config/bootstrap.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"
#include "common/net/address.h"
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
  if (!bootstrap.xds().address().empty()) {
    if (!ValidHostPort(bootstrap.xds().address())) {
      return absl::InvalidArgumentError(absl::StrCat(
          lead, ": xds.address: \"", bootstrap.xds().address(), "\" is not host:port"));
    }
    if (bootstrap.node().id().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(lead, ": node.id: required when xds.address is set"));
    }
  }
  out.node = bootstrap.node();
  out.xds.address = bootstrap.xds().address();
  out.xds.ca_file = Resolve(base_dir, bootstrap.xds().ca_file());
  out.xds.server_name = bootstrap.xds().server_name();
  out.data_dir = Resolve(base_dir, bootstrap.data_dir());
  if (bootstrap.has_tracing()) {
    absl::StatusOr<tracing::TracingConfig> tracing = TranslateTracing(
        bootstrap.tracing(),
        bootstrap.node().service().empty() ? bootstrap.node().id() : bootstrap.node().service());
    if (!tracing.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(lead, ": ", tracing.status().message()));
    }
    out.tracing = *std::move(tracing);
  }

  if (!bootstrap.metrics_report().disabled()) {
    const auto& report = bootstrap.metrics_report();
    out.metrics_report.address = report.address().empty() ? out.xds.address : report.address();
    if (!out.metrics_report.address.empty() && !ValidHostPort(out.metrics_report.address)) {
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
  out.resources.clusters.assign(resources->clusters().begin(), resources->clusters().end());
  out.resources.endpoints.assign(resources->endpoints().begin(), resources->endpoints().end());
  out.resources.secrets.assign(resources->secrets().begin(), resources->secrets().end());
  return out;
}

absl::StatusOr<BootstrapConfig> LoadBootstrapFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read \"", path, "\": ", std::strerror(errno)));
  }
  std::ostringstream content;
  content << in.rdbuf();
  size_t slash = path.rfind('/');
  std::string base_dir = slash == std::string::npos ? "" : path.substr(0, slash);
  if (slash == 0) base_dir = "/";
  return ParseBootstrap(content.str(), path, base_dir);
}

}  // namespace meshlet::sidecar::config
