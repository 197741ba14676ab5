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
std::string CacheKey(const TranslationContext& ctx) {
  std::string key =
      absl::StrCat(ctx.policy.revision, "|", ctx.registry.version, "|", ctx.options.cluster_domain,
                   "|", MeshTlsKey(ctx), "|", ctx.self.capture ? "capture|" : "");
  // Nodes that lack capabilities get the older forms (capability_gates.h).
  if (!ctx.capabilities.all()) absl::StrAppend(&key, "capabilities:", ctx.capabilities.Key(), "|");
  // Consumer routes (Gateway API) apply to callers of their namespace only.
  if (ctx.index.consumer_namespaces.contains(ctx.self.namespace_)) {
    absl::StrAppend(&key, "consumer:", ctx.self.namespace_, "|");
  }
  if (!ctx.mesh.scope_to_dependencies()) return key + "*";
  for (const auto& [service_key, service] : ctx.index.services) {
    if (ctx.Reachable(service)) absl::StrAppend(&key, service.Fqdn(), ",");
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
    for (const auto& [name, cluster] : out.clusters) fresh->clusters.push_back(cluster);
    for (const auto& [name, assignment] : out.endpoints) fresh->endpoints.push_back(assignment);
    fresh->warnings = out.resources.warnings;
    cache->Insert(key, std::move(fresh));
  } else {
    out.resources.routes = shared->routes;
    for (const xds::Cluster& c : shared->clusters) out.clusters.emplace(c.name(), c);
    for (const xds::ClusterLoadAssignment& a : shared->endpoints) {
      out.endpoints.emplace(a.cluster_name(), a);
    }
    out.resources.warnings = shared->warnings;
  }
}

// Every list ordered by name, in the forms the node reads.
NodeResources Finish(const TranslationContext& ctx, TranslationOutput& out) {
  AddTrustBundle(ctx, out.resources);
  for (auto& [name, cluster] : out.clusters) out.resources.clusters.push_back(std::move(cluster));
  for (auto& [name, assignment] : out.endpoints) {
    out.resources.endpoints.push_back(std::move(assignment));
  }
  auto by_name = [](const auto& a, const auto& b) { return a.name() < b.name(); };
  std::sort(out.resources.listeners.begin(), out.resources.listeners.end(), by_name);
  std::sort(out.resources.routes.begin(), out.resources.routes.end(), by_name);
  // clusters and endpoints come from std::maps: already ordered by name.
  ApplyCapabilityGates(ctx.capabilities, out.resources);
  return std::move(out.resources);
}

NodeResources Run(const TranslationContext& ctx, Part part, TranslationCache* cache = nullptr) {
  TranslationOutput out;
  if (part != Part::kLocal) BuildOutbound(ctx, out, cache);
  if (part != Part::kOutbound) {
    BuildOutboundListener(ctx, out);
    BuildInbound(ctx, out);
  }
  return Finish(ctx, out);
}

}  // namespace

NodeResources Translate(const PolicySnapshot& policy, const RegistrySnapshot& registry,
                        const xds::Node& node, const TranslateOptions& options,
                        TranslationCache* cache) {
  const MeshIndex index = BuildIndex(policy, registry);
  return Run(TranslationContext(policy, registry, index, node, options), Part::kAll, cache);
}

struct MeshTranslator::Index {
  MeshIndex index;
};

MeshTranslator::MeshTranslator(std::shared_ptr<const PolicySnapshot> policy,
                               std::shared_ptr<const RegistrySnapshot> registry,
                               TranslateOptions options)
    : policy_(std::move(policy)),
      registry_(std::move(registry)),
      options_(std::move(options)),
      index_(std::make_unique<const Index>(Index{BuildIndex(*policy_, *registry_)})) {}

MeshTranslator::~MeshTranslator() = default;

std::string MeshTranslator::OutboundKey(const xds::Node& node) const {
  return CacheKey(TranslationContext(*policy_, *registry_, index_->index, node, options_));
}

NodeResources MeshTranslator::TranslateOutbound(const xds::Node& node) const {
  return Run(TranslationContext(*policy_, *registry_, index_->index, node, options_),
             Part::kOutbound);
}

NodeResources MeshTranslator::TranslateLocal(const xds::Node& node) const {
  return Run(TranslationContext(*policy_, *registry_, index_->index, node, options_), Part::kLocal);
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
