#include "control-plane/server/gateway_secrets.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/tls/certificate.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane {
namespace {

constexpr char kTlsType[] = "kubernetes.io/tls";

// data[key] decoded; false with `error` set when it is missing, empty or not base64.
bool DataValue(const YAML::Node& data, const char* key, std::string& out, std::string& error) {
  absl::StatusOr<std::optional<std::string>> value = kubernetes::SecretData(data, key);
  if (!value.ok()) {
    error = absl::StrCat("data[\"", key, "\"] is not base64");
    return false;
  }
  if (!value->has_value()) {
    error = absl::StrCat("data[\"", key, "\"] is missing or empty");
    return false;
  }
  out = **std::move(value);
  return true;
}

// Why `chain_pem` and `key_pem` cannot be served, or empty.
std::string CheckCertificate(const std::string& chain_pem, const std::string& key_pem) {
  absl::StatusOr<tls::CertificateChain> chain = tls::ParsePemCertificates(chain_pem);
  if (!chain.ok()) return absl::StrCat("tls.crt: ", chain.status().message());
  if (chain->empty()) return "tls.crt holds no certificate";
  if (tls::IsCa(*chain->front())) {
    return "the first certificate of tls.crt is a CA (basicConstraints CA:TRUE), not a server's";
  }
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = tls::ParsePemPrivateKey(key_pem);
  if (!key.ok()) return absl::StrCat("tls.key: ", key.status().message());
  if (absl::Status match = tls::CheckKeyMatchesCertificate(*chain->front(), **key); !match.ok()) {
    return absl::StrCat("tls.key does not match the first certificate of tls.crt: ",
                        match.message());
  }
  return "";
}

}  // namespace

translate::GatewayCertificate CertificateFromSecret(const YAML::Node& secret) {
  translate::GatewayCertificate out;
  out.type = kubernetes::ScalarAt(secret, "type");
  if (out.type != kTlsType) {
    out.error = absl::StrCat("the Secret is of type \"", out.type, "\", not ", kTlsType);
    return out;
  }
  const YAML::Node data = kubernetes::NodeAt(secret, "data");
  if (!DataValue(data, "tls.crt", out.chain_pem, out.error) ||
      !DataValue(data, "tls.key", out.key_pem, out.error)) {
    out.chain_pem.clear();
    out.key_pem.clear();
    return out;
  }
  out.error = CheckCertificate(out.chain_pem, out.key_pem);
  if (!out.error.empty()) {
    // Nothing of a Secret that cannot be served is kept or sent.
    out.chain_pem.clear();
    out.key_pem.clear();
  }
  return out;
}

GatewaySecrets::GatewaySecrets(event::Loop& loop, kubernetes::KubernetesApi& api,
                               StatsRegistry& stats, const kubernetes::ReflectorOptions& options,
                               UpdateFn update)
    : watches_(loop, api, stats, options,
               {.singular = "secret",
                .plural = "secrets",
                .forbidden_hint =
                    "the control plane needs get, list and watch on Secrets to serve a Gateway's "
                    "certificateRefs (k8s/gateway/rbac.yaml)",
                .parse = CertificateFromSecret,
                .gauge = "meshlet_cp_gateway_secrets",
                .gauge_help = "The Secrets meshlet's Gateways name in certificateRefs, by what the "
                              "control plane found: served, invalid (see the Gateway's listener "
                              "status), missing.",
                .log_name = "gateway: Secret"},
               std::move(update)) {}

}  // namespace meshlet::controlplane
