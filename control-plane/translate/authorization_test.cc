// Authorization (authorization.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

TEST_F(TranslatorTest, AuthorizationPoliciesOfTheWorkload) {
  // frontend serves Service port 8080 on app port 8081, plus an opaque TCP port.
  policy_.services[1] = Parse<pb::Service>(R"(
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, targetPort: 8081}, {name: db, port: 5432, protocol: TCP}]
)");
  registry_.workloads[0].ports = {8081, 5432};
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: b-shop-reads}
spec:
  target: frontend
  rules:
  - from: [{namespaces: [shop]}, {principals: ["spiffe://cluster.local/ns/ops/sa/*"]}]
    to: [{ports: [8080], methods: [GET]}, {ports: [5432]}]
)"));
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: a-no-admin}
spec:
  action: DENY
  rules:
  - to: [{paths: ["/admin/*"]}]
)"));
  // Not this workload's: another target, another namespace.
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: reviews-only}
spec:
  target: reviews
  rules: [{}]
)"));
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  rules: [{}]
)"));
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_EQ(inbound->authorization().policies_size(), 2);
  const xds::AuthorizationPolicy& deny = inbound->authorization().policies(0);
  EXPECT_EQ(deny.name(), "default/a-no-admin");
  EXPECT_EQ(deny.action(), xds::AuthorizationPolicy::DENY);
  ASSERT_EQ(deny.rules_size(), 1);
  EXPECT_EQ(deny.rules(0).paths(0), "/admin/*");
  EXPECT_EQ(deny.rules(0).principals_size(), 0);
  const xds::AuthorizationPolicy& allow = inbound->authorization().policies(1);
  EXPECT_EQ(allow.name(), "default/b-shop-reads");
  EXPECT_EQ(allow.action(), xds::AuthorizationPolicy::ALLOW);
  // Decision records name the objects.
  EXPECT_EQ(deny.source().kind(), "AuthorizationPolicy");
  EXPECT_EQ(deny.source().namespace_(), "default");
  EXPECT_EQ(deny.source().name(), "a-no-admin");
  EXPECT_EQ(allow.source().kind(), "AuthorizationPolicy");
  EXPECT_EQ(allow.source().name(), "b-shop-reads");
  // 2 sources x 2 destinations; Service port 8080 stands for app port 8081 as well.
  ASSERT_EQ(allow.rules_size(), 4);
  EXPECT_EQ(allow.rules(0).namespaces(0), "shop");
  EXPECT_EQ(std::vector<uint32_t>(allow.rules(0).ports().begin(), allow.rules(0).ports().end()),
            (std::vector<uint32_t>{8080, 8081}));
  EXPECT_EQ(allow.rules(0).methods(0), "GET");
  EXPECT_EQ(allow.rules(1).ports(0), 5432u);
  EXPECT_EQ(allow.rules(1).methods_size(), 0);
  EXPECT_EQ(allow.rules(3).principals(0), "spiffe://cluster.local/ns/ops/sa/*");
  // The destination ports authorization sees: the app port each host routes to, and the TCP
  // fallback's (the lowest Service port's).
  EXPECT_EQ(inbound->tcp_cluster(), "inbound|5432");
  EXPECT_EQ(inbound->destination_port(), 5432u);
  EXPECT_EQ(Host(r, "inbound", "inbound:8080")->destination_port(), 8081u);

  // A workload without policies gets no authorization.
  node_.set_id("reviews-v1-0");
  r = Translate(policy_, registry_, node_);
  ASSERT_EQ(Named(r.listeners, "inbound")->authorization().policies_size(), 2);
  EXPECT_EQ(Named(r.listeners, "inbound")->authorization().policies(1).name(),
            "default/reviews-only");
  policy_.authorization_policies.clear();
  r = Translate(policy_, registry_, node_);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_authorization());
}

// RequestAuthentications selecting the workload become its inbound listener's JWT
// authentication: inline keys as written, a jwksUri's from the fetched key sets (none until
// fetched), each issuer once (the first policy by name; the other named in a warning).
TEST_F(TranslatorTest, RequestAuthenticationsOfTheWorkload) {
  const std::string ed_jwks =
      R"({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})";
  policy_.request_authentications.push_back(Parse<pb::RequestAuthentication>(R"(
kind: RequestAuthentication
metadata: {name: b-frontend}
spec:
  target: frontend
  jwtRules:
  - issuer: https://idp.example
    audiences: [orders]
    jwksUri: https://idp.example/keys
    fromHeaders: [{name: x-token, prefix: "Bearer "}]
    outputClaimToHeaders: [{header: x-user, claim: sub}]
  - issuer: https://inline.example
    jwks: ')" + ed_jwks + R"('
)"));
  policy_.request_authentications.push_back(Parse<pb::RequestAuthentication>(R"(
kind: RequestAuthentication
metadata: {name: a-namespace}
spec:
  jwtRules:
  - issuer: https://inline.example
    jwks: ')" + ed_jwks + R"('
    forwardOriginalToken: true
)"));
  policy_.request_authentications.push_back(Parse<pb::RequestAuthentication>(R"(
kind: RequestAuthentication
metadata: {name: reviews-only}
spec:
  target: reviews
  jwtRules: [{issuer: https://reviews.example, jwks: ')" + ed_jwks + R"('}]
)"));
  policy_.request_authentications.push_back(Parse<pb::RequestAuthentication>(R"(
kind: RequestAuthentication
metadata: {name: elsewhere, namespace: other}
spec:
  jwtRules: [{issuer: https://other.example, jwks: ')" + ed_jwks + R"('}]
)"));
  // The jwksUri not fetched yet: its issuer is sent without keys, refusing its tokens, with its
  // token locations and output headers (so a client's own x-user is still removed).
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_TRUE(inbound->has_jwt());
  ASSERT_EQ(inbound->jwt().issuers_size(), 2);
  const xds::JwtIssuer& inline_issuer = inbound->jwt().issuers(0);
  EXPECT_EQ(inline_issuer.issuer(), "https://inline.example");
  EXPECT_TRUE(inline_issuer.forward_original_token());  // a-namespace's rule, first by name
  EXPECT_EQ(inline_issuer.source().kind(), "RequestAuthentication");
  EXPECT_EQ(inline_issuer.source().name(), "a-namespace");
  EXPECT_EQ(inline_issuer.jwks(), ed_jwks);
  EXPECT_FALSE(inline_issuer.keys_unavailable());
  const std::string shadowed =
      "RequestAuthentication default/b-frontend spec.jwtRules[1]: issuer "
      "\"https://inline.example\" is also named by RequestAuthentication default/a-namespace, "
      "whose rule applies";
  EXPECT_NE(std::find(r.warnings.begin(), r.warnings.end(), shadowed), r.warnings.end())
      << absl::StrJoin(r.warnings, "\n");
  const xds::JwtIssuer& pending = inbound->jwt().issuers(1);
  EXPECT_EQ(pending.issuer(), "https://idp.example");
  EXPECT_TRUE(pending.keys_unavailable());
  EXPECT_EQ(pending.jwks(), "");
  EXPECT_EQ(pending.from_headers(0).name(), "x-token");
  EXPECT_EQ(pending.output_claim_to_headers(0).header(), "x-user");

  TranslateOptions options;
  options.jwks["https://idp.example/keys"] = ed_jwks;
  r = Translate(policy_, registry_, node_, options);
  inbound = Named(r.listeners, "inbound");
  ASSERT_EQ(inbound->jwt().issuers_size(), 2);
  const xds::JwtIssuer& fetched = inbound->jwt().issuers(1);
  EXPECT_EQ(fetched.issuer(), "https://idp.example");
  EXPECT_EQ(fetched.jwks(), ed_jwks);
  EXPECT_FALSE(fetched.keys_unavailable());
  EXPECT_EQ(fetched.audiences(0), "orders");
  EXPECT_EQ(fetched.from_headers(0).name(), "x-token");
  EXPECT_EQ(fetched.from_headers(0).prefix(), "Bearer ");
  EXPECT_EQ(fetched.output_claim_to_headers(0).claim(), "sub");
  EXPECT_EQ(fetched.output_claim_to_headers(0).header(), "x-user");
  EXPECT_EQ(fetched.source().name(), "b-frontend");

  // Another workload: its own target's and the namespace's.
  node_.set_id("reviews-v1-0");
  r = Translate(policy_, registry_, node_, options);
  inbound = Named(r.listeners, "inbound");
  ASSERT_EQ(inbound->jwt().issuers_size(), 2);
  EXPECT_EQ(inbound->jwt().issuers(0).issuer(), "https://inline.example");
  EXPECT_EQ(inbound->jwt().issuers(1).issuer(), "https://reviews.example");
  policy_.request_authentications.clear();
  r = Translate(policy_, registry_, node_, options);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_jwt());

  // An issuer with neither jwksUri nor jwks: its keys are those read through its OpenID Connect
  // discovery document.
  policy_.request_authentications.push_back(Parse<pb::RequestAuthentication>(R"(
kind: RequestAuthentication
metadata: {name: discovered}
spec:
  jwtRules: [{issuer: "https://login.example/"}]
)"));
  r = Translate(policy_, registry_, node_, options);
  ASSERT_EQ(Named(r.listeners, "inbound")->jwt().issuers_size(), 1);
  EXPECT_TRUE(Named(r.listeners, "inbound")->jwt().issuers(0).keys_unavailable());
  options.jwks["https://login.example/.well-known/openid-configuration"] = ed_jwks;
  r = Translate(policy_, registry_, node_, options);
  EXPECT_EQ(Named(r.listeners, "inbound")->jwt().issuers(0).jwks(), ed_jwks);
  EXPECT_FALSE(Named(r.listeners, "inbound")->jwt().issuers(0).keys_unavailable());
}

// End users in AuthorizationPolicy: from.requestPrincipals and when request.auth.claims[NAME],
// request.auth.audiences and request.auth.presenter.
TEST_F(TranslatorTest, AuthorizationOnRequestPrincipalsAndClaims) {
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: users}
spec:
  rules:
  - from: [{requestPrincipals: ["https://idp.example/*"], notRequestPrincipals: ["https://idp.example/bob"]}]
    to: [{paths: ["/admin/*"]}]
    when:
    - {key: "request.auth.claims[groups]", values: [admins, ops]}
    - {key: request.auth.audiences, values: [orders]}
    - {key: request.auth.presenter, values: [web-*]}
    - {key: "request.auth.claims[realm_access][roles]", values: [admin]}
)"));
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::AuthorizationRule& rule =
      Named(r.listeners, "inbound")->authorization().policies(0).rules(0);
  ASSERT_EQ(rule.request_principals_size(), 1);
  EXPECT_EQ(rule.request_principals(0), "https://idp.example/*");
  ASSERT_EQ(rule.not_request_principals_size(), 1);
  EXPECT_EQ(rule.not_request_principals(0), "https://idp.example/bob");
  ASSERT_EQ(rule.claims_size(), 4);
  EXPECT_EQ(rule.claims(0).name(), "groups");
  EXPECT_EQ(rule.claims(0).values_size(), 2);
  EXPECT_EQ(rule.claims(0).nested_size(), 0);
  // A nested claim: its top-level name, then the members below it.
  EXPECT_EQ(rule.claims(3).name(), "realm_access");
  ASSERT_EQ(rule.claims(3).nested_size(), 1);
  EXPECT_EQ(rule.claims(3).nested(0), "roles");
  // The audiences and the authorized party, as the claims they are.
  EXPECT_EQ(rule.claims(1).name(), "aud");
  EXPECT_EQ(rule.claims(1).values(0), "orders");
  EXPECT_EQ(rule.claims(2).name(), "azp");
  EXPECT_EQ(rule.claims(2).values(0), "web-*");
  EXPECT_EQ(rule.paths(0), "/admin/*");
}

// when request.auth.principal: ANDed with from.requestPrincipals (the principals both match);
// alone, it is the rule's request principals; when none can match both, the rule matches no
// request (a valid token both required and refused).
TEST_F(TranslatorTest, AuthorizationOnRequestAuthPrincipal) {
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: users}
spec:
  rules:
  - from: [{requestPrincipals: ["https://idp.example/*", "https://other.example/x"]},
           {namespaces: [ops]},
           {requestPrincipals: ["https://third.example/*"]}]
    when:
    - {key: request.auth.principal, values: ["https://idp.example/alice*", "*"]}
    - {key: request.auth.principal, values: ["https://idp.example/alice-2", "https://other.example/*"]}
)"));
  NodeResources r = Translate(policy_, registry_, node_);
  const xds::AuthorizationPolicy& policy =
      Named(r.listeners, "inbound")->authorization().policies(0);
  ASSERT_EQ(policy.rules_size(), 3);
  auto list = [](const google::protobuf::RepeatedPtrField<std::string>& l) {
    return std::vector<std::string>(l.begin(), l.end());
  };
  EXPECT_EQ(list(policy.rules(0).request_principals()),
            (std::vector<std::string>{"https://idp.example/alice-2", "https://other.example/x"}));
  EXPECT_EQ(policy.rules(0).not_request_principals_size(), 0);
  EXPECT_EQ(policy.rules(0).claims_size(), 0) << "not a claim";
  // No from.requestPrincipals: the conditions alone (the second narrows the first).
  EXPECT_EQ(list(policy.rules(1).request_principals()),
            (std::vector<std::string>{"https://idp.example/alice-2", "https://other.example/*"}));
  EXPECT_EQ(list(policy.rules(1).namespaces()), (std::vector<std::string>{"ops"}));
  // Nothing both match: never a request.
  EXPECT_EQ(list(policy.rules(2).request_principals()),
            (std::vector<std::string>{"https://third.example/*"}));
  EXPECT_EQ(list(policy.rules(2).not_request_principals()), (std::vector<std::string>{"*"}));
}

// Trust-domain aliases and federation: a principal of the local domain or an alias stands for
// the same id in each; once a domain is federated, a rule's namespaces name this mesh's only.
TEST_F(TranslatorTest, AliasedPrincipalsAndNamespacesOfThisMeshOnly) {
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: callers}
spec:
  rules:
  - from: [{principals: ["spiffe://cluster.local/ns/shop/sa/cart", "spiffe://other.example/ns/x/sa/y"]},
           {namespaces: [ops]}]
)"));
  TranslateOptions options;
  options.trust_domain_aliases = {"old.example"};
  NodeResources r = Translate(policy_, registry_, node_, options);
  const xds::AuthorizationPolicy* policy =
      &Named(r.listeners, "inbound")->authorization().policies(0);
  ASSERT_EQ(policy->rules_size(), 2);
  EXPECT_EQ(std::vector<std::string>(policy->rules(0).principals().begin(),
                                     policy->rules(0).principals().end()),
            (std::vector<std::string>{"spiffe://cluster.local/ns/shop/sa/cart",
                                      "spiffe://other.example/ns/x/sa/y",
                                      "spiffe://old.example/ns/shop/sa/cart"}));
  EXPECT_EQ(policy->rules(1).principals_size(), 0) << "no federated domain: namespaces as ever";
  options.federated_bundles = {{"other.example", "roots"}};
  r = Translate(policy_, registry_, node_, options);
  policy = &Named(r.listeners, "inbound")->authorization().policies(0);
  EXPECT_EQ(std::vector<std::string>(policy->rules(1).principals().begin(),
                                     policy->rules(1).principals().end()),
            (std::vector<std::string>{"spiffe://cluster.local/ns/ops/*",
                                      "spiffe://old.example/ns/ops/*"}));
  EXPECT_EQ(policy->rules(1).namespaces(0), "ops");
}

// The step on its own.

TEST_F(TranslatorTest, RulesNameTheAppPortsAServicePortStandsFor) {
  policy_.authorization_policies.push_back(Parse<pb::AuthorizationPolicy>(R"(
kind: AuthorizationPolicy
metadata: {name: ports}
spec:
  rules:
  - to: [{ports: [8080, 7000]}]
  - {}
)"));
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  const std::vector<pb::ServicePort> ports = index.services.at({"default", "frontend"})->ports;
  xds::Listener listener;
  // frontend-0 registered another app port than the target port: 8080 stands for that one.
  BuildAuthorization(ctx, ports, {18081}, listener);
  ASSERT_EQ(listener.authorization().policies_size(), 1);
  const xds::AuthorizationPolicy& policy = listener.authorization().policies(0);
  EXPECT_EQ(policy.name(), "default/ports");
  EXPECT_EQ(policy.action(), xds::AuthorizationPolicy::ALLOW);
  ASSERT_EQ(policy.rules_size(), 2);
  EXPECT_EQ(std::vector<uint32_t>(policy.rules(0).ports().begin(), policy.rules(0).ports().end()),
            (std::vector<uint32_t>{7000, 8080, 18081}));
  // A rule without from or to: one rule that matches everything.
  EXPECT_EQ(policy.rules(1).ByteSizeLong(), 0u);
  // None selects the workload: no authorization at all.
  policy_.authorization_policies.clear();
  xds::Listener open;
  BuildAuthorization(ctx, ports, {}, open);
  EXPECT_FALSE(open.has_authorization());
}

TEST_F(TranslatorTest, ATargetSelectsTheMembersOfItsService) {
  // reviews selects by label too: frontend-0, labelled like reviews, is one of its members.
  (*policy_.services[0].mutable_spec()->mutable_selector())["app"] = "reviews";
  registry_.workloads[0].labels["app"] = "reviews";
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  const google::protobuf::RepeatedPtrField<pb::PolicyTargetReference> none;
  EXPECT_TRUE(SelectsNode(ctx, "", none));
  EXPECT_TRUE(SelectsNode(ctx, "frontend", none));  // its own service
  EXPECT_TRUE(SelectsNode(ctx, "reviews", none));
  EXPECT_FALSE(SelectsNode(ctx, "ratings", none));  // no such Service
  // targetRefs: a Service of it selects it, a Gateway never selects a sidecar.
  auto refs = [](std::vector<std::pair<std::string, std::string>> kinds_and_names) {
    google::protobuf::RepeatedPtrField<pb::PolicyTargetReference> out;
    for (const auto& [kind, name] : kinds_and_names) {
      pb::PolicyTargetReference* ref = out.Add();
      ref->set_kind(kind);
      ref->set_name(name);
    }
    return out;
  };
  EXPECT_TRUE(SelectsNode(ctx, "", refs({{"Service", "ratings"}, {"Service", "reviews"}})));
  EXPECT_FALSE(SelectsNode(ctx, "", refs({{"Service", "ratings"}})));
  EXPECT_FALSE(SelectsNode(ctx, "", refs({{"Gateway", "frontend"}})));
  registry_.workloads[0].labels.erase("app");
  const MeshIndex without = BuildIndex(policy_, registry_);
  const TranslationContext other(policy_, registry_, without, node_, kDefaultOptions);
  EXPECT_FALSE(SelectsNode(other, "reviews", none));
}

}  // namespace
}  // namespace meshlet::controlplane::translate
