#pragma once

// Operator roles on the control-plane API (docs/security.md#control-plane-api-authentication).
// Each role includes the ones below it:
//
//   peer    reads what this cluster shares with the clusters linked to it, and nothing else
//           (GET /api/v1/multicluster/exports): the credential a linked control plane holds
//           (`meshctl multicluster link`, ADR 0106)
//   viewer  reads: policy, the registry, proxy status and configuration, traces, golden metrics,
//           the dashboard; and asking a sidecar for its configuration dump
//   editor  writes policy (/apis/meshlet.io/v1: create, replace, delete, dry runs)
//   admin   join tokens (workload identity) and operator tokens (who may use the API)
//
// On Kubernetes the roles are verbs of the virtual resource `meshes` in API group meshlet.io,
// which the ClusterRoles meshlet-viewer, meshlet-editor and meshlet-admin of k8s/ grant
// (KubernetesVerb). Value types, no threads.

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::controlplane::access {

enum class Role { kPeer = 0, kViewer = 1, kEditor = 2, kAdmin = 3 };

// "peer", "viewer", "editor", "admin".
absl::string_view RoleName(Role role);
// The role named `name` (exactly as RoleName spells it), or nullopt.
std::optional<Role> ParseRole(absl::string_view name);
// Whether holding `held` grants what `needed` requires.
inline bool Grants(Role held, Role needed) {
  return static_cast<int>(held) >= static_cast<int>(needed);
}

// The SubjectAccessReview a Kubernetes user needs for `role`: verb "view", "edit" or "admin" on
// resource kKubernetesResource of group kKubernetesGroup ("view" for peer: a Kubernetes user who
// may view may read the exports too).
inline constexpr char kKubernetesGroup[] = "meshlet.io";
inline constexpr char kKubernetesResource[] = "meshes";
absl::string_view KubernetesVerb(Role role);

// Who made an API request, once authenticated.
struct Principal {
  // Bootstrap token: "api-token"; an operator token: its name; a Kubernetes user: the username
  // the API server reviewed.
  std::string name;
  // How they proved it: "api-token", "operator-token" or "kubernetes".
  std::string credential;
  // The role the credential holds; for a Kubernetes user the role this request was granted.
  Role role = Role::kViewer;
};

}  // namespace meshlet::controlplane::access
