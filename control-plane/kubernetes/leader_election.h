#pragma once

// LeaderElector: which control-plane replica is the one that mirrors policy from Kubernetes and
// writes route status back (docs/kubernetes.md, "Leader election"; ADR 0059). The replicas
// compete for one coordination.k8s.io/v1 Lease (`name` in the control plane's namespace), as
// Kubernetes' own controllers do:
//   - every retry_period each replica reads the Lease. A replica takes it (PUT with the read
//     resourceVersion, so two cannot both succeed; POST when there is none) when it holds it
//     already, when it has no holder, or when its holder has not renewed it for
//     leaseDurationSeconds as observed by this replica's own monotonic clock (clocks of different
//     machines are never compared);
//   - the holder renews it (renewTime) at each retry_period; when it has not renewed it
//     successfully for renew_deadline (shorter than lease_duration), it stops leading before any
//     other replica may take over. A holder whose last renewal succeeded renews with a PUT of the
//     Lease that renewal answered, without reading it first (as client-go does): the Lease
//     changed meanwhile (a claim, another holder) fails that PUT (resourceVersion), and the
//     holder then reads it at once, as any other replica does. So a leader costs one request per
//     retry_period, not two.
// So on the leader's death another replica leads within lease_duration + retry_period, and two
// never lead at once as long as no replica's clock runs more than (lease_duration -
// renew_deadline) / lease_duration faster than another's.
// On shutdown, Release() stops leading first and then empties the Lease's holder, so that another
// replica takes over at its next retry_period instead of waiting out the lease.
//
// Among revisions (the route-status Lease, ADR 0076), candidates can be preferred: `preferred`
// says whether this one is now (its revision is the default revision). Each holder records its
// revision in the Lease (annotation meshlet.io/revision). A preferred candidate that finds the
// Lease held by another revision's candidate claims it (annotation meshlet.io/claimed-by: its
// identity, the holder and renewTime kept; a compare-and-swap like any write); the holder, unless
// preferred itself, stops leading at its next renewal and then empties the holder; for
// lease_duration after the claim was last seen changed, no one but the claimant takes the empty
// Lease. So leadership moves to the preferred candidate within about two retry periods without
// two candidates ever leading at once, and a claimant that died is waited for only as long as a
// dead holder would be.
//
// Needs RBAC get, create and update on leases (coordination.k8s.io) in its namespace.
//
// Stats: meshlet_cp_leader (1 while this replica leads), meshlet_cp_leader_transitions_total
// (times it started or stopped leading), meshlet_cp_leader_lease_errors_total (Lease requests
// that failed).
//
// Threading: the loop thread; `on_change` is called on it, never from inside Start().

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <yaml-cpp/yaml.h>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::kubernetes {

struct LeaderElectionOptions {
  std::string namespace_;  // the control plane's
  std::string name = "meshlet-control-plane";
  std::string identity;  // this replica's name (the pod's); must differ between replicas
  Duration lease_duration = std::chrono::seconds(15);
  Duration renew_deadline = std::chrono::seconds(10);
  Duration retry_period = std::chrono::seconds(2);
  // This candidate's revision (display name), recorded in the Lease; empty: none recorded.
  std::string revision;
  // Null: no preference (every candidate equal).
  std::function<bool()> preferred;
  // The stats' names: <stats_name> (the gauge), <stats_name>_transitions_total,
  // <stats_name>_lease_errors_total; and what leading means, for the log.
  std::string stats_name = "meshlet_cp_leader";
  std::string role = "mirrors policy from Kubernetes, writes route status";
};

// The Lease annotations of preferred candidates.
inline constexpr char kLeaseRevisionAnnotation[] = "meshlet.io/revision";
inline constexpr char kLeaseClaimAnnotation[] = "meshlet.io/claimed-by";

class LeaderElector {
 public:
  // `on_change(true)` when this replica starts leading, `(false)` when it stops.
  LeaderElector(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats, const Clock& clock,
                LeaderElectionOptions options, std::function<void(bool leading)> on_change);
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  void Start();
  bool leading() const { return leading_; }
  // Stops competing. When leading: on_change(false) at once, then the Lease's holder is emptied
  // (if it still names this replica) so that another takes over without waiting for it to
  // expire. released() is true once that is done or failed (at once when not leading).
  void Release();
  bool released() const { return released_; }

 private:
  void Try();
  // Try() of a holder whose last renewal succeeded: PUT the Lease renewed_ with a new renewTime.
  void Renew();
  void OnRenewed(ApiResult result);
  void OnRead(ApiResult result);
  void OnWrite(ApiResult result);
  // A write of the Lease; its answer goes to `then`.
  void Write(const std::string& method, const std::string& path, std::string body,
             void (LeaderElector::*then)(ApiResult) = &LeaderElector::OnWrite);
  // A PUT of the Lease: `holder`, renewed now, with `claim` (empty: none), keeping the rest.
  std::string LeaseBody(const YAML::Node& lease, const std::string& holder,
                        const std::string& acquire, int64_t transitions,
                        const std::string& claim) const;
  void SetLeading(bool leading);
  // Renewal failed or was refused: leading ends once the last renewal is renew_deadline old.
  void Failed();
  // Release(): the Lease read, emptied when it still names this replica.
  void OnReadToRelease(ApiResult result);
  std::string LeasePath() const;

  event::Loop& loop_;
  KubernetesApi& api_;
  const Clock& clock_;
  const LeaderElectionOptions options_;
  const std::function<void(bool)> on_change_;
  event::Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool leading_ = false;
  bool releasing_ = false;
  bool released_ = false;
  MonotonicTime last_renewed_{};
  // The Lease as the API server answered this replica's last renewal, while it leads and that
  // renewal was the last request on the Lease; empty otherwise (the next try reads it).
  std::optional<YAML::Node> renewed_;
  // The holder and renewTime last read, and when (this replica's clock) they last changed.
  std::string observed_holder_;
  std::string observed_renew_;
  std::string observed_claim_;
  MonotonicTime observed_at_{};
  Gauge leader_gauge_;
  Counter transitions_;
  Counter errors_;
};

}  // namespace meshlet::controlplane::kubernetes
