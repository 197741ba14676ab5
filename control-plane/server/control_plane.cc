// The control plane's composition root: it opens the store, builds every service on it, wires
// their callbacks and owns their lifetimes and timers; each piece lives in its own library, and
// what stays here is the order they are made and torn down in, which reads best in one file.

#include "control-plane/server/control_plane.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"
#include "common/stats/must_stat.h"
#include "common/tls/certificate.h"
#include "common/tls/digest.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_transport.h"
#include "control-plane/registry/saved_registry.h"
#include "control-plane/store/etcd_store.h"
#include "control-plane/store/file_store.h"
#include "control-plane/store/shared_value.h"

namespace meshlet::controlplane {
namespace {

constexpr char kSavedRegistryFile[] = "registry.pb";

}  // namespace

namespace {

flags::Flag StringOption(std::string name, std::string value, std::string help, std::string& out) {
  return {.name = name,
          .value = std::move(value),
          .help = std::move(help),
          .set = [&out](absl::string_view v) {
            if (v.empty()) return absl::InvalidArgumentError("must not be empty");
            out = std::string(v);
            return absl::OkStatus();
          }};
}

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> content = tls::ReadSmallFile(path);
  if (!content.ok()) return Annotate(content.status(), flag);
  return content;
}

// TLS to etcd from --etcd-cacert, --etcd-cert and --etcd-key; `*digest` (when given) becomes the
// SHA-256 of what was read, even when it makes no valid context; `*client_not_after` (when
// given) the end of the client certificate read (unset without one or when unreadable).
absl::StatusOr<std::shared_ptr<const tls::TlsContext>> EtcdTlsContext(
    const ControlPlaneOptions& options, std::string* digest,
    std::optional<absl::Time>* client_not_after = nullptr) {
  tls::TlsContextConfig config;
  ASSIGN_OR_RETURN(config.trust_bundle_pem, ReadFlagFile("--etcd-cacert", options.etcd_ca_file));
  if (!options.etcd_cert_file.empty()) {
    ASSIGN_OR_RETURN(config.certificate_chain_pem,
                     ReadFlagFile("--etcd-cert", options.etcd_cert_file));
    ASSIGN_OR_RETURN(config.private_key_pem, ReadFlagFile("--etcd-key", options.etcd_key_file));
  }
  if (digest != nullptr) {
    *digest = tls::Sha256(absl::StrCat(config.trust_bundle_pem.size(), ":", config.trust_bundle_pem,
                                       config.certificate_chain_pem.size(), ":",
                                       config.certificate_chain_pem, config.private_key_pem));
  }
  if (client_not_after != nullptr && !config.certificate_chain_pem.empty()) {
    absl::StatusOr<tls::CertificateChain> chain =
        tls::ParsePemCertificates(config.certificate_chain_pem);
    if (chain.ok() && !chain->empty()) *client_not_after = tls::NotAfter(*chain->front());
  }
  config.alpn_protocols = {"h2"};
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) return Annotate(context.status(), "TLS to etcd");
  return context;
}

// The store the options name: the file store in the data directory, or etcd.
// `*etcd_tls` (when given) is set to the provider of TLS to etcd, when there is one.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(
    const ControlPlaneOptions& options, std::shared_ptr<tls::TlsContextProvider>* etcd_tls) {
  const bool tls_flags = !options.etcd_ca_file.empty() || !options.etcd_cert_file.empty() ||
                         !options.etcd_key_file.empty();
  const bool etcd_flags = tls_flags || options.etcd_insecure_plaintext ||
                          !options.etcd_username.empty() || !options.etcd_password_file.empty();
  if (options.store.empty()) {
    if (etcd_flags) {
      return absl::InvalidArgumentError("--etcd-* flags need --store https://HOST:PORT (etcd)");
    }
    absl::StatusOr<std::unique_ptr<FileStore>> store =
        FileStore::Open(absl::StrCat(options.data_dir, "/store"));
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(*store));
  }
  ASSIGN_OR_RETURN(EtcdUrl url, ParseEtcdUrl(options.store));
  EtcdStoreOptions etcd;
  etcd.endpoints = std::move(url.endpoints);
  etcd.prefix = options.etcd_prefix;
  etcd.request_timeout = options.etcd_timeout;
  etcd.lease_ttl = options.etcd_lease_ttl;
  if (options.etcd_cert_file.empty() != options.etcd_key_file.empty()) {
    return absl::InvalidArgumentError("--etcd-cert and --etcd-key go together");
  }
  if (url.tls) {
    if (options.etcd_insecure_plaintext) {
      return absl::InvalidArgumentError(absl::StrCat("--etcd-insecure-plaintext: the store ",
                                                     options.store, " is TLS (https://)"));
    }
    if (options.etcd_ca_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--store ", options.store,
          ": etcd over TLS needs --etcd-cacert (the CA that signed the members' certificates), "
          "and --etcd-cert/--etcd-key when etcd asks for client certificates"));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<const tls::TlsContext> context,
                     EtcdTlsContext(options, nullptr));
    auto provider = std::make_shared<tls::TlsContextProvider>(std::move(context));
    if (etcd_tls != nullptr) *etcd_tls = provider;
    etcd.tls = std::move(provider);
    if (options.etcd_cert_file.empty() && options.etcd_username.empty()) {
      LOG(WARN) << "etcd: this replica presents no client certificate (--etcd-cert) and no user "
                   "(--etcd-username); only an etcd that authenticates nobody lets it in";
    }
  } else {
    if (!options.etcd_insecure_plaintext) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--store ", options.store,
          ": plaintext etcd is refused: the policies, the shared API token and CA root, and "
          "etcd credentials would cross the network in clear, to and from anyone who reaches "
          "it. Use https:// with --etcd-cacert, --etcd-cert and --etcd-key, or add "
          "--etcd-insecure-plaintext for a local test"));
    }
    if (tls_flags) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--etcd-cacert, --etcd-cert and --etcd-key need an https:// store, not ", options.store));
    }
    etcd.allow_plaintext = true;
    LOG(WARN) << "INSECURE: etcd at " << options.store
              << " in plaintext (--etcd-insecure-plaintext): anyone on the network path reads and "
                 "changes the policies, the shared API token and CA root. For local tests only";
  }
  if (!options.etcd_password_file.empty() && options.etcd_username.empty()) {
    return absl::InvalidArgumentError("--etcd-password-file needs --etcd-username");
  }
  etcd.username = options.etcd_username;
  if (!options.etcd_password_file.empty()) {
    ASSIGN_OR_RETURN(std::string password,
                     ReadFlagFile("--etcd-password-file", options.etcd_password_file));
    etcd.password = std::string(absl::StripTrailingAsciiWhitespace(password));
  }
  absl::StatusOr<std::unique_ptr<EtcdStore>> store = EtcdStore::Open(std::move(etcd));
  if (!store.ok()) return store.status();
  LOG(INFO) << "policy store: etcd at " << options.store << ", prefix " << options.etcd_prefix
            << (url.tls ? " (TLS)" : " (plaintext)");
  return std::unique_ptr<Store>(std::move(*store));
}

}  // namespace

std::vector<flags::Flag> ControlPlaneFlags(ControlPlaneOptions& options) {
  return {
      {.name = "--data-dir",
       .value = "DIR",
       .help = "policy store, API token, generated CA root and saved registry (default "
               "/var/lib/meshlet)",
       .set =
           [&options](absl::string_view v) {
             if (v.empty()) return absl::InvalidArgumentError("must not be empty");
             options.data_dir = std::string(v);
             return absl::OkStatus();
           }},
      {.name = "--store",
       .value = "URL",
       .help = "the policy store: https://HOST:PORT[,HOST:PORT...] for etcd over TLS, shared by "
               "replicas; http://... only with --etcd-insecure-plaintext (default: a file store "
               "in --data-dir)",
       .set =
           [&options](absl::string_view v) {
             if (absl::Status s = ParseEtcdUrl(v).status(); !s.ok()) return s;
             options.store = std::string(v);
             return absl::OkStatus();
           }},
      StringOption("--etcd-prefix", "PREFIX", "key prefix of this mesh in etcd (default /meshlet/)",
                   options.etcd_prefix),
      StringOption("--etcd-cacert", "FILE",
                   "TLS to etcd: CA bundle (PEM) its members' certificates chain to (needed with "
                   "an https:// store)",
                   options.etcd_ca_file),
      StringOption("--etcd-cert", "FILE",
                   "TLS to etcd: client certificate chain (PEM) this replica presents",
                   options.etcd_cert_file),
      StringOption("--etcd-key", "FILE", "TLS to etcd: the client certificate's key (PEM)",
                   options.etcd_key_file),
      StringOption("--store-encryption-key-file", "FILE",
                   "with etcd: the key file (base64 keys of 32 bytes, one a line, the first "
                   "encrypting) that encrypts the API token and CA root the replicas share through "
                   "etcd; required with etcd, the same file for every replica; read again every "
                   "--store-key-check-interval",
                   options.store_encryption_key_file),
      flags::PositiveDurationFlag(
          "--store-key-check-interval", &options.store_key_check_interval,
          "with etcd: how often the store key file is read again (a changed one is taken "
          "without a restart) and the records sealed with an older key are sealed again with "
          "the first; the --etcd-cacert/--etcd-cert/--etcd-key files are read again at the same "
          "interval, for new connections to etcd (default 10s)",
          "10s"),
      flags::BoolFlag("--etcd-insecure-plaintext", &options.etcd_insecure_plaintext,
                      "allow an http:// store: etcd in plaintext, readable and writable by anyone "
                      "on the network path (local tests only; logged as INSECURE)"),
      flags::PositiveDurationFlag(
          "--etcd-timeout", &options.etcd_timeout,
          "per etcd call and member: how long an API request waits for an answer before trying "
          "the next member or answering 503 (default 5s)",
          "5s"),
      flags::NonNegativeDurationFlag(
          "--http-request-timeout", &options.http_request_timeout,
          "every control-plane HTTP server (API, webhook, telemetry): a request must arrive "
          "whole within this of its first byte, or the connection is closed (408 on HTTP/1; "
          "default 30s, 0: no limit)"),
      flags::NonNegativeDurationFlag(
          "--http-idle-timeout", &options.http_idle_timeout,
          "every control-plane HTTP server: a connection with no request arriving or being "
          "answered is closed after this long (default 120s, 0: never)",
          "120s"),
      {.name = "--store-max-pending",
       .value = "N",
       .help = "store calls (API requests, policy reloads, join tokens) that may wait for a slow "
               "store; past it the API answers 503 at once (default 256)",
       .set =
           [&options](absl::string_view v) {
             size_t n = 0;
             if (!absl::SimpleAtoi(v, &n) || n == 0 || n > 1000000) {
               return absl::InvalidArgumentError("must be a whole number from 1 to 1000000");
             }
             options.max_store_pending = n;
             return absl::OkStatus();
           }},
      {.name = "--etcd-lease-ttl",
       .value = "DURATION",
       .help = "how long the registrations a replica published outlive it when it dies (whole "
               "seconds, at least 2s; default 10s)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<absl::Duration> ttl = config::ParseDurationText(v);
             if (!ttl.ok()) return ttl.status();
             if (*ttl < absl::Seconds(2) || *ttl != absl::Trunc(*ttl, absl::Seconds(1))) {
               return absl::InvalidArgumentError("must be whole seconds, at least 2s");
             }
             options.etcd_lease_ttl = absl::ToChronoNanoseconds(*ttl);
             return absl::OkStatus();
           }},
      StringOption("--replica-name", "NAME",
                   "this control-plane replica's name, shown beside the workloads connected to it "
                   "(default: the host name)",
                   options.replica_name),
      StringOption("--etcd-username", "NAME", "etcd authentication: user name",
                   options.etcd_username),
      StringOption("--etcd-password-file", "FILE", "etcd authentication: file holding the password",
                   options.etcd_password_file),
      {.name = "--api-address",
       .value = "HOST:PORT",
       .help = "REST API for meshctl and the dashboard, HTTPS with a certificate from the "
               "control plane's CA (default 127.0.0.1:15014)",
       .set =
           [&options](absl::string_view v) {
             if (absl::Status s = net::Address::Parse(v).status(); !s.ok()) return s;
             options.api_address = std::string(v);
             return absl::OkStatus();
           }},
      {.name = "--api-audit-log",
       .value = "FILE|off",
       .help = "where every API write is recorded, one JSON line each, mode 0600 (default "
               "<data-dir>/audit.log); off: nowhere",
       .set =
           [&options](absl::string_view v) {
             if (v.empty()) return absl::InvalidArgumentError("must not be empty");
             options.api_audit_log = std::string(v);
             return absl::OkStatus();
           }},
      flags::SwitchFlag("--api-plaintext", &options.api_plaintext,
                        "serve the API over plain HTTP instead of TLS: API tokens then cross the "
                        "network in clear (local tests only)"),
      flags::NonNegativeDurationFlag(
          "--deregister-grace", &options.deregister_grace,
          "keep a disconnected sidecar's workload this long (default 30s; 0: not at all)"),
      {.name = "--log-level",
       .value = "LEVEL",
       .help = "trace, debug, info, warn, error, critical, off (default info)",
       .set =
           [&options](absl::string_view v) {
             std::optional<LogLevel> level = ParseLogLevel(v);
             if (!level) {
               return absl::InvalidArgumentError(
                   "unknown level; one of trace, debug, info, warn, error, critical, off");
             }
             options.log_level = *level;
             return absl::OkStatus();
           }},
  };
}

ControlPlane::ControlPlane(ControlPlaneOptions options, const Clock& clock)
    : options_(std::move(options)), clock_(clock) {}

ControlPlane::~ControlPlane() {
  // A store call under way may use the API: let it finish first.
  if (store_worker_ != nullptr) store_worker_->Stop();
  // Handles belong to the loop: close them before it goes, then let it finish closing.
  signals_.clear();
  expiry_timer_.reset();
  store_key_timer_.reset();
  shared_registrations_.reset();
  api_server_.reset();
  gate_.reset();
  loop_.RunUntilIdle();
}

absl::Status ControlPlane::Init() {
  SetLogLevel(options_.log_level);
  if (::mkdir(options_.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir ", options_.data_dir, ": ", std::strerror(errno)));
  }
  if (options_.store.empty() && !options_.store_encryption_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--store-encryption-key-file: only with --store https://... (etcd); the file store keeps "
        "its secrets in --data-dir");
  }
  if (!options_.store.empty()) {
    if (options_.store_encryption_key_file.empty()) {
      return absl::InvalidArgumentError(
          "--store https://... (etcd) needs --store-encryption-key-file: the API token and CA "
          "root the replicas share are kept in etcd encrypted with it (a file mounted into the "
          "control plane alone, one base64 key of 32 random bytes: `meshctl install --secrets` "
          "makes one, or `head -c 32 /dev/urandom | base64`)");
    }
    absl::StatusOr<std::unique_ptr<StoreKeyRing>> ring =
        StoreKeyRing::Open(options_.store_encryption_key_file, &stats_);
    if (!ring.ok()) return Annotate(ring.status(), "--store-encryption-key-file");
    store_key_ring_ = *std::move(ring);
  }
  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(options_, &etcd_tls_);
  if (!store.ok()) return Annotate(store.status(), "opening the policy store");
  store_ = std::move(*store);
  store_up_ = MustStat(stats_.AddGaugeCollector(
      "meshlet_cp_store_up",
      "1 when the store answers: always for the file store; with etcd, etcd answered the last "
      "call that ended (UNAVAILABLE and DEADLINE_EXCEEDED are no answer) within the last 30 s.",
      {}, [store = store_.get()](GaugeRows& rows) { rows.Add({}, store->Up() ? 1 : 0); }));
  store_worker_ = std::make_unique<StoreWorker>(
      loop_, StoreWorkerOptions{.max_queued = options_.max_store_pending}, &stats_);
  const std::string token_path = absl::StrCat(options_.data_dir, "/api-token");
  absl::StatusOr<std::string> token = api::LoadOrCreateToken(token_path);
  if (!token.ok()) return Annotate(token.status(), "API token");
  token_ = std::move(*token);
  if (!options_.store.empty()) {
    // Replicas share one token (the first replica's), so that meshctl may use any of them; each
    // data directory holds it.
    absl::StatusOr<std::string> shared =
        LoadOrCreateSharedValue(*store_, *store_key_ring_->keys(), "api-token",
                                [&]() -> absl::StatusOr<std::string> { return token_; });
    if (!shared.ok()) return Annotate(shared.status(), "API token");
    if (*shared != token_) {
      RETURN_IF_ERROR(Annotate(api::ReplaceToken(token_path, *shared), "API token"));
      LOG(INFO) << "API token: " << token_path
                << " now holds the token the replicas share (from the store)";
      token_ = *std::move(shared);
    }
  }

  registry::RegistryOptions registry_options;
  registry_options.deregister_grace = options_.deregister_grace;
  // With etcd the replicas share registrations through leased keys.
  LeasedKeys* shared_keys = leased_keys();
  if (shared_keys != nullptr) {
    replica_name_ = options_.replica_name;
    if (replica_name_.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      replica_name_ = host;
    }
    registry_options.replica = replica_name_;
    registry_options.track_local_changes = true;
  }
  registry_ = std::make_unique<registry::Registry>(clock_, registry_options);
  auto gauge = [this](absl::string_view state) {
    absl::StatusOr<GaugeId> id =
        stats_.RegisterGauge("meshlet_cp_registry_workloads",
                             "Registered workloads: connected, or disconnected and waiting out "
                             "the deregistration grace period; other_replica: known only from "
                             "another control-plane replica.",
                             {{"state", std::string(state)}}, GaugeMerge::kGlobal);
    CHECK(id.ok()) << id.status().message();
    return stats_.shared_shard().Get(*id);
  };
  const Gauge connected = gauge("connected");
  const Gauge disconnected = gauge("disconnected");
  const Gauge elsewhere = gauge("other_replica");
  absl::StatusOr<CounterId> expired_id =
      stats_.RegisterCounter("meshlet_cp_registry_deregistered_total",
                             "Workloads removed from the registry after their grace period.");
  CHECK(expired_id.ok()) << expired_id.status().message();
  const Counter expired = stats_.shared_shard().Get(*expired_id);
  absl::StatusOr<CounterId> save_errors_id = stats_.RegisterCounter(
      "meshlet_cp_registry_save_errors_total",
      "Writes of the saved registry (<data-dir>/registry.pb) that failed; retried at the next "
      "tick.");
  CHECK(save_errors_id.ok()) << save_errors_id.status().message();
  registry_save_errors_ = stats_.shared_shard().Get(*save_errors_id);
  // Removal after the grace period: a coarse periodic sweep is enough (the grace is seconds).
  expiry_timer_ =
      std::make_unique<event::Timer>(loop_, [this, connected, disconnected, elsewhere, expired] {
        if (size_t removed = registry_->ExpireDisconnected(); removed > 0) {
          expired.Inc(removed);
          LOG(INFO) << "deregistered " << removed << " workload(s) after the grace period";
        }
        const size_t open = registry_->connected();
        const size_t total = registry_->size();
        connected.Set(static_cast<int64_t>(open));
        disconnected.Set(static_cast<int64_t>(total > open ? total - open : 0));
        elsewhere.Set(static_cast<int64_t>(registry_->peer_only()));
        if (shared_registrations_ != nullptr) return;  // etcd holds them
        // A crash (kill -9, OOM, power) must not lose the registry: saved when it changed, at most
        // once a second so that a churn of registrations does not turn into a churn of writes.
        if (++ticks_since_registry_save_ >= 2 && registry_->version() != saved_registry_version_) {
          SaveRegistry(SaveReason::kChanged);
        }
      });
  expiry_timer_->EnableRepeating(std::chrono::milliseconds(500));
  if (store_key_ring_ != nullptr) StartStoreKeyChecks();
  if (shared_keys != nullptr) {
    shared_registrations_ =
        std::make_unique<registry::SharedRegistrations>(loop_, *registry_, *shared_keys);
    LOG(INFO) << "registry: shared with the other replicas through etcd as replica \""
              << registry_options.replica << "\"";
  } else {
    RestoreRegistry();
  }

  absl::StatusOr<std::unique_ptr<access::OperatorTokens>> operator_tokens =
      access::OperatorTokens::Open(*store_, clock_, token_, &stats_);
  if (!operator_tokens.ok()) return Annotate(operator_tokens.status(), "API");
  operator_tokens_ = *std::move(operator_tokens);
  gate_ = std::make_unique<access::AccessGate>(*operator_tokens_, &stats_);
  absl::StatusOr<Counter> cross_origin = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_api_cross_origin_refused_total",
      "API writes refused (403) because a web page of another origin sent them (Origin or "
      "Sec-Fetch-Site).");
  CHECK_OK(cross_origin);
  api_cross_origin_refused_ = *cross_origin;
  api::ApiOptions api_options;
  api_options.server_version = kControlPlaneVersion;
  api_options.revision = options_.revision;
  api_ = std::make_unique<api::PolicyApi>(*store_, registry_.get(), clock_, api_options, &stats_);
  api_->SetOperatorTokens(operator_tokens_.get());
  if (options_.api_audit_log != "off") {
    const std::string path = options_.api_audit_log.empty()
                                 ? absl::StrCat(options_.data_dir, "/audit.log")
                                 : options_.api_audit_log;
    absl::StatusOr<std::unique_ptr<access::AuditLog>> audit =
        access::AuditLog::Open(path, clock_, &stats_);
    if (!audit.ok()) return Annotate(audit.status(), "--api-audit-log");
    audit_ = *std::move(audit);
  } else {
    LOG(WARN) << "API: no audit log (--api-audit-log=off): writes are not recorded";
  }
  // Services stored without addresses (before allocation existed, while a range was full, or
  // before an IPv6 range was configured) get them now.
  if (absl::StatusOr<addresses::ServiceAddresses::Backfill> backfill =
          api_->service_addresses().AssignMissing();
      !backfill.ok()) {
    LOG(WARN) << "service addresses: " << backfill.status().message();
  } else {
    if (backfill->assigned > 0) {
      LOG(INFO) << "service addresses: allocated for " << backfill->assigned << " Service(s)";
    }
    for (const std::string& warning : backfill->warnings) {
      LOG(WARN) << "service addresses: " << warning;
    }
  }
  ASSIGN_OR_RETURN(net::Address address, net::Address::Parse(options_.api_address));
  http::HttpServerOptions server_options = HttpServerOptionsFor("api");
  server_options.max_request_body_bytes = options_.max_api_body_bytes;
  server_options.max_connections = options_.max_api_connections;
  if (api_tls()) {
    // Until the first certificate there is no transport: connections are closed at once.
    server_options.transport_factory = [this]() -> std::unique_ptr<net::Transport> {
      if (api_tls_ == nullptr) return nullptr;
      return tls::TlsTransport::Make(api_tls_->Current());
    };
  } else {
    LOG(WARN) << "API: plain HTTP (--api-plaintext): API tokens and everything the API answers "
                 "cross the network in clear; do not use this beyond a test on one host";
  }
  // Every request passes the gate, for the role it needs; a Kubernetes user's token is reviewed
  // by the API server first.
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Create(
      loop_, address, server_options,
      [this](const http::ServerRequest& request, http::Responder respond) {
        respond = api_->Timed(request, std::move(respond));
        // A web page of another origin may post a form here without a CORS preflight: writes
        // from one are refused before anything else (the dashboard, same-origin, only reads).
        if (access::AuditLog::Records(request)) {
          if (std::string why = http::CrossOriginReason(request, api_tls() ? "https" : "http");
              !why.empty()) {
            api_cross_origin_refused_.Inc();
            return Audited(request, std::nullopt,
                           std::move(respond))(api_->Refusal(absl::PermissionDeniedError(
                absl::StrCat(request.method(), " ", request.path(),
                             ": refused, from a web page of another origin (", why, ")"))));
          }
        }
        const std::optional<access::Role> needed = api::PolicyApi::RequiredRole(request);
        if (!needed.has_value()) {
          Dispatch(request, std::nullopt, std::move(respond));
          return;
        }
        access::Principal identified;
        absl::StatusOr<access::Principal> caller = gate_->Check(request, *needed, &identified);
        if (absl::IsNotFound(caller.status())) {
          gate_->CheckKubernetes(request, *needed,
                                 [this, request, respond = std::move(respond)](
                                     absl::StatusOr<access::Principal> caller) mutable {
                                   if (!caller.ok()) {
                                     return Audited(request, std::nullopt, std::move(respond))(
                                         api_->Refusal(caller.status()));
                                   }
                                   Dispatch(request, *std::move(caller), std::move(respond));
                                 });
          return;
        }
        if (!caller.ok()) {
          std::optional<access::Principal> who;
          if (!identified.name.empty()) who = identified;
          return Audited(request, std::move(who),
                         std::move(respond))(api_->Refusal(caller.status()));
        }
        Dispatch(request, *std::move(caller), std::move(respond));
      });
  if (!server.ok()) return Annotate(server.status(), absl::StrCat("API on ", options_.api_address));
  api_server_ = std::move(*server);

  for (int signum : {SIGTERM, SIGINT}) {
    absl::StatusOr<std::unique_ptr<event::Signal>> signal =
        event::Signal::Create(loop_, signum, [this](int received) {
          LOG(INFO) << "signal " << received << ": shutting down";
          BeginShutdown();
        });
    if (!signal.ok()) return signal.status();
    signals_.push_back(std::move(*signal));
  }
  LOG(INFO) << "control plane " << kControlPlaneVersion << " (revision "
            << (options_.revision.empty() ? "default" : options_.revision) << "): API on "
            << api_server_->address().ToString() << (api_tls() ? " (HTTPS)" : " (plain HTTP)")
            << ", data in " << options_.data_dir << " (store revision " << store_->Revision()
            << ")";
  return absl::OkStatus();
}

namespace {

// The API's server context: HTTP/2 or HTTP/1.1 by ALPN; client certificates requested and
// verified against `trust_bundle_pem` once there is one.
absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ApiServerContext(
    const std::string& certificate_chain_pem, const std::string& private_key_pem,
    const std::string& trust_bundle_pem) {
  tls::TlsContextConfig config{.certificate_chain_pem = certificate_chain_pem,
                               .private_key_pem = private_key_pem,
                               .trust_bundle_pem = trust_bundle_pem,
                               .alpn_protocols = {"h2", "http/1.1"}};
  if (!trust_bundle_pem.empty()) config.client_certificate = tls::ClientCertificateMode::kRequest;
  return tls::TlsContext::CreateServer(config);
}

}  // namespace

absl::Status ControlPlane::SetApiServingCertificate(std::string certificate_chain_pem,
                                                    std::string private_key_pem) {
  if (!api_tls()) return absl::FailedPreconditionError("the API is plain HTTP (--api-plaintext)");
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      ApiServerContext(certificate_chain_pem, private_key_pem, api_trust_bundle_pem_);
  if (!context.ok()) return Annotate(context.status(), "API TLS with the new certificate");
  api_certificate_chain_pem_ = std::move(certificate_chain_pem);
  api_private_key_pem_ = std::move(private_key_pem);
  if (api_tls_ == nullptr) {
    api_tls_ = std::make_shared<tls::TlsContextProvider>(*std::move(context));
  } else {
    api_tls_->Update(*std::move(context));
  }
  return absl::OkStatus();
}

absl::Status ControlPlane::SetApiTrustBundle(std::string trust_bundle_pem) {
  if (!api_tls()) return absl::OkStatus();  // no TLS, no client certificates
  if (api_tls_ != nullptr) {
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        ApiServerContext(api_certificate_chain_pem_, api_private_key_pem_, trust_bundle_pem);
    if (!context.ok()) return Annotate(context.status(), "API TLS with the trust bundle");
    api_tls_->Update(*std::move(context));
  }
  api_trust_bundle_pem_ = std::move(trust_bundle_pem);
  return absl::OkStatus();
}

http::Responder ControlPlane::Audited(const http::ServerRequest& request,
                                      std::optional<access::Principal> caller,
                                      http::Responder respond) {
  if ((audit_ == nullptr && write_listeners_.empty()) || !access::AuditLog::Records(request)) {
    return respond;
  }
  // What the record needs of the request, which may be gone when the answer comes.
  http::ServerRequest head;
  head.headers.Add(":method", request.method());
  head.headers.Add(":path", request.headers.Get(":path").value_or(""));
  head.peer = request.peer;
  return [this, head = std::move(head), caller = std::move(caller),
          respond = std::move(respond)](http::ServerResponse response) mutable {
    const access::Principal* who = caller.has_value() ? &*caller : nullptr;
    if (audit_ != nullptr) audit_->Record(head, who, response);
    if (response.status >= 200 && response.status < 300 && !write_listeners_.empty()) {
      const access::AuditedObject object = access::AuditLog::ObjectOf(head.path());
      for (const WriteListener& listener : write_listeners_) listener(object, who);
    }
    respond(std::move(response));
  };
}

void ControlPlane::Dispatch(const http::ServerRequest& request,
                            std::optional<access::Principal> caller, http::Responder respond) {
  respond = Audited(request, caller, std::move(respond));
  if (api_->HandleStreamed(request, caller.has_value() ? &*caller : nullptr, respond)) return;
  if (!api::PolicyApi::CallsStore(request)) {
    respond(api_->Handle(request, caller.has_value() ? &*caller : nullptr));
    return;
  }
  // Requests that call the store run on the store worker, so a slow store holds up only them.
  if (!store_worker_->Run<http::ServerResponse>(
          [this, request, caller = std::move(caller)] {
            return api_->Handle(request, caller.has_value() ? &*caller : nullptr);
          },
          std::move(respond))) {
    respond(api_->StoreBusy(store_worker_->pending()));
  }
}

void ControlPlane::ReloadEtcdTls() {
  std::string digest;
  std::optional<absl::Time> client_not_after;
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      EtcdTlsContext(options_, &digest, &client_not_after);
  if (!digest.empty() && digest == etcd_tls_digest_) return;
  if (!context.ok()) {
    // Refused once per content of the files (or per error while they cannot be read).
    const std::string error(context.status().message());
    if (!digest.empty()) etcd_tls_digest_ = digest;
    if (error == etcd_tls_error_) return;
    etcd_tls_error_ = error;
    etcd_tls_reloads_failed_.Inc();
    LOG(ERROR) << "TLS to etcd: the changed --etcd-cacert/--etcd-cert/--etcd-key are refused: "
               << error << "; new connections keep the files read before";
    return;
  }
  etcd_tls_error_.clear();
  etcd_tls_digest_ = std::move(digest);
  etcd_tls_->Update(*std::move(context));
  etcd_tls_reloads_ok_.Inc();
  if (client_not_after.has_value()) {
    etcd_client_certificate_expiry_.Set(absl::ToUnixSeconds(*client_not_after));
  }
  LOG(INFO) << "TLS to etcd: --etcd-cacert/--etcd-cert/--etcd-key changed; new connections to "
               "etcd use them (generation "
            << etcd_tls_->generation() << ")";
}

void ControlPlane::StartStoreKeyChecks() {
  if (etcd_tls_ != nullptr) {
    constexpr char kName[] = "meshlet_cp_etcd_tls_reloads_total";
    constexpr char kHelp[] =
        "Changes of --etcd-cacert, --etcd-cert or --etcd-key taken for new connections to etcd "
        "(ok), or refused (failed: unreadable, or not a valid certificate, key and CA; the files "
        "read before stay in use).";
    StatsShard& shard = stats_.shared_shard();
    etcd_tls_reloads_ok_ = MustStat(shard.RegisterCounter(kName, kHelp, {{"result", "ok"}}));
    etcd_tls_reloads_failed_ =
        MustStat(shard.RegisterCounter(kName, kHelp, {{"result", "failed"}}));
    etcd_client_certificate_expiry_ = MustStat(shard.RegisterGauge(
        "meshlet_cp_etcd_client_certificate_expiry_seconds",
        "When the client certificate this replica presents to etcd for new connections "
        "(--etcd-cert) expires, in Unix seconds; 0 without one.",
        {}, GaugeMerge::kGlobal));
    // What the store was opened with, so that the first check takes nothing.
    std::optional<absl::Time> client_not_after;
    EtcdTlsContext(options_, &etcd_tls_digest_, &client_not_after).IgnoreError();
    if (client_not_after.has_value()) {
      etcd_client_certificate_expiry_.Set(absl::ToUnixSeconds(*client_not_after));
    }
  }
  auto check = [this] {
    if (store_key_check_running_) return;
    store_key_check_running_ = true;
    StoreKeyRing* ring = store_key_ring_.get();
    Store* store = store_.get();
    const bool queued = store_worker_->Run<bool>(
        [this, ring, store]() -> bool {
          if (etcd_tls_ != nullptr) ReloadEtcdTls();
          ring->Reload();
          absl::StatusOr<std::vector<SealedRecord>> records = ring->ResealAndCount(*store);
          if (!records.ok()) {
            LOG_EVERY_N_SEC(WARN, 60) << "store key check: " << records.status().message()
                                      << " (tried again in --store-key-check-interval)";
          }
          return records.ok();
        },
        [this](bool) { store_key_check_running_ = false; });
    if (!queued) store_key_check_running_ = false;  // the worker is busy: next tick
  };
  store_key_timer_ = std::make_unique<event::Timer>(loop_, check);
  store_key_timer_->EnableRepeating(options_.store_key_check_interval);
  check();  // publishes which key seals each record now
}

http::HttpServerOptions ControlPlane::HttpServerOptionsFor(absl::string_view server) {
  http::HttpServerOptions options;
  options.request_timeout = options_.http_request_timeout;
  options.idle_timeout = options_.http_idle_timeout;
  absl::StatusOr<Counter> timeouts = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_http_timeouts_total",
      "Connections to the control plane's HTTP servers closed because a request did not arrive "
      "within --http-request-timeout or nothing happened within --http-idle-timeout.",
      {{"server", std::string(server)}});
  CHECK_OK(timeouts);
  options.timeouts = *timeouts;
  return options;
}

void ControlPlane::BeginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  stopping_since_ = clock_.WallNow();
  for (auto& hook : shutdown_hooks_) hook();
  if (api_server_ != nullptr) api_server_->Shutdown();
  expiry_timer_.reset();
  store_key_timer_.reset();
  loop_.Stop();
}

int ControlPlane::Run() {
  loop_.Run();
  // A Stop() from another thread lands here without BeginShutdown having run.
  BeginShutdown();
  // Give open API connections a moment to finish their responses, and shutdown work its
  // requests.
  loop_.RunUntil(
      [this] {
        if (api_server_->active_connections() != 0) return false;
        for (const auto& finished : shutdown_waits_) {
          if (!finished()) return false;
        }
        return true;
      },
      std::chrono::seconds(2));
  store_worker_->Stop();
  if (shared_registrations_ == nullptr) SaveRegistry(SaveReason::kStop);
  LOG(INFO) << "control plane stopped";
  return 0;
}

void ControlPlane::RestoreRegistry() {
  const std::string path = absl::StrCat(options_.data_dir, "/", kSavedRegistryFile);
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) {
    // Missing: the first start, or the registry was empty.
    if (!absl::IsNotFound(bytes.status())) LOG(WARN) << "ignoring " << bytes.status().message();
    return;
  }
  saved_registry_bytes_ = *std::move(bytes);
  absl::StatusOr<std::vector<registry::Workload>> saved =
      registry::ParseSavedRegistry(saved_registry_bytes_);
  if (!saved.ok()) {
    LOG(WARN) << "ignoring " << path << ": " << saved.status().message();
    return;
  }
  size_t restored = 0;
  for (const registry::Workload& workload : *saved) restored += registry_->Restore(workload);
  LOG(INFO) << "registry: restored " << restored
            << " workload(s) saved by the last run; each keeps its endpoints until its sidecar "
               "reconnects or the grace period passes";
  if (restored < saved->size()) {
    LOG(INFO) << "registry: " << saved->size() - restored
              << " saved workload(s) not restored: their sidecars had left more than the grace "
                 "period ago (or the registry is full)";
  }
  // Saved at once, as disconnected since now: should this run crash before they reconnect, the
  // next one gives them only the rest of their grace period.
  SaveRegistry(SaveReason::kRestored);
}

void ControlPlane::SaveRegistry(SaveReason reason) {
  // A write under way on the store worker: the tick comes back to the version it did not cover.
  if (reason == SaveReason::kChanged && registry_write_in_flight_) return;
  ticks_since_registry_save_ = 0;
  std::shared_ptr<const registry::RegistrySnapshot> snapshot = registry_->Snapshot();
  const uint64_t version = snapshot->version;
  // Empty: nothing to restore, and an older list must not come back after a crash (the file goes).
  std::string bytes, registrations;
  if (!snapshot->workloads.empty()) {
    bytes = registry::SerializeRegistry(*snapshot, stopping_since_);
    // The same without connection state: what a change of registration changes.
    registrations = registry::SerializeRegistry(*snapshot, /*stopping_since=*/absl::InfinitePast());
  }
  const std::string path = absl::StrCat(options_.data_dir, "/", kSavedRegistryFile);
  const size_t count = snapshot->workloads.size();
  if (bytes == saved_registry_bytes_) {
    saved_registry_version_ = version;
    if (reason == SaveReason::kStop) {
      LOG(INFO) << "registry: saved " << count << " workload(s) to " << path;
    }
    return;
  }
  // Registrations are written within a second. Changes of connection state alone (when a sidecar
  // left, or that it came back) wait up to a quarter of the grace period: a reconnect storm after
  // a restart must not rewrite the whole file every second. Waiting only lengthens a gone
  // workload's grace after a crash by as much.
  const Duration connection_save_interval =
      std::max<Duration>(std::chrono::seconds(1), options_.deregister_grace / 4);
  if (reason == SaveReason::kChanged && !bytes.empty() && registrations == saved_registrations_ &&
      clock_.Now() - last_registry_write_ < connection_save_interval) {
    return;  // the version stays unsaved: the tick comes back to it
  }
  auto write = [path, bytes]() -> absl::Status {
    if (!bytes.empty()) return WriteFileAtomically(path, bytes);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return absl::InternalError(absl::StrCat("cannot remove ", path, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  };
  auto written = [this, reason, version, count, path, bytes = std::move(bytes),
                  registrations = std::move(registrations)](absl::Status status) mutable {
    if (!status.ok()) {
      // Tried again at the next tick.
      registry_save_errors_.Inc();
      LOG_EVERY_N_SEC(WARN, 60) << "registry not saved (sidecars re-register as they reconnect): "
                                << status.message();
      return;
    }
    saved_registry_version_ = version;
    if (reason == SaveReason::kStop) {
      LOG(INFO) << "registry: saved " << count << " workload(s) to " << path;
    }
    saved_registry_bytes_ = std::move(bytes);
    saved_registrations_ = std::move(registrations);
    last_registry_write_ = clock_.Now();
  };
  if (reason != SaveReason::kChanged) {
    // At start (before anything is served) and at a clean stop (the store worker has stopped):
    // written here.
    written(write());
    return;
  }
  // The write waits for an fsync: on the store worker, never on the loop that serves sidecars.
  registry_write_in_flight_ = true;
  const bool queued = store_worker_->Run<absl::Status>(
      std::move(write), [this, written = std::move(written)](absl::Status status) mutable {
        registry_write_in_flight_ = false;
        written(std::move(status));
      });
  if (!queued) registry_write_in_flight_ = false;  // full or stopped: the next tick tries again
}

void ControlPlane::Stop() { loop_.Stop(); }

}  // namespace meshlet::controlplane
