#include "control-plane/cli/http_client.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/http/client.h"
#include "common/net/address.h"
#include "common/tls/tls_transport.h"

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

absl::StatusOr<ResolvedServer> ResolveServer(absl::string_view server) {
  if (!absl::ConsumePrefix(&server, "http://")) absl::ConsumePrefix(&server, "https://");
  absl::ConsumeSuffix(&server, "/");
  absl::StatusOr<net::HostPort> host_port = net::SplitHostPort(server);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("server \"", server, "\": expected host:port"));
  }
  absl::StatusOr<std::vector<net::Address>> addresses =
      net::ResolveAll(host_port->host, host_port->port);
  if (!addresses.ok()) return addresses.status();
  return ResolvedServer{.authority = std::string(server),
                        .host_port = *std::move(host_port),
                        .addresses = *std::move(addresses)};
}

absl::StatusOr<HttpResponse> HttpRequest(
    absl::string_view server, absl::string_view method, absl::string_view path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    const HttpRequestOptions& options) {
  absl::StatusOr<ResolvedServer> resolved = ResolveServer(server);
  if (!resolved.ok()) return resolved.status();
  server = resolved->authority;

  http::ClientRequest request{.method = std::string(method),
                              .path = std::string(path_and_query),
                              .authority = resolved->authority,
                              .body = std::string(body)};
  request.headers.Add("user-agent", "meshctl");
  for (const auto& [name, value] : headers) request.headers.Add(name, value);
  http::ClientOptions client_options{.timeout = options.timeout,
                                     .max_response_bytes = options.max_response_bytes};
  if (options.on_body_data) client_options.on_body_data = options.on_body_data;
  if (options.tls != nullptr) {
    tls::TlsSession::Options session;
    // SNI for a name; identity is checked by SPIFFE id, whatever name was dialled.
    if (!net::Address::FromIp(resolved->host_port.host, 0).ok()) {
      session.server_name = resolved->host_port.host;
    }
    client_options.transport_factory = [context = options.tls, session] {
      return tls::TlsTransport::Make(context, session);
    };
  }
  http::ClientResult result = http::FetchBlocking(std::move(resolved->addresses),
                                                  std::move(request), std::move(client_options));
  switch (result.error) {
    case http::ClientError::kNone:
      break;
    case http::ClientError::kConnectFailed:
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", server, ": ", result.detail));
    case http::ClientError::kTlsFailed:
      return absl::UnauthenticatedError(
          absl::StrCat("TLS with ", server, " failed: ", result.detail));
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
