#include "sidecar/route/cors.h"

#include <optional>
#include <string>

namespace meshlet::sidecar::route {
namespace {

constexpr absl::string_view kOrigin = "origin";
constexpr absl::string_view kRequestMethod = "access-control-request-method";
constexpr absl::string_view kRequestHeaders = "access-control-request-headers";

// Headers both answers carry.
void AddCommon(const CorsPolicy& policy, absl::string_view origin, http::HeaderMap& response) {
  response.Set("access-control-allow-origin", origin);
  if (policy.allow_credentials) response.Set("access-control-allow-credentials", "true");
  if (!policy.expose_headers.empty()) {
    response.Set("access-control-expose-headers", policy.expose_headers);
  }
  response.Add("vary", "Origin");
}

}  // namespace

bool IsPreflight(const http::HeaderMap& request) {
  return request.Get(":method") == absl::string_view("OPTIONS") && request.Has(kOrigin) &&
         request.Has(kRequestMethod);
}

bool CorsOriginAllowed(const CorsPolicy& policy, absl::string_view origin) {
  const std::optional<http::Origin> parsed = http::ParseOrigin(origin);
  for (const http::OriginPattern& pattern : policy.allow_origins) {
    if (http::OriginMatches(pattern, parsed)) return true;
  }
  return false;
}

void AddPreflightHeaders(const CorsPolicy& policy, const http::HeaderMap& request,
                         absl::string_view origin, http::HeaderMap& response) {
  AddCommon(policy, origin, response);
  if (policy.any_method) {
    if (std::optional<absl::string_view> method = request.Get(kRequestMethod)) {
      response.Set("access-control-allow-methods", *method);
    }
  } else if (!policy.allow_methods.empty()) {
    response.Set("access-control-allow-methods", policy.allow_methods);
  }
  if (policy.any_header) {
    if (std::optional<absl::string_view> headers = request.Get(kRequestHeaders)) {
      response.Set("access-control-allow-headers", *headers);
    }
  } else if (!policy.allow_headers.empty()) {
    response.Set("access-control-allow-headers", policy.allow_headers);
  }
  response.Set("access-control-max-age", policy.max_age);
}

void AddResponseHeaders(const CorsPolicy& policy, absl::string_view origin,
                        http::HeaderMap& response) {
  if (policy.expose_response_names) [[unlikely]] {
    std::string names = policy.expose_headers;
    for (const http::HeaderView& h : response) {
      if (http::HeaderMap::IsPseudoName(h.name)) continue;
      if (!names.empty()) names += ", ";
      names.append(h.name.data(), h.name.size());
    }
    AddCommon(policy, origin, response);
    if (!names.empty()) response.Set("access-control-expose-headers", names);
    return;
  }
  AddCommon(policy, origin, response);
}

}  // namespace meshlet::sidecar::route
