#include "common/tls/digest.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace meshlet::tls {
namespace {

// FIPS 180-2's examples: the empty string and "abc".
TEST(DigestTest, Sha256OfTheStandardExamples) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256("abc").size(), 32u);
  EXPECT_EQ(absl::BytesToHexString(Sha256("abc")), Sha256Hex("abc"));
}

TEST(DigestTest, EmbeddedNulBytesAreHashed) {
  EXPECT_NE(Sha256(std::string("a\0b", 3)), Sha256("a"));
}

}  // namespace
}  // namespace meshlet::tls
