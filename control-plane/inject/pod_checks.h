#pragma once

// Hand-written checks of a pod against the Kubernetes API's validation rules (core/v1, as the API
// server applies them to a Pod or a pod template), for the fields injection writes: run on every
// injected pod so that what `meshctl inject` prints is accepted by an API server, and usable on
// its own. Not a full schema: the app's own containers get only the pod-wide rules (unique names,
// mounts naming volumes, which containers may restart or carry probes); containers named in
// `deep` get every rule below.
//
// Pod-wide: container names (containers and initContainers together) are unique DNS-1123 labels;
// volume names are unique DNS-1123 labels with exactly one source; every volumeMount names a
// volume; a regular container has no restartPolicy, an init container only `Always` (a native
// sidecar), and only such an init container may have probes or lifecycle hooks; annotation and
// label keys are qualified names and their values strings, annotations at most 256 KiB.
//
// Deep: an image; ports 1-65535 with IANA service names unique in the container and protocol
// TCP, UDP or SCTP; env names valid, `value` or `valueFrom` (one source; fieldRef paths the API
// supports); probes with one handler, positive periods and thresholds, successThreshold 1 for
// startup and liveness probes; resource quantities valid and limits not below requests;
// securityContext ids 0 to 2^31-1, runAsNonRoot not with runAsUser 0, allowPrivilegeEscalation
// false not with privileged; volume sources: configMap and secret names DNS-1123 subdomains with
// relative item paths, projected serviceAccountToken with a relative path and an
// expirationSeconds of 600 to 2^32.
//
// Plain functions; no state.

#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::inject {

// A resource quantity ("100m", "64Mi", "1.5G", "2e3") as a number of base units (cores, bytes);
// an error for malformed or negative ones.
absl::StatusOr<double> ParseQuantity(absl::string_view text);

// A port name: at most 15 lowercase letters, digits and '-', with a letter, no "--", no '-' at
// either end.
bool IsIanaServiceName(absl::string_view name);
// An annotation or label key: [prefix/]name, the prefix a DNS-1123 subdomain, the name at most
// 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit.
bool IsQualifiedName(absl::string_view key);
// An environment variable name: [-._a-zA-Z][-._a-zA-Z0-9]*.
bool IsEnvVarName(absl::string_view name);
// Relative, without ".." elements.
bool IsRelativePath(absl::string_view path);

struct PodProblem {
  std::string field;  // "spec.template.spec.initContainers[1].startupProbe.successThreshold"
  std::string message;
};

// `metadata` and `spec` of a Pod or pod template, whose fields are named with `prefix` ("" for a
// Pod, "spec.template." for a Deployment). Every problem found, in document order.
std::vector<PodProblem> CheckPod(const YAML::Node& metadata, const YAML::Node& spec,
                                 absl::string_view prefix, const std::set<std::string>& deep);

}  // namespace meshlet::controlplane::inject
