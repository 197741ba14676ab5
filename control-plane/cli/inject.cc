// inject: adds the meshlet sidecar to the Pods and pod templates of manifest files
// (control-plane/inject, docs/kubernetes.md). Needs no control plane.

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/config/yaml_proto.h"
#include "common/net/ip_prefix.h"
#include "common/tls/spiffe.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/documents.h"
#include "control-plane/inject/gateway_deployment.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {
namespace {

// A flag whose value `check` accepts, stored in `*out`.
flags::Flag CheckedFlag(std::string name, std::string value, std::string help, std::string* out,
                        absl::Status (*check)(absl::string_view)) {
  return {.name = std::move(name),
          .value = std::move(value),
          .help = std::move(help),
          .set = [out, check](absl::string_view v) {
            if (absl::Status s = check(v); !s.ok()) return s;
            *out = std::string(v);
            return absl::OkStatus();
          }};
}

// A flag's setter storing what `parse` makes of the value in `*out`.
template <typename T>
std::function<absl::Status(absl::string_view)> ParsedInto(
    T* out, absl::StatusOr<T> (*parse)(absl::string_view)) {
  return [out, parse](absl::string_view v) {
    absl::StatusOr<T> parsed = parse(v);
    if (!parsed.ok()) return parsed.status();
    *out = *parsed;
    return absl::OkStatus();
  };
}

// One document as it goes out: its text as it came in when injection left it unchanged
// (comments and formatting kept), else the injected tree.
struct OutputDocument {
  std::string text;
  YAML::Node node;
  bool changed = false;
};

class Inject final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {
        FileFlag(&files_, true),
        CheckedFlag("--proxy-image", "IMAGE",
                    absl::StrCat("the proxy image (default meshlet-proxy:", kMeshctlVersion,
                                 ", meshctl's version); the annotation sidecar.meshlet.io/"
                                 "proxyImage overrides it per pod"),
                    &proxy_image_, inject::CheckImage),
        CheckedFlag("--control-plane", "HOST:PORT",
                    "the control plane's xDS and CA address as pods reach it (default "
                    "meshlet-control-plane[-REVISION].meshlet-system.svc:15012)",
                    &control_plane_, inject::CheckHostPort),
        {.name = "--revision",
         .value = "NAME",
         .help = "the control-plane revision for pods without a meshlet.io/rev label of their "
                 "own or of their Namespace (when the input holds it): their sidecars talk to "
                 "meshlet-control-plane-NAME (default: the unnamed revision, \"default\"). A "
                 "pod labelled for another revision gets that one's sidecar "
                 "(docs/upgrades.md)",
         .set = ParsedInto(&revision_, inject::ParseRevision)},
        {.name = "--tag",
         .value = "TAG=REVISION",
         .help = "a revision tag (meshctl tag): pods and Namespaces labelled meshlet.io/rev=TAG "
                 "get REVISION's sidecar, and with TAG default so do those no label puts on a "
                 "revision; repeatable (the webhook knows its tags from their configurations)",
         .set =
             [this](absl::string_view v) {
               const size_t eq = v.find('=');
               if (eq == absl::string_view::npos) {
                 return absl::InvalidArgumentError("must be TAG=REVISION (prod=canary)");
               }
               absl::StatusOr<std::string> tag = inject::ParseTag(v.substr(0, eq));
               if (!tag.ok()) return tag.status();
               absl::StatusOr<std::string> revision = inject::ParseRevision(v.substr(eq + 1));
               if (!revision.ok()) return revision.status();
               tags_[*tag] = *revision;
               return absl::OkStatus();
             }},
        CheckedFlag("--trust-domain", "NAME",
                    "the mesh's trust domain, of the workloads' and the control plane's SPIFFE "
                    "ids (default cluster.local)",
                    &trust_domain_, tls::ValidateTrustDomain),
        {.name = "--mode",
         .value = "native|classic",
         .help = "native: the sidecar is an init container with restartPolicy Always, so the "
                 "app starts once it is ready (default; Kubernetes 1.29+); classic: a regular "
                 "container listed first. The annotation sidecar.meshlet.io/mode overrides it "
                 "per pod",
         .set = ParsedInto(&mode_, inject::ParseSidecarMode)},
        {.name = "--identity",
         .value = "kubernetes-token|join-token",
         .help = "how proxies prove their workload identity to the CA: the pod's projected "
                 "service-account token (default), or a join token from the Secret "
                 "meshlet-join-token-<service account> (meshctl token create -o secret; for "
                 "engines without service-account tokens, such as podman). The annotation "
                 "sidecar.meshlet.io/identity overrides it per pod",
         .set = ParsedInto(&identity_, inject::ParseIdentity)},
        {.name = "--trace-collector",
         .value = "HOST:PORT|control-plane|off",
         .help = "where proxies send spans: control-plane (the default) over OTLP/gRPC to the "
                 "control plane's discovery port, with the xDS channel's TLS and the workload "
                 "certificate, which the control plane records them under; HOST:PORT another "
                 "collector over OTLP/HTTP; off: no tracing",
         .set =
             [this](absl::string_view v) {
               if (v != inject::kTraceCollectorOff && v != inject::kTraceCollectorControlPlane) {
                 if (absl::Status s = inject::CheckHostPort(v); !s.ok()) return s;
               }
               trace_collector_ = std::string(v);
               return absl::OkStatus();
             }},
        flags::SwitchFlag(
            "--podman", &podman_,
            "for `podman kube play` (4.3), which lacks parts of a cluster: the proxy gets its "
            "namespace, service account and control plane as values and finds its pod's name "
            "and address itself (auto), the join token comes from a ConfigMap (meshctl token "
            "create -o configmap), restartPolicy Always becomes OnFailure (podman would rerun "
            "meshlet-init forever), the proxy publishes no port, and pods get the annotation "
            "io.podman.annotations.init.container.type: always. Use with --mode classic and "
            "--identity join-token (docs/kubernetes.md, Podman)"),
        flags::SwitchFlag(
            "--cni", &cni_,
            "capture by the node's meshlet-cni plugin instead of the meshlet-init container: the "
            "pod gets no container with capabilities, its status annotation marks it for the "
            "plugin, and the proxy runs as the Pod Security restricted level asks (non-root, "
            "ALL capabilities dropped, seccomp RuntimeDefault, no privilege escalation, "
            "read-only root). Needs meshlet-cni in the nodes' CNI chain; with --podman, in "
            "podman's CNI chain with the plugin's defaultNamespace (docs/kubernetes.md, CNI "
            "mode)"),
        flags::StringFlag(
            "--gateway-class", "NAME", &gateway_class_,
            "a Gateway (gateway.networking.k8s.io) of this GatewayClass is followed by the "
            "objects that run its proxy: the ServiceAccount, Deployment and Service "
            "NAME-CLASS the control plane keeps for it in a cluster (docs/gateway.md), written "
            "with these options; for engines where the control plane does not deploy "
            "gateways, such as podman"),
        OutputFlag(&output_, {"yaml", "json"},
                   "YAML documents (default), or JSON (a List when there are several)"),
    };
  }

  int Run(Session& session) override {
    if (!session.positional().empty()) return session.Fail(session.UsageFailure());
    inject::Options options;
    options.proxy_image =
        proxy_image_.empty() ? absl::StrCat("meshlet-proxy:", kMeshctlVersion) : proxy_image_;
    options.revision = revision_;
    options.tags = tags_;
    options.control_plane_address =
        !control_plane_.empty()
            ? control_plane_
            : inject::ControlPlaneDiscoveryAddress(revision_, options.control_plane_namespace);
    options.control_plane_service_account = inject::ControlPlaneName(revision_);
    if (!trust_domain_.empty()) options.trust_domain = trust_domain_;
    options.mode = mode_;
    options.identity = identity_;
    options.trace_collector = trace_collector_;
    options.version = kMeshctlVersion;
    options.podman = podman_;
    options.cni = cni_;
    if (absl::Status s = inject::ValidateOptions(options); !s.ok()) {
      return session.Fail({kExitUsage, std::string(s.message())});
    }
    std::ostream& err = session.io().err;
    std::vector<SourceFile> files;
    bool ok = ReadYamlFiles(session, files_, files);
    // The input's Namespaces labelled meshlet.io/rev choose the revision of their pods.
    for (const SourceFile& file : files) {
      for (const config::YamlDocument& doc : file.documents) {
        YAML::Node node;
        try {
          node = YAML::Load(doc.yaml);
        } catch (const YAML::Exception&) {
          continue;  // reported below, by injection
        }
        using inject::Field;
        if (inject::Text(Field(node, "kind")) != "Namespace" ||
            inject::Text(Field(node, "apiVersion")) != "v1") {
          continue;
        }
        const YAML::Node metadata = Field(node, "metadata");
        const YAML::Node label = Field(Field(metadata, "labels"), inject::kRevisionLabel);
        if (label.IsDefined() && label.IsScalar()) {
          options.namespace_revisions[inject::Text(Field(metadata, "name"))] = label.Scalar();
        }
      }
    }
    if (absl::Status s = inject::ValidateOptions(options); !s.ok()) {
      err << "error: " << s.message() << "\nnothing written\n";
      return kExitFailed;
    }
    std::vector<OutputDocument> documents;
    for (const SourceFile& file : files) {
      const std::string& source_name = file.name;
      for (const config::YamlDocument& doc : file.documents) {
        const std::string where = absl::StrCat(source_name, " (document ", doc.index + 1, ")");
        config::YamlParseOptions source;
        source.source_name = source_name;
        source.line_offset = doc.first_line - 1;
        absl::StatusOr<inject::Result> result =
            inject::Inject(YAML::Load(doc.yaml), options, source);
        if (!result.ok()) {
          err << "error: " << result.status().message() << " (document " << doc.index + 1 << ")\n";
          ok = false;
          continue;
        }
        for (const inject::PodResult& pod : result->pods) {
          if (pod.outcome == inject::Outcome::kOptedOut ||
              pod.outcome == inject::Outcome::kSkipped) {
            err << "not injected: " << where << ": " << pod.object << ": " << pod.reason << "\n";
          }
          for (const std::string& warning : pod.warnings) {
            err << "warning: " << where << ": " << pod.object << ": " << warning << "\n";
          }
        }
        documents.push_back({doc.yaml, result->document, result->changed});
        if (gateway_class_.empty()) continue;
        // A Gateway is followed by the objects that run its proxy; the Gateways among a List's
        // items (kubectl get -o yaml writes Lists) by those objects at the List's end.
        YAML::Node document = result->document;
        const bool list = inject::Text(inject::Field(document, "kind")) == "List" &&
                          inject::Field(document, "items").IsSequence();
        std::vector<YAML::Node> gateways = {document};
        if (list) {
          gateways.clear();
          for (const YAML::Node& item : document["items"]) gateways.push_back(item);
        }
        for (const YAML::Node& gateway : gateways) {
          absl::StatusOr<std::vector<YAML::Node>> proxy = GatewayProxy(gateway, options);
          if (!proxy.ok()) {
            err << "error: " << where << ": " << proxy.status().message() << "\n";
            ok = false;
            continue;
          }
          for (YAML::Node& made : *proxy) {
            if (list) {
              document["items"].push_back(made);
              documents.back().changed = true;
            } else {
              documents.push_back({"", made, true});
            }
          }
        }
      }
    }
    if (!ok) {
      err << "nothing written\n";
      return kExitFailed;
    }
    if (documents.empty()) {
      return session.Fail(
          {kExitFailed, absl::StrCat("no documents found in ", absl::StrJoin(files_, ", "))});
    }
    std::ostream& out = session.io().out;
    if (output_ == "json") {
      if (documents.size() == 1) {
        out << inject::ToJson(documents[0].node);
        return kExitOk;
      }
      YAML::Node list(YAML::NodeType::Map);
      list["apiVersion"] = inject::StringNode("v1");
      list["kind"] = inject::StringNode("List");
      list["items"] = YAML::Node(YAML::NodeType::Sequence);
      for (const OutputDocument& d : documents) list["items"].push_back(d.node);
      out << inject::ToJson(list);
      return kExitOk;
    }
    for (size_t i = 0; i < documents.size(); ++i) {
      if (i > 0) out << "---\n";
      if (documents[i].changed) {
        out << inject::ToYaml(documents[i].node);
      } else {
        out << absl::StripTrailingAsciiWhitespace(documents[i].text) << "\n";
      }
    }
    return kExitOk;
  }

 private:
  // The objects that run the proxy of `document` when it is a Gateway of --gateway-class; none
  // for anything else.
  absl::StatusOr<std::vector<YAML::Node>> GatewayProxy(const YAML::Node& document,
                                                       const inject::Options& options) const {
    using inject::Field;
    using inject::Text;
    if (Text(Field(document, "kind")) != "Gateway" ||
        !absl::StartsWith(Text(Field(document, "apiVersion")), "gateway.networking.k8s.io/")) {
      return std::vector<YAML::Node>{};
    }
    const YAML::Node spec = Field(document, "spec");
    if (Text(Field(spec, "gatewayClassName")) != gateway_class_) return std::vector<YAML::Node>{};
    const YAML::Node metadata = Field(document, "metadata");
    inject::GatewayDeploymentSpec gateway;
    gateway.name = Text(Field(metadata, "name"));
    gateway.namespace_ = Text(Field(metadata, "namespace"));
    if (gateway.namespace_.empty()) gateway.namespace_ = "default";
    gateway.class_name = gateway_class_;
    const YAML::Node listeners = Field(spec, "listeners");
    if (listeners.IsSequence()) {
      for (const YAML::Node& listener : listeners) {
        int64_t port = 0;
        if (!inject::PlainInt(Text(Field(listener, "port")), &port) || port < 1 || port > 65535) {
          return absl::InvalidArgumentError(
              absl::StrCat("Gateway \"", gateway.name,
                           "\": spec.listeners: a port of 1..65535 is "
                           "required, not \"",
                           Text(Field(listener, "port")), "\""));
        }
        gateway.ports.push_back(static_cast<int32_t>(port));
      }
    }
    const YAML::Node annotations = Field(metadata, "annotations");
    if (annotations.IsMap()) {
      for (const auto& entry : annotations) {
        gateway.annotations[Text(entry.first)] = Text(entry.second);
      }
    }
    const YAML::Node infrastructure = Field(spec, "infrastructure");
    for (auto [field, out] : {std::pair{"labels", &gateway.infrastructure_labels},
                              std::pair{"annotations", &gateway.infrastructure_annotations}}) {
      const YAML::Node map = Field(infrastructure, field);
      if (!map.IsMap()) continue;
      for (const auto& entry : map) (*out)[Text(entry.first)] = Text(entry.second);
    }
    // Static addresses: every IPAddress value that is an IP address (the control plane's
    // deployer takes those in its --gateway-addresses only).
    const YAML::Node addresses = Field(spec, "addresses");
    if (addresses.IsSequence()) {
      for (const YAML::Node& address : addresses) {
        const std::string type = Text(Field(address, "type"));
        absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(Text(Field(address, "value")));
        if ((type.empty() || type == "IPAddress") && ip.ok()) {
          gateway.addresses.push_back(ip->ToString());
        }
      }
    }
    return inject::GatewayManifests(gateway, options);
  }

  std::vector<std::string> files_;
  std::string gateway_class_;
  std::string proxy_image_;
  std::string control_plane_;
  std::string trust_domain_;
  inject::SidecarMode mode_ = inject::SidecarMode::kNative;
  inject::Identity identity_ = inject::Identity::kKubernetesToken;
  std::string trace_collector_;
  bool podman_ = false;
  bool cni_ = false;
  std::string revision_;
  std::map<std::string, std::string> tags_;  // --tag
  std::string output_ = "yaml";
};

}  // namespace

CommandSpec InjectCommand() {
  return {
      .name = "inject",
      .summary = "add the meshlet sidecar to the Pods and workloads of Kubernetes manifests",
      .about =
          "Reads Kubernetes manifests and writes them back with the meshlet sidecar added "
          "to every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, "
          "ReplicationController, Job, CronJob, and those in a List): the meshlet-init "
          "container that sets up traffic capture, the meshlet-proxy sidecar, their "
          "volumes and a status annotation (docs/kubernetes.md). Other documents, pods "
          "opted out with sidecar.meshlet.io/inject: \"false\" and hostNetwork pods come "
          "out unchanged, in the same order; injecting an injected manifest changes "
          "nothing. Every document is checked first: if any is invalid, each invalid "
          "document's problem is printed (file, line, object and field) and nothing is "
          "written. Needs no control plane.",
      .examples = {{"inject and apply", "meshctl inject -f examples/pods/ | kubectl apply -f -"},
                   {"classic sidecars, for engines without native sidecars",
                    "meshctl inject -f app.yaml --mode classic --proxy-image "
                    "registry.example.com/meshlet-proxy:0.1.0"},
                   {"for podman kube play (no native sidecars, no service-account tokens)",
                    "meshctl inject -f app.yaml --mode classic --podman --identity join-token "
                    "--control-plane 198.18.0.10:15012 > pod.yaml"},
                   {"for the control-plane revision canary (pods and namespaces labelled "
                    "meshlet.io/rev keep theirs)",
                    "meshctl inject -f app.yaml --revision canary"},
                   {"a Gateway's proxy for podman (what the control plane deploys in a cluster)",
                    "meshctl inject -f gateway.yaml --gateway-class meshlet --mode classic "
                    "--podman --identity join-token"},
                   {"a running deployment",
                    "kubectl get deploy reviews -o yaml | meshctl "
                    "inject -f - | kubectl apply -f -"}},
      .needs_context = false,
      .make = [] { return std::make_unique<Inject>(); }};
}

}  // namespace meshlet::controlplane::cli
