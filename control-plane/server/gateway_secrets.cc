#include "control-plane/server/gateway_secrets.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/config/field_path.h"
#include "common/stats/or_discard.h"
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
    : loop_(loop), api_(api), stats_(stats), options_(options), update_(std::move(update)) {
  auto gauge = [&](const char* state) {
    return OrDiscard(stats_.shared_shard().RegisterGauge(
                         "meshlet_cp_gateway_secrets",
                         "The Secrets meshlet's Gateways name in certificateRefs, by what the "
                         "control plane found: served, invalid (see the Gateway's listener "
                         "status), missing.",
                         {{"state", state}}),
                     "meshlet_cp_gateway_secrets");
  };
  served_ = gauge("served");
  invalid_ = gauge("invalid");
  missing_ = gauge("missing");
}

GatewaySecrets::~GatewaySecrets() = default;

void GatewaySecrets::SetReferences(const std::set<translate::GatewayEnvironment::Key>& references) {
  bool changed = false;
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (references.contains(it->first)) {
      ++it;
    } else {
      it = watches_.erase(it);
      changed = true;
    }
  }
  for (const translate::GatewayEnvironment::Key& key : references) {
    if (watches_.contains(key)) continue;
    // A name Kubernetes cannot hold names no Secret (and would not be safe in a path).
    if (!config::IsDnsSubdomain(key.first) || !config::IsDnsSubdomain(key.second)) continue;
    const auto& [namespace_, name] = key;
    auto watch = std::make_unique<Watch>(
        loop_, api_, stats_, options_,
        kubernetes::ReflectorConfig{
            .resource = absl::StrCat("secret ", namespace_, "/", name),
            .path = absl::StrCat("/api/v1/namespaces/", namespace_, "/secrets"),
            .query = absl::StrCat("fieldSelector=metadata.name%3D", name),
            .forbidden_hint =
                "the control plane needs get, list and watch on Secrets to serve a Gateway's "
                "certificateRefs (k8s/gateway/rbac.yaml)"},
        [](const YAML::Node& object) { return std::optional(CertificateFromSecret(object)); },
        [this](bool) { Changed(); });
    watch->Start();
    watches_.emplace(key, std::move(watch));
    changed = true;
  }
  if (changed || !published_) Changed();
}

void GatewaySecrets::Changed() {
  if (!published_) {
    for (const auto& [key, watch] : watches_) {
      if (!watch->listed()) return;
    }
  }
  translate::GatewayCertificates out;
  int64_t served = 0, invalid = 0, missing = 0;
  for (const auto& [key, watch] : watches_) {
    auto it = watch->objects().find(absl::StrCat(key.first, "/", key.second));
    if (it == watch->objects().end()) {
      missing += watch->listed() ? 1 : 0;
      continue;
    }
    (it->second.error.empty() ? served : invalid) += 1;
    if (!it->second.error.empty()) {
      LOG_EVERY_N_SEC(WARN, 10) << "gateway: Secret " << key.first << "/" << key.second
                                << " cannot be served: " << it->second.error;
    }
    out.emplace(key, it->second);
  }
  served_.Set(served);
  invalid_.Set(invalid);
  missing_.Set(missing);
  published_ = true;
  update_(out);
}

}  // namespace meshlet::controlplane
