#pragma once

// WebhookCaBundle: keeps the caBundle of the control plane's own MutatingWebhookConfiguration
// (k8s/base/webhook.yaml, "meshlet-sidecar-injector") equal to its CA's trust bundle, so that the
// API server trusts the webhook's certificate without an operator copying the root in. The CA
// creates its root on first start, so no manifest can carry it; and `kubectl apply` of the
// manifests again resets the field, so this is checked periodically, not once.
//
// Each check GETs the configuration; when a webhook's clientConfig.caBundle differs from
// base64(trust bundle), one PATCH (application/json-patch+json) sets every such webhook's, guarded
// by a "test" of the resourceVersion read, so a concurrent change makes the PATCH fail and the
// next check starts over. Checks run at Start(), then every `check_interval`; after a failure the
// next comes with exponential backoff (retry_base doubling up to retry_cap). Needs RBAC get and
// patch on that one object (k8s/base/rbac.yaml).
//
// Logged: the first update, every change of outcome (not found, refused, ...) once.
// Stats: meshlet_cp_webhook_ca_bundle_checks_total{result}: current (already right), updated,
// not_found (no such configuration: pods are not injected at creation), failed (the API server
// could not be reached or refused; the message is logged).
//
// Threading: the loop thread. `api` and `stats` must outlive this; destroying it cancels the
// schedule and drops a request in flight.

#include <memory>
#include <string>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::kubernetes {

struct WebhookCaBundleOptions {
  std::string configuration_name = "meshlet-sidecar-injector";
  Duration check_interval = std::chrono::seconds(30);
  Duration retry_base = std::chrono::seconds(1);
  Duration retry_cap = std::chrono::seconds(30);
};

class WebhookCaBundle {
 public:
  WebhookCaBundle(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                  std::string trust_bundle_pem, WebhookCaBundleOptions options);
  ~WebhookCaBundle();
  WebhookCaBundle(const WebhookCaBundle&) = delete;
  WebhookCaBundle& operator=(const WebhookCaBundle&) = delete;

  void Start();
  // The CA's trust bundle changed (a reload): the next check makes the caBundle this.
  void SetTrustBundle(const std::string& trust_bundle_pem);

 private:
  void Check();
  void OnRead(ApiResult result);
  // Counts `result`, logs a change of outcome, and schedules the next check.
  void Done(absl::string_view result, const std::string& message);

  event::Loop& loop_;
  KubernetesApi& api_;
  StatsRegistry& stats_;
  std::string ca_bundle_;  // base64 of the trust bundle PEM
  const WebhookCaBundleOptions options_;
  const std::string path_;
  event::Timer timer_;
  // Guards callbacks of a request in flight against this object's destruction.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  int consecutive_failures_ = 0;
  std::string last_outcome_;
};

}  // namespace meshlet::controlplane::kubernetes
