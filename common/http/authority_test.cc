#include "common/http/authority.h"

#include <string>

#include "gtest/gtest.h"

namespace meshlet::http {
namespace {

TEST(AuthorityTest, SplitsHostAndPort) {
  std::optional<HostPort> p = ParseHostPort("a.example:8080");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->host, "a.example");
  EXPECT_TRUE(p->has_port);
  EXPECT_EQ(p->port, "8080");

  p = ParseHostPort("[::1]:8080");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->host, "[::1]");
  EXPECT_EQ(p->port, "8080");

  p = ParseHostPort("[2001:db8::7]");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->host, "[2001:db8::7]");
  EXPECT_FALSE(p->has_port);

  p = ParseHostPort("host:");  // port = *DIGIT: an empty port is allowed
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->host, "host");
  EXPECT_TRUE(p->has_port);
  EXPECT_EQ(p->port, "");

  p = ParseHostPort("");  // what a client sends for a target without an authority
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->host, "");
  EXPECT_FALSE(p->has_port);
}

TEST(AuthorityTest, AcceptsWhatRfc3986Allows) {
  for (const char* value : {
           "a", "A.Example.COM", "10.0.0.1:80", "svc_name.ns-1.svc.cluster.local:65535",
           "caf%C3%A9.example",           // pct-encoded
           "a!$&'()*+;=b~-._.example:1",  // sub-delims (but ',') and unreserved
           "h:0",
           "h:00080",  // leading zeros; the value is 80
           "[::]",
           "[::ffff:192.0.2.1]:443",  // IPv6 with an IPv4 tail
           "[2001:DB8:0:0:8:800:200C:417A]",
           "[v1.fe80::a+b]:80",  // IPvFuture
       }) {
    EXPECT_TRUE(ParseHostPort(value).has_value()) << value;
  }
}

TEST(AuthorityTest, RefusesWhatIsNotUriHostAndPort) {
  for (const char* value : {
           "a.example, b.example",  // a list
           "a.example,b.example",   // a list without OWS (',' is refused on purpose)
           "a b",                   // whitespace
           " a",
           "a\t",
           "a.example/path",  // a path
           "a.example?q",
           "a.example#f",
           "/",
           "user@a.example",  // userinfo
           "user:pw@a.example:80",
           "@a.example",
           "a.example:http",  // non-numeric port
           "a.example:80x",
           "a.example:-1",
           "a.example:+80",
           "a.example:65536",  // port out of range
           "a.example:99999999999999999999",
           "a.example:80:81",
           "::1",  // IPv6 without brackets
           "[::1",
           "::1]",
           "[::1]x",
           "[::1]:80]",
           "[]",
           "[a.example]",       // not an address
           "[1::2::3]",         // two "::"
           "[12345::1]",        // a group over four digits
           "[fe80::1%25eth0]",  // zone identifier (RFC 6874), not in RFC 3986
           "[v1]",              // IPvFuture without its dot
           "[v.x]",             // IPvFuture without hex digits
           "[v1.]",
           "%",  // bad percent-encodings
           "%4",
           "%zz.example",
           "a\"b",
           "a<b>",
           "a\\b",
           "a[b]",
           "caf\xc3\xa9.example",  // raw non-ASCII
       }) {
    EXPECT_FALSE(ParseHostPort(value).has_value()) << value;
  }
  EXPECT_FALSE(ParseHostPort(std::string("a\0b", 3)).has_value());
  EXPECT_FALSE(ParseHostPort(std::string("[::1\0]", 6)).has_value());
}

}  // namespace
}  // namespace meshlet::http
