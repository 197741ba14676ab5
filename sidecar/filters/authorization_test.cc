#include "sidecar/filters/authorization.h"

#include "gtest/gtest.h"

namespace meshlet::sidecar::filters {
namespace {

using Action = AuthorizationPolicyConfig::Action;

constexpr absl::string_view kShopWeb = "spiffe://cluster.local/ns/shop/sa/web";
constexpr absl::string_view kShopCart = "spiffe://cluster.local/ns/shop/sa/cart";
constexpr absl::string_view kOpsAdmin = "spiffe://cluster.local/ns/ops/sa/admin";

AuthorizationRequest Request(absl::string_view peer, absl::string_view path = "/",
                             absl::string_view method = "GET", uint32_t port = 8080) {
  return {.peer_identity = peer, .port = port, .method = method, .path = path};
}

AuthorizationPolicyConfig Policy(Action action, std::vector<AuthorizationRuleConfig> rules) {
  return {.name = action == Action::kDeny ? "deny" : "allow",
          .action = action,
          .rules = std::move(rules)};
}

TEST(SpiffeNamespaceTest, ParsesNsSegment) {
  EXPECT_EQ(SpiffeNamespace(kShopWeb), "shop");
  EXPECT_EQ(SpiffeNamespace("spiffe://td/ns/a"), "a");
  EXPECT_EQ(SpiffeNamespace("spiffe://td/other/ns/a"), "");
  EXPECT_EQ(SpiffeNamespace("spiffe://td"), "");
  EXPECT_EQ(SpiffeNamespace(""), "");
}

TEST(AuthorizationPatternTest, StarOnlyAtEnd) {
  EXPECT_TRUE(ValidAuthorizationPattern("*"));
  EXPECT_TRUE(ValidAuthorizationPattern("/api/*"));
  EXPECT_TRUE(ValidAuthorizationPattern("/exact"));
  EXPECT_FALSE(ValidAuthorizationPattern(""));
  EXPECT_FALSE(ValidAuthorizationPattern("/a/*/b"));
  EXPECT_FALSE(ValidAuthorizationPattern("**"));
}

TEST(AuthorizerTest, NoPoliciesAllowsEverything) {
  Authorizer authorizer(AuthorizationConfig{});
  EXPECT_TRUE(authorizer.empty());
  EXPECT_TRUE(authorizer.Decide(Request("")).allowed);
}

TEST(AuthorizerTest, AllowListDeniesEverythingElse) {
  AuthorizationRuleConfig rule;
  rule.principals = {std::string(kShopWeb)};
  Authorizer authorizer({{Policy(Action::kAllow, {rule})}});
  EXPECT_TRUE(authorizer.Decide(Request(kShopWeb)).allowed);
  EXPECT_FALSE(authorizer.Decide(Request(kShopCart)).allowed);
  EXPECT_FALSE(authorizer.Decide(Request("")).allowed);
}

TEST(AuthorizerTest, PrincipalWildcards) {
  AuthorizationRuleConfig shop;
  shop.principals = {"spiffe://cluster.local/ns/shop/sa/*"};
  Authorizer by_prefix({{Policy(Action::kAllow, {shop})}});
  EXPECT_TRUE(by_prefix.Decide(Request(kShopWeb)).allowed);
  EXPECT_TRUE(by_prefix.Decide(Request(kShopCart)).allowed);
  EXPECT_FALSE(by_prefix.Decide(Request(kOpsAdmin)).allowed);

  AuthorizationRuleConfig any;
  any.principals = {"*"};
  Authorizer authenticated({{Policy(Action::kAllow, {any})}});
  EXPECT_TRUE(authenticated.Decide(Request(kOpsAdmin)).allowed);
  // A plaintext request has no identity: "*" means any authenticated peer, not anyone.
  EXPECT_FALSE(authenticated.Decide(Request("")).allowed);
}

TEST(AuthorizerTest, DenyTakesPrecedenceOverAllow) {
  AuthorizationRuleConfig everyone;  // no fields: matches every request
  AuthorizationRuleConfig admin_paths;
  admin_paths.paths = {"/admin/*"};
  Authorizer authorizer(
      {{Policy(Action::kAllow, {everyone}), Policy(Action::kDeny, {admin_paths})}});
  EXPECT_TRUE(authorizer.Decide(Request(kShopWeb, "/api/items")).allowed);
  const AuthorizationDecision denied = authorizer.Decide(Request(kShopWeb, "/admin/users?x=1"));
  EXPECT_FALSE(denied.allowed);
  ASSERT_NE(denied.policy, nullptr);
  EXPECT_EQ(*denied.policy, "deny");
}

TEST(AuthorizerTest, DenyWithoutAllowLetsOthersThrough) {
  AuthorizationRuleConfig unauthenticated_writes;
  unauthenticated_writes.methods = {"POST", "DELETE"};
  unauthenticated_writes.namespaces = {"ops"};
  Authorizer authorizer({{Policy(Action::kDeny, {unauthenticated_writes})}});
  EXPECT_FALSE(authorizer.Decide(Request(kOpsAdmin, "/", "POST")).allowed);
  EXPECT_TRUE(authorizer.Decide(Request(kOpsAdmin, "/", "GET")).allowed);
  EXPECT_TRUE(authorizer.Decide(Request(kShopWeb, "/", "POST")).allowed);
  EXPECT_TRUE(authorizer.Decide(Request("", "/", "POST")).allowed);  // no namespace
}

TEST(AuthorizerTest, RuleFieldsAreAndedValuesAreOred) {
  AuthorizationRuleConfig rule;
  rule.namespaces = {"shop"};
  rule.ports = {8080, 9090};
  rule.methods = {"GET"};
  rule.paths = {"/api/*", "/health"};
  Authorizer authorizer({{Policy(Action::kAllow, {rule})}});
  EXPECT_TRUE(authorizer.Decide(Request(kShopWeb, "/api/x", "GET", 8080)).allowed);
  EXPECT_TRUE(authorizer.Decide(Request(kShopCart, "/health?full=1", "GET", 9090)).allowed);
  EXPECT_FALSE(authorizer.Decide(Request(kShopWeb, "/health/x", "GET", 8080)).allowed);
  EXPECT_FALSE(authorizer.Decide(Request(kShopWeb, "/api/x", "GET", 7070)).allowed);
  EXPECT_FALSE(authorizer.Decide(Request(kShopWeb, "/api/x", "PUT", 8080)).allowed);
  EXPECT_FALSE(authorizer.Decide(Request(kOpsAdmin, "/api/x", "GET", 8080)).allowed);
}

// Hosts (an egress gateway's destinations): the request's :authority without its port, in any
// case; "*.suffix" needs a label in front; unknown on a connection (towards denial).
TEST(AuthorizerTest, HostsMatchTheAuthorityWithoutItsPort) {
  AuthorizationRuleConfig partner;
  partner.principals = {std::string(kShopWeb)};
  partner.hosts = {"api.partner.example", "*.cdn.example"};
  Authorizer authorizer({{Policy(Action::kAllow, {partner})}});
  EXPECT_TRUE(authorizer.reads_hosts());
  auto decide = [&](absl::string_view peer, absl::string_view host) {
    AuthorizationRequest request = Request(peer);
    request.host = host;
    return authorizer.Decide(request).allowed;
  };
  EXPECT_TRUE(decide(kShopWeb, "api.partner.example"));
  EXPECT_TRUE(decide(kShopWeb, "API.Partner.Example:80"));
  EXPECT_TRUE(decide(kShopWeb, "img.eu.cdn.example:8443"));
  EXPECT_FALSE(decide(kShopWeb, "cdn.example"));
  EXPECT_FALSE(decide(kShopWeb, "api.partner.example.evil"));
  EXPECT_FALSE(decide(kShopWeb, "other.example"));
  EXPECT_FALSE(decide(kShopWeb, ""));
  EXPECT_FALSE(decide(kShopCart, "api.partner.example"));  // another caller
  EXPECT_FALSE(authorizer.DecideConnection(kShopWeb, 8080).allowed);

  AuthorizationRuleConfig literal;
  literal.hosts = {"*"};
  Authorizer any({{Policy(Action::kAllow, {literal})}});
  AuthorizationRequest v6 = Request(kShopWeb);
  v6.host = "[2001:db8::1]:80";
  EXPECT_TRUE(any.Decide(v6).allowed);
  EXPECT_FALSE(Authorizer({{Policy(Action::kAllow, {AuthorizationRuleConfig{}})}}).reads_hosts());
}

// A nested claim (request.auth.claims[realm_access][roles]): the member names below the top
// level; a level that is not an object, or a missing member, matches nothing.
TEST(AuthorizerTest, NestedClaims) {
  AuthorizationRuleConfig roles;
  roles.claims = {{.name = "realm_access", .values = {"admin"}, .nested = {"roles"}}};
  AuthorizationRuleConfig deep;
  deep.claims = {{.name = "a", .values = {"x*"}, .nested = {"b", "c"}}};
  deep.methods = {"PUT"};
  Authorizer allow({{Policy(Action::kAllow, {roles, deep})}});
  auto with = [](absl::string_view payload, absl::string_view method = "GET") {
    AuthorizationRequest r = Request(kShopWeb, "/", method);
    r.jwt_issuer = "https://idp.example";
    r.jwt_payload = payload;
    return r;
  };
  EXPECT_TRUE(allow.Decide(with(R"({"realm_access":{"roles":["user","admin"]}})")).allowed);
  EXPECT_TRUE(allow.Decide(with(R"({"realm_access":{"x":1,"roles":"admin"}})")).allowed);
  EXPECT_FALSE(allow.Decide(with(R"({"realm_access":{"roles":["user"]}})")).allowed);
  EXPECT_FALSE(allow.Decide(with(R"({"realm_access":["admin"]})")).allowed);
  EXPECT_FALSE(allow.Decide(with(R"({"realm_access":"admin"})")).allowed);
  EXPECT_FALSE(allow.Decide(with(R"({"roles":"admin"})")).allowed);  // top level is not nested
  EXPECT_FALSE(allow.Decide(with(R"({"realm_access":{"roles":{"admin":true}}})")).allowed);
  EXPECT_TRUE(allow.Decide(with(R"({"a":{"b":{"c":"xyz"}}})", "PUT")).allowed);
  EXPECT_FALSE(allow.Decide(with(R"({"a":{"b":"xyz"}})", "PUT")).allowed);
  EXPECT_FALSE(allow.Decide(with(R"({"a":{"c":"xyz"}})", "PUT")).allowed);
  // DENY on a nested claim denies exactly the tokens holding it.
  Authorizer deny({{Policy(Action::kDeny, {roles})}});
  EXPECT_FALSE(deny.Decide(with(R"({"realm_access":{"roles":["admin"]}})")).allowed);
  EXPECT_TRUE(deny.Decide(with(R"({"realm_access":{"roles":["user"]}})")).allowed);
}

TEST(AuthorizerTest, PolicyWithoutRulesMatchesNothing) {
  Authorizer allow_nothing({{Policy(Action::kAllow, {})}});
  EXPECT_FALSE(allow_nothing.Decide(Request(kShopWeb)).allowed);
  Authorizer deny_nothing({{Policy(Action::kDeny, {})}});
  EXPECT_TRUE(deny_nothing.Decide(Request(kShopWeb)).allowed);
}

// End users: request principals "<iss>/<sub>" and claims of the request's valid JWT.
TEST(AuthorizerTest, RequestPrincipalsAndClaims) {
  AuthorizationRuleConfig alice;
  alice.request_principals = {"https://idp.example/alice"};
  AuthorizationRuleConfig admins;
  admins.paths = {"/admin/*"};
  admins.claims = {{.name = "groups", .values = {"admins"}},
                   {.name = "scope", .values = {"orders:*"}}};
  AuthorizationRuleConfig any_idp;
  any_idp.request_principals = {"https://idp.example/*"};
  any_idp.methods = {"HEAD"};
  AuthorizationRuleConfig numbers;
  numbers.claims = {{.name = "level", .values = {"3"}}, {.name = "staff", .values = {"true"}}};
  numbers.methods = {"PUT"};
  Authorizer authorizer({{Policy(Action::kAllow, {alice, admins, any_idp, numbers})}});
  EXPECT_TRUE(authorizer.reads_token());
  auto with = [](absl::string_view issuer, absl::string_view payload, absl::string_view path,
                 absl::string_view method = "GET") {
    AuthorizationRequest r = Request(kShopWeb, path, method);
    r.jwt_issuer = issuer;
    r.jwt_payload = payload;
    return r;
  };
  const std::string idp = "https://idp.example";
  EXPECT_TRUE(authorizer.Decide(with(idp, R"({"sub":"alice"})", "/")).allowed);
  // An escaped subject is decoded before it is compared.
  EXPECT_TRUE(authorizer.Decide(with(idp, R"({"sub":"\u0061lice"})", "/")).allowed);
  EXPECT_FALSE(authorizer.Decide(with(idp, R"({"sub":"bob"})", "/")).allowed);
  EXPECT_FALSE(authorizer.Decide(with("https://other.example", R"({"sub":"alice"})", "/")).allowed);
  EXPECT_FALSE(authorizer.Decide(with(idp, R"({"sub":"alice2"})", "/")).allowed);
  EXPECT_FALSE(authorizer.Decide(with(idp, R"({"sub":"alic"})", "/")).allowed);
  // No valid token: no principal, no claims.
  EXPECT_FALSE(authorizer.Decide(Request(kShopWeb, "/")).allowed);
  EXPECT_FALSE(authorizer.Decide(Request(kShopWeb, "/admin/x")).allowed);
  // Claims: a string claim, or any string of an array; every condition must hold.
  EXPECT_TRUE(
      authorizer
          .Decide(with(idp, R"({"sub":"x","groups":["users","admins"],"scope":"orders:read"})",
                       "/admin/x"))
          .allowed);
  EXPECT_TRUE(
      authorizer.Decide(with(idp, R"({"groups":"admins","scope":"orders:write"})", "/admin/x"))
          .allowed);
  EXPECT_FALSE(
      authorizer.Decide(with(idp, R"({"groups":["users"],"scope":"orders:read"})", "/admin/x"))
          .allowed);
  EXPECT_FALSE(authorizer.Decide(with(idp, R"({"groups":["admins"]})", "/admin/x")).allowed);
  EXPECT_FALSE(
      authorizer.Decide(with(idp, R"({"groups":{"admins":true},"scope":"orders:r"})", "/admin/x"))
          .allowed);
  // A prefix over "<iss>/<sub>"; "*" is any valid token.
  EXPECT_TRUE(authorizer.Decide(with(idp, R"({"sub":"carol"})", "/", "HEAD")).allowed);
  EXPECT_FALSE(
      authorizer.Decide(with("https://idp.example.evil", R"({"sub":"carol"})", "/", "HEAD"))
          .allowed);
  // Numbers and booleans by their JSON text.
  EXPECT_TRUE(authorizer.Decide(with(idp, R"({"level":3,"staff":true})", "/", "PUT")).allowed);
  EXPECT_FALSE(authorizer.Decide(with(idp, R"({"level":3,"staff":false})", "/", "PUT")).allowed);

  AuthorizationRuleConfig anyone;
  anyone.request_principals = {"*"};
  Authorizer require_token({{Policy(Action::kAllow, {anyone})}});
  EXPECT_TRUE(require_token.Decide(with(idp, R"({})", "/")).allowed);
  EXPECT_FALSE(require_token.Decide(Request(kShopWeb, "/")).allowed);

  // A connection has no token: an ALLOW rule on one never matches, a DENY rule ignores it.
  EXPECT_FALSE(require_token.DecideConnection(kShopWeb, 8080).allowed);
  Authorizer deny({{Policy(Action::kDeny, {anyone})}});
  EXPECT_FALSE(deny.DecideConnection(kShopWeb, 8080).allowed);
  EXPECT_TRUE(deny.Decide(Request(kShopWeb, "/")).allowed);
  EXPECT_FALSE(Authorizer({{Policy(Action::kAllow, {AuthorizationRuleConfig{}})}}).reads_token());
}

// Istio's way to require a token: DENY notRequestPrincipals ["*"].
TEST(AuthorizerTest, NotRequestPrincipals) {
  AuthorizationRuleConfig without_token;
  without_token.not_request_principals = {"*"};
  Authorizer require({{Policy(Action::kDeny, {without_token})}});
  EXPECT_TRUE(require.reads_token());
  AuthorizationRequest with_token = Request(kShopWeb, "/");
  with_token.jwt_issuer = "https://idp.example";
  with_token.jwt_payload = R"({"sub":"alice"})";
  EXPECT_TRUE(require.Decide(with_token).allowed);
  EXPECT_FALSE(require.Decide(Request(kShopWeb, "/")).allowed);
  EXPECT_FALSE(require.DecideConnection(kShopWeb, 8080).allowed);  // towards denial

  AuthorizationRuleConfig not_bob;
  not_bob.not_request_principals = {"https://idp.example/bob"};
  Authorizer deny_others({{Policy(Action::kAllow, {not_bob})}});
  EXPECT_TRUE(deny_others.Decide(with_token).allowed);
  with_token.jwt_payload = R"({"sub":"bob"})";
  EXPECT_FALSE(deny_others.Decide(with_token).allowed);
  EXPECT_TRUE(deny_others.Decide(Request(kShopWeb, "/")).allowed);  // no token: not bob

  // A valid token both required and refused (the translator's rule for a request.auth.principal
  // condition no principal of the rule can meet): no request matches it, with or without a token;
  // as a DENY rule it still refuses a connection on its other fields.
  AuthorizationRuleConfig impossible;
  impossible.request_principals = {"https://idp.example/*"};
  impossible.not_request_principals = {"*"};
  Authorizer never({{Policy(Action::kDeny, {impossible})}});
  with_token.jwt_payload = R"({"sub":"alice"})";
  EXPECT_TRUE(never.Decide(with_token).allowed);
  EXPECT_TRUE(never.Decide(Request(kShopWeb, "/")).allowed);
  EXPECT_FALSE(never.DecideConnection(kShopWeb, 8080).allowed);
}

TEST(AuthorizerTest, ConnectionsResolveHttpFieldsTowardsDenial) {
  // ALLOW: a rule naming paths cannot be checked on a connection, so it never matches there.
  AuthorizationRuleConfig shop_api;
  shop_api.namespaces = {"shop"};
  shop_api.paths = {"/api/*"};
  AuthorizationRuleConfig ops;
  ops.namespaces = {"ops"};
  ops.ports = {5432};
  Authorizer allow({{Policy(Action::kAllow, {shop_api, ops})}});
  EXPECT_TRUE(allow.Decide(Request(kShopWeb, "/api/items")).allowed);
  EXPECT_FALSE(allow.DecideConnection(kShopWeb, 8080).allowed);
  EXPECT_TRUE(allow.DecideConnection(kOpsAdmin, 5432).allowed);
  EXPECT_FALSE(allow.DecideConnection(kOpsAdmin, 5433).allowed);
  EXPECT_FALSE(allow.DecideConnection("", 5432).allowed);

  // DENY: the same rule matches on its other fields alone, and DENY comes first.
  AuthorizationRuleConfig deny_shop_admin;
  deny_shop_admin.namespaces = {"shop"};
  deny_shop_admin.methods = {"DELETE"};
  AuthorizationRuleConfig any;
  any.principals = {"*"};
  Authorizer deny({{Policy(Action::kDeny, {deny_shop_admin}), Policy(Action::kAllow, {any})}});
  EXPECT_TRUE(deny.Decide(Request(kShopWeb, "/", "GET")).allowed);
  EXPECT_FALSE(deny.Decide(Request(kShopWeb, "/", "DELETE")).allowed);
  const AuthorizationDecision shop = deny.DecideConnection(kShopWeb, 8080);
  EXPECT_FALSE(shop.allowed);
  ASSERT_NE(shop.policy, nullptr);
  EXPECT_EQ(*shop.policy, "deny");
  EXPECT_TRUE(deny.DecideConnection(kOpsAdmin, 8080).allowed);
  EXPECT_FALSE(deny.DecideConnection("", 8080).allowed);
}

}  // namespace
}  // namespace meshlet::sidecar::filters
