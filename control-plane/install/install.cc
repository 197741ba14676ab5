#include "control-plane/install/install.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/status.h"
#include "common/config/field_path.h"
#include "common/net/address.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_checks.h"
#include "control-plane/inject/revision.h"
#include "control-plane/install/manifests.h"
#include "control-plane/install/secret_names.h"
#include "control-plane/store/etcd_url.h"

namespace meshlet::controlplane::install {
namespace {

using inject::Field;
using inject::IntNode;
using inject::StringNode;
using inject::Text;

constexpr char kDefaultNamespace[] = "meshlet-system";
// The install Job's Role (k8s/etcd/secrets-job.yaml).
constexpr char kInstallRole[] = "meshlet-install";
// The CNI node agent's image and the name its objects start with (k8s/cni).
constexpr char kCniImage[] = "meshlet-cni";

const char* Manifest(absl::string_view name) {
  for (const EmbeddedFile* f = kManifests; f->name != nullptr; ++f) {
    if (name == f->name) return f->content;
  }
  return nullptr;
}

absl::StatusOr<std::vector<YAML::Node>> LoadManifest(absl::string_view name) {
  const char* text = Manifest(name);
  if (text == nullptr) return absl::InternalError(absl::StrCat("no embedded manifest ", name));
  std::vector<YAML::Node> out;
  try {
    for (const YAML::Node& doc : YAML::LoadAll(text)) {
      if (doc.IsMap()) out.push_back(doc);
    }
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("embedded manifest ", name, ": ", e.what()));
  }
  return out;
}

bool ClusterScoped(const std::string& kind) {
  return kind == "Namespace" || kind == "ClusterRole" || kind == "ClusterRoleBinding" ||
         kind == "MutatingWebhookConfiguration" || kind == "GatewayClass";
}

// map[key], created as a map when missing.
YAML::Node Child(YAML::Node map, const char* key) {
  if (!map[key].IsMap()) map[key] = YAML::Node(YAML::NodeType::Map);
  return map[key];
}

void AddLabels(YAML::Node map, const YAML::Node& labels) {
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    map[it->first.Scalar()] = StringNode(it->second.Scalar());
  }
}

YAML::Node FirstContainer(const YAML::Node& deployment) {
  return deployment["spec"]["template"]["spec"]["containers"][0];
}

void AddArg(YAML::Node container, const std::string& arg) {
  container["args"].push_back(StringNode(arg));
}

absl::Status CheckQuantity(absl::string_view key, absl::string_view value) {
  absl::StatusOr<double> q = inject::ParseQuantity(value);
  if (!q.ok() || *q <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, "=\"", value,
                     "\": must be a positive Kubernetes quantity such as 100m, 128Mi or 1Gi"));
  }
  return absl::OkStatus();
}

// The bundled etcd's members (k8s/etcd/etcd.yaml) by their stable names.
std::string BundledEtcdUrl(absl::string_view namespace_) {
  std::vector<std::string> members;
  for (int i = 0; i < kBundledEtcdMembers; ++i) {
    members.push_back(absl::StrCat("meshlet-etcd-", i, ".meshlet-etcd.", namespace_, ".svc:2379"));
  }
  return absl::StrCat("https://", absl::StrJoin(members, ","));
}

}  // namespace

std::vector<std::pair<std::string, std::string>> SetKeys() {
  return {{"namespace", "the control plane's namespace (meshlet-system)"},
          {"image", "the control plane's image (meshlet-control-plane:<version>)"},
          {"proxyImage", "the proxy image the webhook injects (meshlet-proxy:<version>)"},
          {"injectMode", "native or classic sidecars (native)"},
          {"trustDomain", "the mesh's SPIFFE trust domain (cluster.local)"},
          {"clusterName",
           "this cluster's name among linked clusters, a DNS label (docs/multicluster.md; "
           "default: none, multicluster off)"},
          {"replicas", "control-plane replicas (1; more need etcd)"},
          {"etcd",
           "https://HOST:PORT[,HOST:PORT...]: keep the store in an existing etcd, shared "
           "by the replicas (with etcd.tlsSecret); bundled: in a three-member etcd installed "
           "with it, over TLS with client certificates (default: a file store on the data "
           "volume)"},
          {"etcd.image", "the bundled etcd's image (registry.k8s.io/etcd:3.5.16-0)"},
          {"etcd.storageSize", "each bundled etcd member's claim (1Gi)"},
          {"etcd.certificateDays",
           "the lifetime of the bundled etcd's member and client certificates, renewed "
           "under the kept CA by the install Job and its CronJob (365)"},
          {"etcd.caDays", "the lifetime of the bundled etcd's CA, made once (3650)"},
          {"etcd.renewBeforeDays",
           "renew a bundled etcd certificate when less than this many days of it are left "
           "(30; below etcd.certificateDays)"},
          {"etcd.tlsSecret",
           "a Secret with ca.crt, tls.crt and tls.key: TLS with a client certificate to an "
           "https:// etcd"},
          {"etcd.insecurePlaintext",
           "true: allow an http:// etcd, in plaintext (tests only; default false)"},
          {"resources.requests.cpu", "the control plane's CPU request (100m)"},
          {"resources.requests.memory", "its memory request (128Mi)"},
          {"resources.limits.memory", "its memory limit (1Gi)"},
          {"store", "persistent (a PersistentVolumeClaim, default) or ephemeral (an emptyDir)"},
          {"storeSize", "the claim's size (1Gi)"},
          {"webhook.failurePolicy", "Fail (default: no pod starts without its sidecar) or Ignore"},
          {"revision",
           "install as this control-plane revision, beside others (docs/upgrades.md): its "
           "objects named meshlet-control-plane-REVISION, its webhook injecting namespaces and "
           "pods labelled meshlet.io/rev=REVISION (default: the unnamed revision)"},
          {"cni",
           "true: traffic capture programmed by the meshlet-cni plugin on each node (the node "
           "agent's DaemonSet is installed, and injected pods need no capability); false: by a "
           "privileged init container in each pod (default)"},
          {"cniImage", "the CNI node agent's image (meshlet-cni:<version>)"},
          {"gateway",
           "true: the GatewayClass meshlet (k8s/gateway), whose Gateways the control plane "
           "accepts and writes status for; needs the Gateway API CRDs (default false)"},
          {"cniRepair",
           "what the CNI node agent does with a pod set up while meshlet-cni was not in the "
           "chain: evict (default; PodDisruptionBudgets hold, bare pods only reported), label "
           "(cni.meshlet.io/uncaptured=true) or off (report only)"},
          {"caSecret",
           "a Secret with tls.crt (the signing certificate and its chain) and tls.key the "
           "workload CA signs with; revisions side by side need the same one (default: a root "
           "generated on first start)"}};
}

absl::Status CheckEtcdCertificateDays(const InstallOptions& options) {
  if (options.etcd_renew_before_days >= options.etcd_certificate_days ||
      options.etcd_certificate_days > options.etcd_ca_days) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd.renewBeforeDays=", options.etcd_renew_before_days, ", etcd.certificateDays=",
        options.etcd_certificate_days, ", etcd.caDays=", options.etcd_ca_days,
        ": a certificate must outlast its renewal window (renewBeforeDays below "
        "certificateDays) and no longer than its CA (certificateDays at most caDays)"));
  }
  return absl::OkStatus();
}

absl::Status SetOption(InstallOptions& options, absl::string_view assignment) {
  std::pair<std::string, std::string> kv = absl::StrSplit(assignment, absl::MaxSplits('=', 1));
  const std::string& key = kv.first;
  const std::string& value = kv.second;
  if (assignment.find('=') == absl::string_view::npos || key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", assignment, "\": expected KEY=VALUE (meshctl help install)"));
  }
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(key, "=\"", value, "\": ", what));
  };
  if (key == "namespace") {
    if (!config::IsDnsLabel(value)) {
      return bad("must be a namespace name (a DNS label: lowercase letters, digits and '-')");
    }
    options.namespace_ = value;
  } else if (key == "image" || key == "proxyImage") {
    if (absl::Status s = inject::CheckImage(value); !s.ok()) return bad(s.message());
    (key == "image" ? options.image : options.proxy_image) = value;
  } else if (key == "injectMode") {
    if (!inject::ParseSidecarMode(value).ok()) return bad("must be native or classic");
    options.inject_mode = value;
  } else if (key == "trustDomain") {
    if (value.empty() || value.size() > 255 || value.find_first_of("/:@ ") != std::string::npos ||
        absl::AsciiStrToLower(value) != value) {
      return bad("must be a trust domain: lowercase, without '/', ':' or '@' (cluster.local)");
    }
    options.trust_domain = value;
  } else if (key == "clusterName") {
    if (!config::IsDnsLabel(value))
      return bad("must be a DNS label (lowercase letters, digits, '-')");
    options.cluster_name = value;
  } else if (key == "replicas") {
    int n = 0;
    if (!absl::SimpleAtoi(value, &n) || n < 1) return bad("must be a positive integer");
    options.replicas = n;
  } else if (key == "etcd" && value == kBundledEtcd) {
    options.etcd = value;
  } else if (key == "etcd.image") {
    if (absl::Status s = inject::CheckImage(value); !s.ok()) return bad(s.message());
    options.etcd_image = value;
  } else if (key == "etcd") {
    // Checked for form only: the names are the cluster's, which need not resolve here.
    if (absl::StatusOr<EtcdUrlParts> url = SplitEtcdUrl(value); !url.ok()) {
      return bad("must be https://HOST:PORT[,HOST:PORT...], http://... or bundled");
    }
    options.etcd = value;
  } else if (key == "etcd.certificateDays") {
    int days = 0;
    if (!absl::SimpleAtoi(value, &days) || days < 1 || days > 36500) {
      return bad("must be a whole number of days from 1 to 36500");
    }
    options.etcd_certificate_days = days;
  } else if (key == "etcd.caDays" || key == "etcd.renewBeforeDays") {
    int days = 0;
    if (!absl::SimpleAtoi(value, &days) || days < 1 || days > 36500) {
      return bad("must be a whole number of days from 1 to 36500");
    }
    (key == "etcd.caDays" ? options.etcd_ca_days : options.etcd_renew_before_days) = days;
  } else if (key == "etcd.insecurePlaintext") {
    if (value != "true" && value != "false") return bad("must be true or false");
    options.etcd_insecure_plaintext = value == "true";
  } else if (key == "etcd.tlsSecret") {
    if (!config::IsDnsSubdomain(value)) return bad("must be a Secret name (a DNS subdomain)");
    options.etcd_tls_secret = value;
  } else if (key == "resources.requests.cpu" || key == "resources.requests.memory" ||
             key == "resources.limits.memory" || key == "storeSize" || key == "etcd.storageSize") {
    if (absl::Status s = CheckQuantity(key, value); !s.ok()) return s;
    (key == "resources.requests.cpu"      ? options.cpu
     : key == "resources.requests.memory" ? options.memory
     : key == "resources.limits.memory"   ? options.memory_limit
     : key == "etcd.storageSize"          ? options.etcd_storage_size
                                          : options.store_size) = value;
  } else if (key == "store") {
    if (value != "persistent" && value != "ephemeral")
      return bad("must be persistent or ephemeral");
    options.persistent_store = value == "persistent";
  } else if (key == "revision") {
    absl::StatusOr<std::string> revision = inject::ParseRevision(value);
    if (!revision.ok()) return bad(revision.status().message());
    options.revision = *std::move(revision);
  } else if (key == "caSecret") {
    if (!config::IsDnsSubdomain(value)) return bad("must be a Secret name (a DNS subdomain)");
    options.ca_secret = value;
  } else if (key == "cni") {
    if (value != "true" && value != "false") return bad("must be true or false");
    options.cni = value == "true";
  } else if (key == "gateway") {
    if (value != "true" && value != "false") return bad("must be true or false");
    options.gateway = value == "true";
  } else if (key == "cniRepair") {
    if (value != "evict" && value != "label" && value != "off") {
      return bad("must be evict, label or off");
    }
    options.cni_repair = value;
  } else if (key == "cniImage") {
    if (absl::Status s = inject::CheckImage(value); !s.ok()) return bad(s.message());
    options.cni_image = value;
  } else if (key == "webhook.failurePolicy") {
    if (value != "Fail" && value != "Ignore") return bad("must be Fail or Ignore");
    options.failure_policy = value;
  } else {
    std::vector<std::string> keys;
    for (const auto& [k, unused] : SetKeys()) keys.push_back(k);
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --set key \"", key, "\"; known: ", absl::StrJoin(keys, ", ")));
  }
  return absl::OkStatus();
}

namespace {

// Options that do not go together, refused before anything is rendered.
absl::Status CheckRenderOptions(const InstallOptions& options) {
  const bool bundled = options.etcd == kBundledEtcd;
  RETURN_IF_ERROR(CheckEtcdCertificateDays(options));
  if (options.replicas > 1 && options.etcd.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "replicas=", options.replicas,
        ": more than one replica needs a shared store; add --set etcd=bundled or --set "
        "etcd=https://HOST:PORT (the file store has one writer)"));
  }
  if ((!options.etcd_tls_secret.empty() || options.etcd_insecure_plaintext) &&
      options.etcd.empty()) {
    return absl::InvalidArgumentError(
        "etcd.tlsSecret and etcd.insecurePlaintext: need --set etcd=https://HOST:PORT (the store "
        "they are for)");
  }
  if (bundled && (!options.etcd_tls_secret.empty() || options.etcd_insecure_plaintext)) {
    return absl::InvalidArgumentError(
        "etcd.tlsSecret and etcd.insecurePlaintext: for an etcd of your own; the bundled etcd "
        "speaks TLS with the certificates the install makes");
  }
  if (!bundled && (!options.etcd_image.empty() || !options.etcd_storage_size.empty())) {
    return absl::InvalidArgumentError(
        "etcd.image and etcd.storageSize: only with --set etcd=bundled");
  }
  if (!options.etcd.empty() && !bundled) {
    const bool tls = SplitEtcdUrl(options.etcd)->tls;
    if (tls && options.etcd_tls_secret.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd=", options.etcd,
          ": TLS to etcd needs --set etcd.tlsSecret=NAME (a Secret with ca.crt, and tls.crt and "
          "tls.key for the client certificate)"));
    }
    if (!tls && !options.etcd_insecure_plaintext) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd=", options.etcd,
          ": a plaintext etcd is refused (its contents, the CA key among them, would cross the "
          "network in clear); use https:// with etcd.tlsSecret, or --set "
          "etcd.insecurePlaintext=true for a test cluster"));
    }
    if (!tls && !options.etcd_tls_secret.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd.tlsSecret: needs an https:// etcd, not ", options.etcd));
    }
  }
  return absl::OkStatus();
}

// k8s/base's objects in the kustomization's order; the store's claim, or the install Job and the
// bundled etcd, go before the Deployment that uses them.
absl::StatusOr<std::vector<YAML::Node>> LoadObjects(const InstallOptions& options,
                                                    const YAML::Node& base) {
  const bool persistent = options.persistent_store && options.etcd.empty();
  std::vector<YAML::Node> objects;
  for (const YAML::Node& resource : base["resources"]) {
    absl::StatusOr<std::vector<YAML::Node>> docs =
        LoadManifest(absl::StrCat("base/", resource.Scalar()));
    if (!docs.ok()) return docs.status();
    for (const YAML::Node& doc : *docs) {
      if (Text(doc["kind"]) == "Deployment") {
        std::vector<const char*> manifests;
        if (persistent) manifests.push_back("install/store.yaml");
        if (!options.etcd.empty()) manifests.push_back("etcd/secrets-job.yaml");
        if (options.etcd == kBundledEtcd) manifests.push_back("etcd/etcd.yaml");
        // The plugin on the nodes before the control plane injects pods that rely on it.
        if (options.cni) manifests.push_back("cni/cni.yaml");
        for (const char* manifest : manifests) {
          absl::StatusOr<std::vector<YAML::Node>> store = LoadManifest(manifest);
          if (!store.ok()) return store.status();
          objects.insert(objects.end(), store->begin(), store->end());
        }
      }
      objects.push_back(doc);
    }
  }
  // After the control plane that reads it: its read of the Gateways' Secrets, and the
  // GatewayClass (configuration, nothing runs it).
  if (options.gateway) {
    for (const char* manifest : {"gateway/rbac.yaml", "gateway/gatewayclass.yaml"}) {
      absl::StatusOr<std::vector<YAML::Node>> gateway = LoadManifest(manifest);
      if (!gateway.ok()) return gateway.status();
      objects.insert(objects.end(), gateway->begin(), gateway->end());
    }
  }
  return objects;
}

// Every object in the install's namespace with the common labels; the claim sized; the
// bindings' subjects and the webhook pointed at that namespace. Returns the claim's name, if
// there is one.
std::string PlaceObjects(std::vector<YAML::Node>& objects, const InstallOptions& options,
                         const YAML::Node& labels) {
  std::string claim;
  for (YAML::Node object : objects) {
    const std::string kind = Text(object["kind"]);
    YAML::Node metadata = Child(object, "metadata");
    AddLabels(Child(metadata, "labels"), labels);
    if (!ClusterScoped(kind)) metadata["namespace"] = StringNode(options.namespace_);
    if (kind == "Namespace") metadata["name"] = StringNode(options.namespace_);
    if (kind == "PersistentVolumeClaim") {
      claim = Text(metadata["name"]);
      object["spec"]["resources"]["requests"]["storage"] = StringNode(options.store_size);
    }
    if (kind == "ClusterRoleBinding" || kind == "RoleBinding") {
      for (YAML::Node subject : object["subjects"]) {
        subject["namespace"] = StringNode(options.namespace_);
      }
    }
    if (kind == "Service") AddLabels(Child(object["spec"], "selector"), labels);
    if (kind == "PodDisruptionBudget") {
      AddLabels(Child(Child(object["spec"], "selector"), "matchLabels"), labels);
    }
    if (kind == "MutatingWebhookConfiguration") {
      for (YAML::Node hook : object["webhooks"]) {
        hook["failurePolicy"] = StringNode(options.failure_policy);
        hook["clientConfig"]["service"]["namespace"] = StringNode(options.namespace_);
        for (YAML::Node expression : hook["namespaceSelector"]["matchExpressions"]) {
          if (Text(expression["key"]) != "kubernetes.io/metadata.name") continue;
          for (YAML::Node value : expression["values"]) {
            if (value.Scalar() == kDefaultNamespace) value = StringNode(options.namespace_);
          }
        }
      }
    }
  }
  return claim;
}

// The control plane's image for `container`, as the kustomization's images transform gives it
// (name -> name:version), or --set image.
std::string ImageOf(const YAML::Node& base, const InstallOptions& options,
                    absl::string_view version, const YAML::Node& container) {
  for (const YAML::Node& image : base["images"]) {
    if (Text(container["image"]) == Text(image["name"])) {
      return options.image.empty() ? absl::StrCat(Text(image["name"]), ":", version)
                                   : options.image;
    }
  }
  return Text(container["image"]);
}

// The Job that makes the install's Secrets (secrets.h).
void SetUpSecretsJob(YAML::Node job, const InstallOptions& options, const std::string& image) {
  YAML::Node container = job["spec"]["template"]["spec"]["containers"][0];
  container["image"] = StringNode(image);
  AddArg(container, absl::StrCat("--set=namespace=", options.namespace_));
  AddArg(container, absl::StrCat("--set=etcd=", options.etcd));
  if (options.etcd == kBundledEtcd) {
    AddArg(container, absl::StrCat("--set=etcd.certificateDays=", options.etcd_certificate_days));
    AddArg(container, absl::StrCat("--set=etcd.caDays=", options.etcd_ca_days));
    AddArg(container, absl::StrCat("--set=etcd.renewBeforeDays=", options.etcd_renew_before_days));
  }
}

// The install Job's Role for an etcd of one's own: create, and get on the store key alone (the
// bundled etcd's CA and certificates are not made, so not read nor renewed).
void KeepStoreKeyRulesOnly(YAML::Node role) {
  YAML::Node rules(YAML::NodeType::Sequence);
  for (YAML::Node rule : role["rules"]) {
    const std::string verb = Text(rule["verbs"][0]);
    if (verb == "update") continue;
    if (verb == "get") {
      rule["resourceNames"] = YAML::Node(YAML::NodeType::Sequence);
      rule["resourceNames"].push_back(StringNode(kStoreKeySecret));
    }
    rules.push_back(rule);
  }
  role["rules"] = rules;
}

// The bundled etcd's StatefulSet.
void SetUpBundledEtcd(YAML::Node etcd, const InstallOptions& options, const YAML::Node& labels) {
  AddLabels(Child(Child(etcd["spec"], "selector"), "matchLabels"), labels);
  AddLabels(Child(Child(etcd["spec"]["template"], "metadata"), "labels"), labels);
  YAML::Node container = FirstContainer(etcd);
  if (!options.etcd_image.empty()) container["image"] = StringNode(options.etcd_image);
  if (!options.etcd_storage_size.empty()) {
    etcd["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        StringNode(options.etcd_storage_size);
  }
}

// A Secret mounted read-only at `dir` into the control plane alone.
void MountSecret(YAML::Node deployment, YAML::Node container, const char* volume_name,
                 const std::string& secret, const char* dir) {
  YAML::Node volume(YAML::NodeType::Map);
  volume["name"] = StringNode(volume_name);
  volume["secret"]["secretName"] = StringNode(secret);
  volume["secret"]["defaultMode"] = IntNode(0440);
  deployment["spec"]["template"]["spec"]["volumes"].push_back(volume);
  YAML::Node mounted(YAML::NodeType::Map);
  mounted["name"] = StringNode(volume_name);
  mounted["mountPath"] = StringNode(dir);
  mounted["readOnly"] = YAML::Node(true);
  container["volumeMounts"].push_back(mounted);
}

// Replicas that share an etcd store: rolled one at a time, each named after its pod, with the
// store's encryption key and client certificate mounted.
void UseSharedStore(YAML::Node deployment, YAML::Node container, const InstallOptions& options) {
  const bool bundled = options.etcd == kBundledEtcd;
  deployment["spec"]["strategy"] = YAML::Node(YAML::NodeType::Map);
  deployment["spec"]["strategy"]["type"] = StringNode("RollingUpdate");
  deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = IntNode(0);
  deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = IntNode(1);
  AddArg(container,
         absl::StrCat("--store=", bundled ? BundledEtcdUrl(options.namespace_) : options.etcd));
  if (options.etcd_insecure_plaintext) AddArg(container, "--etcd-insecure-plaintext");
  AddArg(container, "--replica-name=$(POD_NAME)");
  // The others forward telemetry to this pod's discovery port (an IP alone: IPv6 too).
  AddArg(container, "--replica-address=$(POD_IP)");
  for (const auto& [name, field] :
       {std::pair<const char*, const char*>{"POD_NAME", "metadata.name"},
        {"POD_IP", "status.podIP"}}) {
    YAML::Node env(YAML::NodeType::Map);
    env["name"] = StringNode(name);
    env["valueFrom"]["fieldRef"]["fieldPath"] = StringNode(field);
    container["env"].push_back(env);
  }
  constexpr char kStoreKeyDir[] = "/etc/meshlet/store-key";
  MountSecret(deployment, container, "store-key", kStoreKeySecret, kStoreKeyDir);
  AddArg(container, absl::StrCat("--store-encryption-key-file=", kStoreKeyDir, "/", kStoreKeyFile));
  const std::string client_secret = bundled ? kEtcdClientSecret : options.etcd_tls_secret;
  if (!client_secret.empty()) {
    constexpr char kEtcdTlsDir[] = "/etc/meshlet/etcd";
    MountSecret(deployment, container, "etcd-tls", client_secret, kEtcdTlsDir);
    AddArg(container, absl::StrCat("--etcd-cacert=", kEtcdTlsDir, "/ca.crt"));
    AddArg(container, absl::StrCat("--etcd-cert=", kEtcdTlsDir, "/tls.crt"));
    AddArg(container, absl::StrCat("--etcd-key=", kEtcdTlsDir, "/tls.key"));
  }
}

// The control plane's Deployment: labels, replicas, image, the flags the options ask for, the
// shared store, resources, the file store's claim.
void SetUpControlPlane(YAML::Node deployment, const InstallOptions& options,
                       const YAML::Node& labels, const std::string& image,
                       const std::string& claim) {
  AddLabels(Child(Child(deployment["spec"], "selector"), "matchLabels"), labels);
  AddLabels(Child(Child(deployment["spec"]["template"], "metadata"), "labels"), labels);
  deployment["spec"]["replicas"] = IntNode(options.replicas);
  YAML::Node container = FirstContainer(deployment);
  container["image"] = StringNode(image);
  if (!options.proxy_image.empty()) {
    AddArg(container, absl::StrCat("--inject-proxy-image=", options.proxy_image));
  }
  if (!options.inject_mode.empty()) {
    AddArg(container, absl::StrCat("--inject-mode=", options.inject_mode));
  }
  if (!options.trust_domain.empty()) {
    AddArg(container, absl::StrCat("--trust-domain=", options.trust_domain));
  }
  if (!options.cluster_name.empty()) {
    AddArg(container, absl::StrCat("--cluster-name=", options.cluster_name));
  }
  if (!options.etcd.empty()) UseSharedStore(deployment, container, options);
  container["resources"]["requests"]["cpu"] = StringNode(options.cpu);
  container["resources"]["requests"]["memory"] = StringNode(options.memory);
  container["resources"]["limits"]["memory"] = StringNode(options.memory_limit);
  if (!claim.empty()) {
    YAML::Node volume(YAML::NodeType::Map);
    volume["name"] = StringNode("data");
    volume["persistentVolumeClaim"]["claimName"] = StringNode(claim);
    deployment["spec"]["template"]["spec"]["volumes"][0] = volume;
  }
  if (!options.ca_secret.empty()) {
    constexpr char kCaDir[] = "/etc/meshlet/ca";
    MountSecret(deployment, container, "ca", options.ca_secret, kCaDir);
    AddArg(container, absl::StrCat("--ca-cert=", kCaDir, "/tls.crt"));
    AddArg(container, absl::StrCat("--ca-key=", kCaDir, "/tls.key"));
  }
  if (!options.revision.empty()) {
    AddArg(container, absl::StrCat("--revision=", options.revision));
  }
  if (options.cni) AddArg(container, "--inject-capture=cni");
}

// The CNI node agent's DaemonSet (k8s/cni): the common labels in its selector, its image as
// k8s/cni's kustomization names it, or --set cniImage.
void SetUpCniNodeAgent(YAML::Node daemonset, const InstallOptions& options,
                       const YAML::Node& labels, absl::string_view version) {
  AddLabels(Child(Child(daemonset["spec"], "selector"), "matchLabels"), labels);
  AddLabels(Child(Child(daemonset["spec"]["template"], "metadata"), "labels"), labels);
  FirstContainer(daemonset)["image"] = StringNode(
      options.cni_image.empty() ? absl::StrCat(kCniImage, ":", version) : options.cni_image);
  for (YAML::Node arg : FirstContainer(daemonset)["args"]) {
    if (absl::StartsWith(arg.Scalar(), "--repair-mode=")) {
      arg = StringNode(absl::StrCat("--repair-mode=", options.cni_repair));
    }
  }
}

// The node agent's ClusterRole (k8s/cni) for the repair mode: pods/eviction only to evict, patch
// on pods only to label.
void SetUpCniRole(YAML::Node role, const InstallOptions& options) {
  YAML::Node rules(YAML::NodeType::Sequence);
  for (YAML::Node rule : role["rules"]) {
    const bool eviction = rule["resources"][0].Scalar() == "pods/eviction";
    if (eviction && options.cni_repair != "evict") continue;
    if (rule["resources"][0].Scalar() == "pods" && options.cni_repair == "label") {
      rule["verbs"].push_back(StringNode("patch"));
    }
    rules.push_back(rule);
  }
  role["rules"] = rules;
}

YAML::Node Expression(absl::string_view key, absl::string_view op,
                      const std::vector<std::string>& values) {
  YAML::Node expression(YAML::NodeType::Map);
  expression["key"] = StringNode(key);
  expression["operator"] = StringNode(op);
  if (!values.empty()) expression["values"] = inject::StringListNode(values);
  return expression;
}

// A revision's names: meshlet-control-plane[-...] and meshlet-sidecar-injector wherever they
// stand as whole values (names, labels, selectors, service accounts, RBAC resourceNames).
void RenameForRevision(YAML::Node node, const std::string& revision) {
  if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    const std::string base = inject::kControlPlaneName;
    if (text == base || text == base + "-data" || text == base + "-leader-election" ||
        text == base + "-ca" || text == base + "-gateway") {
      node = StringNode(absl::StrCat(base, "-", revision, text.substr(base.size())));
    } else if (text == inject::InjectorConfigurationName("")) {
      node = StringNode(inject::InjectorConfigurationName(revision));
    }
    return;
  }
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) RenameForRevision(it->second, revision);
  } else if (node.IsSequence()) {
    for (YAML::Node item : node) RenameForRevision(item, revision);
  }
}

// The revision's webhooks: pods of namespaces labelled meshlet.io/rev=<revision> that carry no
// label of their own, and pods labelled so in any namespace; pods opted out never.
void SelectRevision(YAML::Node configuration, const std::string& revision,
                    const std::string& namespace_) {
  YAML::Node hooks = configuration["webhooks"];
  const std::vector<std::string> excluded = {"kube-system", namespace_};
  for (size_t i = 0; i < hooks.size(); ++i) {
    YAML::Node hook = hooks[i];
    const bool by_namespace = i == 0;
    hook["name"] = StringNode(
        absl::StrCat(by_namespace ? "namespace." : "object.", revision, ".sidecar.meshlet.io"));
    YAML::Node namespaces(YAML::NodeType::Sequence);
    if (by_namespace) namespaces.push_back(Expression(inject::kRevisionLabel, "In", {revision}));
    namespaces.push_back(Expression("kubernetes.io/metadata.name", "NotIn", excluded));
    hook["namespaceSelector"] = YAML::Node(YAML::NodeType::Map);
    hook["namespaceSelector"]["matchExpressions"] = namespaces;
    YAML::Node objects(YAML::NodeType::Sequence);
    objects.push_back(by_namespace ? Expression(inject::kRevisionLabel, "DoesNotExist", {})
                                   : Expression(inject::kRevisionLabel, "In", {revision}));
    objects.push_back(Expression("sidecar.meshlet.io/inject", "NotIn", {"false"}));
    hook["objectSelector"] = YAML::Node(YAML::NodeType::Map);
    hook["objectSelector"]["matchExpressions"] = objects;
  }
}

}  // namespace

absl::StatusOr<std::vector<YAML::Node>> Render(const InstallOptions& options,
                                               absl::string_view version) {
  RETURN_IF_ERROR(CheckRenderOptions(options));
  absl::StatusOr<std::vector<YAML::Node>> kustomization = LoadManifest("base/kustomization.yaml");
  if (!kustomization.ok()) return kustomization.status();
  const YAML::Node base = (*kustomization)[0];
  absl::StatusOr<std::vector<YAML::Node>> objects = LoadObjects(options, base);
  if (!objects.ok()) return objects.status();
  const YAML::Node labels = base["commonLabels"];
  const std::string claim = PlaceObjects(*objects, options, labels);
  for (YAML::Node object : *objects) {
    const std::string kind = Text(object["kind"]);
    if (kind == "Job") {
      SetUpSecretsJob(object, options, ImageOf(base, options, version, FirstContainer(object)));
    } else if (kind == "CronJob") {
      YAML::Node job = object["spec"]["jobTemplate"];
      SetUpSecretsJob(job, options, ImageOf(base, options, version, FirstContainer(job)));
    } else if (kind == "Role" && Text(object["metadata"]["name"]) == kInstallRole &&
               options.etcd != kBundledEtcd) {
      KeepStoreKeyRulesOnly(object);
    } else if (kind == "DaemonSet") {
      SetUpCniNodeAgent(object, options, labels, version);
    } else if (kind == "ClusterRole" &&
               absl::StartsWith(Text(object["metadata"]["name"]), kCniImage)) {
      SetUpCniRole(object, options);
    } else if (kind == "StatefulSet") {
      SetUpBundledEtcd(object, options, labels);
    } else if (kind == "Deployment") {
      SetUpControlPlane(object, options, labels,
                        ImageOf(base, options, version, FirstContainer(object)), claim);
    }
  }
  if (!options.revision.empty()) {
    for (YAML::Node object : *objects) {
      // The namespace and the operator roles are the mesh's, shared by its revisions.
      const std::string kind = Text(object["kind"]);
      if (kind == "Namespace" ||
          absl::StartsWith(Text(object["metadata"]["name"]), "meshlet-viewer") ||
          absl::StartsWith(Text(object["metadata"]["name"]), "meshlet-editor") ||
          absl::StartsWith(Text(object["metadata"]["name"]), "meshlet-admin")) {
        continue;
      }
      RenameForRevision(object, options.revision);
      if (kind == "MutatingWebhookConfiguration") {
        SelectRevision(object, options.revision, options.namespace_);
      }
    }
  }
  return objects;
}

absl::StatusOr<std::vector<YAML::Node>> Crds() {
  absl::StatusOr<std::vector<YAML::Node>> kustomization = LoadManifest("crds/kustomization.yaml");
  if (!kustomization.ok()) return kustomization.status();
  absl::StatusOr<std::vector<YAML::Node>> crds = LoadManifest("crds/crds.yaml");
  if (!crds.ok()) return crds.status();
  const YAML::Node labels = (*kustomization)[0]["commonLabels"];
  for (YAML::Node crd : *crds) AddLabels(Child(Child(crd, "metadata"), "labels"), labels);
  return crds;
}

std::vector<YAML::Node> UninstallOrder(const std::vector<YAML::Node>& objects, bool keep_data,
                                       bool revision) {
  std::vector<YAML::Node> out;
  for (auto it = objects.rbegin(); it != objects.rend(); ++it) {
    const std::string kind = Text(Field(*it, "kind"));
    if (keep_data && (kind == "Namespace" || kind == "PersistentVolumeClaim")) continue;
    const std::string name = Text(Field(Field(*it, "metadata"), "name"));
    if (revision &&
        (kind == "Namespace" || name == "meshlet-viewer" || name == "meshlet-editor" ||
         name == "meshlet-admin" || absl::StartsWith(name, kCniImage) || kind == "GatewayClass")) {
      continue;  // the mesh's, shared with its other revisions (the CNI node agent and the
                 // GatewayClass too)
    }
    out.push_back(*it);
  }
  return out;
}

}  // namespace meshlet::controlplane::install
