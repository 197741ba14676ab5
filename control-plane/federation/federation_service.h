#pragma once

// FederationService: the bundles of the foreign trust domains named by --federate (ADR 0101),
// kept current and handed to the sidecars' trust-bundle Secret, so a workload of another mesh is
// verified against its own domain's roots only (common/tls/tls_context.h) and can be named in
// AuthorizationPolicy by its SPIFFE id.
//
// Each source is read at Start() (files at once, Secrets when the API server answers), then
// again at its refresh interval: the bundle's spiffe_refresh_hint within [refresh_min,
// refresh_max], refresh_max for PEM. A read that fails, or a bundle that does not parse, keeps the
// last good bundle (logged, counted); a domain is trusted from its first good read on.
// Sources: file:PATH; secret:NAMESPACE/NAME (GET through the Kubernetes API; the first of the
// keys bundle.spiffe, bundle.pem, ca.crt); and https:// bundle endpoints (the SPIFFE
// https_web profile: the name looked up off the loop, GET over TLS, the server's certificate
// verified against endpoint_ca_file and the URL's host name, a 200 answer's body the bundle).
//
// Stats: meshlet_cp_federation_reads_total{domain,result} (ok, unchanged, failed) and
// meshlet_cp_federation_bundle_roots{domain} (roots in the bundle in use; 0 before one).
//
// Ownership: the API client (for Secrets) is not owned and must outlive the service.
// Threading: the loop thread; the listener is called there.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context_provider.h"
#include "control-plane/federation/federate_flag.h"
#include "control-plane/federation/spiffe_bundle.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::federation {

struct FederationOptions {
  std::vector<FederationSource> sources;
  absl::Duration refresh_min = absl::Seconds(10);
  absl::Duration refresh_max = absl::Minutes(5);
  BundleLimits limits;
  // The roots that verify bundle endpoints' certificates (--federation-endpoint-ca).
  std::string endpoint_ca_file = "/etc/ssl/certs/ca-certificates.crt";
  absl::Duration endpoint_timeout = absl::Seconds(10);
};

class FederationService {
 public:
  // `api` may be null when no source is a Secret.
  FederationService(event::Loop& loop, StatsRegistry& stats, kubernetes::KubernetesApi* api,
                    FederationOptions options);
  ~FederationService();

  // Every foreign domain's roots (PEM) whenever one changes. Reads every source once; an
  // InvalidArgument for a source this service cannot read (a Secret without the API, bundle
  // endpoints without readable endpoint_ca_file roots).
  using Listener = std::function<void(const std::map<std::string, std::string>& bundles)>;
  absl::Status Start(Listener listener);

  // domain -> PEM roots of the bundles read so far.
  const std::map<std::string, std::string>& bundles() const { return bundles_; }

 private:
  struct Domain;
  void Read(Domain& domain);
  void Took(Domain& domain, absl::StatusOr<std::string> text);
  void ReadEndpoint(Domain& domain);

  event::Loop& loop_;
  StatsRegistry& stats_;
  kubernetes::KubernetesApi* const api_;
  const FederationOptions options_;
  Listener listener_;
  std::vector<std::unique_ptr<Domain>> domains_;
  std::map<std::string, std::string> bundles_;
  std::shared_ptr<const tls::TlsContextProvider> endpoint_tls_;  // set with a bundle endpoint
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The bundle text in a Secret as the API server returns it (JSON, `data` base64): the first of
// bundle.spiffe, bundle.pem and ca.crt.
absl::StatusOr<std::string> BundleFromSecret(absl::string_view secret_json);

}  // namespace meshlet::controlplane::federation
