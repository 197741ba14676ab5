#include "control-plane/identity/token_review.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "control-plane/identity/json_fields.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::identity {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

// A projected service-account token's shape (the signature is not checked here: the API server
// does that).
std::string Jwt(const std::string& payload_json) {
  std::string header;
  std::string payload;
  absl::WebSafeBase64Escape(R"({"alg":"RS256","kid":"k1"})", &header);
  absl::WebSafeBase64Escape(payload_json, &payload);
  return absl::StrCat(header, ".", payload, ".c2lnbmF0dXJl");
}

std::string ProjectedClaims(int64_t exp_offset_seconds = 3600,
                            const std::string& aud = R"(["meshlet"])",
                            const std::string& ns = "default", const std::string& sa = "frontend") {
  const int64_t now = absl::ToUnixSeconds(kNow);
  return absl::StrCat(R"({"aud":)", aud, R"(,"exp":)", now + exp_offset_seconds, R"(,"iat":)",
                      now - 60, R"(,"nbf":)", now - 60,
                      R"(,"iss":"https://kubernetes.default.svc.cluster.local",)",
                      R"("kubernetes.io":{"namespace":")", ns,
                      R"(","pod":{"name":"frontend-6d4cf56db6-x7k2p","uid":"0a1b"},)",
                      R"("serviceaccount":{"name":")", sa, R"(","uid":"9f8e"}},)",
                      R"("sub":"system:serviceaccount:)", ns, ":", sa, R"("})");
}

// The shape of an authentication.k8s.io/v1 TokenReview response.
std::string Review(bool authenticated = true,
                   const std::string& username = "system:serviceaccount:default:frontend",
                   const std::string& audiences = R"(["meshlet"])", const std::string& error = "") {
  return absl::StrCat(
      R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},)",
      R"("spec":{"token":"redacted","audiences":["meshlet"]},"status":{"authenticated":)",
      authenticated ? "true" : "false", R"(,"user":{"username":")", username,
      R"(","uid":"9f8e","groups":["system:serviceaccounts","system:serviceaccounts:default",)",
      R"("system:authenticated"],"extra":{"authentication.kubernetes.io/pod-name":)",
      R"(["frontend-6d4cf56db6-x7k2p"]}},"audiences":)", audiences, R"(,"error":")", error,
      R"("}})");
}

absl::Status Check(const std::string& review, const std::string& token) {
  return CheckTokenReview(review, token, TokenReviewPolicy{}, kNow).status();
}

TEST(TokenReviewTest, AcceptsAProjectedTokenTheApiServerAuthenticated) {
  auto identity = CheckTokenReview(Review(), Jwt(ProjectedClaims()), {}, kNow);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(*identity, (WorkloadIdentity{"default", "frontend"}));
  // aud as a single string is allowed by RFC 7519.
  EXPECT_TRUE(Check(Review(), Jwt(ProjectedClaims(3600, R"("meshlet")"))).ok());
}

TEST(TokenReviewTest, BoundPodComesFromTheProjectedClaims) {
  absl::StatusOr<BoundPod> pod = BoundPodOfToken(Jwt(ProjectedClaims()));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->name, "frontend-6d4cf56db6-x7k2p");
  EXPECT_EQ(pod->uid, "0a1b");
  // A token bound to no pod (a TokenRequest without boundObjectRef, a legacy secret token).
  const std::string unbound = absl::StrReplaceAll(
      ProjectedClaims(), {{R"("pod":{"name":"frontend-6d4cf56db6-x7k2p","uid":"0a1b"},)", ""}});
  EXPECT_TRUE(absl::IsNotFound(BoundPodOfToken(Jwt(unbound)).status()));
  EXPECT_FALSE(BoundPodOfToken("not.a-jwt").ok());
}

TEST(TokenReviewTest, RefusesWhatTheApiServerRefused) {
  absl::Status status = Check(Review(false), Jwt(ProjectedClaims()));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(status.message().find("did not authenticate"), std::string::npos) << status;
  status = Check(Review(false, "", "[]", "token has been invalidated"), Jwt(ProjectedClaims()));
  EXPECT_NE(status.message().find("token has been invalidated"), std::string::npos) << status;
}

TEST(TokenReviewTest, RefusesOtherAudiences) {
  absl::Status status = Check(Review(true, "system:serviceaccount:default:frontend",
                                     R"(["https://kubernetes.default.svc"])"),
                              Jwt(ProjectedClaims()));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(status.message().find("audience"), std::string::npos) << status;
  // No audiences echoed at all: refused too.
  std::string no_audiences = absl::StrReplaceAll(Review(), {{R"(,"audiences":["meshlet"],)", ","}});
  EXPECT_EQ(Check(no_audiences, Jwt(ProjectedClaims())).code(),
            absl::StatusCode::kPermissionDenied);
  // The JWT itself for another audience.
  status = Check(Review(), Jwt(ProjectedClaims(3600, R"(["vault"])")));
  EXPECT_NE(status.message().find("aud"), std::string::npos) << status;
}

TEST(TokenReviewTest, RefusesExpiredAndLegacyTokens) {
  absl::Status status = Check(Review(), Jwt(ProjectedClaims(-120)));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(status.message().find("expired"), std::string::npos) << status;
  // Within the skew allowance it still passes.
  EXPECT_TRUE(Check(Review(), Jwt(ProjectedClaims(-10))).ok());
  // A legacy secret-based token has no exp.
  status = Check(Review(), Jwt(R"({"iss":"kubernetes/serviceaccount","aud":["meshlet"],)"
                               R"("sub":"system:serviceaccount:default:frontend"})"));
  EXPECT_NE(status.message().find("exp"), std::string::npos) << status;
  EXPECT_FALSE(Check(Review(), "not-a-jwt").ok());
  EXPECT_FALSE(Check(Review(), "a.%%%.c").ok());
}

TEST(TokenReviewTest, DerivesIdentityOnlyFromAServiceAccountUser) {
  EXPECT_NE(Check(Review(true, "alice@example.com"), Jwt(ProjectedClaims()))
                .message()
                .find("not a service account"),
            std::string::npos);
  EXPECT_FALSE(Check(Review(true, "system:serviceaccount:default"), Jwt(ProjectedClaims())).ok());
  EXPECT_FALSE(
      Check(Review(true, "system:serviceaccount:default:a:b"), Jwt(ProjectedClaims())).ok());
  EXPECT_FALSE(Check(Review(true, "system:serviceaccount:Default:x"), Jwt(ProjectedClaims())).ok());
}

TEST(TokenReviewTest, RefusesAReviewThatBelongsToAnotherToken) {
  // The review says backend, the token says frontend.
  absl::Status status =
      Check(Review(true, "system:serviceaccount:default:backend"), Jwt(ProjectedClaims()));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(status.message().find("another service account"), std::string::npos) << status;
}

TEST(TokenReviewTest, RefusesSomethingThatIsNotATokenReview) {
  EXPECT_EQ(Check("{}", Jwt(ProjectedClaims())).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Check("not json", Jwt(ProjectedClaims())).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Check(R"({"kind":"Status","apiVersion":"v1","status":"Failure"})", Jwt(ProjectedClaims()))
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(TokenReviewTest, BuildsTheRequestBody) {
  std::string body = BuildTokenReviewRequest("abc\"def", "meshlet");
  auto json = JsonObject::Parse(body);
  ASSERT_TRUE(json.ok()) << body;
  EXPECT_EQ(json->String("kind").value_or(""), "TokenReview");
  EXPECT_EQ(json->String("apiVersion").value_or(""), "authentication.k8s.io/v1");
  EXPECT_EQ(json->String("spec/token").value_or(""), "abc\"def");
  EXPECT_EQ(json->Strings("spec/audiences").value_or(std::vector<std::string>{}),
            std::vector<std::string>{"meshlet"});
}

}  // namespace
}  // namespace meshlet::controlplane::identity
