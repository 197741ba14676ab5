#pragma once

// The policy kinds the control plane accepts and what is common to them: every kind is a message
// with `api_version`, `kind`, `metadata` (ObjectMeta) and `spec`. meshlet's own kinds
// (xds/policy.proto) are of the API group meshlet.io; the Gateway API kinds (xds/gateway.proto:
// HTTPRoute, GRPCRoute, ReferenceGrant, GatewayClass, Gateway, BackendTLSPolicy) of
// gateway.networking.k8s.io. Two kinds may share a name
// (meshlet's HTTPRoute and the Gateway API's): a document's `apiVersion` tells them apart, and on
// the command line an unqualified name means meshlet's kind ("httproutes", "hr") while a name
// with the group ("httproutes.gateway.networking.k8s.io") names the other, as kubectl does.
// Immutable tables; safe from any thread.

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
inline constexpr absl::string_view kGatewayGroup = "gateway.networking.k8s.io";
// The controllerName of meshlet's GatewayClasses (docs/gateway.md).
inline constexpr absl::string_view kGatewayControllerName = "meshlet.io/gateway-controller";
inline constexpr absl::string_view kDefaultNamespace = "default";
// The only MeshConfig name accepted: there is one per mesh.
inline constexpr absl::string_view kMeshConfigName = "mesh";
// MeshConfig spec.serviceAddressRange when unset: reserved ("future use") space that is never
// routed, so an address from it reaches nothing but the mesh.
inline constexpr absl::string_view kDefaultServiceAddressRange = "240.240.0.0/16";

struct KindInfo {
  absl::string_view kind;        // "HTTPRoute"
  absl::string_view plural;      // "httproutes" (the API path segment)
  absl::string_view short_name;  // "hr"; empty when the kind has none
  bool namespaced;               // false: cluster-wide (MeshConfig)
  const google::protobuf::Descriptor* descriptor;
  absl::string_view group;  // "meshlet.io", "gateway.networking.k8s.io"
  // The versions of `group` a document may name; the first is the one the API serves and
  // stores ("v1"; a ReferenceGrant is served as v1beta1 and accepted as v1 too).
  std::vector<absl::string_view> versions;
  // The kind part of the kind's store keys (ResourceKey::kind): the kind, or for a Gateway API
  // kind "Gateway" + the kind, so both HTTPRoutes have keys of their own.
  absl::string_view store_kind;

  std::unique_ptr<google::protobuf::Message> New() const;
  // "meshlet.io/v1", "gateway.networking.k8s.io/v1beta1": what the API writes.
  std::string ApiVersion() const;
  // Whether a document may name `api_version` ("group/version") for this kind.
  bool AcceptsApiVersion(absl::string_view api_version) const;
  // "gateway.networking.k8s.io/v1beta1 or gateway.networking.k8s.io/v1", for errors.
  std::string AcceptedApiVersions() const;
  // "/apis/meshlet.io/v1": where the API serves the kind.
  std::string ApiPath() const;
  // "httproute.gateway.networking.k8s.io", as kubectl names objects ("<that>/<name>").
  std::string QualifiedName() const;
};

const std::vector<KindInfo>& AllKinds();
// A kind named on the command line or in a URL: by kind, plural, singular lowercase or short
// name, case-insensitive, optionally followed by "." and the group ("httproutes.meshlet.io",
// "HTTPRoute.gateway.networking.k8s.io"). An unqualified name that two groups share means
// meshlet's kind. Null if unknown.
const KindInfo* FindKind(absl::string_view name);
// The kind served at /apis/{group}/{version}/{plural}. Null if none.
const KindInfo* FindServedKind(absl::string_view group, absl::string_view version,
                               absl::string_view plural);
// The kind of a document naming `api_version` and `kind` (exact spelling). An empty
// `api_version` means meshlet's kind of that name, else the only kind of that name. On failure,
// InvalidArgument saying what the document should name: "unknown kind ..." when no group has
// `kind`, else which apiVersion the kind takes.
absl::StatusOr<const KindInfo*> FindDocumentKind(absl::string_view api_version,
                                                 absl::string_view kind);
// The kind whose store keys have `store_kind` (ResourceKey::kind). Null if none.
const KindInfo* FindStoredKind(absl::string_view store_kind);
// "Service, TrafficPolicy, HTTPRoute, ..., HTTPRoute (gateway.networking.k8s.io), GRPCRoute, ..."
std::string KnownKindNames();

// Accessors for the fields every kind has. `resource` must be one of the kinds' messages.
const meshlet::policy::ObjectMeta& Metadata(const google::protobuf::Message& resource);
meshlet::policy::ObjectMeta* MutableMetadata(google::protobuf::Message& resource);
std::string KindOf(const google::protobuf::Message& resource);
const KindInfo& InfoOf(const google::protobuf::Message& resource);
// Clears what the server sets (metadata.resourceVersion, generation, creationTimestamp, uid, and
// `status` in kinds that have one, such as a Service's allocated addresses or a route's
// conditions): writes ignore these fields, and comparisons of what is stored with what is applied
// leave them out.
void ClearServerSetFields(google::protobuf::Message& resource);
// Sets `apiVersion` and `kind` to what the API writes for the resource's kind.
void SetTypeFields(google::protobuf::Message& resource);

}  // namespace meshlet::controlplane::policy
