#include "control-plane/ca/ca_service.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "control-plane/identity/token_api.h"

namespace meshlet::controlplane::ca {

absl::StatusOr<CaServiceOptions> ExtractCaFlags(std::vector<std::string>& args) {
  CaServiceOptions options;
  options.kubernetes.api = identity::InClusterApiFromEnvironment();
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    static constexpr absl::string_view kFlags[] = {"--ca-cert",
                                                   "--ca-key",
                                                   "--ca-trust-bundle",
                                                   "--trust-domain",
                                                   "--cert-ttl",
                                                   "--cert-max-ttl",
                                                   "--kubernetes-api",
                                                   "--kubernetes-ca-file",
                                                   "--kubernetes-audience",
                                                   "--kubernetes-timeout",
                                                   "--kubernetes-token-file"};
    bool ours = false;
    for (absl::string_view flag : kFlags) ours = ours || name == flag;
    if (!ours) {
      rest.push_back(args[i]);
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size())
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      value = args[++i];
    }
    auto duration = [&](absl::Duration& out) -> absl::Status {
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
      if (!d.ok() || *d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, "=\"", value, "\": must be a positive duration such as 24h"));
      }
      out = *d;
      return absl::OkStatus();
    };
    absl::Status status;
    if (name == "--ca-cert") {
      options.cert_chain_file = value;
    } else if (name == "--ca-key") {
      options.key_file = value;
    } else if (name == "--ca-trust-bundle") {
      options.trust_bundle_file = value;
    } else if (name == "--trust-domain") {
      options.authority.trust_domain = value;
    } else if (name == "--cert-ttl") {
      status = duration(options.authority.default_ttl);
    } else if (name == "--cert-max-ttl") {
      status = duration(options.authority.max_ttl);
    } else if (name == "--kubernetes-api") {
      options.kubernetes.api = value;
    } else if (name == "--kubernetes-token-file") {
      options.kubernetes.token_file = value;
    } else if (name == "--kubernetes-ca-file") {
      options.kubernetes.ca_file = value;
    } else if (name == "--kubernetes-audience") {
      if (value.empty()) return absl::InvalidArgumentError("--kubernetes-audience is empty");
      options.token_review.audience = value;
    } else if (name == "--kubernetes-timeout") {
      status = duration(options.kubernetes.timeout);
    }
    if (!status.ok()) return status;
  }
  if (options.cert_chain_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--ca-cert and --ca-key go together");
  }
  if (absl::Status valid = ValidateAuthorityOptions(options.authority); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("CA flags: ", valid.message()));
  }
  args = std::move(rest);
  return options;
}

std::string CaUsage() {
  return R"(
Workload CA (served on the discovery port; docs/security.md):
  --ca-cert FILE           signing certificate chain (intermediate first); default: a root
                           generated in <data-dir>/ca on first start
  --ca-key FILE            its key
  --ca-trust-bundle FILE   extra trusted roots (root rotation; the root if not in the chain)
  --trust-domain NAME      SPIFFE trust domain (default cluster.local)
  --cert-ttl DURATION      default workload certificate lifetime (default 24h)
  --cert-max-ttl DURATION  longest lifetime a workload may ask for (default 24h)

Kubernetes service-account attestation (TokenReview; off when no API server is known):
  --kubernetes-api ADDR    API server, e.g. https://10.96.0.1:443 (default: from
                           KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; "" turns it off)
  --kubernetes-token-file FILE   the control plane's own token, read for every review
                           (default /var/run/secrets/kubernetes.io/serviceaccount/token)
  --kubernetes-ca-file FILE      CA of the API server's certificate
                           (default /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)
  --kubernetes-audience NAME     audience sidecar tokens must carry (default meshlet)
  --kubernetes-timeout DURATION  deadline of one TokenReview (default 5s)
)";
}

CaService::CaService(ControlPlane& control_plane, CaServiceOptions options)
    : control_plane_(control_plane), options_(std::move(options)) {}

CaService::~CaService() {
  if (service_ != nullptr) control_plane_.api().SetTokenHandler(nullptr);
}

absl::Status CaService::Start(http::grpc::Server* grpc_server) {
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> authority =
      options_.cert_chain_file.empty()
          ? CertificateAuthority::LoadOrGenerateRoot(
                absl::StrCat(control_plane_.options().data_dir, "/ca"), options_.authority,
                control_plane_.clock(), options_.trust_bundle_file)
          : CertificateAuthority::FromFiles(options_.cert_chain_file, options_.key_file,
                                            options_.trust_bundle_file, options_.authority,
                                            control_plane_.clock());
  if (!authority.ok()) {
    return absl::Status(authority.status().code(),
                        absl::StrCat("CA: ", authority.status().message()));
  }
  authority_ = std::move(*authority);
  join_tokens_ = std::make_unique<identity::JoinTokens>(
      control_plane_.store(), control_plane_.clock(), control_plane_.stats());
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
      control_plane_.clock(), CertificateServiceOptions{.token_review = options_.token_review});
  control_plane_.api().SetTokenHandler([this](const http::ServerRequest& request) {
    return identity::HandleTokenRequest(*join_tokens_, request);
  });
  purge_timer_ = std::make_unique<event::Timer>(control_plane_.loop(), [this] {
    absl::StatusOr<size_t> purged = join_tokens_->PurgeExpired();
    if (!purged.ok()) LOG(WARN) << "join tokens: purge failed: " << purged.status();
  });
  purge_timer_->EnableRepeating(std::chrono::hours(1));
  const tls::CertificateInfo signer = tls::DescribeCertificate(authority_->signing_certificate());
  if (grpc_server == nullptr) {
    LOG(WARN) << "ca: the discovery port is closed, so no certificates are issued";
    return absl::OkStatus();
  }
  if (absl::Status status = service_->Register(*grpc_server); !status.ok()) return status;
  LOG(INFO) << "ca: issuing " << options_.authority.trust_domain << " certificates as \""
            << signer.subject << "\" (expires " << absl::FormatTime(signer.not_after) << "), "
            << authority_->trust_bundle().size() << " root(s) in the trust bundle";
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::ca
