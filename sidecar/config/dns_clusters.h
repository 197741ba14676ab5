#pragma once

// DnsClusters: the endpoints of a configuration's DNS clusters (Cluster type DNS: an external
// service's name), which the sidecar resolves itself and follows. Each cluster's `dns.hostname`
// is resolved (A and AAAA, net::DnsLookup) when the cluster first appears, and again when the
// answer's TTL runs out, kept between `dns.min_refresh` and `dns.max_refresh`; a failed lookup is
// tried again after `dns.failure_refresh` and the last addresses stay in use. Every answer that
// changes a cluster's addresses calls `changed`: the owner then builds the configuration again
// with AddEndpoints(), which gives each resolved cluster a ClusterLoadAssignment of its name (a
// cluster not resolved yet has none, so no endpoint). Counted in
// meshlet_dns_lookups_total{cluster,result} (success, no_such_name, failure).
//
// Threading and ownership: main thread only; the Loop and the stats shard must outlive it.
// `changed` runs on the loop, never from inside Follow() or AddEndpoints(), and may call both.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/dns_lookup.h"
#include "common/stats/stats.h"
#include "sidecar/config/translate.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

class DnsClusters {
 public:
  DnsClusters(event::Loop& loop, StatsShard& stats, net::DnsLookupOptions lookup,
              absl::AnyInvocable<void()> changed);
  ~DnsClusters();
  DnsClusters(const DnsClusters&) = delete;
  DnsClusters& operator=(const DnsClusters&) = delete;

  // Whether `clusters` holds a DNS cluster (read from each one's facts, nothing parsed).
  static bool Any(const ResourceList<xds::Cluster>& clusters);

  // Follows the DNS clusters of `clusters`, a configuration that was applied: a new one (or one
  // whose name or port changed) is resolved at once, one unchanged keeps its answer and
  // schedule, one gone is forgotten (a lookup in flight for it is dropped).
  void Follow(const ResourceList<xds::Cluster>& clusters);

  // `set` with a ClusterLoadAssignment for each followed cluster that has addresses, inserted in
  // name order among set.endpoints (the same shared message until its addresses change, so a
  // build from the previous snapshot translates only what changed).
  void AddEndpoints(ResourceSet& set) const;
  // What to build from `resources`: itself when it holds no DNS cluster (nothing copied), else
  // `scratch` made a copy of it with AddEndpoints().
  const ResourceSet& WithEndpoints(const ResourceSet& resources, ResourceSet& scratch) const;

  // The clusters followed, and the addresses of one ("" when not followed or unresolved).
  size_t size() const { return targets_.size(); }
  std::vector<std::string> Addresses(const std::string& cluster) const;

 private:
  struct Target;
  void Resolve(Target& target);
  void OnAnswer(Target& target, absl::StatusOr<net::DnsAnswer> answer);

  event::Loop& loop_;
  StatsShard& stats_;
  const net::DnsLookupOptions lookup_;
  absl::AnyInvocable<void()> changed_;
  std::map<std::string, std::unique_ptr<Target>> targets_;  // by cluster name
};

}  // namespace meshlet::sidecar::config
