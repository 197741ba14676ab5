// Translation of a route's CorsPolicy (xds Route.cors) into route::CorsPolicy: origin patterns
// parsed once (common/http/cors_origin.h), the Access-Control-* values joined.

#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/http/cors_origin.h"
#include "sidecar/config/translate_internal.h"
#include "sidecar/route/cors.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

// A list of tokens (methods, header names) or "*" alone: the tokens joined with ", " into
// `joined` (header names lowercased when `lower`), or `*any` set.
void TranslateTokens(Errors::Scope& scope, const std::string& path,
                     const google::protobuf::RepeatedPtrField<std::string>& in, bool lower,
                     absl::string_view what, std::string& joined, bool* any) {
  std::vector<std::string> tokens;
  for (int i = 0; i < in.size(); ++i) {
    if (in[i] == "*") {
      if (any == nullptr) {
        tokens.push_back("*");
      } else if (in.size() > 1) {
        scope.Add(Index(path, i), "\"*\" excludes every other value");
      } else {
        *any = true;
      }
      continue;
    }
    if (!IsHttpToken(in[i])) {
      scope.Add(Index(path, i), absl::StrCat(Quote(in[i]), " is not ", what));
      continue;
    }
    tokens.push_back(lower ? absl::AsciiStrToLower(in[i]) : in[i]);
  }
  joined = absl::StrJoin(tokens, ", ");
}

}  // namespace

std::shared_ptr<const route::CorsPolicy> TranslateCors(Errors::Scope& scope,
                                                       const std::string& path,
                                                       const xds::CorsPolicy& in) {
  auto out = std::make_shared<route::CorsPolicy>();
  const std::string origins = Join(path, "allow_origins");
  for (int i = 0; i < in.allow_origins_size(); ++i) {
    absl::StatusOr<http::OriginPattern> pattern = http::ParseOriginPattern(in.allow_origins(i));
    if (!pattern.ok()) {
      scope.Add(Index(origins, i), pattern.status());
      continue;
    }
    if (pattern->kind == http::OriginPattern::Kind::kAny && in.allow_origins_size() > 1) {
      scope.Add(Index(origins, i), "\"*\" excludes every other origin");
    }
    out->allow_origins.push_back(*std::move(pattern));
  }
  TranslateTokens(scope, Join(path, "allow_methods"), in.allow_methods(), /*lower=*/false,
                  "a method", out->allow_methods, &out->any_method);
  TranslateTokens(scope, Join(path, "allow_headers"), in.allow_headers(), /*lower=*/true,
                  "a header name", out->allow_headers, &out->any_header);
  TranslateTokens(scope, Join(path, "expose_headers"), in.expose_headers(), /*lower=*/true,
                  "a header name", out->expose_headers, nullptr);
  // "*" means every name to browsers only without credentials: with them, each response lists
  // its own header names.
  if (in.allow_credentials()) {
    for (const std::string& name : in.expose_headers()) {
      if (name != "*") continue;
      out->expose_response_names = true;
      std::vector<std::string> others;
      for (const std::string& other : in.expose_headers()) {
        if (other != "*") others.push_back(absl::AsciiStrToLower(other));
      }
      out->expose_headers = absl::StrJoin(others, ", ");
      break;
    }
  }
  if (in.max_age_seconds() > 0) out->max_age = absl::StrCat(in.max_age_seconds());
  out->allow_credentials = in.allow_credentials();
  return out;
}

}  // namespace meshlet::sidecar::config::translate_internal
