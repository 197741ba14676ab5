#pragma once

// A small blocking HTTP/1.1 client for meshctl: one request per connection, plaintext, numeric
// or resolvable host names. Enough for a command-line tool talking to the control-plane API; the
// proxy's data path never uses it.

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
// (the message says why), DeadlineExceeded on timeout, DataLoss for a malformed response.
absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view server, absl::string_view method, absl::string_view path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    const HttpRequestOptions& options = {});

}  // namespace meshlet::controlplane::cli
