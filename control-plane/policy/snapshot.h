#pragma once

// PolicySnapshot: every stored policy resource, parsed, at one store revision. The translator
// reads it; the ADS server builds one after store changes (LoadPolicySnapshot) and shares it
// between all nodes it translates for.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/store/store.h"
#include "xds/gateway.pb.h"
#include "xds/policy.pb.h"

namespace meshlet::controlplane::policy {

struct PolicySnapshot {
  int64_t revision = 0;  // the store revision it was read at
  // Each list ordered by (namespace, name).
  std::vector<meshlet::policy::Service> services;
  std::vector<meshlet::policy::TrafficPolicy> traffic_policies;
  std::vector<meshlet::policy::HTTPRoute> http_routes;
  std::vector<meshlet::policy::AuthorizationPolicy> authorization_policies;
  std::optional<meshlet::policy::MeshConfig> mesh_config;  // the one named "mesh", if stored
  // Gateway API kinds (xds/gateway.proto), likewise ordered by (namespace, name).
  std::vector<meshlet::gateway::HTTPRoute> gateway_http_routes;
  std::vector<meshlet::gateway::GRPCRoute> grpc_routes;
  std::vector<meshlet::gateway::ReferenceGrant> reference_grants;

  const meshlet::policy::Service* FindService(absl::string_view namespace_,
                                              absl::string_view name) const;
};

// Reads and parses every policy resource in `store`. A stored resource that no longer parses
// (written by a newer version, damaged by hand) is skipped with a warning rather than blocking
// every push; the result's revision is the store revision its content is exactly from.
absl::StatusOr<PolicySnapshot> LoadPolicySnapshot(const Store& store);

}  // namespace meshlet::controlplane::policy
