#include "common/http/h2/codec.h"

#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using testing::ClientRequest;
using testing::CodecPair;
using testing::Request;
using testing::ServerRequest;

std::string Pattern(size_t n, size_t offset = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (offset + i) % 26);
  return s;
}

void Send(StreamEncoder& encoder, absl::string_view data, bool end_stream) {
  net::Buffer b(data);
  encoder.EncodeData(b, end_stream);
  EXPECT_TRUE(b.empty());
}

void Respond(ServerRequest& r, absl::string_view body, bool trailers = false) {
  r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, body.empty() && !trailers);
  if (!body.empty()) Send(*r.encoder, body, !trailers);
  if (trailers) r.encoder->EncodeTrailers(HeaderMap{{"grpc-status", "0"}, {"x-done", "yes"}});
}

TEST(Http2CodecTest, OptionsValidation) {
  EXPECT_TRUE(ValidateOptions({}).ok());
  Http2Options o;
  o.max_frame_size = 100;
  EXPECT_FALSE(ValidateOptions(o).ok());
  o = {};
  o.initial_stream_window_size = 1u << 31;
  EXPECT_FALSE(ValidateOptions(o).ok());
  o = {};
  o.max_outbound_control_frames = 0;
  EXPECT_FALSE(ValidateOptions(o).ok());
  o = {};
  o.max_inbound_window_update_frames_per_data_frame_sent = 0;
  EXPECT_FALSE(ValidateOptions(o).ok());
  EXPECT_EQ(ErrorCodeSlotName(ErrorCodeSlot(NGHTTP2_REFUSED_STREAM)), "REFUSED_STREAM");
  EXPECT_EQ(ErrorCodeSlotName(ErrorCodeSlot(0x1234)), "UNKNOWN");
}

// Found by codec_fuzz: a client that cancels with RST_STREAM(NO_ERROR) after its request ended
// but before the response left ended the server stream silently, so its user kept a dangling
// encoder and was never told (nor on connection close).
TEST(Http2CodecTest, PeerResetWithNoErrorBeforeTheResponseResetsTheServerStream) {
  CodecPair pair;
  pair.Start(Request(), /*end_stream=*/true);
  ASSERT_TRUE(pair.Pump().ok());
  ASSERT_EQ(pair.server_callbacks.requests.size(), 1u);
  ServerRequest& r = *pair.server_callbacks.requests[0];
  ASSERT_TRUE(r.decoder.end);
  // RST_STREAM(NO_ERROR) on stream 1, written by hand: our client codec sends CANCEL.
  net::Buffer rst;
  rst.Append(absl::string_view("\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x00", 13));
  ASSERT_TRUE(pair.server->Dispatch(rst).ok());
  EXPECT_EQ(r.callbacks.resets, 1);
  EXPECT_EQ(r.callbacks.reason, StreamResetReason::kRemoteReset);
  EXPECT_EQ(pair.server->ActiveStreams(), 0u);
}

TEST(Http2CodecTest, RequestAndResponseWithBodiesAndTrailers) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  HeaderMap req = Request("POST", "/upload");
  req.Add("x-custom", "one");
  ClientRequest& c = p.Start(req, false);
  Send(*c.encoder, "hello ", false);
  Send(*c.encoder, "world", false);
  c.encoder->EncodeTrailers(HeaderMap{{"x-checksum", "abc"}});
  ASSERT_TRUE(p.Pump().ok());

  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  ServerRequest& s = *p.server_callbacks.requests[0];
  ASSERT_NE(s.decoder.headers, nullptr);
  EXPECT_EQ(s.decoder.headers->Get(":method"), "POST");
  EXPECT_EQ(s.decoder.headers->Get(":path"), "/upload");
  EXPECT_EQ(s.decoder.headers->Get(":authority"), "example.test");
  EXPECT_EQ(s.decoder.headers->Get(":scheme"), "http");
  EXPECT_EQ(s.decoder.headers->Get("x-custom"), "one");
  EXPECT_EQ(s.decoder.body, "hello world");
  ASSERT_NE(s.decoder.trailers, nullptr);
  EXPECT_EQ(s.decoder.trailers->Get("x-checksum"), "abc");
  EXPECT_TRUE(s.decoder.end);
  EXPECT_EQ(p.server->ActiveStreams(), 1u);

  s.encoder->Encode1xxHeaders(HeaderMap{{":status", "100"}});
  s.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"content-type", "text/plain"}}, false);
  Send(*s.encoder, "response body", false);
  s.encoder->EncodeTrailers(HeaderMap{{"grpc-status", "0"}, {"grpc-message", "ok"}});
  ASSERT_TRUE(p.Pump().ok());

  ASSERT_EQ(c.decoder.informational.size(), 1u);
  EXPECT_EQ(c.decoder.informational[0]->Get(":status"), "100");
  ASSERT_NE(c.decoder.headers, nullptr);
  EXPECT_EQ(c.decoder.headers->Get(":status"), "200");
  EXPECT_EQ(c.decoder.headers->Get("content-type"), "text/plain");
  EXPECT_EQ(c.decoder.body, "response body");
  ASSERT_NE(c.decoder.trailers, nullptr);
  EXPECT_EQ(c.decoder.trailers->Get("grpc-status"), "0");
  EXPECT_EQ(c.decoder.trailers->Get("grpc-message"), "ok");
  EXPECT_EQ(c.callbacks.resets, 0);
  EXPECT_EQ(s.callbacks.resets, 0);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_EQ(p.client->counters().streams_started, 1u);
  EXPECT_EQ(p.server->counters().streams_started, 1u);
}

TEST(Http2CodecTest, HostBecomesAuthorityAndConnectionHeadersAreDropped) {
  CodecPair p;
  HeaderMap req{{":method", "GET"},           {":path", "/"},      {"host", "h.test"},
                {"connection", "keep-alive"}, {"keep-alive", "5"}, {"te", "trailers"}};
  p.Start(req, true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  const HeaderMap& h = *p.server_callbacks.requests[0]->decoder.headers;
  EXPECT_EQ(h.Get(":authority"), "h.test");
  EXPECT_EQ(h.Get(":scheme"), "http");
  EXPECT_FALSE(h.Has("host"));
  EXPECT_FALSE(h.Has("connection"));
  EXPECT_FALSE(h.Has("keep-alive"));
  EXPECT_EQ(h.Get("te"), "trailers");
}

TEST(Http2CodecTest, ManyConcurrentStreams) {
  constexpr int kStreams = 300;
  CodecPair p;
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_end = [&r] {
      // Echo the request body with trailers.
      r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
      Send(*r.encoder, r.decoder.body, false);
      r.encoder->EncodeTrailers(HeaderMap{{"x-len", std::to_string(r.decoder.body.size())}});
    };
  };
  for (int i = 0; i < kStreams; ++i) {
    ClientRequest& c = p.Start(Request("POST", "/" + std::to_string(i)), false);
    Send(*c.encoder, Pattern(100 + i * 37, i), true);
  }
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), static_cast<size_t>(kStreams));
  for (int i = 0; i < kStreams; ++i) {
    ClientRequest& c = *p.client_requests[i];
    ASSERT_TRUE(c.decoder.end) << i;
    EXPECT_EQ(c.decoder.body, Pattern(100 + i * 37, i)) << i;
    ASSERT_NE(c.decoder.trailers, nullptr);
    EXPECT_EQ(c.decoder.trailers->Get("x-len"), std::to_string(100 + i * 37));
  }
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
}

// A 10 MB upload into a server whose consumer read-disables: the client's window must stop it
// after about one stream window, and the transfer must resume and finish intact on re-enable.
TEST(Http2CodecTest, ReadDisabledConsumerStopsSenderThroughFlowControl) {
  constexpr size_t kTotal = 10 * 1000 * 1000;
  constexpr size_t kChunk = 64 * 1024;
  Http2Options options;  // defaults: 256 KiB stream window, 1 MiB connection window
  CodecPair p(options, options);
  ServerRequest* server_req = nullptr;
  p.server_callbacks.on_new_stream = [&](ServerRequest& r) {
    if (server_req != nullptr) return;
    server_req = &r;
    r.encoder->GetStream().ReadDisable(true);
  };
  ClientRequest& c = p.Start(Request("POST", "/big"), false);
  size_t written = 0;
  bool above = false;
  c.callbacks.on_high = [&] { above = true; };
  c.callbacks.on_low = [&] { above = false; };
  auto pump_writer = [&] {
    while (!above && written < kTotal) {
      size_t n = std::min(kChunk, kTotal - written);
      Send(*c.encoder, Pattern(n, written), written + n == kTotal);
      written += n;
    }
  };
  for (int i = 0; i < 100; ++i) {
    pump_writer();
    ASSERT_TRUE(p.Pump().ok());
  }
  ASSERT_NE(server_req, nullptr);
  // Nothing delivered yet; the server holds at most one stream window, the writer is stopped.
  EXPECT_EQ(server_req->decoder.body.size(), 0u);
  EXPECT_TRUE(above);
  EXPECT_LE(written, options.initial_stream_window_size + options.stream_buffer_limit + kChunk);
  EXPECT_LT(written, kTotal);
  EXPECT_GE(c.callbacks.high, 1);

  // A second stream on the same connection still flows: the stall is per stream.
  ClientRequest& other = p.Start(Request("POST", "/small"), false);
  Send(*other.encoder, Pattern(100000), true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 2u);
  EXPECT_EQ(p.server_callbacks.requests[1]->decoder.body.size(), 100000u);

  // Resume: the consumer takes everything, the writer refills on its low watermark.
  std::string received;
  size_t max_chunk_backlog = 0;
  server_req->decoder.on_data = [&](net::Buffer& data, bool) {
    max_chunk_backlog = std::max(max_chunk_backlog, data.length());
    received += data.ToString();
    data.Drain(data.length());
  };
  server_req->encoder->GetStream().ReadDisable(false);
  for (int i = 0; i < 10000 && !server_req->decoder.end; ++i) {
    pump_writer();
    ASSERT_TRUE(p.Pump().ok());
  }
  EXPECT_TRUE(server_req->decoder.end);
  EXPECT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == Pattern(kTotal));
  EXPECT_LE(max_chunk_backlog, options.initial_stream_window_size);
  EXPECT_GE(c.callbacks.low, 1);
  EXPECT_EQ(c.callbacks.resets, 0);
}

// Data, end of stream and trailers that arrive while read-disabled wait, in order, and the
// stream still completes after nghttp2 has closed it.
TEST(Http2CodecTest, ReadDisabledClientKeepsResponseUntilEnabled) {
  CodecPair p;
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_headers = [&r](bool) { Respond(r, "payload", /*trailers=*/true); };
  };
  HeaderMap req = Request();
  ClientRequest& c = p.Start(req, true);
  c.decoder.on_headers = [&c](bool) { c.encoder->GetStream().ReadDisable(true); };
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_NE(c.decoder.headers, nullptr);
  EXPECT_EQ(c.decoder.body, "");
  EXPECT_EQ(c.decoder.trailers, nullptr);
  EXPECT_EQ(p.client->ActiveStreams(), 1u);
  c.encoder->GetStream().ReadDisable(false);
  EXPECT_EQ(c.decoder.body, "payload");
  ASSERT_NE(c.decoder.trailers, nullptr);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  ASSERT_TRUE(p.Pump().ok());
}

TEST(Http2CodecTest, ClientResetReachesServer) {
  CodecPair p;
  ClientRequest& c = p.Start(Request("POST"), false);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  c.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  EXPECT_EQ(c.callbacks.resets, 1);
  EXPECT_EQ(c.callbacks.reason, StreamResetReason::kLocalReset);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  ASSERT_TRUE(p.Pump().ok());
  ServerRequest& s = *p.server_callbacks.requests[0];
  EXPECT_EQ(s.callbacks.resets, 1);
  EXPECT_EQ(s.callbacks.reason, StreamResetReason::kRemoteReset);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_EQ(p.client->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_CANCEL)], 1u);
  EXPECT_EQ(p.server->counters().rst_stream_received[ErrorCodeSlot(NGHTTP2_CANCEL)], 1u);
}

TEST(Http2CodecTest, ServerResetsReachClient) {
  CodecPair p;
  ClientRequest& refused = p.Start(Request("POST"), false);
  ClientRequest& reset = p.Start(Request("POST"), false);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 2u);
  p.server_callbacks.requests[0]->encoder->GetStream().ResetStream(
      StreamResetReason::kRemoteRefusedStream);
  p.server_callbacks.requests[1]->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(refused.callbacks.reason, StreamResetReason::kRemoteRefusedStream);
  EXPECT_EQ(reset.callbacks.reason, StreamResetReason::kRemoteReset);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_EQ(p.client->counters().rst_stream_received[ErrorCodeSlot(NGHTTP2_REFUSED_STREAM)], 1u);
  EXPECT_EQ(p.client->counters().rst_stream_received[ErrorCodeSlot(NGHTTP2_CANCEL)], 1u);
  // Writing after a reset is harmless (the user might not have heard yet in real code).
}

TEST(Http2CodecTest, ResetBeforeHeadersAndFromInsideCallbacks) {
  CodecPair p;
  testing::RecordingDecoder d;
  testing::RecordingStreamCallbacks cb;
  StreamEncoder& e = p.client->NewStream(d);
  e.GetStream().AddCallbacks(cb);
  EXPECT_EQ(p.client->ActiveStreams(), 1u);
  e.GetStream().ResetStream(StreamResetReason::kLocalReset);
  EXPECT_EQ(cb.resets, 1);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);

  // The server resets from inside DecodeHeaders.
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_headers = [&r](bool) {
      r.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    };
  };
  ClientRequest& c = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.callbacks.reason, StreamResetReason::kRemoteReset);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
}

TEST(Http2CodecTest, ResponseBeforeRequestEndsStopsUpload) {
  CodecPair p;
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_headers = [&r](bool) {
      r.encoder->EncodeHeaders(HeaderMap{{":status", "413"}}, true);
    };
  };
  ClientRequest& c = p.Start(Request("POST"), false);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.decoder.headers->Get(":status"), "413");
  EXPECT_TRUE(c.decoder.end);
  // RST_STREAM(NO_ERROR) after a complete response is a normal end for the client.
  EXPECT_EQ(c.callbacks.resets, 0);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_NO_ERROR)], 1u);
}

TEST(Http2CodecTest, GracefulGoAwayLetsInFlightStreamsFinish) {
  CodecPair p;
  ClientRequest& c = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_TRUE(p.client->CanOpenStream());
  p.server->GoAway();
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(p.client_callbacks.goaways, 1);
  EXPECT_FALSE(p.client->CanOpenStream());
  // Notice, then the final GOAWAY after the PING round trip.
  EXPECT_EQ(p.server->counters().goaway_sent, 2u);
  EXPECT_EQ(p.client->counters().goaway_received, 2u);
  Respond(*p.server_callbacks.requests[0], "bye");
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.decoder.body, "bye");
  EXPECT_EQ(c.callbacks.resets, 0);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_TRUE(p.server->WantsClose());
}

TEST(Http2CodecTest, GoAwayRefusesStreamsAboveLastStreamId) {
  CodecPair p;
  ClientRequest& first = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  p.server->GoAway();
  p.server->GoAway();  // second call: final GOAWAY now, last_stream_id = 1
  // These leave the client before it sees the GOAWAY.
  ClientRequest& late1 = p.Start(Request(), true);
  ClientRequest& late2 = p.Start(Request("POST"), false);
  ASSERT_TRUE(p.ServerToClient().ok());
  EXPECT_EQ(late1.callbacks.reason, StreamResetReason::kRemoteRefusedStream);
  EXPECT_EQ(late2.callbacks.reason, StreamResetReason::kRemoteRefusedStream);
  EXPECT_EQ(first.callbacks.resets, 0);
  EXPECT_EQ(p.client->counters().streams_refused_by_goaway, 2u);
  // And a stream started after the GOAWAY is refused without reaching the wire.
  EXPECT_FALSE(p.client->CanOpenStream());
  ClientRequest& after = p.Start(Request(), true);
  EXPECT_EQ(after.callbacks.reason, StreamResetReason::kRemoteRefusedStream);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(p.server_callbacks.requests.size(), 1u);
  Respond(*p.server_callbacks.requests[0], "ok");
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(first.decoder.body, "ok");
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
}

TEST(Http2CodecTest, ClientGoAwayStopsNewStreams) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  p.client->GoAway();
  EXPECT_FALSE(p.client->CanOpenStream());
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(p.server_callbacks.goaways, 1);
  EXPECT_EQ(p.client->counters().goaway_sent, 1u);
}

TEST(Http2CodecTest, MaxConcurrentStreamsRespected) {
  Http2Options server_options;
  server_options.max_concurrent_streams = 2;
  CodecPair p({}, server_options);
  ASSERT_TRUE(p.Pump().ok());  // SETTINGS exchange
  ASSERT_TRUE(p.client->CanOpenStream());
  p.Start(Request(), true);
  EXPECT_TRUE(p.client->CanOpenStream());
  p.Start(Request(), true);
  EXPECT_FALSE(p.client->CanOpenStream());
  // A caller that ignores CanOpenStream gets queued, not refused.
  ClientRequest& third = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(p.server_callbacks.requests.size(), 2u);
  EXPECT_EQ(p.server->ActiveStreams(), 2u);
  Respond(*p.server_callbacks.requests[0], "one");
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 3u);
  Respond(*p.server_callbacks.requests[1], "two");
  Respond(*p.server_callbacks.requests[2], "three");
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(third.decoder.body, "three");
  EXPECT_TRUE(p.client->CanOpenStream());
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
}

TEST(Http2CodecTest, OversizeRequestHeadersGet431) {
  Http2Options server_options;
  server_options.max_header_list_size = 4096;
  CodecPair p({}, server_options);
  HeaderMap req = Request("POST");
  req.Add("x-big", std::string(5000, 'x'));
  ClientRequest& c = p.Start(req, false);
  Send(*c.encoder, "body", false);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_TRUE(p.server_callbacks.requests.empty());
  ASSERT_NE(c.decoder.headers, nullptr)
      << c.callbacks.details << " overflow=" << p.server->counters().header_overflow
      << " rst_sent=" << p.server->counters().rst_stream_sent[1] << ","
      << p.server->counters().rst_stream_sent[2];
  EXPECT_EQ(c.decoder.headers->Get(":status"), "431");
  EXPECT_TRUE(c.decoder.end);
  EXPECT_EQ(p.server->counters().header_overflow, 1u);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);

  // The connection keeps working.
  ClientRequest& ok = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  Respond(*p.server_callbacks.requests[0], "fine");
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(ok.decoder.body, "fine");
}

TEST(Http2CodecTest, OversizeResponseHeadersResetStream) {
  Http2Options client_options;
  client_options.max_header_list_size = 4096;
  CodecPair p(client_options, {});
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_headers = [&r](bool) {
      r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}, {"x-big", std::string(5000, 'y')}},
                               true);
    };
  };
  ClientRequest& c = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.callbacks.reason, StreamResetReason::kOverflow);
  EXPECT_EQ(c.decoder.headers, nullptr);
  EXPECT_EQ(p.client->counters().header_overflow, 1u);
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
}

TEST(Http2CodecTest, WriteWatermarks) {
  Http2Options options;
  options.stream_buffer_limit = 64 * 1024;
  CodecPair p(options, options);
  ServerRequest* s = nullptr;
  p.server_callbacks.on_new_stream = [&](ServerRequest& r) {
    s = &r;
    r.encoder->GetStream().ReadDisable(true);
  };
  ClientRequest& c = p.Start(Request("POST"), false);
  ASSERT_TRUE(p.Pump().ok());
  // 256 KiB fit the stream window; the next 128 KiB stay queued above the 64 KiB limit.
  Send(*c.encoder, Pattern(256 * 1024 + 128 * 1024), false);
  EXPECT_EQ(c.callbacks.high, 1);
  EXPECT_EQ(c.encoder->GetStream().BufferLimit(), 64u * 1024);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.callbacks.low, 0);
  ASSERT_NE(s, nullptr);
  s->encoder->GetStream().ReadDisable(false);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(c.callbacks.low, 1);

  // The connection's watermarks reach every open stream.
  p.client->OnUnderlyingWriteHighWatermark();
  EXPECT_EQ(c.callbacks.high, 2);
  p.client->OnUnderlyingWriteLowWatermark();
  EXPECT_EQ(c.callbacks.low, 2);
}

// Window abuse: streams whose peer gives them no window hold at most about
// connection_buffer_limit together; every stream is told to stop, and new ones start stopped.
TEST(Http2CodecTest, ConnectionWideBufferLimit) {
  Http2Options server_options;
  server_options.stream_buffer_limit = 1024 * 1024;
  server_options.connection_buffer_limit = 128 * 1024;
  CodecPair p({}, server_options);
  for (int i = 0; i < 4; ++i) p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 4u);
  // Each response: 256 KiB fit the client's stream window, 44 KiB wait; 176 KiB in all.
  for (int i = 0; i < 4; ++i) {
    ServerRequest& r = *p.server_callbacks.requests[i];
    r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
    Send(*r.encoder, Pattern(300 * 1024), false);
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p.server_callbacks.requests[i]->callbacks.high, 1) << i;
  // A stream opened meanwhile starts above too.
  p.Start(Request(), true);
  ASSERT_TRUE(p.ClientToServer().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 5u);
  EXPECT_EQ(p.server_callbacks.requests[4]->callbacks.high, 1);
  // The client reads: the window opens, the queue drains, and every stream may go on.
  ASSERT_TRUE(p.Pump().ok());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(p.server_callbacks.requests[i]->callbacks.low, 1) << i;
  for (int i = 0; i < 4; ++i) {
    Send(*p.server_callbacks.requests[i]->encoder, "", true);
  }
  ASSERT_TRUE(p.Pump().ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p.client_requests[i]->decoder.body.size(), 300u * 1024);
}

// A response handed over in full ends the stream for its user even while flow control still
// holds part of it in the codec: the user (a proxy's per-request state) may be gone from then on,
// so neither watermarks nor the end of the connection may call back into it. The sidecar crashed
// on exactly that low watermark when a 1 GiB download's last bytes drained.
TEST(Http2CodecTest, NoCallbacksAfterTheResponseIsHandedOver) {
  for (const bool connection_closes : {false, true}) {
    SCOPED_TRACE(connection_closes ? "connection closes" : "client reads the rest");
    Http2Options options;
    options.stream_buffer_limit = 64 * 1024;
    CodecPair p(options, options);
    ServerRequest* s = nullptr;
    p.server_callbacks.on_new_stream = [&](ServerRequest& r) { s = &r; };
    ClientRequest& c = p.Start(Request("GET", "/download"), true);
    // The client takes nothing yet, so the server may send one stream window (256 KiB).
    c.decoder.on_headers = [&c](bool) { c.encoder->GetStream().ReadDisable(true); };
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->decoder.end);
    // Two windows and a bit: the client's first window update drains the stream below its low
    // watermark while 16 KiB still wait, so the low watermark fires before the stream closes.
    const std::string body = Pattern(2 * 256 * 1024 + 16 * 1024);
    s->encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
    Send(*s->encoder, body, /*end_stream=*/true);
    // Whatever the stream reported while taking its last bytes, nothing may follow.
    const int high = s->callbacks.high;
    const int low = s->callbacks.low;
    EXPECT_EQ(p.server->ActiveStreams(), 0u);
    ASSERT_TRUE(p.Pump().ok());
    p.server->OnUnderlyingWriteHighWatermark();
    p.server->OnUnderlyingWriteLowWatermark();
    if (connection_closes) {
      p.server->OnConnectionClosed();
    } else {
      c.encoder->GetStream().ReadDisable(false);
      ASSERT_TRUE(p.Pump().ok());
      EXPECT_TRUE(c.decoder.end);
      EXPECT_TRUE(c.decoder.body == body);
      EXPECT_EQ(c.callbacks.resets, 0);
    }
    EXPECT_EQ(s->callbacks.high, high);
    EXPECT_EQ(s->callbacks.low, low);
    EXPECT_EQ(s->callbacks.resets, 0);
  }
}

// A response complete for its user while flow control still holds its last DATA frames is
// unsent output: a draining connection manager must not close the connection yet.
TEST(Http2CodecTest, ResponseHeldByFlowControlIsUnsentOutputUntilTheClientTakesIt) {
  CodecPair p;
  ServerRequest* s = nullptr;
  p.server_callbacks.on_new_stream = [&](ServerRequest& r) { s = &r; };
  ClientRequest& c = p.Start(Request("GET", "/download"), true);
  c.decoder.on_headers = [&c](bool) { c.encoder->GetStream().ReadDisable(true); };
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(p.server->HasUnsentOutput());
  const std::string body = Pattern(3 * 256 * 1024);  // more than the client's window
  s->encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
  Send(*s->encoder, body, /*end_stream=*/true);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_TRUE(p.server->HasUnsentOutput());
  c.encoder->GetStream().ReadDisable(false);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_TRUE(c.decoder.body == body);
  EXPECT_FALSE(p.server->HasUnsentOutput());
}

// The client side of the same: a request whose last bytes flow control still holds ends for its
// user once the whole response is in, and what becomes of those bytes is not reported to it.
TEST(Http2CodecTest, NoCallbacksAfterTheRequestIsHandedOverAndTheResponseIsIn) {
  Http2Options options;
  options.stream_buffer_limit = 64 * 1024;
  CodecPair p(options, options);
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    // Reads none of the upload and answers at once.
    r.encoder->GetStream().ReadDisable(true);
    r.decoder.on_headers = [&r](bool) { Respond(r, "done"); };
  };
  ClientRequest& c = p.Start(Request("POST", "/upload"), false);
  Send(*c.encoder, Pattern(256 * 1024 + 128 * 1024), /*end_stream=*/true);
  ASSERT_TRUE(p.ClientToServer().ok());
  // The response, without the RST_STREAM(NO_ERROR) that follows it: frames up to that one.
  std::string out = p.server_io.out.ToString();
  p.server_io.out.Clear();
  size_t cut = 0;
  while (cut + 9 <= out.size()) {
    const size_t length = (static_cast<uint8_t>(out[cut]) << 16) |
                          (static_cast<uint8_t>(out[cut + 1]) << 8) |
                          static_cast<uint8_t>(out[cut + 2]);
    if (out[cut + 3] == NGHTTP2_RST_STREAM) break;
    cut += 9 + length;
  }
  ASSERT_LT(cut, out.size()) << "no RST_STREAM after the response";
  net::Buffer response(out.substr(0, cut));
  ASSERT_TRUE(p.client->Dispatch(response).ok());
  ASSERT_TRUE(c.decoder.end);
  EXPECT_EQ(c.decoder.body, "done");
  EXPECT_EQ(p.client->ActiveStreams(), 0u);
  const int high = c.callbacks.high;
  const int low = c.callbacks.low;
  p.client->OnUnderlyingWriteHighWatermark();
  p.client->OnUnderlyingWriteLowWatermark();
  p.client->OnConnectionClosed();
  EXPECT_EQ(c.callbacks.high, high);
  EXPECT_EQ(c.callbacks.low, low);
  EXPECT_EQ(c.callbacks.resets, 0);
}

TEST(Http2CodecTest, GarbageIsAProtocolError) {
  {
    CodecPair p;
    net::Buffer garbage("this is definitely not an HTTP/2 connection preface\r\n\r\n");
    absl::Status s = p.server->Dispatch(garbage);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(p.server->counters().connection_protocol_errors, 1u);
    EXPECT_FALSE(p.server->Dispatch(garbage).ok());
  }
  {
    // A valid preface, then DATA on stream 0: a connection error answered with GOAWAY.
    CodecPair p;
    ClientRequest& c = p.Start(Request(), false);
    ASSERT_TRUE(p.Pump().ok());
    net::Buffer bad;
    const char frame[] = {0, 0, 1, 0 /*DATA*/, 0, 0, 0, 0, 0 /*stream 0*/, 'x'};
    bad.Append(frame, sizeof(frame));
    absl::Status s = p.server->Dispatch(bad);
    EXPECT_FALSE(s.ok()) << s;
    EXPECT_EQ(p.server->counters().goaway_sent, 1u);
    EXPECT_EQ(p.server_callbacks.requests[0]->callbacks.reason, StreamResetReason::kProtocolError);
    EXPECT_EQ(p.server->ActiveStreams(), 0u);
    // The client hears the GOAWAY and its stream ends.
    (void)p.ServerToClient();
    EXPECT_TRUE(c.callbacks.resets == 1 || p.client_callbacks.goaways == 1);
  }
  {
    // Garbage at the client after the server's preface.
    CodecPair p;
    ASSERT_TRUE(p.Pump().ok());
    net::Buffer bad;
    const char frame[] = {0, 0, 3, 4 /*SETTINGS*/, 0, 0, 0, 0, 0, 1, 2, 3};  // bad length
    bad.Append(frame, sizeof(frame));
    EXPECT_FALSE(p.client->Dispatch(bad).ok());
    EXPECT_EQ(p.client->counters().connection_protocol_errors, 1u);
  }
}

// Appends one frame header (RFC 9113 4.1) and its payload.
void AppendFrame(net::Buffer& out, uint8_t type, uint8_t flags, uint32_t stream_id,
                 absl::string_view payload) {
  const char header[] = {0,
                         0,
                         static_cast<char>(payload.size()),
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
int64_t LastErrorCode(const net::Buffer& out, uint8_t type, uint32_t stream_id = 0) {
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

int64_t LastGoAwayError(const net::Buffer& out) { return LastErrorCode(out, NGHTTP2_GOAWAY); }

// A client that asks for more PING acknowledgements than it reads: once more than
// max_outbound_control_frames are waiting in the socket, the connection ends with
// GOAWAY(ENHANCE_YOUR_CALM) and a ResourceExhausted error.
TEST(Http2CodecTest, PingsThePeerDoesNotReadEndTheConnection) {
  Http2Options options;
  options.max_outbound_control_frames = 100;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer pings;
  for (int i = 0; i < 40; ++i) AppendFrame(pings, NGHTTP2_PING, 0, 0, "12345678");
  const std::string forty = pings.ToString();

  // A client that reads its acknowledgements may ping as much as it likes.
  for (int round = 0; round < 10; ++round) {
    net::Buffer in(forty);
    ASSERT_TRUE(p.server->Dispatch(in).ok());
  }
  EXPECT_EQ(p.server->counters().floods, 0u);

  p.server_io.peer_reads = false;
  for (int round = 0; round < 2; ++round) {
    net::Buffer in(forty);
    ASSERT_TRUE(p.server->Dispatch(in).ok()) << round;
  }
  net::Buffer in(forty);
  absl::Status status = p.server->Dispatch(in);
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
  net::Buffer more(forty);
  EXPECT_FALSE(p.server->Dispatch(more).ok());
  EXPECT_EQ(p.server->counters().floods, 1u);
}

// More unanswered acknowledgements than the limit in a single read: nghttp2's own count, the same
// limit, gives the same answer.
TEST(Http2CodecTest, OneReadOfTooManySettingsIsAFlood) {
  Http2Options options;
  options.max_outbound_control_frames = 100;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  p.server_io.peer_reads = false;
  net::Buffer in;
  for (int i = 0; i < 150; ++i) AppendFrame(in, NGHTTP2_SETTINGS, 0, 0, "");
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

// RST_STREAMs owed for requests the codec refuses count as replies the peer must read.
TEST(Http2CodecTest, ResetsThePeerDoesNotReadEndTheConnection) {
  Http2Options options;
  options.max_outbound_control_frames = 50;
  CodecPair p({}, options);
  for (int i = 0; i < 60; ++i) {
    HeaderMap bad = Request();
    bad.Add("x-bad", "a\x01b");  // a control character: the server resets the stream
    p.Start(bad, true);
  }
  p.server_io.peer_reads = false;
  absl::Status status = p.ClientToServer();
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(p.server->counters().floods, 1u);
}

// WINDOW_UPDATE frames are worth sending only for data the other side sends.
TEST(Http2CodecTest, WindowUpdatesWithoutDataEndTheConnection) {
  Http2Options options;
  options.max_inbound_window_update_frames_per_data_frame_sent = 2;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  // One request answered with one DATA frame: 5 + 2 × (1 HEADERS + 2 × 1 DATA) = 11 allowed.
  ClientRequest& c = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  Respond(*p.server_callbacks.requests[0], "body");
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(c.decoder.body, "body");
  const uint64_t before = p.server->counters().floods;
  net::Buffer updates;
  std::string increment("\x00\x00\x00\x01", 4);
  for (int i = 0; i < 8; ++i) AppendFrame(updates, NGHTTP2_WINDOW_UPDATE, 0, 0, increment);
  ASSERT_TRUE(p.server->Dispatch(updates).ok());  // plus whatever the client sent: within 11
  EXPECT_EQ(p.server->counters().floods, before);
  net::Buffer more;
  for (int i = 0; i < 8; ++i) AppendFrame(more, NGHTTP2_WINDOW_UPDATE, 0, 0, increment);
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(more)));
  EXPECT_EQ(p.server->counters().floods, before + 1);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

// HPACK for GET http://a/ (static :method, :scheme, :path; :authority "a" as a literal).
constexpr absl::string_view kGetBlock(
    "\x82\x86\x84\x41\x01"
    "a",
    6);
constexpr absl::string_view kCancel("\x00\x00\x00\x08", 4);

// Rapid reset (CVE-2023-44487): streams the client resets before their response drain the
// bucket; once it is empty the connection ends with ENHANCE_YOUR_CALM.
TEST(Http2CodecTest, RapidResetEndsTheConnection) {
  Http2Options options;
  options.stream_reset_burst = 10;
  options.stream_resets_per_second = 0;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  uint32_t id = 1;
  for (int i = 0; i < 10; ++i, id += 2) {
    net::Buffer in;
    AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, kGetBlock);
    AppendFrame(in, NGHTTP2_RST_STREAM, 0, id, kCancel);
    ASSERT_TRUE(p.server->Dispatch(in).ok()) << i;
  }
  EXPECT_EQ(p.server->counters().floods, 0u);
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, kGetBlock);
  AppendFrame(in, NGHTTP2_RST_STREAM, 0, id, kCancel);
  // Whatever follows in the same read is not processed.
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id + 2, kGetBlock);
  const size_t before = p.server_callbacks.requests.size();
  absl::Status status = p.server->Dispatch(in);
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(p.server_callbacks.requests.size(), before + 1);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

// A client that cancels now and then, among responses that complete, never runs out.
TEST(Http2CodecTest, CompletedResponsesEarnResetsBack) {
  Http2Options options;
  options.stream_reset_burst = 5;
  options.stream_resets_per_second = 0;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  for (int i = 0; i < 50; ++i) {
    ClientRequest& done = p.Start(Request(), true);
    ClientRequest& cancelled = p.Start(Request(), false);
    ASSERT_TRUE(p.Pump().ok());
    Respond(*p.server_callbacks.requests[p.server_callbacks.requests.size() - 2], "ok");
    cancelled.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    ASSERT_TRUE(p.Pump().ok()) << i;
    EXPECT_EQ(done.decoder.body, "ok");
  }
  EXPECT_EQ(p.server->counters().floods, 0u);
  EXPECT_EQ(p.server->flood(), Http2Flood::kNone);
}

// Streams refused beyond max_concurrent_streams cost like resets. (nghttp2 refuses them with
// REFUSED_STREAM while our SETTINGS are unacknowledged, and ends the connection after; a client
// that never acknowledges them can be refused forever.)
TEST(Http2CodecTest, RefusedStreamsDrainTheResetBucket) {
  Http2Options options;
  options.max_concurrent_streams = 1;
  options.stream_reset_burst = 5;
  options.stream_resets_per_second = 0;
  CodecPair p({}, options);
  net::Buffer in;
  in.Append("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  AppendFrame(in, NGHTTP2_SETTINGS, 0, 0, "");  // and never an ACK of the server's
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  absl::Status status;
  int sent = 0;
  for (uint32_t id = 1; id < 40 && status.ok(); id += 2, ++sent) {
    AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, kGetBlock);
    status = p.server->Dispatch(in);
  }
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  // Stream 1 open, then five refusals within the burst, the sixth beyond it.
  EXPECT_EQ(sent, 7);
  EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_REFUSED_STREAM)], 6u);
}

// A client that reads its acknowledgements still may not make the server answer PINGs and
// SETTINGS at line rate.
TEST(Http2CodecTest, PingAndSettingsRateEndsTheConnection) {
  Http2Options options;
  options.control_frame_burst = 10;
  options.control_frames_per_second = 0;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());  // the client's SETTINGS took one token
  net::Buffer in;
  for (int i = 0; i < 5; ++i) AppendFrame(in, NGHTTP2_PING, 0, 0, "12345678");
  for (int i = 0; i < 4; ++i) AppendFrame(in, NGHTTP2_SETTINGS, 0, 0, "");
  // Acknowledgements are free.
  for (int i = 0; i < 20; ++i) AppendFrame(in, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, "12345678");
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  EXPECT_EQ(p.server->counters().floods, 0u);
  AppendFrame(in, NGHTTP2_PING, 0, 0, "12345678");
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kPingSettings);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(Http2CodecTest, PriorityFloodEndsTheConnection) {
  Http2Options options;
  options.max_inbound_priority_frames_per_stream = 5;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  const std::string priority("\x00\x00\x00\x00\x10", 5);  // no dependency, weight 17
  net::Buffer in;
  for (uint32_t id = 3; id < 3 + 2 * 5; id += 2) AppendFrame(in, NGHTTP2_PRIORITY, 0, id, priority);
  ASSERT_TRUE(p.server->Dispatch(in).ok());  // 5 × (1 + 0 streams)
  AppendFrame(in, NGHTTP2_PRIORITY, 0, 101, priority);
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kPriority);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(Http2CodecTest, PriorityFramesAllowedInProportionToStreams) {
  Http2Options options;
  options.max_inbound_priority_frames_per_stream = 2;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  const std::string priority("\x00\x00\x00\x00\x10", 5);
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
              kGetBlock);
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3,
              kGetBlock);
  for (int i = 0; i < 6; ++i) AppendFrame(in, NGHTTP2_PRIORITY, 0, 3, priority);  // 2 × (1 + 2)
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  EXPECT_EQ(p.server->counters().floods, 0u);
  AppendFrame(in, NGHTTP2_PRIORITY, 0, 3, priority);
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kPriority);
}

TEST(Http2CodecTest, EmptyDataFramesInARowEndTheConnection) {
  CodecPair p;  // default: one empty frame in a row
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, kGetBlock);
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "x");
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  ASSERT_TRUE(p.server->Dispatch(in).ok());  // never two empty ones in a row
  // Padding only (pad length 0) is no payload either.
  AppendFrame(in, NGHTTP2_DATA, NGHTTP2_FLAG_PADDED, 1, std::string(1, '\0'));
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kEmptyFrames);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

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

int64_t LastResetError(const net::Buffer& out, uint32_t stream_id) {
  return LastErrorCode(out, NGHTTP2_RST_STREAM, stream_id);
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

TEST(Http2CodecTest, EmptyContinuationFramesEndTheConnection) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, 0, 1, kGetBlock);
  AppendFrame(in, NGHTTP2_CONTINUATION, 0, 1, "");
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  AppendFrame(in, NGHTTP2_CONTINUATION, 0, 1, "");
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kEmptyFrames);
}

// CONTINUATION flood (2024): a header block split into more frames than allowed ends the
// connection before the block is complete.
TEST(Http2CodecTest, TooManyContinuationFramesEndTheConnection) {
  Http2Options options;
  options.max_continuation_frames = 4;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());
  // A literal field x: <20 bytes>, one byte per CONTINUATION.
  const std::string field = std::string("\x00\x01x\x14", 4) + std::string(20, 'v');
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, 0, 1, kGetBlock);
  for (int i = 0; i < 4; ++i) AppendFrame(in, NGHTTP2_CONTINUATION, 0, 1, field.substr(i, 1));
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  AppendFrame(in, NGHTTP2_CONTINUATION, 0, 1, field.substr(4, 1));
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kContinuation);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_TRUE(p.server_callbacks.requests.empty());
}

// Above the underlying connection's high watermark the codec reads nothing more.
TEST(Http2CodecTest, HighWatermarkStopsReading) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  p.server->OnUnderlyingWriteHighWatermark();
  EXPECT_EQ(p.server_io.read_disabled, 1);
  p.server->OnUnderlyingWriteHighWatermark();
  EXPECT_EQ(p.server_io.read_disabled, 1);
  p.server->OnUnderlyingWriteLowWatermark();
  EXPECT_EQ(p.server_io.read_disabled, 0);
  p.client->OnUnderlyingWriteHighWatermark();
  EXPECT_EQ(p.client_io.read_disabled, 1);
  p.client->OnUnderlyingWriteLowWatermark();
  EXPECT_EQ(p.client_io.read_disabled, 0);
}

TEST(Http2CodecTest, RequestHeaderBlockInProgressUntilEndHeaders) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());  // prefaces and SETTINGS exchanged; no stream yet
  EXPECT_FALSE(p.server->request_headers_in_progress());

  // HPACK static table: :method GET, :scheme http, :path /; then :authority "a" (literal).
  net::Buffer frames;
  AppendFrame(frames, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, "\x82\x86\x84");
  ASSERT_TRUE(p.server->Dispatch(frames).ok());
  EXPECT_TRUE(p.server->request_headers_in_progress());
  EXPECT_TRUE(p.server_callbacks.requests.empty());

  AppendFrame(frames, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_NONE, 1, "\x41\x01");
  ASSERT_TRUE(p.server->Dispatch(frames).ok());
  EXPECT_TRUE(p.server->request_headers_in_progress());

  AppendFrame(frames, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, "a");
  ASSERT_TRUE(p.server->Dispatch(frames).ok());
  EXPECT_FALSE(p.server->request_headers_in_progress());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);

  // A complete block in one frame is never reported as in progress.
  AppendFrame(frames, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, 3,
              "\x82\x86\x84\x41\x01"
              "a");
  ASSERT_TRUE(p.server->Dispatch(frames).ok());
  EXPECT_FALSE(p.server->request_headers_in_progress());
  EXPECT_EQ(p.server_callbacks.requests.size(), 2u);
}

TEST(Http2CodecTest, InvalidHeaderNameResetsStream) {
  // HeaderMap lowercases names, so an uppercase name cannot be produced here; a space (not a
  // token character) exercises the same RFC 9113 field validation nghttp2 performs.
  CodecPair p;
  HeaderMap req = Request();
  req.Add("bad name", "x");  // space is not a token character
  ClientRequest& c = p.Start(req, true);
  ASSERT_TRUE(p.Pump().ok());
  EXPECT_TRUE(p.server_callbacks.requests.empty());
  EXPECT_EQ(c.callbacks.reason, StreamResetReason::kRemoteReset);
  EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_PROTOCOL_ERROR)], 1u);
}

// RFC 9113 8.3.1: an :authority with userinfo, or anything else that is not
// `uri-host [ ":" port ]`, makes the request malformed; a host field sent over HTTP/2 is held to
// the same rule, and only one is allowed. Each is refused with RST_STREAM(PROTOCOL_ERROR) before
// the user sees it, and the connection goes on.
TEST(Http2CodecTest, InvalidAuthorityOrHostResetsStreamWithProtocolError) {
  CodecPair p;
  std::vector<HeaderMap> bad;
  for (absl::string_view authority :
       {"user:pw@example.test:8080", "a.example,b.example", "example.test:http",
        "example.test:65536", "example.test/admin", "::1"}) {
    HeaderMap h = Request();
    h.Set(":authority", authority);
    bad.push_back(std::move(h));
  }
  HeaderMap host_userinfo = Request();
  host_userinfo.Add("host", "user@example.test");
  bad.push_back(std::move(host_userinfo));
  HeaderMap two_hosts = Request();
  two_hosts.Add("host", "example.test");
  two_hosts.Add("host", "example.test");
  bad.push_back(std::move(two_hosts));

  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    ClientRequest& c = p.Start(bad[i], true);
    ASSERT_TRUE(p.Pump().ok());
    EXPECT_TRUE(p.server_callbacks.requests.empty());
    EXPECT_EQ(c.callbacks.resets, 1);
    EXPECT_EQ(c.callbacks.reason, StreamResetReason::kRemoteReset);
    EXPECT_EQ(p.server->counters().stream_protocol_errors, i + 1);
    EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_PROTOCOL_ERROR)], i + 1);
    EXPECT_EQ(p.server->ActiveStreams(), 0u);
  }

  // Valid authorities still pass, on the same connection.
  const size_t errors = p.server->counters().stream_protocol_errors;
  size_t served = 0;
  for (absl::string_view authority : {"[::1]:8080", "example.test:", "caf%C3%A9.example:443"}) {
    HeaderMap h = Request();
    h.Set(":authority", authority);
    h.Add("host", authority);
    p.Start(h, true);
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_EQ(p.server_callbacks.requests.size(), ++served) << authority;
    EXPECT_EQ(p.server_callbacks.requests.back()->decoder.headers->Get(":authority"), authority);
  }
  EXPECT_EQ(p.server->counters().stream_protocol_errors, errors);
}

// A :path with a byte no URI holds (raw UTF-8, a control, a space, DEL) or a fragment is a
// malformed request too, refused like the HTTP/1 parser refuses such a request-target: it never
// reaches an upstream.
TEST(Http2CodecTest, InvalidPathResetsStreamWithProtocolError) {
  CodecPair p;
  const std::vector<std::string> bad = {"/caf\xc3\xa9", "/a b",  "/a\x01",
                                        "/a#frag",      "/\x7f", "/\xff"};
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "path " << i);
    HeaderMap h = Request();
    h.Set(":path", bad[i]);
    ClientRequest& c = p.Start(h, true);
    ASSERT_TRUE(p.Pump().ok());
    EXPECT_TRUE(p.server_callbacks.requests.empty());
    EXPECT_EQ(c.callbacks.resets, 1);
    EXPECT_EQ(p.server->counters().stream_protocol_errors, i + 1);
  }
  size_t served = 0;
  for (absl::string_view path : {"/caf%C3%A9?q=1&r=%20", "/a/b;c=d?x=y/z", "*"}) {
    HeaderMap h = Request();
    h.Set(":path", path);
    if (path == "*") h.Set(":method", "OPTIONS");
    p.Start(h, true);
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_EQ(p.server_callbacks.requests.size(), ++served) << path;
    EXPECT_EQ(p.server_callbacks.requests.back()->decoder.headers->Get(":path"), path);
  }
  EXPECT_EQ(p.server->counters().stream_protocol_errors, bad.size());
}

TEST(Http2CodecTest, DestroyingCodecResetsOpenStreams) {
  CodecPair p;
  ClientRequest& c = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  p.client.reset();
  EXPECT_EQ(c.callbacks.reason, StreamResetReason::kConnectionTermination);
}

// A client codec on an event loop (its keepalive timers run) and a server codec; Pump() moves
// bytes between them while `connected`.
struct LoopedPair {
  explicit LoopedPair(const Http2Options& client_options)
      : server(server_io, server_callbacks),
        client(client_io, client_callbacks, client_options, &loop) {}

  void Pump() {
    while (connected && (!client_io.out.empty() || !server_io.out.empty())) {
      net::Buffer b;
      b.Move(client_io.out);
      ASSERT_TRUE(server.Dispatch(b).ok());
      b.Move(server_io.out);
      ASSERT_TRUE(client.Dispatch(b).ok());
    }
  }

  event::Loop loop;
  testing::BufferIo client_io;
  testing::BufferIo server_io;
  testing::RecordingServerCallbacks server_callbacks;
  testing::RecordingConnectionCallbacks client_callbacks;
  testing::ClientRequest request;  // outlives the codecs, which may reset its stream
  ServerCodec server;
  ClientCodec client;
  bool connected = true;
};

TEST(Http2CodecTest, KeepalivePingClosesSilentConnection) {
  Http2Options options;
  // The timeout far above the pumper's 1 ms: a loaded machine stalling this loop must not make
  // the responsive peer look silent.
  options.keepalive_interval = std::chrono::milliseconds(10);
  options.keepalive_timeout = std::chrono::milliseconds(500);
  LoopedPair p(options);
  // A responsive peer: PINGs are acknowledged and the connection stays up.
  event::Timer pumper(p.loop, [&] { p.Pump(); });
  pumper.EnableRepeating(std::chrono::milliseconds(1));
  p.loop.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_FALSE(p.client_io.closed);
  EXPECT_EQ(p.client.counters().keepalive_timeouts, 0u);
  // A silent peer: the ACK never comes, the client closes.
  pumper.Disable();
  EXPECT_TRUE(p.loop.RunUntil([&] { return p.client_io.closed; }, std::chrono::seconds(5)));
  EXPECT_EQ(p.client.counters().keepalive_timeouts, 1u);
  EXPECT_FALSE(p.client.CanOpenStream());
}

// A server that said GOAWAY and then vanished (its network torn down while it drained: no FIN, no
// RST) leaves the client's streams in flight unanswered; the client notices within
// goaway_keepalive_interval + goaway_keepalive_timeout and closes the connection, so that its
// owner can end them (and retry elsewhere). A server that is alive but slow to answer is never
// cut off: it acknowledges the PINGs.
TEST(Http2CodecTest, StreamsInFlightAfterGoAwayAreWatchedForASilentServer) {
  for (bool server_vanishes : {false, true}) {
    SCOPED_TRACE(server_vanishes ? "server vanishes" : "server slow");
    Http2Options options;
    // A timeout far above the pumper's 1 ms, so that a loaded machine (a test suite on two
    // cores) stalling this loop for a while does not make the slow server look silent.
    options.goaway_keepalive_interval = std::chrono::milliseconds(10);
    options.goaway_keepalive_timeout = std::chrono::milliseconds(500);
    LoopedPair p(options);
    StreamEncoder& encoder = p.client.NewStream(p.request.decoder);
    encoder.GetStream().AddCallbacks(p.request.callbacks);
    encoder.EncodeHeaders(testing::Request(), true);
    p.Pump();
    ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
    // Without a GOAWAY, a connection waiting for its answer sends no PING.
    p.loop.RunUntil([] { return false; }, std::chrono::milliseconds(40));
    EXPECT_TRUE(p.client_io.out.empty());
    p.server.GoAway();
    p.server.GoAway();
    p.Pump();
    ASSERT_EQ(p.client_callbacks.goaways, 1);
    if (server_vanishes) {
      p.connected = false;
      EXPECT_TRUE(p.loop.RunUntil([&] { return p.client_io.closed; }, std::chrono::seconds(5)));
      EXPECT_FALSE(p.client_io.close_flush);
      EXPECT_EQ(p.client.counters().keepalive_timeouts, 1u);
      continue;
    }
    event::Timer pumper(p.loop, [&] { p.Pump(); });
    pumper.EnableRepeating(std::chrono::milliseconds(1));
    // Long enough for PINGs to go out (every 10 ms) and be answered many times over.
    p.loop.RunUntil([] { return false; }, std::chrono::milliseconds(300));
    EXPECT_FALSE(p.client_io.closed);
    EXPECT_EQ(p.client.counters().keepalive_timeouts, 0u);
    Respond(*p.server_callbacks.requests[0], "late");
    p.Pump();
    EXPECT_EQ(p.request.decoder.body, "late");
    EXPECT_EQ(p.request.callbacks.resets, 0);
    // Nothing left in flight: nothing more to watch.
    pumper.Disable();
    p.loop.RunUntil([] { return false; }, std::chrono::milliseconds(60));
    EXPECT_FALSE(p.client_io.closed);
    EXPECT_TRUE(p.client_io.out.empty());
  }
}

}  // namespace
}  // namespace meshlet::http::h2
