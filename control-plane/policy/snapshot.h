#pragma once

// PolicySnapshot: every stored policy resource, parsed, at one store revision. The translator
// reads it; the ADS server keeps one current (LivePolicy, live_policy.h: loaded once with
// LoadPolicySnapshot, then each store change applied to a copy with ApplyPolicyChange) and shares
// it between all nodes it translates for. A copy shares its resources with the original
// (ResourceList), so a change costs the parse of the changed resource and a copy of pointers.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/policy/resource_list.h"
#include "control-plane/store/store.h"
#include "xds/gateway.pb.h"
#include "xds/policy.pb.h"

namespace meshlet::controlplane::policy {

struct PolicySnapshot {
  int64_t revision = 0;  // the store revision it was read at
  // Each list ordered by (namespace, name).
  ResourceList<meshlet::policy::Service> services;
  ResourceList<meshlet::policy::TrafficPolicy> traffic_policies;
  ResourceList<meshlet::policy::HTTPRoute> http_routes;
  ResourceList<meshlet::policy::AuthorizationPolicy> authorization_policies;
  ResourceList<meshlet::policy::RequestAuthentication> request_authentications;
  ResourceList<meshlet::policy::ExternalService> external_services;
  std::optional<meshlet::policy::MeshConfig> mesh_config;  // the one named "mesh", if stored
  // Gateway API kinds (xds/gateway.proto), likewise ordered by (namespace, name).
  ResourceList<meshlet::gateway::HTTPRoute> gateway_http_routes;
  ResourceList<meshlet::gateway::GRPCRoute> grpc_routes;
  ResourceList<meshlet::gateway::ReferenceGrant> reference_grants;
  ResourceList<meshlet::gateway::GatewayClass> gateway_classes;  // cluster-wide: namespace ""
  ResourceList<meshlet::gateway::Gateway> gateways;
  ResourceList<meshlet::gateway::BackendTLSPolicy> backend_tls_policies;

  const meshlet::policy::Service* FindService(absl::string_view namespace_,
                                              absl::string_view name) const;
};

// Reads and parses every policy resource in `store`. A stored resource that no longer parses
// (written by a newer version, damaged by hand) is skipped with a warning rather than blocking
// every push; the result's revision is the store revision its content is exactly from.
absl::StatusOr<PolicySnapshot> LoadPolicySnapshot(const Store& store);

// One store change, parsed (PreparePolicyChange) so that applying it is only a pointer swap.
struct PolicyChange {
  WatchEvent::Type type = WatchEvent::Type::kPut;
  ResourceKey key;
  int64_t revision = 0;
  // For a put: the resource, parsed; null when it does not parse (it is then left out, as
  // LoadPolicySnapshot leaves it out) and for a delete.
  std::shared_ptr<google::protobuf::Message> resource;
};

// `event` as a PolicyChange, or nullopt when its kind is not a policy kind (join tokens, address
// allocations). A body that does not parse is logged (rate-limited) and becomes a removal.
std::optional<PolicyChange> PreparePolicyChange(const WatchEvent& event);

// Applies `change` to `snapshot` (a copy of the current one; the lists stay ordered) and sets its
// revision to the change's if that is later.
void ApplyPolicyChange(const PolicyChange& change, PolicySnapshot& snapshot);

}  // namespace meshlet::controlplane::policy
