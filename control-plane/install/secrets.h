#pragma once

// The key material of an install with etcd, as Kubernetes Secrets: made once, by the install
// Job (k8s/etcd/secrets-job.yaml runs `meshctl install --secrets --create`) or offline
// (`meshctl install --secrets`), never by Render(), so that applying the manifests again changes
// no key. docs/kubernetes.md, "Control-plane replicas on etcd".
//
//   meshlet-store-key    (Opaque) store-key: the key that encrypts the secrets the replicas
//                        share through etcd (control-plane/store/store_keys.h). Any etcd.
//   meshlet-etcd-member  (kubernetes.io/tls) ca.crt, tls.crt, tls.key: the bundled etcd members'
//                        certificate, for clients and peers (serverAuth + clientAuth), naming
//                        every member, the Service, localhost, 127.0.0.1 and ::1. Bundled etcd.
//   meshlet-etcd-client  (kubernetes.io/tls) ca.crt, tls.crt, tls.key: the control plane's
//                        client certificate (clientAuth, CN meshlet-control-plane). Bundled.
//
// The two certificates come from one ECDSA P-256 CA made for the purpose, whose key is dropped
// once they are signed: nothing can sign another certificate the members accept. Each Secret is
// mounted by its user only: the members never see the client key or the store key, the control
// plane never sees the members' key.
//
// Plain functions; no state.

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "control-plane/install/install.h"
#include "control-plane/install/secret_names.h"

namespace meshlet::controlplane::install {

// The names the bundled etcd's members are reached by in `namespace_`: each member under the
// headless Service, and the Service, each with and without .svc.cluster.local.
std::vector<std::string> BundledEtcdDnsNames(absl::string_view namespace_);

// The Secrets `options` needs, in the order to create them: none without etcd; the store key
// with any etcd; the members' and the client's certificates with the bundled one. Fresh keys and
// certificates every call, valid from `now` (backdated an hour) for etcd_certificate_days.
absl::StatusOr<std::vector<YAML::Node>> MakeSecrets(const InstallOptions& options, absl::Time now);

// Whether the Secrets named `a` and `b` hold certificates of one CA (the members' and the
// client's): making one while the other exists would leave them with different CAs.
bool SecretsShareACa(const std::string& a, const std::string& b);

}  // namespace meshlet::controlplane::install
