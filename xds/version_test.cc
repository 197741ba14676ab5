// The content-hash versions both ends compute: FNV-1a 64 against published test vectors, and a
// type's version as the hash of "name\0version\n" in name order.

#include "xds/version.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace meshlet::xds {
namespace {

static_assert(Fnv1a64("") == kFnv1aOffset);

TEST(Fnv1a64Test, MatchesTheReferenceVectors) {
  EXPECT_EQ(Hex16(Fnv1a64("")), "cbf29ce484222325");
  EXPECT_EQ(Hex16(Fnv1a64("a")), "af63dc4c8601ec8c");
  EXPECT_EQ(Hex16(Fnv1a64("foobar")), "85944171f73967e8");
  // Bytes above 0x7f count as unsigned.
  EXPECT_EQ(Fnv1a64("\xff"), (kFnv1aOffset ^ 0xffu) * kFnv1aPrime);
}

TEST(Fnv1a64Test, ContinuesFromAGivenHash) {
  EXPECT_EQ(Fnv1a64("bar", Fnv1a64("foo")), Fnv1a64("foobar"));
}

TEST(ContentVersionTest, IsSixteenHexDigitsOfTheBytesHash) {
  EXPECT_EQ(ContentVersion("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(Hex16(1), "0000000000000001");
}

TEST(TypeVersionTest, HashesNameZeroVersionNewlineInNameOrder) {
  const std::map<std::string, std::string> resources = {{"b", "v2"}, {"a", "v1"}};
  const std::string expected = Hex16(Fnv1a64(std::string("a\0v1\nb\0v2\n", 10)));
  EXPECT_EQ(TypeVersion(resources, [](const std::string& v) { return v; }), expected);
  TypeVersionHash hash;
  hash.Add("a", "v1");
  hash.Add("b", "v2");
  EXPECT_EQ(hash.Hex(), expected);
  const std::map<std::string, std::string> none;
  EXPECT_EQ(TypeVersion(none, [](const std::string& v) { return v; }), "cbf29ce484222325");
}

}  // namespace
}  // namespace meshlet::xds
