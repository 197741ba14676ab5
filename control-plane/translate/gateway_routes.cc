// Gateway API routes for the mesh (GAMMA): HTTPRoutes and GRPCRoutes whose parentRefs name a
// Service become the routes of that Service's virtual hosts in the caller's route configuration
// "outbound". Producer routes (in the Service's namespace) apply to every caller; consumer routes
// (in another namespace) to callers of their namespace only, and for them replace the producer
// routes of the Service port. All the rules that apply to one Service port are ordered by the
// Gateway API's precedence (ADR 0060) and end with a 404 for requests none matches. Routes
// attached to a Gateway's listeners take the same rule translation, per hostname of a gateway
// proxy's port (GatewayPortRoutes, ADR 0099).
//
// One file: its parts (route selection and precedence, matches, filters, backends, session
// persistence) all turn one rule into one RouteConfiguration entry and share the rule's helpers;
// split apart, each would re-export most of them. The filters are the part to move out first.

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/http/cors_origin.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/translate/translation.h"
#include "google/protobuf/util/time_util.h"
#include "re2/re2.h"

namespace meshlet::controlplane::translate {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::string_view kCoreGroup = "core";

// What a route's rules are translated for: a Service port (GAMMA), or a Gateway listener's port
// (`service` null). A backendRef without a port means the parent Service's; a redirect without a
// port keeps `port`; timeouts and retries come from the parent Service's TrafficPolicy, and for a
// Gateway from the rule's first backend's.
struct RouteParent {
  const ServiceView* service = nullptr;
  uint32_t port = 0;
};

// ---------------------------------------------------------------------------------------------
// What the checks and the translation share

// A Gateway API duration ("10s", "500ms", "1h30m"); nullopt when empty or malformed.
std::optional<absl::Duration> ParseGatewayDuration(const std::string& text) {
  absl::Duration d;
  if (text.empty() || !absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return std::nullopt;
  }
  return d;
}

google::protobuf::Duration ToProto(absl::Duration d) {
  return TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

std::string CheckRegex(const std::string& pattern, const std::string& where) {
  RE2 re(pattern, RE2::Quiet);
  if (re.ok()) return "";
  return absl::StrCat(where, ": invalid regular expression \"", pattern, "\": ", re.error());
}

std::string CheckDuration(const std::string& text, const std::string& where) {
  if (text.empty() || ParseGatewayDuration(text).has_value()) return "";
  return absl::StrCat(where, ": \"", text, "\" is not a duration such as 10s, 500ms or 1h30m");
}

// Whether every character of `text` may be in an HTTP token (RFC 9110 5.6.2): a header or cookie
// name, a method.
bool TokenChars(absl::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
           absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
  });
}

// What the sidecar could not take (policy validation refuses most of it on apply already).
std::string CheckSession(const gw::SessionPersistence& sp, const std::string& where) {
  const std::string at = absl::StrCat(where, ".sessionPersistence");
  const std::string& name = sp.session_name();
  if (name.size() > 128 || !TokenChars(name)) {
    return absl::StrCat(at, ".sessionName: \"", name,
                        "\" is not supported (a cookie or header name: letters, digits and "
                        "!#$%&'*+-.^_`|~, at most 128)");
  }
  if (!sp.type().empty() && sp.type() != "Cookie" && sp.type() != "Header") {
    return absl::StrCat(at, ".type: \"", sp.type(), "\" is not supported (Cookie, Header)");
  }
  const std::string& lifetime = sp.cookie_config().lifetime_type();
  if (!lifetime.empty() && lifetime != "Session" && lifetime != "Permanent") {
    return absl::StrCat(at, ".cookieConfig.lifetimeType: \"", lifetime,
                        "\" is not supported (Session, Permanent)");
  }
  if (lifetime == "Permanent" && !ParseGatewayDuration(sp.absolute_timeout()).has_value()) {
    return absl::StrCat(at, ".absoluteTimeout: required with lifetimeType Permanent");
  }
  std::string why = CheckDuration(sp.absolute_timeout(), at + ".absoluteTimeout");
  if (why.empty()) why = CheckDuration(sp.idle_timeout(), at + ".idleTimeout");
  return why;
}

// A rule's sessionPersistence (CheckSession passed). The cookie's path is left to the sidecar:
// each route's own path match.
void ApplySession(const gw::SessionPersistence& sp, xds::RouteAction& action) {
  xds::SessionPersistence* out = action.mutable_session_persistence();
  out->set_type(sp.type() == "Header" ? xds::SessionPersistence::HEADER
                                      : xds::SessionPersistence::COOKIE);
  out->set_name(sp.session_name());
  if (std::optional<absl::Duration> d = ParseGatewayDuration(sp.absolute_timeout())) {
    *out->mutable_absolute_timeout() = ToProto(*d);
  }
  if (std::optional<absl::Duration> d = ParseGatewayDuration(sp.idle_timeout())) {
    *out->mutable_idle_timeout() = ToProto(*d);
  }
  if (sp.cookie_config().lifetime_type() == "Permanent") {
    out->set_cookie_lifetime(xds::SessionPersistence::PERMANENT);
  }
}

// Filters both kinds share; `grpc`: the GRPCRoute's subset.
template <typename Filter>
std::string CheckFilter(const Filter& f, const std::string& where, bool backend_level) {
  const std::string& type = f.type();
  if (type == "RequestHeaderModifier" || type == "ResponseHeaderModifier") return "";
  if (backend_level) {
    return absl::StrCat(where, ": filter type \"", type,
                        "\" is not supported on a backendRef (only header modifiers are)");
  }
  if (type == "RequestMirror") {
    const auto& m = f.request_mirror();
    if (m.has_percent() && (m.percent() < 0 || m.percent() > 100)) {
      return absl::StrCat(where, ".requestMirror.percent: must be 0..100");
    }
    if (m.has_fraction()) {
      const int32_t denominator = m.fraction().has_denominator() ? m.fraction().denominator() : 100;
      if (m.fraction().numerator() < 0 || denominator <= 0 ||
          m.fraction().numerator() > denominator) {
        return absl::StrCat(where,
                            ".requestMirror.fraction: must be 0 <= numerator <= denominator");
      }
    }
    return "";
  }
  return absl::StrCat(where, ": filter type \"", type, "\" is not supported");
}

// What the sidecar would refuse of a CORS filter (policy validation refuses it on apply already):
// origin patterns it cannot read, "*" beside other origins, methods and header names that are not
// tokens.
std::string CheckCors(const gw::HTTPCORSFilter& c, const std::string& where) {
  for (int i = 0; i < c.allow_origins_size(); ++i) {
    absl::StatusOr<http::OriginPattern> pattern = http::ParseOriginPattern(c.allow_origins(i));
    if (!pattern.ok()) {
      return absl::StrCat(where, ".cors.allowOrigins[", i, "]: ", pattern.status().message());
    }
    if (c.allow_origins(i) == "*" && c.allow_origins_size() > 1) {
      return absl::StrCat(where, ".cors.allowOrigins: \"*\" alongside other origins");
    }
  }
  for (const auto& [field, list] :
       {std::pair<const char*, const google::protobuf::RepeatedPtrField<std::string>*>{
            "allowMethods", &c.allow_methods()},
        {"allowHeaders", &c.allow_headers()},
        {"exposeHeaders", &c.expose_headers()}}) {
    for (int i = 0; i < list->size(); ++i) {
      const std::string& value = (*list)[i];
      if (value == "*" ? list->size() > 1 && field != absl::string_view("exposeHeaders")
                       : value.empty() || !TokenChars(value)) {
        return absl::StrCat(where, ".cors.", field, "[", i, "]: \"", value, "\" is not supported");
      }
    }
  }
  if (c.has_max_age() && c.max_age() < 1) {
    return absl::StrCat(where, ".cors.maxAge: ", c.max_age(), " is not supported (at least 1)");
  }
  return "";
}

std::string CheckHttpFilter(const gw::HTTPRouteFilter& f, const std::string& where,
                            bool backend_level) {
  if (!backend_level && f.type() == "CORS") return CheckCors(f.cors(), where);
  if (backend_level || (f.type() != "RequestRedirect" && f.type() != "URLRewrite")) {
    return CheckFilter(f, where, backend_level);
  }
  const gw::HTTPPathModifier* path = nullptr;
  if (f.type() == "RequestRedirect") {
    const gw::HTTPRequestRedirectFilter& r = f.request_redirect();
    if (!r.scheme().empty() && r.scheme() != "http" && r.scheme() != "https") {
      return absl::StrCat(where, ".requestRedirect.scheme: \"", r.scheme(),
                          "\" is not supported (http, https)");
    }
    if (r.has_status_code() && r.status_code() != 301 && r.status_code() != 302 &&
        r.status_code() != 303 && r.status_code() != 307 && r.status_code() != 308) {
      return absl::StrCat(where, ".requestRedirect.statusCode: ", r.status_code(),
                          " is not supported (301, 302, 303, 307, 308)");
    }
    if (r.has_port() && (r.port() < 1 || r.port() > 65535)) {
      return absl::StrCat(where, ".requestRedirect.port: ", r.port(), " is out of range");
    }
    if (r.has_path()) path = &r.path();
  } else if (f.url_rewrite().has_path()) {
    path = &f.url_rewrite().path();
  }
  if (path != nullptr && path->type() != "ReplaceFullPath" &&
      path->type() != "ReplacePrefixMatch") {
    return absl::StrCat(where, ".path.type: \"", path->type(),
                        "\" is not supported (ReplaceFullPath, ReplacePrefixMatch)");
  }
  return "";
}

// The rule- and backend-level filters of a rule, and its timeouts, retry and session persistence.
template <typename Filters>
bool SameFilters(const Filters& a, const Filters& b) {
  if (a.size() != b.size()) return false;
  for (int i = 0; i < a.size(); ++i) {
    if (a[i].SerializeAsString() != b[i].SerializeAsString()) return false;
  }
  return true;
}

// The same backend, as the rule spells it (defaults applied by the caller's comparison: an
// omitted group, kind or namespace equals only another omitted one).
inline bool SameBackend(const gw::BackendObjectReference& a, const gw::BackendObjectReference& b) {
  return a.group() == b.group() && a.kind() == b.kind() && a.name() == b.name() &&
         a.namespace_() == b.namespace_() && a.port() == b.port();
}

template <typename Rule, typename CheckFilterFn>
std::string CheckRuleCommon(const Rule& rule, const std::string& where, CheckFilterFn check) {
  for (int f = 0; f < rule.filters_size(); ++f) {
    std::string why = check(rule.filters(f), absl::StrCat(where, ".filters[", f, "]"), false);
    if (!why.empty()) return why;
  }
  for (int b = 0; b < rule.backend_refs_size(); ++b) {
    const auto& ref = rule.backend_refs(b);
    for (int f = 0; f < ref.filters_size(); ++f) {
      std::string why = check(ref.filters(f),
                              absl::StrCat(where, ".backendRefs[", b, "].filters[", f, "]"), true);
      if (!why.empty()) return why;
    }
    // One backend is one weighted cluster: its filters cannot differ from one share to another.
    for (int earlier = 0; earlier < b; ++earlier) {
      const auto& other = rule.backend_refs(earlier);
      if (SameBackend(ToObjectRef(ref), ToObjectRef(other)) &&
          !SameFilters(ref.filters(), other.filters())) {
        return absl::StrCat(where, ".backendRefs[", b, "]: names the same backend as backendRefs[",
                            earlier, "] with other filters; not supported");
      }
    }
  }
  return CheckSession(rule.session_persistence(), where);
}

template <typename Route>
std::string RouteNamespace(const Route& r) {
  return NamespaceOr(r.metadata().namespace_());
}

// ---------------------------------------------------------------------------------------------
// Translation of one rule

void AddHeaderFilter(const gw::HTTPHeaderFilter& f,
                     google::protobuf::RepeatedPtrField<xds::HeaderValueOption>* add,
                     google::protobuf::RepeatedPtrField<std::string>* remove) {
  for (const gw::HTTPHeader& h : f.set()) {
    xds::HeaderValueOption* o = add->Add();
    o->set_name(absl::AsciiStrToLower(h.name()));
    o->set_value(h.value());
    o->set_append(false);
  }
  for (const gw::HTTPHeader& h : f.add()) {
    xds::HeaderValueOption* o = add->Add();
    o->set_name(absl::AsciiStrToLower(h.name()));
    o->set_value(h.value());
    o->set_append(true);
  }
  for (const std::string& name : f.remove()) *remove->Add() = absl::AsciiStrToLower(name);
}

// A header modifier filter as `target`'s (a Route's or a ClusterWeight's) header changes; false
// when `f` is another kind of filter.
template <typename Filter, typename Target>
bool ApplyHeaderModifier(const Filter& f, Target& target) {
  if (f.type() == "RequestHeaderModifier") {
    AddHeaderFilter(f.request_header_modifier(), target.mutable_request_headers_to_add(),
                    target.mutable_request_headers_to_remove());
    return true;
  }
  if (f.type() == "ResponseHeaderModifier") {
    AddHeaderFilter(f.response_header_modifier(), target.mutable_response_headers_to_add(),
                    target.mutable_response_headers_to_remove());
    return true;
  }
  return false;
}

// Header modifiers and mirrors, which both kinds' filters have.
template <typename Filter>
void ApplyCommonFilter(const TranslationContext& ctx, TranslationOutput& out,
                       absl::string_view kind, const std::string& route_ns,
                       const ParentRefs& parent_refs, const Filter& f, const std::string& where,
                       xds::Route& route, std::vector<xds::RequestMirrorPolicy>& mirrors) {
  if (ApplyHeaderModifier(f, route)) return;
  if (f.type() == "RequestMirror") {
    const gw::HTTPRequestMirrorFilter& m = f.request_mirror();
    ResolvedBackend b =
        ResolveBackend(ctx.policy, ctx.index, kind, route_ns, parent_refs, m.backend_ref());
    if (b.service == nullptr) {
      out.Warn(absl::StrCat(where, ".requestMirror: ", b.message, "; not mirrored"));
      return;
    }
    xds::RequestMirrorPolicy mirror;
    mirror.set_cluster(UseCluster(ctx, out, *b.service, *b.port, {}));
    if (m.has_percent()) {
      mirror.mutable_percent()->set_value(m.percent());
    } else if (m.has_fraction()) {
      const int32_t denominator = m.fraction().has_denominator() ? m.fraction().denominator() : 100;
      mirror.mutable_percent()->set_value(100.0 * m.fraction().numerator() / denominator);
    }
    mirrors.push_back(std::move(mirror));
  }
}

// Timeouts and retries of a rule over the TrafficPolicy's and MeshConfig's: `request` the whole
// request, retries included ("0s": none), `backend_request` one attempt ("0s": none). An attempt
// never outlasts the request, nor does a backoff.
void ApplyTimeoutsAndRetry(const TranslationContext& ctx, TranslationOutput& out,
                           const ServiceView& service, const std::string& request,
                           const std::string& backend_request, const gw::HTTPRouteRetry* retry,
                           const std::string& where, xds::RouteAction& action) {
  const pb::TrafficPolicySpec* tp = ctx.PolicyFor(service);
  pb::Timeouts timeouts = ctx.EffectiveTimeouts(tp);
  if (std::optional<absl::Duration> d = ParseGatewayDuration(request)) {
    *timeouts.mutable_request() = ToProto(*d);
  }
  if (std::optional<absl::Duration> d = ParseGatewayDuration(backend_request)) {
    if (*d == absl::ZeroDuration()) {
      timeouts.clear_per_try();
    } else {
      *timeouts.mutable_per_try() = ToProto(*d);
    }
  }
  pb::Retries rule_retries;
  if (retry != nullptr) {
    if (retry->has_attempts()) rule_retries.mutable_attempts()->set_value(retry->attempts());
    for (int32_t code : retry->codes()) rule_retries.add_retriable_status_codes(code);
    if (std::optional<absl::Duration> d = ParseGatewayDuration(retry->backoff())) {
      *rule_retries.mutable_backoff_base() = ToProto(*d);
    }
  }
  if (timeouts.has_request()) *action.mutable_timeout() = timeouts.request();
  pb::Retries retries =
      ctx.EffectiveRetries(tp, rule_retries.ByteSizeLong() > 0 ? &rule_retries : nullptr);
  // The Gateway API retries attempts that hit backendRequest. Such an attempt ends at this
  // sidecar's per-try timer (retried as a reset) or, a margin earlier, with the next hop's 504
  // when the budget it was told (x-meshlet-deadline) runs out: that 504 is retried too.
  const auto& codes = retries.retriable_status_codes();
  if (retry != nullptr && timeouts.has_per_try() &&
      std::find(codes.begin(), codes.end(), 504) == codes.end()) {
    retries.add_retriable_status_codes(504);
  }
  if (retries.ByteSizeLong() == 0 && !timeouts.has_per_try()) return;
  xds::RetryPolicy policy = ToRetryPolicy(retries, timeouts);
  const auto& limit = action.timeout();
  if (action.has_timeout() && (limit.seconds() > 0 || limit.nanos() > 0)) {
    auto clamp = [&](google::protobuf::Duration* d, absl::string_view what) {
      if (*d > limit) {
        out.Warn(absl::StrCat(where, ": ", what, " ", TimeUtil::ToString(*d),
                              " exceeds the request timeout ", TimeUtil::ToString(limit),
                              "; bounded by it"));
        *d = limit;
      }
    };
    if (policy.has_per_try_timeout()) clamp(policy.mutable_per_try_timeout(), "backendRequest");
    if (policy.has_base_interval()) clamp(policy.mutable_base_interval(), "retry.backoff");
    if (policy.has_max_interval()) clamp(policy.mutable_max_interval(), "retry backoff maximum");
  }
  if (policy.has_base_interval() && policy.has_max_interval() &&
      policy.max_interval() < policy.base_interval()) {
    *policy.mutable_max_interval() = policy.base_interval();
  }
  // Gateway API: the request timeout bounds every attempt, and when it runs out during retries
  // the answer is the timeout's (504), not the last failed attempt's.
  if (retry != nullptr) policy.set_retry_until_deadline(true);
  *action.mutable_retry_policy() = std::move(policy);
}

void SetServerError(xds::Route& route, absl::string_view why) {
  route.clear_route();
  route.clear_redirect();
  route.mutable_direct_response()->set_status(500);
  route.mutable_direct_response()->set_body(absl::StrCat("meshlet: ", why, "\n"));
}

// The backends of a rule as the route's action: weighted when there are several, the shares of
// those that do not resolve answering 500 (none resolving, none at all, or every weight 0: the
// whole route answers 500). A backendRef's own filters (header modifiers: CheckFilter) become
// its weighted cluster's header changes, which the sidecar applies after the route's (the rule's
// filters), only to the requests it sends to that backend; a single backend with filters is a
// weighted cluster of one for that reason. `*policy_of` (when null): the Service whose
// TrafficPolicy sets the route's timeouts and retries, the parent's, else the first backend's.
template <typename BackendRef>
bool BackendAction(const TranslationContext& ctx, TranslationOutput& out, absl::string_view kind,
                   const std::string& route_ns, const ParentRefs& parent_refs,
                   const RouteParent& parent,
                   const google::protobuf::RepeatedPtrField<BackendRef>& refs,
                   const std::string& where, xds::Route& route, const ServiceView** policy_of) {
  if (refs.empty()) {
    SetServerError(route, "this route rule has no backendRefs");
    return false;
  }
  struct Choice {
    std::string cluster;
    uint32_t weight;
    const BackendRef* ref;
  };
  bool backend_filters = false;
  std::vector<Choice> choices;
  uint64_t unresolved_weight = 0;
  for (int i = 0; i < refs.size(); ++i) {
    const BackendRef& ref = refs[i];
    const uint32_t weight = ref.has_weight() ? std::max(0, ref.weight()) : 1;
    ResolvedBackend b =
        ResolveBackend(ctx.policy, ctx.index, kind, route_ns, parent_refs, ToObjectRef(ref),
                       parent.service, parent.service != nullptr ? parent.port : 0);
    if (b.service == nullptr) {
      out.Warn(absl::StrCat(where, ".backendRefs[", i, "]: ", b.message,
                            "; its share of requests gets 500"));
      unresolved_weight += weight;
      continue;
    }
    if (weight == 0) continue;
    if (*policy_of == nullptr) *policy_of = parent.service != nullptr ? parent.service : b.service;
    std::string cluster = UseCluster(ctx, out, *b.service, *b.port, {});
    backend_filters |= ref.filters_size() > 0;
    // Several refs to one backend are one weighted cluster with their weights added (a cluster
    // named twice would make the sidecar refuse the whole route configuration); their filters
    // are the same (CheckRuleCommon refuses the route otherwise).
    auto same = std::find_if(choices.begin(), choices.end(),
                             [&](const Choice& c) { return c.cluster == cluster; });
    if (same != choices.end()) {
      same->weight =
          static_cast<uint32_t>(std::min<uint64_t>(uint64_t{same->weight} + weight, UINT32_MAX));
      continue;
    }
    choices.push_back({std::move(cluster), weight, &ref});
  }
  if (choices.empty()) {
    SetServerError(route, unresolved_weight > 0 ? "no backend of this route rule exists"
                                                : "every backend of this route rule has weight 0");
    return false;
  }
  xds::RouteAction* action = route.mutable_route();
  if (choices.size() == 1 && unresolved_weight == 0 && !backend_filters) {
    action->set_cluster(choices.front().cluster);
  } else {
    for (const Choice& c : choices) {
      auto* cw = action->mutable_weighted_clusters()->add_clusters();
      cw->set_name(c.cluster);
      cw->set_weight(c.weight);
      for (const auto& filter : c.ref->filters()) ApplyHeaderModifier(filter, *cw);
    }
    if (unresolved_weight > 0) {
      // The missing backends' share: a cluster no configuration defines, which the sidecar
      // answers locally (kMissingBackendCluster).
      auto* cw = action->mutable_weighted_clusters()->add_clusters();
      cw->set_name(std::string(kMissingBackendCluster));
      cw->set_weight(static_cast<uint32_t>(std::min<uint64_t>(unresolved_weight, UINT32_MAX)));
    }
  }
  return true;
}

// A CORS filter (CheckCors passed) as the route's policy; maxAge unset: the API's default, 5 s.
void ApplyCors(const gw::HTTPCORSFilter& c, xds::Route& route) {
  xds::CorsPolicy* out = route.mutable_cors();
  *out->mutable_allow_origins() = c.allow_origins();
  *out->mutable_allow_methods() = c.allow_methods();
  *out->mutable_allow_headers() = c.allow_headers();
  *out->mutable_expose_headers() = c.expose_headers();
  out->set_allow_credentials(c.allow_credentials());
  out->set_max_age_seconds(c.has_max_age() ? static_cast<uint32_t>(c.max_age()) : 5);
}

// A redirect's or rewrite's path: ReplaceFullPath sets `full`, ReplacePrefixMatch `prefix`.
void SetPathModifier(const gw::HTTPPathModifier& path, std::string& full, std::string& prefix) {
  if (path.type() == "ReplaceFullPath") {
    full = path.replace_full_path();
  } else {
    prefix = path.replace_prefix_match();
  }
}

// The part of an HTTPRoute rule's routes their matches do not change. `*policy_of`: the Service
// whose TrafficPolicy set its timeouts and retries (null: the route sends nowhere).
xds::Route RuleRoute(const TranslationContext& ctx, TranslationOutput& out,
                     const RouteParent& parent, const gw::HTTPRoute& route,
                     const gw::HTTPRouteRule& rule, const std::string& where,
                     const ServiceView** policy_of) {
  const std::string ns = RouteNamespace(route);
  xds::Route base;
  std::vector<xds::RequestMirrorPolicy> mirrors;
  const gw::HTTPRequestRedirectFilter* redirect = nullptr;
  const gw::HTTPURLRewriteFilter* rewrite = nullptr;
  for (int f = 0; f < rule.filters_size(); ++f) {
    const gw::HTTPRouteFilter& filter = rule.filters(f);
    if (filter.type() == "RequestRedirect") {
      redirect = &filter.request_redirect();
    } else if (filter.type() == "URLRewrite") {
      rewrite = &filter.url_rewrite();
    } else if (filter.type() == "CORS") {
      ApplyCors(filter.cors(), base);
    } else {
      ApplyCommonFilter(ctx, out, "HTTPRoute", ns, route.spec().parent_refs(), filter,
                        absl::StrCat(where, ".filters[", f, "]"), base, mirrors);
    }
  }
  if (redirect != nullptr) {
    xds::RedirectAction* r = base.mutable_redirect();
    r->set_scheme(redirect->scheme());
    r->set_host(redirect->hostname());
    if (redirect->has_path()) {
      SetPathModifier(redirect->path(), *r->mutable_path(), *r->mutable_prefix_rewrite());
    }
    // The port: the filter's; else the scheme's well-known port when it names a scheme; else the
    // Service port (which plays the listener's part in the mesh). The sidecar leaves the
    // scheme's default port out of Location.
    uint32_t redirect_port = parent.port;
    if (redirect->has_port()) {
      redirect_port = static_cast<uint32_t>(redirect->port());
    } else if (redirect->scheme() == "https") {
      redirect_port = 443;
    } else if (redirect->scheme() == "http") {
      redirect_port = 80;
    }
    r->set_port(redirect_port);
    r->set_response_code(redirect->has_status_code() ? redirect->status_code() : 302);
    return base;
  }
  if (BackendAction(ctx, out, "HTTPRoute", ns, route.spec().parent_refs(), parent,
                    rule.backend_refs(), where, base, policy_of)) {
    xds::RouteAction* action = base.mutable_route();
    ApplyTimeoutsAndRetry(ctx, out, **policy_of, rule.timeouts().request(),
                          rule.timeouts().backend_request(),
                          rule.has_retry() ? &rule.retry() : nullptr, where, *action);
    if (rewrite != nullptr) {
      action->set_host_rewrite(rewrite->hostname());
      if (rewrite->has_path()) {
        SetPathModifier(rewrite->path(), *action->mutable_path_rewrite(),
                        *action->mutable_prefix_rewrite());
      }
    }
    for (xds::RequestMirrorPolicy& m : mirrors) *action->add_request_mirror_policies() = m;
    if (rule.has_session_persistence()) ApplySession(rule.session_persistence(), *action);
  }
  return base;
}

xds::Route RuleRoute(const TranslationContext& ctx, TranslationOutput& out,
                     const RouteParent& parent, const gw::GRPCRoute& route,
                     const gw::GRPCRouteRule& rule, const std::string& where,
                     const ServiceView** policy_of) {
  const std::string ns = RouteNamespace(route);
  xds::Route base;
  std::vector<xds::RequestMirrorPolicy> mirrors;
  for (int f = 0; f < rule.filters_size(); ++f) {
    ApplyCommonFilter(ctx, out, "GRPCRoute", ns, route.spec().parent_refs(), rule.filters(f),
                      absl::StrCat(where, ".filters[", f, "]"), base, mirrors);
  }
  if (BackendAction(ctx, out, "GRPCRoute", ns, route.spec().parent_refs(), parent,
                    rule.backend_refs(), where, base, policy_of)) {
    xds::RouteAction* action = base.mutable_route();
    ApplyTimeoutsAndRetry(ctx, out, **policy_of, "", "", nullptr, where, *action);
    for (xds::RequestMirrorPolicy& m : mirrors) *action->add_request_mirror_policies() = m;
    if (rule.has_session_persistence()) ApplySession(rule.session_persistence(), *action);
  }
  return base;
}

void SetMatch(const gw::HTTPRouteMatch* in, xds::RouteMatch& match) {
  const std::string type =
      in == nullptr || in->path().type().empty() ? "PathPrefix" : in->path().type();
  const std::string value = in == nullptr || !in->path().has_value() ? "/" : in->path().value();
  if (type == "Exact") {
    match.set_path(value);
  } else if (type == "RegularExpression") {
    match.set_safe_regex(value);
  } else {
    match.set_path_separated_prefix(value);
  }
  if (in == nullptr) return;
  for (const gw::HTTPHeaderMatch& h : in->headers()) {
    xds::HeaderMatcher* hm = match.add_headers();
    hm->set_name(absl::AsciiStrToLower(h.name()));
    if (h.type() == "RegularExpression") {
      hm->set_safe_regex(h.value());
    } else {
      hm->set_exact(h.value());
    }
  }
  for (const gw::HTTPQueryParamMatch& q : in->query_params()) {
    xds::QueryParameterMatcher* qm = match.add_query_parameters();
    qm->set_name(q.name());
    if (q.type() == "RegularExpression") {
      qm->set_safe_regex(q.value());
    } else {
      qm->set_exact(q.value());
    }
  }
  if (!in->method().empty()) match.add_methods(in->method());
}

// A literal for an RE2 pattern.
std::string Literal(const std::string& text) { return RE2::QuoteMeta(text); }

// gRPC method matches are matches of :path "/<service>/<method>": an Exact service and method,
// the exact path; a service only, its prefix; a method only or a RegularExpression, a pattern.
void SetMatch(const gw::GRPCRouteMatch* in, xds::RouteMatch& match) {
  if (in == nullptr || !in->has_method() ||
      (in->method().service().empty() && in->method().method().empty())) {
    match.set_prefix("/");
  } else {
    const gw::GRPCMethodMatch& m = in->method();
    if (m.type() == "RegularExpression") {
      match.set_safe_regex(absl::StrCat("/", m.service().empty() ? "[^/]+" : m.service(), "/",
                                        m.method().empty() ? "[^/]+" : m.method()));
    } else if (m.method().empty()) {
      match.set_prefix(absl::StrCat("/", m.service(), "/"));
    } else if (m.service().empty()) {
      match.set_safe_regex(absl::StrCat("/[^/]+/", Literal(m.method())));
    } else {
      match.set_path(absl::StrCat("/", m.service(), "/", m.method()));
    }
  }
  if (in == nullptr) return;
  for (const gw::GRPCHeaderMatch& h : in->headers()) {
    xds::HeaderMatcher* hm = match.add_headers();
    hm->set_name(absl::AsciiStrToLower(h.name()));
    if (h.type() == "RegularExpression") {
      hm->set_safe_regex(h.value());
    } else {
      hm->set_exact(h.value());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Precedence

// One route of the flattened list with what orders it (ADR 0060). Lower sorts first.
struct Entry {
  // At a Gateway: characters of the route's matching hostname when it is not a wildcard, then of
  // the matching hostname. More first; 0 in the mesh.
  size_t host_exact_chars = 0;
  size_t host_chars = 0;
  // GRPCRoutes (0) before HTTPRoutes (1).
  int family = 0;
  // HTTPRoute: Exact (0), RegularExpression (1), PathPrefix (2). GRPCRoute: 0.
  int path_kind = 0;
  // HTTPRoute: characters of the path; GRPCRoute: of the service. More first.
  size_t path_chars = 0;
  // HTTPRoute: a method match (1) first; GRPCRoute: characters of the method. More first.
  size_t method = 0;
  int headers = 0;  // more first
  int query = 0;    // more first
  // An empty creationTimestamp (a route not yet stored) counts as the newest.
  std::string created;
  std::string ns_name;
  int rule = 0;
  int match = 0;
  xds::Route route;

  auto Key() const {
    return std::make_tuple(~host_exact_chars, ~host_chars, family, path_kind, ~path_chars, ~method,
                           -headers, -query, created.empty(), created, ns_name, rule, match);
  }
};

template <typename Route>
std::string RouteLabel(absl::string_view kind, const Route& route) {
  return absl::StrCat(kind, " ", RouteNamespace(route), "/", route.metadata().name());
}

template <typename Rule>
std::string RouteName(const std::string& ns, const std::string& name, const Rule& rule,
                      int rule_index, int matches, int m) {
  return absl::StrCat(ns, "/", name, "/",
                      rule.name().empty() ? absl::StrCat("rule-", rule_index) : rule.name(),
                      matches > 1 ? absl::StrCat("/", m) : "");
}

// What orders the routes of an HTTPRoute match (null: the rule has none) and of a GRPCRoute's.
void Rank(const gw::HTTPRouteMatch* match, Entry& e) {
  e.family = 1;
  const std::string type =
      match == nullptr || match->path().type().empty() ? "PathPrefix" : match->path().type();
  e.path_kind = type == "Exact" ? 0 : type == "RegularExpression" ? 1 : 2;
  e.path_chars = match == nullptr || !match->path().has_value() ? 1 : match->path().value().size();
  e.method = match != nullptr && !match->method().empty() ? 1 : 0;
  e.headers = match == nullptr ? 0 : match->headers_size();
  e.query = match == nullptr ? 0 : match->query_params_size();
}

void Rank(const gw::GRPCRouteMatch* match, Entry& e) {
  e.family = 0;
  if (match == nullptr) return;
  e.path_chars = match->method().service().size();
  e.method = match->method().method().size();
  e.headers = match->headers_size();
}

// Whether a rule sets the request timeout (timeouts.request) or the per-try one
// (timeouts.backendRequest) itself; GRPCRoute rules have neither.
bool RuleSetsTimeout(const gw::HTTPRouteRule& rule) {
  return ParseGatewayDuration(rule.timeouts().request()).has_value();
}
bool RuleSetsPerTryTimeout(const gw::HTTPRouteRule& rule) {
  return ParseGatewayDuration(rule.timeouts().backend_request()).has_value();
}
bool RuleSetsTimeout(const gw::GRPCRouteRule&) { return false; }
bool RuleSetsPerTryTimeout(const gw::GRPCRouteRule&) { return false; }

// The path a route's match covers as a cookie's Path: its exact path or prefix, "/" for a regular
// expression (which may match under any path).
absl::string_view MatchedPath(const xds::RouteMatch& match) {
  if (!match.path().empty()) return match.path();
  if (!match.prefix().empty()) return match.prefix();
  if (!match.path_separated_prefix().empty()) return match.path_separated_prefix();
  return "/";
}

// The one cookie Path of a rule whose matches are the routes `entries`: the longest path, by
// whole segments, that every match lies under ("/cart" for /cart and /cart/items, "/" for /cart
// and /api), so that one session spans the rule, whichever of its paths a request takes (ADR
// 0062). A cookie's Path matches by segments (RFC 6265 5.1.4), as path_separated_prefix does.
std::string RuleCookiePath(absl::Span<const Entry> entries) {
  std::vector<absl::string_view> common;
  for (size_t i = 0; i < entries.size(); ++i) {
    std::vector<absl::string_view> segments =
        absl::StrSplit(MatchedPath(entries[i].route.match()), '/', absl::SkipEmpty());
    if (i == 0) {
      common = std::move(segments);
      continue;
    }
    size_t same = 0;
    while (same < common.size() && same < segments.size() && common[same] == segments[same]) {
      ++same;
    }
    common.resize(same);
  }
  return absl::StrCat("/", absl::StrJoin(common, "/"));
}

// The routes of every rule of `route` (one per match), unordered. `hostname`: at a Gateway, the
// route's hostname the routes are for ("" in the mesh), which ranks them first.
template <typename Route>
void AddEntries(const TranslationContext& ctx, TranslationOutput& out, const RouteParent& parent,
                absl::string_view kind, const Route& route, std::vector<Entry>& entries,
                absl::string_view hostname = "") {
  const std::string ns = RouteNamespace(route);
  for (int i = 0; i < route.spec().rules_size(); ++i) {
    const auto& rule = route.spec().rules(i);
    const std::string where = absl::StrCat(RouteLabel(kind, route), " spec.rules[", i, "]");
    const ServiceView* policy_of = nullptr;
    const xds::Route base = RuleRoute(ctx, out, parent, route, rule, where, &policy_of);
    const int matches = std::max(1, rule.matches_size());
    const size_t first = entries.size();
    for (int m = 0; m < matches; ++m) {
      const auto* match = rule.matches_size() == 0 ? nullptr : &rule.matches(m);
      Entry e;
      Rank(match, e);
      e.host_chars = hostname.size();
      e.host_exact_chars = absl::StartsWith(hostname, "*") ? 0 : hostname.size();
      e.created = route.metadata().creation_timestamp();
      e.ns_name = absl::StrCat(ns, "/", route.metadata().name());
      e.rule = i;
      e.match = m;
      e.route = base;
      e.route.set_name(RouteName(ns, route.metadata().name(), rule, i, matches, m));
      SetMatch(match, *e.route.mutable_match());
      // Named with the group: meshlet has an HTTPRoute of its own, and `meshctl explain` looks
      // the object up by this name (ADR 0058's qualified kind names).
      SetPolicySource(absl::StrCat(kind, ".", policy::kGatewayGroup), ns, route.metadata().name(),
                      i, match == nullptr ? -1 : m, *e.route.mutable_source());
      if (e.route.has_route() && policy_of != nullptr) {
        SetTimeoutSources(ctx, *policy_of, &e.route.source(), RuleSetsTimeout(rule),
                          RuleSetsPerTryTimeout(rule), *e.route.mutable_route());
      }
      entries.push_back(std::move(e));
    }
    // A rule's session is one, whichever match a request takes: its cookie has one Path for
    // all of them (a single match's own path is the sidecar's default).
    if (matches > 1 && base.route().has_session_persistence() &&
        base.route().session_persistence().type() == xds::SessionPersistence::COOKIE) {
      const std::string path = RuleCookiePath(absl::MakeConstSpan(entries).subspan(first, matches));
      for (size_t k = first; k < entries.size(); ++k) {
        entries[k].route.mutable_route()->mutable_session_persistence()->set_cookie_path(path);
      }
    }
  }
}

// `entries` in precedence order as `vhost`'s routes, then a 404 saying `none_matches` for a
// request none of them matches.
void AddOrderedRoutes(std::vector<Entry>& entries, absl::string_view none_matches,
                      xds::VirtualHost& vhost) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.Key() < b.Key(); });
  for (Entry& e : entries) *vhost.add_routes() = std::move(e.route);
  xds::Route none;
  none.set_name("no-matching-route");
  none.mutable_match()->set_prefix("/");
  none.mutable_direct_response()->set_status(404);
  none.mutable_direct_response()->set_body(absl::StrCat("meshlet: ", none_matches, "\n"));
  *vhost.add_routes() = std::move(none);
}

}  // namespace

std::string NamespaceOr(const std::string& ns, absl::string_view fallback) {
  return ns.empty() ? std::string(fallback) : ns;
}

bool IsServiceParent(const gw::ParentReference& ref) {
  return ref.kind() == "Service" && (ref.group().empty() || ref.group() == kCoreGroup);
}

std::string UnsupportedReason(const gw::HTTPRoute& route) {
  for (int i = 0; i < route.spec().rules_size(); ++i) {
    const gw::HTTPRouteRule& rule = route.spec().rules(i);
    const std::string where = absl::StrCat("spec.rules[", i, "]");
    std::string why = CheckRuleCommon(rule, where, CheckHttpFilter);
    if (!why.empty()) return why;
    int redirects = 0, rewrites = 0;
    for (const gw::HTTPRouteFilter& f : rule.filters()) {
      redirects += f.type() == "RequestRedirect";
      rewrites += f.type() == "URLRewrite";
    }
    if (redirects > 1 || rewrites > 1 || (redirects > 0 && rewrites > 0)) {
      return absl::StrCat(where,
                          ".filters: at most one RequestRedirect or one URLRewrite, not both");
    }
    for (int m = 0; m < rule.matches_size(); ++m) {
      const gw::HTTPRouteMatch& match = rule.matches(m);
      const std::string at = absl::StrCat(where, ".matches[", m, "]");
      const std::string& type = match.path().type();
      if (!type.empty() && type != "Exact" && type != "PathPrefix" && type != "RegularExpression") {
        return absl::StrCat(at, ".path.type: \"", type, "\" is not supported");
      }
      if (type == "RegularExpression") {
        why = CheckRegex(match.path().value(), absl::StrCat(at, ".path"));
        if (!why.empty()) return why;
      }
      for (int h = 0; h < match.headers_size(); ++h) {
        if (match.headers(h).type() == "RegularExpression") {
          why = CheckRegex(match.headers(h).value(), absl::StrCat(at, ".headers[", h, "]"));
          if (!why.empty()) return why;
        } else if (!match.headers(h).type().empty() && match.headers(h).type() != "Exact") {
          return absl::StrCat(at, ".headers[", h, "].type: \"", match.headers(h).type(),
                              "\" is not supported");
        }
      }
      for (int q = 0; q < match.query_params_size(); ++q) {
        if (match.query_params(q).type() == "RegularExpression") {
          why =
              CheckRegex(match.query_params(q).value(), absl::StrCat(at, ".queryParams[", q, "]"));
          if (!why.empty()) return why;
        } else if (!match.query_params(q).type().empty() &&
                   match.query_params(q).type() != "Exact") {
          return absl::StrCat(at, ".queryParams[", q, "].type: \"", match.query_params(q).type(),
                              "\" is not supported");
        }
      }
    }
    why = CheckDuration(rule.timeouts().request(), absl::StrCat(where, ".timeouts.request"));
    if (why.empty()) {
      why = CheckDuration(rule.timeouts().backend_request(),
                          absl::StrCat(where, ".timeouts.backendRequest"));
    }
    if (why.empty())
      why = CheckDuration(rule.retry().backoff(), absl::StrCat(where, ".retry.backoff"));
    if (!why.empty()) return why;
    const std::optional<absl::Duration> request = ParseGatewayDuration(rule.timeouts().request());
    const std::optional<absl::Duration> backend =
        ParseGatewayDuration(rule.timeouts().backend_request());
    if (request && backend && *request != absl::ZeroDuration() &&
        (*backend == absl::ZeroDuration() || *backend > *request)) {
      return absl::StrCat(where, ".timeouts.backendRequest: ", rule.timeouts().backend_request(),
                          " exceeds timeouts.request ", rule.timeouts().request());
    }
    if (rule.retry().has_attempts() && rule.retry().attempts() < 0) {
      return absl::StrCat(where, ".retry.attempts: must not be negative");
    }
    for (int32_t code : rule.retry().codes()) {
      if (code < 400 || code > 599) {
        return absl::StrCat(where, ".retry.codes: ", code, " is not a 4xx or 5xx status");
      }
    }
  }
  return "";
}

std::string UnsupportedReason(const gw::GRPCRoute& route) {
  for (int i = 0; i < route.spec().rules_size(); ++i) {
    const gw::GRPCRouteRule& rule = route.spec().rules(i);
    const std::string where = absl::StrCat("spec.rules[", i, "]");
    std::string why = CheckRuleCommon(
        rule, where, [](const gw::GRPCRouteFilter& f, const std::string& at, bool backend) {
          return CheckFilter(f, at, backend);
        });
    if (!why.empty()) return why;
    for (int m = 0; m < rule.matches_size(); ++m) {
      const gw::GRPCRouteMatch& match = rule.matches(m);
      const std::string at = absl::StrCat(where, ".matches[", m, "]");
      const std::string& type = match.method().type();
      if (type == "RegularExpression") {
        why = CheckRegex(absl::StrCat("/", match.method().service(), "/", match.method().method()),
                         absl::StrCat(at, ".method"));
        if (!why.empty()) return why;
      } else if (!type.empty() && type != "Exact") {
        return absl::StrCat(at, ".method.type: \"", type, "\" is not supported");
      }
      for (int h = 0; h < match.headers_size(); ++h) {
        if (match.headers(h).type() == "RegularExpression") {
          why = CheckRegex(match.headers(h).value(), absl::StrCat(at, ".headers[", h, "]"));
          if (!why.empty()) return why;
        } else if (!match.headers(h).type().empty() && match.headers(h).type() != "Exact") {
          return absl::StrCat(at, ".headers[", h, "].type: \"", match.headers(h).type(),
                              "\" is not supported");
        }
      }
    }
  }
  return "";
}

ResolvedBackend ResolveBackend(const PolicySnapshot& policy, const MeshIndex& index,
                               absl::string_view route_kind, const std::string& route_ns,
                               const ParentRefs& parent_refs, const gw::BackendObjectReference& ref,
                               const ServiceView* parent, uint32_t parent_port) {
  ResolvedBackend out;
  const std::string kind = ref.kind().empty() ? "Service" : ref.kind();
  if (kind != "Service" || !(ref.group().empty() || ref.group() == kCoreGroup)) {
    out.reason = "InvalidKind";
    out.message = absl::StrCat("backend ", ref.group().empty() ? "" : ref.group() + "/", kind,
                               " \"", ref.name(), "\" is not a Service");
    return out;
  }
  const std::string ns = NamespaceOr(ref.namespace_(), route_ns);
  const bool is_parent =
      std::any_of(parent_refs.begin(), parent_refs.end(), [&](const gw::ParentReference& p) {
        return IsServiceParent(p) && NamespaceOr(p.namespace_(), route_ns) == ns &&
               p.name() == ref.name();
      });
  if (ns != route_ns && !is_parent) {
    bool granted = false;
    for (const gw::ReferenceGrant& grant : policy.reference_grants) {
      if (NamespaceOr(grant.metadata().namespace_()) != ns) continue;
      bool from = false, to = false;
      for (const gw::ReferenceGrantFrom& f : grant.spec().from()) {
        from |= f.group() == "gateway.networking.k8s.io" && f.kind() == route_kind &&
                f.namespace_() == route_ns;
      }
      for (const gw::ReferenceGrantTo& t : grant.spec().to()) {
        to |= (t.group().empty() || t.group() == kCoreGroup) && t.kind() == "Service" &&
              (t.name().empty() || t.name() == ref.name());
      }
      granted |= from && to;
    }
    if (!granted) {
      out.reason = "RefNotPermitted";
      out.message = absl::StrCat("backend Service ", ns, "/", ref.name(),
                                 ": no ReferenceGrant in namespace \"", ns, "\" lets ", route_kind,
                                 "s of namespace \"", route_ns, "\" refer to it");
      return out;
    }
  }
  auto it = index.services.find({ns, ref.name()});
  if (it == index.services.end()) {
    out.reason = "BackendNotFound";
    out.message = absl::StrCat("backend Service ", ns, "/", ref.name(), " does not exist");
    return out;
  }
  const ServiceView& s = *it->second;
  const uint32_t wanted = ref.has_port() ? static_cast<uint32_t>(ref.port())
                          : &s == parent ? parent_port
                                         : 0;
  for (const pb::ServicePort& p : s.ports) {
    if (wanted == 0 ? IsHttpProtocol(p.protocol()) : p.port() == wanted) {
      out.service = &s;
      out.port = &p;
      return out;
    }
  }
  out.reason = "BackendNotFound";
  out.message =
      wanted == 0 ? absl::StrCat("backend Service ", ns, "/", ref.name(), " has no HTTP port")
                  : absl::StrCat("backend Service ", ns, "/", ref.name(), " has no port ", wanted);
  return out;
}

void IndexGatewayRoutes(const PolicySnapshot& policy, MeshIndex& index) {
  auto attach = [&](const auto& route, GatewayAttachment base) {
    base.namespace_ = RouteNamespace(route);
    for (const gw::ParentReference& ref : route.spec().parent_refs()) {
      if (!IsServiceParent(ref)) continue;
      const std::string service_ns = NamespaceOr(ref.namespace_(), base.namespace_);
      auto it = index.services.find({service_ns, ref.name()});
      if (it == index.services.end()) continue;
      GatewayAttachment a = base;
      // A port the Service lacks matches none of its virtual hosts (and the status says so).
      a.port = ref.has_port() ? static_cast<uint32_t>(ref.port()) : 0;
      a.consumer = service_ns != base.namespace_;
      if (a.consumer) index.consumer_namespaces.insert(base.namespace_);
      index.gateway_routes[{service_ns, ref.name()}].push_back(a);
    }
  };
  for (const gw::HTTPRoute& route : policy.gateway_http_routes) {
    if (UnsupportedReason(route).empty()) attach(route, GatewayAttachment{.http = &route});
  }
  for (const gw::GRPCRoute& route : policy.grpc_routes) {
    if (UnsupportedReason(route).empty()) attach(route, GatewayAttachment{.grpc = &route});
  }
}

xds::RouteConfiguration GatewayPortRoutes(const TranslationContext& ctx, TranslationOutput& out,
                                          const std::string& name, uint32_t port,
                                          const std::vector<GatewayListenerRoute>& routes,
                                          const std::vector<GatewayPortListener>& served) {
  xds::RouteConfiguration config;
  config.set_name(name);
  // Whether requests for `host` may take the routes of hostname `general`: any host for "",
  // and a wildcard's suffix for a name or a narrower wildcard under it.
  auto covers = [](absl::string_view general, absl::string_view host) {
    if (general.empty() || general == host) return true;
    if (!absl::StartsWith(general, "*.")) return false;
    const absl::string_view suffix = general.substr(1);
    return host.size() > suffix.size() && absl::EndsWith(host, suffix);
  };
  std::vector<std::string> hostnames;             // each route's, lower case
  std::vector<std::string> route_listener_hosts;  // each route's listener hostname, lower case
  for (const GatewayListenerRoute& r : routes) {
    hostnames.push_back(absl::AsciiStrToLower(r.hostname));
    route_listener_hosts.push_back(absl::AsciiStrToLower(r.listener_hostname));
  }
  std::set<std::string> hosts(hostnames.begin(), hostnames.end());
  std::vector<std::string> listeners;                 // hostnames, lower case
  std::map<std::string, std::string> listener_names;  // by hostname (unique on a port)
  for (const GatewayPortListener& l : served) {
    listeners.push_back(absl::AsciiStrToLower(l.hostname));
    listener_names.emplace(listeners.back(), l.name);
  }
  if (!routes.empty()) hosts.insert(listeners.begin(), listeners.end());
  // The most specific listener hostname covering `host` (a name before a wildcard, a longer
  // wildcard before a shorter, any hostname last).
  auto rank = [](const std::string& h) {
    return std::make_pair(h.size(), !absl::StartsWith(h, "*."));
  };
  auto owner = [&](const std::string& host) -> std::optional<std::string> {
    std::optional<std::string> best;
    for (const std::string& l : listeners) {
      if (covers(l, host) && (!best.has_value() || rank(l) > rank(*best))) best = l;
    }
    return best;
  };
  const RouteParent parent{nullptr, port};
  const size_t first_warning = out.resources.warnings.size();
  for (const std::string& host : hosts) {
    std::vector<Entry> entries;
    std::set<std::pair<const void*, std::string>> seen;
    const std::optional<std::string> listener = owner(host);
    for (size_t i = 0; i < routes.size(); ++i) {
      const GatewayListenerRoute& r = routes[i];
      const std::string& hostname = hostnames[i];
      if (!covers(hostname, host)) continue;
      if (listener.has_value() && route_listener_hosts[i] != *listener) continue;
      const void* route = r.http != nullptr ? static_cast<const void*>(r.http) : r.grpc;
      if (!seen.insert({route, hostname}).second) continue;
      if (r.http != nullptr) {
        AddEntries(ctx, out, parent, "HTTPRoute", *r.http, entries, hostname);
      } else {
        AddEntries(ctx, out, parent, "GRPCRoute", *r.grpc, entries, hostname);
      }
    }
    xds::VirtualHost* vhost = config.add_virtual_hosts();
    vhost->set_name(host.empty() ? "*" : host);
    vhost->add_domains(host.empty() ? "*" : host);
    if (listener.has_value()) vhost->set_gateway_listener(listener_names[*listener]);
    AddOrderedRoutes(entries, "no route of the Gateway matches the request", *vhost);
  }
  // A route's warnings once, not once per host it serves.
  std::vector<std::string>& warnings = out.resources.warnings;
  std::set<std::string> said;
  auto end =
      std::remove_if(warnings.begin() + static_cast<std::ptrdiff_t>(first_warning), warnings.end(),
                     [&said](const std::string& w) { return !said.insert(w).second; });
  warnings.erase(end, warnings.end());
  return config;
}

bool AddGatewayRoutes(const TranslationContext& ctx, TranslationOutput& out,
                      const ServiceView& service, const pb::ServicePort& port,
                      xds::VirtualHost& vhost) {
  auto it = ctx.index.gateway_routes.find({service.namespace_, service.name});
  if (it == ctx.index.gateway_routes.end()) return false;
  // Those for this port: the caller's namespace's consumer routes when it has any, else the
  // producer routes. A route attached twice to the port (two parentRefs) counts once.
  std::vector<const GatewayAttachment*> producer, consumer;
  for (const GatewayAttachment& a : it->second) {
    if (a.port != 0 && a.port != port.port()) continue;
    if (!a.consumer) {
      producer.push_back(&a);
    } else if (a.namespace_ == ctx.self.namespace_) {
      consumer.push_back(&a);
    }
  }
  std::vector<const GatewayAttachment*>& chosen = consumer.empty() ? producer : consumer;
  if (chosen.empty()) return false;
  std::vector<Entry> entries;
  std::set<const void*> seen;
  for (const GatewayAttachment* a : chosen) {
    if (a->http != nullptr && seen.insert(a->http).second) {
      AddEntries(ctx, out, RouteParent{&service, port.port()}, "HTTPRoute", *a->http, entries);
    } else if (a->grpc != nullptr && seen.insert(a->grpc).second) {
      AddEntries(ctx, out, RouteParent{&service, port.port()}, "GRPCRoute", *a->grpc, entries);
    }
  }
  // With routes attached, a request none of them matches is refused (GAMMA).
  AddOrderedRoutes(entries, "no Gateway API route of this Service matches the request", vhost);
  return true;
}

}  // namespace meshlet::controlplane::translate
