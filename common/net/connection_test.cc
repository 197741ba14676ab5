#include "common/net/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::RecordingCallbacks;
using testing::TestSocketPath;

constexpr auto kWait = seconds(10);

std::string Pattern(size_t n, size_t offset = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((offset + i) * 131 % 251);
  return s;
}

// A listener plus the server side of every connection it accepts.
class Server {
 public:
  Server(event::Loop& loop, absl::string_view address, ListenerOptions options = {}) {
    auto parsed = Address::Parse(address);
    CHECK_OK(parsed.status());
    auto listener = Listener::Create(loop, *parsed, std::move(options),
                                     [this](std::unique_ptr<Connection> conn) {
                                       auto cb = std::make_unique<RecordingCallbacks>();
                                       if (setup) setup(*conn, *cb);
                                       conn->SetCallbacks(cb.get());
                                       conns.push_back(std::move(conn));
                                       callbacks.push_back(std::move(cb));
                                     });
    status = listener.status();
    if (listener.ok()) this->listener = std::move(*listener);
  }

  absl::Status status;
  std::unique_ptr<Listener> listener;
  std::function<void(Connection&, RecordingCallbacks&)> setup;
  std::vector<std::unique_ptr<Connection>> conns;
  std::vector<std::unique_ptr<RecordingCallbacks>> callbacks;
};

void EchoSetup(Connection& conn, RecordingCallbacks& cb) {
  cb.on_data = [&conn](Buffer& data, bool end_stream) {
    conn.Write(data);
    if (end_stream) conn.ShutdownWrite();
  };
}

class EchoTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EchoTest, RoundTrip) {
  event::Loop loop;
  std::string address = GetParam();
  if (address == "unix") address = "unix:" + TestSocketPath("echo.sock");
  Server server(loop, address);
  if (!server.status.ok() && address[0] == '[') {
    GTEST_SKIP() << "no IPv6 loopback: " << server.status;
  }
  ASSERT_TRUE(server.status.ok()) << server.status;
  server.setup = EchoSetup;

  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  const std::string payload = Pattern(1 << 20);
  // Written while still connecting: buffered, then sent once connected.
  client->Write(absl::string_view(payload).substr(0, 1000));
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected; }, kWait));
  for (size_t off = 1000; off < payload.size(); off += 64 << 10) {
    client->Write(absl::string_view(payload).substr(off, 64 << 10));
  }
  ASSERT_TRUE(loop.RunUntil([&] { return cb.received.size() >= payload.size(); }, kWait));
  EXPECT_TRUE(cb.received == payload);
  EXPECT_EQ(client->bytes_sent(), payload.size());
  EXPECT_EQ(client->bytes_received(), payload.size());
  ASSERT_EQ(server.conns.size(), 1u);
  EXPECT_EQ(server.conns[0]->bytes_received(), payload.size());
  if (server.listener->address().is_ip()) {
    EXPECT_EQ(client->remote_address(), server.listener->address());
    EXPECT_EQ(server.conns[0]->remote_address(), client->local_address());
    EXPECT_EQ(server.conns[0]->local_address(), server.listener->address());
  }
  EXPECT_EQ(cb.closes, 0);
  EXPECT_EQ(client->buffered_write_bytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Families, EchoTest, ::testing::Values("127.0.0.1:0", "[::1]:0", "unix"),
                         [](const auto& info) {
                           return info.index == 0 ? "IPv4" : info.index == 1 ? "IPv6" : "Unix";
                         });

// A writer that keeps writing until told to stop, into a reader that reads in bursts with pauses.
// The writer's buffered bytes must stay bounded by the high watermark, and the watermark
// callbacks must stop and restart it.
TEST(ConnectionTest, WatermarksBoundMemoryWithSlowReader) {
  constexpr size_t kHigh = 256 << 10;
  constexpr size_t kLow = 64 << 10;
  constexpr size_t kChunk = 32 << 10;
  constexpr size_t kTotal = 24 << 20;
  event::Loop loop;
  ListenerOptions lopts;
  lopts.connection.receive_buffer_bytes = 64 << 10;
  Server server(loop, "127.0.0.1:0", lopts);
  ASSERT_TRUE(server.status.ok()) << server.status;

  // Reader: reads 1 MiB, then pauses 5 ms, checking the bytes as they come.
  size_t read_total = 0;
  size_t since_pause = 0;
  bool corrupt = false;
  std::vector<std::unique_ptr<event::Timer>> timers;
  server.setup = [&](Connection& conn, RecordingCallbacks& cb) {
    timers.push_back(std::make_unique<event::Timer>(loop, [&conn] { conn.ReadEnable(); }));
    event::Timer* resume = timers.back().get();
    conn.ReadDisable();  // start paused so the writer hits the high watermark first
    resume->Enable(milliseconds(50));
    cb.on_data = [&, resume, c = &conn](Buffer& data, bool) {
      std::string got = data.ToString();
      if (got != Pattern(got.size(), read_total)) corrupt = true;
      read_total += got.size();
      since_pause += got.size();
      data.Drain(data.length());
      if (since_pause >= (1 << 20)) {
        since_pause = 0;
        c->ReadDisable();
        resume->Enable(milliseconds(5));
      }
    };
  };

  ConnectionOptions copts;
  copts.write_high_watermark = kHigh;
  copts.write_low_watermark = kLow;
  copts.send_buffer_bytes = 64 << 10;
  auto writer = Connection::Connect(loop, server.listener->address(), seconds(5), nullptr, copts);
  RecordingCallbacks wcb;
  writer->SetCallbacks(&wcb);
  size_t written = 0;
  size_t max_buffered = 0;
  bool stopped = false;
  auto pump = [&] {
    while (!stopped && written < kTotal) {
      size_t n = std::min(kChunk, kTotal - written);
      writer->Write(Pattern(n, written));
      written += n;
      max_buffered = std::max(max_buffered, writer->buffered_write_bytes());
    }
  };
  wcb.on_connected = pump;
  wcb.on_high = [&] { stopped = true; };
  wcb.on_low = [&] {
    stopped = false;
    EXPECT_LE(writer->buffered_write_bytes(), kLow);
    pump();
  };
  ASSERT_TRUE(loop.RunUntil([&] { return read_total >= kTotal || corrupt; }, seconds(25)));
  EXPECT_FALSE(corrupt);
  EXPECT_EQ(read_total, kTotal);
  EXPECT_GE(wcb.high_watermarks, 2);
  EXPECT_GE(wcb.low_watermarks, 2);
  // The writer stops within one chunk of the high watermark.
  EXPECT_LE(max_buffered, kHigh + kChunk);
  EXPECT_EQ(wcb.closes, 0);
  server.conns.clear();
}

TEST(ConnectionTest, ClientHalfCloseThenServerFinishes) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  client->Write("request");
  client->ShutdownWrite();
  client->Write("dropped: after shutdown");
  ASSERT_TRUE(loop.RunUntil(
      [&] { return !server.callbacks.empty() && server.callbacks[0]->end_stream; }, kWait));
  RecordingCallbacks& scb = *server.callbacks[0];
  Connection& sconn = *server.conns[0];
  EXPECT_EQ(scb.received, "request");
  EXPECT_TRUE(sconn.remote_closed());
  // The server can still answer on its open half.
  sconn.Write("response");
  ASSERT_TRUE(loop.RunUntil([&] { return cb.received == "response"; }, kWait));
  EXPECT_FALSE(cb.end_stream);
  EXPECT_EQ(cb.closes, 0);
  sconn.ShutdownWrite();
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes == 1 && scb.closes == 1; }, kWait));
  EXPECT_TRUE(cb.end_stream);
  EXPECT_EQ(cb.close_reason, CloseReason::kEndOfStream);
  EXPECT_EQ(scb.close_reason, CloseReason::kEndOfStream);
  EXPECT_TRUE(client->closed());
  EXPECT_TRUE(sconn.closed());
}

TEST(ConnectionTest, ServerHalfCloseThenClientFinishes) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  server.setup = [](Connection& conn, RecordingCallbacks&) {
    conn.Write("greeting");
    conn.ShutdownWrite();
  };
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.end_stream; }, kWait));
  EXPECT_EQ(cb.received, "greeting");
  EXPECT_EQ(cb.closes, 0);
  client->Write("reply after server EOF");
  client->ShutdownWrite();
  ASSERT_TRUE(
      loop.RunUntil([&] { return cb.closes == 1 && server.callbacks[0]->closes == 1; }, kWait));
  EXPECT_EQ(server.callbacks[0]->received, "reply after server EOF");
  EXPECT_EQ(cb.close_reason, CloseReason::kEndOfStream);
}

TEST(ConnectionTest, ConnectRefused) {
  event::Loop loop;
  // A bound but not listening socket: its port answers SYN with RST, and nobody else can take
  // it during the test.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  auto address = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&sin), len);
  ASSERT_TRUE(address.ok());

  auto client = Connection::Connect(loop, *address, seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  EXPECT_TRUE(client->connecting());
  EXPECT_EQ(cb.closes, 0);  // never synchronously
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes > 0; }, kWait));
  EXPECT_EQ(cb.closes, 1);
  EXPECT_EQ(cb.close_reason, CloseReason::kConnectFailed);
  EXPECT_EQ(cb.close_detail.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(cb.close_detail.message().find("refused"), absl::string_view::npos) << cb.close_detail;
  EXPECT_FALSE(cb.connected);
  close(fd);
}

TEST(ConnectionTest, ConnectToMissingUnixSocketFails) {
  event::Loop loop;
  auto address = Address::Parse("unix:" + TestSocketPath("missing.sock"));
  ASSERT_TRUE(address.ok());
  auto client = Connection::Connect(loop, *address, seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes > 0; }, kWait));
  EXPECT_EQ(cb.close_reason, CloseReason::kConnectFailed);
}

// A listening socket with backlog 0 whose queue is already full drops further SYNs, so a connect
// to it stays pending: a deterministic "unanswered" peer on loopback.
TEST(ConnectionTest, ConnectTimeout) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(listen(lfd, 0), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  std::vector<int> fillers;
  bool queue_full = false;
  for (int i = 0; i < 8 && !queue_full; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0);
    fillers.push_back(fd);
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    if (rc == 0) continue;
    ASSERT_EQ(errno, EINPROGRESS);
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 200) == 0) queue_full = true;
  }
  if (!queue_full) {
    for (int fd : fillers) close(fd);
    close(lfd);
    GTEST_SKIP() << "this kernel accepted every connection; cannot make one hang";
  }

  event::Loop loop;
  auto client = Connection::Connect(
      loop, *Address::FromSockaddr(reinterpret_cast<sockaddr*>(&sin), len), milliseconds(100));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  client->Write("never sent");
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes > 0; }, kWait));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(cb.close_reason, CloseReason::kConnectTimeout);
  EXPECT_EQ(cb.close_detail.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(elapsed, milliseconds(90));
  EXPECT_LT(elapsed, seconds(5));
  EXPECT_TRUE(client->closed());
  client.reset();
  loop.RunUntilIdle();
  for (int fd : fillers) close(fd);
  close(lfd);
}

// The loop does not run (a stalled process) past the connect timeout while the kernel finishes
// the connect: when it runs again, the expired timer comes before the I/O that reports the
// connect, and must not call it a timeout.
TEST(ConnectionTest, ConnectFinishedWhileTheLoopStalledIsNotATimeout) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok()) << server.status;
  auto client = Connection::Connect(loop, server.listener->address(), milliseconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  std::this_thread::sleep_for(milliseconds(50));
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected || cb.closes > 0; }, kWait));
  EXPECT_TRUE(cb.connected) << cb.close_detail;
  EXPECT_EQ(cb.closes, 0);
}

TEST(ConnectionTest, AbortResetsPeer) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  client->Write("hi");
  ASSERT_TRUE(loop.RunUntil(
      [&] { return !server.callbacks.empty() && server.callbacks[0]->received == "hi"; }, kWait));
  server.conns[0]->Close(CloseMode::kAbort);
  EXPECT_EQ(server.callbacks[0]->closes, 1);  // synchronously, as documented
  EXPECT_EQ(server.callbacks[0]->close_reason, CloseReason::kLocalClose);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes > 0; }, kWait));
  EXPECT_EQ(cb.close_reason, CloseReason::kRemoteReset);
  EXPECT_FALSE(cb.end_stream);
}

TEST(ConnectionTest, FlushCloseDeliversEverythingThenEof) {
  event::Loop loop;
  const std::string payload = Pattern(4 << 20);
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  server.setup = [&](Connection& conn, RecordingCallbacks&) {
    conn.Write(payload);
    conn.Close(CloseMode::kFlush);
  };
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.end_stream; }, kWait));
  EXPECT_TRUE(cb.received == payload);
  ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes == 1; }, kWait));
  EXPECT_EQ(server.callbacks[0]->close_reason, CloseReason::kLocalClose);
  EXPECT_TRUE(server.callbacks[0]->close_detail.ok());
  client->Close(CloseMode::kNoFlush);
  EXPECT_EQ(cb.closes, 1);
  EXPECT_EQ(cb.close_reason, CloseReason::kLocalClose);
  client->Close();  // a second Close is a no-op
  EXPECT_EQ(cb.closes, 1);
}

// The peer keeps sending while a flush-close is under way. Unread bytes in the socket at close()
// make the kernel send a reset, and a reset destroys what the peer had not read yet: the close
// must read and drop them, and wait for the peer's own close after its FIN.
TEST(ConnectionTest, FlushCloseSurvivesAPeerThatKeepsSending) {
  event::Loop loop;
  const std::string payload = Pattern(8 << 20);
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  server.setup = [&](Connection& conn, RecordingCallbacks&) {
    conn.Write(payload);
    conn.Close(CloseMode::kFlush);
  };
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  client->ReadDisable();  // the payload piles up in the kernel and in the server's buffer
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected && !server.conns.empty(); }, kWait));
  loop.RunUntil([] { return false; }, milliseconds(50));
  // Bytes the closing server will never use (an HTTP/2 client's WINDOW_UPDATEs, say).
  client->Write(std::string(64 << 10, 'y'));
  loop.RunUntil([] { return false; }, milliseconds(50));
  client->ReadEnable();
  ASSERT_TRUE(loop.RunUntil([&] { return cb.end_stream || cb.closes > 0; }, kWait));
  EXPECT_EQ(cb.received.size(), payload.size());
  EXPECT_TRUE(cb.received == payload);
  EXPECT_TRUE(cb.end_stream);
  EXPECT_EQ(cb.closes, 0);  // an end of stream, not a reset
  // The server waited for the client's close.
  EXPECT_EQ(server.callbacks[0]->closes, 0);
  client->Close(CloseMode::kFlush);
  ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes == 1; }, kWait));
  EXPECT_EQ(server.callbacks[0]->close_reason, CloseReason::kLocalClose);
  EXPECT_TRUE(server.callbacks[0]->close_detail.ok()) << server.callbacks[0]->close_detail;
}

// Close(kFlushBriefly): a peer that keeps sending after it was cut off is read for at most
// brief_linger_bytes, then reset; one that sends a little is waited for as with kFlush.
TEST(ConnectionTest, BriefFlushCloseStopsReadingAPeerThatFloodsOn) {
  for (const size_t sent : {size_t{16} << 10, size_t{4} << 20}) {
    SCOPED_TRACE(sent);
    event::Loop loop;
    ListenerOptions options;
    options.connection.flush_close_timeout = milliseconds(300);
    Server server(loop, "127.0.0.1:0", options);
    ASSERT_TRUE(server.status.ok());
    server.setup = [](Connection& conn, RecordingCallbacks&) { conn.ReadDisable(); };
    auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
    RecordingCallbacks cb;
    client->SetCallbacks(&cb);
    ASSERT_TRUE(loop.RunUntil([&] { return cb.connected && !server.conns.empty(); }, kWait));
    client->Write(std::string(sent, 'y'));  // what the peer floods on with after the cut-off
    loop.RunUntil([] { return false; }, milliseconds(50));
    server.conns[0]->Write("goaway");
    server.conns[0]->Close(CloseMode::kFlushBriefly);
    if (sent < (64 << 10)) {
      // Under the budget: the server lingers for the client's close, as kFlush does.
      ASSERT_TRUE(loop.RunUntil([&] { return cb.end_stream || cb.closes > 0; }, kWait));
      EXPECT_EQ(cb.received, "goaway");
      EXPECT_TRUE(cb.end_stream);
      EXPECT_EQ(server.callbacks[0]->closes, 0);
      client->Close(CloseMode::kFlush);
      ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes == 1; }, kWait));
      EXPECT_TRUE(server.callbacks[0]->close_detail.ok()) << server.callbacks[0]->close_detail;
      continue;
    }
    // Over it: reading stops after about the budget; the close comes at flush_close_timeout.
    loop.RunUntil([] { return false; }, milliseconds(150));
    EXPECT_EQ(server.callbacks[0]->closes, 0);
    const uint64_t read = server.conns[0]->bytes_received();
    EXPECT_LT(read, (64u << 10) + (256u << 10));  // the budget, and one read past it at most
    ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes == 1; }, kWait));
    EXPECT_EQ(server.conns[0]->bytes_received(), read);
    EXPECT_EQ(cb.received, "goaway");
  }
}

// Close(kDropAndHold): what the peer did not read is dropped, nothing it sends is read any more,
// and the connection stays until flush_close_timeout instead of closing at once.
TEST(ConnectionTest, DropAndHoldDropsWhatIsBufferedAndHoldsThePeerUnreadUntilTheTimeout) {
  event::Loop loop;
  ListenerOptions options;
  options.connection.flush_close_timeout = milliseconds(400);
  Server server(loop, "127.0.0.1:0", options);
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected && !server.conns.empty(); }, kWait));
  client->ReadDisable();  // a flooder that never reads its replies
  const size_t replies = size_t{16} << 20;
  const std::string reply(Buffer::kBlockSize, 'a');
  for (size_t n = 0; n < replies; n += reply.size()) server.conns[0]->Write(reply);
  loop.RunUntil([] { return false; }, milliseconds(50));
  ASSERT_GT(server.conns[0]->buffered_write_bytes(), size_t{1} << 20);  // the kernel is full
  server.conns[0]->Close(CloseMode::kDropAndHold);
  EXPECT_EQ(server.callbacks[0]->closes, 0);
  loop.RunUntil([] { return false; }, milliseconds(50));
  // What libuv was handed stays until its write ends (with the socket): at most a few blocks.
  EXPECT_LE(server.conns[0]->buffered_write_bytes(),
            Connection::kMaxWriteInFlightBlocks * Buffer::kBlockSize);
  const uint64_t sent = server.conns[0]->bytes_sent();
  EXPECT_LT(sent, replies);
  // The peer floods on: none of it is read.
  const uint64_t read = server.conns[0]->bytes_received();
  client->Write(std::string(64 << 10, 'p'));
  loop.RunUntil([] { return false; }, milliseconds(150));
  EXPECT_EQ(server.callbacks[0]->closes, 0);
  EXPECT_EQ(server.conns[0]->bytes_received(), read);
  EXPECT_EQ(server.conns[0]->bytes_sent(), sent);
  // Closed at the timeout, not before, and without an error: the drop was asked for.
  ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes == 1; }, kWait));
  EXPECT_EQ(server.callbacks[0]->close_reason, CloseReason::kLocalClose);
  EXPECT_TRUE(server.callbacks[0]->close_detail.ok()) << server.callbacks[0]->close_detail;
  EXPECT_EQ(server.conns[0]->bytes_received(), read);
  client->ReadEnable();
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes > 0 || cb.end_stream; }, kWait));
  EXPECT_LE(cb.received.size(), sent);
}

// The same when the flush ends inside Close() itself, before any read callback could see what
// the peer sent: the peer's bytes still wait unread in the socket (a reply to an upload the
// server stopped reading).
TEST(ConnectionTest, FlushCloseWithUnreadBytesInTheSocketWaitsForThePeer) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  server.setup = [](Connection& conn, RecordingCallbacks&) { conn.ReadDisable(); };
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected && !server.conns.empty(); }, kWait));
  client->Write(std::string(16 << 10, 'y'));  // never read by the server
  loop.RunUntil([] { return false; }, milliseconds(50));
  server.conns[0]->Write("reply");
  server.conns[0]->Close(CloseMode::kFlush);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.end_stream || cb.closes > 0; }, kWait));
  EXPECT_EQ(cb.received, "reply");
  EXPECT_TRUE(cb.end_stream);
  EXPECT_EQ(cb.closes, 0);                    // an end of stream, not a reset
  EXPECT_EQ(server.callbacks[0]->closes, 0);  // waiting for the client's close
  client->Close(CloseMode::kFlush);
  ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes == 1; }, kWait));
  EXPECT_TRUE(server.callbacks[0]->close_detail.ok()) << server.callbacks[0]->close_detail;
}

// A transport that refuses the peer on its first bytes, the way TLS refuses a handshake: it
// leaves its reason (a TLS alert, here a text) in `out` and fails.
class RefusingTransport final : public Transport {
 public:
  absl::Status Start(const Address&, Buffer&) override { return absl::OkStatus(); }
  absl::Status OnReceived(Buffer& wire_in, Buffer&, Buffer& out) override {
    wire_in.Clear();
    out.Append("refused: certificate required");
    return absl::PermissionDeniedError("refused");
  }
  absl::Status Send(Buffer&, Buffer&) override { return absl::OkStatus(); }
  void Shutdown(Buffer&) override {}
  bool HandshakeComplete() const override { return false; }
  const PeerInfo& peer() const override { return peer_; }

 private:
  PeerInfo peer_;
};

// What a failing transport leaves to send reaches the peer before the close, followed by an
// end of stream: also when the peer sent more than the failed read took, which a close() with
// unread bytes would answer with a reset. The client is a plain socket: libuv may report a
// reset that follows data as an end of stream.
TEST(ConnectionTest, TransportFailureSendsItsLastWordsBeforeClosing) {
  for (size_t sent : {size_t{5}, size_t{48} << 10}) {
    SCOPED_TRACE(sent);
    event::Loop loop;
    ListenerOptions options;
    options.transport_factory = [] { return std::make_unique<RefusingTransport>(); };
    Server server(loop, "127.0.0.1:0", std::move(options));
    ASSERT_TRUE(server.status.ok());
    // Everything arrives before the server reads: its first read takes one block of it.
    server.setup = [](Connection& conn, RecordingCallbacks&) { conn.ReadDisable(); };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(connect(fd, server.listener->address().as_sockaddr(),
                      server.listener->address().sockaddr_len()),
              0);
    ASSERT_TRUE(loop.RunUntil([&] { return !server.conns.empty(); }, kWait));
    const std::string bytes(sent, 'x');
    ASSERT_EQ(send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(sent));
    loop.RunUntil([] { return false; }, milliseconds(50));
    server.conns[0]->ReadEnable();
    ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes > 0; }, kWait));
    EXPECT_EQ(server.callbacks[0]->close_reason, CloseReason::kTransportError);
    EXPECT_EQ(server.callbacks[0]->close_detail.code(), absl::StatusCode::kPermissionDenied);

    std::string received;
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) received.append(buf, static_cast<size_t>(n));
    EXPECT_EQ(received, "refused: certificate required");
    EXPECT_EQ(n, 0) << "not an end of stream: " << strerror(errno);
    close(fd);
  }
}

// A transport whose peer ends its side with a message of the transport itself, as TLS does with
// close_notify: "BYE" here; what follows it is discarded.
class ClosingTransport final : public Transport {
 public:
  absl::Status Start(const Address&, Buffer&) override { return absl::OkStatus(); }
  absl::Status OnReceived(Buffer& wire_in, Buffer& app_in, Buffer&) override {
    std::string text = wire_in.ToString();
    wire_in.Clear();
    if (closed_) return absl::OkStatus();
    if (const size_t bye = text.find("BYE"); bye != std::string::npos) {
      text.resize(bye);
      closed_ = true;
    }
    app_in.Append(text);
    return absl::OkStatus();
  }
  absl::Status Send(Buffer& app_out, Buffer& out) override {
    out.Move(app_out);
    return absl::OkStatus();
  }
  void Shutdown(Buffer&) override {}
  bool HandshakeComplete() const override { return true; }
  bool PeerClosed() const override { return closed_; }
  const PeerInfo& peer() const override { return peer_; }

 private:
  bool closed_ = false;
  PeerInfo peer_;
};

// The peer's close in the transport (TLS close_notify) is the end of its stream, although its
// socket stays open: the owner answers and closes, and the peer sees everything, then EOF.
TEST(ConnectionTest, APeerClosingInTheTransportEndsItsStream) {
  event::Loop loop;
  ListenerOptions options;
  options.transport_factory = [] { return std::make_unique<ClosingTransport>(); };
  Server server(loop, "127.0.0.1:0", std::move(options));
  ASSERT_TRUE(server.status.ok());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(connect(fd, server.listener->address().as_sockaddr(),
                    server.listener->address().sockaddr_len()),
            0);
  ASSERT_TRUE(loop.RunUntil([&] { return !server.conns.empty(); }, kWait));
  const std::string bytes = "request BYE ignored";
  ASSERT_EQ(send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->end_stream; }, kWait));
  EXPECT_EQ(server.callbacks[0]->received, "request ");
  server.conns[0]->Write("answer");
  server.conns[0]->Close(CloseMode::kFlush);
  ASSERT_TRUE(loop.RunUntil([&] { return server.callbacks[0]->closes > 0; }, kWait));
  std::string received;
  char buf[64];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) received.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(received, "answer");
  EXPECT_EQ(n, 0) << strerror(errno);
  close(fd);
}

TEST(ConnectionTest, ReadDisableCounts) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected && !server.conns.empty(); }, kWait));
  client->ReadDisable();
  client->ReadDisable();
  server.conns[0]->Write("data");
  loop.RunUntil([] { return false; }, milliseconds(30));
  EXPECT_EQ(cb.received, "");
  client->ReadEnable();  // one reason left
  EXPECT_FALSE(client->read_enabled());
  loop.RunUntil([] { return false; }, milliseconds(30));
  EXPECT_EQ(cb.received, "");
  client->ReadEnable();
  EXPECT_TRUE(client->read_enabled());
  ASSERT_TRUE(loop.RunUntil([&] { return cb.received == "data"; }, kWait));
}

TEST(ConnectionTest, ReadsAtMostTheBudgetPerLoopTurnThenResume) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  constexpr size_t kTotal = 2 << 20;
  const std::string flood = Pattern(kTotal);
  server.setup = [&](Connection& conn, RecordingCallbacks&) { conn.Write(flood); };
  ConnectionOptions options;
  options.read_budget_per_turn = 32 << 10;
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5), nullptr, options);
  RecordingCallbacks cb;
  std::map<uint64_t, size_t> per_turn;
  cb.on_data = [&](Buffer& data, bool) {
    per_turn[loop.turn()] += data.length();
    cb.received += data.ToString();
    data.Clear();
  };
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return cb.received.size() == kTotal; }, kWait));
  EXPECT_EQ(cb.received, flood);
  EXPECT_GT(client->reads_throttled(), 0u);
  size_t most = 0;
  for (const auto& [turn, bytes] : per_turn) most = std::max(most, bytes);
  // The read that crosses the budget completes: at most one read (a buffer block) past it.
  EXPECT_LE(most, options.read_budget_per_turn + Buffer::kBlockSize) << per_turn.size() << " turns";

  // Without a budget, one turn takes far more when that much is waiting.
  options.read_budget_per_turn = 0;
  Server server2(loop, "127.0.0.1:0");
  server2.setup = server.setup;
  auto unlimited =
      Connection::Connect(loop, server2.listener->address(), seconds(5), nullptr, options);
  RecordingCallbacks cb2;
  per_turn.clear();
  cb2.on_data = [&](Buffer& data, bool) {
    per_turn[loop.turn()] += data.length();
    cb2.received += data.ToString();
    data.Clear();
  };
  unlimited->SetCallbacks(&cb2);
  ASSERT_TRUE(loop.RunUntil([&] { return cb2.received.size() == kTotal; }, kWait));
  EXPECT_EQ(unlimited->reads_throttled(), 0u);
}

TEST(ConnectionTest, DestroyFromOwnDataCallback) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  server.setup = [](Connection& conn, RecordingCallbacks&) {
    conn.Write(std::string(200 << 10, 'x'));  // several reads' worth
  };
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  bool destroyed = false;
  cb.on_data = [&](Buffer&, bool) {
    client.reset();
    destroyed = true;
  };
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return destroyed; }, kWait));
  EXPECT_EQ(cb.data_events, 1);
  EXPECT_EQ(cb.closes, 0);  // destroying never calls back
  ASSERT_TRUE(loop.RunUntil(
      [&] { return !server.callbacks.empty() && server.callbacks[0]->closes == 1; }, kWait));
}

TEST(ConnectionTest, DestroyFromOwnCloseCallback) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  cb.on_close = [&](CloseReason) { client.reset(); };
  client->SetCallbacks(&cb);
  ASSERT_TRUE(loop.RunUntil([&] { return !server.conns.empty(); }, kWait));
  server.conns[0]->Close(CloseMode::kAbort);
  ASSERT_TRUE(loop.RunUntil([&] { return client == nullptr; }, kWait));
  EXPECT_EQ(cb.closes, 1);
}

TEST(ConnectionTest, CallbacksCanBeReplacedInsideCallback) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks first;
  RecordingCallbacks second;
  first.on_data = [&](Buffer& data, bool) {
    first.received += data.ToString();
    data.Drain(data.length());
    client->SetCallbacks(&second);  // e.g. protocol detection handing over to a codec
  };
  client->SetCallbacks(&first);
  ASSERT_TRUE(loop.RunUntil([&] { return !server.conns.empty(); }, kWait));
  server.conns[0]->Write("one");
  ASSERT_TRUE(loop.RunUntil([&] { return !first.received.empty(); }, kWait));
  server.conns[0]->Write("two");
  ASSERT_TRUE(loop.RunUntil([&] { return second.received == "two"; }, kWait));
  EXPECT_EQ(first.received, "one");
}

TEST(ConnectionTest, WriteAfterPeerResetReportsCloseLater) {
  event::Loop loop;
  Server server(loop, "127.0.0.1:0");
  ASSERT_TRUE(server.status.ok());
  auto client = Connection::Connect(loop, server.listener->address(), seconds(5));
  RecordingCallbacks cb;
  client->SetCallbacks(&cb);
  client->ReadDisable();  // only writes can discover the reset
  ASSERT_TRUE(loop.RunUntil([&] { return cb.connected && !server.conns.empty(); }, kWait));
  server.conns[0]->Close(CloseMode::kAbort);
  loop.RunUntil([] { return false; }, milliseconds(20));  // let the RST arrive
  // Keep writing until the write fails; the failure is never reported from inside Write().
  for (int i = 0; i < 100 && !client->closed(); ++i) {
    client->Write(std::string(64 << 10, 'z'));
    EXPECT_EQ(cb.closes, 0);
  }
  ASSERT_TRUE(loop.RunUntil([&] { return cb.closes > 0; }, kWait));
  EXPECT_EQ(cb.closes, 1);
  EXPECT_EQ(cb.close_reason, CloseReason::kRemoteReset);
}

}  // namespace
}  // namespace meshlet::net
