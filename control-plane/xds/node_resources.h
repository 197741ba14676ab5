#pragma once

// NodeResourceGenerator: every node's resources from the stored policy and the registry, with
// each distinct input translated and packed once (docs/control-plane.md, "Translation").
//
// A push round generates resources for every connected sidecar from the same inputs. Most of a
// sidecar's configuration — the outbound route table, the outbound clusters and their endpoints —
// is the same for every sidecar that reaches the same services (all of them, unless MeshConfig
// scopes configuration). So, per (policy revision, registry version):
//   - the translator's service index is built once (translate::MeshTranslator);
//   - the outbound part is translated and packed (serialized, hashed) once per distinct
//     MeshTranslator::OutboundKey, and every node with that key gets the same immutable
//     ResourcePtrs (no copy: the ADS server's per-stream state shares them too);
//   - for nodes that read ServiceRoutes, that outbound part is the merge of Service parts (ADR
//     0086): each Service's part (its ServiceRoutes, the clusters they name, their assignments,
//     warnings) and a common part (the "outbound" table's "*" host, the trust bundle) are
//     translated and packed once per MeshTranslator::PartVariant and shared by pointer among the
//     merges of every set that holds the Service; a merge is made once per OutboundKey (every
//     whole-mesh node of a variant shares one). Older nodes (the inline table) keep one
//     translation per key;
//   - only the node's local part (listeners, inbound route, inbound clusters) is translated per
//     node, which is a handful of small messages.
// Across input changes, a packed resource whose bytes did not change keeps the ResourcePtr of
// the previous generation, so the states the ADS server keeps for ACKed and sent configuration
// share memory instead of holding two copies.
//
// Endpoint changes (ADR 0088): when a new generation differs from the previous one only in the
// members of some services (MeshTranslator::MemberChangesSince: same policy revision, options
// and service shapes), an outbound part the previous generation built for the same key is
// carried over, and only the changed services' clusters and assignments are translated and
// packed again; every other resource keeps its ResourcePtr. Anything else (a policy change, a
// service added, removed or reshaped, a key the previous generation did not build) translates
// the outbound part in full. Either way the result is exactly what a full translation gives.
// Service parts are kept across such generations except those whose clusters hold a changed
// service's members, which are updated the same way, and a merge carried over replaces only
// those parts' resources.
// Each generation's MeshTranslator is built from the previous one, sharing the views of the
// Kubernetes Services that did not change (translation.h BuildIndex), so an EndpointSlice change
// indexes and compares one Kubernetes Service (Stats::services_indexed, services_compared); Service
// resources and services known only from registrations are indexed again each generation. Such
// a generation also keeps the previous one's lookup tables (the host-name and address owners an
// OnDemand node's keys and every outbound route read), which a full one builds again.
//
// Lookups (ADR 0086): the set of an OnDemand node carries a basis (NodeResourceSet::basis: its
// discovered Services, the parts merged, its own resources' names). Handed back with the
// stream's next request (GenerateRequest::previous), the set is extended in place: the new keys
// alone are resolved, the parts of the Services they discover are added, the node's own part is
// translated again, and (after an endpoint change) the parts of changed services replaced. So a
// lookup costs the resources it adds (Stats::resources_merged), not the node's held keys; and a
// node's merge, which only that node holds, is not kept per key set in the generation.
// Anything else (another generation that is not an endpoint change, keys removed, the node
// changed) generates the whole set.
//
// Threading: one thread (the control plane's loop).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/translate/translator.h"
#include "control-plane/xds/resource_set.h"
#include "xds/node.pb.h"

namespace meshlet::controlplane::ads {

class NodeResourceGenerator {
 public:
  struct Stats {
    uint64_t generations = 0;  // distinct (policy revision, registry version) seen
    // Generations that differed from the previous one in services' members only.
    uint64_t member_only_generations = 0;
    uint64_t outbound_builds = 0;   // outbound parts translated and packed in full
    uint64_t outbound_updates = 0;  // outbound parts carried over, changed services re-translated
    uint64_t outbound_shared = 0;   // nodes served an outbound part built for another node
    uint64_t resources_reused = 0;  // packed resources kept from the previous generation
    // Outbound clusters and assignments translated and packed, in full builds and updates.
    uint64_t clusters_translated = 0;
    uint64_t assignments_translated = 0;
    // The service index of each generation: views built, views shared with the previous
    // generation's index, Workloads made for Kubernetes endpoints, and services compared with
    // the previous index (MeshTranslator::IndexStats, MemberChangesSince).
    uint64_t services_indexed = 0;
    uint64_t services_shared = 0;
    uint64_t index_members_built = 0;
    uint64_t services_compared = 0;
    // Generations that kept the previous generation's lookup tables (host-name and address
    // owners: MeshTranslator::KeepLookupTables) rather than building them again on first use.
    uint64_t lookup_tables_kept = 0;
    // ServiceRoutes above TranslateOptions::max_resource_bytes, replaced in the parts built
    // (translate::NodeResources::oversized_service_routes).
    uint64_t oversized_service_routes = 0;
    // Service parts (nodes that read ServiceRoutes): translated and packed in full, updated for
    // an endpoint change (the changed services' clusters translated again), and served to a
    // merge from those this generation already holds.
    uint64_t parts_built = 0;
    uint64_t parts_updated = 0;
    uint64_t parts_shared = 0;
    // Service parts checked for reading a changed service as a members-only generation starts:
    // those indexed under the changed services (readers_), not every part this generation holds.
    uint64_t parts_examined = 0;
    // Sets extended from the stream's previous one (GenerateRequest::previous) instead of
    // generated whole, and the resources put into nodes' sets from Service parts, in merges and
    // extensions alike: a lookup adds its Services' resources only, whatever the node holds.
    uint64_t sets_extended = 0;
    uint64_t resources_merged = 0;
  };

  explicit NodeResourceGenerator(translate::TranslateOptions options);
  ~NodeResourceGenerator();

  // `policy` and `registry` must identify their content by PolicySnapshot::revision and
  // RegistrySnapshot::version (LoadPolicySnapshot, Registry::Snapshot).
  //
  // `request.previous` (optional) is extended when it was generated by this generator for the
  // same node in this generation (or the one before, when this one changed members only) and no
  // key was removed since (GenerateRequest::keys_removed); the result is the same as generating
  // it whole.
  //
  // Lookup keys (ADR 0086): a node served the OnDemand mode (capabilities on-demand and
  // service-routes, `request.delta`, configured OnDemand) is pushed its own and declared
  // Services and, beside them, the Services its keys resolve to (MeshTranslator::Resolve), taken
  // in key order up to TranslateOptions::max_on_demand_services. Each key is answered: kFound
  // with the ServiceRoute answering it (which the set holds, with its clusters and endpoints),
  // kNotFound (nothing answers it), kRefused (something the node may not discover does; every
  // key of a node not served OnDemand), kMalformed, kOverLimit (one more Service than the limit).
  NodeResourceSet Generate(std::shared_ptr<const policy::PolicySnapshot> policy,
                           std::shared_ptr<const registry::RegistrySnapshot> registry,
                           const GenerateRequest& request);
  // The same for a node without lookup keys on a state-of-the-world stream.
  NodeResourceSet Generate(std::shared_ptr<const policy::PolicySnapshot> policy,
                           std::shared_ptr<const registry::RegistrySnapshot> registry,
                           const xds::Node& node) {
    return Generate(std::move(policy), std::move(registry), GenerateRequest{.node = node});
  }

  // New options (a rotated trust bundle): the next Generate starts a new generation.
  void SetOptions(translate::TranslateOptions options);

  const Stats& stats() const { return stats_; }
  // Entries of the maps that let identical packed resources share one object: bounded by what
  // the parts of the last two generations hold.
  size_t reuse_entries() const {
    size_t n = 0;
    for (const auto* maps : {&previous_, &current_}) {
      for (const auto& by_name : *maps) n += by_name.size();
    }
    return n;
  }

 private:
  struct Outbound;
  struct Part;
  struct Basis;
  using ServiceName = translate::MeshTranslator::ServiceName;
  using Parts = std::map<ServiceName, std::shared_ptr<const Part>>;
  // The part of `service` (the common part for kCommonPart) in `node`'s variant: this
  // generation's, else the previous one's updated or kept, else built.
  std::shared_ptr<const Part> GetPart(const translate::NodeInput& node, const std::string& variant,
                                      const ServiceName& service);
  std::shared_ptr<const Part> BuildPart(const translate::NodeInput& node,
                                        const ServiceName& service);
  // `previous` with the clusters of changed services translated again; null when that cannot be
  // done.
  std::shared_ptr<const Part> UpdatePart(const Part& previous, const translate::NodeInput& node);
  // The outbound part of a node that reads ServiceRoutes: the merge of its parts, or `previous`
  // (the merge of the same set the last generation made) with its changed parts replaced.
  std::shared_ptr<const Outbound> MergeParts(const translate::NodeInput& node,
                                             std::shared_ptr<const Outbound> previous);
  void StartGeneration(std::shared_ptr<const policy::PolicySnapshot> policy,
                       std::shared_ptr<const registry::RegistrySnapshot> registry);
  std::shared_ptr<const Outbound> BuildOutbound(const translate::NodeInput& node);
  // `previous` with the clusters and assignments of changed_ services translated again; null
  // when that cannot be done (BuildOutbound then does it all). On success `previous` may be
  // left null: its maps moved into the result when nothing else held it.
  std::shared_ptr<const Outbound> UpdateOutbound(std::shared_ptr<const Outbound>& previous,
                                                 const translate::NodeInput& node);
  // Answers `keys` for `node` (Generate) into `answers` (a key answered there keeps its answer),
  // adding the Services they discover to `discovered` and, when given, to `added`.
  void AnswerKeys(const translate::NodeInput& node, absl::Span<const absl::string_view> keys,
                  std::map<std::string, KeyAnswer, std::less<>>& answers,
                  std::set<ServiceName>& discovered, std::vector<ServiceName>* added = nullptr);
  // `request.previous` extended for `request` (Generate), or nullopt when it cannot be (it is
  // then left as it was).
  std::optional<NodeResourceSet> Extend(const GenerateRequest& request);
  // The parts of `parts` that this generation replaced (an endpoint change: stale_names_ of
  // `variant`) replaced in `parts` and their resources in `resources`. Returns the parts put in.
  std::vector<std::shared_ptr<const Part>> ReplaceStaleParts(const translate::NodeInput& node,
                                                             const std::string& variant,
                                                             Parts& parts,
                                                             NodeResourceSet& resources);
  // Adds `part`'s resources to `resources` (a merge or an extension), counting them.
  void MergePart(const Part& part, NodeResourceSet& resources);
  // The previous generation's pointer for an identical resource, else `fresh`.
  ResourcePtr Reuse(ResourceType type, ResourcePtr fresh);
  // Adds `resources` (outbound clusters and assignments) to `out`, counting them.
  void AddOutbound(const translate::NodeResources& resources, Outbound& out);

  // Adds `part` (the part of `service` in `variant`) to readers_, or removes it.
  void IndexReads(const std::string& variant, const ServiceName& service, const Part& part,
                  bool add);

  translate::TranslateOptions options_;
  std::unique_ptr<translate::MeshTranslator> mesh_;
  int64_t policy_revision_ = -1;
  uint64_t registry_version_ = 0;
  // This generation's outbound parts by OutboundKey.
  std::map<std::string, std::shared_ptr<const Outbound>> outbound_;
  // When this generation differs from the previous one in members only: the services whose
  // members changed, and the previous generation's outbound parts to update.
  std::optional<std::set<translate::MeshTranslator::ServiceName>> changed_;
  std::map<std::string, std::shared_ptr<const Outbound>> previous_outbound_;
  // Service parts by variant (MeshTranslator::PartVariant), then Service. Kept across
  // generations that differ in members only, but for the parts that read a changed service,
  // which move to stale_parts_ until updated.
  std::map<std::string, Parts> parts_;
  std::map<std::string, Parts> stale_parts_;
  // The parts of parts_ and stale_parts_ by the services they read (Part::reads), as (variant,
  // Service): an endpoint change marks stale the parts indexed under its services, so its cost
  // follows what it touches, not the parts the nodes' lookups hold. A stale part not taken again
  // leaves the index with it.
  using PartId = std::pair<std::string, ServiceName>;
  std::map<ServiceName, std::set<PartId>> readers_;
  // The Services of stale_parts_ as this generation started: the parts a merge carried over
  // from the last generation replaces.
  std::map<std::string, std::set<ServiceName>> stale_names_;
  // Every packed outbound resource of the previous and the current generation, by type and
  // (name, version). A key views the name and version of its entry's own resource (ReuseKey),
  // which the entry keeps alive: no strings are copied per entry.
  using ReuseKey = std::pair<std::string_view, std::string_view>;
  static ReuseKey KeyOf(const NamedResource& r) { return {r.name, r.version}; }
  std::array<std::map<ReuseKey, ResourcePtr>, kResourceTypeCount> previous_, current_;
  Stats stats_;
};

}  // namespace meshlet::controlplane::ads
