#pragma once

// meshctl's way to the Kubernetes API server, for the commands that change the cluster rather
// than the control plane (upgrade, tag): one blocking HTTPS request at a time, verified against
// the cluster's CA, as the kubeconfig's current context (or a named one) says, or with
// --kubernetes-api and a CA and token file (inside a pod, its service account's). A kubeconfig
// user may get its credential from an exec plugin (exec_credential.h), run before the first
// request, again when its credential expired, and once more on an HTTP 401. Single-threaded.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/flags/flags.h"
#include "common/tls/tls_context.h"
#include "control-plane/cli/context.h"
#include "control-plane/cli/exec_credential.h"
#include "control-plane/cli/http_client.h"

namespace meshlet::controlplane::cli {

// How to reach the API server, from a kubeconfig's current (or named) context: each of the CA,
// the client certificate and key and the token either inline (`*_pem`, `token`) or as a file
// (relative paths are the kubeconfig's directory's), or an exec plugin (then no token and no
// client certificate). Files are not read and the plugin is not run here.
struct KubeconfigCredentials {
  std::string server;  // https://HOST:PORT
  std::string ca_pem, ca_file;
  std::string token, token_file;
  std::string cert_pem, cert_file;
  std::string key_pem, key_file;
  std::optional<ExecPluginConfig> exec;
};
// InvalidArgument naming the context, cluster or user field that is missing or not supported
// (auth-provider plugins, an exec plugin's interactiveMode Always or unknown apiVersion,
// insecure-skip-tls-verify, http://).
absl::StatusOr<KubeconfigCredentials> ReadKubeconfig(absl::string_view text,
                                                     absl::string_view context,
                                                     absl::string_view directory);

// The flags that say how to reach the API server, and where the control planes run.
struct KubernetesFlags {
  std::string kubeconfig;                                  // --kubeconfig FILE
  std::string context;                                     // --context NAME
  std::string api;                                         // --kubernetes-api URL
  std::string ca_file;                                     // --kubernetes-ca-file FILE
  std::string token_file;                                  // --kubernetes-token-file FILE
  absl::Duration exec_timeout = absl::Seconds(30);         // --kubernetes-exec-timeout
  std::string control_plane_namespace = "meshlet-system";  // --control-plane-namespace NS
};
std::vector<flags::Flag> KubernetesFlagTable(KubernetesFlags& flags);

class KubernetesClient {
 public:
  // `c` with its files read; `source` names where the settings came from, for errors.
  // `permissions` ends the message of an HTTP 403 ("meshctl tag needs ..."). `exec_limits`
  // bound c.exec's runs.
  static absl::StatusOr<KubernetesClient> Create(KubeconfigCredentials c, const std::string& source,
                                                 std::string permissions = "",
                                                 const ExecPluginLimits& exec_limits = {});
  // --kubernetes-api (or inside a pod, its service account), else a kubeconfig ($KUBECONFIG's
  // first file, else ~/.kube/config under env.home).
  static absl::StatusOr<KubernetesClient> Connect(const KubernetesFlags& flags,
                                                  const Environment& env,
                                                  std::string permissions = "");

  // The answer, whatever its status; an error when none came (Unavailable), or when the exec
  // plugin gave no credential (its error). A body is sent as a JSON merge patch with PATCH, as
  // JSON otherwise. With an exec plugin, an HTTP 401 runs it again and sends the request once
  // more; the second answer is returned whatever it is.
  absl::StatusOr<HttpResponse> Call(absl::string_view method, const std::string& path,
                                    absl::string_view body = "") const;
  // The 2xx answer's body; otherwise an error naming the request and the API's message.
  absl::StatusOr<std::string> Fetch(absl::string_view method, const std::string& path,
                                    absl::string_view body = "") const;

 private:
  // An exec plugin's settings and its last credential, shared by the copies of a client.
  struct Exec {
    ExecPluginConfig config;
    ExecPluginLimits limits;
    std::string server_url;  // as the kubeconfig wrote it, for the plugin
    std::string ca_pem;
    std::optional<ExecCredential> credential;
    std::shared_ptr<const tls::TlsContext> tls;  // with the credential's client certificate
  };

  KubernetesClient(std::string server, std::shared_ptr<const tls::TlsContext> tls,
                   std::string token, std::string token_file, std::string permissions,
                   std::shared_ptr<Exec> exec)
      : server_(std::move(server)),
        tls_(std::move(tls)),
        token_(std::move(token)),
        token_file_(std::move(token_file)),
        permissions_(std::move(permissions)),
        exec_(std::move(exec)) {}

  // Runs the plugin and keeps its credential (and a TLS context with its client certificate).
  absl::Status RefreshExecCredential() const;
  absl::StatusOr<HttpResponse> Send(absl::string_view method, const std::string& path,
                                    absl::string_view body) const;

  std::string server_;
  std::shared_ptr<const tls::TlsContext> tls_;
  std::string token_;
  std::string token_file_;
  std::string permissions_;
  std::shared_ptr<Exec> exec_;  // null without an exec plugin
};

// /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations[/<name>].
std::string WebhookConfigurationPath(absl::string_view name = "");

// The revision the tag points at ("" the unnamed one: its configuration's label meshlet.io/rev
// says "default"), nullopt when there is no such tag. An error when the API server cannot say,
// or the configuration names no revision.
absl::StatusOr<std::optional<std::string>> TagRevision(const KubernetesClient& client,
                                                       absl::string_view tag);

// "control plane NS/meshlet-control-plane[-REV] available (N replica(s))" when the revision's
// Deployment has an available replica; otherwise FailedPrecondition saying what is missing
// (Unavailable when the API server did not answer).
absl::StatusOr<std::string> ControlPlaneAvailable(const KubernetesClient& client,
                                                  absl::string_view control_plane_namespace,
                                                  absl::string_view revision);

}  // namespace meshlet::controlplane::cli
