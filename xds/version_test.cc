// The content-hash versions both ends compute: FNV-1a 64 against published test vectors, and a
// type's version as the offset basis plus the sum of each resource's mixed "name\0version\n" hash.

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

TEST(TypeVersionTest, OffsetBasisPlusTheSumOfMixedEntryHashes) {
  const std::map<std::string, std::string> resources = {{"b", "v2"}, {"a", "v1"}};
  auto mixed = [](uint64_t h) {
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
  };
  const uint64_t a = mixed(Fnv1a64(std::string("a\0v1\n", 5)));
  const uint64_t b = mixed(Fnv1a64(std::string("b\0v2\n", 5)));
  EXPECT_EQ(TypeVersionEntry("a", "v1"), a);
  const std::string expected = Hex16(kFnv1aOffset + a + b);
  EXPECT_EQ(TypeVersion(resources, [](const std::string& v) { return v; }), expected);
  // Any order, and by sums of entries.
  TypeVersionHash hash;
  hash.Add("b", "v2");
  hash.Add("a", "v1");
  EXPECT_EQ(hash.Hex(), expected);
  TypeVersionHash sums;
  sums.AddEntries(a + b);
  EXPECT_EQ(sums.Hex(), expected);
  // A changed version or name changes it.
  EXPECT_NE(TypeVersion(std::map<std::string, std::string>{{"a", "v1"}, {"b", "v3"}},
                        [](const std::string& v) { return v; }),
            expected);
  const std::map<std::string, std::string> none;
  EXPECT_EQ(TypeVersion(none, [](const std::string& v) { return v; }), "cbf29ce484222325");
}

}  // namespace
}  // namespace meshlet::xds
