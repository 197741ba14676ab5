#include "sidecar/identity/rotation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::identity {

absl::Status ValidateRotationConfig(const RotationConfig& config) {
  if (!(config.renew_at_fraction > 0 && config.renew_at_fraction < 1)) {
    return absl::InvalidArgumentError("renew_at_fraction: must be in (0, 1)");
  }
  if (!(config.jitter_fraction >= 0)) {
    return absl::InvalidArgumentError("jitter_fraction: must be >= 0");
  }
  if (config.renew_at_fraction - config.jitter_fraction <= 0 ||
      config.renew_at_fraction + config.jitter_fraction >= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "jitter_fraction: renew_at_fraction +- jitter_fraction must stay inside (0, 1), got ",
        config.renew_at_fraction, " +- ", config.jitter_fraction));
  }
  absl::Status backoff = resilience::ValidateBackoffConfig(config.retry_backoff);
  if (!backoff.ok())
    return absl::InvalidArgumentError(absl::StrCat("retry_backoff: ", backoff.message()));
  return absl::OkStatus();
}

const char* CertificateRotation::StateName(State state) {
  switch (state) {
    case State::kNoCertificate:
      return "no_certificate";
    case State::kRequesting:
      return "requesting";
    case State::kValid:
      return "valid";
    case State::kRetryWaiting:
      return "retry_waiting";
    case State::kExpired:
      return "expired";
  }
  return "unknown";
}

CertificateRotation::CertificateRotation(const RotationConfig& config, const Clock& clock,
                                         Random& random)
    : config_(config), clock_(clock), random_(random), backoff_(config.retry_backoff, random) {
  absl::Status valid = ValidateRotationConfig(config);
  CHECK(valid.ok()) << valid;
}

bool CertificateRotation::has_valid_certificate() const {
  return expires_at_.has_value() && clock_.Now() < *expires_at_;
}

void CertificateRotation::Refresh() {
  if ((state_ == State::kValid || state_ == State::kRetryWaiting) && !has_valid_certificate()) {
    LOG(WARN) << "workload certificate expired before a renewal succeeded";
    state_ = State::kExpired;
    // Renew at once rather than at the (now meaningless) renewal time.
    if (!retry_at_.has_value()) retry_at_ = clock_.Now();
  }
}

bool CertificateRotation::RequestDue() {
  Refresh();
  const MonotonicTime now = clock_.Now();
  switch (state_) {
    case State::kRequesting:
      return false;
    case State::kNoCertificate:
      return !retry_at_.has_value() || now >= *retry_at_;
    case State::kValid:
      return now >= *renew_at_;
    case State::kRetryWaiting:
    case State::kExpired:
      return !retry_at_.has_value() || now >= *retry_at_;
  }
  return false;
}

std::optional<MonotonicTime> CertificateRotation::NextWakeup() const {
  switch (state_) {
    case State::kRequesting:
      return std::nullopt;
    case State::kNoCertificate:
    case State::kExpired:
      return retry_at_.value_or(clock_.Now());
    case State::kValid:
      return std::min(*renew_at_, *expires_at_);
    case State::kRetryWaiting:
      return std::min(retry_at_.value_or(clock_.Now()), *expires_at_);
  }
  return std::nullopt;
}

void CertificateRotation::RenewBy(MonotonicTime at) {
  if (state_ == State::kValid && at < *renew_at_) renew_at_ = at;
}

void CertificateRotation::RequestStarted() {
  CHECK(state_ != State::kRequesting) << "a certificate request is already in flight";
  state_ = State::kRequesting;
}

void CertificateRotation::Issued(absl::Time not_after) {
  CHECK(state_ == State::kRequesting) << "Issued() without RequestStarted()";
  const MonotonicTime now = clock_.Now();
  const absl::Duration remaining = std::max(absl::ZeroDuration(), not_after - clock_.WallNow());
  // Uniform in [fraction - jitter, fraction + jitter].
  const double fraction = config_.renew_at_fraction - config_.jitter_fraction +
                          2 * config_.jitter_fraction * random_.UniformDouble();
  expires_at_ = now + absl::ToChronoNanoseconds(remaining);
  renew_at_ = now + absl::ToChronoNanoseconds(remaining * fraction);
  retry_at_.reset();
  consecutive_failures_ = 0;
  state_ = State::kValid;
}

void CertificateRotation::Failed() {
  CHECK(state_ == State::kRequesting) << "Failed() without RequestStarted()";
  const MonotonicTime now = clock_.Now();
  retry_at_ = now + backoff_.Delay(consecutive_failures_);
  ++consecutive_failures_;
  if (has_valid_certificate()) {
    state_ = State::kRetryWaiting;
  } else {
    state_ = expires_at_.has_value() ? State::kExpired : State::kNoCertificate;
  }
}

std::optional<double> CertificateRotation::SecondsToExpiry() const {
  if (!expires_at_.has_value()) return std::nullopt;
  return std::chrono::duration<double>(*expires_at_ - clock_.Now()).count();
}

}  // namespace meshlet::sidecar::identity
