#include "sidecar/listener/protocol_detector.h"

#include <gtest/gtest.h>

#include <string>

#include "common/net/buffer.h"

namespace meshlet::sidecar::listener {
namespace {

using P = DetectedProtocol;

// Feeds `stream` to `detect` one byte at a time; the answer must be kNeedMoreBytes until it is
// final, and once final it must not change as more bytes arrive.
template <typename Detect>
P Incrementally(absl::string_view stream, Detect detect) {
  P final_answer = P::kNeedMoreBytes;
  for (size_t n = 1; n <= stream.size(); ++n) {
    P answer = detect(stream.substr(0, n));
    if (final_answer != P::kNeedMoreBytes) {
      EXPECT_EQ(answer, final_answer) << "answer changed at byte " << n;
    }
    final_answer = answer;
  }
  return final_answer;
}

P DetectIncrementally(absl::string_view stream) {
  return Incrementally(stream, [](absl::string_view bytes) { return DetectProtocol(bytes); });
}

// DetectHttp1RequestLine, the same way.
P LineIncrementally(absl::string_view stream, size_t max_line_bytes = 8192) {
  return Incrementally(stream, [&](absl::string_view bytes) {
    return DetectHttp1RequestLine(bytes, max_line_bytes);
  });
}

TEST(ProtocolDetectorTest, Http1Methods) {
  EXPECT_EQ(DetectIncrementally("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally("POST /x HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally("PROPFIND /x HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally("CONNECT a:443 HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectProtocol("GE"), P::kNeedMoreBytes);
  EXPECT_EQ(DetectProtocol("GET"), P::kNeedMoreBytes);
}

TEST(ProtocolDetectorTest, Http2Preface) {
  EXPECT_EQ(DetectIncrementally(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                                std::string("\x00\x00\x12\x04", 4)),
            P::kHttp2);
  EXPECT_EQ(DetectProtocol("PRI * HTTP/2.0\r\n"), P::kNeedMoreBytes);
  EXPECT_EQ(DetectProtocol("PRI * HTTP/1.1\r\n"), P::kOpaque);
}

TEST(ProtocolDetectorTest, TlsClientHello) {
  const char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0x7c};
  EXPECT_EQ(DetectIncrementally(absl::string_view(hello, sizeof(hello))), P::kTls);
  const char server_hello[] = {0x16, 0x03, 0x03, 0x00, 0x40, 0x02};
  EXPECT_EQ(DetectProtocol(absl::string_view(server_hello, sizeof(server_hello))), P::kOpaque);
  const char not_tls[] = {0x16, 0x07};
  EXPECT_EQ(DetectProtocol(absl::string_view(not_tls, sizeof(not_tls))), P::kOpaque);
}

TEST(ProtocolDetectorTest, OpaqueBytes) {
  EXPECT_EQ(DetectIncrementally("SSH-2.0-OpenSSH_9.2\r\n"), P::kOpaque);
  EXPECT_EQ(DetectIncrementally("get / HTTP/1.1\r\n"), P::kOpaque);  // methods are case-sensitive
  EXPECT_EQ(DetectIncrementally("GETX / HTTP/1.1\r\n"), P::kOpaque);
  EXPECT_EQ(DetectProtocol(absl::string_view("\0\0\0\0", 4)), P::kOpaque);
  EXPECT_EQ(DetectProtocol(""), P::kNeedMoreBytes);
  EXPECT_EQ(DetectProtocol("*1\r\n$4\r\nPING\r\n"), P::kOpaque);  // redis
}

TEST(ProtocolDetectorTest, RequestLinesWithMethodsTheDetectorDoesNotKnow) {
  EXPECT_EQ(DetectProtocol("PURGE /x HTTP/1.1\r\n"), P::kOpaque);
  EXPECT_EQ(LineIncrementally("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n"), P::kHttp1);
  EXPECT_EQ(LineIncrementally("M-SEARCH * HTTP/1.0\n"), P::kHttp1);     // a bare LF ends it too
  EXPECT_EQ(LineIncrementally("REPORT /a b HTTP/1.1\r\n"), P::kHttp1);  // the codec's 400
  EXPECT_EQ(DetectHttp1RequestLine("PURGE /x HTTP/1.", 8192), P::kNeedMoreBytes);
  EXPECT_EQ(DetectHttp1RequestLine("PURGE", 8192), P::kNeedMoreBytes);
}

TEST(ProtocolDetectorTest, FirstLinesThatAreNotHttp1) {
  // h2spec http2/3.5/2, and a preface that goes wrong after its first line.
  EXPECT_EQ(LineIncrementally("INVALID CONNECTION PREFACE\r\n\r\n"), P::kOpaque);
  EXPECT_EQ(LineIncrementally("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), P::kOpaque);
  EXPECT_EQ(LineIncrementally("GET / HTTP/1.10\r\n"), P::kOpaque);
  EXPECT_EQ(LineIncrementally("GET /\r\n"), P::kOpaque);  // HTTP/0.9
  EXPECT_EQ(LineIncrementally("hello\r\n"), P::kOpaque);
  EXPECT_EQ(LineIncrementally("SSH-2.0-OpenSSH_9.2\r\n"), P::kOpaque);
  // Known at the first byte that cannot begin a method, or end one.
  EXPECT_EQ(DetectHttp1RequestLine(absl::string_view("\0\x01", 2), 8192), P::kOpaque);
  EXPECT_EQ(DetectHttp1RequestLine(" GET", 8192), P::kOpaque);
  EXPECT_EQ(DetectHttp1RequestLine("G\x01T", 8192), P::kOpaque);
  EXPECT_EQ(DetectHttp1RequestLine("\rGET", 8192), P::kOpaque);  // a CR that ends no line
}

// RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line.
TEST(ProtocolDetectorTest, EmptyLinesBeforeTheRequestLine) {
  EXPECT_EQ(DetectIncrementally("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally("\r\n\r\nPOST / HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally("\nGET / HTTP/1.1\r\n"), P::kHttp1);  // the codec's 400
  EXPECT_EQ(DetectProtocol("\r"), P::kNeedMoreBytes);
  EXPECT_EQ(DetectProtocol("\r\n"), P::kNeedMoreBytes);
  EXPECT_EQ(DetectProtocol("\r\nGE"), P::kNeedMoreBytes);
  EXPECT_EQ(DetectIncrementally("\rGET / HTTP/1.1\r\n"), P::kOpaque);
  // The preface and a ClientHello come first or not at all.
  EXPECT_EQ(DetectIncrementally("\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), P::kOpaque);
  EXPECT_EQ(DetectIncrementally(std::string("\r\n\x16\x03\x01\x02\x00\x01", 8)), P::kOpaque);
  // Opaque streams made of line ends stay opaque past the bound, and are decided within
  // kMaxDetectBytes.
  std::string empties;
  for (size_t i = 0; i < kMaxLeadingEmptyLineBytes / 2; ++i) empties += "\r\n";
  EXPECT_EQ(DetectIncrementally(empties + "GET / HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally(empties + "\r\nGET / HTTP/1.1\r\n"), P::kOpaque);
  EXPECT_EQ(DetectProtocol(empties + "PROPPATCH"), P::kNeedMoreBytes);
  EXPECT_LE(empties.size() + std::string("PROPPATCH ").size(), kMaxDetectBytes);

  // The first-line check skips them too, up to its line limit.
  EXPECT_EQ(LineIncrementally("\r\nPURGE /x HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(LineIncrementally(empties + empties + "PURGE /x HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(LineIncrementally("\r\n\r\nhello\r\n"), P::kOpaque);
  EXPECT_EQ(DetectHttp1RequestLine(empties, 8192), P::kNeedMoreBytes);
  EXPECT_EQ(DetectHttp1RequestLine(empties, 16), P::kHttp1);  // the codec skips them all
}

// A request line with HTAB between its fields is an attempt at HTTP/1 (the codec's 400), never
// the HTTP/2 codec's bad preface.
TEST(ProtocolDetectorTest, TabsInTheRequestLine) {
  EXPECT_EQ(DetectIncrementally("GET\t/ HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectIncrementally("\r\nDELETE\t/x HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(DetectProtocol("PURGE\t/x HTTP/1.1\r\n"), P::kOpaque);
  EXPECT_EQ(LineIncrementally("PURGE\t/x HTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(LineIncrementally("PURGE /x\tHTTP/1.1\r\n"), P::kHttp1);
  EXPECT_EQ(LineIncrementally("PURGE\t/x\r\n"), P::kOpaque);
  EXPECT_EQ(DetectHttp1RequestLine("\tGET", 8192), P::kOpaque);
}

TEST(ProtocolDetectorTest, ARequestLineLongerThanTheLimitIsHttp1sToRefuse) {
  const std::string line = "PURGE /" + std::string(100, 'a');
  EXPECT_EQ(DetectHttp1RequestLine(line, 100), P::kHttp1);
  EXPECT_EQ(DetectHttp1RequestLine(line.substr(0, 100), 100), P::kNeedMoreBytes);
  EXPECT_EQ(DetectHttp1RequestLine(line, 8192), P::kNeedMoreBytes);
}

TEST(ProtocolDetectorTest, WorksOnBuffersSplitAcrossBlocks) {
  net::Buffer a("PRI * HTTP/2.0\r\n");
  net::Buffer b("\r\nSM\r\n\r\n");
  a.Move(b);
  EXPECT_EQ(DetectProtocol(a), P::kHttp2);
  EXPECT_EQ(a.length(), 24u);  // nothing consumed

  net::Buffer line("PURGE /x HT");
  net::Buffer rest("TP/1.1\r\n");
  EXPECT_EQ(DetectHttp1RequestLine(line, 8192), P::kNeedMoreBytes);
  line.Move(rest);
  EXPECT_EQ(DetectHttp1RequestLine(line, 8192), P::kHttp1);
  EXPECT_EQ(line.length(), 19u);
}

}  // namespace
}  // namespace meshlet::sidecar::listener
