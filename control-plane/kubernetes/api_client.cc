#include "control-plane/kubernetes/api_client.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/event/timer.h"
#include "common/http/client.h"
#include "common/tls/tls_transport.h"

namespace meshlet::controlplane::kubernetes {
namespace {

constexpr size_t kMaxBearerTokenBytes = 64 * 1024;

}  // namespace

std::string InClusterApiFromEnvironment() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (host == nullptr || *host == '\0') return "";
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  const std::string port_text = port != nullptr && *port != '\0' ? port : "443";
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port_text);
  return absl::StrCat(host, ":", port_text);
}

// One request: the credentials, the HTTP exchange, the judgement of its answer.
class KubernetesApi::Exchange {
 public:
  Exchange(KubernetesApi& owner, std::function<void(ApiResult)> done)
      : owner_(owner),
        done_(std::move(done)),
        failure_timer_(owner.loop_, [this] { owner_.Finish(this, std::move(pending_)); }) {}

  std::function<void(ApiResult)> TakeDone() { return std::move(done_); }

  // Fails with `result` on a later loop turn, like every other outcome.
  void FailSoon(absl::string_view result, absl::string_view message) {
    pending_ = {.result = std::string(result), .body = absl::UnavailableError(message)};
    failure_timer_.Enable(std::chrono::milliseconds(0));
  }

  void Start(ApiRequest request) {
    const KubernetesApiOptions& options = owner_.options_;
    absl::StatusOr<std::string> token = ReadFile(options.token_file, kMaxBearerTokenBytes);
    if (token.ok()) {
      absl::StripAsciiWhitespace(&*token);
      if (token->empty()) token = absl::InvalidArgumentError(options.token_file + " is empty");
    }
    if (!token.ok()) {
      FailSoon("no_credentials",
               absl::StrCat("no credentials for the Kubernetes API: ", token.status().message()));
      return;
    }
    forbidden_hint_ = std::move(request.forbidden_hint);
    what_ = absl::StrCat(request.method, " ", request.path);
    on_line_ = std::move(request.on_line);
    const absl::Duration timeout =
        request.timeout > absl::ZeroDuration() ? request.timeout : options.timeout;
    http::ClientRequest http_request{.method = std::move(request.method),
                                     .path = std::move(request.path),
                                     .authority = options.server_name,
                                     .body = std::move(request.body)};
    http_request.headers.Add("authorization", absl::StrCat("Bearer ", *token));
    if (!request.content_type.empty()) {
      http_request.headers.Add("content-type", request.content_type);
    }
    http_request.headers.Add("accept",
                             request.accept.empty() ? "application/json" : request.accept);
    http_request.headers.Add("user-agent", "meshlet-control-plane");
    http::ClientOptions client_options{
        .timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)),
        .max_response_bytes = options.max_response_bytes,
        .transport_factory = owner_.transport_factory_};
    if (on_line_ != nullptr) {
      client_options.on_body_data = [this](absl::string_view data) { return OnWatchData(data); };
    } else {
      client_options.keep = &owner_.kept_;
      client_options.retry_on_reused = request.replay_safe || http_request.method == "GET";
    }
    timeout_ = timeout;
    fetch_ = http::HttpFetch::Start(
        owner_.loop_, {owner_.address_}, std::move(http_request), std::move(client_options),
        [this](http::ClientResult result) { OnAnswer(std::move(result)); });
  }

 private:
  // A watch's bytes: complete lines go to on_line_, the rest waits for its newline.
  bool OnWatchData(absl::string_view data) {
    streamed_ = true;
    while (!data.empty()) {
      const size_t newline = data.find('\n');
      const absl::string_view piece = data.substr(0, newline);
      if (partial_.size() + piece.size() > owner_.options_.max_response_bytes) {
        line_too_large_ = true;
        return false;
      }
      if (newline == absl::string_view::npos) {
        partial_.append(piece.data(), piece.size());
        return true;
      }
      data.remove_prefix(newline + 1);
      bool more = true;
      if (partial_.empty()) {
        if (!piece.empty()) more = on_line_(piece);
      } else {
        partial_.append(piece.data(), piece.size());
        more = on_line_(partial_);
        partial_.clear();
      }
      if (!more) return false;
    }
    return true;
  }

  void OnAnswer(http::ClientResult result) {
    const std::string where = owner_.address_.ToString();
    switch (result.error) {
      case http::ClientError::kNone:
        if (line_too_large_) {
          Fail("too_large", absl::StrCat(what_, ": a watch event exceeds ",
                                         owner_.options_.max_response_bytes, " bytes"));
          return;
        }
        break;
      case http::ClientError::kConnectFailed:
        Fail("connect_failed",
             absl::StrCat("cannot connect to the API server ", where, ": ", result.detail));
        return;
      case http::ClientError::kTlsFailed:
        Fail("tls_failed",
             absl::StrCat("TLS with the API server ", where,
                          " failed (is --kubernetes-ca-file the cluster CA?): ", result.detail));
        return;
      case http::ClientError::kTimeout:
        Fail("timeout", absl::StrCat("no answer from the API server ", where, " within ",
                                     absl::FormatDuration(timeout_)));
        return;
      case http::ClientError::kTooLarge:
        Fail("too_large", absl::StrCat("the API server's answer exceeds ",
                                       owner_.options_.max_response_bytes, " bytes"));
        return;
      case http::ClientError::kClosed:
        if (streamed_) {
          Fail("closed",
               absl::StrCat(what_, ": the API server ", where, " ended the watch mid-answer"));
          return;
        }
        Fail("malformed", absl::StrCat("the API server ", where,
                                       " closed the connection before a complete answer"));
        return;
      case http::ClientError::kMalformed:
      case http::ClientError::kBadRequest:
        Fail("malformed",
             absl::StrCat("the API server's answer is not valid HTTP/1.1: ", result.detail));
        return;
    }
    if (result.status < 200 || result.status > 299) {
      const bool forbidden = result.status == 401 || result.status == 403;
      ApiResult failed{
          .result = "http_error",
          .http_status = result.status,
          .body = absl::UnavailableError(absl::StrCat(
              what_, ": the API server answered HTTP ", result.status,
              forbidden && !forbidden_hint_.empty() ? absl::StrCat(" (", forbidden_hint_, ")") : "",
              result.body.empty() ? "" : ": ", result.body.substr(0, 200)))};
      owner_.Finish(this, std::move(failed));
      return;
    }
    owner_.Finish(this,
                  {.result = "ok", .http_status = result.status, .body = std::move(result.body)});
  }

  void Fail(absl::string_view result, absl::string_view message) {
    owner_.Finish(this, {.result = std::string(result), .body = absl::UnavailableError(message)});
  }

  KubernetesApi& owner_;
  std::function<void(ApiResult)> done_;
  event::Timer failure_timer_;
  std::unique_ptr<http::HttpFetch> fetch_;
  std::string forbidden_hint_;
  std::string what_;
  ApiResult pending_;
  absl::Duration timeout_;
  // A watch: its reader, the line not yet complete, and how it went.
  std::function<bool(absl::string_view)> on_line_;
  std::string partial_;
  bool streamed_ = false;
  bool line_too_large_ = false;
};

absl::StatusOr<std::unique_ptr<KubernetesApi>> KubernetesApi::Create(
    event::Loop& loop, const KubernetesApiOptions& options) {
  absl::string_view api = options.api;
  if (absl::ConsumePrefix(&api, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("--kubernetes-api=\"", options.api,
                                                   "\": the API server is reached over https"));
  }
  absl::ConsumePrefix(&api, "https://");
  absl::ConsumeSuffix(&api, "/");
  absl::StatusOr<net::Address> address = net::Address::Parse(api);
  if (!address.ok() || !address->is_ip() || address->port() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kubernetes-api=\"", options.api,
        "\": expected a numeric address such as https://10.96.0.1:443 or [fd00::1]:443"));
  }
  absl::StatusOr<std::string> ca = ReadFile(options.ca_file, 1 << 20);
  if (!ca.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kubernetes-ca-file: ", ca.status().message()));
  }
  tls::TlsContextConfig config;
  config.trust_bundle_pem = *std::move(ca);
  config.alpn_protocols = {"http/1.1"};
  // One server: its newest tickets, so that the next request's handshake resumes.
  config.client_session_cache_size = 1;
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kubernetes-ca-file=", options.ca_file, ": ", context.status().message()));
  }
  return std::unique_ptr<KubernetesApi>(
      new KubernetesApi(loop, options, *address, *std::move(context)));
}

KubernetesApi::KubernetesApi(event::Loop& loop, const KubernetesApiOptions& options,
                             net::Address address, std::shared_ptr<const tls::TlsContext> context)
    : loop_(loop),
      options_(options),
      address_(std::move(address)),
      context_(std::move(context)),
      transport_factory_(tls::TlsTransport::Factory(
          std::make_shared<tls::TlsContextProvider>(context_),
          {.server_name = options.server_name, .verify_peer_name = address_.ip()})),
      kept_(loop,
            {.max_idle =
                 options.idle_timeout > absl::ZeroDuration() ? options.max_idle_connections : 0,
             .idle_timeout = absl::ToChronoMilliseconds(options.idle_timeout)}) {
  if (options.stats == nullptr) return;
  StatsShard& shard = options.stats->shared_shard();
  auto counter = [&shard](const char* event) {
    absl::StatusOr<Counter> registered = shard.RegisterCounter(
        "meshlet_cp_kubernetes_api_connections_total",
        "Connections of the Kubernetes API clients, by event: opened and reused (kept-alive "
        "connections of short requests), closed (kept ones the server closed or that idled "
        "out), failed (a connect or TLS handshake that failed).",
        {{"event", event}});
    return registered.ok() ? *registered : Counter();  // the registry counts its refusals
  };
  counters_.opened = counter("opened");
  counters_.reused = counter("reused");
  counters_.closed = counter("closed");
  counters_.failed = counter("failed");
}

KubernetesApi::~KubernetesApi() = default;

void KubernetesApi::ExportConnectionCounts() {
  const uint64_t closed = kept_.closed_by_server() + kept_.idle_timeouts();
  counters_.opened.Inc(kept_.opened() - counters_.opened_seen);
  counters_.reused.Inc(kept_.reused() - counters_.reused_seen);
  counters_.closed.Inc(closed - counters_.closed_seen);
  counters_.opened_seen = kept_.opened();
  counters_.reused_seen = kept_.reused();
  counters_.closed_seen = closed;
}

void KubernetesApi::Call(ApiRequest request, std::function<void(ApiResult)> done) {
  auto exchange = std::make_unique<Exchange>(*this, std::move(done));
  Exchange* raw = exchange.get();
  const bool overloaded = exchanges_.size() >= options_.max_in_flight;
  exchanges_.emplace(raw, std::move(exchange));
  if (overloaded) {
    raw->FailSoon("overloaded", absl::StrCat("more than ", options_.max_in_flight,
                                             " requests to the API server in flight; try again "
                                             "later"));
    return;
  }
  raw->Start(std::move(request));
}

void KubernetesApi::Finish(Exchange* exchange, ApiResult result) {
  auto it = exchanges_.find(exchange);
  if (it == exchanges_.end()) return;  // already finished
  std::unique_ptr<Exchange> owned = std::move(it->second);
  exchanges_.erase(it);
  std::function<void(ApiResult)> done = owned->TakeDone();
  if (result.result == "connect_failed" || result.result == "tls_failed") counters_.failed.Inc();
  ExportConnectionCounts();
  // The exchange is inside one of its own callbacks: destroy it after this loop turn.
  loop_.DeferDelete(std::move(owned));
  done(std::move(result));
}

}  // namespace meshlet::controlplane::kubernetes
