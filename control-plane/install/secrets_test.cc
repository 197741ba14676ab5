#include "control-plane/install/secrets.h"

#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <map>
#include <string>

#include "absl/strings/escaping.h"
#include "common/tls/certificate.h"
#include "control-plane/inject/node.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::install {
namespace {

using inject::Text;

// name -> (key -> decoded value) of the Secrets `options` needs.
std::map<std::string, std::map<std::string, std::string>> Made(const InstallOptions& options,
                                                               absl::Time now = absl::Now()) {
  absl::StatusOr<std::vector<YAML::Node>> secrets = MakeSecrets(options, now);
  EXPECT_TRUE(secrets.ok()) << secrets.status();
  std::map<std::string, std::map<std::string, std::string>> out;
  for (const YAML::Node& s : *secrets) {
    EXPECT_EQ(Text(s["kind"]), "Secret");
    EXPECT_EQ(Text(s["metadata"]["namespace"]), options.namespace_);
    auto& data = out[Text(s["metadata"]["name"])];
    for (auto it = s["data"].begin(); it != s["data"].end(); ++it) {
      std::string decoded;
      EXPECT_TRUE(absl::Base64Unescape(it->second.Scalar(), &decoded));
      data[it->first.Scalar()] = decoded;
    }
  }
  return out;
}

bssl::UniquePtr<X509> Cert(const std::string& pem) {
  absl::StatusOr<tls::CertificateChain> chain = tls::ParsePemCertificates(pem);
  EXPECT_TRUE(chain.ok()) << chain.status();
  return chain.ok() ? std::move(chain->front()) : nullptr;
}

// Whether `leaf` verifies up to `ca` for `purpose` (X509_PURPOSE_SSL_SERVER or _CLIENT) and,
// when given, for host or IP `name`.
bool Verifies(const std::string& ca_pem, const std::string& leaf_pem, int purpose,
              const std::string& name = "") {
  bssl::UniquePtr<X509> ca = Cert(ca_pem);
  bssl::UniquePtr<X509> leaf = Cert(leaf_pem);
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  if (!name.empty() && !X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())) {
    X509_VERIFY_PARAM_set1_host(param, name.data(), name.size());
  }
  return X509_verify_cert(ctx.get()) == 1;
}

TEST(SecretsTest, NoneWithoutEtcdTheStoreKeyWithAnyEtcd) {
  EXPECT_TRUE(Made(InstallOptions()).empty());
  InstallOptions external;
  ASSERT_TRUE(SetOption(external, "etcd=https://etcd.example:2379").ok());
  auto made = Made(external);
  ASSERT_EQ(made.size(), 1u);
  const std::string key = made[kStoreKeySecret][kStoreKeyFile];
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(key, "store-key");
  ASSERT_TRUE(keys.ok()) << keys.status();
  // A fresh key each time.
  EXPECT_NE(Made(external)[kStoreKeySecret][kStoreKeyFile], key);
}

TEST(SecretsTest, TheBundledEtcdsCertificatesNameItsMembersAndServeTheirUse) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "namespace=mesh").ok());
  ASSERT_TRUE(SetOption(options, "etcd=bundled").ok());
  ASSERT_TRUE(SetOption(options, "etcd.certificateDays=30").ok());
  const absl::Time now = absl::Now();
  auto made = Made(options, now);
  ASSERT_EQ(made.size(), 3u);
  const auto& member = made[kEtcdMemberSecret];
  const auto& client = made[kEtcdClientSecret];
  // One CA for both, and no CA key anywhere.
  EXPECT_EQ(member.at("ca.crt"), client.at("ca.crt"));
  for (const auto& [name, data] : made) {
    for (const auto& [key, value] : data) {
      if (key == "tls.key") continue;
      EXPECT_EQ(value.find("PRIVATE KEY"), std::string::npos) << name << " " << key;
    }
  }
  bssl::UniquePtr<X509> ca = Cert(member.at("ca.crt"));
  EXPECT_TRUE(tls::IsCa(*ca));
  // The members' certificate: for every member's name, the Service, localhost and loopback,
  // as a server and (to its peers) as a client.
  const std::string& cert = member.at("tls.crt");
  for (const std::string name :
       {"meshlet-etcd-0.meshlet-etcd.mesh.svc", "meshlet-etcd-2.meshlet-etcd.mesh.svc",
        "meshlet-etcd-1.meshlet-etcd.mesh.svc.cluster.local", "meshlet-etcd.mesh.svc", "localhost",
        "127.0.0.1", "::1"}) {
    EXPECT_TRUE(Verifies(member.at("ca.crt"), cert, X509_PURPOSE_SSL_SERVER, name)) << name;
  }
  EXPECT_FALSE(Verifies(member.at("ca.crt"), cert, X509_PURPOSE_SSL_SERVER,
                        "meshlet-etcd-3.meshlet-etcd.mesh.svc"));
  EXPECT_FALSE(Verifies(member.at("ca.crt"), cert, X509_PURPOSE_SSL_SERVER,
                        "meshlet-etcd-0.meshlet-etcd.other.svc"));
  EXPECT_TRUE(Verifies(member.at("ca.crt"), cert, X509_PURPOSE_SSL_CLIENT));
  // The control plane's: a client only.
  EXPECT_TRUE(Verifies(client.at("ca.crt"), client.at("tls.crt"), X509_PURPOSE_SSL_CLIENT));
  EXPECT_FALSE(Verifies(client.at("ca.crt"), client.at("tls.crt"), X509_PURPOSE_SSL_SERVER));
  // Each key is its certificate's.
  for (const auto* secret : {&member, &client}) {
    absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = tls::ParsePemPrivateKey(secret->at("tls.key"));
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_TRUE(tls::CheckKeyMatchesCertificate(*Cert(secret->at("tls.crt")), **key).ok());
  }
  // Valid from before now for the days asked.
  EXPECT_LE(tls::NotBefore(*Cert(cert)), now);
  EXPECT_EQ(absl::ToUnixSeconds(tls::NotAfter(*Cert(cert))),
            absl::ToUnixSeconds(now + absl::Hours(24 * 30)));
  // Another run, another CA: nothing is reused.
  EXPECT_NE(Made(options)[kEtcdMemberSecret]["ca.crt"], member.at("ca.crt"));
  EXPECT_TRUE(SecretsShareACa(kEtcdMemberSecret, kEtcdClientSecret));
  EXPECT_FALSE(SecretsShareACa(kStoreKeySecret, kEtcdClientSecret));
}

}  // namespace
}  // namespace meshlet::controlplane::install
