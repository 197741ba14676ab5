#include "sidecar/config/resource_version.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "xds/version.h"

namespace meshlet::sidecar::config {
namespace {

// The form every held resource of a control plane's takes: no text besides the hash, so the
// entry holds no allocation for its version.
TEST(ResourceVersionTest, ContentVersionIsKeptAsTheHashAlone) {
  const std::string bytes = "a resource as received";
  const uint64_t hash = xds::Fnv1a64(bytes);
  const ResourceVersion version(xds::ContentVersion(bytes), hash);
  EXPECT_FALSE(version.copied());
  EXPECT_EQ(version.str(), xds::ContentVersion(bytes));
  ResourceVersion::Buffer buffer;
  EXPECT_EQ(version.View(buffer), xds::Hex16(hash));
  EXPECT_EQ(version.content_hash(), hash);
  // No version from the server reads as the hash's.
  EXPECT_EQ(ResourceVersion("", hash), version);
}

TEST(ResourceVersionTest, HashesSpellAsHex16Does) {
  for (uint64_t hash :
       {uint64_t{0}, uint64_t{1}, uint64_t{0xabcdef}, ~uint64_t{0}, uint64_t{0x0123456789abcdef}}) {
    const ResourceVersion version("", hash);
    EXPECT_EQ(version.str(), xds::Hex16(hash)) << hash;
    EXPECT_FALSE(ResourceVersion(xds::Hex16(hash), hash).copied()) << hash;
  }
}

TEST(ResourceVersionTest, OtherVersionsAreKeptAsSent) {
  const uint64_t hash = xds::Fnv1a64("bytes");
  const ResourceVersion named("v1", hash);
  EXPECT_TRUE(named.copied());
  EXPECT_EQ(named.str(), "v1");
  ResourceVersion::Buffer buffer;
  EXPECT_EQ(named.View(buffer), "v1");
  // Another resource's hash is not this one's version.
  const ResourceVersion other(xds::Hex16(hash + 1), hash);
  EXPECT_TRUE(other.copied());
  EXPECT_EQ(other.str(), xds::Hex16(hash + 1));
  EXPECT_NE(other, ResourceVersion("", hash));
  EXPECT_NE(named, ResourceVersion("v1", hash + 1));
}

}  // namespace
}  // namespace meshlet::sidecar::config
