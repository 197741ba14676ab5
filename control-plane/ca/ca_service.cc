#include "control-plane/ca/ca_service.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"
#include "common/stats/or_discard.h"
#include "common/tls/certificate.h"
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
      flags::StringFlag("--ca-pkcs11-module", "PATH", &options.pkcs11.module_path,
                        "PKCS#11 module (shared object) holding the CA key instead of --ca-key"),
      flags::StringFlag("--ca-pkcs11-token", "LABEL", &options.pkcs11.token_label,
                        "label of the PKCS#11 token"),
      flags::StringFlag("--ca-pkcs11-key-label", "LABEL", &options.pkcs11.key_label,
                        "label of the CA's private key in the token"),
      flags::StringFlag("--ca-pkcs11-pin-file", "FILE", &options.pkcs11.pin_file,
                        "file holding the token's user PIN"),
      flags::StringFlag("--ca-csr-signer-name", "NAME", &options.csr.signer_name,
                        "sign workload certificates through the Kubernetes "
                        "CertificateSigningRequest API with this signerName (an external "
                        "signer approves and signs; add its root with --ca-trust-bundle)"),
      flags::PositiveDurationFlag(
          "--ca-csr-timeout", &options.csr.timeout,
          "how long a workload certificate waits for the CSR API's signer (default 30s)"),
      flags::StringFlag("--ca-trust-bundle", "FILE", &options.trust_bundle_file,
                        "extra trusted roots (root rotation; the root if not in the chain)"),
      flags::StringFlag("--trust-domain", "NAME", &options.authority.trust_domain,
                        "SPIFFE trust domain (default cluster.local)"),
      flags::PositiveDurationFlag(
          "--cert-ttl", &options.authority.default_ttl,
          "default certificate lifetime, also of the discovery port's own (default 24h)", "24h"),
      flags::PositiveDurationFlag("--cert-max-ttl", &options.authority.max_ttl,
                                  "longest lifetime a workload may ask for (default 24h)", "24h"),
      flags::StringFlag("--ca-secret", "NAMESPACE/NAME", &options.secret,
                        "take the signing material from this Kubernetes Secret instead of "
                        "--ca-cert/--ca-key, and follow its changes"),
      {.name = "--ca-secret-layout",
       .value = "LAYOUT",
       .help = "the Secret's keys: tls (kubernetes.io/tls: tls.crt, tls.key, ca.crt), cacerts "
               "(ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem) or auto (default)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<SecretLayout> layout = ParseSecretLayout(v);
             if (!layout.ok()) return layout.status();
             options.secret_layout = *layout;
             return absl::OkStatus();
           }},
      flags::NonNegativeDurationFlag(
          "--ca-reload-interval", &options.reload_interval,
          "how often the CA files or Secret are checked for a new version, taken without a "
          "restart once valid (default 10s; 0: never)",
          "10s"),
      flags::PositiveDurationFlag(
          "--ca-rotation-interval", &options.rotation_interval,
          "how often a CA rotation (meshctl ca rotate) is checked and moved to its next step "
          "(default 5s)",
          "5s"),
      flags::PositiveDurationFlag(
          "--ca-rotation-report-max-age", &options.rotation_report_max_age,
          "a sidecar whose last report of its trust bundle and certificate is older than this "
          "is no longer part of the mesh a CA rotation waits for (default 60s)",
          "60s"),
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
  const Pkcs11SignerOptions& p11 = options.pkcs11;
  if (!p11.module_path.empty() || !p11.token_label.empty() || !p11.key_label.empty() ||
      !p11.pin_file.empty()) {
    if (p11.module_path.empty() || p11.token_label.empty() || p11.key_label.empty() ||
        p11.pin_file.empty()) {
      return absl::InvalidArgumentError(
          "--ca-pkcs11-module, --ca-pkcs11-token, --ca-pkcs11-key-label and --ca-pkcs11-pin-file "
          "go together");
    }
    if (options.cert_chain_file.empty() || !options.key_file.empty() || !options.secret.empty()) {
      return absl::InvalidArgumentError(
          "--ca-pkcs11-* needs --ca-cert (the public chain) and replaces --ca-key and --ca-secret");
    }
    return absl::OkStatus();
  }
  if (options.cert_chain_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--ca-cert and --ca-key go together");
  }
  if (!options.secret.empty()) {
    if (!options.cert_chain_file.empty()) {
      return absl::InvalidArgumentError("--ca-secret replaces --ca-cert and --ca-key");
    }
    if (absl::Status ref = ParseSecretRef(options.secret).status(); !ref.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--ca-secret: ", ref.message()));
    }
  }
  if (absl::Status valid = ValidateAuthorityOptions(options.authority); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("CA flags: ", valid.message()));
  }
  return absl::OkStatus();
}

CaService::CaService(ControlPlane& control_plane, CaServiceOptions options)
    : control_plane_(control_plane), options_(std::move(options)) {}

CaService::~CaService() {
  if (service_ != nullptr) {
    control_plane_.api().SetTokenHandler(nullptr);
    control_plane_.api().SetCaStatus(nullptr);
    control_plane_.api().SetCaRotationHandler(nullptr);
  }
}

absl::StatusOr<std::shared_ptr<const CertificateAuthority>> CaService::LoadPkcs11Authority() {
  StatsRegistry& stats = control_plane_.stats();
  auto signs = [&stats](const char* result) {
    return OrDiscard(stats.shared_shard().RegisterCounter(
                         "meshlet_cp_ca_pkcs11_sign_total",
                         "Signatures asked of the CA's PKCS#11 token by result: ok, error (failed "
                         "even after re-opening the session).",
                         {{"result", result}}),
                     "meshlet_cp_ca_pkcs11_sign_total");
  };
  Pkcs11SignerStats signer_stats{
      .signatures = signs("ok"),
      .sign_errors = signs("error"),
      .session_reopens = OrDiscard(
          stats.shared_shard().RegisterCounter(
              "meshlet_cp_ca_pkcs11_session_reopens_total",
              "PKCS#11 sessions re-opened (and logged in again) after a session or token error."),
          "meshlet_cp_ca_pkcs11_session_reopens_total"),
      .sign_latency_us =
          OrDiscard(stats.shared_shard().RegisterHistogram(
                        "meshlet_cp_ca_pkcs11_sign_seconds",
                        "Time of one signature by the CA's PKCS#11 token (C_SignInit and C_Sign, "
                        "waiting for the session included).",
                        {}, {.exposition_divisor = 1e6}),
                    "meshlet_cp_ca_pkcs11_sign_seconds"),
  };
  ASSIGN_OR_RETURN(std::unique_ptr<Signer> signer, NewPkcs11Signer(options_.pkcs11, signer_stats));
  absl::StatusOr<std::string> chain = tls::ReadSmallFile(options_.cert_chain_file);
  if (!chain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.cert_chain_file, ": ", chain.status().message()));
  }
  std::string extra;
  if (!options_.trust_bundle_file.empty()) {
    absl::StatusOr<std::string> roots = tls::ReadSmallFile(options_.trust_bundle_file);
    if (!roots.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.trust_bundle_file, ": ", roots.status().message()));
    }
    extra = *std::move(roots);
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<CertificateAuthority> ca,
      CertificateAuthority::FromPemWithSigner(*chain, std::move(signer), extra, options_.authority,
                                              control_plane_.clock()));
  return std::shared_ptr<const CertificateAuthority>(std::move(ca));
}

absl::Status CaService::Init() {
  // No operator CA: a generated root, in the data directory, or with a shared store (etcd) in
  // the store, so that every replica signs under the same one.
  const bool replicated = !control_plane_.options().store.empty();
  const bool operator_ca = !options_.cert_chain_file.empty() || !options_.secret.empty();
  std::string source = absl::StrCat(
      "generated root in ", replicated ? "the store" : control_plane_.options().data_dir + "/ca");
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> authority;
  if (!options_.pkcs11.module_path.empty()) {
    authority = LoadPkcs11Authority();
    source = absl::StrCat(options_.cert_chain_file, " with its key in PKCS#11 token \"",
                          options_.pkcs11.token_label, "\" (not reloaded)");
  } else if (operator_ca) {
    CaSourceOptions source_options{.chain_file = options_.cert_chain_file,
                                   .key_file = options_.key_file,
                                   .trust_bundle_file = options_.trust_bundle_file,
                                   .layout = options_.secret_layout,
                                   .interval = options_.reload_interval,
                                   .authority = options_.authority};
    if (!options_.secret.empty()) {
      if (options_.kubernetes.api.empty()) {
        return absl::InvalidArgumentError(
            "CA: --ca-secret needs the Kubernetes API (--kubernetes-api, or run in a pod)");
      }
      source_options.secret = *ParseSecretRef(options_.secret);  // checked by CheckCaFlags
      absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> api =
          kubernetes::KubernetesApi::Create(control_plane_.loop(), options_.kubernetes);
      if (!api.ok()) {
        return absl::Status(api.status().code(), absl::StrCat("CA: ", api.status().message()));
      }
      secret_api_ = *std::move(api);
    }
    source_ = std::make_unique<CaSource>(
        control_plane_.loop(), control_plane_.clock(), secret_api_.get(), std::move(source_options),
        [this](std::shared_ptr<const CertificateAuthority> authority,
               const std::string& description) { OnValid(std::move(authority), description); },
        [this](bool unreadable, const absl::Status& reason) { OnInvalid(unreadable, reason); });
    authority = source_->LoadInitial(&source);
  } else {
    authority = replicated
                    ? CertificateAuthority::LoadOrGenerateSharedRoot(
                          control_plane_.store(), *control_plane_.store_keys(), options_.authority,
                          control_plane_.clock(), options_.trust_bundle_file)
                    : CertificateAuthority::LoadOrGenerateRoot(
                          absl::StrCat(control_plane_.options().data_dir, "/ca"),
                          options_.authority, control_plane_.clock(), options_.trust_bundle_file);
  }
  if (authority.ok() && replicated && !operator_ca) {
    LOG(INFO) << "ca: the generated root is shared by every replica through the store (its key "
                 "is kept there encrypted with --store-encryption-key-file, key "
              << control_plane_.store_keys()->current_key_id() << ")";
  }
  if (!authority.ok()) {
    return absl::Status(authority.status().code(),
                        absl::StrCat("CA: ", authority.status().message()));
  }
  authority_ = *std::move(authority);
  configured_ = authority_;
  configured_description_ = source;
  SetState(*authority_, source);
  RegisterStats();
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
  if (!options_.csr.signer_name.empty()) {
    if (options_.kubernetes.api.empty()) {
      return absl::InvalidArgumentError(
          "CA: --ca-csr-signer-name needs the Kubernetes API (--kubernetes-api, or run in a pod)");
    }
    absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> api =
        kubernetes::KubernetesApi::Create(control_plane_.loop(), options_.kubernetes);
    if (!api.ok()) {
      return absl::Status(api.status().code(), absl::StrCat("CA: ", api.status().message()));
    }
    csr_api_ = *std::move(api);
    csr_signer_ = std::make_unique<KubernetesCsrSigner>(control_plane_.loop(), *csr_api_,
                                                        control_plane_.stats(), options_.csr);
    LOG(INFO) << "ca: workload certificates are signed through the Kubernetes CSR API by signer "
              << options_.csr.signer_name << " (waiting at most "
              << absl::FormatDuration(options_.csr.timeout) << " for each)";
  }
  service_ = std::make_unique<CertificateService>(
      authority_, join_tokens_.get(), token_reviewer_.get(), control_plane_.stats(),
      control_plane_.clock(),
      CertificateServiceOptions{.token_review = options_.token_review,
                                .store_worker = &control_plane_.store_worker(),
                                .csr_signer = csr_signer_.get()});
  control_plane_.api().SetTokenHandler([this](const http::ServerRequest& request) {
    return api::HandleTokenRequest(*join_tokens_, request);
  });
  control_plane_.api().SetTrustBundle(authority_->trust_bundle_pem());
  control_plane_.api().SetCaStatus([this] { return StatusJson(); });
  purge_timer_ = std::make_unique<event::Timer>(control_plane_.loop(), [this] {
    control_plane_.store_worker().Run<absl::StatusOr<size_t>>(
        [tokens = join_tokens_.get()] { return tokens->PurgeExpired(); },
        [](absl::StatusOr<size_t> purged) {
          if (!purged.ok()) LOG(WARN) << "join tokens: purge failed: " << purged.status();
        });
  });
  purge_timer_->EnableRepeating(std::chrono::hours(1));
  StartRotation();
  if (source_ != nullptr) {
    source_->Start();
    if (options_.reload_interval > Duration::zero()) {
      LOG(INFO) << "ca: " << source_->Name() << ": checked for a new version every "
                << absl::FormatDuration(absl::FromChrono(options_.reload_interval));
    }
  }
  return absl::OkStatus();
}

void CaService::SetState(const CertificateAuthority& authority, const std::string& source) {
  const tls::CertificateInfo signer = tls::DescribeCertificate(authority.signing_certificate());
  absl::MutexLock lock(&state_mutex_);
  state_.source = source;
  state_.subject = signer.subject;
  state_.issuer = signer.issuer;
  state_.fingerprint = tls::Sha256Fingerprint(authority.signing_certificate());
  state_.not_after = signer.not_after;
  state_.roots.clear();
  state_.root_subjects.clear();
  for (const auto& root : authority.trust_bundle().roots()) {
    state_.roots.emplace_back(tls::Sha256Fingerprint(*root), tls::NotAfter(*root));
    state_.root_subjects.push_back(tls::SubjectName(*root));
  }
}

void CaService::RegisterStats() {
  StatsRegistry& stats = control_plane_.stats();
  auto reloads = [&stats](const char* result) {
    return OrDiscard(stats.shared_shard().RegisterCounter(
                         "meshlet_cp_ca_reload_total",
                         "New versions of the CA's signing material (--ca-cert/--ca-key or "
                         "--ca-secret) by result: ok (signing with it), invalid (refused; the "
                         "previous material stays), unreadable (could not be read).",
                         {{"result", result}}),
                     "meshlet_cp_ca_reload_total");
  };
  reload_ok_ = reloads("ok");
  reload_invalid_ = reloads("invalid");
  reload_unreadable_ = reloads("unreadable");
  auto info = stats.AddGaugeCollector(
      "meshlet_cp_ca_signing_certificate_info",
      "The CA's signing certificate in use (value 1): where it came from, subject, issuer and "
      "SHA-256 fingerprint.",
      {"source", "subject", "issuer", "fingerprint"}, [this](GaugeRows& rows) {
        absl::MutexLock lock(&state_mutex_);
        rows.Add({state_.source, state_.subject, state_.issuer, state_.fingerprint}, 1);
      });
  if (info.ok()) collectors_.push_back(*std::move(info));
  auto expiry = stats.AddGaugeCollector(
      "meshlet_cp_ca_certificate_expiry_timestamp_seconds",
      "When the CA's signing certificate (role signing) and each root of its trust bundle (role "
      "root) expire, Unix seconds.",
      {"role", "subject", "fingerprint"}, [this](GaugeRows& rows) {
        absl::MutexLock lock(&state_mutex_);
        rows.Add({"signing", state_.subject, state_.fingerprint},
                 absl::ToUnixSeconds(state_.not_after));
        for (size_t i = 0; i < state_.roots.size(); ++i) {
          rows.Add({"root", state_.root_subjects[i], state_.roots[i].first},
                   absl::ToUnixSeconds(state_.roots[i].second));
        }
      });
  if (expiry.ok()) collectors_.push_back(*std::move(expiry));
}

void CaService::OnValid(std::shared_ptr<const CertificateAuthority> authority,
                        const std::string& description) {
  configured_ = std::move(authority);
  configured_description_ = description;
  {
    absl::MutexLock lock(&state_mutex_);
    state_.last_result = "ok";
    state_.last_message.clear();
    state_.last_reload = control_plane_.clock().WallNow();
    ++state_.reloads_ok;
  }
  reload_ok_.Inc();
  // Serves it, or what a running rotation composes from it.
  Recompose();
}

void CaService::Use(std::shared_ptr<const CertificateAuthority> authority,
                    const std::string& description) {
  if (authority == authority_) return;
  // The previous CA stays alive until every listener has moved off it.
  std::shared_ptr<const CertificateAuthority> previous = std::move(authority_);
  authority_ = std::move(authority);
  service_->SetAuthority(authority_);
  control_plane_.api().SetTrustBundle(authority_->trust_bundle_pem());
  for (const AuthorityListener& listener : listeners_) listener(*authority_);
  SetState(*authority_, description);
  const tls::CertificateInfo signer = tls::DescribeCertificate(authority_->signing_certificate());
  LOG(INFO) << "ca: signing material from " << description << ": issuing as \"" << signer.subject
            << "\" (issuer \"" << signer.issuer << "\", " << authority_->signer_fingerprint()
            << ", expires " << absl::FormatTime(signer.not_after) << "), "
            << authority_->trust_bundle().size() << " root(s) in the trust bundle; previously \""
            << tls::SubjectName(previous->signing_certificate()) << "\"";
}

void CaService::OnInvalid(bool unreadable, const absl::Status& reason) {
  (unreadable ? reload_unreadable_ : reload_invalid_).Inc();
  std::string still;
  {
    absl::MutexLock lock(&state_mutex_);
    state_.last_result = unreadable ? "unreadable" : "invalid";
    state_.last_message = std::string(reason.message());
    state_.last_reload = control_plane_.clock().WallNow();
    ++state_.reloads_refused;
    still = state_.subject;
  }
  if (unreadable) return;  // logged by the source, rate-limited
  LOG(WARN) << "ca: refused new signing material: " << reason.message() << "; still issuing as \""
            << still << "\"";
  if (secret_api_ != nullptr) {
    PostSecretEvent(absl::StrCat("meshlet refused this CA material: ", reason.message(),
                                 "; still issuing as \"", still, "\""));
  }
}

void CaService::PostSecretEvent(const std::string& note) {
  const SecretRef& secret = *source_->options().secret;
  const std::string now = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", control_plane_.clock().WallNow(),
                                           absl::UTCTimeZone());
  std::string body = absl::StrCat(
      R"({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"generateName":)",
      JsonQuote(absl::StrCat(secret.name, ".")), R"(,"namespace":)", JsonQuote(secret.namespace_),
      R"(},"eventTime":)", JsonQuote(now),
      R"(,"reportingController":"meshlet.io/control-plane","reportingInstance":)",
      JsonQuote(control_plane_.replica_name()),
      R"(,"action":"Reload","reason":"InvalidCAMaterial","type":"Warning","note":)",
      JsonQuote(note.substr(0, 1000)), R"(,"regarding":{"apiVersion":"v1","kind":"Secret","name":)",
      JsonQuote(secret.name), R"(,"namespace":)", JsonQuote(secret.namespace_), "}}");
  secret_api_->Call(
      {.method = "POST",
       .path = absl::StrCat("/apis/events.k8s.io/v1/namespaces/", secret.namespace_, "/events"),
       .content_type = "application/json",
       .body = std::move(body),
       .forbidden_hint = "the control plane needs create on events.k8s.io events "
                         "(k8s/base/rbac.yaml)"},
      [](kubernetes::ApiResult result) {
        if (!result.body.ok()) {
          LOG_EVERY_N_SEC(WARN, 60) << "ca: the Event on the CA Secret was not posted: "
                                    << result.body.status().message();
        }
      });
}

std::string CaService::StatusJson() const {
  absl::MutexLock lock(&state_mutex_);
  std::string roots;
  for (size_t i = 0; i < state_.roots.size(); ++i) {
    absl::StrAppend(
        &roots, i == 0 ? "" : ",", R"({"subject":)", JsonQuote(state_.root_subjects[i]),
        R"(,"fingerprint":)", JsonQuote(state_.roots[i].first), R"(,"not_after":)",
        JsonQuote(absl::FormatTime(absl::RFC3339_sec, state_.roots[i].second, absl::UTCTimeZone())),
        "}");
  }
  return absl::StrCat(
      R"({"source":)", JsonQuote(state_.source), R"(,"subject":)", JsonQuote(state_.subject),
      R"(,"issuer":)", JsonQuote(state_.issuer), R"(,"fingerprint":)",
      JsonQuote(state_.fingerprint), R"(,"not_after":)",
      JsonQuote(absl::FormatTime(absl::RFC3339_sec, state_.not_after, absl::UTCTimeZone())),
      R"(,"roots":[)", roots, R"(],"last_reload":{"result":)", JsonQuote(state_.last_result),
      R"(,"message":)", JsonQuote(state_.last_message), R"(,"time":)",
      JsonQuote(state_.last_result.empty()
                    ? ""
                    : absl::FormatTime(absl::RFC3339_sec, state_.last_reload, absl::UTCTimeZone())),
      R"(,"ok":)", state_.reloads_ok, R"(,"refused":)", state_.reloads_refused, R"(},"rotation":)",
      state_.rotation_json, "}\n");
}

absl::Status CaService::Register(http::grpc::Server& grpc_server) {
  CHECK(service_ != nullptr) << "CaService::Register before Init";
  if (absl::Status status = service_->Register(grpc_server); !status.ok()) return status;
  const tls::CertificateInfo signer = tls::DescribeCertificate(authority_->signing_certificate());
  LOG(INFO) << "ca: issuing " << options_.authority.trust_domain << " certificates as \""
            << signer.subject << "\" (expires " << absl::FormatTime(signer.not_after) << "), "
            << authority_->trust_bundle().size() << " root(s) in the trust bundle"
            << (options_.pkcs11.module_path.empty()
                    ? std::string()
                    : absl::StrCat("; the key stays in PKCS#11 token \"",
                                   options_.pkcs11.token_label, "\" (key \"",
                                   options_.pkcs11.key_label, "\", module ",
                                   options_.pkcs11.module_path, ")"));
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::ca
