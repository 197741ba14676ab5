#include "sidecar/filters/authorization.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/jwt/jwt_json.h"

namespace meshlet::sidecar::filters {

absl::string_view SpiffeNamespace(absl::string_view spiffe_id) {
  constexpr absl::string_view kScheme = "spiffe://";
  if (!absl::StartsWith(spiffe_id, kScheme)) return {};
  absl::string_view rest = spiffe_id.substr(kScheme.size());
  const size_t slash = rest.find('/');  // end of the trust domain
  if (slash == absl::string_view::npos) return {};
  rest = rest.substr(slash);
  constexpr absl::string_view kNs = "/ns/";
  if (!absl::StartsWith(rest, kNs)) return {};
  rest = rest.substr(kNs.size());
  return rest.substr(0, rest.find('/'));
}

bool ValidAuthorizationPattern(absl::string_view value) {
  if (value.empty()) return false;
  const size_t star = value.find('*');
  return star == absl::string_view::npos || star == value.size() - 1;
}

Authorizer::Pattern Authorizer::Compile(const std::string& value) {
  if (value == "*") return {Pattern::Kind::kAnyPresent, ""};
  if (!value.empty() && value.back() == '*') {
    return {Pattern::Kind::kPrefix, value.substr(0, value.size() - 1)};
  }
  return {Pattern::Kind::kExact, value};
}

bool Authorizer::Pattern::Matches(absl::string_view candidate) const {
  switch (kind) {
    case Kind::kAnyPresent:
      return !candidate.empty();
    case Kind::kPrefix:
      return !candidate.empty() && absl::StartsWith(candidate, value);
    case Kind::kExact:
      return candidate == value;
  }
  return false;
}

namespace {

namespace json = ::meshlet::jwt::jwt_json;

template <typename Patterns>
bool AnyMatches(const Patterns& patterns, absl::string_view candidate) {
  if (patterns.empty()) return true;  // the rule does not constrain this field
  return std::any_of(patterns.begin(), patterns.end(),
                     [candidate](const auto& p) { return p.Matches(candidate); });
}

// A JSON string's text: a view into `raw` without its quotes, or decoded into `buffer` when it
// holds escapes (the thread's, reused: Decide allocates only for such a string longer than any
// before it on this thread).
absl::string_view Text(absl::string_view raw) {
  thread_local std::string buffer;
  return json::StringText(raw, &buffer);
}

// `authority` (Host, :authority) without its port: "host:80" and "[::1]:80" give "host" and
// "[::1]".
absl::string_view WithoutPort(absl::string_view authority) {
  const size_t colon = authority.rfind(':');
  if (colon == absl::string_view::npos) return authority;
  const size_t bracket = authority.rfind(']');
  if (bracket != absl::string_view::npos ? colon < bracket : authority.find(':') != colon) {
    return authority;  // an IPv6 literal's own colons, bare
  }
  return authority.substr(0, colon);
}

// Whether the request's `authority` matches one of `hosts` (lower case): "*" any, "*.suffix" a
// name with one or more labels before ".suffix", else equal; in any case. Empty `hosts`: yes.
bool HostMatches(const std::vector<std::string>& hosts, absl::string_view authority) {
  if (hosts.empty()) return true;
  const absl::string_view host = WithoutPort(authority);
  if (host.empty()) return false;
  for (const std::string& pattern : hosts) {
    if (pattern == "*") return true;
    if (absl::StartsWith(pattern, "*.")) {
      const absl::string_view suffix = absl::string_view(pattern).substr(1);  // ".example.com"
      if (host.size() > suffix.size() && absl::EndsWithIgnoreCase(host, suffix)) return true;
    } else if (absl::EqualsIgnoreCase(host, pattern)) {
      return true;
    }
  }
  return false;
}

}  // namespace

// "<iss>/<sub>" against the pattern, without building the string.
bool Authorizer::PrincipalMatches(const Pattern& pattern, absl::string_view issuer,
                                  absl::string_view subject) {
  switch (pattern.kind) {
    case Pattern::Kind::kAnyPresent:
      return true;  // a valid token is present
    case Pattern::Kind::kExact:
      return pattern.value.size() == issuer.size() + 1 + subject.size() &&
             absl::StartsWith(pattern.value, issuer) && pattern.value[issuer.size()] == '/' &&
             absl::EndsWith(pattern.value, subject);
    case Pattern::Kind::kPrefix: {
      const absl::string_view prefix = pattern.value;
      if (prefix.size() <= issuer.size()) return absl::StartsWith(issuer, prefix);
      return absl::StartsWith(prefix, issuer) && prefix[issuer.size()] == '/' &&
             absl::StartsWith(subject, prefix.substr(issuer.size() + 1));
    }
  }
  return false;
}

bool Authorizer::TokenMatches(const Rule& rule, const AuthorizationRequest& request) {
  if (request.jwt_payload.empty()) {
    // No valid token: only a rule that asks for the absence of a principal can match.
    return rule.request_principals.empty() && rule.claims.empty();
  }
  if (!rule.request_principals.empty() || !rule.not_request_principals.empty()) {
    const absl::string_view raw = json::Find(request.jwt_payload, "sub");
    const absl::string_view subject =
        json::TypeOf(raw) == json::Type::kString ? Text(raw) : absl::string_view();
    auto matches = [&](const Pattern& p) {
      return PrincipalMatches(p, request.jwt_issuer, subject);
    };
    if (!rule.request_principals.empty() &&
        std::none_of(rule.request_principals.begin(), rule.request_principals.end(), matches)) {
      return false;
    }
    if (std::any_of(rule.not_request_principals.begin(), rule.not_request_principals.end(),
                    matches)) {
      return false;
    }
  }
  for (const Claim& claim : rule.claims) {
    absl::string_view raw = json::Find(request.jwt_payload, claim.name);
    for (const std::string& member : claim.nested) {
      raw =
          json::TypeOf(raw) == json::Type::kObject ? json::Find(raw, member) : absl::string_view();
    }
    bool matched = false;
    switch (json::TypeOf(raw)) {
      case json::Type::kString:
        matched = AnyMatches(claim.values, Text(raw));
        break;
      case json::Type::kNumber:
      case json::Type::kBool:
        matched = AnyMatches(claim.values, raw);
        break;
      case json::Type::kArray:
        json::ForEachItem(raw, [&](absl::string_view item) {
          if (json::TypeOf(item) == json::Type::kString && AnyMatches(claim.values, Text(item))) {
            matched = true;
            return false;
          }
          return true;
        });
        break;
      default:  // absent, null, an object
        break;
    }
    if (!matched) return false;
  }
  return true;
}

bool Authorizer::Rule::Matches(const AuthorizationRequest& request,
                               absl::string_view peer_namespace, absl::string_view path,
                               bool deny) const {
  if (!ports.empty() && std::find(ports.begin(), ports.end(), request.port) == ports.end()) {
    return false;
  }
  if (request.connection) {
    // Methods, paths and tokens are unknown on a connection: towards denial either way (header
    // comment).
    if (!deny && (!methods.empty() || !paths.empty() || !hosts.empty() || ReadsToken())) {
      return false;
    }
    return AnyMatches(principals, request.peer_identity) && AnyMatches(namespaces, peer_namespace);
  }
  if (ReadsToken() && !TokenMatches(*this, request)) return false;
  if (!methods.empty() &&
      std::find(methods.begin(), methods.end(), request.method) == methods.end()) {
    return false;
  }
  return AnyMatches(principals, request.peer_identity) && AnyMatches(namespaces, peer_namespace) &&
         AnyMatches(paths, path) && HostMatches(hosts, request.host);
}

bool Authorizer::Policy::Matches(const AuthorizationRequest& request,
                                 absl::string_view peer_namespace, absl::string_view path,
                                 bool deny) const {
  return std::any_of(rules.begin(), rules.end(), [&](const Rule& rule) {
    return rule.Matches(request, peer_namespace, path, deny);
  });
}

Authorizer::Authorizer(const AuthorizationConfig& config) {
  for (const AuthorizationPolicyConfig& in : config.policies) {
    Policy policy;
    policy.name = in.name;
    policy.label = in.source.empty() ? in.name : in.source;
    for (const AuthorizationRuleConfig& rule_in : in.rules) {
      Rule rule;
      for (const std::string& v : rule_in.principals) rule.principals.push_back(Compile(v));
      for (const std::string& v : rule_in.namespaces) rule.namespaces.push_back(Compile(v));
      for (const std::string& v : rule_in.paths) rule.paths.push_back(Compile(v));
      for (const std::string& v : rule_in.request_principals) {
        rule.request_principals.push_back(Compile(v));
      }
      for (const std::string& v : rule_in.not_request_principals) {
        rule.not_request_principals.push_back(Compile(v));
      }
      for (const AuthorizationRuleConfig::Claim& c : rule_in.claims) {
        Claim claim{.name = c.name, .values = {}, .nested = c.nested};
        for (const std::string& v : c.values) claim.values.push_back(Compile(v));
        rule.claims.push_back(std::move(claim));
      }
      reads_token_ |= rule.ReadsToken();
      rule.methods = rule_in.methods;
      for (const std::string& h : rule_in.hosts) rule.hosts.push_back(absl::AsciiStrToLower(h));
      reads_hosts_ |= !rule.hosts.empty();
      rule.ports = rule_in.ports;
      policy.rules.push_back(std::move(rule));
    }
    (in.action == AuthorizationPolicyConfig::Action::kDeny ? deny_ : allow_)
        .push_back(std::move(policy));
  }
}

AuthorizationDecision Authorizer::Decide(const AuthorizationRequest& request) const {
  const absl::string_view peer_namespace = SpiffeNamespace(request.peer_identity);
  const absl::string_view path = request.path.substr(0, request.path.find('?'));
  for (const Policy& policy : deny_) {
    if (policy.Matches(request, peer_namespace, path, /*deny=*/true)) {
      return {false, &policy.name, &policy.label};
    }
  }
  if (allow_.empty()) return {true, nullptr, nullptr};
  for (const Policy& policy : allow_) {
    if (policy.Matches(request, peer_namespace, path, /*deny=*/false)) {
      return {true, nullptr, &policy.label};
    }
  }
  return {false, nullptr, nullptr};
}

}  // namespace meshlet::sidecar::filters
