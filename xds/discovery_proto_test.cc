// The generated bindings work with the system protobuf runtime: binary round trip, Any packing
// and the JSON mapping (used by static config files and meshctl).
#include <gtest/gtest.h>

#include <google/protobuf/util/json_util.h>

#include "xds/discovery.pb.h"

namespace meshlet::xds {
namespace {

TEST(DiscoveryProtoTest, BinaryRoundTripWithAnyResources) {
  DiscoveryResponse response;
  response.set_version_info("v1");
  response.set_type_url("type.googleapis.com/meshlet.xds.Node");
  response.set_nonce("n1");
  Node node;
  node.set_id("frontend-1.default");
  (*node.mutable_labels())["app"] = "frontend";
  response.add_resources()->PackFrom(node);

  std::string wire = response.SerializeAsString();
  DiscoveryResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  ASSERT_EQ(parsed.resources_size(), 1);
  Node unpacked;
  ASSERT_TRUE(parsed.resources(0).UnpackTo(&unpacked));
  EXPECT_EQ(unpacked.id(), "frontend-1.default");
  EXPECT_EQ(unpacked.labels().at("app"), "frontend");
}

TEST(DiscoveryProtoTest, JsonMappingReportsUnknownFields) {
  DiscoveryRequest request;
  auto ok = google::protobuf::util::JsonStringToMessage(
      R"({"versionInfo":"v2","typeUrl":"t","errorDetail":{"code":3,"message":"bad route"}})",
      &request);
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_EQ(request.error_detail().message(), "bad route");

  auto bad =
      google::protobuf::util::JsonStringToMessage(R"({"versionInfo":"v2","bogus":1})", &request);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.ToString().find("bogus"), std::string::npos);
}

}  // namespace
}  // namespace meshlet::xds

#include "common/config/yaml_proto.h"
#include "xds/policy.pb.h"

namespace meshlet::policy {
namespace {

// Policies are written as kubectl-style YAML; the schema accepts what the docs show.
TEST(PolicyProtoTest, KubectlStyleHttpRouteParses) {
  HTTPRoute route;
  absl::Status s = config::YamlToProto(R"(
apiVersion: meshlet.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: shop
spec:
  target: reviews
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-canary, type: Present}]
    backends:
    - {service: reviews, subset: {version: v1}, weight: 90}
    - {service: reviews, subset: {version: v2}, weight: 10}
    timeout: 2s
    retries: {attempts: 3, retryOn: [5xx, connect-failure]}
)",
                                       route);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(route.metadata().namespace_(), "shop");
  ASSERT_EQ(route.spec().rules(0).backends_size(), 2);
  EXPECT_EQ(route.spec().rules(0).backends(1).subset().at("version"), "v2");
  EXPECT_EQ(route.spec().rules(0).retries().attempts().value(), 3u);
  EXPECT_EQ(route.spec().rules(0).timeout().seconds(), 2);
}

}  // namespace
}  // namespace meshlet::policy
