#include "control-plane/xds/resource_set.h"

#include "absl/strings/str_cat.h"
#include "common/config/yaml_proto.h"
#include "xds/version.h"

namespace meshlet::controlplane::ads {

absl::string_view TypeUrl(ResourceType type) {
  return xds::kResourceTypeUrls[static_cast<size_t>(type)];
}

std::optional<ResourceType> ParseTypeUrl(absl::string_view type_url) {
  std::optional<size_t> index = xds::ResourceTypeIndex(type_url);
  if (!index) return std::nullopt;
  return static_cast<ResourceType>(*index);
}

absl::string_view TypeLabel(ResourceType type) {
  return xds::kResourceTypeLabels[static_cast<size_t>(type)];
}

std::string ResourceVersion(const google::protobuf::Message& resource) {
  return xds::ContentVersion(config::DeterministicBytes(resource));
}

std::string TypeVersion(const ResourceMap& resources) {
  xds::TypeVersionHash hash;
  hash.AddEntries(resources.Sum());
  return hash.Hex();
}

NamedResource Pack(std::string name, const google::protobuf::Message& resource) {
  NamedResource out;
  out.name = std::move(name);
  const std::string bytes = config::DeterministicBytes(resource);
  out.version = xds::ContentVersion(bytes);
  out.resource.set_type_url(absl::StrCat("type.googleapis.com/", resource.GetTypeName()));
  out.resource.set_value(bytes);
  return out;
}

void NodeResourceSet::Add(ResourceType type, std::string name,
                          const google::protobuf::Message& resource) {
  ResourceMap& map = of(type);
  if (map.contains(name)) return;
  auto packed = std::make_shared<NamedResource>(Pack(name, resource));
  map.emplace(std::move(name), std::move(packed));
}

absl::string_view KeyResultName(KeyResult result) {
  switch (result) {
    case KeyResult::kFound:
      return "found";
    case KeyResult::kNotFound:
      return "not_found";
    case KeyResult::kRefused:
      return "refused";
    case KeyResult::kMalformed:
      return "malformed";
    case KeyResult::kOverLimit:
      return "over_limit";
  }
  return "unknown";
}

}  // namespace meshlet::controlplane::ads
