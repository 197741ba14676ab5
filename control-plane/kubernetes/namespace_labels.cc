#include "control-plane/kubernetes/namespace_labels.h"

#include <utility>

#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {

NamespaceLabels::NamespaceLabels(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                                 const ReflectorOptions& options, ChangedFn changed)
    : changed_(std::move(changed)) {
  reflector_ = std::make_unique<Reflector<std::map<std::string, std::string>>>(
      loop, api, stats, options,
      ReflectorConfig{.resource = "namespaces",
                      .path = "/api/v1/namespaces",
                      .list_accept = kMetadataListAccept,
                      .watch_accept = kMetadataWatchAccept,
                      .forbidden_hint =
                          "the control plane needs list and watch on namespaces for Gateways' "
                          "allowedRoutes from: Selector (k8s/base/rbac.yaml)",
                      .namespaced = false},
      [](const YAML::Node& object) {
        return std::optional(StringMap(NodeAt(NodeAt(object, "metadata"), "labels")));
      },
      [this](bool) { changed_(reflector_->objects()); });
}

}  // namespace meshlet::controlplane::kubernetes
