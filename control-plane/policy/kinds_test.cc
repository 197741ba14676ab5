// The kinds table: names on the command line, a document's apiVersion and kind, store keys, and
// the snapshot's lists of the Gateway API kinds.

#include "control-plane/policy/kinds.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "control-plane/policy/codec.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/store/file_store.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::policy {
namespace {

const google::protobuf::Descriptor* DescriptorOf(absl::string_view name) {
  const KindInfo* info = FindKind(name);
  return info == nullptr ? nullptr : info->descriptor;
}

TEST(KindsTest, CommandLineNamesFollowKubectl) {
  // Unqualified names that both groups have stay meshlet's.
  EXPECT_EQ(DescriptorOf("httproutes"), meshlet::policy::HTTPRoute::descriptor());
  EXPECT_EQ(DescriptorOf("HTTPRoute"), meshlet::policy::HTTPRoute::descriptor());
  EXPECT_EQ(DescriptorOf("hr"), meshlet::policy::HTTPRoute::descriptor());
  EXPECT_EQ(DescriptorOf("httproutes.meshlet.io"), meshlet::policy::HTTPRoute::descriptor());
  // The group names the Gateway API's.
  for (const char* name :
       {"httproutes.gateway.networking.k8s.io", "httproute.gateway.networking.k8s.io",
        "HTTPRoute.gateway.networking.k8s.io"}) {
    EXPECT_EQ(DescriptorOf(name), meshlet::gateway::HTTPRoute::descriptor()) << name;
  }
  for (const char* name :
       {"grpcroutes", "grpcroute", "GRPCRoute", "grpcroutes.gateway.networking.k8s.io"}) {
    EXPECT_EQ(DescriptorOf(name), meshlet::gateway::GRPCRoute::descriptor()) << name;
  }
  for (const char* name : {"referencegrants", "referencegrant", "refgrant",
                           "referencegrants.gateway.networking.k8s.io"}) {
    EXPECT_EQ(DescriptorOf(name), meshlet::gateway::ReferenceGrant::descriptor()) << name;
  }
  EXPECT_EQ(FindKind("grpcroutes.meshlet.io"), nullptr);
  EXPECT_EQ(FindKind("httproutes.gateway"), nullptr);
  EXPECT_EQ(FindKind(".gateway.networking.k8s.io"), nullptr);
}

TEST(KindsTest, EachKindHasItsApiVersionsAndStoreKind) {
  const KindInfo* gateway_route = FindKind("httproutes.gateway.networking.k8s.io");
  ASSERT_NE(gateway_route, nullptr);
  EXPECT_EQ(gateway_route->ApiVersion(), "gateway.networking.k8s.io/v1");
  EXPECT_EQ(gateway_route->ApiPath(), "/apis/gateway.networking.k8s.io/v1");
  EXPECT_EQ(gateway_route->QualifiedName(), "httproute.gateway.networking.k8s.io");
  const KindInfo* grant = FindKind("referencegrants");
  EXPECT_EQ(grant->ApiVersion(), "gateway.networking.k8s.io/v1beta1");
  EXPECT_TRUE(grant->AcceptsApiVersion("gateway.networking.k8s.io/v1"));
  EXPECT_TRUE(grant->AcceptsApiVersion("gateway.networking.k8s.io/v1beta1"));
  EXPECT_FALSE(grant->AcceptsApiVersion("gateway.networking.k8s.io/v1alpha2"));
  EXPECT_FALSE(grant->AcceptsApiVersion("gateway.networking.k8s.io/v1beta1x"));
  EXPECT_FALSE(FindKind("hr")->AcceptsApiVersion("gateway.networking.k8s.io/v1"));

  std::set<std::string> store_kinds;
  for (const KindInfo& info : AllKinds()) {
    EXPECT_TRUE(store_kinds.insert(std::string(info.store_kind)).second) << info.store_kind;
    EXPECT_EQ(FindStoredKind(info.store_kind), &info);
    EXPECT_EQ(FindServedKind(info.group, info.versions.front(), info.plural), &info);
    EXPECT_EQ(FindKind(absl::StrCat(info.plural, ".", info.group)), &info);
  }
  EXPECT_EQ(FindServedKind("gateway.networking.k8s.io", "v1", "meshconfigs"), nullptr);
}

TEST(KindsTest, DocumentsPickTheirKindByApiVersion) {
  absl::StatusOr<ParsedResource> gateway = ParseResource(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}, queryParams: [{name: a, value: b}]}]
    backendRefs: [{name: reviews-v2, port: 9080, weight: 90}]
    timeouts: {request: 10s, backendRequest: 2s}
)");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  EXPECT_EQ(gateway->message->GetDescriptor(), meshlet::gateway::HTTPRoute::descriptor());
  EXPECT_EQ(gateway->info, FindKind("httproutes.gateway.networking.k8s.io"));
  const std::string json = ToJson(*gateway->message);
  // Upstream spellings on the way out.
  for (const char* field : {"\"parentRefs\"", "\"backendRefs\"", "\"queryParams\"",
                            "\"backendRequest\"", "\"apiVersion\""}) {
    EXPECT_NE(json.find(field), std::string::npos) << field << " in " << json;
  }

  absl::StatusOr<ParsedResource> mine =
      ParseResource("apiVersion: meshlet.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n");
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(mine->message->GetDescriptor(), meshlet::policy::HTTPRoute::descriptor());
  // No apiVersion: meshlet's kind of that name, else the only one.
  EXPECT_EQ(ParseResource("kind: HTTPRoute\n")->message->GetDescriptor(),
            meshlet::policy::HTTPRoute::descriptor());
  EXPECT_EQ(ParseResource("kind: GRPCRoute\n")->message->GetDescriptor(),
            meshlet::gateway::GRPCRoute::descriptor());

  for (const char* version : {"v1beta1", "v1"}) {
    absl::StatusOr<ParsedResource> grant = ParseResource(absl::StrCat(
        "apiVersion: gateway.networking.k8s.io/", version, "\nkind: ReferenceGrant\n"));
    ASSERT_TRUE(grant.ok()) << version << ": " << grant.status();
    EXPECT_EQ(grant->message->GetDescriptor(), meshlet::gateway::ReferenceGrant::descriptor());
  }
}

TEST(KindsTest, AWrongApiVersionSaysWhatTheKindTakes) {
  struct Case {
    std::string document;
    std::string position;
    std::string path;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: HTTPRoute\n", "1:13",
            "apiVersion",
            "\"gateway.networking.k8s.io/v1alpha2\" is not an apiVersion of HTTPRoute; use "
            "meshlet.io/v1 or gateway.networking.k8s.io/v1"},
           {"apiVersion: meshlet.io/v1\nkind: GRPCRoute\n", "1:13", "apiVersion",
            "\"meshlet.io/v1\" is not an apiVersion of GRPCRoute; use "
            "gateway.networking.k8s.io/v1"},
           {"kind: ReferenceGrant\napiVersion: gateway.networking.k8s.io/v1alpha2\n", "2:13",
            "apiVersion",
            "\"gateway.networking.k8s.io/v1alpha2\" is not an apiVersion of ReferenceGrant; use "
            "gateway.networking.k8s.io/v1beta1 or gateway.networking.k8s.io/v1"},
           {"apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\n", "2:7", "kind",
            "unknown kind \"TLSRoute\"; one of Service, TrafficPolicy, HTTPRoute, "
            "AuthorizationPolicy, RequestAuthentication, ExternalService, MeshConfig, HTTPRoute "
            "(gateway.networking.k8s.io), GRPCRoute, "
            "ReferenceGrant, GatewayClass, Gateway, BackendTLSPolicy"},
       }) {
    absl::Status status = ParseResource(c.document).status();
    ErrorLocation where = SplitParseError(status.message());
    EXPECT_EQ(where.position, c.position) << status;
    EXPECT_EQ(where.path, c.path) << status;
    EXPECT_EQ(where.reason, c.reason) << status;
  }
  // The API names the kind in its URL: a Gateway HTTPRoute's body on meshlet's path is refused.
  absl::Status mismatch =
      ParseResource("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n", {},
                    FindKind("httproutes"))
          .status();
  EXPECT_EQ(SplitParseError(mismatch.message()).reason,
            "\"HTTPRoute\" (gateway.networking.k8s.io/v1) does not match the request's kind "
            "\"HTTPRoute\" (meshlet.io/v1)");
  // A body naming no apiVersion, of a kind only the other group has.
  EXPECT_EQ(SplitParseError(
                ParseResource("kind: GRPCRoute\n", {}, FindKind("httproutes")).status().message())
                .reason,
            "\"GRPCRoute\" does not match the request's kind \"HTTPRoute\" (meshlet.io/v1)");
  // With the kind from the URL and no kind in the body, its apiVersion is still checked.
  EXPECT_EQ(SplitParseError(ParseResource("apiVersion: meshlet.io/v1\n", {}, FindKind("grpcroutes"))
                                .status()
                                .message())
                .path,
            "apiVersion");
}

TEST(KindsTest, StatusIsServerSet) {
  absl::StatusOr<ParsedResource> route = ParseResource(R"(apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: r, resourceVersion: "5"}
status:
  parents:
  - parentRef: {name: s}
    controllerName: meshlet.io/mesh-controller
    conditions: [{type: Accepted, status: "True"}]
)");
  ASSERT_TRUE(route.ok()) << route.status();
  ClearServerSetFields(*route->message);
  EXPECT_FALSE(static_cast<meshlet::gateway::GRPCRoute&>(*route->message).has_status());
  EXPECT_EQ(Metadata(*route->message).resource_version(), "");
  SetTypeFields(*route->message);
  EXPECT_EQ(
      ToJson(*route->message),
      R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"GRPCRoute","metadata":{"name":"r"}})");
}

TEST(KindsTest, SnapshotHoldsTheGatewayKinds) {
  const std::string dir =
      std::filesystem::temp_directory_path() / absl::StrCat("kinds_test_", ::getpid());
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  auto put = [&](absl::string_view text) {
    absl::StatusOr<ParsedResource> parsed = ParseResource(text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    const meshlet::policy::ObjectMeta& meta = Metadata(*parsed->message);
    ASSERT_TRUE((*store)
                    ->Put({std::string(parsed->info->store_kind), meta.namespace_(), meta.name()},
                          ToJson(*parsed->message), kMustNotExist)
                    .ok());
  };
  put("apiVersion: meshlet.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: a}\n");
  put("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
      "metadata: {name: r, namespace: a}\n");
  put("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
      "metadata: {name: q, namespace: a}\n");
  put("apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
      "metadata: {name: g, namespace: b}\n");
  put("apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
      "metadata: {name: allow, namespace: b}\n");
  put("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: meshlet}\n");
  put("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
      "metadata: {name: edge, namespace: b}\n");
  absl::StatusOr<PolicySnapshot> snapshot = LoadPolicySnapshot(**store);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ(snapshot->http_routes.size(), 1u);
  ASSERT_EQ(snapshot->gateway_http_routes.size(), 2u);
  EXPECT_EQ(snapshot->gateway_http_routes[0].metadata().name(), "q");  // ordered by name
  EXPECT_EQ(snapshot->gateway_http_routes[1].metadata().name(), "r");
  ASSERT_EQ(snapshot->grpc_routes.size(), 1u);
  EXPECT_EQ(snapshot->grpc_routes[0].metadata().namespace_(), "b");
  ASSERT_EQ(snapshot->reference_grants.size(), 1u);
  EXPECT_EQ(snapshot->reference_grants[0].metadata().name(), "allow");
  ASSERT_EQ(snapshot->gateway_classes.size(), 1u);
  EXPECT_EQ(snapshot->gateway_classes[0].metadata().name(), "meshlet");
  EXPECT_EQ(snapshot->gateway_classes[0].metadata().namespace_(), "");  // cluster-wide
  ASSERT_EQ(snapshot->gateways.size(), 1u);
  EXPECT_EQ(snapshot->gateways[0].metadata().namespace_(), "b");
}

}  // namespace
}  // namespace meshlet::controlplane::policy
