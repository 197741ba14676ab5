#pragma once

// Kubernetes credential plugins (client.authentication.k8s.io ExecCredential, v1 and v1beta1), as
// kubectl runs them for a kubeconfig user with `exec`: EKS's `aws eks get-token`, GKE's
// gke-gcloud-auth-plugin, AKS's kubelogin, OIDC helpers. meshctl is not interactive: the plugin
// gets /dev/null as stdin and `spec.interactive: false`; `interactiveMode: Always` is refused when
// the kubeconfig is read. A run is bounded in time and output (ExecPluginLimits); every failure
// is an error naming the kubeconfig user, the command and what was wrong (with the plugin's
// stderr, bounded). Blocking, for meshctl's single thread; nothing is kept between calls.

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshlet::controlplane::cli {

inline constexpr char kExecCredentialV1[] = "client.authentication.k8s.io/v1";
inline constexpr char kExecCredentialV1beta1[] = "client.authentication.k8s.io/v1beta1";

// A kubeconfig user's `exec`, as written (ReadKubeconfig checks it).
struct ExecPluginConfig {
  std::string user;         // the kubeconfig user's name, for errors
  std::string api_version;  // kExecCredentialV1 or kExecCredentialV1beta1
  // A bare name is looked up in PATH; a relative path with a slash is the kubeconfig's
  // directory's (`directory`), as kubectl has it.
  std::string command;
  std::string directory;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // added to meshctl's environment
  std::string install_hint;                              // shown when the command is not found
  bool provide_cluster_info = false;
  // With provide_cluster_info: the cluster's `extensions` entry named
  // client.authentication.k8s.io/exec, as compact JSON ("" when there is none).
  std::string cluster_config_json;
};

// Every limit of a plugin run. The timeout is meshctl's --kubernetes-exec-timeout.
struct ExecPluginLimits {
  absl::Duration timeout = absl::Seconds(30);  // start to exit; then the process group is killed
  size_t max_stdout_bytes = 1 << 20;           // more is an error (the ExecCredential JSON)
  size_t max_stderr_bytes = 4 << 10;           // kept for errors; the rest is read and dropped
};

// What a plugin answered: a bearer token, a client certificate and key (PEM), or both.
struct ExecCredential {
  std::string token;
  std::string cert_pem, key_pem;
  std::optional<absl::Time> expiry;  // status.expirationTimestamp; none: valid until a 401
};

// The ExecCredential request put in KUBERNETES_EXEC_INFO: apiVersion, kind, spec.interactive
// false and, with provide_cluster_info, spec.cluster (server, certificate-authority-data from
// `ca_pem`, config).
std::string ExecCredentialRequest(const ExecPluginConfig& config, absl::string_view server,
                                  absl::string_view ca_pem);

// The plugin's stdout read as an ExecCredential of `api_version`. InvalidArgument saying what is
// wrong (not JSON, another kind or apiVersion, no status, neither a token nor a client
// certificate and key, a certificate without its key, an expirationTimestamp not RFC 3339).
absl::StatusOr<ExecCredential> ParseExecCredential(absl::string_view output,
                                                   absl::string_view api_version);

// Runs the plugin and reads its answer. The run ends when the plugin exits: what it wrote to
// stdout and stderr until then is read (for at most 100 ms more), and a process it left behind
// holding them is neither waited for nor killed. Errors start "user USER: exec plugin COMMAND: ":
// NotFound when the command is not there (with the install hint), DeadlineExceeded after
// limits.timeout, ResourceExhausted for too much output, Unauthenticated for a non-zero exit or
// an answer ParseExecCredential refuses; the plugin's stderr ends the message.
absl::StatusOr<ExecCredential> RunExecPlugin(const ExecPluginConfig& config,
                                             absl::string_view server, absl::string_view ca_pem,
                                             const ExecPluginLimits& limits = {});

}  // namespace meshlet::controlplane::cli
