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
