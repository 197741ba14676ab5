#include "common/config/field_path.h"

#include <string>

#include "gtest/gtest.h"

namespace meshlet::config {
namespace {

TEST(FieldPathTest, PathsAndQuotes) {
  EXPECT_EQ(Join("", "name"), "name");
  EXPECT_EQ(Join("routes[2]", "match"), "routes[2].match");
  EXPECT_EQ(Index("routes", 2), "routes[2]");
  EXPECT_EQ(Join(Index(Join("virtual_hosts[0]", "routes"), 1), "prefix"),
            "virtual_hosts[0].routes[1].prefix");
  EXPECT_EQ(Quote("x y"), "\"x y\"");
  EXPECT_EQ(Quote(""), "\"\"");
}

TEST(FieldPathTest, HttpTokens) {
  EXPECT_TRUE(IsHttpToken("x-request-id"));
  EXPECT_TRUE(IsHttpToken("GET"));
  EXPECT_TRUE(IsHttpToken("!#$%&'*+-.^_`|~09AZaz"));
  EXPECT_FALSE(IsHttpToken(""));
  EXPECT_FALSE(IsHttpToken("x y"));
  EXPECT_FALSE(IsHttpToken(":path"));
  EXPECT_FALSE(IsHttpToken("a\"b"));
  EXPECT_FALSE(IsHttpToken("caf\xc3\xa9"));
}

TEST(FieldPathTest, SafeHeaderValues) {
  EXPECT_TRUE(IsSafeHeaderValue(""));
  EXPECT_TRUE(IsSafeHeaderValue("text/plain; q=0.5\tcaf\xc3\xa9"));
  EXPECT_FALSE(IsSafeHeaderValue("a\r\nx-injected: 1"));
  EXPECT_FALSE(IsSafeHeaderValue("a\nb"));
  EXPECT_FALSE(IsSafeHeaderValue(std::string("a\0b", 3)));
}

TEST(FieldPathTest, DnsLabelsAndSubdomains) {
  EXPECT_TRUE(IsDnsLabel("reviews-v2"));
  EXPECT_TRUE(IsDnsLabel("a"));
  EXPECT_TRUE(IsDnsLabel(std::string(63, 'a')));
  EXPECT_FALSE(IsDnsLabel(std::string(64, 'a')));
  EXPECT_FALSE(IsDnsLabel(""));
  EXPECT_FALSE(IsDnsLabel("-a"));
  EXPECT_FALSE(IsDnsLabel("a-"));
  EXPECT_FALSE(IsDnsLabel("Reviews"));
  EXPECT_FALSE(IsDnsLabel("a.b"));
  EXPECT_TRUE(IsDnsSubdomain("cluster.local"));
  EXPECT_TRUE(IsDnsSubdomain("a"));
  EXPECT_FALSE(IsDnsSubdomain("a..b"));
  EXPECT_FALSE(IsDnsSubdomain(".a"));
  EXPECT_FALSE(IsDnsSubdomain("a-.b"));
  const std::string label(63, 'a');
  EXPECT_TRUE(IsDnsSubdomain(label + "." + label + "." + label + "." + std::string(61, 'a')));
  EXPECT_FALSE(IsDnsSubdomain(label + "." + label + "." + label + "." + std::string(62, 'a')));
}

TEST(FieldPathTest, HostNames) {
  EXPECT_TRUE(IsHostName("reviews.default.svc.cluster.local"));
  EXPECT_TRUE(IsHostName("Example.COM"));
  EXPECT_TRUE(IsHostName("*.example.com"));
  EXPECT_TRUE(IsHostName("localhost"));
  EXPECT_FALSE(IsHostName("*"));
  EXPECT_FALSE(IsHostName("a.*.com"));
  EXPECT_FALSE(IsHostName("a..com"));
  EXPECT_FALSE(IsHostName("example.com:80"));
  EXPECT_FALSE(IsHostName("under_score.com"));
  EXPECT_FALSE(IsHostName(std::string(64, 'a') + ".com"));
}

}  // namespace
}  // namespace meshlet::config
