#include "control-plane/kubernetes/namespace_labels.h"

#include <utility>

#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {

NamespaceLabels::NamespaceLabels(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                                 const ReflectorOptions& options, ChangedFn changed)
    : changed_(std::move(changed)) {
  reflector_ = std::make_unique<Reflector<std::map<std::string, std::string>>>(
      loop, api, stats, options,
      ReflectorConfig{
          .resource = "namespaces",
          .path = "/api/v1/namespaces",
          // Metadata only (what is read); an API server that cannot answer so sends whole ones.
          .list_accept =
              "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
          .watch_accept =
              "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
          .forbidden_hint = "the control plane needs list and watch on namespaces for Gateways' "
                            "allowedRoutes from: Selector (k8s/base/rbac.yaml)",
          .namespaced = false},
      [](const YAML::Node& object) {
        std::map<std::string, std::string> labels;
        const YAML::Node map = NodeAt(NodeAt(object, "metadata"), "labels");
        if (map.IsMap()) {
          for (auto it = map.begin(); it != map.end(); ++it) {
            if (it->second.IsScalar()) labels[it->first.Scalar()] = it->second.Scalar();
          }
        }
        return std::optional(std::move(labels));
      },
      [this](bool) { changed_(reflector_->objects()); });
}

}  // namespace meshlet::controlplane::kubernetes
