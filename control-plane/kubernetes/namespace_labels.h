#pragma once

// NamespaceLabels: every namespace's labels, listed and watched through the API server (metadata
// only), for the Gateway API's allowedRoutes.namespaces `from: Selector`
// (translate::GatewayEnvironment::namespace_labels; docs/gateway.md). `changed` gets the whole
// map after the first list and after every change of a namespace's labels (a namespace's other
// changes are not reported).
//
// Needs RBAC list and watch on namespaces (k8s/base/rbac.yaml). Stats: the Reflector's (resource
// "namespaces").
//
// Threading: the loop thread. The client, stats and callback must outlive this.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/reflector.h"

namespace meshlet::controlplane::kubernetes {

class NamespaceLabels {
 public:
  using Labels = std::map<std::string, std::map<std::string, std::string>>;  // by namespace
  using ChangedFn = std::function<void(const Labels&)>;

  NamespaceLabels(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                  const ReflectorOptions& options, ChangedFn changed);
  void Start() { reflector_->Start(); }
  // Listed once.
  bool synced() const { return reflector_->listed(); }

 private:
  const ChangedFn changed_;
  std::unique_ptr<Reflector<std::map<std::string, std::string>>> reflector_;
};

}  // namespace meshlet::controlplane::kubernetes
