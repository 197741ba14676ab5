#pragma once

// PolicyMirror: meshlet's policy kinds kept in Kubernetes as custom resources (meshlet.io/v1:
// trafficpolicies, httproutes, authorizationpolicies, requestauthentications, externalservices,
// meshconfigs,
// services; the CRDs in k8s/base) mirrored into the policy store, through the same API writes
// `meshctl apply` makes (validated the same way, docs/kubernetes.md "Policy from Kubernetes").
//
// Each resource is reflected (reflector.h: paged lists, watches, 410 relists; a CRD that is not
// installed is absent, looked for again every minute). The mirror is level-triggered: after any
// change it compares every reflected object with what it last wrote and
//   - writes (PUT) each object whose document changed: apiVersion, kind, metadata.name,
//     namespace, labels and annotations (kubectl's last-applied-configuration left out) and
//     spec, with the annotations meshlet.io/managed-by: kubernetes and
//     meshlet.io/kubernetes-generation: <metadata.generation>;
//   - deletes each object it wrote that Kubernetes no longer has;
//   - after every full list (the first, or after a 410 or an outage), also deletes each stored
//     object marked managed-by kubernetes that Kubernetes does not have (what disappeared while
//     no watch was running, or while another replica mirrored).
// An object the API refuses (400/422: invalid) is not written at all (the store keeps the last
// valid version, if any) and gets a Warning Event (events.k8s.io/v1, reason Invalid, the API's
// message naming the field), once per version of the object; a refused Gateway API route also
// gets the status Accepted False, reason UnsupportedValue, for each of its parentRefs
// (options.refused_route). A write that fails otherwise (the
// store unavailable) is tried again after a backoff.
//
// `write` hands each request to the API as the mirror's own (PolicyApi::HandleFromMirror): the
// API refuses writes and deletes of a stored object marked managed-by kubernetes from anyone else
// (409, naming kubectl): on Kubernetes the cluster's object wins, and `meshctl apply` of such an
// object is refused.
//
// Run only by the elected replica (leader_election.h): Start() when elected, Stop() when not.
//
// Stats: meshlet_cp_kubernetes_policy_writes_total{result} (applied, unchanged, deleted, pruned,
// invalid, failed), meshlet_cp_kubernetes_policy_events_total{result} (Events posted: ok,
// failed), and the reflectors'.
//
// Threading: the loop thread. `api`, `write` and `stats` must outlive the mirror; `write`'s
// `done` must be called on the loop thread (it may be called from inside `write`).

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/reflector.h"
#include "control-plane/policy/managed_by.h"
#include "control-plane/policy/route_status.h"

namespace meshlet::controlplane::kubernetes {

// The mirror's mark (policy/managed_by.h: control-plane/api refuses to change a mirrored object
// but for the mirror), and the generation Kubernetes gave the object.
using policy::kManagedByAnnotation;
using policy::kManagedByKubernetes;
inline constexpr char kKubernetesGenerationAnnotation[] = "meshlet.io/kubernetes-generation";

// One request to the policy API (control-plane/api/api_server.h), answered as the mirror's
// (PolicyApi::HandleFromMirror), and its answer.
using PolicyWriteFn = std::function<void(http::ServerRequest request,
                                         std::function<void(http::ServerResponse response)> done)>;

struct PolicyMirrorOptions {
  ReflectorOptions reflector;
  // Events' reportingInstance.
  std::string replica_name = "control-plane";
  Duration retry_base = std::chrono::milliseconds(500);
  Duration retry_cap = std::chrono::seconds(30);
  // A Gateway API route the API refused: its status, Accepted False (UnsupportedValue, the
  // API's message) for each parentRef (`refused` true); the same route later written or deleted
  // (`refused` false). May be empty.
  std::function<void(policy::RouteStatusUpdate update, bool refused)> refused_route;
};

class PolicyMirror {
 public:
  PolicyMirror(event::Loop& loop, KubernetesApi& api, PolicyWriteFn write, StatsRegistry& stats,
               const Clock& clock, PolicyMirrorOptions options);
  ~PolicyMirror();
  PolicyMirror(const PolicyMirror&) = delete;
  PolicyMirror& operator=(const PolicyMirror&) = delete;

  // Starts reflecting and mirroring (this replica was elected).
  void Start();
  // Stops (leadership lost): the reflectors go, writes in flight are forgotten; the store keeps
  // what was written.
  void Stop();
  bool running() const { return !resources_.empty(); }
  // Every resource listed once and nothing left to write or delete.
  bool synced() const;

  // What the mirror reads of one object.
  struct Object {
    std::string kind;      // "TrafficPolicy"
    std::string document;  // what is written (YAML)
    std::string namespace_;
    std::string name;
    std::string uid;
    std::string api_version;
    // Gateway API routes: metadata.generation and spec.parentRefs (JSON), for their status.
    int64_t generation = 0;
    std::string parent_refs;
    bool operator==(const Object&) const = default;
  };

 private:
  struct Resource;
  struct Action;
  void Changed(Resource& resource, bool relisted);
  void Pass();
  void Next();
  void Finish(bool ok);
  void Retry();
  void Written(const Action& action, const http::ServerResponse& response);
  void Pruned(const Action& action, const http::ServerResponse& response);
  void PostEvent(const Object& object, absl::string_view message);
  // Tells options_.refused_route about a Gateway API route (`message` empty: not refused).
  void RouteRefused(const Object& object, absl::string_view message);
  void Count(absl::string_view result);

  event::Loop& loop_;
  KubernetesApi& api_;
  const PolicyWriteFn write_;
  StatsRegistry& stats_;
  const Clock& clock_;
  const PolicyMirrorOptions options_;
  std::vector<std::unique_ptr<Resource>> resources_;
  std::vector<Action> queue_;
  bool busy_ = false;   // a write is in flight
  bool dirty_ = false;  // something changed since the last pass
  int failures_ = 0;
  event::Timer pass_timer_;
  event::Timer next_timer_;
  std::shared_ptr<bool> alive_;
  std::map<std::string, Counter, std::less<>> writes_;
  Counter events_ok_, events_failed_;
};

}  // namespace meshlet::controlplane::kubernetes
