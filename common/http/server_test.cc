// HttpServer with real clients: curl over HTTP/1.1 and HTTP/2 (prior knowledge).
#include "common/http/server.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace meshlet::http
