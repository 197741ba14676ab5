#pragma once

// Helpers for the HTTP/2 codec's tests (codec_test, flood_test, frame_scanner_test,
// keepalive_test): bodies to send, a response to give, raw frames a client sends, and the error
// codes a server wrote. Over test_util.h's in-memory codec pair.

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2::testing {

inline std::string Pattern(size_t n, size_t offset = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (offset + i) % 26);
  return s;
}

inline void Send(StreamEncoder& encoder, absl::string_view data, bool end_stream) {
  net::Buffer b(data);
  encoder.EncodeData(b, end_stream);
  EXPECT_TRUE(b.empty());
}

inline void Respond(ServerRequest& r, absl::string_view body, bool trailers = false) {
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, body.empty() && !trailers);
  if (!body.empty()) Send(*r.encoder, body, !trailers);
  if (trailers) r.encoder->EncodeTrailers(HeaderMap{{"grpc-status", "0"}, {"x-done", "yes"}});
}

// Appends one frame header (RFC 9113 4.1) and its payload.
inline void AppendFrame(net::Buffer& out, uint8_t type, uint8_t flags, uint32_t stream_id,
                        absl::string_view payload) {
  const char header[] = {static_cast<char>((payload.size() >> 16) & 0xff),
                         static_cast<char>((payload.size() >> 8) & 0xff),
                         static_cast<char>(payload.size() & 0xff),
                         static_cast<char>(type),
                         static_cast<char>(flags),
                         static_cast<char>((stream_id >> 24) & 0x7f),
                         static_cast<char>((stream_id >> 16) & 0xff),
                         static_cast<char>((stream_id >> 8) & 0xff),
                         static_cast<char>(stream_id & 0xff)};
  out.Append(header, sizeof(header));
  out.Append(payload.data(), payload.size());
}

// The error code of the last frame of `type` in a server's output, or -1: GOAWAY, or RST_STREAM
// on `stream_id`.
inline int64_t LastErrorCode(const net::Buffer& out, uint8_t type, uint32_t stream_id = 0) {
  std::string bytes = out.ToString();
  int64_t code = -1;
  size_t pos = 0;
  while (pos + 9 <= bytes.size()) {
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data() + pos);
    size_t length = (size_t{b[0]} << 16) | (size_t{b[1]} << 8) | b[2];
    if (pos + 9 + length > bytes.size()) break;
    const uint32_t id = ((uint32_t{b[5]} & 0x7f) << 24) | (b[6] << 16) | (b[7] << 8) | b[8];
    // GOAWAY: last-stream-id, then the code; RST_STREAM: the code.
    const size_t at = type == NGHTTP2_GOAWAY ? 13 : 9;
    if (b[3] == type && length >= at - 5 && (type == NGHTTP2_GOAWAY || id == stream_id)) {
      code = (int64_t{b[at]} << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];
    }
    pos += 9 + length;
  }
  return code;
}

inline int64_t LastGoAwayError(const net::Buffer& out) {
  return LastErrorCode(out, NGHTTP2_GOAWAY);
}

// The last-stream-id of the last GOAWAY in a server's output, or -1.
inline int64_t LastGoAwayStream(const net::Buffer& out) {
  std::string bytes = out.ToString();
  int64_t last = -1;
  for (size_t pos = 0; pos + 9 <= bytes.size();) {
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data() + pos);
    const size_t length = (size_t{b[0]} << 16) | (size_t{b[1]} << 8) | b[2];
    if (pos + 9 + length > bytes.size()) break;
    if (b[3] == NGHTTP2_GOAWAY && length >= 8) {
      last = ((int64_t{b[9]} & 0x7f) << 24) | (b[10] << 16) | (b[11] << 8) | b[12];
    }
    pos += 9 + length;
  }
  return last;
}

// A client that asks for more PING acknowledgements than it reads: once more than

inline int64_t LastResetError(const net::Buffer& out, uint32_t stream_id) {
  return LastErrorCode(out, NGHTTP2_RST_STREAM, stream_id);
}

// HPACK for GET http://a/ (static :method, :scheme, :path; :authority "a" as a literal).
inline constexpr absl::string_view kGetBlock(
    "\x82\x86\x84\x41\x01"
    "a",
    6);
inline constexpr absl::string_view kCancel("\x00\x00\x00\x08", 4);

}  // namespace meshlet::http::h2::testing
