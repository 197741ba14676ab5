#pragma once

// ServingCertificate: the control plane's own TLS certificate for its discovery port (15012),
// issued by its workload CA to itself, so that a control plane serves sidecars over TLS without
// an operator-made certificate (as istiod does). Used when neither --xds-tls-cert nor
// --xds-plaintext is given.
//
// The certificate is an X509-SVID for spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
// (what injected sidecars expect with --xds-server-identity) with DNS SANs for the control
// plane's Service names; otherwise it has the workload leaf profile (authority.h). Its key is
// ECDSA P-256, generated in memory for every certificate and never written anywhere. Its lifetime
// is the CA's default (--cert-ttl).
//
// Renewal: at half the lifetime (RenewalSchedule) a new key and certificate are made and handed to
// the `install` callback, which swaps them into the discovery port's TLS context provider: new
// connections get the new certificate, connections already open keep theirs. A failed renewal
// (the CA refused, or `install` refused the result) is logged, counted and retried with
// exponential backoff; the certificate in use stays in use meanwhile.
//
// Stats: meshlet_cp_serving_certificate_expiry_timestamp_seconds (gauge: notAfter of the
// certificate in use, Unix seconds), meshlet_cp_serving_certificate_renewals_total,
// meshlet_cp_serving_certificate_renewal_failures_total.
//
// Threading: the ControlPlane's loop thread. `install` runs on it: within Start() for the first
// certificate, from a loop timer for renewals.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/stats/stats.h"
#include "common/tls/spiffe.h"
#include "control-plane/ca/authority.h"

namespace meshlet::controlplane::ca {

// When the serving certificate is renewed.
struct RenewalConfig {
  // Renew once this fraction of the lifetime (counted from the moment of issue) has passed.
  double renew_at_fraction = 0.5;
  // Never renew sooner than this after an issue: a certificate cut short by an expiring signing
  // certificate must not be renewed in a tight loop.
  Duration min_delay = std::chrono::seconds(1);
  // After the n-th failure in a row, retry after retry_base * 2^(n-1), at most retry_cap.
  Duration retry_base = std::chrono::seconds(1);
  Duration retry_cap = std::chrono::seconds(30);
};

// The renewal schedule as a pure function of a Clock, so tests move time by hand. Not
// thread-safe; the Clock must outlive it.
class RenewalSchedule {
 public:
  RenewalSchedule(const RenewalConfig& config, const Clock& clock)
      : config_(config), clock_(clock) {}

  // A certificate valid until `not_after` (wall clock) was installed just now: the failures are
  // forgotten; returns how long until it is due for renewal.
  Duration Issued(absl::Time not_after);
  // An attempt failed: returns how long until the next one.
  Duration Failed();

  int consecutive_failures() const { return consecutive_failures_; }

 private:
  const RenewalConfig config_;
  const Clock& clock_;
  int consecutive_failures_ = 0;
};

struct ServingCertificateOptions {
  // The control plane's own namespace (default: $POD_NAMESPACE when set, else meshlet-system)
  // and service account.
  std::string namespace_ = "meshlet-system";
  std::string service_account = "meshlet-control-plane";
  // DNS SANs; empty: DefaultServingDnsNames(namespace_).
  std::vector<std::string> dns_names;
  RenewalConfig renewal;
};

// The defaults, with the namespace from $POD_NAMESPACE when it is set and not empty.
ServingCertificateOptions DefaultServingCertificateOptions();

// meshlet-control-plane, meshlet-control-plane.<ns>, meshlet-control-plane.<ns>.svc,
// meshlet-control-plane.<ns>.svc.cluster.local: the names of the Service k8s/ gives the control
// plane.
std::vector<std::string> DefaultServingDnsNames(absl::string_view namespace_);

// The flags of the self-issued discovery certificate for the control plane's command line
// (control-plane/command_line.h): --identity-namespace NS, --identity-service-account SA,
// --xds-dns-names NAMES (comma-separated).
std::vector<flags::Flag> ServingCertificateFlags(ServingCertificateOptions& options);
// The shortest lifetime (--cert-ttl) the certificate works with: X.509 validity is in whole
// seconds, and a renewal comes no sooner than RenewalConfig::min_delay (1 s) after an issue.
inline constexpr absl::Duration kMinServingCertificateTtl = absl::Seconds(2);
// What the flags cannot check: a namespace from $POD_NAMESPACE must be valid too, and
// `certificate_ttl` (the CA's --cert-ttl) at least kMinServingCertificateTtl.
absl::Status CheckServingCertificateFlags(const ServingCertificateOptions& options,
                                          absl::Duration certificate_ttl);

// What `install` receives; all PEM.
struct ServingCredentials {
  std::string certificate_chain_pem;  // the leaf, then the intermediates up to the root
  std::string private_key_pem;
  std::string serial_hex;
  absl::Time not_after;
};

class ServingCertificate {
 public:
  // Receives each new certificate and key. An error counts as a failed renewal (Start(): a
  // failed start), and the certificate installed before stays in use.
  using Install = std::function<absl::Status(const ServingCredentials&)>;

  // Not owned: `loop`, `authority` (or the one SetAuthority gives), `clock` and `stats` must
  // outlive this.
  ServingCertificate(event::Loop& loop, const CertificateAuthority& authority, const Clock& clock,
                     StatsRegistry& stats, ServingCertificateOptions options, Install install);
  ~ServingCertificate();
  ServingCertificate(const ServingCertificate&) = delete;
  ServingCertificate& operator=(const ServingCertificate&) = delete;

  // Issues and installs the first certificate, then keeps it renewed. Errors name the flag at
  // fault (an identity the CA cannot issue) or say why the certificate could not be made or
  // installed; nothing is scheduled then.
  absl::Status Start();

  // Valid after Start().
  const std::string& spiffe_id() const { return spiffe_id_; }
  const std::vector<std::string>& dns_names() const { return dns_names_; }
  // The certificate in use ("" before Start()).
  const std::string& serial_hex() const { return serial_hex_; }

  // The CA reloaded new signing material: renewals from now on are signed by `authority`
  // (same trust domain), which must outlive this or be replaced again. The certificate in use
  // stays until its renewal is due.
  void SetAuthority(const CertificateAuthority& authority) { authority_ = &authority; }

 private:
  // A new key and certificate, installed; updates the stats.
  absl::Status Renew();
  void OnRenewalDue();

  event::Loop& loop_;
  const CertificateAuthority* authority_;
  const ServingCertificateOptions options_;
  const Install install_;
  RenewalSchedule schedule_;
  std::optional<tls::SpiffeId> identity_;
  std::string spiffe_id_;
  std::vector<std::string> dns_names_;
  std::string serial_hex_;
  absl::Time not_after_;
  std::unique_ptr<event::Timer> timer_;
  Gauge expiry_;
  Counter renewals_;
  Counter failures_;
};

}  // namespace meshlet::controlplane::ca
