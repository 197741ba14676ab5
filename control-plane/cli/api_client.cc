#include "control-plane/cli/api_client.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "control-plane/cli/failure.h"

namespace meshlet::controlplane::cli {

absl::StatusOr<HttpResponse> HttpApiTransport::Send(const ApiRequest& request) {
  HttpRequestOptions options;
  options.timeout = request.timeout;
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

void ApiClient::Connect(std::string server, std::string token) {
  server_ = std::move(server);
  token_ = std::move(token);
  servers_ = absl::StrSplit(server_, ',');
  current_ = 0;
}

absl::StatusOr<HttpResponse> ApiClient::SendToAny(ApiRequest request) {
  absl::Status last;
  std::string tried;
  for (size_t n = 0; n < servers_.size(); ++n) {
    const size_t i = (current_ + n) % servers_.size();
    request.server = servers_[i];
    absl::StatusOr<HttpResponse> response = transport_.Send(request);
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
                                        absl::string_view body, int* exit_code) {
  ApiRequest request{.server = server_,
                     .method = std::string(method),
                     .path = path,
                     .headers = {{"accept", "application/json"}},
                     .body = std::string(body),
                     .timeout = timeout_};
  if (!token_.empty())
    request.headers.emplace_back("authorization", absl::StrCat("Bearer ", token_));
  if (!body.empty()) request.headers.emplace_back("content-type", "application/json");
  absl::StatusOr<HttpResponse> response = SendToAny(std::move(request));
  if (!response.ok()) {
    Report(err_,
           {kExitUnreachable, absl::StrCat("cannot reach the control plane at ", server_, ": ",
                                           response.status().message(),
                                           " (is it running? set --server or the context file)")});
    if (exit_code != nullptr) *exit_code = kExitUnreachable;
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

absl::StatusOr<HttpResponse> ApiClient::SendPlain(absl::string_view method,
                                                  const std::string& path) {
  return SendToAny(
      {.server = server_, .method = std::string(method), .path = path, .timeout = timeout_});
}

std::string ResourcePath(const policy::KindInfo& info, absl::string_view namespace_,
                         absl::string_view name) {
  std::string path = info.namespaced ? absl::StrCat("/apis/meshlet.io/v1/namespaces/", namespace_,
                                                    "/", info.plural)
                                     : absl::StrCat("/apis/meshlet.io/v1/", info.plural);
  if (!name.empty()) absl::StrAppend(&path, "/", name);
  return path;
}

}  // namespace meshlet::controlplane::cli
