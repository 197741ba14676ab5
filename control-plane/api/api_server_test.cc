#include "control-plane/api/api_server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/base/fake_clock.h"
#include "control-plane/store/file_store.h"
#include "control-plane/store/forwarding_store.h"

namespace meshlet::controlplane::api {
namespace {

constexpr char kToken[] = "secret-token";
constexpr char kBootstrap[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

class FakeProxies final : public ProxyStatusProvider {
 public:
  std::string ProxiesJson() override { return R"({"items":[{"id":"a"}]})"; }
  absl::StatusOr<std::string> ProxyConfigJson(absl::string_view id,
                                              absl::Span<const std::string> lookups) override {
    if (id != "a") return absl::NotFoundError("no");
    if (!lookups.empty()) {
      return absl::StrCat(R"({"listeners":[],"lookups":[")", absl::StrJoin(lookups, "\",\""),
                          R"("]})");
    }
    return std::string(R"({"listeners":[]})");
  }
};

class PolicyApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("api_test_", ::testing::UnitTest::GetInstance()->random_seed(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto store = FileStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    registry_ = std::make_unique<registry::Registry>(clock_);
    api_ = std::make_unique<PolicyApi>(*store_, registry_.get(), clock_, ApiOptions{}, &stats_);
  }

  // As the control plane calls it: a request that needs a role and comes without a token is
  // refused (the gate's part, tested in control-plane/access); any other is answered for an
  // admin.
  http::ServerResponse Call(absl::string_view method, absl::string_view path,
                            absl::string_view body = "", absl::string_view token = kToken) {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    if (!token.empty()) request.headers.Add("authorization", absl::StrCat("Bearer ", token));
    request.body = std::string(body);
    if (PolicyApi::RequiredRole(request).has_value() && token.empty()) {
      return api_->Refusal(absl::UnauthenticatedError("missing Authorization: Bearer <token>"));
    }
    return api_->Handle(request, &caller_);
  }

  access::Principal caller_{
      .name = "api-token", .credential = "api-token", .role = access::Role::kAdmin};

  static constexpr char kRoutes[] = "/apis/meshlet.io/v1/namespaces/default/httproutes";
  static constexpr char kPolicy[] =
      "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/reviews";

  std::filesystem::path dir_;
  FakeClock clock_;
  StatsRegistry stats_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<PolicyApi> api_;
};

TEST_F(PolicyApiTest, RequestDurationIsRecordedByOperation) {
  auto operation = [](absl::string_view method, absl::string_view path) {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    return std::string(PolicyApi::Operation(request));
  };
  EXPECT_EQ(operation("PUT", kPolicy), "put");
  EXPECT_EQ(operation("GET", kPolicy), "get");
  EXPECT_EQ(operation("DELETE", kPolicy), "delete");
  EXPECT_EQ(operation("GET", kRoutes), "list");
  EXPECT_EQ(operation("POST", kRoutes), "create");
  EXPECT_EQ(operation("GET", "/apis/meshlet.io/v1/trafficpolicies"), "list");
  EXPECT_EQ(operation("GET", "/apis/meshlet.io/v1/meshconfigs/mesh"), "get");
  EXPECT_EQ(operation("GET", "/apis/meshlet.io/v1"), "list");
  EXPECT_EQ(operation("GET", "/metrics"), "other");
  EXPECT_EQ(operation("POST", "/api/v1/tokens"), "other");

  // From Timed() to the answer, on the control plane's clock, in the operation's series.
  http::ServerRequest request;
  request.headers.Add(":method", "PUT");
  request.headers.Add(":path", kPolicy);
  request.body =
      R"({"apiVersion":"meshlet.io/v1","kind":"TrafficPolicy","metadata":{"name":"reviews"},)"
      R"("spec":{"target":"reviews","retries":{"attempts":3}}})";
  std::optional<int> answered;
  http::Responder respond =
      api_->Timed(request, [&](http::ServerResponse response) { answered = response.status; });
  clock_.Advance(std::chrono::milliseconds(7));
  respond(api_->Handle(request, &caller_));
  EXPECT_EQ(answered, 201);
  const StatsSnapshot stats = stats_.Snapshot();
  auto series = [&stats](absl::string_view operation) {
    const SeriesSnapshot* found =
        stats.Find("meshlet_cp_api_request_seconds", {{"operation", std::string(operation)}});
    EXPECT_NE(found, nullptr) << operation;
    return found != nullptr ? found->histogram : HistogramSnapshot();
  };
  EXPECT_EQ(series("put").count(), 1u);
  EXPECT_EQ(series("put").sum(), 7000u);  // microseconds
  EXPECT_EQ(series("get").count(), 0u);
}

TEST_F(PolicyApiTest, EveryPathNeedsTheRoleOfWhatItDoes) {
  auto needs = [](absl::string_view method, absl::string_view path) {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    std::optional<access::Role> role = PolicyApi::RequiredRole(request);
    return role.has_value() ? std::string(access::RoleName(*role)) : std::string("none");
  };
  for (const auto& [method, path, role] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "/healthz", "none"},
           {"GET", "/version", "none"},
           {"GET", "/metrics", "none"},
           {"GET", "/", "none"},
           {"GET", "/dashboard/app.js", "none"},
           {"GET", "/api/v1/trust-bundle", "none"},
           {"GET", kRoutes, "viewer"},
           {"HEAD", kRoutes, "viewer"},
           {"GET", "/apis/meshlet.io/v1", "viewer"},
           {"GET", "/apis/gateway.networking.k8s.io/v1/grpcroutes", "viewer"},
           {"PUT", "/apis/gateway.networking.k8s.io/v1/namespaces/a/httproutes/r", "editor"},
           {"DELETE", "/apis/gateway.networking.k8s.io/v1beta1/namespaces/a/referencegrants/g",
            "editor"},
           {"GET", "/apis/gateway.networking.k8s.io/v1alpha2/grpcroutes", "viewer"},
           {"POST", kRoutes, "editor"},
           {"PUT", kPolicy, "editor"},
           {"DELETE", kPolicy, "editor"},
           {"PUT", "/apis/meshlet.io/v1/meshconfigs/mesh?dryRun=All", "editor"},
           {"GET", "/api/v1/workloads", "viewer"},
           {"GET", "/api/v1/proxies/a/config", "viewer"},
           {"POST", "/api/v1/proxies/a/config-dump", "viewer"},
           {"GET", "/api/v1/traces?service=x", "viewer"},
           {"GET", "/api/v1/stat?window=1m", "viewer"},
           {"GET", "/api/v1/stat/history?service=x", "viewer"},
           {"GET", "/api/v1/stat/routes?service=x", "viewer"},
           {"GET", "/api/v1/certificates", "viewer"},
           {"GET", "/api/v1/whoami", "viewer"},
           {"GET", "/api/v1/ca", "viewer"},
           {"GET", "/api/v1/jwks", "viewer"},
           {"POST", "/api/v1/tokens", "admin"},
           {"DELETE", "/api/v1/tokens/abc", "admin"},
           {"GET", "/api/v1/operator-tokens", "admin"},
           {"POST", "/api/v1/operator-tokens", "admin"},
           {"DELETE", "/api/v1/operator-tokens/bob", "admin"},
           {"POST", "/api/v1/workloads", "admin"},
           {"GET", "/nothing", "viewer"}}) {
    EXPECT_EQ(needs(method, path), role) << method << " " << path;
  }
}

TEST_F(PolicyApiTest, RefusalsAreStatusObjects) {
  http::ServerResponse unauthorized =
      api_->Refusal(absl::UnauthenticatedError("wrong bearer token"));
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_NE(unauthorized.body.find(R"("reason":"Unauthorized")"), std::string::npos);
  EXPECT_NE(unauthorized.body.find("wrong bearer token"), std::string::npos);
  EXPECT_TRUE(unauthorized.headers.Get("www-authenticate").has_value());
  http::ServerResponse forbidden = api_->Refusal(absl::PermissionDeniedError("needs editor"));
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_NE(forbidden.body.find(R"("reason":"Forbidden","message":"needs editor")"),
            std::string::npos)
      << forbidden.body;
  EXPECT_EQ(api_->Refusal(absl::UnavailableError("no API server")).status, 503);
  EXPECT_EQ(Call("GET", "/healthz", "", "").status, 200);
  EXPECT_EQ(Call("GET", "/version", "", "").status, 200);
  EXPECT_EQ(Call("GET", kRoutes).status, 200);
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST_F(PolicyApiTest, CreateReadUpdateDelete) {
  const std::string yaml =
      "apiVersion: meshlet.io/v1\nkind: TrafficPolicy\nmetadata:\n  name: "
      "reviews\nspec:\n  target: reviews\n  retries: {attempts: 2}\n";
  http::ServerResponse created = Call("PUT", kPolicy, yaml);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(*created.headers.Get("x-meshlet-result"), "created");
  EXPECT_NE(created.body.find(R"("resourceVersion":"1")"), std::string::npos) << created.body;
  EXPECT_NE(created.body.find(R"("creationTimestamp":"2026-01-01T00:16:40Z")"), std::string::npos)
      << created.body;
  // A warning, not an error: the Service does not exist yet.
  ASSERT_TRUE(created.headers.Get("warning").has_value());
  EXPECT_NE(created.headers.Get("warning")->find("reviews"), std::string::npos);

  http::ServerResponse read = Call("GET", kPolicy);
  ASSERT_EQ(read.status, 200);
  EXPECT_NE(read.body.find(R"("attempts":2)"), std::string::npos) << read.body;

  // Same content again: nothing written.
  http::ServerResponse same = Call("PUT", kPolicy, yaml);
  EXPECT_EQ(same.status, 200);
  EXPECT_EQ(*same.headers.Get("x-meshlet-result"), "unchanged");
  EXPECT_EQ(store_->Revision(), 1);

  http::ServerResponse updated =
      Call("PUT", kPolicy,
           absl::StrCat(yaml.substr(0, yaml.find("retries")), "retries: {attempts: 3}\n"));
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(*updated.headers.Get("x-meshlet-result"), "updated");
  EXPECT_NE(updated.body.find(R"("generation":"2")"), std::string::npos) << updated.body;
  EXPECT_NE(updated.body.find(R"("resourceVersion":"2")"), std::string::npos);

  http::ServerResponse list = Call("GET", "/apis/meshlet.io/v1/trafficpolicies");
  ASSERT_EQ(list.status, 200);
  EXPECT_NE(list.body.find(R"("kind":"TrafficPolicyList")"), std::string::npos);
  EXPECT_NE(list.body.find(R"("attempts":3)"), std::string::npos);

  EXPECT_EQ(Call("DELETE", kPolicy).status, 200);
  EXPECT_EQ(Call("GET", kPolicy).status, 404);
  EXPECT_EQ(Call("DELETE", kPolicy).status, 404);
}

TEST_F(PolicyApiTest, GatewayRoutesAreReadWithTheirComputedStatus) {
  constexpr char kRoute[] = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r";
  ASSERT_EQ(Call("PUT", "/apis/meshlet.io/v1/namespaces/default/services/echo",
                 "apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: echo}\n"
                 "spec: {ports: [{name: http, port: 80}]}\n")
                .status,
            201);
  http::ServerResponse put = Call("PUT", kRoute, R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo, port: 80}, {kind: Service, name: ghost}]
  rules: [{backendRefs: [{name: echo, port: 80}]}]
)");
  ASSERT_EQ(put.status, 201) << put.body;
  for (const char* path : {kRoute, "/apis/gateway.networking.k8s.io/v1/httproutes"}) {
    http::ServerResponse got = Call("GET", path);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_NE(got.body.find(R"("controllerName":"meshlet.io/mesh-controller")"), std::string::npos)
        << path << ": " << got.body;
    EXPECT_NE(got.body.find(R"("type":"Accepted","status":"True","observedGeneration":"1")"),
              std::string::npos)
        << path << ": " << got.body;
    EXPECT_NE(
        got.body.find(
            R"("reason":"NoMatchingParent","message":"Service default/ghost does not exist")"),
        std::string::npos)
        << path << ": " << got.body;
  }
}

// A store that counts its listings.
class ListCountingStore final : public ForwardingStore {
 public:
  explicit ListCountingStore(Store& store) : ForwardingStore(store) {}
  absl::StatusOr<std::vector<StoredResource>> List(absl::string_view kind,
                                                   absl::string_view ns) const override {
    ++lists;
    return inner().List(kind, ns);
  }
  mutable int lists = 0;
};

// With the control plane's live policy, a GET of a Gateway API route computes its status from it
// instead of listing and parsing the whole store for every read.
TEST_F(PolicyApiTest, AGatewayRouteIsReadWithTheLivePolicyWithoutListingTheStore) {
  constexpr char kRoute[] = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r";
  ASSERT_EQ(Call("PUT", "/apis/meshlet.io/v1/namespaces/default/services/echo",
                 "apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: echo}\n"
                 "spec: {ports: [{name: http, port: 80}]}\n")
                .status,
            201);
  ASSERT_EQ(Call("PUT", kRoute, R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: echo, port: 80}, {kind: Service, name: ghost}]
)")
                .status,
            201);
  ListCountingStore counting(*store_);
  PolicyApi api(counting, registry_.get(), clock_, ApiOptions{}, nullptr);
  auto get = [&] {
    http::ServerRequest request;
    request.headers.Add(":method", "GET");
    request.headers.Add(":path", kRoute);
    return api.Handle(request, &caller_);
  };
  constexpr char kGhostMissing[] = "Service default/ghost does not exist";
  http::ServerResponse read = get();
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(kGhostMissing), std::string::npos) << read.body;
  EXPECT_GT(counting.lists, 0);  // without a live policy: the whole store

  auto live =
      std::make_shared<policy::LivePolicy>(*store_, nullptr, policy::LivePolicyOptions{}, nullptr);
  ASSERT_TRUE(live->Load().ok());
  api.SetLivePolicy(live);
  counting.lists = 0;
  read = get();
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("type":"Accepted","status":"True")"), std::string::npos) << read.body;
  EXPECT_NE(read.body.find(kGhostMissing), std::string::npos) << read.body;
  // The Service written next is in the next read's status.
  ASSERT_EQ(Call("PUT", "/apis/meshlet.io/v1/namespaces/default/services/ghost",
                 "apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: ghost}\n"
                 "spec: {ports: [{name: http, port: 80}]}\n")
                .status,
            201);
  read = get();
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.body.find(kGhostMissing), std::string::npos) << read.body;
  EXPECT_EQ(counting.lists, 0);
}

// GatewayClass and Gateway are served with their computed status (gateway_status.h), and a route
// naming the Gateway shows its Gateway parent's entry.
TEST_F(PolicyApiTest, GatewaysAreShownWithTheirComputedStatus) {
  constexpr char kClass[] = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/meshlet";
  constexpr char kGateway[] = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/edge";
  constexpr char kRoute[] = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r";
  ASSERT_EQ(Call("PUT", kClass, R"(apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshlet}
spec: {controllerName: meshlet.io/gateway-controller}
)")
                .status,
            201);
  ASSERT_EQ(Call("PUT", kGateway, R"(apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  listeners: [{name: web, port: 80, protocol: HTTP}]
)")
                .status,
            201);
  ASSERT_EQ(Call("PUT", kRoute, R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: edge}]
)")
                .status,
            201);
  http::ServerResponse read = Call("GET", kClass);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("type":"Accepted","status":"True")"), std::string::npos) << read.body;
  read = Call("GET", kGateway);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("attachedRoutes":1)"), std::string::npos) << read.body;
  EXPECT_NE(read.body.find(R"("type":"Programmed","status":"False")"), std::string::npos)
      << read.body;
  read = Call("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways");
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("attachedRoutes":1)"), std::string::npos) << read.body;
  read = Call("GET", kRoute);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("controllerName":"meshlet.io/gateway-controller")"),
            std::string::npos)
      << read.body;
}

TEST_F(PolicyApiTest, BackendTlsPoliciesAreShownWithTheirComputedStatusPerGateway) {
  constexpr char kPolicy[] =
      "/apis/gateway.networking.k8s.io/v1/namespaces/default/backendtlspolicies/echo-tls";
  for (const auto& [path, body] : std::vector<std::pair<std::string, std::string>>{
           {"/apis/gateway.networking.k8s.io/v1/gatewayclasses/meshlet",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: "
            "meshlet}\nspec: {controllerName: meshlet.io/gateway-controller}\n"},
           {"/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/edge",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge}\n"
            "spec:\n  gatewayClassName: meshlet\n  listeners: [{name: web, port: 80, protocol: "
            "HTTP}]\n"},
           {"/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
            "spec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, "
            "port: 80}]\n"},
           {kPolicy,
            "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: "
            "echo-tls}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: echo}]\n"
            "  validation:\n    hostname: echo.example.com\n    caCertificateRefs: [{group: "
            "\"\", kind: ConfigMap, name: echo-ca}]\n"}}) {
    ASSERT_EQ(Call("PUT", path, body).status, 201) << path;
  }
  // No ConfigMap is read here: the reference does not resolve, for Gateway default/edge.
  http::ServerResponse read = Call("GET", kPolicy);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("ancestorRef":{"group":"gateway.networking.k8s.io","kind":)"
                           R"("Gateway","namespace":"default","name":"edge"})"),
            std::string::npos)
      << read.body;
  EXPECT_NE(read.body.find(R"("reason":"NoValidCACertificate")"), std::string::npos) << read.body;
  EXPECT_NE(read.body.find(R"("reason":"InvalidCACertificateRef")"), std::string::npos)
      << read.body;
  read = Call("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/default/backendtlspolicies");
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_NE(read.body.find(R"("reason":"NoValidCACertificate")"), std::string::npos) << read.body;
}

TEST_F(PolicyApiTest, GatewayApiKindsLiveBesideMeshletsUnderTheirOwnGroup) {
  constexpr char kGatewayRoute[] =
      "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/reviews";
  constexpr char kMeshletRoute[] = "/apis/meshlet.io/v1/namespaces/default/httproutes/reviews";
  const std::string gateway_route = R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - backendRefs: [{name: reviews-v2, port: 9080}]
status:
  parents: [{parentRef: {name: x}, controllerName: someone/else}]
)";
  http::ServerResponse created = Call("PUT", kGatewayRoute, gateway_route);
  ASSERT_EQ(created.status, 201) << created.body;
  // The status a client sends is the server's to set: dropped.
  EXPECT_EQ(created.body.find("someone/else"), std::string::npos) << created.body;
  EXPECT_NE(created.body.find(R"("apiVersion":"gateway.networking.k8s.io/v1")"), std::string::npos)
      << created.body;
  EXPECT_NE(created.body.find(R"("backendRefs":[{"name":"reviews-v2","port":9080}])"),
            std::string::npos)
      << created.body;
  // meshlet's HTTPRoute of the same name is another object with a key of its own.
  EXPECT_EQ(Call("GET", kMeshletRoute).status, 404);
  http::ServerResponse mine =
      Call("PUT", kMeshletRoute,
           "apiVersion: meshlet.io/v1\nkind: HTTPRoute\nmetadata: {name: reviews}\n"
           "spec: {target: reviews, rules: [{backends: [{service: reviews}]}]}\n");
  ASSERT_EQ(mine.status, 201) << mine.body;
  EXPECT_EQ(store_->List("GatewayHTTPRoute", "").value().size(), 1u);
  EXPECT_EQ(store_->List("HTTPRoute", "").value().size(), 1u);
  // A body of the other HTTPRoute on a path is refused at its kind.
  http::ServerResponse crossed = Call("PUT", kMeshletRoute, gateway_route);
  EXPECT_EQ(crossed.status, 400);
  EXPECT_NE(crossed.body.find("does not match the request's kind"), std::string::npos)
      << crossed.body;

  http::ServerResponse list = Call("GET", "/apis/gateway.networking.k8s.io/v1/httproutes");
  ASSERT_EQ(list.status, 200);
  EXPECT_NE(
      list.body.find(R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRouteList")"),
      std::string::npos)
      << list.body;
  EXPECT_NE(list.body.find("reviews-v2"), std::string::npos);
  EXPECT_EQ(list.body.find("\"target\""), std::string::npos) << list.body;

  // A ReferenceGrant is served as v1beta1, and a v1 document is taken.
  http::ServerResponse grant = Call(
      "PUT", "/apis/gateway.networking.k8s.io/v1beta1/namespaces/default/referencegrants/allow",
      "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: allow}\n"
      "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n"
      "  to: [{group: \"\", kind: Service}]\n");
  ASSERT_EQ(grant.status, 201) << grant.body;
  EXPECT_NE(grant.body.find(R"("apiVersion":"gateway.networking.k8s.io/v1beta1")"),
            std::string::npos)
      << grant.body;
  // Discovery per group and version.
  http::ServerResponse kinds = Call("GET", "/apis/gateway.networking.k8s.io/v1");
  ASSERT_EQ(kinds.status, 200);
  EXPECT_NE(kinds.body.find(R"("groupVersion":"gateway.networking.k8s.io/v1")"), std::string::npos)
      << kinds.body;
  EXPECT_NE(kinds.body.find(R"("name":"grpcroutes")"), std::string::npos);
  EXPECT_EQ(kinds.body.find("trafficpolicies"), std::string::npos);
  EXPECT_EQ(Call("GET", "/apis/gateway.networking.k8s.io/v1/trafficpolicies").status, 404);
  EXPECT_EQ(Call("GET", "/apis/gateway.networking.k8s.io/v1/referencegrants").status, 404);
  EXPECT_EQ(Call("GET", "/apis/gateway.networking.k8s.io/v1beta1/referencegrants").status, 200);

  // Invalid: 422 with each field, nothing stored.
  const int64_t revision = store_->Revision();
  http::ServerResponse invalid =
      Call("PUT", kGatewayRoute,
           "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: reviews}\n"
           "spec:\n  rules:\n  - matches: [{path: {type: PathPrefix, value: v2}}]\n"
           "    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]\n"
           "    backendRefs: [{name: reviews-v2, port: 9080}]\n");
  EXPECT_EQ(invalid.status, 422) << invalid.body;
  for (const char* field :
       {"spec.rules[0].matches[0].path.value",
        "spec.rules[0].filters[0].requestRedirect.statusCode", "spec.rules[0].backendRefs"}) {
    EXPECT_NE(invalid.body.find(absl::StrCat(R"({"field":")", field, R"(")")), std::string::npos)
        << field << " in " << invalid.body;
  }
  EXPECT_EQ(store_->Revision(), revision);

  http::ServerResponse removed = Call("DELETE", kGatewayRoute);
  EXPECT_EQ(removed.status, 200) << removed.body;
  http::ServerResponse gone = Call("GET", kGatewayRoute);
  EXPECT_EQ(gone.status, 404);
  EXPECT_NE(gone.body.find(R"(HTTPRoute \"reviews\" not found)"), std::string::npos) << gone.body;
  EXPECT_EQ(Call("GET", kMeshletRoute).status, 200);
}

TEST_F(PolicyApiTest, ServicesGetAddressesKeptAcrossWritesAndConflictsAreRefused) {
  constexpr char kReviews[] = "/apis/meshlet.io/v1/namespaces/default/services/reviews";
  constexpr char kRatings[] = "/apis/meshlet.io/v1/namespaces/shop/services/ratings";
  const std::string reviews =
      "kind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 80}]}\n";
  http::ServerResponse created = Call("PUT", kReviews, reviews);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_NE(created.body.find(R"("status":{"addresses":["240.240.0.1"]})"), std::string::npos)
      << created.body;
  http::ServerResponse read = Call("GET", kReviews);
  EXPECT_NE(read.body.find(R"("status":{"addresses":["240.240.0.1"]})"), std::string::npos)
      << read.body;
  // Applying the same document again changes nothing; a status sent along is the server's.
  EXPECT_EQ(*Call("PUT", kReviews, reviews).headers.Get("x-meshlet-result"), "unchanged");
  http::ServerResponse sent_status =
      Call("PUT", kReviews, reviews + "status: {addresses: [10.1.1.1]}\n");
  EXPECT_EQ(*sent_status.headers.Get("x-meshlet-result"), "unchanged") << sent_status.body;
  // A dry run shows the address a new Service would get, and takes none.
  http::ServerResponse dry =
      Call("PUT", absl::StrCat(kRatings, "?dryRun=All"),
           "kind: Service\nmetadata: {name: ratings}\nspec: {ports: [{port: 80}]}\n");
  EXPECT_NE(dry.body.find(R"("addresses":["240.240.0.2"])"), std::string::npos) << dry.body;
  EXPECT_EQ(Call("GET", kRatings).status, 404);

  // Another Service declaring reviews's address: 422 naming both.
  http::ServerResponse taken =
      Call("PUT", kRatings,
           "kind: Service\nmetadata: {name: ratings}\nspec: {ports: [{port: 80}], addresses: "
           "[240.240.0.1]}\n");
  EXPECT_EQ(taken.status, 422);
  EXPECT_NE(taken.body.find(R"(Service \"ratings\" is invalid: spec.addresses[0]: 240.240.0.1 )"
                            R"(is already an address of Service default/reviews (allocated))"),
            std::string::npos)
      << taken.body;
  http::ServerResponse declared =
      Call("PUT", kRatings,
           "kind: Service\nmetadata: {name: ratings}\nspec: {ports: [{port: 80}], addresses: "
           "[10.96.0.10]}\n");
  ASSERT_EQ(declared.status, 201) << declared.body;
  EXPECT_EQ(declared.body.find(R"("status")"), std::string::npos) << declared.body;

  // A smaller range in MeshConfig: what exists keeps its address, new Services come from it.
  ASSERT_EQ(Call("PUT", "/apis/meshlet.io/v1/meshconfigs/mesh",
                 "kind: MeshConfig\nmetadata: {name: mesh}\nspec: {serviceAddressRange: "
                 "10.200.0.0/30}\n")
                .status,
            201);
  const std::string other = "kind: Service\nmetadata: {name: NAME}\nspec: {ports: [{port: 80}]}\n";
  auto put = [&](const std::string& name) {
    return Call("PUT", absl::StrCat("/apis/meshlet.io/v1/namespaces/default/services/", name),
                absl::StrReplaceAll(other, {{"NAME", name}}));
  };
  EXPECT_NE(put("a").body.find(R"(["10.200.0.1"])"), std::string::npos);
  EXPECT_NE(put("b").body.find(R"(["10.200.0.2"])"), std::string::npos);
  // Full: stored all the same, with a warning.
  http::ServerResponse full = put("c");
  EXPECT_EQ(full.status, 201) << full.body;
  EXPECT_EQ(full.body.find(R"("status")"), std::string::npos) << full.body;
  ASSERT_TRUE(full.headers.Get("warning").has_value());
  EXPECT_NE(full.headers.Get("warning")->find("gets no address from 10.200.0.0/30"),
            std::string::npos);
  EXPECT_NE(Call("GET", kReviews).body.find(R"(["240.240.0.1"])"), std::string::npos);
  // A wider range: the MeshConfig write gives c its address.
  http::ServerResponse wider = Call("PUT", "/apis/meshlet.io/v1/meshconfigs/mesh",
                                    "kind: MeshConfig\nmetadata: {name: mesh}\nspec: "
                                    "{serviceAddressRange: 10.200.0.0/29}\n");
  EXPECT_EQ(wider.status, 200) << wider.body;
  EXPECT_NE(Call("GET", "/apis/meshlet.io/v1/namespaces/default/services/c")
                .body.find(R"(["10.200.0.3"])"),
            std::string::npos);
}

TEST_F(PolicyApiTest, InvalidIsRefusedWithFieldPathsAndNothingStored) {
  http::ServerResponse r =
      Call("PUT", kPolicy,
           R"({"kind":"TrafficPolicy","metadata":{"name":"reviews"},"spec":{"target":"reviews",)"
           R"("retries":{"attempts":42},"timeouts":{"request":"0s"}}})");
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find(R"("field":"spec.retries.attempts")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("field":"spec.timeouts.request")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("reason":"Invalid")"), std::string::npos);
  EXPECT_EQ(store_->Revision(), 0);

  // Parse errors (unknown fields, wrong types) are 400 and also carry the path.
  http::ServerResponse unknown =
      Call("PUT", kPolicy, "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n  retrys: {}\n");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find(R"("field":"spec.retrys")"), std::string::npos) << unknown.body;
  http::ServerResponse negative =
      Call("PUT", kPolicy,
           "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n  retries: {attempts: -1}\n");
  EXPECT_EQ(negative.status, 400);
  EXPECT_NE(negative.body.find("spec.retries.attempts"), std::string::npos) << negative.body;
  EXPECT_EQ(store_->Revision(), 0);
}

TEST_F(PolicyApiTest, UrlAndBodyMustAgree) {
  EXPECT_EQ(
      Call("PUT", kPolicy, "kind: TrafficPolicy\nmetadata: {name: other}\nspec: {target: reviews}")
          .status,
      400);
  EXPECT_EQ(Call("PUT", kPolicy,
                 "kind: TrafficPolicy\nmetadata: {name: reviews, namespace: prod}\nspec: "
                 "{target: reviews}")
                .status,
            400);
  EXPECT_EQ(Call("PUT", kPolicy, "kind: HTTPRoute\nmetadata: {name: reviews}\n").status, 400);
  EXPECT_EQ(Call("PUT", kPolicy, "").status, 400);
}

TEST_F(PolicyApiTest, ResourceVersionConflicts) {
  const std::string v1 = "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}";
  const std::string path = "/apis/meshlet.io/v1/namespaces/default/services/s";
  ASSERT_EQ(Call("PUT", path, v1).status, 201);
  // (Creating a Service also reserves its address in the store: revisions are not consecutive.)
  const int64_t first = store_->Revision();
  // Someone else updates it.
  ASSERT_EQ(
      Call("PUT", path, "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 81}]}").status,
      200);
  const int64_t second = store_->Revision();
  auto with_version = [](int64_t revision) {
    return absl::StrCat("kind: Service\nmetadata: {name: s, resourceVersion: \"", revision,
                        "\"}\nspec: {ports: [{port: 82}]}");
  };
  // A write based on the first version is refused.
  http::ServerResponse stale = Call("PUT", path, with_version(first));
  EXPECT_EQ(stale.status, 409);
  EXPECT_NE(
      stale.body.find(absl::StrCat("resourceVersion ", first, " is stale, current is ", second)),
      std::string::npos)
      << stale.body;
  http::ServerResponse fresh = Call("PUT", path, with_version(second));
  EXPECT_EQ(fresh.status, 200) << fresh.body;
  const int64_t third = store_->Revision();
  // POST creates only.
  EXPECT_EQ(Call("POST", "/apis/meshlet.io/v1/namespaces/default/services", v1).status, 409);
  // Conditional delete.
  EXPECT_EQ(Call("DELETE", absl::StrCat(path, "?resourceVersion=", second)).status, 409);
  EXPECT_EQ(Call("DELETE", absl::StrCat(path, "?resourceVersion=", third)).status, 200);
  // Updating with a resourceVersion something that does not exist: 404.
  EXPECT_EQ(Call("PUT", path, with_version(third)).status, 404);
}

TEST_F(PolicyApiTest, DryRunStoresNothing) {
  const std::string path = "/apis/meshlet.io/v1/namespaces/default/services/s";
  http::ServerResponse dry =
      Call("PUT", absl::StrCat(path, "?dryRun=All"),
           "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}");
  EXPECT_EQ(dry.status, 201);
  EXPECT_EQ(*dry.headers.Get("x-meshlet-result"), "dry_run");
  EXPECT_EQ(store_->Revision(), 0);
  EXPECT_EQ(Call("GET", path).status, 404);
  // A dry run still validates.
  EXPECT_EQ(Call("PUT", absl::StrCat(path, "?dryRun=All"),
                 "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 0}]}")
                .status,
            422);
  ASSERT_EQ(
      Call("PUT", path, "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}").status,
      201);
  const int64_t revision = store_->Revision();
  EXPECT_EQ(Call("DELETE", absl::StrCat(path, "?dryRun=All")).status, 200);
  EXPECT_EQ(Call("GET", path).status, 200);
  EXPECT_EQ(store_->Revision(), revision);
}

TEST_F(PolicyApiTest, PathsAndMethods) {
  EXPECT_EQ(Call("GET", "/apis/meshlet.io/v1").status, 200);
  EXPECT_EQ(Call("GET", "/apis/meshlet.io/v1/namespaces/default/gizmos").status, 404);
  EXPECT_EQ(Call("GET", "/nothing").status, 404);
  http::ServerResponse patch = Call("PATCH", kPolicy);
  EXPECT_EQ(patch.status, 405);
  EXPECT_EQ(*patch.headers.Get("allow"), "GET, PUT, DELETE");
  // MeshConfig is cluster-wide and named "mesh".
  EXPECT_EQ(Call("GET", "/apis/meshlet.io/v1/namespaces/default/meshconfigs/mesh").status, 404);
  EXPECT_EQ(Call("PUT", "/apis/meshlet.io/v1/meshconfigs/mesh",
                 "kind: MeshConfig\nmetadata: {name: mesh}\nspec: {mtls: STRICT}")
                .status,
            201);
  EXPECT_EQ(Call("PUT", "/apis/meshlet.io/v1/meshconfigs/other",
                 "kind: MeshConfig\nmetadata: {name: other}\nspec: {}")
                .status,
            422);
  EXPECT_EQ(Call("GET", "/apis/meshlet.io/v1/meshconfigs/mesh").status, 200);
  EXPECT_EQ(Call("GET", "/apis/meshlet.io/v1/namespaces/Bad_NS/services").status, 400);
  // Namespaced kinds are created inside a namespace only.
  EXPECT_EQ(Call("POST", "/apis/meshlet.io/v1/services",
                 "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}")
                .status,
            404);
  EXPECT_EQ(Call("GET", "/apis/meshlet.io/v1/services/s").status, 404);
}

TEST_F(PolicyApiTest, RegistryAndProxies) {
  registry::Workload w;
  w.id = "reviews-0";
  w.service = "reviews";
  w.addresses = {"10.0.0.1"};
  registry_->Connect(w);
  http::ServerResponse workloads = Call("GET", "/api/v1/workloads");
  ASSERT_EQ(workloads.status, 200);
  EXPECT_NE(workloads.body.find(R"("id":"reviews-0")"), std::string::npos) << workloads.body;
  EXPECT_NE(workloads.body.find(R"("connected":true)"), std::string::npos);

  EXPECT_EQ(Call("GET", "/api/v1/proxies").status, 503);
  FakeProxies proxies;
  api_->SetProxyStatusProvider(&proxies);
  EXPECT_EQ(Call("GET", "/api/v1/proxies").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/proxies/a/config").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/proxies/b/config").status, 404);
  // ?lookup= hands the keys on; what is not a lookup key, or too many, is refused.
  http::ServerResponse looked_up =
      Call("GET", "/api/v1/proxies/a/config?lookup=host%3Areviews%3A9080,addr%3A10.0.0.1%3A80");
  EXPECT_EQ(looked_up.status, 200);
  EXPECT_EQ(looked_up.body,
            R"({"listeners":[],"lookups":["host:reviews:9080","addr:10.0.0.1:80"]})");
  http::ServerResponse not_a_key = Call("GET", "/api/v1/proxies/a/config?lookup=reviews");
  EXPECT_EQ(not_a_key.status, 400);
  EXPECT_NE(not_a_key.body.find(R"(lookup: \"reviews\" is not a lookup key)"), std::string::npos)
      << not_a_key.body;
  std::string many = "host:a";
  for (size_t i = 0; i < kMaxProxyConfigLookups; ++i) absl::StrAppend(&many, ",host:a", i);
  EXPECT_EQ(Call("GET", absl::StrCat("/api/v1/proxies/a/config?lookup=", many)).status, 400);
  api_->SetProxyStatusProvider(nullptr);
}

TEST_F(PolicyApiTest, TrustBundleNeedsNoToken) {
  http::ServerResponse missing = Call("GET", "/api/v1/trust-bundle");
  EXPECT_EQ(missing.status, 503);
  EXPECT_NE(missing.body.find("the certificate authority is not running"), std::string::npos);
  const std::string pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  api_->SetTrustBundle(pem);
  http::ServerResponse bundle = Call("GET", "/api/v1/trust-bundle");
  EXPECT_EQ(bundle.status, 200);
  EXPECT_EQ(bundle.body, pem);
  EXPECT_EQ(bundle.headers.Get("content-type"), "application/x-pem-file");
  // meshctl fetches it to pin the CA before it sends a token.
  EXPECT_EQ(Call("GET", "/api/v1/trust-bundle", "", "").body, pem);
  EXPECT_EQ(Call("GET", "/api/v1/trust-bundle", "", "wrong").status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/trust-bundle", pem, "").status, 405);
  http::ServerResponse post = Call("POST", "/api/v1/trust-bundle", pem);
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers.Get("allow"), "GET");
  EXPECT_EQ(Call("GET", "/api/v1/trust-bundle/x").status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/trust-bundles").status, 404);
}

TEST_F(PolicyApiTest, CaStatusIsTheCaServicesJsonBehindTheToken) {
  EXPECT_EQ(Call("GET", "/api/v1/ca").status, 503);
  api_->SetCaStatus([] { return std::string(R"({"subject":"CN=issuing"})"); });
  http::ServerResponse status = Call("GET", "/api/v1/ca");
  EXPECT_EQ(status.status, 200);
  EXPECT_EQ(status.body, R"({"subject":"CN=issuing"})");
  EXPECT_EQ(Call("GET", "/api/v1/ca", "", "").status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/ca", "{}").status, 405);
  api_->SetCaStatus(nullptr);
  EXPECT_EQ(Call("GET", "/api/v1/ca").status, 503);
}

TEST_F(PolicyApiTest, TraceQueriesGoToTheCollectorBehindTheToken) {
  EXPECT_EQ(Call("GET", "/api/v1/traces").status, 503);
  std::vector<std::string> seen;
  api_->SetTraceHandler([&](const http::ServerRequest& request) {
    seen.emplace_back(request.path());
    return http::ServerResponse::Json(200, "{}");
  });
  EXPECT_EQ(Call("GET", "/api/v1/traces?service=a").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/traces/abc").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/dependencies").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/traces", "", "").status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/tracesx").status, 404);
  EXPECT_EQ(seen, (std::vector<std::string>{"/api/v1/traces", "/api/v1/traces/abc",
                                            "/api/v1/dependencies"}));
  api_->SetTraceHandler(nullptr);
  EXPECT_EQ(Call("GET", "/api/v1/dependencies").status, 503);
}

TEST_F(PolicyApiTest, MetricsCountOutcomes) {
  Call("GET", kRoutes, "", "");
  Call("PUT", kPolicy, "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec: {}");
  http::ServerResponse metrics = Call("GET", "/metrics", "", "");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("meshlet_cp_api_requests_total{code_class=\"4xx\"} 2"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("meshlet_cp_api_invalid_total 1"), std::string::npos);
  // The process metrics follow the registry's series.
  EXPECT_NE(metrics.body.find("# TYPE process_resident_memory_bytes gauge\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
}

TEST_F(PolicyApiTest, MirroredObjectsChangeOnlyThroughTheMirrorNeverByItsHeader) {
  auto request = [](absl::string_view method, absl::string_view retries) {
    http::ServerRequest r;
    r.headers.Add(":method", method);
    r.headers.Add(":path", kPolicy);
    if (!retries.empty()) {
      r.body = absl::StrCat(
          "kind: TrafficPolicy\nmetadata: {name: reviews, annotations: {meshlet.io/managed-by: "
          "kubernetes}}\nspec: {target: reviews, retries: {attempts: ",
          retries, "}}\n");
    }
    return r;
  };
  ASSERT_EQ(api_->HandleFromMirror(request("PUT", "2")).status, 201);

  // An editor over the network, claiming to be the mirror with its header: refused as without
  // it, and counted.
  const access::Principal editor{
      .name = "ed", .credential = "operator-token", .role = access::Role::kEditor};
  for (http::ServerRequest forged : {request("PUT", "5"), request("DELETE", "")}) {
    forged.headers.Add(kMirrorHeader, kManagedByKubernetes);
    http::ServerResponse refused = api_->Handle(forged, &editor);
    EXPECT_EQ(refused.status, 409) << forged.method() << ": " << refused.body;
    EXPECT_TRUE(absl::StrContains(refused.body, "kubectl")) << refused.body;
  }
  http::ServerResponse stored = Call("GET", kPolicy);
  EXPECT_TRUE(absl::StrContains(stored.body, R"("attempts":2)")) << stored.body;
  const std::string metrics = Call("GET", "/metrics", "", "").body;
  EXPECT_TRUE(absl::StrContains(metrics, "meshlet_cp_api_forged_mirror_header_total 2")) << metrics;

  // Nor may a network request set the mark on an object of its own: it would pass for mirrored.
  http::ServerRequest marked = request("PUT", "1");
  marked.headers.Set(":path", absl::StrCat(kPolicy, "-own"));
  absl::StrReplaceAll({{"name: reviews,", "name: reviews-own,"}}, &marked.body);
  http::ServerResponse refused = api_->Handle(marked, &editor);
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_TRUE(absl::StrContains(refused.body, "meshlet.io/managed-by")) << refused.body;
  EXPECT_EQ(Call("GET", absl::StrCat(kPolicy, "-own")).status, 404);

  // The mirror itself still writes and deletes it.
  EXPECT_EQ(api_->HandleFromMirror(request("PUT", "3")).status, 200);
  EXPECT_EQ(api_->HandleFromMirror(request("DELETE", "")).status, 200);
  EXPECT_EQ(Call("GET", kPolicy).status, 404);
}

TEST_F(PolicyApiTest, OnlyResourcesAndTokensCallTheStore) {
  auto calls_store = [](absl::string_view path) {
    http::ServerRequest request;
    request.headers.Add(":method", "GET");
    request.headers.Add(":path", path);
    return PolicyApi::CallsStore(request);
  };
  for (const char* path :
       {"/apis/meshlet.io/v1", kRoutes, "/apis/meshlet.io/v1/meshconfigs/mesh", "/api/v1/tokens",
        "/api/v1/tokens/abc?x=1", "/api/v1/operator-tokens", "/api/v1/operator-tokens/bob"}) {
    EXPECT_TRUE(calls_store(path)) << path;
  }
  for (const char* path : {"/healthz", "/metrics", "/api/v1/workloads", "/api/v1/proxies",
                           "/api/v1/traces", "/api/v1/tokensx", "/apis/meshlet.io/v1x", "/"}) {
    EXPECT_FALSE(calls_store(path)) << path;
  }
}

TEST_F(PolicyApiTest, AStoreThatIsBusyGets503WithRetryAfterAndIsCounted) {
  http::ServerResponse busy = api_->StoreBusy(256);
  EXPECT_EQ(busy.status, 503);
  EXPECT_EQ(busy.headers.Get("retry-after").value_or(""), "1");
  EXPECT_NE(busy.body.find("256 calls are waiting"), std::string::npos) << busy.body;
  http::ServerResponse metrics = Call("GET", "/metrics", "", "");
  EXPECT_NE(metrics.body.find("meshlet_cp_api_store_errors_total 1"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("meshlet_cp_api_requests_total{code_class=\"5xx\"} 1"),
            std::string::npos);
}

TEST(TokenTest, CreatedOnceWithMode0600) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/token_test_",
                                       ::testing::UnitTest::GetInstance()->random_seed());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/api-token";
  std::filesystem::remove(path);
  absl::StatusOr<std::string> first = LoadOrCreateToken(path);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), 64u);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<std::string> second = LoadOrCreateToken(path);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*first, *second);
  ::chmod(path.c_str(), 0644);
  EXPECT_FALSE(LoadOrCreateToken(path).ok());
}

}  // namespace
}  // namespace meshlet::controlplane::api

namespace meshlet::controlplane::api {
namespace {

TEST_F(PolicyApiTest, WhoamiAndOperatorTokensAnswerForTheCaller) {
  http::ServerResponse whoami = Call("GET", "/api/v1/whoami");
  ASSERT_EQ(whoami.status, 200);
  EXPECT_EQ(whoami.body,
            "{\"kind\":\"Principal\",\"name\":\"api-token\",\"credential\":\"api-token\","
            "\"role\":\"admin\"}\n");
  EXPECT_EQ(Call("POST", "/api/v1/whoami").status, 405);
  // Off until set.
  EXPECT_EQ(Call("GET", "/api/v1/operator-tokens").status, 503);
  auto tokens = access::OperatorTokens::Open(*store_, clock_, kBootstrap, &stats_);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  api_->SetOperatorTokens(tokens->get());
  http::ServerResponse created =
      Call("POST", "/api/v1/operator-tokens", R"({"name":"ops","role":"viewer"})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_NE(created.body.find(R"("createdBy":"api-token")"), std::string::npos) << created.body;
  http::ServerResponse list = Call("GET", "/api/v1/operator-tokens");
  EXPECT_NE(list.body.find(R"("name":"ops")"), std::string::npos) << list.body;
  api_->SetOperatorTokens(nullptr);
}

}  // namespace
}  // namespace meshlet::controlplane::api
