#pragma once

// When the sidecar asks the CA for a certificate: the rotation schedule as a pure state machine,
// driven by a Clock and a Random so tests move time by hand.
//
//   kNoCertificate --RequestStarted--> kRequesting --Issued--> kValid
//   kValid --(renewal time reached) RequestStarted--> kRequesting
//   kRequesting --Failed--> kRetryWaiting (current certificate still valid: keep serving with it)
//                        or kNoCertificate / kExpired (nothing valid to serve with)
//   kRetryWaiting / kExpired --(retry time reached) RequestStarted--> kRequesting
//   kValid / kRetryWaiting --(expiry passes)--> kExpired (observed by Refresh())
//
// Renewal is due at `renew_at_fraction` (50 %) of the certificate's remaining lifetime when it
// arrived, plus or minus `jitter_fraction` of that lifetime drawn uniformly, so a fleet that
// started together spreads its renewals instead of hitting the CA at once. The lifetime is
// measured from the moment the certificate arrived, not from notBefore: the CA backdates
// notBefore to absorb clock skew, which would otherwise pull renewals of short-lived
// certificates early. After a failure the next attempt waits a full-jitter exponential backoff
// (sidecar/resilience/backoff.h); the current certificate stays in use until it expires — a
// failed renewal never tears down a working identity.
//
// Wall-clock times (notAfter) are converted to monotonic ones once, on arrival; later decisions
// use only the monotonic clock, so a wall-clock step does not trigger or stall a renewal.
//
// Threading: not thread-safe; the sidecar's main thread owns it.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "sidecar/resilience/backoff.h"

namespace meshlet::sidecar::identity {

struct RotationConfig {
  // Renew when this fraction of the remaining lifetime (at arrival) has passed.
  double renew_at_fraction = 0.5;
  // +- this fraction of the lifetime, uniformly.
  double jitter_fraction = 0.1;
  // Between failed attempts: full jitter in [0, min(cap, base * 2^n)].
  resilience::BackoffConfig retry_backoff{.base = std::chrono::seconds(1),
                                          .cap = std::chrono::seconds(30)};
};

// OK when 0 < renew_at_fraction < 1, 0 <= jitter_fraction, the renewal window stays inside
// (0, 1) of the lifetime, and the backoff is valid.
absl::Status ValidateRotationConfig(const RotationConfig& config);

class CertificateRotation {
 public:
  enum class State {
    kNoCertificate,  // nothing issued yet (or the first attempts failed)
    kRequesting,     // a request is in flight
    kValid,          // a certificate is in use; waiting for the renewal time
    kRetryWaiting,   // a renewal failed; the current certificate is still valid
    kExpired,        // the certificate expired before a renewal succeeded
  };
  static const char* StateName(State state);

  // `config` must be valid (CHECKed). Clock and Random must outlive this.
  CertificateRotation(const RotationConfig& config, const Clock& clock, Random& random);

  // Moves a valid or retry-waiting certificate to kExpired once its expiry has passed. Call
  // before reading state() when time may have moved.
  void Refresh();

  // True when a request should be sent now: no certificate and none in flight, or the renewal
  // / retry time has come. Does not change state; call RequestStarted() when sending.
  bool RequestDue();
  // When RequestDue() becomes true (or the certificate expires, whichever is first); nullopt
  // while a request is in flight. A driver arms one timer for this.
  std::optional<MonotonicTime> NextWakeup() const;

  void RequestStarted();
  // The control plane asks for an early renewal (a CA rotation, ADR 0097): a valid certificate
  // is renewed no later than `at`. No effect in other states (a request is in flight or being
  // retried already) or when the renewal is due sooner anyway.
  void RenewBy(MonotonicTime at);
  // A certificate valid until `not_after` (wall clock) arrived.
  void Issued(absl::Time not_after);
  void Failed();

  State state() const { return state_; }
  bool has_valid_certificate() const;
  // Seconds until the current certificate expires (negative once expired); nullopt without one.
  // Backs the meshlet_workload_certificate_expiry_seconds gauge.
  std::optional<double> SecondsToExpiry() const;
  uint32_t consecutive_failures() const { return consecutive_failures_; }
  std::optional<MonotonicTime> renew_at() const { return renew_at_; }
  std::optional<MonotonicTime> expires_at() const { return expires_at_; }

 private:
  const RotationConfig config_;
  const Clock& clock_;
  Random& random_;
  resilience::Backoff backoff_;
  State state_ = State::kNoCertificate;
  std::optional<MonotonicTime> expires_at_;
  std::optional<MonotonicTime> renew_at_;
  // Next attempt after a failure.
  std::optional<MonotonicTime> retry_at_;
  uint32_t consecutive_failures_ = 0;
};

}  // namespace meshlet::sidecar::identity
