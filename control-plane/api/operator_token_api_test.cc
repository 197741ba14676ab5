// The HTTP face of operator tokens (operator_token_api.h) over tokens kept in a file store.

#include "control-plane/api/operator_token_api.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::api {
namespace {

using access::Principal;
using access::Role;

constexpr char kBootstrap[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class OperatorTokenApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/operator-token-api.XXXXXX");
    auto store = FileStore::Open(::mkdtemp(templ.data()));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto tokens = access::OperatorTokens::Open(*store_, clock_, kBootstrap, &stats_);
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    tokens_ = *std::move(tokens);
  }

  FakeClock clock_;
  StatsRegistry stats_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<access::OperatorTokens> tokens_;
};

http::ServerRequest Request(absl::string_view method, absl::string_view path,
                            absl::string_view body = "") {
  http::ServerRequest request;
  request.headers.Add(":method", method);
  request.headers.Add(":path", path);
  request.body = std::string(body);
  return request;
}

TEST_F(OperatorTokenApiTest, TheHttpFaceCreatesListsAndRevokesWithoutShowingSecrets) {
  const Principal admin{.name = "root", .credential = "operator-token", .role = Role::kAdmin};
  http::ServerResponse created = HandleOperatorTokenRequest(
      *tokens_,
      Request("POST", "/api/v1/operator-tokens", R"({"name":"eve","role":"editor","ttl":"1h"})"),
      admin);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_TRUE(absl::StrContains(created.body, R"("token":"mot1.eve.)")) << created.body;
  EXPECT_TRUE(absl::StrContains(created.body, R"x("createdBy":"root (operator-token)")x"))
      << created.body;
  EXPECT_TRUE(absl::StrContains(created.body, R"("expired":false)")) << created.body;

  http::ServerResponse list =
      HandleOperatorTokenRequest(*tokens_, Request("GET", "/api/v1/operator-tokens"), admin);
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(absl::StrContains(list.body, R"("name":"eve","role":"editor")")) << list.body;
  EXPECT_FALSE(absl::StrContains(list.body, "mot1.")) << list.body;
  EXPECT_FALSE(absl::StrContains(list.body, "secret")) << list.body;

  for (const auto& [body, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"role":"viewer"})", "name"},
           {R"({"name":"x"})", "role"},
           {R"({"name":"x","role":"root"})", "role"},
           {R"({"name":"x","role":"viewer","ttl":"soon"})", "ttl"},
           {R"({"name":"X","role":"viewer"})", "name"}}) {
    http::ServerResponse bad = HandleOperatorTokenRequest(
        *tokens_, Request("POST", "/api/v1/operator-tokens", body), admin);
    EXPECT_EQ(bad.status, 422) << body << ": " << bad.body;
    EXPECT_TRUE(absl::StrContains(bad.body, absl::StrCat(R"("field":")", field, "\"")))
        << body << ": " << bad.body;
  }
  EXPECT_EQ(
      HandleOperatorTokenRequest(
          *tokens_, Request("POST", "/api/v1/operator-tokens", R"({"name":"eve","role":"viewer"})"),
          admin)
          .status,
      409);
  EXPECT_EQ(
      HandleOperatorTokenRequest(*tokens_, Request("POST", "/api/v1/operator-tokens", "[]"), admin)
          .status,
      400);
  EXPECT_EQ(
      HandleOperatorTokenRequest(*tokens_, Request("PUT", "/api/v1/operator-tokens"), admin).status,
      405);
  EXPECT_EQ(
      HandleOperatorTokenRequest(*tokens_, Request("DELETE", "/api/v1/operator-tokens/eve"), admin)
          .status,
      204);
  EXPECT_EQ(
      HandleOperatorTokenRequest(*tokens_, Request("DELETE", "/api/v1/operator-tokens/eve"), admin)
          .status,
      404);
}

}  // namespace
}  // namespace meshlet::controlplane::api
