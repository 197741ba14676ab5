#include "control-plane/server/backend_ca_configmaps.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/tls/certificate.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane {

translate::BackendCaBundle CaBundleFromConfigMap(const YAML::Node& config_map) {
  translate::BackendCaBundle out;
  const YAML::Node data = kubernetes::NodeAt(config_map, "data");
  out.pem = kubernetes::ScalarAt(data, "ca.crt");
  if (out.pem.empty()) {
    out.error = "data[\"ca.crt\"] is missing or empty";
    return out;
  }
  absl::StatusOr<tls::CertificateChain> certificates = tls::ParsePemCertificates(out.pem);
  if (!certificates.ok() || certificates->empty()) {
    out.error =
        absl::StrCat("data[\"ca.crt\"] is not PEM certificates",
                     certificates.ok() ? "" : absl::StrCat(": ", certificates.status().message()));
    out.pem.clear();  // nothing of a ConfigMap that cannot be used is sent
  }
  return out;
}

translate::BackendCaBundle SystemCaBundle(const std::string& path) {
  translate::BackendCaBundle out;
  absl::StatusOr<std::string> text = ReadFile(path, kMaxSystemCaBytes);
  if (!text.ok()) {
    out.error = absl::StrCat("--system-ca-file: ", text.status().message());
    return out;
  }
  absl::StatusOr<tls::CertificateChain> certificates = tls::ParsePemCertificates(*text);
  if (!certificates.ok() || certificates->empty()) {
    out.error =
        absl::StrCat("--system-ca-file: \"", path, "\" is not PEM certificates",
                     certificates.ok() ? "" : absl::StrCat(": ", certificates.status().message()));
    return out;
  }
  out.pem = *std::move(text);
  return out;
}

namespace {
// `update` with the system's bundle added to every map.
BackendCaConfigMaps::UpdateFn WithSystem(BackendCaConfigMaps::UpdateFn update,
                                         std::optional<translate::BackendCaBundle> system) {
  if (!system.has_value()) return update;
  return [update = std::move(update),
          system = *std::move(system)](const translate::BackendCaBundles& bundles) {
    translate::BackendCaBundles all = bundles;
    all[translate::kSystemCaBundle] = system;
    update(all);
  };
}
}  // namespace

BackendCaConfigMaps::BackendCaConfigMaps(event::Loop& loop, kubernetes::KubernetesApi& api,
                                         StatsRegistry& stats,
                                         const kubernetes::ReflectorOptions& options,
                                         UpdateFn update,
                                         std::optional<translate::BackendCaBundle> system)
    : watches_(
          loop, api, stats, options,
          {.singular = "configmap",
           .plural = "configmaps",
           .forbidden_hint = "the control plane needs get, list and watch on ConfigMaps to read a "
                             "BackendTLSPolicy's caCertificateRefs (k8s/gateway/rbac.yaml)",
           .parse = CaBundleFromConfigMap,
           .gauge = "meshlet_cp_backend_tls_configmaps",
           .gauge_help = "The ConfigMaps BackendTLSPolicies name in caCertificateRefs, by "
                         "what the control plane found: served, invalid (see the policy's "
                         "ResolvedRefs condition), missing.",
           .log_name = "backend TLS: ConfigMap"},
          WithSystem(update, system)) {
  if (system.has_value()) WithSystem(std::move(update), std::move(system))({});
}

}  // namespace meshlet::controlplane
