// Server's start-up steps that reach the control plane (server.h): the workload certificate from
// the CA (and its renewals applied to every TLS context), the TLS settings of the control-plane
// connections, the xDS client, span export and the golden-metrics report. Init() in server.cc runs
// them in order; everything here runs on the main loop thread.

#include <unistd.h>

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_transport.h"
#include "sidecar/admin/admin_json.h"
#include "sidecar/config/bootstrap.h"
#include "sidecar/config/translate.h"
#include "sidecar/route/usage_cell.h"
#include "sidecar/server/server.h"
#include "xds/protocol.h"

namespace meshlet::sidecar::server {

absl::Status Server::InitWorkloadCertificate(const config::BootstrapConfig& bootstrap) {
  // LoadBootstrap checked that the node has a namespace and service account, and that there is
  // a CA address.
  const xds::Node& node = bootstrap.node;
  absl::StatusOr<tls::SpiffeId> identity =
      tls::SpiffeId::Parse(absl::StrCat("spiffe://", options_.trust_domain, "/ns/",
                                        node.namespace_(), "/sa/", node.service_account()));
  if (!identity.ok()) return Annotate(identity.status(), "workload identity");
  const std::string& address = bootstrap.ca.address;
  identity::CaClientOptions ca;
  ASSIGN_OR_RETURN(ca.server_addresses, config::ResolveHostPorts(address));
  ca.authority = bootstrap.ca.authority;
  if (options_.ca_plaintext) {
    if (bootstrap.has_xds() && !options_.xds_plaintext) {
      return absl::InvalidArgumentError(
          "--ca-plaintext: the xDS channel uses TLS, so the CA channel must too");
    }
  } else {
    if (bootstrap.xds.ca_file.empty()) {
      return absl::InvalidArgumentError(
          "the CA channel needs TLS settings: --xds-ca FILE (or xds.ca_file), or "
          "--ca-plaintext=true for a local control plane without TLS");
    }
    absl::StatusOr<net::TransportFactory> transport =
        config::XdsTransportFromCaFile(bootstrap.xds.ca_file, options_.xds_server_identity);
    if (!transport.ok()) return Annotate(transport.status(), "CA channel");
    ca.transport_factory = *std::move(transport);
    absl::StatusOr<tls::TlsContextConfig> tls_config =
        config::XdsTlsConfigFromCaFile(bootstrap.xds.ca_file, options_.xds_server_identity);
    if (!tls_config.ok()) return Annotate(tls_config.status(), "CA channel");
    ca.tls_config = *std::move(tls_config);
  }
  if (!options_.join_token_file.empty()) {
    absl::StatusOr<std::string> token = tls::ReadSmallFile(options_.join_token_file);
    if (!token.ok()) return Annotate(token.status(), "--join-token-file");
    ca.join_token = std::string(absl::StripAsciiWhitespace(*token));
    if (ca.join_token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--join-token-file ", options_.join_token_file, ": the file is empty"));
    }
  }
  ca.kubernetes_token_file = options_.kubernetes_token_file;
  ca_signer_ = std::make_unique<identity::GrpcCertificateSigner>(loop_, std::move(ca));

  identity::CertificateManagerOptions manager_options;
  // Zero asks for the CA's default lifetime.
  manager_options.ttl = absl::FromChrono(options_.cert_ttl);
  certificate_manager_ = std::make_unique<identity::CertificateManager>(
      loop_, *ca_signer_, *identity, manager_options,
      [this](const identity::WorkloadCertificate& certificate) {
        OnWorkloadCertificate(certificate);
      },
      &stats_);
  if (hand_over_client_ != nullptr && hand_over_client_->handed().certificate.has_value()) {
    // The predecessor's: no CA round trip, and the CA need not be reachable now.
    absl::Status taken =
        certificate_manager_->StartWith(*std::move(hand_over_client_->handed().certificate));
    hand_over_client_->handed().certificate.reset();
    if (taken.ok()) return absl::OkStatus();
    LOG(WARN) << "hand-over: the workload certificate handed over is not usable ("
              << taken.message() << "); asking the CA";
  }
  certificate_manager_->Start();
  // Listeners and clusters that present the workload certificate cannot be built without it, so
  // start-up waits for it (retries with backoff run meanwhile).
  // A SIGTERM meanwhile ends the wait (OnSignal).
  const bool got = loop_.RunUntil(
      [this] { return certificate_manager_->current() != nullptr || stopped_before_start_; },
      options_.ca_startup_timeout);
  if (got && !stopped_before_start_) return absl::OkStatus();
  const std::string error = certificate_manager_->last_error();
  certificate_manager_.reset();
  ca_signer_.reset();
  if (stopped_before_start_) {
    return absl::CancelledError("stopped by a signal while waiting for the workload certificate");
  }
  return absl::UnavailableError(absl::StrCat(
      "no workload certificate for ", identity->ToString(), " from the CA at ", address, " within ",
      absl::FormatDuration(absl::FromChrono(options_.ca_startup_timeout)),
      error.empty() ? "" : ": ", error));
}

void Server::OnWorkloadCertificate(const identity::WorkloadCertificate& certificate) {
  // Renewals authenticate with this certificate from now on (ADR 0016).
  if (ca_signer_ != nullptr) {
    ca_signer_->SetClientCertificate(certificate.certificate_chain_pem, certificate.private_key_pem,
                                     certificate.not_after);
  }
  tls_contexts_.SetWorkloadCertificate(
      WorkloadTlsMaterial{.certificate_chain_pem = certificate.certificate_chain_pem,
                          .private_key_pem = certificate.private_key_pem,
                          .trust_bundle_pem = certificate.trust_bundle_pem,
                          .trust_domain = options_.trust_domain});
  if (control_plane_tls_ != nullptr) {
    if (absl::Status status = UpdateControlPlaneTls(); !status.ok()) {
      certificate_apply_failures_.Inc();
      LOG(ERROR) << "workload certificate " << certificate.serial_hex
                 << " not applied to the control-plane connections: " << status.message();
    }
  }
  UpdateCertificateFacts();
  // At start-up there is no snapshot yet: the first one is built with this certificate.
  if (snapshot_ == nullptr) return;
  // Rebuilds exactly the contexts whose inputs changed: those using the workload certificate.
  absl::Status status = tls_contexts_.Apply(*snapshot_);
  if (!status.ok()) {
    certificate_apply_failures_.Inc();
    certificate_apply_error_ = std::string(status.message());
    LOG(ERROR) << "workload certificate " << certificate.serial_hex
               << " not applied; connections keep using the previous one: " << status.message();
    return;
  }
  certificate_apply_error_.clear();
}

void Server::UpdateCertificateFacts() {
  const identity::WorkloadCertificate* current =
      certificate_manager_ != nullptr ? certificate_manager_->current() : nullptr;
  if (current == nullptr) return;
  // The mesh's trust bundle as the control plane pushes it, else the one the CA answered with.
  const config::SecretConfig* pushed = nullptr;
  if (snapshot_ != nullptr) {
    auto it = snapshot_->secrets.find(absl::string_view(xds::kMeshTrustBundleSecret));
    if (it != snapshot_->secrets.end() && !it->second.trust_bundle_pem.empty())
      pushed = &it->second;
  }
  const std::string& bundle =
      pushed != nullptr ? pushed->trust_bundle_pem : current->trust_bundle_pem;
  // Only with the control plane's identity checked: without --xds-server-identity any
  // certificate chaining to a trusted root passes, and a mesh root would let a workload pass.
  if (pushed != nullptr && !options_.xds_server_identity.empty() &&
      pushed->trust_bundle_pem != pushed_roots_pem_) {
    pushed_roots_pem_ = pushed->trust_bundle_pem;
    if (ca_signer_ != nullptr) ca_signer_->SetPushedRoots(pushed_roots_pem_);
    if (control_plane_tls_ != nullptr) {
      if (absl::Status status = UpdateControlPlaneTls(); !status.ok()) {
        LOG(ERROR) << "the pushed trust bundle not applied to the control-plane connections: "
                   << status.message();
      }
    }
  }
  if (bundle != facts_bundle_pem_ || current->certificate_chain_pem != facts_chain_pem_) {
    facts_bundle_pem_ = bundle;
    facts_chain_pem_ = current->certificate_chain_pem;
    trust_bundle_roots_.clear();
    certificate_issuer_.clear();
    absl::StatusOr<tls::CertificateChain> roots = tls::ParsePemCertificates(bundle);
    absl::StatusOr<tls::CertificateChain> chain =
        tls::ParsePemCertificates(current->certificate_chain_pem);
    if (roots.ok()) {
      for (const auto& root : *roots) trust_bundle_roots_.push_back(tls::Sha256Fingerprint(*root));
    }
    if (chain.ok() && !chain->empty()) {
      // The issuer is the chain's next certificate, or a root when the CA signs with its root.
      tls::CertificateChain candidates;
      for (size_t i = 1; i < chain->size(); ++i) candidates.push_back(bssl::UpRef((*chain)[i]));
      if (roots.ok()) {
        for (const auto& root : *roots) candidates.push_back(bssl::UpRef(root));
      }
      certificate_issuer_ = tls::IssuerFingerprint(*chain->front(), candidates);
    }
  }
  if (pushed == nullptr || pushed->renewal_signer.empty()) return;
  const std::string round = absl::StrCat(pushed->renewal_signer, " ", pushed->renewal_round);
  if (round == renewal_round_seen_) return;
  renewal_round_seen_ = round;
  if (certificate_issuer_ == pushed->renewal_signer) return;
  const absl::Duration delay =
      absl::Milliseconds(RealRandom::ThreadLocal().Uniform(static_cast<uint64_t>(
          std::max<int64_t>(1, absl::ToInt64Milliseconds(pushed->renewal_window)))));
  LOG(INFO) << "CA rotation: renewal round " << pushed->renewal_round << " asks for a certificate "
            << "from " << pushed->renewal_signer << " (this one is from "
            << (certificate_issuer_.empty() ? std::string("an unknown issuer")
                                            : certificate_issuer_)
            << "): renewing in " << absl::FormatDuration(delay);
  certificate_manager_->RenewEarly(delay);
}

absl::StatusOr<net::TransportFactory> Server::ControlPlaneTransport(
    const config::BootstrapConfig& bootstrap) {
  if (control_plane_tls_ == nullptr) {
    ASSIGN_OR_RETURN(
        control_plane_tls_config_,
        config::XdsTlsConfigFromCaFile(bootstrap.xds.ca_file, options_.xds_server_identity));
    RETURN_IF_ERROR(UpdateControlPlaneTls());
  }
  return tls::TlsTransport::Factory(control_plane_tls_);
}

absl::Status Server::UpdateControlPlaneTls() {
  tls::TlsContextConfig config = control_plane_tls_config_;
  // The mesh roots pushed over the xDS stream, beside --xds-ca's (GrpcCertificateSigner::
  // SetPushedRoots says why).
  if (!pushed_roots_pem_.empty())
    absl::StrAppend(&config.trust_bundle_pem, "\n", pushed_roots_pem_);
  const identity::WorkloadCertificate* current =
      certificate_manager_ != nullptr ? certificate_manager_->current() : nullptr;
  if (current != nullptr) {
    config.certificate_chain_pem = current->certificate_chain_pem;
    config.private_key_pem = current->private_key_pem;
  }
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) return Annotate(context.status(), "TLS to the control plane");
  if (control_plane_tls_ == nullptr) {
    control_plane_tls_ = std::make_shared<tls::TlsContextProvider>(*std::move(context));
  } else {
    control_plane_tls_->Update(*std::move(context));
  }
  return absl::OkStatus();
}

absl::Status Server::InitXds(const config::BootstrapConfig& bootstrap) {
  config::XdsClientOptions xds_options;
  ASSIGN_OR_RETURN(xds_options.server_addresses, config::ResolveHostPorts(bootstrap.xds.address));
  // With several replicas, the first one's name (the control plane is checked by its SPIFFE id,
  // not by this name).
  xds_options.authority = bootstrap.xds.server_name.empty()
                              ? config::FirstHostPort(bootstrap.xds.address)
                              : bootstrap.xds.server_name;
  if (!options_.xds_plaintext) {
    ASSIGN_OR_RETURN(xds_options.transport_factory, ControlPlaneTransport(bootstrap));
  }
  xds_options.node = bootstrap.node;
  if (options_.workload_identity()) {
    // Tells the control plane this sidecar can serve and originate mesh mTLS with its workload
    // certificate (which it already holds: InitWorkloadCertificate ran first).
    (*xds_options.node.mutable_labels())["meshlet.io/workload-certificate"] = "true";
  }
  // Capability on-demand is announced only on a delta stream (the client leaves it out else).
  xds_options.delta = options_.xds_delta;
  // After ApplyResources posted the snapshot that carries them.
  xds_options.on_lookup_answers = [this](std::vector<config::LookupAnswer> answers) {
    if (on_demand_ != nullptr) on_demand_->OnAnswers(std::move(answers));
  };
  xds_options.cache_dir = bootstrap.data_dir;
  xds_options.cache_write_interval = options_.xds_cache_write_interval;
  // The control plane may ask what this sidecar runs (meshctl proxy-config).
  xds_options.config_dump_json = [this] { return admin::ConfigDumpJson(*this); };
  // Live taps (tap_manager.h), once the workers run; refused before.
  xds_options.on_tap = [this](config::TapCommand command) {
    if (tap_manager_ != nullptr) {
      tap_manager_->OnCommand(command);
    } else if (!command.stop && !command.stop_all) {
      xds_client_->SendTapEvents(
          {.id = command.id, .ended = true, .error = "the sidecar is starting"});
    }
  };
  xds_client_ = std::make_unique<config::XdsClient>(
      loop_, std::move(xds_options), bootstrap.resources,
      [this](const config::ResourceSet& resources) { return ApplyResources(resources); },
      stats_.shared_shard(), RealRandom::ThreadLocal());
  if (hand_over_client_ != nullptr && !hand_over_client_->handed().configuration.empty()) {
    // What the predecessor runs, so this process serves the same from its first connection. One
    // it cannot apply (a release that reads it differently) stops the take-over: the predecessor
    // serves on.
    HandedOver& handed = hand_over_client_->handed();
    absl::Status loaded = xds_client_->LoadSavedConfiguration(
        handed.configuration, absl::StrCat("the configuration of pid ", handed.pid));
    handed.configuration.clear();
    if (!loaded.ok()) return Annotate(loaded, "hand-over");
    return absl::OkStatus();
  }
  if (absl::Status cached = xds_client_->LoadCache(); !cached.ok()) {
    if (!absl::IsNotFound(cached)) LOG(WARN) << "xds: ignoring " << cached.message();
    // No saved configuration: the static resources until the control plane answers.
    RETURN_IF_ERROR(ApplyResources(xds_client_->CurrentResources()));
  }
  return absl::OkStatus();
}

void Server::InitOnDemand() {
  config::LookupStream stream;
  if (xds_client_ != nullptr) {
    stream.can_look_up = [this] { return xds_client_->can_look_up(); };
    stream.lookup = [this](std::vector<std::string> subscribe,
                           std::vector<std::string> unsubscribe) {
      xds_client_->Lookup(std::move(subscribe), std::move(unsubscribe));
    };
    stream.resource_of = [this](const std::string& key) {
      auto it = xds_client_->lookups().find(key);
      return it == xds_client_->lookups().end() ? std::string() : it->second;
    };
  }
  // The workers touch the cells of the running snapshot's ServiceRoutes (each name keeps its
  // cell across snapshots), with the loop clock, which is the steady clock as here.
  stream.last_use = [this](const std::string& service_route) -> std::optional<MonotonicTime> {
    const route::UsageCell* cell =
        snapshot_ == nullptr ? nullptr : config::ServiceRouteUsage(*snapshot_, service_route);
    return cell == nullptr ? std::nullopt : cell->last_use();
  };
  on_demand_ = std::make_unique<config::OnDemandDiscovery>(
      loop_, RealClock::Get(),
      config::OnDemandOptions{.max_keys = options_.on_demand_max_keys,
                              .missing_ttl = options_.on_demand_missing_ttl,
                              .idle_time = options_.on_demand_idle_time},
      std::move(stream),
      [this](std::vector<config::LookupAnswer> answers) {
        DeliverLookupAnswers(std::move(answers));
      },
      [this](std::vector<std::string> keys) {
        for (auto& worker : workers_) worker->ForgetMissingLookups(keys);
      },
      stats_.shared_shard());
  ApplyOnDemandTimes();
  // Keys held from a saved or handed-over configuration are subscribed on the first stream.
  if (xds_client_ != nullptr) on_demand_->Seed(xds_client_->lookups());
}

void Server::ApplyOnDemandTimes() {
  if (on_demand_ == nullptr) return;
  // What the control plane says (MeshConfig discovery.idleTime and missingTtl, carried by the
  // outbound listener's on_demand: the first listener that has one); the flags otherwise.
  if (snapshot_ != nullptr) {
    for (const config::ListenerConfig& listener : snapshot_->listeners) {
      if (!listener.on_demand.has_value()) continue;
      on_demand_->SetTimes(listener.on_demand->idle_time, listener.on_demand->missing_ttl);
      return;
    }
  }
  on_demand_->SetTimes(options_.on_demand_idle_time, options_.on_demand_missing_ttl);
}

void Server::DeliverLookupAnswers(std::vector<config::LookupAnswer> answers) {
  if (workers_.empty()) return;
  for (size_t i = 0; i + 1 < workers_.size(); ++i) workers_[i]->OnLookupAnswers(answers);
  workers_.back()->OnLookupAnswers(std::move(answers));
}

absl::Status Server::InitTracing(const config::BootstrapConfig& bootstrap) {
  const tracing::TracingConfig& config = bootstrap.tracing;
  tracing_ = std::make_unique<tracing::TracingConfig>(config);
  if (config.protocol == tracing::ExportProtocol::kOtlpGrpc) {
    // The control plane, as the xDS client and the golden-metrics reports reach it: its replicas'
    // addresses resolved once, its TLS settings and the workload certificate (the provider is
    // thread-safe: each worker opens its own connections with it).
    ASSIGN_OR_RETURN(std::vector<net::Address> addresses,
                     config::ResolveHostPorts(config.collector_address));
    trace_collector_ =
        tracing::CollectorAddress::Resolved(config.collector_address, std::move(addresses));
    trace_channel_.authority = bootstrap.trace_channel.authority;
    if (bootstrap.trace_channel.tls) {
      ASSIGN_OR_RETURN(trace_channel_.transport, ControlPlaneTransport(bootstrap));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(trace_collector_, tracing::CollectorAddress::Create(config.collector_address));
  if (!trace_collector_->needs_resolving()) return absl::OkStatus();
  // A name that does not resolve yet (its DNS record may come later) costs the spans of the
  // meantime, not the start. Resolution runs off the main loop (a DNS server that does not answer
  // would hold it for seconds).
  auto resolve = [this] {
    trace_collector_->ResolveInBackground();
    trace_collector_resolve_->Enable(trace_collector_->Get().empty() ? kCollectorRetryInterval
                                                                     : kCollectorResolveInterval);
  };
  trace_collector_resolve_ = std::make_unique<event::Timer>(loop_, resolve);
  resolve();
  return absl::OkStatus();
}

absl::Status Server::InitMetricsReport(const config::BootstrapConfig& bootstrap) {
  const config::MetricsReportConfig& settings = bootstrap.metrics_report;
  if (settings.address.empty()) return absl::OkStatus();
  telemetry::MetricsReporterOptions report;
  ASSIGN_OR_RETURN(report.server_addresses, config::ResolveHostPorts(settings.address));
  report.authority = settings.authority;
  // With xDS over TLS, the reports use the same TLS settings; otherwise plaintext h2c.
  if (settings.xds_tls) {
    ASSIGN_OR_RETURN(report.transport_factory, ControlPlaneTransport(bootstrap));
  }
  report.interval = settings.interval;
  report.service = settings.service;
  // A static configuration may have no node id: the service and process id stand in for it.
  report.node_id = bootstrap.node.id().empty() ? absl::StrCat(report.service, "@", ::getpid())
                                               : bootstrap.node.id();
  report.namespace_ = bootstrap.node.namespace_();
  report.workload = telemetry::WorkloadOfNode(report.node_id, report.namespace_);
  report.certificate_facts = [this](metrics::v1::MetricsReport& part) {
    for (const std::string& root : trust_bundle_roots_) part.add_trust_bundle_roots(root);
    part.set_certificate_issuer(certificate_issuer_);
  };
  metrics_reporter_ =
      std::make_unique<telemetry::MetricsReporter>(loop_, stats_, std::move(report));
  return absl::OkStatus();
}

}  // namespace meshlet::sidecar::server
