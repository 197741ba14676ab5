#include "control-plane/access/operator_tokens.h"

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::access {
namespace {

constexpr char kBootstrap[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string TempDir() {
  std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/operator-tokens.XXXXXX");
  return std::string(::mkdtemp(templ.data()));
}

class OperatorTokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    auto store = FileStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    Reopen();
  }
  void Reopen() {
    tokens_.reset();
    auto tokens = OperatorTokens::Open(*store_, clock_, kBootstrap, &stats_);
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    tokens_ = *std::move(tokens);
  }

  std::string dir_;
  FakeClock clock_;
  StatsRegistry stats_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<OperatorTokens> tokens_;
};

TEST_F(OperatorTokensTest, TheBootstrapTokenIsAnAdminNamedApiToken) {
  absl::StatusOr<Principal> principal = tokens_->Authenticate(kBootstrap);
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->name, "api-token");
  EXPECT_EQ(principal->credential, "api-token");
  EXPECT_EQ(principal->role, Role::kAdmin);
  // Its shape, one digit off: refused as wrong, not handed on to another authenticator.
  std::string wrong = kBootstrap;
  wrong.back() = '0';
  EXPECT_EQ(tokens_->Authenticate(wrong).status(),
            absl::UnauthenticatedError("wrong bearer token"));
  // Neither kind (a Kubernetes token, say): NotFound.
  EXPECT_TRUE(absl::IsNotFound(tokens_->Authenticate("eyJhbGciOi.x.y").status()));
}

TEST_F(OperatorTokensTest, ANamedTokenProvesItsRoleUntilRevokedOrExpired) {
  absl::StatusOr<CreatedOperatorToken> created = tokens_->Create(
      {.name = "alice", .role = Role::kEditor, .ttl = absl::Hours(2), .created_by = "api-token"});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(absl::StartsWith(created->token, "mot1.alice.")) << created->token;
  EXPECT_EQ(created->info.role, Role::kEditor);
  EXPECT_EQ(created->info.created_by, "api-token");
  ASSERT_TRUE(created->info.expires_at.has_value());

  absl::StatusOr<Principal> alice = tokens_->Authenticate(created->token);
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->credential, "operator-token");
  EXPECT_EQ(alice->role, Role::kEditor);

  // The store keeps the hash only.
  absl::StatusOr<StoredResource> stored = store_->Get({kOperatorTokenKind, "", "alice"});
  ASSERT_TRUE(stored.ok()) << stored.status();
  const std::string secret = created->token.substr(created->token.rfind('.') + 1);
  EXPECT_EQ(stored->body.find(secret), std::string::npos) << stored->body;
  EXPECT_NE(stored->body.find("secretSha256"), std::string::npos);

  // Another secret for the same name: refused, saying which.
  absl::Status wrong = tokens_->Authenticate("mot1.alice.AAAA").status();
  EXPECT_TRUE(absl::IsUnauthenticated(wrong)) << wrong;
  EXPECT_EQ(wrong.message(), "operator token \"alice\": wrong secret");
  EXPECT_TRUE(absl::IsUnauthenticated(tokens_->Authenticate("mot1.Alice!.x").status()));

  // Survives a restart (read back from the store).
  Reopen();
  ASSERT_TRUE(tokens_->Authenticate(created->token).ok());
  ASSERT_EQ(tokens_->List().size(), 1u);
  EXPECT_EQ(tokens_->List()[0].name, "alice");

  // Expired: refused with when.
  clock_.Advance(std::chrono::hours(2));
  absl::Status expired = tokens_->Authenticate(created->token).status();
  EXPECT_TRUE(absl::IsUnauthenticated(expired)) << expired;
  EXPECT_TRUE(absl::StrContains(expired.message(), "expired at")) << expired;
}

TEST_F(OperatorTokensTest, RevokedIsRefusedAtOnceAndTheNameCanBeReused) {
  absl::StatusOr<CreatedOperatorToken> created =
      tokens_->Create({.name = "ci", .role = Role::kViewer});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(created->info.expires_at.has_value());  // no ttl: never expires
  ASSERT_TRUE(tokens_->Authenticate(created->token).ok());
  ASSERT_TRUE(tokens_->Revoke("ci").ok());
  absl::Status revoked = tokens_->Authenticate(created->token).status();
  EXPECT_TRUE(absl::IsUnauthenticated(revoked));
  EXPECT_EQ(revoked.message(), "operator token \"ci\" does not exist (revoked?)");
  EXPECT_TRUE(absl::IsNotFound(tokens_->Revoke("ci")));
  EXPECT_TRUE(tokens_->List().empty());

  // Recreated: a new secret; the old token stays refused.
  absl::StatusOr<CreatedOperatorToken> again =
      tokens_->Create({.name = "ci", .role = Role::kAdmin});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(tokens_->Authenticate(created->token).ok());
  EXPECT_EQ(tokens_->Authenticate(again->token)->role, Role::kAdmin);
}

TEST_F(OperatorTokensTest, ChangesByAnotherWriterOfTheStoreArriveThroughTheWatch) {
  // What another replica does: writes the store directly.
  auto other = OperatorTokens::Open(*store_, clock_, kBootstrap, nullptr);
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<CreatedOperatorToken> created =
      (*other)->Create({.name = "bob", .role = Role::kViewer});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(tokens_->Authenticate(created->token).ok());
  ASSERT_TRUE((*other)->Revoke("bob").ok());
  EXPECT_FALSE(tokens_->Authenticate(created->token).ok());
}

TEST_F(OperatorTokensTest, BadSpecsAreRefusedNamingTheField) {
  EXPECT_EQ(tokens_->Create({.name = "Not A Label"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(tokens_->Create({.name = ""}).status().message(), "name: "));
  EXPECT_TRUE(absl::StartsWith(tokens_->Create({.name = "api-token"}).status().message(),
                               "name: \"api-token\" is the bootstrap token's"));
  EXPECT_TRUE(absl::StartsWith(
      tokens_->Create({.name = "x", .ttl = absl::Seconds(-1)}).status().message(), "ttl: "));
  ASSERT_TRUE(tokens_->Create({.name = "dup"}).ok());
  absl::Status dup = tokens_->Create({.name = "dup"}).status();
  EXPECT_TRUE(absl::IsAlreadyExists(dup)) << dup;
}

}  // namespace
}  // namespace meshlet::controlplane::access
