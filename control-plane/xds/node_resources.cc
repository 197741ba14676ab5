#include "control-plane/xds/node_resources.h"

#include <utility>

namespace meshlet::controlplane::ads {

struct NodeResourceGenerator::Outbound {
  NodeResourceSet resources;
};

NodeResourceGenerator::NodeResourceGenerator(translate::TranslateOptions options)
    : options_(std::move(options)) {}

NodeResourceGenerator::~NodeResourceGenerator() = default;

void NodeResourceGenerator::SetOptions(translate::TranslateOptions options) {
  options_ = std::move(options);
  mesh_ = nullptr;
}

void NodeResourceGenerator::StartGeneration(
    std::shared_ptr<const policy::PolicySnapshot> policy,
    std::shared_ptr<const registry::RegistrySnapshot> registry) {
  policy_revision_ = policy->revision;
  registry_version_ = registry->version;
  mesh_ =
      std::make_unique<translate::MeshTranslator>(std::move(policy), std::move(registry), options_);
  outbound_.clear();
  // What the last generation packed stays available for reuse; older ones are dropped (the ADS
  // server keeps its own references to whatever sidecars still hold).
  previous_ = std::move(current_);
  for (auto& by_name : current_) by_name.clear();
  ++stats_.generations;
}

ResourcePtr NodeResourceGenerator::Reuse(ResourceType type, ResourcePtr fresh) {
  const size_t index = static_cast<size_t>(type);
  const std::pair<std::string, std::string> key{fresh->name, fresh->version};
  if (auto it = current_[index].find(key); it != current_[index].end()) {
    if (it->second->resource.value() == fresh->resource.value()) return it->second;
  }
  if (auto it = previous_[index].find(key); it != previous_[index].end()) {
    // The version is a 64-bit hash: compare the bytes before sharing.
    if (it->second->resource.value() == fresh->resource.value()) {
      ++stats_.resources_reused;
      current_[index].emplace(key, it->second);
      return it->second;
    }
  }
  current_[index].emplace(key, fresh);
  return fresh;
}

std::shared_ptr<const NodeResourceGenerator::Outbound> NodeResourceGenerator::BuildOutbound(
    const xds::Node& node) {
  auto out = std::make_shared<Outbound>();
  out->resources = PackNodeResources(mesh_->TranslateOutbound(node));
  for (ResourceType type : kPushOrder) {
    for (auto& [name, resource] : out->resources.of(type)) resource = Reuse(type, resource);
  }
  ++stats_.outbound_builds;
  return out;
}

NodeResourceSet NodeResourceGenerator::Generate(
    std::shared_ptr<const policy::PolicySnapshot> policy,
    std::shared_ptr<const registry::RegistrySnapshot> registry, const xds::Node& node) {
  if (mesh_ == nullptr || policy->revision != policy_revision_ ||
      registry->version != registry_version_) {
    StartGeneration(std::move(policy), std::move(registry));
  }
  const std::string key = mesh_->OutboundKey(node);
  std::shared_ptr<const Outbound>& shared = outbound_[key];
  if (shared == nullptr) {
    shared = BuildOutbound(node);
  } else {
    ++stats_.outbound_shared;
  }
  NodeResourceSet out = PackNodeResources(mesh_->TranslateLocal(node));
  for (ResourceType type : kPushOrder) {
    // Local names ("inbound", "inbound|PORT", listeners) never collide with outbound ones.
    for (const auto& [name, resource] : shared->resources.of(type)) {
      out.of(type).emplace(name, resource);
    }
  }
  // The translator's order: the outbound part's warnings, then the node's own.
  std::vector<std::string> warnings = shared->resources.warnings;
  warnings.insert(warnings.end(), out.warnings.begin(), out.warnings.end());
  out.warnings = std::move(warnings);
  return out;
}

}  // namespace meshlet::controlplane::ads
