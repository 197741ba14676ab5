#pragma once

// KubernetesPolicy: policy kept in Kubernetes, wired into the control plane (docs/kubernetes.md,
// "Policy from Kubernetes"; ADR 0059). With an API server known (--kubernetes-api) and
// --kubernetes-policy (default true), the replicas elect one leader through a Lease
// (kubernetes/leader_election.h); the leader mirrors the policy objects of the cluster into the
// store (kubernetes/policy_mirror.h: its writes are API writes, run on the store worker like
// `meshctl apply`'s) and writes route status back (kubernetes/route_status_writer.h). A route
// the API refuses gets Accepted False (UnsupportedValue) from the mirror; the status computed
// for stored routes arrives through SetRouteStatus.
//
// Threading: the control plane's loop thread. Destroy it before the ControlPlane.

#include <memory>
#include <string>
#include <vector>

#include "common/flags/flags.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/leader_election.h"
#include "control-plane/kubernetes/policy_mirror.h"
#include "control-plane/kubernetes/reflector.h"
#include "control-plane/kubernetes/route_status_writer.h"
#include "control-plane/policy/route_status.h"
#include "control-plane/server/control_plane.h"

namespace meshlet::controlplane {

struct KubernetesPolicyOptions {
  bool enabled = true;
  std::string lease_name = "meshlet-control-plane";
  Duration lease_duration = std::chrono::seconds(15);
  Duration renew_deadline = std::chrono::seconds(10);
  Duration retry_period = std::chrono::seconds(2);
  size_t max_response_bytes = 16 << 20;
};

// --kubernetes-policy, --leader-election-lease-duration, --leader-election-renew-deadline,
// --leader-election-retry-period.
std::vector<flags::Flag> KubernetesPolicyFlags(KubernetesPolicyOptions& options);

class KubernetesPolicy {
 public:
  // `namespace_`: the control plane's (where the Lease is). Errors are KubernetesApi::Create's.
  static absl::StatusOr<std::unique_ptr<KubernetesPolicy>> Create(
      ControlPlane& control_plane, const kubernetes::KubernetesApiOptions& api,
      const std::string& namespace_, KubernetesPolicyOptions options);
  ~KubernetesPolicy();

  void Start();
  // The computed status of every stored Gateway API route (written while this replica leads).
  void SetRouteStatus(std::vector<policy::RouteStatusUpdate> updates);

  kubernetes::PolicyMirror& mirror() { return *mirror_; }
  kubernetes::LeaderElector& elector() { return *elector_; }

 private:
  explicit KubernetesPolicy(ControlPlane& control_plane) : control_plane_(control_plane) {}

  ControlPlane& control_plane_;
  std::unique_ptr<kubernetes::KubernetesApi> api_;
  std::unique_ptr<kubernetes::RouteStatusWriter> status_writer_;
  std::unique_ptr<kubernetes::PolicyMirror> mirror_;
  std::unique_ptr<kubernetes::LeaderElector> elector_;
};

}  // namespace meshlet::controlplane
