// The HTTP/1 codec in memory: a ClientCodec talking to a ServerCodec through FakeIo pipes, and
// hand-written bytes where the wire format itself is the point.

#include "common/http/h1/codec.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/http/h1/codec_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::http::h1 {
namespace {

using ::meshlet::http::h1::testing::FakeIo;
using ::meshlet::http::h1::testing::RecordingConnectionCallbacks;
using ::meshlet::http::h1::testing::RecordingDecoder;
using ::meshlet::http::h1::testing::RecordingServerCallbacks;
using ::meshlet::http::h1::testing::ServerRequest;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

HeaderMap Get(absl::string_view path) {
  return HeaderMap{
      {":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", "example.com"}};
}

void SendBody(StreamEncoder& encoder, absl::string_view body, bool end_stream) {
  net::Buffer b(body);
  encoder.EncodeData(b, end_stream);
}

class CodecTest : public ::testing::Test {
 protected:
  CodecTest() { Rebuild(CodecOptions(), CodecOptions()); }

  void Rebuild(const CodecOptions& server_options, const CodecOptions& client_options) {
    server_.reset();
    client_.reset();
    server_io_ = FakeIo();
    client_io_ = FakeIo();
    server_cb_ = RecordingServerCallbacks();
    server_ = std::make_unique<ServerCodec>(loop_, server_io_, server_cb_, server_options);
    client_ = std::make_unique<ClientCodec>(loop_, client_io_, client_cb_, client_options);
  }

  // Moves bytes both ways and runs deferred work until nothing moves.
  void Pump() {
    for (int i = 0; i < 50; ++i) {
      loop_.RunUntilIdle();
      bool moved = false;
      if (!client_io_.written.empty()) {
        moved = true;
        net::Buffer in;
        in.Move(client_io_.written);
        server_status_ = server_->Dispatch(in);
      }
      if (!server_io_.written.empty()) {
        moved = true;
        net::Buffer in;
        in.Move(server_io_.written);
        client_status_ = client_->Dispatch(in);
      }
      if (!moved) {
        loop_.RunUntilIdle();
        if (client_io_.written.empty() && server_io_.written.empty()) return;
      }
    }
  }

  // Feeds raw bytes to the server and returns what it wrote.
  std::string ServerRoundTrip(absl::string_view request) {
    net::Buffer in(request);
    server_status_ = server_->Dispatch(in);
    loop_.RunUntilIdle();
    return server_io_.Take();
  }

  ServerRequest& Request(size_t i) { return *server_cb_.requests.at(i); }

  event::Loop loop_;
  FakeIo server_io_;
  FakeIo client_io_;
  RecordingServerCallbacks server_cb_;
  RecordingConnectionCallbacks client_cb_;
  std::unique_ptr<ServerCodec> server_;
  std::unique_ptr<ClientCodec> client_;
  absl::Status server_status_;
  absl::Status client_status_;
};

TEST_F(CodecTest, GetRoundTrip) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/a?b=c");
  headers.Add("X-Custom", "one");
  headers.Add("x-custom", "two");
  request.EncodeHeaders(headers, true);
  EXPECT_FALSE(client_->CanOpenStream());
  Pump();

  ASSERT_EQ(server_cb_.requests.size(), 1u);
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.Header(":method"), "GET");
  EXPECT_EQ(r.Header(":path"), "/a?b=c");
  EXPECT_EQ(r.Header(":authority"), "example.com");
  EXPECT_EQ(r.Header(":scheme"), "http");
  EXPECT_FALSE(r.headers->Has("host"));
  EXPECT_EQ(r.headers->GetJoined("x-custom"), "one, two");
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(server_->ActiveStreams(), 1u);
  EXPECT_EQ(server_->protocol(), Protocol::kHttp11);

  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "5"}}, false);
  SendBody(*r.encoder, "hello", true);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
  Pump();

  EXPECT_EQ(response.Header(":status"), "200");
  EXPECT_EQ(response.body, "hello");
  EXPECT_TRUE(response.ended);
  EXPECT_FALSE(response.reset.has_value());
  EXPECT_TRUE(client_->CanOpenStream());
  EXPECT_FALSE(server_io_.closed);
  EXPECT_EQ(server_->counters().requests, 1u);
  EXPECT_EQ(server_->counters().responses, 1u);
  EXPECT_EQ(client_->counters().responses, 1u);
}

TEST_F(CodecTest, RequestWireFormat) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/x");
  headers.Add("connection", "keep-alive, x-hop");
  headers.Add("transfer-encoding", "gzip");
  headers.Add("host", "ignored.example");
  headers.Add("x-evil", "a\r\nInjected: yes");
  request.EncodeHeaders(headers, true);
  std::string wire = client_io_.Take();
  EXPECT_EQ(wire, "GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n");
  EXPECT_EQ(client_io_.writes, 1);
}

// A CR, LF or NUL anywhere in a value (first word, later word, tail) drops the field; tabs and
// bytes above 0x7f do not.
TEST_F(CodecTest, FieldsThatWouldBreakTheLineAreNeverWritten) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/x");
  headers.Add("x-cr-late", "0123456789abcdef\rxyz");
  headers.Add("x-lf-tail", "0123456789\n");
  headers.Add("x-nul", std::string("abc\0def", 7));
  headers.Add("x-tab", "a\tb c d e f g h i");
  headers.Add("x-utf8", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac 0123456789");
  request.EncodeHeaders(headers, true);
  EXPECT_EQ(client_io_.Take(),
            "GET /x HTTP/1.1\r\nhost: example.com\r\nx-tab: a\tb c d e f g h i\r\n"
            "x-utf8: \xc3\xa9t\xc3\xa9 \xe2\x82\xac 0123456789\r\n\r\n");
}

// A trusted field (the tracer's traceparent) is written as it is; a filter that later Set()s the
// same name with an unsafe value gets no trust from it, and the field is dropped as any other.
TEST_F(CodecTest, TrustedFieldsAreWrittenAndSetClearsTheTrust) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/x");
  headers.AddTrusted("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  headers.AddTrusted("x-b3-spanid", "b7ad6b7169203331");
  headers.Set("x-b3-spanid", "a\r\nInjected: yes");
  request.EncodeHeaders(headers, true);
  EXPECT_EQ(client_io_.Take(),
            "GET /x HTTP/1.1\r\nhost: example.com\r\n"
            "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n");
}

// The checks go by words (16 bytes, 8 bytes, or byte by byte for short ones, the last word
// overlapping): a bad byte at every position of every length up to 40 is caught, and every
// byte a name or value may hold passes.
TEST_F(CodecTest, EveryBadByteIsCaughtWhereverItIs) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/x");
  std::string expected;
  for (size_t length = 1; length <= 40; ++length) {
    // Value bytes: anything but CR, LF, NUL (tab and bytes above 0x7f included).
    std::string value(length, 'v');
    for (size_t i = 0; i < length; ++i) value[i] = "a\t\x7f\xff 9-~"[i % 8];
    const std::string good_name = absl::StrCat("x-ok-", length);
    headers.Add(good_name, value);
    absl::StrAppend(&expected, good_name, ": ", value, "\r\n");
    for (size_t at = 0; at < length; ++at) {
      for (char bad : {'\r', '\n', '\0'}) {
        std::string broken = value;
        broken[at] = bad;
        headers.Add(absl::StrCat("x-bad-value-", length, "-", at, "-", int{bad}), broken);
      }
    }
    // Names: tchars (some below '-', which the fast test flags for a closer look) pass;
    // CR, LF, NUL, ':', SP and HTAB anywhere do not.
    std::string name(length, 'n');
    for (size_t i = 0; i < length; ++i) name[i] = "a!#$%&'*+.^_`|~0-z"[i % 18];
    headers.Add(name, "v");
    absl::StrAppend(&expected, name, ": v\r\n");
    for (size_t at = 0; at < length; ++at) {
      for (char bad : {'\r', '\n', '\0', ':', ' ', '\t'}) {
        std::string broken = name;
        broken[at] = bad;
        headers.Add(broken, "bad-name");
      }
    }
  }
  request.EncodeHeaders(headers, true);
  const std::string wire = client_io_.Take();
  EXPECT_EQ(wire, absl::StrCat("GET /x HTTP/1.1\r\nhost: example.com\r\n", expected, "\r\n"));
  EXPECT_THAT(wire, Not(HasSubstr("bad")));
}

TEST_F(CodecTest, PostWithContentLength) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/upload");
  headers.Set(":method", "POST");
  headers.Add("content-length", "11");
  request.EncodeHeaders(headers, false);
  SendBody(request, "hello ", false);
  SendBody(request, "world", true);
  std::string wire = client_io_.written.ToString();
  EXPECT_THAT(wire, HasSubstr("content-length: 11\r\n"));
  EXPECT_THAT(wire, Not(HasSubstr("chunked")));
  Pump();

  ServerRequest& r = Request(0);
  EXPECT_EQ(r.Header("content-length"), "11");
  EXPECT_EQ(r.body, "hello world");
  EXPECT_TRUE(r.ended);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "201"}}, true);
  Pump();
  EXPECT_EQ(response.Header(":status"), "201");
  EXPECT_TRUE(response.ended);
  EXPECT_TRUE(client_->CanOpenStream());
}

TEST_F(CodecTest, ChunkedBodiesAndTrailersBothWays) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/stream");
  headers.Set(":method", "POST");
  headers.Add("te", "trailers");
  request.EncodeHeaders(headers, false);
  SendBody(request, "abc", false);
  SendBody(request, "", false);  // nothing to send: no empty chunk (that would end the body)
  SendBody(request, "defgh", false);
  request.EncodeTrailers(HeaderMap{{"x-checksum", "42"}, {"content-length", "9"}});
  EXPECT_EQ(client_io_.written.ToString(),
            "POST /stream HTTP/1.1\r\nhost: example.com\r\nte: trailers\r\n"
            "transfer-encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n5\r\ndefgh\r\n0\r\nx-checksum: 42\r\n\r\n");
  Pump();

  ServerRequest& r = Request(0);
  EXPECT_EQ(r.body, "abcdefgh");
  ASSERT_NE(r.trailers, nullptr);
  EXPECT_EQ(r.trailers->Get("x-checksum").value_or(""), "42");
  EXPECT_TRUE(r.ended);

  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
  SendBody(*r.encoder, "0123456789abcdef0", false);
  r.encoder->EncodeTrailers(HeaderMap{{"grpc-status", "0"}});
  Pump();
  EXPECT_EQ(response.body, "0123456789abcdef0");
  ASSERT_NE(response.trailers, nullptr);
  EXPECT_EQ(response.trailers->Get("grpc-status").value_or(""), "0");
  EXPECT_TRUE(client_->CanOpenStream());
}

TEST_F(CodecTest, ChunkedRequestWithoutTrailersEndsWithEmptyData) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/");
  headers.Set(":method", "PUT");
  request.EncodeHeaders(headers, false);
  SendBody(request, "xyz", true);
  Pump();
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.body, "xyz");
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.trailers, nullptr);
}

TEST_F(CodecTest, TrailersDroppedWithoutChunking) {
  RecordingDecoder response;
  client_->NewStream(response).EncodeHeaders(Get("/"), true);
  Pump();
  ServerRequest& r = Request(0);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "2"}}, false);
  SendBody(*r.encoder, "ok", false);
  r.encoder->EncodeTrailers(HeaderMap{{"x-t", "1"}});
  Pump();
  EXPECT_EQ(response.body, "ok");
  EXPECT_TRUE(response.ended);
  EXPECT_EQ(response.trailers, nullptr);
  EXPECT_TRUE(client_->CanOpenStream());
}

TEST_F(CodecTest, KeepAliveReusesTheConnection) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_->CanOpenStream());
    RecordingDecoder response;
    client_->NewStream(response).EncodeHeaders(Get(absl::StrCat("/", i)), true);
    Pump();
    ServerRequest& r = Request(i);
    EXPECT_EQ(r.Header(":path"), absl::StrCat("/", i));
    r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
    SendBody(*r.encoder, absl::StrCat("body", i), true);
    Pump();
    EXPECT_EQ(response.body, absl::StrCat("body", i));
    EXPECT_TRUE(response.ended);
  }
  EXPECT_FALSE(server_io_.closed);
  EXPECT_FALSE(client_io_.closed);
  EXPECT_EQ(server_->counters().requests, 3u);
}

TEST_F(CodecTest, PipelinedRequestsAnsweredInOrder) {
  std::string three =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"
      "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
  net::Buffer in(three);
  ASSERT_TRUE(server_->Dispatch(in).ok());
  EXPECT_TRUE(in.empty());
  // Only the first request is decoded; the rest waits with reading paused.
  ASSERT_EQ(server_cb_.requests.size(), 1u);
  EXPECT_GT(server_io_.read_disabled, 0);

  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(server_cb_.requests.size(), static_cast<size_t>(i + 1));
    ServerRequest& r = Request(i);
    EXPECT_EQ(r.Header(":path"), absl::StrCat("/", i + 1));
    EXPECT_TRUE(r.ended);
    r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "1"}}, false);
    SendBody(*r.encoder, absl::StrCat(i + 1), true);
    // The next request is decoded on a later loop turn, never inside the encoder call.
    EXPECT_EQ(server_cb_.requests.size(), static_cast<size_t>(i + 1));
    loop_.RunUntilIdle();
  }
  EXPECT_EQ(Request(1).body, "xyz");
  EXPECT_EQ(server_io_.read_disabled, 0);
  std::string out = server_io_.Take();
  size_t p1 = out.find("\r\n\r\n1");
  size_t p2 = out.find("\r\n\r\n2");
  size_t p3 = out.find("\r\n\r\n3");
  ASSERT_NE(p1, std::string::npos);
  EXPECT_LT(p1, p2);
  EXPECT_LT(p2, p3);
}

TEST_F(CodecTest, PipelinedRequestsAnsweredInsideTheCallback) {
  server_cb_.on_new_stream = [](ServerRequest& r) {
    r.on_headers = [&r] { r.encoder->EncodeHeaders(HeaderMap{{":status", "204"}}, true); };
  };
  std::string out = ServerRoundTrip(
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(server_cb_.requests.size(), 3u);
  EXPECT_EQ(out,
            "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
            "HTTP/1.1 204 No Content\r\n\r\n");
}

TEST_F(CodecTest, ByteByByteRequest) {
  std::string req =
      "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nwiki\r\n5\r\npedia\r\n0\r\nx-t: v\r\n\r\n";
  for (char c : req) {
    net::Buffer b(absl::string_view(&c, 1));
    ASSERT_TRUE(server_->Dispatch(b).ok());
  }
  ASSERT_EQ(server_cb_.requests.size(), 1u);
  EXPECT_EQ(Request(0).body, "wikipedia");
  ASSERT_NE(Request(0).trailers, nullptr);
  EXPECT_EQ(Request(0).trailers->Get("x-t").value_or(""), "v");
}

TEST_F(CodecTest, LargeBodyIsRelinkedNotCopied) {
  std::string body(100000, 'b');
  std::string req = absl::StrCat("PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: ", body.size(),
                                 "\r\n\r\n", body);
  ServerRoundTrip(req);
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.body.size(), body.size());
  EXPECT_TRUE(r.ended);
  // Delivered in pieces no bigger than the input's blocks.
  EXPECT_GE(r.data_calls, static_cast<int>(body.size() / net::Buffer::kBlockSize));
}

TEST_F(CodecTest, HeadResponseHasNoBody) {
  RecordingDecoder response;
  HeaderMap headers = Get("/");
  headers.Set(":method", "HEAD");
  client_->NewStream(response).EncodeHeaders(headers, true);
  Pump();
  ServerRequest& r = Request(0);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "1234"}}, false);
  SendBody(*r.encoder, "dropped", true);
  std::string wire = server_io_.written.ToString();
  EXPECT_EQ(wire, "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n");
  Pump();
  EXPECT_EQ(response.Header("content-length"), "1234");
  EXPECT_TRUE(response.ended);
  EXPECT_EQ(response.body, "");
  EXPECT_TRUE(client_->CanOpenStream());
}

TEST_F(CodecTest, NoContentAndNotModified) {
  for (absl::string_view status : {"204", "304"}) {
    RecordingDecoder response;
    client_->NewStream(response).EncodeHeaders(Get("/"), true);
    Pump();
    ServerRequest& r = *server_cb_.requests.back();
    r.encoder->EncodeHeaders(HeaderMap{{":status", status}, {"content-length", "10"}}, false);
    SendBody(*r.encoder, "ignored", true);
    std::string wire = server_io_.written.ToString();
    EXPECT_THAT(wire, StartsWith(absl::StrCat("HTTP/1.1 ", status)));
    EXPECT_THAT(wire, Not(HasSubstr("ignored")));
    EXPECT_THAT(wire, Not(HasSubstr("chunked")));
    // 204 never states a length; 304 may state the representation's.
    EXPECT_EQ(absl::StrContains(wire, "content-length"), status == "304");
    Pump();
    EXPECT_EQ(response.Header(":status"), status);
    EXPECT_TRUE(response.ended);
    EXPECT_TRUE(client_->CanOpenStream());
  }
}

TEST_F(CodecTest, EmptyResponseStatesZeroLength) {
  std::string out = ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  EXPECT_EQ(server_io_.Take(), "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
}

TEST_F(CodecTest, ExpectContinueHandledByTheUser) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/upload");
  headers.Set(":method", "POST");
  headers.Add("content-length", "4");
  headers.Add("expect", "100-continue");
  request.EncodeHeaders(headers, false);
  Pump();
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.Header("expect"), "100-continue");
  EXPECT_FALSE(r.ended);

  r.encoder->Encode1xxHeaders(HeaderMap{{":status", "100"}});
  Pump();
  ASSERT_EQ(response.informational.size(), 1u);
  EXPECT_EQ(response.informational[0]->Get(":status").value_or(""), "100");
  EXPECT_EQ(response.headers, nullptr);

  SendBody(request, "data", true);
  Pump();
  EXPECT_EQ(r.body, "data");
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  Pump();
  EXPECT_EQ(response.Header(":status"), "200");
  EXPECT_TRUE(response.ended);
  EXPECT_TRUE(client_->CanOpenStream());
  EXPECT_EQ(client_->counters().informational, 1u);
}

TEST_F(CodecTest, AutoContinueWaitsUntilTheUserReads) {
  CodecOptions options;
  options.auto_continue = true;
  Rebuild(options, CodecOptions());
  server_cb_.on_new_stream = [](ServerRequest& r) {
    r.on_headers = [&r] { r.encoder->GetStream().ReadDisable(true); };
  };
  std::string out = ServerRoundTrip(
      "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  ServerRequest& r = Request(0);
  EXPECT_FALSE(r.headers->Has("expect"));
  EXPECT_EQ(out, "");  // read-disabled: not reading the body yet
  EXPECT_EQ(server_io_.read_disabled, 1);
  r.encoder->GetStream().ReadDisable(false);
  EXPECT_EQ(server_io_.Take(), "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(server_io_.read_disabled, 0);
  net::Buffer body("ok");
  ASSERT_TRUE(server_->Dispatch(body).ok());
  EXPECT_EQ(r.body, "ok");
  EXPECT_TRUE(r.ended);
}

TEST_F(CodecTest, FinalResponseWithoutContinueClosesTheConnection) {
  ServerRoundTrip(
      "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  ServerRequest& r = Request(0);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "417"}}, true);
  std::string out = server_io_.Take();
  EXPECT_THAT(out, StartsWith("HTTP/1.1 417 Expectation Failed\r\n"));
  EXPECT_THAT(out, HasSubstr("connection: close\r\n"));
  EXPECT_TRUE(server_io_.closed);
  EXPECT_TRUE(server_io_.close_flush);
  EXPECT_FALSE(r.reset.has_value());
}

TEST_F(CodecTest, WebSocketUpgradeRoundTrip) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/chat");
  headers.Add("upgrade", "websocket");
  headers.Add("connection", "upgrade");
  headers.Add("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
  request.EncodeHeaders(headers, false);
  EXPECT_THAT(client_io_.written.ToString(),
              HasSubstr("connection: upgrade\r\nupgrade: websocket\r\n\r\n"));
  Pump();
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.Header("upgrade"), "websocket");
  EXPECT_FALSE(r.ended);

  r.encoder->EncodeHeaders(
      HeaderMap{{":status", "101"}, {"upgrade", "websocket"}, {"sec-websocket-accept", "s3pP"}},
      false);
  EXPECT_THAT(server_io_.written.ToString(),
              StartsWith("HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: s3pP\r\n"
                         "connection: upgrade\r\nupgrade: websocket\r\n\r\n"));
  Pump();
  EXPECT_EQ(response.Header(":status"), "101");
  EXPECT_FALSE(response.ended);

  // Raw bytes both ways, including bytes that look like HTTP.
  SendBody(request, "\x81\x05hello GET / HTTP/1.1\r\n", false);
  Pump();
  EXPECT_EQ(r.body, "\x81\x05hello GET / HTTP/1.1\r\n");
  SendBody(*r.encoder, "\x81\x02hi", false);
  Pump();
  EXPECT_EQ(response.body, "\x81\x02hi");
  EXPECT_EQ(server_->counters().upgrades, 1u);
  EXPECT_EQ(client_->counters().upgrades, 1u);

  // The client's end of its direction closes the connection (no half-close in CodecIo).
  SendBody(request, "bye", true);
  EXPECT_TRUE(client_io_.closed);
  Pump();
  EXPECT_EQ(r.body, "\x81\x05hello GET / HTTP/1.1\r\nbye");
  ASSERT_TRUE(server_->OnEndOfStream().ok());
  EXPECT_TRUE(r.ended);
}

TEST_F(CodecTest, BytesAfterUpgradeRequestWaitForThe101) {
  ServerRoundTrip(
      "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly");
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(server_io_.read_disabled, 1);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "101"}, {"upgrade", "websocket"}}, false);
  loop_.RunUntilIdle();
  EXPECT_EQ(r.body, "early");
  EXPECT_EQ(server_io_.read_disabled, 0);
}

TEST_F(CodecTest, RefusedUpgradeClosesAfterTheResponse) {
  ServerRoundTrip(
      "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  EXPECT_THAT(server_io_.Take(), HasSubstr("connection: close\r\n"));
  EXPECT_TRUE(server_io_.closed);
}

TEST_F(CodecTest, ConnectRefusedByDefault) {
  std::string out =
      ServerRoundTrip("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n");
  EXPECT_THAT(out, StartsWith("HTTP/1.1 403 Forbidden\r\n"));
  EXPECT_THAT(out, HasSubstr("connection: close\r\n"));
  EXPECT_EQ(server_status_.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(server_cb_.requests.empty());
  EXPECT_TRUE(server_io_.closed);
  EXPECT_EQ(server_->counters().connect_refused, 1u);
}

TEST_F(CodecTest, ConnectTunnelWhenAllowed) {
  CodecOptions options;
  options.allow_connect = true;
  Rebuild(options, CodecOptions());
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  request.EncodeHeaders(HeaderMap{{":method", "CONNECT"}, {":authority", "db.internal:5432"}},
                        false);
  EXPECT_EQ(client_io_.written.ToString(),
            "CONNECT db.internal:5432 HTTP/1.1\r\nhost: db.internal:5432\r\n\r\n");
  Pump();
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.Header(":method"), "CONNECT");
  EXPECT_EQ(r.Header(":authority"), "db.internal:5432");
  EXPECT_FALSE(r.headers->Has(":path"));
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
  Pump();
  EXPECT_EQ(response.Header(":status"), "200");
  SendBody(request, absl::string_view("raw\0bytes", 9), false);
  SendBody(*r.encoder, "back", false);
  Pump();
  EXPECT_EQ(r.body, std::string("raw\0bytes", 9));
  EXPECT_EQ(response.body, "back");
}

// Any 2xx answers CONNECT with a tunnel (RFC 9110 9.3.6); the client's parser read what followed
// a 204 as HTTP/1 responses before (found by parser_differential_fuzz).
TEST_F(CodecTest, ConnectTunnelOn204) {
  CodecOptions options;
  options.allow_connect = true;
  Rebuild(options, CodecOptions());
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  request.EncodeHeaders(HeaderMap{{":method", "CONNECT"}, {":authority", "db.internal:5432"}},
                        false);
  Pump();
  ServerRequest& r = Request(0);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "204"}}, false);
  SendBody(*r.encoder, "HTTP/1.1 200 OK\r\n\r\n", false);
  Pump();
  EXPECT_EQ(response.Header(":status"), "204");
  EXPECT_EQ(response.body, "HTTP/1.1 200 OK\r\n\r\n");
  SendBody(request, "raw", false);
  Pump();
  EXPECT_EQ(r.body, "raw");
}

struct ErrorCase {
  const char* name;
  std::string request;
  int status;
  ParserError error;
};

class ErrorResponseTest : public CodecTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(ErrorResponseTest, MapsToStatusAndCloses) {
  CodecOptions options;
  options.limits.max_uri_bytes = 64;
  options.limits.max_header_bytes = 256;
  options.limits.max_header_count = 5;
  Rebuild(options, CodecOptions());
  const ErrorCase& c = GetParam();
  std::string out = ServerRoundTrip(c.request);
  EXPECT_FALSE(server_status_.ok());
  EXPECT_THAT(out, StartsWith(absl::StrCat("HTTP/1.1 ", c.status, " ")));
  EXPECT_THAT(out, HasSubstr("connection: close\r\n"));
  EXPECT_THAT(out, HasSubstr(std::string(ParserErrorMessage(c.error))));
  EXPECT_TRUE(server_io_.closed);
  EXPECT_EQ(server_->counters().ProtocolErrors(c.error), 1u);
  EXPECT_EQ(server_->counters().ProtocolErrorsWithStatus(c.status), 1u);
  // A stream that had begun is reset as a protocol error.
  for (auto& r : server_cb_.requests) {
    ASSERT_TRUE(r->reset.has_value());
    EXPECT_EQ(*r->reset, StreamResetReason::kProtocolError);
  }
  // Later bytes are ignored.
  net::Buffer more("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_FALSE(server_->Dispatch(more).ok());
  EXPECT_EQ(server_io_.Take(), "");
}

INSTANTIATE_TEST_SUITE_P(
    Framing, ErrorResponseTest,
    ::testing::Values(
        ErrorCase{"BadMethod", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                  ParserError::kInvalidMethod},
        ErrorCase{"BareLf", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400, ParserError::kBareLf},
        ErrorCase{"MissingHost", "GET / HTTP/1.1\r\n\r\n", 400, ParserError::kMissingHost},
        ErrorCase{"HostList", "GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n", 400,
                  ParserError::kInvalidHost},
        ErrorCase{"HostUserinfo", "GET / HTTP/1.1\r\nHost: u:p@h:80\r\n\r\n", 400,
                  ParserError::kInvalidHost},
        ErrorCase{"HostPortNotNumeric", "GET / HTTP/1.1\r\nHost: h:http\r\n\r\n", 400,
                  ParserError::kInvalidHost},
        ErrorCase{"DuplicateHost", "GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", 400,
                  ParserError::kDuplicateHost},
        ErrorCase{"AuthorityFormNotConnect", "GET a.example:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                  ParserError::kInvalidTarget},
        ErrorCase{"HttpUriWithoutHost", "GET http:/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                  ParserError::kInvalidTarget},
        ErrorCase{"AbsoluteFormUserinfo", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                  ParserError::kInvalidTarget},
        ErrorCase{"ClAndTe",
                  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n",
                  400, ParserError::kContentLengthAndTransferEncoding},
        ErrorCase{"UriTooLong", absl::StrCat("GET /", std::string(100, 'a'), " HTTP/1.1\r\n\r\n"),
                  414, ParserError::kUriTooLong},
        ErrorCase{
            "HeadersTooLarge",
            absl::StrCat("GET / HTTP/1.1\r\nHost: h\r\nX: ", std::string(300, 'v'), "\r\n\r\n"),
            431, ParserError::kHeaderSectionTooLarge},
        ErrorCase{"TooManyHeaders",
                  "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431,
                  ParserError::kTooManyHeaders},
        ErrorCase{"ChunkedNotLast",
                  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
                  ParserError::kInvalidTransferEncoding},
        ErrorCase{"UnknownCoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br\r\n\r\n",
                  501, ParserError::kUnsupportedTransferEncoding},
        ErrorCase{"Version", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505,
                  ParserError::kVersionNotSupported},
        ErrorCase{"BadChunk",
                  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
                  ParserError::kInvalidChunkSize}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::string(info.param.name); });

TEST_F(CodecTest, ErrorAfterResponseStartedOnlyResets) {
  ServerRoundTrip("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
  ServerRequest& r = Request(0);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
  server_io_.Take();
  std::string out = ServerRoundTrip("xyz\r\n");
  EXPECT_EQ(out, "");  // the response is under way: nothing more can be said in it
  ASSERT_TRUE(r.reset.has_value());
  EXPECT_EQ(*r.reset, StreamResetReason::kProtocolError);
  EXPECT_TRUE(server_io_.closed);
}

TEST_F(CodecTest, Http10CloseDelimitedResponse) {
  std::string out = ServerRoundTrip("GET /old HTTP/1.0\r\n\r\n");
  ServerRequest& r = Request(0);
  EXPECT_EQ(server_->protocol(), Protocol::kHttp10);
  EXPECT_FALSE(r.headers->Has(":authority"));
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"x-a", "b"}}, false);
  SendBody(*r.encoder, "streamed ", false);
  EXPECT_FALSE(server_io_.closed);
  SendBody(*r.encoder, "until close", true);
  EXPECT_EQ(server_io_.Take(),
            "HTTP/1.1 200 OK\r\nx-a: b\r\nconnection: close\r\n\r\nstreamed until close");
  EXPECT_TRUE(server_io_.closed);
  EXPECT_TRUE(server_io_.close_flush);
}

TEST_F(CodecTest, Http10KeepAlive) {
  ServerRoundTrip("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "0"}}, true);
  EXPECT_EQ(server_io_.Take(),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n");
  EXPECT_FALSE(server_io_.closed);
}

TEST_F(CodecTest, ClientReadsCloseDelimitedResponse) {
  RecordingDecoder response;
  client_->NewStream(response).EncodeHeaders(Get("/"), true);
  net::Buffer in("HTTP/1.0 200 OK\r\nX: y\r\n\r\npart one, ");
  ASSERT_TRUE(client_->Dispatch(in).ok());
  EXPECT_EQ(client_cb_.goaways, 1);
  net::Buffer more("part two");
  ASSERT_TRUE(client_->Dispatch(more).ok());
  EXPECT_FALSE(response.ended);
  ASSERT_TRUE(client_->OnEndOfStream().ok());
  EXPECT_EQ(response.body, "part one, part two");
  EXPECT_TRUE(response.ended);
  EXPECT_FALSE(response.reset.has_value());
  EXPECT_FALSE(client_->CanOpenStream());
  EXPECT_TRUE(client_io_.closed);
}

TEST_F(CodecTest, ConnectionCloseResponseStopsReuse) {
  RecordingDecoder response;
  client_->NewStream(response).EncodeHeaders(Get("/"), true);
  net::Buffer in("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(client_->Dispatch(in).ok());
  EXPECT_EQ(client_cb_.goaways, 1);
  EXPECT_TRUE(response.ended);
  EXPECT_FALSE(client_->CanOpenStream());
  EXPECT_TRUE(client_io_.closed);
}

TEST_F(CodecTest, ServerGoAwaySaysClose) {
  RecordingDecoder response;
  client_->NewStream(response).EncodeHeaders(Get("/"), true);
  Pump();
  server_->GoAway();
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  EXPECT_THAT(server_io_.written.ToString(), HasSubstr("connection: close\r\n"));
  EXPECT_TRUE(server_io_.closed);
  Pump();
  EXPECT_TRUE(response.ended);
  EXPECT_EQ(client_cb_.goaways, 1);
  EXPECT_FALSE(client_->CanOpenStream());
}

TEST_F(CodecTest, RequestConnectionCloseIsHonoured) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  EXPECT_THAT(server_io_.Take(), HasSubstr("connection: close\r\n"));
  EXPECT_TRUE(server_io_.closed);
}

TEST_F(CodecTest, ClientGoAwaySendsClose) {
  client_->GoAway();
  EXPECT_FALSE(client_->CanOpenStream());
}

TEST_F(CodecTest, ClientResetDetailsSayWhetherTheRequestWasSent) {
  {
    RecordingDecoder response;
    StreamEncoder& e = client_->NewStream(response);
    e.GetStream().AddCallbacks(response);
    client_->OnConnectionClosed();
    ASSERT_TRUE(response.reset.has_value());
    EXPECT_EQ(*response.reset, StreamResetReason::kConnectionTermination);
    EXPECT_EQ(response.reset_details, kResetDetailRequestNotSent);
  }
  Rebuild(CodecOptions(), CodecOptions());
  {
    RecordingDecoder response;
    StreamEncoder& e = client_->NewStream(response);
    e.GetStream().AddCallbacks(response);
    e.EncodeHeaders(Get("/"), true);
    EXPECT_GT(client_->request_bytes_written(), 0u);
    EXPECT_FALSE(client_->OnEndOfStream().ok());
    ASSERT_TRUE(response.reset.has_value());
    EXPECT_EQ(*response.reset, StreamResetReason::kConnectionTermination);
    EXPECT_EQ(response.reset_details, kResetDetailNoResponse);
    EXPECT_EQ(client_cb_.goaways, 1);
  }
  Rebuild(CodecOptions(), CodecOptions());
  {
    RecordingDecoder response;
    StreamEncoder& e = client_->NewStream(response);
    e.GetStream().AddCallbacks(response);
    e.EncodeHeaders(Get("/"), true);
    net::Buffer in("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    ASSERT_TRUE(client_->Dispatch(in).ok());
    EXPECT_FALSE(client_->OnEndOfStream().ok());
    ASSERT_TRUE(response.reset.has_value());
    EXPECT_EQ(response.reset_details, kResetDetailResponseIncomplete);
  }
}

TEST_F(CodecTest, ClientRejectsUnsolicitedAndMalformedResponses) {
  net::Buffer junk("HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_FALSE(client_->Dispatch(junk).ok());
  EXPECT_TRUE(client_io_.closed);

  Rebuild(CodecOptions(), CodecOptions());
  RecordingDecoder response;
  StreamEncoder& e = client_->NewStream(response);
  e.GetStream().AddCallbacks(response);
  e.EncodeHeaders(Get("/"), true);
  net::Buffer bad("HTTP/1.1 2x0 OK\r\n\r\n");
  EXPECT_FALSE(client_->Dispatch(bad).ok());
  ASSERT_TRUE(response.reset.has_value());
  EXPECT_EQ(*response.reset, StreamResetReason::kProtocolError);
  EXPECT_EQ(client_->counters().ProtocolErrors(ParserError::kInvalidStatus), 1u);
}

TEST_F(CodecTest, ServerPeerClosedMidRequest) {
  ServerRoundTrip("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
  ServerRequest& r = Request(0);
  EXPECT_FALSE(server_->OnEndOfStream().ok());
  ASSERT_TRUE(r.reset.has_value());
  EXPECT_EQ(*r.reset, StreamResetReason::kConnectionTermination);
  EXPECT_TRUE(server_io_.closed);
}

TEST_F(CodecTest, HalfClosedClientStillGetsItsResponse) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_TRUE(server_->OnEndOfStream().ok());
  EXPECT_FALSE(server_io_.closed);
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  EXPECT_THAT(server_io_.Take(), HasSubstr("connection: close\r\n"));
  EXPECT_TRUE(server_io_.closed);
}

TEST_F(CodecTest, HeadInProgressTracksPartialHeads) {
  EXPECT_FALSE(server_->request_head_in_progress());
  ServerRoundTrip("GET / HTTP/1.1\r\nHo");
  EXPECT_TRUE(server_->request_head_in_progress());
  EXPECT_TRUE(server_cb_.requests.empty());
  ServerRoundTrip("st: h\r\n\r\n");
  EXPECT_FALSE(server_->request_head_in_progress());
  EXPECT_EQ(server_cb_.requests.size(), 1u);
}

TEST_F(CodecTest, AbsoluteFormTarget) {
  // RFC 9112 3.2.2: the target's authority replaces Host, which is not passed on.
  ServerRoundTrip("GET HTTP://Proxy.Example:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.Header(":scheme"), "http");
  EXPECT_EQ(r.Header(":authority"), "Proxy.Example:8080");
  EXPECT_EQ(r.Header(":path"), "/?q=1");
  EXPECT_FALSE(r.headers->Has("host"));
  EXPECT_EQ(r.headers->Count(":authority"), 1u);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "204"}}, true);
  server_io_.Take();

  ServerRoundTrip("GET https://[::1]:8443/a/b HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
  ServerRequest& r2 = Request(1);
  EXPECT_EQ(r2.Header(":scheme"), "https");
  EXPECT_EQ(r2.Header(":authority"), "[::1]:8443");
  EXPECT_EQ(r2.Header(":path"), "/a/b");
}

TEST_F(CodecTest, SchemeOption) {
  CodecOptions options;
  options.scheme = "https";
  Rebuild(options, CodecOptions());
  ServerRoundTrip("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(Request(0).Header(":scheme"), "https");
  EXPECT_EQ(Request(0).Header(":path"), "*");
}

TEST_F(CodecTest, ResponseDropsHopByHopAndPseudoHeaders) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"},
                                              {"connection", "x-private"},
                                              {"keep-alive", "timeout=5"},
                                              {"transfer-encoding", "gzip"},
                                              {"upgrade", "h2c"},
                                              {"te", "trailers"},
                                              {"x-kept", "yes"}},
                                    false);
  SendBody(*Request(0).encoder, "ab", true);
  EXPECT_EQ(server_io_.Take(),
            "HTTP/1.1 200 OK\r\nx-kept: yes\r\ntransfer-encoding: chunked\r\n\r\n"
            "2\r\nab\r\n0\r\n\r\n");
}

TEST_F(CodecTest, ReadDisableStopsDelivery) {
  server_cb_.on_new_stream = [](ServerRequest& r) {
    r.on_headers = [&r] { r.encoder->GetStream().ReadDisable(true); };
  };
  ServerRoundTrip("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc");
  ServerRequest& r = Request(0);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(server_io_.read_disabled, 2);  // the stream's, and the hold on buffered input
  r.encoder->GetStream().ReadDisable(true);
  r.encoder->GetStream().ReadDisable(false);
  loop_.RunUntilIdle();
  EXPECT_EQ(r.body, "");  // still disabled once
  r.encoder->GetStream().ReadDisable(false);
  EXPECT_EQ(r.body, "");  // delivered on a later loop turn, not inside ReadDisable
  loop_.RunUntilIdle();
  EXPECT_EQ(r.body, "abc");
  EXPECT_EQ(server_io_.read_disabled, 0);
  ServerRoundTrip("def");
  EXPECT_EQ(r.body, "abcdef");
  EXPECT_TRUE(r.ended);
}

TEST_F(CodecTest, WatermarksReachTheActiveStream) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  ServerRequest& r = Request(0);
  server_->OnUnderlyingWriteHighWatermark();
  EXPECT_EQ(r.high_watermarks, 1);
  server_->OnUnderlyingWriteLowWatermark();
  EXPECT_EQ(r.low_watermarks, 1);
  EXPECT_EQ(r.encoder->GetStream().BufferLimit(), CodecOptions().stream_buffer_limit);
}

TEST_F(CodecTest, NoRequestIsReadWhileTheClientLeavesResponsesUnread) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  server_->OnUnderlyingWriteHighWatermark();
  EXPECT_EQ(Request(0).high_watermarks, 1);
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  // The next request (and the start of another) waits, with reading stopped, until the client
  // has read enough of what it was sent.
  ServerRoundTrip("GET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HT");
  EXPECT_EQ(server_cb_.requests.size(), 1u);
  EXPECT_GT(server_io_.read_disabled, 0);
  server_->OnUnderlyingWriteLowWatermark();
  EXPECT_EQ(server_cb_.requests.size(), 1u);  // never from inside the watermark call
  loop_.RunUntilIdle();
  ASSERT_EQ(server_cb_.requests.size(), 2u);
  EXPECT_EQ(Request(1).Header(":path"), "/2");
  EXPECT_EQ(Request(1).high_watermarks, 0);
  Request(1).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  loop_.RunUntilIdle();
  EXPECT_EQ(server_io_.read_disabled, 0);
  ServerRoundTrip("TP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(server_cb_.requests.size(), 3u);
  EXPECT_EQ(Request(2).Header(":path"), "/3");
}

TEST_F(CodecTest, APipelinedBurstIsReadAFewRequestsPerLoopTurn) {
  CodecOptions options;
  options.max_messages_per_pass = 4;
  Rebuild(options, CodecOptions());
  server_cb_.on_new_stream = [](ServerRequest& r) {
    r.on_headers = [&r] { r.encoder->EncodeHeaders(HeaderMap{{":status", "204"}}, true); };
  };
  std::string burst;
  for (int i = 0; i < 10; ++i) absl::StrAppend(&burst, "GET /", i, " HTTP/1.1\r\nHost: a\r\n\r\n");
  net::Buffer in(burst);
  ASSERT_TRUE(server_->Dispatch(in).ok());
  EXPECT_EQ(server_cb_.requests.size(), 4u);
  EXPECT_GT(server_io_.read_disabled, 0);  // the rest is held, so nothing more is read
  loop_.RunUntilIdle();
  ASSERT_EQ(server_cb_.requests.size(), 10u);
  EXPECT_EQ(Request(9).Header(":path"), "/9");
  EXPECT_EQ(server_io_.read_disabled, 0);
}

TEST_F(CodecTest, LocalResetClosesWithoutFlush) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  ServerRequest& r = Request(0);
  r.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  ASSERT_TRUE(r.reset.has_value());
  EXPECT_EQ(*r.reset, StreamResetReason::kLocalReset);
  EXPECT_TRUE(server_io_.closed);
  EXPECT_FALSE(server_io_.close_flush);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(CodecTest, ConnectionClosedResetsServerStream) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  server_->OnConnectionClosed();
  ASSERT_TRUE(Request(0).reset.has_value());
  EXPECT_EQ(*Request(0).reset, StreamResetReason::kConnectionTermination);
  EXPECT_EQ(server_io_.close_calls, 0);
}

TEST_F(CodecTest, InvalidStatusResets) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "abc"}}, true);
  ASSERT_TRUE(Request(0).reset.has_value());
  EXPECT_TRUE(server_io_.closed);
}

TEST_F(CodecTest, ShortBodyResetsTheStream) {
  ServerRoundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "10"}}, false);
  SendBody(*Request(0).encoder, "short", true);
  ASSERT_TRUE(Request(0).reset.has_value());
  EXPECT_FALSE(server_io_.close_flush);
}

TEST_F(CodecTest, EarlyResponseBeforeUploadEnds) {
  RecordingDecoder response;
  StreamEncoder& request = client_->NewStream(response);
  HeaderMap headers = Get("/upload");
  headers.Set(":method", "POST");
  request.EncodeHeaders(headers, false);
  SendBody(request, "part", false);
  Pump();
  ServerRequest& r = Request(0);
  r.encoder->EncodeHeaders(HeaderMap{{":status", "413"}}, true);
  EXPECT_TRUE(server_io_.closed);
  Pump();
  EXPECT_EQ(response.Header(":status"), "413");
  EXPECT_TRUE(response.ended);
  EXPECT_FALSE(client_->CanOpenStream());
  EXPECT_EQ(client_cb_.goaways, 1);
  SendBody(request, "ignored", true);  // no crash, nothing written
}

TEST_F(CodecTest, ClientInformationalThenFinal) {
  RecordingDecoder response;
  client_->NewStream(response).EncodeHeaders(Get("/"), true);
  net::Buffer in(
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
  ASSERT_TRUE(client_->Dispatch(in).ok());
  ASSERT_EQ(response.informational.size(), 1u);
  EXPECT_EQ(response.informational[0]->Get("link").value_or(""), "</a.css>");
  EXPECT_EQ(response.body, "x");
  EXPECT_TRUE(client_->CanOpenStream());
}

TEST_F(CodecTest, ClientCanReuseInsideTheEndCallback) {
  RecordingDecoder first;
  RecordingDecoder second;
  first.on_data = [&] {
    if (first.ended) client_->NewStream(second).EncodeHeaders(Get("/2"), true);
  };
  client_->NewStream(first).EncodeHeaders(Get("/1"), true);
  client_io_.Take();
  net::Buffer in(
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB");
  ASSERT_TRUE(client_->Dispatch(in).ok());
  EXPECT_EQ(first.body, "A");
  EXPECT_EQ(second.body, "B");
  EXPECT_TRUE(second.ended);
}

TEST_F(CodecTest, RandomSplitsGiveTheSameResult) {
  const std::string input =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
      "PUT /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwxyz";
  uint32_t seed = 12345;
  for (int round = 0; round < 200; ++round) {
    Rebuild(CodecOptions(), CodecOptions());
    server_cb_.on_new_stream = [](ServerRequest& r) {
      r.on_headers = [&r] {
        if (r.ended) r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
      };
      r.on_data = [&r] {
        if (r.ended) r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
      };
    };
    size_t pos = 0;
    while (pos < input.size()) {
      seed = seed * 1103515245 + 12345;
      size_t n = std::min(input.size() - pos, size_t{1} + (seed >> 16) % 40);
      net::Buffer b(absl::string_view(input).substr(pos, n));
      ASSERT_TRUE(server_->Dispatch(b).ok());
      loop_.RunUntilIdle();
      pos += n;
    }
    ASSERT_EQ(server_cb_.requests.size(), 3u) << "round " << round;
    EXPECT_EQ(Request(1).body, "abcde");
    EXPECT_EQ(Request(2).body, "wxyz");
    EXPECT_EQ(server_->ActiveStreams(), 0u);
  }
}

TEST_F(CodecTest, GarbageNeverCrashes) {
  uint32_t seed = 99;
  const std::string alphabet = "GET /HTP1.\r\n:aZ0 \t;chunked\x00\xff";
  for (int round = 0; round < 300; ++round) {
    Rebuild(CodecOptions(), CodecOptions());
    RecordingDecoder response;
    client_->NewStream(response).EncodeHeaders(Get("/"), false);
    std::string junk = round % 2 == 0 ? "POST / HTTP/1.1\r\nHost: h\r\n" : "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 64; ++i) {
      seed = seed * 1103515245 + 12345;
      junk.push_back(alphabet[(seed >> 16) % alphabet.size()]);
    }
    net::Buffer a(junk), b(junk);
    (void)server_->Dispatch(a);
    (void)client_->Dispatch(b);
    (void)server_->OnEndOfStream();
    (void)client_->OnEndOfStream();
    loop_.RunUntilIdle();
  }
}

TEST_F(CodecTest, SharedCounters) {
  CodecCounters shared;
  CodecOptions options;
  options.counters = &shared;
  Rebuild(options, options);
  RecordingDecoder response;
  client_->NewStream(response).EncodeHeaders(Get("/"), true);
  Pump();
  Request(0).encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, true);
  Pump();
  EXPECT_EQ(shared.requests, 2u);  // one encoded by the client, one decoded by the server
  EXPECT_EQ(shared.responses, 2u);
}

}  // namespace
}  // namespace meshlet::http::h1
