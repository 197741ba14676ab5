#include "control-plane/api/token_api.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "control-plane/identity/json_fields.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::api {
namespace {

using identity::JoinTokens;
using identity::JsonObject;
using identity::kJoinTokenKind;
using identity::WorkloadIdentity;

class TokenApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/tokenapi.XXXXXX");
    auto store = FileStore::Open(::mkdtemp(templ.data()));
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    tokens_ = std::make_unique<JoinTokens>(*store_, clock_, stats_);
  }

  http::ServerResponse Send(absl::string_view method, absl::string_view path,
                            std::string body = "") {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    request.body = std::move(body);
    return HandleTokenRequest(*tokens_, request);
  }

  FakeClock clock_;
  StatsRegistry stats_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<JoinTokens> tokens_;
};

TEST_F(TokenApiTest, CreatesARedeemableToken) {
  http::ServerResponse response =
      Send("POST", "/api/v1/tokens",
           R"({"namespace":"default","serviceAccount":"frontend","ttl":"90m","singleUse":true})");
  ASSERT_EQ(response.status, 201) << response.body;
  auto json = JsonObject::Parse(response.body);
  ASSERT_TRUE(json.ok()) << response.body;
  EXPECT_EQ(json->String("kind").value_or(""), "JoinToken");
  EXPECT_EQ(json->String("namespace").value_or(""), "default");
  EXPECT_EQ(json->String("serviceAccount").value_or(""), "frontend");
  EXPECT_EQ(json->Bool("singleUse").value_or(false), true);
  EXPECT_EQ(json->String("expiresAt").value_or(""), "2026-01-01T01:46:40Z");
  const std::string token = json->String("token").value_or("");
  auto identity = tokens_->Redeem(token);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(*identity, (WorkloadIdentity{"default", "frontend"}));
  EXPECT_FALSE(tokens_->Redeem(token).ok());  // single use
}

TEST_F(TokenApiTest, DefaultsToOneHourReusable) {
  http::ServerResponse response =
      Send("POST", "/api/v1/tokens", R"({"namespace":"a","serviceAccount":"b"})");
  ASSERT_EQ(response.status, 201) << response.body;
  auto json = JsonObject::Parse(response.body);
  EXPECT_EQ(json->String("expiresAt").value_or(""), "2026-01-01T01:16:40Z");
  EXPECT_EQ(json->Bool("singleUse").value_or(true), false);
}

TEST_F(TokenApiTest, RevokesById) {
  http::ServerResponse created =
      Send("POST", "/api/v1/tokens", R"({"namespace":"a","serviceAccount":"b"})");
  auto json = JsonObject::Parse(created.body);
  ASSERT_TRUE(json.ok());
  const std::string id = json->String("id").value_or("");
  EXPECT_EQ(Send("DELETE", absl::StrCat("/api/v1/tokens/", id)).status, 204);
  EXPECT_FALSE(tokens_->Redeem(json->String("token").value_or("")).ok());
  // Again: no token left, but the revocation is recorded, and the answer says so.
  http::ServerResponse again = Send("DELETE", absl::StrCat("/api/v1/tokens/", id));
  EXPECT_EQ(again.status, 404);
  EXPECT_NE(again.body.find("revocation is recorded"), std::string::npos) << again.body;
  EXPECT_TRUE(*tokens_->IsRevoked(id));
  http::ServerResponse bad = Send("DELETE", "/api/v1/tokens/NOT_AN_ID");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("is not a join token id"), std::string::npos) << bad.body;
}

TEST_F(TokenApiTest, ErrorsNameTheField) {
  struct Case {
    std::string body;
    int status;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {"not json", 400, ""},
           {R"({"serviceAccount":"b"})", 422, "namespace"},
           {R"({"namespace":7,"serviceAccount":"b"})", 422, "namespace"},
           {R"({"namespace":"Bad_NS","serviceAccount":"b"})", 422, "namespace"},
           {R"({"namespace":"a","serviceAccount":"b/c"})", 422, "serviceAccount"},
           {R"({"namespace":"a","serviceAccount":"b","ttl":"forever"})", 422, "ttl"},
           {R"({"namespace":"a","serviceAccount":"b","ttl":"-1h"})", 422, "ttl"},
           {R"({"namespace":"a","serviceAccount":"b","ttl":"400h"})", 422, "ttl"},
           {R"({"namespace":"a","serviceAccount":"b","singleUse":"yes"})", 422, "singleUse"},
       }) {
    http::ServerResponse response = Send("POST", "/api/v1/tokens", c.body);
    EXPECT_EQ(response.status, c.status) << c.body << " -> " << response.body;
    if (!c.field.empty()) {
      EXPECT_NE(response.body.find(absl::StrCat(R"("field":")", c.field, "\"")), std::string::npos)
          << c.body << " -> " << response.body;
    }
  }
  EXPECT_EQ(Send("GET", "/api/v1/tokens").status, 405);
  EXPECT_TRUE(store_->List(kJoinTokenKind, "")->empty());
}

}  // namespace
}  // namespace meshlet::controlplane::api
