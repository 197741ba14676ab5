// The stream's shared names: every resource type's URL maps back to its position, and the
// variant helpers hand over the message type of the variant asked for.

#include "xds/protocol.h"

#include <string>

#include "gtest/gtest.h"

namespace meshlet::xds {
namespace {

static_assert(kIsDelta<DeltaDiscoveryRequest> && kIsDelta<DeltaDiscoveryResponse>);
static_assert(!kIsDelta<DiscoveryRequest> && !kIsDelta<DiscoveryResponse>);

TEST(ResourceTypeIndexTest, FindsEveryTypeAndNothingElse) {
  for (size_t i = 0; i < kResourceTypeCount; ++i) {
    EXPECT_EQ(ResourceTypeIndex(kResourceTypeUrls[i]), i) << kResourceTypeLabels[i];
  }
  EXPECT_EQ(ResourceTypeIndex(kResourceTypeUrls[1]), 1u);
  EXPECT_FALSE(ResourceTypeIndex("type.googleapis.com/envoy.config.cluster.v3.Cluster"));
  EXPECT_FALSE(ResourceTypeIndex(kConfigDumpTypeUrl));
  EXPECT_FALSE(ResourceTypeIndex(kReadinessTypeUrl));
  EXPECT_FALSE(ResourceTypeIndex(""));
}

TEST(VariantTest, HandsOverTheVariantAskedFor) {
  auto name = [](auto& message) { return message.GetTypeName(); };
  EXPECT_EQ(WithRequest(true, name), "meshlet.xds.DeltaDiscoveryRequest");
  EXPECT_EQ(WithRequest(false, name), "meshlet.xds.DiscoveryRequest");
  EXPECT_EQ(WithResponse(true, name), "meshlet.xds.DeltaDiscoveryResponse");
  EXPECT_EQ(WithResponse(false, name), "meshlet.xds.DiscoveryResponse");
}

}  // namespace
}  // namespace meshlet::xds
