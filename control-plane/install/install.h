#pragma once

// The control plane's Kubernetes install as `meshctl install` renders it, `meshctl uninstall`
// lists it for deletion, and `meshctl check --pre` checks it (docs/kubernetes.md, "Installing").
//
// Render() starts from the manifests of k8s/ compiled into the binary (k8s/base in the order of
// its kustomization, and k8s/install's PersistentVolumeClaim) and does what their kustomizations
// do, so that with the defaults it gives the objects `kubectl kustomize k8s/install` gives
// (//tests/k8s:install_test compares them): every namespaced object in the namespace, the common
// label app.kubernetes.io/part-of=meshlet on every object and in the selectors, the image tag,
// the data directory on the claim. InstallOptions (from --set KEY=VALUE) change the namespace
// (everywhere it is named: objects, the RBAC subject, the webhook's service and its namespace
// exclusion), images, injection mode, trust domain, resources, store and the webhook's failure
// policy, CNI mode (--set cni=true: k8s/cni's node agent rendered too), the GatewayClass meshlet
// (--set gateway=true: k8s/gateway). With etcd (--set
// etcd=https://...) the store is etcd, shared by several replicas (RollingUpdate, each named after
// its pod, the data volume an emptyDir), the install Job of k8s/etcd/secrets-job.yaml makes the
// Secrets of secrets.h once, and the control plane mounts the store key (and the etcd client
// certificate of the etcd.tlsSecret Secret); --set etcd=bundled adds a three-member etcd over TLS
// (k8s/etcd/etcd.yaml: StatefulSet, headless Service, PodDisruptionBudget, NetworkPolicy) with the
// install's certificates, and points the control plane at it with its client certificate.
//
// CheckInstall() (check.cc) reads a rendered install (any origin: meshctl, kustomize, hand edits)
// for the mistakes visible offline, each named by object and field.
//
// Plain functions over YAML::Node documents (control-plane/inject/node.h keeps value types);
// no state; never throws.

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::install {

inline constexpr char kBundledEtcd[] = "bundled";

struct InstallOptions {
  std::string namespace_ = "meshlet-system";
  std::string image;         // empty: meshlet-control-plane:<version>
  std::string proxy_image;   // empty: the control plane's default (meshlet-proxy:<version>)
  std::string inject_mode;   // empty, "native" or "classic"
  std::string trust_domain;  // empty: cluster.local
  std::string cluster_name;  // --cluster-name (multicluster); empty: none
  int replicas = 1;
  // "https://host:port[,...]": the store in an existing etcd, shared by the replicas (no claim;
  // required for replicas > 1); "http://..." only with etcd_insecure_plaintext. kBundledEtcd:
  // in a three-member etcd StatefulSet rendered with the install (k8s/etcd). Empty: the file
  // store on the data volume.
  std::string etcd;
  std::string etcd_image;         // the bundled etcd's; empty: the manifest's
  std::string etcd_storage_size;  // each bundled member's claim; empty: the manifest's (1Gi)
  // A Secret in the namespace with ca.crt, tls.crt and tls.key (kubernetes.io/tls plus the CA):
  // TLS with a client certificate to an https:// etcd (required with one).
  std::string etcd_tls_secret;
  bool etcd_insecure_plaintext = false;
  // The bundled etcd's certificates (secrets.h): the members' and the client's lifetime in
  // days, their CA's, and how close to its end a certificate is renewed.
  int etcd_certificate_days = 365;
  int etcd_ca_days = 3650;
  int etcd_renew_before_days = 30;
  std::string cpu = "100m";  // the control plane's requests and memory limit
  std::string memory = "128Mi";
  std::string memory_limit = "1Gi";
  bool persistent_store = true;  // store=persistent|ephemeral
  std::string store_size = "1Gi";
  std::string failure_policy = "Fail";  // the webhook's: Fail or Ignore
  // A control-plane revision installed beside others (docs/upgrades.md; inject/revision.h):
  // every object of its own named meshlet-control-plane-<revision> (Deployment, Service,
  // ServiceAccount, RBAC, PodDisruptionBudget, the data claim), its pods labelled so, the control
  // plane started with --revision, and the webhook configuration
  // meshlet-sidecar-injector-<revision> injecting the pods of namespaces labelled
  // meshlet.io/rev=<revision> and of pods so labelled. Empty: the unnamed revision.
  std::string revision;
  // A Secret in the namespace (tls.crt: the signing certificate, then its chain; tls.key) the
  // workload CA signs with (--ca-cert, --ca-key) instead of a root of its own: what revisions
  // side by side must share, so that their workloads trust each other. Empty: none.
  std::string ca_secret;
  // CNI mode (docs/adr/0094): the node agent's DaemonSet (k8s/cni: the meshlet-cni plugin on
  // every node) is rendered before the control plane, which injects with --inject-capture=cni:
  // no privileged init container in any pod.
  bool cni = false;
  std::string cni_image;  // the node agent's; empty: meshlet-cni:<version>
  // The node agent's race repair (--repair-mode): evict (k8s/cni as written), label (the
  // ClusterRole gains patch on pods, loses pods/eviction) or off (neither).
  std::string cni_repair = "evict";
  // The GatewayClass meshlet (k8s/gateway, ADR 0099), rendered after the control plane; needs
  // the Gateway API CRDs. The gateway proxy's Deployment is not rendered: it does not exist yet.
  bool gateway = false;
};

// The --set keys, in the order help lists them, with what each takes.
std::vector<std::pair<std::string, std::string>> SetKeys();

// InvalidArgument unless the bundled etcd's certificates outlast their renewal window and do not
// outlive their CA.
absl::Status CheckEtcdCertificateDays(const InstallOptions& options);

// Applies "KEY=VALUE". Errors say what was wrong and list the keys for an unknown one.
absl::Status SetOption(InstallOptions& options, absl::string_view assignment);

// The install's objects, in the order to apply them. `version` names the default images.
absl::StatusOr<std::vector<YAML::Node>> Render(const InstallOptions& options,
                                               absl::string_view version);

// meshlet's CustomResourceDefinitions (k8s/crds, as `kubectl kustomize k8s/crds` gives them):
// applied once per cluster apart from the install, so that uninstalling keeps the policies.
absl::StatusOr<std::vector<YAML::Node>> Crds();

// What to delete, in the order to delete it: the reverse of the install's, so the webhook
// configuration goes before the control plane (pod creation never waits on a control plane
// being removed; only the GatewayClass, which nothing waits on, goes before it), the namespace
// last. `keep_data` leaves out the namespace and the data claim, whose deletion would destroy
// the CA root and the policies. `revision`: the objects are a revision's, and the namespace, the
// operator roles, the CNI node agent and the GatewayClass, which the mesh's other revisions
// share, are left out too.
std::vector<YAML::Node> UninstallOrder(const std::vector<YAML::Node>& objects, bool keep_data,
                                       bool revision = false);

// The problems of an install's objects, each "Kind \"name\": field: problem"; empty when none.
std::vector<std::string> CheckInstall(const std::vector<YAML::Node>& objects);

}  // namespace meshlet::controlplane::install
