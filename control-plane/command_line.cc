#include "control-plane/command_line.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "common/flags/flags.h"
#include "common/tls/spiffe.h"
#include "control-plane/inject/revision.h"
#include "control-plane/multicluster/link_records.h"

namespace meshlet::controlplane {
namespace {

// One table per --help section, in the order --help shows them.
struct Section {
  std::string heading;
  std::vector<flags::Flag> flags;
  std::string note;  // a paragraph after the table, or empty
};

std::vector<Section> Sections(CommandLine& command_line) {
  std::vector<flags::Flag> own = ControlPlaneFlags(command_line.control_plane);
  own.push_back(
      {.name = "--revision",
       .value = "NAME",
       .help = "serve the revision NAME beside other control planes of the mesh (docs/"
               "upgrades.md): pods labelled meshlet.io/rev=NAME, or in namespaces so labelled. "
               "Its names follow: meshlet-control-plane-NAME (the certificate's DNS names and "
               "service account, the injected sidecars' discovery address, the leader Lease), "
               "webhook configuration meshlet-sidecar-injector-NAME, trust-bundle namespaces "
               "meshlet.io/rev=NAME; a flag given for one of them wins. Default (or \"default\"): "
               "the unnamed revision, for pods without the label",
       .set = [&command_line](absl::string_view v) {
         absl::StatusOr<std::string> revision = inject::ParseRevision(v);
         if (!revision.ok()) return revision.status();
         command_line.control_plane.revision = *std::move(revision);
         return absl::OkStatus();
       }});
  own.push_back({.name = "--version",
                 .help = "print the version and exit",
                 .stops = true,
                 .set = [&command_line](absl::string_view) {
                   command_line.action = CommandLine::Action::kVersion;
                   return absl::OkStatus();
                 }});
  own.push_back({.name = "--help",
                 .shorthand = "-h",
                 .help = "print this text and exit",
                 .stops = true,
                 .set = [&command_line](absl::string_view) {
                   command_line.action = CommandLine::Action::kHelp;
                   return absl::OkStatus();
                 }});
  std::vector<Section> sections;
  sections.push_back({.heading = "Flags:", .flags = std::move(own)});
  sections.push_back({.heading = "Discovery (ADS over gRPC, docs/xds.md):",
                      .flags = ads::XdsFlags(command_line.xds)});
  sections.push_back(
      {.heading = "The control plane's certificate, for the API and (without --xds-tls-cert) the "
                  "discovery port (docs/security.md):",
       .flags = ca::ServingCertificateFlags(command_line.serving_certificate),
       .note = "The workload CA issues the control plane its own certificate: "
               "spiffe://<trust-domain>/ns/NS/sa/SA plus the DNS names, with an in-memory key and "
               "the --cert-ttl lifetime, renewed at half of it. The API serves it unless "
               "--api-plaintext; the discovery port and the webhook unless --xds-tls-cert/"
               "--xds-tls-key or --xds-plaintext."});
  sections.push_back({.heading = "Workload CA (served on the discovery port; docs/security.md):",
                      .flags = ca::CaFlags(command_line.ca)});
  sections.push_back(
      {.heading = "SPIFFE federation (docs/security.md#spiffe-federation):",
       .flags = {
           {.name = "--federate",
            .value = "DOMAIN=SOURCE",
            .help = "trust workloads of the foreign trust domain DOMAIN, verified against the "
                    "roots of its bundle (SPIFFE bundle or PEM) only, read from SOURCE: "
                    "file:PATH, secret:NAMESPACE/NAME (keys bundle.spiffe, bundle.pem or "
                    "ca.crt) or an https:// bundle endpoint (verified against "
                    "--federation-endpoint-ca and its host name); repeat for each domain",
            .set =
                [&command_line](absl::string_view v) {
                  command_line.federate.push_back(std::string(v));
                  return absl::OkStatus();
                }},
           {.name = "--trust-domain-alias",
            .value = "DOMAIN",
            .help = "a trust domain whose ids are this mesh's own (a move from one trust domain "
                    "to another): verified against the mesh roots, and AuthorizationPolicy "
                    "principals match across it; repeatable",
            .set =
                [&command_line](absl::string_view v) {
                  if (absl::Status s = tls::ValidateTrustDomain(v); !s.ok()) return s;
                  command_line.xds.translate.trust_domain_aliases.push_back(std::string(v));
                  return absl::OkStatus();
                }},
           flags::PositiveDurationFlag(
               "--federation-refresh-min", &command_line.federation.refresh_min,
               "the shortest time before a bundle is read again (its spiffe_refresh_hint, or "
               "after a failed read; default 10s)",
               "10s"),
           flags::PositiveDurationFlag(
               "--federation-refresh-max", &command_line.federation.refresh_max,
               "the longest time before a bundle is read again (default 5m)", "5m"),
           flags::StringFlag("--federation-endpoint-ca", "FILE",
                             &command_line.federation.endpoint_ca_file,
                             "the roots (PEM) that verify https:// bundle endpoints' certificates "
                             "(default /etc/ssl/certs/ca-certificates.crt, the system's)"),
           flags::PositiveDurationFlag(
               "--federation-endpoint-timeout", &command_line.federation.endpoint_timeout,
               "how long one read of a bundle endpoint may take once its name is looked up: "
               "connecting, TLS and the whole answer (default 10s)",
               "10s")}});
  sections.push_back(
      {.heading = "Multicluster (docs/multicluster.md):",
       .flags = {
           flags::StringFlag("--cluster-name", "NAME", &command_line.multicluster.cluster,
                             "this cluster's name among linked clusters (a DNS label); unset: "
                             "no links, no exports"),
           flags::PositiveDurationFlag(
               "--multicluster-poll-interval", &command_line.multicluster.poll_interval,
               "how often each linked cluster's exports are read (default 2s)", "2s"),
           flags::PositiveDurationFlag(
               "--multicluster-read-timeout", &command_line.multicluster.timeout,
               "one read of a linked cluster's exports once its name is looked up: connecting, "
               "TLS and the whole answer (default 5s)",
               "5s"),
       }});
  sections.push_back(
      {.heading = "JWT key sets (RequestAuthentication jwksUri; docs/security.md):",
       .flags = {
           flags::StringFlag("--jwks-ca-file", "FILE", &command_line.jwks.ca_file,
                             "the roots (PEM) that verify the issuers' HTTPS certificates "
                             "(default /etc/ssl/certs/ca-certificates.crt, the system's)"),
           flags::PositiveDurationFlag("--jwks-refresh-interval", &command_line.jwks.refresh,
                                       "how often each jwksUri is read again (default 20m)", "20m"),
           flags::PositiveDurationFlag(
               "--jwks-retry-min", &command_line.jwks.retry_min,
               "the first retry after a failed read, doubled up to --jwks-refresh-interval with "
               "jitter (default 1s)",
               "1s"),
           flags::PositiveDurationFlag(
               "--jwks-fetch-timeout", &command_line.jwks.timeout,
               "one read once the name is looked up: connecting, TLS and the whole answer "
               "(default 10s)",
               "10s"),
           flags::IntFlag<size_t>("--jwks-max-bytes", "BYTES", &command_line.jwks.max_bytes,
                                  "the largest key set taken (default 262144)", 1, 16u << 20),
       }});
  sections.push_back({.heading = "Kubernetes service-account attestation (TokenReview; off when "
                                 "no API server is known):",
                      .flags = ca::KubernetesAttestationFlags(command_line.ca)});
  sections.push_back(
      {.heading = "Kubernetes users on the API (with --kubernetes-api; docs/kubernetes.md):",
       .flags = access::KubernetesUsersFlags(command_line.api_kubernetes_users),
       .note = "A bearer token that is neither the bootstrap token nor an operator token is "
               "reviewed by the API server (TokenReview), and the user it names is allowed what "
               "the ClusterRoles meshlet-viewer, meshlet-editor and meshlet-admin grant "
               "(SubjectAccessReview on meshes.meshlet.io)."});
  sections.push_back(
      {.heading = "Kubernetes service discovery (with --kubernetes-api; docs/kubernetes.md):",
       .flags = kubernetes::DiscoveryFlags(command_line.discovery),
       .note = "Services, EndpointSlices and Pods are listed and watched through the API "
               "server; their Services become mesh destinations. No configuration is served "
               "before the first complete list."});
  sections.push_back(
      {.heading = "Policy from Kubernetes (with --kubernetes-api; docs/kubernetes.md):",
       .flags = KubernetesPolicyFlags(command_line.kubernetes_policy),
       .note = "The replicas elect one leader through the Lease meshlet-control-plane in their "
               "namespace; it mirrors meshlet.io and gateway.networking.k8s.io policy objects "
               "into the store (objects mirrored so cannot be changed with meshctl) and writes "
               "route status back."});
  sections.push_back(
      {.heading = "Gateways (with --kubernetes-api; docs/gateway.md):",
       .flags = {
           flags::BoolFlag(
               "--gateway-secrets", &command_line.gateway_secrets,
               "read the Secrets Gateways' HTTPS listeners name in certificateRefs (a watch per "
               "Secret; needs get, list and watch on Secrets) and serve them to the gateway "
               "proxies "
               "(default true; false: no HTTPS listener is served)"),
           flags::BoolFlag("--backend-tls-configmaps", &command_line.backend_tls_configmaps,
                           "read the ConfigMaps BackendTLSPolicies name in caCertificateRefs "
                           "(a watch per ConfigMap; needs get, list and watch on ConfigMaps) "
                           "and send their CA certificates to the proxies (default true; "
                           "false: no BackendTLSPolicy has a CA, and its backends are not "
                           "reached)"),
           flags::StringFlag("--system-ca-file", "FILE", &command_line.system_ca_file,
                             "the system's CA certificates (PEM), read once at start, which "
                             "BackendTLSPolicies' wellKnownCACertificates: System, and "
                             "ExternalServices' TLS origination without CA certificates of its "
                             "own, verify servers with, sent to the proxies inline (default "
                             "/etc/ssl/certs/ca-certificates.crt; empty: System is not "
                             "supported)"),
           flags::BoolFlag("--gateway-namespaces", &command_line.gateway_namespaces,
                           "read the namespaces' labels (list and watch, metadata only) "
                           "for Gateways' allowedRoutes from: Selector and the label "
                           "meshlet.io/outbound-traffic-policy (default true; false: every "
                           "namespace is seen without labels)"),
           flags::BoolFlag("--gateway-deployments", &command_line.gateway_deployments,
                           "run each of meshlet's Gateways' proxy: the revision's leader keeps "
                           "a ServiceAccount, Deployment and Service NAME-CLASS in the "
                           "Gateway's namespace, owned by it, the proxy written with the "
                           "--inject-* options (needs --kubernetes-policy; default true; false: "
                           "the proxies are deployed by hand)"),
           {.name = "--gateway-addresses",
            .value = "CIDR,...",
            .help = "the addresses a Gateway's spec.addresses (type IPAddress) may request: "
                    "comma-separated ranges (\"203.0.113.0/28,2001:db8::/120\") or single "
                    "addresses; its proxy Service gets them as externalIPs (the network routes "
                    "them to the nodes); repeatable (default none: a Gateway requesting an "
                    "address is not Programmed, AddressNotUsable)",
            .set = [&command_line](absl::string_view v) -> absl::Status {
              for (absl::string_view text : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
                absl::StatusOr<net::IpPrefix> range =
                    net::IpPrefix::Parse(absl::StripAsciiWhitespace(text));
                if (!range.ok()) {
                  return absl::InvalidArgumentError(absl::StrCat(
                      "\"", text, "\" is not an address range: ", range.status().message()));
                }
                command_line.gateway_addresses.push_back(*range);
              }
              return absl::OkStatus();
            }}}});
  sections.push_back({.heading = "Trace collector (docs/tracing.md) and golden metrics "
                                 "(docs/golden-metrics.md):",
                      .flags = telemetry::TelemetryFlags(command_line.telemetry)});
  sections.push_back(
      {.heading = "Sidecar-injection webhook (Kubernetes; docs/kubernetes.md):",
       .flags = webhook::WebhookFlags(command_line.webhook),
       .note = "The webhook serves with the certificate the CA issues to the control plane "
               "(its DNS names are those of --xds-dns-names), so the "
               "MutatingWebhookConfiguration's caBundle is the CA's root (meshctl "
               "trust-bundle). kube-system and the control plane's namespace are never "
               "injected."});
  return sections;
}

// The names that follow from --revision, where the flags for them kept their defaults.
void ApplyRevision(CommandLine& command_line) {
  const std::string& revision = command_line.control_plane.revision;
  command_line.webhook.revision = revision;
  command_line.kubernetes_policy.revision = revision;
  if (revision.empty()) return;
  const std::string name = inject::ControlPlaneName(revision);
  ca::ServingCertificateOptions& serving = command_line.serving_certificate;
  if (serving.service_account == inject::kControlPlaneName) serving.service_account = name;
  if (serving.dns_names.empty()) {
    serving.dns_names = {name, absl::StrCat(name, ".", serving.namespace_),
                         absl::StrCat(name, ".", serving.namespace_, ".svc"),
                         absl::StrCat(name, ".", serving.namespace_, ".svc.cluster.local")};
  }
  webhook::WebhookOptions& webhook = command_line.webhook;
  if (webhook.ca_bundle.configuration_name == inject::InjectorConfigurationName("")) {
    webhook.ca_bundle.configuration_name = inject::InjectorConfigurationName(revision);
  }
  if (webhook.trust_bundle.namespace_selector ==
      kubernetes::TrustBundleConfigMapsOptions().namespace_selector) {
    webhook.trust_bundle.namespace_selector = absl::StrCat(inject::kRevisionLabel, "=", revision);
  }
  if (command_line.kubernetes_policy.lease_name == inject::kControlPlaneName) {
    command_line.kubernetes_policy.lease_name = name;
  }
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine command_line;
  std::vector<flags::Flag> table;
  for (Section& section : Sections(command_line)) {
    for (flags::Flag& flag : section.flags) table.push_back(std::move(flag));
  }
  ASSIGN_OR_RETURN(flags::ParsedArgs parsed, flags::Parse(table, args));
  if (parsed.stopped) return command_line;
  ApplyRevision(command_line);
  command_line.xds.translate.gateway_address_ranges = command_line.gateway_addresses;
  command_line.kubernetes_policy.gateway_address_ranges = command_line.gateway_addresses;
  if (!command_line.multicluster.cluster.empty()) {
    RETURN_IF_ERROR(Annotate(multicluster::ValidateClusterName(command_line.multicluster.cluster),
                             "--cluster-name"));
  }
  RETURN_IF_ERROR(ads::CheckXdsFlags(command_line.xds));
  RETURN_IF_ERROR(ca::CheckCaFlags(command_line.ca));
  {
    absl::StatusOr<std::vector<federation::FederationSource>> sources =
        federation::ParseFederateFlags(command_line.federate,
                                       command_line.ca.authority.trust_domain);
    if (!sources.ok()) return Annotate(sources.status(), "--federate");
    command_line.federation.sources = *std::move(sources);
    for (const std::string& alias : command_line.xds.translate.trust_domain_aliases) {
      if (alias == command_line.ca.authority.trust_domain) {
        return absl::InvalidArgumentError(
            absl::StrCat("--trust-domain-alias ", alias, ": that is the trust domain itself"));
      }
      for (const federation::FederationSource& source : command_line.federation.sources) {
        if (source.domain == alias) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--trust-domain-alias ", alias,
              ": also federated (--federate): a domain is either this mesh's own or another's"));
        }
      }
    }
    if (command_line.federation.refresh_min > command_line.federation.refresh_max) {
      return absl::InvalidArgumentError(
          "--federation-refresh-min must not be above --federation-refresh-max");
    }
  }
  if (command_line.xds.self_issued() || !command_line.control_plane.api_plaintext) {
    RETURN_IF_ERROR(ca::CheckServingCertificateFlags(command_line.serving_certificate,
                                                     command_line.ca.authority.default_ttl));
  }
  return command_line;
}

std::string UsageText() {
  std::string out =
      "usage: control-plane [flags]\n\n"
      "The meshlet control plane: stores policy, registers sidecars, serves the API meshctl "
      "uses.\n";
  CommandLine scratch;
  for (const Section& section : Sections(scratch)) {
    absl::StrAppend(&out, "\n", section.heading, "\n", flags::FlagTable(section.flags));
    if (!section.note.empty()) absl::StrAppend(&out, "  ", flags::Wrap(section.note, 2), "\n");
  }
  return out;
}

}  // namespace meshlet::controlplane
