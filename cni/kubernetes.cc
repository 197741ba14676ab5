#include "cni/kubernetes.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cni/json.h"
#include "common/base/file.h"
#include "common/http/client.h"
#include "common/net/address.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_transport.h"

namespace meshlet::cni {

absl::StatusOr<std::map<std::string, std::string>> PodAnnotationsFromJson(absl::string_view pod) {
  absl::StatusOr<JsonValue> parsed = ParseJson(pod);
  if (!parsed.ok())
    return absl::InvalidArgumentError(absl::StrCat("the Pod: ", parsed.status().message()));
  const JsonValue* kind = parsed->Find("kind");
  if (kind == nullptr || !kind->IsString() || kind->text != "Pod") {
    return absl::InvalidArgumentError("the API server's answer is not a Pod");
  }
  std::map<std::string, std::string> out;
  const JsonValue* metadata = parsed->Find("metadata");
  const JsonValue* annotations = metadata != nullptr ? metadata->Find("annotations") : nullptr;
  if (annotations == nullptr || annotations->type == JsonValue::Type::kNull) return out;
  if (!annotations->IsObject()) {
    return absl::InvalidArgumentError("the Pod's metadata.annotations is not an object");
  }
  for (const auto& [key, value] : annotations->members) {
    if (!value.IsString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the Pod's annotation ", key, " is not a string"));
    }
    out[key] = value.text;
  }
  return out;
}

http::ClientRequest ApiEndpoint::Request(absl::string_view method, std::string path,
                                         absl::string_view user_agent) const {
  http::ClientRequest request{
      .method = std::string(method), .path = std::move(path), .authority = authority};
  request.headers.Add("accept", "application/json");
  request.headers.Add("user-agent", user_agent);
  request.headers.Add("authorization", authorization);
  return request;
}

http::ClientOptions ApiEndpoint::Options(size_t max_response_bytes) const {
  http::ClientOptions options{
      .timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)),
      .max_response_bytes = max_response_bytes};
  options.transport_factory = transport_factory;
  return options;
}

absl::StatusOr<ApiEndpoint> PrepareApiCall(const KubernetesSettings& settings) {
  absl::StatusOr<std::string> ca = ReadFile(settings.ca_file, 1 << 20);
  if (!ca.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the API server's CA (kubernetes.caFile): ", ca.status().message()));
  }
  absl::StatusOr<std::string> token = ReadFile(settings.token_file, 64 << 10);
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the API token (kubernetes.tokenFile): ", token.status().message()));
  }
  absl::string_view server = settings.server;
  absl::ConsumePrefix(&server, "https://");
  absl::ConsumeSuffix(&server, "/");
  absl::StatusOr<net::HostPort> host_port = net::SplitHostPort(server);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubernetes.server \"", settings.server, "\": expected https://HOST:PORT"));
  }
  absl::StatusOr<std::vector<net::Address>> addresses =
      net::ResolveAll(host_port->host, host_port->port);
  if (!addresses.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", host_port->host, ": ", addresses.status().message()));
  }
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient({.trust_bundle_pem = *ca, .alpn_protocols = {"http/1.1"}});
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the API server's CA (kubernetes.caFile): ", context.status().message()));
  }
  tls::TlsSession::Options session{.verify_peer_name = host_port->host};
  if (!net::Address::FromIp(host_port->host, 0).ok()) session.server_name = host_port->host;
  ApiEndpoint endpoint{.addresses = *std::move(addresses),
                       .authority = std::string(server),
                       .authorization = absl::StrCat("Bearer ", absl::StripAsciiWhitespace(*token)),
                       .timeout = settings.timeout};
  endpoint.transport_factory = [context = *std::move(context), session] {
    return tls::TlsTransport::Make(context, session);
  };
  return endpoint;
}

absl::StatusOr<std::map<std::string, std::string>> FetchPodAnnotations(
    const KubernetesSettings& settings, const PodRef& pod) {
  absl::StatusOr<ApiEndpoint> endpoint = PrepareApiCall(settings);
  if (!endpoint.ok()) return endpoint.status();
  http::ClientResult result = http::FetchBlocking(
      endpoint->addresses,
      endpoint->Request("GET",
                        absl::StrCat("/api/v1/namespaces/", http::QueryEscape(pod.pod_namespace),
                                     "/pods/", http::QueryEscape(pod.name)),
                        "meshlet-cni"),
      endpoint->Options(settings.max_pod_bytes));
  const std::string where = absl::StrCat("the API server ", settings.server);
  switch (result.error) {
    case http::ClientError::kNone:
      break;
    case http::ClientError::kTimeout:
      return absl::DeadlineExceededError(
          absl::StrCat(where, " did not answer within ", absl::FormatDuration(settings.timeout)));
    case http::ClientError::kTooLarge:
      return absl::InvalidArgumentError(absl::StrCat(where, " sent a Pod larger than ",
                                                     settings.max_pod_bytes,
                                                     " bytes (kubernetes.maxPodBytes)"));
    case http::ClientError::kTlsFailed:
      // Not worth retrying: the CA or the server's certificate is wrong.
      return absl::UnauthenticatedError(absl::StrCat(
          "TLS with ", where, " failed: ", result.detail,
          " (the server is verified against kubernetes.caFile and by its name or address)"));
    default:
      return absl::UnavailableError(absl::StrCat("cannot reach ", where, ": ", result.detail));
  }
  if (result.status == 404) {
    return absl::NotFoundError(
        absl::StrCat(where, " has no pod ", pod.pod_namespace, "/", pod.name));
  }
  if (result.status == 401 || result.status == 403) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, " refused to show pod ", pod.pod_namespace, "/", pod.name, " (HTTP ",
                     result.status, "): the token of kubernetes.tokenFile needs get on pods"));
  }
  if (result.status == 429 || result.status >= 500) {
    return absl::UnavailableError(absl::StrCat(where, " answered HTTP ", result.status));
  }
  if (result.status != 200) {
    return absl::InvalidArgumentError(absl::StrCat(where, " answered HTTP ", result.status));
  }
  return PodAnnotationsFromJson(result.body);
}

absl::StatusOr<bool> DaemonSetBeingRemoved(const KubernetesSettings& settings,
                                           absl::string_view daemonset_namespace,
                                           absl::string_view name) {
  absl::StatusOr<ApiEndpoint> endpoint = PrepareApiCall(settings);
  if (!endpoint.ok()) return endpoint.status();
  http::ClientResult result =
      http::FetchBlocking(endpoint->addresses,
                          endpoint->Request("GET",
                                            absl::StrCat("/apis/apps/v1/namespaces/",
                                                         http::QueryEscape(daemonset_namespace),
                                                         "/daemonsets/", http::QueryEscape(name)),
                                            "meshlet-cni-agent"),
                          endpoint->Options(settings.max_pod_bytes));
  const std::string what = absl::StrCat("the DaemonSet ", daemonset_namespace, "/", name);
  if (result.error != http::ClientError::kNone) {
    return absl::UnavailableError(
        absl::StrCat("cannot ask the API server ", settings.server, " about ", what, ": ",
                     http::ClientErrorName(result.error), " ", result.detail));
  }
  if (result.status == 404) return true;
  if (result.status != 200) {
    return absl::UnavailableError(
        absl::StrCat("the API server answered HTTP ", result.status, " for ", what,
                     result.status == 403 ? " (RBAC: get on daemonsets)" : ""));
  }
  absl::StatusOr<JsonValue> parsed = ParseJson(result.body);
  const JsonValue* metadata = parsed.ok() ? parsed->Find("metadata") : nullptr;
  if (metadata == nullptr || !metadata->IsObject()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the API server's answer for ", what, " is not a DaemonSet"));
  }
  const JsonValue* deletion = metadata->Find("deletionTimestamp");
  return deletion != nullptr && deletion->type != JsonValue::Type::kNull;
}

}  // namespace meshlet::cni
