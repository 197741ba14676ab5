#pragma once

// meshctl tag's pieces that are pure functions of the Kubernetes objects (tag.cc; docs/
// upgrades.md, "Revision tags"; ADR 0076): the tag's MutatingWebhookConfiguration, the patch that
// turns the unnamed revision's own configuration off while the tag "default" points elsewhere,
// and the namespaces a tag selects.

#include <yaml-cpp/yaml.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::cli {

// The namespaceSelector expression key that a deactivated configuration requires with a value
// no namespace has ("never-match").
inline constexpr char kDeactivatedLabel[] = "meshlet.io/deactivated";

// The label selector (equality terms, for a list) of the namespaces whose pods the tag's
// configuration selects by namespace: meshlet.io/rev=<tag>; for "default"
// meshlet.io/inject=enabled,!meshlet.io/rev.
std::string TagNamespaceSelector(absl::string_view tag);

// The tag's configuration (meshlet-revision-tag-<tag>, labelled meshlet.io/tag=<tag> and
// meshlet.io/rev=<revision display name>): the webhooks and selectors the install renders for a
// revision named `tag` (for "default": the unnamed revision's), named
// namespace.tag-<tag>.sidecar.meshlet.io and object.tag-<tag>.sidecar.meshlet.io, each with the
// clientConfig (Service, port, caBundle), failurePolicy and timeoutSeconds of
// `revision_configuration`'s first webhook (the revision's own, as read from the cluster) and
// the path /inject/tag/<tag>. FailedPrecondition when that configuration has no webhook or no
// caBundle yet.
absl::StatusOr<YAML::Node> TagConfiguration(absl::string_view tag, absl::string_view revision,
                                            const YAML::Node& revision_configuration,
                                            absl::string_view control_plane_namespace);

// A merge patch of `configuration`'s webhooks: each namespaceSelector with (`deactivate`) or
// without the expression kDeactivatedLabel In [never-match], the rest as it is.
YAML::Node DeactivationPatch(const YAML::Node& configuration, bool deactivate);

}  // namespace meshlet::controlplane::cli
