#include "control-plane/install/secrets.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"
#include "common/tls/certificate_builder.h"
#include "control-plane/inject/node.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::install {
namespace {

using inject::StringNode;

YAML::Node Secret(const std::string& name, const std::string& type, const std::string& ns,
                  const std::vector<std::pair<std::string, std::string>>& data) {
  YAML::Node secret(YAML::NodeType::Map);
  secret["apiVersion"] = StringNode("v1");
  secret["kind"] = StringNode("Secret");
  secret["metadata"]["name"] = StringNode(name);
  secret["metadata"]["namespace"] = StringNode(ns);
  secret["metadata"]["labels"]["app.kubernetes.io/part-of"] = StringNode("meshlet");
  secret["type"] = StringNode(type);
  for (const auto& [key, value] : data) secret["data"][key] = StringNode(absl::Base64Escape(value));
  return secret;
}

struct Issued {
  std::string cert_pem;
  std::string key_pem;
};

absl::StatusOr<Issued> Issue(const tls::CertificateSpec& spec, X509* ca, EVP_PKEY* ca_key) {
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, tls::GenerateEcdsaP256Key());
  ASSIGN_OR_RETURN(bssl::UniquePtr<X509> cert, tls::BuildCertificate(spec, key.get(), ca, ca_key));
  Issued out;
  ASSIGN_OR_RETURN(out.cert_pem, tls::CertificateToPem(*cert));
  ASSIGN_OR_RETURN(out.key_pem, tls::PrivateKeyToPem(*key));
  return out;
}

}  // namespace

std::vector<std::string> BundledEtcdDnsNames(absl::string_view namespace_) {
  std::vector<std::string> names;
  for (int i = 0; i < kBundledEtcdMembers; ++i) {
    const std::string member = absl::StrCat("meshlet-etcd-", i, ".meshlet-etcd.", namespace_);
    names.push_back(absl::StrCat(member, ".svc"));
    names.push_back(absl::StrCat(member, ".svc.cluster.local"));
  }
  names.push_back("meshlet-etcd");
  names.push_back(absl::StrCat("meshlet-etcd.", namespace_));
  names.push_back(absl::StrCat("meshlet-etcd.", namespace_, ".svc"));
  names.push_back(absl::StrCat("meshlet-etcd.", namespace_, ".svc.cluster.local"));
  names.push_back("localhost");
  return names;
}

absl::StatusOr<std::vector<YAML::Node>> MakeSecrets(const InstallOptions& options, absl::Time now) {
  std::vector<YAML::Node> secrets;
  if (options.etcd.empty()) return secrets;
  const std::string& ns = options.namespace_;
  secrets.push_back(Secret(kStoreKeySecret, "Opaque", ns,
                           {{kStoreKeyFile, absl::StrCat(StoreKeys::GenerateKeyText(), "\n")}}));
  if (options.etcd != kBundledEtcd) return secrets;

  const absl::Time not_before = now - absl::Hours(1);
  const absl::Time not_after = now + absl::Hours(24) * options.etcd_certificate_days;
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> ca_key, tls::GenerateEcdsaP256Key());
  ASSIGN_OR_RETURN(bssl::UniquePtr<X509> ca,
                   tls::BuildCertificate({.common_name = absl::StrCat("meshlet etcd CA ", ns),
                                          .is_ca = true,
                                          .path_length = 0,
                                          .not_before = not_before,
                                          .not_after = not_after},
                                         ca_key.get(), nullptr, nullptr));
  ASSIGN_OR_RETURN(std::string ca_pem, tls::CertificateToPem(*ca));
  ASSIGN_OR_RETURN(Issued member, Issue({.common_name = "meshlet-etcd",
                                         .not_before = not_before,
                                         .not_after = not_after,
                                         .dns_names = BundledEtcdDnsNames(ns),
                                         .ip_addresses = {"127.0.0.1", "::1"}},
                                        ca.get(), ca_key.get()));
  ASSIGN_OR_RETURN(Issued client, Issue({.common_name = "meshlet-control-plane",
                                         .not_before = not_before,
                                         .not_after = not_after,
                                         .server_auth = false},
                                        ca.get(), ca_key.get()));
  secrets.push_back(
      Secret(kEtcdMemberSecret, "kubernetes.io/tls", ns,
             {{"ca.crt", ca_pem}, {"tls.crt", member.cert_pem}, {"tls.key", member.key_pem}}));
  secrets.push_back(
      Secret(kEtcdClientSecret, "kubernetes.io/tls", ns,
             {{"ca.crt", ca_pem}, {"tls.crt", client.cert_pem}, {"tls.key", client.key_pem}}));
  return secrets;
}

bool SecretsShareACa(const std::string& a, const std::string& b) {
  auto tls = [](const std::string& name) {
    return name == kEtcdMemberSecret || name == kEtcdClientSecret;
  };
  return tls(a) && tls(b);
}

}  // namespace meshlet::controlplane::install
