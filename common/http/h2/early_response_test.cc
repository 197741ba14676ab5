// A server stream whose response is complete before its request (RFC 9113 8.1): the rest of the
// request the client sends is still judged as on any stream (RFC 9113 5.1, 6.9.1, 8.1.1), and
// RST_STREAM(NO_ERROR) asks the client to stop only once it has no stream window left. Each case
// forces the order: the request's HEADERS alone, the response (the server answers at once and
// reads none of the body), then the rest of the request as raw frames.
#include <nghttp2/nghttp2.h>

#include <string>

#include "absl/strings/string_view.h"
#include "common/http/h2/codec.h"
#include "common/http/h2/codec_test_helpers.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using testing::AppendFrame;
using testing::CodecPair;
using testing::LastGoAwayError;
using testing::LastResetError;
using testing::Pattern;
using testing::Request;
using testing::Respond;
using testing::ServerRequest;

// HPACK: POST http://a/ (static :method POST, :scheme http, :path /; :authority "a").
constexpr absl::string_view kPostBlock(
    "\x83\x86\x84\x41\x01"
    "a",
    6);
// The same with content-length: 1 (a literal with the static name, not indexed).
constexpr absl::string_view kPostLengthOneBlock(
    "\x83\x86\x84\x41\x01"
    "a"
    "\x0f\x0d\x01"
    "1",
    10);
// Trailers: user-agent: a; and one with the pseudo-header :path / in it.
constexpr absl::string_view kTrailerBlock(
    "\x0f\x2b\x01"
    "a",
    4);
constexpr absl::string_view kPseudoTrailerBlock(
    "\x0f\x2b\x01"
    "a"
    "\x84",
    5);

std::string WindowIncrement(uint32_t increment) {
  return std::string{
      static_cast<char>((increment >> 24) & 0x7f), static_cast<char>((increment >> 16) & 0xff),
      static_cast<char>((increment >> 8) & 0xff), static_cast<char>(increment & 0xff)};
}

class EarlyResponseTest : public ::testing::Test {
 protected:
  // Opens stream 1 with `block` (no END_STREAM) and lets the server answer it completely.
  void OpenAndAnswer(absl::string_view block = kPostBlock) {
    ASSERT_TRUE(p_.Pump().ok());
    p_.server_callbacks.on_new_stream = [](ServerRequest& r) {
      r.encoder->GetStream().ReadDisable(true);  // reads none of the body
      r.decoder.on_headers = [&r](bool) { Respond(r, "early"); };
    };
    net::Buffer in;
    AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, block);
    ASSERT_TRUE(p_.server->Dispatch(in).ok());
    ASSERT_EQ(p_.server_callbacks.requests.size(), 1u);
    EXPECT_EQ(p_.server->ActiveStreams(), 0u);  // complete for the user
    // The response is out, and the client is not told to stop: it has window left.
    EXPECT_EQ(LastResetError(p_.server_io.out, 1), -1);
    p_.server_io.out.Clear();
  }

  // The server's answer to the rest of the request: the RST_STREAM code on stream 1, or the
  // GOAWAY code when it is a connection error (-1: neither).
  int64_t ErrorFor(net::Buffer& rest) {
    const absl::Status status = p_.server->Dispatch(rest);
    const int64_t goaway = LastGoAwayError(p_.server_io.out);
    EXPECT_EQ(status.ok(), goaway == -1) << status;
    return goaway != -1 ? goaway : LastResetError(p_.server_io.out, 1);
  }

  // The rest of the request: DATA "body" (`data_flags`), then one frame.
  static net::Buffer BodyThen(uint8_t data_flags, uint8_t type, uint8_t flags,
                              absl::string_view payload) {
    net::Buffer rest;
    AppendFrame(rest, NGHTTP2_DATA, data_flags, 1, "body");
    AppendFrame(rest, type, flags, 1, payload);
    return rest;
  }

  static constexpr uint8_t kEndHeaders = NGHTTP2_FLAG_END_HEADERS;
  static constexpr uint8_t kTrailersFlags = NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM;

  CodecPair p_;
};

// h2spec http2/5.1/9-10 with the response first: the request's END_STREAM closed the stream both
// ways; DATA or HEADERS after it are a connection error STREAM_CLOSED, not ignored as after a
// reset of ours.
TEST_F(EarlyResponseTest, DataAfterTheRequestEndedIsStreamClosed) {
  OpenAndAnswer();
  net::Buffer rest = BodyThen(NGHTTP2_FLAG_END_STREAM, NGHTTP2_DATA, 0, "more");
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_STREAM_CLOSED);
}

TEST_F(EarlyResponseTest, HeadersAfterTheRequestEndedIsStreamClosed) {
  OpenAndAnswer();
  net::Buffer rest =
      BodyThen(NGHTTP2_FLAG_END_STREAM, NGHTTP2_HEADERS, kTrailersFlags, kTrailerBlock);
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_STREAM_CLOSED);
}

// h2spec http2/8.1/1: a second HEADERS without END_STREAM is malformed (RFC 9113 8.1).
TEST_F(EarlyResponseTest, ASecondHeadersWithoutEndStreamIsAProtocolError) {
  OpenAndAnswer();
  net::Buffer rest = BodyThen(0, NGHTTP2_HEADERS, kEndHeaders, kTrailerBlock);
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_PROTOCOL_ERROR);
  EXPECT_EQ(p_.server->counters().stream_protocol_errors, 1u);
}

// h2spec http2/8.1.2.6/1: a body longer than its content-length (RFC 9113 8.1.1).
TEST_F(EarlyResponseTest, ABodyThatDisagreesWithContentLengthIsAProtocolError) {
  OpenAndAnswer(kPostLengthOneBlock);
  net::Buffer rest;
  AppendFrame(rest, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "test");
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_PROTOCOL_ERROR);
}

// h2spec http2/8.1.2.1/3: a pseudo-header field in trailers (RFC 9113 8.3).
TEST_F(EarlyResponseTest, APseudoHeaderInTrailersIsAProtocolError) {
  OpenAndAnswer();
  net::Buffer rest = BodyThen(0, NGHTTP2_HEADERS, kTrailersFlags, kPseudoTrailerBlock);
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_PROTOCOL_ERROR);
}

// h2spec http2/6.9.1/3: WINDOW_UPDATEs that take a stream's window past 2^31-1 (RFC 9113 6.9.1).
TEST_F(EarlyResponseTest, AStreamWindowPastTheMaximumIsAFlowControlError) {
  OpenAndAnswer();
  net::Buffer rest;
  AppendFrame(rest, NGHTTP2_WINDOW_UPDATE, 0, 1, WindowIncrement(0x7fffffff));
  AppendFrame(rest, NGHTTP2_WINDOW_UPDATE, 0, 1, WindowIncrement(0x7fffffff));
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_FLOW_CONTROL_ERROR);
}

// The rest of a well-formed request ends the stream quietly: no reset either way.
TEST_F(EarlyResponseTest, TheRestOfAWellFormedRequestEndsTheStreamWithoutAReset) {
  OpenAndAnswer();
  net::Buffer rest = BodyThen(0, NGHTTP2_HEADERS, kTrailersFlags, kTrailerBlock);
  EXPECT_EQ(ErrorFor(rest), -1);
  EXPECT_EQ(p_.server->counters().stream_protocol_errors, 0u);
  EXPECT_FALSE(p_.server->HasUnsentOutput());
}

// A client that goes on sending a body nobody reads is asked to stop (RFC 9113 8.1) once it has
// used its stream window, rather than left blocked; the rest is ignored.
TEST_F(EarlyResponseTest, AClientOutOfStreamWindowIsAskedToStop) {
  OpenAndAnswer();
  // The stream window the server advertised (SETTINGS_INITIAL_WINDOW_SIZE), in frames of 16 KiB.
  const size_t window = Http2Options().initial_stream_window_size;
  net::Buffer rest;
  for (size_t sent = 0; sent < window; sent += 16384) {
    AppendFrame(rest, NGHTTP2_DATA, 0, 1, Pattern(16384));
    if (sent + 16384 < window) {
      ASSERT_TRUE(p_.server->Dispatch(rest).ok());
      EXPECT_EQ(LastResetError(p_.server_io.out, 1), -1) << sent;
    }
  }
  EXPECT_EQ(ErrorFor(rest), NGHTTP2_NO_ERROR);
  AppendFrame(rest, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "late");
  ASSERT_TRUE(p_.server->Dispatch(rest).ok());  // sent before it saw the reset: ignored
  EXPECT_EQ(LastGoAwayError(p_.server_io.out), -1);
}

// Through the client codec: a response before the request's end is complete for the client
// once its own message is sent, without a reset either way.
TEST(Http2CodecTest, ResponseBeforeRequestEndsThenTheRequestEnds) {
  CodecPair p;
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_headers = [&r](bool) {
      r.encoder->EncodeHeaders(HeaderMap{{":status", "413"}}, true);
    };
  };
  testing::ClientRequest& c = p.Start(Request("POST"), false);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.decoder.headers->Get(":status"), "413");
  EXPECT_TRUE(c.decoder.end);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  testing::Send(*c.encoder, "rest", /*end_stream=*/true);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.callbacks.resets, 0);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_NO_ERROR)], 0u);
  EXPECT_EQ(p.client->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_NO_ERROR)], 0u);
}

}  // namespace
}  // namespace meshlet::http::h2
