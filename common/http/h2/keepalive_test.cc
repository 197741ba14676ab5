// Keepalive PINGs, and a client's watch of a server that sent GOAWAY.
#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/h2/codec.h"
#include "common/http/h2/codec_test_helpers.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using testing::ClientRequest;
using testing::Request;
using testing::Respond;

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
