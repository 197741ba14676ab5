// HttpServer with real clients: curl over HTTP/1.1 and HTTP/2 (prior knowledge).
#include "common/http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"

namespace meshlet::http {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// Runs an HttpServer on a loop of its own thread; the tests are its clients.
class ServerOnLoopTest : public ::testing::Test {
 protected:
  // Creates the server on the loop thread with `create` (called there) and starts the loop.
  void Start(absl::AnyInvocable<absl::StatusOr<std::unique_ptr<HttpServer>>()> create) {
    std::promise<uint16_t> port;
    loop_.Post([&] {
      auto server = create();
      ASSERT_TRUE(server.ok()) << server.status();
      server_ = std::move(*server);
      port.set_value(server_->address().port());
    });
    thread_ = std::thread([this] { loop_.Run(); });
    port_ = port.get_future().get();
  }

  void TearDown() override {
    if (!thread_.joinable()) return;
    loop_.Post([this] {
      BeforeStop();
      server_.reset();
      loop_.Stop();
    });
    thread_.join();
  }

  // On the loop thread, before the server goes.
  virtual void BeforeStop() {}

  std::string Url(absl::string_view path) { return absl::StrCat("http://127.0.0.1:", port_, path); }

  event::Loop loop_;
  std::thread thread_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};

class HttpServerTest : public ServerOnLoopTest {
 protected:
  void SetUp() override {
    if (RunCommand("command -v curl").exit_code != 0) {
      FAIL() << "curl is missing: ./dev deps installs it";
    }
    Start([this] {
      HttpServerOptions options;
      options.max_request_body_bytes = 1000;
      return HttpServer::Create(
          loop_, *net::Address::Parse("127.0.0.1:0"), options, [](const ServerRequest& r) {
            if (r.path() == "/echo") {
              ServerResponse response = ServerResponse::Text(
                  200, absl::StrCat(r.method(), " ", ProtocolName(r.protocol), " ", r.body.size(),
                                    " q=", r.QueryParams()["q"], "\n"));
              response.headers.Add("x-test", "yes");
              return response;
            }
            return ServerResponse::Text(404, "no such endpoint\n");
          });
    });
  }
};

TEST(CrossOriginReasonTest, PagesOfAnotherOriginAreNamedAndEveryoneElseIsNot) {
  auto reason = [](std::vector<std::pair<std::string, std::string>> headers,
                   absl::string_view scheme = "https") {
    ServerRequest request;
    request.headers.Add(":method", "POST");
    request.headers.Add(":authority", "cp.example:15014");
    for (const auto& [name, value] : headers) request.headers.Add(name, value);
    return CrossOriginReason(request, scheme);
  };
  // Clients that are not browsers, and the server's own pages.
  EXPECT_EQ(reason({}), "");
  EXPECT_EQ(reason({{"origin", "https://cp.example:15014"}}), "");
  EXPECT_EQ(reason({{"sec-fetch-site", "same-origin"}}), "");
  EXPECT_EQ(reason({{"sec-fetch-site", "none"}}), "");
  EXPECT_EQ(reason({{"origin", "http://cp.example:15014"}}, "http"), "");
  // Pages of other origins.
  EXPECT_EQ(reason({{"origin", "https://evil.example"}}),
            "origin https://evil.example is not https://cp.example:15014");
  EXPECT_EQ(reason({{"origin", "http://cp.example:15014"}}),
            "origin http://cp.example:15014 is not https://cp.example:15014");
  EXPECT_EQ(reason({{"origin", "null"}}), "origin null is not https://cp.example:15014");
  EXPECT_EQ(reason({{"sec-fetch-site", "cross-site"}}), "sec-fetch-site: cross-site");
  EXPECT_EQ(reason({{"sec-fetch-site", "same-site"}, {"origin", "https://cp.example:15014"}}),
            "sec-fetch-site: same-site");
  // HTTP/1 requests carry Host rather than :authority.
  ServerRequest http1;
  http1.headers.Add("host", "127.0.0.1:15000");
  http1.headers.Add("origin", "http://127.0.0.1:15000");
  EXPECT_EQ(CrossOriginReason(http1, "http"), "");
}

TEST_F(HttpServerTest, Http1GetWithQueryAndHeaders) {
  CommandResult r =
      RunCommand(absl::StrCat("curl -sS -i --http1.1 '", Url("/echo?q=a%20b&x"), "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("HTTP/1.1 200"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("x-test: yes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("GET HTTP/1.1 0 q=a b"), std::string::npos) << r.output;
}

TEST_F(HttpServerTest, Http2PriorKnowledgePost) {
  CommandResult r = RunCommand(
      absl::StrCat("curl -sS -i --http2-prior-knowledge -d 0123456789 '", Url("/echo"), "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("HTTP/2 200"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("POST HTTP/2 10"), std::string::npos) << r.output;
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  CommandResult r = RunCommand(
      absl::StrCat("curl -sS -v --http1.1 '", Url("/echo"), "' '", Url("/missing"), "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("no such endpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Re-using existing connection"), std::string::npos) << r.output;
}

TEST_F(HttpServerTest, OversizedBodyGets413) {
  for (absl::string_view flag : {"--http1.1", "--http2-prior-knowledge"}) {
    CommandResult r =
        RunCommand(absl::StrCat("head -c 5000 /dev/zero | curl -sS -o /dev/null -w '%{http_code}' ",
                                flag, " --data-binary @- '", Url("/echo"), "'"));
    EXPECT_EQ(r.output.substr(0, 3), "413") << flag << ": " << r.output;
  }
}

// An AsyncRequestHandler answering on a later loop turn (after a timer), over HTTP/1.1 and
// HTTP/2; a request whose client has gone by then is dropped without harm.
class AsyncHttpServerTest : public ServerOnLoopTest {
 protected:
  void SetUp() override {
    // As every meshlet main does: a write to a client that has gone is an error on that
    // connection, not the end of the process.
    ::signal(SIGPIPE, SIG_IGN);
    Start([this] {
      return HttpServer::Create(loop_, *net::Address::Parse("127.0.0.1:0"), HttpServerOptions{},
                                [this](const ServerRequest& r, Responder respond) {
                                  const int delay_ms = r.path() == "/slow" ? 1500 : 100;
                                  auto timer = std::make_unique<event::Timer>(
                                      loop_, [this, respond, path = std::string(r.path())] {
                                        ++answered_;
                                        respond(ServerResponse::Text(200, "later " + path + "\n"));
                                      });
                                  timer->Enable(std::chrono::milliseconds(delay_ms));
                                  timers_.push_back(std::move(timer));
                                });
    });
  }

  void BeforeStop() override { timers_.clear(); }

  std::vector<std::unique_ptr<event::Timer>> timers_;
  std::atomic<int> answered_{0};
};

TEST_F(AsyncHttpServerTest, AnswersLaterOverBothProtocols) {
  for (absl::string_view flag : {"--http1.1", "--http2-prior-knowledge"}) {
    CommandResult r = RunCommand(absl::StrCat("curl -sS ", flag, " '", Url("/a"), "'"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "later /a\n") << flag;
  }
}

TEST_F(AsyncHttpServerTest, AnAnswerForAClientThatLeftIsDropped) {
  // curl gives up after 0.3 s; the answer comes at 1.5 s, to nobody.
  CommandResult r = RunCommand(absl::StrCat("curl -sS --max-time 0.3 '", Url("/slow"), "'"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (answered_ == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(answered_, 1);
  // Still serving.
  r = RunCommand(absl::StrCat("curl -sS '", Url("/b"), "'"));
  EXPECT_EQ(r.output, "later /b\n");
}

// Streamed answers (ServerResponse::stream): pieces as they come, over both protocols, and the
// client's going reported.
class StreamedHttpServerTest : public ServerOnLoopTest {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    Start([this] {
      return HttpServer::Create(
          loop_, *net::Address::Parse("127.0.0.1:0"), HttpServerOptions{},
          [this](const ServerRequest& r, Responder respond) {
            const bool forever = r.path() == "/forever";
            ServerResponse response;
            response.headers.Add("content-type", "application/x-ndjson");
            response.body = "first\n";
            response.stream = [this, forever](std::shared_ptr<ResponseBodyStream> body) {
              body->OnGone([this] { ++gone_; });
              // A piece every 20 ms: three, then the end (or on and on until the client goes).
              auto n = std::make_shared<int>(0);
              auto timer = std::make_unique<event::Timer>(loop_, [this, body, n, forever] {
                if (body->gone()) return;
                body->Write(absl::StrCat("piece ", ++*n, "\n"));
                if (!forever && *n == 3) {
                  body->End();
                  EXPECT_FALSE(body->Write("late\n"));
                }
              });
              timer->EnableRepeating(std::chrono::milliseconds(20));
              timers_.push_back(std::move(timer));
            };
            respond(std::move(response));
          });
    });
  }

  void BeforeStop() override { timers_.clear(); }

  std::vector<std::unique_ptr<event::Timer>> timers_;
  std::atomic<int> gone_{0};
};

TEST_F(StreamedHttpServerTest, PiecesArriveInOrderAndTheEndEndsTheAnswer) {
  for (absl::string_view flag : {"--http1.1", "--http2-prior-knowledge"}) {
    CommandResult r = RunCommand(absl::StrCat("curl -sS -i ", flag, " '", Url("/three"), "'"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("first\npiece 1\npiece 2\npiece 3\n"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("content-length"), std::string::npos) << r.output;
    if (flag == "--http1.1") {
      EXPECT_NE(r.output.find("transfer-encoding: chunked"), std::string::npos) << r.output;
    }
  }
  EXPECT_EQ(gone_, 0);
}

TEST_F(StreamedHttpServerTest, AClientThatGoesIsReportedOnce) {
  CommandResult r = RunCommand(absl::StrCat("curl -sS --max-time 0.3 '", Url("/forever"), "'"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("first\npiece 1\n"), std::string::npos) << r.output;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (gone_ == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(gone_, 1);
}

// A streamed answer to a client that does not read: pieces are refused once the connection holds
// max_streamed_buffered_bytes unread, not held without bound.
class UnreadStreamHttpServerTest : public ServerOnLoopTest {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    Start([this] {
      HttpServerOptions options;
      options.max_streamed_buffered_bytes = 256 * 1024;
      return HttpServer::Create(
          loop_, *net::Address::Parse("127.0.0.1:0"), options,
          [this](const ServerRequest&, Responder respond) {
            ServerResponse response;
            response.stream = [this](std::shared_ptr<ResponseBodyStream> body) {
              auto timer = std::make_unique<event::Timer>(loop_, [this, body] {
                if (refused_ > 0 || body->gone()) return;
                if (body->Write(std::string(64 * 1024, 'x'))) {
                  sent_ += 64 * 1024;
                } else {
                  ++refused_;
                }
              });
              timer->EnableRepeating(std::chrono::milliseconds(1));
              timers_.push_back(std::move(timer));
            };
            respond(std::move(response));
          });
    });
  }

  void BeforeStop() override { timers_.clear(); }

  std::vector<std::unique_ptr<event::Timer>> timers_;
  std::atomic<int> refused_{0};
  std::atomic<size_t> sent_{0};
};

TEST_F(UnreadStreamHttpServerTest, PiecesAreRefusedOnceTheClientStopsReading) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (refused_ == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::close(fd);
  EXPECT_EQ(refused_, 1);
  // What was taken: the kernel's socket buffers and at most the limit more, not everything.
  EXPECT_LT(sent_, size_t{64} << 20);
}

// Raw clients that are slow on purpose, against a server with short timeouts.
class TimeoutHttpServerTest : public ServerOnLoopTest {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    Start([this] {
      HttpServerOptions options;
      options.request_timeout = std::chrono::milliseconds(300);
      options.idle_timeout = std::chrono::milliseconds(700);
      options.timeouts =
          *stats_.shared_shard().RegisterCounter("meshlet_test_http_timeouts_total", "Timeouts.");
      return HttpServer::Create(loop_, *net::Address::Parse("127.0.0.1:0"), options,
                                [this](const ServerRequest& r, Responder respond) {
                                  // Longer than both timeouts: the handler's time is not theirs.
                                  auto timer = std::make_unique<event::Timer>(
                                      loop_, [respond, path = std::string(r.path())] {
                                        respond(ServerResponse::Text(200, "later " + path + "\n"));
                                      });
                                  timer->Enable(std::chrono::milliseconds(900));
                                  timers_.push_back(std::move(timer));
                                });
    });
  }

  void BeforeStop() override { timers_.clear(); }

  int Connect() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }

  static void Send(int fd, absl::string_view bytes) {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }

  struct Ended {
    std::string received;
    double seconds = 0;  // from the call until the server's close
  };
  // Reads until the server closes (or 5 s pass: seconds is then 5 or more).
  static Ended ReadUntilClosed(int fd) {
    Ended ended;
    const auto start = std::chrono::steady_clock::now();
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) ended.received.append(buf, n);
    ended.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ::close(fd);
    return ended;
  }

  uint64_t Timeouts() {
    const StatsSnapshot snapshot = stats_.Snapshot();
    return snapshot.Find("meshlet_test_http_timeouts_total")->counter;
  }

  StatsRegistry stats_;
  std::vector<std::unique_ptr<event::Timer>> timers_;
};

TEST_F(TimeoutHttpServerTest, AHeadOrBodyThatTricklesGets408AndTheClose) {
  for (absl::string_view partial :
       {absl::string_view("GET /a HTTP/1.1\r\nHo"),
        absl::string_view("POST /a HTTP/1.1\r\nHost: a\r\ncontent-length: 10\r\n\r\n123")}) {
    int fd = Connect();
    Send(fd, partial);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Send(fd, "4");  // still arriving: the clock runs from the first byte, not the last
    Ended ended = ReadUntilClosed(fd);
    EXPECT_EQ(ended.received.substr(0, 29), "HTTP/1.1 408 Request Timeout\r") << partial;
    EXPECT_GT(ended.seconds, 0.1) << partial;
    EXPECT_LT(ended.seconds, 0.6) << partial;  // 0.3 s from the first byte, not 0.7 s idle
  }
  EXPECT_EQ(Timeouts(), 2u);
}

TEST_F(TimeoutHttpServerTest, AnIdleConnectionIsClosedAndAHandlerAtWorkIsNot) {
  // Nothing sent: closed at the idle timeout.
  Ended idle = ReadUntilClosed(Connect());
  EXPECT_EQ(idle.received, "");
  EXPECT_GT(idle.seconds, 0.6);
  EXPECT_LT(idle.seconds, 2.0);
  // A request the handler takes 0.9 s over: answered, then closed after the idle timeout.
  int fd = Connect();
  Send(fd, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  Ended answered = ReadUntilClosed(fd);
  EXPECT_NE(answered.received.find("later /slow"), std::string::npos) << answered.received;
  EXPECT_GT(answered.seconds, 0.9 + 0.6);
  EXPECT_LT(answered.seconds, 0.9 + 2.0);
  // A pipelined request that arrives while the handler works is no slow client: the server is
  // the slow one, and it reads that request only after answering the first.
  fd = Connect();
  Send(fd, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Send(fd, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  Ended pipelined = ReadUntilClosed(fd);
  EXPECT_NE(pipelined.received.find("later /slow"), std::string::npos) << pipelined.received;
  EXPECT_NE(pipelined.received.find("later /next"), std::string::npos) << pipelined.received;
  EXPECT_EQ(pipelined.received.find("408"), std::string::npos) << pipelined.received;
  // HTTP/2 frames that open no stream (the preface, SETTINGS) are no request: idle, not 0.3 s.
  fd = Connect();
  Send(fd, absl::string_view("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", 33));
  Ended h2 = ReadUntilClosed(fd);
  EXPECT_GT(h2.seconds, 0.6);
  EXPECT_LT(h2.seconds, 2.0);
  EXPECT_EQ(Timeouts(), 4u);
}

}  // namespace
}  // namespace meshlet::http
