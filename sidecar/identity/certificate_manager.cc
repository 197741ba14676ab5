#include "sidecar/identity/certificate_manager.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"
#include "sidecar/identity/workload_key.h"

namespace meshlet::sidecar::identity {

CertificateManager::CertificateManager(event::Loop& loop, CertificateSigner& signer,
                                       tls::SpiffeId identity, CertificateManagerOptions options,
                                       RotatedCallback on_rotated, StatsRegistry* stats,
                                       const Clock& clock, Random& random)
    : loop_(loop),
      signer_(signer),
      identity_(std::move(identity)),
      options_(std::move(options)),
      on_rotated_(std::move(on_rotated)),
      clock_(clock),
      rotation_(options_.rotation, clock, random),
      alive_(std::make_shared<CertificateManager*>(this)) {
  timer_ = std::make_unique<event::Timer>(loop_, [this] { OnTimer(); });
  gauge_timer_ = std::make_unique<event::Timer>(loop_, [this] { UpdateGauge(); });
  if (stats != nullptr) {
    StatsShard& shard = stats->shared_shard();
    auto expiry = shard.RegisterGauge(
        "meshlet_workload_certificate_expiry_seconds",
        "Seconds until the workload certificate expires (negative once expired).", {},
        GaugeMerge::kGlobal);
    auto rotations = shard.RegisterCounter("meshlet_workload_certificate_rotations_total",
                                           "Workload certificates received from the CA.");
    auto failures =
        shard.RegisterCounter("meshlet_workload_certificate_request_failures_total",
                              "Certificate requests to the CA that failed (retried with backoff).");
    auto not_before = shard.RegisterGauge(
        kNotBeforeGauge, "When the current workload certificate became valid, Unix seconds.", {},
        GaugeMerge::kGlobal);
    auto not_after = shard.RegisterGauge(
        kNotAfterGauge, "When the current workload certificate expires, Unix seconds.", {},
        GaugeMerge::kGlobal);
    if (not_before.ok()) not_before_ = *not_before;
    if (not_after.ok()) not_after_ = *not_after;
    if (expiry.ok()) expiry_seconds_ = *expiry;
    if (rotations.ok()) rotations_ = *rotations;
    if (failures.ok()) failures_ = *failures;
    auto early = shard.RegisterCounter(
        "meshlet_workload_certificate_early_renewals_total",
        "Early renewals a CA rotation asked for (its renewal round named another signer).");
    if (early.ok()) early_renewals_ = *early;
  }
}

CertificateManager::~CertificateManager() { *alive_ = nullptr; }

void CertificateManager::Start() {
  gauge_timer_->EnableRepeating(options_.gauge_refresh_interval);
  OnTimer();
}

void CertificateManager::RenewEarly(absl::Duration delay) {
  early_renewals_.Inc();
  rotation_.RenewBy(clock_.Now() +
                    absl::ToChronoNanoseconds(std::max(delay, absl::ZeroDuration())));
  if (rotation_.state() == CertificateRotation::State::kValid) Arm();
}

void CertificateManager::OnTimer() {
  rotation_.Refresh();
  UpdateGauge();
  if (rotation_.RequestDue()) {
    SendRequest();
    return;
  }
  Arm();
}

void CertificateManager::Arm() {
  std::optional<MonotonicTime> wake = rotation_.NextWakeup();
  if (!wake.has_value()) {
    timer_->Disable();
    return;
  }
  timer_->Enable(std::max(Duration::zero(), *wake - clock_.Now()));
}

void CertificateManager::SendRequest() {
  rotation_.RequestStarted();
  timer_->Disable();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = GenerateWorkloadKey();
  absl::StatusOr<std::string> csr =
      key.ok() ? BuildCsrPem(**key, identity_) : absl::StatusOr<std::string>(key.status());
  absl::StatusOr<std::string> key_pem =
      key.ok() ? PrivateKeyPem(**key) : absl::StatusOr<std::string>(key.status());
  if (!csr.ok() || !key_pem.ok()) {
    // Local crypto failing is not expected; treat it as a failed attempt and retry.
    OnAnswer("", !csr.ok() ? csr.status() : key_pem.status());
    return;
  }
  std::weak_ptr<CertificateManager*> alive = alive_;
  signer_.RequestCertificate(
      *csr, identity_, options_.ttl,
      [alive, key_pem = *std::move(key_pem)](absl::StatusOr<SignedCertificate> answer) mutable {
        std::shared_ptr<CertificateManager*> self = alive.lock();
        if (self == nullptr || *self == nullptr) return;
        (*self)->OnAnswer(std::move(key_pem), std::move(answer));
      });
}

absl::Status CertificateManager::CheckUsable(const std::string& chain_pem,
                                             const std::string& key_pem,
                                             const std::string& trust_bundle_pem) const {
  absl::StatusOr<tls::CertificateChain> chain = tls::ParsePemCertificates(chain_pem);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = tls::ParsePemPrivateKey(key_pem);
  if (!key.ok()) return key.status();
  RETURN_IF_ERROR(tls::CheckKeyMatchesCertificate(*chain->front(), **key));
  absl::StatusOr<tls::SpiffeId> id = tls::ExtractSpiffeId(*chain->front());
  if (!id.ok()) return id.status();
  if (!(*id == identity_)) {
    return absl::PermissionDeniedError(
        absl::StrCat("the certificate is for ", id->ToString(), ", not ", identity_.ToString()));
  }
  if (!tls::ParsePemCertificates(trust_bundle_pem).ok()) {
    return absl::InvalidArgumentError("the trust bundle does not parse");
  }
  return absl::OkStatus();
}

absl::Status CertificateManager::StartWith(WorkloadCertificate certificate) {
  RETURN_IF_ERROR(CheckUsable(certificate.certificate_chain_pem, certificate.private_key_pem,
                              certificate.trust_bundle_pem));
  // The leaf says when it expires, not the process that handed it over: renewal is scheduled
  // from the earlier of the two (a later one would renew after the certificate expired).
  absl::StatusOr<tls::CertificateChain> chain =
      tls::ParsePemCertificates(certificate.certificate_chain_pem);
  if (!chain.ok()) return chain.status();
  certificate.not_after = std::min(certificate.not_after, tls::NotAfter(*chain->front()));
  certificate.not_before = tls::NotBefore(*chain->front());
  if (certificate.not_after <= clock_.WallNow()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the certificate expired at ", absl::FormatTime(certificate.not_after)));
  }
  // As if it had just been asked for and issued: renewed at about half of what is left of it.
  rotation_.RequestStarted();
  rotation_.Issued(certificate.not_after);
  last_error_.clear();
  last_rotation_time_ = absl::Now();
  current_ = std::move(certificate);
  current_->spiffe_id = identity_.ToString();
  LOG(INFO) << "workload certificate " << current_->serial_hex << " for " << current_->spiffe_id
            << " taken over, valid until " << absl::FormatTime(current_->not_after);
  gauge_timer_->EnableRepeating(options_.gauge_refresh_interval);
  UpdateGauge();
  Arm();
  if (on_rotated_) on_rotated_(*current_);
  return absl::OkStatus();
}

void CertificateManager::OnAnswer(std::string key_pem, absl::StatusOr<SignedCertificate> answer) {
  // The answer must be usable as it stands: a chain whose leaf holds our key and our identity.
  if (answer.ok()) {
    absl::Status check =
        CheckUsable(answer->certificate_chain_pem, key_pem, answer->trust_bundle_pem);
    if (!check.ok()) {
      answer =
          absl::InternalError(absl::StrCat("unusable certificate from the CA: ", check.message()));
    }
  }
  if (!answer.ok()) {
    failures_.Inc();
    last_error_ = std::string(answer.status().message());
    last_error_time_ = absl::Now();
    rotation_.Failed();
    LOG_EVERY_N_SEC(WARN, 10) << "workload certificate request for " << identity_.ToString()
                              << " failed (" << rotation_.consecutive_failures() << " in a row; "
                              << (rotation_.has_valid_certificate()
                                      ? "keeping the current certificate"
                                      : "no valid certificate")
                              << "): " << answer.status().message();
    Arm();
    return;
  }
  rotation_.Issued(answer->not_after);
  rotations_.Inc();
  ++rotation_count_;
  last_error_.clear();
  last_rotation_time_ = absl::Now();
  current_ = WorkloadCertificate{.spiffe_id = identity_.ToString(),
                                 .certificate_chain_pem = std::move(answer->certificate_chain_pem),
                                 .private_key_pem = std::move(key_pem),
                                 .trust_bundle_pem = std::move(answer->trust_bundle_pem),
                                 .serial_hex = std::move(answer->serial_hex),
                                 .not_after = answer->not_after};
  if (absl::StatusOr<tls::CertificateChain> chain =
          tls::ParsePemCertificates(current_->certificate_chain_pem);
      chain.ok() && !chain->empty()) {
    current_->not_before = tls::NotBefore(*chain->front());
  }
  LOG(INFO) << "workload certificate " << current_->serial_hex << " for " << current_->spiffe_id
            << " valid until " << absl::FormatTime(current_->not_after);
  UpdateGauge();
  Arm();
  if (on_rotated_) on_rotated_(*current_);
}

void CertificateManager::UpdateGauge() {
  if (current_.has_value()) {
    if (current_->not_before != absl::InfinitePast()) {
      not_before_.Set(absl::ToUnixSeconds(current_->not_before));
    }
    not_after_.Set(absl::ToUnixSeconds(current_->not_after));
  }
  std::optional<double> seconds = rotation_.SecondsToExpiry();
  if (seconds.has_value()) expiry_seconds_.Set(static_cast<int64_t>(std::floor(*seconds)));
}

}  // namespace meshlet::sidecar::identity
