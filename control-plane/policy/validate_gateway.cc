// One file on purpose: the Gateway API kinds (routes and their filters, ReferenceGrant,
// GatewayClass, Gateway, BackendTLSPolicy) share the anonymous namespace's name, hostname,
// reference and path checks, which would otherwise need a header of their own; each kind's entry
// point is a short function near the end. The route filters (CORS included) are the part to move
// out first.

#include "control-plane/policy/validate_gateway.h"

#include <re2/re2.h>

#include <map>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "common/config/field_path.h"
#include "common/http/cors_origin.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::policy::gateway_validation {
namespace {

namespace gw = ::meshlet::gateway;
using ::meshlet::config::Index;
using ::meshlet::config::Join;
using ::meshlet::config::Quote;

// The API's list sizes (standard channel CRDs).
constexpr int kMaxParentRefs = 32;
constexpr int kMaxHostnames = 16;
constexpr int kMaxRules = 16;
constexpr int kMaxMatches = 64;
constexpr int kMaxMatchesPerRoute = 128;
constexpr int kMaxFilters = 16;
constexpr int kMaxBackendRefs = 16;
constexpr int kMaxHeaderMatches = 16;
constexpr int kMaxHeaderActions = 16;
constexpr int kMaxGrantEntries = 16;
constexpr int kMaxListeners = 64;        // Gateway spec.listeners
constexpr int kMaxCertificateRefs = 64;  // a listener's tls.certificateRefs
constexpr int kMaxWeight = 1000000;
constexpr int kMaxBackendTlsTargetRefs = 16;
constexpr int kMaxBackendTlsCaRefs = 8;
constexpr int kMaxBackendTlsSans = 5;
constexpr int kMaxBackendTlsOptions = 16;

// Upstream's patterns, compiled once.
const RE2& Pattern(absl::string_view name) {
  static const auto* patterns = [] {
    auto* out = new std::map<std::string, std::unique_ptr<RE2>, std::less<>>;
    for (const auto& [key, text] : std::vector<std::pair<const char*, const char*>>{
             {"dns-subdomain",
              R"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)"},
             {"hostname",
              R"((\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)"},
             {"kind", R"([a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?)"},
             {"namespace", R"([a-z0-9]([-a-z0-9]*[a-z0-9])?)"},
             {"header-name", R"([A-Za-z0-9!#$%&'*+\-.^_`|~]+)"},
             {"path", R"((?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+)"},
             {"duration", R"(([0-9]{1,5}(h|m|s|ms)){1,4})"},
             {"grpc-service", R"((?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*)"},
             {"grpc-method", R"([A-Za-z_][A-Za-z_0-9]*)"},
             {"absolute-uri", R"((([^:/?#]+):)(//([^/?#]*))([^?#]*)(\?([^#]*))?(#(.*))?)"},
             {"well-known-ca",
              R"(System|([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)"
              R"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]))"},
         }) {
      auto re = std::make_unique<RE2>(text);
      CHECK(re->ok()) << key << ": " << re->error();
      out->emplace(key, std::move(re));
    }
    return out;
  }();
  auto it = patterns->find(name);
  CHECK(it != patterns->end()) << name;
  return *it->second;
}

bool Matches(absl::string_view value, absl::string_view pattern) {
  return RE2::FullMatch(re2::StringPiece(value.data(), value.size()), Pattern(pattern));
}

class Checker {
 public:
  explicit Checker(ValidationResult& result) : result_(result) {}

  void Error(absl::string_view field, absl::string_view message) {
    result_.errors.push_back({std::string(field), std::string(message)});
  }
  void Warn(absl::string_view field, absl::string_view message) {
    result_.warnings.push_back(absl::StrCat(field, ": ", message));
  }

  void MaxItems(absl::string_view path, int size, int max) {
    if (size > max) Error(path, absl::StrCat("at most ", max, " items (has ", size, ")"));
  }

  void Length(absl::string_view path, absl::string_view value, size_t min, size_t max) {
    if (value.size() < min) {
      Error(path, min == 1 ? "required" : absl::StrCat("at least ", min, " characters"));
    } else if (value.size() > max) {
      Error(path, absl::StrCat("at most ", max, " characters"));
    }
  }

  // Group: "" (core) or a DNS subdomain.
  void Group(absl::string_view path, const std::string& group) {
    if (group.size() > 253) {
      Error(path, "at most 253 characters");
    } else if (!group.empty() && !Matches(group, "dns-subdomain")) {
      Error(path, absl::StrCat(Quote(group),
                               " is not an API group (empty for core, or a DNS "
                               "subdomain such as gateway.networking.k8s.io)"));
    }
  }

  void Kind(absl::string_view path, const std::string& kind, bool required) {
    if (kind.empty()) {
      if (required) Error(path, "required");
      return;
    }
    if (kind.size() > 63 || !Matches(kind, "kind")) {
      Error(path, absl::StrCat(Quote(kind),
                               " is not a kind (a letter, then letters, digits and '-', at most "
                               "63 characters)"));
    }
  }

  void Namespace(absl::string_view path, const std::string& ns, bool required) {
    if (ns.empty()) {
      if (required) Error(path, "required");
      return;
    }
    if (ns.size() > 63 || !Matches(ns, "namespace")) {
      Error(path, absl::StrCat(Quote(ns), " is not a namespace (a DNS label)"));
    }
  }

  void ObjectName(absl::string_view path, const std::string& name, bool required) {
    if (name.empty()) {
      if (required) Error(path, "required");
      return;
    }
    Length(path, name, 1, 253);
  }

  void SectionName(absl::string_view path, const std::string& name) {
    if (name.empty()) return;
    if (name.size() > 253 || !Matches(name, "dns-subdomain")) {
      Error(path, absl::StrCat(Quote(name),
                               " must be lowercase letters, digits, '-' and '.', start and end "
                               "with a letter or digit, at most 253 characters"));
    }
  }

  void PortNumber(absl::string_view path, bool has, int32_t port) {
    if (has && (port < 1 || port > 65535)) Error(path, "must be between 1 and 65535");
  }

  void Hostnames(absl::string_view path,
                 const google::protobuf::RepeatedPtrField<std::string>& hs) {
    MaxItems(path, hs.size(), kMaxHostnames);
    for (int i = 0; i < hs.size(); ++i) {
      const std::string& h = hs[i];
      if (h.empty() || h.size() > 253 || !Matches(h, "hostname")) {
        Error(Index(path, i),
              absl::StrCat(Quote(h),
                           " is not a hostname (lowercase DNS labels joined by '.', optionally "
                           "starting with \"*.\"; no IP address, no port)"));
      }
    }
  }

  void ParentRefs(absl::string_view path,
                  const google::protobuf::RepeatedPtrField<gw::ParentReference>& refs) {
    MaxItems(path, refs.size(), kMaxParentRefs);
    for (int i = 0; i < refs.size(); ++i) {
      const gw::ParentReference& p = refs[i];
      const std::string at = Index(path, i);
      Group(Join(at, "group"), p.group());
      Kind(Join(at, "kind"), p.kind(), false);
      Namespace(Join(at, "namespace"), p.namespace_(), false);
      ObjectName(Join(at, "name"), p.name(), true);
      SectionName(Join(at, "sectionName"), p.section_name());
      PortNumber(Join(at, "port"), p.has_port(), p.port());
    }
    // The CRD's CEL rules: two references to one parent must each name a sectionName or a port
    // (both the same way), and differ in them. Defaults apply first: group
    // gateway.networking.k8s.io, kind Gateway.
    auto parent = [](const gw::ParentReference& p) {
      return std::make_tuple(
          p.group().empty() && p.kind().empty() ? std::string(kGatewayGroup) : p.group(),
          p.kind().empty() ? std::string("Gateway") : p.kind(), p.name(), p.namespace_());
    };
    for (int i = 0; i < refs.size(); ++i) {
      for (int j = 0; j < i; ++j) {
        const gw::ParentReference& a = refs[j];
        const gw::ParentReference& b = refs[i];
        if (parent(a) != parent(b)) continue;
        const bool a_port = a.has_port() && a.port() != 0;
        const bool b_port = b.has_port() && b.port() != 0;
        if (a.section_name().empty() != b.section_name().empty() || a_port != b_port) {
          Error(Index(path, i),
                absl::StrCat("names the same parent as ", Index(path, j),
                             ": sectionName or port must be specified, the same way, when "
                             "parentRefs includes 2 or more references to the same parent"));
        } else if (a.section_name() == b.section_name() && a.port() == b.port()) {
          Error(Index(path, i),
                absl::StrCat("duplicates ", Index(path, j),
                             ": sectionName or port must be unique when parentRefs includes 2 "
                             "or more references to the same parent"));
        }
      }
    }
  }

  // An object reference to a backend (BackendObjectReference and what embeds it).
  void BackendObject(absl::string_view path, const std::string& group, const std::string& kind,
                     const std::string& name, const std::string& ns, bool has_port, int32_t port) {
    Group(Join(path, "group"), group);
    Kind(Join(path, "kind"), kind, false);
    ObjectName(Join(path, "name"), name, true);
    Namespace(Join(path, "namespace"), ns, false);
    PortNumber(Join(path, "port"), has_port, port);
    if (group.empty() && (kind.empty() || kind == "Service") && !has_port) {
      Error(Join(path, "port"), "required for a Service reference");
    }
  }

  void Weight(absl::string_view path, bool has, int32_t weight) {
    if (has && (weight < 0 || weight > kMaxWeight)) {
      Error(path, absl::StrCat("must be between 0 and ", kMaxWeight));
    }
  }

  void HeaderName(absl::string_view path, const std::string& name) {
    if (name.empty()) {
      Error(path, "required");
    } else if (name.size() > 256 || !Matches(name, "header-name")) {
      Error(path, absl::StrCat(Quote(name),
                               " is not a header name (letters, digits and !#$%&'*+-.^_`|~, at "
                               "most 256 characters)"));
    }
  }

  // A regular expression the sidecar matches with RE2.
  void Regex(absl::string_view path, const std::string& pattern) {
    RE2::Options options;
    options.set_log_errors(false);
    RE2 re(pattern, options);
    if (!re.ok()) {
      Error(path,
            absl::StrCat(Quote(pattern), " is not a regular expression RE2 accepts: ", re.error()));
    }
  }

  void MatchType(absl::string_view path, const std::string& type) {
    if (!type.empty() && type != "Exact" && type != "RegularExpression") {
      Error(path, absl::StrCat(Quote(type), " is not one of Exact, RegularExpression"));
    }
  }

  // HTTPHeaderMatch and GRPCHeaderMatch lists: names unique, case-insensitively.
  template <typename Match>
  void HeaderMatches(absl::string_view path,
                     const google::protobuf::RepeatedPtrField<Match>& headers) {
    MaxItems(path, headers.size(), kMaxHeaderMatches);
    std::map<std::string, int> seen;
    for (int i = 0; i < headers.size(); ++i) {
      const Match& h = headers[i];
      const std::string at = Index(path, i);
      MatchType(Join(at, "type"), h.type());
      HeaderName(Join(at, "name"), h.name());
      Length(Join(at, "value"), h.value(), 1, 4096);
      if (h.type() == "RegularExpression" && !h.value().empty())
        Regex(Join(at, "value"), h.value());
      auto [it, fresh] = seen.emplace(absl::AsciiStrToLower(h.name()), i);
      if (!fresh && !h.name().empty()) {
        Error(Join(at, "name"),
              absl::StrCat(Quote(h.name()), " is matched already by ", Index(path, it->second),
                           " (header names are case-insensitive)"));
      }
    }
  }

  void HeaderFilter(absl::string_view path, const gw::HTTPHeaderFilter& f) {
    MaxItems(Join(path, "set"), f.set_size(), kMaxHeaderActions);
    MaxItems(Join(path, "add"), f.add_size(), kMaxHeaderActions);
    MaxItems(Join(path, "remove"), f.remove_size(), kMaxHeaderActions);
    // One action per header name in a filter (the former webhook's rule; names are
    // case-insensitive).
    std::map<std::string, std::string> acted;
    auto once = [&](const std::string& at, const std::string& name) {
      if (name.empty()) return;
      auto [it, fresh] = acted.emplace(absl::AsciiStrToLower(name), at);
      if (!fresh) {
        Error(at, absl::StrCat("header ", Quote(name), " already has an action in this filter (",
                               it->second, ")"));
      }
    };
    for (const auto& [field, list] :
         {std::pair<const char*, const google::protobuf::RepeatedPtrField<gw::HTTPHeader>*>{
              "set", &f.set()},
          {"add", &f.add()}}) {
      for (int i = 0; i < list->size(); ++i) {
        const gw::HTTPHeader& h = (*list)[i];
        const std::string at = Index(Join(path, field), i);
        HeaderName(Join(at, "name"), h.name());
        Length(Join(at, "value"), h.value(), 1, 4096);
        once(at, h.name());
      }
    }
    for (int i = 0; i < f.remove_size(); ++i) {
      const std::string at = Index(Join(path, "remove"), i);
      HeaderName(at, f.remove(i));
      once(at, f.remove(i));
    }
  }

  void Mirror(absl::string_view path, const gw::HTTPRequestMirrorFilter& m) {
    const gw::BackendObjectReference& b = m.backend_ref();
    BackendObject(Join(path, "backendRef"), b.group(), b.kind(), b.name(), b.namespace_(),
                  b.has_port(), b.port());
    if (m.has_percent() && (m.percent() < 0 || m.percent() > 100)) {
      Error(Join(path, "percent"), "must be between 0 and 100");
    }
    if (m.has_fraction()) {
      const gw::Fraction& f = m.fraction();
      const std::string at = Join(path, "fraction");
      if (f.numerator() < 0) Error(Join(at, "numerator"), "must not be negative");
      if (f.has_denominator() && f.denominator() < 1) {
        Error(Join(at, "denominator"), "must be at least 1");
      }
      if (f.numerator() > (f.has_denominator() ? f.denominator() : 100)) {
        Error(at, "numerator must be less than or equal to denominator");
      }
      if (m.has_percent()) Error(path, "only one of percent or fraction may be specified");
    }
  }

  void PreciseHostname(absl::string_view path, const std::string& host) {
    if (host.empty()) return;
    if (host.size() > 253 || !Matches(host, "dns-subdomain")) {
      Error(path, absl::StrCat(Quote(host),
                               " is not a hostname (lowercase DNS labels joined by '.', no "
                               "wildcard, no port)"));
    }
  }

  void PathModifier(absl::string_view path, const gw::HTTPPathModifier& m) {
    const std::string& type = m.type();
    if (type.empty()) {
      Error(Join(path, "type"), "required: ReplaceFullPath or ReplacePrefixMatch");
    } else if (type != "ReplaceFullPath" && type != "ReplacePrefixMatch") {
      Error(Join(path, "type"),
            absl::StrCat(Quote(type), " is not one of ReplaceFullPath, ReplacePrefixMatch"));
    }
    // Proto3 strings cannot tell "" from unset: an empty value counts as unset.
    if (type == "ReplaceFullPath" && m.replace_full_path().empty()) {
      Error(Join(path, "replaceFullPath"), "must be specified when type is ReplaceFullPath");
    }
    if (type == "ReplacePrefixMatch" && m.replace_prefix_match().empty()) {
      Error(Join(path, "replacePrefixMatch"), "must be specified when type is ReplacePrefixMatch");
    }
    if (!m.replace_full_path().empty() && type != "ReplaceFullPath") {
      Error(Join(path, "replaceFullPath"), "type must be ReplaceFullPath when it is set");
    }
    if (!m.replace_prefix_match().empty() && type != "ReplacePrefixMatch") {
      Error(Join(path, "replacePrefixMatch"), "type must be ReplacePrefixMatch when it is set");
    }
    Length(Join(path, "replaceFullPath"), m.replace_full_path(), 0, 1024);
    Length(Join(path, "replacePrefixMatch"), m.replace_prefix_match(), 0, 1024);
    for (const auto& [field, value] :
         {std::pair<const char*, const std::string&>{"replaceFullPath", m.replace_full_path()},
          {"replacePrefixMatch", m.replace_prefix_match()}}) {
      if (!value.empty() && value[0] != '/') Error(Join(path, field), "must start with '/'");
    }
  }

  void Redirect(absl::string_view path, const gw::HTTPRequestRedirectFilter& r) {
    if (!r.scheme().empty() && r.scheme() != "http" && r.scheme() != "https") {
      Error(Join(path, "scheme"), absl::StrCat(Quote(r.scheme()), " is not one of http, https"));
    }
    PreciseHostname(Join(path, "hostname"), r.hostname());
    if (r.has_path()) PathModifier(Join(path, "path"), r.path());
    PortNumber(Join(path, "port"), r.has_port(), r.port());
    if (r.has_status_code()) {
      static const std::set<int32_t> kCodes = {301, 302, 303, 307, 308};
      if (!kCodes.count(r.status_code())) {
        Error(Join(path, "statusCode"),
              absl::StrCat(r.status_code(), " is not one of 301, 302, 303, 307, 308"));
      }
    }
  }

  struct FilterFields {
    const char* type;
    const char* field;
    bool set;
  };

  // A filter's `type` and the one field that goes with it. `types`: the types of the kind.
  void FilterType(absl::string_view path, const std::string& type,
                  const std::vector<FilterFields>& fields) {
    std::vector<std::string> names;
    for (const FilterFields& f : fields) names.push_back(f.type);
    bool known = false;
    for (const FilterFields& f : fields) known |= type == f.type;
    if (type.empty()) {
      Error(Join(path, "type"), absl::StrCat("required: one of ", absl::StrJoin(names, ", ")));
    } else if (!known) {
      Error(Join(path, "type"),
            absl::StrCat(Quote(type), " is not one of ", absl::StrJoin(names, ", ")));
    }
    for (const FilterFields& f : fields) {
      if (f.set && type != f.type) {
        Error(Join(path, f.field), absl::StrCat("must be unset when type is not ", f.type));
      } else if (!f.set && type == f.type && f.field[0] != '\0') {
        Error(Join(path, f.field), absl::StrCat("must be specified when type is ", f.type));
      }
    }
  }

  void HttpFilter(absl::string_view path, const gw::HTTPRouteFilter& f) {
    FilterType(
        path, f.type(),
        {{"RequestHeaderModifier", "requestHeaderModifier", f.has_request_header_modifier()},
         {"ResponseHeaderModifier", "responseHeaderModifier", f.has_response_header_modifier()},
         {"RequestMirror", "requestMirror", f.has_request_mirror()},
         {"RequestRedirect", "requestRedirect", f.has_request_redirect()},
         {"URLRewrite", "urlRewrite", f.has_url_rewrite()},
         {"ExtensionRef", "extensionRef", f.has_extension_ref()},
         {"CORS", "cors", f.has_cors()}});
    if (f.has_request_header_modifier()) {
      HeaderFilter(Join(path, "requestHeaderModifier"), f.request_header_modifier());
    }
    if (f.has_response_header_modifier()) {
      HeaderFilter(Join(path, "responseHeaderModifier"), f.response_header_modifier());
    }
    if (f.has_request_mirror()) Mirror(Join(path, "requestMirror"), f.request_mirror());
    if (f.has_request_redirect()) Redirect(Join(path, "requestRedirect"), f.request_redirect());
    if (f.has_url_rewrite()) {
      PreciseHostname(Join(path, "urlRewrite.hostname"), f.url_rewrite().hostname());
      if (f.url_rewrite().has_path()) {
        PathModifier(Join(path, "urlRewrite.path"), f.url_rewrite().path());
      }
    }
    if (f.has_extension_ref()) ExtensionRef(Join(path, "extensionRef"), f.extension_ref());
    if (f.has_cors()) Cors(Join(path, "cors"), f.cors());
  }

  // The CORS filter (HTTPCORSFilter): the API's list sizes, set semantics and enums; origins as
  // the sidecar reads them (common/http/cors_origin.h); "*" alone in a list.
  void Cors(absl::string_view path, const gw::HTTPCORSFilter& c) {
    const auto set = [&](absl::string_view field,
                         const google::protobuf::RepeatedPtrField<std::string>& list, int max,
                         bool fold_case) {
      const std::string at = Join(path, field);
      MaxItems(at, list.size(), max);
      std::map<std::string, int> seen;
      for (int i = 0; i < list.size(); ++i) {
        auto [it, fresh] = seen.emplace(fold_case ? absl::AsciiStrToLower(list[i]) : list[i], i);
        if (!fresh) {
          Error(Index(at, i),
                absl::StrCat(Quote(list[i]), " is listed already at ", Index(at, it->second)));
        }
        if (list[i] == "*" && list.size() > 1 && field != "exposeHeaders") {
          Error(Index(at, i), absl::StrCat("\"*\" cannot be listed alongside other values"));
        }
      }
    };
    set("allowOrigins", c.allow_origins(), 64, true);
    for (int i = 0; i < c.allow_origins_size(); ++i) {
      absl::StatusOr<http::OriginPattern> pattern = http::ParseOriginPattern(c.allow_origins(i));
      if (!pattern.ok()) Error(Index(Join(path, "allowOrigins"), i), pattern.status().message());
    }
    set("allowMethods", c.allow_methods(), 9, false);
    static const std::set<std::string> kMethods = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                                   "CONNECT", "OPTIONS", "TRACE", "PATCH", "*"};
    for (int i = 0; i < c.allow_methods_size(); ++i) {
      if (!kMethods.count(c.allow_methods(i))) {
        Error(Index(Join(path, "allowMethods"), i),
              absl::StrCat(Quote(c.allow_methods(i)),
                           " is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, "
                           "PATCH, * (methods are case-sensitive)"));
      }
    }
    for (const auto& [field, list] :
         {std::pair<const char*, const google::protobuf::RepeatedPtrField<std::string>*>{
              "allowHeaders", &c.allow_headers()},
          {"exposeHeaders", &c.expose_headers()}}) {
      set(field, *list, 64, true);
      for (int i = 0; i < list->size(); ++i) {
        if ((*list)[i] != "*") HeaderName(Index(Join(path, field), i), (*list)[i]);
      }
    }
    if (c.has_max_age() && c.max_age() < 1) {
      Error(Join(path, "maxAge"), absl::StrCat(c.max_age(), " must be at least 1 (seconds)"));
    }
  }

  void GrpcFilter(absl::string_view path, const gw::GRPCRouteFilter& f) {
    FilterType(
        path, f.type(),
        {{"ResponseHeaderModifier", "responseHeaderModifier", f.has_response_header_modifier()},
         {"RequestHeaderModifier", "requestHeaderModifier", f.has_request_header_modifier()},
         {"RequestMirror", "requestMirror", f.has_request_mirror()},
         {"ExtensionRef", "extensionRef", f.has_extension_ref()}});
    if (f.has_request_header_modifier()) {
      HeaderFilter(Join(path, "requestHeaderModifier"), f.request_header_modifier());
    }
    if (f.has_response_header_modifier()) {
      HeaderFilter(Join(path, "responseHeaderModifier"), f.response_header_modifier());
    }
    if (f.has_request_mirror()) Mirror(Join(path, "requestMirror"), f.request_mirror());
    if (f.has_extension_ref()) ExtensionRef(Join(path, "extensionRef"), f.extension_ref());
  }

  void ExtensionRef(absl::string_view path, const gw::LocalObjectReference& ref) {
    Group(Join(path, "group"), ref.group());
    Kind(Join(path, "kind"), ref.kind(), true);
    ObjectName(Join(path, "name"), ref.name(), true);
  }

  // The list rules of a filter list (a rule's or a backendRef's): at most one of each of
  // RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite and CORS, and not
  // both RequestRedirect and URLRewrite.
  template <typename Filter>
  void FilterList(absl::string_view path, const google::protobuf::RepeatedPtrField<Filter>& list) {
    MaxItems(path, list.size(), kMaxFilters);
    std::map<std::string, int> first;
    for (int i = 0; i < list.size(); ++i) {
      const std::string& type = list[i].type();
      if (type != "RequestHeaderModifier" && type != "ResponseHeaderModifier" &&
          type != "RequestRedirect" && type != "URLRewrite" && type != "CORS") {
        continue;
      }
      auto [it, fresh] = first.emplace(type, i);
      if (!fresh) {
        Error(Index(path, i), absl::StrCat(type, " filter cannot be repeated (",
                                           Index(path, it->second), " is one)"));
      }
    }
    if (first.count("RequestRedirect") && first.count("URLRewrite")) {
      Error(Index(path, std::max(first["RequestRedirect"], first["URLRewrite"])),
            "may specify either RequestRedirect or URLRewrite, but not both");
    }
  }

  // "0s" disables; -1 when absent or invalid (reported).
  int64_t Duration(absl::string_view path, const std::string& value) {
    if (value.empty()) return -1;
    int64_t ms = GatewayDurationMillis(value);
    if (ms < 0) {
      Error(path, absl::StrCat(Quote(value),
                               " is not a duration (1 to 4 numbers of up to 5 digits, each with a "
                               "unit h, m, s or ms, such as 10s or 1h30m)"));
    }
    return ms;
  }

  void SessionPersistence(absl::string_view path, const gw::SessionPersistence& s) {
    Length(Join(path, "sessionName"), s.session_name(), 0, 128);
    Duration(Join(path, "absoluteTimeout"), s.absolute_timeout());
    Duration(Join(path, "idleTimeout"), s.idle_timeout());
    if (!s.type().empty() && s.type() != "Cookie" && s.type() != "Header") {
      Error(Join(path, "type"), absl::StrCat(Quote(s.type()), " is not one of Cookie, Header"));
    }
    const std::string& lifetime = s.cookie_config().lifetime_type();
    if (!lifetime.empty() && lifetime != "Permanent" && lifetime != "Session") {
      Error(Join(path, "cookieConfig.lifetimeType"),
            absl::StrCat(Quote(lifetime), " is not one of Permanent, Session"));
    }
    if (lifetime == "Permanent" && s.absolute_timeout().empty()) {
      Error(Join(path, "absoluteTimeout"),
            "must be specified when cookieConfig.lifetimeType is Permanent");
    }
  }

  // Rule names: SectionName format, unique in the route.
  template <typename Rule>
  void RuleNames(absl::string_view path, const google::protobuf::RepeatedPtrField<Rule>& rules) {
    std::map<std::string, int> seen;
    for (int i = 0; i < rules.size(); ++i) {
      const std::string& name = rules[i].name();
      if (name.empty()) continue;
      const std::string at = Join(Index(path, i), "name");
      SectionName(at, name);
      auto [it, fresh] = seen.emplace(name, i);
      if (!fresh) {
        Error(at, absl::StrCat("rule name must be unique within the route (",
                               Index(path, it->second), " has it)"));
      }
    }
  }

  template <typename Rule>
  void RuleSizes(absl::string_view path, const google::protobuf::RepeatedPtrField<Rule>& rules) {
    MaxItems(path, rules.size(), kMaxRules);
    int total = 0;
    for (const Rule& rule : rules) total += rule.matches_size();
    if (total > kMaxMatchesPerRoute) {
      Error(path, absl::StrCat("the rules have ", total, " matches in all; at most ",
                               kMaxMatchesPerRoute, " are allowed in a route"));
    }
    RuleNames(path, rules);
  }

  void PathMatch(absl::string_view path, const gw::HTTPPathMatch& m) {
    const std::string type = m.type().empty() ? "PathPrefix" : m.type();
    const std::string value = m.has_value() ? m.value() : "/";
    const std::string at = Join(path, "value");
    if (type != "Exact" && type != "PathPrefix" && type != "RegularExpression") {
      Error(Join(path, "type"),
            absl::StrCat(Quote(type), " is not one of Exact, PathPrefix, RegularExpression"));
      return;
    }
    if (value.size() > 1024) {
      Error(at, "at most 1024 characters");
      return;
    }
    if (type == "RegularExpression") {
      if (value.empty()) {
        Error(at, "required");
      } else {
        Regex(at, value);
      }
      return;
    }
    if (value.empty() || value[0] != '/') {
      Error(at, absl::StrCat(Quote(value),
                             " must be an absolute path and start with '/' when "
                             "type is ",
                             type));
      return;
    }
    for (const char* bad : {"//", "/./", "/../", "%2f", "%2F", "#"}) {
      if (absl::StrContains(value, bad)) {
        Error(at, absl::StrCat(Quote(value), " must not contain '", bad, "' when type is ", type));
      }
    }
    for (const char* bad : {"/..", "/."}) {
      if (absl::EndsWith(value, bad)) {
        Error(at, absl::StrCat(Quote(value), " must not end with '", bad, "' when type is ", type));
      }
    }
    if (!Matches(value, "path")) {
      Error(at, absl::StrCat(Quote(value),
                             " has a character a path cannot have (allowed: letters, digits, "
                             "-/._~!$&'()*+,;=:@ and %XX escapes)"));
    }
  }

  void HttpMatch(absl::string_view path, const gw::HTTPRouteMatch& m) {
    if (m.has_path()) PathMatch(Join(path, "path"), m.path());
    HeaderMatches(Join(path, "headers"), m.headers());
    const std::string qp = Join(path, "queryParams");
    MaxItems(qp, m.query_params_size(), kMaxHeaderMatches);
    std::map<std::string, int> seen;
    for (int i = 0; i < m.query_params_size(); ++i) {
      const gw::HTTPQueryParamMatch& q = m.query_params(i);
      const std::string at = Index(qp, i);
      MatchType(Join(at, "type"), q.type());
      if (q.name().empty()) {
        Error(Join(at, "name"), "required");
      } else if (q.name().size() > 256 || !Matches(q.name(), "header-name")) {
        Error(Join(at, "name"), absl::StrCat(Quote(q.name()),
                                             " is not a query parameter name (letters, digits and "
                                             "!#$%&'*+-.^_`|~, at most 256 characters)"));
      }
      Length(Join(at, "value"), q.value(), 1, 1024);
      if (q.type() == "RegularExpression" && !q.value().empty())
        Regex(Join(at, "value"), q.value());
      auto [it, fresh] = seen.emplace(q.name(), i);
      if (!fresh && !q.name().empty()) {
        Error(Join(at, "name"),
              absl::StrCat(Quote(q.name()), " is matched already by ", Index(qp, it->second)));
      }
    }
    if (!m.method().empty()) {
      static const std::set<std::string> kMethods = {
          "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
      if (!kMethods.count(m.method())) {
        Error(Join(path, "method"),
              absl::StrCat(Quote(m.method()),
                           " is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, "
                           "PATCH"));
      }
    }
  }

  // ReplacePrefixMatch (in a redirect or a rewrite) needs exactly one match, a PathPrefix one.
  void ReplacePrefixNeedsOnePrefixMatch(
      absl::string_view path,
      const google::protobuf::RepeatedPtrField<gw::HTTPRouteFilter>& filters,
      const gw::HTTPRouteRule& rule) {
    for (int i = 0; i < filters.size(); ++i) {
      const gw::HTTPRouteFilter& f = filters[i];
      const gw::HTTPPathModifier* modifier =
          f.has_request_redirect() && f.request_redirect().has_path() ? &f.request_redirect().path()
          : f.has_url_rewrite() && f.url_rewrite().has_path()         ? &f.url_rewrite().path()
                                                                      : nullptr;
      if (modifier == nullptr || modifier->type() != "ReplacePrefixMatch") continue;
      const bool one_prefix =
          rule.matches_size() == 1 && rule.matches(0).has_path() &&
          (rule.matches(0).path().type().empty() || rule.matches(0).path().type() == "PathPrefix");
      if (!one_prefix) {
        Error(Index(path, i),
              absl::StrCat("with path.replacePrefixMatch in ",
                           f.has_request_redirect() ? "RequestRedirect" : "URLRewrite",
                           ", the rule must have exactly one match, with a PathPrefix path"));
      }
    }
  }

  void HttpRule(absl::string_view path, const gw::HTTPRouteRule& rule) {
    MaxItems(Join(path, "matches"), rule.matches_size(), kMaxMatches);
    for (int i = 0; i < rule.matches_size(); ++i) {
      HttpMatch(Index(Join(path, "matches"), i), rule.matches(i));
    }
    const std::string filters = Join(path, "filters");
    FilterList(filters, rule.filters());
    for (int i = 0; i < rule.filters_size(); ++i) HttpFilter(Index(filters, i), rule.filters(i));
    ReplacePrefixNeedsOnePrefixMatch(filters, rule.filters(), rule);
    const std::string backends = Join(path, "backendRefs");
    MaxItems(backends, rule.backend_refs_size(), kMaxBackendRefs);
    bool redirect = false;
    for (const gw::HTTPRouteFilter& f : rule.filters()) redirect |= f.has_request_redirect();
    if (redirect && rule.backend_refs_size() > 0) {
      Error(backends, "RequestRedirect filter must not be used together with backendRefs");
    }
    for (int i = 0; i < rule.backend_refs_size(); ++i) {
      const gw::HTTPBackendRef& b = rule.backend_refs(i);
      const std::string at = Index(backends, i);
      BackendObject(at, b.group(), b.kind(), b.name(), b.namespace_(), b.has_port(), b.port());
      Weight(Join(at, "weight"), b.has_weight(), b.weight());
      const std::string bf = Join(at, "filters");
      FilterList(bf, b.filters());
      for (int j = 0; j < b.filters_size(); ++j) HttpFilter(Index(bf, j), b.filters(j));
      ReplacePrefixNeedsOnePrefixMatch(bf, b.filters(), rule);
    }
    if (rule.has_timeouts()) {
      const std::string at = Join(path, "timeouts");
      const int64_t request = Duration(Join(at, "request"), rule.timeouts().request());
      const int64_t backend =
          Duration(Join(at, "backendRequest"), rule.timeouts().backend_request());
      if (request > 0 && backend > request) {
        Error(
            Join(at, "backendRequest"),
            absl::StrCat("backendRequest timeout cannot be longer than request timeout (",
                         rule.timeouts().backend_request(), " > ", rule.timeouts().request(), ")"));
      }
    }
    if (rule.has_retry()) {
      const std::string at = Join(path, "retry");
      for (int i = 0; i < rule.retry().codes_size(); ++i) {
        const int32_t code = rule.retry().codes(i);
        if (code < 400 || code > 599) {
          Error(Index(Join(at, "codes"), i), absl::StrCat(code, " is not between 400 and 599"));
        }
      }
      if (rule.retry().has_attempts() && rule.retry().attempts() < 0) {
        Error(Join(at, "attempts"), "must not be negative");
      }
      Duration(Join(at, "backoff"), rule.retry().backoff());
    }
    if (rule.has_session_persistence()) {
      SessionPersistence(Join(path, "sessionPersistence"), rule.session_persistence());
    }
  }

  void GrpcRule(absl::string_view path, const gw::GRPCRouteRule& rule) {
    const std::string matches = Join(path, "matches");
    MaxItems(matches, rule.matches_size(), kMaxMatches);
    for (int i = 0; i < rule.matches_size(); ++i) {
      const gw::GRPCRouteMatch& m = rule.matches(i);
      const std::string at = Index(matches, i);
      if (m.has_method()) GrpcMethod(Join(at, "method"), m.method());
      HeaderMatches(Join(at, "headers"), m.headers());
    }
    const std::string filters = Join(path, "filters");
    FilterList(filters, rule.filters());
    for (int i = 0; i < rule.filters_size(); ++i) GrpcFilter(Index(filters, i), rule.filters(i));
    const std::string backends = Join(path, "backendRefs");
    MaxItems(backends, rule.backend_refs_size(), kMaxBackendRefs);
    for (int i = 0; i < rule.backend_refs_size(); ++i) {
      const gw::GRPCBackendRef& b = rule.backend_refs(i);
      const std::string at = Index(backends, i);
      BackendObject(at, b.group(), b.kind(), b.name(), b.namespace_(), b.has_port(), b.port());
      Weight(Join(at, "weight"), b.has_weight(), b.weight());
      const std::string bf = Join(at, "filters");
      FilterList(bf, b.filters());
      for (int j = 0; j < b.filters_size(); ++j) GrpcFilter(Index(bf, j), b.filters(j));
    }
    if (rule.has_session_persistence()) {
      SessionPersistence(Join(path, "sessionPersistence"), rule.session_persistence());
    }
  }

  void GrpcMethod(absl::string_view path, const gw::GRPCMethodMatch& m) {
    MatchType(Join(path, "type"), m.type());
    if (m.service().empty() && m.method().empty()) {
      Error(path, "one or both of service or method must be specified");
    }
    Length(Join(path, "service"), m.service(), 0, 1024);
    Length(Join(path, "method"), m.method(), 0, 1024);
    if (m.type() == "RegularExpression") {
      if (!m.service().empty()) Regex(Join(path, "service"), m.service());
      if (!m.method().empty()) Regex(Join(path, "method"), m.method());
      return;
    }
    if (!m.service().empty() && !Matches(m.service(), "grpc-service")) {
      Error(Join(path, "service"),
            absl::StrCat(Quote(m.service()),
                         " is not a service name (dot-separated identifiers of letters, digits "
                         "and '_', such as helloworld.Greeter)"));
    }
    if (!m.method().empty() && !Matches(m.method(), "grpc-method")) {
      Error(Join(path, "method"),
            absl::StrCat(Quote(m.method()),
                         " is not a method name (letters, digits and '_', not starting with a "
                         "digit)"));
    }
  }

 private:
  ValidationResult& result_;
};

}  // namespace

int64_t GatewayDurationMillis(absl::string_view text) {
  if (!Matches(text, "duration")) return -1;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t digits = i;
    while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
    int64_t n = 0;
    if (!absl::SimpleAtoi(text.substr(i, digits - i), &n)) return -1;
    if (absl::StartsWith(text.substr(digits), "ms")) {
      total += n;
      i = digits + 2;
    } else {
      const char unit = text[digits];
      total += n * (unit == 'h' ? 3600000 : unit == 'm' ? 60000 : 1000);
      i = digits + 1;
    }
  }
  return total;
}

void HttpRoute(const gw::HTTPRoute& route, ValidationResult& result) {
  Checker c(result);
  const gw::HTTPRouteSpec& spec = route.spec();
  c.ParentRefs("spec.parentRefs", spec.parent_refs());
  c.Hostnames("spec.hostnames", spec.hostnames());
  c.RuleSizes("spec.rules", spec.rules());
  for (int i = 0; i < spec.rules_size(); ++i) c.HttpRule(Index("spec.rules", i), spec.rules(i));
}

void GrpcRoute(const gw::GRPCRoute& route, ValidationResult& result) {
  Checker c(result);
  const gw::GRPCRouteSpec& spec = route.spec();
  c.ParentRefs("spec.parentRefs", spec.parent_refs());
  c.Hostnames("spec.hostnames", spec.hostnames());
  c.RuleSizes("spec.rules", spec.rules());
  for (int i = 0; i < spec.rules_size(); ++i) c.GrpcRule(Index("spec.rules", i), spec.rules(i));
}

void ReferenceGrant(const gw::ReferenceGrant& grant, ValidationResult& result) {
  Checker c(result);
  const gw::ReferenceGrantSpec& spec = grant.spec();
  if (spec.from_size() == 0) c.Error("spec.from", "required: at least one entry");
  if (spec.to_size() == 0) c.Error("spec.to", "required: at least one entry");
  c.MaxItems("spec.from", spec.from_size(), kMaxGrantEntries);
  c.MaxItems("spec.to", spec.to_size(), kMaxGrantEntries);
  for (int i = 0; i < spec.from_size(); ++i) {
    const gw::ReferenceGrantFrom& f = spec.from(i);
    const std::string at = Index("spec.from", i);
    c.Group(Join(at, "group"), f.group());
    c.Kind(Join(at, "kind"), f.kind(), true);
    c.Namespace(Join(at, "namespace"), f.namespace_(), true);
    if (!f.kind().empty() &&
        !(f.group() == kGatewayGroup &&
          (f.kind() == "HTTPRoute" || f.kind() == "GRPCRoute" || f.kind() == "Gateway"))) {
      c.Warn(at, absl::StrCat("meshlet grants nothing to ", f.group().empty() ? "core" : f.group(),
                              " ", f.kind(),
                              ": only HTTPRoute and GRPCRoute of gateway.networking.k8s.io refer "
                              "to backends in the mesh, and Gateway to Secrets"));
    }
  }
  for (int i = 0; i < spec.to_size(); ++i) {
    const gw::ReferenceGrantTo& t = spec.to(i);
    const std::string at = Index("spec.to", i);
    c.Group(Join(at, "group"), t.group());
    c.Kind(Join(at, "kind"), t.kind(), true);
    c.ObjectName(Join(at, "name"), t.name(), false);
    if (!t.kind().empty() &&
        !(t.group().empty() && (t.kind() == "Service" || t.kind() == "Secret"))) {
      c.Warn(at,
             absl::StrCat("meshlet grants references to core Services and Secrets only, not to ",
                          t.group().empty() ? "core" : t.group(), " ", t.kind()));
    }
  }
}

void BackendTLSPolicy(const gw::BackendTLSPolicy& policy, ValidationResult& result) {
  Checker c(result);
  const gw::BackendTLSPolicySpec& spec = policy.spec();
  if (spec.target_refs_size() == 0) c.Error("spec.targetRefs", "required: at least one entry");
  c.MaxItems("spec.targetRefs", spec.target_refs_size(), kMaxBackendTlsTargetRefs);
  // (group, kind, name) -> whether its entries have a sectionName, and the sectionNames seen.
  std::map<std::tuple<std::string, std::string, std::string>, std::set<std::string>> targets;
  for (int i = 0; i < spec.target_refs_size(); ++i) {
    const gw::LocalPolicyTargetReferenceWithSectionName& ref = spec.target_refs(i);
    const std::string at = Index("spec.targetRefs", i);
    c.Group(Join(at, "group"), ref.group());
    c.Kind(Join(at, "kind"), ref.kind(), true);
    c.ObjectName(Join(at, "name"), ref.name(), true);
    c.SectionName(Join(at, "sectionName"), ref.section_name());
    std::set<std::string>& sections = targets[{ref.group(), ref.kind(), ref.name()}];
    if (!sections.empty() && sections.contains("") != ref.section_name().empty()) {
      c.Error(at,
              "sectionName must be specified when targetRefs includes 2 or more references "
              "to the same target");
    } else if (!sections.insert(ref.section_name()).second) {
      c.Error(at,
              "sectionName must be unique when targetRefs includes 2 or more references to "
              "the same target");
    }
    if (!ref.kind().empty() && !(ref.group().empty() && ref.kind() == "Service")) {
      c.Warn(at, absl::StrCat("meshlet applies BackendTLSPolicy to core Services only: ",
                              ref.group().empty() ? "core" : ref.group(), " ", ref.kind(),
                              " is left alone"));
    }
  }
  const gw::BackendTLSPolicyValidation& v = spec.validation();
  if (v.hostname().empty()) {
    c.Error("spec.validation.hostname", "required: the name sent as SNI and verified");
  }
  c.PreciseHostname("spec.validation.hostname", v.hostname());
  c.MaxItems("spec.validation.caCertificateRefs", v.ca_certificate_refs_size(),
             kMaxBackendTlsCaRefs);
  for (int i = 0; i < v.ca_certificate_refs_size(); ++i) {
    const gw::LocalObjectReference& ref = v.ca_certificate_refs(i);
    const std::string at = Index("spec.validation.caCertificateRefs", i);
    // Any kind is accepted here; one that is not a ConfigMap shows in the status (InvalidKind).
    c.Group(Join(at, "group"), ref.group());
    c.Kind(Join(at, "kind"), ref.kind(), true);
    c.ObjectName(Join(at, "name"), ref.name(), true);
  }
  const std::string& well_known = v.well_known_c_a_certificates();
  if (v.ca_certificate_refs_size() > 0 && !well_known.empty()) {
    c.Error("spec.validation",
            "must not contain both caCertificateRefs and wellKnownCACertificates");
  } else if (v.ca_certificate_refs_size() == 0 && well_known.empty()) {
    c.Error("spec.validation", "must specify either caCertificateRefs or wellKnownCACertificates");
  } else if (!well_known.empty() && !Matches(well_known, "well-known-ca")) {
    c.Error("spec.validation.wellKnownCACertificates",
            absl::StrCat(Quote(well_known),
                         " is not System or a domain-prefixed implementation-specific value"));
  }
  c.MaxItems("spec.validation.subjectAltNames", v.subject_alt_names_size(), kMaxBackendTlsSans);
  for (int i = 0; i < v.subject_alt_names_size(); ++i) {
    const gw::BackendTLSSubjectAltName& san = v.subject_alt_names(i);
    const std::string at = Index("spec.validation.subjectAltNames", i);
    if (san.type() == "Hostname") {
      if (san.hostname().empty()) {
        c.Error(Join(at, "hostname"), "required when type is Hostname");
      } else if (san.hostname().size() > 253 || !Matches(san.hostname(), "hostname")) {
        c.Error(Join(at, "hostname"),
                absl::StrCat(Quote(san.hostname()),
                             " is not a hostname (lowercase DNS labels joined by '.', optionally "
                             "starting with \"*.\"; no IP address, no port)"));
      }
      if (!san.uri().empty()) c.Error(Join(at, "uri"), "must not be set when type is Hostname");
    } else if (san.type() == "URI") {
      if (san.uri().empty()) {
        c.Error(Join(at, "uri"), "required when type is URI");
      } else if (!Matches(san.uri(), "absolute-uri")) {
        c.Error(Join(at, "uri"), absl::StrCat(Quote(san.uri()), " is not an absolute URI"));
      }
      if (!san.hostname().empty()) {
        c.Error(Join(at, "hostname"), "must not be set when type is URI");
      }
    } else {
      c.Error(Join(at, "type"),
              san.type().empty() ? "required: Hostname or URI"
                                 : absl::StrCat(Quote(san.type()), " is not one of Hostname, URI"));
    }
  }
  if (spec.options_size() > kMaxBackendTlsOptions) {
    c.Error("spec.options", absl::StrCat("at most ", kMaxBackendTlsOptions, " entries"));
  }
}

void GatewayClass(const gw::GatewayClass& gateway_class, ValidationResult& result) {
  Checker c(result);
  const std::string& controller = gateway_class.spec().controller_name();
  if (controller.empty()) {
    c.Error("spec.controllerName", "required");
  } else if (controller != kGatewayControllerName) {
    c.Warn(
        "spec.controllerName",
        absl::StrCat(Quote(controller), " is another controller's: meshlet takes the classes of ",
                     kGatewayControllerName, " only"));
  }
  c.Length("spec.description", gateway_class.spec().description(), 0, 64);
}

void Gateway(const gw::Gateway& gateway, ValidationResult& result) {
  Checker c(result);
  const gw::GatewaySpec& spec = gateway.spec();
  c.ObjectName("spec.gatewayClassName", spec.gateway_class_name(), true);
  if (spec.listeners_size() == 0) c.Error("spec.listeners", "required: at least one listener");
  c.MaxItems("spec.listeners", spec.listeners_size(), kMaxListeners);
  for (int i = 0; i < spec.listeners_size(); ++i) {
    const gw::Listener& l = spec.listeners(i);
    const std::string at = Index("spec.listeners", i);
    if (l.name().empty()) {
      c.Error(Join(at, "name"), "required");
    } else {
      c.SectionName(Join(at, "name"), l.name());
    }
    for (int j = 0; j < i; ++j) {
      if (!l.name().empty() && spec.listeners(j).name() == l.name()) {
        c.Error(Join(at, "name"), absl::StrCat(Quote(l.name()), " names listeners[", j, "] too"));
      }
    }
    c.PortNumber(Join(at, "port"), true, l.port());
    if (l.protocol().empty()) c.Error(Join(at, "protocol"), "required");
    if (!l.hostname().empty()) {
      google::protobuf::RepeatedPtrField<std::string> one;
      *one.Add() = l.hostname();
      c.Hostnames(Join(at, "hostname"), one);
    }
    c.MaxItems(Join(at, "tls.certificateRefs"), l.tls().certificate_refs_size(),
               kMaxCertificateRefs);
    for (int r = 0; r < l.tls().certificate_refs_size(); ++r) {
      const gw::SecretObjectReference& ref = l.tls().certificate_refs(r);
      const std::string ref_at = Index(Join(at, "tls.certificateRefs"), r);
      c.ObjectName(Join(ref_at, "name"), ref.name(), true);
      c.Namespace(Join(ref_at, "namespace"), ref.namespace_(), false);
    }
    const std::string& from = l.allowed_routes().namespaces().from();
    if (!from.empty() && from != "Same" && from != "All" && from != "Selector") {
      c.Error(Join(at, "allowedRoutes.namespaces.from"),
              absl::StrCat(Quote(from), " is not one of Same, All, Selector"));
    }
    c.MaxItems(Join(at, "allowedRoutes.kinds"), l.allowed_routes().kinds_size(), 8);
  }
}

}  // namespace meshlet::controlplane::policy::gateway_validation
