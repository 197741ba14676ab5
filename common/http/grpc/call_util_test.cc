#include "common/http/grpc/call_util.h"

#include "common/http/grpc/framing.h"
#include "common/http/grpc/status.h"
#include "gtest/gtest.h"

namespace meshlet::http::grpc::grpc_internal {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(EncodeGrpcTimeoutTest, PicksTheSmallestUnitThatFits) {
  EXPECT_EQ(EncodeGrpcTimeout(nanoseconds(5)), "5n");
  EXPECT_EQ(EncodeGrpcTimeout(milliseconds(99)), "99000000n");
  EXPECT_EQ(EncodeGrpcTimeout(milliseconds(100)), "100000u");
  EXPECT_EQ(EncodeGrpcTimeout(milliseconds(250)), "250000u");
  EXPECT_EQ(EncodeGrpcTimeout(seconds(30)), "30000000u");
  EXPECT_EQ(EncodeGrpcTimeout(seconds(100)), "100000m");
  EXPECT_EQ(EncodeGrpcTimeout(hours(48)), "172800S");
  EXPECT_EQ(EncodeGrpcTimeout(nanoseconds(0)), "1n");
  EXPECT_EQ(EncodeGrpcTimeout(nanoseconds(-7)), "1n");
  // Rounds up, never down.
  EXPECT_EQ(EncodeGrpcTimeout(nanoseconds(100000001)), "100001u");
}

TEST(EncodeGrpcTimeoutTest, RoundTripsThroughTheParser) {
  for (Duration d : {Duration(milliseconds(1)), Duration(seconds(15)), Duration(hours(3)),
                     Duration(nanoseconds(123456789))}) {
    std::optional<Duration> parsed = ParseGrpcTimeout(EncodeGrpcTimeout(d));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_GE(*parsed, d);
    EXPECT_LE(*parsed - d, d / 1000 + nanoseconds(1000));
  }
}

TEST(InboundMessagesTest, QueuesMessagesAcrossArbitraryChunks) {
  net::Buffer wire;
  EncodeMessage("first", wire);
  EncodeMessage("", wire);
  EncodeMessage(std::string(70000, 'x'), wire);
  std::string bytes = wire.ToString();
  InboundMessages inbound(kDefaultMaxMessageSize);
  for (size_t i = 0; i < bytes.size(); i += 7) {
    net::Buffer chunk(absl::string_view(bytes).substr(i, 7));
    ASSERT_TRUE(inbound.Decode(chunk).ok());
    EXPECT_TRUE(chunk.empty());
  }
  EXPECT_FALSE(inbound.HasPartialMessage());
  EXPECT_EQ(inbound.Pop(), "first");
  EXPECT_EQ(inbound.Pop(), "");
  EXPECT_EQ(inbound.Pop(), std::string(70000, 'x'));
  EXPECT_TRUE(inbound.empty());
}

TEST(InboundMessagesTest, RejectsCompressedAndOversizeMessages) {
  net::Buffer compressed;
  EncodeMessage("zz", compressed, /*compressed=*/true);
  InboundMessages a(kDefaultMaxMessageSize);
  EXPECT_EQ(a.Decode(compressed).code(), absl::StatusCode::kInternal);

  net::Buffer big;
  EncodeMessage(std::string(11, 'b'), big);
  InboundMessages b(10);
  EXPECT_EQ(b.Decode(big).code(), absl::StatusCode::kResourceExhausted);
}

TEST(InboundMessagesTest, ReportsAPartialMessage) {
  net::Buffer wire;
  EncodeMessage("truncated", wire);
  net::Buffer part(wire.ToString().substr(0, 8));
  InboundMessages inbound(kDefaultMaxMessageSize);
  ASSERT_TRUE(inbound.Decode(part).ok());
  EXPECT_TRUE(inbound.empty());
  EXPECT_TRUE(inbound.HasPartialMessage());
}

}  // namespace
}  // namespace meshlet::http::grpc::grpc_internal
