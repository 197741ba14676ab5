// GatewayDeployer against FakeApiServer holding objects: the proxy's ServiceAccount, Deployment
// and Service are created for a meshlet Gateway mirrored from Kubernetes, owned by it; nothing is
// written again while nothing changed; a listener port added updates them with a merge patch
// keeping the resourceVersion; an object of that name that is not meshlet's is left alone; only
// the active replica writes; Gateways of other classes, applied with meshctl or of another
// revision are not deployed; one that cannot be rendered is counted invalid.

#include "control-plane/server/gateway_deployer.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/inject/node.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "control-plane/kubernetes/policy_mirror.h"

namespace meshlet::controlplane {
namespace {

using kubernetes::testing::FakeApiServer;
using kubernetes::testing::RunUntil;

constexpr char kGatewayPath[] = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/edge";
constexpr char kAccountPath[] = "/api/v1/namespaces/shop/serviceaccounts/edge-meshlet";
constexpr char kDeploymentPath[] = "/apis/apps/v1/namespaces/shop/deployments/edge-meshlet";
constexpr char kServicePath[] = "/api/v1/namespaces/shop/services/edge-meshlet";

// A JSON merge patch (RFC 7386) of maps; anything else replaces.
YAML::Node Merge(YAML::Node target, const YAML::Node& patch) {
  if (!patch.IsMap() || !target.IsMap()) return YAML::Clone(patch);
  for (const auto& entry : patch) {
    const std::string key = entry.first.as<std::string>();
    if (entry.second.IsNull()) {
      target.remove(key);
    } else {
      target[key] = Merge(target[key], entry.second);
    }
  }
  return target;
}

class GatewayDeployerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    objects_[kGatewayPath] = R"({"metadata":{"name":"edge","namespace":"shop","uid":"u-1"}})";
    server_.set_handler([this](const http::ServerRequest& request, http::Responder respond) {
      const std::string path(request.path());
      const std::string method(request.method());
      writes_.push_back(method + " " + path);
      if (hold_) {
        held_.push_back(std::move(respond));
        return;
      }
      if (method != "GET" && fail_writes_ > 0) {
        --fail_writes_;
        respond(http::ServerResponse::Json(500, R"({"code":500})"));
        return;
      }
      if (method == "GET") {
        auto it = objects_.find(path);
        respond(it == objects_.end() ? http::ServerResponse::Json(404, R"({"code":404})")
                                     : http::ServerResponse::Json(200, it->second));
        return;
      }
      YAML::Node body = YAML::Load(request.body);
      bodies_[method + " " + path] = YAML::Clone(body);
      const std::string name = body["metadata"]["name"].as<std::string>();
      const std::string at = method == "POST" ? absl::StrCat(path, "/", name) : path;
      if (method == "PATCH" &&
          body["metadata"]["resourceVersion"].as<std::string>("") != resource_versions_[at]) {
        respond(http::ServerResponse::Json(409, R"({"code":409})"));
        return;
      }
      if (method == "PATCH") body = Merge(YAML::Load(objects_[at]), body);
      body["metadata"]["resourceVersion"] = std::to_string(++version_);
      resource_versions_[at] = std::to_string(version_);
      objects_[at] = inject::ToCompactJson(body);
      respond(http::ServerResponse::Json(method == "POST" ? 201 : 200, objects_[at]));
    });
    api_ = server_.Api();
    AddClass("meshlet", "meshlet.io/gateway-controller");
    AddClass("theirs", "example.com/gateway");
    options_.inject.proxy_image = "meshlet-proxy:1";
    options_.retry_base = std::chrono::milliseconds(10);
  }
  void AddClass(const std::string& name, const std::string& controller) {
    gateway::GatewayClass c;
    c.mutable_metadata()->set_name(name);
    c.mutable_spec()->set_controller_name(controller);
    policy_.gateway_classes.push_back(c);
  }
  gateway::Gateway& AddGateway(const std::string& name, const std::string& class_name,
                               std::vector<int> ports, bool mirrored = true) {
    policy_.gateways.push_back(gateway::Gateway());
    gateway::Gateway& g = policy_.gateways.back();
    g.mutable_metadata()->set_namespace_("shop");
    g.mutable_metadata()->set_name(name);
    if (mirrored) {
      (*g.mutable_metadata()->mutable_annotations())[kubernetes::kManagedByAnnotation] =
          kubernetes::kManagedByKubernetes;
    }
    g.mutable_spec()->set_gateway_class_name(class_name);
    for (int port : ports) {
      auto* l = g.mutable_spec()->add_listeners();
      l->set_name(absl::StrCat("l", port));
      l->set_port(port);
      l->set_protocol("HTTP");
    }
    return g;
  }
  std::unique_ptr<GatewayDeployer> Make() {
    return std::make_unique<GatewayDeployer>(loop_, *api_, stats_, options_);
  }
  uint64_t Counted(const std::string& result) {
    absl::StatusOr<CounterId> id =
        stats_.RegisterCounter("meshlet_cp_gateway_deployments_total", "x", {{"result", result}});
    return id.ok() ? stats_.CounterValue(*id) : 0;
  }
  std::vector<std::string> Written() {
    std::vector<std::string> out;
    for (const std::string& w : writes_) {
      if (!absl::StartsWith(w, "GET")) out.push_back(w);
    }
    return out;
  }
  YAML::Node Stored(const std::string& path) { return YAML::Load(objects_.at(path)); }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::unique_ptr<kubernetes::KubernetesApi> api_;
  policy::PolicySnapshot policy_;
  GatewayDeployerOptions options_;
  std::map<std::string, std::string> objects_;  // path -> JSON
  std::map<std::string, std::string> resource_versions_;
  std::map<std::string, YAML::Node> bodies_;
  std::vector<std::string> writes_;
  int version_ = 10;
  int fail_writes_ = 0;
  bool hold_ = false;  // requests get no answer until released
  std::vector<http::Responder> held_;
};

TEST_F(GatewayDeployerTest, CreatesTheProxysObjectsOwnedByTheGatewayThenLeavesThem) {
  AddGateway("edge", "meshlet", {80});
  auto deployer = Make();
  deployer->SetPolicy(policy_);
  bool waited = false;
  event::Timer wait(loop_, [&] { waited = true; });
  wait.Enable(std::chrono::milliseconds(100));
  ASSERT_TRUE(RunUntil(loop_, [&] { return waited; }));
  EXPECT_TRUE(writes_.empty()) << "an inactive replica asks and writes nothing";
  EXPECT_FALSE(deployer->idle());
  deployer->SetActive(true);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_EQ(Written(), (std::vector<std::string>{
                           "POST /api/v1/namespaces/shop/serviceaccounts",
                           "POST /apis/apps/v1/namespaces/shop/deployments",
                           "POST /api/v1/namespaces/shop/services",
                       }));
  for (const char* path : {kAccountPath, kDeploymentPath, kServicePath}) {
    YAML::Node o = Stored(path);
    ASSERT_EQ(o["metadata"]["ownerReferences"].size(), 1u) << path;
    const YAML::Node owner = o["metadata"]["ownerReferences"][0];
    EXPECT_EQ(owner["kind"].Scalar(), "Gateway");
    EXPECT_EQ(owner["name"].Scalar(), "edge");
    EXPECT_EQ(owner["uid"].Scalar(), "u-1");
    EXPECT_TRUE(owner["controller"].as<bool>());
    EXPECT_FALSE(o["metadata"]["annotations"][kGatewaySpecHashAnnotation].Scalar().empty());
  }
  EXPECT_EQ(Stored(kDeploymentPath)["spec"]["template"]["spec"]["containers"][0]["image"].Scalar(),
            "meshlet-proxy:1");
  EXPECT_EQ(Counted("created"), 3);
  EXPECT_EQ(deployer->namespaces(), std::vector<std::string>{"shop"});

  // The same policy again, and a resync: read, nothing written.
  writes_.clear();
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  deployer->SetActive(false);
  deployer->SetActive(true);  // leading again: everything is checked
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_TRUE(Written().empty()) << Written()[0];
  EXPECT_EQ(Counted("unchanged"), 3);
}

TEST_F(GatewayDeployerTest, AListenerPortAddedPatchesTheChangedObjectsOnly) {
  gateway::Gateway& edge = AddGateway("edge", "meshlet", {8080});
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  // Someone else's field on the Service (the API server's clusterIP) stays: a merge patch.
  YAML::Node service = Stored(kServicePath);
  service["spec"]["clusterIP"] = "10.96.0.7";
  objects_[kServicePath] = inject::ToCompactJson(service);
  const std::string before = resource_versions_[kServicePath];
  writes_.clear();

  auto* l = edge.mutable_spec()->add_listeners();
  l->set_name("tls");
  l->set_port(8443);
  l->set_protocol("HTTPS");
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_EQ(Written(), (std::vector<std::string>{"PATCH " + std::string(kDeploymentPath),
                                                 "PATCH " + std::string(kServicePath)}));
  EXPECT_EQ(bodies_["PATCH " + std::string(kServicePath)]["metadata"]["resourceVersion"].Scalar(),
            before);
  EXPECT_EQ(Stored(kServicePath)["spec"]["ports"].size(), 2u);
  EXPECT_EQ(Stored(kServicePath)["spec"]["clusterIP"].Scalar(), "10.96.0.7");
  EXPECT_EQ(Counted("updated"), 2);
}

TEST_F(GatewayDeployerTest, AnObjectThatIsNotMeshletsIsLeftAlone) {
  objects_[kServicePath] = R"({"metadata":{"name":"edge-meshlet","namespace":"shop",)"
                           R"("resourceVersion":"3"},"spec":{"type":"ClusterIP"}})";
  AddGateway("edge", "meshlet", {80});
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return Counted("conflict") >= 1; }));
  for (const std::string& w : Written()) EXPECT_FALSE(absl::StrContains(w, "services")) << w;
  EXPECT_EQ(Stored(kServicePath)["spec"]["type"].Scalar(), "ClusterIP");
  EXPECT_FALSE(deployer->idle());
}

TEST_F(GatewayDeployerTest, OnlyMeshletsMirroredGatewaysOfThisRevision) {
  AddGateway("theirs", "theirs", {80});
  AddGateway("applied", "meshlet", {80}, /*mirrored=*/false);
  (*AddGateway("canary", "meshlet", {80}).mutable_metadata()->mutable_labels())["meshlet.io/rev"] =
      "canary";
  AddGateway("unlabelled", "meshlet", {80});
  std::vector<std::string> names;
  for (const RenderedGateway& g : RenderGateways(policy_, options_)) names.push_back(g.name);
  EXPECT_EQ(names, std::vector<std::string>{"unlabelled"});

  options_.inject.revision = "canary";
  options_.default_revision = [] { return false; };
  names.clear();
  for (const RenderedGateway& g : RenderGateways(policy_, options_)) names.push_back(g.name);
  EXPECT_EQ(names, std::vector<std::string>{"canary"});
}

TEST_F(GatewayDeployerTest, AGatewayThatCannotBeRenderedIsCountedInvalid) {
  AddGateway(std::string(60, 'e'), "meshlet", {80});
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_EQ(Counted("invalid"), 1);
  EXPECT_TRUE(Written().empty());
}

// A replica that stops leading while a read is in flight writes nothing with its answer.
TEST_F(GatewayDeployerTest, NothingIsWrittenOnceNoLongerActive) {
  AddGateway("edge", "meshlet", {80});
  hold_ = true;
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return held_.size() == 1; }));
  deployer->SetActive(false);
  hold_ = false;
  held_[0](http::ServerResponse::Json(200, objects_[kGatewayPath]));
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_EQ(writes_.size(), 1u) << writes_.back();
  EXPECT_TRUE(Written().empty());
  // Leading again, it does the work.
  deployer->SetActive(true);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_EQ(Written().size(), 3u);
}

TEST_F(GatewayDeployerTest, AFailedWriteIsTriedAgain) {
  AddGateway("edge", "meshlet", {80});
  fail_writes_ = 2;
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_EQ(Counted("failed"), 2u);
  EXPECT_EQ(Counted("created"), 3u);
  EXPECT_TRUE(objects_.count(kServicePath));
}

TEST_F(GatewayDeployerTest, InfrastructureMetadataIsCopiedAndADroppedKeyRemoved) {
  gateway::Gateway& edge = AddGateway("edge", "meshlet", {8080});
  auto* infra = edge.mutable_spec()->mutable_infrastructure();
  (*infra->mutable_labels())["team"] = "shop";
  (*infra->mutable_labels())["tier"] = "edge";
  (*infra->mutable_annotations())["example.com/cost-center"] = "42";
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  for (const char* path : {kAccountPath, kDeploymentPath, kServicePath}) {
    const YAML::Node o = Stored(path);
    std::vector<YAML::Node> metadatas = {o["metadata"]};
    if (path == kDeploymentPath) metadatas.push_back(o["spec"]["template"]["metadata"]);
    for (const YAML::Node& m : metadatas) {
      EXPECT_EQ(m["labels"]["team"].Scalar(), "shop") << path;
      EXPECT_EQ(m["labels"]["tier"].Scalar(), "edge") << path;
      EXPECT_EQ(m["labels"][inject::kGatewayNameLabel].Scalar(), "edge") << path;
      EXPECT_EQ(m["annotations"]["example.com/cost-center"].Scalar(), "42") << path;
    }
  }

  // "tier" dropped, "team" changed: the patch removes "tier" (null) everywhere.
  infra->mutable_labels()->erase("tier");
  (*infra->mutable_labels())["team"] = "checkout";
  infra->mutable_annotations()->clear();
  writes_.clear();
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_EQ(Written().size(), 3u);
  for (const char* path : {kAccountPath, kDeploymentPath, kServicePath}) {
    const YAML::Node o = Stored(path);
    std::vector<YAML::Node> metadatas = {o["metadata"]};
    if (path == kDeploymentPath) metadatas.push_back(o["spec"]["template"]["metadata"]);
    for (const YAML::Node& m : metadatas) {
      EXPECT_EQ(m["labels"]["team"].Scalar(), "checkout") << path;
      EXPECT_FALSE(m["labels"]["tier"].IsDefined()) << path;
      EXPECT_FALSE(m["annotations"]["example.com/cost-center"].IsDefined()) << path;
      EXPECT_EQ(m["labels"][inject::kManagedByLabel].Scalar(), "meshlet") << path;
    }
    EXPECT_FALSE(
        o["metadata"]["annotations"][inject::kInfrastructureAnnotationsAnnotation].IsDefined())
        << path;
  }
}

TEST_F(GatewayDeployerTest, AReservedInfrastructureKeyIsNotDeployed) {
  gateway::Gateway& edge = AddGateway("edge", "meshlet", {8080});
  (*edge.mutable_spec()->mutable_infrastructure()->mutable_labels())["meshlet.io/rev"] = "x";
  auto deployer = Make();
  deployer->SetActive(true);
  deployer->SetPolicy(policy_);
  ASSERT_TRUE(RunUntil(loop_, [&] { return deployer->idle(); }));
  EXPECT_TRUE(Written().empty());
  EXPECT_EQ(Counted("invalid"), 1);
}

TEST_F(GatewayDeployerTest, UsableStaticAddressesAreTheServicesExternalIps) {
  gateway::Gateway& edge = AddGateway("edge", "meshlet", {8080});
  for (const char* value : {"203.0.113.9", "192.0.2.1", "", "203.0.113.10"}) {
    auto* a = edge.mutable_spec()->add_addresses();
    a->set_type("IPAddress");
    a->set_value(value);
  }
  options_.address_ranges = {*net::IpPrefix::Parse("203.0.113.8/29")};
  std::vector<RenderedGateway> rendered = RenderGateways(policy_, options_);
  ASSERT_EQ(rendered.size(), 1u);
  ASSERT_TRUE(rendered[0].objects.ok()) << rendered[0].objects.status();
  const YAML::Node ips = (*rendered[0].objects)[2]["spec"]["externalIPs"];
  ASSERT_EQ(ips.size(), 2u) << "192.0.2.1 is outside the ranges, \"\" is no address";
  EXPECT_EQ(ips[0].Scalar(), "203.0.113.9");
  EXPECT_EQ(ips[1].Scalar(), "203.0.113.10");

  options_.address_ranges.clear();
  rendered = RenderGateways(policy_, options_);
  ASSERT_TRUE(rendered[0].objects.ok());
  EXPECT_FALSE((*rendered[0].objects)[2]["spec"]["externalIPs"].IsDefined());
}

}  // namespace
}  // namespace meshlet::controlplane
