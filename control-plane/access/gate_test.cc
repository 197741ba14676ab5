#include "control-plane/access/gate.h"

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

constexpr char kBootstrap[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// Answers like the Kubernetes API server would for the users it was told about.
class FakeKubernetesUsers final : public KubernetesUsers {
 public:
  void Authorize(const std::string& bearer, Role needed,
                 std::function<void(absl::StatusOr<Principal>)> done) override {
    asked.push_back(bearer);
    auto it = roles.find(bearer);
    if (it == roles.end()) return done(absl::UnauthenticatedError("the API server says: no"));
    if (!Grants(it->second, needed)) {
      return done(absl::PermissionDeniedError("Kubernetes user \"kate\" may not"));
    }
    done(Principal{.name = "kate", .credential = "kubernetes", .role = needed});
  }
  std::map<std::string, Role> roles;
  std::vector<std::string> asked;
};

class AccessGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/gate.XXXXXX");
    auto store = FileStore::Open(::mkdtemp(templ.data()));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto tokens = OperatorTokens::Open(*store_, clock_, kBootstrap, &stats_);
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    tokens_ = *std::move(tokens);
    gate_ = std::make_unique<AccessGate>(*tokens_, &stats_);
  }

  std::string Token(absl::string_view name, Role role) {
    absl::StatusOr<CreatedOperatorToken> created =
        tokens_->Create({.name = std::string(name), .role = role});
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->token : "";
  }

  static http::ServerRequest Request(absl::string_view method, absl::string_view path,
                                     absl::string_view token) {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    if (!token.empty()) request.headers.Add("authorization", absl::StrCat("Bearer ", token));
    return request;
  }

  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    const auto snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  FakeClock clock_;
  StatsRegistry stats_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<OperatorTokens> tokens_;
  std::unique_ptr<AccessGate> gate_;
};

TEST_F(AccessGateTest, NoOrAWrongTokenIs401AndCounted) {
  absl::Status missing =
      gate_->Check(Request("GET", "/api/v1/workloads", ""), Role::kViewer).status();
  EXPECT_TRUE(absl::IsUnauthenticated(missing)) << missing;
  EXPECT_TRUE(absl::StrContains(missing.message(), "missing Authorization: Bearer")) << missing;
  http::ServerRequest basic = Request("GET", "/api/v1/workloads", "");
  basic.headers.Add("authorization", "Basic YTpi");
  EXPECT_TRUE(absl::IsUnauthenticated(gate_->Check(basic, Role::kViewer).status()));
  // Without Kubernetes users, a token that is not ours is simply wrong.
  absl::Status wrong =
      gate_->Check(Request("GET", "/api/v1/workloads", "eyJ.x.y"), Role::kViewer).status();
  EXPECT_EQ(wrong, absl::UnauthenticatedError("wrong bearer token"));
  EXPECT_EQ(Counter("meshlet_cp_api_auth_failures_total"), 3u);
}

TEST_F(AccessGateTest, EachRoleGetsWhatItIncludesAndNoMore) {
  const std::string viewer = Token("vera", Role::kViewer);
  const std::string editor = Token("ed", Role::kEditor);
  const std::string admin = Token("ada", Role::kAdmin);
  // A viewer reads; a policy write needs an editor.
  EXPECT_TRUE(
      gate_->Check(Request("GET", "/apis/meshlet.io/v1/services", viewer), Role::kViewer).ok());
  absl::Status write =
      gate_
          ->Check(Request("PUT", "/apis/meshlet.io/v1/namespaces/default/services/a", viewer),
                  Role::kEditor)
          .status();
  EXPECT_TRUE(absl::IsPermissionDenied(write)) << write;
  EXPECT_EQ(write.message(),
            "operator-token \"vera\" has the role viewer; PUT "
            "/apis/meshlet.io/v1/namespaces/default/services/a needs editor");
  EXPECT_TRUE(gate_->Check(Request("PUT", "/apis/meshlet.io/v1/x", editor), Role::kEditor).ok());
  // Join tokens are an admin's: an editor is refused.
  absl::Status join =
      gate_->Check(Request("POST", "/api/v1/tokens", editor), Role::kAdmin).status();
  EXPECT_TRUE(absl::IsPermissionDenied(join)) << join;
  EXPECT_TRUE(gate_->Check(Request("POST", "/api/v1/tokens", admin), Role::kAdmin).ok());
  absl::StatusOr<Principal> bootstrap =
      gate_->Check(Request("POST", "/api/v1/operator-tokens", kBootstrap), Role::kAdmin);
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  EXPECT_EQ(bootstrap->name, "api-token");
  EXPECT_EQ(Counter("meshlet_cp_api_forbidden_total", {{"needed", "editor"}}), 1u);
  EXPECT_EQ(Counter("meshlet_cp_api_forbidden_total", {{"needed", "admin"}}), 1u);
  EXPECT_EQ(Counter("meshlet_cp_api_authenticated_total", {{"credential", "operator-token"}}), 3u);
  EXPECT_EQ(Counter("meshlet_cp_api_authenticated_total", {{"credential", "api-token"}}), 1u);
}

TEST_F(AccessGateTest, ARevokedTokenIs401) {
  const std::string token = Token("gone", Role::kAdmin);
  ASSERT_TRUE(gate_->Check(Request("GET", "/api/v1/workloads", token), Role::kViewer).ok());
  ASSERT_TRUE(tokens_->Revoke("gone").ok());
  absl::Status status =
      gate_->Check(Request("GET", "/api/v1/workloads", token), Role::kViewer).status();
  EXPECT_TRUE(absl::IsUnauthenticated(status)) << status;
}

TEST_F(AccessGateTest, OtherTokensGoToKubernetesUsersWhenOn) {
  FakeKubernetesUsers users;
  users.roles["kube-editor"] = Role::kEditor;
  gate_->SetKubernetesUsers(&users);
  // Ours are still decided here, without the API server.
  EXPECT_TRUE(gate_->Check(Request("GET", "/api/v1/x", kBootstrap), Role::kViewer).ok());
  EXPECT_TRUE(users.asked.empty());
  // Others: NotFound, then the API server.
  const http::ServerRequest write = Request("PUT", "/apis/meshlet.io/v1/x", "kube-editor");
  EXPECT_TRUE(absl::IsNotFound(gate_->Check(write, Role::kEditor).status()));
  std::optional<absl::StatusOr<Principal>> answer;
  gate_->CheckKubernetes(write, Role::kEditor, [&](absl::StatusOr<Principal> p) { answer = p; });
  ASSERT_TRUE(answer.has_value());
  ASSERT_TRUE(answer->ok()) << answer->status();
  EXPECT_EQ((*answer)->credential, "kubernetes");
  gate_->CheckKubernetes(Request("POST", "/api/v1/tokens", "kube-editor"), Role::kAdmin,
                         [&](absl::StatusOr<Principal> p) { answer = p; });
  EXPECT_TRUE(absl::IsPermissionDenied(answer->status())) << answer->status();
  gate_->CheckKubernetes(Request("GET", "/api/v1/x", "stranger"), Role::kViewer,
                         [&](absl::StatusOr<Principal> p) { answer = p; });
  EXPECT_TRUE(absl::IsUnauthenticated(answer->status())) << answer->status();
  EXPECT_EQ(users.asked, (std::vector<std::string>{"kube-editor", "kube-editor", "stranger"}));
  EXPECT_EQ(Counter("meshlet_cp_api_forbidden_total", {{"needed", "admin"}}), 1u);
  EXPECT_EQ(Counter("meshlet_cp_api_auth_failures_total"), 1u);
  EXPECT_EQ(Counter("meshlet_cp_api_authenticated_total", {{"credential", "kubernetes"}}), 1u);
}

}  // namespace
}  // namespace meshlet::controlplane::access
