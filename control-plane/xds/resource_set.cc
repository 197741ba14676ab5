#include "control-plane/xds/resource_set.h"

#include "absl/strings/str_cat.h"
#include "common/config/yaml_proto.h"

namespace meshlet::controlplane::ads {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t Fnv1a(uint64_t hash, absl::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= kFnvPrime;
  }
  return hash;
}

std::string Hex16(uint64_t value) { return absl::StrCat(absl::Hex(value, absl::kZeroPad16)); }

}  // namespace

absl::string_view TypeUrl(ResourceType type) {
  switch (type) {
    case ResourceType::kSecret:
      return "type.googleapis.com/meshlet.xds.Secret";
    case ResourceType::kCluster:
      return "type.googleapis.com/meshlet.xds.Cluster";
    case ResourceType::kEndpoint:
      return "type.googleapis.com/meshlet.xds.ClusterLoadAssignment";
    case ResourceType::kRoute:
      return "type.googleapis.com/meshlet.xds.RouteConfiguration";
    case ResourceType::kListener:
      return "type.googleapis.com/meshlet.xds.Listener";
  }
  return "";
}

std::optional<ResourceType> ParseTypeUrl(absl::string_view type_url) {
  for (ResourceType type : kPushOrder) {
    if (TypeUrl(type) == type_url) return type;
  }
  return std::nullopt;
}

absl::string_view TypeLabel(ResourceType type) {
  switch (type) {
    case ResourceType::kSecret:
      return "secrets";
    case ResourceType::kCluster:
      return "clusters";
    case ResourceType::kEndpoint:
      return "endpoints";
    case ResourceType::kRoute:
      return "routes";
    case ResourceType::kListener:
      return "listeners";
  }
  return "";
}

std::string HashHex(absl::string_view bytes) { return Hex16(Fnv1a(kFnvOffset, bytes)); }

std::string ResourceVersion(const google::protobuf::Message& resource) {
  return HashHex(config::DeterministicBytes(resource));
}

std::string TypeVersion(const ResourceMap& resources) {
  uint64_t hash = kFnvOffset;
  for (const auto& [name, resource] : resources) {
    hash = Fnv1a(hash, name);
    hash = Fnv1a(hash, absl::string_view("\0", 1));
    hash = Fnv1a(hash, resource->version);
    hash = Fnv1a(hash, "\n");
  }
  return Hex16(hash);
}

NamedResource Pack(std::string name, const google::protobuf::Message& resource) {
  NamedResource out;
  out.name = std::move(name);
  const std::string bytes = config::DeterministicBytes(resource);
  out.version = HashHex(bytes);
  out.resource.set_type_url(absl::StrCat("type.googleapis.com/", resource.GetTypeName()));
  out.resource.set_value(bytes);
  return out;
}

void NodeResourceSet::Add(ResourceType type, std::string name,
                          const google::protobuf::Message& resource) {
  ResourceMap& map = of(type);
  if (map.count(name) > 0) return;
  auto packed = std::make_shared<NamedResource>(Pack(name, resource));
  map.emplace(std::move(name), std::move(packed));
}

}  // namespace meshlet::controlplane::ads
