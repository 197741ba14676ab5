#pragma once

// What the files of the translation share; translate.h is its interface. BuildSnapshot
// (translate.cc) is a driver that runs one step per resource kind, in the order kinds refer to
// each other, each step in the file of its kind:
//
//   translate_tls.cc        secrets; the TLS settings of clusters and listeners
//   translate_endpoints.cc  endpoints, inline in a cluster or from a load assignment
//   translate_clusters.cc   clusters: circuit breakers, outlier detection, health checks
//   translate_routes.cc     route configurations: matches, actions, retries, faults, rate limits,
//                           header mutations; each table joined by its ServiceRoutes' hosts
//   translate_cors.cc       a route's CORS policy
//   translate_service_routes.cc  ServiceRoutes: a Service port's virtual host and capture
//                           destination, joining a route configuration
//   translate_listeners.cc  listeners: HTTP options, authorization
//   translate_tracing.cc    the bootstrap's tracing section
//   translate_fields.cc     the error collector and the checks of single fields
//
// Every function here adds what it finds wrong to an Errors::Scope and goes on, so one pass
// reports every error of a resource set. Main thread only (secret files are read synchronously).
// Private to sidecar/config.

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/persistent_map.h"
#include "common/config/field_path.h"
#include "google/protobuf/duration.pb.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/config/translate.h"
#include "sidecar/resilience/token_bucket.h"
#include "sidecar/route/sharded_view_map.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

// A set of names that a copy shares and a change copies O(log n) of (a PersistentMap holding
// nothing per name), so a build derived from the previous one costs per name changed.
struct NameOnly {
  friend bool operator==(NameOnly, NameOnly) { return true; }
};
using NameSet = PersistentMap<NameOnly>;

// The policy source names of route::RouteEntry and route::RouteAction, one shared string per
// distinct text (route::SourceName): the routes of every Service an HTTPRoute or TrafficPolicy
// covers name it, and a snapshot holds each name once instead of once per route. Passed from one
// build's memo to the next, so names translated again are the strings already held. Not
// thread-safe: builds that derive from one another run one at a time (the server's main thread).
class SourceNames {
 public:
  // The shared name of `text`; empty for "". Names no route holds any more are dropped now and
  // then (when the table has doubled since), so the table follows the names in use.
  route::SourceName Intern(absl::string_view text);
  size_t size() const { return names_.size(); }

 private:
  // Keyed by views of the held strings.
  absl::flat_hash_map<absl::string_view, route::SourceName> names_;
  size_t prune_at_ = 64;
};

// What a snapshot was translated from, kept with it so that the next BuildSnapshot can take
// unchanged clusters and route tables from it (ADR 0025).
struct TranslationMemo {
  struct Cluster {
    ResourceList<xds::Cluster>::Pointer cluster;
    ResourceList<xds::ClusterLoadAssignment>::Pointer assignment;  // null: none (or STATIC)
    std::shared_ptr<const cluster::ClusterConfig> translated;
    // The same objects (what PersistentMap compares).
    friend bool operator==(const Cluster& a, const Cluster& b) {
      return a.cluster == b.cluster && a.assignment == b.assignment && a.translated == b.translated;
    }
  };
  using JoinedNames = route::ShardedViewMap<const std::string*, absl::Hash<absl::string_view>,
                                            std::equal_to<absl::string_view>>;
  struct RouteTable {
    ResourceList<xds::RouteConfiguration>::Pointer source;
    // The ServiceRoutes whose virtual hosts joined it, in name order; never null. Shared by the
    // builds that reuse the table, so a reused table copies none of them.
    std::shared_ptr<const std::vector<ResourceList<xds::ServiceRoute>::Pointer>> joined;
    std::shared_ptr<const route::RouteTable> table;
    // The names of the joined ServiceRoutes' virtual hosts, each to its ServiceRoute's name:
    // views of strings that `table` (the hosts) and `joined` (the resources) keep alive. Never
    // null. The table that replaces this one derives its map from this one's by the
    // ServiceRoutes that changed (shards shared, ShardedViewMap), instead of naming every host.
    std::shared_ptr<const JoinedNames> joined_names;
  };
  // A ServiceRoute translated: its virtual host (null: none; shared by every route table it
  // joins, route::ShareVirtualHost) and capture destination.
  struct ServiceRoute {
    ResourceList<xds::ServiceRoute>::Pointer source;
    // The route configuration it joins (read without the resource).
    std::string route_config_name;
    // The header mutations of the route configuration it joins, as of its translation (the
    // virtual host's routes apply them): reused only while config_headers holds the same object.
    std::shared_ptr<const route::HeaderMutations> config_headers;
    std::shared_ptr<const route::VirtualHostConfig> virtual_host;
    std::optional<ListenerDestinationConfig> destination;
    // When the ServiceRoute was last used; the virtual host and the destination point at it.
    // Kept while the name stays, through re-translations.
    std::shared_ptr<route::UsageCell> usage;
  };
  // The clusters persist (common/base/persistent_map.h): a build that takes them from the
  // previous one by what changed (ApplyClusterChanges) shares every entry it does not change,
  // and costs O(k log n) for k changed, not a copy of every entry.
  PersistentMap<Cluster> clusters;
  // Keyed by views of the names in the entries' own resources (source), which the entries keep
  // alive: no name is copied per build.
  absl::flat_hash_map<absl::string_view, RouteTable> route_tables;
  // Every ServiceRoute of the set (all usable: a build with errors keeps no memo), persistent as
  // `clusters` and shared, not copied, by the builds that reuse them: a build that takes them
  // from the previous one by what changed costs O(k log n) for k changed.
  PersistentMap<std::shared_ptr<const ServiceRoute>> service_routes;
  // Per route configuration, the ServiceRoutes joining it (entries of service_routes), in name
  // order; derived from the previous build's by what changed, as service_routes.
  absl::flat_hash_map<std::string, std::vector<const ServiceRoute*>> joined;
  // The ServiceRoutes as given, and whether in strictly increasing name order (an xDS
  // client's are): the next build may then compare its list with this one by pointer.
  ResourceList<xds::ServiceRoute> service_route_list;
  bool service_routes_sorted = false;
  // Every cluster of the set (even an invalid one) and every load assignment, as given.
  ResourceList<xds::Cluster> cluster_list;
  ResourceList<xds::ClusterLoadAssignment> assignment_list;
  // The names of cluster_list (persistent, as `clusters`).
  NameSet cluster_names;
  // Whether both lists are in strictly increasing name order (an xDS client's are): the next
  // build may then take the clusters by what changed between the lists (ApplyClusterChanges).
  bool lists_sorted = false;
  // The names of the set's route configurations (what a ServiceRoute may join).
  absl::flat_hash_set<std::string> route_config_names;
  // Per route configuration, its header mutations; the previous object while they are equal.
  absl::flat_hash_map<std::string, std::shared_ptr<const route::HeaderMutations>> config_headers;
  absl::flat_hash_map<std::string, bool> secret_has_trust_bundle;
  // The previous build's (the first build's own): never null.
  std::shared_ptr<SourceNames> source_names = std::make_shared<SourceNames>();
  size_t clusters_reused = 0;
  size_t route_tables_reused = 0;
  size_t clusters_examined = 0;
  size_t service_routes_examined = 0;
  // ServiceRoutes recorded as joining the route tables built (not reused).
  size_t joined_recorded = 0;
  // Virtual host names of joined ServiceRoutes entered in the tables' JoinedNames built (not
  // reused): every joined one, or, derived from the replaced table's, those added or changed.
  size_t joined_names_indexed = 0;
  // Set when the clusters were taken from the previous build by what changed: the names added
  // or replaced since (none removed).
  std::optional<std::vector<std::string>> clusters_changed;
  // With clusters_changed: the snapshot they changed from (compared, never read).
  const Snapshot* clusters_changed_since = nullptr;
};

namespace translate_internal {

using ::meshlet::config::Index;
using ::meshlet::config::IsHttpToken;
using ::meshlet::config::IsSafeHeaderValue;
using ::meshlet::config::Join;
using ::meshlet::config::Quote;

// Cluster names a route or a listener may point at.
using ClusterNames = NameSet;

// The label errors of a resource lead with: 'cluster "backend"'.
std::string Label(absl::string_view kind, absl::string_view name);

// Whether every name in `before` is also in `now`. What was translated without errors against
// `before` (every name it refers to resolved) translates the same against `now`: translation only
// asks whether a name it refers to exists. So an update that only adds clusters (an answered
// lookup brings a Service's clusters) keeps what refers to the others.
template <typename Set>
bool NoNameGone(const Set& before, const Set& now) {
  if (before.size() > now.size()) return false;
  for (const auto& name : before) {
    if (!now.contains(name)) return false;
  }
  return true;
}
// The same for persistent sets: per name that differs when one is derived from the other.
template <typename Value>
bool NoNameGone(const PersistentMap<Value>& before, const PersistentMap<Value>& now) {
  if (before.size() > now.size()) return false;
  bool gone = false;
  PersistentMap<Value>::Diff(before, now,
                             [&](const std::string&, const Value*, const Value* after) {
                               if (after == nullptr) gone = true;
                             });
  return !gone;
}

// Whether `list` is in strictly increasing name order (so it repeats no name).
template <typename Message>
bool Sorted(const ResourceList<Message>& list) {
  for (size_t i = 1; i < list.size(); ++i) {
    if (!(list.name(i - 1) < list.name(i))) return false;
  }
  return true;
}

// Compares `now` with `old` (in strictly increasing name order) in one merge: the positions in
// `now` of the resources added or changed (a pointer `old` does not hold at that name) go to
// `changed`. False when `now` is not in strictly increasing name order or lacks a name of `old`.
// Names are compared only next to what changed: a run of pointers `old` holds in the same order
// is in order already.
template <typename Message>
bool ChangedSince(const ResourceList<Message>& old, const ResourceList<Message>& now,
                  std::vector<size_t>& changed) {
  size_t j = 0;
  bool previous_kept = false;
  for (size_t i = 0; i < now.size(); ++i) {
    const bool kept = j < old.size() && old.shared(j) == now.shared(i);
    if (i > 0 && !(previous_kept && kept) && !(now.name(i - 1) < now.name(i))) {
      return false;
    }
    previous_kept = kept;
    if (kept) {
      ++j;
      continue;
    }
    if (j < old.size()) {
      const int order = now.name(i).compare(old.name(j));
      if (order > 0) return false;  // old[j] is gone
      if (order == 0) ++j;          // changed; else added before old[j]
    }
    changed.push_back(i);
  }
  return j == old.size();
}

// ---------------------------------------------------------------------------------------------
// Errors and field checks (translate_fields.cc)

// Collects every error of a resource set, each led by the resource it belongs to.
class Errors {
 public:
  // Errors added through the returned scope start with `resource` ('cluster "backend"').
  class Scope {
   public:
    Scope(Errors& errors, std::string resource) : errors_(errors), resource_(std::move(resource)) {}
    // "<resource>: <path>: <reason>", or "<resource>: <reason>" when path is empty.
    void Add(absl::string_view path, absl::string_view reason) {
      errors_.list_.push_back(path.empty() ? absl::StrCat(resource_, ": ", reason)
                                           : absl::StrCat(resource_, ": ", path, ": ", reason));
    }
    void Add(absl::string_view path, const absl::Status& status) {
      if (!status.ok()) Add(path, status.message());
    }
    size_t count() const { return errors_.list_.size(); }

   private:
    Errors& errors_;
    std::string resource_;
  };

  bool empty() const { return list_.empty(); }
  // One error per line, the first kMaxReportedErrors and a count of the rest; OK when none.
  absl::Status ToStatus() const;

 private:
  std::vector<std::string> list_;
};

// Names are identifiers people type and logs print: non-empty, no spaces or control characters.
bool ValidName(absl::string_view name);
// A server name (DownstreamTls.server_certificates, ListenerDestination.server_names): "name" or
// "*.suffix", lower case, DNS letters, digits, '-' and '.' (no empty label, no trailing dot).
bool ValidServerName(absl::string_view name);
void CheckName(Errors::Scope& scope, absl::string_view name);

// Host names and literals for rewrites and redirects: host [":" port].
bool ValidHost(absl::string_view host);

// A google.protobuf.Duration as a meshlet Duration; nullopt when it is malformed or out of range.
std::optional<Duration> ToDuration(const google::protobuf::Duration& d);

enum class DurationRule { kPositive, kNonNegative };

// Reads an optional Duration field: unset keeps `*out`; a bad value is reported and keeps `*out`.
void ReadDuration(Errors::Scope& scope, absl::string_view path, bool has,
                  const google::protobuf::Duration& value, DurationRule rule, Duration* out);

void CheckPercentage(Errors::Scope& scope, absl::string_view path, double value);

// A PolicySource as decision records name it, "<kind>/<namespace>/<name>" ("<kind>/<name>" without
// a namespace: MeshConfig); "" when it has no kind.
// Its parts must be names (ValidName), and its rule and match -1 or more (`route`; else unused).
std::string PolicySourceName(Errors::Scope& scope, absl::string_view path,
                             const xds::PolicySource& source, bool route);
void CheckStatusCode(Errors::Scope& scope, absl::string_view path, uint32_t code);

// ---------------------------------------------------------------------------------------------
// Pieces one kind's translation takes from another's file

// translate_tls.cc: a cluster's `tls` (paths "tls.*").
void TranslateUpstreamTls(Errors::Scope& scope, const xds::UpstreamTls& in,
                          const Snapshot::ByName<SecretConfig>& secrets,
                          cluster::UpstreamTlsConfig& out);
// translate_tls.cc: a listener's `tls` (paths "tls.*").
void TranslateDownstreamTls(Errors::Scope& scope, const xds::DownstreamTls& in,
                            const Snapshot::ByName<SecretConfig>& secrets,
                            DownstreamTlsConfig& out);

// translate_endpoints.cc: the endpoints of one load assignment; `path` leads to its `endpoints`
// field.
// Each endpoint's locality_level is its locality compared with `own` (null: every endpoint at the
// farthest level); with `node_local` and a node in `own`, endpoints on other nodes are left out.
std::vector<cluster::EndpointConfig> TranslateEndpoints(
    Errors::Scope& scope, const std::string& path, const xds::ClusterLoadAssignment& assignment,
    const xds::Locality* own = nullptr, bool node_local = false);
// The locality level (0 same zone, 1 same region, 2 elsewhere) of an endpoint at `endpoint` seen
// from a sidecar at `own`: the same zone needs equal, non-empty zones and equal regions (or none
// named by the endpoint); the same region equal, non-empty regions; both in the same cluster when
// both name one.
uint8_t LocalityLevel(const xds::Locality& endpoint, const xds::Locality* own);

// translate_routes.cc: the header mutations of a route configuration (its own level);
// `path` leads to it ("" for the route configuration's errors).
route::HeaderMutations TranslateConfigHeaders(Errors::Scope& scope, const std::string& path,
                                              const xds::RouteConfiguration& in);

// translate_routes.cc: one virtual host of a route configuration or ServiceRoute; `path` leads
// to it ("virtual_hosts[2]", "virtual_host"). Domains are checked and lower-cased here.
// Policy source names are interned in `names`.
route::VirtualHostConfig TranslateVirtualHost(Errors::Scope& scope, const std::string& path,
                                              const xds::VirtualHost& in,
                                              const ClusterNames& clusters, SourceNames& names);

// translate_routes.cc: a route configuration's own virtual hosts and header mutations, or
// nullopt when it had an error (added to `scope`); virtual host names unique within it.
std::optional<route::RouteConfig> TranslateRouteConfig(Errors::Scope& scope,
                                                       const xds::RouteConfiguration& in,
                                                       const ClusterNames& clusters,
                                                       SourceNames& names);

// translate_listeners.cc: one capture destination of a listener or ServiceRoute, without the
// check that its name is unique (the listener's); `path` leads to it.
ListenerDestinationConfig TranslateListenerDestination(
    Errors::Scope& scope, const std::string& path, const xds::ListenerDestination& in,
    const absl::flat_hash_set<std::string>& routes, const ClusterNames& clusters);

// translate_routes.cc: a route's or listener's RateLimit: one shared bucket, or one per caller
// identity.
void TranslateRateLimit(Errors::Scope& scope, const std::string& path, const xds::RateLimit& rl,
                        std::optional<resilience::TokenBucketConfig>& config,
                        std::shared_ptr<resilience::LocalRateLimiter>& limiter);

// translate_cors.cc: a route's CORS policy, its origin patterns parsed and values joined.
std::shared_ptr<const route::CorsPolicy> TranslateCors(Errors::Scope& scope,
                                                       const std::string& path,
                                                       const xds::CorsPolicy& in);

// ---------------------------------------------------------------------------------------------
// The steps of BuildSnapshot

// One BuildSnapshot call: the snapshot being built, the memo of what it is built from, the
// previous snapshot's memo (what may be reused), and the errors found so far.
struct SnapshotBuild {
  std::shared_ptr<Snapshot> snapshot = std::make_shared<Snapshot>();
  std::shared_ptr<TranslationMemo> memo = std::make_shared<TranslationMemo>();
  const TranslationMemo* before = nullptr;  // null: nothing to reuse
  const Snapshot* previous = nullptr;       // the snapshot `before` belongs to
  Errors errors;
  // Set by AddSecrets: what clusters and listeners check of each secret is as it was before.
  bool secrets_as_before = false;
  // Set by AddClusters: every cluster name of `before` is still there (so what resolved against
  // them resolves as before), known without comparing the sets.
  bool cluster_names_kept = false;
  // Set by AddRouteTables: the route configurations listeners may name.
  absl::flat_hash_set<std::string> route_names;
  // Where this sidecar runs (BuildSnapshot's `locality`); null: unknown.
  const xds::Locality* locality = nullptr;

  // Names are checked per kind first: later kinds refer to earlier ones by name. False (the
  // error reported) when the name is invalid or repeats one in `seen`, which views the names
  // (they must outlive it); errors about the resource lead with Label(kind, name).
  bool Named(absl::string_view kind, absl::string_view list, size_t i, const std::string& name,
             absl::flat_hash_map<absl::string_view, size_t>& seen);
};

// translate_tls.cc: every secret, always translated (few, and file-based ones must be read
// again).
void AddSecrets(SnapshotBuild& build, const ResourceList<xds::Secret>& secrets);

// translate_endpoints.cc: the load assignment of each EDS cluster, by the cluster's position in
// `clusters` (null: none). `cluster_index` holds the usable clusters' positions by name.
std::vector<ResourceList<xds::ClusterLoadAssignment>::Pointer> MatchLoadAssignments(
    SnapshotBuild& build, const ResourceList<xds::Cluster>& clusters,
    const ResourceList<xds::ClusterLoadAssignment>& assignments,
    const absl::flat_hash_map<absl::string_view, size_t>& cluster_index);

// translate_clusters.cc: the clusters with their endpoints; unchanged ones are taken from the
// previous snapshot.
void AddClusters(SnapshotBuild& build, const ResourceList<xds::Cluster>& clusters,
                 const ResourceList<xds::ClusterLoadAssignment>& assignments);

// translate_service_routes.cc: every ServiceRoute, checked and translated (its virtual host and
// destination), and noted under the route configuration it joins (`routes`, memo->joined);
// unchanged ones (the same resource, the same cluster and route configuration names, the same
// header mutations of the route configuration joined) are taken from the previous snapshot.
// When both lists are in name order, none gone and the route configurations' header mutations
// as before, only the ServiceRoutes added or changed are looked at.
void AddServiceRoutes(SnapshotBuild& build, const ResourceList<xds::ServiceRoute>& service_routes,
                      const ResourceList<xds::RouteConfiguration>& routes);

// translate_route_tables.cc: a route table per route configuration, its own virtual hosts followed
// by those of the ServiceRoutes joining it; unchanged ones (the same resources, the same cluster
// names) are taken from the previous snapshot.
void AddRouteTables(SnapshotBuild& build, const ResourceList<xds::RouteConfiguration>& routes);

// translate_listeners.cc: every listener (few, each depending on routes, clusters and secrets).
void AddListeners(SnapshotBuild& build, const ResourceList<xds::Listener>& listeners);

}  // namespace translate_internal
}  // namespace meshlet::sidecar::config
