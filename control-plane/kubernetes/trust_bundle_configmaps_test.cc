// TrustBundleConfigMaps against FakeApiServer: one round over the selected namespaces creates the
// missing ConfigMap, patches one with another bundle, leaves a current one alone, and skips the
// excluded namespaces.

#include "control-plane/kubernetes/trust_bundle_configmaps.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

constexpr char kBundle[] = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n";

class TrustBundleConfigMapsTest : public ::testing::Test {
 protected:
  uint64_t Count(const std::string& result) {
    StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_cp_trust_bundle_configmaps_total", {{"result", result}});
    return series == nullptr ? 0 : series->counter;
  }
  // The requests after the namespace list, as "METHOD PATH".
  std::multimap<std::string, std::string> Writes() {
    std::multimap<std::string, std::string> out;
    for (const testing::SeenRequest& r : server_.requests()) {
      if (r.method != "GET") out.emplace(absl::StrCat(r.method, " ", r.path), r.body);
    }
    return out;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::unique_ptr<KubernetesApi> api_ = server_.Api();
};

TEST_F(TrustBundleConfigMapsTest, ARoundCreatesUpdatesOrLeavesEachNamespacesConfigMap) {
  const std::string current = absl::StrCat(R"({"data":{"ca.pem":)", JsonQuote(kBundle), "}}");
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    const std::string path(request.path());
    if (path == "/api/v1/namespaces") {
      respond(http::ServerResponse::Json(
          200, R"({"kind":"NamespaceList","items":[{"metadata":{"name":"new"}},)"
               R"({"metadata":{"name":"stale"}},{"metadata":{"name":"current"}},)"
               R"({"metadata":{"name":"kube-system"}}]})"));
    } else if (path == "/api/v1/namespaces/stale/configmaps/meshlet-trust") {
      respond(http::ServerResponse::Json(200, R"({"data":{"ca.pem":"old"}})"));
    } else if (path == "/api/v1/namespaces/current/configmaps/meshlet-trust") {
      respond(http::ServerResponse::Json(200, current));
    } else if (request.method() != "GET") {
      respond(http::ServerResponse::Json(200, "{}"));
    } else {
      respond(http::ServerResponse::Json(404, "{}"));
    }
  });
  TrustBundleConfigMaps maps(loop_, *api_, stats_, kBundle, {});
  maps.Start();
  ASSERT_TRUE(RunUntil(loop_, [&] {
    return Count("created") + Count("updated") + Count("current") + Count("failed") == 3;
  }));
  EXPECT_EQ(Count("created"), 1u);
  EXPECT_EQ(Count("updated"), 1u);
  EXPECT_EQ(Count("current"), 1u);
  EXPECT_EQ(Count("failed"), 0u);

  ASSERT_FALSE(server_.requests().empty());
  EXPECT_EQ(server_.requests()[0].path,
            "/api/v1/namespaces?labelSelector=meshlet.io%2finject%3denabled");
  const std::string data = absl::StrCat(R"({"ca.pem":)", JsonQuote(kBundle), "}");
  std::multimap<std::string, std::string> writes = Writes();
  ASSERT_EQ(writes.size(), 2u);
  EXPECT_EQ(writes.count("POST /api/v1/namespaces/new/configmaps"), 1u);
  EXPECT_EQ(writes.find("POST /api/v1/namespaces/new/configmaps")->second,
            absl::StrCat(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":)",
                         R"("meshlet-trust","namespace":"new","labels":)",
                         R"({"app.kubernetes.io/managed-by":"meshlet"}},"data":)", data, "}"));
  EXPECT_EQ(writes.count("PATCH /api/v1/namespaces/stale/configmaps/meshlet-trust"), 1u);
  EXPECT_EQ(writes.find("PATCH /api/v1/namespaces/stale/configmaps/meshlet-trust")->second,
            absl::StrCat(R"({"data":)", data, "}"));
  for (const testing::SeenRequest& r : server_.requests()) {
    EXPECT_EQ(r.path.find("kube-system"), std::string::npos) << r.path;
  }
}

// A reloaded CA's bundle is written at the next round.
TEST_F(TrustBundleConfigMapsTest, ANewTrustBundleIsWrittenAtTheNextRound) {
  const std::string current = absl::StrCat(R"({"data":{"ca.pem":)", JsonQuote(kBundle), "}}");
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    const std::string path(request.path());
    if (path == "/api/v1/namespaces") {
      respond(http::ServerResponse::Json(
          200, R"({"kind":"NamespaceList","items":[{"metadata":{"name":"shop"}}]})"));
    } else if (request.method() == "GET") {
      respond(http::ServerResponse::Json(200, current));
    } else {
      respond(http::ServerResponse::Json(200, "{}"));
    }
  });
  TrustBundleConfigMaps maps(loop_, *api_, stats_, kBundle,
                             {.interval = std::chrono::milliseconds(10)});
  maps.Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return Count("current") >= 1; }));
  const std::string two_roots = absl::StrCat(kBundle, kBundle);
  maps.SetTrustBundle(two_roots);
  ASSERT_TRUE(RunUntil(loop_, [&] { return Count("updated") >= 1; }));
  std::multimap<std::string, std::string> writes = Writes();
  ASSERT_EQ(writes.count("PATCH /api/v1/namespaces/shop/configmaps/meshlet-trust"), 1u);
  EXPECT_NE(writes.find("PATCH /api/v1/namespaces/shop/configmaps/meshlet-trust")
                ->second.find(JsonQuote(two_roots)),
            std::string::npos);
}

// The namespaces of the revision tags pointing at this control plane (more_selectors, asked at
// each round) get it too; a namespace two selectors match is written once.
TEST_F(TrustBundleConfigMapsTest, MoreSelectorsAddTheirNamespaces) {
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    const std::string path(request.path());
    const std::string selector = request.QueryParams()["labelSelector"];
    if (path == "/api/v1/namespaces" && selector == "meshlet.io/inject=enabled") {
      respond(http::ServerResponse::Json(
          200, R"({"kind":"NamespaceList","items":[{"metadata":{"name":"own"}}]})"));
    } else if (path == "/api/v1/namespaces" && selector == "meshlet.io/rev=prod") {
      respond(http::ServerResponse::Json(
          200, R"({"kind":"NamespaceList","items":[{"metadata":{"name":"tagged"}},)"
               R"({"metadata":{"name":"own"}}]})"));
    } else if (request.method() != "GET") {
      respond(http::ServerResponse::Json(201, "{}"));
    } else {
      respond(http::ServerResponse::Json(404, "{}"));
    }
  });
  int asked = 0;
  TrustBundleConfigMapsOptions options;
  options.more_selectors = [&asked] {
    ++asked;
    return std::vector<std::string>{"meshlet.io/rev=prod"};
  };
  TrustBundleConfigMaps maps(loop_, *api_, stats_, kBundle, options);
  maps.Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return Count("created") == 2; }));
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_EQ(Count("created"), 2u);
  EXPECT_EQ(asked, 1);
  std::vector<std::string> lists;
  for (const testing::SeenRequest& r : server_.requests()) {
    if (r.path.rfind("/api/v1/namespaces?", 0) == 0) lists.push_back(r.path);
  }
  EXPECT_EQ(lists, (std::vector<std::string>{
                       "/api/v1/namespaces?labelSelector=meshlet.io%2frev%3dprod",
                       "/api/v1/namespaces?labelSelector=meshlet.io%2finject%3denabled"}));
  std::multimap<std::string, std::string> writes = Writes();
  EXPECT_EQ(writes.count("POST /api/v1/namespaces/tagged/configmaps"), 1u);
  EXPECT_EQ(writes.count("POST /api/v1/namespaces/own/configmaps"), 1u);
}

// The namespaces of the Gateways whose proxies the control plane deploys (more_namespaces, by
// name) get it without a label; one a selector matches too is written once; excluded ones never.
TEST_F(TrustBundleConfigMapsTest, MoreNamespacesByName) {
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    const std::string path(request.path());
    if (path == "/api/v1/namespaces") {
      respond(http::ServerResponse::Json(
          200, R"({"kind":"NamespaceList","items":[{"metadata":{"name":"own"}}]})"));
    } else if (request.method() != "GET") {
      respond(http::ServerResponse::Json(201, "{}"));
    } else {
      respond(http::ServerResponse::Json(404, "{}"));
    }
  });
  TrustBundleConfigMapsOptions options;
  options.more_namespaces = [] { return std::vector<std::string>{"shop", "own", "kube-system"}; };
  TrustBundleConfigMaps maps(loop_, *api_, stats_, kBundle, options);
  maps.Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return Count("created") == 2; }));
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  std::multimap<std::string, std::string> writes = Writes();
  EXPECT_EQ(writes.size(), 2u);
  EXPECT_EQ(writes.count("POST /api/v1/namespaces/shop/configmaps"), 1u);
  EXPECT_EQ(writes.count("POST /api/v1/namespaces/own/configmaps"), 1u);
}

TEST_F(TrustBundleConfigMapsTest, AFailedWriteIsCountedAndTheRoundGoesOn) {
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    const std::string path(request.path());
    if (path == "/api/v1/namespaces") {
      respond(http::ServerResponse::Json(
          200, R"({"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]})"));
    } else if (request.method() == "POST" && path == "/api/v1/namespaces/b/configmaps") {
      respond(http::ServerResponse::Json(403, R"({"reason":"Forbidden"})"));
    } else if (request.method() == "POST") {
      respond(http::ServerResponse::Json(201, "{}"));
    } else {
      respond(http::ServerResponse::Json(404, "{}"));
    }
  });
  TrustBundleConfigMaps maps(loop_, *api_, stats_, kBundle, {});
  maps.Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return Count("created") + Count("failed") == 2; }));
  EXPECT_EQ(Count("created"), 1u);
  EXPECT_EQ(Count("failed"), 1u);
}

TEST_F(TrustBundleConfigMapsTest, AnAnswerThatIsNoNamespaceListFails) {
  server_.set_handler([&](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, R"({"kind":"Status"})"));
  });
  TrustBundleConfigMaps maps(loop_, *api_, stats_, kBundle, {});
  maps.Start();
  ASSERT_TRUE(RunUntil(loop_, [&] { return Count("failed") == 1; }));
  EXPECT_EQ(server_.requests().size(), 1u);
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes
