// Secrets and TLS settings: the workload certificate, secrets read from files.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(TranslateTest, WorkloadCertificateReplacesTheSecret) {
  ResourceSet set = Base();
  set.listeners.Mutable(1).mutable_tls()->clear_secret_name();
  set.listeners.Mutable(1).mutable_tls()->set_workload_certificate(true);
  set.clusters.Mutable(0).mutable_tls()->set_enabled(true);
  set.clusters.Mutable(0).mutable_tls()->set_workload_certificate(true);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_TRUE((*snapshot)->listeners[1].tls.workload_certificate);
  EXPECT_TRUE((*snapshot)->listeners[1].tls.secret_name.empty());
  EXPECT_TRUE((*snapshot)->FindCluster("backend")->tls.workload_certificate);

  // Neither a secret nor the workload certificate: nothing to serve TLS with.
  set.listeners.Mutable(1).mutable_tls()->set_workload_certificate(false);
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()),
              HasSubstr("tls.secret_name: required when mode is STRICT (or set "
                        "tls.workload_certificate: true)"));
}

TEST(TranslateTest, SecretFilesAreRead) {
  const std::string dir = TestTmpDir();
  WriteFile(dir + "/cert.pem", kPem);
  WriteFile(dir + "/key.pem", kKeyPem);
  ResourceSet set = Base();
  set.secrets.Mutable(0).clear_certificate_chain_pem();
  set.secrets.Mutable(0).clear_private_key_pem();
  set.secrets.Mutable(0).set_certificate_chain_file(dir + "/cert.pem");
  set.secrets.Mutable(0).set_private_key_file(dir + "/key.pem");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->FindSecret("mesh-cert")->certificate_chain_pem, kPem);
  EXPECT_EQ((*snapshot)->FindSecret("mesh-cert")->private_key_pem, kKeyPem);
}

// A gateway's HTTPS listener: TLS without client certificates, more certificates by SNI.
TEST(TranslateTest, TlsModeAndServerCertificates) {
  ResourceSet set = Base();
  xds::DownstreamTls* tls = set.listeners.Mutable(1).mutable_tls();
  tls->set_mode(xds::DownstreamTls::TLS);
  xds::ServerCertificate* shop = tls->add_server_certificates();
  shop->add_server_names("shop.example.com");
  shop->add_server_names("*.shop.example.com");
  shop->set_secret_name("mesh-cert");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const DownstreamTlsConfig& out = (*snapshot)->listeners[1].tls;
  EXPECT_EQ(out.mode, DownstreamTlsConfig::Mode::kTls);
  EXPECT_FALSE(out.require_client_certificate);
  ASSERT_EQ(out.server_certificates.size(), 1u);
  EXPECT_THAT(out.server_certificates[0].server_names,
              testing::ElementsAre("shop.example.com", "*.shop.example.com"));
  EXPECT_EQ(out.server_certificates[0].secret_name, "mesh-cert");

  xds::ServerCertificate* bad = tls->add_server_certificates();
  bad->add_server_names("Shop.example.com");
  bad->add_server_names("shop.example.com");
  bad->set_secret_name("missing");
  tls->add_server_certificates()->set_secret_name("mesh-cert");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  EXPECT_THAT(message, HasSubstr("tls.server_certificates[1].server_names[0]: \"Shop.example.com\" "
                                 "is not a lower-case host name"));
  EXPECT_THAT(message, HasSubstr("tls.server_certificates[1].server_names[1]: "
                                 "\"shop.example.com\" is listed twice"));
  EXPECT_THAT(message,
              HasSubstr("tls.server_certificates[1].secret_name: \"missing\" names no Secret"));
  EXPECT_THAT(message, HasSubstr("tls.server_certificates[2].server_names: required"));
}

}  // namespace
}  // namespace meshlet::sidecar::config
