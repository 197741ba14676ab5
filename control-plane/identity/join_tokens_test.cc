#include "control-plane/identity/join_tokens.h"

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::identity {
namespace {

std::string TempDir() {
  std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/tokens.XXXXXX");
  return std::string(::mkdtemp(templ.data()));
}

class JoinTokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    auto store = FileStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    tokens_ = std::make_unique<JoinTokens>(*store_, clock_, stats_);
  }

  uint64_t Refusals(const std::string& reason) {
    const auto snapshot = stats_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_ca_join_token_refusals_total", {{"reason", reason}});
    return series == nullptr ? 0 : series->counter;
  }

  std::string dir_;
  FakeClock clock_;
  StatsRegistry stats_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<JoinTokens> tokens_;
};

const WorkloadIdentity kFrontend{"default", "frontend"};
const WorkloadIdentity kBackend{"default", "backend"};

TEST_F(JoinTokensTest, TimeLimitedTokenProvesItsIdentityUntilExpiry) {
  auto created = tokens_->Create(
      {.namespace_ = "default", .service_account = "frontend", .ttl = absl::Hours(1)});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(absl::StartsWith(created->token, absl::StrCat("mjt1.", created->id, ".")));
  EXPECT_EQ(created->expires_at, clock_.WallNow() + absl::Hours(1));

  auto identity = tokens_->Redeem(created->token, &kFrontend);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(*identity, kFrontend);
  // Reusable while valid.
  ASSERT_TRUE(tokens_->Redeem(created->token).ok());

  clock_.Advance(std::chrono::minutes(61));
  auto expired = tokens_->Redeem(created->token, &kFrontend);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos) << expired.status();
  EXPECT_EQ(Refusals("expired"), 1u);
  auto purged = tokens_->PurgeExpired();
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1u);
  EXPECT_EQ(tokens_->Redeem(created->token).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Refusals("unknown"), 1u);
}

TEST_F(JoinTokensTest, TokenForAnotherIdentityIsRefusedAndNotConsumed) {
  auto created =
      tokens_->Create({.namespace_ = "default", .service_account = "frontend", .single_use = true});
  ASSERT_TRUE(created.ok());
  auto wrong = tokens_->Redeem(created->token, &kBackend);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(wrong.status().message().find("proves ns/default/sa/frontend, not the requested "
                                          "ns/default/sa/backend"),
            std::string::npos)
      << wrong.status();
  EXPECT_EQ(Refusals("wrong_identity"), 1u);
  // Still usable by its rightful owner, exactly once.
  ASSERT_TRUE(tokens_->Redeem(created->token, &kFrontend).ok());
  auto again = tokens_->Redeem(created->token, &kFrontend);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(JoinTokensTest, StoredHashedAndSurvivesRestart) {
  auto created = tokens_->Create({.namespace_ = "shop", .service_account = "cart"});
  ASSERT_TRUE(created.ok());
  auto stored = store_->List(kJoinTokenKind, "");
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  const std::string secret = created->token.substr(created->token.rfind('.') + 1);
  EXPECT_EQ(stored->front().body.find(secret), std::string::npos) << stored->front().body;
  EXPECT_NE(stored->front().body.find("secretSha256"), std::string::npos);

  // A new store and token service over the same directory: the token still works.
  tokens_.reset();
  store_.reset();
  auto reopened = FileStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  JoinTokens after_restart(**reopened, clock_, stats_);
  auto identity = after_restart.Redeem(created->token);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(*identity, (WorkloadIdentity{"shop", "cart"}));
}

TEST_F(JoinTokensTest, RefusesMalformedAndForgedTokens) {
  auto created = tokens_->Create({.namespace_ = "default", .service_account = "frontend"});
  ASSERT_TRUE(created.ok());
  std::string forged = created->token;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(tokens_->Redeem(forged).status().code(), absl::StatusCode::kPermissionDenied);
  for (const char* bad : {"", "mjt1", "mjt1..x", "mjt2.0123456789abcdef.x",
                          "mjt1.0123456789ABCDEF.x", "mjt1.0123456789abcdef.x.y"}) {
    EXPECT_EQ(tokens_->Redeem(bad).status().code(), absl::StatusCode::kPermissionDenied) << bad;
  }
  EXPECT_EQ(tokens_->Redeem("mjt1.0123456789abcdef.c2VjcmV0").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Refusals("malformed"), 6u);
  EXPECT_EQ(Refusals("unknown"), 2u);  // the forged secret, the unknown id
  ASSERT_TRUE(tokens_->Revoke(created->id).ok());
  EXPECT_FALSE(tokens_->Redeem(created->token).ok());
}

TEST_F(JoinTokensTest, RevocationOutlivesTheTokenForTheCertificateLifetime) {
  auto created = tokens_->Create({.namespace_ = "default",
                                  .service_account = "frontend",
                                  .ttl = absl::Hours(1),
                                  .single_use = true});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(JoinTokens::IdOf(created->token), created->id);
  EXPECT_EQ(JoinTokens::IdOf("mjt1.nothex.x"), "");
  ASSERT_TRUE(tokens_->Redeem(created->token).ok());  // used: its record is gone
  EXPECT_FALSE(*tokens_->IsRevoked(created->id));
  // Revoking a used token still stops what it bought from renewing.
  EXPECT_TRUE(absl::IsNotFound(tokens_->Revoke(created->id)));
  EXPECT_TRUE(*tokens_->IsRevoked(created->id));
  // Kept for the longest certificate lifetime, then purged.
  clock_.Advance(std::chrono::hours(24));
  ASSERT_TRUE(tokens_->PurgeExpired().ok());
  EXPECT_TRUE(*tokens_->IsRevoked(created->id));
  clock_.Advance(std::chrono::hours(2));
  ASSERT_TRUE(tokens_->PurgeExpired().ok());
  EXPECT_FALSE(*tokens_->IsRevoked(created->id));
  EXPECT_TRUE(absl::IsInvalidArgument(tokens_->Revoke("NOT-AN-ID")));
}

TEST_F(JoinTokensTest, ValidatesSpec) {
  EXPECT_FALSE(tokens_->Create({.namespace_ = "", .service_account = "a"}).ok());
  EXPECT_FALSE(tokens_->Create({.namespace_ = "Default", .service_account = "a"}).ok());
  EXPECT_FALSE(tokens_->Create({.namespace_ = "a", .service_account = "b/c"}).ok());
  EXPECT_FALSE(
      tokens_->Create({.namespace_ = "a", .service_account = "b", .ttl = absl::ZeroDuration()})
          .ok());
  auto too_long =
      tokens_->Create({.namespace_ = "a", .service_account = "b", .ttl = absl::Hours(24 * 8)});
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("ttl"), std::string::npos);
  const auto snapshot = stats_.Snapshot();
  const SeriesSnapshot* created = snapshot.Find("meshlet_ca_join_tokens_created_total");
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(created->counter, 0u);
}

}  // namespace
}  // namespace meshlet::controlplane::identity
