#pragma once

// The dashboard (docs/dashboard.md): plain HTML, CSS and JavaScript from
// control-plane/telemetry/dashboard/, compiled into the binary (no build step, no CDN) and
// served by the API server at /dashboard/ without the token; the page itself calls the token-
// protected API with the token the user gives it.

#include "absl/strings/string_view.h"
#include "common/http/server.h"

namespace meshlet::controlplane::telemetry {

struct DashboardAsset {
  const char* name;  // "index.html", "app.js", "style.css"
  const char* content;
};
// Ends with {nullptr, nullptr}. Generated (bazel/embed_files.sh).
extern const DashboardAsset kDashboardAssets[];

// GET / and /dashboard redirect to /dashboard/; /dashboard/ is index.html; /dashboard/NAME an
// asset; anything else under /dashboard/ is 404. Only GET and HEAD.
http::ServerResponse HandleDashboard(const http::ServerRequest& request);

}  // namespace meshlet::controlplane::telemetry
