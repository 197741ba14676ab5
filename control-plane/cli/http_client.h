#pragma once

// meshctl's HTTP/1.1 requests to the control-plane API: the server's name resolved, then one
// blocking request per connection through common/http's client (FetchBlocking, ADR 0038),
// plaintext. The process must ignore SIGPIPE (meshctl_main.cc does).

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::cli {

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;

  std::vector<std::string> HeaderValues(absl::string_view name) const;
  std::string Header(absl::string_view name) const;  // first value or ""
};

struct HttpRequestOptions {
  std::chrono::milliseconds timeout{10000};  // connect + whole exchange
  size_t max_response_bytes = 64 << 20;
};

// `server` is "host:port" (or "http://host:port"). Unavailable when the server cannot be reached
// (the message says why), DeadlineExceeded on timeout, DataLoss for a malformed or cut response,
// ResourceExhausted for one larger than the limit.
absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view server, absl::string_view method, absl::string_view path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    const HttpRequestOptions& options = {});

}  // namespace meshlet::controlplane::cli
