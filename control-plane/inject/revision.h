#pragma once

// Control-plane revisions (docs/upgrades.md, "Canary control planes"; ADR 0069): control planes
// of different releases or settings run side by side in one mesh, each under a revision name,
// and the label meshlet.io/rev on a namespace or a pod chooses which one a pod's sidecar talks
// to. The unnamed revision ("" here, "default" on command lines) is the control plane installed
// without a name: it serves pods without the label.
//
// A revision names a control plane's Kubernetes objects: its Service, Deployment and service
// account are meshlet-control-plane-<revision> (the unnamed one's meshlet-control-plane), which
// is also the name in its discovery certificate and the SPIFFE id sidecars expect of it.
//
// A tag (ADR 0076) is a stable name that namespaces and pods use as their meshlet.io/rev value
// and that points at a revision: the MutatingWebhookConfiguration meshlet-revision-tag-<tag>,
// labelled meshlet.io/tag=<tag> and meshlet.io/rev=<revision> ("default" for the unnamed one),
// selects the tag's pods and sends them to that revision's webhook at /inject/tag/<tag>.
// The tag "default" stands for the unnamed revision's selection (namespaces labelled
// meshlet.io/inject=enabled, pods sidecar.meshlet.io/inject=true, neither labelled
// meshlet.io/rev): it moves those pods to another revision.
//
// Plain functions; no state.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::inject {

// The label (namespace or pod) that names a pod's revision.
inline constexpr char kRevisionLabel[] = "meshlet.io/rev";
// What command lines call the unnamed revision; never a label value.
inline constexpr char kDefaultRevision[] = "default";
inline constexpr char kControlPlaneName[] = "meshlet-control-plane";
// Service names are DNS labels (63 characters): meshlet-control-plane-<revision> must be one.
inline constexpr size_t kMaxRevisionLength = 63 - (sizeof(kControlPlaneName) - 1) - 1;

// A revision as a command line gives it: a DNS label of at most kMaxRevisionLength characters
// (lowercase letters, digits and '-': "canary", "0-2-0"); "default" or "" give the unnamed
// revision (""). Errors say what a name may be.
absl::StatusOr<std::string> ParseRevision(absl::string_view text);
// A meshlet.io/rev label value: a revision name; "default" and "" are refused (the unnamed
// revision is chosen by leaving the label out).
absl::Status CheckRevisionLabel(absl::string_view value);

// "" → "default", else the name: how output shows a revision.
std::string RevisionDisplayName(absl::string_view revision);
// meshlet-control-plane or meshlet-control-plane-<revision>: the revision's Service, Deployment
// and service account.
std::string ControlPlaneName(absl::string_view revision);
// <ControlPlaneName>.<namespace>.svc:15012: where its sidecars reach discovery and the CA.
std::string ControlPlaneDiscoveryAddress(absl::string_view revision,
                                         absl::string_view control_plane_namespace);
// meshlet-sidecar-injector or meshlet-sidecar-injector-<revision>: its
// MutatingWebhookConfiguration.
std::string InjectorConfigurationName(absl::string_view revision);

// The label on a tag's MutatingWebhookConfiguration that names the tag.
inline constexpr char kTagLabel[] = "meshlet.io/tag";
// The tag that moves the unnamed revision's pods.
inline constexpr char kDefaultTag[] = "default";
// The webhook's path for a tag's pods: /inject/tag/<tag>.
inline constexpr char kTagInjectPathPrefix[] = "/inject/tag/";
// A tag name: a DNS label of at most kMaxRevisionLength characters ("prod", "stable");
// "default" is one. Errors say what a name may be.
absl::StatusOr<std::string> ParseTag(absl::string_view text);
// meshlet-revision-tag-<tag>: the tag's MutatingWebhookConfiguration.
std::string TagConfigurationName(absl::string_view tag);

}  // namespace meshlet::controlplane::inject
