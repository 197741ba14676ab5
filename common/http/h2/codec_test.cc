#include "common/http/h2/codec.h"

#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http/h2/codec_test_helpers.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using testing::AppendFrame;
using testing::ClientRequest;
using testing::CodecPair;
using testing::Pattern;
using testing::Request;
using testing::Respond;
using testing::Send;
using testing::ServerRequest;

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
  // More than the stream window: the server reads none of it, so the client runs out of window
  // and is asked to stop.
  Send(*c.encoder, Pattern(Http2Options().initial_stream_window_size + 1024),
       /*end_stream=*/false);
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

// Decoded fields are added to the map as checked (HeaderMap::AddChecked): trusted, so an HTTP/1
// encoder writes them without scanning them again. That holds because nghttp2 checks every field
// first: a field whose value holds a line break or whose name has an uppercase letter never
// reaches a decoded map (the stream is reset, or the field dropped).
TEST(Http2CodecTest, DecodedFieldsArriveCheckedAndTrusted) {
  CodecPair p;
  ASSERT_TRUE(p.Pump().ok());
  // HPACK: :method GET, :scheme http, :path / (static table), :authority "a", then a literal
  // field without indexing.
  const auto request = [](absl::string_view field) {
    return absl::StrCat(
        "\x82\x86\x84\x41\x01"
        "a",
        field);
  };
  net::Buffer frames;
  AppendFrame(frames, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, 1,
              request(absl::string_view("\x00\x03x-b\x02ok", 8)));
  ASSERT_TRUE(p.server->Dispatch(frames).ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  const HeaderMap& h = *p.server_callbacks.requests[0]->decoder.headers;
  EXPECT_EQ(h.Get(":authority"), "a");
  std::string trust;
  h.ForEachRegularWithTrust([&](HeaderView f, bool trusted) {
    absl::StrAppend(&trust, f.name, "=", f.value, trusted ? "+" : "-", " ");
  });
  EXPECT_EQ(trust, "x-b=ok+ ");

  uint32_t id = 1;
  for (const absl::string_view bad : {absl::string_view("\x00\x03x-a\x03"
                                                        "1\n2",
                                                        9),
                                      absl::string_view("\x00\x03x-a\x03"
                                                        "1\r2",
                                                        9),
                                      absl::string_view("\x00\x03x-a\x03"
                                                        "1\0"
                                                        "2",
                                                        9),
                                      absl::string_view("\x00\x03X-A\x01v", 7)}) {
    id += 2;
    AppendFrame(frames, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, id,
                request(bad));
    ASSERT_TRUE(p.server->Dispatch(frames).ok());
  }
  for (const auto& r : p.server_callbacks.requests) {
    if (r->decoder.headers != nullptr) {
      EXPECT_FALSE(r->decoder.headers->Has("x-a"));
    }
  }
}

TEST(Http2CodecTest, DestroyingCodecResetsOpenStreams) {
  CodecPair p;
  ClientRequest& c = p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  p.client.reset();
  EXPECT_EQ(c.callbacks.reason, StreamResetReason::kConnectionTermination);
}

}  // namespace
}  // namespace meshlet::http::h2
