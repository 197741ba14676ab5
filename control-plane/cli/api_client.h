#pragma once

// meshctl's side of the control-plane API.
//
// ApiTransport sends one request and returns the status, headers and body: HttpApiTransport over
// http_client.h in the binary (HTTPS verified against the pinned CA and server identity, or
// plain HTTP to an http:// server), a fake (fake_api_transport.h) in tests, so every command can
// be tested without a server. ApiClient wraps it with what every command does the same way: the
// bearer token and JSON headers, "cannot reach the control plane", "could not verify it" and
// "refused the token" as exit code 3, and the API's warnings on stderr.
//
// Single-threaded; an ApiClient keeps references to its transport and error stream, which must
// outlive it.

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/http/client.h"
#include "common/tls/tls_context.h"
#include "control-plane/cli/failure.h"
#include "control-plane/cli/http_client.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::cli {

struct ApiRequest {
  std::string server;  // HOST:PORT
  std::string method;
  std::string path;  // with the query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{10000};  // connect + the whole exchange
  // How to verify a server that is not http://: the pinned CA and server identity. Null when none
  // is known: HttpApiTransport then refuses to send (FailedPrecondition, saying how to pin one).
  std::shared_ptr<const tls::TlsContext> tls;
  // A streamed answer's body, piece by piece (HttpRequestOptions::on_body_data); null: kept whole.
  std::function<bool(absl::string_view data)> on_body_data;
};

// How meshctl verifies the control plane (context.h's Connection made into a TLS context).
struct ServerTrust {
  std::shared_ptr<const tls::TlsContext> tls;  // null: no CA known
  std::string ca_source;                       // "the CA pinned in context file ..."
  std::string server_identity;
};

// A client TLS context that trusts `ca_pem` only and accepts a server certificate for
// `server_identity` only. Errors name what does not load.
absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ServerTrustContext(
    const std::string& ca_pem, const std::string& server_identity);

class ApiTransport {
 public:
  virtual ~ApiTransport() = default;
  // The response, whatever its status; an error when no response arrived (Unavailable: the
  // server cannot be reached, the message says why).
  virtual absl::StatusOr<HttpResponse> Send(const ApiRequest& request) = 0;
};

// One blocking HTTP/1.1 exchange per request (http_client.h): HTTPS with request.tls, plain
// HTTP to an http:// server.
class HttpApiTransport final : public ApiTransport {
 public:
  absl::StatusOr<HttpResponse> Send(const ApiRequest& request) override;
};

// A response the command reads further.
struct ApiReply {
  HttpResponse http;

  // The API's error text ("message" of a Status body), else the body.
  std::string ErrorMessage() const;
  // {field path, message} of a Status body's details.causes.
  std::vector<std::pair<std::string, std::string>> Causes() const;
};

class ApiClient {
 public:
  ApiClient(ApiTransport& transport, std::ostream& err) : transport_(transport), err_(err) {}

  // Where requests go, how the server is verified and with which token (empty: none); set once
  // the context file is read. `server` may name several replicas, "HOST:PORT,HOST:PORT": a
  // request that cannot reach one goes to the next, and later requests start from the one that
  // answered (they must share the API token and CA).
  void Connect(std::string server, std::string token, ServerTrust trust = {});
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // The transport requests go through (for a client of another control plane: multicluster).
  ApiTransport& transport() { return transport_; }
  // The replica requests go to first (the one that answered last).
  const std::string& server() const { return servers_[current_]; }
  const std::string& token() const { return token_; }

  // `method` `path` with the token, JSON accepted (and sent when `body` is not empty). Prints the
  // API's warnings. A transport failure or 401 ends the command: the reason is printed (Explain),
  // `*exit_code` (when given) becomes kExitUnreachable (kExitUsage when no CA is known) and the
  // result is nullopt. Other statuses are the caller's to judge.
  // With `on_body_data`, a 2xx answer's body goes to it as it arrives (a transport that cannot
  // stream, as tests' fake one, leaves it in the reply's body).
  std::optional<ApiReply> Call(absl::string_view method, const std::string& path,
                               absl::string_view body = "", int* exit_code = nullptr,
                               std::function<bool(absl::string_view data)> on_body_data = nullptr);

  // As Call, for a command that polls through a control-plane restart: when no replica can be
  // reached (Unavailable), nothing is printed, `*unreachable` says why and nullopt is returned
  // (`*exit_code` kExitUnreachable); any other outcome is Call's.
  std::optional<ApiReply> CallThroughRestart(absl::string_view method, const std::string& path,
                                             std::string* unreachable, int* exit_code);

  // `method` `path` without the token or any judgement: for /healthz and /version.
  absl::StatusOr<HttpResponse> SendPlain(absl::string_view method, const std::string& path);
  // How a command ends when `response` (from SendPlain) failed or is not 200: without a CA to
  // verify the server with, a usage error saying how to pin one (kExitUsage, as Call); otherwise
  // "`what` (REASON)" with kExitUnreachable, REASON the HTTP status or Explain's text.
  Failure PlainFailure(absl::string_view what, const absl::StatusOr<HttpResponse>& response) const;

  // A transport failure as the operator should read it: what failed and, for a server that did
  // not verify, which CA and identity meshctl expected and how to pin a new CA; for no CA, how to
  // pin one.
  std::string Explain(const absl::Status& status) const;

 private:
  std::optional<ApiReply> CallImpl(absl::string_view method, const std::string& path,
                                   absl::string_view body, int* exit_code,
                                   std::function<bool(absl::string_view data)> on_body_data,
                                   std::string* unreachable);
  // Sends `request` to the current replica, then to each other one while none can be reached.
  absl::StatusOr<HttpResponse> SendToAny(ApiRequest request);

  ApiTransport& transport_;
  std::ostream& err_;
  std::string server_;                    // as given
  std::vector<std::string> servers_{""};  // server_ split at commas
  size_t current_ = 0;
  std::string token_;
  ServerTrust trust_;
  bool warned_plaintext_ = false;
  std::chrono::milliseconds timeout_{10000};
};

// The API path of a resource kind in `namespace_` (ignored for a kind without namespaces), and of
// `name` in it unless empty.
std::string ResourcePath(const policy::KindInfo& info, absl::string_view namespace_,
                         absl::string_view name);

using http::QueryEscape;

}  // namespace meshlet::controlplane::cli
