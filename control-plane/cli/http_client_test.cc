#include "control-plane/cli/http_client.h"

#include <gtest/gtest.h>

#include <csignal>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "common/net/listener.h"

namespace meshlet::controlplane::cli {
namespace {

// An API server on its own thread that answers with what it was sent.
class HttpRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    std::promise<uint16_t> port;
    loop_.Post([&] {
      auto server = http::HttpServer::Create(
          loop_, *net::Address::Parse("127.0.0.1:0"), {}, [](const http::ServerRequest& r) {
            http::ServerResponse response = http::ServerResponse::Json(
                r.path() == "/missing" ? 404 : 200,
                absl::StrCat(r.method(), " ", r.headers.Get(":path").value_or(""),
                             " host=", r.headers.Get(":authority").value_or(""),
                             " agent=", r.headers.Get("user-agent").value_or(""),
                             " auth=", r.headers.Get("authorization").value_or(""), " length=",
                             r.headers.Get("content-length").value_or("-"), " body=", r.body));
            response.headers.Add("Warning", "299 - \"one\"");
            response.headers.Add("warning", "299 - \"two\"");
            return response;
          });
      ASSERT_TRUE(server.ok()) << server.status();
      server_ = *std::move(server);
      port.set_value(server_->address().port());
    });
    thread_ = std::thread([this] { loop_.Run(); });
    server_address_ = absl::StrCat("127.0.0.1:", port.get_future().get());
  }
  void TearDown() override {
    loop_.Post([this] {
      server_.reset();
      loop_.Stop();
    });
    thread_.join();
  }

  event::Loop loop_;
  std::thread thread_;
  std::unique_ptr<http::HttpServer> server_;
  std::string server_address_;
};

TEST_F(HttpRequestTest, SendsTheRequestAndReadsTheAnswer) {
  absl::StatusOr<HttpResponse> response =
      HttpRequest(server_address_, "POST", "/apis/x?dryRun=All",
                  {{"authorization", "Bearer t"}, {"content-type", "application/json"}}, "{}");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, absl::StrCat("POST /apis/x?dryRun=All host=", server_address_,
                                         " agent=meshctl auth=Bearer t length=2 body={}"));
  EXPECT_EQ(response->Header("content-type"), "application/json");
  EXPECT_EQ(response->HeaderValues("warning"),
            (std::vector<std::string>{"299 - \"one\"", "299 - \"two\""}));
}

TEST_F(HttpRequestTest, AcceptsAUrlAndStatesEmptyBodiesWhereTheyMean) {
  absl::StatusOr<HttpResponse> put =
      HttpRequest(absl::StrCat("http://", server_address_, "/"), "PUT", "/a", {}, "");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(absl::StrContains(put->body, "length=0 ")) << put->body;
  absl::StatusOr<HttpResponse> get = HttpRequest(server_address_, "GET", "/missing", {}, "");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->status, 404);
  EXPECT_TRUE(absl::StrContains(get->body, "length=- ")) << get->body;
}

TEST(HttpRequestErrorsTest, UnreachableAndMalformedServers) {
  ::signal(SIGPIPE, SIG_IGN);
  // A port nothing listens on.
  std::string closed;
  {
    event::Loop loop;
    auto listener =
        *net::Listener::Create(loop, *net::Address::Parse("127.0.0.1:0"), {}, [](auto) {});
    closed = listener->address().ToString();
  }
  absl::StatusOr<HttpResponse> refused = HttpRequest(closed, "GET", "/", {}, "");
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StartsWith(refused.status().message(),
                               absl::StrCat("cannot connect to ", closed, ": ")))
      << refused.status();

  absl::StatusOr<HttpResponse> no_port = HttpRequest("localhost", "GET", "/", {}, "");
  EXPECT_TRUE(absl::IsInvalidArgument(no_port.status()));
  EXPECT_EQ(no_port.status().message(), "server \"localhost\": expected host:port");
}

}  // namespace
}  // namespace meshlet::controlplane::cli
