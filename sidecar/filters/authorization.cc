#include "sidecar/filters/authorization.h"

#include <algorithm>

#include "absl/strings/match.h"

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

template <typename Patterns>
bool AnyMatches(const Patterns& patterns, absl::string_view candidate) {
  if (patterns.empty()) return true;  // the rule does not constrain this field
  return std::any_of(patterns.begin(), patterns.end(),
                     [candidate](const auto& p) { return p.Matches(candidate); });
}

}  // namespace

bool Authorizer::Rule::Matches(const AuthorizationRequest& request,
                               absl::string_view peer_namespace, absl::string_view path,
                               bool deny) const {
  if (!ports.empty() && std::find(ports.begin(), ports.end(), request.port) == ports.end()) {
    return false;
  }
  if (request.connection) {
    // Methods and paths are unknown on a connection: towards denial either way (header comment).
    if (!deny && (!methods.empty() || !paths.empty())) return false;
    return AnyMatches(principals, request.peer_identity) && AnyMatches(namespaces, peer_namespace);
  }
  if (!methods.empty() &&
      std::find(methods.begin(), methods.end(), request.method) == methods.end()) {
    return false;
  }
  return AnyMatches(principals, request.peer_identity) && AnyMatches(namespaces, peer_namespace) &&
         AnyMatches(paths, path);
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
      rule.methods = rule_in.methods;
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
