#pragma once

// WebhookService: the Kubernetes sidecar-injection webhook on the control plane (docs/
// kubernetes.md, "The injection webhook"). HTTPS on --webhook-address (default 0.0.0.0:15017),
// HTTP/1.1 or HTTP/2 (ALPN), serving
//   POST /inject    an AdmissionReview v1 in, its answer out (admission.h), always 200
//   GET  /healthz   "ok"
// Anything else is 404 (405 for another method on /inject).
//
// Its certificate is the one the control plane's CA issues to the control plane for its Service
// names (ca/serving_certificate.h; SetServingCertificate installs each renewal, so the
// MutatingWebhookConfiguration's caBundle is the CA's root), or --webhook-tls-cert/-key. Without
// either (discovery from --xds-tls-cert files and no webhook files) the webhook stays off and
// says so at start. In a cluster (the Kubernetes API known) with the CA's certificate, it keeps
// the caBundle of --webhook-configuration equal to the CA's trust bundle
// (kubernetes/webhook_ca_bundle.h), and the trust-bundle ConfigMap injected pods mount in every
// namespace labelled for injection (kubernetes/trust_bundle_configmaps.h).
//
// Injection options come from the flags below and the control plane's own identity: sidecars
// are pointed at meshlet-control-plane[-<revision>].<namespace>.svc:15012 unless
// --inject-control-plane says otherwise, with the CA's trust domain; kube-system and the control
// plane's namespace are never injected. A pod labelled meshlet.io/rev for another revision is
// allowed unchanged (that revision's webhook injects it), with a warning saying so. POST
// /inject/tag/<tag> is the path of a revision tag's configuration (ADR 0076): pods labelled
// meshlet.io/rev=<tag> are this revision's there.
//
// Stats: meshlet_cp_webhook_reviews_total{verdict} (injected, untouched, refused, malformed).
//
// Threading: the ControlPlane's loop thread, like the API server.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/flags/flags.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context_provider.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/revision_tags.h"
#include "control-plane/kubernetes/trust_bundle_configmaps.h"
#include "control-plane/kubernetes/webhook_ca_bundle.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/webhook/admission.h"

namespace meshlet::controlplane::webhook {

struct WebhookOptions {
  std::string address = "0.0.0.0:15017";  // "off": no webhook
  // Given on the command line: then a failure to bind is an error. The default address already
  // in use only logs a warning and leaves the webhook off, as the trace receivers do.
  bool address_explicit = false;
  std::string tls_cert_file;  // with tls_key_file: instead of the CA's certificate
  std::string tls_key_file;
  size_t max_request_body_bytes = 8 << 20;  // Kubernetes objects reach ~1.5 MiB; reviews more
  std::string proxy_image;                  // empty: meshlet-proxy:<version>
  // Empty: meshlet-control-plane[-<revision>].<ns>.svc:15012.
  std::string control_plane_address;
  // The control plane's revision ("" the unnamed one, inject/revision.h): injected sidecars talk
  // to it, and pods labelled meshlet.io/rev for another revision are left as they are.
  std::string revision;
  inject::SidecarMode mode = inject::SidecarMode::kNative;
  inject::Identity identity = inject::Identity::kKubernetesToken;
  // --inject-capture cni: pods are written for the nodes' meshlet-cni plugin (inject::Options::
  // cni): no meshlet-init, a proxy that meets the Pod Security restricted level.
  bool cni = false;
  // Whose caBundle is kept equal to the CA's trust bundle; empty: none.
  kubernetes::WebhookCaBundleOptions ca_bundle;
  // Which namespaces get the trust-bundle ConfigMap; an empty selector: none.
  kubernetes::TrustBundleConfigMapsOptions trust_bundle;
};

// --webhook-address, --webhook-tls-cert, --webhook-tls-key, --webhook-max-body-bytes,
// --webhook-configuration, --webhook-ca-bundle-interval, --trust-bundle-namespaces,
// --trust-bundle-interval, --inject-proxy-image,
// --inject-control-plane, --inject-mode, --inject-identity, --inject-capture.
std::vector<flags::Flag> WebhookFlags(WebhookOptions& options);

// Who the control plane is, for the injection options.
struct ControlPlaneIdentity {
  std::string namespace_ = "meshlet-system";
  std::string service_account = "meshlet-control-plane";
  std::string trust_domain = "cluster.local";
};

class WebhookService {
 public:
  // `control_plane` must be Init()ed and outlive this.
  WebhookService(ControlPlane& control_plane, WebhookOptions options,
                 const ControlPlaneIdentity& identity);
  ~WebhookService();
  WebhookService(const WebhookService&) = delete;
  WebhookService& operator=(const WebhookService&) = delete;

  // Whether it needs SetServingCertificate before Start (on, and no certificate files).
  bool wants_serving_certificate() const;
  // A new certificate chain (leaf first) and key, PEM; connections already open keep theirs.
  absl::Status SetServingCertificate(std::string certificate_chain_pem,
                                     std::string private_key_pem);

  // Checks the injection options and starts listening, unless the webhook is off or has no
  // certificate (logged). Errors name the flag at fault. With `kubernetes` (the API server's
  // address not empty), also starts keeping the trust-bundle ConfigMaps of injected namespaces,
  // and with the CA's certificate the configuration's caBundle, equal to `trust_bundle_pem`.
  // With `tags` (may be null; must outlive this), the namespaces labelled with a tag that points
  // at this revision (the tag "default": those labelled meshlet.io/inject=enabled) get the
  // trust-bundle ConfigMap too.
  // The CA's trust bundle changed (a reload): the caBundle and the ConfigMaps follow at their
  // next check. Before Start() or without an API server, nothing.
  void SetTrustBundle(const std::string& trust_bundle_pem);
  absl::Status Start(const kubernetes::KubernetesApiOptions& kubernetes = {},
                     const std::string& trust_bundle_pem = "",
                     const kubernetes::RevisionTags* tags = nullptr);

  // The injection options (for the gateway proxies' Deployments, server/gateway_deployer.h).
  const inject::Options& inject_options() const { return review_.inject; }

  // The bound address; null while not listening.
  const net::Address* address() const;

 private:
  http::ServerResponse Handle(const http::ServerRequest& request);

  ControlPlane& control_plane_;
  WebhookOptions options_;
  ReviewOptions review_;
  std::shared_ptr<tls::TlsContextProvider> tls_provider_;
  std::unique_ptr<http::HttpServer> server_;
  std::unique_ptr<kubernetes::KubernetesApi> kubernetes_api_;
  std::unique_ptr<kubernetes::WebhookCaBundle> ca_bundle_;
  std::unique_ptr<kubernetes::TrustBundleConfigMaps> trust_bundle_;
  std::vector<Counter> reviews_;  // by ReviewResult::Verdict
};

}  // namespace meshlet::controlplane::webhook
