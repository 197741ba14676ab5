#include "control-plane/access/kubernetes_users.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::access {
namespace {

constexpr char kAlice[] = R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
  "status":{"authenticated":true,"audiences":["https://kubernetes.default.svc"],
    "user":{"username":"alice@example.com","uid":"42","groups":["dev","system:authenticated"],
            "extra":{"scopes":["a","b"]}}}})";

TEST(KubernetesUsersTest, ATokenReviewRequestNamesTheAudiencesAskedFor) {
  EXPECT_EQ(
      BuildUserTokenReview("tok\"en", {}),
      R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"tok\"en"}})");
  EXPECT_EQ(
      BuildUserTokenReview("t", {"meshlet-api", "x"}),
      R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","audiences":["meshlet-api","x"]}})");
}

TEST(KubernetesUsersTest, TheReviewedUserCarriesNameUidGroupsAndExtra) {
  absl::StatusOr<KubernetesUser> user = ParseUserTokenReview(kAlice, {});
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->username, "alice@example.com");
  EXPECT_EQ(user->uid, "42");
  EXPECT_EQ(user->groups, (std::vector<std::string>{"dev", "system:authenticated"}));
  EXPECT_EQ(user->extra_json, R"({"scopes":["a","b"]})");
  // The SubjectAccessReview asks about the user as reviewed, for the role's verb.
  EXPECT_EQ(BuildAccessReview(*user, Role::kEditor),
            R"({"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":)"
            R"({"user":"alice@example.com","uid":"42","groups":["dev","system:authenticated"],)"
            R"("extra":{"scopes":["a","b"]},"resourceAttributes":{"group":"meshlet.io",)"
            R"("resource":"meshes","verb":"edit"}}})");
}

TEST(KubernetesUsersTest, UnauthenticatedTokensAndWrongAudiencesAreRefused) {
  absl::Status refused =
      ParseUserTokenReview(
          R"({"kind":"TokenReview","status":{"authenticated":false,"error":"token expired"}})", {})
          .status();
  EXPECT_TRUE(absl::IsUnauthenticated(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "token expired")) << refused;
  EXPECT_TRUE(absl::IsUnauthenticated(
      ParseUserTokenReview(R"({"kind":"TokenReview","status":{}})", {}).status()));
  absl::Status audience = ParseUserTokenReview(kAlice, {"meshlet-api"}).status();
  EXPECT_TRUE(absl::IsUnauthenticated(audience)) << audience;
  EXPECT_TRUE(ParseUserTokenReview(kAlice, {"meshlet-api", "https://kubernetes.default.svc"}).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ParseUserTokenReview("[]", {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParseUserTokenReview(R"({"kind":"SubjectAccessReview"})", {}).status()));
}

TEST(KubernetesUsersTest, AccessIsGrantedOnlyWhenAllowedAndNotDenied) {
  const KubernetesUser user{.username = "bob"};
  EXPECT_TRUE(ParseAccessReview(R"({"kind":"SubjectAccessReview","status":{"allowed":true}})", user,
                                Role::kViewer)
                  .ok());
  absl::Status no = ParseAccessReview(
      R"({"kind":"SubjectAccessReview","status":{"allowed":false,"reason":"no RBAC policy matched"}})",
      user, Role::kAdmin);
  EXPECT_TRUE(absl::IsPermissionDenied(no)) << no;
  EXPECT_EQ(no.message(),
            "Kubernetes user \"bob\" may not admin meshes.meshlet.io (the admin role: a "
            "ClusterRoleBinding to meshlet-admin grants it): no RBAC policy matched");
  EXPECT_TRUE(absl::IsPermissionDenied(
      ParseAccessReview(R"({"kind":"SubjectAccessReview","status":{"allowed":true,"denied":true}})",
                        user, Role::kViewer)));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ParseAccessReview(R"({"kind":"TokenReview"})", user, Role::kViewer)));
}

}  // namespace
}  // namespace meshlet::controlplane::access
