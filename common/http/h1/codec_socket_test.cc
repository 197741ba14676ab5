// The HTTP/1 codec over real sockets on 127.0.0.1:0, driven by a Loop: a tiny server on
// ServerCodec answered by curl (keep-alive, a 1 MiB upload, an oversized header), a raw-socket
// pipelining client, and ClientCodec talking to the server.

#include <stdio.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/h1/codec.h"
#include "common/http/h1/codec_test_util.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "common/net/listener.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::http::h1 {
namespace {

using ::testing::HasSubstr;

constexpr auto kTimeout = std::chrono::seconds(30);

std::string TempPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

// A small origin: /hello answers "hello world\n", /echo answers with the request body, /slow/N
// answers "N" a few milliseconds later (so pipelined requests queue behind it).
class TestServer {
 public:
  TestServer(event::Loop& loop, CodecOptions options) : loop_(loop), options_(options) {}
  ~TestServer() {
    listener_.reset();
    sessions_.clear();
  }

  void Start() {
    auto address = net::Address::Parse("127.0.0.1:0");
    ASSERT_TRUE(address.ok());
    auto listener = net::Listener::Create(
        loop_, *address, net::ListenerOptions(), [this](std::unique_ptr<net::Connection> c) {
          sessions_.push_back(std::make_unique<Session>(*this, std::move(c)));
        });
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
  }
  uint16_t port() const { return listener_->address().port(); }
  const net::Address& address() const { return listener_->address(); }
  uint64_t accepted() const { return listener_->accepted_count(); }
  std::string Url(absl::string_view path) const {
    return absl::StrCat("http://127.0.0.1:", port(), path);
  }
  uint64_t requests = 0;

 private:
  class Session;

  class Handler : public StreamDecoder, public StreamCallbacks {
   public:
    Handler(TestServer& server, StreamEncoder& encoder)
        : server_(server), encoder_(encoder), timer_(server.loop_, [this] { Respond(); }) {
      encoder_.GetStream().AddCallbacks(*this);
    }
    void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override {
      ++server_.requests;
      path_ = std::string(headers->Get(":path").value_or(""));
      if (end_stream) OnRequestComplete();
    }
    void DecodeData(net::Buffer& data, bool end_stream) override {
      body_.Move(data);
      if (end_stream) OnRequestComplete();
    }
    void DecodeTrailers(HeaderMapPtr) override { OnRequestComplete(); }
    void OnResetStream(StreamResetReason, absl::string_view) override {
      reset_ = true;
      timer_.Disable();
    }

   private:
    void OnRequestComplete() {
      if (absl::StartsWith(path_, "/slow/")) {
        timer_.Enable(std::chrono::milliseconds(3));
        return;
      }
      Respond();
    }
    void Respond() {
      if (reset_) return;
      net::Buffer body;
      if (path_ == "/echo") {
        body.Move(body_);
      } else if (absl::StartsWith(path_, "/slow/")) {
        body.Append(path_.substr(6));
      } else {
        body.Append("hello world\n");
      }
      encoder_.EncodeHeaders(
          HeaderMap{{":status", "200"}, {"content-length", absl::StrCat(body.length())}}, false);
      encoder_.EncodeData(body, true);
    }

    TestServer& server_;
    StreamEncoder& encoder_;
    event::Timer timer_;
    std::string path_;
    net::Buffer body_;
    bool reset_ = false;
  };

  class Session : public net::ConnectionCallbacks,
                  public CodecIo,
                  public ServerConnectionCallbacks {
   public:
    Session(TestServer& server, std::unique_ptr<net::Connection> connection)
        : server_(server),
          connection_(std::move(connection)),
          codec_(server.loop_, *this, *this, server.options_) {
      connection_->SetCallbacks(this);
    }
    ~Session() override { connection_->SetCallbacks(nullptr); }

    // CodecIo. An orderly close half-closes and keeps reading (discarding) until the peer
    // closes, so a client still sending (an oversized header) reads our reply instead of a reset.
    void Write(net::Buffer& data) override { connection_->Write(data); }
    size_t UnsentBytes() const override { return connection_->buffered_write_bytes(); }
    void ReadDisable(bool disable) override {
      disable ? connection_->ReadDisable() : connection_->ReadEnable();
    }
    void Close(bool flush) override {
      if (flush) {
        connection_->ShutdownWrite();
      } else {
        connection_->Close(net::CloseMode::kNoFlush);
      }
    }

    // ServerConnectionCallbacks
    StreamDecoder& NewStream(StreamEncoder& encoder) override {
      handlers_.push_back(std::make_unique<Handler>(server_, encoder));
      return *handlers_.back();
    }

    // net::ConnectionCallbacks
    void OnData(net::Buffer& data, bool end_stream) override {
      (void)codec_.Dispatch(data);
      data.Clear();
      if (end_stream) (void)codec_.OnEndOfStream();
    }
    void OnWriteHighWatermark() override { codec_.OnUnderlyingWriteHighWatermark(); }
    void OnWriteLowWatermark() override { codec_.OnUnderlyingWriteLowWatermark(); }
    void OnClose(net::CloseReason, const absl::Status&) override {
      codec_.OnConnectionClosed();
      server_.Remove(this);
    }

   private:
    TestServer& server_;
    std::unique_ptr<net::Connection> connection_;
    ServerCodec codec_;
    std::vector<std::unique_ptr<Handler>> handlers_;
  };

  void Remove(Session* session) {
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->get() == session) {
        loop_.DeferDelete(std::move(*it));
        sessions_.erase(it);
        return;
      }
    }
  }

  event::Loop& loop_;
  CodecOptions options_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<Session>> sessions_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command on another thread while the loop serves it; returns its stdout.
CommandResult RunWhileServing(event::Loop& loop, const std::string& command) {
  CommandResult result;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    FILE* f = popen(command.c_str(), "r");
    if (f != nullptr) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), f)) > 0) result.output.append(buf, n);
      int status = pclose(f);
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    done = true;
    loop.Post([] {});  // wake the loop so it sees `done`
  });
  loop.RunUntil([&] { return done.load(); }, kTimeout);
  runner.join();
  return result;
}

bool HaveTool(const char* name) {
  std::string cmd = absl::StrCat("command -v ", name, " >/dev/null 2>&1");
  return std::system(cmd.c_str()) == 0;
}

#define REQUIRE_TOOL(name) \
  if (!HaveTool(name)) FAIL() << name << " is not installed; ./dev deps installs it"

std::string Curl(const std::string& args) {
  return absl::StrCat("curl --http1.1 -sS --noproxy '*' --max-time 20 ", args);
}

class CodecSocketTest : public ::testing::Test {
 protected:
  void StartServer(CodecOptions options = CodecOptions()) {
    server_ = std::make_unique<TestServer>(loop_, options);
    server_->Start();
  }
  void TearDown() override {
    server_.reset();
    loop_.RunUntilIdle();
  }

  event::Loop loop_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(CodecSocketTest, CurlKeepAliveReusesTheConnection) {
  REQUIRE_TOOL("curl");
  StartServer();
  CommandResult r = RunWhileServing(loop_, Curl(absl::StrCat("-v ", server_->Url("/hello"), " ",
                                                             server_->Url("/hello2"), " 2>&1")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("Re-using existing connection"));
  EXPECT_EQ(server_->accepted(), 1u);
  EXPECT_EQ(server_->requests, 2u);
  size_t first = r.output.find("hello world");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(r.output.find("hello world", first + 1), std::string::npos);
}

TEST_F(CodecSocketTest, CurlPostsOneMegabyte) {
  REQUIRE_TOOL("curl");
  CodecOptions options;
  options.auto_continue = true;  // curl sends "Expect: 100-continue" above 1 MiB
  StartServer(options);
  for (size_t size : {size_t{1} << 20, (size_t{1} << 20) + 1}) {
    std::string body(size, '\0');
    for (size_t i = 0; i < size; ++i) body[i] = static_cast<char>('a' + (i * 7919) % 26);
    std::string in_path = TempPath("body.bin");
    std::string out_path = TempPath("echo.bin");
    {
      std::ofstream f(in_path, std::ios::binary);
      f << body;
    }
    CommandResult r =
        RunWhileServing(loop_, Curl(absl::StrCat("--data-binary @", in_path, " -o ", out_path,
                                                 " -w '%{http_code}' ", server_->Url("/echo"))));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "200");
    const std::string echoed = ReadFile(out_path).value();
    EXPECT_EQ(echoed.size(), body.size());
    EXPECT_TRUE(echoed == body);
  }
}

TEST_F(CodecSocketTest, CurlHugeHeaderGets431) {
  REQUIRE_TOOL("curl");
  StartServer();
  std::string header_path = TempPath("big-header.txt");
  {
    std::ofstream f(header_path);
    f << "X-Big: " << std::string(100 * 1024, 'a') << "\n";
  }
  CommandResult r = RunWhileServing(
      loop_, Curl(absl::StrCat("-H @", header_path, " -o /dev/null -w '%{http_code}' ",
                               server_->Url("/hello"))));
  EXPECT_EQ(r.output, "431");
  EXPECT_EQ(server_->requests, 0u);
}

// Collects everything a raw client connection receives.
class RawClient : public net::ConnectionCallbacks {
 public:
  void OnConnected() override { connected = true; }
  void OnData(net::Buffer& data, bool end_stream) override {
    received += data.ToString();
    data.Clear();
    if (end_stream) eof = true;
  }
  void OnClose(net::CloseReason, const absl::Status&) override { closed = true; }
  bool connected = false;
  bool eof = false;
  bool closed = false;
  std::string received;
};

TEST_F(CodecSocketTest, RawSocketPipelining) {
  StartServer();
  auto connection = net::Connection::Connect(loop_, server_->address(), std::chrono::seconds(5));
  RawClient client;
  connection->SetCallbacks(&client);
  // Three requests in one write; the first two are answered late, so the later ones queue.
  connection->Write(
      "GET /slow/1 HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /slow/2 HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return client.eof || client.closed; }, kTimeout));
  const std::string& got = client.received;
  size_t a = got.find("\r\n\r\n1HTTP/1.1 200 OK");
  size_t b = got.find("\r\n\r\n2HTTP/1.1 200 OK");
  size_t c = got.find("\r\n\r\nhello world\n");
  EXPECT_NE(a, std::string::npos) << got;
  EXPECT_NE(b, std::string::npos) << got;
  EXPECT_NE(c, std::string::npos) << got;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_THAT(got, HasSubstr("connection: close"));
  EXPECT_EQ(server_->requests, 3u);
  connection->SetCallbacks(nullptr);
  connection.reset();
}

// ClientCodec on a real connection to the ServerCodec-based server.
class ClientSession : public net::ConnectionCallbacks, public CodecIo {
 public:
  ClientSession(event::Loop& loop, const net::Address& address)
      : connection_(net::Connection::Connect(loop, address, std::chrono::seconds(5))),
        codec_(loop, *this, goaway_) {
    connection_->SetCallbacks(this);
  }
  ~ClientSession() override { connection_->SetCallbacks(nullptr); }

  void Write(net::Buffer& data) override { connection_->Write(data); }
  size_t UnsentBytes() const override { return connection_->buffered_write_bytes(); }
  void ReadDisable(bool disable) override {
    disable ? connection_->ReadDisable() : connection_->ReadEnable();
  }
  void Close(bool flush) override {
    connection_->Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
  }
  void OnData(net::Buffer& data, bool end_stream) override {
    (void)codec_.Dispatch(data);
    data.Clear();
    if (end_stream) (void)codec_.OnEndOfStream();
  }
  void OnClose(net::CloseReason, const absl::Status&) override {
    closed = true;
    codec_.OnConnectionClosed();
  }

  ClientCodec& codec() { return codec_; }
  bool closed = false;

 private:
  std::unique_ptr<net::Connection> connection_;
  testing::RecordingConnectionCallbacks goaway_;
  ClientCodec codec_;
};

TEST_F(CodecSocketTest, ClientCodecAgainstServerCodec) {
  StartServer();
  ClientSession session(loop_, server_->address());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(session.codec().CanOpenStream());
    testing::RecordingDecoder response;
    StreamEncoder& request = session.codec().NewStream(response);
    request.GetStream().AddCallbacks(response);
    request.EncodeHeaders(HeaderMap{{":method", "POST"},
                                    {":scheme", "http"},
                                    {":path", "/echo"},
                                    {":authority", "127.0.0.1"}},
                          false);
    std::string payload(100000 + i, static_cast<char>('x' + i));
    net::Buffer body(payload);
    request.EncodeData(body, true);  // chunked: no content-length given
    ASSERT_TRUE(loop_.RunUntil([&] { return response.ended || response.reset; }, kTimeout));
    EXPECT_FALSE(response.reset.has_value());
    EXPECT_EQ(response.Header(":status"), "200");
    EXPECT_TRUE(response.body == payload);
  }
  EXPECT_EQ(server_->accepted(), 1u);
  EXPECT_FALSE(session.closed);
}

}  // namespace
}  // namespace meshlet::http::h1
