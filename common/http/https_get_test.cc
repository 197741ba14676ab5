#include "common/http/https_get.h"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "common/event/loop.h"
#include "common/tls/test_certificates.h"

namespace meshlet::http {
namespace {

TEST(HttpsUrlTest, Parts) {
  const struct {
    const char* url;
    const char* host;
    uint16_t port;
    const char* path;
  } cases[] = {
      {"https://bundles.example", "bundles.example", 443, "/"},
      {"https://bundles.example/", "bundles.example", 443, "/"},
      {"https://bundles.example/v1/keys?kid=a", "bundles.example", 443, "/v1/keys?kid=a"},
      {"https://127.0.0.1:8443/b", "127.0.0.1", 8443, "/b"},
      {"https://[fd00::5]:9443/b", "fd00::5", 9443, "/b"},
      {"https://[fd00::5]/b", "fd00::5", 443, "/b"},
      {"https://bundles.example?domain=a", "bundles.example", 443, "/?domain=a"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<HttpsUrl> url = ParseHttpsUrl(c.url);
    ASSERT_TRUE(url.ok()) << c.url << ": " << url.status();
    EXPECT_EQ(url->text, c.url);
    EXPECT_EQ(url->host, c.host) << c.url;
    EXPECT_EQ(url->port, c.port) << c.url;
    EXPECT_EQ(url->path, c.path) << c.url;
  }
}

TEST(HttpsUrlTest, ErrorsSayWhatIsWrong) {
  const struct {
    const char* url;
    const char* error;
  } cases[] = {
      {"http://insecure/keys", "is not an https:// URL"},
      {"https://", "needs a host"},
      {"https:///keys", "needs a host"},
      {"https://user@idp.example/keys", "user information"},
      {"https://idp.example/keys#frag", "fragment"},
      {"https://idp.example:0/keys", "HOST:PORT"},
      {"https://idp.example:99999/keys", "HOST:PORT"},
      {"https://fd00::5/keys", "HOST:PORT"},
      {"https://idp.example#frag", "fragment"},
      {"https://a:b]/keys", "HOST:PORT"},
      {"https://[notanip]/keys", "HOST:PORT"},
      {"https://idp example/keys", "HOST:PORT"},
      {"https://idp.example/a b", "path cannot hold"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<HttpsUrl> url = ParseHttpsUrl(c.url);
    ASSERT_FALSE(url.ok()) << c.url;
    EXPECT_NE(url.status().message().find(c.error), std::string::npos) << url.status();
    EXPECT_NE(url.status().message().find(c.url), std::string::npos) << url.status();
  }
}

TEST(HttpsRootsTest, MissingOrBadFileIsNamed) {
  absl::StatusOr<std::shared_ptr<const tls::TlsContextProvider>> roots =
      HttpsRoots("/nonexistent/roots.pem");
  ASSERT_FALSE(roots.ok());
  EXPECT_NE(roots.status().message().find("/nonexistent/roots.pem"), std::string::npos);
}

TEST(HttpsGetTest, FailuresNameTheUrlAndTheCause) {
  absl::StatusOr<tls::testing::TestCa> ca = tls::testing::TestCa::Create();
  ASSERT_TRUE(ca.ok()) << ca.status();
  tls::TlsContextConfig config;
  config.trust_bundle_pem = ca->cert_pem();
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  ASSERT_TRUE(context.ok()) << context.status();
  HttpsGet::Options options{.roots = std::make_shared<tls::TlsContextProvider>(*context),
                            .timeout = std::chrono::seconds(5)};
  event::Loop loop;
  // Nothing listens on port 1 of loopback: the connection is refused.
  absl::StatusOr<HttpsUrl> url = ParseHttpsUrl("https://127.0.0.1:1/keys");
  ASSERT_TRUE(url.ok());
  std::optional<absl::StatusOr<std::string>> got;
  auto get = HttpsGet::Start(loop, *url, options,
                             [&](absl::StatusOr<std::string> body) { got = std::move(body); });
  EXPECT_FALSE(got.has_value());
  ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }, std::chrono::seconds(10)));
  ASSERT_FALSE(got->ok());
  EXPECT_NE(got->status().message().find("GET https://127.0.0.1:1/keys: connect_failed"),
            std::string::npos)
      << got->status();

  // A host with no address.
  got.reset();
  get = HttpsGet::Start(loop, HttpsUrl{.text = "https://x/", .host = "", .port = 443, .path = "/"},
                        options, [&](absl::StatusOr<std::string> body) { got = std::move(body); });
  ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }, std::chrono::seconds(10)));
  ASSERT_FALSE(got->ok());
  EXPECT_NE(got->status().message().find("GET https://x/: cannot resolve"), std::string::npos)
      << got->status();

  // Destroyed before it ends: never answers.
  got.reset();
  get = HttpsGet::Start(loop, *url, options,
                        [&](absl::StatusOr<std::string> body) { got = std::move(body); });
  get.reset();
  loop.RunUntil([] { return false; }, std::chrono::milliseconds(200));
  EXPECT_FALSE(got.has_value());
}

}  // namespace
}  // namespace meshlet::http
