#pragma once

// The policy kinds the control plane accepts (xds/policy.proto) and what is common to them: every
// kind is a message with `api_version`, `kind`, `metadata` (ObjectMeta) and `spec`. Kinds are
// found by name, plural or short name, case-insensitively ("HTTPRoute", "httproutes", "hr").

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "xds/policy.pb.h"

namespace google::protobuf {
class Descriptor;
class Message;
}  // namespace google::protobuf

namespace meshlet::controlplane::policy {

inline constexpr absl::string_view kApiGroup = "meshlet.io";
inline constexpr absl::string_view kApiVersion = "meshlet.io/v1";
inline constexpr absl::string_view kDefaultNamespace = "default";
// The only MeshConfig name accepted: there is one per mesh.
inline constexpr absl::string_view kMeshConfigName = "mesh";

struct KindInfo {
  absl::string_view kind;        // "HTTPRoute"
  absl::string_view plural;      // "httproutes" (the API path segment)
  absl::string_view short_name;  // "hr"
  bool namespaced;               // false: cluster-wide (MeshConfig)
  const google::protobuf::Descriptor* descriptor;

  std::unique_ptr<google::protobuf::Message> New() const;
};

const std::vector<KindInfo>& AllKinds();
// By kind, plural, singular lowercase or short name; case-insensitive. Null if unknown.
const KindInfo* FindKind(absl::string_view name);
// "Service, TrafficPolicy, HTTPRoute, AuthorizationPolicy, MeshConfig".
std::string KnownKindNames();

// Accessors for the fields every kind has. `resource` must be one of the kinds' messages.
const meshlet::policy::ObjectMeta& Metadata(const google::protobuf::Message& resource);
meshlet::policy::ObjectMeta* MutableMetadata(google::protobuf::Message& resource);
std::string KindOf(const google::protobuf::Message& resource);
const KindInfo& InfoOf(const google::protobuf::Message& resource);
// Clears what the server sets (metadata.resourceVersion, generation, creationTimestamp, uid, and
// `status` in kinds that have one, such as a Service's allocated addresses): writes ignore
// these fields, and comparisons of what is stored with what is applied leave them out.
void ClearServerSetFields(google::protobuf::Message& resource);

}  // namespace meshlet::controlplane::policy
