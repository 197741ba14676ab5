#include "control-plane/ca/serving_certificate.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/config/field_path.h"
#include "common/stats/or_discard.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::ca {

Duration RenewalSchedule::Issued(absl::Time not_after) {
  consecutive_failures_ = 0;
  const absl::Duration lifetime = std::max(not_after - clock_.WallNow(), absl::ZeroDuration());
  const Duration due = absl::ToChronoNanoseconds(lifetime * config_.renew_at_fraction);
  return std::max(due, config_.min_delay);
}

Duration RenewalSchedule::Failed() {
  return DoublingRetryDelay(++consecutive_failures_, config_.retry_base, config_.retry_cap);
}

ServingCertificateOptions DefaultServingCertificateOptions() {
  ServingCertificateOptions options;
  if (const char* pod_namespace = std::getenv("POD_NAMESPACE");
      pod_namespace != nullptr && *pod_namespace != '\0') {
    options.namespace_ = pod_namespace;
  }
  return options;
}

std::vector<std::string> DefaultServingDnsNames(absl::string_view namespace_) {
  constexpr absl::string_view kService = "meshlet-control-plane";
  return {std::string(kService), absl::StrCat(kService, ".", namespace_),
          absl::StrCat(kService, ".", namespace_, ".svc"),
          absl::StrCat(kService, ".", namespace_, ".svc.cluster.local")};
}

namespace {

absl::Status CheckNamespace(absl::string_view namespace_) {
  if (config::IsDnsLabel(namespace_)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "must be a namespace name (a DNS label: lowercase letters, digits and '-')");
}

}  // namespace

std::vector<flags::Flag> ServingCertificateFlags(ServingCertificateOptions& options) {
  return {
      {.name = "--identity-namespace",
       .value = "NS",
       .help = "the control plane's namespace in its SPIFFE id (default: $POD_NAMESPACE, else "
               "meshlet-system)",
       .set =
           [&options](absl::string_view v) {
             if (absl::Status valid = CheckNamespace(v); !valid.ok()) return valid;
             options.namespace_ = std::string(v);
             return absl::OkStatus();
           }},
      {.name = "--identity-service-account",
       .value = "SA",
       .help = "its service account (default meshlet-control-plane)",
       .set =
           [&options](absl::string_view v) {
             if (!config::IsDnsSubdomain(v)) {
               return absl::InvalidArgumentError(
                   "must be a service account name (lowercase letters, digits, '-' and '.')");
             }
             options.service_account = std::string(v);
             return absl::OkStatus();
           }},
      {.name = "--xds-dns-names",
       .value = "NAMES",
       .help = "DNS SANs, comma-separated (default meshlet-control-plane, "
               "meshlet-control-plane.NS, meshlet-control-plane.NS.svc, "
               "meshlet-control-plane.NS.svc.cluster.local)",
       .set =
           [&options](absl::string_view v) {
             std::vector<std::string> names = absl::StrSplit(v, ',');
             for (const std::string& name : names) {
               if (!config::IsHostName(name)) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("\"", name,
                                  "\" is not a host name; give one or more, "
                                  "comma-separated"));
               }
             }
             options.dns_names = std::move(names);
             return absl::OkStatus();
           }},
  };
}

absl::Status CheckServingCertificateFlags(const ServingCertificateOptions& options,
                                          absl::Duration certificate_ttl) {
  if (absl::Status valid = CheckNamespace(options.namespace_); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--identity-namespace=\"", options.namespace_,
                                                   "\" (from $POD_NAMESPACE): ", valid.message()));
  }
  if (certificate_ttl < kMinServingCertificateTtl) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cert-ttl=", absl::FormatDuration(certificate_ttl),
                     ": the discovery port's own certificate has this lifetime and needs at least ",
                     absl::FormatDuration(kMinServingCertificateTtl),
                     " (or give --xds-tls-cert/--xds-tls-key)"));
  }
  return absl::OkStatus();
}

ServingCertificate::ServingCertificate(event::Loop& loop, const CertificateAuthority& authority,
                                       const Clock& clock, StatsRegistry& stats,
                                       ServingCertificateOptions options, Install install)
    : loop_(loop),
      authority_(&authority),
      options_(std::move(options)),
      install_(std::move(install)),
      schedule_(options_.renewal, clock) {
  StatsShard& shard = stats.shared_shard();
  expiry_ = OrDiscard(
      shard.RegisterGauge("meshlet_cp_serving_certificate_expiry_timestamp_seconds",
                          "When the discovery port's self-issued certificate expires (Unix "
                          "seconds).",
                          {}, GaugeMerge::kGlobal),
      "meshlet_cp_serving_certificate_expiry_timestamp_seconds");
  renewals_ =
      OrDiscard(shard.RegisterCounter("meshlet_cp_serving_certificate_renewals_total",
                                      "Renewals of the discovery port's self-issued certificate."),
                "meshlet_cp_serving_certificate_renewals_total");
  failures_ = OrDiscard(
      shard.RegisterCounter("meshlet_cp_serving_certificate_renewal_failures_total",
                            "Failed renewals of the discovery port's self-issued certificate "
                            "(retried with backoff)."),
      "meshlet_cp_serving_certificate_renewal_failures_total");
}

ServingCertificate::~ServingCertificate() = default;

absl::Status ServingCertificate::Start() {
  absl::StatusOr<tls::SpiffeId> identity = WorkloadSpiffeId(
      authority_->options().trust_domain, options_.namespace_, options_.service_account);
  if (!identity.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--identity-namespace / --identity-service-account: ", identity.status().message()));
  }
  identity_ = *std::move(identity);
  spiffe_id_ = identity_->ToString();
  dns_names_ =
      options_.dns_names.empty() ? DefaultServingDnsNames(options_.namespace_) : options_.dns_names;
  if (absl::Status status = Renew(); !status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("the discovery port's certificate: ", status.message()));
  }
  timer_ = std::make_unique<event::Timer>(loop_, [this] { OnRenewalDue(); });
  const Duration due = schedule_.Issued(not_after_);
  timer_->Enable(due);
  LOG(INFO) << "ca: discovery port certificate " << serial_hex_ << " for " << spiffe_id_ << " and "
            << absl::StrJoin(dns_names_, ", ") << ", expires " << absl::FormatTime(not_after_)
            << ", renewal due in " << absl::FormatDuration(absl::FromChrono(due));
  return absl::OkStatus();
}

absl::Status ServingCertificate::Renew() {
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = tls::GenerateEcdsaP256Key();
  if (!key.ok()) return key.status();
  // Zero: the CA's default lifetime (--cert-ttl).
  absl::StatusOr<IssuedCertificate> issued =
      authority_->Issue(**key, *identity_, absl::ZeroDuration(), dns_names_);
  if (!issued.ok()) return issued.status();
  absl::StatusOr<std::string> key_pem = tls::PrivateKeyToPem(**key);
  if (!key_pem.ok()) return key_pem.status();
  ServingCredentials credentials{.certificate_chain_pem = std::move(issued->chain_pem),
                                 .private_key_pem = *std::move(key_pem),
                                 .serial_hex = issued->serial_hex,
                                 .not_after = issued->not_after};
  if (absl::Status installed = install_(credentials); !installed.ok()) return installed;
  serial_hex_ = std::move(credentials.serial_hex);
  not_after_ = credentials.not_after;
  expiry_.Set(absl::ToUnixSeconds(not_after_));
  return absl::OkStatus();
}

void ServingCertificate::OnRenewalDue() {
  const std::string previous = serial_hex_;
  if (absl::Status status = Renew(); !status.ok()) {
    failures_.Inc();
    const Duration retry = schedule_.Failed();
    timer_->Enable(retry);
    LOG(WARN) << "ca: renewing the discovery port certificate failed ("
              << schedule_.consecutive_failures() << " in a row; " << previous << ", expiring "
              << absl::FormatTime(not_after_) << ", stays in use), retrying in "
              << absl::FormatDuration(absl::FromChrono(retry)) << ": " << status.message();
    return;
  }
  renewals_.Inc();
  const Duration due = schedule_.Issued(not_after_);
  timer_->Enable(due);
  LOG(INFO) << "ca: discovery port certificate renewed: " << serial_hex_ << " replaces " << previous
            << ", expires " << absl::FormatTime(not_after_) << ", renewal due in "
            << absl::FormatDuration(absl::FromChrono(due));
}

}  // namespace meshlet::controlplane::ca
