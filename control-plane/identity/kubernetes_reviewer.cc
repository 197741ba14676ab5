#include "control-plane/identity/kubernetes_reviewer.h"

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
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::identity {
namespace {

constexpr absl::string_view kTokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews";
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

// One TokenReview: the credentials, the HTTP request, the judgement of its answer.
class KubernetesTokenReviewer::Exchange {
 public:
  Exchange(KubernetesTokenReviewer& owner, std::function<void(absl::StatusOr<std::string>)> done)
      : owner_(owner), done_(std::move(done)), failure_timer_(owner.loop_, [this] {
          owner_.Finish(this, pending_result_, pending_failure_);
        }) {}

  std::function<void(absl::StatusOr<std::string>)> TakeDone() { return std::move(done_); }

  // Fails with `result` on a later loop turn, like every other outcome.
  void FailSoon(absl::string_view result, absl::string_view message) {
    pending_result_ = std::string(result);
    pending_failure_ = absl::UnavailableError(message);
    failure_timer_.Enable(std::chrono::milliseconds(0));
  }

  void Start(const std::string& request_json) {
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
    http::ClientRequest request{.method = "POST",
                                .path = std::string(kTokenReviewPath),
                                .authority = options.server_name,
                                .body = request_json};
    request.headers.Add("authorization", absl::StrCat("Bearer ", *token));
    request.headers.Add("content-type", "application/json");
    request.headers.Add("accept", "application/json");
    request.headers.Add("user-agent", "meshlet-control-plane");
    fetch_ = http::HttpFetch::Start(
        owner_.loop_, {owner_.address_}, std::move(request),
        {.timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(options.timeout)),
         .max_response_bytes = options.max_response_bytes,
         .transport_factory = owner_.transport_factory_},
        [this](http::ClientResult result) { OnAnswer(std::move(result)); });
  }

 private:
  void OnAnswer(http::ClientResult result) {
    const std::string where = owner_.address_.ToString();
    switch (result.error) {
      case http::ClientError::kNone:
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
                                     absl::FormatDuration(owner_.options_.timeout)));
        return;
      case http::ClientError::kTooLarge:
        Fail("too_large", absl::StrCat("the API server's answer exceeds ",
                                       owner_.options_.max_response_bytes, " bytes"));
        return;
      case http::ClientError::kClosed:
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
      Fail("http_error",
           absl::StrCat("the API server answered HTTP ", result.status,
                        result.status == 401 || result.status == 403
                            ? " (the control plane's own service-account token was refused, or "
                              "it may not create tokenreviews: it needs the "
                              "system:auth-delegator role)"
                            : "",
                        result.body.empty() ? "" : ": ", result.body.substr(0, 200)));
      return;
    }
    absl::StatusOr<JsonObject> json = JsonObject::Parse(result.body);
    absl::StatusOr<std::string> kind =
        json.ok() ? json->String("kind") : absl::StatusOr<std::string>(json.status());
    if (!kind.ok() || *kind != "TokenReview") {
      Fail("malformed", "the API server's answer is not a TokenReview object");
      return;
    }
    owner_.Finish(this, "ok", std::move(result.body));
  }

  void Fail(absl::string_view result, absl::string_view message) {
    owner_.Finish(this, result, absl::UnavailableError(message));
  }

  KubernetesTokenReviewer& owner_;
  std::function<void(absl::StatusOr<std::string>)> done_;
  event::Timer failure_timer_;
  std::unique_ptr<http::HttpFetch> fetch_;
  std::string pending_result_;
  absl::Status pending_failure_;
};

absl::StatusOr<std::unique_ptr<KubernetesTokenReviewer>> KubernetesTokenReviewer::Create(
    event::Loop& loop, const KubernetesApiOptions& options, StatsRegistry& stats) {
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
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kubernetes-ca-file=", options.ca_file, ": ", context.status().message()));
  }
  return std::unique_ptr<KubernetesTokenReviewer>(
      new KubernetesTokenReviewer(loop, options, *address, *std::move(context), stats));
}

KubernetesTokenReviewer::KubernetesTokenReviewer(event::Loop& loop,
                                                 const KubernetesApiOptions& options,
                                                 net::Address address,
                                                 std::shared_ptr<const tls::TlsContext> context,
                                                 StatsRegistry& stats)
    : loop_(loop),
      options_(options),
      address_(std::move(address)),
      transport_factory_(tls::TlsTransport::Factory(
          std::make_shared<tls::TlsContextProvider>(std::move(context)),
          {.server_name = options.server_name, .verify_peer_name = address_.ip()})),
      stats_(stats) {}

KubernetesTokenReviewer::~KubernetesTokenReviewer() = default;

void KubernetesTokenReviewer::Review(
    const std::string& request_json,
    std::function<void(absl::StatusOr<std::string> response_json)> done) {
  auto exchange = std::make_unique<Exchange>(*this, std::move(done));
  Exchange* raw = exchange.get();
  const bool overloaded = reviews_.size() >= options_.max_in_flight;
  reviews_.emplace(raw, std::move(exchange));
  if (overloaded) {
    raw->FailSoon("overloaded", absl::StrCat("more than ", options_.max_in_flight,
                                             " TokenReviews in flight; try again later"));
    return;
  }
  raw->Start(request_json);
}

void KubernetesTokenReviewer::Finish(Exchange* exchange, absl::string_view result,
                                     absl::StatusOr<std::string> response) {
  auto it = reviews_.find(exchange);
  if (it == reviews_.end()) return;  // already finished
  std::unique_ptr<Exchange> owned = std::move(it->second);
  reviews_.erase(it);
  auto counter = stats_.shared_shard().RegisterCounter(
      "meshlet_ca_token_reviews_total",
      "TokenReview calls to the Kubernetes API server, by result (ok, connect_failed, "
      "tls_failed, timeout, http_error, malformed, too_large, no_credentials, overloaded).",
      {{"result", std::string(result)}});
  if (counter.ok()) counter->Inc();
  std::function<void(absl::StatusOr<std::string>)> done = owned->TakeDone();
  // The exchange is inside one of its own callbacks: destroy it after this loop turn.
  loop_.DeferDelete(std::move(owned));
  done(std::move(response));
}

}  // namespace meshlet::controlplane::identity
