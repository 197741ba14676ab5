#pragma once

// The sidecar's static configuration file (--config): an xds Bootstrap message written as YAML or
// JSON, and the command-line flags that complete it. Loading yields the node identity, the static
// resources (to pass to BuildSnapshot()), the xDS server and data directory for the discovery
// client, the tracing and golden-metrics report settings, and the workload CA's address.
//
// The settings come together in one order, so that a flag counts wherever the file would:
//   1. ParseBootstrap / LoadBootstrapFile: the file as written (syntax, field ranges, paths);
//   2. CompleteBootstrap: the flags replace what they set (BootstrapFlags), then every default
//      that depends on another setting is derived from the result (metrics_report.address from
//      xds.address, tracing.service_name from node.service, the CA from xds, ...), then the whole
//      is validated (xDS needs a node id and TLS settings, ...).
// LoadBootstrap does both. A sidecar started by flags alone (--xds, --node-*, no xds block, as
// `./dev demo` starts it and Kubernetes injection will) gets the same defaults as one whose file
// says the same.
//
// Errors name the file, line and field path, as common/config/yaml_proto.h reports them
// ("sidecar.yaml:12:7: static_resources.listeners[0].adress: unknown field; ..."), or the flag
// and field that are missing. Semantic validation of the resources is BuildSnapshot()'s job, so
// a file that parses may still be refused there.
//
// Relative file paths in the file (secrets' *_file fields, clusters' tls.ca_file, xds.ca_file,
// data_dir) are made relative to the directory holding the file, so a configuration directory can
// be moved as a whole; paths given by flags are used as they are. Reads files synchronously: main
// thread only.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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

// The `metrics_report` section (docs/golden-metrics.md). ParseBootstrap fills what the file
// says; CompleteBootstrap derives the rest.
struct MetricsReportConfig {
  bool disabled = false;  // metrics_report.disabled: no reports, whatever else is set
  // "host:port". After parsing: the file's value, empty when unset; after CompleteBootstrap: the
  // file's value, else xds.address (from the file or --xds); empty: no reports.
  std::string address;
  Duration interval = std::chrono::seconds(10);
  // Derived by CompleteBootstrap. With xDS over TLS the reports use the xDS channel's TLS
  // settings (xds.ca_file, --xds-server-identity) and xds.server_name as authority when set;
  // otherwise plaintext h2c with `address` as authority.
  bool xds_tls = false;
  std::string authority;
  // The edge's source service: node.service, else tracing.service_name (tracing on), else
  // node.id.
  std::string service;
};

// The workload certificate's CA (docs/security.md). Not in the file: derived by
// CompleteBootstrap from --ca-address, else the xDS server.
struct CaServerConfig {
  std::string address;    // "host:port"; empty: none known
  std::string authority;  // xds.server_name when the CA is the xDS server and one is set
};

// OTLP/gRPC export to the control plane (tracing.protocol OTLP_GRPC), derived by
// CompleteBootstrap: over the xDS channel's TLS settings (xds.ca_file, --xds-server-identity, the
// workload certificate) unless --xds-plaintext, with xds.server_name as :authority when set (else
// the first collector address).
struct TraceChannelConfig {
  bool tls = false;
  std::string authority;
};

// --trace-collector's value for OTLP/gRPC to the control plane's discovery port.
inline constexpr char kTraceCollectorControlPlane[] = "control-plane";

struct BootstrapConfig {
  xds::Node node;
  ResourceSet resources;  // version left empty: BuildSnapshot derives one
  XdsServerConfig xds;
  std::string data_dir;  // the last good configuration is kept here; empty: not persisted
  // The `tracing` section (docs/tracing.md); `enabled` only when the file has one. After parsing,
  // service_name is empty unless the file sets it; CompleteBootstrap derives it.
  tracing::TracingConfig tracing;
  TraceChannelConfig trace_channel;  // tracing.protocol OTLP_GRPC only
  MetricsReportConfig metrics_report;
  CaServerConfig ca;

  bool has_xds() const { return !xds.address.empty(); }
};

// What the sidecar's command line (sidecar/server/options.h) says about these settings. Empty
// strings and lists leave the file's values.
struct BootstrapFlags {
  std::string xds_address;      // --xds: replaces xds.address
  std::string xds_ca_file;      // --xds-ca: replaces xds.ca_file
  std::string xds_server_name;  // --xds-server-name: replaces xds.server_name
  bool xds_plaintext = false;   // --xds-plaintext: xDS (and what shares its channel) over h2c
  std::string data_dir;         // --xds-cache-dir: replaces data_dir
  std::string node_id;          // --node-id, --node-service, ...: replace the node's fields
  std::string node_service;
  std::string node_namespace;
  std::string node_service_account;
  std::vector<std::string> node_locality;  // region, zone[, node]: replaces node.locality
  std::vector<std::pair<std::string, std::string>> node_labels;  // set over node.labels
  std::vector<std::string> node_addresses;                       // added to node.addresses
  std::vector<uint32_t> node_ports;                              // added to node.ports
  std::string ca_address;  // --ca-address; empty: the xDS server
  // A CA credential was given (--join-token-file, --kubernetes-token-file): the workload
  // certificate needs an identity (node namespace and service account) and a CA address.
  bool workload_certificate = false;
  // --trace-collector: tracing on, OTLP/HTTP (protobuf) to this HOST:PORT, or OTLP/gRPC to the
  // xDS server with kTraceCollectorControlPlane, replacing the file's
  // tracing.collector_address and protocol; --trace-sampling replaces sampling_percent (and needs
  // tracing on, from the file or --trace-collector).
  std::string trace_collector;
  std::optional<double> trace_sampling;
};

// Step 2 above: applies `flags` to `parsed` (ParseBootstrap's result, or a default
// BootstrapConfig without a file), derives the defaults that depend on other settings, and
// validates the whole.
// The :authority for calls to a control plane given as "host:port[,host:port...]": the first entry
// (with several replicas the server is checked by its SPIFFE id, not by this name).
std::string FirstHostPort(absl::string_view host_ports);

absl::StatusOr<BootstrapConfig> CompleteBootstrap(BootstrapConfig parsed,
                                                  const BootstrapFlags& flags);

// LoadBootstrapFile(path) (nothing when `path` is empty), then CompleteBootstrap.
absl::StatusOr<BootstrapConfig> LoadBootstrap(const std::string& path, const BootstrapFlags& flags);

// Reads and parses `path`: the file as written, defaults that depend on other settings not yet
// derived (CompleteBootstrap does that).
absl::StatusOr<BootstrapConfig> LoadBootstrapFile(const std::string& path);

// Parses bootstrap text. `source_name` leads parse errors (usually the file path); relative paths
// resolve against `base_dir` (empty: left as they are).
absl::StatusOr<BootstrapConfig> ParseBootstrap(absl::string_view text,
                                               const std::string& source_name,
                                               const std::string& base_dir);

}  // namespace meshlet::sidecar::config
