// Translation of RouteConfiguration messages and virtual hosts into route configs: one file
// because its helpers (matches, actions, policies, header mutations) are private to the one
// virtual-host walk that the route tables (translate_route_tables.cc) and the ServiceRoutes'
// translation share.

#include "sidecar/config/translate_internal.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/net/address.h"
#include "re2/re2.h"
#include "sidecar/cluster/session_key.h"
#include "sidecar/resilience/backoff.h"
#include "sidecar/resilience/fault.h"
#include "sidecar/resilience/retry_state.h"
#include "sidecar/route/session.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

using route::HeaderMutations;
using route::HeaderValueOption;

constexpr size_t kMaxDirectResponseBody = 64 * 1024;
constexpr absl::string_view kRetryOnValues =
    "connect-failure, refused-stream, reset, 5xx, gateway-error, retriable-status-codes, "
    "cancelled, deadline-exceeded, internal, resource-exhausted, unavailable";
// RateLimit.max_principals when unset.
constexpr uint32_t kDefaultMaxPrincipals = 1024;

// Longest RE2 pattern a route may hold; RE2 bounds the compiled program's memory itself.
constexpr size_t kMaxRegexLength = 4096;

// `pattern` compiled once for the whole configuration, or null after adding an error naming the
// route, the field and RE2's reason.
route::Regex CompileRegex(Errors::Scope& scope, const std::string& path,
                          absl::string_view route_name, const std::string& pattern,
                          bool case_sensitive = true) {
  const std::string where =
      route_name.empty() ? std::string() : absl::StrCat("route ", Quote(route_name), ": ");
  if (pattern.empty()) {
    scope.Add(path, absl::StrCat(where, "must not be empty"));
    return nullptr;
  }
  if (pattern.size() > kMaxRegexLength) {
    scope.Add(path, absl::StrCat(where, "longer than ", kMaxRegexLength, " bytes"));
    return nullptr;
  }
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_case_sensitive(case_sensitive);
  auto regex = std::make_shared<const re2::RE2>(pattern, options);
  if (!regex->ok()) {
    scope.Add(path,
              absl::StrCat(where, Quote(pattern), " is not a valid RE2 pattern: ", regex->error()));
    return nullptr;
  }
  return regex;
}

void TranslateHeadersToAdd(Errors::Scope& scope, const std::string& path,
                           const google::protobuf::RepeatedPtrField<xds::HeaderValueOption>& in,
                           bool request, std::vector<HeaderValueOption>& out) {
  for (int i = 0; i < in.size(); ++i) {
    const std::string item = Index(path, i);
    std::string name = absl::AsciiStrToLower(in[i].name());
    if (name.empty()) {
      scope.Add(Join(item, "name"), "must not be empty");
    } else if (name.front() == ':') {
      scope.Add(Join(item, "name"),
                absl::StrCat(Quote(name), ": pseudo-headers cannot be changed this way"));
    } else if (!IsHttpToken(name)) {
      scope.Add(Join(item, "name"), absl::StrCat(Quote(name), " is not a header name"));
    } else if (request && name == "host") {
      scope.Add(Join(item, "name"), "\"host\" cannot be changed this way; use host_rewrite");
    }
    if (!IsSafeHeaderValue(in[i].value())) {
      scope.Add(Join(item, "value"), "must not contain CR, LF or NUL");
    }
    out.push_back({std::move(name), in[i].value(), in[i].append()});
  }
}

void TranslateHeadersToRemove(Errors::Scope& scope, const std::string& path,
                              const google::protobuf::RepeatedPtrField<std::string>& in,
                              std::vector<std::string>& out) {
  for (int i = 0; i < in.size(); ++i) {
    std::string name = absl::AsciiStrToLower(in[i]);
    if (!IsHttpToken(name)) {
      scope.Add(Index(path, i), absl::StrCat(Quote(name), " is not a header name"));
    }
    out.push_back(std::move(name));
  }
}

// The four mutation lists every level has; `prefix` leads to the level ("" for the route config).
template <typename Level>
HeaderMutations TranslateMutations(Errors::Scope& scope, const std::string& prefix,
                                   const Level& level) {
  HeaderMutations out;
  TranslateHeadersToAdd(scope, Join(prefix, "request_headers_to_add"),
                        level.request_headers_to_add(), true, out.request_headers_to_add);
  TranslateHeadersToRemove(scope, Join(prefix, "request_headers_to_remove"),
                           level.request_headers_to_remove(), out.request_headers_to_remove);
  TranslateHeadersToAdd(scope, Join(prefix, "response_headers_to_add"),
                        level.response_headers_to_add(), false, out.response_headers_to_add);
  TranslateHeadersToRemove(scope, Join(prefix, "response_headers_to_remove"),
                           level.response_headers_to_remove(), out.response_headers_to_remove);
  return out;
}

resilience::RetryPolicyConfig TranslateRetryPolicy(Errors::Scope& scope, const std::string& path,
                                                   const xds::RetryPolicy& in) {
  resilience::RetryPolicyConfig out;
  if (in.has_num_retries()) out.num_retries = in.num_retries().value();
  if (in.retry_on_size() > 0) {
    out.retry_on = 0;
    for (int i = 0; i < in.retry_on_size(); ++i) {
      absl::StatusOr<uint32_t> bit = resilience::ParseRetryOn(in.retry_on(i));
      if (!bit.ok()) {
        scope.Add(Index(Join(path, "retry_on"), i),
                  absl::StrCat("unknown value ", Quote(in.retry_on(i)),
                               "; valid values: ", kRetryOnValues));
        continue;
      }
      out.retry_on |= *bit;
    }
  }
  if (in.retriable_status_codes_size() > 0) {
    out.retriable_status_codes.clear();
    for (int i = 0; i < in.retriable_status_codes_size(); ++i) {
      CheckStatusCode(scope, Index(Join(path, "retriable_status_codes"), i),
                      in.retriable_status_codes(i));
      out.retriable_status_codes.push_back(in.retriable_status_codes(i));
    }
  }
  ReadDuration(scope, Join(path, "per_try_timeout"), in.has_per_try_timeout(), in.per_try_timeout(),
               DurationRule::kNonNegative, &out.per_try_timeout);
  ReadDuration(scope, Join(path, "base_interval"), in.has_base_interval(), in.base_interval(),
               DurationRule::kPositive, &out.backoff.base);
  if (in.has_max_interval()) {
    ReadDuration(scope, Join(path, "max_interval"), true, in.max_interval(),
                 DurationRule::kPositive, &out.backoff.cap);
  } else if (in.has_base_interval()) {
    // The default cap keeps the default 10x ratio to the base.
    out.backoff.cap = out.backoff.base * 10;
  }
  absl::Status backoff = resilience::ValidateBackoffConfig(out.backoff);
  if (!backoff.ok()) scope.Add(path, backoff);
  out.retry_non_idempotent = in.retry_non_idempotent();
  out.retry_until_deadline = in.retry_until_deadline();
  return out;
}

std::optional<resilience::FaultConfig> TranslateFault(Errors::Scope& scope, const std::string& path,
                                                      const xds::FaultInjection& in) {
  resilience::FaultConfig out;
  const size_t before = scope.count();
  if (in.has_delay()) {
    resilience::FaultConfig::Delay delay;
    if (!in.delay().has_fixed_delay()) {
      scope.Add(Join(path, "delay.fixed_delay"), "required");
    }
    ReadDuration(scope, Join(path, "delay.fixed_delay"), in.delay().has_fixed_delay(),
                 in.delay().fixed_delay(), DurationRule::kPositive, &delay.fixed_delay);
    CheckPercentage(scope, Join(path, "delay.percentage"), in.delay().percentage());
    delay.percentage = in.delay().percentage();
    out.delay = delay;
  }
  if (in.has_abort()) {
    resilience::FaultConfig::Abort abort;
    abort.http_status = in.abort().http_status();
    abort.grpc_status = in.abort().grpc_status();
    CheckPercentage(scope, Join(path, "abort.percentage"), in.abort().percentage());
    abort.percentage = in.abort().percentage();
    out.abort = abort;
  }
  if (!in.has_delay() && !in.has_abort() && !in.header_triggered()) {
    scope.Add(path, "needs delay, abort or header_triggered");
  }
  if (scope.count() == before) {
    absl::Status valid = resilience::ValidateFaultConfig(out);
    if (!valid.ok()) scope.Add(path, valid);
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

void TranslateRouteAction(Errors::Scope& scope, const std::string& path, const xds::RouteAction& in,
                          const ClusterNames& clusters,
                          const resilience::RetryPolicyConfig& inherited_retry, SourceNames& names,
                          route::RouteAction& out) {
  switch (in.cluster_specifier_case()) {
    case xds::RouteAction::kCluster:
      if (in.cluster().empty()) {
        scope.Add(Join(path, "cluster"), "must not be empty");
      } else if (!clusters.contains(in.cluster())) {
        scope.Add(
            "", absl::StrCat(Join(path, "cluster"), " ", Quote(in.cluster()), " names no Cluster"));
      }
      out.cluster = in.cluster();
      break;
    case xds::RouteAction::kWeightedClusters: {
      const std::string wc_path = Join(path, "weighted_clusters");
      const auto& list = in.weighted_clusters().clusters();
      if (list.empty()) {
        scope.Add(Join(wc_path, "clusters"), "must not be empty");
        break;
      }
      absl::flat_hash_map<std::string, int> seen;
      for (int i = 0; i < list.size(); ++i) {
        const std::string item = Index(Join(wc_path, "clusters"), i);
        const std::string& name = list[i].name();
        if (name.empty()) {
          scope.Add(Join(item, "name"), "must not be empty");
        } else if (!clusters.contains(name) && name != route::kMissingBackendCluster) {
          // The missing-backend name stands for backendRefs the control plane could not
          // resolve: the router answers its share with 500.
          scope.Add("", absl::StrCat(Join(item, "name"), " ", Quote(name), " names no Cluster"));
        } else if (auto [it, inserted] = seen.emplace(name, i); !inserted) {
          scope.Add(Join(item, "name"),
                    absl::StrCat(Quote(name), " is already listed at clusters[", it->second, "]"));
        }
        out.weighted_clusters.push_back(
            {name, list[i].weight(), TranslateMutations(scope, item, list[i])});
        out.total_weight += list[i].weight();
        out.has_backend_headers |= !out.weighted_clusters.back().headers.empty();
      }
      if (out.total_weight == 0) scope.Add(wc_path, "weights sum to 0");
      break;
    }
    default:
      scope.Add(path, "needs cluster or weighted_clusters");
  }
  ReadDuration(scope, Join(path, "timeout"), in.has_timeout(), in.timeout(),
               DurationRule::kNonNegative, &out.timeout);
  if (in.has_timeout_source()) {
    out.timeout_source = names.Intern(PolicySourceName(scope, Join(path, "timeout_source"),
                                                       in.timeout_source(), /*route=*/false));
  }
  if (in.has_per_try_timeout_source()) {
    out.per_try_timeout_source = names.Intern(PolicySourceName(
        scope, Join(path, "per_try_timeout_source"), in.per_try_timeout_source(), /*route=*/false));
  }
  out.retry_policy = in.has_retry_policy() ? TranslateRetryPolicy(scope, Join(path, "retry_policy"),
                                                                  in.retry_policy())
                                           : inherited_retry;
  if (!in.prefix_rewrite().empty() && in.prefix_rewrite().front() != '/') {
    scope.Add(Join(path, "prefix_rewrite"), "must start with '/'");
  }
  // Most routes have no rewrite or mirror: the extras are made only for one that has.
  if (!in.prefix_rewrite().empty()) out.extras.mut().prefix_rewrite = in.prefix_rewrite();
  if (!in.path_rewrite().empty()) {
    if (in.path_rewrite().front() != '/') {
      scope.Add(Join(path, "path_rewrite"), "must start with '/'");
    } else if (in.path_rewrite().find_first_of("?#") != std::string::npos) {
      scope.Add(Join(path, "path_rewrite"), "must not contain a query string or fragment");
    }
    if (!in.prefix_rewrite().empty()) {
      scope.Add(Join(path, "path_rewrite"), "excludes prefix_rewrite; set one of them");
    }
  }
  if (!in.path_rewrite().empty()) out.extras.mut().path_rewrite = in.path_rewrite();
  for (int i = 0; i < in.request_mirror_policies_size(); ++i) {
    const xds::RequestMirrorPolicy& mirror = in.request_mirror_policies(i);
    const std::string item = Index(Join(path, "request_mirror_policies"), i);
    if (mirror.cluster().empty()) {
      scope.Add(Join(item, "cluster"), "must not be empty");
    } else if (!clusters.contains(mirror.cluster())) {
      scope.Add("", absl::StrCat(Join(item, "cluster"), " ", Quote(mirror.cluster()),
                                 " names no Cluster"));
    }
    double percent = 100.0;
    if (mirror.has_percent()) {
      percent = mirror.percent().value();
      CheckPercentage(scope, Join(item, "percent"), percent);
    }
    out.extras.mut().mirrors.push_back({mirror.cluster(), percent / 100.0});
  }
  if (!in.host_rewrite().empty() && !ValidHost(in.host_rewrite())) {
    scope.Add(Join(path, "host_rewrite"),
              absl::StrCat(Quote(in.host_rewrite()), " is not a host name"));
  }
  if (!in.host_rewrite().empty()) out.extras.mut().host_rewrite = in.host_rewrite();
}

void TranslateRedirect(Errors::Scope& scope, const std::string& path, const xds::RedirectAction& in,
                       route::RedirectAction& out) {
  if (in.host().empty() && in.path().empty() && in.scheme().empty() && in.port() == 0 &&
      in.prefix_rewrite().empty()) {
    scope.Add(path,
              "needs at least one of host, path, prefix_rewrite, scheme, port (it would redirect "
              "to itself)");
  }
  if (!in.scheme().empty()) {
    std::string scheme = absl::AsciiStrToLower(in.scheme());
    if (scheme != "http" && scheme != "https") {
      scope.Add(Join(path, "scheme"), "must be http or https");
    }
    out.scheme = scheme;
  }
  if (!in.host().empty() && !ValidHost(in.host())) {
    scope.Add(Join(path, "host"), absl::StrCat(Quote(in.host()), " is not a host name"));
  }
  out.host = in.host();
  if (!in.path().empty() && in.path().front() != '/') {
    scope.Add(Join(path, "path"), "must start with '/'");
  }
  out.path = in.path();
  if (!in.prefix_rewrite().empty()) {
    if (in.prefix_rewrite().front() != '/') {
      scope.Add(Join(path, "prefix_rewrite"), "must start with '/'");
    } else if (in.prefix_rewrite().find_first_of("?#") != std::string::npos) {
      scope.Add(Join(path, "prefix_rewrite"), "must not contain a query string or fragment");
    }
    if (!in.path().empty()) {
      scope.Add(Join(path, "prefix_rewrite"), "excludes path; set one of them");
    }
  }
  out.prefix_rewrite = in.prefix_rewrite();
  if (in.port() > 65535) scope.Add(Join(path, "port"), "must be in [1, 65535]");
  out.port = in.port();
  out.response_code = in.response_code() == 0 ? 301 : in.response_code();
  if (out.response_code != 301 && out.response_code != 302 && out.response_code != 303 &&
      out.response_code != 307 && out.response_code != 308) {
    scope.Add(Join(path, "response_code"), "must be 301, 302, 303, 307 or 308");
  }
}

void TranslateRouteMatch(Errors::Scope& scope, const std::string& path,
                         absl::string_view route_name, const xds::RouteMatch& in,
                         route::RouteMatch& out) {
  switch (in.path_specifier_case()) {
    case xds::RouteMatch::kPrefix:
      out.path_kind = route::RouteMatch::PathKind::kPrefix;
      out.path = in.prefix();
      if (out.path.empty() || out.path.front() != '/') {
        scope.Add(Join(path, "prefix"), "must start with '/'");
      }
      break;
    case xds::RouteMatch::kPath:
      out.path_kind = route::RouteMatch::PathKind::kExact;
      out.path = in.path();
      if (out.path.empty() || out.path.front() != '/') {
        scope.Add(Join(path, "path"), "must start with '/'");
      } else if (out.path.find_first_of("?#") != std::string::npos) {
        scope.Add(Join(path, "path"), "must not contain a query string or fragment");
      }
      break;
    case xds::RouteMatch::kSafeRegex:
      out.path_kind = route::RouteMatch::PathKind::kRegex;
      out.path.clear();
      out.regex = CompileRegex(scope, Join(path, "safe_regex"), route_name, in.safe_regex(),
                               /*case_sensitive=*/!in.case_insensitive());
      break;
    case xds::RouteMatch::kPathSeparatedPrefix: {
      out.path_kind = route::RouteMatch::PathKind::kSegmentPrefix;
      absl::string_view prefix = in.path_separated_prefix();
      if (prefix.empty() || prefix.front() != '/') {
        scope.Add(Join(path, "path_separated_prefix"), "must start with '/'");
      } else if (prefix.find_first_of("?#") != absl::string_view::npos) {
        scope.Add(Join(path, "path_separated_prefix"),
                  "must not contain a query string or fragment");
      }
      // Compared by whole segments: "/v2/" is "/v2", and "/" (stored empty) matches every path.
      while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
      out.path = std::string(prefix);
      break;
    }
    default:
      scope.Add(path, "needs prefix, path, safe_regex or path_separated_prefix");
  }
  if (out.path.find_first_of("?#") != std::string::npos &&
      in.path_specifier_case() == xds::RouteMatch::kPrefix) {
    scope.Add(Join(path, "prefix"), "must not contain a query string or fragment");
  }
  out.case_insensitive = in.case_insensitive();
  for (int i = 0; i < in.headers_size(); ++i) {
    const xds::HeaderMatcher& hm = in.headers(i);
    const std::string item = Index(Join(path, "headers"), i);
    route::HeaderMatcher matcher;
    matcher.name = absl::AsciiStrToLower(hm.name());
    absl::string_view bare = matcher.name;
    if (!bare.empty() && bare.front() == ':') bare.remove_prefix(1);
    if (matcher.name.empty()) {
      scope.Add(Join(item, "name"), "must not be empty");
    } else if (!IsHttpToken(bare)) {
      scope.Add(Join(item, "name"), absl::StrCat(Quote(hm.name()), " is not a header name"));
    }
    switch (hm.match_case()) {
      case xds::HeaderMatcher::kExact:
        matcher.kind = route::HeaderMatcher::Kind::kExact;
        matcher.value = hm.exact();
        break;
      case xds::HeaderMatcher::kPrefix:
        matcher.kind = route::HeaderMatcher::Kind::kPrefix;
        matcher.value = hm.prefix();
        if (matcher.value.empty()) {
          scope.Add(Join(item, "prefix"), "must not be empty (use present: true)");
        }
        break;
      case xds::HeaderMatcher::kPresent:
        matcher.kind = route::HeaderMatcher::Kind::kPresent;
        matcher.present = hm.present();
        break;
      case xds::HeaderMatcher::kSafeRegex:
        matcher.kind = route::HeaderMatcher::Kind::kRegex;
        matcher.regex = CompileRegex(scope, Join(item, "safe_regex"), route_name, hm.safe_regex());
        break;
      default:
        scope.Add(item, "needs exact, prefix, safe_regex or present");
    }
    matcher.invert = hm.invert();
    out.headers.push_back(std::move(matcher));
  }
  for (int i = 0; i < in.methods_size(); ++i) {
    if (!IsHttpToken(in.methods(i))) {
      scope.Add(Index(Join(path, "methods"), i),
                absl::StrCat(Quote(in.methods(i)), " is not a method"));
    }
    out.methods.push_back(in.methods(i));
  }
  for (int i = 0; i < in.query_parameters_size(); ++i) {
    const xds::QueryParameterMatcher& qm = in.query_parameters(i);
    const std::string item = Index(Join(path, "query_parameters"), i);
    route::QueryParameterMatcher matcher;
    matcher.name = qm.name();
    if (matcher.name.empty()) scope.Add(Join(item, "name"), "must not be empty");
    switch (qm.match_case()) {
      case xds::QueryParameterMatcher::kExact:
        matcher.kind = route::QueryParameterMatcher::Kind::kExact;
        matcher.value = qm.exact();
        break;
      case xds::QueryParameterMatcher::kSafeRegex:
        matcher.kind = route::QueryParameterMatcher::Kind::kRegex;
        matcher.regex = CompileRegex(scope, Join(item, "safe_regex"), route_name, qm.safe_regex());
        break;
      case xds::QueryParameterMatcher::kPresent:
        matcher.kind = route::QueryParameterMatcher::Kind::kPresent;
        if (!qm.present()) {
          scope.Add(Join(item, "present"), "must be true (an absent parameter cannot be matched)");
        }
        break;
      default:
        scope.Add(item, "needs exact, safe_regex or present");
    }
    out.query_parameters.push_back(std::move(matcher));
  }
}

// prefix_rewrite replaces what a prefix matched: a pattern match has no prefix to replace.
void CheckPrefixRewriteMatch(Errors::Scope& scope, const std::string& path,
                             const xds::RouteMatch& match, absl::string_view prefix_rewrite) {
  if (!prefix_rewrite.empty() && match.path_specifier_case() == xds::RouteMatch::kSafeRegex) {
    scope.Add(path,
              "needs a prefix, path or path_separated_prefix match (the match is safe_regex)");
  }
}

// Sticky sessions of a route action whose clusters and match are already translated.
void TranslateSessionPersistence(Errors::Scope& scope, const std::string& path,
                                 const xds::SessionPersistence& in, const route::RouteMatch& match,
                                 route::RouteAction& action) {
  constexpr size_t kMaxSessionNameLength = 128;
  auto session = std::make_shared<route::SessionPersistence>();
  // A value a later release added is refused, never read as COOKIE / SESSION.
  if (!xds::SessionPersistence::Type_IsValid(in.type())) {
    scope.Add(Join(path, "type"), absl::StrCat("unknown value ", in.type()));
  }
  if (!xds::SessionPersistence::CookieLifetime_IsValid(in.cookie_lifetime())) {
    scope.Add(Join(path, "cookie_lifetime"), absl::StrCat("unknown value ", in.cookie_lifetime()));
  }
  const bool header = in.type() == xds::SessionPersistence::HEADER;
  session->type =
      header ? route::SessionPersistence::Type::kHeader : route::SessionPersistence::Type::kCookie;
  session->name = in.name().empty() ? std::string(route::kDefaultSessionName) : in.name();
  if (header) session->name = absl::AsciiStrToLower(session->name);
  if (!IsHttpToken(session->name) || session->name.size() > kMaxSessionNameLength) {
    scope.Add(Join(path, "name"),
              absl::StrCat(Quote(in.name()), " is not a ", header ? "header" : "cookie",
                           " name (a token of at most ", kMaxSessionNameLength, " characters)"));
  }
  ReadDuration(scope, Join(path, "absolute_timeout"), in.has_absolute_timeout(),
               in.absolute_timeout(), DurationRule::kNonNegative, &session->absolute_timeout);
  ReadDuration(scope, Join(path, "idle_timeout"), in.has_idle_timeout(), in.idle_timeout(),
               DurationRule::kNonNegative, &session->idle_timeout);
  session->permanent_cookie = in.cookie_lifetime() == xds::SessionPersistence::PERMANENT;
  if (session->permanent_cookie && session->absolute_timeout <= Duration::zero()) {
    scope.Add(Join(path, "absolute_timeout"), "required with cookie_lifetime PERMANENT");
  }
  if (in.cookie_path().empty()) {
    session->cookie_path = route::DefaultCookiePath(match);
  } else if (!route::ValidSessionCookiePath(in.cookie_path())) {
    scope.Add(Join(path, "cookie_path"),
              absl::StrCat(Quote(in.cookie_path()),
                           " must start with '/' and hold no spaces, control characters or ';'"));
  } else {
    session->cookie_path = in.cookie_path();
  }
  const size_t count = action.weighted_clusters.empty() ? 1 : action.weighted_clusters.size();
  for (size_t i = 0; i < count; ++i) {
    const std::string& name = route::ClusterAt(action, i);
    session->cluster_keys.push_back(
        name == route::kMissingBackendCluster ? 0 : cluster::SessionKey(name));
  }
  action.session = std::move(session);
}

route::RouteEntry TranslateRoute(Errors::Scope& scope, const std::string& path,
                                 const xds::Route& in, const ClusterNames& clusters,
                                 const resilience::RetryPolicyConfig& vhost_retry,
                                 SourceNames& names) {
  route::RouteEntry out;
  out.name = in.name();
  if (in.has_source()) {
    out.source =
        names.Intern(PolicySourceName(scope, Join(path, "source"), in.source(), /*route=*/true));
    if (!out.source.empty()) {
      out.source_rule = std::max(-1, in.source().rule());
      out.source_match = std::max(-1, in.source().match());
    }
  }
  if (!in.has_match()) {
    scope.Add(Join(path, "match"), "required");
  } else {
    TranslateRouteMatch(scope, Join(path, "match"), in.name(), in.match(), out.match);
  }
  switch (in.action_case()) {
    case xds::Route::kRoute: {
      route::RouteAction action;
      TranslateRouteAction(scope, Join(path, "route"), in.route(), clusters, vhost_retry, names,
                           action);
      if (in.route().has_session_persistence()) {
        TranslateSessionPersistence(scope, Join(path, "route.session_persistence"),
                                    in.route().session_persistence(), out.match, action);
      }
      CheckPrefixRewriteMatch(scope, Join(path, "route.prefix_rewrite"), in.match(),
                              in.route().prefix_rewrite());
      out.action = std::move(action);
      break;
    }
    case xds::Route::kRedirect: {
      route::RedirectAction action;
      TranslateRedirect(scope, Join(path, "redirect"), in.redirect(), action);
      CheckPrefixRewriteMatch(scope, Join(path, "redirect.prefix_rewrite"), in.match(),
                              in.redirect().prefix_rewrite());
      out.action = std::move(action);
      break;
    }
    case xds::Route::kDirectResponse: {
      route::DirectResponseAction action;
      action.status = in.direct_response().status();
      if (action.status < 200 || action.status > 599) {
        scope.Add(Join(path, "direct_response.status"), "must be in [200, 599]");
      }
      action.body = in.direct_response().body();
      if (action.body.size() > kMaxDirectResponseBody) {
        scope.Add(Join(path, "direct_response.body"), "must be at most 64 KiB");
      }
      out.action = std::move(action);
      break;
    }
    default:
      scope.Add(path, "needs one of route, redirect, direct_response");
  }
  // Most routes have none of these: the extras are made only for one that has.
  if (route::HeaderMutations headers = TranslateMutations(scope, path, in); !headers.empty()) {
    out.extras.mut().headers = std::move(headers);
  }
  if (in.has_fault()) {
    route::RouteExtras& extras = out.extras.mut();
    extras.fault = TranslateFault(scope, Join(path, "fault"), in.fault());
    extras.fault_header_triggered = in.fault().header_triggered();
  }
  if (in.has_rate_limit()) {
    route::RouteExtras& extras = out.extras.mut();
    TranslateRateLimit(scope, Join(path, "rate_limit"), in.rate_limit(), extras.rate_limit,
                       extras.rate_limiter);
  }
  if (in.has_cors()) out.extras.mut().cors = TranslateCors(scope, Join(path, "cors"), in.cors());
  return out;
}

}  // namespace

std::optional<route::RouteConfig> TranslateRouteConfig(Errors::Scope& scope,
                                                       const xds::RouteConfiguration& in,
                                                       const ClusterNames& clusters,
                                                       SourceNames& names) {
  const size_t before = scope.count();
  route::RouteConfig out;
  out.name = in.name();
  out.headers = TranslateConfigHeaders(scope, "", in);
  absl::flat_hash_map<std::string, int> vhost_names;
  for (int v = 0; v < in.virtual_hosts_size(); ++v) {
    const xds::VirtualHost& vh = in.virtual_hosts(v);
    const std::string path = Index("virtual_hosts", v);
    if (ValidName(vh.name())) {
      if (auto [it, inserted] = vhost_names.emplace(vh.name(), v); !inserted) {
        scope.Add(Join(path, "name"), absl::StrCat(Quote(vh.name()), " is already used by ",
                                                   Index("virtual_hosts", it->second)));
      }
    }
    out.virtual_hosts.push_back(TranslateVirtualHost(scope, path, vh, clusters, names));
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

route::HeaderMutations TranslateConfigHeaders(Errors::Scope& scope, const std::string& path,
                                              const xds::RouteConfiguration& in) {
  return TranslateMutations(scope, path, in);
}

route::VirtualHostConfig TranslateVirtualHost(Errors::Scope& scope, const std::string& path,
                                              const xds::VirtualHost& vh,
                                              const ClusterNames& clusters, SourceNames& names) {
  route::VirtualHostConfig vhost;
  vhost.name = vh.name();
  if (!ValidName(vh.name())) {
    scope.Add(Join(path, "name"), vh.name().empty()
                                      ? "must not be empty"
                                      : "must not contain spaces or control characters");
  }
  if (vh.domains().empty()) scope.Add(Join(path, "domains"), "must not be empty");
  // Each list sized once: the snapshot holds the virtual host as built (ServiceRoutes' for as
  // long as their Service is called), and a doubling vector keeps up to twice its items' room.
  vhost.domains.reserve(vh.domains_size());
  vhost.destinations.reserve(vh.destinations_size());
  vhost.routes.reserve(vh.routes_size());
  for (int d = 0; d < vh.domains_size(); ++d) {
    std::string domain = absl::AsciiStrToLower(vh.domains(d));
    scope.Add(Index(Join(path, "domains"), d), route::ValidateDomain(domain));
    vhost.domains.push_back(std::move(domain));
  }
  if (vh.destination_port() > 65535) {
    scope.Add(Join(path, "destination_port"), "must be at most 65535");
  }
  vhost.destination_port = vh.destination_port();
  for (int d = 0; d < vh.destinations_size(); ++d) {
    absl::StatusOr<net::Address> address = net::Address::Parse(vh.destinations(d));
    if (!address.ok() || address->port() == 0) {
      scope.Add(Index(Join(path, "destinations"), d),
                absl::StrCat(Quote(vh.destinations(d)),
                             " is not an address with a port (\"10.96.0.5:80\", "
                             "\"[fd00::5]:80\")"));
      continue;
    }
    vhost.destinations.push_back(address->ToString());
  }
  resilience::RetryPolicyConfig vhost_retry;
  if (vh.has_retry_policy()) {
    vhost_retry = TranslateRetryPolicy(scope, Join(path, "retry_policy"), vh.retry_policy());
  }
  for (int r = 0; r < vh.routes_size(); ++r) {
    vhost.routes.push_back(TranslateRoute(scope, Index(Join(path, "routes"), r), vh.routes(r),
                                          clusters, vhost_retry, names));
  }
  if (route::HeaderMutations headers = TranslateMutations(scope, path, vh); !headers.empty()) {
    vhost.extras.mut().headers = std::move(headers);
  }
  if (!vh.gateway_listener().empty()) {
    if (!ValidName(vh.gateway_listener()) || absl::StrContains(vh.gateway_listener(), '/')) {
      scope.Add(Join(path, "gateway_listener"),
                "must be a name: not empty, without spaces, control characters or '/'");
    } else {
      vhost.extras.mut().gateway_listener = names.Intern(vh.gateway_listener());
    }
  }
  return vhost;
}

void TranslateRateLimit(Errors::Scope& scope, const std::string& path, const xds::RateLimit& rl,
                        std::optional<resilience::TokenBucketConfig>& config,
                        std::shared_ptr<resilience::LocalRateLimiter>& limiter) {
  if (rl.requests_per_second() == 0 && rl.burst() == 0) {
    scope.Add(path, "needs requests_per_second or burst");
  }
  if (rl.max_principals() != 0 && !rl.per_principal()) {
    scope.Add(Join(path, "max_principals"), "only applies with per_principal: true");
  }
  config = resilience::TokenBucketConfig{rl.requests_per_second(), rl.burst()};
  std::optional<uint32_t> max_principals;
  if (rl.per_principal()) {
    max_principals = rl.max_principals() != 0 ? rl.max_principals() : kDefaultMaxPrincipals;
  }
  std::string source;
  if (rl.has_source()) {
    source = PolicySourceName(scope, Join(path, "source"), rl.source(), /*route=*/false);
  }
  limiter =
      std::make_shared<resilience::LocalRateLimiter>(*config, max_principals, std::move(source));
}

}  // namespace meshlet::sidecar::config::translate_internal

namespace meshlet::sidecar::config {

absl::string_view ValidRetryOnValues() { return translate_internal::kRetryOnValues; }

}  // namespace meshlet::sidecar::config
