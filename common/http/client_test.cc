// HttpFetch and FetchBlocking against real servers on 127.0.0.1: HttpServer for well-behaved
// answers (plaintext and TLS), and raw listeners for answers that are late, cut short, too long
// or not HTTP.
#include "common/http/client.h"
#include "common/net/test_util.h"

#include <gtest/gtest.h>

#include <csignal>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/server.h"
#include "common/net/connection.h"
#include "common/net/listener.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"

namespace meshlet::http {
namespace {

using ::meshlet::tls::testing::ValueOrDie;

net::Address Loopback() { return *net::Address::Parse("127.0.0.1:0"); }

// What the test server saw of the last request.
struct SeenRequest {
  std::string method;
  std::string path;
  std::string host;
  std::string connection;
  std::string content_length;
  std::string custom;
  std::string body;
};

ServerResponse Answer(const ServerRequest& r, SeenRequest* seen) {
  auto get = [&](absl::string_view name) { return std::string(r.headers.Get(name).value_or("")); };
  *seen = {.method = std::string(r.method()),
           .path = get(":path"),
           .host = get(":authority"),
           .connection = get("connection"),
           .content_length = get("content-length"),
           .custom = get("x-custom"),
           .body = r.body};
  if (r.path() == "/unavailable") return ServerResponse::Text(503, "try later\n");
  if (r.path() == "/big") return ServerResponse::Text(200, std::string(100000, 'x'));
  ServerResponse response = ServerResponse::Text(200, absl::StrCat("hello ", r.body));
  response.headers.Add("x-answer", "42");
  return response;
}

// A raw listener whose connections get `on_accept`'s treatment (the test's misbehaving peers).
class RawServer : public net::ConnectionCallbacks {
 public:
  using OnAccept = std::function<void(net::Connection&)>;
  RawServer(event::Loop& loop, OnAccept on_accept) : on_accept_(std::move(on_accept)) {
    listener_ = *net::Listener::Create(loop, Loopback(), {},
                                       [this](std::unique_ptr<net::Connection> connection) {
                                         connection->SetCallbacks(this);
                                         on_accept_(*connection);
                                         connections_.push_back(std::move(connection));
                                       });
  }
  ~RawServer() override {
    for (auto& c : connections_) c->SetCallbacks(nullptr);
  }
  const net::Address& address() const { return listener_->address(); }
  void OnData(net::Buffer& data, bool) override { data.Clear(); }
  void OnClose(net::CloseReason, const absl::Status&) override {}

 private:
  OnAccept on_accept_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<net::Connection>> connections_;
};

class HttpFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    auto server = HttpServer::Create(loop_, Loopback(), {},
                                     [this](const ServerRequest& r) { return Answer(r, &seen_); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Runs one fetch to its end on the test's loop.
  ClientResult Fetch(std::vector<net::Address> addresses, ClientRequest request,
                     ClientOptions options = {}) {
    std::optional<ClientResult> result;
    auto fetch =
        HttpFetch::Start(loop_, std::move(addresses), std::move(request), std::move(options),
                         [&result](ClientResult r) { result = std::move(r); });
    EXPECT_FALSE(result.has_value()) << "done ran inside Start()";
    EXPECT_TRUE(loop_.RunUntil([&] { return result.has_value(); }, std::chrono::seconds(10)));
    fetch.reset();
    loop_.RunUntilIdle();
    return result.value_or(ClientResult{.error = ClientError::kTimeout, .detail = "test"});
  }

  // An address that refuses connections while the test runs.
  net::Address ClosedPort() { return *net::Address::Parse(refusing_.loopback()); }
  const net::testing::RefusingPort refusing_;

  event::Loop loop_;
  std::unique_ptr<HttpServer> server_;
  SeenRequest seen_;
};

TEST_F(HttpFetchTest, GetReturnsStatusHeadersAndBody) {
  ClientResult result =
      Fetch({server_->address()}, {.path = "/hello?x=1", .authority = "api.example"});
  ASSERT_TRUE(result.ok()) << ClientErrorName(result.error) << ": " << result.detail;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, "hello ");
  EXPECT_EQ(result.headers.Get("x-answer").value_or(""), "42");
  EXPECT_EQ(result.headers.Get("content-type").value_or(""), "text/plain; charset=utf-8");
  EXPECT_FALSE(result.headers.Has(":status"));
  EXPECT_EQ(seen_.method, "GET");
  EXPECT_EQ(seen_.path, "/hello?x=1");
  EXPECT_EQ(seen_.host, "api.example");
  EXPECT_EQ(seen_.connection, "close");  // one request per connection
  EXPECT_EQ(server_->requests_served(), 1u);
}

TEST_F(HttpFetchTest, PostSendsItsBodyWithItsLength) {
  ClientRequest request{.method = "POST", .path = "/post", .authority = "h", .body = "world"};
  request.headers.Add("x-custom", "v");
  ClientResult result = Fetch({server_->address()}, std::move(request));
  ASSERT_TRUE(result.ok()) << result.detail;
  EXPECT_EQ(result.body, "hello world");
  EXPECT_EQ(seen_.method, "POST");
  EXPECT_EQ(seen_.content_length, "5");
  EXPECT_EQ(seen_.custom, "v");
  EXPECT_EQ(seen_.body, "world");
  // An empty POST still states its length.
  ASSERT_TRUE(Fetch({server_->address()}, {.method = "POST", .path = "/post"}).ok());
  EXPECT_EQ(seen_.content_length, "0");
}

TEST_F(HttpFetchTest, AnErrorStatusIsAnAnswer) {
  ClientResult result = Fetch({server_->address()}, {.path = "/unavailable"});
  ASSERT_TRUE(result.ok()) << result.detail;
  EXPECT_EQ(result.status, 503);
  EXPECT_EQ(result.body, "try later\n");
}

TEST_F(HttpFetchTest, HeadOnlyEndsWithTheStatus) {
  ClientResult result = Fetch({server_->address()}, {.path = "/big"}, {.read_body = false});
  ASSERT_TRUE(result.ok()) << result.detail;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, "");
}

TEST_F(HttpFetchTest, AnswersLargerThanTheLimitFail) {
  ClientResult result =
      Fetch({server_->address()}, {.path = "/big"}, {.max_response_bytes = 50000});
  EXPECT_EQ(result.error, ClientError::kTooLarge);
  EXPECT_EQ(result.detail, "the answer is larger than 50000 bytes");
  EXPECT_TRUE(Fetch({server_->address()}, {.path = "/big"}, {.max_response_bytes = 200000}).ok());
}

TEST_F(HttpFetchTest, ARefusedConnectionTriesTheNextAddress) {
  const net::Address closed = ClosedPort();
  ClientResult refused = Fetch({closed}, {.path = "/"});
  EXPECT_EQ(refused.error, ClientError::kConnectFailed);
  EXPECT_EQ(refused.close_reason, net::CloseReason::kConnectFailed);
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(refused.detail), "refused"))
      << refused.detail;
  ClientResult second = Fetch({closed, server_->address()}, {.path = "/"});
  ASSERT_TRUE(second.ok()) << second.detail;
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(Fetch({}, {.path = "/"}).error, ClientError::kConnectFailed);
}

TEST_F(HttpFetchTest, NoAnswerWithinTheTimeout) {
  RawServer silent(loop_, [](net::Connection&) {});
  const auto start = std::chrono::steady_clock::now();
  ClientResult result =
      Fetch({silent.address()}, {.path = "/"}, {.timeout = std::chrono::milliseconds(200)});
  EXPECT_EQ(result.error, ClientError::kTimeout);
  EXPECT_EQ(result.detail, "no answer within 200ms");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(190));
}

TEST_F(HttpFetchTest, AnswersThatAreNotHttpOrCutShortFail) {
  RawServer garbage(loop_, [](net::Connection& c) { c.Write("SSH-2.0-OpenSSH\r\n\r\n"); });
  ClientResult malformed = Fetch({garbage.address()}, {.path = "/"});
  EXPECT_EQ(malformed.error, ClientError::kMalformed);
  EXPECT_FALSE(malformed.detail.empty());

  RawServer hangs_up(loop_, [](net::Connection& c) { c.Close(net::CloseMode::kFlush); });
  ClientResult unanswered = Fetch({hangs_up.address()}, {.path = "/"});
  EXPECT_EQ(unanswered.error, ClientError::kClosed);
  EXPECT_EQ(unanswered.detail, "the connection closed without an answer");

  RawServer short_body(loop_, [](net::Connection& c) {
    c.Write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
    c.Close(net::CloseMode::kFlush);
  });
  ClientResult cut = Fetch({short_body.address()}, {.path = "/"});
  EXPECT_EQ(cut.error, ClientError::kClosed);
  EXPECT_EQ(cut.detail, "the connection closed before the answer was complete");
}

TEST_F(HttpFetchTest, ChunkedAndCloseDelimitedBodiesAreAssembled) {
  RawServer chunked(loop_, [](net::Connection& c) {
    c.Write(
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  });
  ClientResult a = Fetch({chunked.address()}, {.path = "/"});
  ASSERT_TRUE(a.ok()) << a.detail;
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(a.body, "abcde");

  RawServer until_close(loop_, [](net::Connection& c) {
    c.Write("HTTP/1.0 200 OK\r\n\r\nall of it");
    c.Close(net::CloseMode::kFlush);
  });
  ClientResult b = Fetch({until_close.address()}, {.path = "/"});
  ASSERT_TRUE(b.ok()) << b.detail;
  EXPECT_EQ(b.body, "all of it");
}

TEST_F(HttpFetchTest, AStreamedBodyArrivesPieceByPieceAndPastTheLimit) {
  net::Connection* peer = nullptr;
  RawServer streaming(loop_, [&peer](net::Connection& c) {
    peer = &c;
    c.Write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n");
  });
  std::string streamed;
  std::optional<ClientResult> result;
  auto fetch = HttpFetch::Start(loop_, {streaming.address()}, {.path = "/watch"},
                                {.max_response_bytes = 100,
                                 .on_body_data =
                                     [&streamed](absl::string_view data) {
                                       streamed.append(data.data(), data.size());
                                       return true;
                                     }},
                                [&result](ClientResult r) { result = std::move(r); });
  // The first piece arrives while the answer is still open.
  ASSERT_TRUE(loop_.RunUntil([&] { return streamed == "first\n"; }, std::chrono::seconds(5)));
  EXPECT_FALSE(result.has_value());
  // More than max_response_bytes in all: the limit bounds the head only.
  const std::string more(300, 'x');
  peer->Write(absl::StrCat(absl::Hex(more.size()), "\r\n", more, "\r\n0\r\n\r\n"));
  ASSERT_TRUE(loop_.RunUntil([&] { return result.has_value(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(result->ok()) << result->detail;
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(streamed, "first\n" + more);
  EXPECT_EQ(result->body, "");
  fetch.reset();
  loop_.RunUntilIdle();
}

TEST_F(HttpFetchTest, AStreamEndsWhenItsReaderSaysSo) {
  RawServer endless(loop_, [](net::Connection& c) {
    c.Write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n");
  });
  int calls = 0;
  ClientResult ended =
      Fetch({endless.address()}, {.path = "/"}, {.on_body_data = [&calls](absl::string_view) {
              ++calls;
              return false;
            }});
  ASSERT_TRUE(ended.ok()) << ended.detail;
  EXPECT_EQ(calls, 1);

  // Another status is an ordinary answer: buffered, the reader not called.
  calls = 0;
  ClientResult refused = Fetch({server_->address()}, {.path = "/unavailable"},
                               {.on_body_data = [&calls](absl::string_view) {
                                 ++calls;
                                 return true;
                               }});
  ASSERT_TRUE(refused.ok()) << refused.detail;
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.body, "try later\n");
  EXPECT_EQ(calls, 0);
}

TEST_F(HttpFetchTest, ARequestHttp1CannotCarryIsRefused) {
  ClientResult result = Fetch({server_->address()}, {.path = "/a b"});
  EXPECT_EQ(result.error, ClientError::kBadRequest);
  EXPECT_EQ(server_->requests_served(), 0u);
}

TEST_F(HttpFetchTest, DestroyingTheFetchCancelsIt) {
  RawServer silent(loop_, [](net::Connection&) {});
  bool called = false;
  auto fetch = HttpFetch::Start(loop_, {silent.address()}, {.path = "/"},
                                {.timeout = std::chrono::milliseconds(50)},
                                [&called](ClientResult) { called = true; });
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(20));
  fetch.reset();
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_FALSE(called);
}

TEST_F(HttpFetchTest, TheCallbackMayDestroyTheFetch) {
  std::unique_ptr<HttpFetch> fetch;
  int calls = 0;
  fetch =
      HttpFetch::Start(loop_, {server_->address()}, {.path = "/"}, {}, [&](ClientResult result) {
        ++calls;
        EXPECT_TRUE(result.ok());
        fetch.reset();
      });
  EXPECT_TRUE(loop_.RunUntil([&] { return fetch == nullptr; }, std::chrono::seconds(5)));
  loop_.RunUntilIdle();
  EXPECT_EQ(calls, 1);
}

TEST_F(HttpFetchTest, OverTlsTheServerIsVerified) {
  tls::testing::TestCa ca = ValueOrDie(tls::testing::TestCa::Create());
  tls::testing::TestCertificate leaf = ValueOrDie(ca.Issue({.dns_names = {"api.example"}}));
  auto server_context = ValueOrDie(tls::TlsContext::CreateServer(
      {.certificate_chain_pem = leaf.chain_pem, .private_key_pem = leaf.key_pem}));
  SeenRequest seen;
  auto tls_server = ValueOrDie(HttpServer::Create(
      loop_, Loopback(),
      {.transport_factory =
           tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(server_context))},
      [&seen](const ServerRequest& r) { return Answer(r, &seen); }));
  auto client_factory = [&](const std::string& bundle, const std::string& name) {
    auto context = ValueOrDie(tls::TlsContext::CreateClient({.trust_bundle_pem = bundle}));
    return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(context),
                                      {.server_name = name, .verify_peer_name = name});
  };

  ClientResult ok = Fetch({tls_server->address()}, {.path = "/tls", .authority = "api.example"},
                          {.transport_factory = client_factory(ca.cert_pem(), "api.example")});
  ASSERT_TRUE(ok.ok()) << ClientErrorName(ok.error) << ": " << ok.detail;
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(seen.path, "/tls");

  // Another CA, or another name: the server is refused before the request is sent.
  tls::testing::TestCa other = ValueOrDie(tls::testing::TestCa::Create("other"));
  seen = {};
  ClientResult wrong_ca =
      Fetch({tls_server->address()}, {.path = "/tls"},
            {.transport_factory = client_factory(other.cert_pem(), "api.example")});
  EXPECT_EQ(wrong_ca.error, ClientError::kTlsFailed);
  EXPECT_EQ(wrong_ca.close_reason, net::CloseReason::kTransportError);
  ClientResult wrong_name =
      Fetch({tls_server->address()}, {.path = "/tls"},
            {.transport_factory = client_factory(ca.cert_pem(), "other.example")});
  EXPECT_EQ(wrong_name.error, ClientError::kTlsFailed);
  EXPECT_EQ(seen.path, "");
}

// A keep-alive server the test scripts: each read on a connection is one request (the client
// writes a request whole), answered by `answer` with the connection and the request's index on it.
class ScriptedServer : public net::ConnectionCallbacks {
 public:
  using Answer = std::function<void(net::Connection&, int index)>;
  ScriptedServer(event::Loop& loop, Answer answer) : answer_(std::move(answer)) {
    listener_ = *net::Listener::Create(loop, Loopback(), {},
                                       [this](std::unique_ptr<net::Connection> connection) {
                                         connection->SetCallbacks(this);
                                         connections_.push_back(std::move(connection));
                                         served_.push_back(0);
                                       });
  }
  ~ScriptedServer() override {
    for (auto& c : connections_) c->SetCallbacks(nullptr);
  }
  const net::Address& address() const { return listener_->address(); }
  size_t accepted() const { return connections_.size(); }
  int requests() const { return requests_; }
  net::Connection& last() { return *connections_.back(); }
  void OnData(net::Buffer& data, bool end_stream) override {
    const bool any = data.length() > 0;
    data.Clear();
    if (!any || end_stream) return;
    // The connection that read: the newest open one does in these tests.
    for (size_t i = connections_.size(); i-- > 0;) {
      if (connections_[i]->closed()) continue;
      ++requests_;
      answer_(*connections_[i], served_[i]++);
      return;
    }
  }
  void OnClose(net::CloseReason, const absl::Status&) override {}

 private:
  Answer answer_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<net::Connection>> connections_;
  std::vector<int> served_;
  int requests_ = 0;
};

constexpr absl::string_view kKeptAnswer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

TEST_F(HttpFetchTest, KeptConnectionsCarrySequentialRequests) {
  KeptConnections keep(loop_);
  for (int i = 0; i < 5; ++i) {
    ClientResult result = Fetch({server_->address()}, {.path = "/k"}, {.keep = &keep});
    ASSERT_TRUE(result.ok()) << result.detail;
    EXPECT_EQ(result.body, "hello ");
    EXPECT_EQ(seen_.connection, "");  // not `close`
  }
  // A POST with its body goes on it too.
  ClientResult post =
      Fetch({server_->address()}, {.method = "POST", .path = "/k", .body = "b"}, {.keep = &keep});
  ASSERT_TRUE(post.ok()) << post.detail;
  EXPECT_EQ(post.body, "hello b");
  EXPECT_EQ(server_->connections_accepted(), 1u);
  EXPECT_EQ(keep.opened(), 1u);
  EXPECT_EQ(keep.reused(), 5u);
  EXPECT_EQ(keep.idle(), 1u);
  // Without: one connection per request.
  ASSERT_TRUE(Fetch({server_->address()}, {.path = "/k"}).ok());
  EXPECT_EQ(server_->connections_accepted(), 2u);
}

TEST_F(HttpFetchTest, ChunkedAnswersKeepTheConnectionAndCloseEndsIt) {
  ScriptedServer server(loop_, [](net::Connection& c, int index) {
    if (index == 0) {
      c.Write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    } else {
      c.Write("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok");
    }
  });
  KeptConnections keep(loop_);
  ClientResult a = Fetch({server.address()}, {.path = "/"}, {.keep = &keep});
  ASSERT_TRUE(a.ok()) << a.detail;
  EXPECT_EQ(a.body, "abc");
  ClientResult b = Fetch({server.address()}, {.path = "/"}, {.keep = &keep});
  ASSERT_TRUE(b.ok()) << b.detail;
  EXPECT_EQ(b.body, "ok");
  EXPECT_EQ(server.accepted(), 1u);
  EXPECT_EQ(keep.idle(), 0u);  // `connection: close`
  ASSERT_TRUE(Fetch({server.address()}, {.path = "/"}, {.keep = &keep}).ok());
  EXPECT_EQ(server.accepted(), 2u);
  EXPECT_EQ(keep.opened(), 2u);
}

TEST_F(HttpFetchTest, AnIdleConnectionTheServerClosedIsNotUsed) {
  ScriptedServer server(loop_, [](net::Connection& c, int) { c.Write(kKeptAnswer); });
  KeptConnections keep(loop_);
  ASSERT_TRUE(Fetch({server.address()}, {.path = "/"}, {.keep = &keep}).ok());
  server.last().Close(net::CloseMode::kNoFlush);
  ASSERT_TRUE(loop_.RunUntil([&] { return keep.idle() == 0; }, std::chrono::seconds(10)));
  EXPECT_EQ(keep.closed_by_server(), 1u);
  ClientResult again = Fetch({server.address()}, {.path = "/"}, {.keep = &keep});
  ASSERT_TRUE(again.ok()) << again.detail;
  EXPECT_EQ(server.accepted(), 2u);
  EXPECT_EQ(keep.retried(), 0u);
}

// The server closes the idle connection while the request goes out on it: a replay-safe request
// goes once more on a new connection, another fails.
TEST_F(HttpFetchTest, OnlyAReplaySafeRequestGoesOnceMoreOnANewConnection) {
  ScriptedServer server(loop_, [](net::Connection& c, int) { c.Write(kKeptAnswer); });
  KeptConnections keep(loop_);
  ASSERT_TRUE(Fetch({server.address()}, {.path = "/"}, {.keep = &keep}).ok());
  server.last().Close(net::CloseMode::kNoFlush);  // the client hears of it on a later turn
  ClientResult get =
      Fetch({server.address()}, {.path = "/"}, {.keep = &keep, .retry_on_reused = true});
  ASSERT_TRUE(get.ok()) << ClientErrorName(get.error) << ": " << get.detail;
  EXPECT_EQ(get.body, "ok");
  EXPECT_EQ(server.accepted(), 2u);
  EXPECT_EQ(keep.reused(), 1u);
  EXPECT_EQ(keep.retried(), 1u);

  ASSERT_EQ(keep.idle(), 1u);
  server.last().Close(net::CloseMode::kNoFlush);
  ClientResult post =
      Fetch({server.address()}, {.method = "POST", .path = "/", .body = "x"}, {.keep = &keep});
  EXPECT_EQ(post.error, ClientError::kClosed) << post.detail;
  EXPECT_EQ(server.accepted(), 2u);
  EXPECT_EQ(keep.retried(), 1u);
}

TEST_F(HttpFetchTest, AnAnswerCutShortOnAKeptConnectionIsNotReplayed) {
  ScriptedServer server(loop_, [](net::Connection& c, int index) {
    if (index == 0) {
      c.Write(kKeptAnswer);
    } else {
      c.Write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
      c.Close(net::CloseMode::kFlush);
    }
  });
  KeptConnections keep(loop_);
  ASSERT_TRUE(Fetch({server.address()}, {.path = "/"}, {.keep = &keep}).ok());
  ClientResult get =
      Fetch({server.address()}, {.path = "/"}, {.keep = &keep, .retry_on_reused = true});
  EXPECT_EQ(get.error, ClientError::kClosed) << get.detail;
  EXPECT_EQ(server.accepted(), 1u);
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(keep.retried(), 0u);
}

TEST_F(HttpFetchTest, IdleConnectionsAreBoundedInNumberAndTime) {
  KeptConnections keep(loop_, {.max_idle = 1, .idle_timeout = std::chrono::milliseconds(100)});
  std::vector<std::unique_ptr<HttpFetch>> fetches;
  int done = 0;
  for (int i = 0; i < 3; ++i) {
    fetches.push_back(HttpFetch::Start(loop_, {server_->address()}, {.path = "/"}, {.keep = &keep},
                                       [&done](ClientResult r) {
                                         EXPECT_TRUE(r.ok()) << r.detail;
                                         ++done;
                                       }));
  }
  ASSERT_TRUE(loop_.RunUntil([&] { return done == 3; }, std::chrono::seconds(10)));
  EXPECT_EQ(keep.opened(), 3u);  // no request waits for another's connection
  EXPECT_EQ(keep.idle(), 1u);
  ASSERT_TRUE(loop_.RunUntil([&] { return keep.idle() == 0; }, std::chrono::seconds(10)));
  EXPECT_EQ(keep.idle_timeouts(), 1u);
  ASSERT_TRUE(
      loop_.RunUntil([&] { return server_->active_connections() == 0; }, std::chrono::seconds(10)));
}

TEST(FetchBlockingTest, RunsItsOwnLoop) {
  ::signal(SIGPIPE, SIG_IGN);
  event::Loop server_loop;
  std::promise<net::Address> bound;
  std::unique_ptr<HttpServer> server;
  SeenRequest seen;
  server_loop.Post([&] {
    server = ValueOrDie(HttpServer::Create(
        server_loop, Loopback(), {}, [&](const ServerRequest& r) { return Answer(r, &seen); }));
    bound.set_value(server->address());
  });
  std::thread thread([&] { server_loop.Run(); });
  const net::Address address = bound.get_future().get();

  ClientResult result = FetchBlocking({address}, {.method = "PUT", .path = "/x", .body = "b"}, {});
  ASSERT_TRUE(result.ok()) << result.detail;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, "hello b");

  server_loop.Post([&] {
    server.reset();
    server_loop.Stop();
  });
  thread.join();
  EXPECT_EQ(seen.method, "PUT");
}

}  // namespace
}  // namespace meshlet::http
