#include "control-plane/translate/backend_tls.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

using Key = std::pair<std::string, std::string>;

constexpr absl::string_view kGatewayGroup = "gateway.networking.k8s.io";

bool IsServiceTarget(const gw::LocalPolicyTargetReferenceWithSectionName& ref) {
  return (ref.group().empty() || ref.group() == "core") && ref.kind() == "Service";
}

// The policy that takes (namespace, service, section) and whether any does; null: none.
const gw::BackendTLSPolicy* Winner(const policy::PolicySnapshot& policy, const std::string& ns,
                                   const std::string& service, const std::string& section) {
  const gw::BackendTLSPolicy* winner = nullptr;
  for (const gw::BackendTLSPolicy& p : policy.backend_tls_policies) {
    if (p.metadata().namespace_() != ns) continue;
    for (const auto& ref : p.spec().target_refs()) {
      if (!IsServiceTarget(ref) || ref.name() != service || ref.section_name() != section) {
        continue;
      }
      if (winner == nullptr || TakesPrecedence(p.metadata(), winner->metadata())) winner = &p;
    }
  }
  return winner;
}

// The Services of `ns` the policy targets.
std::set<std::string> TargetServices(const gw::BackendTLSPolicy& p) {
  std::set<std::string> out;
  for (const auto& ref : p.spec().target_refs()) {
    if (IsServiceTarget(ref)) out.insert(ref.name());
  }
  return out;
}

}  // namespace

std::string BackendTlsSecretName(const std::string& policy_namespace,
                                 const std::string& policy_name) {
  return absl::StrCat(kBackendTlsSecretPrefix, policy_namespace, "/", policy_name);
}

BackendTlsState EvaluateBackendTls(const policy::PolicySnapshot& policy,
                                   const std::optional<BackendCaBundles>& bundles,
                                   const gw::BackendTLSPolicy& tls_policy) {
  BackendTlsState out;
  const std::string& ns = tls_policy.metadata().namespace_();
  for (const auto& ref : tls_policy.spec().target_refs()) {
    if (!IsServiceTarget(ref)) continue;
    const gw::BackendTLSPolicy* winner = Winner(policy, ns, ref.name(), ref.section_name());
    if (winner != nullptr && winner->metadata().name() != tls_policy.metadata().name()) {
      out.conflicted = true;
      out.conflict_message =
          absl::StrCat("BackendTLSPolicy ", ns, "/", winner->metadata().name(), " targets Service ",
                       ref.name(), ref.section_name().empty() ? "" : " sectionName ",
                       ref.section_name(), " too and takes precedence (older, or first by name)");
      break;
    }
  }
  const auto& validation = tls_policy.spec().validation();
  // wellKnownCACertificates (validated: without caCertificateRefs): System is the bundle the
  // control plane read from --system-ca-file; any other value leaves no CA.
  if (const std::string& well_known = validation.well_known_c_a_certificates();
      !well_known.empty()) {
    const auto it =
        bundles.has_value() ? bundles->find(kSystemCaBundle) : BackendCaBundles::const_iterator();
    if (well_known != "System") {
      out.well_known_message =
          absl::StrCat("wellKnownCACertificates ", well_known, " is not supported: only System");
    } else if (!bundles.has_value() || it == bundles->end()) {
      out.well_known_message =
          "wellKnownCACertificates System: the control plane read no system CA certificates "
          "(--system-ca-file, with a Kubernetes API)";
    } else if (!it->second.error.empty()) {
      out.well_known_message = absl::StrCat("wellKnownCACertificates System: ", it->second.error);
    } else {
      out.ca_pem = it->second.pem;
    }
  }
  for (const gw::LocalObjectReference& ref : validation.ca_certificate_refs()) {
    std::string reason, message;
    if (!ref.group().empty() || ref.kind() != "ConfigMap") {
      reason = "InvalidKind";
      message =
          absl::StrCat("caCertificateRef ", ref.group().empty() ? "" : ref.group() + "/",
                       ref.kind(), " ", ref.name(), ": only ConfigMaps (group \"\") are supported");
    } else if (!bundles.has_value()) {
      reason = "InvalidCACertificateRef";
      message = absl::StrCat("caCertificateRef ConfigMap ", ref.name(),
                             ": the control plane does not read ConfigMaps (no Kubernetes API)");
    } else if (auto it = bundles->find({ns, ref.name()}); it == bundles->end()) {
      reason = "InvalidCACertificateRef";
      message = absl::StrCat("caCertificateRef ConfigMap ", ns, "/", ref.name(), " not found");
    } else if (!it->second.error.empty()) {
      reason = "InvalidCACertificateRef";
      message =
          absl::StrCat("caCertificateRef ConfigMap ", ns, "/", ref.name(), ": ", it->second.error);
    } else {
      absl::StrAppend(&out.ca_pem, it->second.pem,
                      !it->second.pem.empty() && it->second.pem.back() != '\n' ? "\n" : "");
      continue;
    }
    if (out.refs_reason.empty()) {
      out.refs_reason = std::move(reason);
      out.refs_message = std::move(message);
    }
  }
  return out;
}

const gw::BackendTLSPolicy* BackendTlsPolicyFor(const policy::PolicySnapshot& policy,
                                                const std::string& service_namespace,
                                                const std::string& service,
                                                const std::string& port_name) {
  if (policy.backend_tls_policies.empty()) return nullptr;
  if (!port_name.empty()) {
    if (const gw::BackendTLSPolicy* p = Winner(policy, service_namespace, service, port_name)) {
      return p;
    }
  }
  return Winner(policy, service_namespace, service, "");
}

std::set<Key> BackendCaConfigMapRefs(const policy::PolicySnapshot& policy) {
  std::set<Key> out;
  for (const gw::BackendTLSPolicy& p : policy.backend_tls_policies) {
    for (const gw::LocalObjectReference& ref : p.spec().validation().ca_certificate_refs()) {
      if (ref.group().empty() && ref.kind() == "ConfigMap" && !ref.name().empty()) {
        out.emplace(p.metadata().namespace_(), ref.name());
      }
    }
  }
  // ExternalServices' TLS origination (docs/egress.md) names ConfigMaps the same way.
  for (const ::meshlet::policy::ExternalService& es : policy.external_services) {
    for (const ::meshlet::policy::ExternalServicePort& port : es.spec().ports()) {
      for (const std::string& ref : port.tls().ca_certificate_refs()) {
        if (!ref.empty()) out.emplace(NamespaceOr(es.metadata().namespace_()), ref);
      }
    }
  }
  return out;
}

std::vector<policy::RouteStatusUpdate> ComputeBackendTlsStatuses(
    const policy::PolicySnapshot& policy, const GatewayEnvironment& env) {
  std::vector<policy::RouteStatusUpdate> out;
  if (policy.backend_tls_policies.empty()) return out;
  // The Services each of meshlet's Gateways sends to: the backendRefs of the routes attached.
  std::map<Key, std::set<Key>> gateway_backends;  // Gateway -> Services
  auto index = [&](const auto& routes) {
    for (const auto& route : routes) {
      const std::string& route_ns = route.metadata().namespace_();
      std::set<Key> backends;
      for (const auto& rule : route.spec().rules()) {
        for (const auto& backend : rule.backend_refs()) {
          if ((!backend.group().empty() && backend.group() != "core") ||
              (!backend.kind().empty() && backend.kind() != "Service")) {
            continue;
          }
          backends.emplace(backend.namespace_().empty() ? route_ns : backend.namespace_(),
                           backend.name());
        }
      }
      if (backends.empty()) continue;
      for (const gw::ParentReference& parent : route.spec().parent_refs()) {
        const gw::Gateway* gateway = FindMeshletGateway(policy, parent, route_ns);
        if (gateway == nullptr) continue;
        gateway_backends[{gateway->metadata().namespace_(), gateway->metadata().name()}].insert(
            backends.begin(), backends.end());
      }
    }
  };
  index(policy.gateway_http_routes);
  index(policy.grpc_routes);
  for (const gw::BackendTLSPolicy& p : policy.backend_tls_policies) {
    policy::RouteStatusUpdate& update = out.emplace_back();
    update.kind = "BackendTLSPolicy";
    update.namespace_ = p.metadata().namespace_();
    update.name = p.metadata().name();
    update.generation = p.metadata().generation();
    const BackendTlsState state = EvaluateBackendTls(policy, env.ca_bundles, p);
    const std::set<std::string> targets = TargetServices(p);
    gw::Condition accepted;
    if (state.conflicted) {
      accepted =
          MakeCondition("Accepted", false, "Conflicted", state.conflict_message, update.generation);
    } else if (state.ca_pem.empty()) {
      accepted = MakeCondition(
          "Accepted", false, "NoValidCACertificate",
          !state.well_known_message.empty()
              ? state.well_known_message
              : "no caCertificateRef resolves to a CA certificate: " + state.refs_message,
          update.generation);
    } else {
      accepted = MakeCondition("Accepted", true, "Accepted", "", update.generation);
    }
    const gw::Condition resolved =
        state.refs_reason.empty()
            ? MakeCondition("ResolvedRefs", true, "ResolvedRefs", "", update.generation)
            : MakeCondition("ResolvedRefs", false, state.refs_reason, state.refs_message,
                            update.generation);
    for (const auto& [gateway, backends] : gateway_backends) {
      bool reaches = false;
      for (const std::string& service : targets) {
        reaches |= backends.contains({update.namespace_, service});
      }
      if (!reaches) continue;
      gw::RouteParentStatus* ancestor = update.status.add_parents();
      gw::ParentReference* ref = ancestor->mutable_parent_ref();
      ref->set_group(std::string(kGatewayGroup));
      ref->set_kind("Gateway");
      ref->set_namespace_(gateway.first);
      ref->set_name(gateway.second);
      ancestor->set_controller_name(std::string(kGatewayControllerName));
      *ancestor->add_conditions() = accepted;
      *ancestor->add_conditions() = resolved;
    }
  }
  return out;
}

bool SetBackendTls(const TranslationContext& ctx, const gw::BackendTLSPolicy& policy,
                   xds::Cluster& cluster) {
  const BackendTlsState state =
      EvaluateBackendTls(ctx.policy, ctx.options.backend_ca_bundles, policy);
  if (state.ca_pem.empty()) return false;
  xds::UpstreamTls* tls = cluster.mutable_tls();
  tls->set_enabled(true);
  tls->set_secret_name(
      policy.spec().validation().well_known_c_a_certificates().empty()
          ? BackendTlsSecretName(policy.metadata().namespace_(), policy.metadata().name())
          : std::string(kBackendTlsSystemSecret));
  tls->set_sni(policy.spec().validation().hostname());
  for (const gw::BackendTLSSubjectAltName& san : policy.spec().validation().subject_alt_names()) {
    if (san.type() == "Hostname") {
      tls->add_subject_alt_names()->set_dns(san.hostname());
    } else if (san.type() == "URI") {
      tls->add_subject_alt_names()->set_uri(san.uri());
    }
  }
  return true;
}

void AddBackendTlsSecrets(const TranslationContext& ctx, NodeResources& resources) {
  std::set<std::string> added;
  for (const xds::Cluster& cluster : resources.clusters) {
    const std::string& secret = cluster.tls().secret_name();
    if (!absl::StartsWith(secret, kBackendTlsSecretPrefix) || !added.insert(secret).second) {
      continue;
    }
    if (secret == kBackendTlsSystemSecret) {
      // Set only for an accepted System policy: the bundle is there and usable.
      const auto& bundles = ctx.options.backend_ca_bundles;
      const auto it =
          bundles.has_value() ? bundles->find(kSystemCaBundle) : BackendCaBundles::const_iterator();
      if (!bundles.has_value() || it == bundles->end()) continue;
      xds::Secret& out = resources.secrets.emplace_back();
      out.set_name(secret);
      out.set_trust_bundle_pem(it->second.pem);
      continue;
    }
    const std::vector<std::string> parts = absl::StrSplit(
        absl::string_view(secret).substr(kBackendTlsSecretPrefix.size()), absl::MaxSplits('/', 1));
    const gw::BackendTLSPolicy* policy =
        parts.size() == 2 ? ctx.policy.backend_tls_policies.Find(parts[0], parts[1]) : nullptr;
    if (policy == nullptr) continue;
    xds::Secret& out = resources.secrets.emplace_back();
    out.set_name(secret);
    out.set_trust_bundle_pem(
        EvaluateBackendTls(ctx.policy, ctx.options.backend_ca_bundles, *policy).ca_pem);
  }
}

}  // namespace meshlet::controlplane::translate
