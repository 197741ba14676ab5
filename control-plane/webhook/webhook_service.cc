#include "control-plane/webhook/webhook_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_transport.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::webhook {
namespace {

using Verdict = ReviewResult::Verdict;
constexpr Verdict kVerdicts[] = {Verdict::kInjected, Verdict::kUntouched, Verdict::kRefused,
                                 Verdict::kMalformed};

// Both HTTP versions: the API server's client offers h2 and http/1.1.
tls::TlsContextConfig ServerConfig(std::string certificate_chain_pem, std::string private_key_pem) {
  return {.certificate_chain_pem = std::move(certificate_chain_pem),
          .private_key_pem = std::move(private_key_pem),
          .alpn_protocols = {"h2", "http/1.1"}};
}

}  // namespace

std::vector<flags::Flag> WebhookFlags(WebhookOptions& options) {
  return {
      {.name = "--webhook-address",
       .value = "HOST:PORT|off",
       .help = "HTTPS address of the sidecar-injection webhook (default 0.0.0.0:15017); off: none",
       .set =
           [&options](absl::string_view v) {
             if (v != "off") {
               absl::StatusOr<net::Address> address = net::Address::Parse(v);
               if (!address.ok()) return address.status();
             }
             options.address = std::string(v);
             options.address_explicit = true;
             return absl::OkStatus();
           }},
      flags::StringFlag("--webhook-tls-cert", "FILE", &options.tls_cert_file,
                        "the webhook's certificate chain, PEM (default: the certificate the "
                        "control plane's CA issues to it, as for discovery); with "
                        "--webhook-tls-key"),
      flags::StringFlag("--webhook-tls-key", "FILE", &options.tls_key_file,
                        "the private key of --webhook-tls-cert, PEM"),
      flags::IntFlag<size_t>("--webhook-max-body-bytes", "N", &options.max_request_body_bytes,
                             "largest AdmissionReview accepted (default 8388608)", 1024),
      flags::StringFlag("--webhook-configuration", "NAME", &options.ca_bundle.configuration_name,
                        "the MutatingWebhookConfiguration whose caBundle the control plane keeps "
                        "equal to its CA's trust bundle, in a cluster (default "
                        "meshlet-sidecar-injector); empty: none"),
      flags::PositiveDurationFlag("--webhook-ca-bundle-interval", &options.ca_bundle.check_interval,
                                  "how often that caBundle is checked (default 30s)"),
      flags::StringFlag("--trust-bundle-namespaces", "SELECTOR",
                        &options.trust_bundle.namespace_selector,
                        "in a cluster, the namespaces (a label selector) that get the "
                        "meshlet-trust ConfigMap injected pods mount, kept equal to the CA's "
                        "trust bundle (default meshlet.io/inject=enabled); empty: none"),
      flags::PositiveDurationFlag("--trust-bundle-interval", &options.trust_bundle.interval,
                                  "how often those ConfigMaps are checked (default 30s)"),
      flags::StringFlag("--inject-proxy-image", "IMAGE", &options.proxy_image,
                        "the proxy image injected pods run (default meshlet-proxy:<version>); "
                        "a pod's sidecar.meshlet.io/proxyImage annotation overrides it"),
      flags::StringFlag("--inject-control-plane", "HOST:PORT", &options.control_plane_address,
                        "the discovery address injected proxies use (default "
                        "meshlet-control-plane[-REVISION].<namespace>.svc:15012)"),
      {.name = "--inject-mode",
       .value = "native|classic",
       .help = "how the sidecar is added: native (an init container with restartPolicy Always, "
               "Kubernetes 1.29+; default) or classic (a regular container listed first)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<inject::SidecarMode> mode = inject::ParseSidecarMode(v);
             if (!mode.ok()) return mode.status();
             options.mode = *mode;
             return absl::OkStatus();
           }},
      {.name = "--inject-identity",
       .value = "kubernetes-token|join-token",
       .help = "how injected proxies prove their identity to the CA (default kubernetes-token)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<inject::Identity> identity = inject::ParseIdentity(v);
             if (!identity.ok()) return identity.status();
             options.identity = *identity;
             return absl::OkStatus();
           }},
      {.name = "--inject-capture",
       .value = "init|cni",
       .help = "who installs injected pods' traffic capture: init (the meshlet-init container, "
               "root with NET_ADMIN and NET_RAW; default) or cni (the nodes' meshlet-cni plugin: "
               "pods get no container with capabilities and meet the Pod Security restricted "
               "level)",
       .set =
           [&options](absl::string_view v) {
             if (v != "init" && v != "cni")
               return absl::InvalidArgumentError("must be init or cni");
             options.cni = v == "cni";
             return absl::OkStatus();
           }},
  };
}

WebhookService::WebhookService(ControlPlane& control_plane, WebhookOptions options,
                               const ControlPlaneIdentity& identity)
    : control_plane_(control_plane), options_(std::move(options)) {
  inject::Options& inject = review_.inject;
  inject.version = kControlPlaneVersion;
  inject.proxy_image = options_.proxy_image.empty()
                           ? absl::StrCat("meshlet-proxy:", kControlPlaneVersion)
                           : options_.proxy_image;
  inject.control_plane_address =
      options_.control_plane_address.empty()
          ? inject::ControlPlaneDiscoveryAddress(options_.revision, identity.namespace_)
          : options_.control_plane_address;
  inject.revision = options_.revision;
  inject.own_revision_only = true;
  inject.trust_domain = identity.trust_domain;
  inject.control_plane_namespace = identity.namespace_;
  inject.control_plane_service_account = identity.service_account;
  inject.mode = options_.mode;
  inject.identity = options_.identity;
  inject.cni = options_.cni;
  review_.excluded_namespaces = {"kube-system", identity.namespace_};
  options_.trust_bundle.excluded_namespaces = review_.excluded_namespaces;
  options_.trust_bundle.config_map = review_.inject.trust_bundle_config_map;
  for (Verdict verdict : kVerdicts) {
    absl::StatusOr<Counter> counter = control_plane_.stats().shared_shard().RegisterCounter(
        "meshlet_cp_webhook_reviews_total",
        "AdmissionReviews the injection webhook answered, by verdict: injected, untouched "
        "(allowed unchanged), refused (injection refused the object), malformed.",
        {{"verdict", std::string(VerdictName(verdict))}});
    CHECK(counter.ok()) << counter.status().message();
    reviews_.push_back(*counter);
  }
}

WebhookService::~WebhookService() = default;

bool WebhookService::wants_serving_certificate() const {
  return options_.address != "off" && options_.tls_cert_file.empty();
}

absl::Status WebhookService::SetServingCertificate(std::string certificate_chain_pem,
                                                   std::string private_key_pem) {
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context = tls::TlsContext::CreateServer(
      ServerConfig(std::move(certificate_chain_pem), std::move(private_key_pem)));
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("webhook TLS with the new certificate: ", context.status().message()));
  }
  if (tls_provider_ == nullptr) {
    tls_provider_ = std::make_shared<tls::TlsContextProvider>(*std::move(context));
  } else {
    tls_provider_->Update(*std::move(context));
  }
  return absl::OkStatus();
}

void WebhookService::SetTrustBundle(const std::string& trust_bundle_pem) {
  if (ca_bundle_ != nullptr) ca_bundle_->SetTrustBundle(trust_bundle_pem);
  if (trust_bundle_ != nullptr) trust_bundle_->SetTrustBundle(trust_bundle_pem);
}

absl::Status WebhookService::Start(const kubernetes::KubernetesApiOptions& kubernetes,
                                   const std::string& trust_bundle_pem,
                                   const kubernetes::RevisionTags* tags) {
  if (!kubernetes.api.empty() && !trust_bundle_pem.empty()) {
    absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> api =
        kubernetes::KubernetesApi::Create(control_plane_.loop(), kubernetes);
    if (!api.ok()) return api.status();
    kubernetes_api_ = *std::move(api);
    if (wants_serving_certificate() && !options_.ca_bundle.configuration_name.empty()) {
      ca_bundle_ = std::make_unique<kubernetes::WebhookCaBundle>(
          control_plane_.loop(), *kubernetes_api_, control_plane_.stats(), trust_bundle_pem,
          options_.ca_bundle);
      ca_bundle_->Start();
    }
    if (!options_.trust_bundle.namespace_selector.empty()) {
      if (tags != nullptr) {
        options_.trust_bundle.more_selectors = [tags, revision = options_.revision] {
          std::vector<std::string> selectors;
          for (const std::string& tag : tags->TagsOf(revision)) {
            selectors.push_back(tag == inject::kDefaultTag
                                    ? std::string("meshlet.io/inject=enabled")
                                    : absl::StrCat(inject::kRevisionLabel, "=", tag));
          }
          return selectors;
        };
      }
      trust_bundle_ = std::make_unique<kubernetes::TrustBundleConfigMaps>(
          control_plane_.loop(), *kubernetes_api_, control_plane_.stats(), trust_bundle_pem,
          options_.trust_bundle);
      trust_bundle_->Start();
    }
  }
  if (options_.address == "off") return absl::OkStatus();
  if (absl::Status valid = inject::ValidateOptions(review_.inject); !valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("injection webhook options (--inject-*): ", valid.message()));
  }
  if (options_.tls_cert_file.empty() != options_.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--webhook-tls-cert and --webhook-tls-key go together");
  }
  if (!options_.tls_cert_file.empty()) {
    absl::StatusOr<std::string> chain = ReadFile(options_.tls_cert_file);
    if (!chain.ok()) return chain.status();
    absl::StatusOr<std::string> key = ReadFile(options_.tls_key_file);
    if (!key.ok()) return key.status();
    if (absl::Status s = SetServingCertificate(*std::move(chain), *std::move(key)); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--webhook-tls-cert \"",
                                                     options_.tls_cert_file, "\" / key \"",
                                                     options_.tls_key_file, "\": ", s.message()));
    }
  }
  if (tls_provider_ == nullptr) {
    LOG(INFO) << "webhook: off (no certificate: the CA issues none when discovery uses "
                 "--xds-tls-cert or --xds-plaintext; give --webhook-tls-cert/--webhook-tls-key)";
    return absl::OkStatus();
  }
  absl::StatusOr<net::Address> address = net::Address::Parse(options_.address);
  if (!address.ok()) return address.status();
  http::HttpServerOptions server_options = control_plane_.HttpServerOptionsFor("webhook");
  server_options.max_request_body_bytes = options_.max_request_body_bytes;
  server_options.transport_factory = tls::TlsTransport::Factory(tls_provider_);
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Create(
      control_plane_.loop(), *address, server_options,
      [this](const http::ServerRequest& request) { return Handle(request); });
  if (!server.ok()) {
    if (!options_.address_explicit) {
      LOG(WARN) << "webhook: off: " << options_.address << ": " << server.status().message()
                << " (give --webhook-address to make this an error)";
      return absl::OkStatus();
    }
    return absl::Status(server.status().code(), absl::StrCat("--webhook-address ", options_.address,
                                                             ": ", server.status().message()));
  }
  server_ = *std::move(server);
  control_plane_.OnShutdown([this] { server_->Shutdown(); });
  LOG(INFO) << "webhook: sidecar injection on https://" << server_->address().ToString()
            << "/inject (proxy image " << review_.inject.proxy_image << ", "
            << (review_.inject.mode == inject::SidecarMode::kNative ? "native" : "classic")
            << " sidecars)";
  return absl::OkStatus();
}

const net::Address* WebhookService::address() const {
  return server_ == nullptr ? nullptr : &server_->address();
}

http::ServerResponse WebhookService::Handle(const http::ServerRequest& request) {
  if (request.path() == "/healthz") return http::ServerResponse::Text(200, "ok\n");
  // /inject, or /inject/tag/<tag> from a tag's configuration: the tag's pods are this
  // revision's.
  absl::string_view tag = request.path();
  const bool tagged = absl::ConsumePrefix(&tag, inject::kTagInjectPathPrefix);
  if (tagged ? !inject::ParseTag(tag).ok() : request.path() != "/inject") {
    return http::ServerResponse::Text(
        404, "not found: the webhook serves POST /inject and POST /inject/tag/<tag>\n");
  }
  if (request.method() != "POST") {
    return http::ServerResponse::Text(405, "POST an AdmissionReview to /inject\n");
  }
  ReviewResult result;
  if (tagged) {
    ReviewOptions options = review_;
    options.inject.tags[std::string(tag)] = review_.inject.revision;
    result = Review(request.body, options);
  } else {
    result = Review(request.body, review_);
  }
  reviews_[static_cast<size_t>(result.verdict)].Inc();
  if (result.verdict == Verdict::kInjected || result.verdict == Verdict::kUntouched) {
    LOG(DEBUG) << "webhook" << (tagged ? absl::StrCat(" (tag ", tag, ")") : "") << ": "
               << result.reason;
  } else {
    LOG_EVERY_N_SEC(INFO, 1) << "webhook: refused: " << result.reason;
  }
  return http::ServerResponse::Json(200, std::move(result.body));
}

}  // namespace meshlet::controlplane::webhook
