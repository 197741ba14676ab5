// PolicyMirror against FakeApiServer and a real PolicyApi over a FileStore: meshlet.io objects
// listed and watched in Kubernetes reach the store through the API's validation (created,
// updated, deleted), an invalid one is not stored and gets an Event naming the field, objects
// mirrored earlier that Kubernetes no longer has are pruned after a list (the first, or after
// 410), `meshctl apply` of a mirrored object is refused, and kinds whose CRD is not installed are
// absent without a storm of lists.

#include "control-plane/kubernetes/policy_mirror.h"

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/access/roles.h"
#include "control-plane/api/api_server.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

constexpr char kPath[] = "/apis/meshlet.io/v1/trafficpolicies";

std::string Policy(absl::string_view name, int attempts, int generation) {
  return absl::StrCat(R"({"apiVersion":"meshlet.io/v1","kind":"TrafficPolicy","metadata":{)",
                      R"("namespace":"default","name":")", name, R"(","uid":"uid-)", name,
                      R"(","generation":)", generation, R"(,"resourceVersion":")", 100 + generation,
                      R"(","managedFields":[{"manager":"kubectl"}],"annotations":{)",
                      R"("kubectl.kubernetes.io/last-applied-configuration":"{}","team":"x"}},)",
                      R"("spec":{"target":"reviews","retries":{"attempts":)", attempts, "}}}");
}

class PolicyMirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("mirror_", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto store = FileStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    policy_api_ =
        std::make_unique<api::PolicyApi>(*store_, nullptr, clock_, api::ApiOptions{}, nullptr);
    server_.set_handler([this](const http::ServerRequest& request, http::Responder respond) {
      const std::string path(request.path());
      if (request.method() == "POST" && absl::StartsWith(path, "/apis/events.k8s.io/v1/")) {
        respond(http::ServerResponse::Json(201, request.body));
        return;
      }
      auto served = served_.find(path);
      if (served == served_.end()) {
        respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
        return;
      }
      if (request.QueryParams().count("watch") > 0) {
        watches_.push_back(std::move(respond));
        return;
      }
      std::string items;
      for (const auto& [name, object] : served->second) {
        if (!items.empty()) items += ",";
        items += object;
      }
      respond(http::ServerResponse::Json(
          200, absl::StrCat(R"({"metadata":{"resourceVersion":")", ++list_version_,
                            R"("},"items":[)", items, "]}")));
    });
  }
  void TearDown() override {
    mirror_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartMirror() {
    api_ = server_.Api([](KubernetesApiOptions& o) { o.max_response_bytes = 1 << 20; });
    mirror_ = std::make_unique<PolicyMirror>(
        loop_, *api_,
        [this](http::ServerRequest request, std::function<void(http::ServerResponse)> done) {
          done(policy_api_->HandleFromMirror(request));
        },
        stats_, clock_,
        PolicyMirrorOptions{
            .replica_name = "cp-0",
            .refused_route = [this](policy::RouteStatusUpdate update, bool refused) {
              refused_.emplace_back(std::move(update), refused);
            }});
    mirror_->Start();
  }

  // Answers the open watch with `events` (one per line); the mirror then watches again.
  void SendEvents(const std::vector<std::string>& events) {
    ASSERT_TRUE(RunUntil(loop_, [&] { return !watches_.empty(); }));
    std::string body;
    for (const std::string& e : events) absl::StrAppend(&body, e, "\n");
    http::Responder respond = std::move(watches_.front());
    watches_.erase(watches_.begin());
    respond(http::ServerResponse::Json(200, body));
  }

  absl::StatusOr<StoredResource> Stored(absl::string_view name) {
    return store_->Get({"TrafficPolicy", "default", std::string(name)});
  }

  std::vector<std::string> Events() const {
    std::vector<std::string> out;
    for (const auto& r : server_.requests()) {
      if (r.method == "POST" && absl::StrContains(r.path, "/events")) out.push_back(r.body);
    }
    return out;
  }

  event::Loop loop_;
  FakeClock clock_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::filesystem::path dir_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<api::PolicyApi> policy_api_;
  access::Principal caller_{
      .name = "api-token", .credential = "api-token", .role = access::Role::kAdmin};
  // Objects by path (others answer 404, as a CRD not installed), then name.
  std::map<std::string, std::map<std::string, std::string>> served_;
  std::map<std::string, std::string>& objects_ = served_[kPath];
  std::vector<std::pair<policy::RouteStatusUpdate, bool>> refused_;
  int list_version_ = 100;
  std::vector<http::Responder> watches_;
  std::unique_ptr<KubernetesApi> api_;
  std::unique_ptr<PolicyMirror> mirror_;
};

TEST_F(PolicyMirrorTest, CreatesUpdatesDeletesAndRefusesInvalidWithAnEvent) {
  objects_["good"] = Policy("good", 3, 1);
  objects_["bad"] = Policy("bad", 42, 1);  // more attempts than validation allows
  StartMirror();
  ASSERT_TRUE(RunUntil(loop_, [&] { return mirror_->synced() && Events().size() == 1; }));

  absl::StatusOr<StoredResource> good = Stored("good");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(absl::StrContains(good->body, R"("meshlet.io/managed-by":"kubernetes")"))
      << good->body;
  EXPECT_TRUE(absl::StrContains(good->body, R"("meshlet.io/kubernetes-generation":"1")"));
  EXPECT_TRUE(absl::StrContains(good->body, R"("team":"x")"));
  EXPECT_FALSE(absl::StrContains(good->body, "last-applied-configuration"));
  EXPECT_TRUE(absl::StrContains(good->body, R"("attempts":3)"));
  // Invalid: nothing stored, one Warning Event naming the field.
  EXPECT_TRUE(absl::IsNotFound(Stored("bad").status()));
  const std::string event = Events()[0];
  EXPECT_TRUE(absl::StrContains(event, R"("reason":"Invalid")")) << event;
  EXPECT_TRUE(absl::StrContains(event, R"("type":"Warning")"));
  EXPECT_TRUE(absl::StrContains(event, "spec.retries.attempts")) << event;
  EXPECT_TRUE(absl::StrContains(event, R"("name":"bad")"));
  EXPECT_TRUE(absl::StrContains(event, R"("uid":"uid-bad")"));
  EXPECT_TRUE(absl::StrContains(event, R"("reportingInstance":"cp-0")"));

  // `meshctl apply` of a mirrored object is refused, pointing at kubectl; so is a request that
  // claims to be the mirror with its header (any editor can send one).
  http::ServerRequest apply;
  apply.headers.Add(":method", "PUT");
  apply.headers.Add(":path", "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/good");
  apply.body = R"({"kind":"TrafficPolicy","metadata":{"name":"good"},"spec":{"target":"reviews"}})";
  http::ServerResponse refused = policy_api_->Handle(apply, &caller_);
  EXPECT_EQ(refused.status, 409);
  EXPECT_TRUE(absl::StrContains(refused.body, "kubectl")) << refused.body;
  http::ServerRequest remove;
  remove.headers.Add(":method", "DELETE");
  remove.headers.Add(":path", "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/good");
  EXPECT_EQ(policy_api_->Handle(remove, &caller_).status, 409);
  apply.headers.Add(api::kMirrorHeader, api::kManagedByKubernetes);
  remove.headers.Add(api::kMirrorHeader, api::kManagedByKubernetes);
  EXPECT_EQ(policy_api_->Handle(apply, &caller_).status, 409);
  EXPECT_EQ(policy_api_->Handle(remove, &caller_).status, 409);

  // Updated, then deleted, by watch events.
  objects_["good"] = Policy("good", 2, 2);
  SendEvents({absl::StrCat(R"({"type":"MODIFIED","object":)", objects_["good"], "}")});
  ASSERT_TRUE(RunUntil(loop_, [&] {
    absl::StatusOr<StoredResource> s = Stored("good");
    return s.ok() && absl::StrContains(s->body, R"("attempts":2)");
  }));
  EXPECT_TRUE(absl::StrContains(Stored("good")->body, R"("meshlet.io/kubernetes-generation":"2")"));
  SendEvents({absl::StrCat(R"({"type":"DELETED","object":)", objects_["good"], "}")});
  ASSERT_TRUE(RunUntil(loop_, [&] { return absl::IsNotFound(Stored("good").status()); }));
  // The invalid one's Event was posted once, not at every pass.
  EXPECT_EQ(Events().size(), 1u);
}

std::string GatewayRoute(absl::string_view name, absl::string_view rules) {
  return absl::StrCat(
      R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{)",
      R"("namespace":"default","name":")", name, R"(","generation":4},"spec":{"parentRefs":[)",
      R"({"group":"","kind":"Service","name":"reviews","port":9080}],"rules":)", rules, "}}");
}

TEST_F(PolicyMirrorTest, GatewayRoutesAreMirroredAndARefusedOneIsNotAccepted) {
  constexpr char kRoutes[] = "/apis/gateway.networking.k8s.io/v1/httproutes";
  served_[kRoutes]["good"] =
      GatewayRoute("good", R"([{"backendRefs":[{"name":"reviews","port":9080}]}])");
  served_[kRoutes]["bad"] =
      GatewayRoute("bad", R"([{"matches":[{"path":{"type":"RegularExpression","value":"(("}}]}])");
  StartMirror();
  ASSERT_TRUE(RunUntil(loop_, [&] { return mirror_->synced() && Events().size() == 1; }));
  EXPECT_TRUE(store_->Get({"GatewayHTTPRoute", "default", "good"}).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Get({"GatewayHTTPRoute", "default", "bad"}).status()));
  // The refused route: Accepted False for its parentRef, at its generation; the good one is
  // cleared of any refusal.
  const policy::RouteStatusUpdate* bad = nullptr;
  for (const auto& [update, refused] : refused_) {
    if (update.name == "bad") {
      ASSERT_TRUE(refused);
      bad = &update;
    } else {
      EXPECT_FALSE(refused);
    }
  }
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->kind, "HTTPRoute");
  EXPECT_EQ(bad->generation, 4);
  ASSERT_EQ(bad->status.parents_size(), 1);
  const auto& parent = bad->status.parents(0);
  EXPECT_EQ(parent.parent_ref().kind(), "Service");
  EXPECT_EQ(parent.parent_ref().name(), "reviews");
  EXPECT_EQ(parent.parent_ref().port(), 9080);
  EXPECT_EQ(parent.controller_name(), "meshlet.io/mesh-controller");
  ASSERT_EQ(parent.conditions_size(), 1);
  EXPECT_EQ(parent.conditions(0).type(), "Accepted");
  EXPECT_EQ(parent.conditions(0).status(), "False");
  EXPECT_EQ(parent.conditions(0).reason(), "UnsupportedValue");
  EXPECT_TRUE(absl::StrContains(parent.conditions(0).message(), "spec.rules[0].matches[0]"))
      << parent.conditions(0).message();
}

TEST_F(PolicyMirrorTest, ListsPruneWhatKubernetesNoLongerHas) {
  // Mirrored by an earlier run (or another replica), gone from Kubernetes since; and one applied
  // with meshctl, which the mirror leaves alone.
  http::ServerRequest put;
  put.headers.Add(":method", "PUT");
  put.headers.Add(":path", "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/stale");
  put.body =
      R"({"kind":"TrafficPolicy","metadata":{"name":"stale","annotations":{"meshlet.io/managed-by":"kubernetes"}},"spec":{"target":"reviews"}})";
  ASSERT_EQ(policy_api_->HandleFromMirror(put).status, 201);
  put.headers = {};
  put.headers.Add(":method", "PUT");
  put.headers.Add(":path", "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/own");
  put.body = R"({"kind":"TrafficPolicy","metadata":{"name":"own"},"spec":{"target":"reviews"}})";
  ASSERT_EQ(policy_api_->Handle(put, &caller_).status, 201);

  objects_["a"] = Policy("a", 1, 1);
  StartMirror();
  ASSERT_TRUE(RunUntil(loop_, [&] { return mirror_->synced() && Stored("a").ok(); }));
  EXPECT_TRUE(absl::IsNotFound(Stored("stale").status()));
  EXPECT_TRUE(Stored("own").ok());

  // "a" goes while the watch is down; the watch's resourceVersion is too old (410): the list
  // that follows has no "a", and the store loses it.
  objects_.erase("a");
  SendEvents({R"({"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}})"});
  ASSERT_TRUE(RunUntil(loop_, [&] { return absl::IsNotFound(Stored("a").status()); }));
  EXPECT_TRUE(Stored("own").ok());
}

TEST_F(PolicyMirrorTest, KindsWithoutTheirCrdAreAbsentNotRetriedInALoop) {
  StartMirror();
  ASSERT_TRUE(RunUntil(loop_, [&] { return mirror_->synced(); }));
  // Every kind but trafficpolicies answered 404: absent, shown in a gauge, listed once.
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  size_t route_lists = 0;
  for (const auto& r : server_.requests()) {
    if (absl::StartsWith(r.path, "/apis/meshlet.io/v1/authorizationpolicies")) ++route_lists;
  }
  EXPECT_EQ(route_lists, 1u);
  absl::StatusOr<GaugeId> absent =
      stats_.RegisterGauge("meshlet_cp_kubernetes_resource_absent", "x",
                           {{"resource", "authorizationpolicies.meshlet.io"}});
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(stats_.GaugeValue(*absent), 1);
  absl::StatusOr<GaugeId> present = stats_.RegisterGauge(
      "meshlet_cp_kubernetes_resource_absent", "x", {{"resource", "trafficpolicies.meshlet.io"}});
  EXPECT_EQ(stats_.GaugeValue(*present), 0);
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes
