// Mesh mTLS (docs/security.md): a node with a workload certificate serves its inbound listener
// with it and originates mTLS towards services whose members can answer it, expecting exactly the
// members' SPIFFE ids; the trust bundle Secret comes along when the CA's roots are known.

#include <set>

#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {

bool HasCertificate(const Workload& w) {
  return w.workload_certificate && !w.service_account.empty();
}

std::string SpiffeId(absl::string_view trust_domain, const Workload& w) {
  return absl::StrCat("spiffe://", trust_domain, "/ns/", w.namespace_, "/sa/", w.service_account);
}

std::string SpiffeId(const TranslationContext& ctx, const Workload& w) {
  return SpiffeId(ctx.TrustDomain(), w);
}

bool SetUpstreamMtls(const TranslationContext& ctx, const ServiceView& s,
                     const std::map<std::string, std::string>& subset, const std::string& mode,
                     xds::Cluster& cluster) {
  if (!ctx.self.workload_certificate || mode == "DISABLE") return false;
  std::set<std::string> ids;
  bool any_has_certificate = false;
  for (const Workload* w : s.members) {
    if (!Matches(subset, w->labels)) continue;
    if (w->remote != nullptr) {
      // A linked cluster's members, behind its east-west gateway: their own ids (another trust
      // domain, when the clusters federate).
      any_has_certificate = true;
      ids.insert(w->remote->identities.begin(), w->remote->identities.end());
      continue;
    }
    any_has_certificate |= HasCertificate(*w);
    if (!w->service_account.empty()) ids.insert(SpiffeId(ctx, *w));
  }
  if (!any_has_certificate && mode != "STRICT") return false;
  xds::UpstreamTls* tls = cluster.mutable_tls();
  tls->set_enabled(true);
  tls->set_workload_certificate(true);
  if (!ctx.options.trust_bundle_pem.empty()) {
    tls->set_trust_bundle_secret(std::string(kTrustBundleSecret));
  }
  if (ids.empty()) {
    // STRICT before any member with a service account registered: any identity of the mesh's
    // trust domain (an id pattern narrower than a trust domain cannot be expressed).
    ids.insert(absl::StrCat("spiffe://", ctx.TrustDomain(), "/*"));
  }
  for (const std::string& id : ids) tls->add_expected_peer_ids(id);
  return true;
}

void SetEndpointTls(const TranslationContext& ctx, const Workload& w, bool mtls,
                    const std::string& mode, xds::Endpoint& endpoint) {
  // A linked cluster's gateway: any of its members may answer (the cluster's ids), never in
  // plaintext.
  if (w.remote != nullptr) return;
  const bool has_certificate = HasCertificate(w);
  if (mtls && !has_certificate && mode != "STRICT") {
    endpoint.set_plaintext(true);
  } else if (!w.service_account.empty() && (has_certificate || mtls)) {
    endpoint.set_identity(SpiffeId(ctx, w));
  }
}

void SetDownstreamTls(const TranslationContext& ctx, const std::string& mode,
                      xds::Listener& listener) {
  if (!ctx.self.workload_certificate || mode == "DISABLE") return;
  xds::DownstreamTls* tls = listener.mutable_tls();
  tls->set_mode(mode == "STRICT" ? xds::DownstreamTls::STRICT : xds::DownstreamTls::PERMISSIVE);
  tls->set_workload_certificate(true);
  tls->set_require_client_certificate(mode == "STRICT");
  if (!ctx.options.trust_bundle_pem.empty()) {
    tls->set_trust_bundle_secret(std::string(kTrustBundleSecret));
  }
}

void AddTrustBundle(const TranslationContext& ctx, NodeResources& resources) {
  if (!ctx.self.workload_certificate || ctx.options.trust_bundle_pem.empty()) return;
  xds::Secret bundle;
  bundle.set_name(std::string(kTrustBundleSecret));
  bundle.set_trust_bundle_pem(ctx.options.trust_bundle_pem);
  if (!ctx.options.renewal_signer.empty()) {
    xds::CertificateRenewal* renewal = bundle.mutable_renewal();
    renewal->set_signer(ctx.options.renewal_signer);
    renewal->set_round(ctx.options.renewal_round);
    renewal->set_window_seconds(ctx.options.renewal_window_seconds);
  }
  for (const std::string& alias : ctx.options.trust_domain_aliases) {
    bundle.add_trust_domain_aliases(alias);
  }
  for (const auto& [domain, pem] : ctx.options.federated_bundles) {
    (*bundle.mutable_federated_bundles())[domain] = pem;
  }
  resources.secrets.push_back(std::move(bundle));
}

std::string MeshTlsKey(const TranslationContext& ctx) {
  if (!ctx.self.workload_certificate) return "plaintext";
  return ctx.options.trust_bundle_pem.empty() ? "workload" : "workload+bundle";
}

}  // namespace meshlet::controlplane::translate
