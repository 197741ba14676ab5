#pragma once

// CaService: plugs the workload CA into the control-plane binary, in two steps. Init(), after
// ControlPlane::Init(), loads the signing material (an operator's CA from --ca-cert/--ca-key,
// else the root generated in <data-dir>/ca on first start), enables join tokens on the REST API
// (/api/v1/tokens, stored hashed in the control plane's store) and serves the trust bundle there
// (/api/v1/trust-bundle); the authority is then ready to issue the discovery port's own
// certificate (serving_certificate.h) before that port opens.
// Register() then serves meshlet.ca.v1.CertificateService on the gRPC server it is given — the
// discovery server on 15012. Expired join tokens are purged hourly.
//
// Live reload (ca_source.h): with --ca-cert/--ca-key, or --ca-secret NAMESPACE/NAME, the
// material is looked at every --ca-reload-interval; a valid new version becomes the signing CA
// at once (CertificateService, the trust bundle served at /api/v1/trust-bundle, and every
// listener: main.cc hands the trust bundle to the discovery port and the sidecars' xDS Secret,
// and the signer to the control plane's own certificate); an invalid one is logged, counted, and
// with a Secret reported as a Warning Event on that Secret, and the CA in use stays. A generated
// root is not reloaded.
// Stats: meshlet_cp_ca_reload_total{result} (ok, invalid, unreadable);
// meshlet_cp_ca_signing_certificate_info{source,subject,issuer,fingerprint} (1 for the material
// in use); meshlet_cp_ca_certificate_expiry_timestamp_seconds{role,subject,fingerprint} (role
// "signing" or "root": notAfter of the signing certificate and of each trust-bundle root, Unix
// seconds).
//
// Orchestrated rotation (rotation.h, ADR 0097): `meshctl ca rotate` records a request in the
// store (POST /api/v1/ca/rotation, admin; DELETE aborts; GET shows it). Every
// --ca-rotation-interval each replica runs the RotationDriver on the store worker (the store's
// revision check lets one replica take each step) and serves what the persisted step says:
// the configured material (idle, requested, aborted), it with the new root added to the trust
// bundle (distributing), or the new material — read from the Secret or files the request named
// and watched like the configured source — signing, with both roots (reissuing) and then without
// the old one (complete), until the configured source itself holds the new material. The
// observations are the sidecars' own reports (SetObservationSource), no older than
// --ca-rotation-report-max-age.
//
// Kubernetes service-account attestation is on when an API server is known (--kubernetes-api, or
// KUBERNETES_SERVICE_HOST/PORT inside a pod): tokens are then reviewed by that API server
// (KubernetesTokenReviewer). Otherwise such requests are refused with FAILED_PRECONDITION.
//
// Threading: the ControlPlane's loop thread.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/http/grpc/server.h"
#include "control-plane/ca/authority.h"
#include "control-plane/ca/ca_source.h"
#include "control-plane/ca/certificate_service.h"
#include "control-plane/ca/kubernetes_csr_signer.h"
#include "control-plane/ca/pkcs11_signer.h"
#include "control-plane/ca/rotation.h"
#include "control-plane/ca/rotation_driver.h"
#include "control-plane/identity/join_tokens.h"
#include "control-plane/identity/kubernetes_reviewer.h"
#include "control-plane/server/control_plane.h"

namespace meshlet::controlplane::ca {

struct CaServiceOptions {
  // An operator's CA (certs/make-ca.sh): chain file (signing certificate first) and key file;
  // both or neither. Neither: a root generated in <data-dir>/ca.
  std::string cert_chain_file;
  std::string key_file;
  // Extra trust-bundle roots (the other root during a root rotation; the root when the chain
  // file does not end in one).
  std::string trust_bundle_file;
  // The key in a PKCS#11 token (--ca-pkcs11-*) instead of --ca-key; with --ca-cert. Read at start,
  // not reloaded. Off while module_path is empty.
  Pkcs11SignerOptions pkcs11;
  // --ca-csr-signer-name ("": off) and --ca-csr-timeout: workload certificates signed by the
  // Kubernetes CSR API's signer for that signerName (kubernetes_csr_signer.h); needs the
  // Kubernetes API. The CA above still gives the trust bundle (add the signer's root with
  // --ca-trust-bundle) and the control plane's own certificates.
  KubernetesCsrSignerOptions csr;
  // --ca-secret NAMESPACE/NAME ("": none) and its layout; excludes --ca-cert/--ca-key.
  std::string secret;
  SecretLayout secret_layout = SecretLayout::kAuto;
  // How often the files or the Secret are looked at for a new version; zero: never.
  Duration reload_interval = std::chrono::seconds(10);
  // How often a rotation is looked at (and advanced), and how old a sidecar's last report may
  // be to count it as part of the mesh.
  Duration rotation_interval = std::chrono::seconds(5);
  Duration rotation_report_max_age = std::chrono::seconds(60);
  AuthorityOptions authority;
  // Kubernetes service-account attestation; off while kubernetes.api is empty.
  identity::KubernetesApiOptions kubernetes;
  identity::TokenReviewPolicy token_review;
};

// The defaults, with the Kubernetes API server from KUBERNETES_SERVICE_HOST/PORT when set.
CaServiceOptions DefaultCaServiceOptions();

// The CA's flags for the control plane's command line (control-plane/command_line.h), writing
// into `options`: --ca-cert FILE, --ca-key FILE, --ca-trust-bundle FILE, --trust-domain NAME,
// --cert-ttl DURATION (default lifetime, 24h), --cert-max-ttl DURATION (cap, 24h), --ca-secret
// NAMESPACE/NAME, --ca-secret-layout auto|tls|cacerts, --ca-reload-interval DURATION (10s; 0: off),
// --ca-rotation-interval DURATION (5s), --ca-rotation-report-max-age DURATION (60s).
std::vector<flags::Flag> CaFlags(CaServiceOptions& options);
// Kubernetes service-account attestation: --kubernetes-api ADDRESS, --kubernetes-token-file FILE,
// --kubernetes-ca-file FILE, --kubernetes-audience NAME (meshlet), --kubernetes-timeout DURATION
// (5s).
std::vector<flags::Flag> KubernetesAttestationFlags(CaServiceOptions& options);
// What the flags cannot check one at a time: --ca-cert and --ca-key go together, and not with
// --ca-secret; the lifetimes and the trust domain are valid together.
absl::Status CheckCaFlags(const CaServiceOptions& options);

class CaService {
 public:
  CaService(ControlPlane& control_plane, CaServiceOptions options);
  ~CaService();

  // Loads the CA and mounts its API routes. Errors name the file or step that failed.
  absl::Status Init();
  // After Init(): serves CertificateService on `grpc_server`. Not owned; the server calls into
  // this CaService, so it must be destroyed before this CaService is.
  absl::Status Register(http::grpc::Server& grpc_server);

  // Valid after Init(): the CA in use now. A reload replaces it; hold the shared pointer (not
  // the reference) across loop turns.
  const CertificateAuthority& authority() const { return *authority_; }
  std::shared_ptr<const CertificateAuthority> current_authority() const { return authority_; }
  identity::JoinTokens& join_tokens() { return *join_tokens_; }

  // Called on the loop thread after each reload switched the CA, with the new one (the old one
  // is released after every listener returned). Call before the loop runs.
  using AuthorityListener = std::function<void(const CertificateAuthority&)>;
  void AddAuthorityListener(AuthorityListener listener) {
    listeners_.push_back(std::move(listener));
  }

  // A rotation's observations: each sidecar's latest report (node, the roots of its trust
  // bundle, its certificate's issuer; leaf_root is filled here) not older than `since`. Loop
  // thread; set before the loop runs. Unset: a rotation sees no sidecar.
  using ObservationSource = std::function<std::vector<SidecarObservation>(absl::Time since)>;
  void SetObservationSource(ObservationSource source) { observations_ = std::move(source); }
  // Called on the loop thread when step 4's renewal round changes (nullopt: none), for the
  // trust-bundle Secret. Call before the loop runs.
  using RenewalListener = std::function<void(const std::optional<RenewalRound>&)>;
  void AddRenewalListener(RenewalListener listener) {
    renewal_listeners_.push_back(std::move(listener));
  }

  // What `meshctl ca status` shows: the signing material in use, where it came from, the last
  // reload's outcome. JSON; any thread.
  std::string StatusJson() const;

 private:
  struct State {
    std::string source;  // "generated root in ...", "files ...", "Secret ns/name ..."
    std::string subject, issuer, fingerprint;
    absl::Time not_after;
    std::vector<std::pair<std::string, absl::Time>> roots;  // fingerprint, notAfter
    std::vector<std::string> root_subjects;
    std::string rotation_json = "null";  // RotationJson() as of the last tick
    std::string rotation_kind = "root", rotation_step = "idle";
    // A complete rotation's source while the configured source does not hold its material.
    std::string rotation_unadopted;
    std::string last_result;  // "", ok, invalid, unreadable
    std::string last_message;
    absl::Time last_reload;
    uint64_t reloads_ok = 0;
    uint64_t reloads_refused = 0;
  };
  // --ca-cert with its key in a PKCS#11 token.
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> LoadPkcs11Authority();
  void SetState(const CertificateAuthority& authority, const std::string& source);
  void OnValid(std::shared_ptr<const CertificateAuthority> authority,
               const std::string& description);
  void OnInvalid(bool unreadable, const absl::Status& reason);
  void PostSecretEvent(const std::string& note);
  void RegisterStats();
  // Switches the CA in use to `authority` (CertificateService, trust bundle, listeners).
  void Use(std::shared_ptr<const CertificateAuthority> authority, const std::string& description);

  // Rotation (ca_service_rotation.cc).
  void StartRotation();
  void RotationTick();
  // Serves `rotation` (the persisted state the last tick read).
  void ServeRotation(const RotationState& state, std::optional<RenewalRound> renewal);
  // The authority the rotation's state says to serve, from configured_, base_ and staged_.
  void Recompose();
  // One rotation material read from the source a record names: the new material, or the one in
  // use when the rotation was requested (when the configured source did not hold it).
  struct Material {
    std::string name;  // the source ("": none)
    std::shared_ptr<const CertificateAuthority> authority;
    std::optional<absl::Status> error;  // it could not be read, or was refused
    std::unique_ptr<CaSource> source;   // destroyed first: its callbacks use the rest
  };
  // Keeps `slot` reading the material `source` names ("": none); `blocking`: the first version
  // is read before returning (at start). A later version is taken only while its signer is
  // `expected_signer()` (or that is "").
  void Stage(Material& slot, const std::string& source, bool blocking,
             std::function<std::string()> expected_signer);
  // Which sources the persisted step needs read.
  void StageNeeded(bool blocking);
  // The material the rotation starts from: base_'s when the record names one, else configured_
  // (null while base_ is still being read).
  std::shared_ptr<const CertificateAuthority> Base() const;
  // The source of the material in use when the configured source does not hold it ("": it
  // does): a request records it as the new rotation's base.
  std::string Unadopted() const;
  http::ServerResponse HandleRotation(const http::ServerRequest& request);
  std::string RotationJson() const;

  ControlPlane& control_plane_;
  const CaServiceOptions options_;
  // In use (served): configured_, or what a rotation composed from it and staged_.
  std::shared_ptr<const CertificateAuthority> authority_;
  // The configured material (--ca-cert/--ca-key, --ca-secret, generated), as last loaded.
  std::shared_ptr<const CertificateAuthority> configured_;
  std::string configured_description_;
  std::unique_ptr<identity::JoinTokens> join_tokens_;
  std::unique_ptr<identity::KubernetesTokenReviewer> token_reviewer_;
  std::unique_ptr<CertificateService> service_;
  std::unique_ptr<event::Timer> purge_timer_;
  std::vector<AuthorityListener> listeners_;
  Counter reload_ok_, reload_invalid_, reload_unreadable_;
  // Read by the stats collectors on the reading thread, written on the loop thread.
  mutable absl::Mutex state_mutex_;
  State state_ ABSL_GUARDED_BY(state_mutex_);
  // Destroyed before the state they read.
  std::vector<StatsRegistry::CollectorHandle> collectors_;
  std::unique_ptr<kubernetes::KubernetesApi> secret_api_;
  // The Kubernetes CSR API signer and its client (--ca-csr-signer-name); null when off.
  std::unique_ptr<kubernetes::KubernetesApi> csr_api_;
  std::unique_ptr<KubernetesCsrSigner> csr_signer_;
  // Rotation: the persisted state as the last tick read it, the new material it names (and any
  // error reading it), and what was composed from them. The driver runs on the store worker.
  ObservationSource observations_;
  std::vector<RenewalListener> renewal_listeners_;
  std::optional<RenewalRound> renewal_;
  RotationState rotation_;
  std::string composed_key_;  // signer + bundle of the authority a rotation composed
  // The store record, the driver and its observer/actuator: used on the store worker, shared
  // with the work in flight there.
  struct RotationMachine;
  std::shared_ptr<RotationMachine> rotation_machine_;
  std::unique_ptr<event::Timer> rotation_timer_;
  bool rotation_tick_running_ = false;
  MonotonicTime rotation_started_;
  Counter rotation_steps_, rotation_conflicts_, rotation_store_errors_, rotation_serve_errors_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Destroyed first: their callbacks call into the members above, their requests use
  // secret_api_.
  Material staged_;  // the rotation's new material
  Material base_;    // the material in use when it was requested, if not the configured one
  std::unique_ptr<CaSource> source_;
};

}  // namespace meshlet::controlplane::ca
