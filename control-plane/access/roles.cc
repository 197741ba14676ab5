#include "control-plane/access/roles.h"

namespace meshlet::controlplane::access {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPeer:
      return "peer";
    case Role::kViewer:
      return "viewer";
    case Role::kEditor:
      return "editor";
    case Role::kAdmin:
      return "admin";
  }
  return "viewer";
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (Role role : {Role::kPeer, Role::kViewer, Role::kEditor, Role::kAdmin}) {
    if (name == RoleName(role)) return role;
  }
  return std::nullopt;
}

absl::string_view KubernetesVerb(Role role) {
  switch (role) {
    case Role::kPeer:
    case Role::kViewer:
      return "view";
    case Role::kEditor:
      return "edit";
    case Role::kAdmin:
      return "admin";
  }
  return "view";
}

}  // namespace meshlet::controlplane::access
