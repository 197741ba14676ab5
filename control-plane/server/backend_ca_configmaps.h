#pragma once

// BackendCaConfigMaps: the ConfigMaps BackendTLSPolicies name in caCertificateRefs
// (translate::BackendCaConfigMapRefs), read from the Kubernetes API and kept current, for the CA
// certificates proxies verify backends with and for the policies' status (docs/gateway.md,
// "BackendTLSPolicy"). Each ConfigMap referenced has a watch of its own (NamedObjects); the
// control plane needs get, list and watch on ConfigMaps (k8s/gateway/rbac.yaml).
//
// Each ConfigMap becomes a translate::BackendCaBundle (CaBundleFromConfigMap). `update` gets the
// whole map as NamedObjects says, with the system's CA certificates (SystemCaBundle, for
// wellKnownCACertificates: System) under translate::kSystemCaBundle when given; with them, once
// more from the constructor, before any ConfigMap is read.
//
// Stats: meshlet_cp_backend_tls_configmaps{state="served"|"invalid"|"missing"} (the ConfigMaps
// referenced, by what was found), and the Reflectors' (resource "configmap NAMESPACE/NAME").
//
// Threading: the loop thread. The API client, stats and callback must outlive this.

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/reflector.h"
#include "control-plane/server/named_objects.h"
#include "control-plane/translate/resources.h"

namespace meshlet::controlplane {

// A ConfigMap object (JSON or YAML, as the API server sends it) as a CA bundle: data["ca.crt"],
// and `error` set when it cannot be used: no ca.crt, or not one or more PEM certificates.
translate::BackendCaBundle CaBundleFromConfigMap(const YAML::Node& config_map);

// The system's CA certificates (the control plane's --system-ca-file: Debian's
// /etc/ssl/certs/ca-certificates.crt), read once: `error` names the file and says why it cannot
// be used (unreadable, larger than kMaxSystemCaBytes, not PEM certificates).
inline constexpr size_t kMaxSystemCaBytes = 4 << 20;
translate::BackendCaBundle SystemCaBundle(const std::string& path);

class BackendCaConfigMaps {
 public:
  using UpdateFn = std::function<void(const translate::BackendCaBundles&)>;

  BackendCaConfigMaps(event::Loop& loop, kubernetes::KubernetesApi& api, StatsRegistry& stats,
                      const kubernetes::ReflectorOptions& options, UpdateFn update,
                      std::optional<translate::BackendCaBundle> system = std::nullopt);
  BackendCaConfigMaps(const BackendCaConfigMaps&) = delete;
  BackendCaConfigMaps& operator=(const BackendCaConfigMaps&) = delete;

  // The ConfigMaps to read, as (namespace, name).
  void SetReferences(const std::set<std::pair<std::string, std::string>>& references) {
    watches_.SetReferences(references);
  }

 private:
  NamedObjects<translate::BackendCaBundle> watches_;
};

}  // namespace meshlet::controlplane
