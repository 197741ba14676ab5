#pragma once

// KubernetesPolicy: policy kept in Kubernetes, wired into the control plane (docs/kubernetes.md,
// "Policy from Kubernetes"; ADR 0059, 0076). With an API server known (--kubernetes-api) and
// --kubernetes-policy (default true), the replicas of a revision elect one leader through the
// revision's Lease (kubernetes/leader_election.h); the leader mirrors the policy objects of the
// cluster into the revision's store (kubernetes/policy_mirror.h: its writes are API writes, run
// on the store worker like `meshctl apply`'s). Route status is written back
// (kubernetes/route_status_writer.h) by one replica of the whole mesh: the revision leaders
// compete for a second Lease shared by all revisions (status_lease_name), in which the default
// revision (the one the tag "default" points at, else the unnamed one; kubernetes/
// revision_tags.h) is preferred and takes it over from any other. A route the API refuses gets
// Accepted False (UnsupportedValue) from the mirror; the others get the status computed from
// the policy (SetPolicy) and the registry.
//
// Threading: the control plane's loop thread. Destroy it before the ControlPlane.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/net/ip_prefix.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/leader_election.h"
#include "control-plane/kubernetes/policy_mirror.h"
#include "control-plane/kubernetes/reflector.h"
#include "control-plane/kubernetes/revision_tags.h"
#include "control-plane/kubernetes/route_status_writer.h"
#include "control-plane/policy/route_status.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/server/gateway_deployer.h"
#include "control-plane/translate/gateway_status.h"

namespace meshlet::controlplane {

struct KubernetesPolicyOptions {
  bool enabled = true;
  std::string lease_name = "meshlet-control-plane";
  // Shared by the revisions: whoever holds it writes route status.
  std::string status_lease_name = "meshlet-route-status";
  std::string revision;  // this control plane's ("" the unnamed one)
  // How often the revision tags are listed (kubernetes/revision_tags.h; main.cc).
  Duration tags_interval = std::chrono::seconds(10);
  Duration lease_duration = std::chrono::seconds(15);
  Duration renew_deadline = std::chrono::seconds(10);
  Duration retry_period = std::chrono::seconds(2);
  size_t max_response_bytes = 16 << 20;
  // Route status is computed at most this often.
  Duration status_interval = std::chrono::milliseconds(200);
  // The addresses Gateways' spec.addresses may request (--gateway-addresses).
  std::vector<net::IpPrefix> gateway_address_ranges;
};

// --kubernetes-policy, --leader-election-lease-duration, --leader-election-renew-deadline,
// --leader-election-retry-period, --revision-tags-interval.
std::vector<flags::Flag> KubernetesPolicyFlags(KubernetesPolicyOptions& options);

class KubernetesPolicy {
 public:
  // `namespace_`: the control plane's (where the Lease is). Errors are KubernetesApi::Create's.
  // `tags` (may be null: the unnamed revision is the default one) must outlive this.
  static absl::StatusOr<std::unique_ptr<KubernetesPolicy>> Create(
      ControlPlane& control_plane, const kubernetes::KubernetesApiOptions& api,
      const std::string& namespace_, KubernetesPolicyOptions options,
      const kubernetes::RevisionTags* tags = nullptr);
  ~KubernetesPolicy();

  void Start();
  // The policy as last loaded (the ADS service's snapshots): route status is computed from it
  // and the registry (translate/route_status.h) while this replica leads, again after each
  // change of either (at most every status_interval), and written back for the routes mirrored
  // from Kubernetes, with their Kubernetes generation (annotation
  // meshlet.io/kubernetes-generation) as observedGeneration.
  // The status of meshlet's GatewayClasses and Gateways mirrored from Kubernetes is computed and
  // written back alike (translate/gateway_status.h), with the gateway proxies' addresses from the
  // registry and the Secrets from SetGatewaySecrets.
  void SetPolicy(std::shared_ptr<const policy::PolicySnapshot> policy);
  // The Secrets Gateways' certificateRefs name, as read (server/gateway_secrets.h); nullopt (the
  // default): not read, only the references are judged.
  void SetGatewaySecrets(
      std::optional<
          std::map<translate::GatewayEnvironment::Key, translate::GatewayEnvironment::Secret>>
          secrets);
  // The ConfigMaps BackendTLSPolicies' caCertificateRefs name, as read
  // (server/backend_ca_configmaps.h); nullopt (the default): not read.
  void SetBackendCaBundles(std::optional<translate::BackendCaBundles> bundles);
  // Each namespace's labels, for allowedRoutes from: Selector (kubernetes/namespace_labels.h).
  void SetNamespaceLabels(std::map<std::string, std::map<std::string, std::string>> labels);

  // Before Start(): this replica keeps the proxies of meshlet's Gateways deployed while it leads
  // its revision (server/gateway_deployer.h; options.default_revision defaults to whether this is
  // the default revision, as for route status).
  void EnableGatewayDeployments(GatewayDeployerOptions options);
  // Null unless enabled.
  GatewayDeployer* gateway_deployer() { return gateway_deployer_.get(); }

  kubernetes::PolicyMirror& mirror() { return *mirror_; }
  kubernetes::LeaderElector& elector() { return *elector_; }
  // The route-status Lease's, while this replica leads its revision; else null.
  kubernetes::LeaderElector* status_elector() { return status_elector_.get(); }

 private:
  KubernetesPolicy(ControlPlane& control_plane, KubernetesPolicyOptions options);
  void ScheduleStatus();
  void ComputeStatus();
  // This replica started (or stopped) leading its revision: it competes for the route-status
  // Lease (or hands it back).
  void CompeteForStatus(bool compete);

  ControlPlane& control_plane_;
  const KubernetesPolicyOptions options_;
  std::shared_ptr<const policy::PolicySnapshot> policy_;
  std::optional<std::map<translate::GatewayEnvironment::Key, translate::GatewayEnvironment::Secret>>
      gateway_secrets_;
  std::map<std::string, std::map<std::string, std::string>> namespace_labels_;
  std::optional<translate::BackendCaBundles> backend_ca_bundles_;
  event::Timer status_timer_;
  std::unique_ptr<registry::Registry::WatchHandle> registry_watch_;
  std::unique_ptr<kubernetes::KubernetesApi> api_;
  std::unique_ptr<kubernetes::RouteStatusWriter> status_writer_;
  std::unique_ptr<GatewayDeployer> gateway_deployer_;
  const kubernetes::RevisionTags* tags_ = nullptr;
  std::unique_ptr<kubernetes::PolicyMirror> mirror_;
  std::unique_ptr<kubernetes::LeaderElector> elector_;
  std::unique_ptr<kubernetes::LeaderElector> status_elector_;
  // One that stopped competing, kept until it released the Lease.
  std::unique_ptr<kubernetes::LeaderElector> retired_status_elector_;
  kubernetes::LeaderElectionOptions status_election_;
  bool stopping_ = false;
};

}  // namespace meshlet::controlplane
