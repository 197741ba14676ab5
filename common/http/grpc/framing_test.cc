#include "common/http/grpc/framing.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::http::grpc {
namespace {

std::vector<std::string> Messages() {
  return {"", "a", "hello grpc", std::string(70000, 'x'), std::string(3, '\0')};
}

std::string Wire(const std::vector<std::string>& messages) {
  net::Buffer out;
  for (size_t i = 0; i < messages.size(); ++i) EncodeMessage(messages[i], out, i % 2 == 1);
  return out.ToString();
}

TEST(FramingTest, HeaderLayout) {
  net::Buffer out;
  EncodeFrameHeader(0x01020304, true, out);
  EXPECT_EQ(out.ToString(), std::string("\x01\x01\x02\x03\x04", 5));
  net::Buffer msg("abc");
  net::Buffer framed;
  EncodeMessage(msg, framed);
  EXPECT_TRUE(msg.empty());
  EXPECT_EQ(framed.ToString(), std::string("\x00\x00\x00\x00\x03"
                                           "abc",
                                           8));
}

TEST(FramingTest, RoundTripInOneRead) {
  std::vector<std::string> messages = Messages();
  net::Buffer in(Wire(messages));
  FrameDecoder decoder;
  std::vector<Frame> frames;
  ASSERT_TRUE(decoder.Decode(in, frames).ok());
  ASSERT_EQ(frames.size(), messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_EQ(frames[i].message.ToString(), messages[i]) << i;
    EXPECT_EQ(frames[i].compressed, i % 2 == 1);
  }
  EXPECT_FALSE(decoder.HasPartialFrame());
  EXPECT_TRUE(in.empty());
}

// Every split point of the stream into two reads, and byte-at-a-time delivery.
TEST(FramingTest, SplitAtEveryByteBoundary) {
  std::vector<std::string> messages = {"", "first", std::string(300, 'q'), "z"};
  std::string wire = Wire(messages);
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    FrameDecoder decoder;
    std::vector<Frame> frames;
    net::Buffer a(absl::string_view(wire).substr(0, cut));
    net::Buffer b(absl::string_view(wire).substr(cut));
    ASSERT_TRUE(decoder.Decode(a, frames).ok());
    EXPECT_EQ(decoder.HasPartialFrame(), cut != wire.size() && frames.size() < messages.size() &&
                                             cut != 5 && cut != 15 && cut != 320 && cut != 0)
        << cut;
    ASSERT_TRUE(decoder.Decode(b, frames).ok());
    ASSERT_EQ(frames.size(), messages.size()) << cut;
    for (size_t i = 0; i < messages.size(); ++i) {
      EXPECT_EQ(frames[i].message.ToString(), messages[i]) << cut << " " << i;
    }
  }
  FrameDecoder decoder;
  std::vector<Frame> frames;
  for (char c : wire) {
    net::Buffer one(absl::string_view(&c, 1));
    ASSERT_TRUE(decoder.Decode(one, frames).ok());
  }
  ASSERT_EQ(frames.size(), messages.size());
  EXPECT_EQ(frames[2].message.ToString(), messages[2]);
  EXPECT_FALSE(decoder.HasPartialFrame());
}

TEST(FramingTest, TruncatedMessageIsPartial) {
  std::string wire = Wire({"abcdef"});
  FrameDecoder decoder;
  std::vector<Frame> frames;
  net::Buffer in(absl::string_view(wire).substr(0, wire.size() - 1));
  ASSERT_TRUE(decoder.Decode(in, frames).ok());
  EXPECT_TRUE(frames.empty());
  EXPECT_TRUE(decoder.HasPartialFrame());
}

TEST(FramingTest, MaxMessageSizeEnforcedBeforeBuffering) {
  FrameDecoder decoder(1024);
  std::vector<Frame> frames;
  net::Buffer ok(Wire({std::string(1024, 'a')}));
  ASSERT_TRUE(decoder.Decode(ok, frames).ok());
  ASSERT_EQ(frames.size(), 1u);
  // Only the header of the oversize message is needed to reject it.
  net::Buffer big;
  EncodeFrameHeader(1025, false, big);
  absl::Status s = decoder.Decode(big, frames);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  net::Buffer more("anything");
  EXPECT_FALSE(decoder.Decode(more, frames).ok());
  EXPECT_TRUE(more.empty());
  EXPECT_EQ(frames.size(), 1u);
}

TEST(FramingTest, InvalidFlagRejected) {
  FrameDecoder decoder;
  std::vector<Frame> frames;
  net::Buffer in(std::string("\x02\x00\x00\x00\x00", 5));
  EXPECT_EQ(decoder.Decode(in, frames).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace meshlet::http::grpc
