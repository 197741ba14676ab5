#pragma once

// The resources one sidecar should run, as the ADS server handles them: per type, named resources
// packed as google.protobuf.Any with a content-hash version each, plus the version of the whole
// type. Plain data, no threads.
//
// Versions are deterministic (docs/xds.md; computed by xds/version.h, which the sidecar uses too):
// a resource's version is FNV-1a 64 over its deterministic protobuf serialization; a type's
// version is FNV-1a 64 over its resources' names and versions in name order. The same resources
// give the same versions in every control-plane process, so a control plane that restarts does not
// re-push what sidecars already have, and a sidecar computes the same type version from the
// per-resource versions of a delta stream.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "control-plane/xds/resource_map.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/message.h"
#include "xds/node.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::ads {

// In push order: every type only names types before it (a listener names route configurations
// and clusters, a ServiceRoute names its route configuration and clusters, a route configuration
// names clusters, an endpoint set names its cluster, a cluster names a secret), so a sidecar that
// validates the whole set never sees a dangling name.
// The values are the positions in xds::kResourceTypeUrls.
enum class ResourceType { kSecret = 0, kCluster, kEndpoint, kRoute, kServiceRoute, kListener };
inline constexpr size_t kResourceTypeCount = xds::kResourceTypeCount;
inline constexpr std::array<ResourceType, kResourceTypeCount> kPushOrder = {
    ResourceType::kSecret, ResourceType::kCluster,      ResourceType::kEndpoint,
    ResourceType::kRoute,  ResourceType::kServiceRoute, ResourceType::kListener};

// "type.googleapis.com/meshlet.xds.Cluster", ...
absl::string_view TypeUrl(ResourceType type);
std::optional<ResourceType> ParseTypeUrl(absl::string_view type_url);
// "secrets", "clusters", "endpoints", "routes", "service_routes", "listeners": metric labels and
// status keys.
absl::string_view TypeLabel(ResourceType type);

struct NamedResource {
  std::string name;
  std::string version;  // 16 hex digits, content hash
  google::protobuf::Any resource;
};

std::string ResourceVersion(const google::protobuf::Message& resource);
// Version of one type's set (xds/version.h): kept by the map as it changes, so O(1).
std::string TypeVersion(const ResourceMap& resources);

NamedResource Pack(std::string name, const google::protobuf::Message& resource);

struct NodeResourceSet;

// What a node's resources are generated for (ads_server.h ResourceGenerator,
// NodeResourceGenerator::Generate).
struct GenerateRequest {
  const xds::Node& node;
  // The stream is incremental: a node with capability on-demand may look Services up on it
  // (ADR 0086), so the translator may serve it the OnDemand mode.
  bool delta = false;
  // The lookup keys (xds/protocol.h) the stream holds on the ServiceRoute type, in the order they
  // were first subscribed; each is answered in NodeResourceSet::key_answers. Views into the
  // caller's storage, valid for the call.
  std::vector<absl::string_view> keys;
  // How many keys the stream has removed so far (TypeSubscription::keys_removed): keys are
  // otherwise only appended, so with the same count the keys of an earlier request are the first
  // of `keys`.
  uint64_t keys_removed = 0;
  // The set the same generator returned for this stream's previous request (null: none kept).
  // A generator that left a basis in it (NodeResourceSet::basis) may take it apart to extend it
  // rather than generate the whole set again, so a lookup costs what it adds, not what the node
  // holds; `*previous` is unspecified afterwards.
  NodeResourceSet* previous = nullptr;
};

// What the generator of a set keeps in it to extend it on the stream's next request
// (GenerateRequest::previous). Opaque to everyone else.
struct GeneratorBasis {
  virtual ~GeneratorBasis() = default;
};

// How a lookup key was answered for one node (meshlet_xds_on_demand_lookups_total{result}).
enum class KeyResult {
  kFound,      // a ServiceRoute of the set answers it
  kNotFound,   // nothing the node may reach answers it
  kRefused,    // something answers it that the node may not discover (its mode, visibility);
               // answered exactly as kNotFound on the wire
  kMalformed,  // not a key a sidecar could send (xds::LookupKeyFor*)
  kOverLimit,  // the node holds as many discovered Services as it may
};
// "found", "not_found", "refused", "malformed", "over_limit".
absl::string_view KeyResultName(KeyResult result);

struct KeyAnswer {
  KeyResult result = KeyResult::kNotFound;
  std::string service_route;  // the ServiceRoute answering it when kFound; empty otherwise
};

// Everything one node gets, per type.
struct NodeResourceSet {
  std::array<ResourceMap, kResourceTypeCount> by_type;
  // Translation warnings, shown by proxy-config.
  std::vector<std::string> warnings;
  // One answer per key of the GenerateRequest (none when it had none).
  std::map<std::string, KeyAnswer, std::less<>> key_answers;
  // How many of the request's first keys are answered exactly as in GenerateRequest::previous
  // (a generator that extended that set); 0 when not known. The push then compares only the
  // keys after them with what the stream last sent, so a change costs what it touches rather
  // than the keys the node holds.
  size_t answers_kept = 0;
  // Set by a generator that can extend this set for the same stream's next request (handed
  // back in GenerateRequest::previous); null otherwise. A copy of the set shares it.
  std::shared_ptr<GeneratorBasis> basis;

  ResourceMap& of(ResourceType type) { return by_type[static_cast<size_t>(type)]; }
  const ResourceMap& of(ResourceType type) const { return by_type[static_cast<size_t>(type)]; }
  // Adds `resource` under `name`; a duplicate name keeps the first.
  void Add(ResourceType type, std::string name, const google::protobuf::Message& resource);
};

// Packs any struct with `listeners`, `routes`, `clusters`, `endpoints` vectors of the xds types
// (and optionally `secrets`, `service_routes` and `warnings`), such as the translator's
// NodeResources.
template <typename Resources>
NodeResourceSet PackNodeResources(const Resources& in) {
  NodeResourceSet out;
  for (const auto& r : in.clusters) out.Add(ResourceType::kCluster, r.name(), r);
  for (const auto& r : in.endpoints) out.Add(ResourceType::kEndpoint, r.cluster_name(), r);
  for (const auto& r : in.routes) out.Add(ResourceType::kRoute, r.name(), r);
  for (const auto& r : in.listeners) out.Add(ResourceType::kListener, r.name(), r);
  if constexpr (requires { in.service_routes; }) {
    for (const auto& r : in.service_routes) out.Add(ResourceType::kServiceRoute, r.name(), r);
  }
  if constexpr (requires { in.secrets; }) {
    for (const auto& r : in.secrets) out.Add(ResourceType::kSecret, r.name(), r);
  }
  if constexpr (requires { in.warnings; }) {
    out.warnings.assign(in.warnings.begin(), in.warnings.end());
  }
  return out;
}

}  // namespace meshlet::controlplane::ads
