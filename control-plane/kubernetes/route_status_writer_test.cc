// RouteStatusWriter against FakeApiServer holding one HTTPRoute whose status already has an
// entry of another controller and one of ours: the merge patch keeps the other's entry as it is,
// keeps lastTransitionTime of a condition whose status did not change, sets observedGeneration
// from the update, carries the resourceVersion read; nothing is written when nothing changed, or
// while the writer is not active (not the leader); a conflict (409) is read again and a failure
// retried.

#include "control-plane/kubernetes/route_status_writer.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "control-plane/kubernetes/yaml_fields.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

constexpr char kRoute[] = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/reviews";

constexpr char kOther[] =
    R"({"parentRef":{"group":"gateway.networking.k8s.io","kind":"Gateway","name":"edge"},)"
    R"("controllerName":"example.com/gateway","conditions":[{"type":"Accepted","status":"True",)"
    R"("observedGeneration":1,"lastTransitionTime":"2020-01-01T00:00:00Z","reason":"Accepted",)"
    R"("message":"theirs"}]})";

std::string RouteJson(const std::string& resource_version, const std::string& ours) {
  return absl::StrCat(
      R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{)",
      R"("namespace":"shop","name":"reviews","generation":2,"resourceVersion":")", resource_version,
      R"("},"spec":{},"status":{"parents":[)", kOther, ours.empty() ? "" : ",", ours, "]}}");
}

// Ours as an earlier write left it: Accepted and ResolvedRefs True at generation 1.
constexpr char kOurs[] =
    R"({"parentRef":{"kind":"Service","group":"","name":"reviews"},)"
    R"("controllerName":"meshlet.io/mesh-controller","conditions":[)"
    R"({"type":"Accepted","status":"True","observedGeneration":1,)"
    R"("lastTransitionTime":"2021-02-03T04:05:06Z","reason":"Accepted","message":""},)"
    R"({"type":"ResolvedRefs","status":"True","observedGeneration":1,)"
    R"("lastTransitionTime":"2021-02-03T04:05:06Z","reason":"ResolvedRefs","message":""}]})";

policy::RouteStatusUpdate Update(const std::string& resolved, const std::string& reason) {
  policy::RouteStatusUpdate u;
  u.kind = "HTTPRoute";
  u.namespace_ = "shop";
  u.name = "reviews";
  u.generation = 2;
  meshlet::gateway::RouteParentStatus* p = u.status.add_parents();
  p->mutable_parent_ref()->set_kind("Service");
  p->mutable_parent_ref()->set_name("reviews");
  p->set_controller_name(kControllerName);
  meshlet::gateway::Condition* accepted = p->add_conditions();
  accepted->set_type("Accepted");
  accepted->set_status("True");
  accepted->set_reason("Accepted");
  meshlet::gateway::Condition* refs = p->add_conditions();
  refs->set_type("ResolvedRefs");
  refs->set_status(resolved);
  refs->set_reason(reason);
  if (resolved == "False") refs->set_message("backendRefs[0]: Service \"gone\" not found");
  return u;
}

class RouteStatusWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set_handler([this](const http::ServerRequest& request, http::Responder respond) {
      const std::string path(request.path());
      if (request.method() == "GET" && path == kRoute) {
        respond(http::ServerResponse::Json(200, route_));
      } else if (request.method() == "PATCH" && path == absl::StrCat(kRoute, "/status")) {
        if (!patch_answers_.empty()) {
          const int status = patch_answers_.front();
          patch_answers_.erase(patch_answers_.begin());
          if (status != 200) {
            respond(http::ServerResponse::Json(status, R"({"kind":"Status"})"));
            return;
          }
        }
        patches_.push_back(request.body);
        field_managers_.push_back(request.QueryParams()["fieldManager"]);
        if (during_patch_) std::exchange(during_patch_, nullptr)();
        respond(http::ServerResponse::Json(200, route_));
      } else {
        respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
      }
    });
    api_ = server_.Api();
    writer_ = std::make_unique<RouteStatusWriter>(
        loop_, *api_, stats_, RealClock::Get(),
        RouteStatusWriterOptions{.retry_base = std::chrono::milliseconds(10)});
  }

  size_t Requests(absl::string_view method) const {
    size_t n = 0;
    for (const auto& r : server_.requests()) n += r.method == method;
    return n;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::unique_ptr<KubernetesApi> api_;
  std::unique_ptr<RouteStatusWriter> writer_;
  std::string route_ = RouteJson("7", kOurs);
  std::vector<int> patch_answers_;
  std::vector<std::string> patches_;
  std::vector<std::string> field_managers_;  // each patch's fieldManager parameter
  std::function<void()> during_patch_;       // run once, before a patch is answered
};

// A parentRef naming one of meshlet's Gateways: its entry (controllerName
// meshlet.io/gateway-controller) is ours too, replaced, and written with that controllerName
// beside the Service parent's.
TEST_F(RouteStatusWriterTest, GatewayControllerEntriesAreOursToo) {
  route_ = RouteJson(
      "7",
      absl::StrCat(kOurs, ",",
                   R"({"parentRef":{"group":"gateway.networking.k8s.io","kind":"Gateway",)"
                   R"("name":"ingress"},"controllerName":"meshlet.io/gateway-controller",)"
                   R"("conditions":[{"type":"Accepted","status":"False","observedGeneration":1,)"
                   R"("lastTransitionTime":"2021-02-03T04:05:06Z","reason":"NoMatchingParent",)"
                   R"("message":"stale"}]})"));
  policy::RouteStatusUpdate u = Update("True", "ResolvedRefs");
  meshlet::gateway::RouteParentStatus* g = u.status.add_parents();
  g->mutable_parent_ref()->set_group("gateway.networking.k8s.io");
  g->mutable_parent_ref()->set_kind("Gateway");
  g->mutable_parent_ref()->set_name("ingress");
  g->set_controller_name(kGatewayControllerName);
  meshlet::gateway::Condition* accepted = g->add_conditions();
  accepted->set_type("Accepted");
  accepted->set_status("True");
  accepted->set_reason("Accepted");
  writer_->Update({u});
  writer_->SetActive(true);
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle() && patches_.size() == 1; }));
  const YAML::Node parents = YAML::Load(patches_[0])["status"]["parents"];
  ASSERT_EQ(parents.size(), 3u) << patches_[0];
  EXPECT_EQ(parents[0]["controllerName"].as<std::string>(), "example.com/gateway");
  EXPECT_EQ(parents[1]["controllerName"].as<std::string>(), "meshlet.io/mesh-controller");
  EXPECT_EQ(parents[2]["controllerName"].as<std::string>(), "meshlet.io/gateway-controller");
  EXPECT_EQ(parents[2]["parentRef"]["name"].as<std::string>(), "ingress");
  EXPECT_EQ(parents[2]["conditions"][0]["reason"].as<std::string>(), "Accepted");
  EXPECT_NE(parents[2]["conditions"][0]["lastTransitionTime"].as<std::string>(),
            "2021-02-03T04:05:06Z");  // False before, True now
}

// A BackendTLSPolicy's entries are status.ancestors, each naming an ancestorRef, written beside
// other controllers' as a route's parents are.
TEST_F(RouteStatusWriterTest, BackendTlsPolicyStatusIsWrittenAsAncestors) {
  const std::string path =
      "/apis/gateway.networking.k8s.io/v1/namespaces/shop/backendtlspolicies/payments";
  const std::string object =
      R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{)"
      R"("namespace":"shop","name":"payments","generation":4,"resourceVersion":"9"},"spec":{},)"
      R"("status":{"ancestors":[{"ancestorRef":{"group":"gateway.networking.k8s.io",)"
      R"("kind":"Gateway","name":"theirs"},"controllerName":"example.com/gateway",)"
      R"("conditions":[]}]}})";
  std::vector<std::string> patches;
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    const std::string p(request.path());
    if (request.method() == "GET" && p == path) {
      respond(http::ServerResponse::Json(200, object));
    } else if (request.method() == "PATCH" && p == path + "/status") {
      patches.push_back(request.body);
      respond(http::ServerResponse::Json(200, object));
    } else {
      respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
    }
  });
  policy::RouteStatusUpdate u;
  u.kind = "BackendTLSPolicy";
  u.namespace_ = "shop";
  u.name = "payments";
  u.generation = 4;
  meshlet::gateway::RouteParentStatus* a = u.status.add_parents();
  a->mutable_parent_ref()->set_group("gateway.networking.k8s.io");
  a->mutable_parent_ref()->set_kind("Gateway");
  a->mutable_parent_ref()->set_namespace_("shop");
  a->mutable_parent_ref()->set_name("edge");
  a->set_controller_name(kGatewayControllerName);
  meshlet::gateway::Condition* accepted = a->add_conditions();
  accepted->set_type("Accepted");
  accepted->set_status("False");
  accepted->set_reason("NoValidCACertificate");
  writer_->Update({u});
  writer_->SetActive(true);
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle() && patches.size() == 1; }));
  const YAML::Node status = YAML::Load(patches[0])["status"];
  EXPECT_FALSE(status["parents"].IsDefined()) << patches[0];
  const YAML::Node ancestors = status["ancestors"];
  ASSERT_EQ(ancestors.size(), 2u) << patches[0];
  EXPECT_EQ(ancestors[0]["controllerName"].as<std::string>(), "example.com/gateway");
  EXPECT_EQ(ancestors[1]["controllerName"].as<std::string>(), "meshlet.io/gateway-controller");
  EXPECT_EQ(ancestors[1]["ancestorRef"]["name"].as<std::string>(), "edge");
  EXPECT_EQ(ancestors[1]["ancestorRef"]["namespace"].as<std::string>(), "shop");
  EXPECT_EQ(ancestors[1]["conditions"][0]["reason"].as<std::string>(), "NoValidCACertificate");
  EXPECT_EQ(ancestors[1]["conditions"][0]["observedGeneration"].as<int>(), 4);
}

TEST_F(RouteStatusWriterTest, PatchKeepsOthersEntriesAndUnchangedTransitionTimes) {
  writer_->Update({Update("False", "BackendNotFound")});
  // Not the leader: nothing is read or written.
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_TRUE(server_.requests().empty());

  writer_->SetActive(true);
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle() && patches_.size() == 1; }));
  EXPECT_EQ(field_managers_[0], "meshlet-control-plane");
  const YAML::Node patch = YAML::Load(patches_[0]);
  EXPECT_EQ(patch["metadata"]["resourceVersion"].as<std::string>(), "7");
  const YAML::Node parents = patch["status"]["parents"];
  ASSERT_EQ(parents.size(), 2u) << patches_[0];
  // The other controller's entry, untouched.
  EXPECT_EQ(parents[0]["controllerName"].as<std::string>(), "example.com/gateway");
  EXPECT_EQ(parents[0]["conditions"][0]["message"].as<std::string>(), "theirs");
  EXPECT_EQ(parents[0]["conditions"][0]["lastTransitionTime"].as<std::string>(),
            "2020-01-01T00:00:00Z");
  // Ours: Accepted kept its time (still True), ResolvedRefs changed (False) and got a new one.
  const YAML::Node ours = parents[1];
  EXPECT_EQ(ours["controllerName"].as<std::string>(), "meshlet.io/mesh-controller");
  EXPECT_EQ(ours["parentRef"]["name"].as<std::string>(), "reviews");
  const YAML::Node accepted = ours["conditions"][0];
  EXPECT_EQ(accepted["lastTransitionTime"].as<std::string>(), "2021-02-03T04:05:06Z");
  EXPECT_EQ(accepted["observedGeneration"].as<int>(), 2);
  EXPECT_TRUE(absl::StrContains(patches_[0], R"("observedGeneration":2)"));  // a number
  const YAML::Node refs = ours["conditions"][1];
  EXPECT_EQ(refs["status"].as<std::string>(), "False");
  EXPECT_EQ(refs["reason"].as<std::string>(), "BackendNotFound");
  EXPECT_NE(refs["lastTransitionTime"].as<std::string>(), "2021-02-03T04:05:06Z");
  EXPECT_EQ(server_.requests().back().content_type, "application/merge-patch+json");

  // The same status again: nothing read, nothing written.
  const size_t before = server_.requests().size();
  writer_->Update({Update("False", "BackendNotFound")});
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_EQ(server_.requests().size(), before);
}

TEST_F(RouteStatusWriterTest, WhatTheRouteShowsAlreadyIsNotWrittenAgain) {
  // As after a change of leader: the route shows what was computed.
  writer_->SetActive(true);
  writer_->Update({Update("True", "ResolvedRefs")});
  route_ = RouteJson("7", absl::StrReplaceAll(
                              kOurs, {{R"("observedGeneration":1)", R"("observedGeneration":2)"}}));
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle(); }));
  EXPECT_EQ(Requests("GET"), 1u);
  EXPECT_EQ(Requests("PATCH"), 0u);
}

// A status computed while the previous one is being written (a ReferenceGrant mirrored just
// after its route): written next, not taken as written.
TEST_F(RouteStatusWriterTest, AStatusComputedDuringAWriteIsWrittenNext) {
  writer_->SetActive(true);
  during_patch_ = [&] { writer_->Update({Update("True", "ResolvedRefs")}); };
  writer_->Update({Update("False", "RefNotPermitted")});
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle() && patches_.size() == 2; }))
      << patches_.size() << " patches";
  EXPECT_TRUE(absl::StrContains(patches_[0], R"("reason":"RefNotPermitted")")) << patches_[0];
  EXPECT_TRUE(absl::StrContains(patches_[1], R"("reason":"ResolvedRefs")")) << patches_[1];
  EXPECT_FALSE(absl::StrContains(patches_[1], "RefNotPermitted")) << patches_[1];
}

TEST_F(RouteStatusWriterTest, ConflictsAreReadAgainAndFailuresRetried) {
  patch_answers_ = {409, 500};
  writer_->SetActive(true);
  writer_->Update({Update("False", "BackendNotFound")});
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle() && patches_.size() == 1; }));
  EXPECT_EQ(Requests("PATCH"), 3u);
  EXPECT_EQ(Requests("GET"), 3u);  // read again after the conflict and after the failure
}

meshlet::gateway::Condition* AddCondition(
    google::protobuf::RepeatedPtrField<meshlet::gateway::Condition>* conditions,
    const std::string& type, const std::string& status, const std::string& reason) {
  meshlet::gateway::Condition* c = conditions->Add();
  c->set_type(type);
  c->set_status(status);
  c->set_reason(reason);
  return c;
}

// meshlet's GatewayClass and Gateway: their status is written whole (conditions, addresses,
// listeners), a condition whose status held keeping its time (the Gateway's and a listener's by
// name), observedGeneration the update's; once the objects show it, a new writer (another
// leader) reads them and writes nothing.
TEST_F(RouteStatusWriterTest, GatewayClassAndGatewayStatusIsWrittenWhole) {
  constexpr char kGateway[] = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/edge";
  constexpr char kClass[] = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/meshlet";
  std::map<std::string, YAML::Node> objects;
  objects[kGateway] = YAML::Load(
      R"({"metadata":{"namespace":"shop","name":"edge","generation":2,"resourceVersion":"9"},)"
      R"("status":{"conditions":[{"type":"Accepted","status":"True","observedGeneration":1,)"
      R"("lastTransitionTime":"2021-02-03T04:05:06Z","reason":"Accepted","message":""}],)"
      R"("listeners":[{"name":"web","supportedKinds":[],"attachedRoutes":0,"conditions":[)"
      R"({"type":"Accepted","status":"True","observedGeneration":1,)"
      R"("lastTransitionTime":"2021-02-03T04:05:07Z","reason":"Accepted","message":""}]}]}})");
  objects[kClass] =
      YAML::Load(R"({"metadata":{"name":"meshlet","generation":1,"resourceVersion":"3"}})");
  std::vector<std::pair<std::string, std::string>> patches;  // (path, body)
  server_.set_handler([&](const http::ServerRequest& request, http::Responder respond) {
    absl::string_view path = request.path();
    const bool patch = request.method() == "PATCH" && absl::ConsumeSuffix(&path, "/status");
    auto it = objects.find(std::string(path));
    if (it == objects.end()) {
      respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
      return;
    }
    if (patch) {
      patches.emplace_back(std::string(path), request.body);
      it->second["status"] = YAML::Load(request.body)["status"];  // the merge of a whole status
    }
    std::string json;
    AppendNodeJson(it->second, &json);
    respond(http::ServerResponse::Json(200, json));
  });
  GatewayObjectStatus gateway{
      .kind = "Gateway", .namespace_ = "shop", .name = "edge", .generation = 2};
  AddCondition(gateway.gateway.mutable_conditions(), "Accepted", "True", "Accepted");
  AddCondition(gateway.gateway.mutable_conditions(), "Programmed", "True", "Programmed");
  meshlet::gateway::GatewaySpecAddress* address = gateway.gateway.add_addresses();
  address->set_type("IPAddress");
  address->set_value("10.0.3.7");
  meshlet::gateway::ListenerStatus* web = gateway.gateway.add_listeners();
  web->set_name("web");
  web->set_attached_routes(2);
  meshlet::gateway::RouteGroupKind* kind = web->add_supported_kinds();
  kind->set_group("gateway.networking.k8s.io");
  kind->set_kind("HTTPRoute");
  AddCondition(web->mutable_conditions(), "Accepted", "True", "Accepted");
  AddCondition(web->mutable_conditions(), "ResolvedRefs", "False", "InvalidCertificateRef")
      ->set_message("tls.certificateRefs[0]: Secret shop/x does not exist");
  GatewayObjectStatus gateway_class{.kind = "GatewayClass", .name = "meshlet", .generation = 1};
  AddCondition(gateway_class.gateway_class.mutable_conditions(), "Accepted", "True", "Accepted");

  writer_->SetActive(true);
  writer_->UpdateGateways({gateway, gateway_class});
  ASSERT_TRUE(RunUntil(loop_, [&] { return writer_->idle() && patches.size() == 2; }));
  std::map<std::string, YAML::Node> patched;
  for (const auto& [path, body] : patches) patched[path] = YAML::Load(body);
  const YAML::Node g = patched[kGateway];
  EXPECT_EQ(g["metadata"]["resourceVersion"].as<std::string>(), "9");
  EXPECT_EQ(g["status"]["conditions"][0]["lastTransitionTime"].as<std::string>(),
            "2021-02-03T04:05:06Z");  // still True
  EXPECT_EQ(g["status"]["conditions"][0]["observedGeneration"].as<int>(), 2);
  EXPECT_EQ(g["status"]["conditions"][1]["type"].as<std::string>(), "Programmed");
  EXPECT_EQ(g["status"]["addresses"][0]["value"].as<std::string>(), "10.0.3.7");
  const YAML::Node listener = g["status"]["listeners"][0];
  EXPECT_EQ(listener["name"].as<std::string>(), "web");
  EXPECT_EQ(listener["attachedRoutes"].as<int>(), 2);
  EXPECT_EQ(listener["supportedKinds"][0]["kind"].as<std::string>(), "HTTPRoute");
  EXPECT_EQ(listener["conditions"][0]["lastTransitionTime"].as<std::string>(),
            "2021-02-03T04:05:07Z");
  EXPECT_EQ(listener["conditions"][1]["message"].as<std::string>(),
            "tls.certificateRefs[0]: Secret shop/x does not exist");
  const YAML::Node c = patched[kClass];
  EXPECT_EQ(c["status"]["conditions"][0]["reason"].as<std::string>(), "Accepted");
  EXPECT_EQ(c["status"]["conditions"][0]["observedGeneration"].as<int>(), 1);
  EXPECT_FALSE(c["status"]["listeners"].IsDefined());

  // Another leader finds them as computed: read, not written.
  RouteStatusWriter next(loop_, *api_, stats_, RealClock::Get());
  next.SetActive(true);
  next.UpdateGateways({gateway, gateway_class});
  const size_t gets = Requests("GET");
  ASSERT_TRUE(RunUntil(loop_, [&] { return next.idle() && Requests("GET") == gets + 2; }));
  EXPECT_EQ(patches.size(), 2u);
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes
