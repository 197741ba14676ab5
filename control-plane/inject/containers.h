#pragma once

// The containers and volumes injection adds to a pod, built from its Plan: `meshlet-init`
// (`sidecar init` programming the pod's iptables capture, as root with NET_ADMIN and NET_RAW;
// none with Options::cni, where the node's meshlet-cni does it),
// `meshlet-proxy` (the sidecar as UID/GID 1337, its arguments naming the control plane, the
// identity and the workload), and the volumes they mount (the trust bundle, the workload
// credential, the xDS cache). For Options::podman they carry what podman 4.3 lacks (values
// instead of the downward API, no published ports, ConfigMap credentials).
//
// Plain functions; no state.

#include <yaml-cpp/yaml.h>

#include <vector>

#include "control-plane/inject/inject.h"
#include "control-plane/inject/pod_model.h"

namespace meshlet::controlplane::inject {

YAML::Node InitContainer(const Plan& plan);
// As a native sidecar (Plan::mode) it has restartPolicy Always and a startup probe.
YAML::Node ProxyContainer(const Plan& plan, const Options& options);
// The trust bundle, the credential (a projected token or the join token) and the data volume.
std::vector<YAML::Node> Volumes(const Plan& plan, const Options& options);

}  // namespace meshlet::controlplane::inject
