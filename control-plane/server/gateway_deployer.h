#pragma once

// GatewayDeployer: runs a proxy for each of meshlet's Gateways in Kubernetes (docs/gateway.md,
// "Deployment"), as Istio's automated gateway deployment does: for each Gateway mirrored from
// Kubernetes whose GatewayClass is meshlet's and whose revision is this control plane's (its label
// meshlet.io/rev, else the default revision), the ServiceAccount, Deployment and Service of
// inject::GatewayManifests, named `<name>-<gatewayClassName>`, each with an owner reference to the
// Gateway (so Kubernetes deletes them with it) and the annotation gateway.meshlet.io/spec-hash
// (SHA-256 of what was rendered).
//
// Per Gateway, one request at a time: GET the Gateway (its uid; 404: nothing to do), then per
// object GET it: absent, it is created (POST); present and labelled
// app.kubernetes.io/managed-by=meshlet with another hash, the rendered object is written over it
// by a JSON merge patch carrying its resourceVersion (so fields others added, such as the
// Service's clusterIP or an autoscaler's replicas, stay; labels and annotations the Gateway's
// spec.infrastructure no longer lists are set to null, so removed); present and not meshlet's, it
// is left alone and counted as a conflict (logged). A Gateway is done again when what is rendered
// for it changes, after a failure (retry_base doubling to retry_cap) and every `resync` (an object
// someone deleted comes back). Objects of a Gateway that goes away are left to Kubernetes'
// garbage collector.
//
// Only the revision's leader writes (SetActive). Needs RBAC get on gateways and get, create and
// patch on serviceaccounts, services and apps deployments (k8s/gateway/rbac.yaml).
//
// Stats: meshlet_cp_gateway_deployments_total{result} (created, updated, unchanged, conflict,
// invalid, failed: per object, `invalid` per Gateway that cannot be rendered) and the gauge
// meshlet_cp_gateway_deployments (Gateways this control plane deploys).
//
// Threading: the loop thread. The API client and stats must outlive this.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/ip_prefix.h"
#include "common/stats/stats.h"
#include "control-plane/inject/gateway_deployment.h"
#include "control-plane/inject/inject.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/policy/snapshot.h"

namespace meshlet::controlplane {

inline constexpr char kGatewaySpecHashAnnotation[] = "gateway.meshlet.io/spec-hash";

struct GatewayDeployerOptions {
  // How the proxies are written: the injection webhook's options (image, control plane,
  // identity, trust domain, revision).
  inject::Options inject;
  // The addresses Gateways' spec.addresses may request (--gateway-addresses): the Service's
  // externalIPs are those of a Gateway's addresses in them.
  std::vector<net::IpPrefix> address_ranges;
  // Whether this control plane deploys Gateways without a meshlet.io/rev label (it is the default
  // revision); null: it does.
  std::function<bool()> default_revision;
  Duration resync = std::chrono::seconds(60);
  Duration retry_base = std::chrono::seconds(1);
  Duration retry_cap = std::chrono::seconds(30);
};

// The Gateways of `policy` this control plane deploys, rendered (policy objects mirrored from
// Kubernetes only); invalid ones have their error instead.
struct RenderedGateway {
  std::string namespace_;
  std::string name;
  absl::StatusOr<std::vector<YAML::Node>> objects;
};
std::vector<RenderedGateway> RenderGateways(const policy::PolicySnapshot& policy,
                                            const GatewayDeployerOptions& options);

class GatewayDeployer {
 public:
  GatewayDeployer(event::Loop& loop, kubernetes::KubernetesApi& api, StatsRegistry& stats,
                  GatewayDeployerOptions options);
  ~GatewayDeployer();
  GatewayDeployer(const GatewayDeployer&) = delete;
  GatewayDeployer& operator=(const GatewayDeployer&) = delete;

  void SetPolicy(const policy::PolicySnapshot& policy);
  // Writing on (this replica leads its revision) or off.
  void SetActive(bool active);
  // The namespaces of the Gateways deployed (they need the trust-bundle ConfigMap).
  std::vector<std::string> namespaces() const;
  // Active, and every Gateway done since it last changed.
  bool idle() const;

 private:
  struct Gateway {
    std::vector<YAML::Node> objects;  // rendered, with the hash annotation
    std::string hash;
    std::string done_hash;  // what was last written completely
    std::string uid;
    size_t next = 0;  // the object being written
    int failures = 0;
  };
  void Next();
  void OnGateway(const std::string& key, kubernetes::ApiResult result);
  void WriteObject(const std::string& key);
  void OnObject(const std::string& key, kubernetes::ApiResult result);
  void OnWritten(const std::string& key, absl::string_view result, kubernetes::ApiResult written);
  void Finish(const std::string& key, bool ok, const std::string& why);
  void Count(absl::string_view result);

  event::Loop& loop_;
  kubernetes::KubernetesApi& api_;
  StatsRegistry& stats_;
  const GatewayDeployerOptions options_;
  bool active_ = false;
  std::map<std::string, Gateway> gateways_;  // by "namespace/name"
  std::set<std::string> logged_;             // what was logged once (invalid Gateways, conflicts)
  std::string in_flight_;
  event::Timer timer_;
  event::Timer resync_timer_;
  Gauge deployed_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace meshlet::controlplane
