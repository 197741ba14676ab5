// CaService's part of an orchestrated CA rotation (ca_service.h, rotation.h, ADR 0097): the
// request API, the driver's tick on the store worker, the new material read where the request
// named it, and the authority composed from the persisted step.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/or_discard.h"
#include "common/tls/certificate.h"
#include "control-plane/ca/ca_service.h"

namespace meshlet::controlplane::ca {
namespace {

// "secret:NAMESPACE/NAME" or "files:CHAIN,KEY[,ROOTS]" (absolute paths on the control plane's
// host): where a rotation's new material is read from.
absl::StatusOr<CaSourceOptions> StagedSourceOptions(absl::string_view source,
                                                    const CaServiceOptions& options) {
  CaSourceOptions out{.layout = options.secret_layout,
                      .interval = options.reload_interval,
                      .authority = options.authority};
  if (absl::ConsumePrefix(&source, "secret:")) {
    absl::StatusOr<SecretRef> ref = ParseSecretRef(source);
    if (!ref.ok()) return ref.status();
    out.secret = *ref;
    return out;
  }
  if (absl::ConsumePrefix(&source, "files:")) {
    std::vector<std::string> paths = absl::StrSplit(source, ',');
    if (paths.size() < 2 || paths.size() > 3) {
      return absl::InvalidArgumentError(
          "files: takes CHAIN,KEY or CHAIN,KEY,ROOTS (absolute paths on the control plane's host)");
    }
    for (const std::string& path : paths) {
      if (!absl::StartsWith(path, "/")) {
        return absl::InvalidArgumentError(
            absl::StrCat("files: \"", path, "\" is not an absolute path"));
      }
    }
    out.chain_file = paths[0];
    out.key_file = paths[1];
    if (paths.size() == 3) out.trust_bundle_file = paths[2];
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "the new material is \"secret:NAMESPACE/NAME\" or \"files:CHAIN,KEY[,ROOTS]\", not \"",
      source, "\""));
}

http::ServerResponse RotationError(int code, absl::string_view reason, absl::string_view message) {
  return http::ServerResponse::Json(
      code, absl::StrCat(R"({"kind":"Status","status":"Failure","reason":)", JsonQuote(reason),
                         R"(,"message":)", JsonQuote(message), R"(,"code":)", code, "}\n"));
}

absl::Status ReadDuration(const YAML::Node& body, const char* name, absl::Duration* out) {
  if (!body[name]) return absl::OkStatus();
  if (!body[name].IsScalar() || !absl::ParseDuration(body[name].Scalar(), out)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": a duration such as \"30s\" or \"2m\", not \"",
                     body[name].IsScalar() ? body[name].Scalar() : "(not a string)", "\""));
  }
  return absl::OkStatus();
}

}  // namespace

// The driver's view of the control plane, filled on the loop thread before each tick and read
// back after it (the tick runs on the store worker in between).
class RotationBridge : public RotationObserver, public RotationActuator {
 public:
  std::vector<SidecarObservation> Observe() override { return observations; }
  absl::StatusOr<MaterialFingerprints> Material(const RotationState& requested) override {
    if (requested.source != material_source) {
      return absl::UnavailableError("the new material is not read yet");
    }
    return material;
  }
  void Serve(const Rotation& rotation) override {
    served = rotation.state();
    renewal = rotation.Renewal();
  }

  // In (loop thread, before the tick). `ready`: the observations cover the mesh (this replica
  // has listened to reports for a whole report age); the driver takes no step before.
  bool ready = false;
  std::vector<SidecarObservation> observations;
  std::string material_source;
  absl::StatusOr<MaterialFingerprints> material = absl::UnavailableError("not read yet");
  // Out (read on the loop thread after the tick).
  RotationState served;
  std::optional<RenewalRound> renewal;
};

struct CaService::RotationMachine {
  explicit RotationMachine(Store& store)
      : records(store), driver(records, bridge, bridge, [this] { return bridge.ready; }) {}
  RotationStore records;
  RotationBridge bridge;
  // Every replica that has heard from the mesh may take a step: the store's revision check lets
  // one win each (ADR 0097).
  RotationDriver driver;
};

void CaService::StartRotation() {
  rotation_machine_ = std::make_shared<RotationMachine>(control_plane_.store());
  rotation_started_ = control_plane_.clock().Now();
  StatsRegistry& stats = control_plane_.stats();
  rotation_steps_ = OrDiscard(stats.shared_shard().RegisterCounter(
                                  "meshlet_cp_ca_rotation_steps_total",
                                  "CA rotation steps this replica took (persisted first)."),
                              "meshlet_cp_ca_rotation_steps_total");
  const char* kErrors =
      "CA rotation ticks that did nothing by cause: conflict (another replica wrote the step "
      "first), store (the record could not be read or written), serve (the step's material "
      "could not be composed; the previous stays in use).";
  auto errors = [&stats, kErrors](const char* cause) {
    return OrDiscard(stats.shared_shard().RegisterCounter("meshlet_cp_ca_rotation_errors_total",
                                                          kErrors, {{"cause", cause}}),
                     "meshlet_cp_ca_rotation_errors_total");
  };
  rotation_conflicts_ = errors("conflict");
  rotation_store_errors_ = errors("store");
  rotation_serve_errors_ = errors("serve");
  auto info = stats.AddGaugeCollector(
      "meshlet_cp_ca_rotation_info",
      "The CA rotation as this replica last read it (value 1): kind and step (idle, requested, "
      "distributing, reissuing, complete, aborted) and step 4's renewal round.",
      {"kind", "step"}, [this](GaugeRows& rows) {
        absl::MutexLock lock(&state_mutex_);
        rows.Add({state_.rotation_kind, state_.rotation_step}, 1);
      });
  if (info.ok()) collectors_.push_back(*std::move(info));
  // A restarted control plane serves the persisted step before its ports open: the material a
  // rotation switched to is read now (blocking, as the configured material was), so no sidecar
  // is handed the configured material's bundle or signer in between.
  absl::StatusOr<RotationStore::Loaded> loaded = rotation_machine_->records.Load();
  if (!loaded.ok()) {
    LOG(WARN) << "ca: the CA rotation record could not be read (read again every "
              << absl::FormatDuration(absl::FromChrono(options_.rotation_interval))
              << "): " << loaded.status().message();
  } else if (loaded->state.step != RotationStep::kIdle) {
    rotation_ = loaded->state;
    StageNeeded(/*blocking=*/true);
    Recompose();
    LOG(INFO) << "ca: " << RotationKindName(rotation_.kind) << " CA rotation in step "
              << RotationStepName(rotation_.step) << " since "
              << absl::FormatTime(rotation_.step_since) << " (new material " << rotation_.source
              << ")";
  }
  control_plane_.api().SetCaRotationHandler(
      [this](const http::ServerRequest& request) { return HandleRotation(request); });
  rotation_timer_ =
      std::make_unique<event::Timer>(control_plane_.loop(), [this] { RotationTick(); });
  rotation_timer_->EnableRepeating(options_.rotation_interval);
  RotationTick();
}

void CaService::RotationTick() {
  if (rotation_tick_running_) return;
  // The observations, each leaf's root found from the signers the control plane knows.
  const absl::Time now = control_plane_.clock().WallNow();
  RotationBridge& bridge = rotation_machine_->bridge;
  // A control plane that just started has not heard from every sidecar yet: an empty or partial
  // view would let step 2 or 5 pass. The reports are gathered only while the last state read
  // runs; a replica that read none takes no step on this tick (the next one reads the state).
  const bool running = RotationRunning(rotation_.step);
  bridge.ready = running && control_plane_.clock().Now() - rotation_started_ >=
                                options_.rotation_report_max_age;
  bridge.observations =
      running && observations_
          ? observations_(now - absl::FromChrono(options_.rotation_report_max_age))
          : std::vector<SidecarObservation>{};
  for (SidecarObservation& s : bridge.observations) {
    for (const CertificateAuthority* a :
         {configured_.get(), base_.authority.get(), staged_.authority.get(), authority_.get()}) {
      if (a != nullptr && !s.leaf_issuer.empty() && a->signer_fingerprint() == s.leaf_issuer) {
        s.leaf_root = a->root_fingerprint();
      }
    }
  }
  bridge.material_source = staged_.name;
  const std::shared_ptr<const CertificateAuthority> base = Base();
  if (staged_.authority != nullptr && base != nullptr) {
    bridge.material =
        MaterialFingerprints{base->root_fingerprint(), staged_.authority->root_fingerprint(),
                             base->signer_fingerprint(), staged_.authority->signer_fingerprint()};
  } else if (staged_.error.has_value()) {
    bridge.material = absl::InvalidArgumentError(staged_.error->message());
  } else if (base == nullptr && base_.error.has_value()) {
    bridge.material = absl::InvalidArgumentError(absl::StrCat(
        "the material in use (", base_.name, ") cannot be read: ", base_.error->message()));
  } else {
    bridge.material = absl::UnavailableError("the new material is being read");
  }
  struct Result {
    absl::StatusOr<RotationDecision> decision;
    std::string status_json;
  };
  rotation_tick_running_ = true;
  const bool queued = control_plane_.store_worker().Run<Result>(
      [machine = rotation_machine_, now]() -> Result {
        absl::StatusOr<RotationDecision> decision = machine->driver.Tick(now);
        return {std::move(decision), machine->driver.StatusJson()};
      },
      [this, alive = std::weak_ptr<bool>(alive_), before = rotation_.step](Result result) {
        if (alive.expired()) return;
        rotation_tick_running_ = false;
        if (!result.decision.ok()) {
          if (result.decision.status().code() == absl::StatusCode::kFailedPrecondition) {
            rotation_conflicts_.Inc();
          } else {
            rotation_store_errors_.Inc();
            LOG_EVERY_N_SEC(WARN, 60) << "ca: rotation: " << result.decision.status().message();
          }
          return;
        }
        const RotationState& served = rotation_machine_->bridge.served;
        if (served.step != before && result.decision->changed) {
          rotation_steps_.Inc();
          LOG(INFO) << "ca: " << RotationKindName(served.kind)
                    << " rotation: " << RotationStepName(before) << " → "
                    << RotationStepName(served.step) << ": " << result.decision->message;
        } else if (result.decision->renewal_round_started) {
          LOG(INFO) << "ca: rotation: " << result.decision->message;
        }
        {
          absl::MutexLock lock(&state_mutex_);
          state_.rotation_json = std::move(result.status_json);
          state_.rotation_kind = std::string(RotationKindName(served.kind));
          state_.rotation_step = std::string(RotationStepName(served.step));
        }
        ServeRotation(served, rotation_machine_->bridge.renewal);
      });
  if (!queued) {
    rotation_tick_running_ = false;
    rotation_store_errors_.Inc();
  }
}

void CaService::StageNeeded(bool blocking) {
  const RotationState& r = rotation_;
  const RotationStep step = r.step;
  // The new material: from the request until the configured source holds it too.
  const bool need_new =
      RotationRunning(step) ||
      (step == RotationStep::kComplete && configured_->signer_fingerprint() != r.new_signer);
  // The material the rotation started from, when not the configured one: until the new one
  // signs alone.
  const bool need_base =
      !r.base_source.empty() && step != RotationStep::kComplete && step != RotationStep::kIdle;
  Stage(staged_, need_new ? r.source : "", blocking, [this] {
    return rotation_.step == RotationStep::kRequested ? std::string() : rotation_.new_signer;
  });
  Stage(base_, need_base ? r.base_source : "", blocking, [this] { return rotation_.old_signer; });
}

void CaService::ServeRotation(const RotationState& state, std::optional<RenewalRound> renewal) {
  rotation_ = state;
  StageNeeded(/*blocking=*/false);
  Recompose();
  if (renewal != renewal_) {
    renewal_ = std::move(renewal);
    for (const RenewalListener& listener : renewal_listeners_) listener(renewal_);
  }
}

std::shared_ptr<const CertificateAuthority> CaService::Base() const {
  return base_.name.empty() ? configured_ : base_.authority;
}

std::string CaService::Unadopted() const {
  const RotationState& r = rotation_;
  switch (r.step) {
    case RotationStep::kComplete:
      return configured_->signer_fingerprint() == r.new_signer ? "" : r.source;
    case RotationStep::kAborted:
    case RotationStep::kRequested:
    case RotationStep::kDistributing:
      if (r.base_source.empty()) return "";
      if (base_.authority != nullptr &&
          configured_->signer_fingerprint() == base_.authority->signer_fingerprint()) {
        return "";
      }
      return r.base_source;
    default:
      return "";
  }
}

void CaService::Stage(Material& slot, const std::string& source, bool blocking,
                      std::function<std::string()> expected_signer) {
  if (source == slot.name) return;
  slot.source.reset();
  slot.authority.reset();
  slot.error.reset();
  slot.name = source;
  if (source.empty()) return;
  absl::StatusOr<CaSourceOptions> options = StagedSourceOptions(source, options_);
  if (!options.ok()) {
    slot.error = options.status();
    return;
  }
  if (options->secret.has_value() && secret_api_ == nullptr) {
    if (options_.kubernetes.api.empty()) {
      slot.error = absl::FailedPreconditionError(
          "a Secret needs the Kubernetes API (--kubernetes-api, or run in a pod)");
      return;
    }
    absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> api =
        kubernetes::KubernetesApi::Create(control_plane_.loop(), options_.kubernetes);
    if (!api.ok()) {
      slot.error = api.status();
      return;
    }
    secret_api_ = *std::move(api);
  }
  Material* m = &slot;
  slot.source = std::make_unique<CaSource>(
      control_plane_.loop(), control_plane_.clock(), secret_api_.get(), *std::move(options),
      [this, m, expected_signer](std::shared_ptr<const CertificateAuthority> authority,
                                 const std::string& description) {
        // The material the rotation recorded is the only one it serves.
        const std::string expected = expected_signer();
        if (!expected.empty() && authority->signer_fingerprint() != expected) {
          LOG_EVERY_N_SEC(WARN, 60)
              << "ca: rotation: " << description << " now signs as "
              << authority->signer_fingerprint() << ", not the " << expected
              << " this rotation recorded: ignored (abort or finish the rotation first)";
          return;
        }
        LOG(INFO) << "ca: rotation: material read from " << description << " (signer "
                  << authority->signer_fingerprint() << ", root " << authority->root_fingerprint()
                  << ")";
        m->authority = std::move(authority);
        m->error.reset();
        Recompose();
      },
      [m, source](bool unreadable, const absl::Status& reason) {
        (void)unreadable;
        LOG_EVERY_N_SEC(WARN, 60) << "ca: rotation: the material " << source
                                  << " was refused: " << reason.message();
        if (m->authority == nullptr) m->error = reason;
      });
  if (!blocking) {
    slot.source->LoadNow();
    return;
  }
  std::string description;
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> first =
      slot.source->LoadInitial(&description);
  if (first.ok()) {
    slot.authority = *std::move(first);
  } else {
    slot.error = first.status();
    LOG(ERROR) << "ca: rotation: the material " << source
               << " cannot be read: " << first.status().message();
  }
  slot.source->Start();
}

void CaService::Recompose() {
  if (configured_ == nullptr || service_ == nullptr) return;
  const RotationState& r = rotation_;
  {
    absl::MutexLock lock(&state_mutex_);
    state_.rotation_unadopted = Unadopted();
  }
  std::shared_ptr<const CertificateAuthority> base = Base();
  std::string base_description = configured_description_;
  if (base == nullptr) {
    if (!base_.error.has_value()) return;  // still being read: what is served stays
    LOG_EVERY_N_SEC(ERROR, 60) << "ca: rotation: the material in use (" << base_.name
                               << ") cannot be read, serving the configured material: "
                               << base_.error->message();
    base = configured_;
  } else if (!base_.name.empty()) {
    base_description = absl::StrCat("the previous rotation's material (", base_.name, ")");
  }
  const CertificateAuthority* staged = staged_.authority.get();
  std::shared_ptr<const CertificateAuthority> signer = base;
  std::string description = base_description;
  std::vector<const CertificateAuthority*> bundles;
  switch (r.step) {
    case RotationStep::kDistributing:
      if (staged != nullptr && staged->root_fingerprint() == r.new_root) {
        bundles = {base.get(), staged};
      }
      break;
    case RotationStep::kReissuing:
    case RotationStep::kComplete:
      if (configured_->signer_fingerprint() == r.new_signer) {
        // The configured source holds the new material now.
        signer = configured_;
        description = configured_description_;
        bundles = {configured_.get()};
        if (r.step == RotationStep::kReissuing) bundles.push_back(base.get());
      } else if (staged != nullptr && staged->signer_fingerprint() == r.new_signer) {
        signer = staged_.authority;
        description = absl::StrCat("the rotation's new material (", r.source, ")");
        // Once complete, the roots of the material the rotation started from go (the old root
        // among them); the configured material's extra roots stay when it was that material.
        if (r.step == RotationStep::kReissuing) {
          bundles = {base.get(), staged};
        } else if (r.base_source.empty()) {
          bundles = {configured_.get(), staged};
        } else {
          bundles = {staged};
        }
      }
      break;
    default:
      break;
  }
  if (bundles.empty()) {
    composed_key_.clear();
    Use(base, base_description);
    return;
  }
  // The union of the roots, without the old root once a root rotation is complete.
  std::set<std::string> seen;
  std::string pem;
  for (const CertificateAuthority* a : bundles) {
    for (const auto& root : a->trust_bundle().roots()) {
      std::string fingerprint = tls::Sha256Fingerprint(*root);
      if (!seen.insert(fingerprint).second) continue;
      if (r.step == RotationStep::kComplete && r.kind == RotationKind::kRoot &&
          fingerprint == r.old_root) {
        continue;
      }
      absl::StatusOr<std::string> root_pem = tls::CertificateToPem(*root);
      if (root_pem.ok()) pem += *root_pem;
    }
  }
  if (pem == signer->trust_bundle_pem()) {
    composed_key_.clear();
    Use(signer, description);
    return;
  }
  std::string key = absl::StrCat(reinterpret_cast<uintptr_t>(signer.get()), "\n", pem);
  if (key == composed_key_) return;
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> composed =
      CertificateAuthority::WithTrustBundle(signer, pem);
  if (!composed.ok()) {
    rotation_serve_errors_.Inc();
    LOG_EVERY_N_SEC(ERROR, 60) << "ca: rotation step " << RotationStepName(r.step)
                               << " cannot be served (the CA in use stays): "
                               << composed.status().message();
    return;
  }
  composed_key_ = std::move(key);
  Use(*std::move(composed),
      absl::StrCat(description, ", ", seen.size() - (r.step == RotationStep::kComplete ? 1 : 0),
                   " root(s): rotation step ", RotationStepName(r.step)));
}

http::ServerResponse CaService::HandleRotation(const http::ServerRequest& request) {
  const absl::Time now = control_plane_.clock().WallNow();
  RotationStore& records = rotation_machine_->records;
  if (request.method() == "GET") return http::ServerResponse::Json(200, RotationJson());
  if (request.method() != "POST" && request.method() != "DELETE") {
    return RotationError(405, "MethodNotAllowed", "GET, POST (start) or DELETE (abort)");
  }
  absl::StatusOr<RotationStore::Loaded> loaded = records.Load();
  if (!loaded.ok()) {
    return RotationError(503, "ServiceUnavailable",
                         absl::StrCat("the rotation record: ", loaded.status().message()));
  }
  absl::StatusOr<RotationState> next = absl::InternalError("");
  std::string unadopted;
  {
    absl::MutexLock lock(&state_mutex_);
    unadopted = state_.rotation_unadopted;
  }
  if (request.method() == "DELETE") {
    Rotation rotation(loaded->state);
    if (absl::Status aborted = rotation.Abort(now, "aborted through the API"); !aborted.ok()) {
      return RotationError(409, "Conflict", aborted.message());
    }
    next = rotation.state();
  } else {
    YAML::Node body;
    try {
      body = YAML::Load(request.body);
    } catch (const YAML::Exception& e) {
      return RotationError(400, "BadRequest", absl::StrCat("the body is not JSON: ", e.what()));
    }
    if (!body.IsMap()) {
      return RotationError(
          400, "BadRequest",
          R"(the body is a JSON object: {"kind":"root","source":"secret:NS/NAME"})");
    }
    RotationKind kind = RotationKind::kRoot;
    if (body["kind"]) {
      const std::string k = body["kind"].IsScalar() ? body["kind"].Scalar() : "";
      if (k == "intermediate") {
        kind = RotationKind::kIntermediate;
      } else if (k != "root") {
        return RotationError(400, "BadRequest",
                             absl::StrCat("kind: \"root\" or \"intermediate\", not \"", k, "\""));
      }
    }
    const std::string source =
        body["source"] && body["source"].IsScalar() ? body["source"].Scalar() : "";
    if (absl::StatusOr<CaSourceOptions> parsed = StagedSourceOptions(source, options_);
        !parsed.ok()) {
      return RotationError(400, "BadRequest", absl::StrCat("source: ", parsed.status().message()));
    }
    RotationLimits limits;
    if (body["renewalsPerSecond"]) {
      if (!body["renewalsPerSecond"].IsScalar() ||
          !absl::SimpleAtod(body["renewalsPerSecond"].Scalar(), &limits.renewals_per_second)) {
        return RotationError(400, "BadRequest", "renewalsPerSecond: a number above zero");
      }
    }
    for (auto [name, out] : {std::pair{"renewalJitter", &limits.renewal_jitter},
                             {"renewalRetry", &limits.renewal_retry},
                             {"bundleAckTimeout", &limits.bundle_ack_timeout}}) {
      if (absl::Status s = ReadDuration(body, name, out); !s.ok()) {
        return RotationError(400, "BadRequest", s.message());
      }
    }
    // A rotation from material the configured source does not hold (a previous rotation's, not
    // put there yet) starts from that material.
    next = Rotation::Request(loaded->state, kind, source, limits, now, unadopted);
    if (!next.ok()) {
      return RotationError(
          next.status().code() == absl::StatusCode::kFailedPrecondition ? 409 : 400,
          next.status().code() == absl::StatusCode::kFailedPrecondition ? "Conflict" : "BadRequest",
          next.status().message());
    }
  }
  absl::StatusOr<int64_t> saved = records.Save(*next, loaded->revision);
  if (!saved.ok()) {
    return saved.status().code() == absl::StatusCode::kFailedPrecondition
               ? RotationError(409, "Conflict", "the rotation changed meanwhile; look again")
               : RotationError(503, "ServiceUnavailable",
                               absl::StrCat("the rotation record: ", saved.status().message()));
  }
  return http::ServerResponse::Json(request.method() == "POST" ? 202 : 200,
                                    RotationStatusJson(*next, RotationDecision{}, {}) + "\n");
}

std::string CaService::RotationJson() const {
  absl::MutexLock lock(&state_mutex_);
  if (state_.rotation_json == "null") return "null\n";
  // The driver's status, and whether the configured source holds a complete rotation's material.
  std::string out = state_.rotation_json;
  out.pop_back();
  absl::StrAppend(&out, R"(,"adopted":)", state_.rotation_unadopted.empty() ? "true" : "false",
                  "}\n");
  return out;
}

}  // namespace meshlet::controlplane::ca
