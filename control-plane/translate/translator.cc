// The translator's interface (translator.h): the driver that runs the steps of translation.h for
// the part of a node's resources asked for, the cache of outbound parts shared between nodes, and
// the content versions of resources.

#include "control-plane/translate/translator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/config/yaml_proto.h"
#include "control-plane/translate/capability_gates.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

// Which parts to build: the outbound part (route "outbound", outbound clusters, endpoints)
// depends on the node only through its reachable services (OutboundKey); the local part
// (listeners, route "inbound", inbound clusters) is the node's own.
enum class Part { kAll, kOutbound, kLocal };

// What the outbound part depends on besides this node's reachable services: the inputs'
// versions and the options it reads. Reachable services are listed when scoping applies.
// `versions`: with the inputs' versions (a TranslationCache's key, shared across inputs);
// without, the node's choices only (MeshTranslator::OutboundKey).
// What a Service's part depends on besides the inputs (MeshTranslator::PartVariant): the
// beginning of the outbound part's key.
std::string VariantKey(const TranslationContext& ctx, bool versions) {
  std::string key =
      versions ? absl::StrCat(ctx.policy.revision, "|", ctx.registry.version, "|") : std::string();
  absl::StrAppend(&key, ctx.options.cluster_domain, "|", MeshTlsKey(ctx), "|",
                  ctx.self.capture ? "capture|" : "");
  // Nodes that lack capabilities get the older forms (capability_gates.h).
  if (!ctx.capabilities.all()) absl::StrAppend(&key, "capabilities:", ctx.capabilities.Key(), "|");
  // Consumer routes (Gateway API) apply to callers of their namespace only.
  if (ctx.index.consumer_namespaces.contains(ctx.self.namespace_)) {
    absl::StrAppend(&key, "consumer:", ctx.self.namespace_, "|");
  }
  return key;
}

std::string CacheKey(const TranslationContext& ctx, bool versions = true) {
  std::string key = VariantKey(ctx, versions);
  if (ctx.mode == DiscoveryMode::kWholeMesh) return key + "*";
  absl::StrAppend(&key, DiscoveryModeName(ctx.mode), ":");
  for (const ServiceKey& service : ctx.ReachableKeys()) {
    absl::StrAppend(&key, service.second, ".", service.first, ",");
  }
  return key;
}

// The outbound part, from `cache` when it holds it for this node's key (stored there when not).
void BuildOutbound(const TranslationContext& ctx, TranslationOutput& out, TranslationCache* cache) {
  if (cache == nullptr) {
    BuildOutboundRoutes(ctx, out);
    return;
  }
  const std::string key = CacheKey(ctx);
  std::shared_ptr<const TranslationCache::Outbound> shared = cache->Find(key);
  if (shared == nullptr) {
    BuildOutboundRoutes(ctx, out);
    auto fresh = std::make_shared<TranslationCache::Outbound>();
    fresh->routes = out.resources.routes;
    fresh->service_routes = out.resources.service_routes;
    for (const auto& [name, cluster] : out.clusters) fresh->clusters.push_back(cluster);
    for (const auto& [name, assignment] : out.endpoints) fresh->endpoints.push_back(assignment);
    fresh->warnings = out.resources.warnings;
    cache->Insert(key, std::move(fresh));
  } else {
    out.resources.routes = shared->routes;
    out.resources.service_routes = shared->service_routes;
    for (const xds::Cluster& c : shared->clusters) out.clusters.emplace(c.name(), c);
    for (const xds::ClusterLoadAssignment& a : shared->endpoints) {
      out.endpoints.emplace(a.cluster_name(), a);
    }
    out.resources.warnings = shared->warnings;
  }
}

// Every list ordered by name, in the forms the node reads; `trust_bundle`: with the trust bundle
// Secret when the node gets one.
NodeResources Finish(const TranslationContext& ctx, TranslationOutput& out,
                     bool trust_bundle = true) {
  if (trust_bundle) AddTrustBundle(ctx, out.resources);
  for (auto& [name, cluster] : out.clusters) out.resources.clusters.push_back(std::move(cluster));
  for (auto& [name, assignment] : out.endpoints) {
    out.resources.endpoints.push_back(std::move(assignment));
  }
  AddBackendTlsSecrets(ctx, out.resources);
  auto by_name = [](const auto& a, const auto& b) { return a.name() < b.name(); };
  std::sort(out.resources.listeners.begin(), out.resources.listeners.end(), by_name);
  std::sort(out.resources.routes.begin(), out.resources.routes.end(), by_name);
  std::sort(out.resources.service_routes.begin(), out.resources.service_routes.end(), by_name);
  // clusters and endpoints come from std::maps: already ordered by name.
  ApplyCapabilityGates(ctx.capabilities, out.resources);
  return std::move(out.resources);
}

NodeResources Run(const TranslationContext& ctx, Part part, TranslationCache* cache = nullptr,
                  std::map<std::string, ClusterOrigin>* origins = nullptr) {
  TranslationOutput out;
  out.origins = origins;
  if (part != Part::kLocal) BuildOutbound(ctx, out, cache);
  if (part != Part::kOutbound && ctx.gateway_proxy) {
    BuildGatewayListeners(ctx, out);
  } else if (part != Part::kOutbound) {
    BuildOutboundListener(ctx, out);
    BuildInbound(ctx, out);
  }
  return Finish(ctx, out);
}

}  // namespace

NodeResources Translate(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                        const NodeInput& node, const TranslateOptions& options,
                        TranslationCache* cache) {
  const MeshIndex index = BuildIndex(policy, registry);
  return Run(TranslationContext(policy, registry, index, node, options), Part::kAll, cache);
}

struct MeshTranslator::Index {
  MeshIndex index;
};

MeshTranslator::MeshTranslator(std::shared_ptr<const PolicySnapshot> policy,
                               std::shared_ptr<const RegistrySnapshot> registry,
                               TranslateOptions options, const MeshTranslator* previous)
    : policy_(std::move(policy)),
      registry_(std::move(registry)),
      options_(std::move(options)),
      index_(std::make_unique<Index>(Index{BuildIndex(
          *policy_, *registry_,
          previous == nullptr ? PreviousIndex{}
                              : PreviousIndex{&previous->index_->index, previous->policy_.get(),
                                              previous->registry_.get()})})) {}

MeshTranslator::~MeshTranslator() = default;

std::string MeshTranslator::OutboundKey(const NodeInput& node) const {
  return CacheKey(TranslationContext(*policy_, *registry_, index_->index, node, options_),
                  /*versions=*/false);
}

NodeResources MeshTranslator::TranslateOutbound(
    const NodeInput& node, std::map<std::string, ClusterOrigin>* origins) const {
  return Run(TranslationContext(*policy_, *registry_, index_->index, node, options_),
             Part::kOutbound, /*cache=*/nullptr, origins);
}

std::optional<NodeResources> MeshTranslator::TranslateClusters(
    const NodeInput& node, const std::vector<ClusterOrigin>& origins) const {
  const TranslationContext ctx(*policy_, *registry_, index_->index, node, options_);
  TranslationOutput out;
  for (const ClusterOrigin& origin : origins) {
    auto service = index_->index.services.find(origin.service);
    if (service == index_->index.services.end()) return std::nullopt;
    const std::vector<pb::ServicePort>& ports = service->second->ports;
    auto port = std::find_if(ports.begin(), ports.end(),
                             [&](const pb::ServicePort& p) { return p.port() == origin.port; });
    if (port == ports.end()) return std::nullopt;
    UseCluster(ctx, out, *service->second, *port, origin.subset, origin.opaque);
  }
  NodeResources resources;
  for (auto& [name, cluster] : out.clusters) resources.clusters.push_back(std::move(cluster));
  for (auto& [name, assignment] : out.endpoints) {
    resources.endpoints.push_back(std::move(assignment));
  }
  AddBackendTlsSecrets(ctx, resources);
  ApplyCapabilityGates(ctx.capabilities, resources);
  return resources;
}

namespace {

bool SameMembers(const ServiceView& a, const ServiceView& b) {
  if (a.members.size() != b.members.size()) return false;
  for (size_t i = 0; i < a.members.size(); ++i) {
    if (!SameMember(*a.members[i], *b.members[i])) return false;
  }
  return true;
}

// Everything of a service but its members: what routes, listeners and cluster names read.
bool SameShape(const ServiceView& a, const ServiceView& b) {
  if (a.namespace_ != b.namespace_ || a.name != b.name ||
      (a.resource == nullptr) != (b.resource == nullptr) ||
      (a.kubernetes == nullptr) != (b.kubernetes == nullptr) || a.selector != b.selector ||
      a.service_accounts != b.service_accounts || a.addresses != b.addresses ||
      a.ports.size() != b.ports.size()) {
    return false;
  }
  for (size_t i = 0; i < a.ports.size(); ++i) {
    if (a.ports[i].SerializeAsString() != b.ports[i].SerializeAsString()) return false;
  }
  return true;
}

}  // namespace

std::optional<std::set<MeshTranslator::ServiceName>> MeshTranslator::MemberChangesSince(
    const MeshTranslator& previous, size_t* compared) const {
  size_t count = 0;
  std::optional<std::set<ServiceName>> result = MemberChanges(previous, count);
  if (compared != nullptr) *compared = count;
  return result;
}

std::optional<std::set<MeshTranslator::ServiceName>> MeshTranslator::MemberChanges(
    const MeshTranslator& previous, size_t& count) const {
  if (policy_->revision != previous.policy_->revision || !(options_ == previous.options_) ||
      registry_->kubernetes_pending != previous.registry_->kubernetes_pending) {
    return std::nullopt;
  }
  const MeshIndex& now = index_->index;
  const MeshIndex& before = previous.index_->index;
  if (now.services.size() != before.services.size()) return std::nullopt;
  std::set<ServiceName> changed;
  // Whether the service `key` (whose view is `a`) is another service now, or has other members.
  auto compare = [&](const ServiceName& key, const ServiceView& a, const ServiceView& b) {
    ++count;
    if (!SameShape(a, b)) return false;
    if (!SameMembers(a, b)) changed.insert(key);
    return true;
  };
  if (now.built_from == before.serial) {
    // Every view but those built is `before`'s own, and the sizes agree: the same services.
    for (const ServiceName& key : now.built) {
      auto b = before.services.find(key);
      if (b == before.services.end() || !compare(key, *now.services.at(key), *b->second)) {
        return std::nullopt;
      }
    }
  } else {
    for (auto a = now.services.begin(), b = before.services.begin(); a != now.services.end();
         ++a, ++b) {
      if (a->first != b->first) return std::nullopt;
      if (a->second != b->second && !compare(a->first, *a->second, *b->second)) {
        return std::nullopt;
      }
    }
  }
  return changed;
}

void MeshTranslator::KeepLookupTables(const MeshTranslator& previous) {
  index_->index.host_owners = previous.index_->index.host_owners;
}

size_t MeshTranslator::lookup_tables_built() const {
  return index_->index.host_owners->tables_built();
}

MeshTranslator::IndexStats MeshTranslator::index_stats() const {
  const MeshIndex& index = index_->index;
  return {.services_built = index.built.size(),
          .services_shared = index.services.size() - index.built.size(),
          .members_built = index.members_built};
}

LookupResult MeshTranslator::Resolve(const NodeInput& node, absl::string_view key) const {
  return translate::Resolve(TranslationContext(*policy_, *registry_, index_->index, node, options_),
                            key);
}

NodeResources MeshTranslator::TranslateLocal(const NodeInput& node) const {
  return Run(TranslationContext(*policy_, *registry_, index_->index, node, options_), Part::kLocal);
}

bool MeshTranslator::SplitsOutbound(const NodeInput& node) const {
  return SplitsRouteTable(TranslationContext(*policy_, *registry_, index_->index, node, options_));
}

std::string MeshTranslator::PartVariant(const NodeInput& node) const {
  return VariantKey(TranslationContext(*policy_, *registry_, index_->index, node, options_),
                    /*versions=*/false);
}

NodeResources MeshTranslator::TranslateServicePart(
    const NodeInput& node, const ServiceName& service,
    std::map<std::string, ClusterOrigin>* origins) const {
  const TranslationContext ctx(*policy_, *registry_, index_->index, node, options_);
  TranslationOutput out;
  out.origins = origins;
  auto it = index_->index.services.find(service);
  if (it != index_->index.services.end()) BuildServiceRoutes(ctx, *it->second, out);
  return Finish(ctx, out, /*trust_bundle=*/false);
}

NodeResources MeshTranslator::TranslateCommonPart(const NodeInput& node) const {
  const TranslationContext ctx(*policy_, *registry_, index_->index, node, options_);
  TranslationOutput out;
  BuildOutboundRoutes(ctx, out, /*services=*/false);
  return Finish(ctx, out);
}

DiscoveryMode MeshTranslator::Mode(const NodeInput& node) const {
  return TranslationContext(*policy_, *registry_, index_->index, node, options_).mode;
}

std::vector<MeshTranslator::ServiceName> MeshTranslator::BaseSet(const NodeInput& node) const {
  return TranslationContext(*policy_, *registry_, index_->index, node, options_).ReachableKeys();
}

std::shared_ptr<const TranslationCache::Outbound> TranslationCache::Find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  return it->second;
}

void TranslationCache::Insert(const std::string& key, std::shared_ptr<const Outbound> outbound) {
  std::lock_guard<std::mutex> lock(mu_);
  // Entries of older inputs are useless once newer ones arrive; dropping everything when full
  // keeps this simple and bounded (scoped meshes have one entry per distinct dependency set).
  if (entries_.size() >= max_entries_) entries_.clear();
  entries_[key] = std::move(outbound);
}

TranslationCache::Stats TranslationCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {hits_, misses_, entries_.size()};
}

}  // namespace meshlet::controlplane::translate
