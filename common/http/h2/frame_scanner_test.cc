// Frames on client streams that are gone (RFC 9113 5.1), which the server's frame scanner
// judges before nghttp2 drops them.
#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "common/http/h2/codec.h"
#include "common/http/h2/codec_test_helpers.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using testing::AppendFrame;
using testing::CodecPair;
using testing::kCancel;
using testing::kGetBlock;
using testing::LastGoAwayError;
using testing::LastResetError;
using testing::Respond;

// On a stream this side already reset (its response is complete), nghttp2 drops DATA without a
// callback; empty ones still count.
TEST(Http2CodecTest, EmptyDataFramesOnAResetStreamEndTheConnection) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, kGetBlock);
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  Respond(*p.server_callbacks.requests[0], "done");  // RST_STREAM(NO_ERROR) for the rest
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kEmptyFrames);
}

// h2spec http2/5.1/8: HEADERS without END_STREAM, the client's RST_STREAM and DATA on the same
// stream, all in one read. The DATA is a stream error STREAM_CLOSED (RFC 9113 5.1, "closed"),
// also when the HEADERS that opened the stream came in the same bytes.
TEST(Http2CodecTest, DataAfterTheClientsResetInTheSameReadIsStreamClosed) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, kGetBlock);
  AppendFrame(in, NGHTTP2_RST_STREAM, 0, 1, kCancel);
  AppendFrame(in, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "test");
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  EXPECT_EQ(LastResetError(p.server_io.out, 1), NGHTTP2_STREAM_CLOSED);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), -1);  // a stream error: the connection goes on
  // DATA on a stream the client never opened, in the same way, is still nghttp2's connection
  // error.
  net::Buffer idle;
  AppendFrame(idle, NGHTTP2_DATA, 0, 7, "x");
  EXPECT_FALSE(p.server->Dispatch(idle).ok());
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_PROTOCOL_ERROR);
}

}  // namespace
}  // namespace meshlet::http::h2
