// trust-bundle: the CA's roots (GET /api/v1/trust-bundle), as PEM or as the ConfigMap injected
// pods mount (meshlet-trust, key ca.pem).

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/field_path.h"
#include "control-plane/cli/commands.h"

namespace meshlet::controlplane::cli {
namespace {

// The ConfigMap `name` in `namespace_` whose key ca.pem holds `pem` as a literal block.
std::string ConfigMapYaml(absl::string_view name, absl::string_view namespace_,
                          absl::string_view pem) {
  std::string out = absl::StrCat("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ", name,
                                 "\n  namespace: ", namespace_, "\ndata:\n  ca.pem: |\n");
  for (absl::string_view line : absl::StrSplit(absl::StripSuffix(pem, "\n"), '\n')) {
    absl::StrAppend(&out, "    ", line, "\n");
  }
  return out;
}

class TrustBundle final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {Switch("--configmap", "", &configmap_,
                   "print a Kubernetes ConfigMap holding it (key ca.pem) instead"),
            NamespaceFlag(&namespace_,
                          "the ConfigMap's namespace (default: the context file's, else default)"),
            {.name = "--name",
             .value = "NAME",
             .help = "the ConfigMap's name (default meshlet-trust, what injected pods mount)",
             .set = [this](absl::string_view v) {
               if (!config::IsDnsSubdomain(v)) {
                 return absl::InvalidArgumentError(
                     "must be a ConfigMap name (lowercase letters, digits, '-' and '.')");
               }
               name_ = std::string(v);
               name_set_ = true;
               return absl::OkStatus();
             }}};
  }

  int Run(Session& session) override {
    if (!session.positional().empty()) return session.Fail(session.UsageFailure());
    if (!configmap_ && (namespace_.set || name_set_)) {
      return session.Fail({kExitUsage,
                           "-n/--namespace and --name go with --configmap (see "
                           "meshctl help trust-bundle)"});
    }
    const std::string namespace_name = session.Namespace(namespace_);
    if (configmap_ && !config::IsDnsLabel(namespace_name)) {
      return session.Fail(
          {kExitUsage,
           absl::StrCat(namespace_.set ? "--namespace=\"" : "the context file's namespace \"",
                        namespace_name,
                        "\": must be a namespace name (a DNS label: lowercase letters, digits and "
                        "'-')")});
    }
    int exit_code = kExitOk;
    std::optional<ApiReply> reply =
        session.api().Call("GET", "/api/v1/trust-bundle", "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    std::string pem(absl::StripAsciiWhitespace(reply->http.body));
    if (!absl::StartsWith(pem, "-----BEGIN CERTIFICATE-----") ||
        !absl::EndsWith(pem, "-----END CERTIFICATE-----")) {
      return session.Fail(
          {kExitFailed, "the control plane's answer is not a PEM bundle of certificates"});
    }
    pem += "\n";
    session.io().out << (configmap_ ? ConfigMapYaml(name_, namespace_name, pem) : pem);
    return kExitOk;
  }

 private:
  bool configmap_ = false;
  NamespaceOption namespace_;
  std::string name_ = "meshlet-trust";
  bool name_set_ = false;
};

}  // namespace

CommandSpec TrustBundleCommand() {
  return {.name = "trust-bundle",
          .summary = "the CA's roots (PEM), or the meshlet-trust ConfigMap injected pods mount",
          .about =
              "Prints the trust bundle of the control plane's CA: the roots every sidecar "
              "trusts, which also verify the control plane's own discovery certificate (what "
              "a sidecar's --xds-ca names). With --configmap it prints them as the Kubernetes "
              "ConfigMap injected pods mount at /var/run/meshlet/trust (key ca.pem), for "
              "kubectl apply -f - or podman kube play --configmap; every namespace with "
              "injected pods needs one. Run it again after a change of roots (a root "
              "rotation).",
          .examples = {{"the roots, for a sidecar's --xds-ca", "meshctl trust-bundle > ca.pem"},
                       {"the ConfigMap of namespace shop",
                        "meshctl trust-bundle --configmap -n shop | kubectl apply -f -"},
                       {"with podman",
                        "meshctl trust-bundle --configmap > trust.yaml && podman kube "
                        "play --configmap trust.yaml pod.yaml"}},
          .make = [] { return std::make_unique<TrustBundle>(); }};
}

}  // namespace meshlet::controlplane::cli
