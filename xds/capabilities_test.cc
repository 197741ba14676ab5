#include "xds/capabilities.h"

#include <gtest/gtest.h>

#include <set>

namespace meshlet::xds {
namespace {

TEST(ReleaseTest, ParsesReleasesAndOrdersPreReleasesFirst) {
  std::optional<Release> r = Release::Parse("0.10.3");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->major, 0);
  EXPECT_EQ(r->minor, 10);
  EXPECT_EQ(r->patch, 3);
  EXPECT_FALSE(r->prerelease);
  std::optional<Release> dev = Release::Parse("0.2.0-dev");
  ASSERT_TRUE(dev.has_value());
  EXPECT_TRUE(dev->prerelease);
  EXPECT_TRUE(*Release::Parse("0.1.0") < *dev);
  EXPECT_TRUE(*dev < *Release::Parse("0.2.0"));
  EXPECT_TRUE(*Release::Parse("0.9.9") < *Release::Parse("0.10.0"));  // numbers, not text
  EXPECT_FALSE(*Release::Parse("0.2.0") < *Release::Parse("0.2.0"));
  for (const char* bad : {"", "0.1", "0.1.0.1", "v0.1.0", "0.1.x", "0.1.0-", "-1.0.0", "0..1",
                          "1234567.0.0", " 0.1.0"}) {
    EXPECT_FALSE(Release::Parse(bad).has_value()) << bad;
  }
}

TEST(CapabilitiesTest, NamesAreUniqueAndFound) {
  std::set<std::string> names;
  for (const CapabilityInfo& info : Capabilities()) {
    EXPECT_TRUE(names.insert(std::string(info.name)).second) << info.name;
    EXPECT_EQ(CapabilityNamed(info.name), info.capability);
    EXPECT_TRUE(Release::Parse(info.since).has_value()) << info.name << " since " << info.since;
    EXPECT_EQ(&Info(info.capability), &info);
  }
  EXPECT_FALSE(CapabilityNamed("teleport").has_value());
}

Node NodeOf(const std::string& version, std::vector<std::string> capabilities = {}) {
  Node node;
  node.set_id("n");
  node.set_sidecar_version(version);
  for (const std::string& c : capabilities) node.add_capabilities(c);
  return node;
}

TEST(CapabilitiesTest, ListedCapabilitiesAreExactlyWhatANodeReads) {
  // Whatever the release says, and names this release does not know are no capability.
  CapabilitySet set =
      CapabilitiesOf(NodeOf("meshlet-sidecar 0.1.0", {"overload", "mesh-http2", "warp-drive"}));
  EXPECT_EQ(set.Names(), (std::vector<std::string>{"mesh-http2", "overload"}));
  EXPECT_FALSE(set.Has(Capability::kEndpointPlaintext));
}

TEST(CapabilitiesTest, ANodeListingNoneReadsWhatItsReleaseRead) {
  // 0.1.0 predates the reports: it reads what it read then.
  EXPECT_EQ(
      CapabilitiesOf(NodeOf("meshlet-sidecar 0.1.0")).Names(),
      (std::vector<std::string>{"mesh-http2", "endpoint-plaintext", "virtual-host-destinations"}));
  // A pre-release of 0.2.0 is older than 0.2.0: only what 0.1.0 had.
  EXPECT_FALSE(CapabilitiesOf(NodeOf("meshlet-sidecar 0.2.0-dev")).Has(Capability::kOverload));
  EXPECT_TRUE(CapabilitiesOf(NodeOf("meshlet-sidecar 0.2.0")).all());
  EXPECT_TRUE(CapabilitiesOf(NodeOf("meshlet-sidecar 1.0.0")).all());
  // Older than every capability: none of them.
  EXPECT_EQ(CapabilitiesOf(NodeOf("meshlet-sidecar 0.0.9")).Names(), std::vector<std::string>{});
  EXPECT_FALSE(CapabilitiesAssumed(NodeOf("meshlet-sidecar 0.1.0")));
  EXPECT_FALSE(CapabilitiesAssumed(NodeOf("my-build", {"overload"})));
}

// A node that lists none and names no release (a bootstrap's own text, another client) may be
// as old as the oldest supported release: it gets what that release read, not everything (an
// older sidecar would fail on what it cannot read, or act on it wrongly).
TEST(CapabilitiesTest, ANodeSayingNothingReadsWhatTheOldestSupportedReleaseRead) {
  const CapabilitySet oldest = CapabilitySet::OfRelease(*Release::Parse(kOldestSupportedRelease));
  EXPECT_EQ(oldest.Names(), (std::vector<std::string>{"mesh-http2", "endpoint-plaintext",
                                                      "virtual-host-destinations"}));
  for (const std::string version :
       {"", "my-build", "meshlet-sidecar", "meshlet-sidecar 2", "meshlet-sidecar 0.2.0.1",
        "meshlet-sidecar0.2.0", "envoy 1.30.0"}) {
    SCOPED_TRACE(version);
    EXPECT_EQ(CapabilitiesOf(NodeOf(version)), oldest);
    EXPECT_TRUE(CapabilitiesAssumed(NodeOf(version)));
  }
}

TEST(CapabilitiesTest, SetOperations) {
  CapabilitySet all = CapabilitySet::All();
  CapabilitySet old = CapabilitySet::OfRelease(*Release::Parse("0.1.0"));
  EXPECT_EQ(
      all.Minus(old).Names(),
      (std::vector<std::string>{"overload", "policy-source", "stream-reset-lifetime", "flood-drain",
                                "large-xds-messages", "service-routes", "on-demand", "jwt",
                                "ca-rotation", "federation", "gateway", "locality", "backend-tls",
                                "cors", "server-names", "external-services"}));
  EXPECT_EQ(old.Minus(all).Names(), std::vector<std::string>{});
  EXPECT_NE(all.Key(), old.Key());
  CapabilitySet copy = old;
  copy.Add(Capability::kOverload);
  copy.Remove(Capability::kOverload);
  EXPECT_EQ(copy, old);
}

}  // namespace
}  // namespace meshlet::xds
