#pragma once

// meshctl's HTTP/1.1 requests to the control-plane API: the server's name resolved, then one
// blocking request per connection through common/http's client (FetchBlocking, ADR 0038), over
// TLS with the given client context, or plaintext without one. The process must ignore SIGPIPE
// (meshctl_main.cc does).

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/net/address.h"
#include "common/tls/tls_context.h"

namespace meshlet::controlplane::cli {

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;

  std::vector<std::string> HeaderValues(absl::string_view name) const;
  std::string Header(absl::string_view name) const;  // first value or ""
};

// `server` ("host:port", or "http://host:port" or "https://host:port", a final "/" allowed): its
// host:port as the authority, split, and every address the host stands for. InvalidArgument
// naming it when it is not host:port; the resolver's error when the name does not resolve.
struct ResolvedServer {
  std::string authority;  // "host:port"
  net::HostPort host_port;
  std::vector<net::Address> addresses;
};
absl::StatusOr<ResolvedServer> ResolveServer(absl::string_view server);

struct HttpRequestOptions {
  std::chrono::milliseconds timeout{10000};  // connect + whole exchange
  size_t max_response_bytes = 64 << 20;
  // TLS (it verifies the server: trust bundle, identity); null: plaintext.
  std::shared_ptr<const tls::TlsContext> tls;
  // Set: a 2xx answer's body is handed to it piece by piece as it arrives (a streamed answer:
  // the live tap) instead of being kept in HttpResponse::body; returning false ends the request.
  std::function<bool(absl::string_view data)> on_body_data;
};

// `server` is "host:port" (or "http://host:port", "https://host:port": the scheme is ignored,
// options.tls decides). Unavailable when the server cannot be reached (the message says why),
// Unauthenticated when the TLS handshake failed (the server did not verify, or refused us),
// DeadlineExceeded on timeout, DataLoss for a malformed or cut response, ResourceExhausted for
// one larger than the limit.
absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view server, absl::string_view method, absl::string_view path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    const HttpRequestOptions& options = {});

}  // namespace meshlet::controlplane::cli
