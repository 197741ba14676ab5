// Header conversion of the HTTP/1.1 codec: which fields are written, how a head is assembled,
// and the small parsers of the fields the codec acts on.
#include "common/http/h1/head_encoding.h"

#include <cstdint>
#include <string>

#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h1::codec_internal {
namespace {

TEST(HeadEncodingTest, SafeFieldRefusesWhatWouldBreakALine) {
  EXPECT_TRUE(SafeField("x-a", "plain value"));
  EXPECT_TRUE(SafeField("x-a", ""));
  EXPECT_FALSE(SafeField("", "v"));
  for (const char* bad_name : {"x a", "x:a", "x\ta", "x\ra", "x\na", "x-long-name-with\r"}) {
    EXPECT_FALSE(SafeField(bad_name, "v")) << bad_name;
  }
  EXPECT_FALSE(SafeField(std::string("x\0a", 3), "v"));
  // Values: CR, LF or NUL anywhere, below 8 bytes, in one word, in the SSE2 stride, in the tail.
  for (size_t len : {1u, 7u, 8u, 15u, 16u, 17u, 55u, 64u}) {
    for (size_t at = 0; at < len; ++at) {
      for (char c : {'\r', '\n', '\0'}) {
        std::string value(len, 'v');
        value[at] = c;
        EXPECT_FALSE(SafeField("x-a", value)) << len << " " << at << " " << int{c};
      }
    }
    EXPECT_TRUE(SafeField("x-a", std::string(len, 'v'))) << len;
  }
}

TEST(HeadEncodingTest, ManagedAndSkippedFields) {
  for (const char* name : {"content-length", "connection", "keep-alive", "transfer-encoding",
                           "upgrade", "proxy-connection"}) {
    EXPECT_TRUE(IsManagedField(name)) << name;
    EXPECT_TRUE(SkipInResponse(name)) << name;
    EXPECT_TRUE(SkipInTrailers(name)) << name;
  }
  EXPECT_FALSE(IsManagedField("te"));
  EXPECT_TRUE(SkipInResponse("te"));
  EXPECT_FALSE(SkipInResponse("host"));
  EXPECT_TRUE(SkipInTrailers("host"));
  EXPECT_TRUE(SkipInTrailers("trailer"));
  EXPECT_FALSE(SkipInTrailers("grpc-status"));
}

TEST(HeadEncodingTest, ContentLengthIsStrictDigits) {
  uint64_t n = 7;
  EXPECT_TRUE(ContentLengthOf(HeaderMap{{"content-length", "0"}}, &n));
  EXPECT_EQ(n, 0u);
  EXPECT_TRUE(ContentLengthOf(HeaderMap{{"content-length", "1234567890123456789"}}, &n));
  EXPECT_EQ(n, 1234567890123456789u);
  n = 7;
  for (const char* bad : {"", "-1", "1 ", "+1", "0x10", "12345678901234567890"}) {
    EXPECT_FALSE(ContentLengthOf(HeaderMap{{"content-length", bad}}, &n)) << bad;
  }
  EXPECT_FALSE(ContentLengthOf(HeaderMap{}, &n));
  EXPECT_EQ(n, 7u);
}

TEST(HeadEncodingTest, StatusOf) {
  EXPECT_EQ(StatusOf(HeaderMap{{":status", "200"}}), 200);
  EXPECT_EQ(StatusOf(HeaderMap{{":status", "999"}}), 999);
  EXPECT_EQ(StatusOf(HeaderMap{{":status", "099"}}), 0);
  EXPECT_EQ(StatusOf(HeaderMap{{":status", "20"}}), 0);
  EXPECT_EQ(StatusOf(HeaderMap{{":status", "2x0"}}), 0);
  EXPECT_EQ(StatusOf(HeaderMap{}), 0);
}

TEST(HeadEncodingTest, ConnectionTokens) {
  HeaderMap h{{"connection", "keep-alive, Upgrade"}, {"connection", " CLOSE "}};
  EXPECT_TRUE(HasConnectionToken(h, "close"));
  EXPECT_TRUE(HasConnectionToken(h, "upgrade"));
  EXPECT_FALSE(HasConnectionToken(h, "te"));
  EXPECT_FALSE(HasConnectionToken(HeaderMap{{"x-connection", "close"}}, "close"));
}

TEST(HeadEncodingTest, NumbersAndReasons) {
  char buf[20];
  EXPECT_EQ(FormatDecimal(0, buf), "0");
  EXPECT_EQ(FormatDecimal(18446744073709551615u, buf), "18446744073709551615");
  EXPECT_EQ(FormatHex(0, buf), "0");
  EXPECT_EQ(FormatHex(0xabc123, buf), "abc123");
  EXPECT_EQ(ReasonPhrase(200), "OK");
  EXPECT_EQ(ReasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(ReasonPhrase(299), "");
}

// A head written with fields the HeaderMap holds: unsafe and skipped ones left out, in order.
std::string Head(const HeaderMap& headers, size_t estimate) {
  net::Buffer out;
  WriteBlock(out, estimate, [&](auto& sink) {
    EmitStatusLine(200, sink);
    EmitFields(headers, SkipInResponse, sink);
    sink("\r\n");
  });
  return out.ToString();
}

TEST(HeadEncodingTest, WriteBlockWritesTheSameHeadWhetherTheEstimateFitsOrNot) {
  HeaderMap h{{"x-a", "1"}, {"connection", "close"}, {"x-bad", "a\r\nb"}, {"x-b", "2"}};
  const std::string want = "HTTP/1.1 200 OK\r\nx-a: 1\r\nx-b: 2\r\n\r\n";
  EXPECT_EQ(Head(h, EstimateBlock(h, kBlockOverhead)), want);
  EXPECT_EQ(Head(h, 1), want);  // too small: sized, then copied
  EXPECT_EQ(Head(h, want.size()), want);
}

}  // namespace
}  // namespace meshlet::http::h1::codec_internal
