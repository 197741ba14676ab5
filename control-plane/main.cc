// The control-plane binary: command line → ControlPlane (control-plane/server) → run until
// SIGTERM/SIGINT.

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/flags/flags.h"
#include "common/tls/certificate.h"
#include "control-plane/access/kubernetes_users.h"
#include "control-plane/ca/ca_service.h"
#include "control-plane/ca/serving_certificate.h"
#include "control-plane/command_line.h"
#include "control-plane/kubernetes/discovery.h"
#include "control-plane/kubernetes/namespace_labels.h"
#include "control-plane/multicluster/link_manager.h"
#include "control-plane/multicluster/link_records.h"
#include "control-plane/multicluster/multicluster_api.h"
#include "control-plane/policy/validate.h"
#include "control-plane/server/backend_ca_configmaps.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/server/gateway_secrets.h"
#include "control-plane/server/kubernetes_policy.h"
#include "control-plane/telemetry/telemetry_service.h"
#include "control-plane/translate/backend_tls.h"
#include "control-plane/webhook/webhook_service.h"
#include "control-plane/xds/xds_service.h"

namespace {

// The SHA-256 fingerprints of the roots in `pem`, " or "-separated, for the start-up log.
std::string RootFingerprints(const std::string& pem) {
  absl::StatusOr<meshlet::tls::CertificateChain> roots = meshlet::tls::ParsePemCertificates(pem);
  if (!roots.ok()) return "(unreadable trust bundle)";
  std::string out;
  for (const auto& root : *roots) {
    absl::StrAppend(&out, out.empty() ? "" : " or ", meshlet::tls::Sha256Fingerprint(*root));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using meshlet::controlplane::CommandLine;
  // A peer closing its connection while TLS writes to it must be an error on that connection,
  // not the end of the process.
  ::signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<CommandLine> command_line =
      meshlet::controlplane::ParseCommandLine(std::vector<std::string>(argv + 1, argv + argc));
  if (!command_line.ok()) {
    std::fprintf(stderr, "control-plane: %s\n",
                 std::string(command_line.status().message()).c_str());
    return meshlet::flags::kUsageExitCode;
  }
  switch (command_line->action) {
    case CommandLine::Action::kHelp:
      std::fputs(meshlet::controlplane::UsageText().c_str(), stdout);
      return 0;
    case CommandLine::Action::kVersion:
      std::printf("meshlet control-plane %s\n", meshlet::controlplane::kControlPlaneVersion);
      return 0;
    case CommandLine::Action::kRun:
      break;
  }
  meshlet::controlplane::ControlPlane control_plane(std::move(command_line->control_plane));
  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  };
  if (absl::Status status = control_plane.Init(); !status.ok()) return fail(status);
  // The CA first: it issues the discovery port's own certificate before that port opens.
  // The webhook keeps its configuration's caBundle with the same API server settings.
  command_line->ca.kubernetes.stats = &control_plane.stats();
  const meshlet::controlplane::kubernetes::KubernetesApiOptions kubernetes_api =
      command_line->ca.kubernetes;
  meshlet::controlplane::ca::CaService ca(control_plane, std::move(command_line->ca));
  if (absl::Status status = ca.Init(); !status.ok()) return fail(status);
  const bool self_issued = command_line->xds.self_issued();
  const bool plaintext = command_line->xds.plaintext;
  command_line->xds.trust_domain = ca.authority().options().trust_domain;
  command_line->xds.translate.trust_domain = ca.authority().options().trust_domain;
  meshlet::controlplane::ads::XdsService xds(control_plane, std::move(command_line->xds));
  if (!kubernetes_api.api.empty() && command_line->gateway_secrets) {
    xds.ExpectGatewayCertificates();  // read below (GatewaySecrets)
  }
  // The namespaces of the Gateways whose proxies this control plane deploys get the trust-bundle
  // ConfigMap (set below, with the deployer).
  std::function<std::vector<std::string>()> gateway_namespaces;
  command_line->webhook.trust_bundle.more_namespaces = [&gateway_namespaces] {
    return gateway_namespaces ? gateway_namespaces() : std::vector<std::string>{};
  };
  // The injection webhook serves with the same self-issued certificate as discovery.
  meshlet::controlplane::webhook::WebhookService webhook(
      control_plane, std::move(command_line->webhook),
      {.namespace_ = command_line->serving_certificate.namespace_,
       .service_account = command_line->serving_certificate.service_account,
       .trust_domain = ca.authority().options().trust_domain});
  // The collector; with etcd it shares telemetry with the other replicas over their discovery
  // ports, with this replica's discovery certificate as its client certificate.
  // Reports are authenticated as the discovery port authenticates its streams; replicas that
  // hold the control plane's own certificate know each other by it.
  command_line->telemetry.discovery_plaintext = plaintext;
  command_line->telemetry.trust_domain = ca.authority().options().trust_domain;
  if (self_issued) {
    absl::StatusOr<meshlet::tls::SpiffeId> own = meshlet::controlplane::ca::WorkloadSpiffeId(
        ca.authority().options().trust_domain, command_line->serving_certificate.namespace_,
        command_line->serving_certificate.service_account);
    if (!own.ok()) return fail(own.status());
    command_line->telemetry.peer_identity = own->ToString();
  }
  meshlet::controlplane::telemetry::TelemetryService telemetry(control_plane,
                                                               std::move(command_line->telemetry));
  // The control plane's own namespace (its leader-election Lease is there).
  const std::string own_namespace = command_line->serving_certificate.namespace_;
  std::unique_ptr<meshlet::controlplane::ca::ServingCertificate> serving_certificate;
  if (!self_issued && !plaintext) {
    // A discovery certificate from elsewhere: the other replicas' must chain to the mesh roots.
    if (absl::Status status =
            telemetry.SetPeerCredentials({.trust_bundle_pem = ca.authority().trust_bundle_pem()});
        !status.ok()) {
      return fail(status);
    }
  }
  // The API (HTTPS unless --api-plaintext) verifies client certificates against the mesh roots.
  if (absl::Status status = control_plane.SetApiTrustBundle(ca.authority().trust_bundle_pem());
      !status.ok()) {
    return fail(status);
  }
  // The CA's certificate for the control plane serves the API, and without --xds-tls-cert or
  // --xds-plaintext the discovery port and the webhook too.
  if (self_issued || control_plane.api_tls()) {
    serving_certificate = std::make_unique<meshlet::controlplane::ca::ServingCertificate>(
        control_plane.loop(), ca.authority(), control_plane.clock(), control_plane.stats(),
        std::move(command_line->serving_certificate),
        [&control_plane, &xds, &webhook, &telemetry, &ca, &serving_certificate,
         self_issued](const meshlet::controlplane::ca::ServingCredentials& credentials) {
          if (control_plane.api_tls()) {
            if (absl::Status s = control_plane.SetApiServingCertificate(
                    credentials.certificate_chain_pem, credentials.private_key_pem);
                !s.ok()) {
              return s;
            }
          }
          if (!self_issued) return absl::OkStatus();
          if (absl::Status s = telemetry.SetPeerCredentials(
                  {.certificate_chain_pem = credentials.certificate_chain_pem,
                   .private_key_pem = credentials.private_key_pem,
                   .trust_bundle_pem = ca.authority().trust_bundle_pem(),
                   .server_identity = serving_certificate->spiffe_id()});
              !s.ok()) {
            LOG(WARN) << "telemetry: " << s.message();
          }
          if (webhook.wants_serving_certificate()) {
            if (absl::Status s = webhook.SetServingCertificate(credentials.certificate_chain_pem,
                                                               credentials.private_key_pem);
                !s.ok()) {
              return s;
            }
          }
          return xds.SetServingCertificate(credentials.certificate_chain_pem,
                                           credentials.private_key_pem);
        });
    if (absl::Status status = serving_certificate->Start(); !status.ok()) return fail(status);
    if (control_plane.api_tls()) {
      LOG(INFO) << "API: HTTPS on " << control_plane.api_address().ToString()
                << " with the CA's certificate for " << serving_certificate->spiffe_id()
                << "; meshctl pins the CA with meshctl context set --ca-fingerprint "
                << RootFingerprints(ca.authority().trust_bundle_pem());
    }
  }
  // Kubernetes users on the API: their tokens and rights reviewed by the API server.
  std::unique_ptr<meshlet::controlplane::access::KubernetesApiUsers> kubernetes_users;
  if (!kubernetes_api.api.empty() && command_line->api_kubernetes_users.enabled) {
    auto created = meshlet::controlplane::access::KubernetesApiUsers::Create(
        control_plane.loop(), kubernetes_api, command_line->api_kubernetes_users,
        control_plane.clock(), control_plane.stats());
    if (!created.ok()) return fail(created.status());
    kubernetes_users = *std::move(created);
    control_plane.access_gate().SetKubernetesUsers(kubernetes_users.get());
    LOG(INFO) << "API: Kubernetes users' bearer tokens are reviewed by the API server at "
              << kubernetes_api.api
              << " (TokenReview, then SubjectAccessReview on meshes.meshlet.io)";
  }
  // Kubernetes discovery before the discovery port opens: no sidecar gets configuration that
  // lacks the cluster's Services.
  std::unique_ptr<meshlet::controlplane::kubernetes::KubernetesDiscovery> kubernetes_discovery;
  if (!kubernetes_api.api.empty() && command_line->discovery.enabled) {
    auto created = meshlet::controlplane::kubernetes::KubernetesDiscovery::Create(
        control_plane.loop(), kubernetes_api, control_plane.registry(), control_plane.stats(),
        std::move(command_line->discovery));
    if (!created.ok()) return fail(created.status());
    kubernetes_discovery = *std::move(created);
    kubernetes_discovery->Start();
  }
  // The revision tags: which revision is the default one, which namespaces a tag gives this one.
  std::unique_ptr<meshlet::controlplane::kubernetes::KubernetesApi> tags_api;
  std::unique_ptr<meshlet::controlplane::kubernetes::RevisionTags> revision_tags;
  if (!kubernetes_api.api.empty()) {
    auto api = meshlet::controlplane::kubernetes::KubernetesApi::Create(control_plane.loop(),
                                                                        kubernetes_api);
    if (!api.ok()) return fail(api.status());
    tags_api = *std::move(api);
    revision_tags = std::make_unique<meshlet::controlplane::kubernetes::RevisionTags>(
        control_plane.loop(), *tags_api, control_plane.stats(),
        meshlet::controlplane::kubernetes::RevisionTagsOptions{
            .interval = command_line->kubernetes_policy.tags_interval});
    revision_tags->Start();
  }
  // Policy kept in Kubernetes: mirrored into the store by the replica the others of its revision
  // elect, route status written back by one replica of the default revision.
  std::unique_ptr<meshlet::controlplane::KubernetesPolicy> kubernetes_policy;
  if (!kubernetes_api.api.empty() && command_line->kubernetes_policy.enabled) {
    auto created = meshlet::controlplane::KubernetesPolicy::Create(
        control_plane, kubernetes_api, own_namespace, std::move(command_line->kubernetes_policy),
        revision_tags.get());
    if (!created.ok()) return fail(created.status());
    kubernetes_policy = *std::move(created);
    if (command_line->gateway_deployments) {
      kubernetes_policy->EnableGatewayDeployments(
          {.inject = webhook.inject_options(), .address_ranges = command_line->gateway_addresses});
      gateway_namespaces = [deployer = kubernetes_policy->gateway_deployer()] {
        return deployer->namespaces();
      };
    }
    xds.AddPolicyListener(
        [policy = kubernetes_policy.get()](
            std::shared_ptr<const meshlet::controlplane::policy::PolicySnapshot> snapshot) {
          policy->SetPolicy(std::move(snapshot));
        });
    kubernetes_policy->Start();
  }
  // Each policy version the discovery server takes (and pushes) is a marker on the history's
  // charts.
  xds.AddPolicyListener(
      [&telemetry,
       &xds](std::shared_ptr<const meshlet::controlplane::policy::PolicySnapshot> snapshot) {
        telemetry.RecordConfigVersion(snapshot->revision,
                                      xds.ads() != nullptr ? xds.ads()->connected_proxies() : 0);
      });
  if (absl::Status status = xds.Start(); !status.ok()) return fail(status);
  // The CA serves on the discovery port, next to the ADS.
  if (absl::Status status = ca.Register(*xds.grpc_server()); !status.ok()) return fail(status);
  // Sidecars get the CA's roots over xDS, and may renew with their certificate on 15012.
  if (absl::Status status = xds.SetTrustBundle(ca.authority().trust_bundle_pem()); !status.ok()) {
    return fail(status);
  }
  // New signing material reloaded live (--ca-cert/--ca-key or --ca-secret changed): its roots
  // reach the discovery port, the sidecars' trust-bundle Secret and the API's client
  // verification at once, the webhook's caBundle and the meshlet-trust ConfigMaps at their next
  // check; its signer issues the control plane's own certificate from its next
  // renewal on.
  ca.AddAuthorityListener(
      [&, bundle = ca.authority().trust_bundle_pem()](
          const meshlet::controlplane::ca::CertificateAuthority& authority) mutable {
        if (serving_certificate != nullptr) serving_certificate->SetAuthority(authority);
        if (authority.trust_bundle_pem() == bundle) return;
        bundle = authority.trust_bundle_pem();
        if (absl::Status s = xds.SetTrustBundle(bundle); !s.ok())
          LOG(WARN) << "ca: " << s.message();
        if (absl::Status s = control_plane.SetApiTrustBundle(bundle); !s.ok()) {
          LOG(WARN) << "ca: " << s.message();
        }
        if (!self_issued && !plaintext) {
          if (absl::Status s = telemetry.SetPeerCredentials({.trust_bundle_pem = bundle});
              !s.ok()) {
            LOG(WARN) << "telemetry: " << s.message();
          }
        }
      });
  // A CA rotation watches what the sidecars report of their trust bundle and certificate, and in
  // step 4 asks them, through the trust-bundle Secret, to renew from the new signer.
  ca.SetObservationSource([&telemetry](absl::Time since) {
    std::vector<meshlet::controlplane::ca::SidecarObservation> out;
    for (auto& report : telemetry.CertificateReports(since)) {
      out.push_back({.node = std::move(report.node),
                     .acked_roots = std::move(report.trust_bundle_roots),
                     .leaf_issuer = std::move(report.issuer)});
    }
    return out;
  });
  ca.AddRenewalListener(
      [&xds](const std::optional<meshlet::controlplane::ca::RenewalRound>& round) {
        if (!round.has_value()) {
          xds.SetCertificateRenewal("", 0, 0);
          return;
        }
        xds.SetCertificateRenewal(round->signer, round->round,
                                  static_cast<uint32_t>(absl::ToInt64Seconds(round->window)));
      });
  // SPIFFE federation: the foreign domains' bundles reach the sidecars with the mesh's.
  std::unique_ptr<meshlet::controlplane::kubernetes::KubernetesApi> federation_api;
  std::unique_ptr<meshlet::controlplane::federation::FederationService> federation;
  if (!command_line->federation.sources.empty()) {
    if (!kubernetes_api.api.empty()) {
      auto api = meshlet::controlplane::kubernetes::KubernetesApi::Create(control_plane.loop(),
                                                                          kubernetes_api);
      if (!api.ok()) return fail(api.status());
      federation_api = *std::move(api);
    }
    federation = std::make_unique<meshlet::controlplane::federation::FederationService>(
        control_plane.loop(), control_plane.stats(), federation_api.get(),
        command_line->federation);
    if (absl::Status status =
            federation->Start([&xds](const std::map<std::string, std::string>& bundles) {
              xds.SetFederatedBundles(bundles);
            });
        !status.ok()) {
      return fail(status);
    }
  }
  // RequestAuthentication jwksUris: fetched here, sent inline (ADR 0098).
  meshlet::controlplane::authn::JwksFetcher jwks(control_plane.loop(), control_plane.stats(),
                                                 command_line->jwks);
  jwks.Start([&xds](const std::map<std::string, std::string>& keys) { xds.SetJwks(keys); });
  control_plane.api().SetJwksStatus([&jwks] { return jwks.StatusJson(); });
  xds.AddPolicyListener(
      [&jwks](std::shared_ptr<const meshlet::controlplane::policy::PolicySnapshot> policy) {
        std::set<std::string> uris;
        for (const meshlet::policy::RequestAuthentication& ra : policy->request_authentications) {
          for (const meshlet::policy::JwtRule& rule : ra.spec().jwt_rules()) {
            const std::string source = meshlet::controlplane::policy::JwksSourceOf(rule);
            if (!source.empty()) uris.insert(source);
          }
        }
        jwks.SetUris(uris);
      });
  // Gateways' certificateRefs: the Secrets they name, watched, served to the gateway proxies.
  std::unique_ptr<meshlet::controlplane::kubernetes::KubernetesApi> secrets_api;
  std::unique_ptr<meshlet::controlplane::GatewaySecrets> gateway_secrets;
  if (!kubernetes_api.api.empty() && command_line->gateway_secrets) {
    auto api = meshlet::controlplane::kubernetes::KubernetesApi::Create(control_plane.loop(),
                                                                        kubernetes_api);
    if (!api.ok()) return fail(api.status());
    secrets_api = *std::move(api);
    gateway_secrets = std::make_unique<meshlet::controlplane::GatewaySecrets>(
        control_plane.loop(), *secrets_api, control_plane.stats(),
        meshlet::controlplane::kubernetes::ReflectorOptions{},
        [&xds, policy = kubernetes_policy.get()](
            const meshlet::controlplane::translate::GatewayCertificates& certificates) {
          xds.SetGatewayCertificates(certificates);
          if (policy != nullptr) {
            policy->SetGatewaySecrets(
                meshlet::controlplane::translate::GatewaySecretsOf(certificates));
          }
        });
    xds.AddPolicyListener(
        [secrets = gateway_secrets.get()](
            std::shared_ptr<const meshlet::controlplane::policy::PolicySnapshot> policy) {
          secrets->SetReferences(meshlet::controlplane::translate::GatewaySecretRefs(*policy));
        });
  }
  // BackendTLSPolicies' caCertificateRefs: the ConfigMaps they name, watched; their CA
  // certificates go to the proxies inline.
  std::unique_ptr<meshlet::controlplane::kubernetes::KubernetesApi> configmaps_api;
  std::unique_ptr<meshlet::controlplane::BackendCaConfigMaps> backend_ca;
  if (!kubernetes_api.api.empty() && command_line->backend_tls_configmaps) {
    auto api = meshlet::controlplane::kubernetes::KubernetesApi::Create(control_plane.loop(),
                                                                        kubernetes_api);
    if (!api.ok()) return fail(api.status());
    configmaps_api = *std::move(api);
    std::optional<meshlet::controlplane::translate::BackendCaBundle> system_ca;
    if (!command_line->system_ca_file.empty()) {
      system_ca = meshlet::controlplane::SystemCaBundle(command_line->system_ca_file);
      if (!system_ca->error.empty()) {
        LOG(WARN) << "backend TLS: " << system_ca->error
                  << "; BackendTLSPolicies with wellKnownCACertificates: System are not "
                     "Accepted and their backends are not reached";
      }
    }
    backend_ca = std::make_unique<meshlet::controlplane::BackendCaConfigMaps>(
        control_plane.loop(), *configmaps_api, control_plane.stats(),
        meshlet::controlplane::kubernetes::ReflectorOptions{},
        [&xds, policy = kubernetes_policy.get()](
            const meshlet::controlplane::translate::BackendCaBundles& bundles) {
          xds.SetBackendCaBundles(bundles);
          if (policy != nullptr) policy->SetBackendCaBundles(bundles);
        },
        system_ca);
    xds.AddPolicyListener(
        [configmaps = backend_ca.get()](
            std::shared_ptr<const meshlet::controlplane::policy::PolicySnapshot> policy) {
          configmaps->SetReferences(
              meshlet::controlplane::translate::BackendCaConfigMapRefs(*policy));
        });
  }
  if (backend_ca == nullptr && !command_line->system_ca_file.empty()) {
    // Without ConfigMaps to read, the system's CA certificates still verify what asks for
    // them (ExternalServices' TLS origination without CA certificates of its own).
    meshlet::controlplane::translate::BackendCaBundle system_ca =
        meshlet::controlplane::SystemCaBundle(command_line->system_ca_file);
    if (!system_ca.error.empty()) {
      LOG(INFO) << "system CA certificates unavailable (" << system_ca.error
                << "): ExternalServices originating TLS without CA certificates of their own "
                   "answer 503";
    }
    xds.SetBackendCaBundles(meshlet::controlplane::translate::BackendCaBundles{
        {meshlet::controlplane::translate::kSystemCaBundle, std::move(system_ca)}});
  }
  // Namespaces' labels, for Gateways' allowedRoutes from: Selector.
  std::unique_ptr<meshlet::controlplane::kubernetes::KubernetesApi> namespaces_api;
  std::unique_ptr<meshlet::controlplane::kubernetes::NamespaceLabels> namespace_labels;
  if (!kubernetes_api.api.empty() && command_line->gateway_namespaces) {
    auto api = meshlet::controlplane::kubernetes::KubernetesApi::Create(control_plane.loop(),
                                                                        kubernetes_api);
    if (!api.ok()) return fail(api.status());
    namespaces_api = *std::move(api);
    namespace_labels = std::make_unique<meshlet::controlplane::kubernetes::NamespaceLabels>(
        control_plane.loop(), *namespaces_api, control_plane.stats(),
        meshlet::controlplane::kubernetes::ReflectorOptions{},
        [&xds, policy = kubernetes_policy.get()](
            const meshlet::controlplane::kubernetes::NamespaceLabels::Labels& labels) {
          xds.SetNamespaceLabels(labels);
          if (policy != nullptr) policy->SetNamespaceLabels(labels);
        });
    namespace_labels->Start();
  }
  // A live tap reaches the sidecars connected to the other replicas through them.
  if (xds.tap() != nullptr) {
    xds.tap()->SetPeers(
        [&telemetry](absl::string_view method) { return telemetry.StartPeerCalls(method); },
        control_plane.replica_name());
    telemetry.AddPeerMethod(meshlet::controlplane::ads::kPeerTapMethod,
                            [&xds](std::shared_ptr<meshlet::http::grpc::ServerCall> call) {
                              xds.tap()->ServePeer(std::move(call));
                            });
  }
  if (absl::Status status = telemetry.Start(xds.grpc_server()); !status.ok()) return fail(status);
  if (absl::Status status =
          webhook.Start(kubernetes_api, ca.authority().trust_bundle_pem(), revision_tags.get());
      !status.ok()) {
    return fail(status);
  }
  // Multicluster (ADR 0106): the links to other clusters, read into the registry, and what this
  // cluster exports to those linked to it.
  std::unique_ptr<meshlet::controlplane::multicluster::LinkManager> links;
  std::unique_ptr<meshlet::controlplane::multicluster::ExportsSource> exports;
  std::unique_ptr<meshlet::controlplane::multicluster::MulticlusterApi> multicluster_api;
  std::unique_ptr<meshlet::controlplane::Store::WatchHandle> links_watch;
  if (!command_line->multicluster.cluster.empty()) {
    namespace mc = meshlet::controlplane::multicluster;
    links = std::make_unique<mc::LinkManager>(control_plane.loop(), control_plane.clock(),
                                              control_plane.registry(), control_plane.stats(),
                                              command_line->multicluster);
    exports = std::make_unique<mc::ExportsSource>(control_plane.registry(),
                                                  command_line->multicluster.cluster,
                                                  ca.authority().options().trust_domain);
    xds.AddPolicyListener(
        [source = exports.get()](
            std::shared_ptr<const meshlet::controlplane::policy::PolicySnapshot> policy) {
          source->SetPolicy(std::move(policy));
        });
    auto keys = [&control_plane] { return control_plane.store_keys(); };
    multicluster_api = std::make_unique<mc::MulticlusterApi>(control_plane.store(), keys, *links,
                                                             *exports, control_plane.clock());
    control_plane.api().SetMulticlusterHandler(
        [api = multicluster_api.get()](const meshlet::http::ServerRequest& request,
                                       const meshlet::controlplane::access::Principal& caller) {
          return api->Handle(request, caller);
        });
    // Every change to the links' records from now on, then those stored.
    links_watch = control_plane.store().Watch([&control_plane, keys, manager = links.get()](
                                                  const meshlet::controlplane::WatchEvent& event) {
      if (!mc::IsLinkKey(event.resource.key)) return;
      const std::string cluster = event.resource.key.name.substr(mc::kLinkRecordPrefix.size());
      if (event.type == meshlet::controlplane::WatchEvent::Type::kDelete) {
        control_plane.loop().Post([manager, cluster] { manager->RemoveLink(cluster); });
        return;
      }
      const std::shared_ptr<const meshlet::controlplane::StoreKeys> store_keys = keys();
      absl::StatusOr<meshlet::multicluster::ClusterLink> link =
          mc::DecodeLink(event.resource, store_keys.get());
      if (!link.ok()) {
        LOG(ERROR) << "multicluster link " << cluster << " not used: " << link.status();
        return;
      }
      control_plane.loop().Post(
          [manager, link = *std::move(link)]() mutable { manager->PutLink(std::move(link)); });
    });
    const std::shared_ptr<const meshlet::controlplane::StoreKeys> store_keys = keys();
    absl::StatusOr<std::vector<meshlet::multicluster::ClusterLink>> stored =
        mc::LoadLinks(control_plane.store(), store_keys.get());
    if (!stored.ok()) return fail(stored.status());
    links->SetLinks(*std::move(stored));
  }
  return control_plane.Run();
}
