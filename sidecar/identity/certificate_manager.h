#pragma once

// CertificateManager: keeps the sidecar's workload certificate fresh. It generates a new P-256
// key in memory for every request, sends the CSR through a CertificateSigner (the CA client; the
// gRPC implementation lives with the other control-plane clients in sidecar/config), follows the
// CertificateRotation schedule (renew at ~50 % of the lifetime, retry with backoff, keep the
// current certificate until it expires), and hands every new certificate + key + trust bundle to
// `on_rotated` — where the owner swaps its TlsContextProviders, so new connections use the new
// certificate and open ones keep theirs.
//
// Gauges (when a StatsRegistry is given): meshlet_workload_certificate_expiry_seconds (seconds
// until the current certificate expires; negative once expired, absent before the first one)
// and meshlet_workload_certificate_rotations_total / _failures_total counters.
//
// Threading: the sidecar's main thread (the loop's). The signer must call back on that thread.
// `on_rotated` must not destroy the manager; destroying the manager drops a pending answer.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "common/tls/spiffe.h"
#include "sidecar/identity/rotation.h"

namespace meshlet::sidecar::identity {

// What the CA answered, in plain C++.
struct SignedCertificate {
  std::string certificate_chain_pem;  // leaf first
  std::string trust_bundle_pem;
  std::string serial_hex;
  absl::Time not_after;
};

// The current certificate's validity, Unix seconds (gauges; the golden-metrics report carries
// them to the control plane, sidecar/telemetry/metrics_reporter.cc).
inline constexpr char kNotBeforeGauge[] =
    "meshlet_workload_certificate_not_before_timestamp_seconds";
inline constexpr char kNotAfterGauge[] = "meshlet_workload_certificate_not_after_timestamp_seconds";

// Everything a TLS context needs for the workload identity.
struct WorkloadCertificate {
  std::string spiffe_id;
  std::string certificate_chain_pem;
  std::string private_key_pem;  // only ever in memory
  std::string trust_bundle_pem;
  std::string serial_hex;
  absl::Time not_after;
  absl::Time not_before = absl::InfinitePast();  // the leaf's; InfinitePast: not known
};

class CertificateSigner {
 public:
  virtual ~CertificateSigner() = default;
  // Sends `csr_pem` for `identity` with the wanted lifetime; `done` runs once, on the loop
  // thread, with the CA's answer or the reason it failed.
  virtual void RequestCertificate(const std::string& csr_pem, const tls::SpiffeId& identity,
                                  absl::Duration ttl,
                                  std::function<void(absl::StatusOr<SignedCertificate>)> done) = 0;
};

struct CertificateManagerOptions {
  absl::Duration ttl = absl::Hours(24);
  RotationConfig rotation;
  // How often the expiry gauge is refreshed between rotations.
  Duration gauge_refresh_interval = std::chrono::seconds(5);
};

class CertificateManager {
 public:
  using RotatedCallback = std::function<void(const WorkloadCertificate&)>;

  CertificateManager(event::Loop& loop, CertificateSigner& signer, tls::SpiffeId identity,
                     CertificateManagerOptions options, RotatedCallback on_rotated,
                     StatsRegistry* stats = nullptr, const Clock& clock = RealClock::Get(),
                     Random& random = RealRandom::ThreadLocal());
  ~CertificateManager();
  CertificateManager(const CertificateManager&) = delete;
  CertificateManager& operator=(const CertificateManager&) = delete;

  // Requests the first certificate at once.
  void Start();
  // Starts with a certificate another process held (the hand-over, docs/upgrades.md) instead of
  // asking the CA: checked like the CA's answer (the chain parses, its leaf holds the key and this
  // identity, it has not expired; its expiry is the leaf's when `not_after` says later), handed
  // to `on_rotated`, then renewed on the usual schedule from now. An error leaves the manager
  // unstarted (Start() may follow).
  absl::Status StartWith(WorkloadCertificate certificate);
  // The control plane's early-renewal request (step 4 of a CA rotation): renew the current
  // certificate within `delay` (the sidecar picks it in the round's window). Counted in
  // meshlet_workload_certificate_early_renewals_total; no effect before the first certificate or
  // while a request is in flight or retried.
  void RenewEarly(absl::Duration delay);

  // The certificate in use; null before the first one arrived.
  const WorkloadCertificate* current() const { return current_ ? &*current_ : nullptr; }
  const CertificateRotation& rotation() const { return rotation_; }
  // The reason the last request failed ("" once one succeeded after it), and when.
  const std::string& last_error() const { return last_error_; }
  absl::Time last_error_time() const { return last_error_time_; }
  // When the current certificate arrived (absl::InfinitePast() before the first).
  absl::Time last_rotation_time() const { return last_rotation_time_; }
  uint64_t rotations() const { return rotation_count_; }

 private:
  void OnTimer();
  void SendRequest();
  void OnAnswer(std::string key_pem, absl::StatusOr<SignedCertificate> answer);
  // Whether `chain_pem` (leaf first) holds `key_pem` and this identity, and `trust_bundle_pem`
  // parses.
  absl::Status CheckUsable(const std::string& chain_pem, const std::string& key_pem,
                           const std::string& trust_bundle_pem) const;
  void Arm();
  void UpdateGauge();

  event::Loop& loop_;
  CertificateSigner& signer_;
  const tls::SpiffeId identity_;
  const CertificateManagerOptions options_;
  RotatedCallback on_rotated_;
  const Clock& clock_;
  CertificateRotation rotation_;
  std::unique_ptr<event::Timer> timer_;
  std::unique_ptr<event::Timer> gauge_timer_;
  std::optional<WorkloadCertificate> current_;
  std::string last_error_;
  absl::Time last_error_time_ = absl::InfinitePast();
  absl::Time last_rotation_time_ = absl::InfinitePast();
  uint64_t rotation_count_ = 0;
  // Answers for a destroyed manager are dropped: the callback holds a weak reference.
  std::shared_ptr<CertificateManager*> alive_;
  Gauge expiry_seconds_;
  Gauge not_before_, not_after_;  // Unix seconds of the current certificate
  Counter rotations_;
  Counter failures_;
  Counter early_renewals_;
};

}  // namespace meshlet::sidecar::identity
