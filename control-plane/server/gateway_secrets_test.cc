// GatewaySecrets against FakeApiServer: a Secret becomes a certificate or the reason it cannot be
// served (CertificateFromSecret); only the Secrets referenced are read, each by a list and watch
// selecting its name; nothing is published before every first reference is listed (a missing
// one left out); a watch event rotates a certificate; a reference dropped stops its watch and
// leaves the map.

#include "control-plane/server/gateway_secrets.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "common/tls/test_certificates.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "control-plane/server/backend_ca_configmaps.h"

namespace meshlet::controlplane {
namespace {

using kubernetes::testing::FakeApiServer;
using kubernetes::testing::RunUntil;
using tls::testing::TestCa;
using tls::testing::TestCertificate;
using tls::testing::ValueOrDie;

std::string SecretJson(const std::string& ns, const std::string& name, const std::string& type,
                       const std::string& crt, const std::string& key, int version = 1) {
  return absl::StrCat(R"({"metadata":{"namespace":")", ns, R"(","name":")", name,
                      R"(","resourceVersion":")", version, R"("},"type":")", type,
                      R"(","data":{"tls.crt":")", absl::Base64Escape(crt), R"(","tls.key":")",
                      absl::Base64Escape(key), R"("}})");
}

class GatewaySecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_.emplace(ValueOrDie(TestCa::Create()));
    shop_ = ValueOrDie(ca_->Issue({.dns_names = {"shop.example.com"}}));
    other_ = ValueOrDie(ca_->Issue({.dns_names = {"other.example.com"}}));
    server_.set_handler([this](const http::ServerRequest& request, http::Responder respond) {
      const std::string path(request.path());
      const std::string selector = request.QueryParams().count("fieldSelector") > 0
                                       ? request.QueryParams().find("fieldSelector")->second
                                       : "";
      if (request.QueryParams().count("watch") > 0) {
        watches_.emplace_back(path + " " + selector, std::move(respond));
        return;
      }
      lists_.push_back(path + " " + selector);
      if (hold_lists_) {
        held_lists_.push_back(path + " " + selector);
        held_.push_back(std::move(respond));
        return;
      }
      std::string items;
      auto it = secrets_.find(path + " " + selector);
      if (it != secrets_.end()) items = it->second;
      respond(http::ServerResponse::Json(
          200, absl::StrCat(R"({"metadata":{"resourceVersion":"5"},"items":[)", items, "]}")));
    });
    api_ = server_.Api();
  }

  std::unique_ptr<GatewaySecrets> Make() {
    return std::make_unique<GatewaySecrets>(
        loop_, *api_, stats_, kubernetes::ReflectorOptions{},
        [this](const translate::GatewayCertificates& c) { published_.push_back(c); });
  }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::unique_ptr<kubernetes::KubernetesApi> api_;
  std::optional<TestCa> ca_;
  TestCertificate shop_, other_;
  // "path selector" -> the list's items.
  std::map<std::string, std::string> secrets_;
  std::vector<std::string> lists_;
  std::vector<std::pair<std::string, http::Responder>> watches_;
  std::vector<http::Responder> held_;
  std::vector<std::string> held_lists_;  // what each held list asked
  bool hold_lists_ = false;
  std::vector<translate::GatewayCertificates> published_;
};

TEST_F(GatewaySecretsTest, CertificateFromSecretServesOnlyAMatchingServerCertificate) {
  auto from = [](const std::string& json) { return CertificateFromSecret(YAML::Load(json)); };
  translate::GatewayCertificate good =
      from(SecretJson("default", "shop", "kubernetes.io/tls", shop_.chain_pem, shop_.key_pem));
  EXPECT_EQ(good.error, "");
  EXPECT_EQ(good.chain_pem, shop_.chain_pem);
  EXPECT_EQ(good.key_pem, shop_.key_pem);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {SecretJson("default", "s", "Opaque", shop_.chain_pem, shop_.key_pem),
       "the Secret is of type \"Opaque\", not kubernetes.io/tls"},
      {R"({"type":"kubernetes.io/tls","data":{"tls.key":"eA=="}})",
       "data[\"tls.crt\"] is missing or empty"},
      {R"({"type":"kubernetes.io/tls","data":{"tls.crt":"!!","tls.key":"eA=="}})",
       "data[\"tls.crt\"] is not base64"},
      {SecretJson("default", "s", "kubernetes.io/tls", "not pem", shop_.key_pem), "tls.crt: "},
      {SecretJson("default", "s", "kubernetes.io/tls", shop_.chain_pem, "not pem"), "tls.key: "},
      {SecretJson("default", "s", "kubernetes.io/tls", shop_.chain_pem, other_.key_pem),
       "tls.key does not match the first certificate of tls.crt"},
      {SecretJson("default", "s", "kubernetes.io/tls", ca_->cert_pem(), shop_.key_pem),
       "the first certificate of tls.crt is a CA"},
  };
  for (const auto& [json, want] : bad) {
    translate::GatewayCertificate c = from(json);
    EXPECT_TRUE(absl::StartsWith(c.error, want)) << json << "\n got: " << c.error;
    EXPECT_EQ(c.chain_pem, "") << json;
    EXPECT_EQ(c.key_pem, "") << json;
  }
}

TEST_F(GatewaySecretsTest, ReadsOnlyTheReferencedSecretsAndFollowsTheirChanges) {
  secrets_["/api/v1/namespaces/default/secrets metadata.name=shop"] =
      SecretJson("default", "shop", "kubernetes.io/tls", shop_.chain_pem, shop_.key_pem);
  secrets_["/api/v1/namespaces/certs/secrets metadata.name=broken"] =
      SecretJson("certs", "broken", "kubernetes.io/tls", shop_.chain_pem, other_.key_pem);
  hold_lists_ = true;
  auto secrets = Make();
  secrets->SetReferences({{"default", "shop"}, {"certs", "broken"}, {"default", "gone"}});
  ASSERT_TRUE(RunUntil(loop_, [&] { return held_.size() == 3; }));
  EXPECT_TRUE(published_.empty());  // nothing before every Secret is listed
  std::sort(lists_.begin(), lists_.end());
  EXPECT_EQ(lists_,
            (std::vector<std::string>{"/api/v1/namespaces/certs/secrets metadata.name=broken",
                                      "/api/v1/namespaces/default/secrets metadata.name=gone",
                                      "/api/v1/namespaces/default/secrets metadata.name=shop"}));

  // Two of the three answer: still nothing; the third completes the first publication.
  auto answer = [&](size_t i) {
    std::string items;
    if (auto it = secrets_.find(held_lists_[i]); it != secrets_.end()) items = it->second;
    held_[i](http::ServerResponse::Json(
        200, absl::StrCat(R"({"metadata":{"resourceVersion":"5"},"items":[)", items, "]}")));
  };
  answer(0);
  answer(1);
  ASSERT_TRUE(RunUntil(loop_, [&] { return watches_.size() == 2; }));
  EXPECT_TRUE(published_.empty());
  answer(2);
  ASSERT_TRUE(RunUntil(loop_, [&] { return !published_.empty(); }));
  translate::GatewayCertificates first = published_.back();
  ASSERT_EQ(first.size(), 2u);  // "gone" does not exist
  EXPECT_EQ(first.at({"default", "shop"}).error, "");
  EXPECT_EQ(first.at({"default", "shop"}).chain_pem, shop_.chain_pem);
  EXPECT_TRUE(absl::StartsWith(first.at({"certs", "broken"}).error, "tls.key does not match"));

  // The shop Secret rotates: a MODIFIED event on its watch.
  ASSERT_TRUE(RunUntil(loop_, [&] { return watches_.size() == 3; }));
  for (const char* state : {"served", "invalid", "missing"}) {
    absl::StatusOr<GaugeId> gauge =
        stats_.RegisterGauge("meshlet_cp_gateway_secrets", "x", {{"state", state}});
    ASSERT_TRUE(gauge.ok());
    EXPECT_EQ(stats_.GaugeValue(*gauge), 1) << state;
  }
  http::Responder* shop_watch = nullptr;
  for (auto& [what, respond] : watches_) {
    if (what == "/api/v1/namespaces/default/secrets metadata.name=shop") shop_watch = &respond;
  }
  ASSERT_NE(shop_watch, nullptr);
  const size_t before = published_.size();
  (*shop_watch)(http::ServerResponse::Json(
      200, absl::StrCat(R"({"type":"MODIFIED","object":)",
                        SecretJson("default", "shop", "kubernetes.io/tls", other_.chain_pem,
                                   other_.key_pem, 6),
                        "}\n")));
  ASSERT_TRUE(RunUntil(loop_, [&] { return published_.size() > before; }));
  EXPECT_EQ(published_.back().at({"default", "shop"}).chain_pem, other_.chain_pem);

  // A reference dropped leaves the map at once.
  secrets->SetReferences({{"default", "shop"}});
  EXPECT_EQ(published_.back().size(), 1u);
  EXPECT_TRUE(published_.back().contains({"default", "shop"}));
}

std::string ConfigMapJson(const std::string& ns, const std::string& name, const std::string& data) {
  return absl::StrCat(R"({"metadata":{"namespace":")", ns, R"(","name":")", name,
                      R"(","resourceVersion":"1"},"data":)", data, "}");
}

TEST_F(GatewaySecretsTest, BackendTlsConfigMapsAreReadByNameForTheirCaCertificates) {
  const std::string ca = ca_->cert_pem();
  const std::string ca_data = absl::StrCat(R"({"ca.crt":")", absl::CEscape(ca), R"("})");
  auto from = [](const std::string& json) { return CaBundleFromConfigMap(YAML::Load(json)); };
  translate::BackendCaBundle good = from(ConfigMapJson("shop", "ca", ca_data));
  EXPECT_EQ(good.error, "");
  EXPECT_EQ(good.pem, ca);
  EXPECT_EQ(from(ConfigMapJson("shop", "ca", "{}")).error, "data[\"ca.crt\"] is missing or empty");
  translate::BackendCaBundle bad = from(ConfigMapJson("shop", "ca", R"({"ca.crt":"not pem"})"));
  EXPECT_TRUE(absl::StartsWith(bad.error, "data[\"ca.crt\"] is not PEM certificates")) << bad.error;
  EXPECT_EQ(bad.pem, "");

  // Only the ConfigMaps referenced, each by a list and watch selecting its name.
  secrets_["/api/v1/namespaces/shop/configmaps metadata.name=ca"] =
      ConfigMapJson("shop", "ca", ca_data);
  std::vector<translate::BackendCaBundles> published;
  BackendCaConfigMaps maps(loop_, *api_, stats_, kubernetes::ReflectorOptions{},
                           [&](const translate::BackendCaBundles& b) { published.push_back(b); });
  maps.SetReferences({{"shop", "ca"}, {"shop", "absent"}});
  ASSERT_TRUE(RunUntil(loop_, [&] { return !published.empty(); }));
  std::sort(lists_.begin(), lists_.end());
  EXPECT_EQ(lists_,
            (std::vector<std::string>{"/api/v1/namespaces/shop/configmaps metadata.name=absent",
                                      "/api/v1/namespaces/shop/configmaps metadata.name=ca"}));
  ASSERT_EQ(published.back().size(), 1u);
  EXPECT_EQ(published.back().at({"shop", "ca"}).pem, ca);
  absl::StatusOr<GaugeId> missing =
      stats_.RegisterGauge("meshlet_cp_backend_tls_configmaps", "x", {{"state", "missing"}});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(stats_.GaugeValue(*missing), 1);
}

TEST_F(GatewaySecretsTest, TheSystemsCaCertificatesAreReadOnceAndPublishedWithTheConfigMaps) {
  const std::string dir = ::testing::TempDir();
  const std::string file = dir + "/system-ca.crt";
  {
    std::ofstream out(file);
    out << ca_->cert_pem();
  }
  translate::BackendCaBundle system = SystemCaBundle(file);
  EXPECT_EQ(system.error, "");
  EXPECT_EQ(system.pem, ca_->cert_pem());
  EXPECT_EQ(SystemCaBundle(dir + "/absent.crt").error,
            absl::StrCat("--system-ca-file: cannot read \"", dir,
                         "/absent.crt\": No such file or directory"));
  {
    std::ofstream out(dir + "/junk.crt");
    out << "not pem";
  }
  const translate::BackendCaBundle junk = SystemCaBundle(dir + "/junk.crt");
  EXPECT_TRUE(absl::StartsWith(
      junk.error, absl::StrCat("--system-ca-file: \"", dir, "/junk.crt\" is not PEM certificates")))
      << junk.error;
  EXPECT_EQ(junk.pem, "");

  // Published at once, before any ConfigMap is read, then beside each map of ConfigMaps.
  const std::string ca_data =
      absl::StrCat(R"({"ca.crt":")", absl::CEscape(ca_->cert_pem()), R"("})");
  secrets_["/api/v1/namespaces/shop/configmaps metadata.name=ca"] =
      ConfigMapJson("shop", "ca", ca_data);
  std::vector<translate::BackendCaBundles> published;
  BackendCaConfigMaps maps(
      loop_, *api_, stats_, kubernetes::ReflectorOptions{},
      [&](const translate::BackendCaBundles& b) { published.push_back(b); }, system);
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0], (translate::BackendCaBundles{{translate::kSystemCaBundle, system}}));
  maps.SetReferences({{"shop", "ca"}});
  ASSERT_TRUE(RunUntil(loop_, [&] { return published.size() > 1; }));
  ASSERT_EQ(published.back().size(), 2u);
  EXPECT_EQ(published.back().at(translate::kSystemCaBundle), system);
  EXPECT_EQ(published.back().at({"shop", "ca"}).pem, ca_->cert_pem());
}

}  // namespace
}  // namespace meshlet::controlplane
