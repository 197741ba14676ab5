#include "control-plane/telemetry/dashboard.h"

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace meshlet::controlplane::telemetry {

namespace {

absl::string_view ContentType(absl::string_view name) {
  if (absl::EndsWith(name, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(name, ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(name, ".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace

http::ServerResponse HandleDashboard(const http::ServerRequest& request) {
  if (request.method() != "GET" && request.method() != "HEAD") {
    http::ServerResponse r = http::ServerResponse::Text(405, "only GET is allowed here\n");
    r.headers.Add("allow", "GET, HEAD");
    return r;
  }
  absl::string_view path = request.path();
  if (path == "/" || path == "/dashboard") {
    http::ServerResponse r = http::ServerResponse::Text(302, "/dashboard/\n");
    r.headers.Set("location", "/dashboard/");
    return r;
  }
  absl::string_view name = path;
  if (!absl::ConsumePrefix(&name, "/dashboard/")) {
    return http::ServerResponse::Text(404, "not found\n");
  }
  if (name.empty()) name = "index.html";
  for (const DashboardAsset* a = kDashboardAssets; a->name != nullptr; ++a) {
    if (name != a->name) continue;
    http::ServerResponse r = http::ServerResponse::Text(200, std::string(a->content));
    r.headers.Set("content-type", ContentType(name));
    // The page loads only its own files and talks only to this server (inline style attributes
    // position the waterfall's bars; scripts come only from the page's own files).
    r.headers.Set("content-security-policy",
                  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                  "frame-ancestors 'none'");
    r.headers.Set("x-content-type-options", "nosniff");
    r.headers.Set("cache-control", "no-cache");
    return r;
  }
  return http::ServerResponse::Text(404, "not found\n");
}

}  // namespace meshlet::controlplane::telemetry
