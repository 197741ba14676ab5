#include "sidecar/stream/local_reply.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::stream {
namespace {

using http::grpc::StatusCode;

struct Built {
  http::HeaderMap headers;
  net::Buffer body;
  bool has_body = false;
};

Built Build(const LocalReply& reply, bool grpc) {
  Built built;
  built.has_body = BuildLocalReply(reply, grpc, built.headers, built.body);
  return built;
}

TEST(LocalReplyTest, HttpRequestGetsStatusAndTextBody) {
  const LocalReply reply{
      .http_status = 404, .grpc_status = StatusCode::kUnimplemented, .message = "no route"};
  Built built = Build(reply, /*grpc=*/false);
  EXPECT_TRUE(built.has_body);
  EXPECT_EQ(built.headers.Get(":status"), "404");
  EXPECT_EQ(built.headers.Get("content-type"), "text/plain");
  EXPECT_EQ(built.headers.Get("content-length"), "9");
  EXPECT_EQ(built.body.ToString(), "no route\n");
  EXPECT_FALSE(built.headers.Has("grpc-status"));
  EXPECT_FALSE(built.headers.Has("retry-after"));
  EXPECT_FALSE(built.headers.Has("x-meshlet-overloaded"));
  EXPECT_EQ(LocalReplyStatus(reply, false), 404);
}

TEST(LocalReplyTest, GrpcRequestGetsTrailersOnly) {
  const LocalReply reply{.http_status = 504,
                         .grpc_status = StatusCode::kDeadlineExceeded,
                         .message = "upstream request timeout"};
  Built built = Build(reply, /*grpc=*/true);
  EXPECT_FALSE(built.has_body);
  EXPECT_TRUE(built.body.empty());
  EXPECT_EQ(built.headers.Get(":status"), "200");
  EXPECT_EQ(built.headers.Get("grpc-status"), "4");
  EXPECT_EQ(built.headers.Get("grpc-message"), "upstream request timeout");
  EXPECT_EQ(built.headers.Get("content-type"), "application/grpc");
  EXPECT_EQ(LocalReplyStatus(reply, true), 200);
}

TEST(LocalReplyTest, GrpcStatusOkAsksForTheHttpReply) {
  // A fault configured with an HTTP status only answers gRPC requests with that status too.
  const LocalReply reply{
      .http_status = 418, .grpc_status = StatusCode::kOk, .message = "fault injected"};
  Built built = Build(reply, /*grpc=*/true);
  EXPECT_TRUE(built.has_body);
  EXPECT_EQ(built.headers.Get(":status"), "418");
  EXPECT_FALSE(built.headers.Has("grpc-status"));
  EXPECT_EQ(built.body.ToString(), "fault injected\n");
  EXPECT_EQ(LocalReplyStatus(reply, true), 418);
}

TEST(LocalReplyTest, RetryAfterIsWholeSecondsRoundedUpBetweenOneAndAnHour) {
  LocalReply reply{.http_status = 429,
                   .grpc_status = StatusCode::kResourceExhausted,
                   .message = "local rate limit exceeded"};
  reply.retry_after = std::chrono::milliseconds(1);
  EXPECT_EQ(Build(reply, false).headers.Get("retry-after"), "1");
  reply.retry_after = std::chrono::milliseconds(1500);
  EXPECT_EQ(Build(reply, false).headers.Get("retry-after"), "2");
  reply.retry_after = Duration::max();  // a zero-rate bucket: never
  EXPECT_EQ(Build(reply, false).headers.Get("retry-after"), "3600");
  // gRPC replies carry it too.
  Built grpc = Build(reply, true);
  EXPECT_EQ(grpc.headers.Get("grpc-status"), "8");
  EXPECT_EQ(grpc.headers.Get("retry-after"), "3600");
}

TEST(LocalReplyTest, OverloadHeaderOnBothKinds) {
  const LocalReply reply{.http_status = 503, .message = "upstream overloaded", .overloaded = true};
  EXPECT_EQ(Build(reply, false).headers.Get("x-meshlet-overloaded"), "true");
  Built grpc = Build(reply, true);
  EXPECT_EQ(grpc.headers.Get("grpc-status"), "14");
  EXPECT_EQ(grpc.headers.Get("x-meshlet-overloaded"), "true");
}

TEST(LocalReplyTest, DetailFollowsTheMessageInTheBodyAndGrpcMessageOnly) {
  const LocalReply reply{.http_status = 503,
                         .message = "upstream TLS handshake failed",
                         .detail = "peer certificate \"CN=x\" expired at 2026-01-01T00:00:00Z"};
  Built http = Build(reply, false);
  EXPECT_EQ(http.body.ToString(),
            "upstream TLS handshake failed: peer certificate \"CN=x\" expired at "
            "2026-01-01T00:00:00Z\n");
  EXPECT_EQ(http.headers.Get("content-length"), absl::StrCat(http.body.length()));
  Built grpc = Build(reply, true);
  EXPECT_TRUE(absl::StrContains(grpc.headers.Get("grpc-message").value_or(""), "expired at"));
}

TEST(LocalReplyTest, ErrorAttributionNamesNodeFlagsAndReason) {
  const uint32_t flags = static_cast<uint32_t>(ResponseFlag::kUpstreamConnectFailure) |
                         static_cast<uint32_t>(ResponseFlag::kRetryLimitExceeded);
  EXPECT_EQ(ErrorAttribution("reviews-v1-0.shop", flags, "upstream connect error"),
            "reviews-v1-0.shop; flag=UF,URX; reason=upstream connect error");
  EXPECT_EQ(ErrorAttribution("", 0, "no route"), "-; flag=-; reason=no route");
  // A configured message cannot break the field.
  EXPECT_EQ(ErrorAttribution("a", 0, "two\r\nlines"), "a; flag=-; reason=two  lines");
}

}  // namespace
}  // namespace meshlet::sidecar::stream
