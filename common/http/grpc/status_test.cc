#include "common/http/grpc/status.h"

#include <chrono>

#include "gtest/gtest.h"

namespace meshlet::http::grpc {
namespace {

TEST(GrpcStatusTest, Names) {
  EXPECT_EQ(StatusCodeName(StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeName(StatusCode::kDeadlineExceeded), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(StatusCode::kUnauthenticated), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(99)), "UNKNOWN");
}

TEST(GrpcStatusTest, PercentEncoding) {
  EXPECT_EQ(PercentEncode("plain text ok"), "plain text ok");
  EXPECT_EQ(PercentEncode("100% sure"), "100%25 sure");
  EXPECT_EQ(PercentEncode("line\nbreak\t"), "line%0Abreak%09");
  EXPECT_EQ(PercentEncode("caf\xc3\xa9"), "caf%C3%A9");
  EXPECT_EQ(PercentEncode(std::string("\x7f\x00", 2)), "%7F%00");
  for (absl::string_view s : {"", "a%b", "\xff\xfe%%", "tab\there", "~ !"}) {
    EXPECT_EQ(PercentDecode(PercentEncode(s)), s);
  }
  // Lenient decoding keeps malformed escapes.
  EXPECT_EQ(PercentDecode("50%"), "50%");
  EXPECT_EQ(PercentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(PercentDecode("%41%62"), "Ab");
}

TEST(GrpcStatusTest, LocalReplyAndParse) {
  HeaderMap h = LocalReplyHeaders(StatusCode::kUnavailable, "upstream down: 100%\n");
  EXPECT_EQ(h.Get(":status"), "200");
  EXPECT_EQ(h.Get("content-type"), "application/grpc");
  EXPECT_EQ(h.Get("grpc-status"), "14");
  EXPECT_EQ(h.Get("grpc-message"), "upstream down: 100%25%0A");
  std::optional<GrpcStatus> s = ParseStatus(h);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code, StatusCode::kUnavailable);
  EXPECT_EQ(s->message, "upstream down: 100%\n");

  HeaderMap ok = LocalReplyHeaders(StatusCode::kOk, "");
  EXPECT_FALSE(ok.Has("grpc-message"));
  EXPECT_EQ(StatusTrailers(StatusCode::kNotFound, "x").Get("grpc-status"), "5");

  EXPECT_FALSE(ParseStatus(HeaderMap{{"x", "y"}}).has_value());
  for (absl::string_view bad : {"abc", "17", "-1", "", " 3", "+3"}) {
    std::optional<GrpcStatus> p = ParseStatus(HeaderMap{{"grpc-status", bad}});
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->code, StatusCode::kUnknown) << bad;
  }
}

TEST(GrpcStatusTest, HttpStatusMapping) {
  const std::pair<int, StatusCode> table[] = {
      {400, StatusCode::kInternal},         {401, StatusCode::kUnauthenticated},
      {403, StatusCode::kPermissionDenied}, {404, StatusCode::kUnimplemented},
      {429, StatusCode::kUnavailable},      {502, StatusCode::kUnavailable},
      {503, StatusCode::kUnavailable},      {504, StatusCode::kUnavailable},
      {200, StatusCode::kUnknown},          {500, StatusCode::kUnknown},
      {418, StatusCode::kUnknown},          {0, StatusCode::kUnknown},
  };
  for (const auto& [http, grpc] : table) EXPECT_EQ(HttpStatusToGrpcStatus(http), grpc) << http;
}

TEST(GrpcStatusTest, IsGrpcRequest) {
  EXPECT_TRUE(IsGrpcRequest(HeaderMap{{"content-type", "application/grpc"}}));
  EXPECT_TRUE(IsGrpcRequest(HeaderMap{{"content-type", "application/grpc+proto"}}));
  EXPECT_TRUE(IsGrpcRequest(HeaderMap{{"content-type", "Application/GRPC;charset=x"}}));
  EXPECT_FALSE(IsGrpcRequest(HeaderMap{{"content-type", "application/grpc-web"}}));
  EXPECT_FALSE(IsGrpcRequest(HeaderMap{{"content-type", "application/json"}}));
  EXPECT_FALSE(IsGrpcRequest(HeaderMap{}));
}

TEST(GrpcStatusTest, Timeout) {
  EXPECT_EQ(ParseGrpcTimeout("100m"), Duration(std::chrono::milliseconds(100)));
  EXPECT_EQ(ParseGrpcTimeout("2S"), Duration(std::chrono::seconds(2)));
  EXPECT_EQ(ParseGrpcTimeout("1H"), Duration(std::chrono::hours(1)));
  EXPECT_EQ(ParseGrpcTimeout("99999999n"), Duration(99999999));
  EXPECT_FALSE(ParseGrpcTimeout("123456789S").has_value());
  // Eight digits of hours overflow 64-bit nanoseconds (minutes just fit): saturated, never
  // negative (found by framing_fuzz).
  EXPECT_EQ(ParseGrpcTimeout("99999999H"), Duration::max());
  EXPECT_EQ(ParseGrpcTimeout("99999999M"), Duration(std::chrono::minutes(99999999)));
  EXPECT_EQ(ParseGrpcTimeout("2562047H"), Duration(std::chrono::hours(2562047)));
  EXPECT_FALSE(ParseGrpcTimeout("S").has_value());
  EXPECT_FALSE(ParseGrpcTimeout("10x").has_value());
  EXPECT_FALSE(ParseGrpcTimeout("1.5S").has_value());
}

}  // namespace
}  // namespace meshlet::http::grpc
