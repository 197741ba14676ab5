#include "control-plane/xds/xds_service.h"

#include <algorithm>
#include <optional>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/tls/tls_transport.h"
#include "control-plane/identity/caller.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/xds/tls_files.h"
#include "xds/capabilities.h"

namespace meshlet::controlplane::ads {

std::vector<flags::Flag> XdsFlags(XdsServiceOptions& options) {
  std::vector<flags::Flag> flags = {
      {.name = "--xds-address",
       .value = "IP:PORT",
       .help = "the discovery (gRPC) address (default 0.0.0.0:15012)",
       .set =
           [&options](absl::string_view v) {
             if (!net::Address::Parse(v).ok()) return absl::InvalidArgumentError("must be IP:PORT");
             options.address = std::string(v);
             return absl::OkStatus();
           }},
      flags::StringFlag("--xds-tls-cert", "FILE", &options.tls_cert_file,
                        "server certificate chain (PEM), with --xds-tls-key; default: one the "
                        "control plane's CA issues to it"),
      flags::StringFlag("--xds-tls-key", "FILE", &options.tls_key_file, "its private key (PEM)"),
      flags::BoolFlag("--xds-plaintext", &options.plaintext,
                      "serve h2c without TLS (local tests and demos only)"),
      flags::IntFlag<size_t>("--xds-max-concurrent-pushes", "N", &options.ads.max_concurrent_pushes,
                             "pushes in flight at once (default 100)"),
      flags::IntFlag<size_t>(
          "--xds-max-response-bytes", "N", &options.ads.max_response_bytes,
          "split a delta push of one type into responses of at most N bytes (default 2097152; "
          "65536 to 4128768, below the 4 MiB message limit)"),
      flags::IntFlag<size_t>(
          "--xds-max-message-bytes", "N", &options.ads.max_large_message_bytes,
          "the largest discovery response sent to a sidecar of 0.2.0 or later (capability "
          "large-xds-messages; default 67108864, 4194304 to 67108864); older ones get at most "
          "4194304"),
      flags::IntFlag<size_t>(
          "--xds-max-resource-bytes", "N", &options.translate.max_resource_bytes,
          "the largest ServiceRoute sent; a larger one (its Service port's routes) is replaced by "
          "one answering 503 and counted (default 1048576; 0: no limit)"),
      flags::IntFlag<size_t>(
          "--xds-on-demand-max-services", "N", &options.translate.max_on_demand_services,
          "the most Services a sidecar's lookup keys add to what it is pushed; a key of one "
          "more is answered missing, counted over_limit (default 1024)"),
      flags::IntFlag<size_t>(
          "--xds-on-demand-max-keys", "N", &options.ads.on_demand_max_keys,
          "lookup keys one sidecar stream may hold; more are answered missing (default 4096)"),
      flags::IntFlag<size_t>("--xds-on-demand-rate", "N", &options.ads.on_demand_rate,
                             "new lookup keys a sidecar stream may send per second; more are "
                             "answered missing (default 100)"),
      flags::IntFlag<size_t>("--xds-on-demand-burst", "N", &options.ads.on_demand_burst,
                             "new lookup keys a sidecar stream may send at once (default 500)"),
      flags::NonNegativeDurationFlag("--xds-debounce", &options.ads.debounce_quiet,
                                     "quiet period before a push (default 100ms)", "100ms"),
      {.name = "--xds-listen-host",
       .value = "IP",
       .help = "the address sidecar inbound listeners and gateway proxies' listeners bind "
               "(default 0.0.0.0; 127.0.0.1 for "
               "loopback demos); outbound ones bind loopback",
       .set =
           [&options](absl::string_view v) {
             if (!net::Address::FromIp(v, 1).ok())
               return absl::InvalidArgumentError("must be an IP");
             options.translate.listen_host = std::string(v);
             return absl::OkStatus();
           }},
      flags::NonNegativeDurationFlag("--xds-keepalive-interval", &options.keepalive_interval,
                                     "PING a connection idle this long (default 30s; 0: never)",
                                     "30s"),
      flags::PositiveDurationFlag(
          "--xds-keepalive-timeout", &options.keepalive_timeout,
          "close it when the PING is not answered within this (default 10s)", "10s"),
      flags::NonNegativeDurationFlag(
          "--xds-handshake-timeout", &options.handshake_timeout,
          "close a connection that has not finished its TLS handshake and opened a call "
          "within this (default 10s; 0: no limit)",
          "10s"),
      flags::NonNegativeDurationFlag(
          "--xds-idle-timeout", &options.idle_timeout,
          "send GOAWAY to a connection without calls for this long (default 5m; 0: never)", "5m"),
  };
  // The live tap's limits (tap_service.h) ride with the discovery service that runs it.
  for (flags::Flag& flag : TapFlags(options.tap)) flags.push_back(std::move(flag));
  return flags;
}

absl::Status CheckXdsFlags(const XdsServiceOptions& options) {
  if (options.ads.max_large_message_bytes < http::grpc::kDefaultMaxMessageSize ||
      options.ads.max_large_message_bytes > xds::kLargeXdsMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--xds-max-message-bytes=", options.ads.max_large_message_bytes, ": must be ",
                     http::grpc::kDefaultMaxMessageSize, " to ", xds::kLargeXdsMessageBytes,
                     " (what sidecars of 0.2.0 and later receive)"));
  }
  constexpr size_t kMinResponse = 64 * 1024;
  const size_t max_response = options.ads.max_message_bytes - kMinResponse;
  if (options.ads.max_response_bytes < kMinResponse ||
      options.ads.max_response_bytes > max_response) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--xds-max-response-bytes=", options.ads.max_response_bytes, ": must be ", kMinResponse,
        " to ", max_response, " (64 KiB below the 4 MiB gRPC message limit)"));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--xds-tls-cert and --xds-tls-key go together");
  }
  if (options.plaintext && !options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--xds-plaintext and --xds-tls-cert exclude each other");
  }
  return absl::OkStatus();
}

XdsService::XdsService(ControlPlane& control_plane, XdsServiceOptions options)
    : control_plane_(control_plane), options_(std::move(options)), resources_(options_.translate) {
  absl::StatusOr<CounterId> id = control_plane_.stats().RegisterCounter(
      "meshlet_cp_registry_readiness_unregistered_total",
      "Readiness reports ignored: the registry does not hold the workload (it refused the "
      "registration).");
  CHECK(id.ok()) << id.status().message();
  readiness_unregistered_ = control_plane_.stats().shared_shard().Get(*id);
  id = control_plane_.stats().RegisterCounter(
      "meshlet_cp_xds_nodes_unversioned_total",
      "Streams from nodes that list no capabilities and name no meshlet release: they are sent "
      "what the oldest supported release reads.");
  CHECK(id.ok()) << id.status().message();
  nodes_unversioned_ = control_plane_.stats().shared_shard().Get(*id);
  id = control_plane_.stats().RegisterCounter(
      "meshlet_xds_oversized_resources_total",
      "Resources larger than --xds-max-resource-bytes, replaced when translated: a ServiceRoute "
      "by one whose virtual host answers 503 (its Service port's route table is too large).",
      {{"type", "service_routes"}});
  CHECK(id.ok()) << id.status().message();
  oversized_service_routes_ = control_plane_.stats().shared_shard().Get(*id);
  for (const char* reason :
       {"no_certificate", "certificate_expired", "not_a_workload", "namespace_mismatch",
        "service_account_mismatch", "node_id_taken", "not_its_pod", "service_not_allowed"}) {
    absl::StatusOr<CounterId> refusals = control_plane_.stats().RegisterCounter(
        "meshlet_cp_xds_stream_refusals_total",
        "Discovery streams refused before anything was registered or sent: no client "
        "certificate, a certificate that names no workload of the trust domain, a Node of "
        "another namespace or service account than the certificate's, a node id another "
        "identity holds, a pod's certificate for another node than its pod's, or a Service "
        "whose serviceAccounts do not list the certificate's.",
        {{"reason", reason}});
    CHECK(refusals.ok()) << refusals.status().message();
    stream_refusals_[reason] = control_plane_.stats().shared_shard().Get(*refusals);
  }
  for (const bool ok : {true, false}) {
    absl::StatusOr<CounterId> reloads = control_plane_.stats().RegisterCounter(
        "meshlet_cp_policy_reloads_total",
        "Loads of the whole policy from the store, by result: one at start, more only when "
        "that failed (retried; sidecars keep the last policy meanwhile). Changes are applied "
        "one at a time (meshlet_cp_policy_changes_applied_total).",
        {{"result", ok ? "ok" : "failed"}});
    CHECK(reloads.ok()) << reloads.status().message();
    (ok ? policy_reloads_ok_ : policy_reloads_failed_) =
        control_plane_.stats().shared_shard().Get(*reloads);
  }
}

XdsService::~XdsService() {
  if (live_policy_ != nullptr) control_plane_.api().SetLivePolicy(nullptr);
  live_policy_.reset();
  reload_retry_timer_.reset();
  registry_watch_.reset();
  if (tap_ != nullptr) control_plane_.api().SetTapHandler(nullptr);
  tap_.reset();
  if (ads_ != nullptr) {
    control_plane_.api().SetProxyStatusProvider(nullptr);
    ads_->SetObserver(nullptr);
    ads_->Stop();
  }
  grpc_server_.reset();
  ads_.reset();
}

absl::StatusOr<std::shared_ptr<const tls::TlsContext>> XdsService::ServerContext(
    tls::TlsContextConfig certificate, const std::string& trust_bundle_pem) {
  if (!trust_bundle_pem.empty()) {
    certificate.trust_bundle_pem = trust_bundle_pem;
    certificate.client_certificate = tls::ClientCertificateMode::kRequest;
  }
  return tls::TlsContext::CreateServer(certificate);
}

void XdsService::Publish(std::shared_ptr<const tls::TlsContext> context) {
  if (tls_provider_ == nullptr) {
    tls_provider_ = std::make_shared<tls::TlsContextProvider>(std::move(context));
  } else {
    tls_provider_->Update(std::move(context));
  }
}

absl::Status XdsService::SetServingCertificate(std::string certificate_chain_pem,
                                               std::string private_key_pem) {
  if (!options_.self_issued()) {
    return absl::FailedPreconditionError(
        "the discovery port's certificate comes from --xds-tls-cert (or it is plaintext)");
  }
  tls::TlsContextConfig config =
      ServerTlsConfig(std::move(certificate_chain_pem), std::move(private_key_pem));
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      ServerContext(config, options_.translate.trust_bundle_pem);
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("discovery port TLS with the new certificate: ", context.status().message()));
  }
  tls_config_ = std::move(config);
  Publish(*std::move(context));
  return absl::OkStatus();
}

absl::Status XdsService::Start() {
  http::grpc::ServerOptions grpc_options;
  // A sidecar whose host vanished or whose process hangs never closes its connection: PINGs
  // find it, the connection closes, and the registry deregisters it after its grace period.
  grpc_options.http2.keepalive_interval = options_.keepalive_interval;
  grpc_options.http2.keepalive_timeout = options_.keepalive_timeout;
  // Clients that connect and never get going, or hold a connection without calls.
  grpc_options.handshake_timeout = options_.handshake_timeout;
  grpc_options.max_connection_idle = options_.idle_timeout;
  grpc_options.timeouts = control_plane_.HttpServerOptionsFor("xds").timeouts;
  // What the ADS server may send a sidecar that reads large messages (it checks each stream's own
  // limit before sending).
  grpc_options.max_send_message_size =
      std::max(options_.ads.max_message_bytes, options_.ads.max_large_message_bytes);
  if (!options_.tls_cert_file.empty()) {
    absl::StatusOr<tls::TlsContextConfig> config =
        ServerTlsConfigFromFiles(options_.tls_cert_file, options_.tls_key_file);
    if (!config.ok()) return config.status();
    tls_config_ = *std::move(config);
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        ServerContext(tls_config_, options_.translate.trust_bundle_pem);
    if (!context.ok()) return context.status();
    Publish(*std::move(context));
  } else if (options_.self_issued() && tls_provider_ == nullptr) {
    return absl::FailedPreconditionError(
        "the discovery port has no certificate: give --xds-tls-cert/--xds-tls-key, or the "
        "certificate from the control plane's CA before the port starts");
  }
  if (tls_provider_ != nullptr) {
    grpc_options.transport_factory = tls::TlsTransport::Factory(tls_provider_);
  }
  absl::StatusOr<net::Address> address = net::Address::Parse(options_.address);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--xds-address \"", options_.address, "\": ", address.status().message()));
  }
  event::Loop& loop = control_plane_.loop();
  grpc_server_ = std::make_unique<http::grpc::Server>(loop, grpc_options);
  ads_ = std::make_unique<AdsServer>(
      loop, control_plane_.stats(),
      [this](const GenerateRequest& request) { return Generate(request); }, options_.ads);
  ads_->SetObserver(this);
  ads_->SetStreamAuthorizer([this](const http::grpc::ServerCall& call, const xds::Node& node) {
    return AuthorizeStream(call, node);
  });
  if (absl::Status status = ads_->Register(*grpc_server_); !status.ok()) return status;
  if (absl::Status status = grpc_server_->Start(*address); !status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("xDS address ", options_.address, ": ", status.message()));
  }
  // The policy as it stands now (start-up may wait for the store); after this, each change is
  // applied to it as the store's watch reports it, and pushed from the loop.
  live_policy_ = std::make_shared<policy::LivePolicy>(
      control_plane_.store(), &control_plane_.stats(), policy::LivePolicyOptions{},
      [&loop, posted = change_posted_, alive = std::weak_ptr<bool>(alive_), this] {
        // The writer's thread (the file store) or the store's (etcd).
        if (posted->exchange(true)) return;
        loop.Post([this, alive] {
          if (!alive.expired()) OnPolicyChanged();
        });
      });
  reload_retry_timer_ = std::make_unique<event::Timer>(loop, [this] { ReloadPolicy(); });
  if (absl::Status loaded = live_policy_->Load(); loaded.ok()) {
    policy_reloads_ok_.Inc();
    policy_ = live_policy_->Current();
  } else {
    LOG(WARN) << "xds: loading the policy: " << loaded.message() << "; retrying";
    ReloadPolicy();
  }
  control_plane_.api().SetLivePolicy(live_policy_);
  registry_watch_ = control_plane_.registry().Watch([this](uint64_t) { ads_->NotifyChanged(); });
  control_plane_.api().SetProxyStatusProvider(this);
  tap_ = std::make_unique<TapService>(loop, control_plane_.clock(), *ads_, options_.tap,
                                      control_plane_.stats().shared_shard());
  control_plane_.api().SetTapHandler(
      [this](const http::ServerRequest& request, const access::Principal* caller,
             http::Responder respond) { tap_->Handle(request, caller, std::move(respond)); });
  control_plane_.OnShutdown([this] {
    LOG(INFO) << "xds: GOAWAY to " << ads_->connected_proxies() << " sidecar streams";
    grpc_server_->Shutdown(options_.shutdown_grace);
  });
  LOG(INFO) << "xds: ADS on " << grpc_server_->address().ToString()
            << (options_.plaintext       ? " (plaintext h2c)"
                : options_.self_issued() ? " (TLS, certificate from the control plane's CA)"
                                         : " (TLS, certificate from --xds-tls-cert)");
  if (options_.plaintext) {
    LOG(WARN) << "INSECURE: --xds-plaintext: the discovery port authenticates no one. Any client "
                 "that reaches "
              << grpc_server_->address().ToString()
              << " can read any workload's configuration, register as any workload and report "
                 "any figures. Use it for local tests only.";
  }
  return absl::OkStatus();
}

absl::Status XdsService::RefuseStream(const http::grpc::ServerCall& call, const xds::Node& node,
                                      absl::string_view reason, absl::Status status) {
  auto counter = stream_refusals_.find(reason);
  if (counter != stream_refusals_.end()) counter->second.Inc();
  LOG_EVERY_N_SEC(WARN, 1) << "xds: refused a stream for node " << node.id() << " from "
                           << call.peer_address().ToString() << " (" << reason
                           << "): " << status.message();
  return status;
}

absl::StatusOr<StreamGrant> XdsService::AuthorizeStream(const http::grpc::ServerCall& call,
                                                        const xds::Node& node) {
  if (options_.plaintext) return StreamGrant{};
  absl::StatusOr<identity::Caller> caller =
      identity::AuthenticateCaller(call.peer(), options_.trust_domain, absl::Now());
  if (!caller.ok()) {
    return RefuseStream(call, node, identity::CallerRefusalReason(caller.status()),
                        caller.status());
  }
  const identity::WorkloadIdentity& proved = caller->identity;
  const registry::Workload claimed = registry::WorkloadFromNode(node);
  for (const auto& [what, reason, claim, proof] :
       {std::tuple{"namespace", "namespace_mismatch", &claimed.namespace_, &proved.namespace_},
        std::tuple{"service account", "service_account_mismatch", &claimed.service_account,
                   &proved.service_account}}) {
    if (*claim != *proof) {
      return RefuseStream(call, node, reason,
                          absl::PermissionDeniedError(
                              absl::StrCat("node ", node.id(), " claims ", what, " \"", *claim,
                                           "\" but the client certificate is ", caller->spiffe_id,
                                           ": a sidecar may only speak for its own identity")));
    }
  }
  // A pod's certificate speaks for that pod's node only (injection names it <pod>.<namespace>).
  if (std::optional<std::string> pod_node = identity::PodNodeId(*caller);
      pod_node.has_value() && node.id() != *pod_node) {
    return RefuseStream(call, node, "not_its_pod",
                        absl::PermissionDeniedError(absl::StrCat(
                            "the client certificate was issued to the pod whose node id is ",
                            *pod_node, ", not ", node.id())));
  }
  // A Service that names the service accounts of its members admits no other under its name.
  if (policy_ != nullptr && !claimed.service.empty()) {
    for (const auto& service : policy_->services) {
      const std::string& ns =
          service.metadata().namespace_().empty() ? "default" : service.metadata().namespace_();
      if (ns != claimed.namespace_ || service.metadata().name() != claimed.service ||
          service.spec().service_accounts().empty()) {
        continue;
      }
      const auto& accounts = service.spec().service_accounts();
      if (std::find(accounts.begin(), accounts.end(), proved.service_account) == accounts.end()) {
        return RefuseStream(
            call, node, "service_not_allowed",
            absl::PermissionDeniedError(absl::StrCat(
                "node ", node.id(), " claims Service ", ns, "/", claimed.service, ", whose ",
                "spec.serviceAccounts does not list ", proved.service_account)));
      }
    }
  }
  // A node id is held by the identity that registered it until its registration ends.
  std::shared_ptr<const registry::RegistrySnapshot> registry = control_plane_.registry().Snapshot();
  if (const registry::Workload* held = registry->Find(node.id());
      held != nullptr &&
      (held->namespace_ != proved.namespace_ || held->service_account != proved.service_account)) {
    return RefuseStream(
        call, node, "node_id_taken",
        absl::PermissionDeniedError(absl::StrCat(
            "node id ", node.id(), " is registered to another identity (ns/", held->namespace_,
            "/sa/", held->service_account, "), not ", caller->spiffe_id)));
  }
  return StreamGrant{.identity = caller->spiffe_id, .expires = caller->not_after};
}

absl::Status XdsService::SetTrustBundle(std::string trust_bundle_pem) {
  if (tls_provider_ != nullptr) {
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        ServerContext(tls_config_, trust_bundle_pem);
    if (!context.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("discovery port TLS with the trust bundle: ", context.status().message()));
    }
    Publish(*std::move(context));
  }
  options_.translate.trust_bundle_pem = std::move(trust_bundle_pem);
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
  return absl::OkStatus();
}

void XdsService::SetCertificateRenewal(std::string signer, uint32_t round,
                                       uint32_t window_seconds) {
  translate::TranslateOptions& t = options_.translate;
  if (t.renewal_signer == signer && t.renewal_round == round &&
      t.renewal_window_seconds == window_seconds) {
    return;
  }
  t.renewal_signer = std::move(signer);
  t.renewal_round = round;
  t.renewal_window_seconds = window_seconds;
  resources_.SetOptions(t);
  if (ads_ != nullptr) ads_->NotifyChanged();
}

void XdsService::SetFederatedBundles(std::map<std::string, std::string> bundles) {
  if (options_.translate.federated_bundles == bundles) return;
  options_.translate.federated_bundles = std::move(bundles);
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
}

void XdsService::SetJwks(std::map<std::string, std::string> jwks) {
  if (options_.translate.jwks == jwks) return;
  options_.translate.jwks = std::move(jwks);
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
}

void XdsService::SetGatewayCertificates(
    std::optional<translate::GatewayCertificates> certificates) {
  if (options_.translate.gateway_certificates == certificates) return;
  options_.translate.gateway_certificates = std::move(certificates);
  control_plane_.api().SetGatewayEnvironment(translate::GatewayEnvironmentOf(options_.translate));
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
}

void XdsService::SetBackendCaBundles(std::optional<translate::BackendCaBundles> bundles) {
  if (options_.translate.backend_ca_bundles == bundles) return;
  options_.translate.backend_ca_bundles = std::move(bundles);
  control_plane_.api().SetGatewayEnvironment(translate::GatewayEnvironmentOf(options_.translate));
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
}

void XdsService::SetNamespaceLabels(
    std::map<std::string, std::map<std::string, std::string>> labels) {
  if (options_.translate.namespace_labels == labels) return;
  options_.translate.namespace_labels = std::move(labels);
  control_plane_.api().SetGatewayEnvironment(translate::GatewayEnvironmentOf(options_.translate));
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
}

void XdsService::ReloadPolicy() {
  if (reload_running_) return;
  reload_running_ = true;
  reload_retry_timer_->Disable();
  std::shared_ptr<policy::LivePolicy> live = live_policy_;
  const bool queued = control_plane_.store_worker().Run<absl::Status>(
      [live] { return live->Load(); },
      [this, alive = std::weak_ptr<bool>(alive_)](absl::Status loaded) {
        if (!alive.expired()) OnPolicyLoaded(std::move(loaded));
      });
  if (!queued) {
    OnPolicyLoaded(absl::UnavailableError("the store worker's queue is full"));
  }
}

void XdsService::OnPolicyLoaded(absl::Status loaded) {
  reload_running_ = false;
  if (!loaded.ok()) {
    policy_reloads_failed_.Inc();
    // Keep pushing what was loaded last; try again with backoff.
    reload_backoff_ = std::clamp<Duration>(reload_backoff_ * 2, std::chrono::milliseconds(200),
                                           std::chrono::seconds(5));
    LOG_EVERY_N_SEC(WARN, 5) << "xds: loading the policy: " << loaded.message()
                             << "; sidecars keep the last one, retrying";
    reload_retry_timer_->Enable(reload_backoff_);
    return;
  }
  policy_reloads_ok_.Inc();
  reload_backoff_ = Duration::zero();
  OnPolicyChanged();
}

void XdsService::OnPolicyChanged() {
  change_posted_->store(false);
  std::shared_ptr<const policy::PolicySnapshot> current = live_policy_->Current();
  if (current == nullptr || current == policy_) return;
  policy_ = std::move(current);
  ads_->NotifyChanged();
  for (const PolicyListener& listener : policy_listeners_) listener(policy_);
}

void XdsService::AddPolicyListener(PolicyListener listener) {
  if (policy_ != nullptr) listener(policy_);
  policy_listeners_.push_back(std::move(listener));
}

absl::StatusOr<NodeResourceSet> XdsService::Generate(const GenerateRequest& request) {
  if (policy_ == nullptr) {
    return absl::UnavailableError("the policy is not loaded from the store yet");
  }
  std::shared_ptr<const registry::RegistrySnapshot> registry = control_plane_.registry().Snapshot();
  if (registry->kubernetes_pending) {
    // Configuration without the cluster's Services would withdraw them from the sidecar; it
    // keeps what it has until discovery has listed them (the registry's change then pushes).
    return absl::UnavailableError(
        "waiting for Kubernetes discovery's first list of Services, EndpointSlices and Pods");
  }
  if (gateway_certificates_expected_ && !options_.translate.gateway_certificates.has_value() &&
      request.node.labels().contains(std::string(translate::kGatewayLabel))) {
    // The same for a gateway proxy's HTTPS listeners and the Secrets they serve.
    return absl::UnavailableError(
        "waiting for the first read of the Gateways' certificate Secrets");
  }
  const uint64_t oversized = resources_.stats().oversized_service_routes;
  NodeResourceSet out = resources_.Generate(policy_, std::move(registry), request);
  oversized_service_routes_.Inc(resources_.stats().oversized_service_routes - oversized);
  return out;
}

void XdsService::OnProxyConnected(const xds::Node& node) {
  if (!control_plane_.registry().Connect(registry::WorkloadFromNode(node))) {
    LOG_EVERY_N_SEC(WARN, 1) << "xds: registry refused " << node.id() << " (full?)";
  }
  const std::vector<std::string> lacks =
      xds::CapabilitySet::All().Minus(xds::CapabilitiesOf(node)).Names();
  if (xds::CapabilitiesAssumed(node)) {
    nodes_unversioned_.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "xds: " << node.id() << " lists no capabilities and its "
                             << "sidecar_version \"" << node.sidecar_version()
                             << "\" names no meshlet release: it is sent what release "
                             << xds::kOldestSupportedRelease << " reads (docs/upgrades.md)";
  } else if (!lacks.empty()) {
    LOG(INFO) << "xds: " << node.id() << " runs \"" << node.sidecar_version() << "\", which lacks "
              << absl::StrJoin(lacks, ", ")
              << ": its configuration goes in the older forms (docs/upgrades.md)";
  }
}

void XdsService::OnProxyDisconnected(const std::string& node_id) {
  control_plane_.registry().Disconnect(node_id);
}

void XdsService::OnProxyActivity(const std::string& node_id) {
  control_plane_.registry().Heartbeat(node_id);
}

void XdsService::OnProxyReadiness(const std::string& node_id, bool ready,
                                  const std::string& reason) {
  using ReadyChange = registry::Registry::ReadyChange;
  switch (control_plane_.registry().SetReady(node_id, ready)) {
    case ReadyChange::kChanged:
      if (ready) {
        LOG(INFO) << "workload " << node_id << " ready";
      } else {
        LOG(INFO) << "workload " << node_id
                  << " not ready: " << (reason.empty() ? "no reason given" : reason);
      }
      break;
    case ReadyChange::kUnchanged:
      break;
    case ReadyChange::kUnknownWorkload:
      readiness_unregistered_.Inc();
      LOG_EVERY_N_SEC(WARN, 1) << "xds: readiness report from " << node_id
                               << " ignored: the registry does not hold it";
      break;
  }
}

std::string XdsService::ProxiesJson() {
  std::string out = "{\"items\":[";
  bool first = true;
  for (const ProxyStatus& proxy : ads_->ProxyStatuses()) {
    if (!first) out += ",";
    first = false;
    out += "{\"id\":";
    AppendJsonString(&out, proxy.id);
    out += ",\"service\":";
    AppendJsonString(&out, proxy.service);
    out += ",\"namespace\":";
    AppendJsonString(&out, proxy.namespace_);
    out += ",\"connectedSince\":";
    AppendJsonString(
        &out, absl::FormatTime(absl::RFC3339_sec, proxy.connected_since, absl::UTCTimeZone()));
    out += ",\"sidecarVersion\":";
    AppendJsonString(&out, proxy.sidecar_version);
    out += ",\"revision\":";
    AppendJsonString(&out, proxy.revision.empty() ? "default" : proxy.revision);
    // Capabilities its sidecar lacks: what it is sent in an older form (docs/upgrades.md).
    out += ",\"lacks\":";
    AppendJsonStringArray(&out, proxy.lacks);
    out += ",\"mode\":";
    AppendJsonString(&out, proxy.mode);
    out += ",\"peer\":";
    AppendJsonString(&out, proxy.peer);
    if (!proxy.identity.empty()) {
      out += ",\"identity\":";
      AppendJsonString(&out, proxy.identity);
    }
    // Why its sidecar said it is not ready (`meshctl check` lists those whose capture is not
    // in effect).
    if (!proxy.not_ready_reason.empty()) {
      out += ",\"notReady\":";
      AppendJsonString(&out, proxy.not_ready_reason);
    }
    // Its lookup keys (ADR 0086): held, and as last answered.
    AppendOnDemandJson(&out, proxy.on_demand);
    out += ",\"types\":{";
    bool first_type = true;
    for (const TypeStatus& type : proxy.types) {
      if (!type.subscribed) continue;
      if (!first_type) out += ",";
      first_type = false;
      AppendJsonString(&out, type.type_url);
      out += ":{\"state\":";
      AppendJsonString(&out, type.state);
      out += ",\"sent\":";
      AppendJsonString(&out, type.sent_version);
      out += ",\"acked\":";
      AppendJsonString(&out, type.acked_version);
      out += ",\"nack\":";
      // The NACK text while the latest answer is a NACK; the last one is kept in lastNack.
      AppendJsonString(&out,
                       type.state == "NACKED" && type.last_nack ? type.last_nack->message : "");
      if (type.last_nack) {
        out += ",\"lastNack\":{\"version\":";
        AppendJsonString(&out, type.last_nack->version);
        out += ",\"message\":";
        AppendJsonString(&out, type.last_nack->message);
        out += "}";
      }
      out += "}";
    }
    out += "}}";
  }
  out += "]}";
  return out;
}

absl::StatusOr<std::string> XdsService::ProxyConfigJson(absl::string_view node_id,
                                                        absl::Span<const std::string> lookups) {
  std::optional<std::string> json = ads_->ProxyConfigJson(node_id, lookups);
  if (!json) return absl::NotFoundError(absl::StrCat("no sidecar \"", node_id, "\" is connected"));
  return *json;
}

absl::StatusOr<std::string> XdsService::RequestSidecarConfig(absl::string_view node_id) {
  return ads_->RequestConfigDump(node_id);
}

}  // namespace meshlet::controlplane::ads
