#include "sidecar/route/session.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::route {
namespace {

// Keys of clusters "a", "b" and "c", and of an endpoint.
constexpr uint64_t kKeyA = 0x1111, kKeyB = 0x2222, kKeyC = 0x3333, kHostKey = 0x0a00000750;
const absl::Time kNow = absl::FromUnixSeconds(1767225600);

RouteAction SessionAction(SessionPersistence::Type type, Duration absolute, Duration idle) {
  RouteAction action;
  action.weighted_clusters = {{"a", 1}, {"b", 1}};
  action.total_weight = 2;
  auto session = std::make_shared<SessionPersistence>();
  session->type = type;
  session->name = type == SessionPersistence::Type::kCookie ? "Sticky" : "x-sticky";
  session->absolute_timeout = absolute;
  session->idle_timeout = idle;
  session->cookie_path = "/api";
  session->cluster_keys = {kKeyA, kKeyB};
  action.session = std::move(session);
  return action;
}

SessionToken Token(uint64_t cluster, int64_t created, int64_t used) {
  return {cluster, kHostKey, created, used};
}

TEST(SessionTest, TokenRoundTripsAndRejectsGarbage) {
  const SessionToken token = Token(kKeyB, 100, 200);
  const std::string text = EncodeSessionToken(token);
  EXPECT_EQ(text.size(), kSessionTokenLength);
  std::optional<SessionToken> back = DecodeSessionToken(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->cluster_key, token.cluster_key);
  EXPECT_EQ(back->host_key, token.host_key);
  EXPECT_EQ(back->created_s, 100);
  EXPECT_EQ(back->last_used_s, 200);

  EXPECT_FALSE(DecodeSessionToken("").has_value());
  EXPECT_FALSE(DecodeSessionToken("garbage").has_value());
  EXPECT_FALSE(DecodeSessionToken(std::string(kSessionTokenLength, '!')).has_value());
  std::string other_version = text;
  other_version[0] = other_version[0] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(DecodeSessionToken(other_version).has_value());
  // Last used before created.
  EXPECT_FALSE(DecodeSessionToken(EncodeSessionToken(Token(kKeyA, 200, 100))).has_value());
}

TEST(SessionTest, FindsTheCookieAmongOthers) {
  const RouteAction action = SessionAction(SessionPersistence::Type::kCookie, {}, {});
  http::HeaderMap request;
  request.Add("cookie", "theme=dark; StickyX=1");
  request.Add("cookie", "a=b;  Sticky=\"tok\" ; c=d");
  EXPECT_EQ(FindSessionValue(*action.session, request), "tok");
  http::HeaderMap none;
  none.Add("cookie", "sticky=lowercase-is-another-cookie");
  EXPECT_FALSE(FindSessionValue(*action.session, none).has_value());
}

TEST(SessionTest, LookupNamesTheTokensCluster) {
  const RouteAction action = SessionAction(SessionPersistence::Type::kHeader, {}, {});
  const int64_t now = absl::ToUnixSeconds(kNow);
  http::HeaderMap request;
  EXPECT_EQ(LookupSession(action, request, kNow).result, SessionLookup::Result::kNone);

  request.Set("x-sticky", EncodeSessionToken(Token(kKeyB, now - 5, now - 5)));
  SessionLookup found = LookupSession(action, request, kNow);
  EXPECT_EQ(found.result, SessionLookup::Result::kFound);
  EXPECT_EQ(found.cluster_index, 1u);
  EXPECT_EQ(ClusterAt(action, found.cluster_index), "b");
  EXPECT_EQ(found.host_key, kHostKey);
  EXPECT_EQ(found.created_s, now - 5);

  request.Set("x-sticky", EncodeSessionToken(Token(kKeyC, now, now)));
  EXPECT_EQ(LookupSession(action, request, kNow).result, SessionLookup::Result::kMiss);
  request.Set("x-sticky", "not-a-token");
  EXPECT_EQ(LookupSession(action, request, kNow).result, SessionLookup::Result::kInvalid);
  // Stamped in the future (beyond clock skew): forged to outlive its expiry.
  request.Set("x-sticky", EncodeSessionToken(Token(kKeyA, now, now + 3600)));
  EXPECT_EQ(LookupSession(action, request, kNow).result, SessionLookup::Result::kInvalid);
}

TEST(SessionTest, AbsoluteAndIdleTimeoutsExpire) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  const RouteAction absolute =
      SessionAction(SessionPersistence::Type::kHeader, std::chrono::seconds(60), {});
  http::HeaderMap request;
  request.Set("x-sticky", EncodeSessionToken(Token(kKeyA, now - 59, now - 1)));
  EXPECT_EQ(LookupSession(absolute, request, kNow).result, SessionLookup::Result::kFound);
  request.Set("x-sticky", EncodeSessionToken(Token(kKeyA, now - 60, now - 1)));
  EXPECT_EQ(LookupSession(absolute, request, kNow).result, SessionLookup::Result::kExpired);

  const RouteAction idle =
      SessionAction(SessionPersistence::Type::kHeader, {}, std::chrono::seconds(10));
  request.Set("x-sticky", EncodeSessionToken(Token(kKeyA, now - 1000, now - 9)));
  EXPECT_EQ(LookupSession(idle, request, kNow).result, SessionLookup::Result::kFound);
  request.Set("x-sticky", EncodeSessionToken(Token(kKeyA, now - 1000, now - 10)));
  EXPECT_EQ(LookupSession(idle, request, kNow).result, SessionLookup::Result::kExpired);
}

TEST(SessionTest, SetCookieCarriesPathHttpOnlyAndMaxAgeWhenPermanent) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  RouteAction action = SessionAction(SessionPersistence::Type::kCookie, std::chrono::hours(1), {});
  http::HeaderMap response;
  AddSessionToken(*action.session, Token(kKeyA, now, now), kNow, response);
  const std::string token = EncodeSessionToken(Token(kKeyA, now, now));
  EXPECT_EQ(response.Get("set-cookie"), absl::StrCat("Sticky=", token, "; Path=/api; HttpOnly"));

  auto permanent = std::make_shared<SessionPersistence>(*action.session);
  permanent->permanent_cookie = true;
  http::HeaderMap renewed;
  AddSessionToken(*permanent, Token(kKeyA, now - 600, now), kNow, renewed);
  EXPECT_EQ(renewed.Get("set-cookie"),
            absl::StrCat("Sticky=", EncodeSessionToken(Token(kKeyA, now - 600, now)),
                         "; Path=/api; Max-Age=3000; HttpOnly"));

  const RouteAction header = SessionAction(SessionPersistence::Type::kHeader, {}, {});
  http::HeaderMap with_header;
  AddSessionToken(*header.session, Token(kKeyB, now, now), kNow, with_header);
  EXPECT_EQ(with_header.Get("x-sticky"), EncodeSessionToken(Token(kKeyB, now, now)));
  EXPECT_FALSE(with_header.Has("set-cookie"));
}

TEST(SessionTest, DefaultCookiePathFollowsTheMatch) {
  RouteMatch match;
  match.path_kind = RouteMatch::PathKind::kSegmentPrefix;
  match.path = "/v2";
  EXPECT_EQ(DefaultCookiePath(match), "/v2");
  match.path = "";
  EXPECT_EQ(DefaultCookiePath(match), "/");
  match.path_kind = RouteMatch::PathKind::kExact;
  match.path = "/login";
  EXPECT_EQ(DefaultCookiePath(match), "/login");
  match.path_kind = RouteMatch::PathKind::kRegex;
  match.path = "/x";
  EXPECT_EQ(DefaultCookiePath(match), "/");
  match.path_kind = RouteMatch::PathKind::kPrefix;
  match.path = "/a;b";
  EXPECT_EQ(DefaultCookiePath(match), "/");
}

}  // namespace
}  // namespace meshlet::sidecar::route
