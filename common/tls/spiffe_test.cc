#include "common/tls/spiffe.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::tls {
namespace {

using ::testing::HasSubstr;

TEST(SpiffeIdTest, ParsesWorkloadId) {
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/frontend");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->trust_domain(), "cluster.local");
  EXPECT_EQ(id->path(), "/ns/default/sa/frontend");
  EXPECT_EQ(id->ToString(), "spiffe://cluster.local/ns/default/sa/frontend");
}

TEST(SpiffeIdTest, TrustDomainOnlyIsValid) {
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse("spiffe://cluster.local");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->path(), "");
}

TEST(SpiffeIdTest, RejectsMalformedIds) {
  for (const char* bad : {
           "",
           "https://cluster.local/ns/a",
           "SPIFFE://cluster.local/ns/a",
           "spiffe://",
           "spiffe:///ns/a",
           "spiffe://Cluster.local/ns/a",
           "spiffe://cluster.local:8080/ns/a",
           "spiffe://user@cluster.local/ns/a",
           "spiffe://cluster.local/",
           "spiffe://cluster.local//a",
           "spiffe://cluster.local/ns/../a",
           "spiffe://cluster.local/ns/./a",
           "spiffe://cluster.local/ns/a?x=1",
           "spiffe://cluster.local/ns/a#frag",
           "spiffe://cluster.local/ns/a%20b",
       }) {
    EXPECT_FALSE(SpiffeId::Parse(bad).ok()) << bad;
  }
  EXPECT_FALSE(SpiffeId::Parse(std::string("spiffe://cluster.local/a\0b", 26)).ok());
  EXPECT_FALSE(SpiffeId::Parse("spiffe://cluster.local/" + std::string(2100, 'a')).ok());
}

TEST(SpiffeIdMatcherTest, ExactAndTrustDomainMatches) {
  absl::StatusOr<SpiffeIdMatcher> matcher = SpiffeIdMatcher::Create(
      {"spiffe://cluster.local/ns/default/sa/frontend"}, {"spiffe://prod.example/"});
  ASSERT_TRUE(matcher.ok()) << matcher.status();
  auto matches = [&](const char* text) { return matcher->Matches(*SpiffeId::Parse(text)); };
  EXPECT_TRUE(matches("spiffe://cluster.local/ns/default/sa/frontend"));
  EXPECT_FALSE(matches("spiffe://cluster.local/ns/default/sa/backend"));
  EXPECT_FALSE(matches("spiffe://cluster.local/ns/default/sa/frontend2"));
  EXPECT_TRUE(matches("spiffe://prod.example/ns/x/sa/y"));
  EXPECT_TRUE(matches("spiffe://prod.example"));
  // A trust domain match is on the whole name, never a prefix or suffix.
  EXPECT_FALSE(matches("spiffe://prod.example.evil/ns/x/sa/y"));
  EXPECT_FALSE(matches("spiffe://evilprod.example/ns/x/sa/y"));
  EXPECT_EQ(matcher->Describe(),
            "[spiffe://cluster.local/ns/default/sa/frontend, spiffe://prod.example/*]");
}

TEST(SpiffeIdMatcherTest, BareTrustDomainAccepted) {
  absl::StatusOr<SpiffeIdMatcher> matcher = SpiffeIdMatcher::Create({}, {"cluster.local"});
  ASSERT_TRUE(matcher.ok()) << matcher.status();
  EXPECT_TRUE(matcher->Matches(*SpiffeId::Parse("spiffe://cluster.local/ns/a/sa/b")));
}

TEST(SpiffeIdMatcherTest, EmptyMatcherAllowsNothing) {
  SpiffeIdMatcher matcher;
  EXPECT_TRUE(matcher.empty());
  EXPECT_FALSE(matcher.Matches(*SpiffeId::Parse("spiffe://cluster.local/ns/a/sa/b")));
}

TEST(SpiffeIdMatcherTest, InvalidEntriesRejected) {
  EXPECT_THAT(SpiffeIdMatcher::Create({"spiffe://cluster.local/ns/../x"}, {}).status().message(),
              HasSubstr("relative path segment"));
  EXPECT_FALSE(SpiffeIdMatcher::Create({}, {"Cluster.Local"}).ok());
  EXPECT_FALSE(SpiffeIdMatcher::Create({}, {""}).ok());
  EXPECT_FALSE(SpiffeIdMatcher::Create({}, {"spiffe://"}).ok());
}

}  // namespace
}  // namespace meshlet::tls
