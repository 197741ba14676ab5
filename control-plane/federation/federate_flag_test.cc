#include "control-plane/federation/federate_flag.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::federation {
namespace {

using ::testing::HasSubstr;

TEST(FederateFlagTest, ThreeKindsOfSource) {
  absl::StatusOr<std::vector<FederationSource>> sources = ParseFederateFlags(
      {"a.example=file:/etc/meshlet/a.json", "b.example=secret:meshlet-system/b-bundle",
       "c.example=https://spire.c.example:8443/bundle"},
      "cluster.local");
  ASSERT_TRUE(sources.ok()) << sources.status();
  ASSERT_EQ(sources->size(), 3u);
  EXPECT_EQ((*sources)[0].domain, "a.example");
  EXPECT_EQ((*sources)[0].kind, FederationSource::Kind::kFile);
  EXPECT_EQ((*sources)[0].location, "/etc/meshlet/a.json");
  EXPECT_EQ((*sources)[1].kind, FederationSource::Kind::kSecret);
  EXPECT_EQ((*sources)[1].location, "meshlet-system/b-bundle");
  EXPECT_EQ((*sources)[2].kind, FederationSource::Kind::kBundleEndpoint);
  EXPECT_EQ((*sources)[2].location, "https://spire.c.example:8443/bundle");
  EXPECT_EQ((*sources)[2].url.host, "spire.c.example");
  EXPECT_EQ((*sources)[2].url.port, 8443);
  EXPECT_EQ((*sources)[2].url.path, "/bundle");
}

TEST(FederateFlagTest, ErrorsNameTheValueAndTheProblem) {
  const struct {
    std::string value;
    std::string error;
  } cases[] = {
      {"a.example", "expected DOMAIN=SOURCE"},
      {"A Example=file:/x", "trust domain: "},
      {"cluster.local=file:/x", "is the local trust domain"},
      {"a.example=file:relative", "absolute path"},
      {"a.example=secret:onlyname", "NAMESPACE/NAME"},
      {"a.example=secret:/name", "NAMESPACE/NAME"},
      {"a.example=https://", "needs a host"},
      {"a.example=https://user@bundles.example/b", "user information"},
      {"a.example=http://insecure/bundle", "an https:// URL"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<FederationSource> source = ParseFederateFlag(c.value, "cluster.local");
    ASSERT_FALSE(source.ok()) << c.value;
    EXPECT_THAT(source.status().message(), HasSubstr(c.error)) << c.value;
    EXPECT_THAT(source.status().message(), HasSubstr(c.value));
  }
  absl::StatusOr<std::vector<FederationSource>> twice =
      ParseFederateFlags({"a.example=file:/x", "a.example=file:/y"}, "cluster.local");
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("\"a.example\" given twice"));
}

TEST(FederateFlagTest, RefreshIntervalFollowsTheHintWithinBounds) {
  const absl::Duration min = absl::Seconds(30), max = absl::Hours(1);
  EXPECT_EQ(RefreshInterval(absl::Seconds(300), min, max), absl::Seconds(300));
  EXPECT_EQ(RefreshInterval(absl::Seconds(1), min, max), min);
  EXPECT_EQ(RefreshInterval(absl::Hours(24), min, max), max);
  EXPECT_EQ(RefreshInterval(std::nullopt, min, max), max);
}

}  // namespace
}  // namespace meshlet::controlplane::federation
