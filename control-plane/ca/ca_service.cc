#include "control-plane/ca/ca_service.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "control-plane/api/token_api.h"

namespace meshlet::controlplane::ca {

CaServiceOptions DefaultCaServiceOptions() {
  CaServiceOptions options;
  options.kubernetes.api = identity::InClusterApiFromEnvironment();
  return options;
}

std::vector<flags::Flag> CaFlags(CaServiceOptions& options) {
  return {
      flags::StringFlag("--ca-cert", "FILE", &options.cert_chain_file,
                        "signing certificate chain (intermediate first); default: a root "
                        "generated in <data-dir>/ca on first start"),
      flags::StringFlag("--ca-key", "FILE", &options.key_file, "its key"),
      flags::StringFlag("--ca-trust-bundle", "FILE", &options.trust_bundle_file,
                        "extra trusted roots (root rotation; the root if not in the chain)"),
      flags::StringFlag("--trust-domain", "NAME", &options.authority.trust_domain,
                        "SPIFFE trust domain (default cluster.local)"),
      flags::PositiveDurationFlag(
          "--cert-ttl", &options.authority.default_ttl,
          "default certificate lifetime, also of the discovery port's own (default 24h)", "24h"),
      flags::PositiveDurationFlag("--cert-max-ttl", &options.authority.max_ttl,
                                  "longest lifetime a workload may ask for (default 24h)", "24h"),
  };
}

std::vector<flags::Flag> KubernetesAttestationFlags(CaServiceOptions& options) {
  return {
      flags::StringFlag("--kubernetes-api", "ADDR", &options.kubernetes.api,
                        "API server, e.g. https://10.96.0.1:443 (default: from "
                        "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; \"\" turns it off)"),
      flags::StringFlag("--kubernetes-token-file", "FILE", &options.kubernetes.token_file,
                        "the control plane's own token, read for every review (default "
                        "/var/run/secrets/kubernetes.io/serviceaccount/token)"),
      flags::StringFlag("--kubernetes-ca-file", "FILE", &options.kubernetes.ca_file,
                        "CA of the API server's certificate (default "
                        "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt)"),
      {.name = "--kubernetes-audience",
       .value = "NAME",
       .help = "audience sidecar tokens must carry (default meshlet)",
       .set =
           [&options](absl::string_view v) {
             if (v.empty()) return absl::InvalidArgumentError("must not be empty");
             options.token_review.audience = std::string(v);
             return absl::OkStatus();
           }},
      flags::PositiveDurationFlag("--kubernetes-timeout", &options.kubernetes.timeout,
                                  "deadline of one TokenReview (default 5s)", "5s"),
      flags::NonNegativeDurationFlag(
          "--kubernetes-idle-timeout", &options.kubernetes.idle_timeout,
          "how long a kept-alive connection to the API server may stay idle (default 90s; 0: a "
          "connection per request)",
          "90s"),
  };
}

absl::Status CheckCaFlags(const CaServiceOptions& options) {
  if (options.cert_chain_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--ca-cert and --ca-key go together");
  }
  if (absl::Status valid = ValidateAuthorityOptions(options.authority); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("CA flags: ", valid.message()));
  }
  return absl::OkStatus();
}

CaService::CaService(ControlPlane& control_plane, CaServiceOptions options)
    : control_plane_(control_plane), options_(std::move(options)) {}

CaService::~CaService() {
  if (service_ != nullptr) control_plane_.api().SetTokenHandler(nullptr);
}

absl::Status CaService::Init() {
  // No operator CA: a generated root, in the data directory, or with a shared store (etcd) in
  // the store, so that every replica signs under the same one.
  const bool replicated = !control_plane_.options().store.empty();
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> authority =
      !options_.cert_chain_file.empty()
          ? CertificateAuthority::FromFiles(options_.cert_chain_file, options_.key_file,
                                            options_.trust_bundle_file, options_.authority,
                                            control_plane_.clock())
      : replicated ? CertificateAuthority::LoadOrGenerateSharedRoot(
                         control_plane_.store(), *control_plane_.store_keys(), options_.authority,
                         control_plane_.clock(), options_.trust_bundle_file)
                   : CertificateAuthority::LoadOrGenerateRoot(
                         absl::StrCat(control_plane_.options().data_dir, "/ca"), options_.authority,
                         control_plane_.clock(), options_.trust_bundle_file);
  if (authority.ok() && replicated && options_.cert_chain_file.empty()) {
    LOG(INFO) << "ca: the generated root is shared by every replica through the store (its key "
                 "is kept there encrypted with --store-encryption-key-file, key "
              << control_plane_.store_keys()->current_key_id() << ")";
  }
  if (!authority.ok()) {
    return absl::Status(authority.status().code(),
                        absl::StrCat("CA: ", authority.status().message()));
  }
  authority_ = std::move(*authority);
  // A revocation is kept for as long as a certificate bought before it can live.
  identity::JoinTokenLimits token_limits;
  token_limits.revocation_retention =
      options_.authority.max_ttl + options_.authority.backdate + absl::Hours(1);
  join_tokens_ = std::make_unique<identity::JoinTokens>(
      control_plane_.store(), control_plane_.clock(), control_plane_.stats(), token_limits);
  if (!options_.kubernetes.api.empty()) {
    absl::StatusOr<std::unique_ptr<identity::KubernetesTokenReviewer>> reviewer =
        identity::KubernetesTokenReviewer::Create(control_plane_.loop(), options_.kubernetes,
                                                  control_plane_.stats());
    if (!reviewer.ok()) {
      return absl::Status(reviewer.status().code(),
                          absl::StrCat("Kubernetes attestation: ", reviewer.status().message()));
    }
    token_reviewer_ = *std::move(reviewer);
    LOG(INFO) << "ca: Kubernetes service-account tokens (audience \""
              << options_.token_review.audience << "\") are reviewed by the API server "
              << token_reviewer_->address().ToString();
  } else {
    LOG(INFO) << "ca: Kubernetes service-account attestation is off (no --kubernetes-api and "
                 "not in a pod)";
  }
  service_ = std::make_unique<CertificateService>(
      authority_, join_tokens_.get(), token_reviewer_.get(), control_plane_.stats(),
      control_plane_.clock(),
      CertificateServiceOptions{.token_review = options_.token_review,
                                .store_worker = &control_plane_.store_worker()});
  control_plane_.api().SetTokenHandler([this](const http::ServerRequest& request) {
    return api::HandleTokenRequest(*join_tokens_, request);
  });
  control_plane_.api().SetTrustBundle(authority_->trust_bundle_pem());
  purge_timer_ = std::make_unique<event::Timer>(control_plane_.loop(), [this] {
    control_plane_.store_worker().Run<absl::StatusOr<size_t>>(
        [tokens = join_tokens_.get()] { return tokens->PurgeExpired(); },
        [](absl::StatusOr<size_t> purged) {
          if (!purged.ok()) LOG(WARN) << "join tokens: purge failed: " << purged.status();
        });
  });
  purge_timer_->EnableRepeating(std::chrono::hours(1));
  return absl::OkStatus();
}

absl::Status CaService::Register(http::grpc::Server& grpc_server) {
  CHECK(service_ != nullptr) << "CaService::Register before Init";
  if (absl::Status status = service_->Register(grpc_server); !status.ok()) return status;
  const tls::CertificateInfo signer = tls::DescribeCertificate(authority_->signing_certificate());
  LOG(INFO) << "ca: issuing " << options_.authority.trust_domain << " certificates as \""
            << signer.subject << "\" (expires " << absl::FormatTime(signer.not_after) << "), "
            << authority_->trust_bundle().size() << " root(s) in the trust bundle";
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::ca
