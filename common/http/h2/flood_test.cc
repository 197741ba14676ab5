// The HTTP/2 server's flood and abuse limits (Http2Options), driven by a raw or a codec client.
// Every case runs twice: with connections cut at once, and with Http2Options::drain_on_flood (the
// sidecar's setting). The attacks end the connection as fast either way; the drain matters only
// to requests in flight, which the cases at the end follow.
#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "common/http/h2/codec.h"
#include "common/http/h2/codec_test_helpers.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using testing::AppendFrame;
using testing::ClientRequest;
using testing::CodecPair;
using testing::kCancel;
using testing::kGetBlock;
using testing::LastGoAwayError;
using testing::LastGoAwayStream;
using testing::Pattern;
using testing::Request;
using testing::Respond;
using testing::ServerRequest;

class FloodTest : public ::testing::TestWithParam<bool> {
 protected:
  // The defaults, draining or not.
  Http2Options Options() const {
    Http2Options options;
    options.drain_on_flood = GetParam();
    return options;
  }
  bool draining() const { return GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Limits, FloodTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Draining" : "CutAtOnce";
                         });

// GOAWAY(ENHANCE_YOUR_CALM) and a ResourceExhausted error.
TEST_P(FloodTest, PingsThePeerDoesNotReadEndTheConnection) {
  Http2Options options = Options();
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
TEST_P(FloodTest, OneReadOfTooManySettingsIsAFlood) {
  Http2Options options = Options();
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
TEST_P(FloodTest, ResetsThePeerDoesNotReadEndTheConnection) {
  Http2Options options = Options();
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
TEST_P(FloodTest, WindowUpdatesWithoutDataEndTheConnection) {
  Http2Options options = Options();
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

// Rapid reset (CVE-2023-44487): streams the client resets before their response drain the
// bucket; once it is empty the connection ends with ENHANCE_YOUR_CALM.
TEST_P(FloodTest, RapidResetEndsTheConnection) {
  Http2Options options = Options();
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

// The attack with the default limits, on a worker's clock: HEADERS and RST_STREAM at once,
// 10,000 a second, with one request in eleven answered in full. Ended in the third read.
TEST_P(FloodTest, RapidResetWithDefaultLimitsEndsTheConnectionQuickly) {
  FakeClock clock;
  event::Loop loop(&clock);
  CodecPair p({}, Options(), &loop);
  ASSERT_TRUE(p.Pump().ok());
  uint32_t id = 1;
  size_t answered = 0;
  absl::Status status;
  int reads = 0;
  while (status.ok() && reads < 20) {
    net::Buffer in;
    for (int i = 0; i < 110; ++i, id += 2) {
      if (i % 11 == 10) {
        AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, id,
                    kGetBlock);
      } else {
        AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, kGetBlock);
        AppendFrame(in, NGHTTP2_RST_STREAM, 0, id, kCancel);
      }
    }
    status = p.server->Dispatch(in);
    ++reads;
    if (!status.ok()) break;
    auto& requests = p.server_callbacks.requests;
    for (; answered < requests.size(); ++answered) {
      if (requests[answered]->callbacks.resets == 0) Respond(*requests[answered], "ok");
    }
    clock.Advance(std::chrono::milliseconds(11));
  }
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  // 200 tokens; 100 taken and 10 given back a read (and 0.2 by time): 221 in the third.
  // Draining, the 221st drains instead (a request of the read is in flight), and the next stream
  // the client opens and resets in the same read ends the connection.
  EXPECT_EQ(reads, 3);
  EXPECT_EQ(p.server->counters().premature_resets, draining() ? 222u : 221u);
  EXPECT_EQ(p.server->counters().late_resets, 0u);
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

// A mesh caller whose requests time out (a slow upstream, 20 ms route timeouts): it resets most
// streams, some with no response yet after their timeout, some after the response began, at a
// high rate. None of these resets is premature: the connection stays, and the requests that do
// get answered complete. (Before ADR 0078 every one of them took a token: the bucket emptied
// in round 66 and the connection ended with ENHANCE_YOUR_CALM.)
TEST_P(FloodTest, CallerTimeoutResetsKeepTheConnection) {
  FakeClock clock;
  event::Loop loop(&clock);
  Http2Options options = Options();
  options.stream_reset_burst = 200;
  options.stream_resets_per_second = 0;  // nothing given back by time alone
  CodecPair p({}, options, &loop);
  ASSERT_TRUE(p.Pump().ok());
  for (int round = 0; round < 1000; ++round) {
    ClientRequest& answered = p.Start(Request(), true);
    ClientRequest* waiting[2] = {&p.Start(Request(), true), &p.Start(Request(), true)};
    ClientRequest* started[2] = {&p.Start(Request(), true), &p.Start(Request(), true)};
    ASSERT_TRUE(p.Pump().ok());
    auto& requests = p.server_callbacks.requests;
    ASSERT_GE(requests.size(), 5u);
    ServerRequest& first = *requests[requests.size() - 5];
    // The response of two begins (headers, part of the body); one completes.
    for (size_t i = requests.size() - 2; i < requests.size(); ++i) {
      requests[i]->encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
      net::Buffer part("part");
      requests[i]->encoder->EncodeData(part, false);
    }
    ASSERT_TRUE(p.Pump().ok());
    // Those two at once: their response had begun.
    for (ClientRequest* r : started)
      r->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    ASSERT_TRUE(p.Pump().ok()) << "round " << round;
    clock.Advance(std::chrono::milliseconds(20));  // the caller's timeout: 4 resets per 20 ms
    Respond(first, "ok");
    for (ClientRequest* r : waiting)
      r->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    ASSERT_TRUE(p.Pump().ok()) << "round " << round;
    ASSERT_EQ(answered.decoder.body, "ok") << "round " << round;
  }
  EXPECT_EQ(p.server->flood(), Http2Flood::kNone);
  EXPECT_EQ(p.server->counters().floods, 0u);
  EXPECT_EQ(p.server->counters().late_resets, 4000u);
  EXPECT_EQ(p.server->counters().premature_resets, 0u);
}

// The same resets within the minimum lifetime, with no response begun, are premature: four for
// every response completed empty the bucket.
TEST_P(FloodTest, EarlyResetsOutnumberingResponsesEndTheConnection) {
  FakeClock clock;
  event::Loop loop(&clock);
  Http2Options options = Options();
  options.stream_reset_burst = 200;
  options.stream_resets_per_second = 0;
  options.stream_reset_min_lifetime = std::chrono::milliseconds(50);
  CodecPair p({}, options, &loop);
  ASSERT_TRUE(p.Pump().ok());
  absl::Status status;
  int round = 0;
  for (; round < 1000 && status.ok(); ++round) {
    p.Start(Request(), true);
    ClientRequest* cancelled[4];
    for (ClientRequest*& r : cancelled) r = &p.Start(Request(), true);
    status = p.Pump();
    if (!status.ok()) break;
    clock.Advance(std::chrono::milliseconds(20));  // within the 50 ms
    auto& requests = p.server_callbacks.requests;
    Respond(*requests[requests.size() - 5], "ok");
    for (ClientRequest* r : cancelled)
      r->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    status = p.Pump();
  }
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  // Three taken net a round: about 200 / 3 rounds.
  EXPECT_EQ(round, 67);
}

// A client that cancels now and then, among responses that complete, never runs out.
TEST_P(FloodTest, CompletedResponsesEarnResetsBack) {
  Http2Options options = Options();
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
TEST_P(FloodTest, RefusedStreamsDrainTheResetBucket) {
  Http2Options options = Options();
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
  // Stream 1 open, then five refusals within the burst, the sixth beyond it. Draining (stream 1
  // is in flight), the streams after the GOAWAY are ignored, at no cost, up to
  // max_concurrent_streams; the next one ends the connection.
  EXPECT_EQ(sent, draining() ? 7 + 1 + 1 : 7);
  EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_REFUSED_STREAM)], 6u);
  EXPECT_EQ(p.server->counters().streams_refused_after_goaway, draining() ? 2u : 0u);
}

// A client that reads its acknowledgements still may not make the server answer PINGs and
// SETTINGS at line rate.
TEST_P(FloodTest, PingAndSettingsRateEndsTheConnection) {
  Http2Options options = Options();
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

TEST_P(FloodTest, PriorityFloodEndsTheConnection) {
  Http2Options options = Options();
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

TEST_P(FloodTest, PriorityFramesAllowedInProportionToStreams) {
  Http2Options options = Options();
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
  if (draining()) {
    // Both requests are in flight (never answered): GOAWAY, and they may finish...
    ASSERT_TRUE(p.server->Dispatch(in).ok());
    EXPECT_EQ(p.server->counters().floods, 1u);
    EXPECT_EQ(p.server_callbacks.flood_drains, 1);
    EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
    EXPECT_EQ(testing::LastGoAwayStream(p.server_io.out), 3);
    // ...unless the client goes on.
    AppendFrame(in, NGHTTP2_PRIORITY, 0, 3, priority);
  }
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(p.server->flood(), Http2Flood::kPriority);
}

TEST_P(FloodTest, EmptyDataFramesInARowEndTheConnection) {
  CodecPair p({}, Options());  // default: one empty frame in a row
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer in;
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, kGetBlock);
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "x");
  AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  ASSERT_TRUE(p.server->Dispatch(in).ok());  // never two empty ones in a row
  // Padding only (pad length 0) is no payload either.
  AppendFrame(in, NGHTTP2_DATA, NGHTTP2_FLAG_PADDED, 1, std::string(1, '\0'));
  if (draining()) {
    // Stream 1 is in flight: it may finish, but the next empty frame ends the connection.
    ASSERT_TRUE(p.server->Dispatch(in).ok());
    EXPECT_TRUE(p.server->flood_draining());
    EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
    AppendFrame(in, NGHTTP2_DATA, 0, 1, "");
  }
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_FALSE(p.server->flood_draining());
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(p.server->flood(), Http2Flood::kEmptyFrames);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST_P(FloodTest, EmptyContinuationFramesEndTheConnection) {
  CodecPair p({}, Options());
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
TEST_P(FloodTest, TooManyContinuationFramesEndTheConnection) {
  Http2Options options = Options();
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

// ----- draining: the requests in flight when a client passes a limit ------------------------

// Http2Stats over a registry of its own, for reading back what the codec counted there.
struct TestStats {
  TestStats() {
    auto counter = [&](absl::string_view name, LabelSet labels) {
      CounterId id = *registry.RegisterCounter(name, "test", labels);
      return std::make_pair(id, shard->Get(id));
    };
    std::tie(premature, h2.premature_resets) = counter("meshlet_t_resets_total", {{"k", "p"}});
    std::tie(late, h2.late_resets) = counter("meshlet_t_resets_total", {{"k", "l"}});
    std::tie(refused, h2.streams_refused_after_goaway) = counter("meshlet_t_refused_total", {});
    const size_t calm = ErrorCodeSlot(NGHTTP2_ENHANCE_YOUR_CALM);
    std::tie(goaway_calm, h2.goaway_sent[calm]) = counter("meshlet_t_goaway_total", {});
    std::tie(cancels, h2.rst_stream_received[ErrorCodeSlot(NGHTTP2_CANCEL)]) =
        counter("meshlet_t_rst_total", {});
  }
  uint64_t operator[](CounterId id) const { return registry.CounterValue(id); }

  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  Http2Stats h2;
  CounterId premature, late, refused, goaway_calm, cancels;
};

Http2Options DrainingResets(uint32_t burst) {
  Http2Options options;
  options.drain_on_flood = true;
  options.stream_reset_burst = burst;
  options.stream_resets_per_second = 0;
  return options;
}

// What a client sends raw: the preface and SETTINGS, a request on stream 1 (left in flight), then
// streams 3 to 9 each opened and reset at once. With DrainingResets(3) the fourth reset passes
// the burst: the connection drains, its GOAWAY naming stream 9.
void AppendRequestThenFourRapidResets(net::Buffer& in) {
  in.Append("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  AppendFrame(in, NGHTTP2_SETTINGS, 0, 0, "");
  AppendFrame(in, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, "");
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
              kGetBlock);
  for (uint32_t id = 3; id <= 9; id += 2) {
    AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, kGetBlock);
    AppendFrame(in, NGHTTP2_RST_STREAM, 0, id, kCancel);
  }
}

// A long request is in flight when the client opens and resets streams beyond the burst (in one
// read with two new requests): GOAWAY(ENHANCE_YOUR_CALM) names the last stream accepted, the new
// requests never reach the user and the client learns they were refused, the request in flight
// gets its whole response, and then nothing is left to keep the connection.
TEST(Http2FloodDrainTest, RapidResetLetsTheRequestsInFlightFinish) {
  FakeClock clock;
  event::Loop loop(&clock);
  TestStats stats;
  Http2Options options = DrainingResets(10);
  options.stats = &stats.h2;
  CodecPair p({}, options, &loop);
  ASSERT_TRUE(p.Pump().ok());
  ClientRequest& slow = p.Start(Request("GET", "/slow"), true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  std::vector<ClientRequest*> flood;
  for (int i = 0; i < 11; ++i) flood.push_back(&p.Start(Request(), true));
  ASSERT_TRUE(p.ClientToServer().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 12u);  // streams 1, 3 .. 23
  for (ClientRequest* r : flood)
    r->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  ClientRequest& after1 = p.Start(Request(), true);
  ClientRequest& after2 = p.Start(Request(), true);
  ASSERT_TRUE(p.ClientToServer().ok());

  EXPECT_EQ(p.server_callbacks.flood_drains, 1);
  EXPECT_TRUE(p.server->flood_draining());
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_EQ(LastGoAwayStream(p.server_io.out), 23);
  EXPECT_EQ(p.server_callbacks.requests.size(), 12u);
  EXPECT_EQ(p.server->ActiveStreams(), 1u);
  ASSERT_TRUE(p.Pump().ok());  // the client reads the GOAWAY
  for (ClientRequest* r : {&after1, &after2}) {
    EXPECT_EQ(r->callbacks.reason, StreamResetReason::kRemoteRefusedStream);
  }
  EXPECT_FALSE(p.client->CanOpenStream());

  // More than the stream's window (256 KiB): the client's WINDOW_UPDATEs come during the drain.
  const std::string body = Pattern(600 * 1024);
  Respond(*p.server_callbacks.requests[0], body);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_NE(slow.decoder.headers, nullptr);
  EXPECT_EQ(slow.decoder.headers->Get(":status"), "200");
  EXPECT_TRUE(slow.decoder.body == body) << slow.decoder.body.size() << " bytes";
  EXPECT_TRUE(slow.decoder.end);
  EXPECT_EQ(slow.callbacks.resets, 0);
  EXPECT_EQ(p.server->ActiveStreams(), 0u);
  EXPECT_TRUE(p.server->WantsClose());

  const Http2Counters& c = p.server->counters();
  EXPECT_EQ(c.floods, 1u);
  EXPECT_EQ(c.premature_resets, 11u);
  EXPECT_EQ(c.late_resets, 0u);
  EXPECT_EQ(c.streams_refused_after_goaway, 2u);
  EXPECT_EQ(c.goaway_sent, 1u);
  EXPECT_EQ(stats[stats.premature], 11u);
  EXPECT_EQ(stats[stats.late], 0u);
  EXPECT_EQ(stats[stats.refused], 2u);
  EXPECT_EQ(stats[stats.goaway_calm], 1u);
  EXPECT_EQ(stats[stats.cancels], 11u);
}

// The same flood, but the client also resets the two streams it opens after it, in the same read
// (as a flooder does: it has not read the GOAWAY): cut off there, the request in flight with it.
TEST(Http2FloodDrainTest, AClientThatGoesOnResettingIsCutOff) {
  FakeClock clock;
  event::Loop loop(&clock);
  CodecPair p({}, DrainingResets(10), &loop);
  ASSERT_TRUE(p.Pump().ok());
  ClientRequest& slow = p.Start(Request("GET", "/slow"), true);
  ASSERT_TRUE(p.Pump().ok());
  std::vector<ClientRequest*> flood;
  for (int i = 0; i < 11; ++i) flood.push_back(&p.Start(Request(), true));
  ASSERT_TRUE(p.ClientToServer().ok());
  for (ClientRequest* r : flood)
    r->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  for (int i = 0; i < 2; ++i) {
    p.Start(Request(), true).encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  }
  absl::Status status = p.ClientToServer();
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_FALSE(p.server->flood_draining());
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  // The 11th reset drained; the next, of the first stream refused after the GOAWAY, ended it.
  EXPECT_EQ(p.server->counters().premature_resets, 12u);
  EXPECT_EQ(p.server->counters().streams_refused_after_goaway, 1u);
  EXPECT_EQ(p.server_callbacks.requests[0]->callbacks.reason, StreamResetReason::kProtocolError);
  EXPECT_TRUE(slow.decoder.body.empty());
}

// During the drain a request in flight may still be cancelled late (a caller's timeout), which
// gives a token back as always; a premature reset, with the bucket empty, ends the connection.
TEST(Http2FloodDrainTest, APrematureResetEndsTheDrainALateOneDoesNot) {
  for (bool premature : {false, true}) {
    SCOPED_TRACE(premature ? "premature" : "late");
    FakeClock clock;
    event::Loop loop(&clock);
    CodecPair p({}, DrainingResets(3), &loop);
    ASSERT_TRUE(p.Pump().ok());
    ClientRequest& old_request = p.Start(Request("GET", "/old"), true);
    ASSERT_TRUE(p.Pump().ok());
    clock.Advance(std::chrono::milliseconds(20));  // past stream_reset_min_lifetime (10 ms)
    p.Start(Request("GET", "/recent"), true);
    std::vector<ClientRequest*> flood;
    for (int i = 0; i < 4; ++i) flood.push_back(&p.Start(Request(), true));
    ASSERT_TRUE(p.ClientToServer().ok());
    for (ClientRequest* r : flood)
      r->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_TRUE(p.server->flood_draining());
    EXPECT_EQ(p.server->ActiveStreams(), 2u);
    if (premature) {
      p.client_requests[1]->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
      absl::Status status = p.Pump();
      EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
      EXPECT_EQ(p.server->counters().premature_resets, 5u);
      EXPECT_EQ(p.server->counters().floods, 1u);
      continue;
    }
    old_request.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
    ASSERT_TRUE(p.Pump().ok());
    EXPECT_TRUE(p.server->flood_draining());
    EXPECT_EQ(p.server->counters().late_resets, 1u);
    Respond(*p.server_callbacks.requests[1], "recent");
    ASSERT_TRUE(p.Pump().ok());
    EXPECT_EQ(p.client_requests[1]->decoder.body, "recent");
    EXPECT_TRUE(p.server->WantsClose());
    EXPECT_EQ(p.server->counters().premature_resets, 4u);
  }
}

// New streams after the GOAWAY are ignored, at no cost, up to what a client that respects the
// stream limit could have had open when it read the GOAWAY; one more ends the connection.
TEST(Http2FloodDrainTest, NewStreamsAfterTheGoAwayBeyondTheStreamLimitEndTheConnection) {
  Http2Options options = DrainingResets(3);
  options.max_concurrent_streams = 4;
  CodecPair p({}, options);
  net::Buffer in;
  AppendRequestThenFourRapidResets(in);
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  ASSERT_TRUE(p.server->flood_draining());
  EXPECT_EQ(LastGoAwayStream(p.server_io.out), 9);
  for (uint32_t id = 11; id <= 17; id += 2) {
    AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, id,
                kGetBlock);
  }
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  EXPECT_EQ(p.server->counters().streams_refused_after_goaway, 4u);
  EXPECT_EQ(p.server_callbacks.requests.size(), 5u);
  EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_REFUSED_STREAM)], 0u);
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 19,
              kGetBlock);
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_EQ(p.server_callbacks.requests.size(), 5u);
}

// A client that read the GOAWAY may cancel the streams it refused (Go's transport sends
// RST_STREAM(CANCEL) for each): that comes in a later read than their HEADERS and is no reason to
// end the drain. A stream opened and reset in one read still is.
TEST(Http2FloodDrainTest, CancellingTheRefusedStreamsLaterIsNoFlood) {
  CodecPair p({}, DrainingResets(3));
  net::Buffer in;
  AppendRequestThenFourRapidResets(in);
  // Sent before the client could read the GOAWAY: refused.
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 11, kGetBlock);
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 13, kGetBlock);
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  ASSERT_TRUE(p.server->flood_draining());
  EXPECT_EQ(LastGoAwayStream(p.server_io.out), 9);
  EXPECT_EQ(p.server->counters().streams_refused_after_goaway, 2u);
  AppendFrame(in, NGHTTP2_RST_STREAM, 0, 11, kCancel);
  AppendFrame(in, NGHTTP2_RST_STREAM, 0, 13, kCancel);
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  EXPECT_TRUE(p.server->flood_draining());
  EXPECT_EQ(p.server->counters().premature_resets, 4u);
  AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 15, kGetBlock);
  AppendFrame(in, NGHTTP2_RST_STREAM, 0, 15, kCancel);
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->counters().premature_resets, 5u);
  EXPECT_EQ(p.server_callbacks.requests.size(), 5u);
}

// Past the limits after which the connection cannot go on, it ends at once even with requests
// in flight: replies the client leaves unread (a response would not be read either), and a
// CONTINUATION flood (no other frame may come inside a header block).
TEST(Http2FloodDrainTest, UnreadRepliesAndContinuationFloodsEndAtOnce) {
  {
    Http2Options options = DrainingResets(10);
    options.max_outbound_control_frames = 100;
    CodecPair p({}, options);
    ASSERT_TRUE(p.Pump().ok());
    p.Start(Request(), true);
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_EQ(p.server->ActiveStreams(), 1u);
    p.server_io.peer_reads = false;
    net::Buffer in;
    for (int i = 0; i < 150; ++i) AppendFrame(in, NGHTTP2_PING, 0, 0, "12345678");
    EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
    EXPECT_EQ(p.server->flood(), Http2Flood::kControlFrames);
    EXPECT_EQ(p.server_callbacks.flood_drains, 0);
  }
  {
    Http2Options options = DrainingResets(10);
    options.max_continuation_frames = 2;
    CodecPair p({}, options);
    net::Buffer in;
    in.Append("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    AppendFrame(in, NGHTTP2_SETTINGS, 0, 0, "");
    AppendFrame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
                kGetBlock);
    ASSERT_TRUE(p.server->Dispatch(in).ok());
    ASSERT_EQ(p.server->ActiveStreams(), 1u);
    const std::string field = std::string("\x00\x01x\x03", 4) + "vvv";
    AppendFrame(in, NGHTTP2_HEADERS, 0, 3, kGetBlock);
    for (char c : field) AppendFrame(in, NGHTTP2_CONTINUATION, 0, 3, std::string(1, c));
    EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
    EXPECT_EQ(p.server->flood(), Http2Flood::kContinuation);
    EXPECT_EQ(p.server_callbacks.flood_drains, 0);
  }
}

// A drain ended by another limit names that one (the owner closes by it: a client that stops
// reading its replies is held unread), counted once.
TEST(Http2FloodDrainTest, TheLimitThatEndsTheDrainIsTheOneReported) {
  Http2Options options = DrainingResets(3);
  options.max_outbound_control_frames = 20;
  CodecPair p({}, options);
  net::Buffer in;
  AppendRequestThenFourRapidResets(in);
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  ASSERT_TRUE(p.server->flood_draining());
  EXPECT_EQ(p.server->flood(), Http2Flood::kResets);
  p.server_io.peer_reads = false;
  for (int i = 0; i < 30; ++i) AppendFrame(in, NGHTTP2_PING, 0, 0, "12345678");
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->flood(), Http2Flood::kControlFrames);
  EXPECT_EQ(p.server->counters().floods, 1u);
  EXPECT_FALSE(p.server->flood_draining());
}

// PING and SETTINGS beyond the rate with a request in flight: the frame that passed the limit
// is still answered and the connection drains; the next one ends it.
TEST(Http2FloodDrainTest, PingRateDrainsThenEnds) {
  Http2Options options = DrainingResets(10);
  options.control_frame_burst = 5;
  options.control_frames_per_second = 0;
  CodecPair p({}, options);
  ASSERT_TRUE(p.Pump().ok());  // the client's SETTINGS took one token
  p.Start(Request(), true);
  ASSERT_TRUE(p.Pump().ok());
  net::Buffer in;
  for (int i = 0; i < 5; ++i) AppendFrame(in, NGHTTP2_PING, 0, 0, "12345678");
  ASSERT_TRUE(p.server->Dispatch(in).ok());
  EXPECT_TRUE(p.server->flood_draining());
  EXPECT_EQ(p.server->flood(), Http2Flood::kPingSettings);
  EXPECT_EQ(LastGoAwayError(p.server_io.out), NGHTTP2_ENHANCE_YOUR_CALM);
  AppendFrame(in, NGHTTP2_PING, 0, 0, "12345678");
  EXPECT_TRUE(absl::IsResourceExhausted(p.server->Dispatch(in)));
  EXPECT_EQ(p.server->counters().floods, 1u);
}

}  // namespace
}  // namespace meshlet::http::h2
