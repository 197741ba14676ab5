#pragma once

// The registry across a control-plane restart. The registry lives in memory and is rebuilt from
// the sidecars' streams; when every stream drops at once (the control plane restarts), the first
// sidecar to reconnect would otherwise get a configuration without the services whose sidecars
// have not reconnected yet, and its calls to them would fail until they do. So a stopping
// control plane saves its workloads, and the next start restores them as disconnected
// (Registry::Restore): their endpoints stay while their sidecars reconnect, exactly as for a
// single sidecar that lost its stream, and those that never come back leave after the grace
// period. A workload whose sidecar had already left is saved with the time it left, and keeps only
// the rest of its grace period: restarting again and again does not keep it for ever.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "control-plane/registry/registry.h"
#include "xds/node.pb.h"

namespace meshlet::controlplane::registry {

// The inverse of WorkloadFromNode: WorkloadFromNode(NodeFromWorkload(w)) has w's registration.
xds::Node NodeFromWorkload(const Workload& workload);

// Every workload of `snapshot` (connected or waiting out its grace period), serialized. Streams
// that closed at or after `stopping_since` closed because this control plane is stopping: those
// workloads are saved as connected.
std::string SerializeRegistry(const RegistrySnapshot& snapshot,
                              absl::Time stopping_since = absl::InfiniteFuture());
// The workloads of SerializeRegistry's output, registration fields and readiness set.
absl::StatusOr<std::vector<Workload>> ParseSavedRegistry(absl::string_view bytes);

}  // namespace meshlet::controlplane::registry
