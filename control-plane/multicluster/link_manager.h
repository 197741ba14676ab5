#pragma once

// LinkManager: this control plane's links to other clusters (ADR 0106), kept current. Each link
// is read every poll_interval: GET /api/v1/multicluster/exports on the linked cluster's API with
// the link's peer token, over TLS verified against the link's CA certificates and its API's
// SPIFFE id. What the links read last, merged, is the registry's linked clusters' endpoints
// (Registry::SetRemoteServices): for each Service a linked cluster exports with ready members,
// one endpoint per east-west gateway address, located in that cluster (locality.cluster, the
// gateway's region and zone), expecting the members' ids, weighing their number.
//
// A read that fails keeps the link's last endpoints, marked stale (state "stale", or
// "unauthorized" when the token was refused), until a read succeeds again; a link removed takes
// its endpoints along. Each read and failure is counted
// (meshlet_cp_multicluster_reads_total{cluster,result}), and each link's state is a gauge
// (meshlet_cp_multicluster_link_up{cluster}: 1 while its last read succeeded) and the answer of
// StatusJson() (`meshctl multicluster check`).
//
// Ownership: the loop, registry and stats must outlive it. Threading: the loop thread only.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/client.h"
#include "common/net/host_lookup.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context_provider.h"
#include "control-plane/multicluster/multicluster.pb.h"
#include "control-plane/registry/registry.h"

namespace meshlet::controlplane::multicluster {

struct LinkManagerOptions {
  std::string cluster;                               // this cluster's name (--cluster-name)
  Duration poll_interval = std::chrono::seconds(2);  // --multicluster-poll-interval
  Duration timeout = std::chrono::seconds(5);        // of one read: connect, TLS, the answer
  size_t max_answer_bytes = 16 << 20;                // a larger answer is a failed read
};

// The exports a link read, as the registry's endpoints of `cluster` (`stale`: marked so).
void AddRemoteEndpoints(const meshlet::multicluster::ClusterExports& exports, bool stale,
                        registry::RemoteServices& out);
// An exports answer parsed and checked: JSON of ClusterExports whose cluster is `cluster`;
// errors say what is wrong.
absl::StatusOr<meshlet::multicluster::ClusterExports> ParseExports(absl::string_view json,
                                                                   absl::string_view cluster);

class LinkManager {
 public:
  LinkManager(event::Loop& loop, const Clock& clock, registry::Registry& registry,
              StatsRegistry& stats, LinkManagerOptions options);
  ~LinkManager();
  LinkManager(const LinkManager&) = delete;
  LinkManager& operator=(const LinkManager&) = delete;

  // The links as stored now: new ones are read at once, changed ones read again, removed ones
  // dropped with their endpoints.
  void SetLinks(std::vector<meshlet::multicluster::ClusterLink> links);
  // One link stored (new or changed), or removed: SetLinks with the others as they are.
  void PutLink(meshlet::multicluster::ClusterLink link);
  void RemoveLink(const std::string& cluster);
  // The links' state (multicluster.proto LinkList), as JSON.
  std::string StatusJson() const;
  const LinkManagerOptions& options() const { return options_; }

 private:
  struct Link;
  // The links' specs but `cluster`'s.
  std::vector<meshlet::multicluster::ClusterLink> SpecsBut(const std::string& cluster) const;
  void Read(Link& link);
  void Fetch(Link& link, std::vector<net::Address> addresses);
  void Finish(Link& link, http::ClientResult result);
  void Failed(Link& link, absl::string_view state, std::string error);
  // The registry's endpoints from every link's last read.
  void Publish();

  event::Loop& loop_;
  const Clock& clock_;
  registry::Registry& registry_;
  StatsRegistry& stats_;
  const LinkManagerOptions options_;
  std::map<std::string, std::unique_ptr<Link>> links_;  // by cluster
};

}  // namespace meshlet::controlplane::multicluster
