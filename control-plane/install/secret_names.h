#pragma once

// The Secrets that hold an install's key material (secrets.h makes them; install.h mounts them),
// and what is in them.

namespace meshlet::controlplane::install {

// Opaque: the store encryption key (control-plane/store/store_keys.h), for the control plane.
inline constexpr char kStoreKeySecret[] = "meshlet-store-key";
inline constexpr char kStoreKeyFile[] = "store-key";
// kubernetes.io/tls (ca.crt, tls.crt, tls.key): the bundled etcd members' certificate.
inline constexpr char kEtcdMemberSecret[] = "meshlet-etcd-member";
// kubernetes.io/tls (ca.crt, tls.crt, tls.key): the control plane's client certificate for it.
inline constexpr char kEtcdClientSecret[] = "meshlet-etcd-client";
// Opaque (ca.crt, ca.key): the CA that signs the two above, kept to renew them; read by the
// install's ServiceAccount alone, mounted by nothing.
inline constexpr char kEtcdCaSecret[] = "meshlet-etcd-ca";
inline constexpr char kEtcdCaKeyFile[] = "ca.key";
// The bundled etcd's members (k8s/etcd/etcd.yaml).
inline constexpr int kBundledEtcdMembers = 3;

}  // namespace meshlet::controlplane::install
