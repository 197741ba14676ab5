#pragma once

// Translation of xds resources (protobuf) into a Snapshot of plain C++ structs: the boundary where
// protobuf types stop (design.md §2).
//
// BuildSnapshot() serves both the static configuration file and xDS updates. It validates the
// whole resource set before producing anything, so an update is applied entirely or not at all:
// on error the caller keeps its current snapshot and, for xDS, NACKs with status.message().
//
// Errors are InvalidArgument. Each error names the resource and the field path inside it:
//
//   cluster "backend": connect_timeout: must be greater than 0
//   route_config "local": virtual_hosts[0].routes[2].route.weighted_clusters: weights sum to 0
//   listener "outbound": route_config_name "x" names no RouteConfiguration
//
// A resource without a usable name is named by its position ("listeners[3]: name: must not be
// empty"). Every error found is reported (one per line, the first 20 and a count of the rest), so
// a broken file can be fixed in one pass.
//
// References must resolve inside the set: a route naming a cluster the set does not hold is an
// error (the control plane sends clusters before the routes that name them), as is a listener
// naming a missing route configuration, cluster or secret.
//
// Secrets naming files (certificate_chain_file, ...) are read here, synchronously: call on the
// main thread, never on a worker. Relative paths resolve against the working directory (the
// bootstrap loader makes them relative to the bootstrap file first).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/tracing/tracing_config.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

// One complete set of resources: the static file's, or the state of the world after an update.
struct ResourceSet {
  // The xDS version_info. Empty: BuildSnapshot derives "static-<hash of the resources>".
  std::string version;
  std::vector<xds::Listener> listeners;
  std::vector<xds::RouteConfiguration> routes;
  std::vector<xds::Cluster> clusters;
  std::vector<xds::ClusterLoadAssignment> endpoints;
  std::vector<xds::Secret> secrets;
};

absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(const ResourceSet& resources);

// The valid RetryPolicy.retry_on values, comma-separated, as error messages list them.
absl::string_view ValidRetryOnValues();

// The bootstrap's tracing section (enabled). Errors name the field ("tracing.sampling_percent:
// must be within 0..100"), all of them, separated by "; ". An empty service_name takes
// `default_service_name` (the node's service, else its id), else "meshlet".
absl::StatusOr<tracing::TracingConfig> TranslateTracing(const xds::Bootstrap::Tracing& tracing,
                                                        absl::string_view default_service_name);

}  // namespace meshlet::sidecar::config
