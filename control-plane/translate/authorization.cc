// Authorization: the AuthorizationPolicies of the workload's namespace that select it become the
// inbound listener's authorization (ADR 0022), with ports as the app ports the listener's
// destination_port and its virtual hosts carry.

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "control-plane/policy/validate.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

// `id` (a principal pattern) in each of the local domain and its aliases other than its own, when
// its domain is one of them; nothing otherwise.
std::vector<std::string> AliasedIds(const TranslationContext& ctx, absl::string_view id) {
  if (ctx.options.trust_domain_aliases.empty() || !absl::ConsumePrefix(&id, "spiffe://")) return {};
  const size_t slash = id.find('/');
  if (slash == absl::string_view::npos) return {};
  const absl::string_view domain = id.substr(0, slash);
  std::vector<std::string> domains = ctx.options.trust_domain_aliases;
  domains.push_back(ctx.TrustDomain());
  if (std::find(domains.begin(), domains.end(), domain) == domains.end()) return {};
  std::vector<std::string> out;
  for (const std::string& d : domains) {
    if (d != domain) out.push_back(absl::StrCat("spiffe://", d, id.substr(slash)));
  }
  return out;
}

// The principals both `a` and `b` match (patterns: exact, or a prefix ending in '*'; "*" is the
// empty prefix, any principal); nullopt when none.
std::optional<std::string> IntersectPrincipals(absl::string_view a, absl::string_view b) {
  const bool a_prefix = absl::ConsumeSuffix(&a, "*");
  const bool b_prefix = absl::ConsumeSuffix(&b, "*");
  if (!a_prefix && !b_prefix) {
    if (a == b) return std::string(a);
  } else if (!a_prefix) {
    if (absl::StartsWith(a, b)) return std::string(a);
  } else if (!b_prefix) {
    if (absl::StartsWith(b, a)) return std::string(b);
  } else if (absl::StartsWith(a, b) || absl::StartsWith(b, a)) {
    return absl::StrCat(a.size() >= b.size() ? a : b, "*");
  }
  return std::nullopt;
}

// A `when` condition on request.auth.principal: the rule's request principals become the
// principals both they (any, when none are set) and `values` match. When no principal matches
// both, the rule keeps its request principals and adds "*" to its not_request_principals, which
// no request can satisfy together (a valid token is both required and refused), so the rule
// never matches a request and is still a connection's DENY rule on its other fields.
void ConstrainRequestPrincipals(const google::protobuf::RepeatedPtrField<std::string>& values,
                                xds::AuthorizationRule& r) {
  if (r.request_principals().empty()) {
    *r.mutable_request_principals() = values;
    return;
  }
  std::vector<std::string> both;
  for (const std::string& have : r.request_principals()) {
    for (const std::string& v : values) {
      std::optional<std::string> p = IntersectPrincipals(have, v);
      if (p && std::find(both.begin(), both.end(), *p) == both.end()) both.push_back(*p);
    }
  }
  if (both.empty()) {
    r.add_not_request_principals("*");
    return;
  }
  r.clear_request_principals();
  for (std::string& p : both) r.add_request_principals(std::move(p));
}

}  // namespace

// The AuthorizationPolicies of this workload's namespace that select it (no target, or a
// target Service it belongs to), ordered by name, as the inbound listener's authorization.
// Each rule's from × to combinations become flat rules; ports name app ports (a Service port
// stands for the app port it forwards to), which is what the virtual hosts' and the
// listener's destination_port carry.
void BuildAuthorization(const TranslationContext& ctx, const std::vector<pb::ServicePort>& ports,
                        const std::vector<uint32_t>& registered, xds::Listener& listener) {
  std::vector<const pb::AuthorizationPolicy*> selected;
  for (const pb::AuthorizationPolicy& ap : ctx.policy.authorization_policies) {
    const std::string ns =
        ap.metadata().namespace_().empty() ? "default" : ap.metadata().namespace_();
    if (ns != ctx.self.namespace_ || !SelectsNode(ctx, ap.spec().target(), ap.spec().target_refs()))
      continue;
    selected.push_back(&ap);
  }
  if (selected.empty()) return;
  std::sort(selected.begin(), selected.end(), [](const auto* a, const auto* b) {
    return a->metadata().name() < b->metadata().name();
  });
  xds::Authorization* authorization = listener.mutable_authorization();
  for (const pb::AuthorizationPolicy* ap : selected) {
    xds::AuthorizationPolicy* out = authorization->add_policies();
    out->set_name(absl::StrCat(ctx.self.namespace_, "/", ap->metadata().name()));
    SetPolicySource("AuthorizationPolicy", ctx.self.namespace_, ap->metadata().name(), -1, -1,
                    *out->mutable_source());
    out->set_action(ap->spec().action() == "DENY" ? xds::AuthorizationPolicy::DENY
                                                  : xds::AuthorizationPolicy::ALLOW);
    for (const pb::AuthorizationRule& rule : ap->spec().rules()) {
      const pb::AuthorizationRule::From no_from;
      const pb::AuthorizationRule::To no_to;
      const int froms = std::max(1, rule.from_size());
      const int tos = std::max(1, rule.to_size());
      for (int f = 0; f < froms; ++f) {
        const pb::AuthorizationRule::From& from = rule.from_size() > 0 ? rule.from(f) : no_from;
        for (int t = 0; t < tos; ++t) {
          const pb::AuthorizationRule::To& to = rule.to_size() > 0 ? rule.to(t) : no_to;
          xds::AuthorizationRule* r = out->add_rules();
          // A principal of the local domain or an alias stands for the same id in each of them.
          std::set<std::string> principals;
          for (const std::string& p : from.principals()) {
            principals.insert(p);
            for (const std::string& same : AliasedIds(ctx, p)) principals.insert(same);
          }
          for (const std::string& p : from.principals()) {
            if (principals.erase(p) > 0) r->add_principals(p);  // as written, first
          }
          for (const std::string& p : principals) r->add_principals(p);
          *r->mutable_namespaces() = from.namespaces();
          // With federated trust domains, a namespace names this mesh's workloads only: a
          // foreign domain's namespace of the same name is another organisation's. A rule that
          // names principals itself means exactly those.
          if (!ctx.options.federated_bundles.empty() && from.principals_size() == 0) {
            for (const std::string& ns : from.namespaces()) {
              r->add_principals(absl::StrCat("spiffe://", ctx.TrustDomain(), "/ns/", ns, "/*"));
              for (const std::string& alias : ctx.options.trust_domain_aliases) {
                r->add_principals(absl::StrCat("spiffe://", alias, "/ns/", ns, "/*"));
              }
            }
          }
          std::set<uint32_t> app_ports;
          for (uint32_t port : to.ports()) {
            app_ports.insert(port);
            for (const pb::ServicePort& sp : ports) {
              if (sp.port() == port) app_ports.insert(AppPort(ports, sp, registered));
            }
          }
          for (uint32_t port : app_ports) r->add_ports(port);
          *r->mutable_methods() = to.methods();
          *r->mutable_paths() = to.paths();
          *r->mutable_hosts() = to.hosts();
          *r->mutable_request_principals() = from.request_principals();
          *r->mutable_not_request_principals() = from.not_request_principals();
          for (const pb::AuthorizationRule::Condition& c : rule.when()) {
            if (c.key() == policy::kRequestPrincipalKey) {
              ConstrainRequestPrincipals(c.values(), *r);
              continue;
            }
            xds::ClaimMatch* claim = r->add_claims();
            std::vector<std::string> path = policy::ClaimPathOfKey(c.key());
            if (path.empty()) path.push_back(c.key());  // never: validated to be a claim key
            claim->set_name(path.front());
            for (size_t i = 1; i < path.size(); ++i) claim->add_nested(std::move(path[i]));
            *claim->mutable_values() = c.values();
          }
        }
      }
    }
  }
}

// The RequestAuthentications of this workload's namespace that select it, ordered by name, as
// the inbound listener's `jwt`. An issuer named twice keeps the first policy's rule; one whose
// jwksUri has not been fetched yet is left out, so its tokens are refused ("Jwt issuer is not
// configured") until its keys arrive. A selecting policy always sets `jwt`, even with no issuer
// left: every token is then refused rather than passed unauthenticated.
void BuildJwt(const TranslationContext& ctx, xds::Listener& listener, TranslationOutput& out) {
  std::vector<const pb::RequestAuthentication*> selected;
  for (const pb::RequestAuthentication& ra : ctx.policy.request_authentications) {
    const std::string ns =
        ra.metadata().namespace_().empty() ? "default" : ra.metadata().namespace_();
    if (ns != ctx.self.namespace_ || !SelectsNode(ctx, ra.spec().target(), ra.spec().target_refs()))
      continue;
    selected.push_back(&ra);
  }
  if (selected.empty()) return;
  std::sort(selected.begin(), selected.end(), [](const auto* a, const auto* b) {
    return a->metadata().name() < b->metadata().name();
  });
  xds::JwtAuthentication* jwt = listener.mutable_jwt();
  std::map<std::string, const pb::RequestAuthentication*> issuers;
  for (const pb::RequestAuthentication* ra : selected) {
    for (int i = 0; i < ra->spec().jwt_rules_size(); ++i) {
      const pb::JwtRule& rule = ra->spec().jwt_rules(i);
      if (auto [it, inserted] = issuers.emplace(rule.issuer(), ra); !inserted) {
        out.Warn(absl::StrCat("RequestAuthentication ", ctx.self.namespace_, "/",
                              ra->metadata().name(), " spec.jwtRules[", i, "]: issuer \"",
                              rule.issuer(), "\" is also named by RequestAuthentication ",
                              ctx.self.namespace_, "/", it->second->metadata().name(),
                              ", whose rule applies"));
        continue;
      }
      xds::JwtIssuer* out = jwt->add_issuers();
      out->set_issuer(rule.issuer());
      *out->mutable_audiences() = rule.audiences();
      if (!rule.jwks().empty()) {
        out->set_jwks(rule.jwks());
      } else if (auto it = ctx.options.jwks.find(policy::JwksSourceOf(rule));
                 it != ctx.options.jwks.end()) {
        out->set_jwks(it->second);
      } else {
        // Never fetched: the issuer stays, so its tokens are refused and its output headers are
        // still removed from what clients send.
        out->set_keys_unavailable(true);
      }
      for (const pb::JwtRule::FromHeader& h : rule.from_headers()) {
        xds::JwtHeader* header = out->add_from_headers();
        header->set_name(h.name());
        header->set_prefix(h.prefix());
      }
      *out->mutable_from_params() = rule.from_params();
      out->set_forward_original_token(rule.forward_original_token());
      for (const pb::JwtRule::ClaimToHeader& c : rule.output_claim_to_headers()) {
        xds::JwtClaimToHeader* claim = out->add_output_claim_to_headers();
        claim->set_claim(c.claim());
        claim->set_header(c.header());
      }
      out->set_output_payload_to_header(rule.output_payload_to_header());
      SetPolicySource("RequestAuthentication", ctx.self.namespace_, ra->metadata().name(), i, -1,
                      *out->mutable_source());
    }
  }
}

namespace {

// Whether the Service `name` of this namespace is the node's or has its workload as a member.
bool ServiceHasSelf(const TranslationContext& ctx, const std::string& name) {
  if (name == ctx.self.service) return true;
  auto it = ctx.index.services.find({ctx.self.namespace_, name});
  if (it == ctx.index.services.end()) return false;
  const auto& members = it->second->members;
  return std::any_of(members.begin(), members.end(),
                     [&ctx](const Workload* w) { return w->id == ctx.self.id; });
}

}  // namespace

bool SelectsNode(const TranslationContext& ctx, const std::string& target,
                 const google::protobuf::RepeatedPtrField<pb::PolicyTargetReference>& target_refs) {
  if (ctx.gateway_proxy) {
    // Only by name: a namespace's policies for its workloads say nothing about its edge.
    return ctx.gateway != nullptr &&
           std::any_of(target_refs.begin(), target_refs.end(), [&ctx](const auto& ref) {
             return ref.kind() == "Gateway" && ref.name() == ctx.gateway->metadata().name();
           });
  }
  if (!target_refs.empty()) {
    return std::any_of(target_refs.begin(), target_refs.end(), [&ctx](const auto& ref) {
      return ref.kind() == "Service" && ServiceHasSelf(ctx, ref.name());
    });
  }
  return target.empty() || ServiceHasSelf(ctx, target);
}

}  // namespace meshlet::controlplane::translate
