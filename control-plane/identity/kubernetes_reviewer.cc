#include "control-plane/identity/kubernetes_reviewer.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/event/timer.h"
#include "common/http/h1/parser.h"
#include "common/net/connection.h"
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

// One TokenReview: connection, deadline, response parser.
class KubernetesTokenReviewer::Exchange final : public net::ConnectionCallbacks,
                                                public http::h1::ParserVisitor {
 public:
  Exchange(KubernetesTokenReviewer& owner, std::function<void(absl::StatusOr<std::string>)> done)
      : owner_(owner),
        done_(std::move(done)),
        deadline_(owner.loop_, [this] { OnDeadline(); }),
        parser_(http::h1::Parser::Type::kResponse, this) {}

  ~Exchange() override {
    if (connection_ != nullptr) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
      // Exchanges are destroyed outside their connection's callbacks (DeferDelete, or with the
      // reviewer), so the connection can go at once.
      connection_.reset();
    }
  }

  std::function<void(absl::StatusOr<std::string>)> TakeDone() { return std::move(done_); }

  // Fails with `result` on a later loop turn, like every other outcome.
  void FailSoon(absl::string_view result, absl::string_view message) {
    pending_result_ = std::string(result);
    pending_failure_ = absl::UnavailableError(message);
    deadline_.Enable(std::chrono::milliseconds(0));
  }

  void Start(const std::string& request_json) {
    absl::StatusOr<std::string> token = ReadFile(owner_.options_.token_file, kMaxBearerTokenBytes);
    if (token.ok()) {
      absl::StripAsciiWhitespace(&*token);
      if (token->empty())
        token = absl::InvalidArgumentError(owner_.options_.token_file + " is empty");
    }
    if (!token.ok()) {
      FailSoon("no_credentials",
               absl::StrCat("no credentials for the Kubernetes API: ", token.status().message()));
      return;
    }
    deadline_.Enable(std::chrono::milliseconds(absl::ToInt64Milliseconds(owner_.options_.timeout)));
    connection_ = net::Connection::Connect(
        owner_.loop_, owner_.address_,
        std::chrono::milliseconds(absl::ToInt64Milliseconds(owner_.options_.timeout)),
        owner_.transport_factory_);
    connection_->SetCallbacks(this);
    connection_->Write(absl::StrCat(
        "POST ", kTokenReviewPath, " HTTP/1.1\r\nHost: ", owner_.options_.server_name,
        "\r\nAuthorization: Bearer ", *token,
        "\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: ",
        request_json.size(), "\r\nConnection: close\r\nUser-Agent: meshlet-control-plane\r\n\r\n",
        request_json));
  }

  // ConnectionCallbacks.
  void OnData(net::Buffer& data, bool end_stream) override {
    received_ += data.length();
    if (received_ > owner_.options_.max_response_bytes) {
      Fail("too_large", absl::StrCat("the API server's answer exceeds ",
                                     owner_.options_.max_response_bytes, " bytes"));
      return;
    }
    bool finished = false;
    data.ForEachSlice([&](absl::string_view slice) {
      if (finished || parser_.status() != http::h1::Parser::Status::kOk) return;
      parser_.Execute(slice);
      finished = complete_;
    });
    data.Clear();
    if (complete_) {
      Succeed();
      return;
    }
    if (parser_.status() == http::h1::Parser::Status::kError) {
      Fail("malformed", absl::StrCat("the API server's answer is not valid HTTP/1.1: ",
                                     parser_.error_message()));
      return;
    }
    if (end_stream) {
      parser_.Finish();
      if (complete_) {
        Succeed();
      } else {
        Fail("malformed", "the API server closed the connection before a complete answer");
      }
    }
  }

  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    const std::string where = owner_.address_.ToString();
    switch (reason) {
      case net::CloseReason::kConnectFailed:
      case net::CloseReason::kConnectTimeout:
        Fail("connect_failed",
             absl::StrCat("cannot connect to the API server ", where, ": ", detail.message()));
        return;
      case net::CloseReason::kTransportError:
        Fail("tls_failed",
             absl::StrCat("TLS with the API server ", where,
                          " failed (is --kubernetes-ca-file the cluster CA?): ", detail.message()));
        return;
      default:
        if (complete_) {
          Succeed();
        } else {
          Fail("malformed", absl::StrCat("the API server ", where,
                                         " closed the connection before a complete answer"));
        }
        return;
    }
  }

  // ParserVisitor.
  Action OnStatusLine(int, int, int status_code, absl::string_view reason) override {
    status_code_ = status_code;
    reason_ = std::string(reason);
    return Action::kContinue;
  }
  Action OnHeader(absl::string_view, absl::string_view) override { return Action::kContinue; }
  Action OnHeadersComplete(const http::h1::MessageInfo&) override { return Action::kContinue; }
  Action OnBody(absl::string_view data) override {
    body_.append(data.data(), data.size());
    return Action::kContinue;
  }
  Action OnMessageComplete() override {
    if (status_code_ < 200) return Action::kContinue;  // 100 Continue: the answer follows
    complete_ = true;
    return Action::kPause;
  }

 private:
  void OnDeadline() {
    if (!pending_failure_.ok()) {
      owner_.Finish(this, pending_result_, pending_failure_);
      return;
    }
    Fail("timeout", absl::StrCat("no answer from the API server ", owner_.address_.ToString(),
                                 " within ", absl::FormatDuration(owner_.options_.timeout)));
  }

  void Succeed() {
    if (status_code_ < 200 || status_code_ > 299) {
      Fail("http_error",
           absl::StrCat("the API server answered HTTP ", status_code_, " ", reason_,
                        status_code_ == 401 || status_code_ == 403
                            ? " (the control plane's own service-account token was refused, or "
                              "it may not create tokenreviews: it needs the "
                              "system:auth-delegator role)"
                            : "",
                        body_.empty() ? "" : ": ", body_.substr(0, 200)));
      return;
    }
    absl::StatusOr<JsonObject> json = JsonObject::Parse(body_);
    absl::StatusOr<std::string> kind =
        json.ok() ? json->String("kind") : absl::StatusOr<std::string>(json.status());
    if (!kind.ok() || *kind != "TokenReview") {
      Fail("malformed", "the API server's answer is not a TokenReview object");
      return;
    }
    owner_.Finish(this, "ok", std::move(body_));
  }

  void Fail(absl::string_view result, absl::string_view message) {
    owner_.Finish(this, result, absl::UnavailableError(message));
  }

  KubernetesTokenReviewer& owner_;
  std::function<void(absl::StatusOr<std::string>)> done_;
  event::Timer deadline_;
  http::h1::Parser parser_;
  std::unique_ptr<net::Connection> connection_;
  std::string pending_result_;
  absl::Status pending_failure_;
  size_t received_ = 0;
  int status_code_ = 0;
  std::string reason_;
  std::string body_;
  bool complete_ = false;
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
