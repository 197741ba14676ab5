#include "control-plane/federation/federation_service.h"

#include <yaml-cpp/yaml.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/repeated_failure.h"
#include "common/http/https_get.h"
#include "common/stats/or_discard.h"

namespace meshlet::controlplane::federation {

struct FederationService::Domain {
  FederationSource source;
  std::unique_ptr<event::Timer> timer;
  std::unique_ptr<http::HttpsGet> fetch;  // a bundle endpoint's read in flight
  std::string text;  // the last text read (good or not): an unchanged one is not parsed again
  bool in_flight = false;
  RepeatedFailure failure_log;
  Counter ok, unchanged, failed;
  Gauge roots;
};

FederationService::FederationService(event::Loop& loop, StatsRegistry& stats,
                                     kubernetes::KubernetesApi* api, FederationOptions options)
    : loop_(loop), stats_(stats), api_(api), options_(std::move(options)) {}

FederationService::~FederationService() { *alive_ = false; }

absl::Status FederationService::Start(Listener listener) {
  listener_ = std::move(listener);
  for (const FederationSource& source : options_.sources) {
    if (source.kind == FederationSource::Kind::kBundleEndpoint && endpoint_tls_ == nullptr) {
      absl::StatusOr<std::shared_ptr<const tls::TlsContextProvider>> roots =
          http::HttpsRoots(options_.endpoint_ca_file);
      if (!roots.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--federate ", source.domain, "=", source.location,
                         ": the roots that verify bundle endpoints (--federation-endpoint-ca): ",
                         roots.status().message()));
      }
      endpoint_tls_ = *std::move(roots);
    }
    if (source.kind == FederationSource::Kind::kSecret && api_ == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--federate ", source.domain, "=secret:", source.location,
                       ": a Secret needs the Kubernetes API (--kubernetes-api, or run in a pod)"));
    }
  }
  for (const FederationSource& source : options_.sources) {
    auto domain = std::make_unique<Domain>();
    domain->source = source;
    auto reads = [&](const char* result) {
      return OrDiscard(
          stats_.shared_shard().RegisterCounter(
              "meshlet_cp_federation_reads_total",
              "Reads of a federated trust domain's bundle by result: ok (a new bundle in use), "
              "unchanged, failed (unreadable or invalid: the last good bundle stays).",
              {{"domain", source.domain}, {"result", result}}),
          "meshlet_cp_federation_reads_total");
    };
    domain->ok = reads("ok");
    domain->unchanged = reads("unchanged");
    domain->failed = reads("failed");
    domain->roots =
        OrDiscard(stats_.shared_shard().RegisterGauge(
                      "meshlet_cp_federation_bundle_roots",
                      "Roots in the bundle in use for a federated trust domain (0: none read yet).",
                      {{"domain", source.domain}}),
                  "meshlet_cp_federation_bundle_roots");
    Domain* d = domain.get();
    domain->timer = std::make_unique<event::Timer>(loop_, [this, d] { Read(*d); });
    domains_.push_back(std::move(domain));
    LOG(INFO) << "federation: trust domain " << source.domain << " from "
              << (source.kind == FederationSource::Kind::kFile     ? "file "
                  : source.kind == FederationSource::Kind::kSecret ? "Secret "
                                                                   : "bundle endpoint ")
              << source.location;
  }
  for (auto& domain : domains_) Read(*domain);
  return absl::OkStatus();
}

void FederationService::Read(Domain& domain) {
  if (domain.source.kind == FederationSource::Kind::kFile) {
    Took(domain, ReadFile(domain.source.location));
    return;
  }
  if (domain.source.kind == FederationSource::Kind::kBundleEndpoint) {
    ReadEndpoint(domain);
    return;
  }
  if (domain.in_flight) return;
  domain.in_flight = true;
  const std::string& ref = domain.source.location;  // NAMESPACE/NAME, checked by the flag
  const size_t slash = ref.find('/');
  api_->Call({.method = "GET",
              .path = absl::StrCat("/api/v1/namespaces/", ref.substr(0, slash), "/secrets/",
                                   ref.substr(slash + 1)),
              .forbidden_hint = "the control plane needs get on that Secret"},
             [this, &domain, alive = alive_](kubernetes::ApiResult result) {
               if (!*alive) return;
               domain.in_flight = false;
               if (!result.body.ok()) {
                 Took(domain, result.body.status());
                 return;
               }
               Took(domain, BundleFromSecret(*result.body));
             });
}

void FederationService::ReadEndpoint(Domain& domain) {
  if (domain.in_flight) return;
  domain.in_flight = true;
  domain.fetch =
      http::HttpsGet::Start(loop_, domain.source.url,
                            {.roots = endpoint_tls_,
                             .timeout = absl::ToChronoMilliseconds(options_.endpoint_timeout),
                             .max_body_bytes = options_.limits.max_bytes},
                            [this, &domain](absl::StatusOr<std::string> body) {
                              domain.in_flight = false;
                              // Done: dropped on a later turn (it is running this callback).
                              loop_.DeferDelete(std::move(domain.fetch));
                              Took(domain, std::move(body));
                            });
}

void FederationService::Took(Domain& domain, absl::StatusOr<std::string> text) {
  const std::string& name = domain.source.domain;
  absl::Duration next = options_.refresh_max;
  if (!text.ok()) {
    domain.failed.Inc();
    if (domain.failure_log.ShouldLog(text.status().message(), absl::Now())) {
      LOG(WARN) << "federation: " << name << ": " << text.status().message()
                << (bundles_.contains(name) ? "; the last good bundle stays" : "");
    }
    next = options_.refresh_min;
  } else if (*text == domain.text) {
    domain.unchanged.Inc();
    domain.failure_log.Clear();
  } else {
    domain.text = *text;
    absl::StatusOr<FederatedBundle> bundle = ParseFederatedBundle(name, *text, options_.limits);
    if (!bundle.ok()) {
      domain.failed.Inc();
      LOG(WARN) << "federation: " << name
                << ": the bundle is refused: " << bundle.status().message()
                << (bundles_.contains(name) ? "; the last good bundle stays" : "");
      next = options_.refresh_min;
    } else {
      domain.ok.Inc();
      domain.failure_log.Clear();
      domain.roots.Set(static_cast<int64_t>(bundle->roots.size()));
      next = RefreshInterval(bundle->refresh_hint, options_.refresh_min, options_.refresh_max);
      for (const std::string& skipped : bundle->skipped) {
        LOG(INFO) << "federation: " << name << ": " << skipped;
      }
      LOG(INFO) << "federation: " << name << ": " << bundle->roots.size()
                << " root(s) in use, read again in " << absl::FormatDuration(next);
      if (bundles_[name] != bundle->roots_pem) {
        bundles_[name] = bundle->roots_pem;
        if (listener_) listener_(bundles_);
      }
    }
  }
  domain.timer->Enable(absl::ToChronoNanoseconds(next));
}

absl::StatusOr<std::string> BundleFromSecret(absl::string_view secret_json) {
  YAML::Node secret;
  try {
    secret = YAML::Load(std::string(secret_json));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the Secret is not JSON: ", e.what()));
  }
  const YAML::Node data = secret["data"];
  for (const char* key : {"bundle.spiffe", "bundle.pem", "ca.crt"}) {
    if (!data.IsMap() || !data[key] || !data[key].IsScalar()) continue;
    std::string decoded;
    if (!absl::Base64Unescape(data[key].Scalar(), &decoded)) {
      return absl::InvalidArgumentError(absl::StrCat("data.", key, " is not base64"));
    }
    return decoded;
  }
  return absl::InvalidArgumentError(
      "the Secret has none of data.bundle.spiffe, data.bundle.pem and data.ca.crt");
}

}  // namespace meshlet::controlplane::federation
