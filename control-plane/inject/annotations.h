#pragma once

// The pod annotations injection reads and writes (docs/kubernetes.md lists them): the
// sidecar.meshlet.io/* settings and traffic.meshlet.io/* capture lists, read into a Plan by
// PodReader (annotations.cc; declared in pod_model.h), and the status annotation
// (sidecar.meshlet.io/status) that records what an injection added, so that the next one takes
// it out first.
//
// Plain functions; no state.

#include <string>
#include <vector>

#include "control-plane/inject/inject.h"
#include "control-plane/inject/pod_model.h"

namespace meshlet::controlplane::inject {

// The value of kStatusAnnotation for a pod injected by `plan` that added these names: a JSON
// object listing them, or with Options::podman a short one that implies them (podman 4.3 refuses
// annotation values over 63 characters): the version and mode, from which ReadStatus knows the
// names, whether the podman annotation was added ("podman":true), and whether restartPolicy was
// set to OnFailure from none or Always ("rp":1).
std::string StatusAnnotation(const Plan& plan, const Options& options,
                             const std::vector<std::string>& init_containers,
                             const std::vector<std::string>& containers,
                             const std::vector<std::string>& volumes,
                             const std::vector<std::string>& annotations);

}  // namespace meshlet::controlplane::inject
