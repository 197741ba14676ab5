#pragma once

// Authorization: who may call this listener, decided per request before routing (design.md §4).
// A listener carries a list of policies, each ALLOW or DENY, each with rules; the decision is
// Istio's:
//   1. any DENY policy matches the request  -> denied;
//   2. else there are ALLOW policies and none matches -> denied;
//   3. else -> allowed.
// A policy matches when any of its rules matches (a policy without rules matches nothing). A rule
// matches when every field it sets matches; a field matches when any of its values does; a rule
// with no fields matches every request.
//
// Values (principals, namespaces, paths; methods are exact):
//   "*"          anything present: for principals, any authenticated (mTLS) peer; never a
//                plaintext request, which has no identity
//   "abc*"       prefix "abc" ("spiffe://cluster.local/ns/shop/sa/*", "/api/*")
//   "abc"        exactly "abc"
// The peer's namespace comes from its SPIFFE id (spiffe://<trust-domain>/ns/<namespace>/...);
// a peer without one matches no namespace. Paths are compared without their query string.
// Hosts are the request's Host (:authority) without its port, compared in any case, against
// "*" (any), "*.suffix" (one or more labels in front of the suffix) or an exact name.
//
// End users (RequestAuthentication, jwt_filter.h): a rule's request principals match
// "<iss>/<sub>" of the request's valid token and its claims the token's payload (a string claim,
// or any string of an array claim, against the values; numbers and booleans by their JSON text);
// a request without a valid token matches neither; not_request_principals matches a request whose
// token's principal matches none of them, and every request without a valid token (Istio's
// notRequestPrincipals). The JWT filter records the token only for
// listeners whose rules read it (Authorizer::reads_token).
//
// Connections (opaque TCP) are decided once, with only the peer identity, its namespace and the
// destination port known (DecideConnection). A rule that also names methods, paths, hosts,
// request principals or claims cannot be checked there; each action resolves that towards denial,
// as Istio does: in a DENY policy such a rule matches on its other fields alone (the HTTP fields
// are ignored), in an ALLOW policy it never matches. DENY is still evaluated first.
//
// The configuration is compiled once (Authorizer, shared read-only by every worker); Decide()
// allocates nothing and takes no lock.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::filters {

struct AuthorizationRuleConfig {
  std::vector<std::string> principals;          // SPIFFE ids of the peer
  std::vector<std::string> namespaces;          // the peer's namespace, from its SPIFFE id
  std::vector<uint32_t> ports;                  // destination port (AuthorizationRequest::port)
  std::vector<std::string> methods;             // :method, exact
  std::vector<std::string> paths;               // :path without the query
  std::vector<std::string> hosts;               // :authority without the port
  std::vector<std::string> request_principals;  // "<iss>/<sub>" of the valid JWT
  // Matches when the valid JWT's "<iss>/<sub>" matches none of these, or there is no valid JWT.
  std::vector<std::string> not_request_principals;
  struct Claim {
    std::string name;
    std::vector<std::string> values;
    std::vector<std::string> nested;  // member names below `name`, for a nested claim
  };
  std::vector<Claim> claims;  // every one must match
};

struct AuthorizationPolicyConfig {
  enum class Action { kAllow, kDeny };
  std::string name;  // for logs and errors
  Action action = Action::kAllow;
  std::vector<AuthorizationRuleConfig> rules;
  // "AuthorizationPolicy/ns/name" it was made from (decision records); empty: unknown.
  std::string source;
};

struct AuthorizationConfig {
  std::vector<AuthorizationPolicyConfig> policies;
};

// What one request looks like to the policies. Views must stay valid during Decide().
struct AuthorizationRequest {
  absl::string_view peer_identity;  // verified client certificate's SPIFFE id; empty: none
  uint32_t port = 0;                // the destination port (see xds Listener.destination_port)
  absl::string_view method;
  absl::string_view path;  // :path, query included (stripped here)
  absl::string_view host;  // :authority (Host), port included (stripped here)
  // The request's valid JWT (jwt_filter.h): its issuer and its payload (JSON); empty: none.
  absl::string_view jwt_issuer;
  absl::string_view jwt_payload;
  // A connection rather than a request: method and path are unknown (see above).
  bool connection = false;
};

struct AuthorizationDecision {
  bool allowed = true;
  // The DENY policy that matched, or nullptr (allowed, or no ALLOW policy matched).
  const std::string* policy = nullptr;
  // The policy that decided, for decision records: the DENY policy that matched or the ALLOW
  // policy that matched, named by its source ("AuthorizationPolicy/ns/name") or else its name;
  // nullptr when none did (allowed with no policy matching, or denied for want of an ALLOW).
  const std::string* decided_by = nullptr;
};

// "shop" from "spiffe://cluster.local/ns/shop/sa/web"; empty when the id has no ns segment.
absl::string_view SpiffeNamespace(absl::string_view spiffe_id);

// Whether `value` is a valid pattern: not empty, and any '*' is its last character.
bool ValidAuthorizationPattern(absl::string_view value);

class Authorizer {
 public:
  explicit Authorizer(const AuthorizationConfig& config);

  AuthorizationDecision Decide(const AuthorizationRequest& request) const;
  // A connection of opaque bytes (TCP): Decide with `connection` set.
  AuthorizationDecision DecideConnection(absl::string_view peer_identity, uint32_t port) const {
    return Decide({.peer_identity = peer_identity, .port = port, .connection = true});
  }
  bool empty() const { return deny_.empty() && allow_.empty(); }
  // Whether a rule names request principals or claims: only then does the JWT filter keep the
  // token's payload for Decide().
  bool reads_token() const { return reads_token_; }
  // Whether a rule names hosts: only then is the request's host looked up for Decide().
  bool reads_hosts() const { return reads_hosts_; }

 private:
  struct Pattern {
    enum class Kind { kExact, kPrefix, kAnyPresent };
    Kind kind;
    std::string value;  // exact value or prefix
    bool Matches(absl::string_view candidate) const;
  };
  struct Claim {
    std::string name;
    std::vector<Pattern> values;
    std::vector<std::string> nested;
  };
  struct Rule {
    std::vector<Pattern> principals, namespaces, paths, request_principals, not_request_principals;
    std::vector<Claim> claims;
    std::vector<std::string> methods;
    std::vector<std::string> hosts;  // lower case: "*", "*.suffix" or a name
    std::vector<uint32_t> ports;
    bool ReadsToken() const {
      return !request_principals.empty() || !not_request_principals.empty() || !claims.empty();
    }
    bool Matches(const AuthorizationRequest& request, absl::string_view peer_namespace,
                 absl::string_view path, bool deny) const;
  };
  struct Policy {
    std::string name;
    std::string label;  // AuthorizationDecision::decided_by
    std::vector<Rule> rules;
    bool Matches(const AuthorizationRequest& request, absl::string_view peer_namespace,
                 absl::string_view path, bool deny) const;
  };

  static Pattern Compile(const std::string& value);
  static bool PrincipalMatches(const Pattern& pattern, absl::string_view issuer,
                               absl::string_view subject);
  static bool TokenMatches(const Rule& rule, const AuthorizationRequest& request);

  std::vector<Policy> deny_;
  std::vector<Policy> allow_;
  bool reads_token_ = false;
  bool reads_hosts_ = false;
};

}  // namespace meshlet::sidecar::filters
