#include "control-plane/cli/api_client.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "control-plane/cli/context.h"
#include "control-plane/cli/failure.h"

namespace meshlet::controlplane::cli {

absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ServerTrustContext(
    const std::string& ca_pem, const std::string& server_identity) {
  absl::StatusOr<tls::SpiffeIdMatcher> identity =
      tls::SpiffeIdMatcher::Create({server_identity}, {});
  if (!identity.ok()) return identity.status();
  return tls::TlsContext::CreateClient({.trust_bundle_pem = ca_pem,
                                        .alpn_protocols = {"http/1.1"},
                                        .peer_identity = *std::move(identity)});
}

absl::StatusOr<HttpResponse> HttpApiTransport::Send(const ApiRequest& request) {
  HttpRequestOptions options;
  options.timeout = request.timeout;
  if (!IsPlaintextServer(request.server)) {
    if (request.tls == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no CA to verify the control plane at ", request.server,
          " with: pin its CA with meshctl context set --ca-fingerprint SHA256 (the control "
          "plane logs the fingerprint at start), or give --ca-file FILE; a control plane "
          "started with --api-plaintext is reached as http://HOST:PORT"));
    }
    options.tls = request.tls;
  }
  options.on_body_data = request.on_body_data;
  return HttpRequest(request.server, request.method, request.path, request.headers, request.body,
                     options);
}

std::string ApiReply::ErrorMessage() const {
  try {
    YAML::Node node = YAML::Load(http.body);
    if (node.IsMap() && node["message"]) return node["message"].as<std::string>();
  } catch (const YAML::Exception&) {
  }
  return std::string(absl::StripAsciiWhitespace(http.body));
}

std::vector<std::pair<std::string, std::string>> ApiReply::Causes() const {
  std::vector<std::pair<std::string, std::string>> out;
  try {
    YAML::Node node = YAML::Load(http.body);
    YAML::Node causes = node["details"]["causes"];
    if (causes.IsSequence()) {
      for (const auto& c : causes) {
        out.emplace_back(c["field"] ? c["field"].as<std::string>() : "",
                         c["message"] ? c["message"].as<std::string>() : "");
      }
    }
  } catch (const YAML::Exception&) {
  }
  return out;
}

void ApiClient::Connect(std::string server, std::string token, ServerTrust trust) {
  server_ = std::move(server);
  token_ = std::move(token);
  trust_ = std::move(trust);
  servers_ = absl::StrSplit(server_, ',');
  current_ = 0;
}

absl::StatusOr<HttpResponse> ApiClient::SendToAny(ApiRequest request) {
  absl::Status last;
  std::string tried;
  for (size_t n = 0; n < servers_.size(); ++n) {
    const size_t i = (current_ + n) % servers_.size();
    request.server = servers_[i];
    request.tls = trust_.tls;
    if (IsPlaintextServer(request.server) && !token_.empty() && !warned_plaintext_) {
      warned_plaintext_ = true;
      err_ << "Warning: " << request.server
           << " is plain HTTP: the API token crosses the network in clear\n";
    }
    absl::StatusOr<HttpResponse> response = transport_.Send(request);
    // No CA is a setting to fix, not a replica to skip.
    if (absl::IsFailedPrecondition(response.status())) return response;
    if (response.ok()) {
      current_ = i;
      return response;
    }
    last = response.status();
    if (servers_.size() > 1) {
      absl::StrAppend(&tried, tried.empty() ? "" : "; ", servers_[i], ": ", last.message());
    }
  }
  if (servers_.size() > 1) return absl::UnavailableError(tried);
  return last;
}

std::optional<ApiReply> ApiClient::Call(absl::string_view method, const std::string& path,
                                        absl::string_view body, int* exit_code,
                                        std::function<bool(absl::string_view data)> on_body_data) {
  return CallImpl(method, path, body, exit_code, std::move(on_body_data), nullptr);
}

std::optional<ApiReply> ApiClient::CallThroughRestart(absl::string_view method,
                                                      const std::string& path,
                                                      std::string* unreachable, int* exit_code) {
  unreachable->clear();
  return CallImpl(method, path, "", exit_code, nullptr, unreachable);
}

std::optional<ApiReply> ApiClient::CallImpl(
    absl::string_view method, const std::string& path, absl::string_view body, int* exit_code,
    std::function<bool(absl::string_view data)> on_body_data, std::string* unreachable) {
  ApiRequest request{.server = server_,
                     .method = std::string(method),
                     .path = path,
                     .headers = {{"accept", "application/json"}},
                     .body = std::string(body),
                     .timeout = timeout_,
                     .on_body_data = std::move(on_body_data)};
  if (!token_.empty())
    request.headers.emplace_back("authorization", absl::StrCat("Bearer ", token_));
  if (!body.empty()) request.headers.emplace_back("content-type", "application/json");
  absl::StatusOr<HttpResponse> response = SendToAny(std::move(request));
  if (!response.ok()) {
    const absl::Status& status = response.status();
    if (unreachable != nullptr && absl::IsUnavailable(status)) {
      *unreachable = std::string(status.message());
      if (exit_code != nullptr) *exit_code = kExitUnreachable;
      return std::nullopt;
    }
    const int code = absl::IsFailedPrecondition(status) ? kExitUsage : kExitUnreachable;
    Report(err_, {code, absl::IsFailedPrecondition(status) || absl::IsUnauthenticated(status)
                            ? Explain(status)
                            : absl::StrCat("cannot reach the control plane at ", server_, ": ",
                                           status.message(),
                                           " (is it running? set --server or the context file)")});
    if (exit_code != nullptr) *exit_code = code;
    return std::nullopt;
  }
  if (response->status == 401) {
    Report(err_, {kExitUnreachable,
                  absl::StrCat("the control plane at ", server(),
                               " refused the token: ", ApiReply{*response}.ErrorMessage(),
                               token_.empty() ? " (no token: pass --token/--token-file or set "
                                                "token in the context file)"
                                              : "")});
    if (exit_code != nullptr) *exit_code = kExitUnreachable;
    return std::nullopt;
  }
  for (const std::string& warning : response->HeaderValues("warning")) {
    std::string text = warning;
    if (absl::StartsWith(text, "299 - ")) text = text.substr(6);
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
      text = text.substr(1, text.size() - 2);
    }
    err_ << "Warning: " << text << "\n";
  }
  return ApiReply{*std::move(response)};
}

std::string ApiClient::Explain(const absl::Status& status) const {
  if (absl::IsFailedPrecondition(status)) return std::string(status.message());
  if (absl::IsUnauthenticated(status)) {
    return absl::StrCat(
        status.message(), " (meshctl verifies the control plane with ",
        trust_.ca_source.empty() ? "no CA" : trust_.ca_source, " and expects the identity ",
        trust_.server_identity,
        "; if the control plane's CA changed, check its new fingerprint and pin it with meshctl "
        "context set --ca-fingerprint SHA256)");
  }
  return std::string(status.message());
}

absl::StatusOr<HttpResponse> ApiClient::SendPlain(absl::string_view method,
                                                  const std::string& path) {
  return SendToAny(
      {.server = server_, .method = std::string(method), .path = path, .timeout = timeout_});
}

Failure ApiClient::PlainFailure(absl::string_view what,
                                const absl::StatusOr<HttpResponse>& response) const {
  if (!response.ok() && absl::IsFailedPrecondition(response.status())) {
    return {kExitUsage, std::string(response.status().message())};
  }
  return {kExitUnreachable, absl::StrCat(what, " (",
                                         response.ok() ? absl::StrCat("HTTP ", response->status)
                                                       : Explain(response.status()),
                                         ")")};
}

std::string ResourcePath(const policy::KindInfo& info, absl::string_view namespace_,
                         absl::string_view name) {
  std::string path =
      info.namespaced ? absl::StrCat(info.ApiPath(), "/namespaces/", namespace_, "/", info.plural)
                      : absl::StrCat(info.ApiPath(), "/", info.plural);
  if (!name.empty()) absl::StrAppend(&path, "/", name);
  return path;
}

}  // namespace meshlet::controlplane::cli
