#include "tests/e2e/testapp/url.h"

#include "gtest/gtest.h"

namespace meshlet::testapp {
namespace {

TEST(HttpUrlTest, Parts) {
  auto url = ParseHttpUrl("http://reviews:9080/reviews/1?x=y");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "reviews");
  EXPECT_EQ(url->port, 9080);
  EXPECT_EQ(url->target, "/reviews/1?x=y");
  EXPECT_EQ(url->authority, "reviews:9080");
  EXPECT_EQ(url->ToString(), "http://reviews:9080/reviews/1?x=y");

  url = ParseHttpUrl("http://198.18.0.5");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->port, 80);
  EXPECT_FALSE(url->has_target());
  EXPECT_EQ(url->authority, "198.18.0.5:80");

  url = ParseHttpUrl("http://[fd00::1]:15001?q");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "fd00::1");
  EXPECT_EQ(url->port, 15001);
  EXPECT_EQ(url->target, "/?q");
  EXPECT_EQ(url->authority, "[fd00::1]:15001");
}

TEST(HttpUrlTest, BadUrlsSayWhy) {
  auto error = [](absl::string_view text) {
    auto url = ParseHttpUrl(text);
    return url.ok() ? std::string("ok") : std::string(url.status().message());
  };
  EXPECT_EQ(error("https://a/"), "URL \"https://a/\": must start with http://");
  EXPECT_EQ(error("http:///x"), "URL \"http:///x\": no host");
  EXPECT_EQ(error("http://a:0/"), "URL \"http://a:0/\": port must be 1-65535");
  EXPECT_EQ(error("http://a:/"), "URL \"http://a:/\": port must be 1-65535");
  EXPECT_EQ(error("http://a:99999"), "URL \"http://a:99999\": port must be 1-65535");
  EXPECT_EQ(error("http://fd00::1/"),
            "URL \"http://fd00::1/\": an IPv6 address must be in brackets");
  EXPECT_EQ(error("http://u@a/"), "URL \"http://u@a/\": user information is not allowed");
  EXPECT_EQ(error("http://a/b c"),
            "URL \"http://a/b c\": the path has a space, a control character or a fragment");
  EXPECT_EQ(error("http://[::1/"), "URL \"http://[::1/\": unclosed [");
}

}  // namespace
}  // namespace meshlet::testapp
