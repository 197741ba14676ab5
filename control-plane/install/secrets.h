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
//   meshlet-etcd-ca      (Opaque) ca.crt, ca.key: the ECDSA P-256 CA made for the two above (its
//                        ca.crt is theirs), kept to renew them. Mounted by nothing; only the
//                        install's ServiceAccount reads it. Bundled etcd.
//
// Renewal (RenewEtcdCertificates) re-issues the members' and the client's certificates, fresh
// keys, same names, under the kept CA: ca.crt does not change, so etcd (which reads its trusted CA
// only at start) and the control plane take the new files for new connections without a restart.
// Installs made before the CA was kept have no meshlet-etcd-ca: their certificates cannot be
// renewed, only replaced with a restart (docs/kubernetes.md). Each Secret is mounted by its user
// only: the members never see the client key or the store key, the control plane never sees the
// members' key, nothing but the install's ServiceAccount sees the CA's.
//
// Plain functions; no state.

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
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

// The decoded data of one Secret: key -> value.
using SecretData = std::map<std::string, std::string>;

// The Secrets `options` needs, in the order to create them: none without etcd; the store key
// with any etcd; the CA, the members' and the client's certificates with the bundled one. Fresh
// keys and certificates every call, valid from `now` (backdated an hour): the CA for
// etcd_ca_days, the others for etcd_certificate_days. With `kept_ca` (the data of an existing
// meshlet-etcd-ca), the certificates are issued under it and the CA's Secret holds it as it is;
// errors as RenewEtcdCertificates's.
absl::StatusOr<std::vector<YAML::Node>> MakeSecrets(
    const InstallOptions& options, absl::Time now,
    const std::optional<SecretData>& kept_ca = std::nullopt);

// The bundled etcd's Secrets as read from the cluster. `ca` is empty for an install made before
// the CA was kept.
struct EtcdSecrets {
  std::optional<SecretData> ca;
  SecretData member;
  SecretData client;
};

// What RenewEtcdCertificates did: the new data of each Secret re-issued (name -> data), and one
// line per certificate saying what became of it (renewed, or kept and until when).
struct EtcdRenewal {
  std::map<std::string, SecretData> renewed;
  std::vector<std::string> report;
};

// Re-issues the members' and the client's certificates (fresh keys, the names MakeSecrets gives
// them in options.namespace_) under the CA in `secrets.ca`: each one with fewer than
// etcd_renew_before_days left at `now` (or unreadable), or both with `force`; ca.crt unchanged,
// a leaf never outliving the CA. FailedPrecondition, nothing renewed, when a certificate is due
// but cannot be renewed: no kept CA (an older install), a CA key not the CA's, a Secret whose
// ca.crt is not the kept CA's, or a CA with fewer than etcd_renew_before_days left; the message
// says what to do instead.
absl::StatusOr<EtcdRenewal> RenewEtcdCertificates(const InstallOptions& options,
                                                  const EtcdSecrets& secrets, absl::Time now,
                                                  bool force);

// Whether the Secrets named `a` and `b` hold certificates of one CA (the members', the client's,
// the CA's): making one while the other exists would leave them with different CAs.
bool SecretsShareACa(const std::string& a, const std::string& b);

}  // namespace meshlet::controlplane::install
