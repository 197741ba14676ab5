#include "sidecar/config/translate_internal.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/net/address.h"
#include "common/tls/spiffe.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

// `last_identity`: the id of the assignment's previous endpoint that named one, which an endpoint
// naming the same id shares (a Service's endpoints mostly run as one service account).
std::optional<cluster::EndpointConfig> TranslateEndpoint(Errors::Scope& scope,
                                                         const std::string& path,
                                                         const xds::Endpoint& endpoint,
                                                         cluster::EndpointIdentity& last_identity) {
  const size_t before = scope.count();
  cluster::EndpointConfig out;
  absl::StatusOr<net::Address> address = net::Address::Parse(endpoint.address());
  if (!address.ok()) {
    scope.Add(Join(path, "address"), address.status());
  } else if (address->is_ip() && address->port() == 0) {
    scope.Add(Join(path, "address"), absl::StrCat(Quote(endpoint.address()), ": needs a port"));
  } else {
    out.address = *address;
  }
  out.weight = endpoint.weight() == 0 ? 1 : endpoint.weight();
  switch (endpoint.health()) {
    case xds::Endpoint::HEALTHY:
      out.health = cluster::EndpointHealth::kHealthy;
      break;
    case xds::Endpoint::UNHEALTHY:
      out.health = cluster::EndpointHealth::kUnhealthy;
      break;
    case xds::Endpoint::DRAINING:
      out.health = cluster::EndpointHealth::kDraining;
      break;
    default:
      scope.Add(Join(path, "health"), absl::StrCat("unknown value ", endpoint.health()));
  }
  if (!endpoint.identity().empty() && !tls::SpiffeId::Parse(endpoint.identity()).ok()) {
    scope.Add(Join(path, "identity"),
              absl::StrCat(Quote(endpoint.identity()), " is not a SPIFFE id (spiffe://...)"));
  }
  if (endpoint.plaintext() && !endpoint.identity().empty()) {
    scope.Add(Join(path, "plaintext"),
              "excludes identity: a plaintext endpoint presents no identity to check");
  }
  out.tls.plaintext = endpoint.plaintext();
  if (scope.count() != before) return std::nullopt;
  if (!endpoint.identity().empty()) {
    if (last_identity.str() != endpoint.identity()) {
      last_identity =
          cluster::EndpointIdentity(std::make_shared<const std::string>(endpoint.identity()));
    }
    out.tls.identity = last_identity;
  }
  return out;
}

}  // namespace

uint8_t LocalityLevel(const xds::Locality& endpoint, const xds::Locality* own) {
  // Another cluster's (a linked cluster's east-west gateway, ADR 0106): the farthest level. A
  // sidecar that names no cluster is in the one whose endpoints name none.
  if (!endpoint.cluster().empty() &&
      (own == nullptr || own->cluster().empty() || endpoint.cluster() != own->cluster())) {
    return 2;
  }
  // A sidecar that does not know where it runs: every endpoint of its own cluster is as near.
  if (own == nullptr || (own->region().empty() && own->zone().empty())) return 0;
  // An endpoint that names a zone but no region (a Kubernetes EndpointSlice's) is in the
  // caller's zone when the zones match: zone names are unique within a cloud.
  if (!own->zone().empty() && endpoint.zone() == own->zone() &&
      (endpoint.region() == own->region() || endpoint.region().empty())) {
    return 0;
  }
  if (!own->region().empty() && endpoint.region() == own->region()) return 1;
  return 2;
}

std::vector<cluster::EndpointConfig> TranslateEndpoints(
    Errors::Scope& scope, const std::string& path, const xds::ClusterLoadAssignment& assignment,
    const xds::Locality* own, bool node_local) {
  // internalTrafficPolicy: Local: only this node's endpoints (a sidecar that knows no node
  // keeps every one).
  node_local = node_local && own != nullptr && !own->node().empty();
  // Sized once: the snapshot keeps the vector as built (a doubling one holds up to twice the
  // endpoints' room for as long as the cluster is held).
  std::vector<cluster::EndpointConfig> out;
  out.reserve(assignment.endpoints_size());
  absl::flat_hash_map<std::string, size_t> seen;
  cluster::EndpointIdentity last_identity;
  for (int i = 0; i < assignment.endpoints_size(); ++i) {
    const std::string endpoint_path = Index(Join(path, "endpoints"), i);
    const xds::Endpoint& in = assignment.endpoints(i);
    if (node_local && in.locality().node() != own->node()) continue;
    std::optional<cluster::EndpointConfig> endpoint =
        TranslateEndpoint(scope, endpoint_path, in, last_identity);
    if (!endpoint.has_value()) continue;
    endpoint->locality_level = LocalityLevel(in.locality(), own);
    auto [it, inserted] = seen.emplace(endpoint->address.ToString(), i);
    if (!inserted) {
      scope.Add(Join(endpoint_path, "address"),
                absl::StrCat(Quote(assignment.endpoints(i).address()), " duplicates ",
                             Index(Join(path, "endpoints"), it->second)));
      continue;
    }
    out.push_back(*std::move(endpoint));
  }
  return out;
}

std::vector<ResourceList<xds::ClusterLoadAssignment>::Pointer> MatchLoadAssignments(
    SnapshotBuild& build, const ResourceList<xds::Cluster>& clusters,
    const ResourceList<xds::ClusterLoadAssignment>& assignments,
    const absl::flat_hash_map<absl::string_view, size_t>& cluster_index) {
  std::vector<ResourceList<xds::ClusterLoadAssignment>::Pointer> assignment_of(clusters.size());
  absl::flat_hash_map<absl::string_view, size_t> seen;
  seen.reserve(assignments.size());
  for (size_t i = 0; i < assignments.size(); ++i) {
    // By name only: an assignment held as bytes is parsed when its cluster is translated.
    const std::string& name = assignments.name(i);
    if (name.empty()) {
      Errors::Scope(build.errors, Index("endpoints", i)).Add("cluster_name", "must not be empty");
      continue;
    }
    if (!build.Named("cluster_load_assignment", "endpoints", i, name, seen)) continue;
    // Labelled only for an error: most assignments have none.
    auto error = [&](std::string reason) {
      Errors::Scope(build.errors, Label("cluster_load_assignment", name)).Add("", reason);
    };
    auto target = cluster_index.find(name);
    if (target == cluster_index.end()) {
      // A cluster whose name was invalid or duplicated has no index; it was reported already.
      if (!build.memo->cluster_names.contains(name)) {
        error(absl::StrCat("cluster_name ", Quote(name), " names no Cluster"));
      }
      continue;
    }
    if (!clusters.shared(target->second)->facts().eds) {
      error(absl::StrCat("cluster_name ", Quote(name),
                         " names a STATIC cluster; its endpoints belong in its load_assignment"));
      continue;
    }
    assignment_of[target->second] = assignments.shared(i);
  }
  return assignment_of;
}

}  // namespace meshlet::sidecar::config::translate_internal
