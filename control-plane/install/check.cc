// CheckInstall: the checks of a rendered install (install.h), in named steps. Each step reads
// what the earlier ones found (the control plane's Deployment, its ServiceAccount's grants, the
// Service that selects it) and adds what is wrong, "WHERE: WHAT", in the order a reader meets it.
//
// Plain functions of their input; any thread.

#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/node.h"
#include "control-plane/install/install.h"
#include "control-plane/store/etcd_url.h"

namespace meshlet::controlplane::install {
namespace {

using inject::Field;
using inject::Text;

// node[i] of a sequence, else an undefined node (never throws).
YAML::Node Item(const YAML::Node& node, size_t i) {
  if (!node.IsSequence() || i >= node.size()) return YAML::Node(YAML::NodeType::Undefined);
  return node[i];
}

// The first container of a workload's pod template, or an undefined node.
YAML::Node TemplateContainer(const YAML::Node& workload) {
  return Item(Field(Field(Field(Field(workload, "spec"), "template"), "spec"), "containers"), 0);
}

std::string Name(const YAML::Node& object) {
  return absl::StrCat(Text(Field(object, "kind")), " \"",
                      Text(Field(Field(object, "metadata"), "name")), "\"");
}

std::vector<YAML::Node> OfKind(const std::vector<YAML::Node>& objects, absl::string_view kind) {
  std::vector<YAML::Node> out;
  for (const YAML::Node& o : objects) {
    if (Text(Field(o, "kind")) == kind) out.push_back(o);
  }
  return out;
}

// The value of `--flag=VALUE` among `args`, or `fallback`.
std::string ArgValue(const YAML::Node& args, absl::string_view flag, std::string fallback) {
  const std::string prefix = absl::StrCat(flag, "=");
  for (const YAML::Node& a : args) {
    if (absl::StartsWith(Text(a), prefix)) return Text(a).substr(prefix.size());
  }
  return fallback;
}

bool LabelsMatch(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector.IsMap() || selector.size() == 0) return false;
  for (auto it = selector.begin(); it != selector.end(); ++it) {
    if (Text(Field(labels, it->first.Scalar())) != Text(it->second)) return false;
  }
  return true;
}

// One run of the checks over `objects`.
class InstallCheck {
 public:
  explicit InstallCheck(const std::vector<YAML::Node>& objects) : objects_(objects) {}

  std::vector<std::string> Run() {
    if (!FindControlPlane()) {
      problems_.push_back(
          "no Deployment meshlet-control-plane (or running the meshlet-control-plane image)");
      return problems_;
    }
    CheckReplicasAndStore();
    CheckPodTemplate();
    CheckServiceAccount();
    CollectGrants();
    CheckGrants();
    FindService();
    for (const YAML::Node& configuration : OfKind(objects_, "MutatingWebhookConfiguration")) {
      CheckWebhookConfiguration(configuration);
    }
    return problems_;
  }

 private:
  void Problem(const std::string& where, absl::string_view what) {
    problems_.push_back(absl::StrCat(where, ": ", what));
  }

  bool HasArg(absl::string_view flag) const {
    for (const YAML::Node& a : args_) {
      if (Text(a) == flag || absl::StartsWith(Text(a), absl::StrCat(flag, "="))) return true;
    }
    return false;
  }

  // The control plane's Deployment: meshlet-control-plane, or the one running its image.
  bool FindControlPlane() {
    bool found = false;
    for (const YAML::Node& d : OfKind(objects_, "Deployment")) {
      if (Text(Field(Field(d, "metadata"), "name")) == "meshlet-control-plane" ||
          Text(Field(TemplateContainer(d), "image")).find("meshlet-control-plane") !=
              std::string::npos) {
        deployment_ = d;
        found = true;
      }
    }
    if (!found) return false;
    name_ = Name(deployment_);
    ns_ = Text(Field(Field(deployment_, "metadata"), "namespace"));
    spec_ = Field(deployment_, "spec");
    pod_ = Field(Field(spec_, "template"), "spec");
    pod_labels_ = Field(Field(Field(spec_, "template"), "metadata"), "labels");
    container_ = TemplateContainer(deployment_);
    args_ = Field(container_, "args");
    if (ns_.empty()) Problem(name_, "metadata.namespace: missing");
    return true;
  }

  // More than one replica only on etcd; an etcd store with the flags the control plane needs.
  void CheckReplicasAndStore() {
    int64_t replicas = 1;
    const absl::StatusOr<EtcdUrlParts> etcd_url = SplitEtcdUrl(ArgValue(args_, "--store", ""));
    const bool etcd = etcd_url.ok();
    if (Field(spec_, "replicas") &&
        (!inject::PlainInt(Text(Field(spec_, "replicas")), &replicas) || (replicas > 1 && !etcd))) {
      Problem(name_,
              "spec.replicas: must be 1 unless the store is etcd (--store=https://...): the file "
              "store has one writer");
    }
    if (etcd && !HasArg("--store-encryption-key-file")) {
      Problem(name_,
              absl::StrCat(kArgsField,
                           ": an etcd --store without --store-encryption-key-file (the control "
                           "plane refuses to start: it keeps the API token and CA root in etcd "
                           "encrypted with that key)"));
    }
    if (etcd && etcd_url->tls && !HasArg("--etcd-cacert")) {
      Problem(name_, absl::StrCat(kArgsField,
                                  ": an https:// --store without --etcd-cacert (the control "
                                  "plane refuses to start)"));
    }
    if (etcd && !etcd_url->tls && !HasArg("--etcd-insecure-plaintext")) {
      Problem(name_, absl::StrCat(kArgsField,
                                  ": an http:// --store without --etcd-insecure-plaintext (the "
                                  "control plane refuses a plaintext etcd)"));
    }
  }

  // No sidecar of its own, its namespace from the downward API, the webhook's port exposed.
  void CheckPodTemplate() {
    if (Text(Field(Field(Field(Field(spec_, "template"), "metadata"), "annotations"),
                   inject::kInjectKey)) != "false") {
      Problem(name_,
              "spec.template.metadata.annotations: sidecar.meshlet.io/inject must be \"false\" "
              "(the control plane does not run with a sidecar of its own)");
    }
    bool pod_namespace = false;
    for (const YAML::Node& env : Field(container_, "env")) {
      pod_namespace = pod_namespace || (Text(Field(env, "name")) == "POD_NAMESPACE" &&
                                        Text(Field(Field(Field(env, "valueFrom"), "fieldRef"),
                                                   "fieldPath")) == "metadata.namespace");
    }
    if (!pod_namespace) {
      Problem(name_,
              "spec.template.spec.containers[0].env: POD_NAMESPACE from fieldRef "
              "metadata.namespace is missing (the control plane's identity and certificate names "
              "come from it)");
    }
    const std::string webhook_address = ArgValue(args_, "--webhook-address", "0.0.0.0:15017");
    webhook_port_ = webhook_address.substr(webhook_address.rfind(':') + 1);
    std::set<std::string> container_ports;
    for (const YAML::Node& p : Field(container_, "ports")) {
      container_ports.insert(Text(Field(p, "containerPort")));
    }
    if (webhook_address != "off" && !container_ports.count(webhook_port_)) {
      Problem(name_, absl::StrCat("spec.template.spec.containers[0].ports: no port ", webhook_port_,
                                  " for --webhook-address"));
    }
  }

  void CheckServiceAccount() {
    account_ = Text(Field(pod_, "serviceAccountName"));
    bool found = false;
    for (const YAML::Node& sa : OfKind(objects_, "ServiceAccount")) {
      found = found || Text(Field(Field(sa, "metadata"), "name")) == account_;
    }
    if (!found) {
      Problem(name_, absl::StrCat("spec.template.spec.serviceAccountName: no ServiceAccount \"",
                                  account_, "\" in the install"));
    }
  }

  // What the ClusterRoles bound to the control plane's ServiceAccount grant, as
  // "group/resource/verb".
  void CollectGrants() {
    for (const YAML::Node& binding : OfKind(objects_, "ClusterRoleBinding")) {
      bool ours = false;
      for (const YAML::Node& s : Field(binding, "subjects")) {
        ours = ours || (Text(Field(s, "kind")) == "ServiceAccount" &&
                        Text(Field(s, "name")) == account_ && Text(Field(s, "namespace")) == ns_);
      }
      if (!ours) continue;
      const std::string role = Text(Field(Field(binding, "roleRef"), "name"));
      for (const YAML::Node& r : OfKind(objects_, "ClusterRole")) {
        if (Text(Field(Field(r, "metadata"), "name")) != role) continue;
        for (const YAML::Node& rule : Field(r, "rules")) {
          for (const YAML::Node& g : Field(rule, "apiGroups")) {
            for (const YAML::Node& res : Field(rule, "resources")) {
              for (const YAML::Node& v : Field(rule, "verbs")) {
                granted_.insert(absl::StrCat(Text(g), "/", Text(res), "/", Text(v)));
              }
            }
          }
        }
      }
    }
  }

  // The reviews the control plane asks the API server for.
  void CheckGrants() {
    if (!granted_.count("authentication.k8s.io/tokenreviews/create")) {
      problems_.push_back(absl::StrCat(
          "ClusterRole: the ServiceAccount \"", account_, "\" in \"", ns_,
          "\" may not create authentication.k8s.io tokenreviews: workloads presenting Kubernetes "
          "tokens would be refused certificates"));
    }
    if (!granted_.count("authorization.k8s.io/subjectaccessreviews/create")) {
      problems_.push_back(absl::StrCat(
          "ClusterRole: the ServiceAccount \"", account_, "\" in \"", ns_,
          "\" may not create authorization.k8s.io subjectaccessreviews: Kubernetes users would "
          "be refused by the API (meshctl with kubectl's credentials)"));
    }
  }

  void FindService() {
    for (const YAML::Node& s : OfKind(objects_, "Service")) {
      if (LabelsMatch(Field(Field(s, "spec"), "selector"), pod_labels_)) service_ = s;
    }
    if (!service_.IsDefined()) {
      problems_.push_back(absl::StrCat("no Service selects the pods of ", name_));
    }
  }

  void CheckWebhookConfiguration(const YAML::Node& configuration) {
    const std::string where = Name(configuration);
    if (!granted_.count("admissionregistration.k8s.io/mutatingwebhookconfigurations/patch")) {
      Problem(where, "the control plane may not patch it: its caBundle stays as written");
    }
    int i = 0;
    for (const YAML::Node& hook : Field(configuration, "webhooks")) {
      CheckWebhook(where, absl::StrCat("webhooks[", i++, "]"), hook);
    }
  }

  // One webhook: its failure policy, that it reaches the control plane through the Service, its
  // path, that it spares the control plane's own namespace, its caBundle's form.
  void CheckWebhook(const std::string& where, const std::string& at, const YAML::Node& hook) {
    const YAML::Node target = Field(Field(hook, "clientConfig"), "service");
    if (!Field(hook, "failurePolicy")) {
      Problem(where, absl::StrCat(at, ".failurePolicy: not set (Fail or Ignore)"));
    }
    const std::string service_name = Text(Field(Field(service_, "metadata"), "name"));
    if (service_.IsDefined() &&
        (Text(Field(target, "name")) != service_name || Text(Field(target, "namespace")) != ns_)) {
      Problem(where, absl::StrCat(at, ".clientConfig.service: ", Text(Field(target, "namespace")),
                                  "/", Text(Field(target, "name")), " is not the Service ", ns_,
                                  "/", service_name));
    } else if (service_.IsDefined()) {
      const std::string port = Field(target, "port") ? Text(Field(target, "port")) : "443";
      bool reaches = false;
      for (const YAML::Node& p : Field(Field(service_, "spec"), "ports")) {
        reaches = reaches ||
                  (Text(Field(p, "port")) == port && Text(Field(p, "targetPort")) == webhook_port_);
      }
      if (!reaches) {
        Problem(where, absl::StrCat(at, ".clientConfig.service.port: ", port,
                                    " does not reach the control plane's webhook port ",
                                    webhook_port_, " through the Service"));
      }
    }
    if (Text(Field(target, "path")) != "/inject") {
      Problem(where, absl::StrCat(at, ".clientConfig.service.path: must be /inject"));
    }
    bool excludes_own = false;
    for (const YAML::Node& e : Field(Field(hook, "namespaceSelector"), "matchExpressions")) {
      if (Text(Field(e, "key")) != "kubernetes.io/metadata.name" ||
          Text(Field(e, "operator")) != "NotIn")
        continue;
      for (const YAML::Node& v : Field(e, "values")) excludes_own = excludes_own || Text(v) == ns_;
    }
    if (!excludes_own) {
      Problem(where, absl::StrCat(at,
                                  ".namespaceSelector: does not exclude the control plane's "
                                  "namespace \"",
                                  ns_,
                                  "\" (kubernetes.io/metadata.name NotIn): with failurePolicy "
                                  "Fail its own pods could not be created while it is down"));
    }
    const std::string bundle = Text(Field(Field(hook, "clientConfig"), "caBundle"));
    std::string pem;
    if (!bundle.empty() && (!absl::Base64Unescape(bundle, &pem) ||
                            pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)) {
      Problem(where, absl::StrCat(at, ".clientConfig.caBundle: not base64 of PEM certificates"));
    }
  }

  static constexpr char kArgsField[] = "spec.template.spec.containers[0].args";

  const std::vector<YAML::Node>& objects_;
  std::vector<std::string> problems_;
  YAML::Node deployment_;
  std::string name_;  // "Deployment \"NAME\""
  std::string ns_;
  YAML::Node spec_, pod_, pod_labels_, container_, args_;
  std::string webhook_port_;
  std::string account_;
  std::set<std::string> granted_;  // "group/resource/verb"
  YAML::Node service_{YAML::NodeType::Undefined};
};

}  // namespace

std::vector<std::string> CheckInstall(const std::vector<YAML::Node>& objects) {
  try {
    return InstallCheck(objects).Run();
  } catch (const YAML::Exception& e) {
    // A shape no check expected (a list where a map belongs): said, never thrown.
    return {absl::StrCat("the objects do not have the shape of Kubernetes objects: ", e.what())};
  }
}

}  // namespace meshlet::controlplane::install
