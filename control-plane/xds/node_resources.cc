#include "control-plane/xds/node_resources.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "google/protobuf/util/message_differencer.h"

namespace meshlet::controlplane::ads {

struct NodeResourceGenerator::Outbound {
  NodeResourceSet resources;
  // Each outbound cluster by name, where it comes from, by service: what an endpoint change of
  // the service translates again. The same for every part updated from this one (an update
  // changes no cluster's origin), so shared with them.
  using ClustersByService = std::map<translate::MeshTranslator::ServiceName,
                                     std::vector<std::pair<std::string, translate::ClusterOrigin>>>;
  std::shared_ptr<const ClustersByService> clusters_by_service;
  // A merge of Service parts (a node that reads ServiceRoutes): the parts, by Service, the
  // common part under kCommonPart.
  std::optional<Parts> parts;
  std::string variant;
};

// One Service's part in one variant, packed (MeshTranslator::TranslateServicePart), or the
// variant's common part. Immutable once shared.
struct NodeResourceGenerator::Part {
  NodeResourceSet resources;
  // Its outbound clusters and where each comes from.
  std::vector<std::pair<std::string, translate::ClusterOrigin>> clusters;
  // The services those clusters' assignments hold the members of.
  std::set<ServiceName> reads;
};

// What an OnDemand node's set carries to be extended on its stream's next request.
struct NodeResourceGenerator::Basis : GeneratorBasis {
  const NodeResourceGenerator* generator = nullptr;
  uint64_t generation = 0;  // Stats::generations when made or last extended
  xds::Node node;
  bool delta = false;
  // How many keys the set answers, and how many the stream had removed then
  // (GenerateRequest::keys_removed): with no removal since, they are the request's first keys.
  size_t keys = 0;
  uint64_t keys_removed = 0;
  std::set<ServiceName> discovered;
  // The Services it is pushed without keys (MeshTranslator::BaseSet), and its parts' variant.
  std::vector<ServiceName> base;
  std::string variant;
  // The parts merged, by Service, the common part under CommonPart().
  Parts parts;
  // The node's own resources (TranslateLocal) by type, by name, and how many of the set's
  // warnings come before the node's own.
  std::array<std::vector<std::string>, kResourceTypeCount> local;
  size_t outbound_warnings = 0;
};

namespace {

// The key of a variant's common part among its Service parts (no Service has an empty name).
const translate::MeshTranslator::ServiceName& CommonPart() {
  static const auto* key = new translate::MeshTranslator::ServiceName();
  return *key;
}

}  // namespace

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
  auto next = std::make_unique<translate::MeshTranslator>(std::move(policy), std::move(registry),
                                                          options_, mesh_.get());
  const translate::MeshTranslator::IndexStats index = next->index_stats();
  stats_.services_indexed += index.services_built;
  stats_.services_shared += index.services_shared;
  stats_.index_members_built += index.members_built;
  changed_.reset();
  previous_outbound_.clear();
  // Stale parts no node took again are dropped, and leave the index.
  for (const auto& [variant, parts] : stale_parts_) {
    for (const auto& [service, part] : parts) IndexReads(variant, service, *part, /*add=*/false);
  }
  stale_parts_.clear();
  stale_names_.clear();
  if (mesh_ != nullptr) {
    size_t compared = 0;
    changed_ = next->MemberChangesSince(*mesh_, &compared);
    stats_.services_compared += compared;
    if (changed_) {
      next->KeepLookupTables(*mesh_);
      ++stats_.lookup_tables_kept;
    }
  }
  mesh_ = std::move(next);
  ++stats_.generations;
  // What the last generation packed stays available for reuse; older ones are dropped (the ADS
  // server keeps its own references to whatever sidecars still hold).
  previous_ = std::move(current_);
  for (auto& by_name : current_) by_name.clear();
  if (!changed_) {
    // Service parts may have been kept across several generations: what they hold is reusable
    // too. Every part is translated again in this generation.
    for (const auto& [variant, parts] : parts_) {
      for (const auto& [service, part] : parts) {
        for (ResourceType type : kPushOrder) {
          const size_t t = static_cast<size_t>(type);
          for (const auto& [name, resource] : part->resources.of(type)) {
            previous_[t].emplace(KeyOf(*resource), resource);
          }
        }
      }
    }
    parts_.clear();
    readers_.clear();
  } else {
    // Only the parts reading a changed service are translated again (UpdatePart); the others
    // stay as they are, pointers and all. The index names them: the parts the nodes hold
    // otherwise are not visited.
    for (const ServiceName& changed : *changed_) {
      auto readers = readers_.find(changed);
      if (readers == readers_.end()) continue;
      for (const auto& [variant, service] : readers->second) {
        ++stats_.parts_examined;
        auto parts = parts_.find(variant);
        if (parts == parts_.end()) continue;
        auto it = parts->second.find(service);
        if (it == parts->second.end() || it->second == nullptr) continue;
        stale_names_[variant].insert(service);
        stale_parts_[variant].insert(parts->second.extract(it));
      }
    }
  }
  if (changed_) {
    // Parts are updated from the previous generation's, whose resources are this generation's
    // too until replaced: a part built in full now (a node whose key the last generation did
    // not serve) shares them. Only the parts carried over are kept, so the maps hold what live
    // parts hold, however many endpoint changes go by without a full generation.
    previous_outbound_ = std::move(outbound_);
    outbound_.clear();
    // Each entry moves from the last generation's map when it is there (no allocation), and a
    // part's resources come in key order (the hint makes each insertion constant time).
    for (const auto& [key, part] : previous_outbound_) {
      // A merge of Service parts holds nothing the parts do not: they are kept as they are.
      if (part->parts) continue;
      for (ResourceType type : kPushOrder) {
        const size_t t = static_cast<size_t>(type);
        for (const auto& [name, resource] : part->resources.of(type)) {
          auto entry = previous_[t].find(KeyOf(*resource));
          if (entry != previous_[t].end() && entry->second == resource) {
            current_[t].insert(current_[t].end(), previous_[t].extract(entry));
          } else {
            current_[t].emplace_hint(current_[t].end(), KeyOf(*resource), resource);
          }
        }
      }
    }
    ++stats_.member_only_generations;
    return;
  }
  outbound_.clear();
}

ResourcePtr NodeResourceGenerator::Reuse(ResourceType type, ResourcePtr fresh) {
  const size_t index = static_cast<size_t>(type);
  // Views into `fresh`: an entry stored under it must hold `fresh` itself.
  const ReuseKey key = KeyOf(*fresh);
  if (auto it = current_[index].find(key); it != current_[index].end()) {
    if (it->second->resource.value() == fresh->resource.value()) return it->second;
  }
  if (auto it = previous_[index].find(key); it != previous_[index].end()) {
    // The version is a 64-bit hash: compare the bytes before sharing.
    if (it->second->resource.value() == fresh->resource.value()) {
      ++stats_.resources_reused;
      current_[index].emplace(KeyOf(*it->second), it->second);
      return it->second;
    }
  }
  current_[index].emplace(key, fresh);
  return fresh;
}

void NodeResourceGenerator::AddOutbound(const translate::NodeResources& resources, Outbound& out) {
  stats_.clusters_translated += resources.clusters.size();
  stats_.assignments_translated += resources.endpoints.size();
  const NodeResourceSet packed = PackNodeResources(resources);
  for (ResourceType type : kPushOrder) {
    for (const auto& [name, resource] : packed.of(type)) {
      out.resources.of(type).insert_or_assign(name, Reuse(type, resource));
    }
  }
}

std::shared_ptr<const NodeResourceGenerator::Outbound> NodeResourceGenerator::BuildOutbound(
    const translate::NodeInput& node) {
  auto out = std::make_shared<Outbound>();
  std::map<std::string, translate::ClusterOrigin> origins;
  const translate::NodeResources resources = mesh_->TranslateOutbound(node, &origins);
  AddOutbound(resources, *out);
  stats_.oversized_service_routes += resources.oversized_service_routes;
  out->resources.warnings = resources.warnings;
  auto by_service = std::make_shared<Outbound::ClustersByService>();
  for (auto& [name, origin] : origins) {
    (*by_service)[origin.service].emplace_back(name, std::move(origin));
  }
  out->clusters_by_service = std::move(by_service);
  ++stats_.outbound_builds;
  return out;
}

std::shared_ptr<const NodeResourceGenerator::Outbound> NodeResourceGenerator::UpdateOutbound(
    std::shared_ptr<const Outbound>& previous, const translate::NodeInput& node) {
  std::vector<std::string> names;
  std::vector<translate::ClusterOrigin> origins;
  for (const auto& service : *changed_) {
    auto it = previous->clusters_by_service->find(service);
    if (it == previous->clusters_by_service->end()) continue;
    for (const auto& [name, origin] : it->second) {
      names.push_back(name);
      origins.push_back(origin);
    }
  }
  std::optional<translate::NodeResources> fresh = mesh_->TranslateClusters(node, origins);
  if (!fresh) return nullptr;
  // Shares the unchanged resources (pointers, not their bytes) with the previous part. That part
  // is not needed once updated: when nothing else holds it, its maps are taken rather than
  // copied (every part is made here as a mutable object and only shared as const).
  std::shared_ptr<Outbound> out = previous.use_count() == 1
                                      ? std::const_pointer_cast<Outbound>(std::move(previous))
                                      : std::make_shared<Outbound>(*previous);
  std::array<std::vector<ResourcePtr>, kResourceTypeCount> replaced;
  for (const std::string& name : names) {
    for (ResourceType type : {ResourceType::kCluster, ResourceType::kEndpoint}) {
      auto old = out->resources.of(type).find(name);
      if (old == out->resources.of(type).end()) continue;
      replaced[static_cast<size_t>(type)].push_back(old->second);
      out->resources.of(type).erase(old);
    }
  }
  AddOutbound(*fresh, *out);
  // The reuse maps forget the versions replaced (the ADS server keeps what it still sends), so
  // they do not grow with every endpoint change.
  for (ResourceType type : {ResourceType::kCluster, ResourceType::kEndpoint}) {
    const size_t t = static_cast<size_t>(type);
    for (const ResourcePtr& old : replaced[t]) {
      const ResourcePtr* now = out->resources.of(type).Get(old->name);
      if (now != nullptr && *now == old) continue;
      for (auto* reuse : {&current_[t], &previous_[t]}) {
        auto entry = reuse->find(KeyOf(*old));
        if (entry != reuse->end() && entry->second == old) reuse->erase(entry);
      }
    }
  }
  ++stats_.outbound_updates;
  return out;
}

NodeResourceSet NodeResourceGenerator::Generate(
    std::shared_ptr<const policy::PolicySnapshot> policy,
    std::shared_ptr<const registry::RegistrySnapshot> registry, const GenerateRequest& request) {
  if (mesh_ == nullptr || policy->revision != policy_revision_ ||
      registry->version != registry_version_) {
    StartGeneration(std::move(policy), std::move(registry));
  }
  if (std::optional<NodeResourceSet> extended = Extend(request)) return std::move(*extended);
  std::set<ServiceName> discovered;
  std::map<std::string, KeyAnswer, std::less<>> answers;
  AnswerKeys(translate::NodeInput(request.node, request.delta), request.keys, answers, discovered);
  const translate::NodeInput node(request.node, request.delta, &discovered);
  // A node that discovered Services holds a set of its own: its merge is not kept for others
  // (one per key set would grow with every lookup; Extend grows the node's own set instead).
  const bool own = !discovered.empty() && mesh_->SplitsOutbound(node);
  std::shared_ptr<const Outbound> mine;
  const std::string key = own ? std::string() : mesh_->OutboundKey(node);
  std::shared_ptr<const Outbound>& shared = own ? mine : outbound_[key];
  if (own) {
    shared = MergeParts(node, nullptr);
  } else if (shared == nullptr) {
    auto previous = previous_outbound_.find(key);
    const bool carried =
        changed_ && previous != previous_outbound_.end() && previous->second != nullptr;
    if (mesh_->SplitsOutbound(node)) {
      shared = MergeParts(node, carried ? std::move(previous->second) : nullptr);
    } else {
      if (carried) shared = UpdateOutbound(previous->second, node);
      if (shared == nullptr) shared = BuildOutbound(node);
    }
  } else {
    ++stats_.outbound_shared;
  }
  NodeResourceSet local = PackNodeResources(mesh_->TranslateLocal(node));
  NodeResourceSet out;
  for (ResourceType type : kPushOrder) {
    // A copy of the shared part's tree (no comparisons; the node's own merge is taken), then the
    // few local resources. Local names ("inbound", "inbound|PORT", listeners) never collide with
    // outbound ones but the trust bundle, which both parts carry alike.
    if (own) {
      out.of(type) = std::move(std::const_pointer_cast<Outbound>(mine)->resources.of(type));
    } else {
      out.of(type) = shared->resources.of(type);
    }
    for (auto& [name, resource] : local.of(type)) {
      out.of(type).insert_or_assign(name, std::move(resource));
    }
  }
  // The translator's order: the outbound part's warnings, then the node's own.
  out.warnings = shared->resources.warnings;
  out.warnings.insert(out.warnings.end(), local.warnings.begin(), local.warnings.end());
  // A found key's ServiceRoute is among the node's resources by construction (Resolve's
  // invariant); should it not be, the key is answered missing rather than with a name the
  // sidecar would never receive.
  const ResourceMap& service_routes = out.of(ResourceType::kServiceRoute);
  for (auto& [name, answer] : answers) {
    if (answer.result == KeyResult::kFound && !service_routes.contains(answer.service_route)) {
      answer = KeyAnswer{.result = KeyResult::kNotFound};
    }
  }
  out.key_answers = std::move(answers);
  // What the next lookup of this node extends.
  if (shared->parts && mesh_->Mode(node) == translate::DiscoveryMode::kOnDemand) {
    auto basis = std::make_shared<Basis>();
    basis->generator = this;
    basis->generation = stats_.generations;
    basis->node = request.node;
    basis->delta = request.delta;
    basis->keys = request.keys.size();
    basis->keys_removed = request.keys_removed;
    basis->discovered = std::move(discovered);
    basis->base = mesh_->BaseSet(translate::NodeInput(request.node, request.delta));
    basis->variant = shared->variant;
    // The node's own merge is taken, a shared one copied (pointers to the parts).
    basis->parts =
        own ? std::move(*std::const_pointer_cast<Outbound>(mine)->parts) : *shared->parts;
    for (ResourceType type : kPushOrder) {
      for (const auto& [name, resource] : local.of(type)) {
        basis->local[static_cast<size_t>(type)].push_back(name);
      }
    }
    basis->outbound_warnings = shared->resources.warnings.size();
    out.basis = std::move(basis);
  }
  return out;
}

std::optional<NodeResourceSet> NodeResourceGenerator::Extend(const GenerateRequest& request) {
  if (request.previous == nullptr) return std::nullopt;
  auto* basis = dynamic_cast<Basis*>(request.previous->basis.get());
  if (basis == nullptr || basis->generator != this || basis->delta != request.delta) {
    return std::nullopt;
  }
  // This generation, or the one before when this one changed members only (its parts are then
  // replaced below, as MergeParts replaces them in a merge carried over).
  if (basis->generation != stats_.generations &&
      !(changed_ && basis->generation + 1 == stats_.generations)) {
    return std::nullopt;
  }
  if (request.keys_removed != basis->keys_removed || request.keys.size() < basis->keys) {
    return std::nullopt;
  }
  if (!google::protobuf::util::MessageDifferencer::Equals(basis->node, request.node)) {
    return std::nullopt;
  }
  {
    // What the node is served besides its keys may change with its registration (labels).
    const translate::NodeInput node(request.node, request.delta, &basis->discovered);
    if (mesh_->Mode(node) != translate::DiscoveryMode::kOnDemand || !mesh_->SplitsOutbound(node) ||
        mesh_->PartVariant(node) != basis->variant ||
        mesh_->BaseSet(translate::NodeInput(request.node, request.delta)) != basis->base) {
      return std::nullopt;
    }
  }
  NodeResourceSet out = std::move(*request.previous);
  // A copy of the set shares its basis: extend a copy of that.
  std::shared_ptr<GeneratorBasis> owned = std::move(out.basis);
  if (owned.use_count() > 1) owned = std::make_shared<Basis>(*basis);
  Basis& b = static_cast<Basis&>(*owned);
  const translate::NodeInput node(request.node, request.delta, &b.discovered);
  bool warnings_changed = false;
  auto has_warnings = [](const std::shared_ptr<const Part>& part) {
    return !part->resources.warnings.empty();
  };
  if (b.generation != stats_.generations) {
    const std::vector<std::shared_ptr<const Part>> replaced =
        ReplaceStaleParts(node, b.variant, b.parts, out);
    // A replaced part's warnings may differ from the old one's (it may have had some).
    warnings_changed = !replaced.empty();
    b.generation = stats_.generations;
  }
  // The new keys alone; those answered before keep their answers (the same inputs but members).
  std::vector<ServiceName> added;
  AnswerKeys(translate::NodeInput(request.node, request.delta),
             absl::MakeConstSpan(request.keys).subspan(b.keys), out.key_answers, b.discovered,
             &added);
  for (const ServiceName& service : added) {
    std::shared_ptr<const Part> part = GetPart(node, b.variant, service);
    MergePart(*part, out);
    warnings_changed = warnings_changed || has_warnings(part);
    b.parts.insert_or_assign(service, std::move(part));
  }
  // The node's own part, translated again: what went is dropped (the trust bundle, which the
  // common part carries alike, is the common part's again), what is new put in.
  NodeResourceSet local = PackNodeResources(mesh_->TranslateLocal(node));
  const Part& common = *b.parts.at(CommonPart());
  for (ResourceType type : kPushOrder) {
    const size_t t = static_cast<size_t>(type);
    ResourceMap& map = out.of(type);
    for (const std::string& name : b.local[t]) {
      if (local.of(type).contains(name)) continue;
      map.erase(name);
      if (auto it = common.resources.of(type).find(name); it != common.resources.of(type).end()) {
        map.emplace(name, it->second);
      }
    }
    b.local[t].clear();
    for (auto& [name, resource] : local.of(type)) {
      b.local[t].push_back(name);
      map.insert_or_assign(name, std::move(resource));
    }
  }
  // The translator's order: the parts' warnings (by Service), then the node's own.
  if (warnings_changed) {
    out.warnings.clear();
    for (const auto& [service, part] : b.parts) {
      out.warnings.insert(out.warnings.end(), part->resources.warnings.begin(),
                          part->resources.warnings.end());
    }
    b.outbound_warnings = out.warnings.size();
  } else {
    out.warnings.resize(b.outbound_warnings);
  }
  out.warnings.insert(out.warnings.end(), local.warnings.begin(), local.warnings.end());
  // The new keys' answers checked as Generate checks them.
  const ResourceMap& service_routes = out.of(ResourceType::kServiceRoute);
  for (size_t i = b.keys; i < request.keys.size(); ++i) {
    auto answer = out.key_answers.find(request.keys[i]);
    if (answer->second.result == KeyResult::kFound &&
        !service_routes.contains(answer->second.service_route)) {
      answer->second = KeyAnswer{.result = KeyResult::kNotFound};
    }
  }
  out.answers_kept = b.keys;
  b.keys = request.keys.size();
  out.basis = std::move(owned);
  ++stats_.sets_extended;
  return out;
}

void NodeResourceGenerator::MergePart(const Part& part, NodeResourceSet& resources) {
  for (ResourceType type : kPushOrder) {
    ResourceMap& map = resources.of(type);
    for (const auto& [name, resource] : part.resources.of(type)) {
      map.insert_or_assign(name, resource);
      ++stats_.resources_merged;
    }
  }
}

std::shared_ptr<const NodeResourceGenerator::Part> NodeResourceGenerator::BuildPart(
    const translate::NodeInput& node, const ServiceName& service) {
  auto part = std::make_shared<Part>();
  std::map<std::string, translate::ClusterOrigin> origins;
  const translate::NodeResources resources =
      service == CommonPart() ? mesh_->TranslateCommonPart(node)
                              : mesh_->TranslateServicePart(node, service, &origins);
  stats_.clusters_translated += resources.clusters.size();
  stats_.assignments_translated += resources.endpoints.size();
  stats_.oversized_service_routes += resources.oversized_service_routes;
  const NodeResourceSet packed = PackNodeResources(resources);
  for (ResourceType type : kPushOrder) {
    for (const auto& [name, resource] : packed.of(type)) {
      part->resources.of(type).emplace(name, Reuse(type, resource));
    }
  }
  part->resources.warnings = resources.warnings;
  for (auto& [name, origin] : origins) {
    part->reads.insert(origin.service);
    part->clusters.emplace_back(name, std::move(origin));
  }
  ++stats_.parts_built;
  return part;
}

std::shared_ptr<const NodeResourceGenerator::Part> NodeResourceGenerator::UpdatePart(
    const Part& previous, const translate::NodeInput& node) {
  std::vector<translate::ClusterOrigin> origins;
  for (const auto& [name, origin] : previous.clusters) {
    if (changed_->contains(origin.service)) origins.push_back(origin);
  }
  std::optional<translate::NodeResources> fresh = mesh_->TranslateClusters(node, origins);
  if (!fresh) return nullptr;
  stats_.clusters_translated += fresh->clusters.size();
  stats_.assignments_translated += fresh->endpoints.size();
  auto part = std::make_shared<Part>(previous);
  const NodeResourceSet packed = PackNodeResources(*fresh);
  for (ResourceType type : {ResourceType::kCluster, ResourceType::kEndpoint}) {
    ResourceMap& mine = part->resources.of(type);
    for (const auto& [name, resource] : packed.of(type)) {
      // An unchanged resource keeps its pointer (a cluster whose members changed is the same
      // Cluster; only its assignment differs).
      const ResourcePtr* old = mine.Get(name);
      if (old != nullptr && (*old)->version == resource->version &&
          (*old)->resource.value() == resource->resource.value()) {
        continue;
      }
      mine.insert_or_assign(name, Reuse(type, resource));
    }
  }
  ++stats_.parts_updated;
  return part;
}

std::shared_ptr<const NodeResourceGenerator::Part> NodeResourceGenerator::GetPart(
    const translate::NodeInput& node, const std::string& variant, const ServiceName& service) {
  std::shared_ptr<const Part>& part = parts_[variant][service];
  if (part != nullptr) {
    ++stats_.parts_shared;
    return part;
  }
  if (auto stale = stale_parts_.find(variant); stale != stale_parts_.end()) {
    if (auto it = stale->second.find(service); it != stale->second.end()) {
      // An updated part reads what the stale one read: it keeps its place in the index.
      part = UpdatePart(*it->second, node);
      if (part == nullptr) IndexReads(variant, service, *it->second, /*add=*/false);
      stale->second.erase(it);
    }
  }
  if (part == nullptr) {
    part = BuildPart(node, service);
    IndexReads(variant, service, *part, /*add=*/true);
  }
  return part;
}

void NodeResourceGenerator::IndexReads(const std::string& variant, const ServiceName& service,
                                       const Part& part, bool add) {
  for (const ServiceName& read : part.reads) {
    if (add) {
      readers_[read].emplace(variant, service);
      continue;
    }
    auto it = readers_.find(read);
    if (it == readers_.end()) continue;
    it->second.erase(PartId(variant, service));
    if (it->second.empty()) readers_.erase(it);
  }
}

std::shared_ptr<const NodeResourceGenerator::Outbound> NodeResourceGenerator::MergeParts(
    const translate::NodeInput& node, std::shared_ptr<const Outbound> previous) {
  std::shared_ptr<Outbound> out;
  if (previous != nullptr && previous->parts) {
    // The same Services as last generation (the key lists them): only the parts replaced since
    // change.
    out = previous.use_count() == 1 ? std::const_pointer_cast<Outbound>(std::move(previous))
                                    : std::make_shared<Outbound>(*previous);
    if (!ReplaceStaleParts(node, out->variant, *out->parts, out->resources).empty()) {
      out->resources.warnings.clear();
      for (const auto& [service, part] : *out->parts) {
        out->resources.warnings.insert(out->resources.warnings.end(),
                                       part->resources.warnings.begin(),
                                       part->resources.warnings.end());
      }
    }
    ++stats_.outbound_updates;
    return out;
  }
  out = std::make_shared<Outbound>();
  out->variant = mesh_->PartVariant(node);
  out->parts.emplace();
  out->parts->emplace(CommonPart(), GetPart(node, out->variant, CommonPart()));
  for (const ServiceName& service : mesh_->BaseSet(node)) {
    out->parts->emplace(service, GetPart(node, out->variant, service));
  }
  for (const auto& [service, part] : *out->parts) {
    MergePart(*part, out->resources);
    out->resources.warnings.insert(out->resources.warnings.end(), part->resources.warnings.begin(),
                                   part->resources.warnings.end());
  }
  ++stats_.outbound_builds;
  return out;
}

std::vector<std::shared_ptr<const NodeResourceGenerator::Part>>
NodeResourceGenerator::ReplaceStaleParts(const translate::NodeInput& node,
                                         const std::string& variant, Parts& parts,
                                         NodeResourceSet& resources) {
  // Replaced parts replace exactly their own resources (a resource two parts hold comes from a
  // service both read, so both were replaced).
  std::vector<std::pair<std::shared_ptr<const Part>, std::shared_ptr<const Part>>> replaced;
  if (auto stale = stale_names_.find(variant); stale != stale_names_.end()) {
    for (const ServiceName& service : stale->second) {
      auto it = parts.find(service);
      if (it == parts.end()) continue;
      std::shared_ptr<const Part> fresh = GetPart(node, variant, service);
      replaced.emplace_back(it->second, fresh);
      it->second = std::move(fresh);
    }
  }
  for (const auto& [old, fresh] : replaced) {
    for (ResourceType type : kPushOrder) {
      ResourceMap& map = resources.of(type);
      for (const auto& [name, resource] : old->resources.of(type)) {
        auto it = map.find(name);
        if (it != map.end() && it->second == resource) map.erase(it);
      }
    }
  }
  std::vector<std::shared_ptr<const Part>> fresh_parts;
  for (auto& [old, fresh] : replaced) {
    MergePart(*fresh, resources);
    fresh_parts.push_back(std::move(fresh));
  }
  return fresh_parts;
}

void NodeResourceGenerator::AnswerKeys(const translate::NodeInput& node,
                                       absl::Span<const absl::string_view> keys,
                                       std::map<std::string, KeyAnswer, std::less<>>& answers,
                                       std::set<ServiceName>& discovered,
                                       std::vector<ServiceName>* added) {
  if (keys.empty()) return;
  if (mesh_->Mode(node) != translate::DiscoveryMode::kOnDemand) {
    // Its listeners carry no on_demand: nothing it could discover is pushed for a key.
    for (absl::string_view key : keys) {
      answers.emplace(std::string(key), KeyAnswer{.result = KeyResult::kRefused});
    }
    return;
  }
  const std::vector<translate::MeshTranslator::ServiceName> base = mesh_->BaseSet(node);
  for (absl::string_view key : keys) {
    if (answers.contains(key)) continue;
    const translate::LookupResult found = mesh_->Resolve(node, key);
    KeyAnswer answer;
    switch (found.reason) {
      case translate::LookupReason::kFound:
        if (std::binary_search(base.begin(), base.end(), found.service) ||
            discovered.contains(found.service)) {
          answer = {.result = KeyResult::kFound, .service_route = found.service_route};
        } else if (discovered.size() >= options_.max_on_demand_services) {
          answer.result = KeyResult::kOverLimit;
        } else {
          discovered.insert(found.service);
          if (added != nullptr) added->push_back(found.service);
          answer = {.result = KeyResult::kFound, .service_route = found.service_route};
        }
        break;
      case translate::LookupReason::kMalformed:
        answer.result = KeyResult::kMalformed;
        break;
      case translate::LookupReason::kUnknown:
        answer.result = KeyResult::kNotFound;
        break;
      case translate::LookupReason::kNotVisible:
        answer.result = KeyResult::kRefused;
        break;
    }
    answers.emplace(std::string(key), std::move(answer));
  }
}

}  // namespace meshlet::controlplane::ads
