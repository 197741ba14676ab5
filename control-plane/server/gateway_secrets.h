#pragma once

// GatewaySecrets: the Secrets meshlet's Gateways name in their HTTPS listeners' certificateRefs
// (translate::GatewaySecretRefs), read from the Kubernetes API and kept current, for the gateway
// proxies' certificates and the Gateway status (docs/gateway.md, "HTTPS"). Only the Secrets
// referenced are read, each through a watch of its own (NamedObjects), started and stopped as
// SetReferences changes the set; the control plane needs get, list and watch on Secrets
// (k8s/gateway/rbac.yaml).
//
// Each Secret becomes a translate::GatewayCertificate (CertificateFromSecret): its chain and key,
// or why they cannot be served. `update` gets the whole map as NamedObjects says.
//
// Stats: meshlet_cp_gateway_secrets{state="served"|"invalid"|"missing"} (the Secrets referenced,
// by what was found), and the Reflector's (resource "secret NAMESPACE/NAME").
//
// Threading: the loop thread. The API client, stats and callback must outlive this.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/reflector.h"
#include "control-plane/server/named_objects.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/resources.h"

namespace meshlet::controlplane {

// A Secret object (JSON or YAML, as the API server sends it) as a gateway certificate: its type,
// data["tls.crt"] and data["tls.key"] base64-decoded, and `error` set when it cannot be served:
// not of type kubernetes.io/tls, a missing or undecodable key, a chain that is not PEM
// certificates, a CA as the first certificate, a key that is not a PEM private key or does not
// match the first certificate.
translate::GatewayCertificate CertificateFromSecret(const YAML::Node& secret);

class GatewaySecrets {
 public:
  using UpdateFn = std::function<void(const translate::GatewayCertificates&)>;

  GatewaySecrets(event::Loop& loop, kubernetes::KubernetesApi& api, StatsRegistry& stats,
                 const kubernetes::ReflectorOptions& options, UpdateFn update);
  GatewaySecrets(const GatewaySecrets&) = delete;
  GatewaySecrets& operator=(const GatewaySecrets&) = delete;

  // The Secrets to read, as (namespace, name): watches start for new ones, stop for those no
  // longer named (and they leave the map).
  void SetReferences(const std::set<translate::GatewayEnvironment::Key>& references) {
    watches_.SetReferences(references);
  }

 private:
  NamedObjects<translate::GatewayCertificate> watches_;
};

}  // namespace meshlet::controlplane
