#pragma once

// Probes injection writes: the proxy's own readiness and startup probes (its /ready on
// kPrometheusPort), and the app containers' HTTP probes, which the kubelet sends in plaintext:
// pointed at the proxy's /app-health/<container>/<livez|readyz|startupz>, with the original port
// and path given to the proxy (--app-probe), which asks the app on loopback, so they keep working
// under STRICT mTLS. Re-injection restores them from those arguments first; the annotation
// sidecar.meshlet.io/rewriteAppProbes: "false" keeps them as written. PodReader::ReadProbes
// (probes.cc; declared in pod_model.h) decides which.
//
// Plain functions; no state.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "control-plane/inject/pod_model.h"

namespace meshlet::controlplane::inject {

// The proxy's HTTP probe of its readiness: every `period` seconds, `failures` in a row fail it.
YAML::Node ProxyProbe(int64_t period, int64_t failures);

// Appends the proxy's --app-probe=<proxy path>=<port><path> for each probe `plan` rewrites; the
// path escaped for the kubelet's $(VAR) expansion unless `podman` (which expands nothing).
void AppendAppProbeArgs(const Plan& plan, bool podman, std::vector<std::string>& args);

// Points each of `plan`'s app probes in `containers` (the output pod's) at the proxy, or back at
// the app as written.
void WriteAppProbes(const Plan& plan, YAML::Node containers);

}  // namespace meshlet::controlplane::inject
