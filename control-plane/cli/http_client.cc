#include "control-plane/cli/http_client.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/http/client.h"
#include "common/net/address.h"

namespace meshlet::controlplane::cli {

std::vector<std::string> HttpResponse::HeaderValues(absl::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers) {
    if (n == name) out.push_back(v);
  }
  return out;
}

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view server, absl::string_view method, absl::string_view path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    const HttpRequestOptions& options) {
  absl::ConsumePrefix(&server, "http://");
  absl::ConsumeSuffix(&server, "/");
  absl::StatusOr<net::HostPort> host_port = net::SplitHostPort(server);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("server \"", server, "\": expected host:port"));
  }
  absl::StatusOr<std::vector<net::Address>> addresses =
      net::ResolveAll(host_port->host, host_port->port);
  if (!addresses.ok()) return addresses.status();

  http::ClientRequest request{.method = std::string(method),
                              .path = std::string(path_and_query),
                              .authority = std::string(server),
                              .body = std::string(body)};
  request.headers.Add("user-agent", "meshctl");
  for (const auto& [name, value] : headers) request.headers.Add(name, value);
  http::ClientResult result = http::FetchBlocking(
      *std::move(addresses), std::move(request),
      {.timeout = options.timeout, .max_response_bytes = options.max_response_bytes});
  switch (result.error) {
    case http::ClientError::kNone:
      break;
    case http::ClientError::kConnectFailed:
    case http::ClientError::kTlsFailed:
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", server, ": ", result.detail));
    case http::ClientError::kTimeout:
      return absl::DeadlineExceededError(absl::StrCat("waiting for ", server, ": timed out"));
    case http::ClientError::kTooLarge:
      return absl::ResourceExhaustedError(absl::StrCat("response from ", server, " larger than ",
                                                       options.max_response_bytes, " bytes"));
    case http::ClientError::kBadRequest:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot send ", method, " ", path_and_query, ": ", result.detail));
    case http::ClientError::kMalformed:
    case http::ClientError::kClosed:
      return absl::DataLossError(absl::StrCat("bad response from ", server, ": ", result.detail));
  }
  HttpResponse response{.status = result.status, .body = std::move(result.body)};
  for (const http::HeaderView h : result.headers) {
    response.headers.emplace_back(std::string(h.name), std::string(h.value));
  }
  return response;
}

}  // namespace meshlet::controlplane::cli
