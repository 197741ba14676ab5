#pragma once

// The marks of policy mirrored from Kubernetes (control-plane/kubernetes/policy_mirror.h), which
// both the mirror and the policy API (control-plane/api) read: objects mirrored from Kubernetes
// carry the annotation kManagedByAnnotation: kManagedByKubernetes, and the API refuses writes and
// deletes of such a stored object (409, pointing at kubectl) unless they come from the mirror of
// the same process (PolicyApi::HandleFromMirror, which no network request reaches): on
// Kubernetes the cluster's object wins. Nor may anyone else set the annotation (422).
// kMirrorHeader proves nothing: a network request that carries it is answered as without it,
// and counted and logged as a caller claiming to be the mirror. Constants only, below both.

namespace meshlet::controlplane::policy {

inline constexpr char kManagedByAnnotation[] = "meshlet.io/managed-by";
inline constexpr char kManagedByKubernetes[] = "kubernetes";
inline constexpr char kMirrorHeader[] = "x-meshlet-mirror";

}  // namespace meshlet::controlplane::policy
