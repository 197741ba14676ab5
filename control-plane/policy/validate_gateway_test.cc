// The Gateway API kinds' rules (validate_gateway.h), each shown holding and broken: upstream's
// schema constraints, its CEL rules and the former webhook's, and RE2 for regular expressions.

#include "control-plane/policy/validate_gateway.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/validate.h"

namespace meshlet::controlplane::policy {
namespace {

ValidationResult ValidateYaml(const std::string& yaml) {
  absl::StatusOr<ParsedResource> parsed = ParseResource(yaml);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << yaml;
  if (!parsed.ok()) return {};
  return Validate(*parsed->message, nullptr);
}

std::string HttpRoute(const std::string& spec) {
  return absl::StrCat(
      "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: "
      "shop}\nspec:\n",
      spec);
}
// One rule of an HTTPRoute whose parent is the Service reviews.
std::string HttpRule(const std::string& rule) {
  return HttpRoute(absl::StrCat(
      "  parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n  rules:\n  - ",
      rule, "\n"));
}
std::string GrpcRoute(const std::string& spec) {
  return absl::StrCat(
      "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec:\n",
      spec);
}
std::string GrpcRule(const std::string& rule) {
  return GrpcRoute(
      absl::StrCat("  parentRefs: [{group: \"\", kind: Service, name: echo}]\n"
                   "  rules:\n  - ",
                   rule, "\n"));
}
std::string Grant(const std::string& spec) {
  return absl::StrCat(
      "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: "
      "g}\nspec:\n",
      spec);
}

// A document and the error it must get (field path, part of the message); no field: valid.
struct Case {
  std::string yaml;
  std::string field;
  std::string message = "";
};

void Check(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    ValidationResult r = ValidateYaml(c.yaml);
    if (c.field.empty()) {
      EXPECT_TRUE(r.ok()) << c.yaml << "\n" << r.ErrorText();
      continue;
    }
    bool found = false;
    for (const FieldError& e : r.errors) {
      found |= e.field == c.field && e.message.find(c.message) != std::string::npos;
    }
    EXPECT_TRUE(found) << c.yaml << "\nwanted " << c.field << ": ..." << c.message << "...\ngot:\n"
                       << r.ErrorText();
  }
}

const char kBackend[] = "backendRefs: [{name: reviews-v1, port: 9080}]";

TEST(GatewayValidationTest, PathMatches) {
  Check({
      {HttpRule(absl::StrCat("matches: [{path: {type: PathPrefix, value: /v2}}]\n    ", kBackend)),
       ""},
      {HttpRule("matches: [{path: {type: Exact, value: \"/a/b%20c;d=e@f\"}}]"), ""},
      {HttpRule("matches: [{path: {type: PathPrefix, value: v2}}]"),
       "spec.rules[0].matches[0].path.value", "must be an absolute path and start with '/'"},
      {HttpRule("matches: [{path: {type: Exact, value: /a//b}}]"),
       "spec.rules[0].matches[0].path.value", "must not contain '//'"},
      {HttpRule("matches: [{path: {value: /a/../b}}]"), "spec.rules[0].matches[0].path.value",
       "must not contain '/../'"},
      {HttpRule("matches: [{path: {value: /a/./b}}]"), "spec.rules[0].matches[0].path.value",
       "must not contain '/./'"},
      {HttpRule("matches: [{path: {value: /a%2fb}}]"), "spec.rules[0].matches[0].path.value",
       "must not contain '%2f'"},
      {HttpRule("matches: [{path: {value: \"/a#b\"}}]"), "spec.rules[0].matches[0].path.value",
       "must not contain '#'"},
      {HttpRule("matches: [{path: {value: /a/..}}]"), "spec.rules[0].matches[0].path.value",
       "must not end with '/..'"},
      {HttpRule("matches: [{path: {value: /a/.}}]"), "spec.rules[0].matches[0].path.value",
       "must not end with '/.'"},
      {HttpRule("matches: [{path: {value: \"/a b\"}}]"), "spec.rules[0].matches[0].path.value",
       "has a character a path cannot have"},
      {HttpRule("matches: [{path: {value: \"/a%zz\"}}]"), "spec.rules[0].matches[0].path.value",
       "has a character a path cannot have"},
      {HttpRule("matches: [{path: {type: Prefix, value: /}}]"),
       "spec.rules[0].matches[0].path.type", "is not one of Exact, PathPrefix, RegularExpression"},
      {HttpRule(absl::StrCat("matches: [{path: {type: PathPrefix, value: /", std::string(1024, 'a'),
                             "}}]")),
       "spec.rules[0].matches[0].path.value", "at most 1024 characters"},
      // Regular expressions: any characters, but RE2 must take them.
      {HttpRule("matches: [{path: {type: RegularExpression, value: \"/v[0-9]+/.* x\"}}]"), ""},
      {HttpRule("matches: [{path: {type: RegularExpression, value: \"/(a\"}}]"),
       "spec.rules[0].matches[0].path.value", "is not a regular expression RE2 accepts"},
      // Lookahead is not RE2's.
      {HttpRule("matches: [{path: {type: RegularExpression, value: \"/(?=a)\"}}]"),
       "spec.rules[0].matches[0].path.value", "is not a regular expression RE2 accepts"},
  });
}

TEST(GatewayValidationTest, HeaderQueryAndMethodMatches) {
  Check({
      {HttpRule("matches: [{headers: [{name: x-user, value: a}, {type: RegularExpression, name: "
                "X-Id, value: \"[0-9]+\"}], queryParams: [{name: q, value: b}], method: GET}]"),
       ""},
      {HttpRule("matches: [{headers: [{name: \"x user\", value: a}]}]"),
       "spec.rules[0].matches[0].headers[0].name", "is not a header name"},
      {HttpRule("matches: [{headers: [{name: x-a, value: \"\"}]}]"),
       "spec.rules[0].matches[0].headers[0].value", "required"},
      {HttpRule("matches: [{headers: [{name: x-a, value: a}, {name: X-A, value: b}]}]"),
       "spec.rules[0].matches[0].headers[1].name", "is matched already by"},
      {HttpRule("matches: [{headers: [{type: Prefix, name: x-a, value: a}]}]"),
       "spec.rules[0].matches[0].headers[0].type", "is not one of Exact, RegularExpression"},
      {HttpRule("matches: [{headers: [{type: RegularExpression, name: x-a, value: \"a(\"}]}]"),
       "spec.rules[0].matches[0].headers[0].value", "RE2"},
      {HttpRule("matches: [{queryParams: [{name: \"a=b\", value: x}]}]"),
       "spec.rules[0].matches[0].queryParams[0].name", "is not a query parameter name"},
      {HttpRule("matches: [{queryParams: [{name: q, value: x}, {name: q, value: y}]}]"),
       "spec.rules[0].matches[0].queryParams[1].name", "is matched already by"},
      {HttpRule("matches: [{queryParams: [{type: RegularExpression, name: q, value: \"[\"}]}]"),
       "spec.rules[0].matches[0].queryParams[0].value", "RE2"},
      {HttpRule("matches: [{method: get}]"), "spec.rules[0].matches[0].method",
       "is not one of GET, HEAD"},
      {HttpRule(absl::StrCat(
           "matches: [",
           [] {
             std::vector<std::string> headers;
             for (int i = 0; i < 17; ++i)
               headers.push_back(absl::StrCat("{name: h", i, ", value: v}"));
             return absl::StrCat("{headers: [", absl::StrJoin(headers, ","), "]}");
           }(),
           "]")),
       "spec.rules[0].matches[0].headers", "at most 16 items"},
  });
}

std::string Repeated(const std::string& item, int n) {
  std::vector<std::string> items(n, item);
  return absl::StrJoin(items, ", ");
}

TEST(GatewayValidationTest, ListSizes) {
  const std::string match = "{path: {value: /a}}";
  Check({
      {HttpRule(absl::StrCat("matches: [", Repeated(match, 64), "]")), ""},
      {HttpRule(absl::StrCat("matches: [", Repeated(match, 65), "]")), "spec.rules[0].matches",
       "at most 64 items"},
      {HttpRoute(absl::StrCat("  rules: [",
                              Repeated(absl::StrCat("{matches: [", Repeated(match, 8), "]}"), 16),
                              "]\n")),
       ""},
      {HttpRoute(absl::StrCat("  rules: [", Repeated("{}", 17), "]\n")), "spec.rules",
       "at most 16 items"},
      // 16 rules of 64 matches each fit the list sizes but not the 128 matches of a route.
      {HttpRoute(absl::StrCat("  rules: [",
                              Repeated(absl::StrCat("{matches: [", Repeated(match, 9), "]}"), 15),
                              "]\n")),
       "spec.rules", "135 matches in all; at most 128"},
      {HttpRoute(absl::StrCat("  hostnames: [", Repeated("a.example", 17), "]\n")),
       "spec.hostnames", "at most 16 items"},
      {HttpRule(absl::StrCat("backendRefs: [", Repeated("{name: a, port: 80}", 17), "]")),
       "spec.rules[0].backendRefs", "at most 16 items"},
      {HttpRule(absl::StrCat("filters: [",
                             Repeated("{type: RequestMirror, requestMirror: {backendRef: {name: m, "
                                      "port: 80}}}",
                                      17),
                             "]")),
       "spec.rules[0].filters", "at most 16 items"},
  });
}

TEST(GatewayValidationTest, FilterTypeMatchesTheFieldSet) {
  Check({
      {HttpRule("filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, "
                "value: b}], add: [{name: c, value: d}], remove: [e]}}]"),
       ""},
      {HttpRule("filters: [{type: RequestHeaderModifier}]"),
       "spec.rules[0].filters[0].requestHeaderModifier",
       "must be specified when type is RequestHeaderModifier"},
      {HttpRule("filters: [{type: ResponseHeaderModifier, requestHeaderModifier: {remove: [a]}}]"),
       "spec.rules[0].filters[0].requestHeaderModifier",
       "must be unset when type is not RequestHeaderModifier"},
      {HttpRule("filters: [{requestHeaderModifier: {remove: [a]}}]"),
       "spec.rules[0].filters[0].type", "required"},
      {HttpRule("filters: [{type: Rewrite}]"), "spec.rules[0].filters[0].type",
       "is not one of RequestHeaderModifier"},
      {HttpRule("filters: [{type: URLRewrite, urlRewrite: {hostname: a.example}, requestRedirect: "
                "{scheme: https}}]"),
       "spec.rules[0].filters[0].requestRedirect",
       "must be unset when type is not RequestRedirect"},
      {GrpcRule("filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [a]}}]"),
       ""},
      {GrpcRule("filters: [{type: RequestMirror}]"), "spec.rules[0].filters[0].requestMirror",
       "must be specified when type is RequestMirror"},
  });
}

TEST(GatewayValidationTest, RepeatedAndIncompatibleFilters) {
  const std::string header = "{type: RequestHeaderModifier, requestHeaderModifier: {remove: [a]}}";
  const std::string response =
      "{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [a]}}";
  const std::string redirect = "{type: RequestRedirect, requestRedirect: {scheme: https}}";
  const std::string rewrite = "{type: URLRewrite, urlRewrite: {hostname: b.example}}";
  const std::string mirror =
      "{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}}}";
  Check({
      {HttpRule(
           absl::StrCat("filters: [", header, ", ", response, ", ", mirror, ", ", mirror, "]")),
       ""},
      {HttpRule(absl::StrCat("filters: [", header, ", ", header, "]")), "spec.rules[0].filters[1]",
       "RequestHeaderModifier filter cannot be repeated"},
      {HttpRule(absl::StrCat("filters: [", response, ", ", response, "]")),
       "spec.rules[0].filters[1]", "ResponseHeaderModifier filter cannot be repeated"},
      {HttpRule(absl::StrCat("filters: [", redirect, ", ", redirect, "]")),
       "spec.rules[0].filters[1]", "RequestRedirect filter cannot be repeated"},
      {HttpRule(absl::StrCat("filters: [", rewrite, ", ", rewrite, "]")),
       "spec.rules[0].filters[1]", "URLRewrite filter cannot be repeated"},
      {HttpRule(absl::StrCat("filters: [", redirect, ", ", rewrite, "]")),
       "spec.rules[0].filters[1]", "either RequestRedirect or URLRewrite, but not both"},
      {HttpRule(absl::StrCat("filters: [", redirect, "]\n    ", kBackend)),
       "spec.rules[0].backendRefs", "RequestRedirect filter must not be used together with"},
      {HttpRule(absl::StrCat("backendRefs: [{name: a, port: 80, filters: [", header, ", ", header,
                             "]}]")),
       "spec.rules[0].backendRefs[0].filters[1]", "cannot be repeated"},
      {GrpcRule(absl::StrCat("filters: [", header, ", ", header, "]")), "spec.rules[0].filters[1]",
       "RequestHeaderModifier filter cannot be repeated"},
      // One action per header in a modifier (names are case-insensitive).
      {HttpRule("filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, "
                "value: b}], remove: [A]}}]"),
       "spec.rules[0].filters[0].requestHeaderModifier.remove[0]", "already has an action"},
      {HttpRule("filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: "
                "\"a:b\", value: b}]}}]"),
       "spec.rules[0].filters[0].requestHeaderModifier.add[0].name", "is not a header name"},
  });
}

TEST(GatewayValidationTest, CorsFilters) {
  const auto cors = [](const std::string& spec) {
    return HttpRule(absl::StrCat("filters: [{type: CORS, cors: {", spec, "}}]"));
  };
  Check({
      {cors("allowOrigins: [\"https://www.foo.com\", \"https://*.bar.com:8443\"], "
            "allowMethods: [GET, OPTIONS], allowHeaders: [x-a], exposeHeaders: [\"*\", x-b], "
            "allowCredentials: true, maxAge: 3600"),
       ""},
      {cors("allowOrigins: [\"*\"], allowMethods: [\"*\"], allowHeaders: [\"*\"]"), ""},
      {HttpRule("filters: [{type: CORS}]"), "spec.rules[0].filters[0].cors",
       "must be specified when type is CORS"},
      {cors("allowOrigins: [\"https://www.*.com\"]"),
       "spec.rules[0].filters[0].cors.allowOrigins[0]",
       "a wildcard may only be the whole host or its first label"},
      {cors("allowOrigins: [\"ftp://a.example\"]"), "spec.rules[0].filters[0].cors.allowOrigins[0]",
       "the scheme must be http or https"},
      {cors("allowOrigins: [\"https://a.example:99999\"]"),
       "spec.rules[0].filters[0].cors.allowOrigins[0]", "port must be a number"},
      {cors("allowOrigins: [\"*\", \"https://a.example\"]"),
       "spec.rules[0].filters[0].cors.allowOrigins[0]", "cannot be listed alongside"},
      {cors("allowOrigins: [\"https://a.example\", \"https://A.example\"]"),
       "spec.rules[0].filters[0].cors.allowOrigins[1]", "is listed already"},
      {cors("allowMethods: [get]"), "spec.rules[0].filters[0].cors.allowMethods[0]",
       "is not one of GET, HEAD"},
      {cors("allowMethods: [GET, \"*\"]"), "spec.rules[0].filters[0].cors.allowMethods[1]",
       "cannot be listed alongside"},
      {cors("allowHeaders: [\"x a\"]"), "spec.rules[0].filters[0].cors.allowHeaders[0]",
       "is not a header name"},
      {cors("exposeHeaders: [x-a, X-A]"), "spec.rules[0].filters[0].cors.exposeHeaders[1]",
       "is listed already"},
      {cors("maxAge: 0"), "spec.rules[0].filters[0].cors.maxAge", "must be at least 1"},
      {HttpRule("filters: [{type: CORS, cors: {}}, {type: CORS, cors: {}}]"),
       "spec.rules[0].filters[1]", "CORS filter cannot be repeated"},
  });
}

TEST(GatewayValidationTest, RedirectsAndRewrites) {
  Check({
      {HttpRule("matches: [{path: {type: PathPrefix, value: /old}}]\n    filters: [{type: "
                "RequestRedirect, requestRedirect: {scheme: https, hostname: b.example, port: "
                "8443, statusCode: 308, path: {type: ReplacePrefixMatch, replacePrefixMatch: "
                "/new}}}]"),
       ""},
      {HttpRule("filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, "
                "replaceFullPath: /x}}}]\n    " +
                std::string(kBackend)),
       ""},
      {HttpRule("filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]"),
       "spec.rules[0].filters[0].requestRedirect.statusCode",
       "304 is not one of 301, 302, 303, 307, 308"},
      {HttpRule("filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]"),
       "spec.rules[0].filters[0].requestRedirect.scheme", "is not one of http, https"},
      {HttpRule("filters: [{type: RequestRedirect, requestRedirect: {port: 65536}}]"),
       "spec.rules[0].filters[0].requestRedirect.port", "between 1 and 65535"},
      {HttpRule("filters: [{type: RequestRedirect, requestRedirect: {hostname: \"*.example\"}}]"),
       "spec.rules[0].filters[0].requestRedirect.hostname", "is not a hostname"},
      // ReplacePrefixMatch needs exactly one PathPrefix match.
      {HttpRule("filters: [{type: RequestRedirect, requestRedirect: {path: {type: "
                "ReplacePrefixMatch, replacePrefixMatch: /new}}}]"),
       "spec.rules[0].filters[0]", "exactly one match, with a PathPrefix path"},
      {HttpRule("matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, "
                "urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]"),
       "spec.rules[0].filters[0]", "exactly one match, with a PathPrefix path"},
      {HttpRule("matches: [{path: {value: /a}}, {path: {value: /b}}]\n    filters: [{type: "
                "URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: "
                "/new}}}]"),
       "spec.rules[0].filters[0]", "exactly one match"},
      {HttpRule("matches: [{path: {value: /a}}]\n    backendRefs: [{name: a, port: 80, filters: "
                "[{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, "
                "replacePrefixMatch: /b}}}]}]"),
       ""},
      {HttpRule("backendRefs: [{name: a, port: 80, filters: [{type: URLRewrite, urlRewrite: "
                "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}]"),
       "spec.rules[0].backendRefs[0].filters[0]", "exactly one match"},
      {HttpRule("filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath}}}]"),
       "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath",
       "must be specified when type is ReplaceFullPath"},
      {HttpRule("filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, "
                "replacePrefixMatch: /a}}}]"),
       "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch",
       "type must be ReplacePrefixMatch"},
      {HttpRule("filters: [{type: URLRewrite, urlRewrite: {path: {replaceFullPath: /a}}}]"),
       "spec.rules[0].filters[0].urlRewrite.path.type", "required"},
  });
}

TEST(GatewayValidationTest, BackendsMirrorsAndWeights) {
  Check({
      {HttpRule("backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: "
                "1000000}]"),
       ""},
      {HttpRule("backendRefs: [{name: a, port: 80, weight: 1000001}]"),
       "spec.rules[0].backendRefs[0].weight", "between 0 and 1000000"},
      {HttpRule("backendRefs: [{name: a, port: 80, weight: -1}]"),
       "spec.rules[0].backendRefs[0].weight", "between 0 and 1000000"},
      {HttpRule("backendRefs: [{name: a}]"), "spec.rules[0].backendRefs[0].port",
       "required for a Service reference"},
      {HttpRule("backendRefs: [{name: a, port: 0}]"), "spec.rules[0].backendRefs[0].port",
       "between 1 and 65535"},
      {HttpRule("backendRefs: [{group: example.com, kind: Bucket, name: a}]"), ""},
      {HttpRule("backendRefs: [{port: 80}]"), "spec.rules[0].backendRefs[0].name", "required"},
      {HttpRule("backendRefs: [{name: a, port: 80, namespace: Other}]"),
       "spec.rules[0].backendRefs[0].namespace", "is not a namespace"},
      {HttpRule("filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "percent: 101}}]"),
       "spec.rules[0].filters[0].requestMirror.percent", "between 0 and 100"},
      {HttpRule("filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "fraction: {numerator: 3, denominator: 2}}}]"),
       "spec.rules[0].filters[0].requestMirror.fraction", "numerator must be less than or equal"},
      {HttpRule("filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
                "percent: 5, fraction: {numerator: 1}}}]"),
       "spec.rules[0].filters[0].requestMirror", "only one of percent or fraction"},
      {HttpRule("filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m}}}]"),
       "spec.rules[0].filters[0].requestMirror.backendRef.port", "required for a Service"},
  });
}

TEST(GatewayValidationTest, TimeoutsAndRetries) {
  EXPECT_EQ(gateway_validation::GatewayDurationMillis("1h30m"), 5400000);
  EXPECT_EQ(gateway_validation::GatewayDurationMillis("1s500ms"), 1500);
  EXPECT_EQ(gateway_validation::GatewayDurationMillis("0s"), 0);
  for (const char* bad : {"", "1", "1.5s", "-1s", "123456s", "1h1m1s1ms1s", "1d", "s"}) {
    EXPECT_EQ(gateway_validation::GatewayDurationMillis(bad), -1) << bad;
  }
  Check({
      {HttpRule("timeouts: {request: 10s, backendRequest: 2s}"), ""},
      {HttpRule("timeouts: {request: 0s, backendRequest: 1h}"), ""},  // 0s: no request timeout
      {HttpRule("timeouts: {request: 1s, backendRequest: 1s500ms}"),
       "spec.rules[0].timeouts.backendRequest",
       "backendRequest timeout cannot be longer than request timeout"},
      {HttpRule("timeouts: {request: 1.5s}"), "spec.rules[0].timeouts.request", "not a duration"},
      {HttpRule("retry: {codes: [500, 503], attempts: 2, backoff: 100ms}"), ""},
      {HttpRule("retry: {codes: [200]}"), "spec.rules[0].retry.codes[0]",
       "200 is not between 400 and 599"},
      {HttpRule("retry: {codes: [600]}"), "spec.rules[0].retry.codes[0]", "between 400 and 599"},
      {HttpRule("retry: {backoff: 1m30}"), "spec.rules[0].retry.backoff", "not a duration"},
      {HttpRule("sessionPersistence: {sessionName: s, type: Cookie, cookieConfig: "
                "{lifetimeType: Permanent}}"),
       "spec.rules[0].sessionPersistence.absoluteTimeout",
       "must be specified when cookieConfig.lifetimeType is Permanent"},
  });
}

TEST(GatewayValidationTest, ParentRefsHostnamesAndRuleNames) {
  const std::string parent = "{group: \"\", kind: Service, name: reviews";
  Check({
      {HttpRoute(absl::StrCat("  parentRefs: [", parent, ", port: 80}, ", parent,
                              ", port: 81}]\n  hostnames: [reviews.shop.svc.cluster.local, "
                              "\"*.example.com\"]\n")),
       ""},
      {HttpRoute(absl::StrCat("  parentRefs: [", parent, "}, ", parent, "}]\n")),
       "spec.parentRefs[1]", "must be unique"},
      {HttpRoute(
           absl::StrCat("  parentRefs: [", parent, ", port: 80}, ", parent, ", port: 80}]\n")),
       "spec.parentRefs[1]", "must be unique"},
      {HttpRoute(absl::StrCat("  parentRefs: [", parent, ", port: 80}, ", parent, "}]\n")),
       "spec.parentRefs[1]", "must be specified, the same way"},
      // Another namespace is another parent.
      {HttpRoute(absl::StrCat("  parentRefs: [", parent, "}, ", parent, ", namespace: other}]\n")),
       ""},
      {HttpRoute(absl::StrCat(
           "  parentRefs: [", Repeated("{name: a, sectionName: x}", 1), ", ",
           [] {
             std::vector<std::string> refs;
             for (int i = 0; i < 32; ++i) {
               refs.push_back(absl::StrCat("{name: a, port: ", i + 1, "}"));
             }
             return absl::StrJoin(refs, ", ");
           }(),
           "]\n")),
       "spec.parentRefs", "at most 32 items"},
      {HttpRoute("  parentRefs: [{kind: \"Ser vice\", name: a}]\n"), "spec.parentRefs[0].kind",
       "is not a kind"},
      {HttpRoute("  parentRefs: [{name: a, port: 70000}]\n"), "spec.parentRefs[0].port",
       "between 1 and 65535"},
      {HttpRoute("  parentRefs: [{kind: Service}]\n"), "spec.parentRefs[0].name", "required"},
      {HttpRoute("  parentRefs: [{group: Core, name: a}]\n"), "spec.parentRefs[0].group",
       "is not an API group"},
      {HttpRoute("  parentRefs: [{name: a, sectionName: Http}]\n"),
       "spec.parentRefs[0].sectionName", "must be lowercase"},
      {HttpRoute("  hostnames: [Reviews.example]\n"), "spec.hostnames[0]", "is not a hostname"},
      {HttpRoute("  hostnames: [\"10.0.0.1:80\"]\n"), "spec.hostnames[0]", "is not a hostname"},
      {HttpRoute("  hostnames: [\"a.*.example\"]\n"), "spec.hostnames[0]", "is not a hostname"},
      {HttpRoute("  rules: [{name: one}, {name: two}]\n"), ""},
      {HttpRoute("  rules: [{name: one}, {name: one}]\n"), "spec.rules[1].name",
       "rule name must be unique"},
      {HttpRoute("  rules: [{name: One}]\n"), "spec.rules[0].name", "must be lowercase"},
  });
}

TEST(GatewayValidationTest, GrpcMethodMatches) {
  Check({
      {GrpcRule("matches: [{method: {service: helloworld.Greeter, method: SayHello}}]"), ""},
      {GrpcRule("matches: [{method: {service: helloworld.Greeter}}]"), ""},
      {GrpcRule("matches: [{method: {type: RegularExpression, service: \"hello.*\", method: "
                "\"Say.+\"}}]"),
       ""},
      {GrpcRule("matches: [{method: {type: Exact}}]"), "spec.rules[0].matches[0].method",
       "one or both of service or method must be specified"},
      {GrpcRule("matches: [{method: {service: \"hello/world\"}}]"),
       "spec.rules[0].matches[0].method.service", "is not a service name"},
      {GrpcRule("matches: [{method: {method: \"Say.Hello\"}}]"),
       "spec.rules[0].matches[0].method.method", "is not a method name"},
      {GrpcRule("matches: [{method: {type: RegularExpression, method: \"Say(\"}}]"),
       "spec.rules[0].matches[0].method.method", "RE2"},
      {GrpcRule("matches: [{method: {type: Prefix, method: Say}}]"),
       "spec.rules[0].matches[0].method.type", "is not one of Exact, RegularExpression"},
      {GrpcRule("matches: [{headers: [{name: x, value: a}, {name: X, value: b}]}]"),
       "spec.rules[0].matches[0].headers[1].name", "is matched already"},
      {GrpcRule("backendRefs: [{name: echo, port: 9000, weight: 2000000}]"),
       "spec.rules[0].backendRefs[0].weight", "between 0 and 1000000"},
  });
}

TEST(GatewayValidationTest, ReferenceGrants) {
  Check({
      {Grant("  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n"
             "  to: [{group: \"\", kind: Service, name: reviews}]\n"),
       ""},
      {Grant("  to: [{group: \"\", kind: Service}]\n"), "spec.from", "at least one"},
      {Grant("  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n"),
       "spec.to", "at least one"},
      {Grant("  from: [{group: gateway.networking.k8s.io, namespace: shop}]\n  to: [{kind: "
             "Service}]\n"),
       "spec.from[0].kind", "required"},
      {Grant("  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute}]\n  to: [{kind: "
             "Service}]\n"),
       "spec.from[0].namespace", "required"},
      {Grant("  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n"
             "  to: [{group: \"\"}]\n"),
       "spec.to[0].kind", "required"},
      {Grant(absl::StrCat("  from: [",
                          Repeated("{group: gateway.networking.k8s.io, kind: HTTPRoute, "
                                   "namespace: shop}",
                                   17),
                          "]\n  to: [{kind: Service}]\n")),
       "spec.from", "at most 16 items"},
  });
  // Kinds meshlet does not use are valid, with a warning.
  ValidationResult r = ValidateYaml(
      Grant("  from: [{group: gateway.networking.k8s.io, kind: TLSRoute, namespace: shop}]\n"
            "  to: [{group: \"\", kind: ConfigMap}]\n"));
  EXPECT_TRUE(r.ok()) << r.ErrorText();
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_NE(r.warnings[0].find("meshlet grants nothing to gateway.networking.k8s.io TLSRoute"),
            std::string::npos)
      << r.warnings[0];
}

std::string BackendTls(const std::string& spec) {
  return absl::StrCat(
      "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p, "
      "namespace: shop}\nspec:\n",
      spec);
}

TEST(GatewayValidationTest, BackendTlsPolicies) {
  const std::string target = "  targetRefs: [{group: \"\", kind: Service, name: payments}]\n";
  const std::string ca = "    caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]\n";
  Check({
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca), ""},
      // Any kind of CA reference is valid here (its status says InvalidKind).
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n"
                           "    caCertificateRefs: [{group: \"\", kind: Secret, name: ca}]\n"),
       ""},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n"
                           "    wellKnownCACertificates: System\n"),
       ""},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca +
                  "    subjectAltNames:\n    - {type: Hostname, hostname: \"*.example.com\"}\n"
                  "    - {type: URI, uri: \"spiffe://example.com/payments\"}\n"),
       ""},
      {BackendTls("  validation:\n    hostname: abc.example.com\n" + ca), "spec.targetRefs",
       "at least one"},
      {BackendTls(target + "  validation:\n" + ca), "spec.validation.hostname", "required"},
      {BackendTls(target + "  validation:\n    hostname: \"*.example.com\"\n" + ca),
       "spec.validation.hostname", "no wildcard"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n"), "spec.validation",
       "either caCertificateRefs or wellKnownCACertificates"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca +
                  "    wellKnownCACertificates: System\n"),
       "spec.validation", "not contain both"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n"
                           "    wellKnownCACertificates: Everything\n"),
       "spec.validation.wellKnownCACertificates", "is not System"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca +
                  "    subjectAltNames: [{type: Hostname}]\n"),
       "spec.validation.subjectAltNames[0].hostname", "required when type is Hostname"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca +
                  "    subjectAltNames: [{type: URI, uri: \"no scheme\"}]\n"),
       "spec.validation.subjectAltNames[0].uri", "is not an absolute URI"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca +
                  "    subjectAltNames: [{type: URI, uri: \"https://x\", hostname: x}]\n"),
       "spec.validation.subjectAltNames[0].hostname", "must not be set"},
      {BackendTls(target + "  validation:\n    hostname: abc.example.com\n" + ca +
                  "    subjectAltNames: [{type: IP}]\n"),
       "spec.validation.subjectAltNames[0].type", "not one of Hostname, URI"},
      {BackendTls("  targetRefs:\n  - {group: \"\", kind: Service, name: payments}\n"
                  "  - {group: \"\", kind: Service, name: payments, sectionName: https}\n"
                  "  validation:\n    hostname: abc.example.com\n" +
                  ca),
       "spec.targetRefs[1]", "sectionName must be specified"},
      {BackendTls(
           "  targetRefs:\n  - {group: \"\", kind: Service, name: payments, sectionName: a}\n"
           "  - {group: \"\", kind: Service, name: payments, sectionName: a}\n"
           "  validation:\n    hostname: abc.example.com\n" +
           ca),
       "spec.targetRefs[1]", "sectionName must be unique"},
  });
  // A target meshlet does not apply the policy to is valid, with a warning.
  ValidationResult r = ValidateYaml(
      BackendTls("  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]\n"
                 "  validation:\n    hostname: abc.example.com\n" +
                 ca));
  EXPECT_TRUE(r.ok()) << r.ErrorText();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("core Services only"), std::string::npos) << r.warnings[0];
}

TEST(GatewayValidationTest, GatewayAndGatewayClass) {
  auto gateway = [](const std::string& spec) {
    return ValidateYaml(absl::StrCat(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge}\n"
        "spec:\n",
        spec));
  };
  ValidationResult ok = gateway(
      "  gatewayClassName: meshlet\n"
      "  listeners:\n"
      "  - {name: http, port: 80, protocol: HTTP, hostname: \"*.example.com\"}\n"
      "  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: tls}]}}\n");
  EXPECT_TRUE(ok.ok()) << ok.ErrorText();
  EXPECT_NE(gateway("  listeners: [{name: a, port: 80, protocol: HTTP}]\n")
                .ErrorText()
                .find("spec.gatewayClassName"),
            std::string::npos);
  EXPECT_NE(gateway("  gatewayClassName: meshlet\n").ErrorText().find("spec.listeners"),
            std::string::npos);
  const std::string twice =
      gateway(
          "  gatewayClassName: meshlet\n  listeners:\n"
          "  - {name: a, port: 80, protocol: HTTP}\n  - {name: a, port: 81, protocol: HTTP}\n")
          .ErrorText();
  EXPECT_NE(twice.find("spec.listeners[1].name"), std::string::npos) << twice;
  const std::string bad =
      gateway(
          "  gatewayClassName: meshlet\n  listeners:\n"
          "  - {name: a, port: 70000, protocol: HTTP, hostname: \"10.0.0.1:80\","
          " allowedRoutes: {namespaces: {from: Some}}}\n")
          .ErrorText();
  EXPECT_NE(bad.find("spec.listeners[0].port"), std::string::npos) << bad;
  EXPECT_NE(bad.find("spec.listeners[0].hostname"), std::string::npos) << bad;
  EXPECT_NE(bad.find("spec.listeners[0].allowedRoutes.namespaces.from"), std::string::npos) << bad;

  auto gateway_class = [](const std::string& spec) {
    return ValidateYaml(absl::StrCat(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: c}\n"
        "spec:\n",
        spec));
  };
  ValidationResult ours = gateway_class("  controllerName: meshlet.io/gateway-controller\n");
  EXPECT_TRUE(ours.ok()) << ours.ErrorText();
  EXPECT_TRUE(ours.warnings.empty());
  ValidationResult theirs = gateway_class("  controllerName: example.com/gw\n");
  EXPECT_TRUE(theirs.ok()) << theirs.ErrorText();
  ASSERT_EQ(theirs.warnings.size(), 1u);
  EXPECT_FALSE(gateway_class("  description: x\n").ok());
}

}  // namespace
}  // namespace meshlet::controlplane::policy
