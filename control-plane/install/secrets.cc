#include "control-plane/install/secrets.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
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

// A day, in UTC, for messages.
std::string Day(absl::Time t) { return absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone()); }

}  // namespace

namespace {

// The members' certificate: for clients and peers, every member's name, the Service, loopback.
tls::CertificateSpec MemberSpec(const std::string& ns, absl::Time not_before,
                                absl::Time not_after) {
  return {.common_name = "meshlet-etcd",
          .not_before = not_before,
          .not_after = not_after,
          .dns_names = BundledEtcdDnsNames(ns),
          .ip_addresses = {"127.0.0.1", "::1"}};
}

// The control plane's client certificate.
tls::CertificateSpec ClientSpec(absl::Time not_before, absl::Time not_after) {
  return {.common_name = "meshlet-control-plane",
          .not_before = not_before,
          .not_after = not_after,
          .server_auth = false};
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

absl::StatusOr<std::vector<YAML::Node>> MakeSecrets(const InstallOptions& options, absl::Time now,
                                                    const std::optional<SecretData>& kept_ca) {
  std::vector<YAML::Node> secrets;
  if (options.etcd.empty()) return secrets;
  const std::string& ns = options.namespace_;
  secrets.push_back(Secret(kStoreKeySecret, "Opaque", ns,
                           {{kStoreKeyFile, absl::StrCat(StoreKeys::GenerateKeyText(), "\n")}}));
  if (options.etcd != kBundledEtcd) return secrets;
  RETURN_IF_ERROR(CheckEtcdCertificateDays(options));

  if (kept_ca.has_value()) {
    // Certificates that do not exist yet, issued as a renewal would.
    const auto ca_pem = kept_ca->find("ca.crt");
    const SecretData fresh = {{"ca.crt", ca_pem != kept_ca->end() ? ca_pem->second : ""}};
    ASSIGN_OR_RETURN(EtcdRenewal issued,
                     RenewEtcdCertificates(options, {kept_ca, fresh, fresh}, now, true));
    secrets.push_back(Secret(kEtcdCaSecret, "Opaque", ns, {kept_ca->begin(), kept_ca->end()}));
    for (const char* name : {kEtcdMemberSecret, kEtcdClientSecret}) {
      const SecretData& data = issued.renewed.at(name);
      secrets.push_back(Secret(name, "kubernetes.io/tls", ns, {data.begin(), data.end()}));
    }
    return secrets;
  }

  const absl::Time not_before = now - absl::Hours(1);
  const absl::Time not_after = now + absl::Hours(24) * options.etcd_certificate_days;
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> ca_key, tls::GenerateEcdsaP256Key());
  ASSIGN_OR_RETURN(
      bssl::UniquePtr<X509> ca,
      tls::BuildCertificate({.common_name = absl::StrCat("meshlet etcd CA ", ns),
                             .is_ca = true,
                             .path_length = 0,
                             .not_before = not_before,
                             .not_after = now + absl::Hours(24) * options.etcd_ca_days},
                            ca_key.get(), nullptr, nullptr));
  ASSIGN_OR_RETURN(std::string ca_pem, tls::CertificateToPem(*ca));
  ASSIGN_OR_RETURN(std::string ca_key_pem, tls::PrivateKeyToPem(*ca_key));
  ASSIGN_OR_RETURN(Issued member,
                   Issue(MemberSpec(ns, not_before, not_after), ca.get(), ca_key.get()));
  ASSIGN_OR_RETURN(Issued client, Issue(ClientSpec(not_before, not_after), ca.get(), ca_key.get()));
  secrets.push_back(
      Secret(kEtcdCaSecret, "Opaque", ns, {{"ca.crt", ca_pem}, {kEtcdCaKeyFile, ca_key_pem}}));
  secrets.push_back(
      Secret(kEtcdMemberSecret, "kubernetes.io/tls", ns,
             {{"ca.crt", ca_pem}, {"tls.crt", member.cert_pem}, {"tls.key", member.key_pem}}));
  secrets.push_back(
      Secret(kEtcdClientSecret, "kubernetes.io/tls", ns,
             {{"ca.crt", ca_pem}, {"tls.crt", client.cert_pem}, {"tls.key", client.key_pem}}));
  return secrets;
}

absl::StatusOr<EtcdRenewal> RenewEtcdCertificates(const InstallOptions& options,
                                                  const EtcdSecrets& secrets, absl::Time now,
                                                  bool force) {
  RETURN_IF_ERROR(CheckEtcdCertificateDays(options));
  const std::string& ns = options.namespace_;
  const absl::Duration window = absl::Hours(24) * options.etcd_renew_before_days;
  struct Leaf {
    const char* name;
    const SecretData* data;
    std::optional<absl::Time> not_after;  // empty: no readable certificate
    bool due = false;
  };
  std::vector<Leaf> leaves = {{kEtcdMemberSecret, &secrets.member},
                              {kEtcdClientSecret, &secrets.client}};
  std::vector<std::string> due;
  for (Leaf& leaf : leaves) {
    auto cert = leaf.data->find("tls.crt");
    if (cert != leaf.data->end()) {
      absl::StatusOr<tls::CertificateChain> chain = tls::ParsePemCertificates(cert->second);
      if (chain.ok() && !chain->empty()) leaf.not_after = tls::NotAfter(*chain->front());
    }
    leaf.due = force || !leaf.not_after.has_value() || *leaf.not_after - now < window;
    if (leaf.due) due.push_back(leaf.name);
  }
  EtcdRenewal out;
  if (due.empty()) {
    for (const Leaf& leaf : leaves) {
      out.report.push_back(absl::StrCat(
          "secret/", leaf.name, ": certificate kept, valid until ", Day(*leaf.not_after),
          secrets.ca.has_value()
              ? absl::StrCat(", renewed from ", Day(*leaf.not_after - window))
              : absl::StrCat("; it cannot be renewed (no Secret ", kEtcdCaSecret,
                             ": an install made before the CA was kept), replace it before "
                             "then (docs/kubernetes.md)")));
    }
    return out;
  }
  const std::string what = absl::StrJoin(due, " and ");
  if (!secrets.ca.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot renew ", what, ": Secret ", ns, "/", kEtcdCaSecret,
        " does not exist (an install made before the bundled etcd's CA was kept) and the CA "
        "that signed them is gone. Nothing changed. Replace them instead: delete Secrets ",
        kEtcdMemberSecret, " and ", kEtcdClientSecret,
        ", apply the install again (its Job makes a new CA, kept this time, and new "
        "certificates), then restart the etcd members and the control plane "
        "(docs/kubernetes.md, \"Renewing the bundled etcd's certificates\")"));
  }
  auto refuse = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot renew ", what, ": Secret ", ns, "/", kEtcdCaSecret, " ", why,
                     ". Nothing changed; replace the CA and the certificates (docs/kubernetes.md, "
                     "\"Renewing the bundled etcd's certificates\")"));
  };
  const auto ca_pem = secrets.ca->find("ca.crt");
  const auto ca_key_pem = secrets.ca->find(kEtcdCaKeyFile);
  if (ca_pem == secrets.ca->end() || ca_key_pem == secrets.ca->end()) {
    return refuse(absl::StrCat("lacks ca.crt or ", kEtcdCaKeyFile));
  }
  absl::StatusOr<tls::CertificateChain> ca = tls::ParsePemCertificates(ca_pem->second);
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> ca_key = tls::ParsePemPrivateKey(ca_key_pem->second);
  if (!ca.ok() || ca->empty() || !ca_key.ok()) {
    return refuse(absl::StrCat("holds no readable certificate or key: ",
                               !ca.ok() ? ca.status().message() : ca_key.status().message()));
  }
  if (!tls::CheckKeyMatchesCertificate(*ca->front(), **ca_key).ok()) {
    return refuse(absl::StrCat(kEtcdCaKeyFile, " is not the key of its ca.crt"));
  }
  const absl::Time ca_not_after = tls::NotAfter(*ca->front());
  if (ca_not_after - now < window) {
    return refuse(absl::StrCat("expires on ", Day(ca_not_after),
                               ", within etcd.renewBeforeDays; certificates under it would "
                               "expire with it"));
  }
  const absl::Time not_before = now - absl::Hours(1);
  const absl::Time not_after =
      std::min(now + absl::Hours(24) * options.etcd_certificate_days, ca_not_after);
  for (const Leaf& leaf : leaves) {
    if (!leaf.due) {
      out.report.push_back(absl::StrCat("secret/", leaf.name, ": certificate kept, valid until ",
                                        Day(*leaf.not_after)));
      continue;
    }
    auto leaf_ca = leaf.data->find("ca.crt");
    if (leaf_ca == leaf.data->end() || leaf_ca->second != ca_pem->second) {
      return refuse(
          absl::StrCat("is not the CA in Secret ", leaf.name, "'s ca.crt (what etcd trusts)"));
    }
    const bool member = leaf.name == std::string(kEtcdMemberSecret);
    ASSIGN_OR_RETURN(Issued issued, Issue(member ? MemberSpec(ns, not_before, not_after)
                                                 : ClientSpec(not_before, not_after),
                                          ca->front().get(), ca_key->get()));
    SecretData data = *leaf.data;
    data["tls.crt"] = issued.cert_pem;
    data["tls.key"] = issued.key_pem;
    out.renewed[leaf.name] = std::move(data);
    out.report.push_back(
        absl::StrCat("secret/", leaf.name, ": certificate renewed, valid until ", Day(not_after)));
  }
  return out;
}

bool SecretsShareACa(const std::string& a, const std::string& b) {
  auto one_ca = [](const std::string& name) {
    return name == kEtcdCaSecret || name == kEtcdMemberSecret || name == kEtcdClientSecret;
  };
  return a != b && one_ca(a) && one_ca(b);
}

}  // namespace meshlet::controlplane::install
