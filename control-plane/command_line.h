#pragma once

// The control-plane binary's command line: its own flags (control-plane/server) and those of the
// services main.cc plugs in (discovery, CA, telemetry, injection webhook), parsed as one table by
// common/flags, and the --help text built from the same tables. Value types; no threads involved.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net/ip_prefix.h"
#include "control-plane/access/kubernetes_users.h"
#include "control-plane/authn/jwks_fetcher.h"
#include "control-plane/ca/ca_service.h"
#include "control-plane/ca/serving_certificate.h"
#include "control-plane/federation/federation_service.h"
#include "control-plane/kubernetes/discovery.h"
#include "control-plane/multicluster/link_manager.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/server/kubernetes_policy.h"
#include "control-plane/telemetry/telemetry_service.h"
#include "control-plane/webhook/webhook_service.h"
#include "control-plane/xds/xds_service.h"

namespace meshlet::controlplane {

struct CommandLine {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  ControlPlaneOptions control_plane;
  ads::XdsServiceOptions xds;
  ca::CaServiceOptions ca = ca::DefaultCaServiceOptions();
  // The discovery port's certificate when the CA issues it (xds.self_issued()).
  ca::ServingCertificateOptions serving_certificate = ca::DefaultServingCertificateOptions();
  telemetry::TelemetryOptions telemetry;
  webhook::WebhookOptions webhook;
  kubernetes::DiscoveryOptions discovery;
  // Policy from Kubernetes and route status back, by the elected replica.
  KubernetesPolicyOptions kubernetes_policy;
  // Kubernetes users on the API (with a Kubernetes API server).
  access::KubernetesUsersOptions api_kubernetes_users;
  // SPIFFE federation: foreign trust domains' bundles (--federate, checked against the trust
  // domain once parsed) and how often they are read again.
  std::vector<std::string> federate;
  federation::FederationOptions federation;
  // RequestAuthentication jwksUris, fetched by the control plane (ADR 0098).
  authn::JwksFetcherOptions jwks;
  // Gateways' certificateRefs Secrets read through the Kubernetes API (server/gateway_secrets.h).
  bool gateway_secrets = true;
  // Namespaces' labels read (kubernetes/namespace_labels.h), for allowedRoutes from: Selector.
  bool gateway_namespaces = true;
  // BackendTLSPolicies' caCertificateRefs ConfigMaps read (server/backend_ca_configmaps.h).
  bool backend_tls_configmaps = true;
  // The system's CA certificates, for BackendTLSPolicies' wellKnownCACertificates: System
  // (server/backend_ca_configmaps.h); empty: System is not supported.
  std::string system_ca_file = "/etc/ssl/certs/ca-certificates.crt";
  // A ServiceAccount, Deployment and Service per Gateway (server/gateway_deployer.h), needing
  // --kubernetes-policy.
  bool gateway_deployments = true;
  // The addresses Gateways' spec.addresses may request (--gateway-addresses; ADR 0105).
  std::vector<net::IpPrefix> gateway_addresses;
  // Multicluster (ADR 0106): this cluster's name (empty: links and exports off) and the links'
  // reads.
  multicluster::LinkManagerOptions multicluster;
};

// Parses argv[1..]: `--flag value` or `--flag=value`; --help and --version end parsing. Errors
// (InvalidArgument) name the flag and what was wrong; the binary exits with
// flags::kUsageExitCode.
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// What `control-plane --help` prints.
std::string UsageText();

}  // namespace meshlet::controlplane
