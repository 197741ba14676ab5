// WebhookCaBundle against FakeApiServer: the webhooks whose caBundle differs are patched in one
// JSON patch guarded by the resourceVersion read; a current configuration is left alone; a missing
// one and a refused patch are counted as such.

#include "control-plane/kubernetes/webhook_ca_bundle.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

constexpr char kPath[] =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/meshlet-sidecar-injector";
constexpr char kBundle[] = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n";

// A configuration of two webhooks with these caBundles.
std::string Configuration(const std::string& first, const std::string& second) {
  return absl::StrCat(
      R"({"kind":"MutatingWebhookConfiguration","metadata":{"name":"meshlet-sidecar-injector",)",
      R"("resourceVersion":"42"},"webhooks":[{"name":"a","clientConfig":{"caBundle":")", first,
      R"("}},{"name":"b","clientConfig":{"caBundle":")", second, R"("}}]})");
}

class WebhookCaBundleTest : public ::testing::Test {
 protected:
  uint64_t Checks(const std::string& result) {
    StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_cp_webhook_ca_bundle_checks_total", {{"result", result}});
    return series == nullptr ? 0 : series->counter;
  }
  uint64_t AllChecks() {
    return Checks("current") + Checks("updated") + Checks("not_found") + Checks("failed");
  }
  // Starts a check and runs the loop until it has been counted.
  void CheckOnce() {
    const uint64_t before = AllChecks();
    bundle_ =
        std::make_unique<WebhookCaBundle>(loop_, *api_, stats_, kBundle, WebhookCaBundleOptions{});
    bundle_->Start();
    ASSERT_TRUE(RunUntil(loop_, [&] { return AllChecks() > before; }));
  }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::unique_ptr<KubernetesApi> api_ = server_.Api();
  std::unique_ptr<WebhookCaBundle> bundle_;
  const std::string encoded_ = absl::Base64Escape(kBundle);
};

TEST_F(WebhookCaBundleTest, PatchesOnlyTheWebhooksThatDifferGuardedByTheResourceVersion) {
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    respond(http::ServerResponse::Json(
        200, request.method() == "GET" ? Configuration(encoded_, "b2xk") : "{}"));
  });
  CheckOnce();
  EXPECT_EQ(Checks("updated"), 1u);
  ASSERT_EQ(server_.requests().size(), 2u);
  EXPECT_EQ(server_.requests()[0].method, "GET");
  EXPECT_EQ(server_.requests()[0].path, kPath);
  const testing::SeenRequest& patch = server_.requests()[1];
  EXPECT_EQ(patch.method, "PATCH");
  EXPECT_EQ(patch.path, kPath);
  EXPECT_EQ(patch.content_type, "application/json-patch+json");
  EXPECT_EQ(patch.body,
            absl::StrCat(R"([{"op":"test","path":"/metadata/resourceVersion","value":"42"},)",
                         R"({"op":"add","path":"/webhooks/1/clientConfig/caBundle","value":")",
                         encoded_, R"("}])"));
}

TEST_F(WebhookCaBundleTest, ACurrentConfigurationIsNotWritten) {
  server_.set_handler([&](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, Configuration(encoded_, encoded_)));
  });
  CheckOnce();
  EXPECT_EQ(Checks("current"), 1u);
  ASSERT_EQ(server_.requests().size(), 1u);
  EXPECT_EQ(server_.requests()[0].method, "GET");
}

// A reloaded CA's bundle is written at the next check.
TEST_F(WebhookCaBundleTest, ANewTrustBundleIsWrittenAtTheNextCheck) {
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    respond(http::ServerResponse::Json(
        200, request.method() == "GET" ? Configuration(encoded_, encoded_) : "{}"));
  });
  bundle_ = std::make_unique<WebhookCaBundle>(
      loop_, *api_, stats_, kBundle,
      WebhookCaBundleOptions{.check_interval = std::chrono::milliseconds(10)});
  bundle_->Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return Checks("current") >= 1; }));
  const std::string two_roots = absl::StrCat(kBundle, kBundle);
  bundle_->SetTrustBundle(two_roots);
  ASSERT_TRUE(RunUntil(loop_, [&] { return Checks("updated") >= 1; }));
  EXPECT_NE(server_.requests().back().body.find(absl::Base64Escape(two_roots)), std::string::npos)
      << server_.requests().back().body;
}

TEST_F(WebhookCaBundleTest, AMissingConfigurationIsNotFound) {
  CheckOnce();  // the fake answers 404 without a handler
  EXPECT_EQ(Checks("not_found"), 1u);
  EXPECT_EQ(server_.requests().size(), 1u);
}

TEST_F(WebhookCaBundleTest, ARefusedPatchOrAnAnswerThatIsNoConfigurationFails) {
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    if (request.method() == "GET") {
      respond(http::ServerResponse::Json(200, Configuration("b2xk", "b2xk")));
    } else {
      respond(http::ServerResponse::Json(409, R"({"reason":"Conflict"})"));
    }
  });
  CheckOnce();
  EXPECT_EQ(Checks("failed"), 1u);
  EXPECT_EQ(Checks("updated"), 0u);
  ASSERT_EQ(server_.requests().size(), 2u);
  EXPECT_NE(server_.requests()[1].body.find("/webhooks/0/clientConfig/caBundle"),
            std::string::npos);

  server_.set_handler([&](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, R"({"kind":"ConfigMap"})"));
  });
  CheckOnce();
  EXPECT_EQ(Checks("failed"), 2u);
  EXPECT_EQ(server_.requests().size(), 3u);  // no PATCH after a wrong answer
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes
