#pragma once

// The workload a pod belongs to: the service name and version its sidecar registers with
// (--node-service, and the node label `version` that HTTPRoute subsets select on). One rule for a
// Pod and for the pod template of a workload, so that `meshctl inject` of a Deployment or a
// CronJob and the webhook's injection of the pods their ReplicaSets and Jobs create name the same
// service, which stays the same across rollouts and runs (docs/kubernetes.md, "Service names").
//
// Service, the first of:
//   1. the pod's label app.kubernetes.io/name, then its label app;
//   2. the controller, resolved to the top: for a Pod, its ownerReference with controller: true
//      (else its first one of a workload kind); for a template, the workload itself. A ReplicaSet
//      named <deployment>-<hash>, where <hash> is the pod's pod-template-hash label, is its
//      Deployment's; a Job named <cronjob>-<8 or more digits> (a CronJob's run, named after the
//      minutes since 1970 of its schedule) is its CronJob's, unless the Job (given as itself) has
//      a controller of another kind; a Job or ReplicaSet given as itself whose controller is a
//      CronJob or Deployment is that one's; StatefulSets, DaemonSets and any other controller
//      name themselves;
//   3. the pod's name (metadata.name, else its generateName without the final '-').
// Version: the label app.kubernetes.io/version, then version; empty without either.
//
// Inputs are read leniently (a label that is not a scalar, an ownerReference without a kind or
// name are skipped); callers check the shapes first where they report errors. Plain functions;
// no state; never throws.

#include <yaml-cpp/yaml.h>

#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::controlplane::inject {

// The pod labels the rules read.
inline constexpr char kNameLabel[] = "app.kubernetes.io/name";
inline constexpr char kAppLabel[] = "app";
inline constexpr char kVersionLabel[] = "app.kubernetes.io/version";
inline constexpr char kPlainVersionLabel[] = "version";
inline constexpr char kPodTemplateHashLabel[] = "pod-template-hash";
// A CronJob's Job is <cronjob>-<minutes since 1970>: at least this many digits (1989 onwards).
inline constexpr size_t kCronJobSuffixMinDigits = 8;

struct Workload {
  std::string service;  // empty only when nothing names it (no labels, owner or name)
  std::string version;  // empty when the pod has no version label
  // Which rule gave the service: "label app.kubernetes.io/name", "label app",
  // `Deployment "orders"` (the controller resolved), or "pod name".
  std::string source;
};

// `kind` is the injected object's kind ("Pod", "Deployment", "CronJob", ...), `object_metadata`
// its metadata (name, generateName, ownerReferences) and `pod_labels` the labels of its pod (the
// Pod's own, or the template's).
Workload WorkloadOf(absl::string_view kind, const YAML::Node& object_metadata,
                    const YAML::Node& pod_labels);

}  // namespace meshlet::controlplane::inject
