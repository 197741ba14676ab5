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
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "control-plane/cli/api_client.h"
#include "control-plane/cli/pin.h"
#include "control-plane/cli/server_on_thread.h"

namespace meshlet::controlplane::cli {
namespace {

// An API server that answers with what it was sent.
class HttpRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    server_ = std::make_unique<ServerOnThread>(
        http::HttpServerOptions{}, [](const http::ServerRequest& r) {
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
    server_address_ = server_->address();
  }

  std::unique_ptr<ServerOnThread> server_;
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

constexpr char kServerId[] = "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane";

// An HTTPS API server with a certificate for kServerId from its own CA, serving that CA at
// /api/v1/trust-bundle.
class HttpsRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    absl::StatusOr<tls::testing::TestCa> ca = tls::testing::TestCa::Create("api test root");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_pem_ = ca->cert_pem();
    absl::StatusOr<tls::testing::TestCertificate> leaf = ca->Issue({.spiffe_id = kServerId});
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer({.certificate_chain_pem = leaf->chain_pem,
                                       .private_key_pem = leaf->key_pem,
                                       .alpn_protocols = {"h2", "http/1.1"}});
    ASSERT_TRUE(context.ok()) << context.status();
    http::HttpServerOptions options;
    options.transport_factory =
        tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
    server_ =
        std::make_unique<ServerOnThread>(std::move(options), [this](const http::ServerRequest& r) {
          if (r.path() == "/api/v1/trust-bundle") return http::ServerResponse::Text(200, ca_pem_);
          return http::ServerResponse::Text(r.path() == "/version" ? 200 : 404, "answered\n");
        });
    server_address_ = server_->address();
  }

  absl::StatusOr<HttpResponse> Get(const std::string& ca_pem, const std::string& identity) {
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> trust =
        ServerTrustContext(ca_pem, identity);
    if (!trust.ok()) return trust.status();
    HttpRequestOptions options;
    options.tls = *trust;
    return HttpRequest(server_address_, "GET", "/version", {}, "", options);
  }

  std::string ca_pem_;
  std::unique_ptr<ServerOnThread> server_;
  std::string server_address_;
};

TEST_F(HttpsRequestTest, VerifiesTheServerWithThePinnedCaAndIdentity) {
  absl::StatusOr<HttpResponse> ok = Get(ca_pem_, kServerId);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "answered\n");

  // Another CA: the handshake fails, and says why.
  absl::StatusOr<tls::testing::TestCa> other = tls::testing::TestCa::Create("another root");
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<HttpResponse> untrusted = Get(other->cert_pem(), kServerId);
  EXPECT_TRUE(absl::IsUnauthenticated(untrusted.status())) << untrusted.status();
  EXPECT_TRUE(absl::StartsWith(untrusted.status().message(),
                               absl::StrCat("TLS with ", server_address_, " failed: ")))
      << untrusted.status();
  EXPECT_TRUE(absl::StrContains(untrusted.status().message(), "not issued by a trusted CA"))
      << untrusted.status();

  // The right CA, but a certificate for another identity than expected.
  absl::StatusOr<HttpResponse> impostor = Get(ca_pem_, "spiffe://cluster.local/ns/default/sa/web");
  EXPECT_TRUE(absl::IsUnauthenticated(impostor.status())) << impostor.status();
  EXPECT_TRUE(absl::StrContains(impostor.status().message(), "is not allowed"))
      << impostor.status();
}

TEST_F(HttpsRequestTest, TheUnverifiedTrustBundleFetchReadsTheBodyAndRefusesOtherStatuses) {
  absl::StatusOr<std::string> bundle =
      FetchTrustBundleUnverified(server_address_, std::chrono::seconds(5));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(*bundle, ca_pem_);
  absl::StatusOr<std::string> https = FetchTrustBundleUnverified(
      absl::StrCat("https://", server_address_), std::chrono::seconds(5));
  ASSERT_TRUE(https.ok()) << https.status();
  EXPECT_EQ(*https, ca_pem_);
}

TEST(FetchTrustBundleUnverifiedTest, APlainHttpServerOrNoneIsAnError) {
  ::signal(SIGPIPE, SIG_IGN);
  std::string closed;
  {
    event::Loop loop;
    auto listener =
        *net::Listener::Create(loop, *net::Address::Parse("127.0.0.1:0"), {}, [](auto) {});
    closed = listener->address().ToString();
  }
  absl::StatusOr<std::string> refused = FetchTrustBundleUnverified(closed, std::chrono::seconds(2));
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "connecting to")) << refused.status();
  EXPECT_TRUE(absl::IsInvalidArgument(
      FetchTrustBundleUnverified("nohost", std::chrono::seconds(2)).status()));
}

}  // namespace
}  // namespace meshlet::controlplane::cli
