#pragma once

// The sidecar's static configuration file (--config): an xds Bootstrap message written as YAML or
// JSON. Loading it yields the node identity, the static resources (to pass to BuildSnapshot()),
// and the xDS server and data directory settings for the discovery client.
//
// Errors name the file, line and field path, as common/config/yaml_proto.h reports them
// ("sidecar.yaml:12:7: static_resources.listeners[0].adress: unknown field; ..."). Semantic
// validation of the resources is BuildSnapshot()'s job, so a file that parses may still be
// refused there.
//
// Relative file paths in the file (secrets' *_file fields, clusters' tls.ca_file, xds.ca_file,
// data_dir) are made relative to the directory holding the file, so a configuration directory can
// be moved as a whole. Reads files synchronously: main thread only.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "sidecar/config/translate.h"
#include "xds/node.pb.h"

namespace meshlet::sidecar::config {

// Where the discovery client connects; empty address: static configuration only.
struct XdsServerConfig {
  std::string address;      // "host:port"
  std::string ca_file;      // verifies the server; empty: the secret's trust bundle / system CAs
  std::string server_name;  // SNI and the name verified; empty: the host part of address
};

// The `metrics_report` section (docs/golden-metrics.md).
struct MetricsReportConfig {
  std::string address;  // "host:port"; empty: no reports
  Duration interval = std::chrono::seconds(10);
};

struct BootstrapConfig {
  xds::Node node;
  ResourceSet resources;  // version left empty: BuildSnapshot derives one
  XdsServerConfig xds;
  std::string data_dir;  // the last good configuration is kept here; empty: not persisted
  // The `tracing` section (docs/tracing.md); `enabled` only when the file has one.
  tracing::TracingConfig tracing;
  MetricsReportConfig metrics_report;

  bool has_xds() const { return !xds.address.empty(); }
};

// Reads and parses `path`.
absl::StatusOr<BootstrapConfig> LoadBootstrapFile(const std::string& path);

// Parses bootstrap text. `source_name` leads parse errors (usually the file path); relative paths
// resolve against `base_dir` (empty: left as they are).
absl::StatusOr<BootstrapConfig> ParseBootstrap(absl::string_view text,
                                               const std::string& source_name,
                                               const std::string& base_dir);

}  // namespace meshlet::sidecar::config
