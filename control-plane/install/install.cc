#include "control-plane/install/install.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/field_path.h"
#include "common/net/address.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_checks.h"
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
         kind == "MutatingWebhookConfiguration";
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
          {"replicas", "control-plane replicas (1; more need etcd)"},
          {"etcd",
           "https://HOST:PORT[,HOST:PORT...]: keep the store in an existing etcd, shared "
           "by the replicas (with etcd.tlsSecret); bundled: in a three-member etcd installed "
           "with it, over TLS with client certificates (default: a file store on the data "
           "volume)"},
          {"etcd.image", "the bundled etcd's image (registry.k8s.io/etcd:3.5.16-0)"},
          {"etcd.storageSize", "each bundled etcd member's claim (1Gi)"},
          {"etcd.certificateDays",
           "the lifetime of the bundled etcd's certificates, made once by the install Job "
           "(3650)"},
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
          {"webhook.failurePolicy", "Fail (default: no pod starts without its sidecar) or Ignore"}};
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

absl::StatusOr<std::vector<YAML::Node>> Render(const InstallOptions& options,
                                               absl::string_view version) {
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
  const bool bundled = options.etcd == kBundledEtcd;
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
  const bool persistent = options.persistent_store && options.etcd.empty();
  absl::StatusOr<std::vector<YAML::Node>> kustomization = LoadManifest("base/kustomization.yaml");
  if (!kustomization.ok()) return kustomization.status();
  const YAML::Node base = (*kustomization)[0];
  std::vector<YAML::Node> objects;
  for (const YAML::Node& resource : base["resources"]) {
    absl::StatusOr<std::vector<YAML::Node>> docs =
        LoadManifest(absl::StrCat("base/", resource.Scalar()));
    if (!docs.ok()) return docs.status();
    for (const YAML::Node& doc : *docs) {
      // The claim, or the install Job and the bundled etcd, go before the Deployment that uses
      // them.
      if (Text(doc["kind"]) == "Deployment") {
        std::vector<const char*> manifests;
        if (persistent) manifests.push_back("install/store.yaml");
        if (!options.etcd.empty()) manifests.push_back("etcd/secrets-job.yaml");
        if (bundled) manifests.push_back("etcd/etcd.yaml");
        for (const char* manifest : manifests) {
          absl::StatusOr<std::vector<YAML::Node>> store = LoadManifest(manifest);
          if (!store.ok()) return store.status();
          objects.insert(objects.end(), store->begin(), store->end());
        }
      }
      objects.push_back(doc);
    }
  }
  const YAML::Node labels = base["commonLabels"];
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
  // The control plane's image, as the kustomization's images transform gives it.
  auto image_of = [&](const YAML::Node& container) {
    for (const YAML::Node& image : base["images"]) {
      if (Text(container["image"]) == Text(image["name"])) {
        return options.image.empty() ? absl::StrCat(Text(image["name"]), ":", version)
                                     : options.image;
      }
    }
    return Text(container["image"]);
  };
  for (YAML::Node object : objects) {
    if (Text(object["kind"]) == "Job") {  // the install's Secrets (secrets.h)
      YAML::Node container = object["spec"]["template"]["spec"]["containers"][0];
      container["image"] = StringNode(image_of(container));
      AddArg(container, absl::StrCat("--set=namespace=", options.namespace_));
      AddArg(container, absl::StrCat("--set=etcd=", options.etcd));
      if (bundled) {
        AddArg(container,
               absl::StrCat("--set=etcd.certificateDays=", options.etcd_certificate_days));
      }
      continue;
    }
    if (Text(object["kind"]) == "StatefulSet") {  // the bundled etcd
      AddLabels(Child(Child(object["spec"], "selector"), "matchLabels"), labels);
      AddLabels(Child(Child(object["spec"]["template"], "metadata"), "labels"), labels);
      YAML::Node container = FirstContainer(object);
      if (!options.etcd_image.empty()) container["image"] = StringNode(options.etcd_image);
      if (!options.etcd_storage_size.empty()) {
        object["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
            StringNode(options.etcd_storage_size);
      }
      continue;
    }
    if (Text(object["kind"]) != "Deployment") continue;
    AddLabels(Child(Child(object["spec"], "selector"), "matchLabels"), labels);
    AddLabels(Child(Child(object["spec"]["template"], "metadata"), "labels"), labels);
    object["spec"]["replicas"] = IntNode(options.replicas);
    YAML::Node container = FirstContainer(object);
    // The images transform of the kustomization: name -> name:tag.
    container["image"] = StringNode(image_of(container));
    if (!options.proxy_image.empty()) {
      AddArg(container, absl::StrCat("--inject-proxy-image=", options.proxy_image));
    }
    if (!options.inject_mode.empty()) {
      AddArg(container, absl::StrCat("--inject-mode=", options.inject_mode));
    }
    if (!options.trust_domain.empty()) {
      AddArg(container, absl::StrCat("--trust-domain=", options.trust_domain));
    }
    if (!options.etcd.empty()) {
      // Replicas share the store: roll them one at a time, each named after its pod.
      object["spec"]["strategy"] = YAML::Node(YAML::NodeType::Map);
      object["spec"]["strategy"]["type"] = StringNode("RollingUpdate");
      object["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = IntNode(0);
      object["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = IntNode(1);
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
      // Secrets mounted read-only into the control plane alone.
      auto mount = [&](const char* volume_name, const std::string& secret, const char* dir) {
        YAML::Node volume(YAML::NodeType::Map);
        volume["name"] = StringNode(volume_name);
        volume["secret"]["secretName"] = StringNode(secret);
        volume["secret"]["defaultMode"] = IntNode(0440);
        object["spec"]["template"]["spec"]["volumes"].push_back(volume);
        YAML::Node mounted(YAML::NodeType::Map);
        mounted["name"] = StringNode(volume_name);
        mounted["mountPath"] = StringNode(dir);
        mounted["readOnly"] = YAML::Node(true);
        container["volumeMounts"].push_back(mounted);
      };
      constexpr char kStoreKeyDir[] = "/etc/meshlet/store-key";
      mount("store-key", kStoreKeySecret, kStoreKeyDir);
      AddArg(container,
             absl::StrCat("--store-encryption-key-file=", kStoreKeyDir, "/", kStoreKeyFile));
      const std::string client_secret = bundled ? kEtcdClientSecret : options.etcd_tls_secret;
      if (!client_secret.empty()) {
        constexpr char kEtcdTlsDir[] = "/etc/meshlet/etcd";
        mount("etcd-tls", client_secret, kEtcdTlsDir);
        AddArg(container, absl::StrCat("--etcd-cacert=", kEtcdTlsDir, "/ca.crt"));
        AddArg(container, absl::StrCat("--etcd-cert=", kEtcdTlsDir, "/tls.crt"));
        AddArg(container, absl::StrCat("--etcd-key=", kEtcdTlsDir, "/tls.key"));
      }
    }
    container["resources"]["requests"]["cpu"] = StringNode(options.cpu);
    container["resources"]["requests"]["memory"] = StringNode(options.memory);
    container["resources"]["limits"]["memory"] = StringNode(options.memory_limit);
    if (!claim.empty()) {
      YAML::Node volume(YAML::NodeType::Map);
      volume["name"] = StringNode("data");
      volume["persistentVolumeClaim"]["claimName"] = StringNode(claim);
      object["spec"]["template"]["spec"]["volumes"][0] = volume;
    }
  }
  return objects;
}

std::vector<YAML::Node> UninstallOrder(const std::vector<YAML::Node>& objects, bool keep_data) {
  std::vector<YAML::Node> out;
  for (auto it = objects.rbegin(); it != objects.rend(); ++it) {
    const std::string kind = Text(Field(*it, "kind"));
    if (keep_data && (kind == "Namespace" || kind == "PersistentVolumeClaim")) continue;
    out.push_back(*it);
  }
  return out;
}

namespace {

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

}  // namespace

namespace {

std::vector<std::string> Check(const std::vector<YAML::Node>& objects) {
  std::vector<std::string> problems;
  auto problem = [&](const std::string& where, absl::string_view what) {
    problems.push_back(absl::StrCat(where, ": ", what));
  };
  // The control plane's Deployment: meshlet-control-plane, or the one running its image.
  YAML::Node deployment;
  bool found = false;
  for (const YAML::Node& d : OfKind(objects, "Deployment")) {
    if (Text(Field(Field(d, "metadata"), "name")) == "meshlet-control-plane" ||
        Text(Field(TemplateContainer(d), "image")).find("meshlet-control-plane") !=
            std::string::npos) {
      deployment = d;
      found = true;
    }
  }
  if (!found) {
    problems.push_back(
        "no Deployment meshlet-control-plane (or running the meshlet-control-plane image)");
    return problems;
  }
  const std::string deployment_name = Name(deployment);
  const std::string ns = Text(Field(Field(deployment, "metadata"), "namespace"));
  const YAML::Node spec = Field(deployment, "spec");
  const YAML::Node pod = Field(Field(spec, "template"), "spec");
  const YAML::Node pod_labels = Field(Field(Field(spec, "template"), "metadata"), "labels");
  const YAML::Node container = TemplateContainer(deployment);
  const YAML::Node args = Field(container, "args");
  if (ns.empty()) problem(deployment_name, "metadata.namespace: missing");
  int64_t replicas = 1;
  const absl::StatusOr<EtcdUrlParts> etcd_url = SplitEtcdUrl(ArgValue(args, "--store", ""));
  const bool etcd = etcd_url.ok();
  if (Field(spec, "replicas") &&
      (!inject::PlainInt(Text(Field(spec, "replicas")), &replicas) || (replicas > 1 && !etcd))) {
    problem(deployment_name,
            "spec.replicas: must be 1 unless the store is etcd (--store=https://...): the file "
            "store has one writer");
  }
  auto has_arg = [&](absl::string_view flag) {
    for (const YAML::Node& a : args) {
      if (Text(a) == flag || absl::StartsWith(Text(a), absl::StrCat(flag, "="))) return true;
    }
    return false;
  };
  const std::string args_field = "spec.template.spec.containers[0].args";
  if (etcd && !has_arg("--store-encryption-key-file")) {
    problem(deployment_name,
            absl::StrCat(args_field,
                         ": an etcd --store without --store-encryption-key-file (the control "
                         "plane refuses to start: it keeps the API token and CA root in etcd "
                         "encrypted with that key)"));
  }
  if (etcd && etcd_url->tls && !has_arg("--etcd-cacert")) {
    problem(deployment_name,
            absl::StrCat(args_field,
                         ": an https:// --store without --etcd-cacert (the control "
                         "plane refuses to start)"));
  }
  if (etcd && !etcd_url->tls && !has_arg("--etcd-insecure-plaintext")) {
    problem(deployment_name,
            absl::StrCat(args_field,
                         ": an http:// --store without --etcd-insecure-plaintext (the "
                         "control plane refuses a plaintext etcd)"));
  }
  if (Text(Field(Field(Field(Field(spec, "template"), "metadata"), "annotations"),
                 inject::kInjectKey)) != "false") {
    problem(deployment_name,
            "spec.template.metadata.annotations: sidecar.meshlet.io/inject must be \"false\" "
            "(the control plane does not run with a sidecar of its own)");
  }
  bool pod_namespace = false;
  for (const YAML::Node& env : Field(container, "env")) {
    pod_namespace = pod_namespace || (Text(Field(env, "name")) == "POD_NAMESPACE" &&
                                      Text(Field(Field(Field(env, "valueFrom"), "fieldRef"),
                                                 "fieldPath")) == "metadata.namespace");
  }
  if (!pod_namespace) {
    problem(deployment_name,
            "spec.template.spec.containers[0].env: POD_NAMESPACE from fieldRef metadata.namespace "
            "is missing (the control plane's identity and certificate names come from it)");
  }
  const std::string webhook_address = ArgValue(args, "--webhook-address", "0.0.0.0:15017");
  const std::string webhook_port = webhook_address.substr(webhook_address.rfind(':') + 1);
  std::set<std::string> container_ports;
  for (const YAML::Node& p : Field(container, "ports")) {
    container_ports.insert(Text(Field(p, "containerPort")));
  }
  if (webhook_address != "off" && !container_ports.count(webhook_port)) {
    problem(deployment_name, absl::StrCat("spec.template.spec.containers[0].ports: no port ",
                                          webhook_port, " for --webhook-address"));
  }
  // The ServiceAccount and its RBAC.
  const std::string account = Text(Field(pod, "serviceAccountName"));
  bool account_found = false;
  for (const YAML::Node& sa : OfKind(objects, "ServiceAccount")) {
    account_found = account_found || Text(Field(Field(sa, "metadata"), "name")) == account;
  }
  if (!account_found) {
    problem(deployment_name, absl::StrCat("spec.template.spec.serviceAccountName: no "
                                          "ServiceAccount \"",
                                          account, "\" in the install"));
  }
  std::set<std::string> granted;  // "group/resource/verb[/name]"
  for (const YAML::Node& binding : OfKind(objects, "ClusterRoleBinding")) {
    bool ours = false;
    for (const YAML::Node& s : Field(binding, "subjects")) {
      ours = ours || (Text(Field(s, "kind")) == "ServiceAccount" &&
                      Text(Field(s, "name")) == account && Text(Field(s, "namespace")) == ns);
    }
    if (!ours) continue;
    const std::string role = Text(Field(Field(binding, "roleRef"), "name"));
    for (const YAML::Node& r : OfKind(objects, "ClusterRole")) {
      if (Text(Field(Field(r, "metadata"), "name")) != role) continue;
      for (const YAML::Node& rule : Field(r, "rules")) {
        for (const YAML::Node& g : Field(rule, "apiGroups")) {
          for (const YAML::Node& res : Field(rule, "resources")) {
            for (const YAML::Node& v : Field(rule, "verbs")) {
              granted.insert(absl::StrCat(Text(g), "/", Text(res), "/", Text(v)));
            }
          }
        }
      }
    }
  }
  if (!granted.count("authentication.k8s.io/tokenreviews/create")) {
    problems.push_back(absl::StrCat(
        "ClusterRole: the ServiceAccount \"", account, "\" in \"", ns,
        "\" may not create authentication.k8s.io tokenreviews: workloads presenting Kubernetes "
        "tokens would be refused certificates"));
  }
  if (!granted.count("authorization.k8s.io/subjectaccessreviews/create")) {
    problems.push_back(absl::StrCat(
        "ClusterRole: the ServiceAccount \"", account, "\" in \"", ns,
        "\" may not create authorization.k8s.io subjectaccessreviews: Kubernetes users would be "
        "refused by the API (meshctl with kubectl's credentials)"));
  }
  // The Service and the webhook.
  YAML::Node service(YAML::NodeType::Undefined);
  for (const YAML::Node& s : OfKind(objects, "Service")) {
    if (LabelsMatch(Field(Field(s, "spec"), "selector"), pod_labels)) service = s;
  }
  if (!service.IsDefined()) {
    problems.push_back(absl::StrCat("no Service selects the pods of ", deployment_name));
  }
  for (const YAML::Node& configuration : OfKind(objects, "MutatingWebhookConfiguration")) {
    const std::string where = Name(configuration);
    if (!granted.count("admissionregistration.k8s.io/mutatingwebhookconfigurations/patch")) {
      problem(where, "the control plane may not patch it: its caBundle stays as written");
    }
    int i = 0;
    for (const YAML::Node& hook : Field(configuration, "webhooks")) {
      const std::string at = absl::StrCat("webhooks[", i++, "]");
      const YAML::Node target = Field(Field(hook, "clientConfig"), "service");
      if (!Field(hook, "failurePolicy")) {
        problem(where, absl::StrCat(at, ".failurePolicy: not set (Fail or Ignore)"));
      }
      if (service.IsDefined() &&
          (Text(Field(target, "name")) != Text(Field(Field(service, "metadata"), "name")) ||
           Text(Field(target, "namespace")) != ns)) {
        problem(where, absl::StrCat(at, ".clientConfig.service: ", Text(Field(target, "namespace")),
                                    "/", Text(Field(target, "name")), " is not the Service ", ns,
                                    "/", Text(Field(Field(service, "metadata"), "name"))));
      } else if (service.IsDefined()) {
        const std::string port = Field(target, "port") ? Text(Field(target, "port")) : "443";
        bool reaches = false;
        for (const YAML::Node& p : Field(Field(service, "spec"), "ports")) {
          reaches = reaches || (Text(Field(p, "port")) == port &&
                                Text(Field(p, "targetPort")) == webhook_port);
        }
        if (!reaches) {
          problem(where, absl::StrCat(at, ".clientConfig.service.port: ", port,
                                      " does not reach the control plane's webhook port ",
                                      webhook_port, " through the Service"));
        }
      }
      if (Text(Field(target, "path")) != "/inject") {
        problem(where, absl::StrCat(at, ".clientConfig.service.path: must be /inject"));
      }
      bool excludes_own = false;
      for (const YAML::Node& e : Field(Field(hook, "namespaceSelector"), "matchExpressions")) {
        if (Text(Field(e, "key")) != "kubernetes.io/metadata.name" ||
            Text(Field(e, "operator")) != "NotIn")
          continue;
        for (const YAML::Node& v : Field(e, "values")) excludes_own = excludes_own || Text(v) == ns;
      }
      if (!excludes_own) {
        problem(where,
                absl::StrCat(at,
                             ".namespaceSelector: does not exclude the control plane's "
                             "namespace \"",
                             ns,
                             "\" (kubernetes.io/metadata.name NotIn): with failurePolicy Fail "
                             "its own pods could not be created while it is down"));
      }
      const std::string bundle = Text(Field(Field(hook, "clientConfig"), "caBundle"));
      std::string pem;
      if (!bundle.empty() && (!absl::Base64Unescape(bundle, &pem) ||
                              pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)) {
        problem(where, absl::StrCat(at, ".clientConfig.caBundle: not base64 of PEM certificates"));
      }
    }
  }
  return problems;
}

}  // namespace

std::vector<std::string> CheckInstall(const std::vector<YAML::Node>& objects) {
  try {
    return Check(objects);
  } catch (const YAML::Exception& e) {
    // A shape no check expected (a list where a map belongs): said, never thrown.
    return {absl::StrCat("the objects do not have the shape of Kubernetes objects: ", e.what())};
  }
}

}  // namespace meshlet::controlplane::install
