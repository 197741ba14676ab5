#include "control-plane/cli/kubernetes_client.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {
namespace {

std::string InClusterApi() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') return "";
  const std::string h(host);
  return h.find(':') != std::string::npos ? absl::StrCat("https://[", h, "]:", port)
                                          : absl::StrCat("https://", h, ":", port);
}

constexpr char kInClusterCa[] = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
constexpr char kInClusterToken[] = "/var/run/secrets/kubernetes.io/serviceaccount/token";

// A user's `exec` (client-go's ExecConfig), checked as kubectl checks it; the cluster's
// extension for the plugin is kept for provideClusterInfo. Errors name the field.
absl::StatusOr<ExecPluginConfig> ReadExecConfig(const YAML::Node& exec, const YAML::Node& cluster,
                                                const std::string& user,
                                                absl::string_view directory) {
  if (!exec.IsMap()) return absl::InvalidArgumentError("not a map");
  ExecPluginConfig p;
  p.user = user;
  p.directory = std::string(directory);
  p.command = Scalar(At(exec, {"command"}));
  if (p.command.empty()) return absl::InvalidArgumentError("no command");
  p.api_version = Scalar(At(exec, {"apiVersion"}));
  if (p.api_version != kExecCredentialV1 && p.api_version != kExecCredentialV1beta1) {
    return absl::InvalidArgumentError(
        absl::StrCat("apiVersion \"", p.api_version, "\" is not ", kExecCredentialV1, " or ",
                     kExecCredentialV1beta1, " (v1alpha1 is no longer served by kubectl either)"));
  }
  const YAML::Node args = At(exec, {"args"});
  if (args && !args.IsNull() && !args.IsSequence()) {
    return absl::InvalidArgumentError("args: not a list");
  }
  for (size_t i = 0; args.IsSequence() && i < args.size(); ++i) {
    if (!args[i].IsScalar())
      return absl::InvalidArgumentError(absl::StrCat("args[", i, "]: not a string"));
    p.args.push_back(args[i].Scalar());
  }
  const YAML::Node env = At(exec, {"env"});
  if (env && !env.IsNull() && !env.IsSequence()) {
    return absl::InvalidArgumentError("env: not a list of {name, value}");
  }
  for (size_t i = 0; env.IsSequence() && i < env.size(); ++i) {
    const std::string name = Scalar(At(env[i], {"name"}));
    if (name.empty() || name.find('=') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("env[", i, "].name \"", name, "\" is not a variable name"));
    }
    p.env.emplace_back(name, Scalar(At(env[i], {"value"})));
  }
  p.install_hint = Scalar(At(exec, {"installHint"}));
  const std::string cluster_info = Scalar(At(exec, {"provideClusterInfo"}));
  if (!cluster_info.empty() && cluster_info != "true" && cluster_info != "false") {
    return absl::InvalidArgumentError(
        absl::StrCat("provideClusterInfo \"", cluster_info, "\" is not true or false"));
  }
  p.provide_cluster_info = cluster_info == "true";
  // interactiveMode: required by v1, IfAvailable when v1beta1 leaves it out. meshctl never has a
  // terminal to give the plugin, so it runs those that can do without one.
  const std::string mode = Scalar(At(exec, {"interactiveMode"}));
  if (mode.empty() && p.api_version == kExecCredentialV1) {
    return absl::InvalidArgumentError(absl::StrCat("interactiveMode must be given with ",
                                                   kExecCredentialV1, " (Never or IfAvailable)"));
  }
  if (mode == "Always") {
    return absl::InvalidArgumentError(
        "interactiveMode Always: the plugin needs a terminal, and meshctl never gives it one "
        "(meshctl is not interactive); log in with the plugin first if it can cache its "
        "credential, or use IfAvailable or Never");
  }
  if (!mode.empty() && mode != "Never" && mode != "IfAvailable") {
    return absl::InvalidArgumentError(
        absl::StrCat("interactiveMode \"", mode, "\" is not Never, IfAvailable or Always"));
  }
  if (p.provide_cluster_info) {
    const YAML::Node extensions = At(cluster, {"extensions"});
    for (size_t i = 0; extensions.IsSequence() && i < extensions.size(); ++i) {
      if (Scalar(At(extensions[i], {"name"})) == "client.authentication.k8s.io/exec") {
        const YAML::Node extension = At(extensions[i], {"extension"});
        if (extension) p.cluster_config_json = inject::ToCompactJson(extension);
      }
    }
  }
  return p;
}

}  // namespace

absl::StatusOr<KubeconfigCredentials> ReadKubeconfig(absl::string_view text,
                                                     absl::string_view context_name,
                                                     absl::string_view directory) {
  YAML::Node config;
  try {
    config = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not YAML: ", e.what()));
  }
  if (!config.IsMap()) return absl::InvalidArgumentError("not a kubeconfig (a map)");
  const std::string wanted =
      context_name.empty() ? Scalar(At(config, {"current-context"})) : std::string(context_name);
  if (wanted.empty()) {
    return absl::InvalidArgumentError("no current-context: give --context NAME");
  }
  // The `item` of the entry of `list` named `name` ({name: NAME, context: {...}}), or null.
  auto named = [&](const char* list, const char* item, const std::string& name) -> YAML::Node {
    const YAML::Node entries = At(config, {list});
    for (size_t i = 0; entries.IsSequence() && i < entries.size(); ++i) {
      if (Scalar(At(entries[i], {"name"})) == name) return At(entries[i], {item});
    }
    return YAML::Node(YAML::NodeType::Null);
  };
  const YAML::Node context = named("contexts", "context", wanted);
  if (!context.IsMap()) return absl::InvalidArgumentError(absl::StrCat("no context ", wanted));
  const std::string cluster_name = Scalar(At(context, {"cluster"}));
  const YAML::Node cluster = named("clusters", "cluster", cluster_name);
  if (!cluster.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("context ", wanted, ": no cluster \"", cluster_name, "\""));
  }
  auto path = [&](const YAML::Node& node) {
    std::string p = Scalar(node);
    if (!p.empty() && p[0] != '/' && !directory.empty()) p = absl::StrCat(directory, "/", p);
    return p;
  };
  auto decoded = [](const YAML::Node& node, std::string* out) {
    return Scalar(node).empty() || absl::Base64Unescape(Scalar(node), out);
  };
  KubeconfigCredentials c;
  const std::string where = absl::StrCat("cluster ", cluster_name, ": ");
  c.server = Scalar(At(cluster, {"server"}));
  if (!absl::StartsWith(c.server, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "server \"", c.server, "\" is not https://HOST:PORT"));
  }
  if (Scalar(At(cluster, {"insecure-skip-tls-verify"})) == "true") {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "insecure-skip-tls-verify is not supported: the API server is always verified"));
  }
  if (!decoded(At(cluster, {"certificate-authority-data"}), &c.ca_pem)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "certificate-authority-data: not base64"));
  }
  c.ca_file = path(At(cluster, {"certificate-authority"}));
  if (c.ca_pem.empty() && c.ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "no certificate-authority(-data): the API server could not be verified"));
  }
  const std::string user_name = Scalar(At(context, {"user"}));
  const YAML::Node user = named("users", "user", user_name);
  const std::string who = absl::StrCat("user ", user_name, ": ");
  if (!user.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("context ", wanted, ": no user \"", user_name, "\""));
  }
  if (At(user, {"auth-provider"})) {
    return absl::InvalidArgumentError(absl::StrCat(
        who,
        "auth-provider (the removed gcp, azure and oidc plugins) is not supported; use its exec "
        "credential plugin instead (GKE: gke-gcloud-auth-plugin, AKS: kubelogin, OIDC: "
        "kubelogin or kubectl oidc-login), as kubectl 1.26 and later need too"));
  }
  c.token = Scalar(At(user, {"token"}));
  c.token_file = path(At(user, {"tokenFile"}));
  if (!decoded(At(user, {"client-certificate-data"}), &c.cert_pem) ||
      !decoded(At(user, {"client-key-data"}), &c.key_pem)) {
    return absl::InvalidArgumentError(absl::StrCat(who, "client-certificate/key-data: not base64"));
  }
  c.cert_file = path(At(user, {"client-certificate"}));
  c.key_file = path(At(user, {"client-key"}));
  const bool has_cert = !c.cert_pem.empty() || !c.cert_file.empty();
  const bool has_key = !c.key_pem.empty() || !c.key_file.empty();
  if (has_cert != has_key) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, "a client certificate and its key go together"));
  }
  if (const YAML::Node exec = At(user, {"exec"})) {
    if (has_cert || !c.token.empty() || !c.token_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          who, "exec and a token or client certificate of the kubeconfig go not together"));
    }
    absl::StatusOr<ExecPluginConfig> plugin = ReadExecConfig(exec, cluster, user_name, directory);
    if (!plugin.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(who, "exec: ", plugin.status().message()));
    }
    c.exec = *std::move(plugin);
    return c;
  }
  if (!has_cert && c.token.empty() && c.token_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, "no credentials (token, tokenFile, a client certificate or an exec plugin)"));
  }
  return c;
}

std::vector<flags::Flag> KubernetesFlagTable(KubernetesFlags& flags) {
  return {
      flags::StringFlag("--control-plane-namespace", "NS", &flags.control_plane_namespace,
                        "where the control planes run (default meshlet-system)"),
      flags::StringFlag("--kubeconfig", "FILE", &flags.kubeconfig,
                        "the kubeconfig to reach the API server with (default: $KUBECONFIG's "
                        "first file, else ~/.kube/config; not used inside a pod or with "
                        "--kubernetes-api): its server, CA, and a token or client "
                        "certificate"),
      flags::StringFlag("--context", "NAME", &flags.context,
                        "the kubeconfig's context (default its current-context)"),
      flags::StringFlag("--kubernetes-api", "URL", &flags.api,
                        "the API server, https://HOST:PORT, instead of a kubeconfig (inside "
                        "a pod: KUBERNETES_SERVICE_HOST and _PORT)"),
      flags::StringFlag("--kubernetes-ca-file", "FILE", &flags.ca_file,
                        "with --kubernetes-api: the CA that signed the API server's "
                        "certificate (default: the pod's service-account ca.crt)"),
      flags::StringFlag("--kubernetes-token-file", "FILE", &flags.token_file,
                        "with --kubernetes-api: a bearer token (default: the pod's "
                        "service-account token)"),
      flags::PositiveDurationFlag(
          "--kubernetes-exec-timeout", &flags.exec_timeout,
          "how long the kubeconfig user's exec credential plugin (aws eks get-token, "
          "gke-gcloud-auth-plugin, kubelogin) may run before it is killed (default 30s)"),
  };
}

absl::StatusOr<KubernetesClient> KubernetesClient::Create(KubeconfigCredentials c,
                                                          const std::string& source,
                                                          std::string permissions,
                                                          const ExecPluginLimits& exec_limits) {
  absl::string_view server = c.server;
  if (absl::ConsumePrefix(&server, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", c.server, ": the API server is reached over https"));
  }
  absl::ConsumePrefix(&server, "https://");
  absl::ConsumeSuffix(&server, "/");
  for (auto [file, pem] :
       {std::pair{&c.ca_file, &c.ca_pem}, {&c.cert_file, &c.cert_pem}, {&c.key_file, &c.key_pem}}) {
    if (!pem->empty() || file->empty()) continue;
    absl::StatusOr<std::string> read = ReadFile(*file, 1 << 20);
    if (!read.ok())
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", read.status().message()));
    *pem = *std::move(read);
  }
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient({.certificate_chain_pem = c.cert_pem,
                                     .private_key_pem = c.key_pem,
                                     .trust_bundle_pem = c.ca_pem,
                                     .alpn_protocols = {"http/1.1"}});
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the CA or client certificate: ", context.status().message()));
  }
  std::shared_ptr<Exec> exec;
  if (c.exec.has_value()) {
    exec = std::make_shared<Exec>(Exec{.config = *std::move(c.exec),
                                       .limits = exec_limits,
                                       .server_url = c.server,
                                       .ca_pem = c.ca_pem});
  }
  return KubernetesClient(std::string(server), *std::move(context), std::move(c.token),
                          std::move(c.token_file), std::move(permissions), std::move(exec));
}

absl::StatusOr<KubernetesClient> KubernetesClient::Connect(const KubernetesFlags& flags,
                                                           const Environment& env,
                                                           std::string permissions) {
  const std::string api =
      flags.api.empty() && flags.kubeconfig.empty() ? InClusterApi() : flags.api;
  if (!api.empty()) {
    KubeconfigCredentials c;
    c.server = absl::StartsWith(api, "https://") || absl::StartsWith(api, "http://")
                   ? api
                   : absl::StrCat("https://", api);
    c.ca_file = flags.ca_file.empty() ? kInClusterCa : flags.ca_file;
    c.token_file = flags.token_file.empty() ? kInClusterToken : flags.token_file;
    return Create(std::move(c), "--kubernetes-api", std::move(permissions));
  }
  if (!flags.ca_file.empty() || !flags.token_file.empty()) {
    return absl::InvalidArgumentError(
        "--kubernetes-ca-file and --kubernetes-token-file go with --kubernetes-api");
  }
  std::string path = flags.kubeconfig;
  if (path.empty()) {
    const char* kubeconfig = std::getenv("KUBECONFIG");
    if (kubeconfig != nullptr && *kubeconfig != '\0') {
      const absl::string_view list(kubeconfig);
      path = std::string(list.substr(0, list.find(':')));
    } else if (!env.home.empty()) {
      path = absl::StrCat(env.home, "/.kube/config");
    }
  }
  if (path.empty()) {
    return absl::FailedPreconditionError(
        "no Kubernetes API server: give --kubeconfig FILE or --kubernetes-api https://HOST:PORT");
  }
  absl::StatusOr<std::string> text = ReadFile(path, 4 << 20);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig: ", text.status().message(),
                     " (give --kubeconfig FILE, or --kubernetes-api https://HOST:PORT)"));
  }
  const size_t slash = path.rfind('/');
  absl::StatusOr<KubeconfigCredentials> c = ReadKubeconfig(
      *text, flags.context, slash == std::string::npos ? "." : path.substr(0, slash));
  if (!c.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig ", path, ": ", c.status().message()));
  }
  return Create(*std::move(c), absl::StrCat("kubeconfig ", path), std::move(permissions),
                {.timeout = flags.exec_timeout});
}

absl::Status KubernetesClient::RefreshExecCredential() const {
  exec_->credential.reset();
  exec_->tls.reset();
  absl::StatusOr<ExecCredential> credential =
      RunExecPlugin(exec_->config, exec_->server_url, exec_->ca_pem, exec_->limits);
  if (!credential.ok()) return credential.status();
  if (!credential->cert_pem.empty()) {
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateClient({.certificate_chain_pem = credential->cert_pem,
                                       .private_key_pem = credential->key_pem,
                                       .trust_bundle_pem = exec_->ca_pem,
                                       .alpn_protocols = {"http/1.1"}});
    if (!context.ok()) {
      return absl::UnauthenticatedError(
          absl::StrCat("user ", exec_->config.user, ": exec plugin ", exec_->config.command,
                       ": its client certificate and key: ", context.status().message()));
    }
    exec_->tls = *std::move(context);
  }
  exec_->credential = *std::move(credential);
  return absl::OkStatus();
}

absl::StatusOr<HttpResponse> KubernetesClient::Call(absl::string_view method,
                                                    const std::string& path,
                                                    absl::string_view body) const {
  if (exec_ == nullptr) return Send(method, path, body);
  // As client-go: a credential past its expirationTimestamp is replaced before the request, and
  // one the API server refuses (401) once, after which the request is sent again.
  if (!exec_->credential.has_value() ||
      (exec_->credential->expiry.has_value() && *exec_->credential->expiry <= absl::Now())) {
    if (absl::Status refreshed = RefreshExecCredential(); !refreshed.ok()) return refreshed;
  }
  absl::StatusOr<HttpResponse> response = Send(method, path, body);
  if (!response.ok() || response->status != 401) return response;
  if (absl::Status refreshed = RefreshExecCredential(); !refreshed.ok()) return refreshed;
  return Send(method, path, body);
}

absl::StatusOr<HttpResponse> KubernetesClient::Send(absl::string_view method,
                                                    const std::string& path,
                                                    absl::string_view body) const {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"accept", "application/json"}, {"user-agent", absl::StrCat("meshctl/", kMeshctlVersion)}};
  // A token file is read for every request: the kubelet rotates projected tokens.
  std::string token = exec_ != nullptr ? exec_->credential->token : token_;
  if (!token_file_.empty()) {
    absl::StatusOr<std::string> read = ReadFile(token_file_, 64 << 10);
    if (!read.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the token file: ", read.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*read));
  }
  if (!token.empty()) headers.emplace_back("authorization", absl::StrCat("Bearer ", token));
  if (!body.empty()) {
    headers.emplace_back("content-type",
                         method == "PATCH" ? "application/merge-patch+json" : "application/json");
  }
  HttpRequestOptions options;
  options.tls = exec_ != nullptr && exec_->tls != nullptr ? exec_->tls : tls_;
  absl::StatusOr<HttpResponse> response =
      HttpRequest(server_, method, path, headers, body, options);
  if (!response.ok()) {
    return absl::UnavailableError(
        absl::StrCat("Kubernetes API server ", server_, ": ", response.status().message()));
  }
  return response;
}

absl::StatusOr<std::string> KubernetesClient::Fetch(absl::string_view method,
                                                    const std::string& path,
                                                    absl::string_view body) const {
  absl::StatusOr<HttpResponse> response = Call(method, path, body);
  if (!response.ok()) return response.status();
  if (response->status / 100 == 2) return std::move(response->body);
  std::string message = std::string(absl::StripAsciiWhitespace(response->body));
  try {
    YAML::Node status = YAML::Load(response->body);
    if (status.IsMap() && status["message"]) message = Scalar(status["message"]);
  } catch (const YAML::Exception&) {
  }
  return absl::FailedPreconditionError(absl::StrCat(
      method, " ", path, ": HTTP ", response->status, ": ", message,
      response->status == 403 && !permissions_.empty() ? absl::StrCat(" (", permissions_, ")")
                                                       : ""));
}

std::string WebhookConfigurationPath(absl::string_view name) {
  return absl::StrCat("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                      name.empty() ? "" : "/", name);
}

absl::StatusOr<std::optional<std::string>> TagRevision(const KubernetesClient& client,
                                                       absl::string_view tag) {
  const std::string name = inject::TagConfigurationName(tag);
  absl::StatusOr<HttpResponse> response = client.Call("GET", WebhookConfigurationPath(name));
  if (!response.ok()) return response.status();
  if (response->status == 404) return std::nullopt;
  if (response->status != 200) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GET MutatingWebhookConfiguration ", name, " (tag ", tag, "): HTTP ", response->status,
        response->status == 403 ? " (needs get on mutatingwebhookconfigurations)" : ""));
  }
  std::string revision;
  try {
    revision =
        Scalar(At(YAML::Load(response->body), {"metadata", "labels", inject::kRevisionLabel}));
  } catch (const YAML::Exception&) {
  }
  absl::StatusOr<std::string> parsed = inject::ParseRevision(revision);
  if (revision.empty() || !parsed.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tag ", tag, ": MutatingWebhookConfiguration ", name, " has no valid label ",
        inject::kRevisionLabel, " (\"", revision, "\"); set it again with meshctl tag set ", tag,
        " --revision REVISION --overwrite"));
  }
  return std::optional<std::string>(*std::move(parsed));
}

absl::StatusOr<std::string> ControlPlaneAvailable(const KubernetesClient& client,
                                                  absl::string_view control_plane_namespace,
                                                  absl::string_view revision) {
  const std::string name = inject::ControlPlaneName(revision);
  const std::string display = inject::RevisionDisplayName(revision);
  absl::StatusOr<HttpResponse> response = client.Call(
      "GET",
      absl::StrCat("/apis/apps/v1/namespaces/", control_plane_namespace, "/deployments/", name));
  if (!response.ok()) return response.status();
  if (response->status == 404) {
    return absl::FailedPreconditionError(
        absl::StrCat("revision ", display, " has no control plane: no Deployment ", name, " in ",
                     control_plane_namespace,
                     " (install it first: meshctl install --set revision=", display, ")"));
  }
  if (response->status != 200) {
    return absl::FailedPreconditionError(
        absl::StrCat("GET Deployment ", name, ": HTTP ", response->status));
  }
  int available = 0;
  try {
    const YAML::Node replicas = At(YAML::Load(response->body), {"status", "availableReplicas"});
    if (replicas && replicas.IsScalar()) (void)absl::SimpleAtoi(replicas.Scalar(), &available);
  } catch (const YAML::Exception&) {
  }
  if (available < 1) {
    return absl::FailedPreconditionError(absl::StrCat("revision ", display, "'s control plane (",
                                                      control_plane_namespace, "/", name,
                                                      ") has no available replica"));
  }
  return absl::StrCat("control plane ", control_plane_namespace, "/", name, " available (",
                      available, " replica(s))");
}

}  // namespace meshlet::controlplane::cli
