// install and uninstall: the control plane's Kubernetes manifests (control-plane/install), and
// check --pre's reading of them (check.cc calls PreCheck).

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/documents.h"
#include "control-plane/inject/node.h"
#include "control-plane/install/install.h"

namespace meshlet::controlplane::cli {
namespace {

void Print(std::ostream& out, const std::vector<YAML::Node>& objects, absl::string_view output) {
  if (output == "json") {
    YAML::Node list(YAML::NodeType::Map);
    list["apiVersion"] = inject::StringNode("v1");
    list["kind"] = inject::StringNode("List");
    list["items"] = YAML::Node(YAML::NodeType::Sequence);
    for (const YAML::Node& o : objects) list["items"].push_back(o);
    out << inject::ToJson(list);
    return;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i > 0) out << "---\n";
    out << inject::ToYaml(objects[i]);
  }
}

std::string SetHelp() {
  std::vector<std::string> keys;
  for (const auto& [key, what] : install::SetKeys()) keys.push_back(absl::StrCat(key, ": ", what));
  return absl::StrCat("KEY=VALUE, repeatable: ", absl::StrJoin(keys, "; "));
}

class Install final : public Command {
 public:
  explicit Install(bool uninstall) : uninstall_(uninstall) {}

  std::vector<flags::Flag> Flags() override {
    std::vector<flags::Flag> out = {
        {.name = "--set",
         .value = "KEY=VALUE",
         .help = SetHelp(),
         .set = [this](absl::string_view v) { return install::SetOption(options_, v); }},
        OutputFlag(&output_, {"yaml", "json"}, "YAML documents (default), or JSON (a List)")};
    if (uninstall_) {
      out.push_back(Switch("--keep-data", "", &keep_data_,
                           "leave out the namespace and the data claim (the CA root, policies "
                           "and API token survive for a later install)"));
    }
    return out;
  }

  int Run(Session& session) override {
    if (!session.positional().empty()) return session.Fail(session.UsageFailure());
    absl::StatusOr<std::vector<YAML::Node>> objects = install::Render(options_, kMeshctlVersion);
    if (!objects.ok()) {
      // A combination of --set values that does not go together is a usage error.
      return session.Fail({absl::IsInvalidArgument(objects.status()) ? kExitUsage : kExitFailed,
                           std::string(objects.status().message())});
    }
    Print(session.io().out, uninstall_ ? install::UninstallOrder(*objects, keep_data_) : *objects,
          output_);
    return kExitOk;
  }

 private:
  const bool uninstall_;
  install::InstallOptions options_;
  std::string output_ = "yaml";
  bool keep_data_ = false;
};

}  // namespace

int PreCheck(Session& session, const std::vector<std::string>& files) {
  std::vector<SourceFile> sources;
  if (!ReadYamlFiles(session, files, sources)) return kExitFailed;
  std::vector<YAML::Node> objects;
  for (const SourceFile& source : sources) {
    for (const config::YamlDocument& doc : source.documents) {
      YAML::Node node;
      try {
        node = YAML::Load(doc.yaml);
      } catch (const YAML::Exception& e) {
        return session.Fail({kExitFailed, absl::StrCat(source.name, " (document ", doc.index + 1,
                                                       "): ", e.what())});
      }
      if (node.IsMap()) objects.push_back(node);
    }
  }
  const std::vector<std::string> problems = install::CheckInstall(objects);
  std::ostream& out = session.io().out;
  if (problems.empty()) {
    out << "install checks passed: " << objects.size() << " objects\n";
    return kExitOk;
  }
  for (const std::string& p : problems) session.io().err << "error: " << p << "\n";
  session.io().err << problems.size() << " problem(s) in " << absl::StrJoin(files, ", ") << "\n";
  return kExitFailed;
}

CommandSpec InstallCommand() {
  return {.name = "install",
          .summary = "the control plane's Kubernetes manifests, for kubectl apply",
          .about =
              "Prints the manifests that install the control plane on Kubernetes: the objects "
              "of k8s/install (namespace, ServiceAccount, RBAC, data claim, Deployment, "
              "Service, PodDisruptionBudget, the injection webhook's configuration), changed "
              "by --set. Applies nothing itself; the control plane fills in the webhook's "
              "caBundle once it runs (docs/kubernetes.md). Needs no control plane.",
          .examples = {{"install", "meshctl install | kubectl apply -f -"},
                       {"check first",
                        "meshctl install --set namespace=mesh > install.yaml && meshctl check "
                        "--pre -f install.yaml"},
                       {"",
                        "meshctl install --set image=registry.example.com/meshlet-control-"
                        "plane:0.1.0 --set proxyImage=registry.example.com/meshlet-proxy:"
                        "0.1.0 --set injectMode=classic"}},
          .needs_context = false,
          .make = [] { return std::make_unique<Install>(false); }};
}

CommandSpec UninstallCommand() {
  return {.name = "uninstall",
          .summary = "what to delete to remove the control plane from Kubernetes",
          .about =
              "Prints the objects `meshctl install` creates, in the order to delete them (the "
              "webhook configuration first, so pod creation never waits on a control plane "
              "being removed). Give the same --set namespace as at install. Deletes nothing "
              "itself. Injected pods keep their sidecars until they are recreated.",
          .examples = {{"", "meshctl uninstall | kubectl delete -f -"},
                       {"keep the CA root and policies",
                        "meshctl uninstall --keep-data | kubectl delete -f -"}},
          .needs_context = false,
          .make = [] { return std::make_unique<Install>(true); }};
}

}  // namespace meshlet::controlplane::cli
