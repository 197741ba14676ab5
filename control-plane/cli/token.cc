// token create: a join token for a workload outside Kubernetes (POST /api/v1/tokens).

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"
#include "control-plane/inject/inject.h"

namespace meshlet::controlplane::cli {
namespace {

// The manifest holding `token` (key "token") for the pods of `service_account` in `ns`: a
// Secret, or for podman (whose 4.3 mounts a Secret's data base64-encoded and its stringData not
// at all) a ConfigMap of the same name, which pods injected with --podman mount.
std::string JoinTokenManifest(bool config_map, const std::string& ns,
                              const std::string& service_account, const std::string& token) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "apiVersion" << YAML::Value << "v1" << YAML::Key << "kind"
      << YAML::Value << (config_map ? "ConfigMap" : "Secret") << YAML::Key << "metadata"
      << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value
      << inject::DefaultJoinTokenSecret(service_account) << YAML::Key << "namespace" << YAML::Value
      << ns << YAML::Key << "labels" << YAML::Value << YAML::BeginMap << YAML::Key
      << "app.kubernetes.io/part-of" << YAML::Value << "meshlet" << YAML::EndMap << YAML::EndMap;
  if (!config_map) out << YAML::Key << "type" << YAML::Value << "Opaque";
  out << YAML::Key << (config_map ? "data" : "stringData") << YAML::Value << YAML::BeginMap
      << YAML::Key << "token" << YAML::Value << YAML::DoubleQuoted << token << YAML::EndMap
      << YAML::EndMap;
  return absl::StrCat(out.c_str(), "\n");
}

class Token final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {
        NamespaceFlag(&namespace_, "the workload's namespace", true),
        flags::Required(flags::StringFlag("--service-account", "SA", &service_account_,
                                          "the workload's service account")),
        flags::StringFlag("--ttl", "DURATION", &ttl_, "how long the token is valid (default 1h)"),
        Switch("--single-use", "", &single_use_, "valid for one certificate only"),
        OutputFlag(&output_, {"json", "secret", "configmap"},
                   "the API's JSON, or a Kubernetes Secret named meshlet-join-token-SA holding "
                   "the token (key token), the Secret `meshctl inject --identity join-token` "
                   "mounts; configmap: the same as a ConfigMap, which `meshctl inject --podman` "
                   "mounts instead (for podman kube play --configmap)")};
  }

  // The token goes alone to stdout (for `$(...)`), the rest to stderr.
  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    if (args.size() != 1 || args[0] != "create") return session.Fail(session.UsageFailure());
    const std::string ns = session.Namespace(namespace_);
    const std::string body = absl::StrCat(
        R"({"namespace":)", JsonQuote(ns), R"(,"serviceAccount":)", JsonQuote(service_account_),
        R"(,"ttl":)", JsonQuote(ttl_), R"(,"singleUse":)", single_use_ ? "true" : "false", "}");
    int exit_code = kExitOk;
    std::optional<ApiReply> reply = session.api().Call("POST", "/api/v1/tokens", body, &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 201) {
      std::string message = reply->ErrorMessage();
      // Name the flag rather than the API field.
      for (const auto& [field, why] : reply->Causes()) {
        if (field.empty()) continue;
        const std::string flag = field == "serviceAccount" ? "service-account"
                                 : field == "singleUse"    ? "single-use"
                                                           : field;
        message = absl::StrCat("--", flag, ": ", why);
      }
      return session.Fail({kExitFailed, message});
    }
    if (output_ == "json") {
      session.io().out << reply->http.body;
      return kExitOk;
    }
    YAML::Node created = YAML::Load(reply->http.body);
    if (output_ == "secret" || output_ == "configmap") {
      session.io().out << JoinTokenManifest(output_ == "configmap", ns, service_account_,
                                            Scalar(created["token"]));
    } else {
      session.io().out << Scalar(created["token"]) << "\n";
    }
    session.io().err << "join token " << Scalar(created["id"]) << " for ns/" << ns << "/sa/"
                     << service_account_ << (single_use_ ? ", single use" : "") << ", expires "
                     << Scalar(created["expiresAt"]) << "\n";
    return kExitOk;
  }

 private:
  NamespaceOption namespace_;
  std::string service_account_;
  std::string ttl_ = "1h";
  bool single_use_ = false;
  std::string output_ = "table";
};

}  // namespace

CommandSpec TokenCommand() {
  return {.name = "token",
          .args = "create",
          .summary = "a join token proving a workload identity to the CA",
          .about =
              "Creates a join token with which a workload outside Kubernetes gets a "
              "certificate for spiffe://<trust-domain>/ns/NS/sa/SA from the CA. The token "
              "alone goes to stdout, the details to stderr; it is shown only this once.",
          .examples = {{"",
                        "TOKEN=$(meshctl token create --namespace shop --service-account "
                        "billing --ttl 10m --single-use)"},
                       {"the Secret of pods injected with --identity join-token",
                        "meshctl token create -n shop --service-account billing --ttl 168h -o "
                        "secret | kubectl apply -f -"},
                       {"for pods injected with --podman",
                        "meshctl token create --service-account default --ttl 168h -o configmap "
                        "> token.yaml && podman kube play --configmap token.yaml ... pod.yaml"}},
          .make = [] { return std::make_unique<Token>(); }};
}

}  // namespace meshlet::controlplane::cli
