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
// when given, for host or IP `name`, at time `at`.
bool Verifies(const std::string& ca_pem, const std::string& leaf_pem, int purpose,
              const std::string& name = "", absl::Time at = absl::Now()) {
  bssl::UniquePtr<X509> ca = Cert(ca_pem);
  bssl::UniquePtr<X509> leaf = Cert(leaf_pem);
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, absl::ToUnixSeconds(at));
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
  ASSERT_TRUE(SetOption(options, "etcd.certificateDays=60").ok());
  const absl::Time now = absl::Now();
  auto made = Made(options, now);
  ASSERT_EQ(made.size(), 4u);
  const auto& member = made[kEtcdMemberSecret];
  const auto& client = made[kEtcdClientSecret];
  // One CA for both, kept with its key in a Secret of its own, its key nowhere else.
  EXPECT_EQ(member.at("ca.crt"), client.at("ca.crt"));
  EXPECT_EQ(made[kEtcdCaSecret].at("ca.crt"), member.at("ca.crt"));
  for (const auto& [name, data] : made) {
    for (const auto& [key, value] : data) {
      if (key == "tls.key" || (name == kEtcdCaSecret && key == kEtcdCaKeyFile)) continue;
      EXPECT_EQ(value.find("PRIVATE KEY"), std::string::npos) << name << " " << key;
    }
  }
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> ca_key =
      tls::ParsePemPrivateKey(made[kEtcdCaSecret].at(kEtcdCaKeyFile));
  ASSERT_TRUE(ca_key.ok()) << ca_key.status();
  EXPECT_TRUE(tls::CheckKeyMatchesCertificate(*Cert(member.at("ca.crt")), **ca_key).ok());
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
            absl::ToUnixSeconds(now + absl::Hours(24 * 60)));
  // The CA for its own, longer lifetime (10 years by default).
  EXPECT_EQ(absl::ToUnixSeconds(tls::NotAfter(*ca)),
            absl::ToUnixSeconds(now + absl::Hours(24 * 3650)));
  // Another run, another CA: nothing is reused.
  EXPECT_NE(Made(options)[kEtcdMemberSecret]["ca.crt"], member.at("ca.crt"));
  EXPECT_TRUE(SecretsShareACa(kEtcdMemberSecret, kEtcdClientSecret));
  EXPECT_TRUE(SecretsShareACa(kEtcdCaSecret, kEtcdMemberSecret));
  EXPECT_FALSE(SecretsShareACa(kStoreKeySecret, kEtcdClientSecret));
}

TEST(SecretsTest, CertificateDaysMustOutlastTheRenewalWindowAndNotTheCa) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "etcd=bundled").ok());
  ASSERT_TRUE(SetOption(options, "etcd.certificateDays=30").ok());
  absl::StatusOr<std::vector<YAML::Node>> made = MakeSecrets(options, absl::Now());
  EXPECT_TRUE(absl::IsInvalidArgument(made.status())) << made.status();
  EXPECT_NE(made.status().message().find("etcd.renewBeforeDays=30"), std::string::npos);
  ASSERT_TRUE(SetOption(options, "etcd.renewBeforeDays=7").ok());
  EXPECT_TRUE(MakeSecrets(options, absl::Now()).ok());
  ASSERT_TRUE(SetOption(options, "etcd.caDays=20").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(MakeSecrets(options, absl::Now()).status()));
}

// The bundled etcd's Secrets as MakeSecrets made them, as RenewEtcdCertificates reads them.
EtcdSecrets Bundled(std::map<std::string, std::map<std::string, std::string>> made) {
  return {.ca = made[kEtcdCaSecret],
          .member = made[kEtcdMemberSecret],
          .client = made[kEtcdClientSecret]};
}

std::string Serial(const std::string& pem) { return tls::SerialNumberHex(*Cert(pem)); }

TEST(SecretsTest, CertificatesAreRenewedUnderTheKeptCaInsideTheWindowOnly) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "namespace=mesh").ok());
  ASSERT_TRUE(SetOption(options, "etcd=bundled").ok());
  ASSERT_TRUE(SetOption(options, "etcd.certificateDays=100").ok());
  ASSERT_TRUE(SetOption(options, "etcd.renewBeforeDays=20").ok());
  const absl::Time made_at = absl::Now();
  const EtcdSecrets secrets = Bundled(Made(options, made_at));
  const std::string& ca = secrets.ca->at("ca.crt");

  // 79 days on, 21 left: kept, both.
  absl::StatusOr<EtcdRenewal> early =
      RenewEtcdCertificates(options, secrets, made_at + absl::Hours(24 * 79), false);
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_TRUE(early->renewed.empty());
  ASSERT_EQ(early->report.size(), 2u);
  EXPECT_NE(early->report[0].find("certificate kept"), std::string::npos) << early->report[0];

  // 81 days on, 19 left: both renewed, under the same CA, with the same names, fresh keys.
  const absl::Time later = made_at + absl::Hours(24 * 81);
  absl::StatusOr<EtcdRenewal> due = RenewEtcdCertificates(options, secrets, later, false);
  ASSERT_TRUE(due.ok()) << due.status();
  ASSERT_EQ(due->renewed.size(), 2u);
  const SecretData& member = due->renewed.at(kEtcdMemberSecret);
  const SecretData& client = due->renewed.at(kEtcdClientSecret);
  EXPECT_EQ(member.at("ca.crt"), ca);
  EXPECT_EQ(client.at("ca.crt"), ca);
  EXPECT_NE(Serial(member.at("tls.crt")), Serial(secrets.member.at("tls.crt")));
  EXPECT_NE(member.at("tls.key"), secrets.member.at("tls.key"));
  EXPECT_NE(client.at("tls.key"), secrets.client.at("tls.key"));
  for (const std::string name : {"meshlet-etcd-0.meshlet-etcd.mesh.svc",
                                 "meshlet-etcd-2.meshlet-etcd.mesh.svc.cluster.local",
                                 "meshlet-etcd.mesh.svc", "localhost", "127.0.0.1", "::1"}) {
    EXPECT_TRUE(Verifies(ca, member.at("tls.crt"), X509_PURPOSE_SSL_SERVER, name, later)) << name;
  }
  EXPECT_FALSE(Verifies(ca, member.at("tls.crt"), X509_PURPOSE_SSL_SERVER,
                        "meshlet-etcd-3.meshlet-etcd.mesh.svc", later));
  EXPECT_TRUE(Verifies(ca, member.at("tls.crt"), X509_PURPOSE_SSL_CLIENT, "", later));
  EXPECT_TRUE(Verifies(ca, client.at("tls.crt"), X509_PURPOSE_SSL_CLIENT, "", later));
  EXPECT_FALSE(Verifies(ca, client.at("tls.crt"), X509_PURPOSE_SSL_SERVER, "", later));
  EXPECT_EQ(tls::SubjectName(*Cert(client.at("tls.crt"))),
            tls::SubjectName(*Cert(secrets.client.at("tls.crt"))));
  for (const SecretData* data : {&member, &client}) {
    absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = tls::ParsePemPrivateKey(data->at("tls.key"));
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_TRUE(tls::CheckKeyMatchesCertificate(*Cert(data->at("tls.crt")), **key).ok());
    EXPECT_EQ(absl::ToUnixSeconds(tls::NotAfter(*Cert(data->at("tls.crt")))),
              absl::ToUnixSeconds(later + absl::Hours(24 * 100)));
  }

  // Forced: renewed whatever is left.
  absl::StatusOr<EtcdRenewal> forced = RenewEtcdCertificates(options, secrets, made_at, true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->renewed.size(), 2u);
  EXPECT_NE(Serial(forced->renewed.at(kEtcdClientSecret).at("tls.crt")),
            Serial(secrets.client.at("tls.crt")));

  // Near the CA's own end, a certificate does not outlive it; within the window of it, refused.
  const absl::Time ca_end = tls::NotAfter(*Cert(ca));
  absl::StatusOr<EtcdRenewal> last =
      RenewEtcdCertificates(options, secrets, ca_end - absl::Hours(24 * 50), true);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(tls::NotAfter(*Cert(last->renewed.at(kEtcdMemberSecret).at("tls.crt"))), ca_end);
  absl::StatusOr<EtcdRenewal> too_late =
      RenewEtcdCertificates(options, secrets, ca_end - absl::Hours(24 * 10), true);
  EXPECT_TRUE(absl::IsFailedPrecondition(too_late.status())) << too_late.status();
}

TEST(SecretsTest, WithAKeptCaTheCertificatesAreIssuedUnderIt) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "namespace=mesh").ok());
  ASSERT_TRUE(SetOption(options, "etcd=bundled").ok());
  const absl::Time now = absl::Now();
  const SecretData kept = Made(options, now)[kEtcdCaSecret];
  absl::StatusOr<std::vector<YAML::Node>> secrets = MakeSecrets(options, now, kept);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  std::map<std::string, SecretData> made;
  for (const YAML::Node& s : *secrets) {
    auto& data = made[Text(s["metadata"]["name"])];
    for (auto it = s["data"].begin(); it != s["data"].end(); ++it) {
      ASSERT_TRUE(absl::Base64Unescape(it->second.Scalar(), &data[it->first.Scalar()]));
    }
  }
  ASSERT_EQ(made.size(), 4u);
  EXPECT_EQ(made[kEtcdCaSecret], kept);
  for (const char* name : {kEtcdMemberSecret, kEtcdClientSecret}) {
    EXPECT_EQ(made[name].at("ca.crt"), kept.at("ca.crt")) << name;
    EXPECT_TRUE(Verifies(kept.at("ca.crt"), made[name].at("tls.crt"), X509_PURPOSE_SSL_CLIENT))
        << name;
  }
  EXPECT_TRUE(Verifies(kept.at("ca.crt"), made[kEtcdMemberSecret].at("tls.crt"),
                       X509_PURPOSE_SSL_SERVER, "meshlet-etcd-1.meshlet-etcd.mesh.svc"));
  // A CA Secret without its key: refused.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      MakeSecrets(options, now, SecretData{{"ca.crt", kept.at("ca.crt")}}).status()));
}

TEST(SecretsTest, CertificatesOfAnotherCaOrWithoutTheKeptCaAreNotRenewed) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "namespace=mesh").ok());
  ASSERT_TRUE(SetOption(options, "etcd=bundled").ok());
  const absl::Time now = absl::Now();
  EtcdSecrets old = Bundled(Made(options, now));
  old.ca.reset();
  // An install made before the CA was kept: outside the window, kept and said so.
  absl::StatusOr<EtcdRenewal> kept = RenewEtcdCertificates(options, old, now, false);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(kept->renewed.empty());
  EXPECT_NE(kept->report[0].find("cannot be renewed"), std::string::npos) << kept->report[0];
  // Due, or forced: refused, saying what to do.
  for (const absl::Time when : {now + absl::Hours(24 * 350), now}) {
    absl::StatusOr<EtcdRenewal> refused = RenewEtcdCertificates(options, old, when, when == now);
    ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
    const std::string message(refused.status().message());
    EXPECT_NE(message.find("Secret mesh/meshlet-etcd-ca does not exist"), std::string::npos)
        << message;
    EXPECT_NE(message.find("Nothing changed"), std::string::npos) << message;
    EXPECT_NE(message.find("restart the etcd members and the control plane"), std::string::npos)
        << message;
  }
  // A member certificate of another CA than the kept one: refused, not re-signed.
  EtcdSecrets mixed = Bundled(Made(options, now));
  mixed.member = Bundled(Made(options, now)).member;
  absl::StatusOr<EtcdRenewal> refused = RenewEtcdCertificates(options, mixed, now, true);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  // A CA key that is not the CA's.
  EtcdSecrets wrong_key = Bundled(Made(options, now));
  wrong_key.ca->at(kEtcdCaKeyFile) = Bundled(Made(options, now)).ca->at(kEtcdCaKeyFile);
  EXPECT_TRUE(
      absl::IsFailedPrecondition(RenewEtcdCertificates(options, wrong_key, now, true).status()));
}

}  // namespace
}  // namespace meshlet::controlplane::install
