#pragma once

// TrustBundleConfigMaps: keeps the ConfigMap injected pods mount ("meshlet-trust", key ca.pem:
// the CA's trust bundle, with which the proxy verifies the control plane) in every namespace
// whose pods the injection webhook selects by namespace (label meshlet.io/inject=enabled), so a
// labelled namespace's new pods start without an operator copying the root in (as istiod does
// with istio-ca-root-cert).
//
// Each round lists the namespaces matching `namespace_selector` or any of `more_selectors`
// (kube-system and the control plane's own left out), then for each GETs the ConfigMap: absent, it
// is created (labelled app.kubernetes.io/managed-by=meshlet); with another ca.pem, that key is set
// with a merge patch; otherwise nothing is written. Rounds run at Start(), then every `interval`; a
// round with a failure is followed by the next after retry_base doubling up to retry_cap. One
// request at a time. Needs RBAC list on namespaces, create on configmaps, and get and patch on the
// ConfigMap of that name (k8s/base/rbac.yaml).
//
// Logged: each ConfigMap created or updated; a failure once until the outcome changes.
// Stats: meshlet_cp_trust_bundle_configmaps_total{result}: created, updated, current, failed.
//
// Threading: the loop thread. `api` and `stats` must outlive this; destroying it cancels the
// schedule and drops a request in flight.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::kubernetes {

struct TrustBundleConfigMapsOptions {
  std::string config_map = "meshlet-trust";
  std::string key = "ca.pem";
  // A label selector (URL-escaped here); empty: no ConfigMaps are written.
  std::string namespace_selector = "meshlet.io/inject=enabled";
  // More selectors, asked at each round (the namespaces of the revision tags that point at this
  // control plane: kubernetes/revision_tags.h); a namespace any selector matches gets it.
  std::function<std::vector<std::string>()> more_selectors;
  // More namespaces by name, asked at each round (those of the Gateways whose proxies this
  // control plane deploys: server/gateway_deployer.h).
  std::function<std::vector<std::string>()> more_namespaces;
  std::vector<std::string> excluded_namespaces = {"kube-system", "meshlet-system"};
  Duration interval = std::chrono::seconds(30);
  Duration retry_base = std::chrono::seconds(1);
  Duration retry_cap = std::chrono::seconds(30);
};

class TrustBundleConfigMaps {
 public:
  TrustBundleConfigMaps(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                        std::string trust_bundle_pem, TrustBundleConfigMapsOptions options);
  ~TrustBundleConfigMaps();
  TrustBundleConfigMaps(const TrustBundleConfigMaps&) = delete;
  TrustBundleConfigMaps& operator=(const TrustBundleConfigMaps&) = delete;

  void Start();
  // The CA's trust bundle changed (a reload): the next round writes this.
  void SetTrustBundle(std::string trust_bundle_pem) { pem_ = std::move(trust_bundle_pem); }

 private:
  void Round();
  void ListNamespaces();  // with the next of selectors_left_
  void OnNamespaces(ApiResult result);
  void Next();  // the next namespace of the round, or the end of the round
  void OnConfigMap(const std::string& ns, ApiResult result);
  void Write(const std::string& ns, const std::string& method, const std::string& path,
             const std::string& content_type, std::string body, absl::string_view result);
  void Count(absl::string_view result);
  void Fail(const std::string& message);
  void EndRound();

  event::Loop& loop_;
  KubernetesApi& api_;
  StatsRegistry& stats_;
  std::string pem_;
  const TrustBundleConfigMapsOptions options_;
  event::Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::vector<std::string> selectors_left_;  // label selectors left to list in this round
  std::vector<std::string> pending_;         // namespaces left in this round
  bool round_failed_ = false;
  int consecutive_failed_rounds_ = 0;
  std::string last_failure_;
};

}  // namespace meshlet::controlplane::kubernetes
