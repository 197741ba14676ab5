#include "common/http/cors_origin.h"

#include <string>

#include "gtest/gtest.h"

namespace meshlet::http {
namespace {

bool Allows(absl::string_view pattern, absl::string_view origin) {
  absl::StatusOr<OriginPattern> parsed = ParseOriginPattern(pattern);
  EXPECT_TRUE(parsed.ok()) << pattern << ": " << parsed.status();
  return parsed.ok() && OriginMatches(*parsed, ParseOrigin(origin));
}

std::string Refusal(absl::string_view pattern) {
  absl::StatusOr<OriginPattern> parsed = ParseOriginPattern(pattern);
  return parsed.ok() ? "accepted" : std::string(parsed.status().message());
}

TEST(CorsOriginTest, ExactOriginsCompareSchemeHostAndPort) {
  EXPECT_TRUE(Allows("https://www.foo.com", "https://www.foo.com"));
  EXPECT_TRUE(Allows("https://www.foo.com", "https://WWW.Foo.com"));
  EXPECT_TRUE(Allows("https://www.foo.com", "https://www.foo.com:443"));  // the default port
  EXPECT_TRUE(Allows("HTTP://Www.Foo.com:8080", "http://www.foo.com:8080"));
  EXPECT_FALSE(Allows("https://www.foo.com", "http://www.foo.com"));
  EXPECT_FALSE(Allows("https://www.foo.com", "https://www.foo.com:8443"));
  EXPECT_FALSE(Allows("https://www.foo.com", "https://foo.com"));
  EXPECT_FALSE(Allows("https://www.foo.com", "https://www.foo.com.evil"));
  EXPECT_FALSE(Allows("https://www.foo.com", "https://www.foo.com/path"));
  EXPECT_FALSE(Allows("https://www.foo.com", "null"));
}

TEST(CorsOriginTest, AWildcardLabelTakesAnyLabelsBeforeTheRest) {
  EXPECT_TRUE(Allows("https://*.bar.com", "https://www.bar.com"));
  EXPECT_TRUE(Allows("https://*.bar.com", "https://xpto.www.bar.com"));
  EXPECT_FALSE(Allows("https://*.bar.com", "https://bar.com"));
  EXPECT_FALSE(Allows("https://*.bar.com", "https://foobar.com"));
  EXPECT_FALSE(Allows("https://*.bar.com", "https://www.bar.com:8443"));
  EXPECT_TRUE(Allows("http://*", "http://anything.example:80"));
  EXPECT_FALSE(Allows("http://*", "https://anything.example"));
  EXPECT_TRUE(Allows("http://*:8080", "http://127.0.0.1:8080"));
}

TEST(CorsOriginTest, StarAllowsEveryOrigin) {
  EXPECT_TRUE(Allows("*", "https://foobar.com:12345"));
  EXPECT_TRUE(Allows("*", "null"));
  EXPECT_TRUE(Allows("*", "chrome-extension://abc"));
}

TEST(CorsOriginTest, BadPatternsSayWhy) {
  EXPECT_NE(Refusal("").find("must not be empty"), std::string::npos);
  EXPECT_NE(Refusal("www.foo.com").find("the scheme must be http or https"), std::string::npos);
  EXPECT_NE(Refusal("ftp://a.com").find("the scheme must be http or https"), std::string::npos);
  EXPECT_NE(Refusal("https://a.com:0").find("port must be a number from 1 to 65535"),
            std::string::npos);
  EXPECT_NE(Refusal("https://a.com:70000").find("port"), std::string::npos);
  EXPECT_NE(Refusal("https://a.com/x").find("no path"), std::string::npos);
  EXPECT_NE(Refusal("https://www.*.com").find("a wildcard may only be the whole host or its first"),
            std::string::npos);
  EXPECT_NE(Refusal("https://a..com").find("DNS labels"), std::string::npos);
  EXPECT_NE(Refusal("https://*.").find("after \"*.\""), std::string::npos);
  EXPECT_NE(Refusal(std::string(300, 'a')).find("longer than 253"), std::string::npos);
  EXPECT_EQ(Refusal("https://*.example.com:8443"), "accepted");
}

TEST(CorsOriginTest, OriginsParseIntoTheirParts) {
  std::optional<Origin> origin = ParseOrigin("https://shop.example:8443");
  ASSERT_TRUE(origin.has_value());
  EXPECT_TRUE(origin->https);
  EXPECT_EQ(origin->host, "shop.example");
  EXPECT_EQ(origin->port, 8443);
  origin = ParseOrigin("http://[::1]");
  ASSERT_TRUE(origin.has_value());
  EXPECT_EQ(origin->port, 80);
  for (absl::string_view bad : {"null", "", "https://", "https://a b", "https://u@a.com",
                                "https://a.com:99999", "https://a.com/", "ws://a.com"}) {
    EXPECT_FALSE(ParseOrigin(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace meshlet::http
